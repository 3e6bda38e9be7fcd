"""The generated launch scripts, run for real with a CPU stand-in for torchrun + Megatron.

TRAIN_CMD (documented in every script) replaces `torchrun <entry>`; the stand-in here records
the arguments and environment it was given, prints a line, and exits with a chosen status.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

GENERATED = REPO / "experiments" / "generated"
SCRIPT = GENERATED / "train_llama3_8b_h200_fp8_cs.sh"

STANDIN = """
import json, os, sys, time
record = {"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in (
    "NVTE_FUSED_ATTN", "NVTE_FLASH_ATTN", "CUDA_DEVICE_MAX_CONNECTIONS", "TRITON_CACHE_DIR", "NCCL_NVLS_ENABLE")}}
with open(os.environ["STANDIN_OUT"], "w") as f:
    json.dump(record, f)
print(" [2026-11-23 04:01:35.321753] iteration        1/      50 | lm loss: 1.0E+01 |", flush=True)
time.sleep(float(os.environ.get("STANDIN_SLEEP", "0")))
sys.exit(int(os.environ.get("STANDIN_EXIT", "0")))
"""


@pytest.fixture
def launch(tmp_path):
    standin = tmp_path / "standin.py"
    standin.write_text(STANDIN)

    def run(*args, script=SCRIPT, background=False, **env):
        full = {**os.environ, "PYTHON": sys.executable, "TRAIN_CMD": f"{sys.executable} {standin}",
                "STANDIN_OUT": str(tmp_path / "standin.json"), "LOG_DIR": str(tmp_path / "logs"),
                "TRITON_CACHE_DIR": str(tmp_path / "triton"), "NVTE_FUSED_ATTN": "0", **env}
        cmd = ["bash", str(script), *args]
        if background:
            return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
        return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=120)

    run.record = lambda: json.loads((tmp_path / "standin.json").read_text())
    run.logs = tmp_path / "logs"
    return run


def test_arguments_reach_training(launch):
    result = launch("--num-layers", "4", "--train-iters", "50")
    assert result.returncode == 0, result.stderr
    argv = launch.record()["argv"]
    text = " ".join(argv)
    assert "--num-layers 32" in text and "--fp8-recipe tensorwise --fp8-param-gather" in text
    assert "--mock-data --tokenizer-type NullTokenizer --vocab-size 128256" in text
    # No apex on this machine: the script falls back to unfused accumulation, and its log says so
    # before training's own output.
    assert "--no-gradient-accumulation-fusion" in argv
    log = next(launch.logs.glob("*.log")).read_text().splitlines()
    assert log[0] == (f"{SCRIPT.stem}: apex's fused_weight_gradient_mlp_cuda is not importable: "
                      "adding --no-gradient-accumulation-fusion")
    assert log[1].startswith(" [2026-11-23 04:01:35.321753] iteration")
    assert argv[-4:] == ["--num-layers", "4", "--train-iters", "50"], "extra args must come last"


def test_environment_of_the_recipe(launch, tmp_path):
    assert launch().returncode == 0
    env = launch.record()["env"]
    # The caller's NVTE_FUSED_ATTN=0 would trip Megatron's --attention-backend fused assertion.
    assert env["NVTE_FUSED_ATTN"] is None and env["NVTE_FLASH_ATTN"] is None
    assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1" and env["NCCL_NVLS_ENABLE"] == "0"
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "triton") and (tmp_path / "triton").is_dir()


def test_exit_status_and_sidecar(launch):
    result = launch("--train-iters", "50", STANDIN_EXIT="3", MOCK_DATA="1")
    assert result.returncode == 3
    log = launch.logs / "train_llama3_8b_h200_fp8_cs.log"
    assert "iteration        1/      50" in log.read_text()
    meta = json.loads(log.with_suffix(".meta.json").read_text())
    assert meta["exit_code"] == 3 and meta["interrupted"] is False
    assert meta["run"] == "train_llama3_8b_h200_fp8_cs"
    assert meta["script"] == "experiments/generated/train_llama3_8b_h200_fp8_cs.sh"
    assert meta["overrides"]["args"] == ["--train-iters", "50"]
    assert meta["overrides"]["env"]["MOCK_DATA"] == "1"
    assert len(meta["script_sha256"]) == 64
    assert set(meta["environment"]) >= {"gpu", "torch", "transformer_engine", "megatron_core", "python"}


def test_logs_are_never_overwritten(launch):
    assert launch().returncode == 0
    assert launch().returncode == 0
    names = sorted(p.name for p in launch.logs.glob("*.log"))
    assert names == ["train_llama3_8b_h200_fp8_cs.1.log", "train_llama3_8b_h200_fp8_cs.log"]
    taken = launch.logs / "train_llama3_8b_h200_fp8_cs.log"
    result = launch(LOG_FILE=str(taken))
    assert result.returncode == 1
    assert f"LOG_FILE={taken} exists; refusing to overwrite it" in result.stderr


def test_data_path_checked_before_launch(launch, tmp_path):
    missing = tmp_path / "corpus_text_document"
    result = launch(MOCK_DATA="0", DATA_PATH=str(missing))
    assert result.returncode == 1
    assert f"DATA_PATH entry {missing} has no {missing}.bin/.idx" in result.stderr
    for suffix in (".bin", ".idx"):
        (tmp_path / f"corpus_text_document{suffix}").write_bytes(b"")
    result = launch(MOCK_DATA="0", DATA_PATH=f"0.5 {missing} 0.5 {missing}", TOKENIZER_MODEL="/tok")
    assert result.returncode == 0, result.stderr
    text = " ".join(launch.record()["argv"])
    assert f"--data-path 0.5 {missing} 0.5 {missing} --split 99,1,0 --tokenizer-type HuggingFaceTokenizer " \
           f"--tokenizer-model /tok" in text


def test_triton_cache_needs_space(launch, tmp_path):
    result = launch(TRITON_CACHE_DIR="/proc/no-such-dir/triton")
    assert result.returncode == 1
    assert "cannot create TRITON_CACHE_DIR=/proc/no-such-dir/triton" in result.stderr


def test_interrupt_keeps_log_and_records_it(launch):
    proc = launch(background=True, STANDIN_SLEEP="30")
    log = launch.logs / "train_llama3_8b_h200_fp8_cs.log"
    deadline = time.time() + 30
    while time.time() < deadline and "iteration" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the foreground process group
    proc.wait(timeout=30)
    assert proc.returncode != 0
    meta = json.loads(log.with_suffix(".meta.json").read_text())
    assert meta["interrupted"] is True and meta["exit_code"] == proc.returncode
    assert "iteration        1/      50" in log.read_text()


def test_triton_cache_too_little_space(launch, tmp_path):
    import render
    import yaml
    from helpers import BASE

    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump({**BASE, "min_free_gb": 10 ** 9}))
    assert render.main([str(matrix), "--out", str(tmp_path / "gen")]) == 0
    result = launch(script=tmp_path / "gen" / "r_bf16.sh")
    assert result.returncode == 1
    assert "MB free, needs 1024000000000 MB; point TRITON_CACHE_DIR at a larger disk" in result.stderr


def test_wandb_flags_and_key_from_the_environment_only(launch, tmp_path):
    import render
    import yaml
    from helpers import BASE

    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump({**BASE, "wandb": {"project": "fp8 study", "entity": "team"}}))
    assert render.main([str(matrix), "--out", str(tmp_path / "gen")]) == 0
    script = tmp_path / "gen" / "r_cs.sh"
    assert "WANDB_API_KEY=" not in script.read_text()

    # Without the wandb package the run goes on, without W&B, and says so (a module that
    # fails to import stands for a missing package, whatever this machine has installed).
    missing = tmp_path / "no_wandb"
    missing.mkdir()
    (missing / "wandb.py").write_text("raise ImportError('No module named wandb')\n")
    result = launch(script=script, PYTHONPATH=str(missing))
    assert result.returncode == 0, result.stderr
    assert "wandb is not importable (pip install wandb): no W&B logging" in result.stderr
    assert not any(a.startswith("--wandb") for a in launch.record()["argv"])

    # With it (a stand-in module here) and no key: offline, with TensorBoard for the loss curves.
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "wandb.py").write_text("")
    result = launch(script=script, PYTHONPATH=str(fake))
    assert result.returncode == 0, result.stderr
    assert "WANDB_API_KEY is not set: W&B logs offline" in result.stdout
    argv = launch.record()["argv"]
    at = argv.index("--wandb-project")
    assert argv[at:at + 4] == ["--wandb-project", "fp8 study", "--wandb-exp-name", "r_cs"]
    assert argv[argv.index("--wandb-entity") + 1] == "team"
    assert argv[argv.index("--wandb-save-dir") + 1] == str(tmp_path / "logs" / "wandb")
    assert argv[argv.index("--tensorboard-dir") + 1] == str(tmp_path / "logs" / "tensorboard" / "r_cs" / "events")


def test_sidecar_names_the_megatron_core_of_a_megatron_lm_checkout(launch, tmp_path):
    # MEGATRON_LM_DIR puts a checkout first on PYTHONPATH: the run imports the checkout's
    # megatron.core, so the sidecar must record that version and folder, not the wheel's.
    checkout = tmp_path / "Megatron-LM"
    (checkout / "megatron" / "core").mkdir(parents=True)
    (checkout / "pretrain_gpt.py").write_text("")
    (checkout / "megatron" / "core" / "package_info.py").write_text(
        'MAJOR = 0\nMINOR = 17\nPATCH = 3\nPRE_RELEASE = "rc1"\n')
    result = launch(MEGATRON_LM_DIR=str(checkout))
    assert result.returncode == 0, result.stderr
    meta = json.loads(next(launch.logs.glob("*.meta.json")).read_text())
    assert meta["environment"]["megatron_core"] == "0.17.3rc1"
    assert meta["environment"]["megatron_core_path"] == str(checkout / "megatron" / "core")
    assert meta["overrides"]["env"]["MEGATRON_LM_DIR"] == str(checkout)
