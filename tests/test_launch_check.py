"""run.py checks what a launch changes (--env knobs, Megatron args after `--`) like a matrix."""

import itertools
import subprocess
import sys

import pytest

from conftest import REPO
from fp8suite.launch import check as launch_check
from fp8suite.config import limits
from fp8suite.config.matrix import load
from fp8suite.megatron.flags import load_snapshot

SNAPSHOT = load_snapshot("0.19.2")
_, RUNS = load(REPO / "experiments" / "h200_8b.yaml")


def run_py(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "run.py"), "experiments/h200_8b.yaml",
                           "--only", "*fp8_cs", "--dry-run", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("flag", sorted(f for f in limits.POSITIVE_FLAGS if f in SNAPSHOT)[:40])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_counts_below_one_are_refused(flag, value):
    _, problems = launch_check.parse_args([flag, value], SNAPSHOT)
    assert len(problems) == 1 and problems[0].startswith(f"-- {flag} {value}: ")


@pytest.mark.parametrize("words, expected", [
    (["--hiden-size", "4096"], "-- --hiden-size: unknown Megatron flag (did you mean --hidden-size?)"),
    (["--fp8-recipe", "tensorwize"], "-- --fp8-recipe tensorwize: 'tensorwize' is not one of"),
    (["--lr", "nan"], "-- --lr nan: must be a finite number"),
    (["--num-layers", "x"], "-- --num-layers x: expects an integer"),
    (["--num-layers"], "-- --num-layers: expects a value"),
    (["4096"], "-- 4096: expected a Megatron flag"),
    (["--seq-length=0"], "-- --seq-length 0: must be at least 1"),
])
def test_bad_arguments_are_one_line_each(words, expected):
    _, problems = launch_check.parse_args(words, SNAPSHOT)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_good_arguments_parse_to_typed_flags():
    flags, problems = launch_check.parse_args(
        ["--num-layers", "4", "--lr=3e-4", "--bf16", "--fp8-recipe", "tensorwise", "--recompute-modules", "core_attn", "mlp"],
        SNAPSHOT)
    assert problems == []
    assert flags == {"--num-layers": 4, "--lr": 3e-4, "--bf16": True, "--fp8-recipe": "tensorwise",
                     "--recompute-modules": ["core_attn", "mlp"]}


@pytest.mark.parametrize("name, value", list(itertools.product(
    ["GPUS_PER_NODE", "NNODES"], ["0", "-1", "abc", "1.5", "", " "])) + [
    ("NODE_RANK", "-1"), ("MASTER_PORT", "0"), ("MASTER_PORT", "70000"), ("GPUS_PER_NODE", "100000")])
def test_bad_launch_knobs_are_refused(name, value):
    assert len(launch_check.knob_problems({name: value})) == 1


def test_node_rank_must_be_below_nnodes():
    assert launch_check.knob_problems({"NNODES": "2", "NODE_RANK": "2"})
    assert not launch_check.knob_problems({"NNODES": "2", "NODE_RANK": "1"})


def test_rules_see_the_run_as_launched():
    # 128 sequences over 3 GPUs do not split; over 4 they do.
    bad = launch_check.problems(RUNS, [], {"GPUS_PER_NODE": "3"}, "0.19.2")
    assert bad and all("as launched" in p and "not divisible" in p for p in bad)
    assert launch_check.problems(RUNS, [], {"GPUS_PER_NODE": "4"}, "0.19.2") == []
    # Megatron's own rule, through the launch: TE's cross-entropy fusion is refused.
    te = launch_check.problems(RUNS, ["--cross-entropy-loss-fusion", "--cross-entropy-fusion-impl", "te"],
                               {}, "0.19.2")
    assert any(p.startswith("-- --cross-entropy-fusion-impl") and "stability issues" in p for p in te), te


@pytest.mark.parametrize("args", [
    ["--", "--micro-batch-size", "0"], ["--env", "GPUS_PER_NODE=abc"], ["--", "--hiden-size", "4096"],
    ["--env", "GPUS_PER_NODE=1", "--", "--num-layers", "4", "--train-iters", "50"],  # warm-up 100 > 50
])
def test_run_py_refuses_a_bad_launch_in_one_line_each(args):
    out = run_py(*args)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert all(line.startswith("run.py: error: ") for line in out.stderr.splitlines()), out.stderr


def test_run_py_accepts_the_documented_shrunk_launch():
    out = run_py("--env", "GPUS_PER_NODE=1", "--", "--num-layers", "4", "--global-batch-size", "2",
                 "--train-iters", "50", "--lr-warmup-iters", "5")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", ["CHECKPOINTS_DIR", "checkpoint_dir", "LOGDIR", "GPU_PER_NODE",
                                  "TRITON_CACHE", "MEGATRON_LMDIR"])
