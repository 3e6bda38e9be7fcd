"""Check what a run sent to W&B and TensorBoard against its training log.

Megatron writes each logged iteration's scalars to TensorBoard (`--tensorboard-dir`) and W&B
(`--wandb-project`, offline without an API key) under its own names: `lm loss` per iteration
and, with `--log-timers-to-tensorboard`, `iteration-time` in seconds (not for the first
iteration of a launch). The launch scripts put them under the run's log folder:

    <log dir>/wandb/wandb/offline-run-<time>-<id>/run-<id>.wandb   one per launch (W&B offline)
    <log dir>/tensorboard/<run>/events/events.out.tfevents.*        one file per launch
                                   (logs written before this layout: <log dir>/tensorboard/<run>/)

`check_dir(log_dir)` reads both with the tools' own readers (wandb's record store and
tensorboard's EventAccumulator; both optional dependencies: `pip install -e '.[tracking]'`)
and compares, for every run log in the folder, each iteration's `lm loss` and iteration time
with the log's line: the log prints the loss with 7 significant digits and the time in ms
with one decimal, so values agree when within that rounding. Later launches of a run (a
resume) replace the iterations they repeat, as in the report.

One difference is Megatron's own: the log line after a launch's first iteration averages the
loss over that line's interval *and* the first iteration (megatron/training/training.py,
`training_log`: "On first iteration, log stats but don't reset accumulators"), while the
trackers get each iteration's own loss. The check expects that mean there.

Errors: `UsageError` (one line) when the folder has no logs or a reader is not installed.
"""

from __future__ import annotations

import fnmatch
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..megatron import logvocab as V
from ..common import paths
from ..common.errors import UsageError
from ..logs.runs import LoggedRun, load_runs

LOSS = V.LOSS
"""Megatron's TensorBoard/W&B name of the training loss (the log's `lm loss`)."""
ITERATION_TIME = "iteration-time"
"""Megatron's TensorBoard/W&B name of the time per iteration, in seconds."""

LOSS_RTOL = 1e-6
"""The log's `lm loss: 6.487388E-01` keeps 7 significant digits: half a unit of the last one
is at most 5e-7 of the value."""
TIME_ATOL_MS = 0.05 + 1e-6
"""The log's `elapsed time per iteration (ms): 1723.9` is rounded to 0.1 ms."""


@dataclass
class Series:
    """One metric of one run as a tracker holds it and as the log prints it."""

    name: str
    log_steps: int = 0  # iterations whose log line has the metric
    found: int = 0  # of those, how many the tracker holds
    differing: list = field(default_factory=list)  # [(iteration, log value, tracker value)]

    @property
    def ok(self) -> bool:
        return self.log_steps > 0 and self.found == self.log_steps and not self.differing


@dataclass
class RunCheck:
    """One run's check against one tracker ("W&B" or "TensorBoard")."""

    run: str
    tracker: str
    source: str  # the files read, relative to the log folder
    series: list  # [Series]: lm loss, iteration time
    problem: str = ""  # why nothing could be compared ("no offline run named ...")

    @property
    def ok(self) -> bool:
        return not self.problem and all(s.ok for s in self.series)


WANDB_READER = ">=0.17,<0.30"
"""The wandb versions whose offline-run reader this module uses (setup.py's tracking extra)."""


