"""Pre-flight checks: what would fail at launch or inside Megatron, caught at render time.

Each rule looks at one expanded run and names the key that causes the problem. The same
problem in several runs (a base setting, say) is reported once with the runs listed.

The checks come in two stages, so that one mistake gives one problem:

1. names and values: the loader's (unknown keys and flags, types, choices, ranges) and the
   rules here that read one setting alone (`value_rule`: a known target GPU, Slurm words);
2. meaning: every other rule (recipes, parallel layout, Megatron's cross-flag rules, memory).
   A run with a stage-1 problem skips stage 2: a refused or misspelt value would be read as
   absent (a recipe falling back to Megatron's default, say) and set off problems the matrix
   does not have. Advice and the predicted speedup come after a clean render only.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Callable, Optional

from . import rules as megatron_rules
from . import memory
from ..megatron import recipes
from ..common.errors import Problem, did_you_mean
from ..megatron.flags import flag_int
from .schema import FUSION_MODES, ExpandedRun, parallel

SLURM_WORD = re.compile(r"^[A-Za-z0-9_.,:+-]+$")
SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")
NVTE_ATTN = ("NVTE_FLASH_ATTN", "NVTE_FUSED_ATTN", "NVTE_UNFUSED_ATTN")
# Values Megatron asserts for NVTE_{FLASH,FUSED,UNFUSED}_ATTN under each --attention-backend.
ATTN_ENV = {
    "flash": (1, 0, 0), "fused": (0, 1, 0), "unfused": (0, 0, 1), "local": (0, 0, 0), "auto": (1, 1, 1),
}


def check_runs(runs: list[ExpandedRun], file: str, rules: Optional[list] = None) -> list[Problem]:
    """All consistency problems of a matrix's runs, one per (key, message); `rules` defaults to
    every rule (RULES). A run with a name or value problem (the loader's `input_problems`, or
    a finding of a value rule) gets no finding of the rules of meaning."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for run in runs:
        chosen = RULES if rules is None else rules
        values = {rule: rule(run) for rule in chosen if rule in VALUE_RULES}
        meaningful = not run.input_problems and not any(values.values())
        for rule in chosen:
            if rule in values:
                findings = values[rule]
            elif meaningful:
                findings = rule(run)
            else:
                continue
            for where, message in findings:
                found[(where, message)].append(run.name)
    problems = []
    for (where, message), names in found.items():
        runs_text = f"run {names[0]}" if len(names) == 1 else f"runs {', '.join(names)}"
        problems.append(Problem(file, where, f"{runs_text}: {message}"))
    return problems


Finding = tuple[str, str]
RULES: list[Callable[[ExpandedRun], list[Finding]]] = []
VALUE_RULES: set[Callable[[ExpandedRun], list[Finding]]] = set()
"""The rules of stage 1: each reads one setting alone, so a finding stands by itself."""


def rule(fn: Callable[[ExpandedRun], list[Finding]]) -> Callable[[ExpandedRun], list[Finding]]:
    """Register a rule of meaning (stage 2): a function of one ExpandedRun returning (file
    position, message) findings, run only on runs without a name or value problem."""
    RULES.append(fn)
    return fn


def value_rule(fn: Callable[[ExpandedRun], list[Finding]]) -> Callable[[ExpandedRun], list[Finding]]:
    """Register a rule of stage 1: one setting's own value, checked on every run."""
    VALUE_RULES.add(fn)
    return rule(fn)


