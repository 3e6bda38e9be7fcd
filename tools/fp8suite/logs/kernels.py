"""Where a training step's GPU time goes: a PyTorch profiler trace reduced to a kernel table.

Megatron profiles rank 0 with

    --profile --use-pytorch-profiler --profile-step-start S --profile-step-end E
    --profile-ranks 0 --tensorboard-dir D

and writes the trace to ``D/../torch_profile/rank-0.json.gz`` (the folder *beside* the
TensorBoard folder, not inside it: megatron/training/training.py, ``trace_handler``). Without
``--tensorboard-dir`` that path becomes ``None/../torch_profile`` relative to the working
directory, which is why a trace often "does not appear".

Two steps, so the large trace never has to leave the GPU host:

1. :func:`reduce_trace` (stdlib only; runs on the GPU host) turns the Chrome trace (tens of MB)
   into a *kernel table* of a few hundred rows: one row per (kernel name, launching operator),
   with count and total microseconds, plus interval figures that need the timeline: the
   profiled span, the time any kernel ran, and NCCL time exposed (not hidden under compute).
2. :func:`breakdown` classifies the rows into the categories a user asks about (GEMM BF16 /
   FP8, attention, quantize/cast/amax/transpose, norms, elementwise and activations,
   optimizer, communication, other) and gives milliseconds per step.

Classification is by kernel name and by the operator that launched the kernel (``aten::mm``
and friends run BF16 GEMMs through cuBLAS; Transformer Engine's GEMMs run under its own
modules). It lives in :data:`CATEGORIES`, so refining it needs no new trace.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..common import fileio
from ..common import paths

SCHEMA = 1
"""Version of the kernel-table JSON written by :func:`reduce_trace`."""

_GPU_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
_STEP = re.compile(r"^ProfilerStep#(\d+)$")


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of [start, end) intervals, sorted and disjoint."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Total length of the intersection of two unions of disjoint sorted intervals."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def is_communication(name: str) -> bool:
    """True for NCCL's kernels (all-gather, reduce-scatter, all-reduce, send/recv)."""
    return "nccl" in name.lower()


def _launchers(events: list[dict]) -> dict[Any, str]:
    """Map a launch's correlation id to the innermost CPU operator around its runtime call."""
    ops: dict[tuple, list[tuple[float, float, str]]] = {}
    calls: list[tuple[tuple, float, Any]] = []
    for e in events:
        if e.get("ph") != "X":
            continue
        cat = e.get("cat")
        key = (e.get("pid"), e.get("tid"))
        if cat == "cpu_op":
            ops.setdefault(key, []).append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)),
                                            str(e.get("name", ""))))
        elif cat == "cuda_runtime" and "correlation" in e.get("args", {}):
            calls.append((key, float(e["ts"]), e["args"]["correlation"]))
    for spans in ops.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
    found: dict[Any, str] = {}
    by_thread: dict[tuple, list[tuple[float, Any]]] = {}
    for key, ts, corr in calls:
        by_thread.setdefault(key, []).append((ts, corr))
    for key, launches in by_thread.items():
        spans = ops.get(key, [])
        launches.sort()
        stack: list[tuple[float, float, str]] = []
        k = 0
        for ts, corr in launches:
            while k < len(spans) and spans[k][0] <= ts:
                while stack and stack[-1][1] < spans[k][0]:
                    stack.pop()
                stack.append(spans[k])
                k += 1
            while stack and stack[-1][1] < ts:
                stack.pop()
            found[corr] = stack[-1][2] if stack else ""
    return found


