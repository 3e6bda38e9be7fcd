"""PNG plots for a report: per group loss, iteration time and loss gap; per run a small pair.

Deterministic: matplotlib's default style (not the user's matplotlibrc), a fixed figure size
and dpi, the Agg canvas of the object API (no pyplot state), and no "Software" PNG metadata,
so identical input gives identical bytes on the same matplotlib version. Series longer than
MAX_POINTS are averaged in equal buckets first: a million-iteration line would take long to
draw and look no different.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import compare, metrics
from .logparse import arg_int

MAX_POINTS = 4000
DPI = 100
_BASELINE_COLOR = "black"


def write_plots(groups: list, out_dir: Path) -> dict:
    """Write every plot; return {group slug: [(kind, file name), ...]} with kind in
    "loss", "iter-time", "loss-gap", "run:<name>"."""
    # The default style, not whatever matplotlibrc the user has: same input, same bytes.
    with matplotlib.style.context("default"):
        return _write_all(groups, out_dir)


def _write_all(groups: list, out_dir: Path) -> dict:
    written = {}
    for g in groups:
        files = written.setdefault(g.slug, [])
        loss = [_series(g, r, metrics.LOSS) for r in g.runs]
        loss = [s for s in loss if s[1]]
        if loss:
            files.append(("loss", _save(_loss_figure(g, loss), out_dir, f"{g.slug}-loss.png")))
        times = [_timed_series(g, r) for r in g.runs]
        times = [s for s in times if s[1]]
        if times:
            files.append(("iter-time", _save(_time_figure(g, times), out_dir,
                                             f"{g.slug}-iter-time.png")))
        if g.baseline:
            gaps = _gap_series(g)
            if gaps:
                files.append(("loss-gap", _save(_gap_figure(g, gaps), out_dir,
                                                f"{g.slug}-loss-gap.png")))
        for r in g.runs:
            lo = _series(g, r, metrics.LOSS)
            ti = _timed_series(g, r)
            if lo[1] or ti[1]:
                name = f"{g.slug}-run-{compare.slugify(r.name)}.png"
                files.append((f"run:{r.name}", _save(_run_figure(r.name, lo, ti), out_dir, name)))
    return written


# --- data ----------------------------------------------------------------------------------


def _finite_xy(xs, ys):
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _thin(xs, ys):
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


def _series(g, run, key):
    xs, ys = _finite_xy(run.log.steps.iterations, run.log.steps.column(key))
    return (_label(g, run), *_thin(xs, ys), run.name == g.baseline)


def _timed_series(g, run):
    steps, args = run.log.steps, run.log.args
    mask = metrics.timed_mask(steps.iterations, steps.segment_starts, g.warmup,
                              arg_int(args, "eval_interval"), arg_int(args, "save_interval"),
                              arg_int(args, "log_interval"))
    its = [it for it, keep in zip(steps.iterations, mask) if keep]
    ms = [v for v, keep in zip(steps.column(metrics.ITER_MS), mask) if keep]
    xs, ys = _finite_xy(its, ms)
    return (_label(g, run), *_thin(xs, ys), run.name == g.baseline)


def _gap_series(g):
    base = next(r for r in g.runs if r.name == g.baseline)
    out = []
    for r in g.runs:
        if r.name == g.baseline or not g.window:
            continue
        pairs = compare.matched_losses(r, base, g.window)
        if pairs:
            xs, ys = _thin([p[0] for p in pairs], [p[1] - p[2] for p in pairs])
            out.append((_label(g, r), xs, ys, False))
    return out


# --- figures -------------------------------------------------------------------------------


def _figure(width=8.0, height=4.5, ncols=1):
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _draw(ax, series):
    for label, xs, ys, is_base in series:
        kw = {"color": _BASELINE_COLOR, "linewidth": 1.6} if is_base else {"linewidth": 1.2}
        marker = "o" if len(xs) <= 40 else None
        ax.plot(xs, ys, label=label, marker=marker, markersize=3, **kw)


def _log_y_if_wide(ax, series):
    ys = [y for _, _, s_ys, _ in series for y in s_ys if y > 0]
    if ys and len(ys) == sum(len(s[2]) for s in series) and max(ys) / min(ys) > 20:
        ax.set_yscale("log")


def _from_zero(ax, ys):
    """Times from 0 with headroom above the highest point (autoscale would clip it at 0..max)."""
    ax.set_ylim(0, max(ys) * 1.08 if ys and max(ys) > 0 else 1)


def _finish(fig, ax, title, xlabel, ylabel, legend=True):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _loss_figure(g, series):
    fig, (ax,) = _figure()
    _draw(ax, series)
    _log_y_if_wide(ax, series)
    return _finish(fig, ax, f"{g.title}: training loss", "iteration", "lm loss")


def _time_figure(g, series):
    fig, (ax,) = _figure()
    _draw(ax, series)
    _from_zero(ax, [y for s in series for y in s[2]])
    return _finish(fig, ax, f"{g.title}: iteration time (timed iterations)", "iteration",
                   "elapsed time per iteration (ms)")


def _gap_figure(g, series):
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
                   label=f"seed-to-seed noise band (±{g.band:.4f}, {g.noise_run})")
    _draw(ax, series)
    return _finish(fig, ax, f"{g.title}: lm loss minus baseline ({g.baseline})", "iteration",
                   "loss gap (run - baseline)")


def _run_figure(name, loss, times):
    fig, (ax1, ax2) = _figure(9.0, 3.2, ncols=2)
    if loss[1]:
        ax1.plot(loss[1], loss[2], linewidth=1.2, marker="o" if len(loss[1]) <= 40 else None,
                 markersize=3)
        _log_y_if_wide(ax1, [loss])
    _finish(fig, ax1, f"{name}: lm loss", "iteration", "lm loss", legend=False)
    if times[1]:
        ax2.plot(times[1], times[2], linewidth=1.2, color="tab:orange",
                 marker="o" if len(times[1]) <= 40 else None, markersize=3)
        _from_zero(ax2, times[2])
    return _finish(fig, ax2, f"{name}: iteration time (ms)", "iteration", "ms", legend=False)


def _save(fig, out_dir: Path, name: str) -> str:
    # "Software" would embed the matplotlib version; dropping it keeps bytes reproducible.
    fig.savefig(out_dir / name, format="png", dpi=DPI, metadata={"Software": None})
    return name
