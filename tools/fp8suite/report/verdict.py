"""The answer of one comparison group, first: which recipe is fastest at equal settings and by
how much, and per recipe a word on loss and on time to target, each held to its noise. Pure:
a compare.Group in, a Verdict out (markdown prints it, summary.json stores it).

Rules (docs/reading-a-report.md repeats them):

* Fastest at equal settings: of the runs whose speed- or memory-relevant settings
  (compare.changes_speed) equal the baseline's, the one with the lowest median iteration time;
  its speedup is over the BF16 run among them (the baseline when it is BF16), by the medians,
  with the group's step-time spread and, beside it, the same ratio by the means. A run whose
  settings differ is never "the fastest recipe": the fastest such run is named apart, with the
  settings that its speedup mixes in.
* Not told apart: the other recipes at those settings (each by its fastest run, BF16 included)
  whose median iteration time lies within the group's step-time noise of the fastest's are
  named with it ("tied"), not one of them as the fastest. The noise is the step-time spread
  (compare.Group.spread: between the launches of one run or the seeds of one recipe), at least
  compare.MEAN_MEDIAN_TOLERANCE (the least step-time noise the report allows, also where
  neither was measured).
* No answer: one run has nothing to compare; a group without a baseline says why (no BF16
  run, or runs whose precision is unknown); `no_answer` holds the words. Where no BF16 run
  shares another recipe's settings, the fastest FP8 run is still named with its speedup over
  the baseline (`mixed_fastest`) and the settings it mixes in (`mixed_by`): labelled mixed,
  never the fastest recipe. Otherwise `no_answer` names what left each run out of the
  comparison (left_out: diverged from iteration N, crashed, no timed iterations).
* Loss, per recipe (the runs of one recipe label and setting, over seeds): with two or more of
  its seeds and two or more BF16 seeds, Welch's t-test (scipy.stats.ttest_ind, equal_var=False)
  on the final smoothed loss, two-sided, at ALPHA, with the 95% interval of the difference of
  the means: only a test says "better" or "worse". With one seed (or seeds the test cannot
  take), its mean loss gap against the BF16 seed band (compare): "same as BF16 within noise"
  inside it, else what was seen and that it is no finding (untested_loss: "lower, outside
  BF16's seed band, one FP8 seed: not a finding"); the basis says it rests on one run. Not
  judged on mock data, under metrics.MIN_ITERATIONS_FOR_LOSS iterations, without a second
  BF16 seed, or for a failed run.
* Time to target, per recipe: with two or more seeds on each side, Welch's t-test on the seconds
  to target ("sooner", "same within noise", "later"); else its change against the band of the
  BF16 seeds (compare._target_bands): "same within noise" inside it, "not reached", or outside
  it what was seen and that it is no finding (untested_time: "sooner, outside BF16's seed band,
  one FP8 seed: not a finding").
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Optional

from scipy import stats

from . import metrics
from ..common import status as S
from .compare import BF16_ASSUMED, MEAN_MEDIAN_TOLERANCE, settings_of

ALPHA = 0.05  # two-sided significance level of the tests


@dataclass(frozen=True)
class Test:
    """A two-sample test of one recipe's seeds against the BF16 seeds."""

    name: str  # "Welch's t-test"
    quantity: str  # "final smoothed lm loss", "seconds to target"
    n_recipe: int  # seeds of the recipe
    n_bf16: int  # BF16 seeds
    mean_difference: float  # recipe mean - BF16 mean (loss units, or seconds)
    p_value: float  # two-sided
    ci_low: float  # 95% interval of mean_difference
    ci_high: float


@dataclass
class RecipeVerdict:
    """One recipe (its label and settings) against BF16."""

    label: str
    runs: list  # its run names, by seed
    seeds: int
    loss: str  # "same as BF16 within noise", "better", "worse" (by a test only), "lower, outside
    # BF16's seed band, one FP8 seed: not a finding" (untested_loss), "not judged"
    loss_basis: str  # the figures and rule behind `loss`, in words
    time_to_target: str  # "sooner"/"later" (tested), "same within noise", "not reached", "not judged",
    # or untested_time: "sooner, outside BF16's seed band, one FP8 seed: not a finding"
    time_to_target_basis: str
    speedup: Optional[float] = None  # median iteration time, over the group's baseline (the
    # mean over its seeds)
    speedup_range: Optional[tuple] = None  # (lowest, highest) over its seeds, with two or more
    time_to_target_s: Optional[tuple] = None  # (mean, sample sd) seconds over its seeds, 2+
    bf16_time_to_target_s: Optional[tuple] = None  # the same over the BF16 seeds
    predicted_speedup: Optional[float] = None  # the manifest's prediction, when it has one
    predicted_band: Optional[float] = None  # its ± share (the predictor's leave-one-out error)
    predicted_extrapolated: list = field(default_factory=list)  # why it extrapolates
    settings: list = field(default_factory=list)  # settings differing from the baseline's
    loss_test: Optional[Test] = None
    time_test: Optional[Test] = None


