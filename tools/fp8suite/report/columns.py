"""The report's per-run figures, each declared once: its summary.json/CSV key, its header in
report.md's main table, its unit and format, which direction is better, how it is computed,
and the one-line definition that report.md's "How to read this" and docs/reading-a-report.md
give. markdown.py builds the main table's figure columns from FIGURES, summary.py writes each
run's value under `key` from the same `value` function, and the definitions list is rendered
from `definition`: a new column is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Column:
    """One figure of a run (metrics.Summary) against its baseline (compare.Versus or None)."""

    key: str  # summary.json / summary.csv key (units in the name: _ms, _gib, ...)
    header: str  # report.md's column header
    unit: str  # "ms", "x" (a ratio), "tokens/s", "TFLOP/s", "fraction", "GiB", "" (loss)
    fmt: str  # report.md's format of the value: "{:.1f}", ...
    higher_is_better: Optional[bool]  # None: neither (a loss's iteration, a count)
    definition: str  # how it is computed, one line
    value: Callable[[Any, Any], Optional[float]]  # (Summary, Versus or None) -> base units

    def title(self) -> str:
        """The header with its unit and better direction: "itr time (ms, lower is faster)"."""
        bits = [self.unit] if self.unit and self.unit not in ("x", "fraction") else []
        if self.higher_is_better is not None:
            word = "faster" if self.key in SPEED_KEYS else "better"
            bits.append(("above 1" if self.unit == "x" else "higher" if self.higher_is_better
                         else "lower") + f" is {word}")
        return self.header + (f" ({', '.join(bits)})" if bits else "")

    def cell(self, summary, versus) -> str:
        """The value formatted for report.md, "–" when blank."""
        value = self.value(summary, versus)
        if value is None:
            return "–"
        return self.fmt.format(value * 100 if self.unit == "fraction" else value)


def _versus(attr: str) -> Callable:
    return lambda s, v: getattr(v, attr) if v is not None else None


SPEED_KEYS = {"median_iteration_ms", "speedup", "itr_ms_mean", "speedup_by_mean", "itr_ms_max",
              "tokens_per_s_per_gpu"}

# The main table's figure columns, in table order.
FIGURES = (
    Column("median_iteration_ms", "itr time", "ms", "{:.1f}", False,
           "median `elapsed time per iteration (ms)` of the timed iterations",
           lambda s, v: s.median_iter_ms),
    Column("speedup", "Speedup", "x", "{:.3f}x", True,
           "baseline itr time / run itr time (the baseline launch nearest in time)",
           _versus("speedup")),
    Column("tokens_per_s_per_gpu", "Tokens/s/GPU", "", "{:,.0f}", True,
           "global batch × seq_length / itr time / world_size", lambda s, v: s.tokens_per_s_gpu),
    Column("itr_ms_mean", "mean", "ms", "{:.1f}", False,
           "mean of the same timed iterations: stalls move it, not the median",
           lambda s, v: s.mean_iter_ms),
    Column("speedup_by_mean", "Speedup by mean", "x", "{:.3f}x", True,
           "the baseline launch's mean itr time / the run's mean itr time",
           _versus("mean_speedup")),
    Column("itr_ms_max", "max", "ms", "{:.1f}", False,
           "the slowest timed iteration (its number after @)", lambda s, v: s.max_iter_ms),
    Column("final_loss", "Final smoothed loss", "", "{:.4f}", False,
           "last value of the trailing mean of the last W finite `lm loss` values "
           "(W = 10% of them, at least 5)", lambda s, v: s.final_loss),
    Column("tflops_per_gpu", "TFLOP/s/GPU", "", "{:.1f}", True,
           "median of Megatron's `throughput per GPU (TFLOP/s/GPU)`", lambda s, v: s.tflops_gpu),
    Column("mfu", "MFU", "fraction", "{:.1f}%", True,
           "TFLOP/s/GPU / the GPU's dense peak for the run's precision", lambda s, v: s.mfu),
    Column("peak_allocated_gib", "Peak alloc GiB", "", "{:.1f}", False,
           "Megatron's `max allocated` over ranks, GiB", lambda s, v: s.peak_alloc_gb),
    Column("peak_reserved_gib", "Peak reserved GiB", "", "{:.1f}", False,
           "Megatron's `max reserved` over ranks, GiB", lambda s, v: s.peak_reserved_gb),
    Column("min_loss", "Min loss", "", "{:.4f}", False,
           "the lowest finite `lm loss` logged", lambda s, v: s.min_loss),
)

BY_KEY = {c.key: c for c in FIGURES}


def definitions() -> list:
    """One markdown bullet per column: header, unit and direction, how it is computed."""
    return [f"- *{c.title()}* [`{c.key}`]: {c.definition}." for c in FIGURES]
