"""Per-run figures from a parsed log: recipe label, speed, memory, loss. Pure functions.

Definitions (the report's "How to read this" repeats them):

* Timed iterations: the logged iterations minus those that cover any of the first `warmup`
  iterations of the log and of each restart (iterations, not lines: a line logs
  --log-interval iterations), minus the iteration right after each evaluation / checkpoint-save boundary (its
  interval can hold the evaluation or save), minus the iterations a profiler slowed (Megatron's
  --profile-step-start to --profile-step-end, the end included: PyTorch's profiler exports its
  trace as that iteration starts), minus non-finite times.
* Iteration time: the median `elapsed time per iteration (ms)` of the timed iterations; beside
  it their mean and largest, and the stalls: timed iterations slower than the median by more
  than STALL_FRACTION, named by iteration. With CUDA graphs on (`--cuda-graph-impl` local or
  transformer_engine, or `--enable-cuda-graph`), the first `--cuda-graph-warmup-steps` + 1
  iterations of each launch are warm-up too: Megatron captures the graphs in the iteration
  after its warm-up steps (megatron-core 0.19 logs "Start CUDA Graphs capture..." there).
* Peer windows: the same log read by two published rules (PEER_RULES), so the suite's figures
  can stand beside published ones: dgxc llmb-run's mean of iterations 35-44 and
  Megatron-Bridge's mean after skipping the first 70% of the logged iterations.
* Tokens/s/GPU = global batch size x seq_length / median iteration seconds / world_size.
* TFLOP/s/GPU: the median of Megatron's own `throughput per GPU (TFLOP/s/GPU)` (needs
  `--log-throughput`). MFU = that / the GPU's dense peak for the run's precision.
* Smoothed loss: trailing mean of the last W finite `lm loss` values, W = 10% of the logged
  values, at least 5 (all of them when fewer). The final smoothed loss is its last value.
* Runtime: the sum of the log's segments' spans (a segment is one launch: from the start of its
  first logged iteration to its last iteration line, by the iteration timestamps), so
  evaluations and saves in between count and start-up does not; the sum of iteration times
  where the log has no timestamps or the clock stepped back. Downtime: the time between
  segments (a crash and its requeue), shown separately.

No input makes these functions raise: a figure that cannot be computed (an overflow, a value
out of range) is blank with a note.
"""

from __future__ import annotations

import math
import sys
import statistics
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Optional

from ..megatron import recipes
from ..common import status as S
from ..megatron.logvocab import (FP8_SUB_BACKEND, FUSED_SUB_BACKENDS, GBS, ITER_MS, LOSS, MAX_ALLOCATED,
                       MAX_RESERVED, NAN_EXIT_CODES, TFLOPS, VAL_LOSS, arg_int, arg_value,
                       mock_data)

if TYPE_CHECKING:
    from ..logs.runs import LoggedRun

# The keys that define a model/batch shape: runs compare only when these agree. The micro batch
# is a setting, not part of the shape: it splits the same global batch differently (listed
# among the settings that differ when it does).
SHAPE_KEYS = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
              "seq_length", "global_batch_size", "world_size")

# Fewer logged iterations than this make loss comparisons not meaningful (warm-up dominates).
MIN_ITERATIONS_FOR_LOSS = 100

# A timed iteration slower than the median by more than this fraction is a stall (Python GC,
# a data-loader hiccup, a capture): the median hides it, the mean does not.
STALL_FRACTION = 0.05
# Runs shorter than these give step times that are warned about: too short for the peers'
# windows (50 iterations) and too few timed iterations for a stable median and mean.
MIN_ITERATIONS_FOR_SPEED = 50
MIN_TIMED_FOR_SPEED = 20


@dataclass(frozen=True)
class PeerWindow:
    """One published rule's step time for a run: the mean `elapsed time per iteration (ms)`
    over the rule's window of logged iterations; itr_ms None (with `why`) when the log does not
    cover the window."""

    rule: str  # "dgxc llmb-run" or "Megatron-Bridge"
    window: str  # the rule in words
    itr_ms: Optional[float]
    first_iteration: Optional[int] = None
    last_iteration: Optional[int] = None
    iterations: int = 0  # logged iterations averaged
    why: str = ""  # why itr_ms is None