@dataclass
class Verdict:
    """The group's answer (summary.json: groups[].verdict)."""

    fastest: Optional[str] = None  # run name: fastest recipe at equal settings (build)
    fastest_label: str = ""
    speedup: Optional[float] = None  # over `over`, by median iteration time
    speedup_by_mean: Optional[float] = None  # the same by mean iteration time
    over: Optional[str] = None  # the run the speedup is over (BF16 at equal settings)
    spread: Optional[float] = None  # the group's step-time spread (fraction), None if unknown
    basis: str = ""  # which launches and how many timed iterations
    mean_median_disagree: bool = False
    runner_up: Optional[str] = None  # when BF16 is the fastest: the fastest other recipe there
    runner_up_label: str = ""
    runner_up_speedup: Optional[float] = None  # its speed over BF16 (< 1)
    equal_settings: list = field(default_factory=list)  # the settings of that comparison where
    # they are not the baseline's: ["fp8_param_gather False", ...]
    fastest_overall: Optional[str] = None  # fastest run of all, when it is another run
    fastest_overall_label: str = ""
    fastest_overall_speedup: Optional[float] = None  # over the baseline, by the medians
    fastest_overall_speedup_by_mean: Optional[float] = None
    # ["fp8_param_gather True (baseline False)", ...]: what that speedup mixes in
    fastest_overall_settings: list = field(default_factory=list)
    recipes: list = field(default_factory=list)  # RecipeVerdict, by speed
    # Runs with stalls whose speedup by the means differs from the one by the medians by more
    # than STALL_GAP, largest first (at most STALL_RUNS): [{"run", "speedup", "speedup_by_mean"}]
    stalled: list = field(default_factory=list)
    caveats: list = field(default_factory=list)  # what the comparison cannot tell
    # Recipes at equal settings not told apart from the fastest, the fastest first (empty when
    # it stands apart): [{"run", "label", "speedup"}], speedup over `over` by the medians
    tied: list = field(default_factory=list)
    tie_gap: Optional[float] = None  # slowest tied / fastest median iteration time - 1
    tie_noise: Optional[float] = None  # the step-time noise the gap lies inside (fraction)
    tie_noise_basis: str = ""  # where that noise comes from, in words
    no_answer: str = ""  # why there is no fastest recipe at equal settings, in words
    # When no BF16 run shares another recipe's settings: the fastest FP8 run all the same,
    # {"run", "label", "speedup"} (over the baseline, by the medians), labelled as mixing
    # recipe and settings; None otherwise
    mixed_fastest: Optional[dict] = None
    # Recipes (labels) that ran only at other settings than the equal-settings comparison's, so
    # the fastest-at-equal-settings answer does not cover them: ["FP8 delayed +param-gather
    # (hybrid)", ...]
    not_compared: list = field(default_factory=list)
    not_compared_by: list = field(default_factory=list)  # the settings they differ in from it
    mixed_by: list = field(default_factory=list)  # the settings that mix in: that run's
    # differing settings first, then the group's others (compare.Group.differences' names)


def welch(a: list, b: list, quantity: str) -> Optional[Test]:
    """Welch's t-test of a against b (two-sided) with the 95% interval of mean(a) - mean(b);
    None with fewer than two values on a side or no spread on either."""
    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return None
    with warnings.catch_warnings():  # nearly equal samples: scipy warns, the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(0.95)
    if not all(math.isfinite(x) for x in (res.pvalue, ci.low, ci.high)):
        return None
    return Test("Welch's t-test", quantity, len(a), len(b),
                statistics.fmean(a) - statistics.fmean(b), float(res.pvalue), float(ci.low),
                float(ci.high))


