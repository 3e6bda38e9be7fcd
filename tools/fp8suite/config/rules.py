"""megatron-core's own cross-flag rules, checked at render time.

Each rule is one `assert` or `raise` of megatron-core 0.19.2's argument checks (validate_args
in megatron/training/arguments.py, TransformerConfig / ModelParallelConfig.__post_init__, the
optimizer and DDP configs), written against the run's Megatron flags with Megatron's own
defaults, and quoting Megatron's condition and message. The reviewed list of every such
assertion, with the rule that ports it or why it is not ported, is
tools/fp8suite/data/megatron_assertions_0.19.2.json (see fp8suite.megatron.assertions).

A rule that a run breaks becomes a problem of the matrix, e.g.

    experiments/m.yaml: megatron.training.--cross-entropy-fusion-impl: run r: megatron-core
    refuses it at start-up (megatron/training/arguments.py:1642, assert not
    (args.cross_entropy_loss_fusion and args.cross_entropy_fusion_impl == 'te')): Transformer
    Engine cross entropy loss fusion is disabled ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from ..megatron import recipes
from .memory import Flags
from .schema import ExpandedRun as Run

ARGS = "megatron/training/arguments.py"
TC = "megatron/core/transformer/transformer_config.py"
MPC = "megatron/core/model_parallel_config.py"
OPT = "megatron/core/optimizer/optimizer_config.py"
DDP = "megatron/core/distributed/distributed_data_parallel_config.py"
BLACKWELL = tuple(g.name for g in recipes.GPUS if g.architecture == "Blackwell")


@dataclass(frozen=True)
class Context:
    """What a rule may look at: the flags (with Megatron's defaults), the launch and target."""

    f: Flags
    world_size: int
    gpu: str
    transformer_engine: tuple[int, ...]
    env: Mapping[str, str]
    gradient_accumulation_fusion: bool
    """Megatron's default (on) unless the run renders --no-gradient-accumulation-fusion."""

    def on(self, flag: str) -> bool:
        return self.f.on(flag)

    def set(self, flag: str) -> bool:
        return self.f.flags.get(flag) not in (None, False)

    def str(self, flag: str, default: Any = None) -> Any:
        return self.f.str(flag, default)

    def int(self, flag: str, default: Any = None) -> Any:
        return self.f.int(flag, default)

    def float(self, flag: str, default: float) -> float:
        return self.f.float(flag, default)

    def list(self, flag: str) -> list[str]:
        return self.f.list(flag, [])

    @property
    def tp(self) -> int:
        return self.int("--tensor-model-parallel-size", 1) or 1

    @property
    def pp(self) -> int:
        return self.int("--pipeline-model-parallel-size", 1) or 1

    @property
    def cp(self) -> int:
        return self.int("--context-parallel-size", 1) or 1

    @property
    def fp8(self) -> bool:
        return self.set("--fp8-format")

    @property
    def fp4(self) -> bool:
        return self.set("--fp4-format")

    @property
    def fp8_recipe(self) -> str:
        return self.str("--fp8-recipe", "delayed")

    @property
    def recompute(self) -> Any:
        return self.str("--recompute-granularity")

    @property
    def cuda_graph_impl(self) -> str:
        return self.str("--cuda-graph-impl", "none")

    @property
    def hopper_or_older(self) -> bool:
        return self.gpu not in BLACKWELL

    def te_at_least(self, *version: int) -> bool:
        return self.transformer_engine >= version


@dataclass(frozen=True)
class MegatronRule:
    """One of Megatron's argument assertions, checked before launch."""

    id: str
    source: str
    """file:line in megatron-core 0.19.2."""
    condition: str
    """Megatron's condition as written: what must hold (assert) or what raises (raise)."""
    message: str
    """Megatron's message (an f-string's fields shown as {...})."""
    keys: tuple[str, ...]
    """Matrix keys that set the flags involved, most specific first (for the problem's position)."""
    refuses: Callable[[Context], bool]

    def text(self, ctx: Optional[Context] = None) -> str:
        """The problem's text: where Megatron refuses the run, its condition and its message,
        the message's f-string fields filled with the run's values (`ctx`), or left out where
        a value is not known (or no run is given)."""
        return (f"megatron-core 0.19.2 refuses it at start-up ({self.source}: {self.condition}): "
                f"{fill_message(self.message, ctx)}")


# An f-string field of a quoted message: `{self.x}`, `{args.x}`, `{config.x}`, an expression of
# them (`{self.num_layers // self.pipeline_model_parallel_size}`), a local name (`{invalid_modules}`)
# or `{get_te_version()}`.
# A literal set Megatron prints ("{core_attn, moe_act, ...}") has commas and is not a field.
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_. /*+%()-]*)\}")


def fill_message(message: str, ctx: Optional[Context]) -> str:
    """Megatron's message with each f-string field replaced by the run's value; a field whose
    value is not known is removed with its parentheses or the colon before it, so no
    `{self....}` reaches the user."""
    def value(match: re.Match) -> Optional[str]:
        found = _evaluate(match.group(1), ctx) if ctx is not None else None
        return None if found is None else str(found)

    out, last = [], 0
    for match in _FIELD.finditer(message):
        filled = value(match)
        before = message[last:match.start()]
        if filled is None:
            # "x ({field}) must" -> "x must"; "y: {field}" -> "y"; "'{field}'" -> ""
            before = re.sub(r"(\s*\(|:\s*|\s*'|\s*)$", "", before)
            after = message[match.end():]
            skip = 1 if after[:1] in (")", "'") else 0
            out.append(before)
            last = match.end() + skip
        else:
            out.append(before + filled)
            last = match.end()
    out.append(message[last:])
    return "".join(out)


def _evaluate(expression: str, ctx: Context) -> Any:
    """The value of a message field for the run: attribute names of Megatron's args/config
    looked up as flags (with the defaults `_DERIVED` knows), combined by + - * / // %; None
    when any name is unknown."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Div: operator.truediv, ast.Mod: operator.mod}

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            left, right = walk(node.left), walk(node.right)
            return None if left is None or right is None else ops[type(node.op)](left, right)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in ("self", "args", "config"):
            return _lookup(node.attr, ctx)
        if isinstance(node, ast.Name):
            return _lookup(node.id, ctx)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args \
                and node.func.id == "get_te_version":  # the target's Transformer Engine
            return ".".join(str(x) for x in ctx.transformer_engine)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        return None

    try:
        return walk(ast.parse(expression.strip(), mode="eval"))
    except (SyntaxError, TypeError, ValueError, ZeroDivisionError):
        return None


_DERIVED: dict[str, Callable[[Context], Any]] = {
    "tensor_model_parallel_size": lambda c: c.tp,
    "pipeline_model_parallel_size": lambda c: c.pp,
    "context_parallel_size": lambda c: c.cp,
    "world_size": lambda c: c.world_size,
    "data_parallel_size": lambda c: max(1, c.world_size // (c.tp * c.pp * c.cp)),
    "fp8_recipe": lambda c: c.fp8_recipe,
    "optimizer": lambda c: c.str("--optimizer", "adam"),
    "num_query_groups": lambda c: c.int("--num-query-groups") or c.int("--num-attention-heads"),
    "eval_global_batch_size": lambda c: c.int("--eval-global-batch-size") or c.int("--global-batch-size"),
    "eval_micro_batch_size": lambda c: c.int("--eval-micro-batch-size") or c.int("--micro-batch-size", 1),
    "max_position_embeddings": lambda c: c.int("--max-position-embeddings") or c.int("--seq-length"),
    "sequence_parallel": lambda c: c.on("--sequence-parallel"),
    "distribute_saved_activations": lambda c: c.on("--distribute-saved-activations"),
    "invalid_modules": lambda c: sorted(set(c.list("--recompute-modules")) - set(_RECOMPUTE_MODULES)),
}
"""Values Megatron computes or defaults, by attribute name (megatron-core 0.19.2 arguments.py)."""


def _lookup(name: str, ctx: Context) -> Any:
    if name in _DERIVED:
        return _DERIVED[name](ctx)
    value = ctx.f.flags.get("--" + name.replace("_", "-"))
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return value


RULES: list[MegatronRule] = []


def _rule(id: str, source: str, condition: str, message: str, keys: tuple[str, ...],
          refuses: Callable[[Context], bool]) -> None:
    RULES.append(MegatronRule(id, source, condition, message, keys, refuses))


def _m(*flags: str) -> tuple[str, ...]:
    return tuple(f"megatron.{f}" for f in flags)


# --- parallel layouts ----------------------------------------------------------------------
_rule("attention-backend-local-spec", f"{ARGS}:435",
      "if args.attention_backend == AttnBackend.local: assert args.spec[0] == 'local'",
      "--attention-backend local is only supported with --spec local",
      _m("--attention-backend", "--spec"),
      lambda c: c.str("--attention-backend") == "local" and (c.list("--spec")[:1] != ["local"]))
_rule("eval-global-batch-size", f"{ARGS}:694",
      "assert args.eval_global_batch_size % (args.eval_micro_batch_size * args.data_parallel_size) == 0 "
      "(they default to --global-batch-size and --micro-batch-size)",
      "eval_global_batch_size ({args.eval_global_batch_size}) must be divisible by eval_micro_batch_size "
      "({args.eval_micro_batch_size}) * data_parallel_size ({args.data_parallel_size})",
      _m("--eval-global-batch-size", "--eval-micro-batch-size"),
      lambda c: (c.set("--eval-global-batch-size") or c.set("--eval-micro-batch-size"))
      and (c.int("--eval-global-batch-size") or c.int("--global-batch-size", 0) or 0)
      % ((c.int("--eval-micro-batch-size") or c.int("--micro-batch-size", 1) or 1)
         * max(1, c.world_size // (c.tp * c.pp * c.cp))) != 0)
_rule("virtual-pipeline-one-way", f"{ARGS}:894",
      "assert int(args.num_layers_per_virtual_pipeline_stage is not None) + "
      "int(args.num_virtual_stages_per_pipeline_rank is not None) + "
      "int(args.pipeline_model_parallel_layout is not None) <= 1",
      "No more than one of the following arguments can be set at the same time: "
      "--num-layers-per-virtual-pipeline-stage, --num-virtual-stages-per-pipeline-rank, "
      "--pipeline-model-parallel-layout",
      _m("--num-layers-per-virtual-pipeline-stage", "--num-virtual-stages-per-pipeline-rank",
         "--pipeline-model-parallel-layout"),
      lambda c: sum(c.set(x) for x in ("--num-layers-per-virtual-pipeline-stage",
                                      "--num-virtual-stages-per-pipeline-rank",
                                      "--pipeline-model-parallel-layout")) > 1)
_rule("virtual-pipeline-layers", f"{ARGS}:938",
      "assert num_layers_per_pipeline_stage % args.num_layers_per_virtual_pipeline_stage == 0",
      "number of layers per pipeline stage must be divisible number of layers per virtual pipeline stage",
      _m("--num-layers-per-virtual-pipeline-stage", "--num-layers"),
      lambda c: bool(c.int("--num-layers-per-virtual-pipeline-stage"))
      and ((c.int("--num-layers", 0) or 0) // c.pp) % c.int("--num-layers-per-virtual-pipeline-stage") != 0)
_rule("interleaved-needs-pipeline", f"{ARGS}:968",
      "if args.virtual_pipeline_model_parallel_size is not None and args.overlap_p2p_comm: "
      "assert args.pipeline_model_parallel_size > 1",
      "When interleaved schedule is used, pipeline-model-parallel size should be greater than 1",
      _m("--num-layers-per-virtual-pipeline-stage", "--num-virtual-stages-per-pipeline-rank",
         "--pipeline-model-parallel-size"),
      lambda c: (c.set("--num-layers-per-virtual-pipeline-stage") or c.set("--num-virtual-stages-per-pipeline-rank"))
      and not c.on("--no-overlap-p2p-communication") and c.pp <= 1)
_rule("interleaved-pipeline-without-overlap", f"{ARGS}:972",
      "if args.virtual_pipeline_model_parallel_size is not None and not args.overlap_p2p_comm: "
      "assert args.pipeline_model_parallel_size > 2",
      "When interleaved schedule is used and p2p communication overlap is disabled, "
      "pipeline-model-parallel size should be greater than 2 to avoid having multiple p2p sends "
      "and recvs between same 2 ranks per communication batch",
      _m("--no-overlap-p2p-communication", "--pipeline-model-parallel-size"),
      lambda c: (c.set("--num-layers-per-virtual-pipeline-stage") or c.set("--num-virtual-stages-per-pipeline-rank"))
      and c.on("--no-overlap-p2p-communication") and c.pp <= 2)
_rule("seq-length-context-parallel", f"{ARGS}:1296",
      "if args.seq_length is not None and args.context_parallel_size > 1: "
      "assert args.seq_length % (args.context_parallel_size * 2) == 0",
      "seq-length should be a multiple of 2 * context-parallel-size if context-parallel-size > 1.",
      _m("--seq-length", "--context-parallel-size"),
      lambda c: c.cp > 1 and c.int("--seq-length") is not None and c.int("--seq-length") % (2 * c.cp) != 0)
_rule("hidden-size-heads", f"{ARGS}:1292",
      "if args.kv_channels is None: assert args.hidden_size % args.num_attention_heads == 0",
      "(no message)", _m("--hidden-size", "--num-attention-heads", "--kv-channels"),
      lambda c: not c.set("--kv-channels") and bool(c.int("--num-attention-heads"))
      and (c.int("--hidden-size", 0) or 0) % c.int("--num-attention-heads") != 0)
_rule("max-position-embeddings", f"{ARGS}:1314",
      "if args.seq_length is not None: assert args.max_position_embeddings >= args.seq_length",
      "max_position_embeddings ({args.max_position_embeddings}) must be greater than or equal to "
      "seq_length ({args.seq_length}).",
      _m("--max-position-embeddings", "--seq-length"),
      lambda c: c.int("--seq-length") is not None and c.int("--max-position-embeddings") is not None
      and c.int("--max-position-embeddings") < c.int("--seq-length"))
_rule("query-groups-tp", f"{TC}:1342",
      "raise if self.num_query_groups % self.tensor_model_parallel_size != 0 and "
      "self.tensor_model_parallel_size % self.num_query_groups != 0",
      "num_query_groups ({self.num_query_groups}) must be a multiple or divisor of "
      "tensor_model_parallel_size ({self.tensor_model_parallel_size}).",
      _m("--num-query-groups", "--tensor-model-parallel-size"),
      lambda c: c.on("--group-query-attention") and bool(c.int("--num-query-groups"))
      and c.int("--num-query-groups") % c.tp != 0 and c.tp % c.int("--num-query-groups") != 0)
_rule("sequence-parallel-needs-tp", f"{MPC}:504",
      "raise if self.sequence_parallel and self.tensor_model_parallel_size <= 1",
      "Cannot use sequence parallelism without tensor parallelism",
      _m("--sequence-parallel", "--tensor-model-parallel-size"),
      lambda c: c.on("--sequence-parallel") and c.tp <= 1)
_rule("tp-comm-overlap-needs-sp", f"{ARGS}:1402",
      "if args.tp_comm_overlap: assert args.sequence_parallel == True",
      "Tensor parallel communication/GEMM overlap can happen only when sequence parallelism is enabled",
      _m("--tp-comm-overlap", "--sequence-parallel"),
      lambda c: c.on("--tp-comm-overlap") and not c.on("--sequence-parallel"))
_rule("cuda-device-max-connections", f"{ARGS}:1437",
      "if (args.tensor_model_parallel_size > 1 or args.context_parallel_size > 1) and "
      "get_device_arch_version() < 10 (not FSDP, not overlap_moe_expert_parallel_comm): "
      "assert os.environ.get('CUDA_DEVICE_MAX_CONNECTIONS') == '1'",
      "Using tensor model parallelism or context parallelism require setting the environment "
      "variable CUDA_DEVICE_MAX_CONNECTIONS to 1",
      ("env.CUDA_DEVICE_MAX_CONNECTIONS",) + _m("--tensor-model-parallel-size", "--context-parallel-size"),
      lambda c: (c.tp > 1 or c.cp > 1) and c.hopper_or_older
      and not (c.on("--use-torch-fsdp2") or c.on("--use-megatron-fsdp") or c.on("--overlap-moe-expert-parallel-comm"))
      and str(c.env.get("CUDA_DEVICE_MAX_CONNECTIONS")) != "1")
_rule("defer-embedding-wgrad-pipeline", f"{MPC}:546",
      "raise if self.defer_embedding_wgrad_compute and self.pipeline_model_parallel_size == 1",
      "Cannot defer embedding wgrad compute when pipeline model parallel is not used",
      _m("--defer-embedding-wgrad-compute", "--pipeline-model-parallel-size"),
      lambda c: c.on("--defer-embedding-wgrad-compute") and c.pp == 1)
_rule("defer-embedding-wgrad-fusion", f"{MPC}:551",
      "raise if self.defer_embedding_wgrad_compute and not self.gradient_accumulation_fusion",
      "Cannot defer embedding wgrad compute when gradient accumulation fusion is not used",
      ("gradient_accumulation_fusion",) + _m("--defer-embedding-wgrad-compute"),
      lambda c: c.on("--defer-embedding-wgrad-compute") and not c.gradient_accumulation_fusion)
_rule("p2p-warmup-flush-overlap", f"{MPC}:572",
      "raise if self.overlap_p2p_comm_warmup_flush and (not self.overlap_p2p_comm or self.batch_p2p_comm)",
      "Pipeline parallel communication overlapping in warmup and flush is only compatible with "
      "overlap_p2p_comm but not batch_p2p_comm.",
      _m("--overlap-p2p-communication-warmup-flush", "--no-overlap-p2p-communication"),
      lambda c: c.on("--overlap-p2p-communication-warmup-flush") and c.on("--no-overlap-p2p-communication"))

# --- distributed optimizer, overlap, FSDP --------------------------------------------------
_DIST = ("--use-distributed-optimizer", "--use-megatron-fsdp")
_rule("overlap-param-gather-needs-dist-opt", f"{ARGS}:991",
      "if args.overlap_param_gather: assert args.use_distributed_optimizer or "
      "args.use_megatron_fsdp or args.optimizer == 'dist_muon'",
      "--overlap-param-gather only supported with distributed optimizer, megatron fsdp, or dist_muon",
      _m("--overlap-param-gather", "--use-distributed-optimizer"),
      lambda c: c.on("--overlap-param-gather") and not any(c.on(x) for x in _DIST)
      and c.str("--optimizer", "adam") != "dist_muon")
_rule("overlap-param-gather-needs-grad-reduce", f"{ARGS}:994",
      "if args.overlap_param_gather: assert args.overlap_grad_reduce",
      "Must use --overlap-param-gather with --overlap-grad-reduce",
      _m("--overlap-param-gather", "--overlap-grad-reduce"),
      lambda c: c.on("--overlap-param-gather") and not c.on("--overlap-grad-reduce"))
_rule("fsdp2-pipeline", f"{ARGS}:1000", "if args.use_torch_fsdp2: assert args.pipeline_model_parallel_size == 1",
      "--use-torch-fsdp2 is not supported with pipeline parallelism",
      _m("--use-torch-fsdp2", "--pipeline-model-parallel-size"),
      lambda c: c.on("--use-torch-fsdp2") and c.pp != 1)
_rule("fsdp2-dist-opt", f"{ARGS}:1004", "if args.use_torch_fsdp2: assert not args.use_distributed_optimizer",
      "--use-torch-fsdp2 is not supported with MCore's distributed optimizer",
      _m("--use-torch-fsdp2", "--use-distributed-optimizer"),
      lambda c: c.on("--use-torch-fsdp2") and c.on("--use-distributed-optimizer"))
_rule("fsdp2-grad-accumulation-fusion", f"{ARGS}:1006",
      "if args.use_torch_fsdp2: assert not args.gradient_accumulation_fusion",
      "--use-torch-fsdp2 is not supported with gradient accumulation fusion",
      ("gradient_accumulation_fusion",) + _m("--use-torch-fsdp2"),
      lambda c: c.on("--use-torch-fsdp2") and c.gradient_accumulation_fusion)
_rule("fsdp2-ckpt-format", f"{ARGS}:1008",
      "if args.use_torch_fsdp2: assert args.ckpt_format in ('torch_dist', 'torch_dcp')",
      "--use-torch-fsdp2 requires --ckpt-format torch_dist or torch_dcp", _m("--use-torch-fsdp2", "--ckpt-format"),
      lambda c: c.on("--use-torch-fsdp2") and c.str("--ckpt-format", "torch_dist") not in ("torch_dist", "torch_dcp"))
_rule("fsdp2-untied", f"{ARGS}:1010", "if args.use_torch_fsdp2: assert args.untie_embeddings_and_output_weights",
      "--use-torch-fsdp2 requires --untie-embeddings-and-output-weights",
      _m("--use-torch-fsdp2", "--untie-embeddings-and-output-weights"),
      lambda c: c.on("--use-torch-fsdp2") and not c.on("--untie-embeddings-and-output-weights"))
_rule("fsdp2-fp16", f"{ARGS}:1012", "if args.use_torch_fsdp2: assert not args.fp16",
      "--use-torch-fsdp2 not supported with fp16 yet", _m("--use-torch-fsdp2", "--fp16"),
      lambda c: c.on("--use-torch-fsdp2") and c.on("--fp16"))
_rule("fsdp2-device-connections", f"{ARGS}:1014",
      "if args.use_torch_fsdp2: assert os.environ.get('CUDA_DEVICE_MAX_CONNECTIONS') != '1'",
      "FSDP always requires CUDA_DEVICE_MAX_CONNECTIONS value large than one",
      ("env.CUDA_DEVICE_MAX_CONNECTIONS",) + _m("--use-torch-fsdp2"),
      lambda c: c.on("--use-torch-fsdp2") and str(c.env.get("CUDA_DEVICE_MAX_CONNECTIONS")) == "1")
_rule("overlap-with-optimizer-step-dist-opt", f"{ARGS}:1033",
      "if args.overlap_param_gather_with_optimizer_step: assert args.use_distributed_optimizer",
      "--overlap-param-gather-with-optimizer-step only supported with distributed optimizer",
      _m("--overlap-param-gather-with-optimizer-step", "--use-distributed-optimizer"),
      lambda c: c.on("--overlap-param-gather-with-optimizer-step") and not c.on("--use-distributed-optimizer"))
_rule("overlap-with-optimizer-step-param-gather", f"{ARGS}:1035",
      "if args.overlap_param_gather_with_optimizer_step: assert args.overlap_param_gather",
      "Must use --overlap-param-gather-with-optimizer-step with --overlap-param-gather",
      _m("--overlap-param-gather-with-optimizer-step", "--overlap-param-gather"),
      lambda c: c.on("--overlap-param-gather-with-optimizer-step") and not c.on("--overlap-param-gather"))
_rule("overlap-with-optimizer-step-interleaved", f"{ARGS}:1037",
      "if args.overlap_param_gather_with_optimizer_step: "
      "assert args.virtual_pipeline_model_parallel_size is not None",
      "--overlap-param-gather-with-optimizer-step only supported with interleaved pipeline parallelism",
      _m("--overlap-param-gather-with-optimizer-step", "--num-layers-per-virtual-pipeline-stage"),
      lambda c: c.on("--overlap-param-gather-with-optimizer-step")
      and not (c.set("--num-layers-per-virtual-pipeline-stage") or c.set("--num-virtual-stages-per-pipeline-rank")))
_rule("megatron-fsdp-optimizer", f"{ARGS}:1127",
      "if args.use_megatron_fsdp: assert args.optimizer in ('sgd', 'adam')",
      "Megatron-FSDP does not support the {args.optimizer} optimizer yet.",
      _m("--use-megatron-fsdp", "--optimizer"),
      lambda c: c.on("--use-megatron-fsdp") and c.str("--optimizer", "adam") not in ("sgd", "adam"))
_rule("megatron-fsdp-device-connections", f"{ARGS}:1143",
      "if args.use_megatron_fsdp: assert os.environ.get('CUDA_DEVICE_MAX_CONNECTIONS') != '1'",
      "FSDP requires CUDA_DEVICE_MAX_CONNECTIONS > 1 or unset.",
      ("env.CUDA_DEVICE_MAX_CONNECTIONS",) + _m("--use-megatron-fsdp"),
      lambda c: c.on("--use-megatron-fsdp") and str(c.env.get("CUDA_DEVICE_MAX_CONNECTIONS")) == "1")
_rule("megatron-fsdp-ckpt-format", f"{ARGS}:1146",
      "if args.use_megatron_fsdp: assert args.ckpt_format == 'fsdp_dtensor'",
      "Megatron-FSDP requires the `fsdp_dtensor` checkpointing format.",
      _m("--use-megatron-fsdp", "--ckpt-format"),
      lambda c: c.on("--use-megatron-fsdp") and c.str("--ckpt-format", "torch_dist") != "fsdp_dtensor")
_rule("ddp-buckets", f"{DDP}:270", "if self.num_buckets is not None: assert self.bucket_size is None",
      "Cannot specify both num_buckets and bucket_size", _m("--ddp-num-buckets", "--ddp-bucket-size"),
      lambda c: c.set("--ddp-num-buckets") and c.set("--ddp-bucket-size"))
_rule("ddp-buckets-positive", f"{DDP}:271", "if self.num_buckets is not None: assert self.num_buckets > 0",
      "num_buckets must be greater than 0", _m("--ddp-num-buckets"),
      lambda c: c.int("--ddp-num-buckets") is not None and c.int("--ddp-num-buckets") <= 0)
_rule("reuse-grad-buf-mxfp8", f"{DDP}:254",
      "if self.reuse_grad_buf_for_mxfp8_param_ag: assert self.fp8_param_gather",
      "Reuse grad buffer only when keeping params in MXFP8.",
      _m("--reuse-grad-buf-for-mxfp8-param-ag", "--fp8-param-gather"),
      lambda c: c.on("--reuse-grad-buf-for-mxfp8-param-ag") and not c.on("--fp8-param-gather"))

# --- FP8 / FP4 -----------------------------------------------------------------------------
_rule("fp4-and-fp8", f"{ARGS}:1066", "raise if args.fp4 and args.fp8",
      "--fp4-format and --fp8-format cannot be used simultaneously. Please choose one of them.",
      _m("--fp4-format", "--fp8-format"), lambda c: c.fp4 and c.fp8)
_rule("fp4-param-gather-needs-fp4", f"{ARGS}:1070", "raise if args.fp4_param_gather and not args.fp4",
      "--fp4-param-gather must be used together with --fp4-format.",
      _m("--fp4-param-gather", "--fp4-format"), lambda c: c.on("--fp4-param-gather") and not c.fp4)
# Flags whose "needs its format" condition Megatron asserts itself (the rule above): the
# suite's own recipe checks leave them to it, so a problem is reported once, in Megatron's words.
FLAGS_WITH_OWN_RULE = frozenset({"--fp4-param-gather"})
_rule("fp8-custom-recipe-factory", f"{TC}:1433",
      "raise if self.fp8 and self.fp8_recipe == Fp8Recipe.custom and not self.fp8_quantizer_factory",
      "fp8_quantizer_factory must be provided when fp8_recipe is 'custom'. Specify a Python import "
      "path (e.g., package.module.quantizer_factory) via --fp8-quantizer-factory.",
      _m("--fp8-recipe", "--fp8-quantizer-factory"),
      lambda c: c.fp8 and c.fp8_recipe == "custom" and not c.set("--fp8-quantizer-factory"))
_rule("fp4-custom-recipe-factory", f"{TC}:1459",
      "raise if self.fp4 and self.fp4_recipe == Fp4Recipe.custom and not self.fp4_quantizer_factory",
      "fp4_quantizer_factory must be provided when fp4_recipe is 'custom'. Specify a Python import "
      "path (e.g., package.module.quantizer_factory) via --fp4-quantizer-factory.",
      _m("--fp4-recipe", "--fp4-quantizer-factory"),
      lambda c: c.fp4 and c.str("--fp4-recipe", "nvfp4") == "custom" and not c.set("--fp4-quantizer-factory"))
_rule("fp8-output-proj-needs-fp8", f"{TC}:1444", "raise if self.fp8_output_proj and not self.fp8",
      "fp8_output_proj must be used together with fp8 mode.", _m("--fp8-output-proj", "--fp8-format"),
      lambda c: c.on("--fp8-output-proj") and not c.fp8)
_rule("fp8-output-proj-mxfp8", f"{TC}:1446",
      "raise if self.fp8_output_proj and self.fp8_recipe != Fp8Recipe.mxfp8",
      "fp8_output_proj requires fp8_recipe='mxfp8', got '{self.fp8_recipe}'.",
      _m("--fp8-output-proj", "--fp8-recipe"),
      lambda c: c.on("--fp8-output-proj") and c.fp8 and c.fp8_recipe != "mxfp8")
_rule("delayed-recompute-layernorm", f"{TC}:1824",
      "raise if self.fp8 and self.recompute_granularity == 'selective' and ('moe_act' in "
      "self.recompute_modules or 'layernorm' in self.recompute_modules) and self.fp8_recipe == 'delayed'",
      "Delayed scaling does not support moe_act and layernorm recompute for fp8.",
      _m("--recompute-modules", "--fp8-recipe"),
      lambda c: c.fp8 and c.recompute == "selective" and c.fp8_recipe == "delayed"
      and bool({"moe_act", "layernorm"} & set(c.list("--recompute-modules"))))

# --- precision, optimizer and offload ------------------------------------------------------
_rule("fp8-recompute-modules-te", f"{TC}:1829",
      "raise if self.fp8 and self.recompute_granularity == 'selective' and ('moe_act' in "
      "self.recompute_modules or 'layernorm' in self.recompute_modules) and not is_te_min_version('2.6.0dev0')",
      "moe_act and layernorm recompute for fp8 needs transformer-engine>=2.6.0dev0, but your version is "
      "{get_te_version()}.",
      ("target.transformer_engine",) + _m("--recompute-modules"),
      lambda c: c.fp8 and c.recompute == "selective" and not c.te_at_least(2, 6)
      and bool({"moe_act", "layernorm"} & set(c.list("--recompute-modules"))))
_rule("fp16-and-bf16", f"{ARGS}:1173", "if args.fp16: assert not args.bf16", "(no message)",
      _m("--fp16", "--bf16"), lambda c: c.on("--fp16") and c.on("--bf16"))
_rule("main-grads-fp32-with-fp32-accumulation", f"{ARGS}:1187",
      "if args.bf16 and args.accumulate_allreduce_grads_in_fp32: assert args.main_grads_dtype == torch.float32",
      "--main-grads-dtype can only be fp32 when --accumulate-allreduce-grads-in-fp32 is set",
      _m("--main-grads-dtype", "--accumulate-allreduce-grads-in-fp32"),
      lambda c: c.on("--bf16") and c.on("--accumulate-allreduce-grads-in-fp32")
      and c.str("--main-grads-dtype", "fp32") != "fp32")
_rule("fp16-lm-cross-entropy", f"{ARGS}:1333", "if args.fp16_lm_cross_entropy: assert args.fp16",
      "lm cross entropy in fp16 only support in fp16 mode.", _m("--fp16-lm-cross-entropy", "--fp16"),
      lambda c: c.on("--fp16-lm-cross-entropy") and not c.on("--fp16"))
_rule("fp32-residual-connection", f"{ARGS}:1335",
      "if args.fp32_residual_connection: assert args.fp16 or args.bf16",
      "residual connection in fp32 only supported when using fp16 or bf16.",
      _m("--fp32-residual-connection", "--bf16"),
      lambda c: c.on("--fp32-residual-connection") and not (c.on("--fp16") or c.on("--bf16")))
_rule("min-lr-le-lr", f"{ARGS}:1320", "if args.lr is not None: assert args.min_lr <= args.lr",
      "(no message)", _m("--min-lr", "--lr"),
      lambda c: c.set("--lr") and c.float("--min-lr", 0.0) > c.float("--lr", 0.0))
_rule("reuse-grad-buf-overlap-with-optimizer-step", f"{OPT}:425",
      "raise if self.reuse_grad_buf_for_mxfp8_param_ag and self.overlap_param_gather_with_optimizer_step",
      "overlap_param_gather_with_optimizer_step is not supported with reuse_grad_buf_for_mxfp8_param_ag",
      _m("--reuse-grad-buf-for-mxfp8-param-ag", "--overlap-param-gather-with-optimizer-step"),
      lambda c: c.on("--reuse-grad-buf-for-mxfp8-param-ag") and c.on("--overlap-param-gather-with-optimizer-step"))
_rule("precision-aware-optimizer-adam", f"{OPT}:431",
      "if self.use_precision_aware_optimizer: assert self.optimizer == 'adam'",
      "--use-precision-aware-optimizer only supported with adam",
      _m("--use-precision-aware-optimizer", "--optimizer"),
      lambda c: c.on("--use-precision-aware-optimizer") and c.str("--optimizer", "adam") != "adam")
_rule("precision-aware-optimizer-dist-opt", f"{OPT}:434",
      "if self.use_precision_aware_optimizer: assert self.use_distributed_optimizer",
      "--use-precision-aware-optimizer only supported with distributed optimizer",
      _m("--use-precision-aware-optimizer", "--use-distributed-optimizer"),
      lambda c: c.on("--use-precision-aware-optimizer") and not c.on("--use-distributed-optimizer"))
for _flag, _dest, _line in (("--main-grads-dtype", "main_grads_dtype", 470),
                            ("--main-params-dtype", "main_params_dtype", 473),
                            ("--exp-avg-dtype", "exp_avg_dtype", 476),
                            ("--exp-avg-sq-dtype", "exp_avg_sq_dtype", 479)):
    _rule(f"{_dest.replace('_', '-')}-needs-precision-aware-optimizer", f"{OPT}:{_line}",
          f"if not self.use_precision_aware_optimizer: assert self.{_dest} == torch.float32",
          f"{_dest} can only be fp32 when not using precision-aware optimizer",
          _m(_flag, "--use-precision-aware-optimizer"),
          lambda c, flag=_flag: not c.on("--use-precision-aware-optimizer") and c.str(flag, "fp32") != "fp32")
_rule("optimizer-cpu-offload-precision-aware", f"{ARGS}:1804",
      "if args.optimizer_cpu_offload: assert args.use_precision_aware_optimizer",
      "The optimizer cpu offload must be used in conjunction with `--use-precision-aware-optimizer`, "
      "as the hybrid device optimizer reuses the code path of this flag.",
      _m("--optimizer-cpu-offload", "--use-precision-aware-optimizer"),
      lambda c: c.on("--optimizer-cpu-offload") and not c.on("--use-precision-aware-optimizer"))
_rule("optimizer-cpu-offload-fp8-param-gather", f"{ARGS}:1808",
      "if args.optimizer_cpu_offload: assert not args.fp8_param_gather or args.fp8_recipe == 'delayed'",
      "When `--fp8-param-gather` is enabled, the optimizer cpu offload must be used in conjunction "
      "with `--fp8-recipe delayed`.",
      _m("--optimizer-cpu-offload", "--fp8-param-gather", "--fp8-recipe"),
      lambda c: c.on("--optimizer-cpu-offload") and c.on("--fp8-param-gather") and c.fp8_recipe != "delayed")

# --- recompute and activation offloading ---------------------------------------------------
_rule("distribute-saved-activations-tp", f"{ARGS}:1371",
      "if args.distribute_saved_activations: assert args.tensor_model_parallel_size > 1",
      "can distribute recomputed activations only across tensor model parallel groups",
      _m("--distribute-saved-activations", "--tensor-model-parallel-size"),
      lambda c: c.on("--distribute-saved-activations") and c.tp <= 1)
_rule("distribute-saved-activations-full", f"{ARGS}:1374",
      "if args.distribute_saved_activations: assert args.recompute_granularity == 'full'",
      "distributed recompute activations is only application to full recompute granularity",
      _m("--distribute-saved-activations", "--recompute-granularity"),
      lambda c: c.on("--distribute-saved-activations") and c.recompute != "full")
_rule("distribute-saved-activations-method", f"{ARGS}:1377",
      "if args.distribute_saved_activations: assert args.recompute_method is not None",
      "for distributed recompute activations to work you need to use a recompute method ",
      _m("--distribute-saved-activations", "--recompute-method"),
      lambda c: c.on("--distribute-saved-activations") and not c.set("--recompute-method"))
_rule("selective-recompute-method", f"{ARGS}:1386",
      "if args.recompute_granularity == 'selective': assert args.recompute_method is None",
      "recompute method is not yet supported for selective recomputing granularity",
      _m("--recompute-method", "--recompute-granularity"),
      lambda c: c.recompute == "selective" and c.set("--recompute-method"))
_rule("full-recompute-method", f"{TC}:1737",
      "raise if self.recompute_granularity is not None and self.recompute_method is None and "
      "self.recompute_granularity != 'selective'",
      "Using recompute_granularity: {self.recompute_granularity} so recompute_method must be "
      "\"block\" or \"uniform\"",
      _m("--recompute-granularity", "--recompute-method"),
      lambda c: c.recompute == "full" and not c.set("--recompute-method"))
_rule("full-recompute-num-layers", f"{TC}:1743",
      "raise if self.recompute_granularity != 'selective' and self.recompute_num_layers is None",
      "When using recompute_granularity: {self.recompute_granularity} recompute_num_layers must "
      "be between 1 and num_layers_per_pipeline_rank: {self.num_layers // "
      "self.pipeline_model_parallel_size}",
      _m("--recompute-granularity", "--recompute-num-layers"),
      lambda c: c.recompute == "full" and c.set("--recompute-method") and not c.set("--recompute-num-layers"))
_rule("selective-recompute-num-layers", f"{TC}:1752",
      "raise if self.recompute_granularity == 'selective' and self.recompute_num_layers is not None",
      "When using recompute_granularity: {self.recompute_granularity} recompute_num_layers must be None.",
      _m("--recompute-num-layers", "--recompute-granularity"),
      lambda c: c.recompute == "selective" and c.set("--recompute-num-layers"))
_rule("distribute-saved-activations-sp", f"{TC}:1758",
      "raise if self.recompute_granularity is not None and self.distribute_saved_activations and "
      "self.sequence_parallel",
      "distribute_saved_activations: {self.distribute_saved_activations} must be false when "
      "sequence parallel is enabled: {self.sequence_parallel}",
      _m("--distribute-saved-activations", "--sequence-parallel"),
      lambda c: c.recompute is not None and c.on("--distribute-saved-activations") and c.on("--sequence-parallel"))
_RECOMPUTE_MODULES = ("core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe",
                      "shared_experts", "gdn_norm_out")
_rule("recompute-modules-choices", f"{TC}:1779",
      "if self.recompute_granularity == 'selective' and len(self.recompute_modules) > 0: "
      "assert not invalid_modules",
      "Invalid choices for recompute_modules: {invalid_modules}. Allowed modules are: "
      + "{" + ", ".join(_RECOMPUTE_MODULES) + "}",
      _m("--recompute-modules"),
      lambda c: c.recompute == "selective" and bool(set(c.list("--recompute-modules")) - set(_RECOMPUTE_MODULES)))
_rule("cpu-offloading-pipeline", f"{TC}:1715",
      "raise if self.cpu_offloading and self.pipeline_model_parallel_size > 1",
      "Currently there is no support for Pipeline parallelism with CPU offloading",
      _m("--cpu-offloading-num-layers", "--pipeline-model-parallel-size"),
      lambda c: (c.int("--cpu-offloading-num-layers", 0) or 0) > 0 and c.pp > 1)
_rule("cpu-offloading-recompute", f"{TC}:1720",
      "raise if self.cpu_offloading and self.recompute_granularity is not None",
      "CPU offloading does not work when activation recomputation is enabled",
      _m("--cpu-offloading-num-layers", "--recompute-granularity"),
      lambda c: (c.int("--cpu-offloading-num-layers", 0) or 0) > 0 and c.recompute is not None)
_rule("cpu-offloading-num-layers", f"{TC}:1710",
      "raise if self.cpu_offloading and (self.cpu_offloading_num_layers < 0 or "
      "self.cpu_offloading_num_layers >= self.num_layers)",
      "CPU offloading can be done only for layers less than {self.num_layers}",
      _m("--cpu-offloading-num-layers", "--num-layers"),
      lambda c: (c.int("--cpu-offloading-num-layers", 0) or 0) > 0
      and c.int("--cpu-offloading-num-layers") >= (c.int("--num-layers", 0) or 0))
_rule("fine-grained-offloading-te", f"{ARGS}:1855",
      "if args.fine_grained_activation_offloading: assert args.transformer_impl == 'transformer_engine'",
      "Fine-grained activation offloading is only supported with transformer_engine implementation",
      _m("--fine-grained-activation-offloading", "--transformer-impl"),
      lambda c: c.on("--fine-grained-activation-offloading")
      and c.str("--transformer-impl", "transformer_engine") != "transformer_engine")
_rule("fine-grained-offloading-env", f"{ARGS}:1858",
      "if args.fine_grained_activation_offloading and is_te_min_version('2.10.0'): "
      "assert os.getenv('NVTE_CPU_OFFLOAD_V1', '0') == '1'",
      "For fine-grained activation offloading with TE >= 2.10.0, NVTE_CPU_OFFLOAD_V1 should be set to 1 "
      "to avoid offloading weights.",
      ("env.NVTE_CPU_OFFLOAD_V1",) + _m("--fine-grained-activation-offloading"),
      lambda c: c.on("--fine-grained-activation-offloading") and c.te_at_least(2, 10)
      and str(c.env.get("NVTE_CPU_OFFLOAD_V1", "0")) != "1")
_rule("delay-wgrad-te", f"{ARGS}:1823",
      "if args.delay_wgrad_compute: assert args.transformer_impl == 'transformer_engine'",
      "Delaying wgrad compute is only supported with transformer_engine implementation",
      _m("--delay-wgrad-compute", "--transformer-impl"),
      lambda c: c.on("--delay-wgrad-compute") and c.str("--transformer-impl", "transformer_engine") != "transformer_engine")
_rule("delay-wgrad-overlap-grad-reduce-te", f"{ARGS}:1826",
      "if args.delay_wgrad_compute and args.overlap_grad_reduce: assert is_te_min_version('2.8.0')",
      "overlap_grad_reduce is only supported with TE >= 2.8.0 when enabling delay_wgrad_compute",
      ("target.transformer_engine",) + _m("--delay-wgrad-compute", "--overlap-grad-reduce"),
      lambda c: c.on("--delay-wgrad-compute") and c.on("--overlap-grad-reduce") and not c.te_at_least(2, 8))
_rule("delay-wgrad-no-fusion-te", f"{ARGS}:1849",
      "if args.delay_wgrad_compute and not args.gradient_accumulation_fusion: assert is_te_min_version('2.7.0')",
      "disabling gradient_accumulation_fusion is only supported with TE >= 2.7.0 when enabling delay_wgrad_compute",
      ("target.transformer_engine", "gradient_accumulation_fusion") + _m("--delay-wgrad-compute"),
      lambda c: c.on("--delay-wgrad-compute") and not c.gradient_accumulation_fusion and not c.te_at_least(2, 7))
_rule("delay-wgrad-needs-ep-overlap", f"{TC}:2750",
      "if self.delay_wgrad_compute: assert self.overlap_moe_expert_parallel_comm",
      "overlap_moe_expert_parallel_comm must be enabled when enabling delay_wgrad_compute",
      _m("--delay-wgrad-compute", "--overlap-moe-expert-parallel-comm"),
      lambda c: c.on("--delay-wgrad-compute") and not c.on("--overlap-moe-expert-parallel-comm"))

# --- fusions -------------------------------------------------------------------------------
_rule("cross-entropy-fusion-te", f"{ARGS}:1642",
      "assert not (args.cross_entropy_loss_fusion and args.cross_entropy_fusion_impl == 'te')",
      "Transformer Engine cross entropy loss fusion is disabled due to stability issues. Use "
      "--cross-entropy-fusion-impl native, or omit --cross-entropy-loss-fusion.",
      _m("--cross-entropy-fusion-impl", "--cross-entropy-loss-fusion"),
      lambda c: c.on("--cross-entropy-loss-fusion") and c.str("--cross-entropy-fusion-impl", "native") == "te")
_rule("fused-residual-rmsnorm", f"{TC}:2149",
      "raise if self.fused_residual_rmsnorm and self.normalization != 'RMSNorm'",
      "fused_residual_rmsnorm is only supported when normalization is RMSNorm.",
      _m("--fused-residual-rmsnorm", "--normalization"),
      lambda c: c.on("--fused-residual-rmsnorm") and c.str("--normalization", "LayerNorm") != "RMSNorm")
_rule("rotary-interleaved-rope-fusion-te", f"{TC}:2174",
      "raise if self.apply_rope_fusion and not self.multi_latent_attention and self.rotary_interleaved "
      "and not is_te_min_version('2.3.0')",
      "rotary_interleaved does not work with apply_rope_fusion for TE < 2.3.0. Please install TE >= 2.3.0",
      ("target.transformer_engine",) + _m("--rotary-interleaved", "--no-rope-fusion"),
      lambda c: c.on("--rotary-interleaved") and not c.on("--no-rope-fusion")
      and not c.on("--multi-latent-attention") and not c.te_at_least(2, 3))
_rule("bias-activation-fusion-te-activation", f"{TC}:2141",
      "raise if self.bias_activation_fusion and self.use_te_activation_func",
      "bias_activation_fusion and use_te_activation_func cannot be both true. If you use bias in MLP "
      "FC1, we recommend setting bias_activation_fusion to False and use_te_activation_func to True.",
      _m("--use-te-activation-func", "--no-bias-swiglu-fusion", "--no-bias-gelu-fusion"),
      lambda c: c.on("--use-te-activation-func")
      and not c.on("--no-bias-swiglu-fusion" if c.on("--swiglu") else "--no-bias-gelu-fusion"))

# --- CUDA graphs ---------------------------------------------------------------------------
_rule("cuda-graph-deprecated-flags", f"{ARGS}:594",
      "if args.enable_cuda_graph or args.external_cuda_graph: assert args.cuda_graph_impl == 'none'",
      "Do not use --enable-cuda-graph or --external-cuda-graph with --cuda-graph-impl.",
      _m("--enable-cuda-graph", "--external-cuda-graph", "--cuda-graph-impl"),
      lambda c: (c.on("--enable-cuda-graph") or c.on("--external-cuda-graph")) and c.cuda_graph_impl != "none")
_rule("cuda-graph-enable-and-external", f"{ARGS}:597",
      "if args.enable_cuda_graph or args.external_cuda_graph: "
      "assert not args.enable_cuda_graph or not args.external_cuda_graph",
      "--enable-cuda-graph and --external-cuda-graph cannot be enabled at the same time.",
      _m("--enable-cuda-graph", "--external-cuda-graph"),
      lambda c: c.on("--enable-cuda-graph") and c.on("--external-cuda-graph"))
_rule("cuda-graph-scope-and-modules", f"{ARGS}:616",
      "if args.cuda_graph_scope_deprecated is not None: assert not args.cuda_graph_modules",
      "--cuda-graph-scope and --cuda-graph-modules cannot be used together.",
      _m("--cuda-graph-scope", "--cuda-graph-modules"),
      lambda c: c.set("--cuda-graph-scope") and c.set("--cuda-graph-modules"))
_rule("cuda-graph-full-iteration-nan-check", f"{ARGS}:1196",
      "if args.cuda_graph_impl == 'full_iteration': assert not args.check_for_nan_in_loss_and_grad",
      "--no-check-for-nan-in-loss-and-grad should be set with --cuda-graph-impl=full_iteration for "
      "performance reasons.",
      _m("--cuda-graph-impl", "--no-check-for-nan-in-loss-and-grad"),
      lambda c: c.cuda_graph_impl == "full_iteration" and not c.on("--no-check-for-nan-in-loss-and-grad"))
_rule("cuda-graph-te-expandable-segments", f"{ARGS}:1881",
      "if args.cuda_graph_impl == 'transformer_engine': assert 'expandable_segments:True' not in "
      "os.getenv('PYTORCH_CUDA_ALLOC_CONF', '') or os.getenv('NCCL_GRAPH_REGISTER', '') == '0'",
      "Setting NCCL_GRAPH_REGISTER=0 to avoid illegal memory access when using CUDA Graph with "
      "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.",
      ("env.NCCL_GRAPH_REGISTER", "env.PYTORCH_CUDA_ALLOC_CONF") + _m("--cuda-graph-impl"),
      lambda c: c.cuda_graph_impl == "transformer_engine"
      and "expandable_segments:True" in str(c.env.get("PYTORCH_CUDA_ALLOC_CONF", ""))
      and str(c.env.get("NCCL_GRAPH_REGISTER", "")) != "0")
_rule("cuda-graph-full-iteration-modules", f"{ARGS}:1888",
      "assert not (args.cuda_graph_impl == 'full_iteration' and args.cuda_graph_modules)",
      "--cuda-graph-modules must be empty when --cuda-graph-impl=full_iteration.",
      _m("--cuda-graph-modules", "--cuda-graph-impl"),
      lambda c: c.cuda_graph_impl == "full_iteration" and c.set("--cuda-graph-modules"))
_rule("cuda-graph-cpu-offloading", f"{TC}:2468",
      "raise if self.cuda_graph_impl != 'none' and self.cpu_offloading and "
      "self.cuda_graph_impl != 'full_iteration'",
      "CUDA graphs not supported with CPU offloading.",
      _m("--cuda-graph-impl", "--cpu-offloading-num-layers"),
      lambda c: c.cuda_graph_impl not in ("none", "full_iteration")
      and (c.int("--cpu-offloading-num-layers", 0) or 0) > 0)
_rule("cuda-graph-full-recompute", f"{TC}:2523",
      "if self.cuda_graph_impl != 'none' and self.recompute_granularity and "
      "self.recompute_granularity != 'selective': assert self.cuda_graph_impl == 'full_iteration'",
      "full recompute is only supported with full iteration CUDA graph.",
      _m("--cuda-graph-impl", "--recompute-granularity"),
      lambda c: c.cuda_graph_impl not in ("none", "full_iteration") and c.recompute == "full")


def check(run: "Run") -> list[tuple[str, str]]:
    """(file position, message) of every rule the run breaks."""
    ctx = context(run)
    out = []
    for rule in RULES:
        try:
            broken = rule.refuses(ctx)
        except (TypeError, ValueError, ZeroDivisionError):
            broken = False  # a malformed value is reported by the flag checks
        if broken:
            out.append((_where(run, rule.keys), rule.text(ctx)))
    return out


def context(run: "Run") -> Context:
    s = run.settings
    fusion = s.gradient_accumulation_fusion != "off" and not run.flags.get("--no-gradient-accumulation-fusion")
    return Context(
        f=Flags(run.flags), world_size=s.target.gpus_per_node * s.target.nodes, gpu=s.target.gpu,
        transformer_engine=recipes.version(s.target.transformer_engine),
        env={k: _env(v) for k, v in s.env.items()}, gradient_accumulation_fusion=fusion)


def _where(run: "Run", keys: tuple[str, ...]) -> str:
    """Position of the first of `keys` the matrix sets ('' when all come from defaults)."""
    return run.where(*keys)


def _env(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