# (rule, its window in words): dgxc llmb-run (NVIDIA DGX Cloud benchmarking recipes) runs 50
# iterations and averages iterations 35-44; Megatron-Bridge's performance scripts average the
# step times after skipping the first 70% of them.
LLMB_WINDOW = (35, 44)
BRIDGE_SKIP = 0.7
PEER_RULES = (
    ("dgxc llmb-run", f"mean of iterations {LLMB_WINDOW[0]}-{LLMB_WINDOW[1]} (of 50)"),
    ("Megatron-Bridge",
     f"mean after skipping the first {BRIDGE_SKIP:.0%} of the logged iterations"),
)


@dataclass(frozen=True)
class Stall:
    iteration: int
    fraction: float  # how much slower than the median: 0.07 = 7%


@dataclass
class Summary:
    """Everything the report says about one run, numbers in base units (None = blank)."""

    name: str
    label: str  # "BF16", "FP8 tensorwise +param-gather", ...
    precision: Optional[str]  # "bf16", "fp8", "fp4", "fp16", "fp32"; None without arguments
    seed: Optional[int]
    status: str  # one of status.LOG_STATUSES
    reason: str
    iterations_done: Optional[int]
    iterations_planned: Optional[int]
    runtime_s: Optional[float] = None  # sum of segment spans
    runtime_from: str = ""  # "timestamps", "sum of iteration times" or both
    downtime_s: Optional[float] = None  # between segments (crash to requeue), None if none
    segments: int = 0
    diverged_at: Optional[int] = None
    mock_data: bool = False
    launch_s: Optional[float] = None  # sidecar ended - started
    median_iter_ms: Optional[float] = None
    mean_iter_ms: Optional[float] = None  # mean of the same timed iterations
    max_iter_ms: Optional[float] = None  # the slowest timed iteration ...
    max_iteration: Optional[int] = None  # ... and its number
    stalls: list = field(default_factory=list)  # Stall, by iteration
    graph_warmup: int = 0  # leading iterations per launch left out for CUDA-graph capture
    peer_windows: list = field(default_factory=list)  # PeerWindow, PEER_RULES order
    timed_iterations: int = 0
    tokens_per_s_gpu: Optional[float] = None
    tflops_gpu: Optional[float] = None
    gpu: Optional[str] = None
    gpu_from: str = ""  # "sidecar" or "manifest"
    peak_tflops: Optional[float] = None
    mfu: Optional[float] = None  # fraction, 0..1
    peak_alloc_gb: Optional[float] = None
    peak_reserved_gb: Optional[float] = None
    min_loss: Optional[float] = None
    final_loss: Optional[float] = None
    smooth_window: Optional[int] = None
    val_loss: Optional[float] = None
    val_iteration: Optional[int] = None
    notes: list = field(default_factory=list)
    attention: str = ""  # the attention Transformer Engine ran, as its log names it (attention_text)
    baseline_recipe: bool = False  # the run's recipe is recipes.BASELINE (plain BF16)
    attempts: list = field(default_factory=list)  # runs.Attempt, oldest first

    @property
    def repeats(self) -> list:
        """The run's completed launches that started afresh, with a median iteration time
        (runs.Attempt, oldest first): the same configuration measured more than once."""
        return [a for a in self.attempts if a.median_iter_ms]

    @property
    def step_spread(self) -> Optional[float]:
        """How far apart the run's repeated launches ran: slowest / fastest median iteration
        time − 1 (0.014 = 1.4%); None with fewer than two."""
        times = [a.median_iter_ms for a in self.repeats]
        return max(times) / min(times) - 1 if len(times) >= 2 else None

    @property
    def speed_warning(self) -> str:
        """Why the run's step times are not stable ("" when they are): fewer than
        MIN_ITERATIONS_FOR_SPEED iterations or MIN_TIMED_FOR_SPEED timed ones."""
        if self.status in S.FAILED or self.iterations_done is None:
            return ""
        why = []
        if self.iterations_done < MIN_ITERATIONS_FOR_SPEED:
            why.append(f"{self.iterations_done} iterations (under {MIN_ITERATIONS_FOR_SPEED}: "
                       "too short for the peers' windows)")
        if self.timed_iterations < MIN_TIMED_FOR_SPEED:
            why.append(f"{self.timed_iterations} timed iterations (under {MIN_TIMED_FOR_SPEED})")
        return "; ".join(why)

    @property
    def failed(self) -> bool:
        """Diverged, crashed or unreadable: its figures are no valid comparison."""
        return self.status in S.FAILED