def reduce_trace(trace: dict) -> dict:
    """Reduce a PyTorch profiler Chrome trace to a kernel table.

    Args:
        trace: the parsed JSON of ``rank-N.json.gz`` (``{"traceEvents": [...]}``).

    Returns:
        ``{"schema": 1, "steps": [profiled step numbers], "span_us": GPU time from the first
        kernel's start to the last one's end, "busy_us": time any kernel, copy or memset ran,
        "comm_us": union of NCCL kernel time, "comm_exposed_us": NCCL time with no other kernel
        running, "kernels": [{"name", "op", "count", "total_us"}, ...] largest first}``.
        All times are microseconds over the whole profiled window (divide by len(steps) for a
        per-step figure).

    Raises:
        ValueError: the trace holds no GPU kernels (profiling was not active on that rank, or
            the trace is not a PyTorch profiler trace).
    """
    events = trace.get("traceEvents") if isinstance(trace, dict) else None
    if not isinstance(events, list):
        raise ValueError("not a PyTorch profiler trace (no traceEvents list)")
    steps = sorted({int(m.group(1)) for e in events
                    if e.get("cat") == "user_annotation" and (m := _STEP.match(str(e.get("name", ""))))})
    launcher = _launchers(events)
    rows: dict[tuple[str, str], list[float]] = {}
    everything: list[tuple[float, float]] = []
    comm: list[tuple[float, float]] = []
    compute: list[tuple[float, float]] = []
    for e in events:
        if e.get("ph") != "X" or e.get("cat") not in _GPU_CATS:
            continue
        start, dur = float(e.get("ts", 0)), float(e.get("dur", 0))
        name = str(e.get("name", ""))
        interval = (start, start + dur)
        everything.append(interval)
        (comm if is_communication(name) else compute).append(interval)
        op = launcher.get(e.get("args", {}).get("correlation"), "")
        row = rows.setdefault((name, op), [0, 0.0])
        row[0] += 1
        row[1] += dur
    if not everything:
        raise ValueError("the trace holds no GPU kernels (was this rank profiled?)")
    busy, comm_u, compute_u = _merge(everything), _merge(comm), _merge(compute)
    kernels = [{"name": n, "op": o, "count": c, "total_us": round(t, 3)}
               for (n, o), (c, t) in rows.items()]
    kernels.sort(key=lambda k: (-k["total_us"], k["name"], k["op"]))
    return {
        "schema": SCHEMA,
        "steps": steps,
        "span_us": round(busy[-1][1] - busy[0][0], 3),
        "busy_us": round(_length(busy), 3),
        "comm_us": round(_length(comm_u), 3),
        "comm_exposed_us": round(_length(comm_u) - _overlap(comm_u, compute_u), 3),
        "kernels": kernels,
    }


