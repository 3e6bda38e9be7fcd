"""Peak GPU memory of a training run, estimated before launch from its Megatron flags.

The estimate is what PyTorch's caching allocator reports as `max allocated` (Megatron's
`memory (MB) | ... | max allocated: ...` line) on the run's busiest rank, in GiB (2**30 bytes):

    static    weights + gradient buffer + optimizer state + FP8/FP4 weight copies
    + peak    activations of the micro-batches in flight (per layer, Korthikanti et al. 2022,
              "Reducing Activation Recomputation in Large Transformer Models", Table 2,
              recounted for SwiGLU, grouped-query attention, RMSNorm and fused/flash
              attention as Transformer Engine saves tensors)
              + the vocabulary's logits and their fp32 copies in the cross-entropy loss
              + cuBLAS workspaces

The static part is Megatron's own count (megatron/training/theoretical_memory_usage.py,
`compute_weight_and_optimizer_memory`: 6 + 12/DP bytes per parameter with the distributed
optimizer) extended for the dtypes Megatron lets a run choose. The peak is reached at the
loss of the last micro-batch's forward pass: every layer's saved activations are alive, and
the cross entropy holds the bf16 logits and their fp32 copy (Megatron's vocab-parallel cross
entropy starts with `logits.float()`; its fused native implementation keeps a second fp32 copy).

`check` compares the estimate with the GPU's usable memory: its capacity, less what the CUDA
context and NCCL hold outside PyTorch's allocator, less the allocator's fragmentation unless
PYTORCH_CUDA_ALLOC_CONF has expandable_segments:True.

Not modelled (the estimate says so in `notes`): mixture-of-experts layers, multi-token
prediction, multi-latent attention, FSDP sharding of weights and gradients, activation
offloading, CUDA graphs' private pools.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..megatron import recipes
from ..megatron.flags import DEFAULT_MEGATRON_CORE, flag_int

GIB = 2**30

# --- GPU memory --------------------------------------------------------------------------
# Capacity per GPU comes from fp8suite.megatron.recipes (GpuFamily.memory_gib: nvidia-smi's total).


@dataclass(frozen=True)
class Calibration:
    """What PyTorch cannot use of one GPU family's memory, and the measurement it comes from."""

    non_pytorch_gib: float
    """GiB outside PyTorch's allocator: the driver's share, the CUDA context, cuBLAS/cuDNN
    handles and NCCL's buffers. Nothing above capacity less this can be allocated."""
    fragmentation_share: float
    """Share of the capacity the caching allocator may hold reserved but unusable for a large
    request without expandable segments. A run estimated above capacity less both may still
    run (it did, at 128.4-129.4 GiB on H200), so beyond it the verdict is a warning."""
    source: str
    """The measurement, or "assumed from <family>: ..." when none was made on this family."""


MEASURED = next(g for g in recipes.GPUS if g.non_pytorch_gib is not None)
"""The GPU family whose memory calibration was measured (recipes.GpuFamily.memory_measured_by);
families without their own measurement assume its figures."""
NON_PYTORCH_GIB = MEASURED.non_pytorch_gib
FRAGMENTATION_SHARE = MEASURED.fragmentation_share


def calibration(gpu: str) -> Calibration:
    """The calibration of `gpu` (a target.gpu or device name): its family's own measurement
    (recipes.GpuFamily), else the measured family's with the source saying "assumed from"."""
    family = recipes.gpu(gpu)
    if family is not None and family.non_pytorch_gib is not None:
        return Calibration(family.non_pytorch_gib, family.fragmentation_share or 0.0,
                           f"measured on {family.name}: {family.memory_measured_by}'s out-of-memory message")
    name = family.name if family else str(gpu)
    return Calibration(MEASURED.non_pytorch_gib, MEASURED.fragmentation_share or 0.0,
                       f"assumed from {MEASURED.name} (not measured on {name})")


# Within this share of the usable memory an estimate is a warning.
WARN_SHARE = 0.05

# What evaluation adds on top of the training peak, by recipe kind:
# recipes.EVALUATION_EXTRA_GIB (calibration values, each citing its log once measured).
EVALUATION_EXTRA_GIB = recipes.EVALUATION_EXTRA_GIB
EVALUATION_SOURCES = recipes.EVALUATION_MEASURED_BY

# cuBLAS workspaces allocated through PyTorch: PyTorch's own (CUBLAS_WORKSPACE_CONFIG default
# ":4096:8", 32 MiB on Hopper) and Transformer Engine's cublasLt workspace (32 MiB on sm90+,
# transformer_engine/pytorch/module/base.py get_cublas_workspace_size_bytes).
WORKSPACE_BYTES = 64 * 2**20



@dataclass(frozen=True)
class Estimate:
    """Peak allocated memory of one rank, by part, in GiB."""

    parts: dict[str, float]
    """weights, gradients, optimizer, low-precision weight copies, activations, logits, workspace."""
    rank: str
    """Which rank is the busiest, e.g. "every rank" or "first pipeline stage"."""
    notes: tuple[str, ...] = field(default=())
    """Features of the run the estimate does not model."""
    evaluation: Optional[float] = None
    """Peak during evaluation, GiB: the training peak plus EVALUATION_EXTRA_GIB for the run's
    recipe; None when the run does not evaluate or that value is not measured yet."""

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        """One line: total and the largest parts, e.g. '129.7 GiB (weights 14.9, ...)'."""
        parts = ", ".join(f"{k} {v:.1f}" for k, v in self.parts.items() if v >= 0.05)
        return f"{self.total:.1f} GiB ({parts})"


@dataclass(frozen=True)
class Verdict:
    """How an estimate compares with a GPU's usable memory."""

    level: str
    """"ok"; "warning": above the fragmentation-adjusted usable memory, within WARN_SHARE of it,
    or evaluation above it; "problem": above `limit`, what PyTorch can allocate at all."""
    estimate: float
    usable: float
    """GiB PyTorch can count on: capacity less non-PyTorch memory, less the fragmentation
    allowance unless expandable segments are on."""
    capacity: float
    message: str
    limit: float = 0.0
    """GiB beyond which nothing can be allocated: capacity less non-PyTorch memory."""


