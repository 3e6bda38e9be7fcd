"""What machine and software a run uses: GPUs, driver, CUDA, torch, TE, megatron-core, apex.

`describe()` is cheap (nvidia-smi and package metadata, no torch import) and goes into every
log's sidecar. `recipe_support()` imports torch and Transformer Engine and runs a tiny FP8
layer per recipe: it is what verify_env.py reports as "can run here".
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from ..megatron import recipes

# Distribution names to try for each package, first match wins.
PACKAGES = {
    "torch": ["torch"],
    "transformer_engine": ["transformer_engine", "transformer-engine", "transformer_engine_cu13",
                           "transformer_engine_cu12"],
    "megatron_core": ["megatron-core", "megatron_core"],
    "apex": ["apex"],
    "wandb": ["wandb"],
}
RECIPES = tuple(r.name for r in recipes.probed())
"""The recipes `recipe_support()` tries (from the recipe registry)."""
# Environment the generated scripts read or set.
SCRIPT_ENV = ("CUDA_DEVICE_MAX_CONNECTIONS", "NVTE_FLASH_ATTN", "NVTE_FUSED_ATTN", "NVTE_UNFUSED_ATTN",
              "TRITON_CACHE_DIR", "NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST",
              "NVSHMEM_DISABLE_NVLS", "PYTHONPATH", "WANDB_MODE", "WANDB_API_KEY", "MEGATRON_LM_DIR")
SECRET = ("WANDB_API_KEY",)


def package_version(name: str) -> Optional[str]:
    """The installed version of a package (trying each distribution name in PACKAGES), or None."""
    for dist in PACKAGES.get(name, [name]):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def gpus() -> list[dict[str, Any]]:
    """One entry per GPU this process may use, from nvidia-smi; empty where there is none (or no
    driver). CUDA_VISIBLE_DEVICES (indices or UUIDs) limits the list as it limits CUDA: a node
    of a launch by hand given one of the host's GPUs records one GPU, not the host's count."""
    if not shutil.which("nvidia-smi"):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return []  # CUDA sees no GPU
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
             "--format=csv,noheader,nounits"]
    out = None
    # nvidia-smi -i takes the same comma-separated indices and UUIDs; where it refuses a
    # value CUDA accepts (a MIG UUID, a partial list), the host's GPUs are recorded instead.
    for cmd in ([*query, "-i", visible.strip()], query) if visible else (query,):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
            break
        except (OSError, subprocess.SubprocessError):
            continue
    if out is None:
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            found.append({"name": parts[0], "driver": parts[1],
                          "memory_mib": _number(parts[2]), "compute_capability": parts[3]})
    return found


def describe() -> dict[str, Any]:
    """The machine and software of a run, cheaply (no torch import)."""
    cards = gpus()
    torch_version = package_version("torch")
    gpu = None
    if cards:
        gpu = dict(cards[0], count=len(cards))
    return {
        "host": platform.node(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch_version,
        "cuda": torch_cuda_version(),
        **{name: package_version(name) for name in ("transformer_engine", "megatron_core", "apex", "wandb")},
        **megatron_core_source(),
    }


def megatron_core_source() -> dict[str, Any]:
    """{"megatron_core": version, "megatron_core_path": folder} of the megatron.core that
    `import megatron.core` loads on this PYTHONPATH, read from its package_info.py without
    importing it; {} when there is none. With MEGATRON_LM_DIR first on the path (as the launch
    scripts put it) that is the checkout's, which the installed wheel's metadata would not say."""
    for entry in (p or "." for p in sys.path):  # PYTHONPATH's entries are in it, in import order
        info = Path(entry) / "megatron" / "core" / "package_info.py"
        try:
            text = info.read_text()
        except OSError:
            continue
        parts = dict(re.findall(r"^(MAJOR|MINOR|PATCH|PRE_RELEASE)\s*=\s*['\"]?([^'\"\n]*)['\"]?\s*$",
                                text, re.M))
        if not {"MAJOR", "MINOR", "PATCH"} <= set(parts):
            continue
        version = f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}{parts.get('PRE_RELEASE', '')}"
        return {"megatron_core": version, "megatron_core_path": str(info.parent)}
    return {}


def torch_cuda_version() -> Optional[str]:
    """The CUDA torch was built for, read from torch/version.py without importing torch."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        text = Path(spec.origin).with_name("version.py").read_text()
    except OSError:
        return None
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return match.group(1) if match else None