# --- labels --------------------------------------------------------------------------------


CUT_BEFORE_PRECISION = "unknown (arguments dump cut before its precision arguments)"


def precision(args: dict) -> Optional[str]:
    """Tensor-core precision of the run ("bf16", "fp8", "fp4", "fp16", "fp32"); None without arguments."""
    numerics = recipes.of_args(args)
    return numerics.precision if numerics else None


def recipe_label(args: dict) -> str:
    """The run's label (`recipes.Numerics.label`), e.g. `FP8 tensorwise +param-gather (hybrid)`."""
    numerics = recipes.of_args(args)
    return numerics.label if numerics else "unknown (no arguments dump)"


def shape(args: dict) -> Optional[tuple]:
    """The model/batch shape tuple (SHAPE_KEYS order), None where the dump lacks a key (a dump
    cut short); None as a whole without an arguments dump or with none of the keys (NeMo's
    `Using FP8` settings alone)."""
    values = tuple(arg_value(args, k) for k in SHAPE_KEYS) if args else ()
    return values if any(v is not None for v in values) else None


def shape_known(shape: Optional[tuple]) -> bool:
    """Whether every SHAPE_KEYS value of a shape is known."""
    return shape is not None and all(v is not None for v in shape)


def peak_tflops(gpu: Optional[str], prec: Optional[str]) -> Optional[float]:
    """Dense peak TFLOP/s of a GPU (device or target name) at a precision (`recipes.peak_tflops`)."""
    return recipes.peak_tflops(gpu, prec)


# --- small numeric helpers -----------------------------------------------------------------


def finite(values) -> list:
    return [v for v in values if v is not None and math.isfinite(v)]


def smoothing_window(n_finite: int) -> int:
    """10% of the finite loss values, at least 5, at most all of them."""
    return min(n_finite, max(5, math.ceil(n_finite / 10)))


class Curve(Sequence):
    """(iteration, value) points kept as two arrays, 16 bytes a point (a list of tuples takes
    about 100): a log of millions of iterations has a curve of millions of points. Reads as a
    sequence of (iteration, value) tuples and compares equal to a list of them."""

    def __init__(self):
        self.iterations = array("q")
        self.values = array("d")

    def append(self, point: tuple) -> None:
        try:
            self.iterations.append(point[0])
        except TypeError:  # x values that are no integers (a plot's seconds): kept as they are
            self.iterations = list(self.iterations)
            self.iterations.append(point[0])
        self.values.append(point[1])

    def __len__(self) -> int:
        return len(self.iterations)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(zip(self.iterations[i], self.values[i]))
        return self.iterations[i], self.values[i]

    def __iter__(self):
        return zip(self.iterations, self.values)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)


def smoothed(iterations: list, losses: list, window: int) -> Curve:
    """(iteration, trailing mean of the last `window` finite losses) once `window` exist."""
    out, buf, total = Curve(), deque(maxlen=window + 1), 0.0
    seen = 0
    for it, v in zip(iterations, losses):
        if v is None or not math.isfinite(v):
            continue
        buf.append(v)
        seen += 1
        total += v
        if seen > window:
            total -= buf[0]  # the value that just left the window
        if seen >= window > 0:
            out.append((it, total / window))
    return out


