"""Comparison groups, their baselines, and each run against its baseline. Pure functions.

Runs compare only within a group: the same directory and the same model/batch shape (the
SHAPE_KEYS of the arguments dump), listed baseline first, then by median iteration time
(fastest first), failed runs last. A run without an arguments dump (it died before printing
one) joins its directory's first group. Each group gets its own baseline: `--baseline NAME`
when that run is in the group, else its completed BF16 run (lowest seed, then first by name);
a failed or unfinished run is never the default baseline. Each group also lists the settings
that differ between its runs besides precision, and flags runs on mock data or shorter than
MIN_ITERATIONS_FOR_LOSS, for which loss comparisons are not meaningful.

Against the baseline, for each run:

* speedup = baseline median iteration time / run median iteration time (> 1: faster). When the
  baseline was launched more than once (completed attempts that started afresh with the same
  setup: metrics.same_setup), each run is
  compared with the baseline launch that started nearest in time to its own shown launch (by
  the sidecars' `started`): launches of one sitting share a machine, while a later sitting may
  run a percent or two apart. Step-time spread: of every run launched more than once in the
  group, and of every recipe with two or more seeds at equal settings (a seed moves the data
  order and the initial weights, not the work per step), slowest / fastest median iteration
  time − 1; the largest is the group's spread. A speedup with |speedup − 1| <= spread is
  "within spread": the suite cannot tell it from 1;
* loss gap = run - baseline smoothed `lm loss` (trailing mean over the baseline's smoothing
  window, which averages out what one small batch happens to contain) at the iterations both
  logged, over the last quarter of those iterations: the mean, and the largest absolute
  deviation with its sign (positive = worse);
* time-to-target: the first iteration where the run's smoothed loss (trailing mean over the
  baseline's smoothing window) reaches the baseline's final smoothed loss, as wall-clock (sum
  of iteration times up to there, warm-up and other untimed iterations counted at the run's
  median iteration time, as the median leaves them out) and tokens (consumed samples x
  seq_length);
* noise: every other run with the baseline's recipe and another seed (not failed, with a loss)
  is a noise reference; its mean gap to the baseline (the same statistic, window and baseline
  as each run's mean gap) is seed-to-seed noise. With k BF16 seeds, band = max over the k-1
  other BF16 seeds of |mean gap to the baseline| (k = 2: the one seed pair's |mean gap|).
  (Megatron's --seed moves both the initial weights and the data order, so the band holds both
  kinds of run-to-run noise.) A run is "within noise" when |its mean gap| <= band, else
  "outside noise (+x)" with x = how far its mean gap lies beyond the band (negative x: better
  than BF16).

A diverged, crashed or unreadable run gets no speedup, loss gap or time-to-target.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from . import metrics
from ..megatron import recipes
from ..common import status as S
from ..megatron.logformats import FP8_2023_ARGS, NEMO2
from ..megatron.logvocab import SAMPLES, arg_int
from ..logs import launchenv
from ..logs.runs import LoggedRun


@dataclass
class Gap:
    mean: float
    max: float  # the run - baseline difference of the largest absolute value, with its sign
    max_abs: float
    n: int  # matched iterations in the last quarter
    first: int  # first and last iteration of that window
    last: int


@dataclass
class Versus:
    """One run against its group's baseline (all None for the baseline itself)."""

    speedup: Optional[float] = None
    baseline_log: str = ""  # the baseline launch the speedup is against, when not its shown one
    baseline_ms: Optional[float] = None  # that launch's median iteration time
    within_spread: bool = False  # |speedup - 1| <= the group's step-time spread
    gap: Optional[Gap] = None
    verdict: str = ""  # "within noise", "outside noise (+0.0123)", "noise reference", ""
    ttt_iteration: Optional[int] = None
    ttt_s: Optional[float] = None
    ttt_tokens: Optional[float] = None
    ttt_speedup: Optional[float] = None  # baseline time-to-target / run time-to-target
    invalid: str = ""  # why no comparison is presented ("diverged", ...), "" when valid
    mean_speedup: Optional[float] = None  # the same ratio of the mean iteration times
    mean_disagrees: bool = False  # |mean_speedup - speedup| > the spread (MEAN_MEDIAN_TOLERANCE)
    ttt_change: Optional[float] = None  # run / baseline time to target - 1 (< 0: sooner)
    tokens_change: Optional[float] = None  # run / baseline tokens to target - 1
    ttt_verdict: str = ""  # "sooner", "same within noise", "later", "not reached", ""
    tokens_verdict: str = ""  # "fewer", "same within noise", "more", "not reached", ""
    confounds: list = field(default_factory=list)  # [(setting, run value, baseline value)]


