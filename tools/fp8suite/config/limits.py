"""Ranges and formats of matrix values: what a number or a name may be before it is used.

The schema (schema.py) checks types; these rules check values, on each fragment of a matrix
(its top level and every axis value) before any arithmetic runs on them, so that a zero
parallel degree is a problem naming its key, not a ZeroDivisionError, and a value that
reaches a script or an `#SBATCH` line has a shape the renderer can write safely.

Megatron flags: a size, count, batch size, vocabulary or parallel degree must be a whole
number >= 1; any other integer flag >= 0 (except the few Megatron gives a negative meaning);
every float finite, learning rates and weight decay >= 0, dropouts and Adam betas in [0, 1].
Integers stay below 2^63 (Megatron and bash keep them in 64 bits).
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

from ..megatron import recipes
from . import reserved
from ..common.errors import Problem

MAX_NAME = 100
"""Longest study, axis-value or run name (run names become file names with suffixes)."""
MAX_RUNS = 256
"""Most runs one matrix expands to (the product of its axes, before excludes)."""
MAX_EXPANDED = 500_000
"""Most values x runs one render expands (each run carries its own copy of the settings):
keeps a render within seconds and a few hundred MB."""
MAX_GPUS_PER_NODE = 64
MAX_NODES = 100_000
MAX_MIN_FREE_GB = 1e9
"""min_free_gb is written into the script as MB in bash arithmetic (64-bit, up to 9.2e18):
an exabyte at most, far from the overflow."""
MAX_INT = 2 ** 63 - 1

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Study, axis-value and run names (used whole: `fullmatch`, never `match`)."""
IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
"""Axis and Megatron group names."""
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VERSION = re.compile(r"\d+(\.\d+){0,3}")
SPLIT = re.compile(r" *\d+(\.\d*)?( *[,/] *\d+(\.\d*)?){0,2} *")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters (C0, DEL, C1) and Unicode line breaks: refused in every key and value."""
DIRECTIVE_VALUE = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029\\\"'`$;|&<>]+")
"""What an `#SBATCH` line may carry: no whitespace, quotes, backslashes or shell syntax."""
SBATCH_OPTION = re.compile(r"--[A-Za-z][A-Za-z0-9-]*(=" + DIRECTIVE_VALUE.pattern + ")?")


PATH_SETTINGS = (("data", "data_path"), ("data", "tokenizer_model"), ("checkpoint", "dir"),
                 ("wandb", "save_dir"), ("slurm", "container_mounts"), (None, "triton_cache_dir"))
"""(section, key) of the matrix's folder and file settings, checked by
reserved.path_value_problem (log_dir has its own, stricter rule)."""

POSITIVE_FLAGS = frozenset("""
--num-layers --hidden-size --ffn-hidden-size --num-attention-heads --num-query-groups --kv-channels
--seq-length --max-position-embeddings --decoder-seq-length --encoder-seq-length --decoder-num-layers
--encoder-num-layers --micro-batch-size --global-batch-size --eval-micro-batch-size
--eval-global-batch-size --batch-size --tensor-model-parallel-size --pipeline-model-parallel-size
--context-parallel-size --expert-model-parallel-size --expert-tensor-parallel-size
--model-parallel-size --num-layers-per-virtual-pipeline-stage --num-virtual-stages-per-pipeline-rank
--num-distributed-optimizer-instances --train-iters --train-samples --log-interval --eval-interval
--save-interval --tensorboard-log-interval --exit-interval --vocab-size --padded-vocab-size
--make-vocab-size-divisible-by --num-experts --moe-ffn-hidden-size --moe-router-topk
--moe-shared-expert-intermediate-size --fp8-interval --rotary-base
--hysteresis --num-channels --patch-dim --img-h --img-w --mamba-num-heads --mamba-head-dim
--mamba-state-dim --mamba-num-groups --q-lora-rank --kv-lora-rank --qk-head-dim --v-head-dim
--qk-pos-emb-head-dim --mtp-num-layers --exit-duration-in-mins --recompute-num-layers
--ddp-bucket-size --distributed-timeout-minutes
""".split()) | {recipes.AMAX_FLAGS[0]}  # the amax history length
"""Sizes, counts, batch sizes, vocabularies, parallel degrees, intervals: whole numbers >= 1."""

NEGATIVE_INT_FLAGS = frozenset("""
--inference-batch-times-seqlen-threshold --rl-default-top-k --fp8-margin --null-tokenizer-eod-id
--null-tokenizer-pad-id --logging-level
""".split())
"""Integer flags to which Megatron gives a negative value a meaning (e.g. -1: off)."""

UNIT_FLOATS = frozenset("""
--hidden-dropout --attention-dropout --adam-beta1 --adam-beta2 --lion-beta1 --lion-beta2
--lr-warmup-fraction --rotary-percent --sgd-momentum --muon-momentum --fim-rate --mask-prob
""".split())
"""Float flags that are probabilities or momenta: in [0, 1]."""

NON_NEGATIVE_FLOATS = frozenset("""
--lr --min-lr --decoupled-lr --decoupled-min-lr --lr-warmup-init --weight-decay --start-weight-decay
--end-weight-decay --clip-grad --init-method-std --embedding-init-method-std --adam-eps --norm-epsilon
--initial-loss-scale --min-loss-scale --loss-scale --loss-scale-window --moe-aux-loss-coeff
--moe-z-loss-coeff --head-lr-mult
""".split())
"""Learning rates, decays, scales, epsilons: >= 0."""


def flag_value_problem(flag: str, value: Any, kind: Optional[str]) -> str:
    """Why `flag: value` is out of range ('' when fine); `kind` is the parser's type
    ("int", "float" or None), from the flag snapshot when there is one."""
    if flag in POSITIVE_FLAGS:
        kind = "int"
    elif flag in UNIT_FLOATS or flag in NON_NEGATIVE_FLOATS:
        kind = "float"
    if kind not in ("int", "float") or value is None or isinstance(value, bool):
        return ""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, (bool, dict, list)) or item is None:
            continue  # the type check reports these
        reason = _int_problem(flag, item) if kind == "int" else _float_problem(flag, item)
        if reason:
            return reason
    return ""


def _int_problem(flag: str, item: Any) -> str:
    try:
        number = int(str(item).strip()) if not isinstance(item, int) else item
    except ValueError:
        return f"expects a whole number, got {item!r}"
    if isinstance(item, float) or abs(number) > MAX_INT:
        return f"expects a whole number below 2^63, got {item!r}"
    if flag in POSITIVE_FLAGS and number < 1:
        return f"must be at least 1, got {number}"
    if number < 0 and flag not in NEGATIVE_INT_FLAGS:
        return f"must not be negative, got {number}"
    return ""


def _float_problem(flag: str, item: Any) -> str:
    try:
        number = float(item)
    except (TypeError, ValueError, OverflowError):
        return f"expects a number, got {item!r}"
    if not math.isfinite(number):
        return f"must be a finite number, got {item!r}"
    if flag in UNIT_FLOATS and not 0 <= number <= 1:
        return f"must be between 0 and 1, got {item!r}"
    if flag in NON_NEGATIVE_FLOATS and number < 0:
        return f"must not be negative, got {item!r}"
    return ""


def check_settings(clean: dict, prefix: str, file: str, problems: list[Problem]) -> None:
    """Ranges and formats of the suite's own settings in one schema-checked fragment;
    offending keys are removed from `clean` so that nothing later computes with them."""

    def bad(section: Optional[str], key: str, message: str) -> None:
        where = ".".join(p for p in (prefix, section, key) if p)
        problems.append(Problem(file, where, message))
        holder = clean.get(section) if section else clean
        if isinstance(holder, dict):
            holder.pop(key, None)

    target = clean.get("target")
    if isinstance(target, dict):
        for key, top in (("gpus_per_node", MAX_GPUS_PER_NODE), ("nodes", MAX_NODES)):
            value = target.get(key)
            if isinstance(value, int) and not 1 <= value <= top:
                bad("target", key, f"must be between 1 and {top}, got {value}")
        for key in ("transformer_engine", "cuda", "megatron_core"):
            value = target.get(key)
            if isinstance(value, str) and not VERSION.fullmatch(value):
                bad("target", key, f"{value!r} is not a version number such as \"2.3\"")
    data = clean.get("data")
    if isinstance(data, dict):
        vocab = data.get("vocab_size")
        if isinstance(vocab, int) and not 1 <= vocab < 2 ** 31:
            bad("data", "vocab_size", f"must be between 1 and 2^31 - 1, got {vocab}")
        split = data.get("split")
        # Megatron reads up to three numbers and divides by their sum.
        if isinstance(split, str) and not (
                SPLIT.fullmatch(split) and sum(float(x) for x in re.findall(r"[.0-9]+", split)) > 0):
            bad("data", "split", f"{split!r} is not train,validation,test proportions such as \"99,1,0\"")
    if "min_free_gb" in clean:
        value = clean["min_free_gb"]
        if isinstance(value, (int, float)) and not (math.isfinite(value) and 0 <= value <= MAX_MIN_FREE_GB):
            bad(None, "min_free_gb", f"must be a number of GB between 0 and {MAX_MIN_FREE_GB:g}, "
                f"got {value!r}")
    checkpoint = clean.get("checkpoint")
    if isinstance(checkpoint, dict):
        interval = checkpoint.get("save_interval")
        if isinstance(interval, int) and not 1 <= interval < 2 ** 31:
            bad("checkpoint", "save_interval", f"must be between 1 and 2^31 - 1 iterations, got {interval}")
        if checkpoint.get("dir") == "":
            bad("checkpoint", "dir", "must not be empty")
    if clean.get("triton_cache_dir") == "":
        bad(None, "triton_cache_dir", "must not be empty")
    log_dir = clean.get("log_dir")
    if isinstance(log_dir, str) and not DIRECTIVE_VALUE.fullmatch(log_dir):
        bad(None, "log_dir", f"{log_dir!r}: a log folder is written into #SBATCH --output, so it "
            "must be non-empty, without spaces, quotes, backslashes or any of $`;|&<>")
    elif isinstance(log_dir, str) and reserved.log_folder_problem(log_dir):
        bad(None, "log_dir", f"{log_dir!r} {reserved.log_folder_problem(log_dir)}")
    for section, key in PATH_SETTINGS:
        holder = clean.get(section) if section else clean
        value = holder.get(key) if isinstance(holder, dict) else None
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and reserved.path_value_problem(item):
                bad(section, key, f"{item!r} {reserved.path_value_problem(item)}")
                break
    slurm = clean.get("slurm")
    if isinstance(slurm, dict):
        options = slurm.get("sbatch_options")
        if isinstance(options, list):
            for i, option in enumerate(options):
                if isinstance(option, str) and not SBATCH_OPTION.fullmatch(option):
                    bad("slurm", "sbatch_options", f"entry {i} {option!r} must be one long option "
                        "(--name or --name=value) without spaces, quotes or any of $`;|&<>")
                    break
                if isinstance(option, str) and reserved.sbatch_option_problem(option):
                    bad("slurm", "sbatch_options", f"entry {i} {option!r}: "
                        f"{reserved.sbatch_option_problem(option)}")
                    break
        image = slurm.get("container_image")
        if isinstance(image, str) and not DIRECTIVE_VALUE.fullmatch(image):
            bad("slurm", "container_image", f"{image!r} must be a non-empty image name without "
                "spaces, quotes or any of $`;|&<>")
    env = clean.get("env")
    if isinstance(env, dict):
        for name, value in list(env.items()):
            reason = reserved.env_name_problem(name)
            if reason:
                bad("env", name, f"cannot be set by the matrix: {reason}")
            elif isinstance(value, str) and reserved.env_value_problem(value):
                bad("env", name, f"{value!r} {reserved.env_value_problem(value)}")
