"""Render the comparison report as markdown. Pure: groups + plot file names -> text.

Deterministic by construction: no build timestamps, runs and groups in sorted order, one
number format per quantity, `–` for every blank.
"""

from __future__ import annotations

import functools
import os
import re

from ..common import clock
from . import columns
from . import compare
from ..logs import kernels
from . import metrics
from . import plots
from ..megatron import recipes
from . import reference
from . import sweep
from . import verdict as V
from .verdict import predicted_band, predicted_extrapolated, predicted_speedup
from ..megatron.logvocab import strip_prefixes

BLANK = "–"
NOTE_CHARS = 160  # a crash reason longer than this is cut in the table (full text per run)

HOW_TO_READ = """\
## How to read this

- *Status*: how the log ended (completed, time-limit, exit-interval, diverged, crashed, \
cancelled, running/truncated, unreadable) and why. A diverged, crashed or unreadable run gets \
no speedup, loss gap or time to target.
- *itr time* (lower is faster): median `{iter_ms}`, leaving out the first \
{warmup} iterations (the lines that log them; also after each restart), the iteration right after an \
evaluation or checkpoint save, and the iterations a profiler slowed (`--profile-step-start` to \
`--profile-step-end`, the end included: the trace is exported as it starts). *Speedup* (above 1 is faster) = baseline itr time / run itr \
time. A run launched more than once is shown by its latest completed launch. When the \
baseline was, each run is compared with the baseline launch that started nearest to its own \
(same sitting, same machine), named in the cell with its itr time when it is not the launch \
in the baseline's row. *Step-time spread*: over the runs launched more than once, and the \
recipes with two or more seeds at equal settings (a seed changes the data order and initial \
weights, not the work per step), the largest slowest / fastest itr time − 1 of one run's \
completed launches or of one recipe's seeds; a speedup with \\|speedup − 1\\| \
≤ spread is marked *within spread*: it cannot be told apart from no change. One pair of \
launches gives a rough spread, not a confidence interval. *mean*, *max* and *stalls*: \
the mean and the largest of the same timed iterations, and those slower than the median by more \
than {stall:.0%}, named by iteration; a speedup whose ratio of means differs from the ratio of \
medians (*Speedup by mean*, against the same baseline launch) by more than the spread (at \
least 1%) is marked *mean differs*. With CUDA graphs on, the \
first `--cuda-graph-warmup-steps` + 1 iterations of each launch (the graph capture included) \
are warm-up too. *Peer windows* (summary.json): the mean of iterations 35-44 (dgxc llmb-run) and \
the mean after skipping the first 70% of logged iterations (Megatron-Bridge). \
*Tokens/s/GPU* (higher is faster) = global batch × seq_length / itr time / world_size.
- *TFLOP/s/GPU*: median of Megatron's own `throughput per GPU`, whose FLOP count \
(`num_floating_point_operations` in megatron/training/training.py) is 3 x the forward pass's \
matrix-multiply FLOPs (2 per multiply-add: QKV and output projections, MLP, logits, and causal \
core attention), whatever the precision. *MFU* = that / the GPU's dense \
peak for the run's precision{peaks}; blank when the GPU is \
unknown (no sidecar, no manifest).
- *Final loss*: the last value of the smoothed loss, the trailing mean of the last W finite \
`lm loss` values, W = 10% of them and at least 5 (lower is better). *Val loss*: the last \
validation `lm loss value`.
- *Loss gap* (lower is better): run − baseline smoothed `lm loss` (the baseline's W) at the \
iterations both logged, over the last quarter of them; *mean* and *largest* (the largest \
absolute deviation, with its sign). The noise band is \\|mean gap\\| between the baseline and a \
BF16 run with another seed (Megatron's `--seed` moves both the initial weights and the data \
order), the same statistic as each run's mean gap; a run is within noise when \\|its mean \
gap\\| ≤ band.{band_rule} One seed pair gives a rough band, not a confidence interval. Runs on \
mock data or under {min_iters} iterations make loss gaps and times to target not meaningful. \
With two or more seeds of a recipe and of BF16, the verdict is Welch's t-test (two-sided, \
p < 0.05) on the final smoothed loss instead, with the 95% interval of the difference.
- *Time to target*: wall-clock (sum of iteration times; warm-up iterations counted at the \
median itr time, as the median leaves them out) and tokens until the run's smoothed loss (with \
the baseline's W) first reaches the baseline's final smoothed loss. Its band: the largest \
\\|other BF16 seed / baseline − 1\\| of the time (and of the tokens); a run inside the band \
widened by one step is *same within noise*, else *sooner* or *later*.
- *Settings that differ*: only arguments that can change step time or memory are listed \
(profiler, logging and run-length settings are not), with the launch environment variables \
that can change speed or numerics (`env NAME`: NVTE_, NCCL_, CUDA_, PYTORCH_, TORCH_, \
NVSHMEM_, CUBLAS, CUDNN, OMP_NUM_THREADS ...) and the GPU, driver, CUDA, torch, Transformer \
Engine, megatron-core and apex versions of the sidecars; a speedup between runs that differ in \
one mixes the recipe with the setting.
- *Runtime*: the sum of the log's segments (one per launch: start of its first logged iteration \
to its last iteration line); downtime between segments (a crash and its requeue) is shown \
apart. Launch: the sidecar's started to ended. Memory: Megatron's peak over ranks, in GiB.
"""