@dataclass
class Group:
    title: str
    slug: str  # safe for file names
    directory: str
    shape: Optional[tuple]
    runs: list  # runs.LoggedRun, baseline first, then by speed (failed runs last)
    summaries: dict  # name -> metrics.Summary
    baseline: Optional[str] = None
    baseline_note: str = ""
    noise_run: Optional[str] = None  # the noise reference that sets the band (largest |mean|)
    noise: Optional[Gap] = None  # its gap
    noise_gaps: dict = field(default_factory=dict)  # every noise reference: name -> Gap
    spread_run: Optional[str] = None  # the run launched more than once whose times differ most
    # The recipe whose seeds at equal settings differ most in step time: (slowest / fastest
    # median − 1, its label, [(run name, median ms)] fastest first); None without two seeds.
    seed_spread: Optional[tuple] = None
    target: Optional[float] = None  # the baseline's final smoothed loss
    window: Optional[int] = None  # the baseline's smoothing window
    versus: dict = field(default_factory=dict)  # name -> Versus
    warmup: int = 3  # logged iterations dropped from timing at the start and after restarts
    caveats: list = field(default_factory=list)  # why loss comparisons are not meaningful
    differences: list = field(default_factory=list)  # [(argument, [(value, [run names])])]
    # name -> (kernel table, the log it came from when not the run's shown log: "" otherwise),
    # for the runs with one (metrics.kernel_table)
    kernels: dict = field(default_factory=dict)
    # The time and tokens to target of the other BF16 seeds relative to the baseline's: the
    # largest |run / baseline - 1| of each (None without a noise reference that reached it).
    ttt_band: Optional[float] = None
    tokens_band: Optional[float] = None
    quiet_differences: list = field(default_factory=list)  # differences that leave speed alone
    env_unknown: list = field(default_factory=list)  # runs whose launch environment is unknown
    shape_note: str = ""  # why a run whose dump lacks shape keys stands alone ("" otherwise)
    assumed: list = field(default_factory=list)  # runs whose precision is BF16 assumed

    def profiled(self) -> list:
        """The runs with a kernel table, in group order."""
        return [r for r in self.runs if r.name in self.kernels]

    @property
    def band(self) -> Optional[float]:
        """The seed-to-seed noise band: the largest |mean gap| of the other BF16 seeds to the
        baseline (of the one seed pair with two seeds); None without a noise reference."""
        return abs(self.noise.mean) if self.noise else None

    @property
    def spread(self) -> Optional[float]:
        """The step-time spread: the largest relative difference between two completed
        launches of one run (metrics.Summary.step_spread) or between two seeds of one recipe
        at equal settings (seed_spread); None when no run has two of either."""
        found = [x for x in (self.launch_spread, self.seed_spread and self.seed_spread[0])
                 if x is not None]
        return max(found) if found else None

    @property
    def launch_spread(self) -> Optional[float]:
        """The spread between the launches of one run alone (None when no run has two)."""
        return self.summaries[self.spread_run].step_spread if self.spread_run else None

    @property
    def spread_from_seeds(self) -> bool:
        """Whether the group's spread is the seeds' (seed_spread) rather than a run's launches."""
        return self.seed_spread is not None and (
            self.launch_spread is None or self.seed_spread[0] > self.launch_spread)

    @property
    def seeds(self) -> int:
        """k: the BF16 seeds the band rests on (the baseline and its noise references); 0
        without a noise reference."""
        return len(self.noise_gaps) + 1 if self.noise_gaps else 0

    @property
    def loss_meaningful(self) -> bool:
        return not self.caveats


# The report's word for a value its logs do not state (a shape key a cut-off dump lacks).
UNKNOWN = "?"


def value_text(value) -> str:
    """An argument's value as the report shows it: UNKNOWN for None (absent or not stated)."""
    return UNKNOWN if value is None else str(value)


