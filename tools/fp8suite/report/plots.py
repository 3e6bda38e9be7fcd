"""PNG plots for a report: per group loss, iteration time, step time per run (bars), loss gap
and kernel-time breakdown; per run a small pair; per study that sweeps one shape setting
(sweep.find), FP8's speedup over BF16 along it.

Loss curves are drawn twice: the raw logged values faint, the smoothed curve (the trailing
mean the tables use, metrics.smoothed) solid. Legends stand outside the axes, so no curve
hides behind them.

Deterministic: matplotlib's default style (not the user's matplotlibrc), a fixed figure size
and dpi, the Agg canvas of the object API (no pyplot state), and no "Software" PNG metadata,
so identical input gives identical bytes on the same matplotlib version. Series longer than
MAX_POINTS are averaged in equal buckets first: a million-iteration line would take long to
draw and look no different.
"""

from __future__ import annotations

import io
import math
import statistics
import textwrap
from pathlib import Path
from typing import Callable, Optional

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import compare
from ..common import fileio
from ..logs import kernels
from . import metrics
from . import sweep
from ..logs.runs import LoggedRun

MAX_POINTS = 4000
DPI = 100
_BASELINE_COLOR = "black"


def write_plots(groups: list[compare.Group], out_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """Write every plot; return {group slug: [(kind, file name), ...]} with kind in
    "loss", "iter-time", "step-time", "loss-gap", "breakdown", "run:<name>", and
    {sweep slug: [("sweep", file name)]} for each sweep (sweep.find)."""
    # The default style, not whatever matplotlibrc the user has: same input, same bytes.
    with matplotlib.style.context("default"):
        return _write_all(groups, out_dir)


def _save_safely(make: Callable[[], Figure], out_dir: Path, name: str) -> Optional[str]:
    """Draw and save one plot; None when matplotlib cannot draw these values."""
    try:
        return _save(make(), out_dir, name)
    except (ValueError, OverflowError, ArithmeticError):
        return None


def _write_all(groups: list[compare.Group], out_dir: Path) -> dict[str, list[tuple[str, str]]]:
    written: dict = {}
    for g in groups:
        files = written.setdefault(g.slug, [])

        def add(kind: str, make, name: str) -> None:
            saved = _save_safely(make, out_dir, name)
            if saved:
                files.append((kind, saved))

        loss = [_series(g, r, metrics.LOSS) for r in g.runs]
        loss = [s for s in loss if s[1]]
        if loss:
            add("loss", lambda: _loss_figure(g, loss), f"{g.slug}-loss.png")
        times = [_timed_series(g, r) for r in g.runs]
        times = [s for s in times if s[1]]
        if times:
            add("iter-time", lambda: _time_figure(g, times), f"{g.slug}-iter-time.png")
        bars = [r for r in g.runs if _timed_ms(g, r)]
        if len(bars) > 1:
            add("step-time", lambda: _step_time_figure(g, bars), f"{g.slug}-step-time.png")
        profiled = [(r, breakdown_of(g, r)) for r in g.profiled()]
        if profiled:
            add("breakdown", lambda: _breakdown_figure(g, profiled), f"{g.slug}-breakdown.png")
        if g.baseline:
            gaps = _gap_series(g)
            if gaps:
                add("loss-gap", lambda: _gap_figure(g, gaps), f"{g.slug}-loss-gap.png")
        for r in g.runs:
            lo = _series(g, r, metrics.LOSS)
            ti = _timed_series(g, r)
            if lo[1] or ti[1]:
                add(f"run:{r.name}", lambda: _run_figure(r.name, lo, ti),
                    f"{g.slug}-run-{compare.slugify(r.name)}.png")
    for sw in sweep.find(groups):
        saved = _save_safely(lambda: _sweep_figure(sw), out_dir, f"{sw.slug}.png")
        if saved:
            written[sw.slug] = [("sweep", saved)]
    return written


# --- data ----------------------------------------------------------------------------------


def _finite_xy(xs: list, ys: list) -> tuple[list, list]:
    # Values beyond 1e300 are as good as infinite for a plot (axis limits overflow).
    # Two lists built directly (no list of pairs): a log of millions of iterations.
    out_x, out_y = [], []
    for x, y in zip(xs, ys):
        if y is not None and math.isfinite(y) and abs(y) < 1e300:
            out_x.append(x)
            out_y.append(y)
    return out_x, out_y


def _thin(xs: list, ys: list) -> tuple[list, list]:
    """Bucket means down to MAX_POINTS points (deterministic)."""
    n = len(xs)
    if n <= MAX_POINTS:
        return xs, ys
    size = math.ceil(n / MAX_POINTS)
    bx, by = [], []
    for i in range(0, n, size):
        cx, cy = xs[i:i + size], ys[i:i + size]
        bx.append(sum(cx) / len(cx))
        by.append(sum(cy) / len(cy))
    return bx, by


def _label(g, run) -> str:
    label = f"{run.name} ({g.summaries[run.name].label})"
    return label + " [baseline]" if run.name == g.baseline else label


def _color(g: compare.Group, name: str) -> str:
    """One colour per run in every figure of its group: the baseline's, else by its place
    among the group's other runs."""
    if name == g.baseline:
        return _BASELINE_COLOR
    others = [r.name for r in g.runs if r.name != g.baseline]
    return f"C{others.index(name) % 10}" if name in others else "C9"


def _series(g: compare.Group, run: LoggedRun, key: str) -> tuple:
    xs, ys = _finite_xy(run.log.steps.iterations, run.log.steps.column(key))
    return (_label(g, run), *_thin(xs, ys), run.name == g.baseline, _color(g, run.name))


def _timed_xy(g: compare.Group, run: LoggedRun) -> tuple[list, list]:
    """(iterations, ms) of the iterations the tables time (metrics.timed_mask), with times
    metrics.step_time_ok accepts only."""
    steps, args = run.log.steps, run.log.args
    mask = metrics.timed_rows(steps, args, g.warmup)
    rows = [(it, ms) for it, ms, keep in zip(steps.iterations, steps.column(metrics.ITER_MS), mask)
            if keep and metrics.step_time_ok(ms)]
    return _finite_xy([it for it, _ in rows], [ms for _, ms in rows])


def _timed_ms(g: compare.Group, run: LoggedRun) -> list:
    return _timed_xy(g, run)[1]


def _timed_series(g: compare.Group, run: LoggedRun) -> tuple:
    xs, ys = _timed_xy(g, run)
    return (_label(g, run), *_thin(xs, ys), run.name == g.baseline, _color(g, run.name))


def _gap_series(g: compare.Group) -> list:
    base = next(r for r in g.runs if r.name == g.baseline)
    out = []
    for r in g.runs:
        if r.name == g.baseline or not g.window:
            continue
        pairs = compare.matched_losses(r, base, g.window)
        if pairs:
            xs, ys = _thin([p[0] for p in pairs], [p[1] - p[2] for p in pairs])
            out.append((_label(g, r), xs, ys, False, _color(g, r.name)))
    return out


# --- figures -------------------------------------------------------------------------------


def _figure(width: float = 13.0, height: float = 4.5, ncols: int = 1) -> tuple:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _draw(ax: Axes, series: list, smooth: bool = False) -> None:
    """One line per series; with `smooth`, the raw values faint and the trailing mean solid."""
    for label, xs, ys, is_base, color in series:
        width = 1.6 if is_base else 1.2
        if smooth and len(xs) >= 10:
            window = metrics.smoothing_window(len(ys))
            curve = metrics.smoothed(xs, ys, window)
            ax.plot(xs, ys, color=color, linewidth=0.5, alpha=0.18)
            ax.plot([p[0] for p in curve], [p[1] for p in curve], color=color, linewidth=width,
                    label=f"{label}, mean of {window}")
            continue
        marker = "o" if len(xs) <= 40 else None
        ax.plot(xs, ys, label=label, marker=marker, markersize=3, color=color, linewidth=width)


def _log_y_if_wide(ax: Axes, series: list) -> None:
    ys = [y for _, _, s_ys, *_ in series for y in s_ys if y > 0]
    if ys and len(ys) == sum(len(s[2]) for s in series) and max(ys) / min(ys) > 20:
        ax.set_yscale("log")


def _from_zero(ax: Axes, ys: list) -> None:
    """Times from 0 with headroom above the highest point (autoscale would clip it at 0..max)."""
    top = max(ys) * 1.08 if ys and max(ys) > 0 else 1.0
    ax.set_ylim(0, top if math.isfinite(top) else max(ys))


def _finish(fig: Figure, ax: Axes, title: str, xlabel: str, ylabel: str,
            legend: bool = True) -> Figure:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        # Outside the axes, on the right: the room is kept by tight_layout's rect.
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        fig.subplots_adjust(left=0.07, right=0.50, top=0.92, bottom=0.12)
    else:
        fig.tight_layout()
    return fig


def _loss_figure(g: compare.Group, series: list) -> Figure:
    fig, (ax,) = _figure()
    _draw(ax, series, smooth=True)
    _log_y_if_wide(ax, series)
    return _finish(fig, ax, f"{g.title}: training loss", "iteration", metrics.LOSS)


def _time_figure(g: compare.Group, series: list) -> Figure:
    fig, (ax,) = _figure()
    _draw(ax, series)
    _from_zero(ax, [y for s in series for y in s[2]])
    return _finish(fig, ax, f"{g.title}: iteration time (timed iterations)", "iteration",
                   metrics.ITER_MS)


def _gap_figure(g: compare.Group, series: list) -> Figure:
    fig, (ax,) = _figure()
    ax.axhline(0.0, color=_BASELINE_COLOR, linewidth=0.8, label=f"baseline ({g.baseline})")
    # Shade the window of the noise band, else of the longest comparison: a run that stopped
    # early has its own, earlier window (the table lists each).
    gaps = [v.gap for v in g.versus.values() if v.gap is not None]
    window = g.noise or max(gaps, key=lambda w: (w.last, w.n), default=None)
    if window:
        ax.axvspan(window.first, window.last, color="tab:blue", alpha=0.07,
                   label="last quarter (where gaps are measured)")
    if g.band is not None:
        ax.axhspan(-g.band, g.band, color="tab:gray", alpha=0.25,
                   label=f"seed-to-seed noise band (±{g.band:.4f}, "
                         + (f"the largest of {g.seeds - 1} other BF16 seeds: {g.noise_run})"
                            if g.seeds > 2 else f"{g.noise_run})"))
    _draw(ax, series)
    return _finish(fig, ax, f"{g.title}: lm loss minus baseline ({g.baseline})", "iteration",
                   "loss gap (run - baseline)")


def _step_time_figure(g: compare.Group, bars: list) -> Figure:
    """One bar per run: the median of its timed iterations (the tables' itr time), a whisker
    over their middle half (25th-75th percentile), and the speedup over the baseline; a run
    that gets no speedup (failed, or no baseline) says why instead."""
    fig, (ax,) = _figure(13.0, 1.4 + 0.45 * len(bars))
    top = 0.0
    for row, run in enumerate(bars):
        ms = sorted(_timed_ms(g, run))
        median = statistics.median(ms)
        low, high = (statistics.quantiles(ms, n=4)[::2] if len(ms) > 1 else (median, median))
        ax.barh(row, median, color=_color(g, run.name), height=0.6)
        ax.errorbar(median, row, xerr=[[median - low], [high - median]], color="0.25",
                    capsize=3, linewidth=1.0)
        summary, versus = g.summaries[run.name], g.versus.get(run.name)
        if run.name == g.baseline:
            note = "baseline"
        elif versus is not None and versus.speedup is not None:
            note = f"{versus.speedup:.2f}x" + (" (within spread)" if versus.within_spread else "")
        elif summary.failed:
            note = f"{summary.status}: no speedup"
        else:
            note = ""
        ax.text(high, row, f"  {median:,.0f} ms  {note}", va="center", fontsize=8)
        top = max(top, high)
    ax.set_xlim(0, top * 1.35 if top > 0 else 1.0)
    # Runs that share one recipe (settings one at a time) are told apart by their names alone.
    shared = len({g.summaries[r.name].label for r in bars}) == 1
    names = [r.name + (" [baseline]" if r.name == g.baseline else "") if shared else _label(g, r)
             for r in bars]
    ax.set_yticks(range(len(bars)), [textwrap.fill(n, 60) for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_title(f"{g.title}: step time (median of timed iterations, whisker: middle half; "
                 "shorter is faster)", fontsize=10)
    ax.set_xlabel(metrics.ITER_MS)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def breakdown_of(g: compare.Group, run: LoggedRun) -> dict[str, float]:
    """Milliseconds per profiled step by category (kernels.breakdown) of a run with a kernel table."""
    summary = g.summaries.get(run.name)
    quantized = summary is not None and summary.precision not in (None, "bf16", "fp16", "fp32")
    return kernels.breakdown(g.kernels[run.name][0], quantized)


# Stacked in this order; overlapped communication runs under compute, so it is not stacked.
_STACKED = tuple(c for c in kernels.ORDER if c != "communication overlapped")


def _breakdown_figure(g: compare.Group, profiled: list) -> Figure:
    fig, (ax,) = _figure(13.0, 1.6 + 0.6 * len(profiled))
    colors = matplotlib.colormaps["tab20"].colors
    # The recipe label names a bar (the run names are in the report's table beside it).
    names = [g.summaries[r.name].label + (" [baseline]" if r.name == g.baseline else "")
             for r, _ in profiled]
    for row, (_, ms) in enumerate(profiled):
        left = 0.0
        for i, category in enumerate(_STACKED):
            width = ms[category]
            ax.barh(row, width, left=left, color=colors[i % len(colors)],
                    label=category if row == 0 else None, height=0.6)
            left += width
    ax.set_yticks(range(len(profiled)), [textwrap.fill(n, 34) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_title("Where a step's GPU time goes (rank 0, profiled step)", fontsize=10)
    ax.set_xlabel("milliseconds per step")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.subplots_adjust(left=0.22, right=0.78, top=0.88, bottom=0.2)
    return fig


def _run_figure(name: str, loss: tuple, times: tuple) -> Figure:
    fig, (ax1, ax2) = _figure(9.0, 3.2, ncols=2)
    if loss[1]:
        _draw(ax1, [(loss[0], loss[1], loss[2], False, "C0")], smooth=True)
        _log_y_if_wide(ax1, [loss])
    _finish(fig, ax1, f"{name}: {metrics.LOSS}", "iteration", metrics.LOSS, legend=False)
    if times[1]:
        ax2.plot(times[1], times[2], linewidth=1.2, color="tab:orange",
                 marker="o" if len(times[1]) <= 40 else None, markersize=3)
        _from_zero(ax2, times[2])
    return _finish(fig, ax2, f"{name}: iteration time (ms)", "iteration", "ms", legend=False)


def _sweep_figure(sw: sweep.Sweep) -> Figure:
    """x: the swept setting (a log2 axis when every value is a power of two), y: each FP8
    recipe's speedup over its group's BF16 run, one line per recipe label, a marker per
    measured point (a bar over the range of several runs), BF16 as the line at 1.0."""
    fig, (ax,) = _figure(11.0, 4.5)
    ax.axhline(1.0, color=_BASELINE_COLOR, linewidth=1.0, linestyle="--", label="BF16")
    for n, label in enumerate(sw.labels):
        pts = [p for p in sw.points if p.label == label]
        xs, ys = [p.value for p in pts], [p.speedup for p in pts]
        color = f"C{n % 10}"
        ax.plot(xs, ys, marker="o", markersize=5, color=color, linewidth=1.4, label=label)
        ranged = [p for p in pts if p.speedup_low is not None]
        if ranged:
            ax.errorbar([p.value for p in ranged], [p.speedup for p in ranged],
                        yerr=[[p.speedup - p.speedup_low for p in ranged],
                              [p.speedup_high - p.speedup for p in ranged]],
                        fmt="none", ecolor=color, capsize=3, linewidth=1.0)
    if sw.powers_of_two:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sw.values, [str(v) for v in sw.values])
    ax.minorticks_off()
    pad = 0.15 if len(sw.values) > 1 else 0.5
    lo, hi = min(sw.values), max(sw.values)
    if sw.powers_of_two:
        ax.set_xlim(lo / 2 ** pad, hi * 2 ** pad)
    else:
        ax.set_xlim(lo - (hi - lo) * pad, hi + (hi - lo) * pad)
    name = sweep.NAMES.get(sw.key, sw.key)
    title = textwrap.fill(f"{sw.study}: FP8 speedup over BF16 by {name} ({sw.fixed_text()})", 70)
    return _finish(fig, ax, title, sw.key + (" (log2 axis)" if sw.powers_of_two else ""),
                   "speedup over BF16 (median step time)")


def _save(fig, out_dir: Path, name: str) -> str:
    # "Software" would embed the matplotlib version; dropping it keeps bytes reproducible.
    # "tight" trims the empty margin the legend outside the axes would leave on the right.
    # Drawn into memory, then written atomically: a full disk leaves no half PNG behind.
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI, metadata={"Software": None},
                bbox_inches="tight", pad_inches=0.15)
    fileio.write_atomic(out_dir / name, png.getvalue())
    return name