def interval_lengths(iterations: list, log_interval: Optional[int]) -> list:
    """Iterations each logged row covers (Megatron averages the time over the interval)."""
    out, prev = [], None
    for it in iterations:
        out.append(it - prev if prev is not None else (log_interval or 1))
        prev = it
    return out


def profiled_span(args: dict) -> Optional[tuple[int, int]]:
    """(first, last) iteration Megatron's --profile slowed: --profile-step-start to
    --profile-step-end, both included (with --use-pytorch-profiler the trace is exported when
    the end iteration starts: megatron/training/training.py); None without --profile."""
    if arg_value(args, "profile") is not True:
        return None
    start, end = arg_int(args, "profile_step_start"), arg_int(args, "profile_step_end")
    return (start, end) if start is not None and end is not None else None


def graph_warmup(args: dict) -> int:
    """Leading iterations of each launch that CUDA graphs keep from being timed: the
    `--cuda-graph-warmup-steps` eager iterations and the one that captures the graphs (0 when
    graphs are off). Megatron-Core 0.19 captures after the warm-up steps with
    `--cuda-graph-impl local|transformer_engine` or `--enable-cuda-graph`; the capture
    iteration can take many times a step (21.8 s against 5.3 s in the committed ablations)."""
    impl = arg_value(args, "cuda_graph_impl")
    on = (isinstance(impl, str) and impl not in ("none", "")) or arg_value(
        args, "enable_cuda_graph") is True
    if not on:
        return 0
    steps = arg_int(args, "cuda_graph_warmup_steps")
    return (steps if steps is not None and steps >= 0 else 3) + 1


def timed_rows(steps, args: dict, warmup: int) -> list:
    """`timed_mask` of a parsed log's step records, its settings read from its arguments; the
    warm-up is the larger of `warmup` and the CUDA-graph warm-up (graph_warmup)."""
    warmup = max(warmup, graph_warmup(args))
    return timed_mask(steps.iterations, steps.segment_starts, warmup, arg_int(args, "eval_interval"),
                      arg_int(args, "save_interval"), arg_int(args, "log_interval"),
                      profiled_span(args))


def timed_mask(iterations: list, segment_starts: list, warmup: int,
               eval_interval: Optional[int], save_interval: Optional[int],
               log_interval: Optional[int], profiled: Optional[tuple[int, int]] = None) -> list:
    """True for rows that count for iteration-time medians (see the module docstring);
    `profiled`: the (first, last) iterations a profiler slowed (`profiled_span`)."""
    starts = set(segment_starts)
    mask, prev, seg_lo = [], None, 0
    for it in iterations:
        lo = prev if prev is not None else it - (log_interval or 1)
        # Warm-up counts iterations, not logged lines (a line logs --log-interval of them):
        # a row is timed when every iteration it covers comes after the segment's first
        # `warmup` iterations.
        row_lo = lo
        if it in starts or prev is None:
            row_lo = seg_lo = it - (log_interval or 1)
        keep = row_lo - seg_lo >= warmup
        for k in (eval_interval, save_interval):
            # The row covers iterations lo+1..it; it follows a boundary b = m*k (m >= 1) when
            # lo <= b < it, i.e. the evaluation/save ran inside this row's interval.
            if k and k > 0 and (it - 1) // k >= 1 and (it - 1) // k > (lo - 1) // k:
                keep = False
        if profiled and lo < profiled[1] and it >= profiled[0]:  # rows cover lo+1..it
            keep = False
        mask.append(keep)
        prev = it
    return mask


def timed_iteration_count(mask: list, log_interval: Optional[int], iter_ms: list) -> int:
    """How many iterations the timed rows (`mask`, with a finite time) cover: each line logs
    --log-interval iterations (a gap between lines is lines missing, not a longer interval).
    With --log-interval 1 it is the number of timed rows."""
    interval = log_interval if log_interval and log_interval > 0 else 1
    return interval * sum(1 for keep, ms in zip(mask, iter_ms) if keep and step_time_ok(ms))