@rule
def recipe_rules(run: ExpandedRun) -> list[Finding]:
    """The numeric recipe: format and recipe flags together, a recipe the registry knows, --bf16
    beside FP8/FP4, BF16 first/last layers, the target's compute capability, Transformer
    Engine and CUDA (recipes.requirements_problems), amax flags, param gather."""
    f = run.flags
    n = recipes.of_flags(f)
    r = n.recipe
    target = run.settings.target
    out = []
    # Two formats at once, and an FP4 flag without --fp4-format, are Megatron's own assertions:
    # megatron_rules reports them in Megatron's words.
    for flag in recipes.FORMAT_FLAGS:
        if flag == r.format_flag or _refused(run, flag):
            continue  # a format written with a value already refused: that problem stands alone
        needs = f"{flag} ({' or '.join(recipes.FORMATS[flag])})"
        extra = (*recipes.FIRST_LAST_FLAGS[:1], *recipes.AMAX_FLAGS) if not r.quantized and flag == recipes.FORMAT_FLAGS[0] else ()
        for other in (flag.replace("-format", "-recipe"), flag.replace("-format", "-param-gather"), *extra):
            if other in megatron_rules.FLAGS_WITH_OWN_RULE:
                continue
            if f.get(other) not in (None, False):
                out.append((run.where(f"megatron.{other}"), f"{other} has no effect without {needs}"))
    if not r.quantized:
        return out
    if not n.known:
        choices = ", ".join(str(x.recipe_value) for x in recipes.quantized() if x.format_flag == r.format_flag)
        out.append((run.where(f"megatron.{r.recipe_flag}"),
                    f"{r.recipe_value!r} is not a recipe the suite knows for {r.format_flag}; known: {choices}"))
    if not (f.get("--bf16") or f.get("--fp16")):
        out.append((run.where(f"megatron.{r.format_flag}"),
                    f"{r.precision.upper()} training needs --bf16 (or --fp16) as well"))
    if n.first_last_bf16 and not r.first_last_bf16:
        able = [str(x.recipe_value) for x in recipes.quantized()
                if x.format_flag == r.format_flag and x.first_last_bf16 and x.te_probe
                and recipes.runs_on(x, target.gpu)]
        out.append((run.where("megatron.--first-last-layers-bf16"),
                    f"the {r.recipe_value} recipe cannot keep the first/last layers in BF16 (Megatron raises "
                    f"ValueError); use {r.recipe_flag} {' or '.join(able)}, or drop the flag"))
    for key, message in recipes.requirements_problems(r, target.gpu, target.transformer_engine, target.cuda):
        keys = [f"target.{key}", f"megatron.{r.recipe_flag}", f"megatron.{r.format_flag}"]
        if key == "gpu":
            keys = keys[1:] + keys[:1]
        out.append((run.where(*keys), message))
    if not r.amax_history:
        amax = [str(x.recipe_value) for x in recipes.quantized() if x.amax_history]
        for flag in recipes.AMAX_FLAGS:
            if flag in f:
                out.append((run.where(f"megatron.{flag}"),
                            f"{flag} acts only on the {' and '.join(amax)} recipe, not {r.recipe_value}; remove it"))
    if n.param_gather and not any(f.get(x) for x in (
            "--use-distributed-optimizer", "--use-torch-fsdp2", "--use-megatron-fsdp")):
        out.append((run.where(f"megatron.{r.param_gather_flag}"),
                    f"{r.param_gather_flag} needs --use-distributed-optimizer (or FSDP)"))
    return out


@rule
def fp8_attention_rules(run: ExpandedRun) -> list[Finding]:
    """--fp8-dot-product-attention: a low-precision recipe whose attention Transformer Engine runs
    in FP8 on the target GPU (or NVTE_DPA_FP8_RECIPE naming one that it does), cuDNN fused
    attention (or auto); NVTE_DPA_FP8_RECIPE only beside the flag."""
    f = run.flags
    flag, env = recipes.FP8_ATTENTION_FLAG, recipes.DPA_RECIPE_ENV
    dpa = run.settings.env.get(env)
    dpa = None if dpa is None else str(_env_value(dpa))
    if not f.get(flag):
        if dpa is None or _refused(run, flag):  # written with a value refused already: that problem stands
            return []
        return [(run.where(f"env.{env}"), f"{env} acts only with {flag}: add the flag or remove it")]
    r = recipes.of_flags(f).recipe
    if not r.quantized:
        fp8 = recipes.FORMAT_FLAGS[0]
        return [(run.where(f"megatron.{flag}"),
                 f"{flag} has no effect without {fp8} ({' or '.join(recipes.FORMATS[fp8])})")]
    out = []
    problem = recipes.fp8_attention_problem(r, run.settings.target.gpu, dpa)
    if problem:
        keys = [f"megatron.{flag}", f"env.{env}", "target.gpu"]
        if problem.startswith(env):  # about the variable's value: point at it
            keys = keys[1:] + keys[:1]
        out.append((run.where(*keys), problem))
    backend = str(f.get("--attention-backend", "auto"))
    if backend not in ("fused", "auto"):
        out.append((run.where("megatron.--attention-backend", f"megatron.{flag}"),
                    f"FP8 attention runs only in cuDNN fused attention, not --attention-backend {backend}; "
                    "use fused"))
    return out


