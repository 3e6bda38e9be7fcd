"""Machine facts for sidecars and verify_env, on this (GPU-less) machine."""

import importlib.util
import json
import os
import sys

import pytest

import verify_env
from fp8suite.launch import environment


def test_torch_cuda_read_without_importing_torch(tmp_path, monkeypatch):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('importing torch is too slow here')\n")
    (fake / "version.py").write_text("__version__ = '2.11.0'\ncuda: Optional[str] = '13.0'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert environment.torch_cuda_version() == "13.0"


def test_describe_has_every_field():
    facts = environment.describe()
    assert set(facts) == {"host", "gpu", "python", "torch", "cuda", "transformer_engine",
                          "megatron_core", "apex", "wandb"}


def test_secrets_are_never_shown(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t")
    assert environment.script_env()["WANDB_API_KEY"] == "set"


def test_verify_env_fails_without_the_gpu_stack(capsys):
    # CI has no GPU, torch, Transformer Engine or megatron-core: every requested recipe fails.
    if importlib.util.find_spec("transformer_engine") is not None:
        pytest.skip("this machine has Transformer Engine (tests/test_gpu.py covers it)")
    assert verify_env.main(["--json", "--recipe", "tensorwise"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["recipes"]["tensorwise"]["ok"] is False
    assert any(p.startswith("recipe tensorwise cannot run here") for p in report["problems"])


FAKE_SMI = """#!/usr/bin/env python3
import sys
cards = ["NVIDIA H200, 580.159.04, 143771, 9.0", "NVIDIA H200, 580.159.04, 143771, 9.0",
         "NVIDIA H100 80GB HBM3, 580.159.04, 81559, 9.0"]
args = sys.argv[1:]
if "-i" in args:
    wanted = args[args.index("-i") + 1].split(",")
    if not all(w.isdigit() and int(w) < len(cards) for w in wanted):
        sys.exit("No devices were found")  # nvidia-smi's answer to an id it does not know
    cards = [cards[int(w)] for w in wanted]
print("\\n".join(cards))
"""


@pytest.mark.parametrize("visible, expected", [
    (None, ["NVIDIA H200", "NVIDIA H200", "NVIDIA H100 80GB HBM3"]),
    ("1", ["NVIDIA H200"]),
    ("2,0", ["NVIDIA H100 80GB HBM3", "NVIDIA H200"]),
    ("", []),
    ("-1", []),
    # An id nvidia-smi does not take (a MIG UUID): the host's GPUs rather than none.
    ("MIG-4b1c", ["NVIDIA H200", "NVIDIA H200", "NVIDIA H100 80GB HBM3"]),
])
def test_gpus_are_the_ones_cuda_visible_devices_lets_the_run_use(visible, expected, tmp_path,
                                                                  monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert [g["name"] for g in environment.gpus()] == expected
    gpu = environment.describe()["gpu"]
    assert (gpu or {}).get("count", 0) == len(expected)