def _seconds_between(a: Optional[str], b: Optional[str]) -> Optional[float]:
    try:
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
    except (TypeError, ValueError):
        return None


# --- the per-run summary -------------------------------------------------------------------


def summarize(run: "LoggedRun", warmup: int) -> Summary:
    """All per-run figures for one `runs.LoggedRun`; never raises on content."""
    log, args = run.log, run.log.args
    st = log.status
    name, reason = with_exit_code(st.name, st.reason, run.sidecar.get("exit_code"),
                                  run.sidecar.get("stopped"), run.sidecar.get("stopped_reason"))
    # A dump cut before the arguments that decide the numerics tells no precision.
    numerics = None if log.args_cut and recipes.cut_before_numerics(args) else recipes.of_args(args)
    s = Summary(
        name=run.name,
        label=numerics.label if numerics else (
            CUT_BEFORE_PRECISION if args else recipe_label(args)),
        precision=numerics.precision if numerics else None,
        baseline_recipe=bool(numerics and numerics.baseline),
        seed=arg_int(args, "seed"),
        status=name,
        reason=reason,
        iterations_done=st.last_iteration,
        iterations_planned=st.planned_iterations,
        diverged_at=st.diverged_at,
        mock_data=mock_data(args),
        attempts=list(getattr(run, "attempts", [])),
        attention=attention_text(log.attention_backends),
    )
    for part in (_timing, _speed, _gpu_and_memory, _loss):
        try:
            part(s, run, warmup)
        except (ArithmeticError, ValueError, TypeError) as e:
            s.notes.append(f"some figures blank ({type(e).__name__}: {' '.join(str(e).split())})")
    s.notes = _notes(run) + s.notes
    for a in s.attempts:
        # A repeat: a completed fresh launch of the same setup as the launch shown (another
        # launch of the run with, say, fewer GPUs or layers is no measure of its spread).
        if (a.status == S.COMPLETED and not a.segment and a.log is not None
                and same_setup(a.log.args, args)):
            times = timed_iter_ms(a.log.steps, timed_rows(a.log.steps, a.log.args, warmup))
            a.median_iter_ms = statistics.median(times) if times else None
            a.mean_iter_ms = statistics.fmean(times) if times else None
    return s


# Arguments two launches must share for their step times to measure the same thing.
SETUP_KEYS = SHAPE_KEYS + ("micro_batch_size", "tensor_model_parallel_size",
                           "pipeline_model_parallel_size", "context_parallel_size")


def same_setup(a: dict, b: dict) -> bool:
    """Whether two arguments dumps have the same model/batch shape, parallel layout and
    recipe (SETUP_KEYS, recipe_label); False when either is missing."""
    return bool(a and b) and recipe_label(a) == recipe_label(b) and all(
        arg_value(a, k) == arg_value(b, k) for k in SETUP_KEYS)


def kernel_table(run: "LoggedRun") -> tuple[Optional[dict], str]:
    """The run's kernel table (fp8suite.logs.kernels) and, when it is not the shown log's own, the
    log it belongs to: a run shown by a launch without the profiler takes the table of its
    latest completed, profiled launch of the same setup (same_setup). (None, "") when none."""
    if run.kernel_table:
        return run.kernel_table, ""
    for a in reversed(run.attempts):
        if (a.kernel_table and a.status == S.COMPLETED and not a.segment and a.log is not None
                and same_setup(a.log.args, run.log.args)):
            return a.kernel_table, a.path
    return None, ""


def _timing(s: Summary, run: "LoggedRun", warmup: int) -> None:
    """Runtime = the sum of segment spans; downtime between segments apart."""
    segs = run.log.segments
    spans = [g.span_s for g in segs if g.span_s is not None and math.isfinite(g.span_s)]
    if spans:
        s.runtime_s = math.fsum(spans)
        s.runtime_from = " and ".join(sorted({g.span_from for g in segs if g.span_from}))
    s.segments = len(segs)
    gaps = [g.downtime_before_s for g in segs[1:] if g.downtime_before_s is not None]
    if gaps:
        s.downtime_s = math.fsum(gaps)
    side = run.sidecar
    s.launch_s = _seconds_between(_text(side.get("started")), _text(side.get("ended")))


