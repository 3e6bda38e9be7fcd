"""megatron_validate: Megatron's own parse_args/validate_args per run, tried on a stand-in package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fp8suite.megatron import validate as mv

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "standins" / "megatron_validate_pkg"
GOOD = ["--num-layers", "2", "--num-attention-heads", "8", "--bf16", "--use-distributed-optimizer",
        "--overlap-param-gather", "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "128"]


@pytest.fixture
def fake_megatron(monkeypatch):
    """The stand-in `megatron` package on sys.path; removed from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(STANDIN))
    for name in [m for m in sys.modules if m == "megatron" or m.startswith("megatron.")]:
        monkeypatch.delitem(sys.modules, name)
    import megatron.training
    megatron.training.CALLS.clear()
    yield megatron.training.CALLS
    for name in [m for m in sys.modules if m == "megatron" or m.startswith("megatron.")]:
        del sys.modules[name]


def test_module_import_does_not_import_megatron():
    code = ("import sys; sys.path.insert(0, 'tools'); import fp8suite.megatron.validate; "
            "print(any(m == 'megatron' or m.startswith('megatron.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_accepted_run_returns_none_and_sets_rank0_of_world(fake_megatron, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "64")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "5")
    argv_before = list(sys.argv)
    assert mv.validate_run(GOOD, 2) is None
    (argv, world, rank, local), = fake_megatron
    assert argv == [mv.PROGRAM, *GOOD]
    assert (world, rank, local) == ("2", "0", "0")
    # restored afterwards
    assert sys.argv == argv_before
    assert os.environ["WORLD_SIZE"] == "64" and os.environ["LOCAL_RANK"] == "5"
    assert "RANK" not in os.environ


@pytest.mark.parametrize("extra, world, expected", [
    (["--cross-entropy-loss-fusion", "--cross-entropy-fusion-impl", "te"], 2,
     "AssertionError: Transformer Engine cross entropy loss fusion is disabled due to stability issues."),
    (["--tensor-model-parallel-size", "2"], 3, "AssertionError: world size (3) is not divisible"),
    (["--tensor-model-parallel-size", "3"], 3, "ValueError: num_attention_heads (8) must be a multiple"),
    (["--fp8-recipie", "tensorwise"], 2, "argparse: unrecognized arguments: --fp8-recipie tensorwise"),
    (["--cross-entropy-fusion-impl", "fast"], 2, "argparse: argument --cross-entropy-fusion-impl: invalid choice"),
])
def test_refused_run_returns_megatrons_message(fake_megatron, extra, world, expected, capsys):
    argv_before = list(sys.argv)
    message = mv.validate_run(GOOD + extra, world)
    assert message is not None and message.startswith(expected), message
    assert "\n" not in message
    assert sys.argv == argv_before


def test_overlap_without_distributed_optimizer(fake_megatron):
    argv = [a for a in GOOD if a != "--use-distributed-optimizer"]
    assert mv.validate_run(argv, 1) == ("AssertionError: --overlap-param-gather only supported with "
                                        "distributed optimizer")
