"""The numeric recipe as data: which recipes exist, how a run names one, what each needs.

This is the only module that knows the recipes. Everything else asks it:

* `of_flags(flags)` reads a run's recipe from its Megatron flags (the matrix side);
  `of_args(args)` from a log's arguments dump (the report side). Both give a `Numerics`:
  the `Recipe` plus the run's modifiers (format, BF16 first/last layers, param gather), with
  one human `label` and one `short` name per run.
* `RECIPES` lists every recipe with the flags that select it, its tensor-core `precision`
  (the key of the GPU peak tables), and the minimum compute capability, Transformer Engine
  and CUDA it needs (`requirements_problems()` turns a target into one message per gap).
* `GPUS` lists the GPU families with compute capability, dense peak TFLOP/s per precision
  and usable memory; `gpu(name)` finds a family from a matrix's `target.gpu` or a device
  name as nvidia-smi prints it.

Adding a recipe = one `Recipe(...)` entry in `RECIPES` (and a matrix and tests that use it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from packaging.version import InvalidVersion
from packaging.version import Version as Release

from .flags import flag_int

Version = tuple[int, ...]


# --- recipes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeProbe:
    """How verify_env.py tries a recipe under Transformer Engine on the machine it runs on."""

    available: str
    """Function of `transformer_engine.pytorch` answering (ok, reason), e.g. "is_fp8_available"."""
    recipe_class: str
    """Class of `transformer_engine.common.recipe` to autocast with, e.g. "DelayedScaling"."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Its plain arguments, e.g. {"amax_history_len": 16}."""
    format_member: Optional[str] = None
    """Member of `transformer_engine.common.recipe.Format` to pass as `format_kwarg`, e.g. "HYBRID"."""
    format_kwarg: str = "fp8_format"
    """The recipe class's argument that takes the format."""


@dataclass(frozen=True)
class Recipe:
    """One numeric recipe: how Megatron selects it and what it needs."""

    name: str
    """Short name, unique: "bf16", "delayed", "tensorwise", "blockwise", "mxfp8", "nvfp4", ..."""
    label: str
    """Human name, e.g. "FP8 tensorwise"; a run's label adds its format and modifiers."""
    title: str
    """Name in problem messages, e.g. "blockwise FP8"."""
    precision: str
    """Tensor-core precision of its matrix multiplies: "bf16", "fp16", "fp32", "fp8" or "fp4"
    (the key of `GpuFamily.peak_tflops`)."""
    format_flag: Optional[str] = None
    """Megatron flag that turns the low precision on ("--fp8-format", "--fp4-format"); None for
    the base precisions."""
    format_arg: Optional[str] = None
    """The same in the arguments dump ("fp8", "fp4")."""
    recipe_value: Optional[str] = None
    """Value of the recipe flag ("--fp8-recipe" / "--fp4-recipe") that selects it."""
    base_flag: Optional[str] = None
    """For base precisions: the flag that selects it ("--bf16", "--fp16"); None for FP32."""
    min_compute_capability: Optional[Version] = None
    """Lowest GPU compute capability it runs on, e.g. (9, 0); None: any."""
    min_transformer_engine: Optional[Version] = None
    """Lowest Transformer Engine version it runs with, e.g. (2, 3); None: any."""
    min_cuda: Optional[Version] = None
    """Lowest CUDA version it runs with, e.g. (12, 9); None: any."""
    amax_history: bool = False
    """Whether --fp8-amax-history-len / --fp8-amax-compute-algo act on it (delayed scaling)."""
    first_last_bf16: bool = True
    """Whether it may keep the first/last layers in BF16 (--first-last-layers-bf16)."""
    te_probe: Optional[TeProbe] = None
    """How verify_env.py tries it; None: not tried (base precisions, custom recipes)."""
    scale_block: Optional[int] = None
    """Elements per one-byte scale of its quantized tensors (MXFP8 32, NVFP4 16); None when the
    scales are per tensor or per 128-element block (negligible memory). Read by fp8suite.config.memory."""
    passes_fp8_dpa: bool = False
    """Whether Megatron passes --fp8-dot-product-attention (fp8_dpa) to this recipe's Transformer
    Engine recipe (megatron/core/fp8_utils.py, fp4_utils.py); where not, the flag does nothing."""
    fp8_attention_from: Optional[Version] = None
    """Lowest compute capability on which Transformer Engine 2.20 runs attention in FP8 in this
    recipe's own scaling (cuDNN fused attention; TE's get_attention_backend); None where it has no
    attention in this recipe (NVTE_DPA_FP8_RECIPE then has to name one). On Blackwell TE also
    wants cuDNN >= 9.14 (tensorwise) or >= 9.21 (MXFP8), which a matrix does not state."""

    @property
    def quantized(self) -> bool:
        """True for FP8/FP4 recipes (selected by a format flag), False for BF16/FP16/FP32."""
        return self.format_flag is not None

    @property
    def recipe_flag(self) -> Optional[str]:
        """"--fp8-recipe" or "--fp4-recipe"; None for base precisions."""
        return self.format_flag.replace("-format", "-recipe") if self.format_flag else None

    @property
    def param_gather_flag(self) -> Optional[str]:
        """"--fp8-param-gather" or "--fp4-param-gather"; None for base precisions."""
        return self.format_flag.replace("-format", "-param-gather") if self.format_flag else None