def read_trace(path: Path) -> dict:
    """Load a ``.json`` or ``.json.gz`` Chrome trace."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return json.load(f)


def table_of(path: Path) -> dict:
    """The kernel table of a profiler trace (reduced) or of a kernel table written before.

    Raises:
        OSError, EOFError: the file cannot be read (a truncated .gz).
        ValueError: not JSON, or JSON that is neither a trace with GPU kernels nor a table.
    """
    data = read_trace(path)
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        problem = table_problem(data)
        if problem:
            raise ValueError(f"{path}: {problem}")
        return data
    return reduce_trace(data)


def write_table(table: dict, path: Path) -> None:
    """Write a kernel table as JSON (``<run>.kernels.json`` beside the run's log), atomically
    (fileio.write_atomic); OSError when it cannot be written."""
    fileio.write_atomic(path, json.dumps(table, indent=1) + "\n")


# --- classification -------------------------------------------------------------------------

@dataclass(frozen=True)
class Category:
    """One row of the breakdown: a name and the test that puts a kernel in it."""

    name: str
    kernel: re.Pattern
    """Searched (case-insensitive) in the kernel's name."""
    op: Optional[re.Pattern] = None
    """When set, the launching CPU operator must match it too."""

    def holds(self, name: str, op: str) -> bool:
        return bool(self.kernel.search(name)) and (self.op is None or bool(self.op.match(op)))


_GEMM = re.compile(r"gemm|nvjet|xmma|cublas|cutlass.*(?:tensorop|wgmma)", re.I)
# cuBLAS's Hopper kernels name their operand types after "nvjet_sm90_": "tst" for BF16,
# "qqtst" / "qrtst" for FP8 E4M3 x E4M3 / E4M3 x E5M2 (seen in the committed kernel tables).
_FP8_GEMM = re.compile(r"e4m3|e5m2|fp8|f8f6f4|nvjet_sm\d+_q", re.I)
_BF16_GEMM = re.compile(r"bf16|bfloat16|nvjet_sm\d+_t", re.I)
# Operators through which PyTorch runs BF16 GEMMs (Megatron's output layer and any torch Linear).
_TORCH_GEMM_OPS = re.compile(r"^aten::(mm|addmm|bmm|matmul|linear|baddbmm)$")

CATEGORIES: tuple[Category, ...] = (
    Category("communication (NCCL)", re.compile(r"nccl", re.I)),
    # Without apex's fused wgrad accumulation each weight gradient is computed in BF16 and then
    # added into the FP32 main_grad buffer by a separate kernel.
    Category("main_grad accumulation (unfused)", re.compile(r"CUDAFunctor_add<float>.*LoadWithCast"),
             re.compile(r"^aten::add_$")),
    Category("attention", re.compile(r"flash|fmha|sdpa|attn|attention|softmax|cudnn::fusion", re.I)),
    Category("GEMM", _GEMM),
    Category("optimizer", re.compile(r"adam|multi_tensor|l2norm|linalg_vector_norm|optimizer", re.I)),
    Category("quantize / cast / amax / transpose",
             re.compile(r"cast_transpose|quantiz|amax|transpose|fp8|e4m3|e5m2|swizzle|blockwise|"
                        r"\bcast", re.I)),
    Category("norms", re.compile(r"norm|^ln_|_ln_", re.I)),
    Category("elementwise and activations",
             re.compile(r"elementwise|vectorized|swiglu|silu|gelu|act|rope|rotary|dropout|reduce|"
                        r"index|copy|fill|cat|memcpy|memset|cross_entropy|log_softmax|triton", re.I)),
)
"""Checked in order; the first match wins. GEMMs are split BF16 / FP8 afterwards."""


def classify(name: str, op: str = "", fp8_run: bool = False) -> str:
    """Category name for one kernel.

    Args:
        name: the kernel's name as the trace gives it.
        op: the CPU operator that launched it ("" when unknown).
        fp8_run: the run trains in FP8, so a GEMM whose name names no type is taken as FP8
            unless PyTorch launched it (``aten::mm`` and friends run BF16 GEMMs).
    """
    for cat in CATEGORIES:
        if cat.holds(name, op):
            if cat.name != "GEMM":
                return cat.name
            if _FP8_GEMM.search(name):
                return "GEMM FP8"
            if not fp8_run or _TORCH_GEMM_OPS.match(op) or _BF16_GEMM.search(name):
                return "GEMM BF16"
            return "GEMM FP8"
    return "other"


ORDER = ("GEMM BF16", "GEMM FP8", "attention", "quantize / cast / amax / transpose", "norms",
         "elementwise and activations", "main_grad accumulation (unfused)", "optimizer", "other",
         "communication exposed", "communication overlapped", "idle")
"""Row order of a breakdown; the first nine sum to compute time, the last three to the rest."""


def breakdown(table: dict, fp8_run: bool) -> dict[str, float]:
    """Milliseconds per profiled step in each category of :data:`ORDER`.

    Compute categories sum kernel durations (kernels on several streams can overlap, so their
    sum can exceed the busy time a little); communication is split into the part hidden under
    compute and the part exposed; idle is the span with no kernel running.
    """
    steps = max(len(table.get("steps") or []), 1)
    ms = {name: 0.0 for name in ORDER}
    for k in table["kernels"]:
        cat = classify(k["name"], k.get("op", ""), fp8_run)
        if cat == "communication (NCCL)":
            continue
        ms[cat] += k["total_us"] / 1000.0
    ms["communication exposed"] = table["comm_exposed_us"] / 1000.0
    ms["communication overlapped"] = (table["comm_us"] - table["comm_exposed_us"]) / 1000.0
    ms["idle"] = (table["span_us"] - table["busy_us"]) / 1000.0
    return {name: value / steps for name, value in ms.items()}




MAX_TABLE_BYTES = 64 * 1024 * 1024
"""Largest kernel table read beside a log (bytes); a reduced table is a few hundred KB."""

_TABLE_NUMBERS = ("span_us", "busy_us", "comm_us", "comm_exposed_us")


def table_problem(table: Any) -> str:
    """Why `table` is not a kernel table the breakdown can use ('' when it is): a JSON object
    with ``schema`` == SCHEMA, finite non-negative numbers ``span_us``, ``busy_us``,
    ``comm_us``, ``comm_exposed_us`` (microseconds), and ``kernels``: a list of objects with a
    string ``name``, a finite non-negative ``total_us`` and an optional string ``op``."""
    if not isinstance(table, dict) or table.get("schema") != SCHEMA:
        return f"not a kernel table (schema {SCHEMA})"
    for key in _TABLE_NUMBERS:
        if not _non_negative(table.get(key)):
            return f"{key} is {table.get(key)!r}, not a number of microseconds >= 0"
    rows = table.get("kernels")
    if not isinstance(rows, list):
        return "kernels is not a list"
    for i, row in enumerate(rows):
        if not (isinstance(row, dict) and isinstance(row.get("name"), str)
                and _non_negative(row.get("total_us")) and isinstance(row.get("op", ""), str)):
            return f"kernels[{i}] is not {{name: text, total_us: number >= 0, op: text}}"
    if not isinstance(table.get("steps", []), list):
        return "steps is not a list"
    return ""


def _non_negative(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def table_beside(log: Path) -> tuple[Optional[dict], Optional[str]]:
    """(kernel table, note) for ``<run>.kernels.json`` next to ``<run>.log``: (None, None) when
    there is none; (None, one-line note) when it is not a regular file (a FIFO, a device, a
    link to /dev/zero), larger than MAX_TABLE_BYTES, not JSON or of the wrong shape
    (`table_problem`). A report never stops for it."""
    if not log.name.endswith(".log"):
        return None, None
    path = paths.kernel_table_of(log)
    if not os.path.lexists(path):
        return None, None
    try:
        table = json.loads(fileio.read_regular(path, MAX_TABLE_BYTES))
    except (OSError, ValueError, RecursionError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        return None, f"kernel table {paths.shown_name(path.name)} left out: {reason}"
    problem = table_problem(table)
    if problem:
        return None, f"kernel table {paths.shown_name(path.name)} left out: {problem}"
    return table, None