def test_a_misspelt_launch_setting_is_refused_with_the_right_name(name):
    lines = launch_check.knob_problems({name: "x"})
    assert len(lines) == 1 and lines[0].startswith(f"--env {name}: not a launch setting") \
        and "did you mean" in lines[0], lines


def test_other_environment_passes_and_empty_paths_are_refused():
    assert launch_check.knob_problems({"NCCL_DEBUG": "INFO", "PYTORCH_CUDA_ALLOC_CONF": "x"}) == []
    for name in launch_check.NON_EMPTY_KNOBS:
        assert launch_check.knob_problems({name: " "}) == [
            f"--env {name}=: must not be empty (leave it out for the script's default)"]


@pytest.mark.parametrize("flag,expected", [
    ("--save", "set --env CHECKPOINT_DIR=... instead"), ("--load", "set --env CHECKPOINT_DIR=... instead"),
    ("--data-path", "set --env DATA_PATH=... instead"),
    ("--save-interval", "from the matrix's checkpoint.save_interval"),
])
def test_reserved_flags_at_launch_say_how_to_change_them(flag, expected):
    _, lines = launch_check.parse_args([flag, "7"], load_snapshot("0.19.2"))
    assert len(lines) == 1 and lines[0].endswith(expected), lines


_, ONE_GPU = load(REPO / "experiments" / "h200_8b_one_gpu.yaml")
BASE = [r for r in ONE_GPU if r.name == "one_llama3_8b_h200_fp8_cs_base"]
ATTENTION = [r for r in ONE_GPU if r.name == "one_llama3_8b_h200_fp8_cs_fp8_attention"]


def test_passed_environment_reaches_the_rules():
    """--env NAME=... that is no launch setting reaches training, so the rules see it."""
    ok = launch_check.problems(BASE, ["--fp8-dot-product-attention"],
                               {"NVTE_DPA_FP8_RECIPE": "DelayedScaling"}, "0.19.2")
    assert ok == []
    alone = launch_check.problems(BASE, [], {"NVTE_DPA_FP8_RECIPE": "DelayedScaling"}, "0.19.2")
    assert alone == ["--env NVTE_DPA_FP8_RECIPE: run one_llama3_8b_h200_fp8_cs_base as launched: "
                     "NVTE_DPA_FP8_RECIPE acts only with --fp8-dot-product-attention: add the flag or "
                     "remove it"]
    missing = launch_check.problems(BASE, ["--fp8-dot-product-attention"], {}, "0.19.2")
    assert len(missing) == 1 and "set env NVTE_DPA_FP8_RECIPE: DelayedScaling" in missing[0]
    assert launch_check.problems(BASE, [], {"NCCL_DEBUG": "INFO"}, "0.19.2") == []


def test_a_variable_the_script_exports_itself_cannot_be_changed_at_launch():
    lines = launch_check.problems(ATTENTION, [], {"NVTE_DPA_FP8_RECIPE": "F16"}, "0.19.2")
    assert lines == ["--env NVTE_DPA_FP8_RECIPE=F16: the script of one_llama3_8b_h200_fp8_cs_fp8_attention "
                     "sets NVTE_DPA_FP8_RECIPE=DelayedScaling itself (the matrix's env), which wins over "
                     "the launch's; change it in the matrix"]
    script = (REPO / "experiments" / "generated" / f"{ATTENTION[0].name}.sh").read_text()
    assert "\nexport NVTE_DPA_FP8_RECIPE=DelayedScaling\n" in script  # unconditional: the launch's value is lost


def test_a_megatron_lm_checkout_cannot_take_the_suite_s_flags():
    lines = launch_check.problems(ATTENTION, [], {"MEGATRON_LM_DIR": "/opt/Megatron-LM"}, "0.19.2")
    assert lines == ["--env MEGATRON_LM_DIR: one_llama3_8b_h200_fp8_cs_fp8_attention uses "
                     "--fp8-dot-product-attention, a flag of the suite's tools/pretrain_gpt.py that a "
                     "Megatron-LM checkout's parser refuses; leave MEGATRON_LM_DIR unset for it"]
    assert launch_check.problems(BASE, [], {"MEGATRON_LM_DIR": "/opt/Megatron-LM"}, "0.19.2") == []
    out = subprocess.run([sys.executable, str(REPO / "tools" / "run.py"), "experiments/h200_8b_one_gpu.yaml",
                          "--only", "*cs_fp8_attention", "--dry-run", "--env", "MEGATRON_LM_DIR=/opt/Megatron-LM"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("run.py: error: --env MEGATRON_LM_DIR: ")