@rule
def parallel_rules(run: ExpandedRun) -> list[Finding]:
    """TP x PP x CP divides the world size; batch, heads, query groups and layers divide by the
    parallel sizes; BF16 first/last layer counts fit a pipeline stage."""
    f = run.flags
    par = parallel(run)
    out = []
    mbs = flag_int(f.get("--micro-batch-size"), 1)
    if min(par.tp, par.pp, par.cp, par.world, mbs) < 1:
        return out  # the range checks name the key; nothing to divide by here
    model_parallel = par.tp * par.pp * par.cp
    if par.world % model_parallel:
        degrees = {"--tensor-model-parallel-size": par.tp, "--pipeline-model-parallel-size": par.pp,
                   "--context-parallel-size": par.cp}
        # Name the degree that does not divide the world size; else the one an axis varies.
        alone = [f"megatron.{k}" for k, v in degrees.items() if par.world % v]
        used = [f"megatron.{k}" for k, v in degrees.items() if v > 1]
        out.append((run.where(*alone) or _blame(run, *used, "target.gpus_per_node", "target.nodes"),
                    f"world size {par.world} (target.nodes x target.gpus_per_node) is not divisible by "
                    f"TP x PP x CP = {par.tp} x {par.pp} x {par.cp}"))
        return out
    gbs = f.get("--global-batch-size")
    if gbs is not None and flag_int(gbs, 0) % (mbs * par.dp):
        out.append((_blame(run, "megatron.--global-batch-size", "megatron.--micro-batch-size"),
                    f"global batch {gbs} is not divisible by micro batch x data-parallel size = "
                    f"{mbs} x {par.dp}"))
    heads = f.get("--num-attention-heads")
    hidden = f.get("--hidden-size")
    if heads is not None and hidden is not None and "--kv-channels" not in f and flag_int(heads, 0) > 0 \
            and flag_int(hidden, 0) % flag_int(heads, 0):
        out.append((_blame(run, "megatron.--hidden-size", "megatron.--num-attention-heads"),
                    f"hidden size {hidden} is not divisible by {heads} attention heads (Megatron asserts "
                    "it unless --kv-channels is set)"))
    if heads is not None and flag_int(heads, 0) % par.tp:
        out.append((_blame(run, "megatron.--num-attention-heads", "megatron.--tensor-model-parallel-size"),
                    f"{heads} attention heads are not divisible by tensor parallel size {par.tp}"))
    # Query groups vs TP: megatron_rules' query-groups-tp (Megatron allows a multiple or a divisor).
    layers = f.get("--num-layers")
    if layers is not None:
        layers = flag_int(layers, 0)
        if layers % par.pp:
            out.append((_blame(run, "megatron.--num-layers", "megatron.--pipeline-model-parallel-size"),
                        f"{layers} layers are not divisible by pipeline parallel size {par.pp}"))
        n = recipes.of_flags(f)
        per_stage = layers // par.pp
        if n.recipe.quantized and n.first_last_bf16:
            for flag, count in zip(recipes.FIRST_LAST_FLAGS[1:], n.layers_bf16):
                if not 0 <= count <= per_stage:
                    out.append((run.where(f"megatron.{flag}", "megatron.--first-last-layers-bf16"),
                                f"{flag} {count} must be between 0 and the {per_stage} layers per pipeline stage"))
    return out


@value_rule
def target_rules(run: ExpandedRun) -> list[Finding]:
    """Settings read alone: a known target GPU, GPU and node counts, the fusion mode, free disk."""
    s = run.settings
    out = []
    if s.target.gpu not in recipes.TARGET_GPUS:
        out.append((run.where("target.gpu"), f"unknown GPU {s.target.gpu!r}{_gpu_hint(s.target.gpu)}; "
                    f"known: {', '.join(recipes.TARGET_GPUS)}"))
    if s.target.gpus_per_node < 1 or s.target.nodes < 1:
        out.append((run.where("target.gpus_per_node", "target.nodes"), "GPU and node counts must be at least 1"))
    if s.gradient_accumulation_fusion not in FUSION_MODES:
        out.append((run.where("gradient_accumulation_fusion"),
                    f"{s.gradient_accumulation_fusion!r} is not one of: {', '.join(FUSION_MODES)}"
                    f"{did_you_mean(s.gradient_accumulation_fusion, FUSION_MODES)}"))
    if s.min_free_gb < 0:
        out.append((run.where("min_free_gb"), "must be zero or more"))
    return out