def render(groups: list[compare.Group], plots: dict[str, list[tuple[str, str]]], title: str,
           command: str, inputs: list[str],
           warmup: int, ref=None) -> str:
    n_runs = sum(len(g.runs) for g in groups)
    out = [f"# {title}", ""]
    out.append(f"Produced by `{command}` from {', '.join(f'`{i}`' for i in inputs)}: "
               f"{n_runs} run{'s' if n_runs != 1 else ''} in {len(groups)} comparison "
               f"group{'s' if len(groups) != 1 else ''}.")
    peaks = recipes.peaks_text(s.gpu for g in groups for s in g.summaries.values())
    band_rule = (" With k BF16 seeds, the band is the largest \\|mean gap\\| of the k − 1 other "
                 "seeds to the baseline." if any(g.seeds > 2 for g in groups) else "")
    verdicts = {g.slug: V.of(g) for g in groups}
    if len(groups) > 1:
        out += [""] + answer_block(groups, verdicts)
    for sw in sweep.find(groups):
        out += [""] + sweep_block(sw, plots.get(sw.slug, []))
    for g in groups:
        out += [""] + _group(g, plots.get(g.slug, []), ref, verdicts[g.slug])
    out += ["", HOW_TO_READ.format(warmup=warmup, peaks=f" ({peaks})" if peaks else "",
                                   min_iters=metrics.MIN_ITERATIONS_FOR_LOSS,
                                   iter_ms=metrics.ITER_MS, band_rule=band_rule,
                                   stall=metrics.STALL_FRACTION)]
    out += ["", "The main table's figures (summary.json key in brackets):", ""]
    out += columns.definitions()
    return "\n".join(out).rstrip("\n") + "\n"


# --- the answer by study -------------------------------------------------------------------


def answer_block(groups: list, verdicts: dict) -> list:
    """One row per group, the largest setup first (GPUs, then layers x hidden², then tokens
    per step; unknown shapes last): its GPUs, model shape and its verdict's answer in a few
    words, linked to its section. Read from the groups' verdicts (verdict.of), not worked out
    again."""
    def size(g):
        if g.shape is None:
            return (1, 0, 0, 0, g.title)
        d = dict(zip(metrics.SHAPE_KEYS, g.shape))
        ws, gbs, seq, layers, hidden = (
            d[k] if isinstance(d[k], (int, float)) and not isinstance(d[k], bool) else 0
            for k in ("world_size", "global_batch_size", "seq_length", "num_layers",
                      "hidden_size"))
        return (0, -ws, -layers * hidden * hidden, -gbs * seq, g.title)
    rows = []
    for g in sorted(groups, key=size):
        d = ({k: compare.value_text(x) for k, x in zip(metrics.SHAPE_KEYS, g.shape)}
             if g.shape else {})
        gpus = {s.gpu for s in g.summaries.values() if s.gpu}
        count_ = d.get("world_size", compare.UNKNOWN)
        rows.append([f"[{g.title}](#{anchor(g.title)})",
                     count_ + (f" × {gpus.pop()}" if len(gpus) == 1 else ""),
                     (f"{d['num_layers']} layers, hidden {d['hidden_size']}, seq "
                      f"{d['seq_length']}, global batch {d['global_batch_size']}")
                     if d else "unknown (no arguments dump)",
                     answer_text(g, verdicts[g.slug])])
    return (["## Answer by study", "",
             "Each study's verdict in a few words, the largest setup first (speedups over BF16 "
             "at equal settings, by median step time); its section says more.", ""]
            + table(["Study", "GPUs", "Model", "Answer"], rows))


def sweep_block(sw, files: list) -> list:
    """A study that sweeps one shape setting (sweep.Sweep): its plot, a one-line caption (what
    is fixed, what a point is) and the points as a table, one row per value."""
    name = sweep.NAMES.get(sw.key, sw.key)
    out = [f"## Sweep: FP8 speedup by {name} ({sw.study})", ""]
    out += [f"![FP8 speedup over BF16 by {name} in {sw.study}]({f})" for _, f in files]
    if files:
        out.append("")
    out += [sweep.caption(sw), ""]
    rows = []
    for value in sw.values:
        cells = []
        for label in sw.labels:
            p = next((p for p in sw.points if p.label == label and p.value == value), None)
            cells.append(BLANK if p is None else f"{p.speedup:.3f}x" + (
                f" ({p.speedup_low:.3f}–{p.speedup_high:.3f}x, {len(p.runs)} runs)"
                if p.speedup_low is not None else ""))
        rows.append([f"{value:,}"] + cells)
    return out + table([f"`{sw.key}`"] + sw.labels, rows)


def answer_text(g, v) -> str:
    """The verdict (verdict.Verdict) in a few words: the fastest recipe at equal settings and
    its speedup with the step-time spread, the recipes not told apart, or why there is none;
    with the runs whose BF16 precision is assumed (compare.assume_bf16) named after it."""
    if v.caveats[:1] and v.caveats[0].startswith("verdict blank"):
        return f"cannot tell: {v.caveats[0]}"
    text = _answer_words(g, v)
    if v.fastest is not None and v.not_compared:
        by = ", ".join(v.not_compared_by[:V.MIXED_NAMED]) + (
            ", ..." if len(v.not_compared_by) > V.MIXED_NAMED else "")
        text += (f"; not compared at equal settings: {', '.join(v.not_compared)}"
                 + (f" (they differ in {by})" if by else ""))
    if g.assumed:
        text += f" ({compare.BF16_ASSUMED}: {', '.join(g.assumed)})"
    return text


NO_SPREAD = "no run launched twice, no recipe with two seeds"


def _spread_source(g) -> str:
    """" between seeds" or " between launches": what the group's step-time spread was measured on."""
    return " between seeds" if g.spread_from_seeds else " between launches"


def _answer_words(g, v) -> str:
    spread = (f"spread ±{v.spread:.1%}{_spread_source(g)}" if v.spread is not None
              else f"spread unknown: {NO_SPREAD}")
    if v.tied:
        return V.tie_text(v)
    if v.fastest is None:
        if v.mixed_fastest:
            return V.mixed_text(v)
        return v.no_answer if len(g.runs) == 1 else f"no answer: {v.no_answer}"
    if v.fastest == v.over:
        return (f"BF16 fastest; next {v.runner_up_label} at {v.runner_up_speedup:.3f}x "
                f"({spread})")
    within = ("; within the spread: not told apart from BF16"
              if v.spread is not None and abs(v.speedup - 1) <= v.spread else "")
    return f"{v.fastest_label} fastest, {v.speedup:.3f}x ({spread}){within}"


def anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    kept = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return kept.replace(" ", "-")


# --- one group -----------------------------------------------------------------------------


def _group(g, files: list, ref=None, v=None) -> list:
    out = [f"## {g.title}", ""]
    out += verdict_block(g, v if v is not None else V.of(g)) + [""]
    out.append(f"Directory `{shown_path(g.directory)}`; {compare.shape_text(g.shape)}"
               + (f" (a group of its own: {g.shape_note})" if g.shape_note else "") + ".")
    if g.baseline:
        out.append(f"Baseline: **{g.baseline}** ({g.baseline_note}).")
    else:
        out.append(f"Baseline: none ({g.baseline_note}).")
    if g.noise and g.seeds > 2:
        each = ", ".join(f"{name} {gap.mean:+.4f}" for name, gap in g.noise_gaps.items())
        out.append(f"Seed-to-seed noise: {g.seeds - 1} other BF16 seeds vs {g.baseline} differ "
                   f"on average by {each}; the noise band is the largest \\|mean gap\\|: "
                   f"±{g.band:.4f} ({g.noise_run}, which differs by {g.noise.max:+.4f} at most "
                   f"over iterations {g.noise.first}–{g.noise.last}).")
    elif g.noise:
        out.append(f"Seed-to-seed noise: {g.noise_run} vs {g.baseline} differ by "
                   f"{g.noise.mean:+.4f} on average (the noise band: ±{g.band:.4f}) and by "
                   f"{g.noise.max:+.4f} at most over iterations {g.noise.first}–{g.noise.last}.")
    elif g.baseline:
        out.append("Seed-to-seed noise: unknown (no second BF16 run with another seed).")
    out += _spread_lines(g)
    if g.caveats:
        out.append(f"**Loss comparisons not meaningful here**: {'; '.join(g.caveats)}.")
    if g.env_unknown and len(g.runs) > 1:
        which = ("every run" if len(g.env_unknown) == len(g.runs)
                 else ", ".join(sorted(g.env_unknown)))
        out.append(f"Launch environment unknown for {which} (a sidecar without `launch_env` "
                   "whose launch script has changed or is gone since, or no sidecar): environment "
                   "variables are compared only between runs that record them.")
    if g.differences:
        out += ["", "Settings that differ besides precision (those that can change step time "
                    "or memory: arguments, `env` variables, GPU and software):", ""]
        for key, values in g.differences:
            out.append(f"- `{key}`: " + "; ".join(
                f"{_cell(v, False)} ({', '.join(names)})" for v, names in values))
    out += [""] + _main_table(g) + [""]
    if ref is not None and reference.matches(ref, g):
        out += ["### Beside published figures", ""] + _reference_table(g, ref) + [""]
    if g.baseline and len(g.runs) > 1:
        out += [f"### Against the baseline ({g.baseline})", ""] + _versus_table(g) + [""]
    profiled = g.profiled()
    if profiled:
        out += ["### Where the step time goes", ""] + _breakdown_table(g, profiled) + [""]
    group_plots = [(k, f) for k, f in files if not k.startswith("run:")]
    if group_plots:
        out += ["### Plots", ""]
        captions = {"loss": "Training loss", "iter-time": "Iteration time",
                    "step-time": "Step time per run",
                    "loss-gap": "Loss gap to the baseline",
                    "breakdown": "Where a step's GPU time goes"}
        for kind, name in group_plots:
            out += [f"![{captions[kind]}]({name})", ""]
    out += ["### Runs", ""]
    run_plots = {k[len("run:"):]: f for k, f in files if k.startswith("run:")}
    for run in g.runs:
        out += _run_section(g, run, run_plots.get(run.name))
    return out


