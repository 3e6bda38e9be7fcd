"""The report's figures as data: `summary.json` and `summary.csv` beside `report.md`.

    {"schema": "fp8suite.summary", "schema_version": 1,
     "runs": [{"name": ..., "label": ..., "status": ..., ...}, ...],
     "comparisons": [{"group": ..., "run": ..., "baseline": ..., "speedup": ..., ...}, ...]}

One entry per run (RUN_FIELDS) and one per run compared with its group's baseline
(COMPARISON_FIELDS); units are in the key names (`_s` seconds, `_ms` milliseconds, `_gib`
GiB = 2^30 bytes, `mfu` a fraction 0..1, `speedup` a ratio, > 1 faster). A figure the report
leaves blank is `null` (JSON) or empty (CSV); non-finite numbers are never written. The CSV
has the runs only, `attempts` as a count. Any change of a key's meaning or unit raises
SCHEMA_VERSION; new keys may be added within a version.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any, Optional

from . import status as S
from .markdown import hide_paths

SCHEMA = "fp8suite.summary"
SCHEMA_VERSION = 1

RUN_FIELDS = (
    "name", "group", "label", "precision", "seed", "status", "run_state", "reason",
    "iterations_done", "iterations_planned", "diverged_at_iteration", "runtime_s", "downtime_s",
    "segments", "median_iteration_ms", "timed_iterations", "tokens_per_s_per_gpu",
    "tflops_per_gpu", "mfu", "gpu", "peak_allocated_gib", "peak_reserved_gib", "min_loss",
    "final_loss", "smoothing_window", "validation_loss", "validation_iteration", "mock_data",
    "baseline", "speedup", "attention", "log_format", "skipped_iterations", "log", "attempts",
    "notes",
)
COMPARISON_FIELDS = (
    "group", "run", "baseline", "speedup", "baseline_log", "step_time_spread", "within_spread",
    "loss_gap_mean", "loss_gap_largest",
    "loss_gap_first_iteration", "loss_gap_last_iteration", "noise_band", "verdict",
    "time_to_target_s", "tokens_to_target", "time_to_target_iteration",
    "time_to_target_speedup", "valid", "loss_comparison_meaningful", "note",
)


def _num(value) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return value
    try:
        return value if math.isfinite(value) else None
    except (TypeError, OverflowError):
        return None


def build(groups: list, shown_path=os.path.basename) -> dict:
    """The summary of every group (compare.Group) as plain data."""
    runs_out, comparisons = [], []
    for g in groups:
        for run in g.runs:
            s, v = g.summaries[run.name], g.versus.get(run.name)
            runs_out.append({
                "name": s.name, "group": g.title, "label": s.label, "precision": s.precision,
                "seed": s.seed, "status": s.status, "run_state": S.RUN_STATE.get(s.status),
                "reason": hide_paths(s.reason), "iterations_done": s.iterations_done,
                "iterations_planned": s.iterations_planned,
                "diverged_at_iteration": s.diverged_at,
                "runtime_s": _num(s.runtime_s), "downtime_s": _num(s.downtime_s),
                "segments": s.segments, "median_iteration_ms": _num(s.median_iter_ms),
                "timed_iterations": s.timed_iterations,
                "tokens_per_s_per_gpu": _num(s.tokens_per_s_gpu),
                "tflops_per_gpu": _num(s.tflops_gpu), "mfu": _num(s.mfu), "gpu": s.gpu,
                "peak_allocated_gib": _num(s.peak_alloc_gb),
                "peak_reserved_gib": _num(s.peak_reserved_gb),
                "min_loss": _num(s.min_loss), "final_loss": _num(s.final_loss),
                "smoothing_window": s.smooth_window, "validation_loss": _num(s.val_loss),
                "validation_iteration": s.val_iteration, "mock_data": s.mock_data,
                "baseline": g.baseline, "speedup": _num(v.speedup) if v else None,
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
            })
            if v is None or run.name == g.baseline:
                continue
            gap = v.gap
            comparisons.append({
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
            })
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "runs": runs_out,
            "comparisons": comparisons}


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def to_csv(data: dict) -> str:
    """The runs, one row each, RUN_FIELDS as columns (attempts as a count, notes joined)."""
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
            row.append("" if value is None else value)
        w.writerow(row)
    return buf.getvalue()