def script_env() -> dict[str, Optional[str]]:
    """The variables the scripts rely on, as set now (secrets shown as 'set')."""
    return {k: ("set" if k in SECRET and k in os.environ else os.environ.get(k)) for k in SCRIPT_ENV}


def nearest_existing(path: str) -> str:
    """`path`, or its closest existing parent (where a missing folder would be created)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    return probe


def disk_free_mb(path: str) -> Optional[int]:
    """Free space in MiB on the filesystem of `path` (or its nearest existing parent); None when
    it cannot be read."""
    try:
        return shutil.disk_usage(nearest_existing(path)).free // (1024 * 1024)
    except OSError:
        return None


def torch_facts() -> dict[str, Any]:
    """CUDA and cuDNN as torch sees them (imports torch)."""
    try:
        import torch
    except Exception as err:  # ImportError, or a broken install raising OSError/RuntimeError
        return {"error": f"torch is not importable: {_first_line(err)}"}
    facts: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                             "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        facts.update(device=torch.cuda.get_device_name(0), compute_capability=f"{major}.{minor}",
                     device_count=torch.cuda.device_count())
        facts.update(cudnn_facts(torch))
    try:
        from transformer_engine.pytorch import get_cudnn_version
    except Exception:  # TE missing or broken: recipe_support() reports why
        pass
    else:
        try:
            facts["cudnn_transformer_engine"] = ".".join(str(x) for x in get_cudnn_version())
        except Exception as err:  # TE imports, but its cuDNN does not load
            facts["cudnn_transformer_engine"] = UNAVAILABLE + _first_line(err)
    return facts


UNAVAILABLE = "unavailable: "
"""How a cuDNN fact starts when its probe raised (torch refusing the cuDNN it loaded, Transformer
Engine's cuDNN not loading); the probe's error follows."""


def cudnn_facts(torch) -> dict[str, Any]:
    """torch's cuDNN: {"cudnn": torch.backends.cudnn.version() (None without cuDNN), or
    "unavailable: <why>" when torch refuses the loaded copy; "cudnn_build": the version torch was
    compiled against, "cudnn_runtime": the version loaded (e.g. "9.14.0"), each None when unknown}.

    torch loads cuDNN lazily, so a refused runtime (typically an older system copy that
    Transformer Engine loaded first) does not stop torch from importing or training with
    Transformer Engine; it only makes torch's own cuDNN-backed ops raise.
    """
    facts: dict[str, Any] = {"cudnn_build": None, "cudnn_runtime": None}
    try:
        facts["cudnn"] = torch.backends.cudnn.version()
    except RuntimeError as err:
        facts["cudnn"] = UNAVAILABLE + _first_line(err)
        # "... compiled against (9, 19, 0) but found runtime version (9, 14, 0) ..."
        found = re.findall(r"\((\d+), (\d+), (\d+)\)", str(err))
        if len(found) == 2:
            facts["cudnn_build"], facts["cudnn_runtime"] = (".".join(v) for v in found)
    binding = getattr(getattr(torch, "_C", None), "_cudnn", None)
    for key, getter in (("cudnn_build", "getCompileVersion"), ("cudnn_runtime", "getRuntimeVersion")):
        try:
            facts[key] = ".".join(str(x) for x in getattr(binding, getter)())
        except Exception:  # no cuDNN binding, or no cuDNN library to ask
            continue
    return facts


def apex_fusion() -> bool:
    """Whether apex's fused wgrad accumulation (gradient_accumulation_fusion) is importable."""
    try:
        import torch  # noqa: F401  (the extension needs torch's symbols loaded first)
        import fused_weight_gradient_mlp_cuda  # noqa: F401
    except ImportError:
        return False
    return True