def step_time_ok(ms: Optional[float]) -> bool:
    """Whether an iteration time (ms) can be a measurement: finite and at least the smallest
    normal float. Negative, zero, denormal (e.g. 5e-324), infinite and NaN times, which a
    garbled or hand-edited log can hold, would print as "-330.0 ms" or "inf tokens/s"."""
    return ms is not None and math.isfinite(ms) and ms >= sys.float_info.min


def timed_iter_ms(steps, mask: list) -> list:
    """The iteration times (ms) of a parsed log's rows that `mask` (timed_rows) keeps, those
    that pass `step_time_ok` only."""
    return [ms for ms, keep in zip(steps.column(ITER_MS), mask) if keep and step_time_ok(ms)]


def impossible_iter_ms(steps, mask: list) -> list:
    """The finite iteration times (ms) of the kept rows that `step_time_ok` refuses (zero,
    negative, denormal); the non-finite ones are already counted in the log's notes."""
    return [ms for ms, keep in zip(steps.column(ITER_MS), mask)
            if keep and ms is not None and math.isfinite(ms) and not step_time_ok(ms)]


def step_stats(iterations: list, times: list) -> tuple:
    """(median, mean, largest, its iteration, stalls) of timed iteration times (ms), stalls
    being the iterations slower than the median by more than STALL_FRACTION (Stall, in
    iteration order). ValueError when `times` is empty."""
    median = statistics.median(times)
    mean = statistics.fmean(times)
    at = max(range(len(times)), key=lambda i: times[i])
    stalls = [Stall(it, ms / median - 1) for it, ms in zip(iterations, times)
              if median > 0 and ms > median * (1 + STALL_FRACTION)]
    return median, mean, times[at], iterations[at], stalls


def peer_windows(steps) -> list:
    """The run's step time by each rule of PEER_RULES (PeerWindow), over all its logged finite
    iteration times (warm-up and evaluations included, as the peers' rules do)."""
    rows = [(it, ms) for it, ms in zip(steps.iterations, steps.column(ITER_MS)) if step_time_ok(ms)]
    (llmb, llmb_text), (bridge, bridge_text) = PEER_RULES
    lo, hi = LLMB_WINDOW
    inside = [(it, ms) for it, ms in rows if lo <= it <= hi]
    if {it for it, _ in inside} >= set(range(lo, hi + 1)):
        first = PeerWindow(llmb, llmb_text, statistics.fmean(ms for _, ms in inside), lo, hi,
                           len(inside))
    else:
        last = rows[-1][0] if rows else 0
        first = PeerWindow(llmb, llmb_text, None,
                           why=f"iterations {lo}-{hi} not all logged (the log ends at {last})")
    skip = math.floor(len(rows) * BRIDGE_SKIP)
    kept = rows[skip:]
    if kept and len(rows) >= 2:
        second = PeerWindow(bridge, bridge_text, statistics.fmean(ms for _, ms in kept),
                            kept[0][0], kept[-1][0], len(kept))
    else:
        second = PeerWindow(bridge, bridge_text, None, why="fewer than 2 logged iterations")
    return [first, second]


