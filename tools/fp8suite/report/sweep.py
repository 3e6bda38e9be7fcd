"""Studies that sweep one model-shape setting: FP8's speedup over BF16 by that setting. Pure:
comparison groups (compare.Group) in, Sweep records out (plots draws them, markdown and
summary.json show them).

A sweep is two or more groups of one directory (one study) with known shapes that differ in
exactly one shape setting (metrics.SHAPE_KEYS), everything else equal. A width sweep moves the
FFN and the attention heads with the hidden size: those two are compared as proportions of
hidden_size (FFN / hidden, hidden / heads = the head dimension), so groups whose hidden size
doubles with the same FFN ratio and head dimension differ in hidden_size alone. Groups that
differ in two or more settings (layers and width, width and sequence ...) form no sweep.

Each point is one FP8 recipe (its label) in one group: its speedup over the group's BF16
baseline by median step time (compare.Versus.speedup), from the runs of that label whose
speed-relevant settings equal the baseline's (no compare.confounds); the mean over its seeds
when it has several, with their range. A group without a BF16 baseline gives no points; a
sweep with points at fewer than two values of its setting is not drawn.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

from . import compare
from . import metrics

# The shape settings a width sweep carries along with hidden_size, as proportions of it.
_WITH_HIDDEN = ("ffn_hidden_size", "num_attention_heads")

# How the report names each setting in words.
NAMES = {"num_layers": "layers", "hidden_size": "hidden size", "ffn_hidden_size": "FFN size",
         "num_attention_heads": "attention heads", "seq_length": "sequence length",
         "global_batch_size": "global batch", "world_size": "world size"}


@dataclass
class Point:
    """One FP8 recipe at one value of the swept setting."""

    value: int  # the swept setting's value in this group
    group: str  # the group's title
    label: str  # the recipe label
    speedup: float  # over the group's BF16 baseline, by median step time (mean over seeds)
    runs: list  # the runs behind it, by name
    baseline: str  # the group's BF16 baseline
    speedup_low: Optional[float] = None  # lowest and highest over its runs (2+ runs only)
    speedup_high: Optional[float] = None
    single: bool = True  # one run launched once, against a baseline launched once


@dataclass
class Sweep:
    """Groups of one study that differ in one shape setting, and FP8's speedup along it."""

    study: str  # the directory's name
    directory: str
    key: str  # the swept setting (metrics.SHAPE_KEYS)
    values: list  # its values, ascending (every group of the sweep)
    fixed: list  # [(setting, value)]: the shape settings equal in every group
    # [(setting, proportion)]: in a hidden_size sweep, ffn_hidden_size / hidden_size and
    # hidden_size / num_attention_heads (the head dimension), equal in every group
    scaled: list
    groups: list  # the groups' titles, by value
    slug: str  # the plot's file stem
    points: list = field(default_factory=list)  # Point, by label then value
    spread: Optional[float] = None  # the largest step-time spread of its groups (None: unknown)

    @property
    def single(self) -> bool:
        """Whether every point is one launch against one launch (no spread to show)."""
        return all(p.single for p in self.points)

    @property
    def labels(self) -> list:
        """The recipe labels with points, in first-seen order."""
        return list(dict.fromkeys(p.label for p in self.points))

    @property
    def powers_of_two(self) -> bool:
        return all(v > 0 and v & (v - 1) == 0 for v in self.values)

    def fixed_text(self) -> str:
        """"4 layers, FFN 3.5 × hidden, head dim 128, seq 4096, global batch 4, world size 1"."""
        d, scaled = dict(self.fixed), dict(self.scaled)
        parts = []
        for k in metrics.SHAPE_KEYS:
            if k in d:
                parts.append(_WORDS[k].format(d[k]))
            elif k in scaled:
                parts.append(_SCALED[k].format(_ratio(scaled[k])))
        return ", ".join(parts)


_WORDS = {"num_layers": "{} layers", "hidden_size": "hidden {}", "ffn_hidden_size": "FFN {}",
          "num_attention_heads": "{} heads", "seq_length": "seq {}",
          "global_batch_size": "global batch {}", "world_size": "world size {}"}