RECIPES: tuple[Recipe, ...] = (
    Recipe("bf16", "BF16", "BF16", "bf16", base_flag="--bf16", min_compute_capability=(8, 0)),
    Recipe("fp16", "FP16", "FP16", "fp16", base_flag="--fp16", min_compute_capability=(7, 0)),
    Recipe("fp32", "FP32", "FP32", "fp32"),
    Recipe("delayed", "FP8 delayed", "delayed FP8", "fp8", "--fp8-format", "fp8", "delayed",
           min_compute_capability=(8, 9), amax_history=True, first_last_bf16=False,
           passes_fp8_dpa=True, fp8_attention_from=(9, 0),
           te_probe=TeProbe("is_fp8_available", "DelayedScaling",
                            {"amax_history_len": 16, "amax_compute_algo": "max"}, "HYBRID")),
    Recipe("tensorwise", "FP8 tensorwise", "tensorwise FP8", "fp8", "--fp8-format", "fp8", "tensorwise",
           min_compute_capability=(8, 9), passes_fp8_dpa=True, fp8_attention_from=(10, 0),
           te_probe=TeProbe("is_fp8_available", "Float8CurrentScaling", {}, "HYBRID")),
    Recipe("blockwise", "FP8 blockwise", "blockwise FP8", "fp8", "--fp8-format", "fp8", "blockwise",
           min_compute_capability=(9, 0), min_transformer_engine=(2, 3), min_cuda=(12, 9),
           te_probe=TeProbe("is_fp8_block_scaling_available", "Float8BlockScaling")),
    Recipe("mxfp8", "MXFP8", "MXFP8", "fp8", "--fp8-format", "fp8", "mxfp8",
           min_compute_capability=(10, 0), min_transformer_engine=(2, 1), min_cuda=(12, 8),
           scale_block=32, passes_fp8_dpa=True, fp8_attention_from=(10, 0),
           te_probe=TeProbe("is_mxfp8_available", "MXFP8BlockScaling")),
    Recipe("fp8_custom", "FP8 custom", "custom FP8", "fp8", "--fp8-format", "fp8", "custom",
           min_compute_capability=(8, 9)),
    # Megatron: "--fp4-format requires Transformer Engine >= 2.7.0.dev0 for NVFP4BlockScaling".
    Recipe("nvfp4", "FP4 NVFP4", "NVFP4", "fp4", "--fp4-format", "fp4", "nvfp4",
           min_compute_capability=(10, 0), min_transformer_engine=(2, 7), min_cuda=(12, 8),
           scale_block=16, passes_fp8_dpa=True,
           te_probe=TeProbe("is_nvfp4_available", "NVFP4BlockScaling")),
    Recipe("fp4_custom", "FP4 custom", "custom FP4", "fp4", "--fp4-format", "fp4", "custom",
           min_compute_capability=(10, 0), min_transformer_engine=(2, 7), min_cuda=(12, 8)),
)
"""Every recipe the suite knows, base precisions first."""