def p_text(p: float) -> str:
    """"p = 0.034"; "p < 0.001" below what three decimals show."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def setting_text(confound: tuple) -> str:
    key, mine, theirs = confound
    return f"{key} {mine} (baseline {theirs})"


def of(g) -> Verdict:
    """build(g), or a Verdict that says why it is blank: a figure no rule expected (an
    overflow, a value of an odd type in a held-back log) never stops a report."""
    try:
        return build(g)
    except (ArithmeticError, ValueError, TypeError, KeyError) as e:
        return Verdict(caveats=[f"verdict blank ({type(e).__name__}: {' '.join(str(e).split())})"])


def build(g) -> Verdict:
    """The Verdict of a compare.Group (empty figures where the group has no baseline).

    The runs are split by their settings (settings_of); of the sets that hold a BF16 run and
    another recipe, the baseline's is taken when it is one, else the one with the fastest run.
    Its fastest run is the fastest recipe at equal settings, its speedup over that set's BF16
    run (the baseline when it is in the set, else its first by seed and name)."""
    out = Verdict()
    out.caveats = _caveats(g)
    if len(g.runs) == 1:
        s = g.summaries[g.runs[0].name]
        status = s.reason if s.reason.startswith(s.status) else f"{s.status}: {s.reason}"
        out.no_answer = f"nothing to compare: one run ({s.name}, {status})"
    if g.baseline is None:
        out.no_answer = out.no_answer or g.baseline_note
        return out
    timed = {r.name: g.summaries[r.name] for r in g.runs
             if g.summaries[r.name].median_iter_ms and not g.summaries[r.name].failed}
    sets: dict = {}
    for name in timed:
        sets.setdefault(settings_of(g, name), []).append(name)
    mixed = [names for names in sets.values()
             if any(timed[n].baseline_recipe for n in names)
             and any(timed[n].label != timed[names[0]].label for n in names)]
    mixed.sort(key=lambda names: (g.baseline not in names,
                                  min(timed[n].median_iter_ms for n in names)))
    if mixed:
        names = mixed[0]
        fastest = min(names, key=lambda n: (timed[n].median_iter_ms, n))
        bf16 = sorted((n for n in names if timed[n].baseline_recipe),
                      key=lambda n: (n != g.baseline, timed[n].seed or 0, n))
        over = bf16[0]
        f, o = timed[fastest], timed[over]
        out.fastest, out.fastest_label, out.over = fastest, f.label, over
        out.speedup = o.median_iter_ms / f.median_iter_ms
        if o.mean_iter_ms and f.mean_iter_ms:
            out.speedup_by_mean = o.mean_iter_ms / f.mean_iter_ms
        out.spread = g.spread
        if out.speedup_by_mean is not None:
            out.mean_median_disagree = abs(out.speedup_by_mean - out.speedup) > max(
                g.spread or 0.0, MEAN_MEDIAN_TOLERANCE)
        if fastest == over:  # BF16 is fastest: how close the next recipe comes
            rest = [n for n in names if not timed[n].baseline_recipe]
            nxt = min(rest, key=lambda n: (timed[n].median_iter_ms, n))
            out.runner_up, out.runner_up_label = nxt, timed[nxt].label
            out.runner_up_speedup = o.median_iter_ms / timed[nxt].median_iter_ms
        _ties(out, g, {n: timed[n] for n in names}, fastest, over)
        out.basis = "; ".join(
            f"{n}: median of {g.summaries[n].timed_iterations} timed iterations of "
            f"{_launches(g, n)}" for n in dict.fromkeys(
                x for x in (fastest, *(t["run"] for t in out.tied), over, out.runner_up) if x))
        out.equal_settings = [f"{k} {mine}" for (k, _), mine, theirs in zip(
            g.differences, settings_of(g, fastest), settings_of(g, g.baseline)) if mine != theirs]
        compared = {timed[n].label for n in names}
        left = [n for n in timed if not timed[n].baseline_recipe and timed[n].label not in compared]
        out.not_compared = sorted({timed[n].label for n in left})
        mine = settings_of(g, fastest)
        out.not_compared_by = [k for i, (k, _) in enumerate(g.differences)
                               if any(settings_of(g, n)[i] != mine[i] for n in left)]
    if timed:
        top = min(timed, key=lambda n: (timed[n].median_iter_ms, n))
        others = [n for n in timed if n != g.baseline]
        if top != out.fastest and (top != g.baseline or (out.fastest is None and others)):
            out.fastest_overall = top
            out.fastest_overall_label = timed[top].label
            out.fastest_overall_speedup = g.versus[top].speedup
            out.fastest_overall_speedup_by_mean = g.versus[top].mean_speedup
            out.fastest_overall_settings = [setting_text(c) for c in g.versus[top].confounds]
    if out.fastest is None and not out.no_answer:
        out.no_answer = _why_no_answer(g, timed)
    if out.fastest is None and g.baseline in timed and timed[g.baseline].baseline_recipe:
        _mixed(out, g, timed)
    out.recipes = _recipes(g)
    gaps = [(abs(v.mean_speedup - v.speedup), n) for n, v in g.versus.items()
            if n in timed and timed[n].stalls and v.speedup is not None
            and v.mean_speedup is not None and abs(v.mean_speedup - v.speedup) > STALL_GAP]
    out.stalled = [{"run": n, "speedup": g.versus[n].speedup,
                    "speedup_by_mean": g.versus[n].mean_speedup}
                   for _, n in sorted(gaps, key=lambda x: (-x[0], x[1]))[:STALL_RUNS]]
    return out


def left_out(s) -> str:
    """Why the verdict leaves a run (metrics.Summary) out of its speed comparison, "" when it
    does not: "fp8 diverged from iteration 31", "fp8 crashed", "fp8 has no timed iterations"."""
    if s.status == S.DIVERGED:
        return f"{s.name} diverged" + (f" from iteration {s.diverged_at}"
                                       if s.diverged_at is not None else "")
    if s.failed:
        return f"{s.name} {s.status}"
    return "" if s.median_iter_ms else f"{s.name} has no timed iterations"


def _why_no_answer(g, timed: dict) -> str:
    """Why no recipe is the fastest at equal settings, naming what left out each run the
    comparison does not take (left_out): the baseline, every other run, every other recipe, or
    the other recipes' settings."""
    why = "; ".join(w for r in g.runs if (w := left_out(g.summaries[r.name])))
    others = [n for n in timed if n != g.baseline]
    if g.baseline not in timed:
        return f"the baseline cannot be compared ({why})"
    if not others:
        return f"no run besides the baseline can be compared ({why})"
    also = f"; {why}" if why else ""
    if all(timed[n].label == timed[g.baseline].label for n in others):
        return (f"every other run that can be compared is {timed[g.baseline].label} like the "
                f"baseline{also}")
    return f"no BF16 run ran at the settings of another recipe (the settings below differ{also})"


