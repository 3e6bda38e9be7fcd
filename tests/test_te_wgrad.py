"""Fused weight-gradient accumulation without apex: tools/te_wgrad and `gradient_accumulation_fusion: te`.

On this GPU-less machine Transformer Engine is a recording stand-in (the module's arguments to
its GEMM are checked, not the GEMM); tests/test_gpu.py checks the sums against torch on a GPU.
The launch script's choice (apex, else Transformer Engine's GEMM, else no fusion) is checked by
running a generated script with stand-in modules on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO
from fp8suite.launch import environment

SCRIPT = REPO / "experiments" / "generated" / "abl_llama3_8b_h200x2_fp8_cs_fused_wgrad_te.sh"
RECORDING_TE = """
calls = []
def general_gemm(A, B, **kwargs):
    calls.append((A, B, kwargs))
    return (kwargs.get("out"), None, None, None)
"""


def tensor(*shape, dtype="bfloat16"):
    return SimpleNamespace(shape=shape, dtype=dtype, dim=lambda: len(shape))


def package(root, name: str, source: str = "") -> None:
    """A stand-in package `name` (dotted) under root, `source` in its last module."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        folder = root.joinpath(*parts[:i])
        folder.mkdir(parents=True, exist_ok=True)
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
    (root.joinpath(*parts) / "__init__.py").write_text(source)


def load_shim(root, monkeypatch, **more):
    """tools/te_wgrad's module over a recording transformer_engine under root (plus the stand-in
    packages in `more`: dotted name -> source); its GEMM calls are in .calls."""
    package(root, "transformer_engine.pytorch.cpp_extensions", RECORDING_TE)
    for name, source in more.items():
        package(root, name, source)
    monkeypatch.syspath_prepend(str(root))
    for name in list(sys.modules):
        if name.startswith("transformer_engine"):
            monkeypatch.delitem(sys.modules, name)
    module = environment.load_te_wgrad()
    module.calls = sys.modules["transformer_engine.pytorch.cpp_extensions"].calls
    return module


@pytest.fixture
def shim(tmp_path, monkeypatch):
    return load_shim(tmp_path, monkeypatch)


@pytest.mark.parametrize("entry, dtype", [("wgrad_gemm_accum_fp32", "float32"),
                                          ("wgrad_gemm_accum_fp16", "bfloat16")])
def test_one_gemm_that_adds_into_main_grad_as_transformer_engines_linear_does(shim, entry, dtype):
    x, dy, main_grad = tensor(8192, 4096), tensor(8192, 14336), tensor(14336, 4096, dtype=dtype)
    assert getattr(shim, entry)(x, dy, main_grad) is None
    ((a, b, kwargs),) = shim.calls
    # TE's Linear computes its wgrad as general_gemm(x, dy, layout="NT", ...): dw = dy^T x.
    assert a is x and b is dy
    assert kwargs == {"out_dtype": dtype, "layout": "NT", "out": main_grad, "accumulate": True,
                      "grad": True}


@pytest.mark.parametrize("shapes", [
    ((8192, 4096), (8192, 14336), (4096, 14336)),   # main_grad transposed
    ((8192, 4096), (4096, 14336), (14336, 4096)),   # token counts differ
    ((2, 4096, 4096), (8192, 14336), (14336, 4096)),  # 3-D input
])
def test_shapes_that_do_not_match_are_a_one_line_error(shim, shapes):
    x, dy, main_grad = (tensor(*s) for s in shapes)
    with pytest.raises(ValueError) as e:
        shim.wgrad_gemm_accum_fp32(x, dy, main_grad)
    assert "\n" not in str(e.value) and str(shapes[2]).replace(" ", "") in str(e.value).replace(" ", "")
    assert shim.calls == []


def test_a_transformer_engine_that_wants_the_workspace_gets_it(tmp_path, monkeypatch):
    shim = load_shim(tmp_path, monkeypatch, **{
        "transformer_engine.pytorch.module.base": "def get_workspace():\n    return 'ws'\n"})
    shim.wgrad_gemm_accum_fp32(tensor(4, 2), tensor(4, 3), tensor(3, 2, dtype="float32"))
    ((_, _, kwargs),) = shim.calls
    assert kwargs["workspace"] == "ws"


# --- the launch script's choice ----------------------------------------------------------------

STANDIN = """
import json, os, sys
with open(os.environ["STANDIN_OUT"], "w") as f:
    json.dump({"argv": sys.argv[1:], "pythonpath": os.environ.get("PYTHONPATH", "")}, f)
"""


@pytest.mark.parametrize("machine", ["apex", "te", "neither"])
def test_the_script_fuses_with_apex_else_transformer_engine_else_not(machine, tmp_path):
    site = tmp_path / "site"
    package(site, "torch")
    if machine == "apex":
        (site / "fused_weight_gradient_mlp_cuda.py").write_text("")
    if machine == "te":
        package(site, "transformer_engine.pytorch.cpp_extensions", RECORDING_TE)
    standin = tmp_path / "standin.py"
    standin.write_text(STANDIN)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHON": sys.executable,
           "TRAIN_CMD": f"{sys.executable} {standin}", "STANDIN_OUT": str(tmp_path / "out.json"),
           "LOG_DIR": str(tmp_path / "logs"), "TRITON_CACHE_DIR": str(tmp_path / "triton")}
    result = subprocess.run(["bash", str(SCRIPT), "--train-iters", "2"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads((tmp_path / "out.json").read_text())
    fused = "--no-gradient-accumulation-fusion" not in seen["argv"]
    through_te = seen["pythonpath"].split(":")[0] == str(REPO / "tools" / "te_wgrad")
    assert (fused, through_te) == {"apex": (True, False), "te": (True, True),
                                   "neither": (False, False)}[machine]
    assert str(site) in seen["pythonpath"].split(":")  # the caller's path is kept
    said = {"apex": None, "te": "fusing weight-gradient accumulation with Transformer Engine's GEMM",
            "neither": "adding --no-gradient-accumulation-fusion"}[machine]
    # The choice heads the run's log (not only the terminal): the log shows which way ran.
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    assert said is None or log.startswith(f"{SCRIPT.stem}: ") and said in log.splitlines()[0]
    assert said is not None or "fused_weight_gradient_mlp_cuda" not in log


def test_the_matrix_refuses_an_unknown_fusion_mode(tmp_path, capsys):
    import render
    matrix = tmp_path / "m.yaml"
    text = (REPO / "experiments" / "h200x2_8b_ablations.yaml").read_text()
    assert "gradient_accumulation_fusion: te" in text
    matrix.write_text(text.replace("gradient_accumulation_fusion: te", "gradient_accumulation_fusion: apex"))
    assert render.main([str(matrix), "--out", str(tmp_path / "gen")]) == 2  # bad input
    assert "'apex' is not one of: auto, te, on, off" in capsys.readouterr().err
    assert not (tmp_path / "gen").exists()
