"""verify_env's verdict from its probes, faked (no GPU, torch or Transformer Engine needed): a probe
that raised or found something wrong never ends in a plain "Ready."."""

import json
import sys
import types

import pytest

import verify_env
from fp8suite.launch import environment

# torch's message on the H200 host of logs/verify_env_h200.txt (torch 2.11.0 with a system cuDNN
# that Transformer Engine loaded first); training ran there.
CUDNN_MISMATCH = ("cuDNN version incompatibility: PyTorch was compiled  against (9, 19, 0) but found "
                  "runtime version (9, 14, 0). PyTorch already comes bundled with cuDNN.")
WARNING = ("cuDNN runtime 9.14.0 older than torch's build 9.19.0: cuDNN-backed ops "
           "(e.g. fused attention backend cudnn) may fail")
RAN = {"ok": True, "reason": "ran a Linear forward and backward"}
NO_MXFP8 = {"ok": False, "reason": "Transformer Engine: Device compute capability 10.0 or higher "
                                   "required for MXFP8 execution."}


def h200_torch(**cudnn):
    facts = {"torch": "2.11.0", "cuda": "13.0", "cuda_available": True, "device": "NVIDIA H200",
             "compute_capability": "9.0", "device_count": 1, "cudnn_transformer_engine": "9.14.0"}
    return {**facts, "cudnn": 91900, "cudnn_build": "9.19.0", "cudnn_runtime": "9.19.0", **cudnn}


MISMATCHED = dict(cudnn=f"unavailable: RuntimeError: {CUDNN_MISMATCH}", cudnn_runtime="9.14.0")


@pytest.fixture
def probes(monkeypatch, tmp_path):
    """Fake every probe `collect` calls; returns the dict of answers a test may change."""
    answers = {
        "machine": {"host": "h200", "python": "3.12.3", "torch": "2.11.0", "cuda": "13.0",
                    "transformer_engine": "2.20.2", "megatron_core": "0.19.2", "apex": None,
                    "wandb": None, "gpu": {"name": "NVIDIA H200", "count": 1, "driver": "580.159.04",
                                           "memory_mib": 143771, "compute_capability": "9.0"}},
        "torch": h200_torch(**MISMATCHED),
        "recipes": {"delayed": dict(RAN), "tensorwise": dict(RAN), "blockwise": dict(RAN),
                    "mxfp8": dict(NO_MXFP8)},
    }
    monkeypatch.setattr(environment, "describe", lambda: answers["machine"])
    monkeypatch.setattr(environment, "torch_facts", lambda: answers["torch"])
    monkeypatch.setattr(environment, "recipe_support", lambda: answers["recipes"])
    monkeypatch.setattr(environment, "apex_fusion", lambda: False)
    monkeypatch.setattr(environment, "te_wgrad_fusion", lambda: False)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    return answers


def run(capsys, *argv):
    status = verify_env.main(list(argv))
    return status, capsys.readouterr().out


def test_the_h200_hosts_cudnn_mismatch_is_a_named_warning_not_ready(probes, capsys):
    status, out = run(capsys)
    assert status == 0  # training ran on that host: a warning, not a failure
    lines = out.splitlines()
    assert "Ready." not in lines
    assert lines[-2:] == ["Ready, with warnings:", f"  - {WARNING}"]
    # The version summary says which cuDNN produced the logs.
    assert ("CUDA / cuDNN     13.0 / torch built with 9.19.0, runtime 9.14.0 (torch refuses it); "
            "Transformer Engine 9.14.0") in lines


def test_the_warning_is_in_the_json_report_too(probes, capsys):
    status, out = run(capsys, "--json")
    report = json.loads(out)
    assert status == 0 and report["problems"] == [] and report["warnings"] == [WARNING]
    assert (report["torch"]["cudnn_build"], report["torch"]["cudnn_runtime"]) == ("9.19.0", "9.14.0")


def test_a_clean_probe_is_ready(probes, capsys):
    probes["torch"] = h200_torch()
    status, out = run(capsys)
    assert status == 0 and out.splitlines()[-1] == "Ready."
    assert "torch built with 9.19.0, runtime 9.19.0; Transformer Engine 9.14.0" in out


def test_warnings_follow_problems_when_both(probes, capsys):
    status, out = run(capsys, "--recipe", "mxfp8")
    lines = out.splitlines()
    assert status == 1 and "Ready." not in lines and "Ready, with warnings:" not in lines
    at = lines.index("Problems:")
    assert lines[at + 1].startswith("  - recipe mxfp8 cannot run here")
    assert lines[at + 2:] == ["Warnings:", f"  - {WARNING}"]


@pytest.mark.parametrize("cudnn, expected", [
    ({"cudnn": "unavailable: RuntimeError: cuDNN version incompatibility", "cudnn_runtime": "8.9.7"},
     "cuDNN runtime 8.9.7 of another major version than torch's build 9.19.0"),
    ({"cudnn": "unavailable: RuntimeError: cuDNN version incompatibility", "cudnn_runtime": "9.20.0"},
     "cuDNN runtime 9.20.0 not accepted by torch's build 9.19.0"),
    ({"cudnn": "unavailable: RuntimeError: libcudnn.so.9: cannot open", "cudnn_build": None,
      "cudnn_runtime": None}, "torch refuses its cuDNN (RuntimeError: libcudnn.so.9: cannot open)"),
    ({"cudnn": None, "cudnn_runtime": None}, "torch has no cuDNN"),
])
def test_every_cudnn_refusal_is_a_warning(cudnn, expected):
    (warning,) = verify_env.cudnn_warnings(h200_torch(**cudnn))
    assert warning == f"{expected}: {verify_env.CUDNN_EFFECT}"