_SCALED = {"ffn_hidden_size": "FFN {} × hidden", "num_attention_heads": "head dim {}"}


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _normal(shape: tuple) -> tuple:
    """The shape with FFN and heads as proportions of hidden_size (Fractions: exact)."""
    d = dict(zip(metrics.SHAPE_KEYS, shape))
    return tuple(Fraction(d[k], d["hidden_size"]) if k == "ffn_hidden_size" else
                 Fraction(d["hidden_size"], d[k]) if k == "num_attention_heads" else d[k]
                 for k in metrics.SHAPE_KEYS)


def _ratio(r) -> str:
    return f"{r:.4g}"


def find(groups: list) -> list:
    """Every sweep among the groups (compare.Group), by directory, setting and fixed values."""
    by_dir: dict = {}
    for g in groups:
        if metrics.shape_known(g.shape) and all(_count(v) for v in g.shape):
            by_dir.setdefault(g.directory, []).append(g)
    out = []
    for directory in sorted(by_dir):
        members = by_dir[directory]
        study = os.path.basename(os.path.normpath(directory)) or directory
        found = []
        for i, key in enumerate(metrics.SHAPE_KEYS):
            rest: dict = {}
            for g in members:
                n = _normal(g.shape)
                rest.setdefault(n[:i] + n[i + 1:], []).append(g)
            for gs in rest.values():
                if len({g.shape[i] for g in gs}) < 2:
                    continue
                sw = _sweep(study, directory, key, sorted(gs, key=lambda g: g.shape[i]))
                if len({p.value for p in sw.points}) >= 2:
                    found.append(sw)
        stem = f"{compare.slugify(study)}-sweep"
        for sw in found:
            same = [x for x in found if x.key == sw.key]
            sw.slug = f"{stem}-{sw.key}" + (f"_{same.index(sw) + 1}" if len(same) > 1 else "")
        out += found
    return out


def _sweep(study: str, directory: str, key: str, gs: list) -> Sweep:
    i = metrics.SHAPE_KEYS.index(key)
    first = dict(zip(metrics.SHAPE_KEYS, gs[0].shape))
    n = _normal(gs[0].shape)
    fixed, scaled = [], []
    for j, k in enumerate(metrics.SHAPE_KEYS):
        if j == i:
            continue
        if key == "hidden_size" and k in _WITH_HIDDEN:
            scaled.append((k, n[j].numerator if n[j].denominator == 1 else float(n[j])))
        else:
            fixed.append((k, first[k]))
    sw = Sweep(study, directory, key, [g.shape[i] for g in gs], fixed, scaled,
               [g.title for g in gs], "")
    spreads = [g.spread for g in gs if g.spread is not None]
    sw.spread = max(spreads) if spreads else None
    for g in gs:
        sw.points += _points(g, g.shape[i])
    order = {label: k for k, label in enumerate(sw.labels)}
    sw.points.sort(key=lambda p: (order[p.label], p.value))
    return sw


def _points(g, value: int) -> list:
    """The group's FP8 recipes at the baseline's settings, one Point per label."""
    if g.baseline is None or not g.summaries[g.baseline].baseline_recipe:
        return []
    by_label: dict = {}
    for run in g.runs:
        s, v = g.summaries[run.name], g.versus.get(run.name)
        if (run.name == g.baseline or s.baseline_recipe or v is None or v.invalid
                or v.speedup is None or v.confounds):
            continue
        by_label.setdefault(s.label, []).append((run.name, v.speedup))
    base = g.summaries[g.baseline]
    out = []
    for label, found in by_label.items():
        speeds = [x for _, x in found]
        p = Point(value, g.title, label, statistics.fmean(speeds), sorted(n for n, _ in found),
                  g.baseline)
        if len(speeds) > 1:
            p.speedup_low, p.speedup_high = min(speeds), max(speeds)
        p.single = (len(found) == 1 and len(g.summaries[found[0][0]].repeats) < 2
                    and len(base.repeats) < 2)
        out.append(p)
    return out


def caption(sw: Sweep) -> str:
    """One line: what is fixed, what a point is, and whether it has a spread."""
    what = ("a point is one FP8 recipe's speedup over its group's BF16 run at equal settings, "
            "by median step time")
    if sw.single:
        return (f"Fixed: {sw.fixed_text()}; {what}, from one launch of the recipe and one of "
                "BF16 (no spread).")
    spread = (f"step-time spread up to ±{sw.spread:.1%}" if sw.spread is not None else
              "step-time spread unknown (no run launched twice, no recipe with two seeds)")
    return (f"Fixed: {sw.fixed_text()}; {what}; a point of several runs is their mean, its "
            f"bar their range; {spread}.")