def _speed(s: Summary, run: "LoggedRun", warmup: int) -> None:
    args, steps = run.log.args, run.log.steps
    mask = timed_rows(steps, args, warmup)
    s.graph_warmup = graph_warmup(args)
    s.peer_windows = peer_windows(steps)
    rows = [(it, ms) for it, ms, keep in zip(steps.iterations, steps.column(ITER_MS), mask)
            if keep and step_time_ok(ms)]
    times = [ms for _, ms in rows]
    impossible = impossible_iter_ms(steps, mask)
    if impossible:
        n = len(impossible)
        s.notes.append(f"{n} iteration time{'s' if n > 1 else ''} of zero or less, or denormal "
                       f"(e.g. {impossible[0]!r} ms), left out of the step-time figures")
    s.timed_iterations = timed_iteration_count(mask, arg_int(args, "log_interval"),
                                               steps.column(ITER_MS))
    if not times:
        return
    (s.median_iter_ms, s.mean_iter_ms, s.max_iter_ms, s.max_iteration,
     s.stalls) = step_stats([it for it, _ in rows], times)
    tflops = finite(t for t, keep in zip(steps.column(TFLOPS), mask) if keep)
    s.tflops_gpu = statistics.median(tflops) if tflops else None
    gbs = arg_int(args, "global_batch_size") or _last(finite(steps.column(GBS)))
    seq = arg_int(args, "seq_length")
    world = arg_int(args, "world_size")
    if gbs and seq and world and s.median_iter_ms > 0:
        s.tokens_per_s_gpu = gbs * seq / (s.median_iter_ms / 1000) / world


def _gpu_and_memory(s: Summary, run: "LoggedRun", warmup: int) -> None:
    # GPU and MFU: the sidecar names the GPU the run had; the manifest the one it was meant for.
    side = run.sidecar
    env = side.get("environment") if isinstance(side.get("environment"), dict) else {}
    gpu = env.get("gpu")
    if isinstance(gpu, dict) and _text(gpu.get("name")):
        s.gpu, s.gpu_from = _text(gpu.get("name")), "sidecar"
    elif _text(run.manifest.get("gpu")):
        s.gpu, s.gpu_from = _text(run.manifest.get("gpu")), "manifest"
    s.peak_tflops = peak_tflops(s.gpu, s.precision)
    if s.peak_tflops and s.tflops_gpu is not None:
        s.mfu = s.tflops_gpu / s.peak_tflops
    # Memory: Megatron's "MB" are MiB (bytes / 2**20), so / 1024 gives GiB.
    mem = run.log.memory_peak_mb
    if MAX_ALLOCATED in mem:
        s.peak_alloc_gb = mem[MAX_ALLOCATED] / 1024
    if MAX_RESERVED in mem:
        s.peak_reserved_gb = mem[MAX_RESERVED] / 1024


def _loss(s: Summary, run: "LoggedRun", warmup: int) -> None:
    log, steps = run.log, run.log.steps
    its = steps.iterations
    losses = finite(steps.column(LOSS))
    if losses:
        s.min_loss = min(losses)
        s.smooth_window = smoothing_window(len(losses))
        # The last point of the same curve time-to-target walks, so a baseline always
        # reaches its own final smoothed loss. A diverged run has no valid final loss.
        curve = smoothed(its, steps.column(LOSS), s.smooth_window)
        if curve and s.status != S.DIVERGED:
            s.final_loss = curve[-1][1]
    vals = [v for v in log.validations if v.split == "validation" and VAL_LOSS in v.fields
            and math.isfinite(v.fields[VAL_LOSS])]
    if vals and s.status != S.DIVERGED:
        last = max(vals, key=lambda v: v.iteration)  # the final one when several share it
        last = [v for v in vals if v.iteration == last.iteration][-1]
        s.val_loss, s.val_iteration = last.fields[VAL_LOSS], last.iteration


_SIGNALS = {6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}