def _mixed(out: Verdict, g, timed: dict) -> None:
    """Fill out.mixed_fastest and out.mixed_by: the fastest FP8 run (no BF16 run shares its
    settings, or build would have named it) and the settings its speedup mixes in."""
    fp8 = [n for n in timed if not timed[n].baseline_recipe
           and n in g.versus and g.versus[n].speedup is not None]
    if not fp8:
        return
    top = min(fp8, key=lambda n: (timed[n].median_iter_ms, n))
    out.mixed_fastest = {"run": top, "label": timed[top].label,
                         "speedup": g.versus[top].speedup}
    own = [key for key, _, _ in g.versus[top].confounds]
    out.mixed_by = own + [key for key, _ in g.differences if key not in own]


MIXED_NAMED = 3  # settings named in mixed_text before "..."


def mixed_text(v: Verdict) -> str:
    """The mixed answer in words: "no answer at equal settings (the rows differ in
    fp8_param_gather, exp_avg_dtype, exp_avg_sq_dtype, ...): fastest FP8 row FP8 delayed
    (hybrid), 1.395x the BF16 row, recipe and settings mixed"; "" without one."""
    if not v.mixed_fastest:
        return ""
    named = ", ".join(v.mixed_by[:MIXED_NAMED]) + (", ..." if len(v.mixed_by) > MIXED_NAMED
                                                   else "")
    differ = f" (the rows differ in {named})" if named else ""
    m = v.mixed_fastest
    return (f"no answer at equal settings{differ}: fastest FP8 row {m['label']}, "
            f"{m['speedup']:.3f}x the BF16 row, recipe and settings mixed")