BY_NAME: dict[str, Recipe] = {r.name: r for r in RECIPES}
BASELINE: Recipe = BY_NAME["bf16"]
"""The recipe the others are compared against (a comparison group's default baseline)."""
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(r.precision for r in RECIPES))
"""Every tensor-core precision: "bf16", "fp16", "fp32", "fp8", "fp4"."""
PRECISION_BYTES: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "fp4": 0.5}
"""Bytes of one element at each precision (also the values of Megatron's --exp-avg-dtype etc.)."""
FORMAT_FLAGS: tuple[str, ...] = tuple(dict.fromkeys(r.format_flag for r in RECIPES if r.format_flag))
"""The flags that turn low precision on: "--fp8-format", "--fp4-format"."""
FORMATS: dict[str, tuple[str, ...]] = {"--fp8-format": ("e4m3", "hybrid"), "--fp4-format": ("e2m1",)}
"""Megatron's choices for each format flag."""
DEFAULT_RECIPE: dict[str, str] = {"--fp8-format": "delayed", "--fp4-format": "nvfp4"}
"""Megatron's default --fp8-recipe / --fp4-recipe (TransformerConfig.fp8_recipe, .fp4_recipe)."""
FIRST_LAST_FLAGS = ("--first-last-layers-bf16", "--num-layers-at-start-in-bf16", "--num-layers-at-end-in-bf16")
AMAX_FLAGS = ("--fp8-amax-history-len", "--fp8-amax-compute-algo")
FP8_ATTENTION_FLAG = "--fp8-dot-product-attention"
"""Runs dot-product attention in FP8 (a suite flag in megatron-core 0.19: megatron_flags.SUITE_FLAGS)."""
DPA_RECIPE_ENV = "NVTE_DPA_FP8_RECIPE"
"""Transformer Engine's switch for the recipe of FP8 attention, apart from the linear layers'
(experimental; documented in TE's dot_product_attention.py). "DelayedScaling" is how tensorwise
runs get FP8 attention where TE has it only for delayed scaling (Hopper); that attention recipe
has its own amax settings (NVTE_DPA_FP8DS_AMAX_HISTLEN, default 1; NVTE_DPA_FP8DS_AMAX_ALGO,
default most_recent), not the run's --fp8-amax-* ones."""
DPA_RECIPES: dict[str, Optional[str]] = {
    "DelayedScaling": "delayed", "Float8CurrentScaling": "tensorwise", "MXFP8BlockScaling": "mxfp8",
    "F16": None}
"""Values of NVTE_DPA_FP8_RECIPE -> the recipe attention then runs in (None: BF16/FP16)."""


