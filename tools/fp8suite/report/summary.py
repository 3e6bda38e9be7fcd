"""The report's figures as data: `summary.json` and `summary.csv` beside `report.md`.

    {"schema": "fp8suite.report.summary", "schema_version": 1,
     "runs": [{"name": ..., "label": ..., "status": ..., ...}, ...],
     "comparisons": [{"group": ..., "run": ..., "baseline": ..., "speedup": ..., ...}, ...],
     "groups": [{"group": ..., "baseline": ..., "verdict": {...}}, ...],
     "sweeps": [{"study": ..., "key": ..., "values": [...], "points": [...], ...}, ...]}

One entry per run (RunEntry), one per run compared with its group's baseline
(ComparisonEntry), one per group with its verdict (GroupEntry, verdict.Verdict) and one per
study that sweeps one shape setting (SweepEntry, SweepPoint; sweep.find): the typed
schema, documented key by key in docs/reading-a-report.md. Units are in the key names (`_s`
seconds, `_ms` milliseconds, `_gib` GiB = 2^30 bytes, `mfu` a fraction 0..1, `speedup` a
ratio, > 1 faster). A figure the report leaves blank is `null` (JSON) or empty (CSV);
non-finite numbers are never written. The CSV has the runs only (RUN_FIELDS), `attempts` as a
count. Any change of a key's meaning or unit raises
SCHEMA_VERSION; new keys may be added within a version.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from . import columns
from . import metrics
from . import sweep
from ..common import status as S
from . import verdict as V
from .markdown import hide_paths
from .verdict import predicted_band, predicted_extrapolated, predicted_speedup

SCHEMA = "fp8suite.report.summary"
SCHEMA_VERSION = 1


@dataclass
class RunEntry:
    """summary.json `runs[]` and one row of summary.csv: one run (metrics.Summary)."""

    name: str
    group: str
    label: str
    precision: Optional[str]
    seed: Optional[int]
    status: str
    run_state: Optional[str]
    reason: str
    iterations_done: Optional[int]
    iterations_planned: Optional[int]
    diverged_at_iteration: Optional[int]
    runtime_s: Optional[float]
    downtime_s: Optional[float]
    segments: int
    median_iteration_ms: Optional[float]
    timed_iterations: int
    tokens_per_s_per_gpu: Optional[float]
    tflops_per_gpu: Optional[float]
    mfu: Optional[float]
    gpu: Optional[str]
    peak_allocated_gib: Optional[float]
    peak_reserved_gib: Optional[float]
    min_loss: Optional[float]
    final_loss: Optional[float]
    smoothing_window: Optional[int]
    validation_loss: Optional[float]
    validation_iteration: Optional[int]
    mock_data: bool
    baseline: Optional[str]
    speedup: Optional[float]
    attention: Optional[str]
    log_format: Optional[str]
    """Where the log comes from and its era (logformats), e.g. "megatron-core", "nemo2"."""
    skipped_iterations: int
    """fp16 steps the dynamic loss scaler skipped (no loss, no time sample)."""
    log: str
    attempts: list
    notes: list
    itr_ms_median: Optional[float] = None
    """Median ms of the timed iterations (= median_iteration_ms)."""
    itr_ms_mean: Optional[float] = None
    """Mean ms of the same timed iterations (columns.FIGURES)."""
    speedup_by_mean: Optional[float] = None
    """Baseline launch's mean / run's mean iteration time (columns.FIGURES)."""
    itr_ms_max: Optional[float] = None
    """The slowest timed iteration, ms (columns.FIGURES)."""
    itr_max_iteration: Optional[int] = None
    """Its iteration number."""
    stalls: list = field(default_factory=list)
    """[{"iteration", "fraction"}]: timed iterations slower than the median by more than
    metrics.STALL_FRACTION; fraction 0.07 = 7% slower."""
    stall_threshold: float = metrics.STALL_FRACTION
    graph_warmup_iterations: int = 0
    """Leading iterations per launch left out of timing for CUDA-graph capture (0: graphs off)."""
    peer_windows: list = field(default_factory=list)
    """[{"rule", "window", "itr_ms", "first_iteration", "last_iteration", "iterations", "why"}]
    (metrics.PeerWindow): dgxc llmb-run's and Megatron-Bridge's step time from the same log."""
    predicted_speedup: Optional[float] = None
    """The manifest entry's predicted_speedup, when it has one."""
    predicted_speedup_band: Optional[float] = None
    """Its ± share (the predictor's leave-one-out |error| 90% of the committed pairs stay within)."""
    predicted_speedup_extrapolated: list = field(default_factory=list)
    """Why the prediction extrapolates beyond the calibration logs; [] inside them."""
    speed_warning: Optional[str] = None
    """Why the run's step times are not stable, or null."""