@rule
def launch_rules(run: ExpandedRun) -> list[Finding]:
    """--eval-interval present, warm-up below decay, NVTE_*_ATTN matching --attention-backend,
    a W&B project."""
    f = run.flags
    s = run.settings
    out = []
    if "--eval-interval" not in f:
        out.append((run.where("megatron"),
                    "--eval-interval is required (megatron-core 0.19 crashes computing sample counts "
                    "without it); use --eval-iters 0 to turn evaluation off"))
    warmup = flag_int(f.get("--lr-warmup-iters"), 0)
    decay_flag = "--lr-decay-iters" if "--lr-decay-iters" in f else "--train-iters"
    decay = flag_int(f.get(decay_flag), 0)
    if warmup and decay and warmup >= decay:
        out.append((run.where("megatron.--lr-warmup-iters"),
                    f"--lr-warmup-iters {warmup} must be below {decay_flag} {decay} (Megatron's "
                    "learning-rate scheduler asserts it); shorten both when shortening a run"))
    backend = str(f.get("--attention-backend", "auto"))
    expected = ATTN_ENV.get(backend)
    for name, value in zip(NVTE_ATTN, expected or ()):
        if name in s.env and str(_env_value(s.env[name])) != str(value):
            out.append((run.where(f"env.{name}"),
                        f"{name}={_env_value(s.env[name])} contradicts --attention-backend {backend}, "
                        f"for which Megatron asserts {name} is unset or {value}"))
    if s.wandb is not None and not s.wandb.project:
        out.append((run.where("wandb"), "wandb.project is required when wandb is set"))
    return out


@rule
def data_rules(run: ExpandedRun) -> list[Finding]:
    """Mock data with a vocabulary size; real data with prefixes (no spaces) and a tokenizer
    model."""
    d = run.settings.data
    out = []
    if d.mock_data and d.vocab_size is None:
        out.append((run.where("data.mock_data"),
                    "mock data needs data.vocab_size (the NullTokenizer's vocabulary, which sizes the model)"))
    if not d.mock_data:
        if not d.data_path:
            out.append((run.where("data.mock_data", "data"),
                        "data.data_path is empty: give indexed-dataset prefixes or set data.mock_data: true"))
        for word in d.data_path:
            if re.search(r"\s", str(word)):
                out.append((run.where("data.data_path"), f"{word!r}: prefixes cannot contain spaces"))
        if d.tokenizer_type not in ("NullTokenizer", "GPT2BPETokenizer") and not d.tokenizer_model:
            out.append((run.where("data.tokenizer_type", "data"),
                        f"{d.tokenizer_type} needs data.tokenizer_model"))
    return out


@value_rule
def slurm_rules(run: ExpandedRun) -> list[Finding]:
    """Slurm names, time format, container image and mounts, sbatch options as long options."""
    s = run.settings.slurm
    out = []
    for key in ("partition", "account"):
        value = getattr(s, key)
        if value is not None and not SLURM_WORD.match(value):
            out.append((run.where(f"slurm.{key}"), f"{value!r} is not a valid Slurm name"))
    if not SLURM_TIME.match(s.time):
        out.append((run.where("slurm.time"), f"{s.time!r} is not a Slurm time (MM, HH:MM:SS or D-HH:MM:SS)"))
    if s.container_image is not None and (not s.container_image or re.search(r"\s", s.container_image)):
        out.append((run.where("slurm.container_image"), "must be a non-empty image name without spaces"))
    for i, option in enumerate(s.sbatch_options):
        if not option.startswith("--"):
            out.append((run.where("slurm.sbatch_options"), f"entry {i} {option!r} must be a long option (--name=value)"))
    for i, mount in enumerate(s.container_mounts):
        if re.search(r"[\s,]", mount):
            out.append((run.where("slurm.container_mounts"), f"entry {i} {mount!r} must be SRC:DST without spaces or commas"))
    return out


@rule
def memory_rules(run: ExpandedRun) -> list[Finding]:
    """The run's estimated peak memory per GPU must fit its target GPU (fp8suite.config.memory)."""
    result = memory.for_run(run)
    if result is None or result[1].level != "problem":
        return []
    return [(run.where("target.gpus_per_node", "target.gpu"), result[1].message)]


RULES.append(megatron_rules.check)


def _gpu_hint(name: str) -> str:
    """' (did you mean H200?)' for a GPU name the suite reads as a known target GPU ("h200",
    "NVIDIA H200", "H200 NVL" -> its family), else '' (no guess from spelling alone: A100 is
    not an H100)."""
    family = recipes.gpu(name)
    if family is None:
        return ""
    target = family.name if family.target else next(
        (g.name for g in recipes.GPUS if g.target and g.name.lower() in family.name.lower()), None)
    return f" (did you mean {target}?)" if target else ""


def _refused(run: ExpandedRun, flag: str) -> bool:
    """Whether the matrix writes `flag` but its value was refused (the loader reported it and
    left the flag out): rules that would read the flag as absent then say nothing more."""
    return flag in run.refused


def _blame(run: ExpandedRun, *keys: str) -> str:
    """Where the first of `keys` is set, preferring one an axis value sets: of two values that
    do not fit together, the one that varies between runs is the one that conflicts."""
    places = [run.where(key) for key in keys]
    varied = [p for p in places if p.startswith("axes.")]
    return (varied or [p for p in places if p] or [""])[0]


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