TE_WGRAD = Path(__file__).resolve().parents[2] / "te_wgrad"
"""tools/te_wgrad: apex's fused_weight_gradient_mlp_cuda written with Transformer Engine's GEMM."""


def load_te_wgrad():
    """tools/te_wgrad's `fused_weight_gradient_mlp_cuda` module, loaded from its file (it is on
    PYTHONPATH only inside launch scripts that choose it). Raises ImportError without
    Transformer Engine."""
    spec = importlib.util.spec_from_file_location(
        "fused_weight_gradient_mlp_cuda", TE_WGRAD / "fused_weight_gradient_mlp_cuda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def te_wgrad_fusion() -> bool:
    """Whether tools/te_wgrad's module imports here (torch and Transformer Engine's GEMM), so
    scripts rendered with `gradient_accumulation_fusion: te` keep the fusion without apex."""
    try:
        import torch  # noqa: F401
        load_te_wgrad()
    except (ImportError, OSError, RuntimeError):  # missing, or a broken CUDA / TE install
        return False
    return True


# How `recipe_support` starts a recipe's reason when its probe raised, rather than Transformer
# Engine answering that the recipe is not supported here (verify_env tells the two apart).
TE_NOT_IMPORTABLE = "Transformer Engine is not importable"
LAYER_FAILED = "test layer failed"


def recipe_support() -> dict[str, dict[str, Any]]:
    """For each FP8/FP4 recipe (`recipes.probed()`): TE's own verdict, then a tiny Linear
    forward+backward under it."""
    result = {r: {"ok": False, "reason": ""} for r in RECIPES}
    try:
        import torch
        import transformer_engine.pytorch as te
        from transformer_engine.common import recipe as te_recipe
    except Exception as err:  # ImportError, or a broken extension raising OSError/RuntimeError
        for r in RECIPES:
            result[r]["reason"] = f"{TE_NOT_IMPORTABLE}: {_first_line(err)}"
        return result
    if not torch.cuda.is_available():
        for r in RECIPES:
            result[r]["reason"] = "no CUDA GPU visible to torch"
        return result
    for r in recipes.probed():
        probe, name = r.te_probe, r.name
        available = getattr(te, probe.available, None)
        if available is None:
            result[name]["reason"] = f"this Transformer Engine has no {probe.available}()"
            continue
        ok, reason = available(return_reason=True)
        if not ok:
            result[name]["reason"] = f"Transformer Engine: {reason}"
            continue
        try:
            layer = te.Linear(256, 256, params_dtype=torch.bfloat16, device="cuda")
            x = torch.randn(128, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            with te.autocast(enabled=True, recipe=_te_recipe(te_recipe, probe)):
                y = layer(x)
            y.float().sum().backward()
            torch.cuda.synchronize()
            if not torch.isfinite(x.grad).all():
                raise RuntimeError("non-finite gradient")
            result[name] = {"ok": True, "reason": "ran a Linear forward and backward"}
        except Exception as err:  # any failure of the recipe is the answer, not a crash
            result[name]["reason"] = f"{LAYER_FAILED}: {_first_line(err)}"
    return result


def _te_recipe(te_recipe, probe):
    """An instance of the probe's Transformer Engine recipe class."""
    kwargs = dict(probe.kwargs)
    if probe.format_member:
        kwargs[probe.format_kwarg] = getattr(te_recipe.Format, probe.format_member)
    return getattr(te_recipe, probe.recipe_class)(**kwargs)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _number(text: str) -> Optional[int]:
    match = re.match(r"\d+", text)
    return int(match.group()) if match else None