@dataclass
class ComparisonEntry:
    """summary.json `comparisons[]`: one run against its group's baseline (compare.Versus)."""

    group: str
    run: str
    baseline: str
    speedup: Optional[float]
    baseline_log: Optional[str]
    step_time_spread: Optional[float]
    within_spread: bool
    loss_gap_mean: Optional[float]
    loss_gap_largest: Optional[float]
    loss_gap_first_iteration: Optional[int]
    loss_gap_last_iteration: Optional[int]
    noise_band: Optional[float]
    verdict: Optional[str]
    time_to_target_s: Optional[float]
    tokens_to_target: Optional[float]
    time_to_target_iteration: Optional[int]
    time_to_target_speedup: Optional[float]
    valid: bool
    loss_comparison_meaningful: bool
    note: str
    speedup_by_mean: Optional[float] = None
    """Baseline mean iteration time / run mean iteration time."""
    mean_median_disagree: bool = False
    """|speedup_by_mean - speedup| > max(step_time_spread, 0.01): stalls weigh on one of them."""
    time_to_target_change: Optional[float] = None
    """run / baseline time to target - 1 (negative: sooner)."""
    tokens_to_target_change: Optional[float] = None
    time_to_target_band: Optional[float] = None
    """Largest |other BF16 seed / baseline - 1| of the time to target."""
    tokens_to_target_band: Optional[float] = None
    time_to_target_verdict: Optional[str] = None
    """"sooner", "same within noise", "later", "not reached" or null (not judged)."""
    tokens_to_target_verdict: Optional[str] = None
    """"fewer", "same within noise", "more", "not reached" or null."""
    settings_differing: list = field(default_factory=list)
    """[{"setting", "value", "baseline_value"}]: speed- or memory-relevant settings in which the
    run differs from the baseline; its speedup mixes recipe and these."""


@dataclass
class GroupEntry:
    """summary.json `groups[]`: one comparison group and its answer."""

    group: str
    baseline: Optional[str]
    verdict: dict
    """verdict.Verdict as data (docs/reading-a-report.md lists its keys)."""


@dataclass
class SweepPoint:
    """summary.json `sweeps[].points[]`: one FP8 recipe at one value of the swept setting."""

    value: int
    """The swept setting's value in this group."""
    group: str
    label: str
    speedup: float
    """Over the group's BF16 baseline by median step time, at equal settings (mean over seeds)."""
    speedup_low: Optional[float]
    """Lowest and highest over its runs; null with one run."""
    speedup_high: Optional[float]
    runs: list
    baseline: str
    single: bool
    """One run launched once, against a baseline launched once: no spread."""


@dataclass
class SweepEntry:
    """summary.json `sweeps[]`: groups of one study that differ in one shape setting."""

    study: str
    directory: str
    key: str
    """The swept setting (a metrics.SHAPE_KEYS name)."""
    values: list
    """Its values, ascending."""
    fixed: dict
    """{setting: value}: the shape settings equal in every group."""
    scaled: dict
    """In a hidden_size sweep, the settings that move with it in proportion:
    {"ffn_hidden_size": ffn_hidden_size / hidden_size, "num_attention_heads": hidden_size /
    num_attention_heads (the head dimension)}; {} otherwise."""
    groups: list
    step_time_spread: Optional[float]
    """The largest step-time spread of its groups; null when no run was launched twice and no recipe has two seeds."""
    points: list
    """SweepPoint, by recipe label, then value."""


RUN_FIELDS = tuple(f.name for f in fields(RunEntry))
COMPARISON_FIELDS = tuple(f.name for f in fields(ComparisonEntry))
GROUP_FIELDS = tuple(f.name for f in fields(GroupEntry))


def _num(value) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return value
    try:
        return value if math.isfinite(value) else None
    except (TypeError, OverflowError):
        return None