def shape_text(shape: Optional[tuple]) -> str:
    if shape is None:
        return "unknown shape (no arguments dump)"
    d = {k: value_text(v) for k, v in zip(metrics.SHAPE_KEYS, shape)}
    return (f"{d['num_layers']} layers, hidden {d['hidden_size']}, FFN {d['ffn_hidden_size']}, "
            f"{d['num_attention_heads']} heads, seq {d['seq_length']}, "
            f"global batch {d['global_batch_size']}, world size {d['world_size']}")


def _agrees(partial: tuple, full: tuple) -> bool:
    """Whether a shape with unknown (None) values matches a full one on every known value."""
    return all(a is None or a == b for a, b in zip(partial, full))


def _place_partial_shapes(by_key: dict) -> dict:
    """Runs whose dump lacks some shape keys (cut short) join the one group of their directory
    whose full shape agrees with every key they have: {(directory, shape): why it stands alone}
    for the partial shapes that agree with none or with several (joining one would be a guess)."""
    alone = {}
    for key in sorted((k for k in by_key if k[1] is not None and not metrics.shape_known(k[1])),
                      key=repr):
        directory, partial = key
        missing = ", ".join(k for k, v in zip(metrics.SHAPE_KEYS, partial) if v is None)
        fits = sorted((k for k in by_key if k[0] == directory and metrics.shape_known(k[1])
                       and _agrees(partial, k[1])), key=repr)
        if len(fits) == 1:
            by_key[fits[0]].extend(by_key.pop(key))
        elif fits:
            alone[key] = (f"its arguments dump lacks {missing}: the keys it has agree with "
                          f"{len(fits)} groups of this directory, so it is grouped with none")
        else:
            alone[key] = (f"its arguments dump lacks {missing}: no group of this directory "
                          "agrees with the keys it has")
    return alone


