"""Apex's `fused_weight_gradient_mlp_cuda`, written with Transformer Engine's GEMM.

Megatron-Core fuses each weight gradient into the parameter's FP32 `main_grad` buffer
(`--gradient-accumulation-fusion`, its default) through this module of apex
(apex/csrc/megatron/fused_weight_gradient_dense.cpp), which megatron/core/tensor_parallel/layers.py
imports by this name; without it the suite's scripts must pass `--no-gradient-accumulation-fusion`,
and then every weight gradient, Transformer Engine's layers' too, is computed in BF16 and added
into `main_grad` by a separate kernel. Launch scripts rendered with
`gradient_accumulation_fusion: te` put this folder on PYTHONPATH when apex's module is missing,
so the fusion stays on: Transformer Engine's layers accumulate into `main_grad` themselves, and
Megatron's own layers (the output layer) come here.

Each function computes, in place,

    main_grad += d_output^T @ input

with input [tokens, in_features] and d_output [tokens, out_features] (BF16 or FP16, 2-D, as
Megatron passes them) and main_grad [out_features, in_features], by one cuBLASLt GEMM that adds
into main_grad (`transformer_engine.pytorch.cpp_extensions.general_gemm` with layout "NT" and
accumulate=True, the call Transformer Engine's own Linear makes for its weight gradient).

Errors: ValueError for shapes that do not match; ImportError (at import) without Transformer
Engine, so a script's import check falls back to --no-gradient-accumulation-fusion.
"""

from __future__ import annotations

from transformer_engine.pytorch.cpp_extensions import general_gemm

try:  # Transformer Engine versions that take the cuBLAS workspace from the caller
    from transformer_engine.pytorch.module.base import get_workspace
except ImportError:
    get_workspace = None

__all__ = ["wgrad_gemm_accum_fp32", "wgrad_gemm_accum_fp16"]


def _accumulate(input, d_output, main_grad) -> None:
    if input.dim() != 2 or d_output.dim() != 2 or main_grad.dim() != 2:
        raise ValueError(f"expected 2-D input, d_output and main_grad, got shapes "
                         f"{tuple(input.shape)}, {tuple(d_output.shape)}, {tuple(main_grad.shape)}")
    tokens, in_features = input.shape
    if d_output.shape[0] != tokens or tuple(main_grad.shape) != (d_output.shape[1], in_features):
        raise ValueError(f"main_grad {tuple(main_grad.shape)} cannot take d_output^T @ input for "
                         f"input {tuple(input.shape)} and d_output {tuple(d_output.shape)}")
    kwargs = dict(out_dtype=main_grad.dtype, layout="NT", out=main_grad, accumulate=True, grad=True)
    if get_workspace is not None:
        kwargs["workspace"] = get_workspace()
    general_gemm(input, d_output, **kwargs)


def wgrad_gemm_accum_fp32(input, d_output, main_grad) -> None:
    """main_grad (FP32) += d_output^T @ input, in place (apex's signature)."""
    _accumulate(input, d_output, main_grad)


def wgrad_gemm_accum_fp16(input, d_output, main_grad) -> None:
    """main_grad (FP16 or BF16) += d_output^T @ input, in place (apex's signature)."""
    _accumulate(input, d_output, main_grad)