def build(groups: list, shown_path=os.path.basename) -> dict:
    """The summary of every group (compare.Group) as plain data."""
    runs_out, comparisons, groups_out = [], [], []
    for g in groups:
        groups_out.append(asdict(GroupEntry(g.title, g.baseline, _clean(asdict(V.of(g))))))
        for run in g.runs:
            s, v = g.summaries[run.name], g.versus.get(run.name)
            runs_out.append(asdict(RunEntry(**{
                "name": s.name, "group": g.title, "label": s.label, "precision": s.precision,
                "seed": s.seed, "status": s.status, "run_state": S.RUN_STATE.get(s.status),
                "reason": hide_paths(s.reason), "iterations_done": s.iterations_done,
                "iterations_planned": s.iterations_planned,
                "diverged_at_iteration": s.diverged_at,
                "runtime_s": _num(s.runtime_s), "downtime_s": _num(s.downtime_s),
                "segments": s.segments, "timed_iterations": s.timed_iterations, "gpu": s.gpu,
                "smoothing_window": s.smooth_window, "validation_loss": _num(s.val_loss),
                "validation_iteration": s.val_iteration, "mock_data": s.mock_data,
                "baseline": g.baseline,
                "attention": s.attention or None,
                # Where the log comes from (logformats), and the fp16 steps it skipped.
                "log_format": run.log.log_format or None,
                "skipped_iterations": run.log.skipped_iterations,
                "log": shown_path(run.path),
                "attempts": [{"log": shown_path(a.path), "status": a.status, "reason": hide_paths(a.reason),
                              "iterations_done": a.iterations_done,
                              "iterations_planned": a.iterations_planned,
                              "segment": a.segment,
                              "median_iteration_ms": _num(a.median_iter_ms)}
                             for a in s.attempts] or [
                    {"log": shown_path(run.path), "status": run.log.status.name,
                     "reason": hide_paths(run.log.status.reason),
                     "iterations_done": run.log.status.last_iteration,
                     "iterations_planned": run.log.status.planned_iterations,
                     "segment": False,
                     "median_iteration_ms": _num(s.median_iter_ms)
                     if run.log.status.name == S.COMPLETED else None}],
                "notes": [hide_paths(n) for n in s.notes],
                # The main table's figures, computed where they are declared.
                **{c.key: _num(c.value(s, v)) for c in columns.FIGURES},
                "itr_ms_median": _num(s.median_iter_ms), "itr_max_iteration": s.max_iteration,
                "stalls": [{"iteration": x.iteration, "fraction": _num(x.fraction)}
                           for x in s.stalls],
                "graph_warmup_iterations": s.graph_warmup,
                "peer_windows": [_clean(asdict(w)) for w in s.peer_windows],
                "predicted_speedup": predicted_speedup(run),
                "predicted_speedup_band": predicted_band(run),
                "predicted_speedup_extrapolated": predicted_extrapolated(run),
                "speed_warning": s.speed_warning or None,
            })))
            if v is None or run.name == g.baseline:
                continue
            gap = v.gap
            comparisons.append(asdict(ComparisonEntry(**{
                "group": g.title, "run": run.name, "baseline": g.baseline,
                "speedup": _num(v.speedup), "baseline_log": v.baseline_log or None,
                "step_time_spread": _num(g.spread), "within_spread": v.within_spread,
                "loss_gap_mean": _num(gap.mean) if gap else None,
                "loss_gap_largest": _num(gap.max) if gap else None,
                "loss_gap_first_iteration": gap.first if gap else None,
                "loss_gap_last_iteration": gap.last if gap else None,
                "noise_band": _num(g.band), "verdict": v.verdict or None,
                "time_to_target_s": _num(v.ttt_s), "tokens_to_target": _num(v.ttt_tokens),
                "time_to_target_iteration": v.ttt_iteration,
                "time_to_target_speedup": _num(v.ttt_speedup),
                "valid": not v.invalid, "loss_comparison_meaningful": g.loss_meaningful,
                "note": (f"not valid ({v.invalid})" if v.invalid else
                         "; ".join(g.caveats) if g.caveats else ""),
                "speedup_by_mean": _num(v.mean_speedup),
                "mean_median_disagree": v.mean_disagrees,
                "time_to_target_change": _num(v.ttt_change),
                "tokens_to_target_change": _num(v.tokens_change),
                "time_to_target_band": _num(g.ttt_band),
                "tokens_to_target_band": _num(g.tokens_band),
                "time_to_target_verdict": v.ttt_verdict or None,
                "tokens_to_target_verdict": v.tokens_verdict or None,
                "settings_differing": [{"setting": k, "value": a, "baseline_value": b}
                                       for k, a, b in v.confounds],
            })))
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "runs": runs_out,
            "comparisons": comparisons, "groups": groups_out, "sweeps": sweeps(groups, shown_path)}


def sweeps(groups: list, shown_path=os.path.basename) -> list:
    """One SweepEntry per study that sweeps one shape setting (sweep.find), as plain data."""
    return [_clean(asdict(SweepEntry(
        sw.study, shown_path(sw.directory), sw.key, sw.values, dict(sw.fixed), dict(sw.scaled), sw.groups,
        _num(sw.spread),
        [asdict(SweepPoint(p.value, p.group, p.label, _num(p.speedup), _num(p.speedup_low),
                           _num(p.speedup_high), p.runs, p.baseline, p.single))
         for p in sw.points]))) for sw in sweep.find(groups)]


def _clean(data):
    """Plain JSON values: non-finite floats become null, tuples lists (recursively)."""
    if isinstance(data, dict):
        return {k: _clean(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_clean(v) for v in data]
    if isinstance(data, float):
        return _num(data)
    return data


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def to_csv(data: dict) -> str:
    """The runs, one row each, RUN_FIELDS as columns (attempts as a count, notes joined,
    stalls as their iterations, peer windows as "rule: ms" pairs)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RUN_FIELDS)
    for r in data["runs"]:
        row: list[Any] = []
        for k in RUN_FIELDS:
            value = r.get(k)
            if k == "attempts":
                value = len(value)
            elif k == "notes":
                value = "; ".join(value)
            elif k == "stalls":
                value = " ".join(str(x["iteration"]) for x in value)
            elif k == "peer_windows":
                value = "; ".join(f"{w['rule']}: {w['itr_ms']:.1f}" for w in value
                                  if w["itr_ms"] is not None)
            row.append("" if value is None else value)
        w.writerow(row)
    return buf.getvalue()