def fp8_attention_problem(recipe: Recipe, gpu_name: str, dpa_recipe: Optional[str]) -> Optional[str]:
    """Why --fp8-dot-product-attention would not run attention in FP8 for the linear layers'
    `recipe` on `gpu_name` under Transformer Engine 2.20; None when it does (or the GPU is
    unknown). Messages about NVTE_DPA_FP8_RECIPE's value start with its name.

    dpa_recipe: the run's NVTE_DPA_FP8_RECIPE, None when unset (attention then follows `recipe`).
    """
    flag, env = FP8_ATTENTION_FLAG, DPA_RECIPE_ENV
    if not recipe.passes_fp8_dpa:
        return (f"Megatron does not pass fp8_dpa to Transformer Engine's {recipe.title} recipe: "
                f"{flag} would change nothing; remove it")
    if dpa_recipe is not None and dpa_recipe not in DPA_RECIPES:
        close = [k for k in DPA_RECIPES if k.lower() == dpa_recipe.strip().lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{env}={dpa_recipe!r} is not one of: {', '.join(DPA_RECIPES)}{hint}"
    if dpa_recipe is not None and DPA_RECIPES[dpa_recipe] is None:
        return f"{env}={dpa_recipe} keeps attention in 16 bits: {flag} would change nothing"
    attention = BY_NAME[DPA_RECIPES[dpa_recipe]] if dpa_recipe else recipe
    need = attention.fp8_attention_from
    able = [r for r in RECIPES if r.fp8_attention_from]
    if need is None:
        return (f"Transformer Engine has no {attention.title} attention: set env {env} to the FP8 "
                f"recipe attention runs in ({', '.join(k for k, v in DPA_RECIPES.items() if v)})")
    family = gpu(gpu_name)
    if family is None or family.compute_capability >= need:
        return None
    has = f"({family.name} is {_dotted(family.compute_capability)})"
    runs_here = [r for r in able if family.compute_capability >= r.fp8_attention_from]
    if runs_here and attention not in runs_here:
        value = next(k for k, v in DPA_RECIPES.items() if v == runs_here[0].name)
        return (f"Transformer Engine has {attention.title} attention only from compute capability "
                f"{_dotted(need)} {has} and would find no attention backend; set env {env}: "
                f"{value} (FP8 attention in {runs_here[0].name} scaling, the linear layers stay "
                f"{recipe.title})")
    return (f"Transformer Engine has {attention.title} attention only from compute capability "
            f"{_dotted(need)} {has}; remove {flag}")


def quantized() -> tuple[Recipe, ...]:
    """The FP8/FP4 recipes, in registry order."""
    return tuple(r for r in RECIPES if r.quantized)


def names() -> tuple[str, ...]:
    """The names a tool takes for an FP8/FP4 recipe (verify_env.py --recipe): every quantized
    recipe a matrix can select, whether or not Transformer Engine can try it (`probed()`)."""
    return tuple(r.name for r in quantized())


def selecting_flags(recipe: Recipe) -> str:
    """The Megatron flags a matrix selects `recipe` with, e.g. "--fp4-format e2m1 --fp4-recipe nvfp4"."""
    if not recipe.format_flag:
        return recipe.base_flag or "(no flag)"
    return f"{recipe.format_flag} ... {recipe.recipe_flag} {recipe.recipe_value}"


def probed() -> tuple[Recipe, ...]:
    """The recipes verify_env.py can try under Transformer Engine."""
    return tuple(r for r in RECIPES if r.te_probe is not None)


def find(format_flag: Optional[str], recipe_value: Optional[str]) -> Optional[Recipe]:
    """The quantized recipe selected by a format flag and a recipe value; None if unknown."""
    for r in RECIPES:
        if r.format_flag == format_flag and r.recipe_value == recipe_value:
            return r
    return None


# --- a run's numerics ----------------------------------------------------------------------


@dataclass(frozen=True)
class Numerics:
    """The numeric recipe of one run: the `Recipe` and the run's modifiers."""

    recipe: Recipe
    fmt: Optional[str] = None
    """--fp8-format / --fp4-format value ("hybrid", "e4m3", "e2m1"); None for base precisions."""
    first_last_bf16: bool = False
    """--first-last-layers-bf16 given (only counted for quantized recipes)."""
    layers_bf16: tuple[int, int] = (1, 1)
    """--num-layers-at-start-in-bf16, --num-layers-at-end-in-bf16."""
    param_gather: bool = False
    """--fp8-param-gather / --fp4-param-gather given."""
    known: bool = True
    """False when the recipe flag names a recipe the registry lacks (then `recipe` is made up)."""
    fp8_attention: bool = False
    """--fp8-dot-product-attention given (attention in FP8 as well)."""

    @property
    def precision(self) -> str:
        """Tensor-core precision ("bf16", "fp8", "fp4", ...): the key for peak TFLOP/s."""
        return self.recipe.precision

    @property
    def baseline(self) -> bool:
        """True when this is the comparison baseline recipe (plain BF16)."""
        return self.recipe is BASELINE

    @property
    def label(self) -> str:
        """The run's one human label: the recipe, its BF16 first/last layers, +param-gather, then
        FP8 attention, then the format, e.g. "FP8 tensorwise (BF16 first/last 1/1) +param-gather
        (hybrid)", "FP8 delayed +FP8 attention (hybrid)"."""
        if not self.recipe.quantized:
            return self.recipe.label
        text = self.recipe.label
        if self.first_last_bf16:
            text += f" (BF16 first/last {self.layers_bf16[0]}/{self.layers_bf16[1]})"
        if self.param_gather:
            text += " +param-gather"
        if self.fp8_attention:
            text += " +FP8 attention"
        return f"{text} ({self.fmt})"

    @property
    def short(self) -> str:
        """The run's one short name, e.g. "bf16", "tensorwise-bf16-first1-last1", "nvfp4"."""
        if self.recipe.quantized and self.first_last_bf16:
            return f"{self.recipe.name}-bf16-first{self.layers_bf16[0]}-last{self.layers_bf16[1]}"
        return self.recipe.name


def arg_names(numerics: Optional[Numerics]) -> tuple[str, ...]:
    """The arguments-dump names that define a run's numerics, for showing them beside its label.

    The run's format family (FP8 unless it is an FP4 run): format, recipe, param gather, then
    the BF16 first/last layers, the base precision flag, delayed scaling's amax settings when
    the family has a recipe they act on, and FP8 attention when it has one that can run it.
    """
    flag = numerics.recipe.format_flag if numerics and numerics.recipe.format_flag else FORMAT_FLAGS[0]
    family = [r for r in RECIPES if r.format_flag == flag]
    flags = [flag, flag.replace("-format", "-recipe"), flag.replace("-format", "-param-gather"),
             *FIRST_LAST_FLAGS, str(BASELINE.base_flag)]
    if any(r.amax_history for r in family):
        flags += AMAX_FLAGS
    if any(r.fp8_attention_from for r in family):
        flags.append(FP8_ATTENTION_FLAG)
    return tuple(_dest(f) for f in flags)


def idle_args(args: Mapping[str, Any]) -> frozenset[str]:
    """The arguments-dump names whose values the run's other settings leave without effect, so
    that a report neither shows nor compares them: the BF16 layer counts without
    --first-last-layers-bf16, delayed scaling's amax settings on a recipe without it, FP8
    attention on a recipe Megatron does not pass it to (`passes_fp8_dpa`), and the FP8/FP4
    recipe of a run without FP8/FP4. A switch that is off stays a setting: its value says so.
    """
    numerics = of_args(args)
    if numerics is None:
        return frozenset()
    recipe = numerics.recipe
    flags = [] if numerics.first_last_bf16 else list(FIRST_LAST_FLAGS[1:])
    if not recipe.amax_history:
        flags += AMAX_FLAGS
    if not recipe.passes_fp8_dpa:
        flags.append(FP8_ATTENTION_FLAG)
    if not recipe.quantized:
        flags += [f.replace("-format", "-recipe") for f in FORMAT_FLAGS]
    return frozenset(_dest(f) for f in flags)


def of_flags(flags: Mapping[str, Any]) -> Numerics:
    """The numerics of a run from its Megatron flags ({"--fp8-format": "hybrid", ...}).

    Unset flags take Megatron's defaults. With both --fp8-format and --fp4-format set (which
    Megatron refuses; checks.py reports it) the FP8 one is read.
    """
    return _read(lambda flag: flags.get(flag))


def of_args(args: Mapping[str, Any]) -> Optional[Numerics]:
    """The numerics of a run from a log's arguments dump ({"fp8": "hybrid", "bf16": "True", ...}).

    Values may be Python values or the text Megatron prints ("None", "True", "1"). Returns
    None for an empty dump (no arguments logged); never raises.
    """
    if not args:
        return None

    def get(flag: str) -> Any:
        value = args.get(_dest(flag))
        if isinstance(value, str):
            if value == "None":
                return None
            if value in ("True", "False"):
                return value == "True"
        return value
    return _read(get)


def cut_before_numerics(args: Mapping[str, Any]) -> bool:
    """Whether an arguments dump cut short (the log ends inside it) stops before the arguments
    that decide its numerics: Megatron prints the dump sorted by name, so an argument that sorts
    after the dump's last one is unknown (the format, the recipe, the base precision, the
    older releases' `fp8_hybrid`/`fp8_e4m3`, and the BF16 first/last layer counts when
    --first-last-layers-bf16 is on). True for an empty dump."""
    if not args:
        return True
    deciding = {_dest(f) for f in FORMAT_FLAGS} | {_dest(f.replace("-format", "-recipe"))
                                                    for f in FORMAT_FLAGS}
    deciding |= {_dest(str(r.base_flag)) for r in RECIPES if r.base_flag}
    deciding |= {"fp8_hybrid", "fp8_e4m3"}
    if str(args.get(_dest(FIRST_LAST_FLAGS[0]))) == "True":
        deciding |= {_dest(f) for f in FIRST_LAST_FLAGS[1:]}
    return max(args) < max(deciding)


def _dest(flag: str) -> str:
    """Megatron's argument name (dest) of a flag: "--fp8-format" -> "fp8"."""
    for r in RECIPES:
        if r.format_flag == flag:
            return str(r.format_arg)
    return flag.lstrip("-").replace("-", "_")


def _read(get: Callable[[str], Any]) -> Numerics:
    for flag in FORMAT_FLAGS:
        fmt = get(flag)
        if fmt in (None, False):
            continue
        recipe_flag = flag.replace("-format", "-recipe")
        value = get(recipe_flag)
        value = DEFAULT_RECIPE[flag] if value in (None, False) else str(value)
        recipe = find(flag, value)
        known = recipe is not None
        if recipe is None:  # a recipe this registry lacks: keep the run readable
            precision = flag[2:5]
            recipe = Recipe(f"{precision}_{value}", f"{precision.upper()} {value}",
                            f"{value} {precision.upper()}", precision, flag, _dest(flag), value)
        return Numerics(
            recipe=recipe, fmt=str(fmt), known=known,
            first_last_bf16=bool(get("--first-last-layers-bf16")),
            layers_bf16=(flag_int(get("--num-layers-at-start-in-bf16"), 1),
                         flag_int(get("--num-layers-at-end-in-bf16"), 1)),
            param_gather=bool(get(recipe.param_gather_flag or "")),
            fp8_attention=bool(get(FP8_ATTENTION_FLAG)),
        )
    for r in RECIPES:
        if r.base_flag and get(r.base_flag):
            return Numerics(r)
    return Numerics(BY_NAME["fp32"])


# --- GPU families --------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuFamily:
    """One GPU model. Peaks are dense (no sparsity) tensor-core TFLOP/s per GPU.

    Sources: NVIDIA's datasheets, which quote sparse figures for BF16/FP16/FP8/FP4 (dense is
    half): H100 Tensor Core GPU datasheet (SXM, PCIe, NVL columns), H200 Tensor Core GPU
    datasheet (SXM, NVL), GH200 Grace Hopper Superchip datasheet (the H100 SXM compute),
    HGX B200 / DGX B200 datasheets (per GPU: 9 PFLOP/s FP4, 4.5 FP8, 2.25 BF16 dense),
    GB200 NVL72 datasheet (per GPU: 10 PFLOP/s FP4, 5 FP8, 2.5 BF16 dense). Compute
    capabilities from NVIDIA's CUDA GPU list (Hopper 9.0, B200/GB200 10.0, B300/GB300 10.3).
    """

    name: str
    """As written in a matrix's target.gpu, or a variant's name ("H100 NVL")."""
    architecture: str
    """"Hopper" or "Blackwell"."""
    compute_capability: Version
    """(major, minor), e.g. (9, 0)."""
    memory_gib: Optional[float]
    """Memory one process can see, GiB (2**30 bytes): nvidia-smi's memory.total / 1024 where a
    reading is recorded, else the datasheet's GB converted to GiB (a lower bound: H200's 141 GB
    converts to 131.3 GiB, nvidia-smi reads 140.4 GiB); None when not published."""
    peak_tflops: Mapping[str, float]
    """Dense peak TFLOP/s by precision ("bf16", "fp16", "fp8", "fp4"); empty when unknown."""
    target: bool = True
    """Whether a matrix may name it as target.gpu (False for variants matched in device names)."""
    non_pytorch_gib: Optional[float] = None
    """GiB of its memory outside PyTorch's allocator (driver, CUDA context, cuBLAS/cuDNN, NCCL),
    where measured (`memory_measured_by`); None: not measured (fp8suite.config.memory assumes another
    family's)."""
    fragmentation_share: Optional[float] = None
    """Share of its memory the caching allocator held reserved but unusable at an out-of-memory
    without expandable segments, where measured; None: not measured."""
    memory_measured_by: str = ""
    """The committed log the two memory figures above come from."""


def _peaks(bf16: float, fp8: float, fp4: Optional[float] = None) -> dict[str, float]:
    out = {"bf16": bf16, "fp16": bf16, "fp8": fp8}
    if fp4 is not None:
        out["fp4"] = fp4
    return out


_GB = 1e9 / 2**30  # GiB per GB

GPUS: tuple[GpuFamily, ...] = (
    # H100 SXM 80 GB: nvidia-smi reads 81559 MiB. Datasheet (sparse): BF16 1979, FP8 3958.
    GpuFamily("H100", "Hopper", (9, 0), 81559 / 1024, _peaks(989.0, 1979.0)),
    # H200 SXM 141 GB: nvidia-smi reads 143771 MiB (the sidecars in logs/). Compute as H100 SXM.
    # Memory outside PyTorch and fragmentation from the 2xH200 BF16 out-of-memory message: of
    # nvidia-smi's 143,771 MiB (140.40 GiB) PyTorch accounts for 126.02 GiB allocated + 7.62
    # reserved + 2.88 free = 136.52 GiB, so 3.88 GiB lie outside it; the 7.62 GiB reserved but
    # unallocated are 5.4% of 140.40 GiB.
    GpuFamily("H200", "Hopper", (9, 0), 143771 / 1024, _peaks(989.0, 1979.0),
              non_pytorch_gib=3.9, fragmentation_share=0.054,
              memory_measured_by="tests/data/real_h200x2/train_llama3_8b_h200_bf16.1.log"),
    # H800 and H20: export parts without a datasheet figure the suite cites; MFU stays blank.
    GpuFamily("H800", "Hopper", (9, 0), 81559 / 1024, {}),
    GpuFamily("H20", "Hopper", (9, 0), round(96 * _GB, 1), {}),
    # GH200: H100 SXM compute; its memory comes as 96 GB HBM3 or 144 GB HBM3e, so unknown here.
    GpuFamily("GH200", "Hopper", (9, 0), None, _peaks(989.0, 1979.0)),
    # HGX B200: 180 GB HBM3e per GPU (1.44 TB over 8).
    GpuFamily("B200", "Blackwell", (10, 0), round(180 * _GB, 1), _peaks(2250.0, 4500.0, 9000.0)),
    # Blackwell Ultra: 288 GB HBM3e per GPU; no dense figures cited, so MFU stays blank.
    GpuFamily("B300", "Blackwell", (10, 3), round(288 * _GB, 1), {}),
    # GB200 NVL72: 13.4 TB HBM3e over 72 GPUs, 186 GB each.
    GpuFamily("GB200", "Blackwell", (10, 0), round(186 * _GB, 1), _peaks(2500.0, 5000.0, 10000.0)),
    GpuFamily("GB300", "Blackwell", (10, 3), round(288 * _GB, 1), {}),
    # Variants found in device names (nvidia-smi "NVIDIA H100 PCIe", "NVIDIA H200 NVL").
    GpuFamily("H100 PCIe", "Hopper", (9, 0), 81559 / 1024, _peaks(756.0, 1513.0), target=False),
    GpuFamily("H100 NVL", "Hopper", (9, 0), 95830 / 1024, _peaks(835.0, 1671.0), target=False),
    GpuFamily("H200 NVL", "Hopper", (9, 0), 143771 / 1024, _peaks(835.0, 1671.0), target=False),
)
"""Every GPU family the suite knows."""

EVALUATION_EXTRA_GIB: dict[str, Optional[float]] = {
    "bf16": 0.0, "fp16": None, "fp32": None,
    "delayed": 0.0, "tensorwise": 0.0, "blockwise": 0.0, "mxfp8": None, "nvfp4": None,
}
"""What evaluation adds on top of the training peak, GiB per GPU, by recipe kind (Recipe.name):
calibration values for fp8suite.config.memory's estimate. Measured as Megatron's `max allocated`
after the iteration that evaluates less the one before it (--log-memory-interval 1), in the
logs EVALUATION_MEASURED_BY names: one H100, data-parallel size 1, with and without
--fp8-param-gather, at 23-60% of the GPU (param_gather_h100) and at 84-91% of it
(evalmem_h100: 67.1-72.8 GiB allocated of 79.6). Evaluation's forward passes hold no gradients
and no backward activations, so they stay under the training peak (0.0 in every cited log).
None: not measured; the estimate of a run that evaluates says so in its notes."""
_PG = "logs/param_gather_h100/pg_h100_"
_EM = "logs/evalmem_h100/evalmem_h100_"
EVALUATION_MEASURED_BY: dict[str, tuple[str, ...]] = {
    "bf16": (*(f"{_PG}{s}_bf16.log" for s in ("w4096_l4_s4096", "w2048_l12_s2048", "w4096_l8_s8192")),
             f"{_EM}bf16.log"),
    "delayed": (*(f"{_PG}w4096_l4_s4096_{r}.log" for r in ("fp8", "fp8_param_gather", "fp8_pao")),
                f"{_EM}fp8.log", f"{_EM}fp8_param_gather.log"),
    "tensorwise": (*(f"{_PG}{s}_{r}.log" for s in ("w4096_l4_s4096", "w2048_l12_s2048", "w4096_l8_s8192")
                     for r in ("fp8_cs", "fp8_cs_param_gather")),
                   f"{_EM}fp8_cs.log", f"{_EM}fp8_cs_param_gather.log"),
    "blockwise": (f"{_EM}fp8_blockwise.log",),
}
"""Recipe kind -> the committed logs its EVALUATION_EXTRA_GIB value is measured in (the largest
rise of `max allocated` across an evaluation, over these logs; tests re-derive it)."""

# The scaling as NeMo words it -> the value of megatron-core's --fp8-recipe (`recipes.RECIPES`):
# NeMo's fp8_recipe names ("delayed", "tensorwise", "blockwise", "mxfp8") and Transformer
# Engine's recipe classes' words (DelayedScaling, Float8CurrentScaling, Float8BlockScaling,
# MXFP8BlockScaling), most specific first.
NEMO_SCALINGS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"\bmxfp8\b|\bmx\b|microscaling"), "mxfp8"),
    (re.compile(r"\bdelayed\b"), "delayed"),
    (re.compile(r"\btensorwise\b|\bper[- ]tensor\b|\bcurrent\b"), "tensorwise"),
    (re.compile(r"\bblockwise\b|\bblock\b"), "blockwise"),
)
NEMO_AMAX = (  # "amax history 1024", "amax compute algo max" -> megatron-core's argument names
    (re.compile(r"^amax[ _]history(?:[ _]len(?:gth)?)?[ :=]+(\S+)$"), "fp8_amax_history_len"),
    (re.compile(r"^amax[ _]compute[ _]algo(?:rithm)?[ :=]+(\S+)$"), "fp8_amax_compute_algo"),
)


