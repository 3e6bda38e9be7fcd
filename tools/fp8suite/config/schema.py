"""The experiment matrix, as typed dataclasses with a docstring under each field.

A matrix file (experiments/*.yaml) holds the settings of a base run at its top level, plus
`axes` whose values overlay parts of those settings, expanded as a product:

    name: llama3_8b_h200
    run_name: "train_llama3_8b_h200_{recipe}"
    target: {gpu: H200, gpus_per_node: 8}
    env: {CUDA_DEVICE_MAX_CONNECTIONS: 1}
    data: {mock_data: true, vocab_size: 128256}
    megatron:                          # Megatron flags, verbatim, in named groups
      model: {--num-layers: 32, --hidden-size: 4096}
      precision: {--bf16: true}
    axes:
      recipe:
        bf16: {}
        fp8_cs: {megatron: {precision: {--fp8-format: hybrid, --fp8-recipe: tensorwise}}}
    exclude: []

Megatron flags keep their own names (`--use-distributed-optimizer: true` renders the bare
flag, `false` or `null` leaves it out). Everything else is a suite setting defined here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..megatron import recipes
from ..common.errors import Problem, did_you_mean
from ..megatron.flags import DEFAULT_MEGATRON_CORE, flag_int

Scalar = Union[str, int, float, bool]


@dataclass
class Target:
    """The machines the scripts are rendered for."""

    gpu: str = recipes.DEFAULT_GPU
    """GPU model, one of `recipes.TARGET_GPUS` (H100, H200, ... B200, GB200, ...). Decides which
    recipes are allowed (MXFP8 and NVFP4 need Blackwell) and the peak FLOP/s that MFU is
    measured against (both from fp8suite/megatron/recipes.py)."""

    gpus_per_node: int = 8
    """Default of the scripts' GPUS_PER_NODE (the environment at launch overrides it)."""

    nodes: int = 1
    """Default of the scripts' NNODES, and the node count of the Slurm batch scripts."""

    transformer_engine: str = "2.20"
    """Transformer Engine version on the target machines; each recipe's minimum is in
    recipes.py."""

    cuda: str = "13.0"
    """CUDA version on the target machines; each recipe's minimum is in recipes.py."""

    megatron_core: str = DEFAULT_MEGATRON_CORE
    """megatron-core version; when a flag snapshot of it exists in tools/fp8suite/data/,
    every Megatron flag and value is checked against that parser's real flag set."""


@dataclass
class Data:
    """Training data. Keys are Megatron's own argument names (dest form)."""

    mock_data: bool = False
    """Train on Megatron's synthetic data (--mock-data). Launch override: MOCK_DATA=1/0."""

    data_path: list[str] = field(default_factory=list)
    """--data-path: indexed-dataset prefixes, optionally with weights ("0.7 a 0.3 b").
    Relative paths are taken from the suite's root. Launch override: DATA_PATH."""

    split: str = "99,1,0"
    """--split: train/validation/test proportions of the data."""

    tokenizer_type: str = "HuggingFaceTokenizer"
    """--tokenizer-type for real data (mock data always uses NullTokenizer)."""

    tokenizer_model: Optional[str] = None
    """--tokenizer-model: a Hugging Face name, an absolute path, or a path from the suite's
    root written "./experiments/...". Launch override: TOKENIZER_MODEL."""

    vocab_size: Optional[int] = None
    """Vocabulary of the NullTokenizer used with mock data; set it to the real tokenizer's
    size so that the model (embedding and output layer) keeps its real shape."""


@dataclass
class Wandb:
    """Weights & Biases logging. The API key comes from WANDB_API_KEY at launch, never a file."""

    project: str = ""
    """--wandb-project."""

    entity: Optional[str] = None
    """--wandb-entity (team or user)."""

    save_dir: Optional[str] = None
    """--wandb-save-dir; default: <log dir>/wandb."""


@dataclass
class Checkpoint:
    """Megatron checkpoints, so that a run cut by a time limit continues where it stopped.

    Each run saves to and loads from its own folder, `<dir>/<run name>` (Megatron's --save and
    --load point at the same folder: a launch that finds a checkpoint there continues from it,
    one that finds none starts from scratch). Megatron also saves when --exit-duration-in-mins
    or a SIGTERM stops it (the launch scripts pass --exit-signal-handler; the Slurm batch
    scripts ask for SIGTERM 600 s before the job's --time ends, #SBATCH --signal=TERM@600), and
    at the end of training."""

    dir: str = "checkpoints"
    """Folder holding one checkpoint folder per run, relative to the suite's root unless
    absolute. Launch override: CHECKPOINT_DIR (e.g. a fast local disk)."""

    save_interval: int = 1000
    """--save-interval: iterations between checkpoints (each one a full copy of the weights
    and optimizer state)."""


@dataclass
class Slurm:
    """Settings of the rendered Slurm batch scripts (one torchrun per node)."""

    partition: Optional[str] = None
    """#SBATCH --partition."""

    account: Optional[str] = None
    """#SBATCH --account."""

    time: str = "04:00:00"
    """#SBATCH --time (wall-clock limit of the job)."""

    container_image: Optional[str] = None
    """Container image for pyxis/enroot (srun --container-image); none runs on the host."""

    container_mounts: list[str] = field(default_factory=list)
    """srun --container-mounts entries (SRC:DST); the suite's root is always mounted."""

    sbatch_options: list[str] = field(default_factory=list)
    """Further #SBATCH options, verbatim (e.g. "--exclusive", "--qos=high")."""

    request_gpus: bool = True
    """Ask for target.gpus_per_node GPUs per node (#SBATCH --gpus-per-node); turn it off on
    clusters that hand out whole nodes without GPU GRES."""


FUSION_MODES = ("auto", "te", "on", "off")
"""Values of Settings.gradient_accumulation_fusion."""


@dataclass
class Settings:
    """Everything one run needs. A matrix's top level is the base; axes overlay parts of it."""

    target: Target = field(default_factory=Target)
    """The machines the scripts are rendered for."""

    env: dict[str, Scalar] = field(default_factory=dict)
    """Environment exported by the script (CUDA_DEVICE_MAX_CONNECTIONS, NVTE_*, NCCL_*)."""

    data: Data = field(default_factory=Data)
    """Training data."""

    megatron: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Megatron flags in named groups ({group: {--flag: value}}), rendered as one bash
    array per group (MODEL_ARGS, TRAINING_ARGS, ...) in the order they first appear."""

    wandb: Optional[Wandb] = None
    """W&B logging; off when absent."""

    checkpoint: Optional[Checkpoint] = None
    """Checkpoints to save and resume from (--save/--load/--save-interval); off when absent."""

    slurm: Slurm = field(default_factory=Slurm)
    """Slurm batch-script settings."""

    triton_cache_dir: str = "/tmp/triton-cache"
    """Default TRITON_CACHE_DIR (created if missing; the environment overrides it)."""

    min_free_gb: float = 5.0
    """Free disk space the script requires under TRITON_CACHE_DIR before it starts."""

    gradient_accumulation_fusion: str = "auto"
    """auto: use apex's fused wgrad accumulation when importable on the machine, else pass
    --no-gradient-accumulation-fusion (needed without apex); te: apex's when importable, else
    the same module written with Transformer Engine's GEMM (tools/te_wgrad), else
    --no-gradient-accumulation-fusion; on / off: always / never."""

    log_dir: Optional[str] = None
    """Where logs go, relative to the suite's root; default logs/<matrix name>. Launch
    override: LOG_DIR."""


@dataclass
class Matrix:
    """A matrix file: base settings at the top level plus axes expanded as a product."""

    name: str = ""
    """Short name of the study: the manifest's "name" and the default log folder logs/<name> (the
    manifest file itself is named after the matrix file: <matrix stem>.manifest.json)."""

    description: str = ""
    """One or two sentences on what the study compares."""

    run_name: str = ""
    """Run-name template over the axes, e.g. "train_llama3_8b_h200_{recipe}"."""

    axes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """{axis: {value name: overlay of settings}}. Overlays merge into the base (mappings
    merge key by key; anything else replaces; a null Megatron flag removes the flag)."""

    exclude: list[dict[str, Any]] = field(default_factory=list)
    """Combinations left out: each entry maps axes to a value name or a list of them."""


MATRIX_KEYS = [f.name for f in dataclasses.fields(Matrix)]
SETTINGS_KEYS = [f.name for f in dataclasses.fields(Settings)]
TOP_LEVEL_KEYS = MATRIX_KEYS + SETTINGS_KEYS


Origin = dict[tuple[str, ...], str]
"""Key path -> dotted position in the matrix file that set it."""


@dataclass
class ExpandedRun:
    """One expanded run of a matrix: its settings after every overlay was merged (matrix.load)."""

    name: str
    axes: dict[str, str]
    """Axis -> value name of this run, in the matrix's axis order."""
    settings: Settings
    flags: dict[str, Any]
    """Every Megatron flag of the run (group order), null-valued flags removed."""
    groups: dict[str, dict[str, Any]]
    """The same flags by group."""
    origin: Origin = field(default_factory=dict)
    """Key path -> dotted position in the file that set it."""
    refused: frozenset[str] = frozenset()
    """Megatron flags the matrix writes for this run whose values were refused (reported by the
    loader and left out of `flags`)."""
    input_problems: bool = False
    """Whether a fragment this run merges (the base or one of its axis values) had a name or
    value problem (unknown key or flag, wrong type, invalid choice, out of range): the run's
    settings are then not what the matrix meant, so the checks of meaning (config.checks) are
    skipped for it and only those problems are reported."""

    def where(self, *keys: str) -> str:
        """File position of the first of `keys` (paths like 'megatron.--fp8-recipe') set."""
        for key in keys:
            parts = tuple(key.split("."))
            if parts[0] == "megatron" and len(parts) == 2:
                group = self.group_of(parts[1])
                if group is None:
                    continue
                parts = ("megatron", group, parts[1])
            if parts in self.origin:
                return self.origin[parts]
        return ""

    def group_of(self, flag: str) -> Optional[str]:
        """The flag group (model, training, ...) that sets `flag`, or None."""
        for group, flags in self.groups.items():
            if flag in flags:
                return group
        return None

    @property
    def parallel(self) -> "Parallel":
        """The run's parallel layout, from its flags and target."""
        return parallel(self)