def _ties(out: Verdict, g, timed: dict, fastest: str, over: str) -> None:
    """Fill out.tied: each other recipe at the equal settings (its fastest run) whose median
    iteration time is within the group's step-time noise of the fastest's."""
    noise = max(g.spread or 0.0, MEAN_MEDIAN_TOLERANCE)
    first: dict = {}
    for n in sorted(timed, key=lambda n: (timed[n].median_iter_ms, n)):
        first.setdefault(timed[n].label, n)
    top = timed[fastest].median_iter_ms
    close = [n for n in first.values() if timed[n].median_iter_ms / top - 1 <= noise]
    if len(close) < 2:
        return
    base = timed[over].median_iter_ms
    out.tied = [{"run": n, "label": timed[n].label, "speedup": base / timed[n].median_iter_ms}
                for n in close]
    out.tie_gap = timed[close[-1]].median_iter_ms / top - 1
    out.tie_noise = noise
    between = "between seeds" if g.spread_from_seeds else "between sittings"
    if g.spread is not None and g.spread >= MEAN_MEDIAN_TOLERANCE:
        out.tie_noise_basis = between
    elif g.spread is not None:
        out.tie_noise_basis = (f"least step-time noise (the spread {between} is "
                               f"±{g.spread:.1%})")
    else:
        out.tie_noise_basis = ("step-time noise assumed at the least (no run launched twice, "
                               "and no recipe with two seeds, to measure it)")


def tie_text(v: Verdict, runs: bool = False) -> str:
    """The recipes not told apart, in words: "FP8 tensorwise (hybrid) and FP8 tensorwise
    +FP8 attention (hybrid), 1.34–1.36x, not told apart: 0.9% apart, inside the ±1.4% between
    sittings" (with `runs`, each label's run in brackets); "" when the fastest stands apart."""
    if not v.tied:
        return ""
    names = [f"**{t['label']}** ({t['run']})" if runs else t["label"] for t in v.tied]
    joined = ", ".join(names[:-1]) + " and " + names[-1]
    low, high = min(t["speedup"] for t in v.tied), max(t["speedup"] for t in v.tied)
    return (f"{joined}, {low:.2f}–{high:.2f}x, not told apart: {v.tie_gap:.1%} apart, inside "
            f"the ±{v.tie_noise:.1%} {v.tie_noise_basis}")