class Flags:
    """Megatron flags of one run as values, with Megatron's defaults.

    `flags` maps flag names to values as a matrix writes them (True for a bare switch) or
    as argv tokens (strings); later overrides win.
    """

    def __init__(self, flags: Mapping[str, Any]):
        self.flags = dict(flags)

    def on(self, flag: str) -> bool:
        value = self.flags.get(flag)
        if isinstance(value, str):
            return value.lower() not in ("false", "0", "")
        return bool(value)

    def int(self, flag: str, default: Optional[int] = None) -> Optional[int]:
        return flag_int(self.flags.get(flag), default)

    def float(self, flag: str, default: float) -> float:
        value = self.flags.get(flag)
        if value is None or isinstance(value, bool):
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            return default

    def str(self, flag: str, default: Optional[str] = None) -> Optional[str]:
        value = self.flags.get(flag)
        if value is None or isinstance(value, bool):
            return default
        if isinstance(value, (list, tuple)):
            return " ".join(str(v) for v in value)
        return str(value)

    def list(self, flag: str, default: list[str]) -> list[str]:
        value = self.flags.get(flag)
        if value is None or isinstance(value, bool):
            return list(default)
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        return str(value).split()


def flags_from_argv(argv: list[str], switches: Optional[frozenset[str] | set[str]] = None) -> dict[str, Any]:
    """Megatron argv tokens as {flag: value}: a flag followed by no value is True, by one value
    that value, by several a list. `switches` (flags that take no value) resolves a switch
    followed by a positional-looking token; `--flag=value` is split."""
    out: dict[str, Any] = {}
    flag: Optional[str] = None
    values: list[str] = []

    def close() -> None:
        if flag is not None:
            out[flag] = True if not values else values[0] if len(values) == 1 else list(values)

    for token in argv:
        token = str(token)
        if token.startswith("--") and len(token) > 2 and not _is_number(token):
            close()
            flag, _, value = token.partition("=")
            values = [value] if _ else []
            if switches is not None and flag in switches:
                out[flag] = True
                flag = None
        elif flag is not None:
            values.append(token)
    close()
    return out