def args_of_nemo_fp8(settings: str) -> dict:
    """NeMo 2.0's FP8 settings (the bracketed part of its `Using FP8 (...)` info line:
    comma-separated, the format first, then the scaling and, for delayed scaling, its amax
    settings) in megatron-core's argument names, as its dump would print them: "hybrid, delayed
    scaling, amax history 1024, amax compute algo max" -> {"fp8": "hybrid", "fp8_recipe":
    "delayed", "fp8_amax_history_len": "1024", "fp8_amax_compute_algo": "max"}. A scaling none
    of NEMO_SCALINGS names is kept as its first word (a recipe the registry lacks stays
    readable); {} without a format."""
    parts = [p.strip() for p in settings.split(",")]
    fmt = parts[0].lower().removeprefix("format").strip(" :=") if parts else ""
    if not fmt:
        return {}
    out = {"fp8": fmt}
    for part in parts[1:]:
        text = part.lower()
        amax = next(((name, hit.group(1)) for rx, name in NEMO_AMAX if (hit := rx.match(text))),
                    None)
        if amax:
            out[amax[0]] = amax[1]
        elif "fp8_recipe" not in out and text:
            out["fp8_recipe"] = next((value for rx, value in NEMO_SCALINGS if rx.search(text)),
                                     text.split()[0])
    return out


