"""Megatron's own cross-flag rules at render time, and the reviewed list of its assertions.

Every rule of fp8suite.config.rules has a case here: a matrix snippet Megatron refuses (the
rule's problem is reported) and the same snippet fixed (the matrix loads without a problem).
The reviewed list tools/fp8suite/data/megatron_assertions_0.19.2.json is checked for integrity
on every run, and against megatron-core's source where it is available (MEGATRON_SOURCE, the
folder holding `megatron/`, or an installed megatron-core).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from conftest import committed_matrices
from fp8suite.config import checks
from fp8suite.megatron import assertions as ma
from fp8suite.config import rules as mr
from fp8suite.common.errors import ConfigError
from fp8suite.config.matrix import load

BASE = {
    "name": "t",
    "run_name": "r",
    "target": {"gpu": "H100", "gpus_per_node": 8, "nodes": 1, "transformer_engine": "2.20", "cuda": "13.0"},
    "env": {"CUDA_DEVICE_MAX_CONNECTIONS": 1},
    "data": {"mock_data": True, "vocab_size": 1024},
    "megatron": {"x": {
        "--num-layers": 4, "--hidden-size": 256, "--num-attention-heads": 8, "--seq-length": 128,
        "--max-position-embeddings": 128, "--micro-batch-size": 1, "--global-batch-size": 16,
        "--train-iters": 10, "--lr": 0.001, "--use-distributed-optimizer": True, "--bf16": True,
        "--eval-interval": 5, "--eval-iters": 1}},
}

B200 = {"target/gpu": "B200"}
FP8 = {"--fp8-format": "hybrid"}
MXFP8 = {**B200, "--fp8-format": "hybrid", "--fp8-recipe": "mxfp8"}
FP4 = {**B200, "--fp4-format": "e2m1"}
PP2 = {"--pipeline-model-parallel-size": 2}
VPP = {**PP2, "--num-virtual-stages-per-pipeline-rank": 2}
FULL = {"--recompute-granularity": "full", "--recompute-method": "uniform", "--recompute-num-layers": 1}
FSDP2 = {"--use-torch-fsdp2": True, "--use-distributed-optimizer": False, "gradient_accumulation_fusion": "off",
         "--untie-embeddings-and-output-weights": True, "env/CUDA_DEVICE_MAX_CONNECTIONS": 8}
MFSDP = {"--use-megatron-fsdp": True, "--ckpt-format": "fsdp_dtensor", "env/CUDA_DEVICE_MAX_CONNECTIONS": 8}
STEP = {**VPP, "--overlap-param-gather-with-optimizer-step": True, "--overlap-param-gather": True,
        "--overlap-grad-reduce": True}
PAO = {"--use-precision-aware-optimizer": True}
DELAY = {"--delay-wgrad-compute": True, "--overlap-moe-expert-parallel-comm": True}
OFFLOAD = {"--fine-grained-activation-offloading": True, "env/NVTE_CPU_OFFLOAD_V1": 1}
NO_NAN = {"--no-check-for-nan-in-loss-and-grad": True}


def without(snippet: dict, *keys: str) -> dict:
    return {k: v for k, v in snippet.items() if k not in keys}


# rule id -> (snippet Megatron refuses, the same snippet fixed)
CASES: dict[str, tuple[dict, dict]] = {
    "attention-backend-local-spec": ({"--attention-backend": "local"},
                                     {"--attention-backend": "local", "--spec": ["local"]}),
    "eval-global-batch-size": ({"--eval-global-batch-size": 12}, {"--eval-global-batch-size": 24}),
    "virtual-pipeline-one-way": ({**VPP, "--num-layers-per-virtual-pipeline-stage": 1}, VPP),
    "virtual-pipeline-layers": ({**PP2, "--num-layers-per-virtual-pipeline-stage": 3},
                                {**PP2, "--num-layers-per-virtual-pipeline-stage": 1}),
    "interleaved-needs-pipeline": ({"--num-virtual-stages-per-pipeline-rank": 2}, VPP),
    "interleaved-pipeline-without-overlap": (
        {**VPP, "--no-overlap-p2p-communication": True},
        {**VPP, "--no-overlap-p2p-communication": True, "--pipeline-model-parallel-size": 4, "--num-layers": 8}),
    "seq-length-context-parallel": ({"--context-parallel-size": 2, "--seq-length": 126},
                                    {"--context-parallel-size": 2, "--seq-length": 128}),
    "hidden-size-heads": ({"--num-attention-heads": 7}, {"--num-attention-heads": 7, "--kv-channels": 32}),
    "max-position-embeddings": ({"--max-position-embeddings": 64}, {"--max-position-embeddings": 128}),
    "query-groups-tp": (
        {"--tensor-model-parallel-size": 4, "--group-query-attention": True, "--num-query-groups": 3},
        {"--tensor-model-parallel-size": 4, "--group-query-attention": True, "--num-query-groups": 2}),
    "sequence-parallel-needs-tp": ({"--sequence-parallel": True},
                                   {"--sequence-parallel": True, "--tensor-model-parallel-size": 2}),
    "tp-comm-overlap-needs-sp": ({"--tensor-model-parallel-size": 2, "--tp-comm-overlap": True},
                                 {"--tensor-model-parallel-size": 2, "--tp-comm-overlap": True,
                                  "--sequence-parallel": True}),
    "cuda-device-max-connections": ({"--tensor-model-parallel-size": 2, "env/CUDA_DEVICE_MAX_CONNECTIONS": 8},
                                    {"--tensor-model-parallel-size": 2, "env/CUDA_DEVICE_MAX_CONNECTIONS": 1}),
    "defer-embedding-wgrad-pipeline": ({"--defer-embedding-wgrad-compute": True},
                                       {"--defer-embedding-wgrad-compute": True, **PP2}),
    "defer-embedding-wgrad-fusion": (
        {"--defer-embedding-wgrad-compute": True, **PP2, "gradient_accumulation_fusion": "off"},
        {"--defer-embedding-wgrad-compute": True, **PP2, "gradient_accumulation_fusion": "on"}),
    "p2p-warmup-flush-overlap": (
        {**PP2, "--overlap-p2p-communication-warmup-flush": True, "--no-overlap-p2p-communication": True},
        {**PP2, "--overlap-p2p-communication-warmup-flush": True}),
    "overlap-param-gather-needs-dist-opt": (
        {"--overlap-param-gather": True, "--overlap-grad-reduce": True, "--use-distributed-optimizer": False},
        {"--overlap-param-gather": True, "--overlap-grad-reduce": True}),
    "overlap-param-gather-needs-grad-reduce": ({"--overlap-param-gather": True},
                                               {"--overlap-param-gather": True, "--overlap-grad-reduce": True}),
    "fsdp2-pipeline": ({**FSDP2, **PP2}, FSDP2),
    "fsdp2-dist-opt": ({**FSDP2, "--use-distributed-optimizer": True}, FSDP2),
    "fsdp2-grad-accumulation-fusion": ({**FSDP2, "gradient_accumulation_fusion": "on"}, FSDP2),
    "fsdp2-ckpt-format": ({**FSDP2, "--ckpt-format": "torch"}, {**FSDP2, "--ckpt-format": "torch_dcp"}),
    "fsdp2-untied": (without(FSDP2, "--untie-embeddings-and-output-weights"), FSDP2),
    "fsdp2-fp16": ({**FSDP2, "--fp16": True, "--bf16": False}, {**FSDP2, "--bf16": True}),
    "fsdp2-device-connections": ({**FSDP2, "env/CUDA_DEVICE_MAX_CONNECTIONS": 1}, FSDP2),
    "overlap-with-optimizer-step-dist-opt": ({**STEP, "--use-distributed-optimizer": False}, STEP),
    "overlap-with-optimizer-step-param-gather": (without(STEP, "--overlap-param-gather"),
                                                 without(STEP, "--overlap-param-gather-with-optimizer-step",
                                                         "--overlap-param-gather")),
    "overlap-with-optimizer-step-interleaved": (without(STEP, "--num-virtual-stages-per-pipeline-rank"), STEP),
    "megatron-fsdp-optimizer": ({**MFSDP, "--optimizer": "lion"}, {**MFSDP, "--optimizer": "adam"}),
    "megatron-fsdp-device-connections": ({**MFSDP, "env/CUDA_DEVICE_MAX_CONNECTIONS": 1}, MFSDP),
    "megatron-fsdp-ckpt-format": ({**MFSDP, "--ckpt-format": "torch_dist"}, MFSDP),
    "ddp-buckets": ({"--ddp-num-buckets": 4, "--ddp-bucket-size": 1000000}, {"--ddp-num-buckets": 4}),
    "ddp-buckets-positive": ({"--ddp-num-buckets": 0}, {"--ddp-num-buckets": 4}),
    "reuse-grad-buf-mxfp8": ({**MXFP8, "--reuse-grad-buf-for-mxfp8-param-ag": True},
                             {**MXFP8, "--reuse-grad-buf-for-mxfp8-param-ag": True, "--fp8-param-gather": True}),
    "fp4-and-fp8": ({**FP4, **FP8}, FP4),
    "fp4-param-gather-needs-fp4": ({**B200, "--fp4-param-gather": True}, {**FP4, "--fp4-param-gather": True}),
    "fp8-custom-recipe-factory": ({**FP8, "--fp8-recipe": "custom"},
                                  {**FP8, "--fp8-recipe": "custom", "--fp8-quantizer-factory": "pkg.mod.factory"}),
    "fp4-custom-recipe-factory": ({**FP4, "--fp4-recipe": "custom"},
                                  {**FP4, "--fp4-recipe": "custom", "--fp4-quantizer-factory": "pkg.mod.factory"}),
    "fp8-output-proj-needs-fp8": ({"--fp8-output-proj": True}, {**MXFP8, "--fp8-output-proj": True}),
    "fp8-output-proj-mxfp8": ({**FP8, "--fp8-recipe": "tensorwise", "--fp8-output-proj": True},
                              {**MXFP8, "--fp8-output-proj": True}),
    "delayed-recompute-layernorm": (
        {**FP8, "--fp8-recipe": "delayed", "--recompute-granularity": "selective", "--recompute-modules": ["layernorm"]},
        {**FP8, "--fp8-recipe": "tensorwise", "--recompute-granularity": "selective",
         "--recompute-modules": ["layernorm"]}),
    "fp8-recompute-modules-te": (
        {**FP8, "--fp8-recipe": "tensorwise", "--recompute-granularity": "selective",
         "--recompute-modules": ["layernorm"], "target/transformer_engine": "2.5"},
        {**FP8, "--fp8-recipe": "tensorwise", "--recompute-granularity": "selective",
         "--recompute-modules": ["layernorm"], "target/transformer_engine": "2.6"}),
    "fp16-and-bf16": ({"--fp16": True}, {"--fp16": True, "--bf16": False}),
    "main-grads-fp32-with-fp32-accumulation": (
        {**PAO, "--accumulate-allreduce-grads-in-fp32": True, "--main-grads-dtype": "bf16"},
        {**PAO, "--accumulate-allreduce-grads-in-fp32": True, "--main-grads-dtype": "fp32"}),
    "fp16-lm-cross-entropy": ({"--fp16-lm-cross-entropy": True},
                              {"--fp16-lm-cross-entropy": True, "--fp16": True, "--bf16": False}),
    "fp32-residual-connection": ({"--fp32-residual-connection": True, "--bf16": False},
                                 {"--fp32-residual-connection": True}),
    "min-lr-le-lr": ({"--min-lr": 0.01}, {"--min-lr": 0.0001}),
    "reuse-grad-buf-overlap-with-optimizer-step": (
        {**MXFP8, **STEP, "--fp8-param-gather": True, "--reuse-grad-buf-for-mxfp8-param-ag": True},
        {**MXFP8, **STEP, "--fp8-param-gather": True}),
    "precision-aware-optimizer-adam": ({**PAO, "--optimizer": "sgd"}, {**PAO, "--optimizer": "adam"}),
    "precision-aware-optimizer-dist-opt": ({**PAO, "--use-distributed-optimizer": False}, PAO),
    "main-grads-dtype-needs-precision-aware-optimizer": ({"--main-grads-dtype": "bf16"},
                                                         {**PAO, "--main-grads-dtype": "bf16"}),
    "main-params-dtype-needs-precision-aware-optimizer": ({"--main-params-dtype": "fp16"},
                                                          {**PAO, "--main-params-dtype": "fp16"}),
    "exp-avg-dtype-needs-precision-aware-optimizer": ({"--exp-avg-dtype": "bf16"}, {**PAO, "--exp-avg-dtype": "bf16"}),
    "exp-avg-sq-dtype-needs-precision-aware-optimizer": ({"--exp-avg-sq-dtype": "bf16"},
                                                         {**PAO, "--exp-avg-sq-dtype": "bf16"}),
    "optimizer-cpu-offload-precision-aware": ({"--optimizer-cpu-offload": True},
                                              {**PAO, "--optimizer-cpu-offload": True}),
    "optimizer-cpu-offload-fp8-param-gather": (
        {**PAO, **FP8, "--optimizer-cpu-offload": True, "--fp8-recipe": "tensorwise", "--fp8-param-gather": True},
        {**PAO, **FP8, "--optimizer-cpu-offload": True, "--fp8-recipe": "delayed", "--fp8-param-gather": True}),
    "distribute-saved-activations-tp": ({**FULL, "--distribute-saved-activations": True},
                                        {**FULL, "--distribute-saved-activations": True,
                                         "--tensor-model-parallel-size": 2}),
    "distribute-saved-activations-full": (
        {"--tensor-model-parallel-size": 2, "--distribute-saved-activations": True,
         "--recompute-granularity": "selective"},
        {**FULL, "--tensor-model-parallel-size": 2, "--distribute-saved-activations": True}),
    "distribute-saved-activations-method": (
        {"--tensor-model-parallel-size": 2, "--distribute-saved-activations": True, "--recompute-granularity": "full"},
        {**FULL, "--tensor-model-parallel-size": 2, "--distribute-saved-activations": True}),
    "selective-recompute-method": ({"--recompute-granularity": "selective", "--recompute-method": "uniform"},
                                   {"--recompute-granularity": "selective"}),
    "full-recompute-method": ({"--recompute-granularity": "full"}, FULL),
    "full-recompute-num-layers": (without(FULL, "--recompute-num-layers"), FULL),
    "selective-recompute-num-layers": ({"--recompute-granularity": "selective", "--recompute-num-layers": 1},
                                       {"--recompute-granularity": "selective"}),
    "distribute-saved-activations-sp": (
        {**FULL, "--tensor-model-parallel-size": 2, "--distribute-saved-activations": True,
         "--sequence-parallel": True},
        {**FULL, "--tensor-model-parallel-size": 2, "--distribute-saved-activations": True}),
    "recompute-modules-choices": ({"--recompute-granularity": "selective", "--recompute-modules": ["attn"]},
                                  {"--recompute-granularity": "selective", "--recompute-modules": ["core_attn"]}),
    "cpu-offloading-pipeline": ({"--cpu-offloading-num-layers": 1, **PP2}, {"--cpu-offloading-num-layers": 1}),
    "cpu-offloading-recompute": ({"--cpu-offloading-num-layers": 1, "--recompute-granularity": "selective"},
                                 {"--cpu-offloading-num-layers": 1}),
    "cpu-offloading-num-layers": ({"--cpu-offloading-num-layers": 4}, {"--cpu-offloading-num-layers": 1}),
    "fine-grained-offloading-te": ({**OFFLOAD, "--transformer-impl": "local"},
                                   {**OFFLOAD, "--transformer-impl": "transformer_engine"}),
    "fine-grained-offloading-env": (without(OFFLOAD, "env/NVTE_CPU_OFFLOAD_V1"), OFFLOAD),
    "delay-wgrad-te": ({**DELAY, "--transformer-impl": "local"}, {**DELAY, "--transformer-impl": "transformer_engine"}),
    "delay-wgrad-overlap-grad-reduce-te": ({**DELAY, "--overlap-grad-reduce": True, "target/transformer_engine": "2.7"},
                                           {**DELAY, "--overlap-grad-reduce": True, "target/transformer_engine": "2.8"}),
    "delay-wgrad-no-fusion-te": ({**DELAY, "gradient_accumulation_fusion": "off", "target/transformer_engine": "2.6"},
                                 {**DELAY, "gradient_accumulation_fusion": "off", "target/transformer_engine": "2.7"}),
    "delay-wgrad-needs-ep-overlap": ({"--delay-wgrad-compute": True}, DELAY),
    "cross-entropy-fusion-te": ({"--cross-entropy-loss-fusion": True, "--cross-entropy-fusion-impl": "te"},
                                {"--cross-entropy-loss-fusion": True, "--cross-entropy-fusion-impl": "native"}),
    "fused-residual-rmsnorm": ({"--fused-residual-rmsnorm": True},
                               {"--fused-residual-rmsnorm": True, "--normalization": "RMSNorm"}),
    "rotary-interleaved-rope-fusion-te": (
        {"--position-embedding-type": "rope", "--rotary-interleaved": True, "target/transformer_engine": "2.2"},
        {"--position-embedding-type": "rope", "--rotary-interleaved": True, "target/transformer_engine": "2.3"}),
    "bias-activation-fusion-te-activation": ({"--use-te-activation-func": True},
                                             {"--use-te-activation-func": True, "--no-bias-gelu-fusion": True}),
    "cuda-graph-deprecated-flags": ({"--enable-cuda-graph": True, "--cuda-graph-impl": "local"},
                                    {"--cuda-graph-impl": "local"}),
    "cuda-graph-enable-and-external": ({"--enable-cuda-graph": True, "--external-cuda-graph": True},
                                       {"--enable-cuda-graph": True}),
    "cuda-graph-scope-and-modules": (
        {"--cuda-graph-impl": "transformer_engine", "--cuda-graph-scope": ["attn"], "--cuda-graph-modules": ["attn"]},
        {"--cuda-graph-impl": "transformer_engine", "--cuda-graph-modules": ["attn"]}),
    "cuda-graph-full-iteration-nan-check": ({"--cuda-graph-impl": "full_iteration"},
                                            {"--cuda-graph-impl": "full_iteration", **NO_NAN}),
    "cuda-graph-te-expandable-segments": (
        {"--cuda-graph-impl": "transformer_engine", "env/PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
        {"--cuda-graph-impl": "transformer_engine", "env/PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
         "env/NCCL_GRAPH_REGISTER": 0}),
    "cuda-graph-full-iteration-modules": ({"--cuda-graph-impl": "full_iteration", **NO_NAN,
                                           "--cuda-graph-modules": ["attn"]},
                                          {"--cuda-graph-impl": "full_iteration", **NO_NAN}),
    "cuda-graph-cpu-offloading": ({"--cuda-graph-impl": "local", "--cpu-offloading-num-layers": 1},
                                  {"--cuda-graph-impl": "full_iteration", **NO_NAN, "--cpu-offloading-num-layers": 1}),
    "cuda-graph-full-recompute": ({"--cuda-graph-impl": "transformer_engine", **FULL},
                                  {"--cuda-graph-impl": "full_iteration", **NO_NAN, **FULL}),
}
RULES = {r.id: r for r in mr.RULES}


def matrix(snippet: dict) -> dict:
    """BASE with a snippet: `--flag` keys go to megatron.x (False removes), `a/b` keys set a.b."""
    m = copy.deepcopy(BASE)
    for key, value in snippet.items():
        if key.startswith("--"):
            m["megatron"]["x"][key] = value
        elif "/" in key:
            section, name = key.split("/")
            m[section][name] = value
        else:
            m[key] = value
    return m


def problems(tmp_path: Path, snippet: dict) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix(snippet), sort_keys=False))
    try:
        load(path)
    except ConfigError as err:
        return [str(p) for p in err.problems]
    return []


def test_every_rule_has_a_case():
    assert sorted(CASES) == sorted(RULES)


def test_base_matrix_is_accepted(tmp_path):
    assert problems(tmp_path, {}) == []


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule(rule_id, tmp_path):
    bad, fixed = CASES[rule_id]
    rule = RULES[rule_id]
    quoted = f"({rule.source}: {rule.condition}): "
    found = [p for p in problems(tmp_path, bad) if quoted in p]
    assert len(found) == 1, f"{rule_id} not reported for {bad}"
    # The problem names the snippet's key and quotes Megatron's source, condition and message,
    # the message's f-string fields filled with the run's values or left out.
    message = found[0].split(quoted, 1)[1]
    assert re.sub(r"\{[A-Za-z_][^{},]*\}", "", rule.message).split()[0] in message
    assert not re.search(r"\{(self|args|config)\.|\{[a-z_]+\(\)\}|\{invalid_modules\}", message), message
    assert found[0].startswith(f"{tmp_path / 'm.yaml'}: ")
    assert problems(tmp_path, fixed) == [], f"{rule_id}: the fixed snippet {fixed} is still refused"


def test_quoted_messages_fill_their_fields_with_the_run_values(tmp_path):
    """An f-string field of Megatron's message shows the run's value ("num_query_groups (8) must
    be a multiple or divisor of tensor_model_parallel_size (4)"), never `{self....}`."""
    found = problems(tmp_path, {"--tensor-model-parallel-size": 4, "--group-query-attention": True,
                                "--num-query-groups": 3})
    line = next(p for p in found if "query_groups" in p)
    assert "num_query_groups (3) must be a multiple or divisor of tensor_model_parallel_size (4)." in line
    found = problems(tmp_path, {"--recompute-granularity": "full", "--recompute-method": "uniform"})
    line = next(p for p in found if "recompute_num_layers must" in p)
    assert line.endswith("When using recompute_granularity: full recompute_num_layers must be between 1 and "
                         "num_layers_per_pipeline_rank: 4")


def test_a_field_without_a_known_value_is_left_out():
    rule = RULES["query-groups-tp"]
    assert rule.text().endswith("num_query_groups must be a multiple or divisor of tensor_model_parallel_size.")
    assert "{" not in rule.text().split("): ", 1)[1]


def test_problem_points_at_the_flag(tmp_path):
    found = problems(tmp_path, {"--cross-entropy-loss-fusion": True, "--cross-entropy-fusion-impl": "te"})
    assert found == [f"{tmp_path / 'm.yaml'}: megatron.x.--cross-entropy-fusion-impl: run r: "
                     f"{RULES['cross-entropy-fusion-te'].text()}"]


def test_committed_matrices_pass_every_rule():
    """Part of the pre-flight: every run of every committed matrix passes Megatron's rules."""
    for path in committed_matrices():
        _, runs = load(path)  # raises ConfigError on any problem
        for run in runs:
            assert mr.check(run) == [], (path.name, run.name)


# --- the reviewed list ---------------------------------------------------------------------

LIST = ma.load("0.19.2")


def test_reviewed_list_integrity():
    assert LIST is not None and LIST["megatron_core"] == "0.19.2"
    entries = LIST["assertions"]
    existing = set(RULES) | {f"checks.{fn.__name__}" for fn in checks.RULES}
    existing.add("limits.POSITIVE_FLAGS")  # the loader's value ranges (fp8suite.config.limits)
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    for e in entries:
        a = ma.Assertion(e["file"], e["line"], e["function"], e["kind"], e["when"], e["condition"], e["message"])
        assert a.id == e["id"], e
        assert e["status"] in ("ported", "not ported"), f"{e['file']}:{e['line']} is {e['status']}"
        if e["status"] == "ported":
            assert e["rule"] in existing, f"{e['file']}:{e['line']} names no existing rule: {e['rule']}"
        else:
            assert e["rule"] is None and len(e["reason"]) > 20, e
    listed = {e["rule"] for e in entries if e["status"] == "ported"}
    assert set(RULES) <= listed, f"rules missing from the list: {sorted(set(RULES) - listed)}"
    # Each rule quotes the place of an assertion it ports.
    places = {f"{e['file']}:{e['line']}": e["rule"] for e in entries}
    for rule in mr.RULES:
        assert places.get(rule.source) == rule.id, rule.id


def _megatron_source() -> Path | None:
    if os.environ.get("MEGATRON_SOURCE"):
        return Path(os.environ["MEGATRON_SOURCE"])
    spec = importlib.util.find_spec("megatron")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]).parent
    return None