def wandb_history(run_file: Path) -> tuple[str, float, dict]:
    """(run name, start time in s since the epoch, {metric: {step: value}}) from one W&B
    offline run file (`run-<id>.wandb`).

    Reads the records with wandb's own store reader (`wandb.sdk.internal.datastore`, in wandb
    0.17-0.29; 0.30 removed it); raises UsageError when wandb is missing or has no such reader."""
    try:
        with warnings.catch_warnings():  # wandb's own pydantic models warn on import
            warnings.simplefilter("ignore")
            import wandb
            from wandb.proto import wandb_internal_pb2 as pb
    except ImportError as e:
        raise UsageError(f"reading W&B offline runs needs wandb ({e}): pip install -e '.[tracking]'")
    try:
        from wandb.sdk.internal.datastore import DataStore
    except ImportError:
        raise UsageError(f"wandb {getattr(wandb, '__version__', '?')} has no offline-run reader "
                         f"(wandb.sdk.internal.datastore, removed in wandb 0.30): "
                         f"pip install 'wandb{WANDB_READER}'") from None
    store = DataStore()
    store.open_for_scan(str(run_file))
    name, started, history = "", 0.0, {}
    while (data := store.scan_data()) is not None:
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            name = record.run.display_name
            started = record.run.start_time.seconds + record.run.start_time.nanos / 1e9
        elif kind == "history":
            step = record.history.step.num
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    history.setdefault(key, {})[step] = json.loads(item.value_json)
    return name, started, history


def tensorboard_scalars(run_dir: Path) -> dict:
    """{tag: {step: value}} from the event files of one folder, read by tensorboard's
    EventAccumulator (a later launch's events replace the steps it repeats). Raises
    UsageError when tensorboard is not installed."""
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
    except ImportError as e:
        raise UsageError(f"reading TensorBoard event files needs tensorboard ({e}): "
                         "pip install -e '.[tracking]'")
    acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def log_series(run: LoggedRun) -> tuple:
    """({metric: {iteration: value}}, launch starts) of one run as the report reads it (its
    launches stitched, later ones winning): `lm loss` as printed, iteration time in ms; launch
    starts are the first iteration of every launch (each log, and each restart inside one)."""
    steps = run.log.steps
    out: dict = {}
    for key, metric in ((V.LOSS, LOSS), (V.ITER_MS, ITERATION_TIME)):
        out[metric] = {it: value for it, value in zip(steps.iterations, steps.column(key))
                       if value is not None}
    return out, sorted(set(steps.segment_starts))


def _expected_loss(it: int, previous: Optional[int], tracked: dict, starts: set) -> Optional[float]:
    """The loss the log line at `it` should show given the tracker's per-iteration values:
    the tracker's own, or, for the first line after a launch's first iteration (`previous`, the
    log's line before this one, is a launch start), the mean from that first iteration to `it`
    (see the module doc). None when the tracker lacks a value."""
    span = range(previous, it + 1) if previous in starts else [it]
    if any(i not in tracked for i in span):
        return None
    return sum(tracked[i] for i in span) / len(span)


def compare(run: str, tracker: str, source: str, logged: dict, tracked: dict,
            starts: list = ()) -> RunCheck:
    """Compare one run's log series with a tracker's ({metric: {step: value}}, iteration time
    in seconds as Megatron writes it). `starts`: the first iteration of each launch, for which
    Megatron writes no time, and after which the log averages the loss (module doc). Every
    other logged value must be there and agree."""
    series = []
    for metric in (LOSS, ITERATION_TIME):
        s = Series(metric)
        have = tracked.get(metric, {})
        values = logged.get(metric, {})
        launch_starts = set(starts)
        previous = None
        for it, value in sorted(values.items()):
            if metric == ITERATION_TIME:
                if it in launch_starts:
                    continue
                got = have[it] * 1000.0 if it in have else None
            else:
                got = _expected_loss(it, previous, have, launch_starts)
                previous = it
            s.log_steps += 1
            if got is None:
                continue
            s.found += 1
            if not _agree(metric, value, got):
                s.differing.append((it, value, got))
        series.append(s)
    return RunCheck(run, tracker, source, series)


def _agree(metric: str, log_value: float, tracked: float) -> bool:
    if math.isnan(log_value) or math.isnan(tracked):
        return math.isnan(log_value) and math.isnan(tracked)
    if metric == LOSS:
        return abs(log_value - tracked) <= LOSS_RTOL * max(abs(log_value), abs(tracked)) + 1e-12
    return abs(log_value - tracked) <= TIME_ATOL_MS


