"""Machine facts for sidecars and verify_env, on this (GPU-less) machine."""

import importlib.util
import json
import sys

import pytest

import verify_env
from fp8suite import environment


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