def verdict_block(g, v) -> list:
    """The group's answer in words (verdict.Verdict): fastest at equal settings with its
    speedup, spread and basis; per recipe the loss and time-to-target words; the caveats."""
    out = ["**Verdict**", ""]
    if v.caveats[:1] and v.caveats[0].startswith("verdict blank"):  # verdict.of
        return out + [f"- Cannot tell: {v.caveats[0]}."]
    if len(g.runs) == 1:
        out.append(f"- {v.no_answer[:1].upper()}{v.no_answer[1:]}.")
    elif g.baseline is None:
        out.append(f"- No comparison: {v.no_answer}.")
    elif v.fastest is None:
        out.append(f"- **Fastest at equal settings**: none: {v.no_answer}.")
        if v.mixed_fastest:
            m = v.mixed_fastest
            same = m["run"] == v.fastest_overall  # then this line is also the fastest run's
            own = v.fastest_overall_settings if same else []
            rest = [k for k in v.mixed_by if not any(x.split(" ")[0] == k for x in own)]
            differ = (f"; it differs from the baseline in {'; '.join(own)}" if own else "") + (
                f"; {'other ' if own else ''}rows differ in {', '.join(rest)}" if rest else "")
            mean = (f"; by mean {v.fastest_overall_speedup_by_mean:.3f}x" if same and
                    v.fastest_overall_speedup_by_mean is not None else "")
            first = "the fastest run overall and " if same else ""
            out.append(f"- **Mixed, recipe and settings**: {first}fastest FP8 row "
                       f"**{m['label']}** ({m['run']}), **{m['speedup']:.3f}x** the BF16 row "
                       f"({g.baseline}) by median step time{mean}{differ}: not a speedup at "
                       f"equal settings.")
    else:
        spread = (f"step-time spread ±{v.spread:.1%}{_spread_source(g)}" if v.spread is not None else
                  f"step-time spread unknown ({NO_SPREAD})")
        within = (" — within the spread: not told apart from it"
                  if v.spread is not None and abs(v.speedup - 1) <= v.spread else "")
        mean = (f"; by mean {v.speedup_by_mean:.3f}x" if v.speedup_by_mean is not None else "")
        flag = " (mean and median disagree: stalls)" if v.mean_median_disagree else ""
        at = f" at {', '.join(v.equal_settings)}" if v.equal_settings else ""
        if v.tied:
            out.append(f"- **Fastest at equal settings**{at}: {V.tie_text(v, runs=True)} "
                       f"(speedups over BF16 ({v.over}) by median step time). "
                       f"Basis: {v.basis}.")
        elif v.fastest == v.over:
            out.append(f"- **Fastest at equal settings**{at}: **BF16** ({v.over}); the fastest "
                       f"other recipe there, **{v.runner_up_label}** ({v.runner_up}), runs at "
                       f"**{v.runner_up_speedup:.3f}x** its speed by median step time; {spread}. "
                       f"Basis: {v.basis}.")
        else:
            out.append(f"- **Fastest at equal settings**{at}: **{v.fastest_label}** "
                       f"({v.fastest}), **{v.speedup:.3f}x** the speed of BF16 ({v.over}) by "
                       f"median step time{mean}{flag}; {spread}{within}. Basis: {v.basis}.")
    if v.fastest_overall and not (v.mixed_fastest
                                  and v.mixed_fastest["run"] == v.fastest_overall):
        mixes = (f", but its settings differ ({'; '.join(v.fastest_overall_settings)}): that "
                 f"speedup mixes recipe and setting" if v.fastest_overall_settings else "")
        mean = (f"; by mean {v.fastest_overall_speedup_by_mean:.3f}x"
                if v.fastest_overall_speedup_by_mean is not None else "")
        lead = "Fastest run overall" if v.fastest else "**Fastest run**"
        if v.fastest_overall == g.baseline:
            out.append(f"- {lead}: the baseline itself, **{v.fastest_overall_label}** "
                       f"({g.baseline}); every other run is slower.")
        else:
            out.append(f"- {lead}: **{v.fastest_overall_label}** ({v.fastest_overall}), "
                       f"**{_f(v.fastest_overall_speedup, '{:.3f}x')}** the speed of the "
                       f"baseline ({g.baseline}) by median step time{mean}{mixes}.")
    if v.stalled:
        out.append("- Stalls the median hides (speedup by median / by mean; stalls over "
                   f"{metrics.STALL_FRACTION:.0%} of the median): " + "; ".join(
                       f"{x['run']} {x['speedup']:.3f}x / {x['speedup_by_mean']:.3f}x "
                       f"({stalls_text(g.summaries[x['run']])})" for x in v.stalled) + ".")
    judged = [r for r in v.recipes if r.loss != "not judged" or r.time_to_target != "not judged"]
    if judged:
        out.append("- Per recipe against BF16 (loss; time to BF16's final loss):")
        for r in judged:
            speed = _f(r.speedup, "{:.3f}x")
            if r.speedup_range:
                speed += f" (seeds {r.speedup_range[0]:.3f}–{r.speedup_range[1]:.3f}x)"
            if r.predicted_speedup is not None:
                speed += ", " + prediction_text(r.predicted_speedup, r.predicted_band, r.predicted_extrapolated, True)
            seeds = f"{r.seeds} seeds" if r.seeds > 1 else "1 seed"
            out.append(f"  - **{r.label}** ({', '.join(r.runs)}; {seeds}; speed {speed}): "
                       f"loss **{r.loss}** ({r.loss_basis}); time to target "
                       f"**{r.time_to_target}** ({r.time_to_target_basis}).")
    elif v.recipes:
        why = v.recipes[0].loss_basis.removeprefix("not judged: ")
        out.append(f"- Loss and time to target: **not judged** ({_short(why, set(g.summaries))}).")
        predicted = [r for r in v.recipes if r.predicted_speedup is not None]
        for r in predicted:
            out.append(f"  - {r.label} ({', '.join(r.runs)}): measured "
                       f"{_f(r.speedup, '{:.3f}x')}, "
                       f"{prediction_text(r.predicted_speedup, r.predicted_band, r.predicted_extrapolated, True)}.")
    assumed = [c for c in v.caveats if c.startswith(compare.BF16_ASSUMED)]
    if assumed:
        out.append(f"- **Assumed**: {'; '.join(assumed)}: NeMo prints that line for FP8 runs "
                   "only, and another run of this group has it.")
    rest = [c for c in v.caveats if c not in assumed]
    if rest:
        out.append("- Cannot tell: " + "; ".join(_short(c, set(g.summaries)) for c in rest)
                   + ".")
    return out


