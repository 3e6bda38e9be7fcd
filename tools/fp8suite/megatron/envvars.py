"""Environment variables that can change a run's speed or numerics: which of them a sidecar
records (`launch_env`) and a comparison lists as settings that differ besides precision.

Transformer Engine reads NVTE_* (attention backends, FP8 attention's recipe), NCCL NCCL_*,
CUDA and its libraries CUDA_*, CUBLAS*, CUDNN*, PyTorch PYTORCH_* and TORCH_* (allocator,
symmetric memory), NVSHMEM NVSHMEM_*; OMP_NUM_THREADS sets the CPU threads of every rank.
Two exact names beside them: NVIDIA_TF32_OVERRIDE (0 turns TF32 off in cuBLAS and cuDNN:
FP32 GEMMs change speed and result) and UB_SKIPMC (Transformer Engine's userbuffers without
NVLink multicast, used by tensor-parallel communication overlap).

Left out: names that hold a place rather than a setting (containing DIR, PATH, FILE or HOME:
TRITON_CACHE_DIR, CUDA_CACHE_PATH, NCCL_DEBUG_FILE), CUDA_VISIBLE_DEVICES (which cards, not how
they run; the GPU count is in the arguments' world size), and any name that could hold a
secret (KEY, TOKEN, SECRET, PASSWORD): sidecars are committed beside their logs.
"""

from __future__ import annotations

from typing import Mapping

SPEED_PREFIXES = ("NVTE_", "NCCL_", "CUDA_", "PYTORCH_", "TORCH_", "NVSHMEM_", "CUBLAS", "CUDNN")
"""Name prefixes of the variables recorded and compared."""
SPEED_NAMES = ("OMP_NUM_THREADS", "NVIDIA_TF32_OVERRIDE", "UB_SKIPMC")
"""Exact names recorded and compared beside the prefixes."""
PLACE_WORDS = ("DIR", "PATH", "FILE", "HOME")
"""A name containing one of these holds a place (a folder, a file), not a setting."""
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
NOT_SETTINGS = ("CUDA_VISIBLE_DEVICES",)


def is_setting(name: str) -> bool:
    """Whether an environment variable of this name is one that can change speed or numerics
    (the prefixes and names above, less place-like, secret and NOT_SETTINGS names)."""
    upper = name.upper()
    if name in NOT_SETTINGS or any(w in upper for w in PLACE_WORDS + SECRET_WORDS):
        return False
    return name.startswith(SPEED_PREFIXES) or name in SPEED_NAMES


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of `environ` that are settings (is_setting), sorted by name."""
    return {k: str(environ[k]) for k in sorted(environ) if isinstance(k, str) and is_setting(k)}