def predicted_speedup(run):
    """The manifest entry's `predicted_speedup` (a number), else None."""
    value = run.manifest.get("predicted_speedup") if isinstance(run.manifest, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def predicted_band(run):
    """The manifest entry's `predicted_speedup_band` (± share of the prediction), else None."""
    value = run.manifest.get("predicted_speedup_band") if isinstance(run.manifest, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def predicted_extrapolated(run) -> list:
    """The manifest entry's `predicted_speedup_extrapolated` (why it extrapolates), else []."""
    value = run.manifest.get("predicted_speedup_extrapolated") if isinstance(run.manifest, dict) else None
    return [str(x) for x in value] if isinstance(value, list) else []


# The verdict names the runs whose stalls move the mean's speedup more than this from the
# median's (half a percent: a stall pattern, not rounding), at most STALL_RUNS of them.
STALL_GAP = 0.005
STALL_RUNS = 3


def _launches(g, name: str) -> str:
    run = next(r for r in g.runs if r.name == name)
    files = [p.rsplit("/", 1)[-1] for p in (run.stitched or [run.path])]
    return " + ".join(f"`{f}`" for f in files)


def _recipes(g) -> list:
    """One RecipeVerdict per recipe label and setting besides the baseline and its seeds."""
    bf16_losses = [g.summaries[n].final_loss for n in [g.baseline, *g.noise_gaps]
                   if g.summaries[n].final_loss is not None]
    bf16_times = [g.versus[n].ttt_s for n in [g.baseline, *g.noise_gaps]
                  if n in g.versus and g.versus[n].ttt_s is not None]
    kinds: dict = {}
    for run in g.runs:
        if run.name == g.baseline or run.name in g.noise_gaps:
            continue
        v = g.versus.get(run.name)
        key = (g.summaries[run.name].label, tuple(map(repr, v.confounds)) if v else ())
        kinds.setdefault(key, []).append(run)
    out = []
    for (label, _), members in kinds.items():
        names = [r.name for r in members]
        sums = [g.summaries[n] for n in names]
        vs = [g.versus.get(n) for n in names]
        rv = RecipeVerdict(label, names, len(names), "not judged", "", "not judged", "")
        first = vs[0]
        rv.settings = [setting_text(c) for c in first.confounds] if first else []
        speeds = [v.speedup for v in vs if v and v.speedup is not None]
        rv.speedup = statistics.fmean(speeds) if speeds else None
        if len(speeds) > 1:
            rv.speedup_range = (min(speeds), max(speeds))
        predicted = [r for r in members if predicted_speedup(r) is not None]
        if predicted:
            rv.predicted_speedup = predicted_speedup(predicted[0])
            rv.predicted_band = predicted_band(predicted[0])
            rv.predicted_extrapolated = predicted_extrapolated(predicted[0])
        why = _not_judged(g, sums, vs)
        if why:
            rv.loss_basis = rv.time_to_target_basis = why
            out.append(rv)
            continue
        losses = [s.final_loss for s in sums if s.final_loss is not None]
        rv.loss_test = welch(losses, bf16_losses, "final smoothed lm loss")
        if rv.loss_test:
            t = rv.loss_test
            rv.loss = ("same as BF16 within noise" if t.p_value >= ALPHA
                       else "better" if t.mean_difference < 0 else "worse")
            rv.loss_basis = (f"{_signed(t.mean_difference, 'loss')} in mean final smoothed loss "
                             f"over {t.n_recipe} seeds against {t.n_bf16} BF16 seeds "
                             f"(Welch's t-test {p_text(t.p_value)}, 95% interval "
                             f"{t.ci_low:+.4f} to {t.ci_high:+.4f})")
        elif g.band is not None and first.gap is not None:
            gap = statistics.fmean(v.gap.mean for v in vs if v and v.gap)
            rv.loss = ("same as BF16 within noise" if abs(gap) <= g.band
                       else untested_loss(gap, len(names), sums[0].precision))
            where = "inside" if abs(gap) <= g.band else "outside"
            rv.loss_basis = (f"{_signed(gap, 'loss')}, {where} the ±{g.band:.4f} band of "
                             f"{g.seeds} BF16 seeds"
                             + ("; rests on one run" if len(names) == 1 else
                                f"; mean of {len(names)} seeds (too few BF16 seeds for a test)"))
        else:
            rv.loss_basis = "no second BF16 seed, so no noise band"
            rv.loss = "not judged"
        times = [v.ttt_s for v in vs if v and v.ttt_s is not None]
        rv.time_test = welch(times, bf16_times, "seconds to target") if len(times) == len(
            vs) else None
        words = [v.ttt_verdict for v in vs if v and v.ttt_verdict]
        if len(times) > 1 and len(bf16_times) > 1:
            rv.time_to_target_s = (statistics.fmean(times), statistics.stdev(times))
            rv.bf16_time_to_target_s = (statistics.fmean(bf16_times), statistics.stdev(bf16_times))
        if rv.time_test:
            t = rv.time_test
            rv.time_to_target = ("same within noise" if t.p_value >= ALPHA
                                 else "sooner" if t.mean_difference < 0 else "later")
            (mean, sd), (bmean, bsd) = rv.time_to_target_s, rv.bf16_time_to_target_s
            rv.time_to_target_basis = (f"{mean:.1f} ± {sd:.1f} s over {len(times)} seeds against "
                                       f"BF16's {bmean:.1f} ± {bsd:.1f} s over {len(bf16_times)}: "
                                       f"{abs(t.mean_difference):.1f} s "
                                       f"{'sooner' if t.mean_difference < 0 else 'later'} on "
                                       f"average (Welch's t-test {p_text(t.p_value)}, 95% "
                                       f"interval {t.ci_low:+.1f} to {t.ci_high:+.1f} s)")
        elif words and set(words) == {"not reached"}:
            rv.time_to_target = "not reached"
            finals = ", ".join(f"{x.final_loss:.4f}" for x in sums if x.final_loss is not None)
            rv.time_to_target_basis = (f"final smoothed loss {finals} stays above BF16's "
                                       f"{g.target:.4f}"
                                       + ("; rests on one run" if len(names) == 1 else ""))
        elif words:
            word = words[0] if len(set(words)) == 1 else "mixed over seeds"
            rv.time_to_target = (untested_time(word, len(names), sums[0].precision,
                                               g.ttt_band is not None)
                                 if word in ("sooner", "later") else word)
            changes = [v.ttt_change for v in vs if v and v.ttt_change is not None]
            band = (f" against the ±{g.ttt_band:.0%} band of {g.seeds} BF16 seeds"
                    if g.ttt_band is not None
                    else "; the other BF16 seeds do not reach the target" if g.noise_gaps else "")
            rv.time_to_target_basis = (", ".join(f"{abs(c):.0%} {'sooner' if c < 0 else 'later'}"
                                                 for c in changes) or "not reached") + \
                f" in wall-clock{band}" + ("; rests on one run" if len(names) == 1 else "")
            if rv.settings and changes:
                rv.time_to_target_basis += "; mixes recipe and setting"
        out.append(rv)
    return out


def untested_loss(gap: float, seeds: int, precision: Optional[str]) -> str:
    """The loss word of a recipe outside the BF16 seed band without a test behind it (one seed,
    or seeds the t-test cannot take): what was seen, never "better" or "worse", e.g. "lower,
    outside BF16's seed band, one FP8 seed: not a finding"."""
    return _not_a_finding("lower" if gap < 0 else "higher", "outside BF16's seed band", seeds,
                          precision)


def untested_time(word: str, seeds: int, precision: Optional[str], band: bool = True) -> str:
    """The time-to-target word of a recipe without a test behind it: what was seen, never a bare
    "sooner" or "later", e.g. "sooner, outside BF16's seed band, one FP8 seed: not a finding";
    without a band (band=False: the other BF16 seeds do not reach the target) "later, no BF16
    seed band to judge it by, one FP8 seed: not a finding"."""
    where = "outside BF16's seed band" if band else "no BF16 seed band to judge it by"
    return _not_a_finding(word, where, seeds, precision)


def _not_a_finding(seen: str, where: str, seeds: int, precision: Optional[str]) -> str:
    """'<seen>, <where>, <one FP8 seed | N FP8 seeds without a test>: not a finding'."""
    kind = f"{precision.upper()} " if precision else ""
    runs = f"one {kind}seed" if seeds == 1 else f"{seeds} {kind}seeds without a test"
    return f"{seen}, {where}, {runs}: not a finding"


def _not_judged(g, sums, vs) -> str:
    if any(s.failed for s in sums):
        return "not judged: " + ", ".join(f"{s.name} {s.status}" for s in sums if s.failed)
    if not g.loss_meaningful:
        return "not judged: " + "; ".join(g.caveats)
    if g.target is None:
        return "not judged: the baseline logged no loss"
    return ""


def _signed(diff: float, what: str) -> str:
    """-0.062 -> "lower loss by 0.0620"; signs become words."""
    if diff == 0:
        return f"equal {what}"
    return f"{'lower' if diff < 0 else 'higher'} {what} by {abs(diff):.4f}"


def _caveats(g) -> list:
    out = []
    if g.assumed:  # first: every figure below rests on it
        out.append(f"{BF16_ASSUMED} ({', '.join(g.assumed)})")
    if any(s.mock_data for s in g.summaries.values()):
        out.append("mock data: loss says nothing about the recipe's accuracy")
    short = sorted(s.name for s in g.summaries.values()
                   if (s.iterations_done or 0) < metrics.MIN_ITERATIONS_FOR_SPEED
                   or s.timed_iterations < metrics.MIN_TIMED_FOR_SPEED)
    if short:
        which = "every run" if len(short) == len(g.summaries) else ", ".join(short)
        out.append(f"too few iterations for stable step times and the peers' windows in "
                   f"{which} (under {metrics.MIN_ITERATIONS_FOR_SPEED} iterations or "
                   f"{metrics.MIN_TIMED_FOR_SPEED} timed ones)")
    elif any(not s.mock_data and (s.iterations_done or 0) < metrics.MIN_ITERATIONS_FOR_LOSS
             for s in g.summaries.values()):
        out.append(f"under {metrics.MIN_ITERATIONS_FOR_LOSS} iterations: loss not judged")
    if g.baseline and g.loss_meaningful:
        if not g.noise_gaps:
            out.append("one BF16 seed: no noise band, so loss and time-to-target verdicts "
                       "cannot be told from chance")
        singles = [r for r in g.runs if r.name != g.baseline and r.name not in g.noise_gaps]
        labels = [g.summaries[r.name].label for r in singles]
        if singles and all(labels.count(x) == 1 for x in labels):
            out.append("one seed per recipe besides BF16: each verdict rests on one run")
    if g.differences:
        out.append("settings that change speed or memory differ besides precision ("
                   + ", ".join(k for k, _ in g.differences)
                   + "): a speedup between runs that differ in them mixes recipe and setting")
    return out