DEFAULT_GPU = "H200"
"""target.gpu when a matrix names none."""
TARGET_GPUS: tuple[str, ...] = tuple(g.name for g in GPUS if g.target)
"""The values a matrix's target.gpu may take."""


def gpu(name: Optional[str]) -> Optional[GpuFamily]:
    """The family of a target.gpu value or a device name ("NVIDIA H100 80GB HBM3"); None if unknown.

    The most specific (longest) family name contained in `name` wins, case-insensitively, so
    "NVIDIA H100 NVL" is the NVL part and "NVIDIA GH200 480GB" is GH200, not H200.
    """
    if not name:
        return None
    text = name.lower()
    for family in sorted(GPUS, key=lambda g: -len(g.name)):
        if re.search(r"(?<![a-z0-9])" + re.escape(family.name.lower()) + r"(?![0-9])", text):
            return family
    return None


def peak_tflops(gpu_name: Optional[str], precision: Optional[str]) -> Optional[float]:
    """Dense peak TFLOP/s of a GPU (target name or device name) at a precision; None if unknown."""
    family = gpu(gpu_name)
    if family is None or not precision:
        return None
    return family.peak_tflops.get(precision)


def memory_gib(gpu_name: Optional[str]) -> Optional[float]:
    """Usable memory of one GPU in GiB (see `GpuFamily.memory_gib`); None if unknown."""
    family = gpu(gpu_name)
    return family.memory_gib if family else None