def slugify(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return slug or "logs"


def build_groups(runs: list[LoggedRun], warmup: int, baseline: Optional[str] = None) -> list[Group]:
    """Group the runs, summarise each, pick baselines and compare."""
    by_key = {}
    for run in runs:
        key = (run.directory, metrics.shape(run.log.args))
        by_key.setdefault(key, []).append(run)
    alone = _place_partial_shapes(by_key)
    # A run without an arguments dump joins its directory's first group with a known shape.
    for (directory, shp) in sorted(k for k in list(by_key) if k[1] is None):
        known = sorted((k for k in by_key if k[0] == directory and k[1] is not None),
                       key=lambda k: (not metrics.shape_known(k[1]), repr(k)))
        if known:
            by_key[known[0]].extend(by_key.pop((directory, None)))

    keys = sorted(by_key, key=lambda k: (k[0], repr(k[1])))
    dirs = [k[0] for k in keys]
    common = os.path.commonpath(dirs) if len(set(dirs)) > 1 else None
    groups = []
    for key in keys:
        directory, shp = key
        short = os.path.relpath(directory, common) if common else os.path.basename(
            os.path.normpath(directory)) or directory
        same_dir = [k for k in keys if k[0] == directory]
        title, slug = short, slugify(short)
        if len(same_dir) > 1:
            n = same_dir.index(key) + 1
            title, slug = f"{short} ({shape_text(shp)})", f"{slug}_{n}"
        members = sorted(by_key[key], key=lambda r: r.name)
        summaries = {r.name: metrics.summarize(r, warmup) for r in members}
        group = Group(title, slug, directory, shp, members, summaries, warmup=warmup,
                      shape_note=alone.get(key, ""))
        group.assumed = assume_bf16(members, summaries)
        group.kernels = {r.name: found for r in members if (found := metrics.kernel_table(r))[0]}
        envs = launch_envs(members)
        every = differences(members, envs)
        group.differences = [d for d in every if changes_speed(d[0])]
        group.quiet_differences = [d[0] for d in every if not changes_speed(d[0])]
        group.env_unknown = [n for n, env in envs.items() if env is None]
        group.caveats = caveats(summaries)
        _choose_baseline(group, baseline)
        try:
            _compare(group)
        except (ArithmeticError, ValueError, TypeError) as e:
            group.versus = {}
            group.baseline_note += (f"; comparisons blank ({type(e).__name__}: "
                                    f"{' '.join(str(e).split())})")
        # Rows by speed, the baseline first: the fastest after it; failed runs and runs
        # without a time last.
        group.runs.sort(key=lambda r: (r.name != group.baseline,
                                       group.summaries[r.name].failed,
                                       group.summaries[r.name].median_iter_ms is None,
                                       group.summaries[r.name].median_iter_ms or 0, r.name))
        groups.append(group)
    return groups


# What the report says of a NeMo 2.0 run taken as BF16 (assume_bf16).
BF16_ASSUMED = "precision BF16 assumed: no 'Using FP8' line"


def assume_bf16(runs: list[LoggedRun], summaries: dict) -> list:
    """The NeMo 2.0 runs of a group that are BF16 by assumption, by name: NeMo prints no
    arguments dump, only a `Using FP8 (...)` line for an FP8 run, so where another NeMo run of
    the group states FP8 by that line, a NeMo run without one is taken as BF16 and its summary
    says so (label, precision, baseline recipe). A NeMo run with no such neighbour keeps its
    precision unknown."""
    nemo = [r for r in runs if r.log.log_format == NEMO2.name]
    if not any(r.log.precision_line for r in nemo):
        return []
    out = []
    for r in nemo:
        s = summaries[r.name]
        if r.log.precision_line or r.log.args or s.precision is not None:
            continue
        s.precision, s.baseline_recipe = recipes.BASELINE.precision, True
        s.label = f"{recipes.BASELINE.label} (assumed: no 'Using FP8' line)"
        out.append(r.name)
    return sorted(out)


# Arguments that always differ between runs (seeds, ranks, names, paths).
_NOT_SETTINGS = {"seed", "rank", "local_rank", "wandb_exp_name", "wandb_project", "exp_name",
                 "run_name", "params_dtype"}
_PATHLIKE = ("dir", "path", "save", "load", "tensorboard", "wandb")


def _recipe_args(args: dict) -> set:
    """The arguments that make the run's recipe label (format, recipe, the BF16 first/last
    layers, base precision, delayed scaling's amax settings, FP8 attention), with every base
    precision's switch (`bf16`, `fp16`) and the older releases' FP8 switches (`fp8_hybrid`,
    `fp8_e4m3`: logformats.FP8_2023_ARGS): precision is what is compared, never a setting that
    differs besides it. Which layers run in FP8 is precision (tensorwise 1F1L is a recipe of
    its own); the parameter gather, which changes no numerics, stays listed as a setting."""
    names = recipes.arg_names(recipes.of_args(args))
    base = {r.base_flag.lstrip("-").replace("-", "_") for r in recipes.RECIPES if r.base_flag}
    return {names[0], names[1], *names[3:6], *names[6:], *base, *FP8_2023_ARGS}


# Arguments that do not change step time or memory: profiler, logging and run-length settings
# (a run with the profiler on is timed without its profiled iterations), checkpoint streaming.
# Every other differing argument counts as one that can change speed or memory.
NO_SPEED_EFFECT = {"profile", "use_pytorch_profiler", "profile_ranks", "profile_step_start",
                   "profile_step_end", "train_iters", "exit_duration_in_mins", "exit_interval",
                   "exit_signal_handler", "stream_ckpt_dequant", "eval_micro_batch_size",
                   "eval_iters", "eval_interval", "save_interval",
                   "check_weight_hash_across_dp_replicas_interval"}
NO_SPEED_EFFECT_PREFIXES = ("log_", "logging_", "timing_log", "tensorboard", "wandb",
                            "record_memory_history", "memory_snapshot")


def settings_of(g: Group, name: str) -> tuple:
    """The run's values of the group's speed- or memory-relevant differing settings
    (Group.differences: arguments, launch environment, GPU and software), in their order,
    "(unknown)" where the run's logs do not say: runs with equal tuples ran at equal settings."""
    return tuple(next((v for v, names in values if name in names), "(unknown)")
                 for _, values in g.differences)


def seed_spread(g: Group) -> Optional[tuple]:
    """Of the recipes with two or more seeds at equal settings (the same label and
    settings_of, different --seed, each completed with a median iteration time): the one whose
    seeds differ most, as (slowest / fastest median − 1, label, [(run name, median ms)] fastest
    first); None when no recipe has two such seeds."""
    kinds: dict = {}
    for name, s in g.summaries.items():
        if s.median_iter_ms and not s.failed and s.seed is not None:
            kinds.setdefault((s.label, settings_of(g, name)), {}).setdefault(s.seed, (name, s.median_iter_ms))
    best = None
    for (label, _), by_seed in sorted(kinds.items(), key=lambda kv: (kv[0][0], repr(kv[0][1]))):
        if len(by_seed) < 2:
            continue
        runs = sorted(by_seed.values(), key=lambda x: (x[1], x[0]))
        spread = runs[-1][1] / runs[0][1] - 1
        if best is None or spread > best[0]:
            best = (spread, label, runs)
    return best


def changes_speed(setting: str) -> bool:
    """Whether an argument that differs between runs can change their step time or memory
    (False for NO_SPEED_EFFECT and NO_SPEED_EFFECT_PREFIXES: profiler, logging, run length)."""
    return setting not in NO_SPEED_EFFECT and not setting.startswith(NO_SPEED_EFFECT_PREFIXES)


def differences(runs: list[LoggedRun], envs: Optional[dict] = None) -> list:
    """What differs between the runs besides the recipe and the seed:
    [(name, [(value text, [run names])])]. First the arguments (names sorted); then the launch
    environment variables that can change speed or numerics (`env NAME`, sorted; "(unset)"
    where a run had none; runs whose environment is unknown left out: launchenv.launch_env);
    then the GPU and software (launchenv.SOFTWARE: `gpu`, `driver`, `cuda`, `torch`,
    `transformer_engine`, `megatron_core`, `apex`; runs whose sidecar does not say left out).
    FP8 attention's environment (NVTE_DPA_FP8_RECIPE, NVTE_FP8_DPA_BWD) is a setting here,
    not the precision compared. `envs`: launch_envs(runs) when the caller has it already."""
    return (_argument_differences(runs) + _env_differences(launch_envs(runs) if envs is None else envs)
            + _software_differences(runs))


def launch_envs(runs: list[LoggedRun]) -> dict:
    """{run name: its launch environment's settings, None when unknown} (launchenv.launch_env)."""
    return {r.name: launchenv.launch_env(r.sidecar, r.manifest) for r in runs}


def _env_differences(envs: dict) -> list:
    known = [(n, env) for n, env in envs.items() if env is not None]
    return _spread([(n, {f"env {k}": v for k, v in env.items()}) for n, env in known],
                   "(unset)")


def _software_differences(runs: list[LoggedRun]) -> list:
    found = [(r.name, launchenv.software(r.sidecar)) for r in runs]
    out = []
    for name, _ in launchenv.SOFTWARE:
        out += _spread([(n, {name: soft[name]}) for n, soft in found if name in soft], "")
    return out


def _spread(values_of: list, absent: str, partial: frozenset = frozenset()) -> list:
    """[(key, [(value, [run names])])] of the keys whose values differ between the runs of
    `values_of` ([(run name, {key: value})]); a run without a key has `absent` for it, except
    the runs named in `partial` (a dump cut short), for which a key they lack is unknown and
    left out."""
    if len(values_of) < 2:
        return []
    out = []
    for k in sorted({k for _, d in values_of for k in d}):
        values: dict = {}
        for name, d in values_of:
            if k not in d and name in partial:
                continue
            values.setdefault(d.get(k, absent), []).append(name)
        if len(values) > 1:
            out.append((k, sorted(values.items())))
    return out


# The value of an argument the run's other settings leave without effect (recipes.idle_args).
NO_EFFECT = "(no effect)"


def _argument_differences(runs: list[LoggedRun]) -> list:
    """An argument differs where the runs it acts in disagree; a run it does not act in
    (recipes.idle_args: the BF16 layer counts without --first-last-layers-bf16, ...) shows
    NO_EFFECT for it and makes no difference of its own."""
    dumps = [(r.name, r.log.args) for r in runs if r.log.args]
    skip = set(_NOT_SETTINGS).union(*(_recipe_args(a) for _, a in dumps))
    settings = []
    for name, a in dumps:
        idle = recipes.idle_args(a)
        settings.append((name, {k: NO_EFFECT if k in idle else v for k, v in a.items()
                                if k not in skip and not any(p in k for p in _PATHLIKE)}))
    return [(k, values) for k, values in
            _spread(settings, "(absent)", frozenset(r.name for r in runs if r.log.args_cut))
            if len([v for v, _ in values if v != NO_EFFECT]) > 1]


def caveats(summaries: dict) -> list:
    """Why loss comparisons in a group are not meaningful (empty: they are)."""
    out = []
    mock = sorted(s.name for s in summaries.values() if s.mock_data)
    if mock:
        out.append("mock data (" + ", ".join(mock) + ")")
    short = sorted(s.name for s in summaries.values()
                   if s.iterations_done is not None
                   and s.iterations_done < metrics.MIN_ITERATIONS_FOR_LOSS)
    if short:
        out.append(f"under {metrics.MIN_ITERATIONS_FOR_LOSS} iterations (" + ", ".join(short)
                   + ")")
    return out


def _has_loss(summary) -> bool:
    return summary.final_loss is not None


def _choose_baseline(group: Group, wanted: Optional[str]) -> None:
    names = [r.name for r in group.runs]
    if wanted and wanted in names:
        group.baseline, group.baseline_note = wanted, "chosen with --baseline"
        chosen = group.summaries[wanted]
        if chosen.status not in S.FINISHED:
            group.baseline_note += f"; it did not complete ({chosen.status})"
    else:
        bf16_all = [s for s in group.summaries.values() if s.baseline_recipe]
        bf16 = [s for s in bf16_all if s.status in S.FINISHED]
        if not bf16:
            if bf16_all:
                why = ", ".join(f"{s.name}: {s.status}" for s in sorted(bf16_all,
                                                                        key=lambda s: s.name))
                group.baseline_note = (f"no completed BF16 run ({why}), so no baseline: "
                                       "speedups and loss gaps are blank")
            elif unknown := [s for s in group.summaries.values() if s.precision is None]:
                # Without an arguments dump a run's precision is not known: a BF16 run may be
                # among them, whatever its name says.
                group.baseline_note = (f"precision unknown for {len(unknown)} of "
                                       f"{len(group.summaries)} runs (no argument dump): no "
                                       "baseline, so speedups and loss gaps are blank")
            else:
                group.baseline_note = ("no BF16 run in this group, so no baseline: speedups "
                                       "and loss gaps are blank")
            return
        bf16.sort(key=lambda s: (not _has_loss(s), s.seed is None, s.seed or 0, s.name))
        chosen = bf16[0]
        group.baseline = chosen.name
        if len(bf16) == 1:
            group.baseline_note = "the group's only completed BF16 run"
        elif len({s.seed for s in bf16}) > 1 and chosen.seed is not None:
            group.baseline_note = (f"the completed BF16 run with the lowest seed "
                                   f"({chosen.seed}) of {len(bf16)}")
        else:
            group.baseline_note = f"the first completed BF16 run by name of {len(bf16)}"
        if chosen.name in group.assumed:
            group.baseline_note += f"; {BF16_ASSUMED}"
        if not _has_loss(chosen):
            group.baseline_note += "; it logged no loss, so loss comparisons are blank"
    # Baseline first, then the others by name.
    group.runs.sort(key=lambda r: (r.name != group.baseline, r.name))


def loss_gap(run: LoggedRun, base: LoggedRun, window: int) -> Optional[Gap]:
    """run - base smoothed `lm loss` over the last quarter of their matched iterations."""
    if not window:
        return None
    pairs = matched_losses(run, base, window)
    if not pairs:
        return None
    q = max(1, math.ceil(len(pairs) / 4))
    tail = pairs[-q:]
    diffs = [a - b for _, a, b in tail]
    largest = max(diffs, key=abs)
    return Gap(statistics.fmean(diffs), largest, abs(largest), q, tail[0][0], tail[-1][0])


def matched_losses(run: LoggedRun, base: LoggedRun, window: int) -> list:
    """[(iteration, run smoothed loss, baseline smoothed loss)] where both have one."""
    def curve(r: LoggedRun) -> list:
        return metrics.smoothed(r.log.steps.iterations, r.log.steps.column(metrics.LOSS), window)
    b = dict(curve(base))
    return [(it, v, b[it]) for it, v in curve(run) if it in b]


def time_to_target(run: LoggedRun, window: int, target: float, warmup: int = 0,
                   median_ms: Optional[float] = None) -> Optional[tuple]:
    """(iteration, seconds, tokens) where the smoothed loss first reaches `target`, or None.

    Seconds: the sum of iteration times up to there; iterations the median leaves out
    (warm-up, the one after an evaluation or save) count at `median_ms` when given.
    """
    steps, args = run.log.steps, run.log.args
    curve = metrics.smoothed(steps.iterations, steps.column(metrics.LOSS), window)
    hit = next((it for it, v in curve if v <= target), None)
    if hit is None:
        return None
    lengths = metrics.interval_lengths(steps.iterations, arg_int(args, "log_interval"))
    timed = metrics.timed_rows(steps, args, warmup)
    seconds = 0.0
    samples = None
    for it, ms, n, cs, keep in zip(steps.iterations, steps.column(metrics.ITER_MS), lengths,
                                   steps.column(SAMPLES), timed):
        if it > hit:
            break
        if not keep and median_ms is not None:
            ms = median_ms
        if metrics.step_time_ok(ms):
            seconds += ms * n / 1000
        samples = cs
    seq = arg_int(args, "seq_length")
    if samples is None or not math.isfinite(samples):
        gbs = arg_int(args, "global_batch_size")
        samples = hit * gbs if gbs else None
    tokens = samples * seq if samples is not None and seq else None
    return hit, seconds, tokens


def _compare(group: Group) -> None:
    if group.baseline is None:
        return
    runs = {r.name: r for r in group.runs}
    base, bsum = runs[group.baseline], group.summaries[group.baseline]
    group.target, group.window = bsum.final_loss, bsum.smooth_window

    # Seed-to-seed noise: another completed run with the baseline's recipe and another seed.
    partners = [s for s in group.summaries.values()
                if s.name != bsum.name and s.label == bsum.label and _has_loss(s)
                and not s.failed and s.seed is not None and bsum.seed is not None
                and s.seed != bsum.seed]
    partners.sort(key=lambda s: (s.seed, s.name))
    if partners and _has_loss(bsum):
        for p in partners:
            gap = loss_gap(runs[p.name], base, group.window)
            if gap is not None:
                group.noise_gaps[p.name] = gap
        if group.noise_gaps:  # the band: the largest |mean gap| (the first such, by seed)
            group.noise_run = max(group.noise_gaps, key=lambda n: abs(group.noise_gaps[n].mean))
            group.noise = group.noise_gaps[group.noise_run]

    def ttt(name: str) -> Optional[tuple]:
        s = group.summaries[name]
        return time_to_target(runs[name], group.window, group.target, group.warmup,
                              s.median_iter_ms)

    spreads = {n: x.step_spread for n, x in group.summaries.items()
               if x.step_spread is not None and not x.failed}
    if spreads:
        group.spread_run = max(spreads, key=spreads.get)
    group.seed_spread = seed_spread(group)

    base_ttt = ttt(group.baseline) if group.target is not None else None
    for name, run in runs.items():
        s = group.summaries[name]
        v = Versus()
        if s.failed:
            v.invalid = s.status
            group.versus[name] = v
            continue
        base_ms, v.baseline_log = baseline_launch(bsum, base, run)
        v.baseline_ms = base_ms if v.baseline_log else None
        if s.median_iter_ms and base_ms:
            v.speedup = base_ms / s.median_iter_ms
            spread = group.spread
            v.within_spread = (spread is not None and name != group.baseline
                               and abs(v.speedup - 1) <= spread)
        if name != group.baseline:
            v.gap = loss_gap(run, base, group.window)
        if name in group.noise_gaps:
            v.verdict = "noise reference"
        elif v.gap is not None and group.band is not None:
            v.verdict = verdict(v.gap.mean, group.band)
        if group.target is not None:
            hit = base_ttt if name == group.baseline else ttt(name)
            if hit:
                v.ttt_iteration, v.ttt_s, v.ttt_tokens = hit
                if base_ttt and v.ttt_s > 0:
                    v.ttt_speedup = base_ttt[1] / v.ttt_s
                if base_ttt and base_ttt[1] > 0:
                    v.ttt_change = v.ttt_s / base_ttt[1] - 1
                if base_ttt and base_ttt[2] and v.ttt_tokens is not None:
                    v.tokens_change = v.ttt_tokens / base_ttt[2] - 1
        base_mean = bsum.mean_iter_ms
        if v.baseline_log:  # the same baseline launch as the median's
            base_mean = next((a.mean_iter_ms for a in bsum.repeats
                              if os.path.basename(a.path) == v.baseline_log), None)
        if s.mean_iter_ms and base_mean and v.speedup is not None:
            v.mean_speedup = base_mean / s.mean_iter_ms
            v.mean_disagrees = abs(v.mean_speedup - v.speedup) > max(
                group.spread or 0.0, MEAN_MEDIAN_TOLERANCE)
        v.confounds = confounds(group, name)
        group.versus[name] = v
    _target_bands(group, bsum)


# A speedup by the means that differs from the one by the medians by more than this (or the
# group's step-time spread, when larger) is flagged: stalls weigh on one and not the other.
MEAN_MEDIAN_TOLERANCE = 0.01


def confounds(group: Group, name: str) -> list:
    """[(setting, the run's value, the baseline's value)] for every setting that changes speed
    or memory (group.differences) and differs between the run and the baseline."""
    if group.baseline is None or name == group.baseline:
        return []
    out = []
    for key, values in group.differences:
        mine = next((v for v, names in values if name in names), None)
        theirs = next((v for v, names in values if group.baseline in names), None)
        if mine != theirs:
            out.append((key, mine, theirs))
    return out


def _target_bands(group: Group, bsum) -> None:
    """The seed bands of time and tokens to target (Group.ttt_band, tokens_band) and each
    run's word for them (Versus.ttt_verdict, tokens_verdict).

    band = the largest |other BF16 seed / baseline - 1|, as the loss gap's band; a run whose
    change is inside the band widened by one step (its median iteration time, or one global
    batch of tokens: the resolution of a crossing) is "same within noise"."""
    refs = [group.versus[n] for n in group.noise_gaps if n in group.versus]
    times = [abs(v.ttt_change) for v in refs if v.ttt_change is not None]
    tokens = [abs(v.tokens_change) for v in refs if v.tokens_change is not None]
    group.ttt_band = max(times) if times else None
    group.tokens_band = max(tokens) if tokens else None
    base = group.versus.get(group.baseline)
    if base is None or base.ttt_s is None or not group.loss_meaningful:
        return
    seq, gbs = (group.shape[4], group.shape[5]) if group.shape else (None, None)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (seq, gbs)):
        seq = gbs = None
    for name, v in group.versus.items():
        if name == group.baseline or name in group.noise_gaps or v.invalid:
            continue
        s = group.summaries[name]
        if v.ttt_s is None:
            if s.final_loss is not None:
                v.ttt_verdict = v.tokens_verdict = "not reached"
            continue
        step = (s.median_iter_ms or 0) / 1000 / base.ttt_s
        v.ttt_verdict = _word(v.ttt_change, group.ttt_band, step, "sooner", "later")
        batch = gbs * seq / base.ttt_tokens if gbs and seq and base.ttt_tokens else 0.0
        v.tokens_verdict = _word(v.tokens_change, group.tokens_band, batch, "fewer", "more")