def with_exit_code(status: str, reason: str, code: object, stopped: object = None,
                   stopped_reason: object = None) -> tuple[str, str]:
    """(status, reason) once the launcher's exit code is known.

    A log that just stops says nothing about how the process ended; the sidecar does: the
    status the launcher stopped it with (`stopped`, e.g. "time-limit" when the run queue
    killed it at --time-limit; fp8suite.launch.sidecar.stopped), else its exit code: non-zero is a
    crash the log could not show (killed, segfault), zero a finished process whose log was cut.
    """
    # A log that stops, or shows only the signal, after the launcher stopped the run.
    if status in (S.TRUNCATED, S.CANCELLED) and stopped in S.LOG_STATUSES and stopped != S.TRUNCATED:
        return str(stopped), str(stopped_reason or reason)
    if not isinstance(code, int) or isinstance(code, bool) or status != S.TRUNCATED:
        return status, reason
    if code == 0:
        return status, reason + "; the process exited with code 0"
    if code in NAN_EXIT_CODES:
        return S.DIVERGED, (f"exit code {code}: Megatron's check of NaN/Inf results stopped "
                            f"training ({reason})")
    sig = -code if code < 0 else code - 128 if code > 128 else None
    how = f" ({_SIGNALS[sig]})" if sig in _SIGNALS else ""
    return "crashed", f"crashed: exit code {code}{how} with no error in the log ({reason})"


def _notes(run: "LoggedRun") -> list[str]:
    log = run.log
    notes = []
    if log.restarts:
        notes.append(f"{log.restarts} restart{'s' if log.restarts > 1 else ''}"
                     + (f", {log.repeated_iterations} repeated iterations replaced"
                        if log.repeated_iterations else ""))
    for exc in log.earlier_failures[:1]:
        notes.append(f"before a restart: {exc}")
    if log.args_cut:
        notes.append(f"arguments dump cut short (the log ends inside it): the arguments after "
                     f"{max(log.args) if log.args else 'its header'} are unknown")
    if log.garbled_lines:
        notes.append(f"{log.garbled_lines} garbled iteration line"
                     f"{'s' if log.garbled_lines > 1 else ''} skipped")
    for key, n in sorted(log.nonfinite.items()):
        notes.append(f"{n} non-finite {key}")
    code = run.sidecar.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        failed = log.status.name == S.CRASHED
        if code != 0 and log.status.name in (S.COMPLETED, S.TIME_LIMIT, S.EXIT_INTERVAL):
            notes.append(f"exit code {code} from the sidecar, but the log shows no crash")
        elif code == 0 and failed:
            notes.append("exit code 0 from the sidecar despite the crash in the log")
    if run.sidecar.get("interrupted") is True:
        notes.append("interrupted (Ctrl-C or TERM reached the launch script)")
    notes.extend(log.status.notes)
    notes.extend(run.notes)
    numerics = recipes.of_args(log.args)
    if numerics and numerics.fp8_attention:
        notes.extend(_fp8_attention_notes(log.attention_backends))
    return notes


def attention_text(backends: list) -> str:
    """The attention backends a log names, as text: "cuDNN fused attention, FP8 (TE sub-backend
    2)"; "" when the log names none (TE names them with NVTE_DEBUG=1 NVTE_DEBUG_LEVEL=1)."""
    parts = []
    for backend, detail in backends:
        if backend == "FusedAttention":
            kind = FUSED_SUB_BACKENDS.get(detail, "unknown kind")
            parts.append(f"cuDNN fused attention, {kind} (TE sub-backend {detail or '?'})")
        elif backend == "FlashAttention":
            parts.append(f"FlashAttention {detail}".strip())
        else:
            parts.append("unfused attention (PyTorch ops)")
    return "; ".join(parts)


def _fp8_attention_notes(backends: list) -> list[str]:
    """What a run that asked for FP8 attention (--fp8-dot-product-attention) shows it ran."""
    if not backends:
        return ["FP8 attention asked; the log does not name the attention Transformer Engine ran "
                "(NVTE_DEBUG=1 NVTE_DEBUG_LEVEL=1 names it): not shown to be FP8"]
    if any(b == ("FusedAttention", FP8_SUB_BACKEND) for b in backends):
        return []
    return [f"FP8 attention asked, but Transformer Engine ran {attention_text(backends)}: "
            "attention was not FP8"]


def _text(value) -> Optional[str]:
    return value if isinstance(value, str) and value.strip() else None


def _last(values: list) -> Optional[float]:
    return values[-1] if values else None