@dataclass(frozen=True)
class Shape:
    """The model and parallel layout an estimate needs, read from the flags."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    query_groups: int
    kv_channels: int
    seq: int
    micro_batch: int
    vocab: int
    """Padded as Megatron pads it (--make-vocab-size-divisible-by x TP)."""
    tp: int
    pp: int
    cp: int
    dp: int
    vpp: Optional[int]
    microbatches: int
    swiglu: bool
    untied: bool
    bias: bool
    layernorm: bool
    learned_positions: int


def shape(f: Flags, world_size: int, vocab_size: int) -> Shape:
    """Model and layout from the flags, with Megatron's defaults (megatron/training/arguments.py)."""
    hidden = f.int("--hidden-size") or 0
    heads = f.int("--num-attention-heads") or 1
    swiglu = f.on("--swiglu")
    ffn = f.int("--ffn-hidden-size")
    if ffn is None:  # validate_args: SwiGLU keeps the 4h parameter count, in multiples of 64
        ffn = int((4 * hidden * 2 / 3) / 64) * 64 if swiglu else 4 * hidden
    tp = f.int("--tensor-model-parallel-size", 1) or 1
    pp = f.int("--pipeline-model-parallel-size", 1) or 1
    cp = f.int("--context-parallel-size", 1) or 1
    layers = f.int("--num-layers") or 0
    vpp = f.int("--num-virtual-stages-per-pipeline-rank")
    per_virtual = f.int("--num-layers-per-virtual-pipeline-stage")
    if vpp is None and per_virtual and pp > 1:
        vpp = max(1, layers // pp // per_virtual)
    dp = max(1, world_size // (tp * pp * cp))
    mbs = f.int("--micro-batch-size", 1) or 1
    gbs = f.int("--global-batch-size") or mbs * dp
    divisor = (f.int("--make-vocab-size-divisible-by", 128) or 128) * tp
    position = f.str("--position-embedding-type", "learned_absolute")
    return Shape(
        layers=layers, hidden=hidden, ffn=ffn, heads=heads,
        query_groups=(f.int("--num-query-groups") or heads) if f.on("--group-query-attention") else heads,
        kv_channels=f.int("--kv-channels") or (hidden // heads if heads else 0),
        seq=f.int("--seq-length") or 0, micro_batch=mbs,
        vocab=int(math.ceil(vocab_size / divisor) * divisor), tp=tp, pp=pp, cp=cp, dp=dp, vpp=vpp,
        microbatches=max(1, gbs // (mbs * dp)), swiglu=swiglu,
        untied=f.on("--untie-embeddings-and-output-weights"),
        bias=not f.on("--disable-bias-linear"),
        layernorm=f.str("--normalization", "LayerNorm") != "RMSNorm",
        learned_positions=(f.int("--max-position-embeddings") or 0) if position == "learned_absolute" else 0,
    )


NOT_MODELLED = (
    ("--num-experts", "mixture-of-experts layers"), ("--mtp-num-layers", "multi-token prediction"),
    ("--multi-latent-attention", "multi-latent attention"),
    ("--use-megatron-fsdp", "FSDP sharding"), ("--use-torch-fsdp2", "FSDP sharding"),
    ("--fine-grained-activation-offloading", "activation offloading"),
    ("--cpu-offloading", "activation offloading"),
)
"""(Megatron flag, what it adds): model features neither the memory estimate nor the speedup
predictor (fp8suite.evidence.predict) models; each counts its layers as dense GPT layers."""


def not_modelled(flags: Mapping[str, Any]) -> list[str]:
    """What of a run's flags ({"--num-experts": 8, ...}) the estimates leave out, in
    NOT_MODELLED's words, each once ("mixture-of-experts layers", ...)."""
    return list(dict.fromkeys(n for flag, n in NOT_MODELLED if flags.get(flag) not in (None, False)))


def estimate(flags: Mapping[str, Any], world_size: int, vocab_size: int) -> Estimate:
    """Peak allocated memory per GPU of a run on `world_size` GPUs, on its busiest rank.

    flags: the run's Megatron flags ({"--num-layers": 32, "--bf16": True, ...}).
    vocab_size: the tokenizer's vocabulary before Megatron pads it.
    Raises ValueError when the model's shape (layers, hidden size, sequence length) is missing.
    """
    f = Flags(flags)
    s = shape(f, world_size, vocab_size)
    if not (s.layers and s.hidden and s.seq):
        raise ValueError("--num-layers, --hidden-size and --seq-length are needed to estimate memory")
    notes = not_modelled(flags)
    if (f.str("--cuda-graph-impl", "none") or "none") != "none":
        notes.append("CUDA graphs' memory pools")

    # The first pipeline stage holds the most micro-batches and the embedding; the last one
    # the output layer and the logits. Without pipelining one rank has it all.
    stages = {"every rank": (True, True)} if s.pp == 1 else {
        "first pipeline stage": (True, False), "last pipeline stage": (False, True)}
    extra = None
    if evaluates(f):
        kind = _numerics(f).recipe.name
        extra = EVALUATION_EXTRA_GIB.get(kind)
        if extra is None:
            notes.append(f"evaluation's extra memory ({kind}: not measured yet)")
    estimates = [Estimate(parts=_stage_parts(f, s, first, last), rank=stage, notes=tuple(dict.fromkeys(notes)))
                 for stage, (first, last) in stages.items()]
    peak = max(estimates, key=lambda e: e.total)
    if extra is None:
        return peak
    return Estimate(peak.parts, peak.rank, peak.notes, evaluation=peak.total + extra)


def evaluates(f: Flags) -> bool:
    """Whether the run evaluates during training: --eval-iters above 0 (Megatron's default is
    100) and an --eval-interval within --train-iters."""
    iters = f.int("--eval-iters", 100)
    interval = f.int("--eval-interval")
    train = f.int("--train-iters")
    return bool(iters) and interval is not None and (train is None or interval <= train)


def capacity_gib(gpu: str) -> Optional[float]:
    """Memory of one `gpu` (a target.gpu name) in GiB, from fp8suite.megatron.recipes; None if unknown."""
    return recipes.memory_gib(gpu)


def usable_gib(gpu: str, env: Mapping[str, Any]) -> Optional[float]:
    """Memory PyTorch can allocate on `gpu`, in GiB, or None for an unknown GPU."""
    capacity = capacity_gib(gpu)
    if capacity is None:
        return None
    cal = calibration(gpu)
    usable = capacity - cal.non_pytorch_gib
    if not expandable_segments(env):
        usable -= cal.fragmentation_share * capacity
    return usable


def limit_gib(gpu: str) -> Optional[float]:
    """GiB PyTorch can allocate at most on `gpu` (capacity less non-PyTorch memory), whatever
    the allocator's settings; None for an unknown GPU."""
    capacity = capacity_gib(gpu)
    return None if capacity is None else capacity - calibration(gpu).non_pytorch_gib


def expandable_segments(env: Mapping[str, Any]) -> bool:
    """Whether PYTORCH_CUDA_ALLOC_CONF turns on expandable segments."""
    conf = str(env.get("PYTORCH_CUDA_ALLOC_CONF", ""))
    return any(part.strip().replace(" ", "") == "expandable_segments:True" for part in conf.split(","))


def check(est: Estimate, gpu: str, env: Mapping[str, Any], flags: Mapping[str, Any],
          world_size: int, vocab_size: Optional[int] = None,
          gpus_per_node: Optional[int] = None) -> Verdict:
    """Compare an estimate (GiB per GPU) with what `gpu` offers.

    problem: above the limit (capacity less non-PyTorch memory): it cannot run; the message
        lists what would make it fit, each with its estimate when `vocab_size` is known.
    warning: above the usable memory once fragmentation is allowed for (without expandable
        segments): it may run (the 2xH200 bench's FP8 runs did) or fail as the 2xH200 BF16 run
        did; the message gives the margin to the limit and the remedy (expandable segments).
        Also within WARN_SHARE of the usable memory, or when evaluation would not fit.
    ok: otherwise.
    `gpus_per_node` bounds tensor parallelism (default: `world_size`)."""
    capacity = capacity_gib(gpu)
    usable = usable_gib(gpu, env)
    limit = limit_gib(gpu)
    left_out = f" (not modelled: {', '.join(est.notes)})" if est.notes else ""
    if capacity is None or usable is None or limit is None:
        return Verdict("warning", est.total, 0.0, 0.0,
                       f"estimated peak {est.total:.1f} GiB allocated per GPU ({est.rank}){left_out}, "
                       f"not checked: no memory capacity known for {gpu}")
    total = est.total
    head = (f"estimated peak {total:.1f} GiB allocated per GPU ({est.rank}) against {usable:.1f} GiB "
            f"usable of the {gpu}'s {capacity:.1f} GiB") + left_out
    per_node = gpus_per_node or world_size
    if total > limit:
        ways = _remedies(Flags(flags), est, env, world_size, gpu, vocab_size, per_node, usable)
        ways = sorted(ways, key=lambda w: w[1] is not True)  # those that fit first
        text = f"to make it fit under {usable:.1f} GiB (estimate with each alone): " + "; ".join(
            way for way, _ in ways)
        if ways and not any(fits for _, fits in ways):
            together = _combined(Flags(flags), world_size, per_node, vocab_size, limit, usable)
            if together is None:
                text += "; none is enough alone"
            elif together[2]:
                under = (f"the {limit:.1f} GiB limit" if "expandable segments" in together[0]
                         else f"the {usable:.1f} GiB usable")
                room = (limit if "expandable segments" in together[0] else usable) - together[1]
                text += (f"; none is enough alone; together ({together[0]}) -> {together[1]:.1f} GiB, "
                         f"fits with {room:.1f} GiB to spare under {under}")
            else:
                text += (f"; none is enough alone, and even all of them together ({together[0]}) give "
                         f"{together[1]:.1f} GiB, still above {limit:.1f}: this model and batch do not fit "
                         f"the {gpu} this way")
        return Verdict("problem", total, usable, capacity,
                       f"{head}; it cannot fit: PyTorch can allocate at most {limit:.1f} GiB "
                       f"({calibration(gpu).source}); {text}", limit)
    notes = []
    if total > usable:
        notes.append(f"above the {usable:.1f} GiB left once the allocator's fragmentation is allowed for, "
                     f"{limit - total:.1f} GiB below the {limit:.1f} GiB limit: it may run or fail "
                     "with out-of-memory; set env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True "
                     f"(usable {limit:.1f} GiB)")
    # Evaluation is named only where it raises the peak: at 0.0 extra (every measured kind so
    # far) a run above the usable memory is already warned for its training peak.
    if est.evaluation is not None and est.evaluation > max(usable, total):
        notes.append(f"evaluation would peak at {est.evaluation:.1f} GiB (training peak + "
                     f"{est.evaluation - total:.1f} GiB, EVALUATION_EXTRA_GIB), above the {usable:.1f} "
                     "GiB usable: it may fail at its first --eval-interval; evaluate less "
                     "(--eval-iters 0) or make room")
    if not notes and total <= (1 - WARN_SHARE) * usable:
        structural = not_modelled(flags)
        if structural:  # a whole kind of layer or sharding left out: the estimate may be far off
            return Verdict("warning", total, usable, capacity,
                           f"{head}; it counts {', '.join(structural)} as dense GPT layers, so it "
                           "may be far too low", limit)
        return Verdict("ok", total, usable, capacity, head, limit)
    ways = _remedies(Flags(flags), est, env, world_size, gpu, vocab_size, per_node, usable)
    others = [way for way, _ in ways if "expandable_segments" not in way] if notes and total > usable \
        else [way for way, _ in ways]
    text = "; ".join(notes) if notes else "close to the limit"
    if others:
        text += f"; for more room (estimate with each alone): {'; '.join(others)}"
    return Verdict("warning", total, usable, capacity, f"{head}; {text}", limit)


def for_run(run: Any, extra_args: Optional[list[str]] = None,
            env: Optional[Mapping[str, str]] = None) -> Optional[tuple[Estimate, Verdict]]:
    """Estimate and verdict of a matrix run (fp8suite.config.schema.ExpandedRun), with launch overrides:
    Megatron args given after `--` and GPUS_PER_NODE / NNODES from `env`.
    None when the run's vocabulary size is not known (real data without data.vocab_size) or
    its shape is incomplete."""
    s = run.settings
    return _for(run.flags, s.target.gpu, s.target.gpus_per_node, s.target.nodes,
                s.data.vocab_size, {k: str(v) for k, v in s.env.items()}, s.target.megatron_core,
                extra_args or [], env or {})


def for_entry(entry: Mapping[str, Any], extra_args: Optional[list[str]] = None,
              env: Optional[Mapping[str, str]] = None,
              megatron_core: str = DEFAULT_MEGATRON_CORE,
              gpu: Optional[str] = None) -> Optional[tuple[Estimate, Verdict]]:
    """The same for a run's manifest entry (experiments/generated/<matrix>.manifest.json), on
    its target GPU or on `gpu` (a family name: the GPU a launch found instead)."""
    flags = flags_from_argv(entry["megatron_args"], _switches(megatron_core))
    return _for(flags, gpu or entry["gpu"], entry["gpus_per_node"], entry["nodes"],
                (entry.get("data") or {}).get("vocab_size"), entry.get("env") or {}, megatron_core,
                extra_args or [], env or {})


def _for(flags: Mapping[str, Any], gpu: str, gpus_per_node: int, nodes: int, vocab: Optional[int],
         run_env: Mapping[str, str], megatron_core: str, extra_args: list[str],
         env: Mapping[str, str]) -> Optional[tuple[Estimate, Verdict]]:
    merged = dict(flags)
    merged.update(flags_from_argv(extra_args, _switches(megatron_core)))
    if "--vocab-size" in merged:
        vocab = Flags(merged).int("--vocab-size", vocab)
    if not vocab:
        return None
    world = _env_int(env, "GPUS_PER_NODE", gpus_per_node) * _env_int(env, "NNODES", nodes)
    try:
        est = estimate(merged, world, vocab)
    except (ValueError, ZeroDivisionError):
        return None  # an incomplete or inconsistent shape: the flag and layout checks report it
    launch_env = {**run_env, **env}
    return est, check(est, gpu, launch_env, merged, world, vocab,
                      gpus_per_node=_env_int(env, "GPUS_PER_NODE", gpus_per_node))


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except (TypeError, ValueError):
        return default


@functools.lru_cache(maxsize=None)
def _switches(version: str) -> Optional[frozenset[str]]:
    from ..megatron.flags import load_snapshot

    snapshot = load_snapshot(version)
    return None if snapshot is None else frozenset(k for k, v in snapshot.items() if v.is_switch)


# --- the model ---------------------------------------------------------------------------

def _stage_parts(f: Flags, s: Shape, first: bool, last: bool) -> dict[str, float]:
    layers = s.layers // s.pp
    start_bf16, end_bf16 = _bf16_layer_counts(f, s)
    # Layers of this stage kept in high precision (Megatron's --first-last-layers-bf16 counts
    # the first and last layers of the whole model).
    if first and last:
        bf16_layers = min(layers, start_bf16 + end_bf16)
    elif first:
        bf16_layers = min(layers, start_bf16)
    else:
        bf16_layers = min(layers, end_bf16)
    low_layers = layers - bf16_layers if _quantized(f) else 0
    hp_layers = layers - low_layers

    linear = _linear_params_per_layer(s)
    other = (4 if s.layernorm else 2) * s.hidden  # two norms per layer (weight, + bias for LayerNorm)
    layer_params = linear / s.tp + other
    embed = s.vocab * s.hidden / s.tp
    stage_params = layers * layer_params
    if first:
        stage_params += embed + s.learned_positions * s.hidden
    if last:
        stage_params += (s.hidden * (2 if s.layernorm else 1))  # final norm
        if s.untied or s.pp > 1:  # untied output layer, or the tied copy on the last stage
            stage_params += embed

    weight_bytes = _param_bytes(f)
    low_linear = low_layers * linear / s.tp
    weights = stage_params * weight_bytes
    copies = 0.0
    if low_linear:
        stored, cached = _low_precision_weight_bytes(f)
        if stored is not None:  # --fp8-param-gather / --fp4-param-gather: the weights are FP8/FP4
            weights += low_linear * (stored - weight_bytes)
        copies = low_linear * cached

    grads = stage_params * _grad_bytes(f)
    optimizer = stage_params * _optimizer_bytes(f, s)

    act = _activation_bytes(f, s, layers, hp_layers, low_layers, first, last)
    logits = 0.0
    if last:
        tokens = s.seq * s.micro_batch / s.cp
        logits = tokens * s.vocab / s.tp * _logits_bytes(f)
    return {
        "weights": weights / GIB,
        "gradients": grads / GIB,
        "optimizer": optimizer / GIB,
        "low-precision weight copies": copies / GIB,
        "activations": act / GIB,
        "logits": logits / GIB,
        "workspace": WORKSPACE_BYTES / GIB,
    }


def _logits_bytes(f: Flags) -> float:
    """Bytes per logit held at the loss: the bf16 logits and their fp32 copy (Megatron's
    vocab-parallel cross entropy starts with `logits.float()` and then works in place; the
    backward pass holds the same two, the fp32 gradient and its bf16 cast). With
    --cross-entropy-loss-fusion and the native implementation the steps run as
    torch.compile'd functions (megatron/core/fusions/fused_cross_entropy.py, `jit_fuser`),
    which write the shifted and exponentiated logits to a new fp32 buffer rather than in place:
    one fp32 copy more. The bench logs (logs/h200x2_8b_bench/) show it: BF16 peaks 3.9 GiB,
    4 bytes x 8192 tokens x 128256 logits, above the same run without the fusion
    (tests/data/real_h200x2/)."""
    fused = f.on("--cross-entropy-loss-fusion") and f.str("--cross-entropy-fusion-impl", "native") == "native"
    return _act_dtype(f) + 4 + (4 if fused else 0)


def _linear_params_per_layer(s: Shape) -> float:
    q = s.heads * s.kv_channels
    kv = s.query_groups * s.kv_channels
    gate = 2 if s.swiglu else 1
    params = s.hidden * (q + 2 * kv) + q * s.hidden + s.hidden * s.ffn * gate + s.ffn * s.hidden
    if s.bias:
        params += (q + 2 * kv) + s.hidden + s.ffn * gate + s.hidden
    return params


def _act_dtype(f: Flags) -> int:
    return 2 if (f.on("--bf16") or f.on("--fp16")) else 4


def _param_bytes(f: Flags) -> int:
    return _act_dtype(f)


def _grad_bytes(f: Flags) -> int:
    """Megatron's gradient buffer: fp32 under --bf16 unless --grad-reduce-in-bf16
    (validate_args sets accumulate_allreduce_grads_in_fp32); --fp16 keeps fp16 gradients
    unless --accumulate-allreduce-grads-in-fp32."""
    if f.on("--bf16"):
        return 2 if f.on("--grad-reduce-in-bf16") else 4
    if f.on("--fp16"):
        return 4 if f.on("--accumulate-allreduce-grads-in-fp32") else 2
    return 4


def _optimizer_bytes(f: Flags, s: Shape) -> float:
    """Optimizer state per parameter on this rank: fp32 (or --main-params-dtype) master
    weights under bf16/fp16, plus Adam's two moments (--exp-avg-dtype, --exp-avg-sq-dtype,
    honoured with --use-precision-aware-optimizer) or SGD's momentum; sharded over the
    data-parallel (with context-parallel) ranks by the distributed optimizer, and the share
    --optimizer-offload-fraction moves to the CPU with --optimizer-cpu-offload."""
    precision_aware = f.on("--use-precision-aware-optimizer")

    def dtype(flag: str) -> int:
        return recipes.PRECISION_BYTES.get(f.str(flag, "fp32") or "fp32", 4) if precision_aware else 4

    mixed = f.on("--bf16") or f.on("--fp16")
    main = dtype("--main-params-dtype") if mixed else 0
    optimizer = f.str("--optimizer", "adam") or "adam"
    if optimizer == "sgd":
        state = 4 if f.float("--sgd-momentum", 0.9) else 0
    else:
        state = dtype("--exp-avg-dtype") + dtype("--exp-avg-sq-dtype")
    per_param = float(main + state)
    if f.on("--use-distributed-optimizer"):
        per_param /= s.dp * s.cp
    if f.on("--optimizer-cpu-offload"):
        per_param *= 1 - f.float("--optimizer-offload-fraction", 1.0)
    return per_param


def _numerics(f: Flags) -> recipes.Numerics:
    return recipes.of_flags(f.flags)


def _quantized(f: Flags) -> bool:
    return _numerics(f).recipe.quantized


def _bf16_layer_counts(f: Flags, s: Shape) -> tuple[int, int]:
    n = _numerics(f)
    if not (n.recipe.quantized and n.first_last_bf16):
        return 0, 0
    return n.layers_bf16


def _quantized_bytes(recipe: recipes.Recipe) -> float:
    """Bytes per element of one quantized copy: the FP8 (1) or FP4 (1/2) value, plus a byte of
    scale per `scale_block` elements (MXFP8 32, NVFP4 16; per-tensor and 128-element block
    scales are negligible)."""
    return recipes.PRECISION_BYTES[recipe.precision] + (1 / recipe.scale_block if recipe.scale_block else 0)


def _gemm_input_bytes(f: Flags) -> float:
    """Bytes per element of a GEMM input a quantized layer saves for the backward pass: its
    quantized copy (the high-precision tensor is not kept)."""
    return _quantized_bytes(_numerics(f).recipe)


def _low_precision_weight_bytes(f: Flags) -> tuple[Optional[float], float]:
    """(bytes per weight when the weights themselves are FP8/FP4, or None; bytes of the
    quantized copies Transformer Engine keeps beside high-precision weights).

    Hopper's FP8 GEMMs take only the TN layout, so a weight is used quantized twice: row-wise
    for the forward GEMM and column-wise (transposed) for the data-gradient GEMM. With the
    recipe's param gather flag the weight is stored quantized and its transpose is cached;
    otherwise Transformer Engine quantizes the high-precision weight and caches both copies
    across micro-batches (the `is_first_microbatch` weight cache).
    """
    n = _numerics(f)
    pair = 2 * _quantized_bytes(n.recipe)
    return (pair, 0.0) if n.param_gather else (None, pair)


def _layer_activation_bytes(f: Flags, s: Shape, quantized: bool) -> float:
    """Bytes one transformer layer saves for backward for one micro-batch, on one rank.

    Per token and hidden unit (sbh), in a Transformer Engine layer with fused/flash attention:
      input of the attention norm              a        (a: 2 bytes in bf16/fp16, 4 in fp32)
      norm output = input of the QKV GEMM      a, or q  (q: the saved FP8/FP4 copy)
      Q, K, V after RoPE (GQA: K, V smaller)   a (h_q + 2 h_kv) / h
      attention output = input of the proj.    a h_q / h (+ q h_q / h for the quantized copy)
      input of the MLP norm                    a
      norm output = input of FC1               a, or q
      FC1 output (gate and up with SwiGLU)     a g f / h          (g: 2 with SwiGLU, else 1)
      activation output = input of FC2         a f / h, or q f / h
    plus fp32 softmax statistics of fused attention (4 heads / h) and, for unfused attention,
    the s x s scores and softmax (2a heads s / h, + 1 byte for the dropout mask). Tensor
    parallelism divides everything but the norms' inputs and outputs, which sequence
    parallelism divides too (Korthikanti et al., Table 2). Selective recomputation drops what
    --recompute-modules recomputes.
    """
    a = _act_dtype(f)
    q = _gemm_input_bytes(f) if quantized else a
    h = s.hidden
    hq = s.heads * s.kv_channels / h
    hkv = s.query_groups * s.kv_channels / h
    g = 2 if s.swiglu else 1
    r = s.ffn / h
    selective = (f.str("--recompute-granularity") == "selective")
    modules = set(f.list("--recompute-modules", ["core_attn"])) if selective else set()

    norm_in = 2 * a
    norm_out = (0 if "layernorm" in modules else q) + (0 if modules & {"layernorm", "mlp"} else q)
    attention = a * (hq + 2 * hkv) + a * hq + (q * hq if quantized else 0)
    mlp = 0.0 if "mlp" in modules else a * g * r + q * r
    softmax = 4 * s.heads / h
    backend = f.str("--attention-backend", "auto")
    if backend in ("unfused", "local") or f.str("--transformer-impl") == "local":
        if "core_attn" not in modules:
            dropout = 1 if f.float("--attention-dropout", 0.1) > 0 else 0
            softmax = (2 * a + dropout) * s.heads * (s.seq / s.cp) / h
    replicated = norm_in + norm_out
    split = attention + mlp + softmax
    if s.tp > 1:
        split /= s.tp
        if f.on("--sequence-parallel"):
            replicated /= s.tp
    return (replicated + split) * (s.seq / s.cp) * s.micro_batch * h


def _in_flight(s: Shape, first: bool) -> float:
    """Micro-batches whose activations the stage holds at once: one without pipelining; on
    the first stage of 1F1B, min(PP, micro-batches), times Megatron's interleaving penalty
    1 + (PP - 1) / (PP x VPP) (theoretical_memory_usage.py); one on the last stage."""
    if s.pp == 1 or not first:
        return 1.0
    if s.vpp:
        return s.pp * (1 + (s.pp - 1) / (s.pp * s.vpp))
    return float(min(s.pp, s.microbatches))


def _activation_bytes(f: Flags, s: Shape, layers: int, hp_layers: int, low_layers: int,
                      first: bool, last: bool) -> float:
    a = _act_dtype(f)
    full_hp = _layer_activation_bytes(f, s, quantized=False)
    full_low = _layer_activation_bytes(f, s, quantized=True)
    tokens = s.seq / s.cp * s.micro_batch
    layer_input = a * tokens * s.hidden
    if f.on("--sequence-parallel") or f.on("--distribute-saved-activations"):
        layer_input /= s.tp
    per_layer = [full_hp] * hp_layers + [full_low] * low_layers
    if f.str("--recompute-granularity") == "full":
        method = f.str("--recompute-method", "uniform")
        n = f.int("--recompute-num-layers", 1) or 1
        if method == "block":
            # The first n layers of the stage keep only their input; one of them is rebuilt at a time.
            kept = per_layer[n:]
            act = n * layer_input + sum(kept) + (max(per_layer[:n]) if n else 0)
        else:
            # Chunks of n layers keep their input; one chunk is rebuilt at a time in backward.
            chunks = math.ceil(layers / n)
            act = chunks * layer_input + n * max(per_layer, default=0)
    else:
        act = float(sum(per_layer))
    act *= _in_flight(s, first)
    if first:
        act += 8 * tokens * _in_flight(s, first)  # token ids (int64), as Megatron counts them
    if last:
        act += 2 * a * tokens * s.hidden / (s.tp if f.on("--sequence-parallel") else 1)  # final norm in/out
    return act


NODE_GPUS = 8
"""GPUs of one HGX/DGX node: a matrix below it on one node can grow within the node
(`target.gpus_per_node`); beyond it, the GPU-count remedy adds nodes (`target.nodes`)."""

MAX_GPUS = 4096
"""The GPU-count remedy looks no further than this world size."""


def _fit(total: float, target: float) -> str:
    """' -> 65.0 GiB, fits with 6.4 GiB to spare' or ' -> 74.2 GiB, still above 71.4'."""
    if total <= target:
        return f" -> {total:.1f} GiB, fits with {target - total:.1f} GiB to spare"
    return f" -> {total:.1f} GiB, still above {target:.1f}"


def _node_size(gpus: int, gpus_per_node: int, nodes: int) -> int:
    """GPUs per node of `gpus` laid out in the matrix's terms (tensor parallelism stays within
    a node): all of them while one node holds them (a one-node matrix below NODE_GPUS grows
    within its node), else full nodes."""
    node = gpus_per_node if nodes > 1 or gpus_per_node >= NODE_GPUS else NODE_GPUS
    if nodes == 1 and gpus <= node:
        return gpus
    return gpus_per_node if gpus % node else node


def gpu_layout(gpus: int, gpus_per_node: int, nodes: int) -> str:
    """`gpus` GPUs in the matrix's own terms (_node_size): `target.gpus_per_node: 4` while one
    node holds them, else `target.nodes: 2 with target.gpus_per_node: 8`."""
    node = _node_size(gpus, gpus_per_node, nodes)
    if node == gpus:
        return f"target.gpus_per_node: {gpus}"
    return f"target.nodes: {gpus // node} with target.gpus_per_node: {node}"


def _gpu_counts(f: Flags, world_size: int) -> list[int]:
    """Larger world sizes the remedy tries, smallest first: the world doubled while the global
    batch still divides by micro batch x DP (up to MAX_GPUS)."""
    tp = f.int("--tensor-model-parallel-size", 1) or 1
    pp = f.int("--pipeline-model-parallel-size", 1) or 1
    out = []
    gpus = 2 * world_size
    while gpus <= MAX_GPUS and _batch_divides(f, gpus, tp, pp):
        out.append(gpus)
        gpus *= 2
    return out


def _remedies(f: Flags, est: Estimate, env: Mapping[str, Any], world_size: int, gpu: str,
              vocab_size: Optional[int], gpus_per_node: int,
              target: float) -> list[tuple[str, Optional[bool]]]:
    """What would lower the estimate or raise the usable memory: (text with its new figure and
    whether that fits `target`, the usable memory, with the margin or "still above"; whether it
    fits: True/False, None when no new figure is known).

    More GPUs (with the distributed optimizer, which shards its state further; else the
    distributed optimizer itself): the smallest count, doubling while the global batch divides,
    that fits, else the largest tried; named in the matrix's terms (gpu_layout).
    A run at TP > 1 without sequence parallelism is offered --sequence-parallel.
    Model parallelism is offered where the model allows it: tensor parallelism with sequence
    parallelism within a node (attention heads divisible by TP, query groups a multiple or
    divisor of TP, as Megatron asserts), pipeline parallelism over a divisor of the layers;
    both keep the world size, so data parallelism shrinks and the global batch must still
    divide by micro batch x DP. Of the sizes that qualify, the smallest that fits is named
    (else the largest, still above)."""
    flags = dict(f.flags)
    nodes = max(1, world_size // max(1, gpus_per_node))

    def total_with(changes: Mapping[str, Any], world: int = world_size) -> Optional[float]:
        return _total_with(flags, changes, world, vocab_size)

    def labelled(text: str, total: Optional[float]) -> tuple[str, Optional[bool]]:
        if total is None:
            return text, None
        return text + _fit(total, target), total <= target

    def best(tried: list[tuple[str, Optional[float]]]) -> tuple[str, Optional[bool]]:
        fitting = [t for t in tried if t[1] is not None and t[1] <= target]
        known = [t for t in tried if t[1] is not None]
        return labelled(*(fitting[0] if fitting else known[-1] if known else tried[0]))

    ways = []
    if f.on("--use-distributed-optimizer"):
        counts = _gpu_counts(f, world_size)
        if counts:
            ways.append(best([(f"{g} GPUs ({gpu_layout(g, gpus_per_node, nodes)}: the distributed optimizer "
                               "shards its state further)", total_with({}, g)) for g in counts]))
    else:
        ways.append(labelled("--use-distributed-optimizer", total_with({"--use-distributed-optimizer": True})))
    if (f.int("--tensor-model-parallel-size", 1) or 1) > 1 and not f.on("--sequence-parallel"):
        ways.append(labelled("--sequence-parallel", total_with({"--sequence-parallel": True})))  # the same TP
    for way in (_tensor_parallel(f, world_size, gpus_per_node), _pipeline_parallel(f, world_size)):
        if way:
            ways.append(best([(text, total_with(changes)) for text, changes in way]))
    if f.str("--recompute-granularity") != "full":
        ways.append(labelled("--recompute-granularity full --recompute-method uniform --recompute-num-layers 1",
                             total_with(FULL_RECOMPUTE)))
    if not expandable_segments(env):
        usable = usable_gib(gpu, {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}) or 0.0
        fits = est.total <= usable
        ways.append((f"env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (usable {usable:.1f} GiB)"
                     + (f", fits with {usable - est.total:.1f} GiB to spare" if fits
                        else f", {est.total - usable:.1f} GiB short of the {est.total:.1f} GiB estimate"), fits))
    if _bf16_moments_apply(f):
        ways.append(labelled("--use-precision-aware-optimizer --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16",
                             total_with(BF16_MOMENTS)))
    return ways


def _total_with(flags: Mapping[str, Any], changes: Mapping[str, Any], world: int,
                vocab_size: Optional[int]) -> Optional[float]:
    """The estimate's total (GiB) with `changes` applied to `flags` (a None value removes the
    flag) at world size `world`; None when it cannot be estimated."""
    if vocab_size is None:
        return None
    changed = {k: v for k, v in {**flags, **changes}.items() if v is not None}
    try:
        return estimate(changed, world, vocab_size).total
    except (ValueError, ZeroDivisionError):
        return None


FULL_RECOMPUTE = {"--recompute-granularity": "full", "--recompute-method": "uniform", "--recompute-num-layers": 1,
                  "--recompute-modules": None}
BF16_MOMENTS = {"--use-precision-aware-optimizer": True, "--exp-avg-dtype": "bf16", "--exp-avg-sq-dtype": "bf16"}


def _bf16_moments_apply(f: Flags) -> bool:
    return (f.str("--optimizer", "adam") == "adam" and f.on("--use-distributed-optimizer")
            and not f.on("--use-precision-aware-optimizer"))


def _combined(f: Flags, world_size: int, gpus_per_node: int, vocab_size: Optional[int],
              limit: float, usable: Optional[float] = None) -> Optional[tuple[str, float, bool]]:
    """The remedies together: (what, estimate, fits under `limit`, the usable memory with
    expandable segments). Every remedy that is not a size (the distributed optimizer, full
    recomputation, BF16 moments, expandable segments) is applied; of the GPU counts, TP and PP
    sizes the single remedies try, the smallest combination that fits is named (fewest GPUs,
    then least model parallelism), else the one with the lowest estimate. Of a combination
    that fits, the non-size remedies it fits without are left out again, the costliest first
    (full recomputation, BF16 moments, then expandable segments where the estimate is under
    `usable`, the memory without them). None when no estimate is possible."""
    if vocab_size is None:
        return None
    nodes = max(1, world_size // max(1, gpus_per_node))
    fixed: dict[str, Any] = {"--use-distributed-optimizer": True}
    words = [] if f.on("--use-distributed-optimizer") else ["--use-distributed-optimizer"]
    if f.str("--recompute-granularity") != "full":
        fixed.update(FULL_RECOMPUTE)
        words.append("full recomputation")
    if f.str("--optimizer", "adam") == "adam" and not f.on("--use-precision-aware-optimizer"):
        fixed.update(BF16_MOMENTS)
        words.append("BF16 moments")
    words.append("expandable segments")
    with_optimizer = Flags({**f.flags, "--use-distributed-optimizer": True})
    tp0 = f.int("--tensor-model-parallel-size", 1) or 1
    pp0 = f.int("--pipeline-model-parallel-size", 1) or 1
    tried = []
    for gpus in [world_size, *_gpu_counts(with_optimizer, world_size)]:
        node = _node_size(gpus, gpus_per_node, nodes)
        tps = [(tp0, {})] + [(c["--tensor-model-parallel-size"], c) for _, c in _tensor_parallel(f, gpus, node)]
        for tp, tp_changes in tps:
            tp_flags = Flags({**f.flags, **tp_changes})
            pps = [(pp0, {})] + [(c["--pipeline-model-parallel-size"], c)
                                 for _, c in _pipeline_parallel(tp_flags, gpus)]
            for pp, pp_changes in pps:
                changes = {**fixed, **tp_changes, **pp_changes}
                if tp > 1 and not f.on("--sequence-parallel"):
                    changes["--sequence-parallel"] = True
                total = _total_with(f.flags, changes, gpus, vocab_size)
                if total is None:
                    continue
                parts = [f"{gpus} GPUs ({gpu_layout(gpus, gpus_per_node, nodes)})"] if gpus != world_size else []
                parts += [f"TP {tp} with --sequence-parallel"] if tp != tp0 else []
                parts += [f"PP {pp}"] if pp != pp0 else []
                tried.append(((gpus, tp * pp, tp), parts, total, changes))
    if not tried:
        return None
    fitting = sorted((t for t in tried if t[2] <= limit), key=lambda t: t[0])
    if not fitting:
        _, parts, total, _ = min(tried, key=lambda t: t[2])
        return ", ".join(parts + words), total, False
    (gpus, _, _), parts, total, changes = fitting[0]
    kept = list(words)
    for word, flags in (("full recomputation", FULL_RECOMPUTE), ("BF16 moments", BF16_MOMENTS)):
        if word not in kept:
            continue
        trial = {k: v for k, v in changes.items() if k not in flags}
        smaller = _total_with(f.flags, trial, gpus, vocab_size)
        if smaller is not None and smaller <= limit:
            changes, total = trial, smaller
            kept.remove(word)
    if usable is not None and total <= usable:
        kept.remove("expandable segments")
    return ", ".join(parts + kept), total, True


def _batch_divides(f: Flags, world_size: int, tp: int, pp: int) -> bool:
    cp = f.int("--context-parallel-size", 1) or 1
    if world_size % (tp * pp * cp):
        return False
    dp = world_size // (tp * pp * cp)
    gbs = f.int("--global-batch-size")
    return gbs is None or gbs % ((f.int("--micro-batch-size", 1) or 1) * dp) == 0


def _tensor_parallel(f: Flags, world_size: int, gpus_per_node: int) -> list[tuple[str, dict[str, Any]]]:
    """Larger TP sizes with sequence parallelism the model and layout allow (heads, query
    groups and the FFN width divide), smallest first: (remedy text, flag changes)."""
    tp = f.int("--tensor-model-parallel-size", 1) or 1
    pp = f.int("--pipeline-model-parallel-size", 1) or 1
    heads = f.int("--num-attention-heads") or 0
    groups = (f.int("--num-query-groups") or heads) if f.on("--group-query-attention") else heads
    ffn = f.int("--ffn-hidden-size") or 0
    out = []
    size = 2 * tp
    while size <= gpus_per_node and heads:
        if heads % size == 0 and (groups % size == 0 or size % groups == 0) and ffn % size == 0 \
                and _batch_divides(f, world_size, size, pp):
            out.append((f"--tensor-model-parallel-size {size} --sequence-parallel",
                        {"--tensor-model-parallel-size": size, "--sequence-parallel": True}))
        size *= 2
    return out


def _pipeline_parallel(f: Flags, world_size: int) -> list[tuple[str, dict[str, Any]]]:
    """Larger PP sizes that divide the layers and the world (with TP and CP), smallest first."""
    tp = f.int("--tensor-model-parallel-size", 1) or 1
    pp = f.int("--pipeline-model-parallel-size", 1) or 1
    layers = f.int("--num-layers") or 0
    if f.flags.get("--num-layers-per-virtual-pipeline-stage") or f.flags.get("--num-virtual-stages-per-pipeline-rank") \
            or f.flags.get("--pipeline-model-parallel-layout"):
        return []  # an interleaved or custom layout: the remedy would have to rewrite it
    out = []
    for size in range(pp + 1, world_size + 1):
        if layers % size == 0 and _batch_divides(f, world_size, tp, size):
            out.append((f"--pipeline-model-parallel-size {size}", {"--pipeline-model-parallel-size": size}))
    return out


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False