def _word(change: Optional[float], band: Optional[float], resolution: float, less: str,
          more: str) -> str:
    if change is None:
        return ""
    if band is not None and abs(change) <= band + resolution:
        return "same within noise"
    return less if change < 0 else more


def baseline_launch(bsum, base: LoggedRun, run: LoggedRun) -> tuple[Optional[float], str]:
    """(the baseline's median iteration time to compare `run` with, the file name of that
    launch's log or "" when it is the one shown). Of the baseline's repeated launches
    (bsum.repeats), the one whose `started` is nearest to `run`'s sidecar `started`; the shown
    launch when the baseline ran once, `run` is the baseline, or a start time is missing."""
    shown = (bsum.median_iter_ms, "")
    if run is base or len(bsum.repeats) < 2:
        return shown
    at = _when(run.sidecar.get("started"))
    dated = [(abs((_when(a.started) - at).total_seconds()), a) for a in bsum.repeats
             if at is not None and _when(a.started) is not None]
    if not dated:
        return shown
    nearest = min(dated, key=lambda x: x[0])[1]
    if os.path.basename(nearest.path) == os.path.basename(base.path):
        return shown
    return nearest.median_iter_ms, os.path.basename(nearest.path)


def _when(text) -> Optional[datetime]:
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def verdict(mean_gap: float, band: float) -> str:
    if abs(mean_gap) <= band:
        return "within noise"
    beyond = mean_gap - band if mean_gap > 0 else mean_gap + band
    return f"outside noise ({beyond:+.4f})"