def check_dir(log_dir: Path, only: Optional[list] = None) -> list:
    """One RunCheck per (run, tracker) for every run log in `log_dir` (see the module doc), or
    for the runs `only` names (names or globs, as run.py's --only).

    Raises UsageError for a missing folder, one without logs or trackers, or an entry of `only`
    that matches no log there.
    """
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise UsageError(f"{log_dir}: no such folder")
    logs = sorted(p for p in log_dir.glob("*.log") if p.is_file())
    if not logs:
        raise UsageError(f"{log_dir}: no training logs (*.log) here")
    if only:
        names = sorted({p.name.split(".")[0] for p in logs})  # RUN.log, RUN.1.log: one run
        unknown = [o for o in only if not fnmatch.filter(names, o)]
        if unknown:
            raise UsageError(f"{log_dir}: no log of {', '.join(unknown)}; runs here: {', '.join(names)}")
        logs = [p for p in logs if any(fnmatch.fnmatchcase(p.name.split(".")[0], o) for o in only)]
    if not (log_dir / "wandb").is_dir() and not (log_dir / paths.TENSORBOARD).is_dir():
        raise UsageError(f"{log_dir}: no wandb/ or tensorboard/ folder: these runs logged to neither "
                         "(a matrix's wandb: section turns both on)")
    wandb_runs: dict = {}
    for f in sorted(log_dir.glob("wandb/wandb/offline-run-*/run-*.wandb")):
        name, started, history = wandb_history(f)
        wandb_runs.setdefault(name, []).append((started, f, history))
    checks = []
    for found in load_runs(logs, {}):
        run = found.name
        logged, starts = log_series(found)
        files = wandb_runs.get(run, [])
        if files:
            files.sort(key=lambda x: x[0])  # by start time (folder names keep only the second)
            merged: dict = {}
            for _, _, history in files:  # later launches win
                for key, values in history.items():
                    merged.setdefault(key, {}).update(values)
            source = ", ".join(str(f.relative_to(log_dir)) for _, f, _ in files)
            checks.append(compare(run, "W&B", source, logged, merged, starts))
        else:
            checks.append(RunCheck(run, "W&B", "", [], f"no W&B offline run named {run} under "
                                                      f"{log_dir / 'wandb'}"))
        tb = paths.tensorboard_dir(log_dir, run)
        if not tb.is_dir():
            tb = tb.parent  # logs written before the events/ folder: tensorboard/<run>/
        if tb.is_dir():
            checks.append(compare(run, "TensorBoard", str(tb.relative_to(log_dir)), logged,
                                  tensorboard_scalars(tb), starts))
        else:
            checks.append(RunCheck(run, "TensorBoard", "", [], f"no event files in {tb}"))
    return checks


def markdown(checks: list) -> str:
    """A table: run, tracker, per metric found/logged and differing values, verdict."""
    lines = ["| Run | Tracker | lm loss (found / logged) | iteration time (found / logged) | "
             "Differing values | Verdict |", "|---|---|---|---|---|---|"]
    for c in checks:
        if c.problem:
            lines.append(f"| {c.run} | {c.tracker} | – | – | – | {c.problem} |")
            continue
        cells = [f"{s.found} / {s.log_steps}" for s in c.series]
        diff = "; ".join(f"{s.name} at {it}: log {a:g} vs {b:g}"
                         for s in c.series for it, a, b in s.differing[:3]) or "none"
        lines.append(f"| {c.run} | {c.tracker} | {cells[0]} | {cells[1]} | {diff} | "
                     f"{'matches the log' if c.ok else 'DIFFERS'} |")
    return "\n".join(lines) + "\n"


def first_problem(checks: list) -> Optional[str]:
    """A one-line reason when any check failed, else None."""
    for c in checks:
        if not c.ok:
            return f"{c.run} ({c.tracker}): {c.problem or 'values missing or differing'}"
    return None