def peaks_text(gpu_names) -> str:
    """Prose of the dense peaks of the given GPUs, e.g. "H200: 989 TFLOP/s BF16, 1979 FP8".

    Unknown names and families without figures are left out; '' when none remain.
    """
    parts = []
    families = {f.name: f for f in (gpu(n) for n in gpu_names) if f is not None}
    for family in families.values():
        if not family.peak_tflops:
            continue
        peaks = [(p, family.peak_tflops[p]) for p in PRECISIONS if p in family.peak_tflops and p != "fp16"]
        parts.append(f"{family.name}: " + ", ".join(
            f"{v:.0f} TFLOP/s {p.upper()}" if i == 0 else f"{v:.0f} {p.upper()}"
            for i, (p, v) in enumerate(peaks)))
    return "; ".join(sorted(parts))


# --- requirements --------------------------------------------------------------------------


def version(text: Any) -> Version:
    """(major, minor) of a version text as packaging reads it (PEP 440): "2.20.0" -> (2, 20),
    "2.20.2+cu130" -> (2, 20), "13" -> (13,); (0,) when the text is no version."""
    try:
        release = Release(str(text).strip()).release
    except InvalidVersion:
        return (0,)
    return tuple(release[:2])


def _dotted(v: Version) -> str:
    return ".".join(str(x) for x in v)