@pytest.mark.skipif(_megatron_source() is None, reason="megatron-core's source is not here "
                    "(set MEGATRON_SOURCE to the folder holding megatron/)")
def test_reviewed_list_covers_the_source():
    found = {a.id: a for a in ma.extract(_megatron_source())}
    listed = {e["id"] for e in LIST["assertions"]}
    missing = [f"{a.file}:{a.line}" for i, a in found.items() if i not in listed]
    stale = sorted(listed - set(found))
    assert not missing and not stale, f"unreviewed: {missing}; no longer in the source: {stale}"


# --- the extractor, on a small source tree -------------------------------------------------

SOURCE = {
    "megatron/training/arguments.py": '''
def validate_args(args, defaults={}):
    assert args.a > 0, "a must be positive"
    if args.b:
        if args.c == 'x':
            raise ValueError(f"no x with b {args.b}")
    else:
        assert args.d
    _helper(args)
    for name in args.names:
        assert name, "empty name"

def _helper(args):
    assert not (args.e and args.f), "e and f exclude each other"

def unrelated(args):
    assert False, "not part of validation"
''',
    "megatron/core/transformer/transformer_config.py": '''
class TransformerConfig:
    def __post_init__(self):
        self._check()
        if self.fp8 and self.fp4:
            raise ValueError("fp4 and fp8")

    def _check(self):
        assert self.layers > 0

class MLATransformerConfig(TransformerConfig):
    def __post_init__(self):
        super().__post_init__()
''',
    "megatron/core/model_parallel_config.py": '''
class ModelParallelConfig:
    def __post_init__(self):
        try:
            import x
        except ImportError:
            raise RuntimeError("needs x")
''',
    "megatron/core/optimizer/optimizer_config.py": "class OptimizerConfig:\n    def __post_init__(self):\n        pass\n",
    "megatron/core/distributed/distributed_data_parallel_config.py":
        "class DistributedDataParallelConfig:\n    def __post_init__(self):\n        pass\n",
}