def _short(text: str, names: set = frozenset(), limit: int = 600) -> str:
    """Long lists of run names in a caveat counted instead, to keep the verdict on one screen."""
    def count(m: re.Match) -> str:
        items = m.group(1).split(", ")
        return f" ({len(items)} runs)" if set(items) <= names else m.group(0)
    text = re.sub(r" \(([^()]{120,})\)", count, text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _configuration(g, s, run) -> str:
    # The manifest's label is what the experiment meant; the arguments' label what ran
    # (the per-run section shows both).
    label = run.manifest.get("label")
    bits = [label if isinstance(label, str) and label else s.label]
    seeds = {x.seed for x in g.summaries.values() if x.seed is not None}
    if len(seeds) > 1 and s.seed is not None:
        bits.append(f"seed {s.seed}")
    text = f"{run.name}: {', '.join(bits)}"
    return text + " (baseline)" if run.name == g.baseline else text


def status_text(s) -> str:
    """"completed 30/30", "crashed at start-up: ValueError: ...", "time-limit: exited ..."."""
    return s.reason if s.reason.startswith(s.status) else f"{s.status}: {s.reason}"


def _status_cell(s) -> str:
    reason = hide_paths(status_text(s))
    return reason if len(reason) <= NOTE_CHARS else reason[:NOTE_CHARS - 1] + "…"


def _runtime(s) -> str:
    text = duration(s.runtime_s)
    if s.downtime_s:
        text += f" (+{duration(s.downtime_s)} down between {s.segments} segments)"
    if s.launch_s is not None:
        text += f" (launch {duration(s.launch_s)})"
    return text


def _spread_lines(g) -> list:
    """The step-time spread of runs launched more than once and of recipes with two or more
    seeds, and which baseline launch each speedup is against (compare.baseline_launch);
    nothing when no run was launched twice and no recipe has two seeds."""
    if g.spread is None:
        return []
    out = []
    if g.launch_spread is not None:
        s = g.summaries[g.spread_run]
        each = ", ".join(f"{a.median_iter_ms:,.1f} ms (`{os.path.basename(a.path)}`)" for a in s.repeats)
        out.append(f"Step-time spread between launches: ±{g.launch_spread * 100:.1f}%, the largest "
                   f"difference between two completed launches of one run ({g.spread_run}: {each}).")
    if g.seed_spread is not None:
        spread, label, runs = g.seed_spread
        each = ", ".join(f"{ms:,.1f} ms ({name})" for name, ms in runs)
        out.append(f"Step-time spread between seeds: ±{spread * 100:.1f}%, the largest difference "
                   f"between the seeds of one recipe at equal settings ({label}: {each}).")
    out.append(f"A speedup within ±{g.spread * 100:.1f}% of 1 is marked *within spread*.")
    if g.baseline and len(g.summaries[g.baseline].repeats) > 1:
        out.append("The baseline was launched more than once: each run is compared with the "
                   "baseline launch that started nearest to its own.")
    return out


def _speedup_cell(v, run=None) -> str:
    if v is None or v.speedup is None:
        return BLANK
    predicted = predicted_speedup(run) if run is not None else None
    return (f"{v.speedup:.3f}x" + (" (within spread)" if v.within_spread else "")
            + (" (mean differs)" if v.mean_disagrees else "")
            + (f" vs `{v.baseline_log}` ({v.baseline_ms:,.1f} ms)" if v.baseline_log else "")
            + (f" ({prediction_text(predicted, predicted_band(run), predicted_extrapolated(run))})"
               if predicted is not None else ""))


def stalls_text(s) -> str:
    """"3 of 5–9%: 16, 18, 19"; "none" without stalls; blank without timed iterations."""
    if s.median_iter_ms is None:
        return BLANK
    if not s.stalls:
        return "none"
    low, high = min(x.fraction for x in s.stalls), max(x.fraction for x in s.stalls)
    size = f"{low:.0%}" if f"{low:.0%}" == f"{high:.0%}" else f"{low * 100:.0f}–{high:.0%}"
    its = [str(x.iteration) for x in s.stalls]
    shown = ", ".join(its[:8]) + (f", … ({len(its) - 8} more)" if len(its) > 8 else "")
    return f"{len(its)} of {size}: {shown}"


def prediction_text(value, band=None, extrapolated=(), reasons=False) -> str:
    """"predicted 1.30x ±8.3%" and, when it extrapolates, ", extrapolated" (with `reasons`:
    ", extrapolated: no H100 log")."""
    out = f"predicted {value:.2f}x" + (f" ±{band * 100:.1f}%" if band is not None else "")
    if extrapolated:
        out += ", extrapolated" + (": " + ", ".join(extrapolated) if reasons else "")
    return out


def _main_table(g) -> list:
    """One row per run; figure columns come from columns.FIGURES (header, format), with the
    cells that say more than the number (speedup notes, the slowest iteration's number)."""
    C = columns.BY_KEY
    spec = [
        ("Configuration", lambda s, v, run: _configuration(g, s, run)),
        ("Status", lambda s, v, run: _status_cell(s)),
        ("Iters", lambda s, v, run: f"{_f(s.iterations_done, '{}')}/"
                                    f"{_f(s.iterations_planned, '{}')}"),
        (C["median_iteration_ms"], None),
        (C["speedup"], lambda s, v, run: _speedup_cell(v, run)),
        (C["tokens_per_s_per_gpu"], None),
        (C["itr_ms_mean"], None),
        (C["speedup_by_mean"], None),
        (C["itr_ms_max"], lambda s, v, run: (f"{s.max_iter_ms:.1f} @{s.max_iteration}"
                                              if s.max_iter_ms is not None else BLANK)),
        (f"Stalls (> {metrics.STALL_FRACTION:.0%} over median)",
         lambda s, v, run: stalls_text(s)),
        (C["final_loss"], lambda s, v, run: (C["final_loss"].cell(s, v) if s.status != "diverged"
                                              else "not valid (diverged)")),
        ("Val loss", lambda s, v, run: (f"{s.val_loss:.4f} @{s.val_iteration}"
                                        if s.val_loss is not None else BLANK)),
        (C["tflops_per_gpu"], None),
        (C["mfu"], None),
        (C["peak_allocated_gib"], None),
        (C["peak_reserved_gib"], None),
        ("Runtime", lambda s, v, run: _runtime(s)),
        (C["min_loss"], None),
        ("Notes", lambda s, v, run: hide_paths("; ".join(s.notes)) or BLANK),
    ]
    head = [h.title() if isinstance(h, columns.Column) else h for h, _ in spec]
    rows = []
    for run in g.runs:
        s, v = g.summaries[run.name], g.versus.get(run.name)
        rows.append([cell(s, v, run) if cell else h.cell(s, v) for h, cell in spec])
    return table(head, rows)


def _versus_table(g) -> list:
    head = ["Configuration", "Loss gap mean (− = lower loss)", "Loss gap largest",
            "Gap iterations", "vs noise",
            "Time to target", "Tokens to target", "Sooner than baseline", "Time vs noise"]
    rows = []
    for run in g.runs:
        s, v = g.summaries[run.name], g.versus.get(run.name)
        if v is None:
            continue
        if v.invalid:
            rows.append([_configuration(g, s, run)] + [f"not valid ({v.invalid})"]
                        + [BLANK] * (len(head) - 2))
            continue
        marked = "" if g.loss_meaningful else " (not meaningful)"
        rows.append([
            _configuration(g, s, run),
            _f(v.gap.mean if v.gap else None, "{:+.4f}" + marked),
            _f(v.gap.max if v.gap else None, "{:+.4f}"),
            f"{v.gap.first}–{v.gap.last}" if v.gap else BLANK,
            (noise_words(v.verdict, v.gap.mean if v.gap else None, g.band) + marked)
            if v.verdict else BLANK,
            f"{duration(v.ttt_s)} @{v.ttt_iteration}{marked}" if v.ttt_s is not None else BLANK,
            count(v.ttt_tokens),
            _f(v.ttt_speedup, "{:.3f}x" + marked),
            ttt_words(g, v) or BLANK,
        ])
    foot = []
    if g.target is not None:
        foot = ["", f"Target: the baseline's final smoothed loss {g.target:.4f} "
                    f"(window {g.window} logged iterations)."]
    if g.seeds > 2:
        foot += ["", f"*vs noise*: band = max over the k − 1 other BF16 seeds of \\|mean gap to "
                     f"the baseline\\| (k = {g.seeds} here): ±{g.band:.4f}, from {g.noise_run}; "
                     f"each seed's gap is its noise reference row."]
    if not g.loss_meaningful:
        foot += ["", f"Loss gaps and times to target are not meaningful here: "
                     f"{'; '.join(g.caveats)}."]
        return table(head, rows) + foot
    return table(head, rows) + foot + _verdicts(g)


def noise_words(word: str, gap, band) -> str:
    """compare.verdict's word with its sign as words: "outside noise (-0.0081)" -> "outside
    noise: lower loss, 0.0081 beyond the ±0.0539 band"."""
    if not word.startswith("outside noise") or gap is None or band is None:
        return word
    beyond = abs(gap) - band
    return (f"outside noise: {'lower' if gap < 0 else 'higher'} loss, {beyond:.4f} beyond the "
            f"±{band:.4f} band")


def ttt_words(g, v) -> str:
    """"same within noise (±10% seed band)", "sooner (outside the ±10% seed band)", ..."""
    if not v.ttt_verdict:
        return ""
    band = f"±{g.ttt_band:.0%} seed band" if g.ttt_band is not None else "no seed band"
    if v.ttt_verdict == "same within noise":
        return f"same within noise ({band})"
    if v.ttt_verdict == "not reached":
        return "not reached"
    return f"{v.ttt_verdict} (outside the {band})" if g.ttt_band is not None else \
        f"{v.ttt_verdict} ({band}: fewer than two BF16 seeds reach the target)"


def _breakdown_table(g, profiled: list) -> list:
    """Milliseconds per profiled step by kernel category, from each run's kernel table."""
    head = ["Configuration", "GPU timeline (ms)"] + [c for c in kernels.ORDER]
    rows = []
    for run in profiled:
        ms = plots.breakdown_of(g, run)
        kt, lent_by = g.kernels[run.name]
        span = kt["span_us"] / 1000.0 / max(len(kt.get("steps") or []), 1)
        name = _configuration(g, g.summaries[run.name], run)
        if lent_by:
            name += f" (profiled launch `{os.path.basename(lent_by)}`)"
        rows.append([name, f"{span:,.0f}"] + [f"{ms[c]:,.0f}" for c in kernels.ORDER])
    steps = sorted({s for r in profiled for s in g.kernels[r.name][0].get("steps") or []})
    lead = [f"Rank 0's kernels over the profiled step{'s' if len(steps) != 1 else ''} "
            f"({', '.join(map(str, steps)) or '?'}), in milliseconds per step, from each run's "
            "`<run>.kernels.json` (`tools/profile_breakdown.py`). GEMMs are split by operand type; "
            "communication is split into the part hidden under compute and the part that is "
            "not; idle is time with no kernel running. Compute rows sum kernel durations, so "
            "kernels overlapping on several streams can add up to a little more than the timeline.", ""]
    return lead + table(head, rows)


def _reference_table(g, ref) -> list:
    """Measured runs next to published rows of the same model (--reference)."""
    base = g.summaries.get(g.baseline) if g.baseline else None
    # Megatron's FLOPs per token for this model: its throughput over the baseline's tokens/s.
    per_token = (base.tflops_gpu / base.tokens_per_s_gpu
                 if base and base.tflops_gpu and base.tokens_per_s_gpu else None)
    published = {row.precision: row for row in reversed(ref.rows)}  # first row per precision
    head = ["Configuration", "Tokens/s/GPU", "TFLOP/s/GPU", "Speedup over BF16",
            "Measured / published"]
    rows = []
    for run in g.runs:
        s = g.summaries[run.name]
        if not s.tokens_per_s_gpu:
            continue
        same = published.get(s.precision)
        rows.append([
            _configuration(g, s, run), _f(s.tokens_per_s_gpu, "{:,.0f}"), _f(s.tflops_gpu, "{:.1f}"),
            _f(s.tokens_per_s_gpu / base.tokens_per_s_gpu if base and base.tokens_per_s_gpu else None,
               "{:.2f}x"),
            f"{s.tokens_per_s_gpu / same.tokens_per_s_gpu:.2f}x of {_cell(same.label)}" if same else BLANK,
        ])
    bf16 = published.get(recipes.BASELINE.precision)
    for row in ref.rows:
        rows.append([
            f"{_cell(row.label)} (published)", _f(row.tokens_per_s_gpu, "{:,.0f}"),
            _f(row.tokens_per_s_gpu * per_token if per_token else None, "{:.1f}"),
            _f(row.tokens_per_s_gpu / bf16.tokens_per_s_gpu if bf16 else None, "{:.2f}x"),
            BLANK,
        ])
    where = f" ({ref.url}, recorded {ref.recorded})" if ref.url else ""
    foot = ["", f"Published: {_cell(ref.source, False)}{where}. "
                "Their TFLOP/s/GPU apply Megatron's FLOP "
                "count for this model (as measured above) to the published tokens/s."]
    return table(head, rows) + foot


def _verdicts(g) -> list:
    """One sentence per run: inside the noise band or not, and how much sooner it gets there."""
    base = g.versus.get(g.baseline)
    if g.band is None or base is None or base.ttt_s is None:
        return []
    lines = ["", "In words, against the noise band and the target:", ""]
    for run in g.runs:
        v = g.versus.get(run.name)
        if run.name == g.baseline or run.name in g.noise_gaps or v is None or v.gap is None \
                or v.invalid:
            continue
        s = g.summaries[run.name]
        where = (f"stays within the seed-to-seed noise band (mean gap {v.gap.mean:+.4f}, band "
                 f"±{g.band:.4f})" if v.verdict == "within noise" else
                 f"is {noise_words(v.verdict, v.gap.mean, g.band)} (mean gap {v.gap.mean:+.4f})")
        if v.ttt_s is None:
            when = (f"does not reach the target within its {s.iterations_done} iterations "
                    f"(final smoothed loss {_f(s.final_loss, '{:.4f}')})")
        else:
            when = (f"reaches the target {_relative(v.ttt_s, base.ttt_s)} in wall-clock "
                    f"({duration(v.ttt_s)} vs {duration(base.ttt_s)}): {ttt_words(g, v)}; with "
                    f"{_relative(v.ttt_tokens, base.ttt_tokens, 'fewer', 'more')} tokens "
                    f"({count(v.ttt_tokens)} vs {count(base.ttt_tokens)}): "
                    + (v.tokens_verdict + (f" (±{g.tokens_band:.0%} seed band)"
                                           if g.tokens_band is not None else ""))
                    + ("; its speed mixes recipe and setting ("
                       + ", ".join(V.setting_text(c) for c in v.confounds) + ")"
                       if v.confounds else ""))
        lines.append(f"- **{_cell(s.label, False)}** ({run.name}) {where}; it {when}.")
    return lines


def _relative(value, reference, less: str = "sooner", more: str = "later") -> str:
    if not value or not reference:
        return BLANK
    change = value / reference - 1
    if change == 0:
        return "as soon as the baseline" if less == "sooner" else "as many"
    return f"{abs(change):.{1 if abs(change) < 0.005 else 0}%} {less if change < 0 else more}"


# --- one run -------------------------------------------------------------------------------


def _run_section(g, run, plot) -> list:
    s, log, args = g.summaries[run.name], run.log, run.log.args
    side = run.sidecar
    out = [f"#### {run.name}", ""]
    joined = getattr(run, "nodes", [])  # a launch on several nodes: every node's log
    logs = " + ".join(f"`{shown_path(p)}`" for p in run.stitched or joined or [run.path])
    items = [("Log", f"{logs} ({log.size_bytes / 1e6:.2f} MB)"),
             ("Status", status_text(s))]
    if s.attempts:
        shown = " + ".join(f"`{os.path.basename(p)}`" for p in run.stitched) + ", stitched" \
            if run.stitched else " + ".join(f"`{os.path.basename(p)}`" for p in joined or [run.path])
        items.append(("Attempts", "; ".join(
            " + ".join(f"`{os.path.basename(p)}`" for p in getattr(a, "nodes", []) or [a.path])
            + f" {a.status} "
            f"({_f(a.iterations_done, '{}')}/{_f(a.iterations_planned, '{}')}"
            + (f", resumed at {a.resumed_at}" if a.resumed_at is not None else "")
            + (f", itr time {a.median_iter_ms:,.1f} ms" if a.median_iter_ms else "") + ")"
            for a in s.attempts) + f" (shown: {shown})"))
    code = side.get("exit_code")
    if code is not None:
        items.append(("Exit code", f"{code} (sidecar)"))
    items.append(("Recipe", _recipe_detail(s, args, log.precision_line)))
    if s.attention:
        items.append(("Attention", f"{s.attention} (Transformer Engine's log)"))
    if args and not log.precision_line:  # a dump (NeMo's FP8 line names the recipe only)
        items.append(("Model", compare.shape_text(metrics.shape(args))))
        items.append(("Parallelism", _parallelism(args)))
        items.append(("Schedule", _schedule(args)))
    items.append(("GPU", _gpu(s, side)))
    items.append(("Versions", _versions(side)))
    items.append(("Overrides", _overrides(side)))
    launch = [f"{k} {side[k]}" for k in ("started", "ended", "host") if side.get(k)]
    if launch:
        span = f" ({duration(s.launch_s)})" if s.launch_s is not None else ""
        items.append(("Launch", ", ".join(launch) + span))
    if run.manifest:
        axes = run.manifest.get("axes")
        axes_text = ", ".join(f"{k}={v}" for k, v in sorted(axes.items())) if isinstance(
            axes, dict) else BLANK
        extra = [f"{k} {run.manifest[k]}" for k in ("label", "recipe", "gpu")
                 if run.manifest.get(k)]
        target, ran = recipes.gpu(str(run.manifest.get("gpu") or "")), recipes.gpu(s.gpu or "")
        if s.gpu_from == "sidecar" and target and ran and target.name != ran.name:
            extra[-1] += (f" (the matrix's target; it ran on {ran.name}: its memory estimate was "
                          f"for {target.name})")
        items.append(("Manifest", ", ".join([f"axes {axes_text or BLANK}"] + extra)))
    timing = f"runtime {duration(s.runtime_s)}"
    if s.runtime_from:
        timing += f" (from {s.runtime_from})"
    if s.segments > 1:
        timing += f", {s.segments} segments"
        if s.downtime_s:
            timing += f" with {duration(s.downtime_s)} of downtime between them"
    timing += f", {s.timed_iterations} timed iterations"
    if log.steps.segment_starts[1:]:
        resumed = ", ".join(map(str, log.steps.segment_starts[1:]))
        timing += f", later segments start at iteration {resumed}"
    if s.graph_warmup:
        timing += (f", the first {s.graph_warmup} iterations of each launch left out as CUDA-graph "
                   "warm-up and capture")
    if s.speed_warning:
        timing += f"; too few for stable step times: {s.speed_warning}"
    items.append(("Timing", timing))
    if s.notes:
        items.append(("Notes", "; ".join(s.notes)))
    out += [f"- {k}: {hide_paths(_cell(v, table_cell=False))}" for k, v in items]
    context = log.status.context if s.status in ("crashed", "diverged") else []
    if context:
        out += ["", "Last lines before the crash:", "", "```text"]
        out += [hide_paths(strip_prefixes(line)).replace("```", "'''") for line in context]
        out += ["```"]
    if plot:
        out += ["", f"![{run.name}]({plot})"]
    return out + [""]


def _recipe_detail(s, args, line: str = "") -> str:
    """The label and the recipe's arguments as the log's dump has them (or, for a NeMo 2.0 log,
    as its `Using FP8 (...)` line states them), but those its other settings leave without
    effect (recipes.idle_args); a run without FP8/FP4
    (`--fp8-format`/`--fp4-format` unset) shows only its precision flags, not the FP8
    arguments' defaults that Megatron prints but does not use."""
    if not args:
        return s.label
    idle = recipes.idle_args(args)
    keys = [k for k in recipes.arg_names(recipes.of_args(args)) if k not in idle]
    if s.precision not in ("fp8", "fp4"):
        keys = [k for k in keys if k in ("bf16", "fp16")]
    shown = [f"{k} {args[k]}" for k in keys if k in args]
    source = f"from NeMo's `{line}` line: " if line else ""
    return s.label + (f" ({source}" + ", ".join(shown) + ")" if shown else "")


def _parallelism(args) -> str:
    parts = [f"{label} {args[k]}" for label, k in (
        ("TP", "tensor_model_parallel_size"), ("PP", "pipeline_model_parallel_size"),
        ("CP", "context_parallel_size"), ("DP", "data_parallel_size"),
        ("world size", "world_size"), ("micro batch", "micro_batch_size"),
        ("global batch", "global_batch_size")) if k in args]
    return ", ".join(parts) or BLANK


def _schedule(args) -> str:
    keys = ("train_iters", "eval_interval", "eval_iters", "log_interval", "save_interval",
            "exit_duration_in_mins", "exit_interval", "seed")
    return ", ".join(f"{k} {args[k]}" for k in keys if k in args) or BLANK


def _gpu(s, side) -> str:
    env = side.get("environment") if isinstance(side.get("environment"), dict) else {}
    gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
    if s.gpu_from == "sidecar":
        extra = [f"{k.replace('_', ' ')} {gpu[k]}" for k in ("count", "driver", "memory_mib",
                                                            "compute_capability") if
                 gpu.get(k) is not None]
        text = s.gpu + (f" ({', '.join(extra)})" if extra else "")
    elif s.gpu_from == "manifest":
        text = f"{s.gpu} (from the manifest; no sidecar)"
    elif side:
        text = "unknown (the sidecar records no GPU and the manifest names none), so MFU is blank"
    else:
        text = "unknown (no sidecar or manifest entry), so MFU is blank"
    if s.peak_tflops:
        text += f"; dense {s.precision.upper()} peak {s.peak_tflops:.0f} TFLOP/s"
    return text


def _versions(side) -> str:
    env = side.get("environment") if isinstance(side.get("environment"), dict) else {}
    names = (("python", "python"), ("torch", "torch"), ("cuda", "CUDA"),
             ("cuda_driver", "driver's CUDA"),
             ("transformer_engine", "Transformer Engine"), ("megatron_core", "Megatron-Core"),
             ("apex", "apex"))
    parts = [f"{label} {env[k] if env[k] is not None else 'none'}" for k, label in names
             if k in env]
    return ", ".join(parts) if parts else "unknown (no sidecar)"


def _overrides(side) -> str:
    ov = side.get("overrides") if isinstance(side.get("overrides"), dict) else None
    if ov is None:
        return "unknown (no sidecar)" if not side else "none recorded"
    parts = []
    if isinstance(ov.get("args"), list) and ov["args"]:
        parts.append("args `" + " ".join(str(a) for a in ov["args"]) + "`")
    if isinstance(ov.get("env"), dict) and ov["env"]:
        parts.append("env `" + " ".join(f"{k}={v}" for k, v in sorted(ov["env"].items())) + "`")
    return "; ".join(parts) or "none"


# --- formatting ----------------------------------------------------------------------------


def shown_path(path: str) -> str:
    """A path as the report shows it: as given when relative, else relative to the working
    directory (an absolute path names one machine's folders)."""
    if not os.path.isabs(path):
        return path
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return os.path.basename(path)


# An absolute path in text: /home/u/x/..., /workspace/megatron/...; the last parts stay.
_ABS_PATH = re.compile(r"(?<![\w.~/:…])/(?:[\w.+-]+/)+(?=[\w.+-]+)")


def hide_paths(text: str) -> str:
    """Text with absolute paths cut to their last parts ("…/megatron/training/training.py")."""
    def cut(m: re.Match) -> str:
        parts = [p for p in m.group(0).split("/") if p]
        return "…/" + "/".join(parts[-2:]) + "/"
    return _ABS_PATH.sub(cut, text)


def _f(value, fmt: str) -> str:
    return BLANK if value is None else fmt.format(value)


duration = functools.partial(clock.duration, style="report", blank=BLANK)


def count(n) -> str:
    """1234 -> 1.23k, 4.5e9 -> 4.50B."""
    if n is None:
        return BLANK
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def _cell(text: str, table_cell: bool = True) -> str:
    text = " ".join(str(text).split())
    return text.replace("|", "\\|") if table_cell else text


def table(head: list, rows: list) -> list:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines
