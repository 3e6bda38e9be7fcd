"""How a Megatron log ended: the status of its last segment, and why, from the log alone.

Order of evidence (the first that applies decides; later ones only add notes):

1. Slurm's own lines: `*** JOB 1 ON node CANCELLED AT ... DUE TO TIME LIMIT ***` (time-limit),
   `DUE TO PREEMPTION` and plain cancellations (cancelled), `DUE TO NODE FAILURE` (crashed). A
   run that had finished all its iterations and printed `[after training is done]` stays
   completed. A plain cancellation after srun reported a task that failed (`srun: error:
   node-b: task 1: Exited with exit code 1`: srun's --kill-on-bad-exit cancels the other
   nodes' tasks) is that task's failure: the evidence below decides, and a crash names the
   node.
2. Megatron's end markers: `[after training is done]` (completed; a worker's exception after
   it, at teardown, is a note when every iteration was done), `[exiting program after N
   minutes]` (time-limit), `[exiting program at iteration N]` (exit-interval), `exiting program
   after receiving SIGTERM` (time-limit).
3. A worker's Python traceback (crashed, with the phase of training it hit).
4. CUDA out-of-memory and NCCL messages without a traceback (crashed).
5. The launcher's own tracebacks and reports: torchrun's ChildFailedError (crashed, with its
   exit code), its SignalException when the launcher itself was signalled (cancelled).
6. An exception line without a traceback (`ModuleNotFoundError: ...`) (crashed).
7. Otherwise the log just stops (running/truncated).

Whatever ended the run, a loss or gradient that went non-finite makes it `diverged`: Megatron
leaves a NaN `lm loss` out of the iteration line (it prints averages only when >= 0) while
`grad norm: nan` stays; 0.19's NaN checks print "found NaN in ..." and exit with code 16/17
without a traceback; a dynamic loss scale can collapse. The reason says from which iteration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from ..megatron import logvocab as V
from ..common import status as S
from ..megatron.logvocab import arg_int, arg_value


@dataclass
class Status:
    """How the log ended. `name` is one of `status.LOG_STATUSES`; `reason` is one line."""

    name: str
    reason: str
    last_iteration: Optional[int] = None
    planned_iterations: Optional[int] = None
    phase: str = ""  # for crashes: "at start-up", "during evaluation after iteration 20", ...
    exception: str = ""  # the full final exception line, when there is one
    context: list = field(default_factory=list)  # the log lines leading to the crash
    diverged_at: Optional[int] = None  # first iteration with a non-finite loss or gradient
    notes: list = field(default_factory=list)  # e.g. an abort at teardown after completion
    where: str = ""  # the node a task failed on, as srun reported it: "on node n2 (srun: ...)"


def last_iteration_before(buf: bytes, pos: int, start: int):
    """(iteration, offset) of the last iteration anchor before `pos`, or (None, start)."""
    p = pos
    while True:
        p = buf.rfind(b" iteration ", start, p)
        if p < 0:
            return None, start
        m = V.ANCHOR.match(buf, p)
        if m:
            return int(m.group(1)), p
        # "elapsed time per iteration (ms)" etc.: keep looking further back


def find_status(buf: bytes, seg_start: int, steps: Any, segments: list, planned: Optional[int],
                args: dict):
    """(Status of the last segment, [exception lines of crashes before the last restart])."""
    last_it = segments[-1].last_iteration if segments else None
    tracebacks = _tracebacks(buf, 0)
    earlier = [tb.exception for tb in tracebacks
               if tb.at < seg_start and tb.exception and not tb.launcher]
    # Training stops at whatever ends it, so end markers and fatal messages come after the
    # last iteration line; searching only from just before it keeps large logs fast. The
    # margin covers other ranks' output that lands a little before the last rank's line.
    _, last_at = last_iteration_before(buf, len(buf), seg_start)
    tail = max(seg_start, last_at - (64 << 10))
    status = _ending(buf, seg_start, tail, tracebacks, last_it, planned, args)
    if last_it is None and (where := iterations_elsewhere(args)):
        status.reason += f"; {where}"
        status.notes.append(where)
    div = _divergence(buf, steps, tail, args)
    if div is not None:
        at, what = div
        then = status.reason if status.reason.startswith(status.name) else \
            f"{status.name}: {status.reason}"
        status = Status(S.DIVERGED, f"{what}; the log then says {then}", last_it, planned,
                        status.phase, status.exception, status.context, at, status.notes)
    return status, earlier


def iterations_elsewhere(args: dict) -> str:
    """Where a log without iteration lines has them, '' when it should have them itself.

    Megatron prints the iteration line with `print_rank_last` (every release since 2021): on
    the last rank, which with pipeline parallelism is on the last pipeline stage; the rank-0
    log of such a run holds the arguments dump and the end markers but no iteration line."""
    pp = arg_int(args, "pipeline_model_parallel_size")
    if not pp or pp <= 1:
        return ""
    world = arg_int(args, "world_size")
    rank = f" (global rank {world - 1})" if world else ""
    return (f"no iteration lines in this log: with --pipeline-model-parallel-size {pp} "
            f"Megatron prints them on the last pipeline rank{rank}, whose output is another "
            "file")


# --- the ending ----------------------------------------------------------------------------


def _on_node(status: Status, task_failed: re.Match, planned: Optional[int]) -> Status:
    """The status of a step whose task failed on a node (srun's report `task_failed`): a crash
    named with that node; a log that shows nothing else is that task's failure."""
    node, tasks, how = (g.decode("utf-8", "replace") for g in task_failed.groups())
    where = f"on node {node} (srun: task {tasks}: {how})"
    if status.name == S.CRASHED:
        return replace(status, reason=f"{status.reason} {where}", where=where)
    if status.name in (S.TRUNCATED, S.CANCELLED):
        line = task_failed.group(0).decode("utf-8", "replace")
        return Status(S.CRASHED, f"crashed: a task failed {where}", status.last_iteration,
                      planned, "", "", [line], where=where)
    return status


def _ending(buf, seg_start, tail, tracebacks, last_it, planned, args,
            after_task_failed: bool = False) -> Status:
    done_at = buf.find(V.DONE, tail)
    all_done = planned is not None and last_it is not None and last_it >= planned
    worker = [tb for tb in tracebacks if tb.at >= seg_start and not tb.launcher]
    root = _root_cause(worker)

    def ended(name: str, reason: str, notes: Optional[list] = None) -> Status:
        return Status(name, reason, last_it, planned, notes=notes or [])

    def crashed(reason: str, at: int, exception: str, context: list) -> Status:
        phase = _crash_phase(buf, at, seg_start, args, done_at)
        return Status(S.CRASHED, f"crashed {phase}: {reason}", last_it, planned, phase,
                      exception, context)

    def progress() -> str:
        return f"{last_it if last_it is not None else 0}/{planned or '?'}"

    def completed(notes: Optional[list] = None) -> Status:
        if last_it is None:
            return ended(S.COMPLETED, f"training done (`{V.DONE_STR}`), no iteration line "
                         "in this log", notes)
        if planned is None or all_done:
            return ended(S.COMPLETED, f"completed {last_it}/{planned}" if planned
                         else "completed", notes)
        return ended(S.COMPLETED, f"training ended at iteration {last_it} of {planned}", notes)

    # 1. Slurm.
    slurm = _last(V.SLURM_CANCELLED.finditer(buf, tail))
    node_fail = V.SLURM_NODE_FAIL.search(buf, tail)
    task_failed = V.SRUN_TASK_FAILED.search(buf, tail)
    if task_failed is not None and node_fail is None and (slurm is None or not slurm.group(1)) \
            and not after_task_failed:
        return _on_node(_ending(buf, seg_start, tail, tracebacks, last_it, planned, args,
                                after_task_failed=True), task_failed, planned)
    if (slurm is not None or node_fail is not None) and not after_task_failed:
        due = slurm.group(1).decode().strip() if slurm is not None and slurm.group(1) else ""
        if done_at >= 0 and all_done:
            return completed(["Slurm cancelled the job after training was done"
                              + (f" ({due.lower()})" if due else "")])
        if due == "TIME LIMIT":
            return ended(S.TIME_LIMIT, f"Slurm cancelled the job at its time limit ({progress()})")
        if due == "NODE FAILURE" or (node_fail is not None and slurm is None):
            at = (node_fail or slurm).start()
            line = _line_at(buf, at)[1]
            return crashed(f"Slurm node failure ({V.strip_prefixes(line).strip(' *')})", at,
                           "", _lines_before(buf, at, 8) + [line])
        if due == "PREEMPTION":
            return ended(S.CANCELLED, f"Slurm preempted the job ({progress()})")
        text = f" due to {due.lower()}" if due else ""
        return ended(S.CANCELLED, f"Slurm cancelled the job{text} ({progress()})")

    # 2. Megatron's end markers.
    if done_at >= 0:
        late = [tb for tb in worker if tb.at > done_at and tb.exception]
        late_root = _root_cause(late)
        fatal = _fatal_message(buf, done_at)
        problem = late_root.exception if late_root else (fatal[1] if fatal else "")
        if problem:
            at = late_root.at if late_root else fatal[0]
            in_eval = "evaluation" in _crash_phase(buf, at, seg_start, args, done_at)
            if in_eval or (not all_done and planned is not None):
                return crashed(problem, at, problem, _lines_before(buf, at, 8))
        return completed([f"aborted at teardown after training was done: {problem}"]
                         if problem else None)
    if m := V.EXIT_DURATION.search(buf, tail):
        limit = args.get("exit_duration_in_mins", "?")
        return ended(S.TIME_LIMIT, f"exited after {float(m.group(1)):.1f} min "
                     f"(--exit-duration-in-mins {limit})")
    if m := V.EXIT_INTERVAL.search(buf, tail):
        return ended(S.EXIT_INTERVAL, f"exited at iteration {int(m.group(1))} "
                     f"(--exit-interval {args.get('exit_interval', '?')})")
    if m := V.EXIT_SIGNAL.search(buf, tail):
        return ended(S.TIME_LIMIT, f"exited on {m.group(1).decode()} (--exit-signal-handler, "
                     "usually the scheduler's time limit)")

    # 3. A worker's traceback.
    if root is not None:
        tb_lines = [line for off, line in _lines_of(buf, root.at, 400) if off < root.end]
        context = _lines_before(buf, root.at, 8) + tb_lines[:1] + ["  ..."] + tb_lines[-3:]
        return crashed(root.exception, root.at, root.exception, context)

    # 4. Fatal messages without a traceback.
    fatal = _fatal_message(buf, tail)
    if fatal is not None:
        at, line = fatal
        return crashed(line, at, line, _lines_before(buf, at, 8) + [line])

    # 4b. The host's OOM killer (Slurm's oom_kill lines, the kernel's): a SIGKILL with a cause.
    host_oom = _last(V.HOST_OOM.finditer(buf, tail))
    if host_oom is not None:
        at, line = _line_at(buf, host_oom.start())
        text = V.strip_prefixes(line).strip()
        return crashed(f"host memory exhausted, killed by the OOM killer ({text})", at, "",
                       _lines_before(buf, at, 8) + [line])

    # 5. The launcher.
    child = buf.find(V.CHILD_FAILED, tail)
    if child >= 0:
        elastic = V.ELASTIC_FAILED.search(buf, tail)
        code = V.CHILD_EXITCODE.search(buf, child)
        sig = V.CHILD_SIGNAL.search(buf, tail)
        detail = f"exitcode {code.group(1).decode()}" if code else "worker failed"
        if sig:
            detail += f", {sig.group(2).decode()}"
        if code and code.group(1) == b"-9":
            detail += ("; SIGKILL is often the host's OOM killer, but the log has no "
                       "oom_kill line")
        at, line = _line_at(buf, elastic.start() if elastic else child)
        bare = _bare_exception(buf, seg_start, at)
        reason = (f"{bare} (torchrun ChildFailedError, {detail})" if bare else
                  f"torchrun ChildFailedError ({detail}), no worker traceback in the log")
        return crashed(reason, at, bare, _lines_before(buf, at, 10) + [line])
    signalled = [tb for tb in tracebacks if tb.at >= tail and "SignalException" in tb.exception]
    if signalled:
        return ended(S.CANCELLED, f"the launcher was stopped by a signal ({progress()}): "
                     f"{V.strip_prefixes(signalled[-1].exception)}")

    # 6. An exception without a traceback.
    bare_at = _bare_exception_at(buf, seg_start)
    if bare_at is not None:
        at, text = bare_at
        return crashed(text, at, text, _lines_before(buf, at, 8) + [text])

    # 6b. A launch that failed before Megatron ran (no torch, no launcher, an import).
    if last_it is None:
        failed = _last(V.STARTUP_FAILURE.finditer(buf, seg_start))
        if failed is not None:
            text = V.strip_prefixes(failed.group(1).decode("utf-8", "replace")).strip()
            at = failed.start()
            return crashed(f"the launch failed before training: {text}", at, text,
                           _lines_before(buf, at, 8) + [text])

    # 7. The log just stops.
    if not re.search(rb"\S", buf):
        reason = "empty log"
    elif last_it is None and not args:
        reason = "no Megatron output recognised"
    elif last_it is None:
        reason = "log ends before the first iteration (no end marker)"
    else:
        reason = f"log ends after iteration {last_it} of {planned or '?'} (no end marker)"
    return ended(S.TRUNCATED, reason)


def _last(matches):
    out = None
    for out in matches:
        pass
    return out


def _fatal_message(buf: bytes, start: int):
    """(offset, cleaned line) of the first NCCL error, else CUDA OOM message, after `start`."""
    nccl = [p for p in (buf.find(lit, start) for lit in V.NCCL) if p >= 0]
    oom = buf.find(V.OOM, start)
    for hit in (min(nccl, default=-1), oom):
        if hit >= 0:
            at, line = _line_at(buf, hit)
            return at, V.strip_prefixes(line).strip()
    return None


def _bare_exception_at(buf: bytes, start: int, end: Optional[int] = None):
    """(offset, text) of the last exception line printed without a traceback, or None."""
    end = len(buf) if end is None else end
    m = _last(V.BARE_EXCEPTION.finditer(buf, max(start, end - (256 << 10)), end))
    if m is None:
        return None
    text = V.strip_prefixes(m.group(1).decode("utf-8", "replace")).strip()
    if any(name in text for name in V.LAUNCHER_EXCEPTIONS):
        return None
    return m.start(), text


def _bare_exception(buf: bytes, start: int, end: int) -> str:
    found = _bare_exception_at(buf, start, end)
    return found[1] if found else ""


# --- divergence ----------------------------------------------------------------------------


def _clean(col: list) -> bool:
    """True when a column holds only finite numbers (checked at C speed)."""
    try:
        return math.isfinite(sum(col))
    except (TypeError, OverflowError):
        return False


def _divergence(buf: bytes, steps: Any, tail: int, args: dict):
    """(first bad iteration or None, one line why) when the run went non-finite, else None.

    Columns without a problem are cleared at C speed (a finite sum, min/max); only a column
    with one is walked row by row.
    """
    its = steps.iterations
    n = len(its)
    found: list = []  # (iteration, text)
    loss = steps.column(V.LOSS)
    if not _clean(loss):
        present = [i for i, v in enumerate(loss) if v is not None]
        if present:
            first_ok = present[0]
            # A skipped step (fp16 overflow) has no loss by design: not a NaN left out.
            skipped = steps.column(V.SKIPPED_ITERS)
            bad = [i for i, v in enumerate(loss)
                   if (v is None and i > first_ok and not (skipped[i] or 0) > 0)
                   or (v is not None and not math.isfinite(v))]
            if bad:
                missing = all(loss[i] is None for i in bad)
                how = "missing (NaN)" if missing else "non-finite"
                found.append((its[bad[0]], f"{V.LOSS} {how} from iteration {its[bad[0]]} on "
                              f"({len(bad)} of {n} logged iterations)"))
    for key in (V.GRAD_NORM, V.LOSS_SCALE):
        col = steps.column(key)
        if _clean(col):
            continue
        bad = [i for i, v in enumerate(col) if v is not None and not math.isfinite(v)]
        if bad:
            found.append((its[bad[0]], f"{key} {_spell(col[bad[0]])} from iteration "
                          f"{its[bad[0]]} ({len(bad)} of {n} logged iterations)"))
    collapse = _scale_collapse(steps, args)
    if collapse is not None:
        found.append(collapse)
    nan_iters = steps.column(V.NAN_ITERS)
    counted = nan_iters if _clean(nan_iters) else [v for v in nan_iters if v is not None]
    if counted and max(counted) > 0:
        bad = [i for i, v in enumerate(nan_iters) if v is not None and v > 0]
        found.append((its[bad[0]], f"{V.NAN_ITERS} {nan_iters[bad[0]]:g} at iteration "
                      f"{its[bad[0]]}"))
    m = V.NAN_MESSAGE.search(buf, tail)
    if m is not None:
        line_start, line = _line_at(buf, m.start())
        it_m = V.NAN_ITERATION.search(buf, line_start, line_start + len(line.encode()) + 1)
        at = int(it_m.group(1)) if it_m else None
        text = m.group(0).decode("utf-8", "replace").strip().rstrip("')!")
        codes = [int(c) for c in V.CHILD_EXITCODE.findall(buf, tail)
                 + V.ELASTIC_FAILED.findall(buf, tail)]
        code = next((c for c in codes if c in V.NAN_EXIT_CODES), None)
        where = f" at iteration {at}" if at is not None else ""
        found.append((at, f"Megatron's NaN check: {text}{where}"
                      + (f" (exit code {code})" if code is not None else "")))
    if m is None:
        # Megatron's result validation exits with 16/17 (rerun_state_machine) even when its
        # message did not reach the log: torchrun's report still carries the code.
        codes = [int(c) for c in V.CHILD_EXITCODE.findall(buf, tail)
                 + V.ELASTIC_FAILED.findall(buf, tail)]
        code = next((c for c in codes if c in V.NAN_EXIT_CODES), None)
        if code is not None:
            at = its[-1] + 1 if its else None
            found.append((at, f"exit code {code}: Megatron's check of NaN/Inf results stopped "
                              f"training" + (f" in iteration {at}" if at else "")))
    if not found:
        return None
    found.sort(key=lambda f: (f[0] is None, f[0] if f[0] is not None else 0))
    return found[0][0], "; ".join(text for _, text in found[:2])


def _scale_collapse(steps: Any, args: dict):
    """(iteration, why) when the dynamic loss scale collapsed, else None.

    The fp16 scaler halves its scale on every overflow and skips that step; at start-up it
    searches down from --initial-loss-scale (2^32) and that is healthy. It has collapsed only
    when it reaches its minimum (--min-loss-scale, default 1.0) from above, or when it keeps
    falling while every step is skipped up to the end of the log (at least 3 lines, after a
    real step: training no longer moves)."""
    scale = steps.column(V.LOSS_SCALE)
    skipped = steps.column(V.SKIPPED_ITERS)
    its = steps.iterations
    floor = arg_value(args, "min_loss_scale")
    floor = float(floor) if isinstance(floor, (int, float)) and not isinstance(floor, bool) \
        else 1.0
    top = None
    for i, v in enumerate(scale):
        if v is None or not math.isfinite(v):
            continue
        if top is not None and (v <= 0 < top or v <= floor < top):
            return its[i], (f"{V.LOSS_SCALE} collapsed from {top:g} to {v:g} (its minimum "
                            f"is {floor:g}) by iteration {its[i]}")
        top = v if top is None else max(top, v)
    # A trailing run of fully skipped lines whose scale keeps falling.
    run = 0
    for i in range(len(scale) - 1, -1, -1):
        if not ((skipped[i] or 0) > 0 and scale[i] is not None):
            break
        if i + 1 < len(scale) and run and not scale[i] > scale[i + 1]:
            break
        run += 1
    start = len(scale) - run
    real_before = any((skipped[j] or 0) == 0 for j in range(start))
    if run >= 3 and real_before:
        return its[start], (f"{V.LOSS_SCALE} kept falling from {scale[start]:g} to "
                            f"{scale[-1]:g} with every step skipped from iteration "
                            f"{its[start]} on")
    return None


def _spell(v: float) -> str:
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


# --- tracebacks ----------------------------------------------------------------------------


@dataclass
class _Traceback:
    at: int  # offset of the "Traceback" line
    end: int  # offset just past the exception line
    exception: str  # "ValueError: message" ("" when the log ends inside the traceback)
    launcher: bool = False  # torchrun's own traceback (ChildFailedError, SignalException)
    chained_to_next: bool = False
    frames: list = field(default_factory=list)


def _tracebacks(buf: bytes, start: int) -> list:
    """Every Python traceback from offset `start`, with its final exception line."""
    out = []
    pos = buf.find(V.TRACEBACK, start)
    while pos >= 0:
        line_start = buf.rfind(b"\n", 0, pos) + 1
        head = buf[line_start:pos].decode("utf-8", "replace")
        prefix = V.prefix_of(head)
        exception, end, frames = _follow(buf, pos, prefix)
        if not exception and prefix:  # prefixes that vary from line to line
            exception, end, frames = _follow(buf, pos, "")
        launcher = any(n in exception for n in V.LAUNCHER_EXCEPTIONS) or any(
            f in fr for fr in frames for f in V.LAUNCHER_FRAMES)
        out.append(_Traceback(line_start, end, exception, launcher, frames=frames))
        pos = buf.find(V.TRACEBACK, end if exception else pos + 1)
    # Python prints chained exceptions as consecutive tracebacks joined by a marker line.
    for a, b in zip(out, out[1:]):
        between = buf[a.end:b.at].decode("utf-8", "replace")
        if any(marker in between for marker in V.CHAINED) and len(between) < 4096:
            a.chained_to_next = True
    return out


def _follow(buf: bytes, pos: int, prefix: str):
    """(exception line, offset past it, frame lines) of the traceback at `pos`, following only
    lines that start with `prefix` (one rank's lines among several) when it is not empty."""
    frames = []
    for off, line in _lines_of(buf, pos, 2000)[1:]:
        if prefix and not line.startswith(prefix):
            continue
        body = line[len(prefix):] if prefix else V.strip_prefixes(line)
        if not body.strip():
            continue
        if body[0] in " \t":
            frames.append(body)
            continue
        if V.EXCEPTION_LINE.match(body.rstrip()):
            return V.strip_prefixes(body.strip()), off + len(line), frames
    return "", len(buf), frames


def _root_cause(tracebacks: list):
    """The traceback that explains the crash: the first one with an exception, followed to
    the end of its exception chain."""
    i = 0
    while i < len(tracebacks):
        tb = tracebacks[i]
        while tb.chained_to_next and i + 1 < len(tracebacks):
            i += 1
            tb = tracebacks[i]
        if tb.exception:
            return tb
        i += 1
    return None


def _crash_phase(buf, crash_at, seg_start, args, done_at) -> str:
    """Where in training a crash happened."""
    last_it, last_at = last_iteration_before(buf, crash_at, seg_start)
    if 0 <= done_at < crash_at:
        if V.EVALUATING.search(buf, done_at, crash_at):
            return "after training, during the final evaluation"
        return "after training"
    if last_it is None:
        started = buf.rfind(V.TRAINING_STARTS, max(seg_start, 0), crash_at) >= 0
        return "in the first training step" if started else "at start-up"
    between = buf[last_at:crash_at]
    eval_interval = arg_int(args, "eval_interval")
    save_interval = arg_int(args, "save_interval")
    validated = re.search(rb"validation loss at iteration +%d\b" % last_it, between)
    if V.EVALUATING.search(between) and not validated:
        return f"during evaluation after iteration {last_it}"
    if eval_interval and last_it % eval_interval == 0 and not validated:
        # Megatron evaluates right after logging a multiple of --eval-interval; 0.19 prints
        # nothing before the validation line, so this is the only sign of an evaluation.
        return f"during evaluation after iteration {last_it}"
    if V.SAVING in between and V.SAVED not in between.split(V.SAVING)[-1]:
        return f"during the checkpoint save after iteration {last_it}"
    if save_interval and last_it % save_interval == 0 and V.SAVED not in between:
        return f"during the checkpoint save after iteration {last_it}"
    return f"in iteration {last_it + 1}"


# --- lines ---------------------------------------------------------------------------------


def _lines_of(buf: bytes, start: int, limit: int):
    """Up to `limit` decoded lines from offset `start`, with their start offsets."""
    out = []
    pos = start
    while pos < len(buf) and len(out) < limit:
        nl = buf.find(b"\n", pos)
        nl = len(buf) if nl < 0 else nl
        out.append((pos, buf[pos:nl].decode("utf-8", "replace").rstrip("\r")))
        pos = nl + 1
    return out


def _lines_before(buf: bytes, pos: int, count: int) -> list:
    """The `count` lines ending just before offset `pos`."""
    start = pos
    for _ in range(count):
        if start <= 0:
            break
        start = buf.rfind(b"\n", 0, start - 1) + 1
    text = buf[start:pos].decode("utf-8", "replace")
    return [line.rstrip("\r") for line in text.split("\n")[:count] if line.strip()]


def _line_at(buf: bytes, pos: int):
    """(start offset, decoded text) of the line containing offset `pos`."""
    start = buf.rfind(b"\n", 0, pos) + 1
    end = buf.find(b"\n", pos)
    return start, buf[start:len(buf) if end < 0 else end].decode("utf-8", "replace").rstrip()