@pytest.fixture
def source(tmp_path):
    for name, text in SOURCE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_extract_finds_every_assert_and_raise_with_its_conditions(source):
    found = [(a.function, a.kind, a.when, a.condition, a.message) for a in ma.extract(source)]
    assert found == [
        ("validate_args", "assert", "", "args.a > 0", "'a must be positive'"),
        ("validate_args", "raise", "args.b and args.c == 'x'", "", "ValueError(f'no x with b {args.b}')"),
        ("validate_args", "assert", "not (args.b)", "args.d", ""),
        ("validate_args", "assert", "for name in args.names", "name", "'empty name'"),
        ("_helper", "assert", "", "not (args.e and args.f)", "'e and f exclude each other'"),
        ("TransformerConfig.__post_init__", "raise", "self.fp8 and self.fp4", "", "ValueError('fp4 and fp8')"),
        ("TransformerConfig._check", "assert", "", "self.layers > 0", ""),
        ("ModelParallelConfig.__post_init__", "raise", "except ImportError", "", "RuntimeError('needs x')"),
    ]


def test_extract_refuses_a_missing_root_function(source):
    path = source / "megatron/core/optimizer/optimizer_config.py"
    path.write_text("class OptimizerConfig:\n    pass\n")
    with pytest.raises(ValueError, match="no function OptimizerConfig.__post_init__"):
        ma.extract(source)


def test_refresh_keeps_reviews_and_marks_new_assertions(source, tmp_path):
    out = tmp_path / "list.json"
    path, total, new = ma.refresh(source, "9.9", out)
    assert (path, total, new) == (out, 8, 8)
    data = json.loads(out.read_text())
    data["assertions"][0].update(status="not ported", reason="a reason long enough to be a reason")
    out.write_text(json.dumps(data))
    args = source / "megatron/training/arguments.py"
    args.write_text("\n\n" + args.read_text().replace('"empty name"', '"a name is needed"'))
    _, total, new = ma.refresh(source, "9.9", out)
    entries = json.loads(out.read_text())["assertions"]
    assert (total, new) == (8, 1)  # moved lines keep their review; the changed message is new
    assert entries[0]["status"] == "not ported" and entries[0]["line"] == SOURCE_LINE_OF_A + 2
    assert [e["status"] for e in entries].count("unreviewed") == 7


SOURCE_LINE_OF_A = 3
