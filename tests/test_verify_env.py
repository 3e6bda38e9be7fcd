"""verify_env --matrix asks megatron-core itself about every run (here: a stand-in megatron)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "standins" / "megatron_pkg"
BENCH = REPO / "experiments" / "h200x2_8b_bench.yaml"
sys.path.insert(0, str(REPO / "tools"))
import verify_env  # noqa: E402


@pytest.fixture
def standin(monkeypatch, tmp_path):
    record = tmp_path / "argv.jsonl"
    monkeypatch.setenv("PYTHONPATH", str(STANDIN))
    monkeypatch.setenv("FAKE_MEGATRON_RECORD", str(record))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    for knob in ("GPUS_PER_NODE", "NNODES"):
        monkeypatch.delenv(knob, raising=False)
    return record


def check(*args, world="1"):
    env = dict(os.environ, PYTHONPATH=str(STANDIN), WORLD_SIZE=world)
    return subprocess.run([sys.executable, str(REPO / "tools" / "megatron_check.py"), *args],
                          capture_output=True, text=True, env=env)


def test_megatron_check_prints_one_verdict_line():
    ok = check("--global-batch-size", "16", world="2")
    assert ok.returncode == 0 and ok.stdout.strip().endswith("accepts these arguments (world size 2)")
    assert "arguments ---" not in ok.stdout  # Megatron's dump is not repeated
    bad = check("--global-batch-size", "16", "--cross-entropy-loss-fusion",
                "--cross-entropy-fusion-impl", "te")
    assert bad.returncode == 1 and bad.stdout.count("\n") == 1
    assert "refuses these arguments (world size 1): AssertionError: Transformer Engine cross " \
           "entropy loss fusion is disabled due to stability issues" in bad.stdout


def test_every_run_of_a_matrix_is_validated_with_the_scripts_exact_arguments(standin):
    verdicts = verify_env.megatron_verdicts(BENCH)
    manifest = json.loads((REPO / "experiments/generated/h200x2_8b_bench.manifest.json").read_text())
    assert verdicts == {r["name"]: "" for r in manifest["runs"]}
    calls = [json.loads(line) for line in standin.read_text().splitlines()]
    assert len(calls) == len(manifest["runs"])
    for call in calls:
        assert call["world_size"] == 2  # the matrix's 1 node x 2 GPUs
        # Each run's Megatron arguments arrive in the script's order, followed by data args.
        assert any(call["argv"][:len(r["megatron_args"])] == r["megatron_args"] for r in manifest["runs"])
        assert "--mock-data" in call["argv"]


def test_a_launch_world_size_megatron_refuses_names_the_run_and_megatrons_message(standin, monkeypatch):
    monkeypatch.setenv("GPUS_PER_NODE", "3")  # 16 sequences do not split over 3 GPUs
    verdicts = verify_env.megatron_verdicts(BENCH)
    assert verdicts and all("global batch size (16) is not divisible" in why for why in verdicts.values())
    problems = verify_env.verdict_problems(verdicts)
    assert problems[0].startswith("run bench_llama3_8b_h200x2_") and "megatron-core refuses it" in problems[0]


def test_stale_scripts_are_reported_instead_of_validated(standin, tmp_path):
    changed = tmp_path / "h200x2_8b_bench.yaml"
    changed.write_text(BENCH.read_text().replace("--train-iters: 30", "--train-iters: 31"))
    verdicts = verify_env.megatron_verdicts(changed)
    assert all("not current" in why for why in verdicts.values())