def test_transformer_engines_unreadable_cudnn_is_a_warning(probes, capsys):
    probes["torch"] = h200_torch(cudnn_transformer_engine="unavailable: OSError: libcudnn.so.9: no such file")
    status, out = run(capsys)
    assert status == 0 and "Transformer Engine unreadable" in out
    assert out.splitlines()[-1] == ("  - Transformer Engine's cuDNN version cannot be read (OSError: "
                                    "libcudnn.so.9: no such file): its fused attention may fail")


def test_an_unrequested_recipe_whose_test_layer_raised_is_a_warning(probes, capsys):
    probes["torch"] = h200_torch()
    probes["recipes"]["blockwise"] = {"ok": False, "reason": "test layer failed: RuntimeError: CUBLAS_STATUS"}
    status, out = run(capsys)
    assert status == 0 and out.splitlines()[-2:] == [
        "Ready, with warnings:",
        "  - recipe blockwise: Transformer Engine supports it here but its test layer failed: "
        "RuntimeError: CUBLAS_STATUS"]
    status, out = run(capsys, "--recipe", "blockwise")  # requested, it fails the check (once)
    assert status == 1 and out.count("test layer failed") == 2  # the recipe table and the problem
    assert "Warnings:" not in out


def test_a_transformer_engine_that_does_not_import_fails(probes, capsys):
    probes["torch"] = h200_torch()
    probes["recipes"] = {r: {"ok": False, "reason": "Transformer Engine is not importable: ImportError: "
                                                    "libcudnn_graph.so.9"} for r in probes["recipes"]}
    status, out = run(capsys)
    assert status == 1
    assert ("  - transformer_engine 2.20.2 is installed but Transformer Engine is not importable: "
            "ImportError: libcudnn_graph.so.9") in out.splitlines()


def test_a_torch_that_does_not_import_fails_with_its_reason(probes, capsys):
    probes["torch"] = {"error": "torch is not importable: OSError: libcudart.so.13: cannot open"}
    status, out = run(capsys)
    assert status == 1 and "  - torch is not importable: OSError: libcudart.so.13: cannot open" in out
    assert "torch sees no CUDA GPU" not in out


class FakeCudnn:
    def __init__(self, raises=None, version=91900):
        self.raises, self._version = raises, version

    def version(self):
        if self.raises:
            raise RuntimeError(self.raises)
        return self._version


def fake_torch(cudnn, binding=None):
    return types.SimpleNamespace(backends=types.SimpleNamespace(cudnn=cudnn),
                                 _C=types.SimpleNamespace(**({"_cudnn": binding} if binding else {})))


def test_cudnn_facts_read_build_and_runtime_from_torchs_refusal():
    facts = environment.cudnn_facts(fake_torch(FakeCudnn(raises=CUDNN_MISMATCH)))
    assert facts == {"cudnn": f"unavailable: RuntimeError: {CUDNN_MISMATCH}",
                     "cudnn_build": "9.19.0", "cudnn_runtime": "9.14.0"}


def test_cudnn_facts_ask_torchs_binding_when_it_has_one():
    binding = types.SimpleNamespace(getCompileVersion=lambda: (9, 19, 0), getRuntimeVersion=lambda: (9, 19, 0))
    facts = environment.cudnn_facts(fake_torch(FakeCudnn(), binding))
    assert facts == {"cudnn": 91900, "cudnn_build": "9.19.0", "cudnn_runtime": "9.19.0"}


def test_torch_facts_keep_a_transformer_engine_cudnn_that_raised(monkeypatch):
    cuda = types.SimpleNamespace(is_available=lambda: True, get_device_capability=lambda i: (9, 0),
                                 get_device_name=lambda i: "NVIDIA H200", device_count=lambda: 1)
    torch = fake_torch(FakeCudnn(raises=CUDNN_MISMATCH))
    torch.__version__, torch.version, torch.cuda = "2.11.0", types.SimpleNamespace(cuda="13.0"), cuda

    def broken():
        raise OSError("libcudnn.so.9: no such file")

    te = types.ModuleType("transformer_engine")
    te_pytorch = types.ModuleType("transformer_engine.pytorch")
    te_pytorch.get_cudnn_version = broken
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "transformer_engine", te)
    monkeypatch.setitem(sys.modules, "transformer_engine.pytorch", te_pytorch)
    facts = environment.torch_facts()
    assert facts["cudnn_transformer_engine"] == "unavailable: OSError: libcudnn.so.9: no such file"
    assert (facts["cudnn_build"], facts["cudnn_runtime"]) == ("9.19.0", "9.14.0")
    assert verify_env.cudnn_warnings(facts) == [WARNING]
