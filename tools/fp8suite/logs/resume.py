"""One run from several logs: launches that continued from a checkpoint, stitched together.

A launch cut short (`--exit-duration-in-mins`, Slurm's wall time, a killed job) and launched
again with `--save`/`--load` on the same checkpoint folder continues where its last save was.
Megatron-Core says so in its logs (`megatron/training/checkpointing.py`; the words are in
`logvocab`):

* the earlier launch: `successfully saved checkpoint from iteration     100 to DIR [ ... ]`,
  after which it may log iterations 101, 102, ... that are lost when it dies;
* the later launch: `successfully loaded checkpoint from DIR [ ... ] at iteration 100`, and its
  first logged iteration is 101.

Chaining (`predecessors`, `chain`): an attempt that loaded a checkpoint at iteration N > 0
continues the latest earlier attempt of the same run that saved one at iteration N (in the same
checkpoint folder, when both lines name one); that attempt may itself continue an earlier one,
so a chain has any number of segments. An attempt whose loaded iteration no earlier attempt
saved (a checkpoint from elsewhere) starts a chain; `unmatched_load` says so.

Stitching (`stitch`): the chain is one run.

* steps: each attempt's iterations up to the iteration the next one loaded (what it logged past
  its last save was lost), then the next attempt's; the later attempt wins per iteration;
* segments: each log's, in order (one per launch), with the downtime between launches measured
  as `logparse` measures it between launches in one log (from the previous launch's last
  iteration line to the start of the next one's first iteration; none when the clock went
  back); runtime = the sum of the spans (downtime excluded);
* status, arguments, planned iterations: the last attempt's, except that a loss or gradient
  that went non-finite in an earlier segment's kept iterations makes the run diverged (as in
  one log); a divergence only in lost iterations does not count; peak memory: the largest over
  all attempts;
* validations: each attempt's up to the iteration the next one loaded;
* restarts, repeated and garbled lines: those inside each log (the resumes are the segments);
  earlier failures: each earlier attempt's crash, if it crashed; checkpoints loaded: the first
  attempt's (where the run itself started), saved: all.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from typing import Optional

from ..common import status as S
from .parse import ParsedLog, Steps


def resumed_at(log: ParsedLog) -> Optional[tuple]:
    """(iteration N, checkpoint folder) of the checkpoint the log's training began from, when
    N > 0: its first load line, unless the log's first segment starts at or before N (a fresh
    first launch; a later launch in the same log loaded). None for a log that started fresh."""
    if not log.checkpoint_loads:
        return None
    it, where = log.checkpoint_loads[0]
    if it <= 0 or (log.segments and log.segments[0].first_iteration <= it):
        return None
    return it, where


def _same_folder(a: str, b: str) -> bool:
    """Whether two printed checkpoint folders are one: equal once normalised, or one a trailing
    part of the other (a relative --load beside an absolute --save). Unknown is the same."""
    if not a or not b:
        return True
    a, b = os.path.normpath(a), os.path.normpath(b)
    return a == b or a.endswith(os.sep + b) or b.endswith(os.sep + a)


def predecessors(logs: list) -> list:
    """For each attempt (oldest first), the index of the attempt it continues, or None.

    Attempt j continues i < j when j loaded a checkpoint at iteration N > 0 and i is the latest
    earlier attempt that saved one at N (in the same folder)."""
    out: list = []
    for j, log in enumerate(logs):
        load = resumed_at(log)
        found = None
        if load is not None:
            it, where = load
            for i in range(j - 1, -1, -1):
                if any(n == it and _same_folder(d, where) for n, d in logs[i].checkpoint_saves):
                    found = i
                    break
        out.append(found)
    return out


def chain(preds: list, j: int) -> list:
    """Indices of the attempts attempt j ends, oldest first (`[j]` when it continues none)."""
    out = [j]
    while preds[out[0]] is not None and preds[out[0]] not in out:
        out.insert(0, preds[out[0]])
    return out


def unmatched_load(log: ParsedLog) -> str:
    """The note on a log that begins a run (continues no earlier attempt) but resumed from a
    checkpoint, which no earlier log of the run saved; "" for a log that started fresh."""
    load = resumed_at(log)
    if load is None:
        return ""
    it, where = load
    return (f"resumed from a checkpoint at iteration {it} ({where or 'folder not printed'}) "
            f"that no earlier log of this run saved; its iterations start at {it + 1}")


def stitch(logs: list) -> tuple:
    """(one ParsedLog for the chain, lost iterations): `logs` are the chain's parsed logs,
    oldest first; lost iterations = rows that earlier attempts logged past the iteration the
    next attempt loaded (left out; the next attempt's rows stand)."""
    cuts = [resumed_at(nxt)[0] for nxt in logs[1:]] + [None]
    steps, lost = _merged_steps(logs, cuts)
    segments = _merged_segments(logs)
    last = logs[-1]
    status = _status(logs, cuts, steps)
    earlier = []
    for log in logs[:-1]:
        earlier += log.earlier_failures
        if log.status.name == S.CRASHED:
            earlier.append(log.status.exception or log.status.reason)
    earlier += last.earlier_failures
    memory: dict = {}
    for log in logs:
        for key, mib in log.memory_peak_mb.items():
            memory[key] = max(mib, memory.get(key, mib))
    merged = dataclasses.replace(
        last, size_bytes=sum(log.size_bytes for log in logs), steps=steps,
        validations=[v for log, cut in zip(logs, cuts) for v in log.validations
                     if cut is None or v.iteration <= cut],
        memory_peak_mb=memory, args_dumps=sum(log.args_dumps for log in logs), status=status,
        restarts=sum(log.restarts for log in logs),
        repeated_iterations=sum(log.repeated_iterations for log in logs),
        garbled_lines=sum(log.garbled_lines for log in logs), earlier_failures=earlier,
        segments=segments, checkpoint_loads=logs[0].checkpoint_loads,
        checkpoint_saves=[c for log in logs for c in log.checkpoint_saves])
    return merged, lost


def _merged_segments(logs: list) -> list:
    """Every log's segments in order; the downtime before each log's first one measured from
    the previous log's last iteration line, as `logparse` does between launches in one log."""
    out: list = []
    for log in logs:
        for n, seg in enumerate(log.segments):
            seg = dataclasses.replace(seg)
            if n == 0 and out:
                seg.downtime_before_s = None
                prev_end = out[-1].end_s
                if prev_end is not None and seg.start_s is not None and seg.start_s >= prev_end:
                    seg.downtime_before_s = seg.start_s - prev_end
            out.append(seg)
    return out


def _status(logs: list, cuts: list, steps: Steps):
    """The last attempt's status; diverged instead when an earlier attempt's loss or gradient
    went non-finite in iterations the run kept (before the checkpoint the next one loaded)."""
    last = logs[-1].status
    if last.last_iteration is None and steps.iterations:
        # It loaded and stopped before its first iteration: the run got as far as it kept.
        last = dataclasses.replace(last, last_iteration=steps.iterations[-1])
    if last.name == S.DIVERGED:
        return last
    for log, cut in zip(logs[:-1], cuts):
        st = log.status
        if st.name == S.DIVERGED and st.diverged_at is not None and st.diverged_at <= cut:
            what = st.reason.split("; the log then says ")[0]
            then = last.reason if last.reason.startswith(last.name) else \
                f"{last.name}: {last.reason}"
            return dataclasses.replace(
                last, name=S.DIVERGED, diverged_at=st.diverged_at,
                reason=f"{what}; the run was resumed from a later checkpoint and then says "
                       f"{then}")
    return last


def _merged_steps(logs: list, cuts: list) -> tuple:
    """(Steps over the chain, rows dropped past a cut): the later attempt wins per iteration."""
    # Each log's rows up to its cut (iterations ascend within a log's Steps).
    kept = [bisect.bisect_right(log.steps.iterations, cut) if cut is not None
            else len(log.steps.iterations) for log, cut in zip(logs, cuts)]
    lost = sum(len(log.steps.iterations) - n for log, n in zip(logs, kept))
    keys: list = []
    for log in logs:
        keys.extend(key for key in log.steps.keys() if key not in keys)
    spans = [(log.steps.iterations[0], log.steps.iterations[n - 1])
             for log, n in zip(logs, kept) if n]
    if all(a[1] < b[0] for a, b in zip(spans, spans[1:])):
        # The usual chain: each attempt's kept rows come after the previous one's, so the
        # columns are slices laid end to end.
        order = [it for log, n in zip(logs, kept) for it in log.steps.iterations[:n]]
        timestamps = [log.steps.timestamp(i) for log, n in zip(logs, kept) for i in range(n)]
        columns = {key: [v for log, n in zip(logs, kept) for v in log.steps.column(key)[:n]]
                   for key in keys}
        starts = {s for log, n in zip(logs, kept) if n
                  for s in log.steps.segment_starts if s <= log.steps.iterations[n - 1]}
    else:
        # A log that went back below an earlier one's rows (a restart inside it from an older
        # checkpoint): the later row wins, iteration by iteration.
        origin: dict = {}  # iteration -> (attempt, row)
        for k, (log, n) in enumerate(zip(logs, kept)):
            for i, it in enumerate(log.steps.iterations[:n]):
                origin[it] = (k, i)
        order = sorted(origin)
        picks = [origin[it] for it in order]
        per_log = {key: [log.steps.column(key) for log in logs] for key in keys}
        columns = {key: [per_log[key][k][i] for k, i in picks] for key in keys}
        timestamps = [logs[k].steps.timestamp(i) for k, i in picks]
        starts = {s for k, log in enumerate(logs) for s in log.steps.segment_starts
                  if origin.get(s, (None,))[0] == k}
    steps = Steps(order, timestamps, columns)
    # Where a warm-up starts again: each attempt's first iteration and its own restarts.
    steps.segment_starts = order[:1] + sorted(starts - set(order[:1]))
    return steps, lost