@dataclass(frozen=True)
class Parallel:
    """Parallel layout of a run: tensor, pipeline, context and data parallel sizes (GPUs)."""

    tp: int
    pp: int
    cp: int
    world: int
    """GPUs in all: target.nodes x target.gpus_per_node."""

    @property
    def dp(self) -> int:
        """Data-parallel size: world / (tp x pp x cp), rounded down."""
        return self.world // (self.tp * self.pp * self.cp)


def parallel(run: ExpandedRun) -> Parallel:
    """A run's parallel layout (unset flags are 1)."""
    f = run.flags
    target = run.settings.target
    return Parallel(
        tp=flag_int(f.get("--tensor-model-parallel-size"), 1),
        pp=flag_int(f.get("--pipeline-model-parallel-size"), 1),
        cp=flag_int(f.get("--context-parallel-size"), 1),
        world=target.gpus_per_node * target.nodes,
    )


def check_fragment(cls: type, data: Any, path: str, file: str, problems: list[Problem]) -> dict:
    """Check `data` against dataclass `cls`: unknown keys and wrong types, all of them.

    Returns a copy without the offending keys, so that later checks can still run on the
    rest and a file's problems are all reported at once. Fields may be left out: overlays
    set only what they change, and the base falls back to the defaults above.
    """
    if not isinstance(data, dict):
        problems.append(Problem(file, path, f"expected a mapping, got {_kind(data)}"))
        return {}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    clean = {}
    for key, value in data.items():
        sub = _join(path, key)
        if key not in hints:
            problems.append(Problem(
                file, sub, f"unknown key{did_you_mean(str(key), names)}; "
                f"valid keys: {', '.join(names)}"))
            continue
        ok, value = _check_value(hints[key], value, sub, file, problems)
        if ok:
            clean[key] = value
    return clean


def _check_value(hint: Any, value: Any, path: str, file: str, problems: list[Problem]) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _check_value(options[0], value, path, file, problems)
        if any(_matches(a, value) for a in options):
            return True, value
        problems.append(Problem(file, path, f"expected {_name(hint)}, got {_kind(value)}"))
        return False, None
    if dataclasses.is_dataclass(hint):
        before = len(problems)
        clean = check_fragment(hint, value, path, file, problems)
        return len(problems) == before or bool(clean), clean
    if origin is list:
        if not isinstance(value, list):
            problems.append(Problem(file, path, f"expected a list, got {_kind(value)}"))
            return False, None
        results = [_check_value(args[0], item, f"{path}[{i}]", file, problems)
                   for i, item in enumerate(value)]
        return all(ok for ok, _ in results), [v for _, v in results]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(Problem(file, path, f"expected a mapping, got {_kind(value)}"))
            return False, None
        clean = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(Problem(file, path, f"keys must be strings, got {key!r}"))
                continue
            ok, item = _check_value(args[1], item, _join(path, key), file, problems)
            if ok:
                clean[key] = item
        return True, clean
    if not _matches(hint, value):
        problems.append(Problem(file, path, f"expected {_name(hint)}, got {_kind(value)}"))
        return False, None
    return True, value


def _matches(hint: Any, value: Any) -> bool:
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return _matches(typing.get_origin(hint) or hint, value)


def build(cls: type, data: dict[str, Any]) -> Any:
    """Construct dataclass `cls` from a mapping cleaned by `check_fragment`."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        target = _dataclass_in(hint)
        if target is not None and isinstance(value, dict):
            value = build(target, value)
        kwargs[key] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> Optional[type]:
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def kind(value: Any) -> str:
    """How a problem names a parsed YAML value: "null", "boolean true", "a list", "int 1"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


_kind = kind


def _name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_name(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is list:
        return f"a list of {_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint)))
