"""GPU tests: the rendered scripts train for real, one short run per recipe.

Skipped where there is no NVIDIA GPU or no megatron-core + Transformer Engine. On a GPU host:

    python -m pytest tests/test_gpu.py -v

Each run starts from its rendered script, unmodified, and must finish its iterations with a
finite, falling loss and a sidecar naming the GPU.
"""

import json
import math
import os
import re
import subprocess

import pytest

from conftest import REPO
from fp8suite.launch import environment

pytestmark = pytest.mark.gpu

MATRIX = REPO / "tests" / "data" / "gpu_tiny.yaml"
RECIPES = ["bf16", "delayed", "tensorwise", "tensorwise_1F1L", "blockwise"]
ITERATION = re.compile(r"iteration\s+(\d+)/\s*(\d+) \|.*?\| lm loss: ([^ |]+) \|")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(["python3", str(REPO / "tools" / "render.py"), str(MATRIX), "--out", str(out)],
                   check=True)
    return out


@pytest.fixture(scope="module")
def support():
    return environment.recipe_support()


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains(recipe, rendered, support, tmp_path):
    fp8 = recipe.split("_")[0]
    if fp8 != "bf16" and not support[fp8]["ok"]:
        pytest.skip(f"{fp8} cannot run on this GPU: {support[fp8]['reason']}")
    log = tmp_path / f"tiny_{recipe}.log"
    env = {"LOG_FILE": str(log), "GPUS_PER_NODE": "1", "MASTER_PORT": str(29400 + RECIPES.index(recipe)),
           "TRITON_CACHE_DIR": str(tmp_path / "triton")}
    result = subprocess.run(["bash", str(rendered / f"tiny_{recipe}.sh")], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=600)
    text = log.read_text(errors="replace") if log.exists() else result.stdout + result.stderr
    assert result.returncode == 0, f"training failed ({result.returncode}):\n{text[-3000:]}"

    steps = [(int(i), int(n), float(loss)) for i, n, loss in ITERATION.findall(text)]
    assert steps and steps[-1][0] == steps[-1][1] == 12, f"did not reach 12 iterations:\n{text[-2000:]}"
    losses = [loss for _, _, loss in steps]
    assert all(math.isfinite(x) for x in losses)
    assert min(losses[-3:]) < losses[0], f"loss did not fall: {losses}"
    assert "[after training is done]" in text
    meta = json.loads(log.with_suffix(".meta.json").read_text())
    assert meta["exit_code"] == 0
    assert meta["environment"]["gpu"]["name"].startswith("NVIDIA")


def test_te_wgrad_adds_the_weight_gradient_into_main_grad_as_apex_does():
    """tools/te_wgrad against torch: main_grad += d_output^T @ input, in place, in FP32."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformer_engine.pytorch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    shim = environment.load_te_wgrad()
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4096, 1024, device="cuda", generator=gen).bfloat16()
    dy = torch.randn(4096, 3072, device="cuda", generator=gen).bfloat16()
    main_grad = torch.randn(3072, 1024, device="cuda", generator=gen)
    expected = main_grad + dy.float().t() @ x.float()
    buffer = main_grad.data_ptr()
    shim.wgrad_gemm_accum_fp32(x, dy, main_grad)
    assert main_grad.data_ptr() == buffer and main_grad.dtype == torch.float32
    torch.testing.assert_close(main_grad, expected, rtol=1e-3, atol=1e-2)
    with pytest.raises(ValueError, match="cannot take"):
        shim.wgrad_gemm_accum_fp32(x, dy, main_grad.t())