def runs_on(recipe: Recipe, gpu_name: str) -> bool:
    """Whether the GPU's compute capability suffices for `recipe` (True for an unknown GPU)."""
    family = gpu(gpu_name)
    need = recipe.min_compute_capability
    return family is None or need is None or family.compute_capability >= need


def requirements_problems(recipe: Recipe, gpu_name: str, transformer_engine: str,
                          cuda: str) -> list[tuple[str, str]]:
    """What the target lacks for `recipe`, as (target key, message) pairs; [] when it has all.

    Keys are "gpu", "transformer_engine" and "cuda" (the fields of the matrix's `target`). An
    unknown GPU is not judged here (the matrix checks report it).
    """
    out = []
    need = recipe.min_compute_capability
    if not runs_on(recipe, gpu_name) and need:
        able = [g for g in GPUS if g.target and g.compute_capability >= need]
        archs = sorted({g.architecture for g in able})
        out.append(("gpu", f"{recipe.title} needs a {'/'.join(archs)} GPU ({', '.join(g.name for g in able)}); "
                           f"target.gpu is {gpu_name}"))
    if recipe.min_transformer_engine and version(transformer_engine) < recipe.min_transformer_engine:
        out.append(("transformer_engine", f"{recipe.title} needs Transformer Engine >= "
                    f"{_dotted(recipe.min_transformer_engine)}; target has {transformer_engine}"))
    if recipe.min_cuda and version(cuda) < recipe.min_cuda:
        out.append(("cuda", f"{recipe.title} needs CUDA >= {_dotted(recipe.min_cuda)}; target has {cuda}"))
    return out
