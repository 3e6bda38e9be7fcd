"""The memory pre-flight: its estimate against every committed real log, and its verdicts.

Every log under logs/ and tests/data/real_h200x2/ with a sidecar naming its matrix is found
automatically; the estimate for the run the sidecar records (with its launch overrides: extra
Megatron args and GPUS_PER_NODE / NNODES) must be within 10% of the peak the log measured:
Megatron's `max allocated`, or for a run killed by CUDA out-of-memory, what PyTorch had
allocated plus what it asked for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, committed_matrices
import render
import run as run_cli
from fp8suite.config import memory
from fp8suite.common import paths
from fp8suite.logs.parse import read_log
from fp8suite.config.matrix import load

TOLERANCE = 0.10
# PyTorch's out-of-memory message: "Tried to allocate 3.91 GiB ... Of the allocated memory
# 126.02 GiB is allocated by PyTorch"
OOM = re.compile(r"Tried to allocate ([0-9.]+) GiB.*?Of the allocated memory ([0-9.]+) GiB is allocated by PyTorch")


def committed_logs() -> list[Path]:
    """Every committed real log with a sidecar, one per launch: a node k > 0 log of a launch by
    hand as several nodes is left out (Megatron's rank 0, on node 0, prints the memory lines),
    and so is a launch that crashed before its first iteration with no out-of-memory message
    (it measured nothing)."""
    logs = sorted((REPO / "logs").glob("**/*.log")) + sorted((REPO / "tests" / "data" / "real_h200x2").glob("*.log"))
    return [log for log in logs if _sidecar(log).exists() and paths.log_name(log.stem)[1] == 0
            and not _crashed_before_training(log)]


def _crashed_before_training(log: Path) -> bool:
    parsed = read_log(log)
    return (not parsed.steps.iterations and not parsed.memory_peak_mb
            and not OOM.search(log.read_text(errors="replace")))


def _sidecar(log: Path) -> Path:
    return log.with_name(log.name[: -len(".log")] + ".meta.json")


def measured_peak_gib(log: Path) -> float | None:
    """The log's peak allocated memory in GiB (Megatron prints MiB as "MB")."""
    peak = read_log(log).memory_peak_mb.get("max allocated")
    gib = peak / 1024 if peak else None
    oom = OOM.search(log.read_text(errors="replace"))
    if oom:
        demand = float(oom.group(1)) + float(oom.group(2))
        gib = max(gib or 0.0, demand)
    return gib


_MATRICES: dict[str, list] = {}


def estimate_for(log: Path):
    meta = json.loads(_sidecar(log).read_text())
    if meta["matrix"] not in _MATRICES:
        _MATRICES[meta["matrix"]] = load(REPO / meta["matrix"])[1]
    run = next(r for r in _MATRICES[meta["matrix"]] if r.name == meta["run"])
    overrides = meta.get("overrides") or {}
    return memory.for_run(run, overrides.get("args", []), overrides.get("env", {}))


def test_every_committed_log_is_measured():
    logs = committed_logs()
    assert len(logs) >= 17
    assert {p.parent.name for p in logs} >= {"h200_8b", "h200_8b_depth16", "convergence_1gpu", "real_h200x2"}


@pytest.mark.parametrize("log", committed_logs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_estimate_within_ten_percent_of_measured_peak(log):
    measured = measured_peak_gib(log)
    assert measured, f"{log} has no memory report"
    result = estimate_for(log)
    assert result is not None
    est, _ = result
    assert abs(est.total / measured - 1) <= TOLERANCE, (
        f"{log.name}: estimate {est.describe()} vs measured {measured:.2f} GiB")


def test_verdicts_match_what_happened_on_two_h200s():
    """BF16 without expandable segments ran out of memory with fragmentation (a warning naming
    expandable segments, with which it ran, and the margin); tensorwise FP8 completed close to
    the limit (a warning)."""
    data = REPO / "tests" / "data" / "real_h200x2"
    bf16 = estimate_for(data / "train_llama3_8b_h200_bf16.1.log")[1]
    fp8 = estimate_for(data / "train_llama3_8b_h200_fp8_cs.1.log")[1]
    assert bf16.level == "warning", bf16.message
    assert "6.7 GiB below the 136.5 GiB limit" in bf16.message
    assert "set env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (usable 136.5 GiB)" in bf16.message
    assert "4 GPUs (target.gpus_per_node: 4: the distributed optimizer shards its state further) -> 107.4 GiB, " \
        "fits with 21.5 GiB to spare" in bf16.message
    assert fp8.level == "warning", fp8.message


# Measured on two H200s with experiments/h200x2_8b_bench.yaml before blockwise got BF16 Adam
# moments (no committed log yet): delayed, tensorwise and tensorwise 1F1L ran; blockwise ran out
# of memory in iteration 2 with 134 GiB allocated and 3.9 GiB more requested.
BENCH_BLOCKWISE_FP32_MOMENTS_GIB = 134 + 3.9


def test_bench_matrix_runs_measured_on_two_h200s():
    runs = {r.name.rsplit("h200x2_", 1)[1]: r for r in load(REPO / "experiments" / "h200x2_8b_bench.yaml")[1]}
    for name in ("fp8", "fp8_cs", "fp8_cs_1F1L"):
        assert memory.for_run(runs[name])[1].level != "problem", name
    blockwise = runs["fp8_blockwise"]
    flags = {k: v for k, v in blockwise.flags.items()
             if k not in ("--use-precision-aware-optimizer", "--exp-avg-dtype", "--exp-avg-sq-dtype")}
    e = memory.estimate(flags, 2, VOCAB)
    assert abs(e.total / BENCH_BLOCKWISE_FP32_MOMENTS_GIB - 1) <= TOLERANCE
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert memory.check(e, "H200", env, flags, 2, VOCAB).level == "problem"
    assert memory.for_run(blockwise)[1].level == "ok"  # with BF16 moments it fits


def test_unmodelled_features_are_named():
    e = est(num_experts=8)
    assert e.notes == ("mixture-of-experts layers",)
    assert "not modelled: mixture-of-experts layers" in memory.check(e, "H100", {}, LLAMA8B, 2).message


# --- the model's parts, one behaviour each --------------------------------------------------

LLAMA8B = {
    "--num-layers": 32, "--hidden-size": 4096, "--ffn-hidden-size": 14336, "--num-attention-heads": 32,
    "--group-query-attention": True, "--num-query-groups": 8, "--kv-channels": 128, "--seq-length": 8192,
    "--max-position-embeddings": 8192, "--position-embedding-type": "rope", "--normalization": "RMSNorm",
    "--swiglu": True, "--untie-embeddings-and-output-weights": True, "--disable-bias-linear": True,
    "--micro-batch-size": 1, "--global-batch-size": 16, "--bf16": True, "--use-distributed-optimizer": True,
}
VOCAB = 128256


def est(world=2, **changes):
    flags = dict(LLAMA8B)
    for key, value in changes.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            flags.pop(flag, None)
        else:
            flags[flag] = value
    return memory.estimate(flags, world, VOCAB)


def test_parameter_count_is_llama3_8b():
    e = est(world=1)
    params = e.parts["weights"] * memory.GIB / 2
    assert params == pytest.approx(8.03e9, rel=0.002)  # Megatron: "Total number of parameters in billions: 8.03"


def test_static_part_is_megatrons_theoretical_count():
    # theoretical_memory_usage.py: 6 + 12/DP bytes per parameter with the distributed optimizer;
    # the 2xH200 log prints "weight and optimizer=91899.05 MB".
    e = est(world=2)
    static = e.parts["weights"] + e.parts["gradients"] + e.parts["optimizer"]
    assert static * 1024 == pytest.approx(91899.05, rel=0.001)


@pytest.mark.parametrize("world", [1, 2, 4, 8, 16])
def test_distributed_optimizer_shards_over_data_parallel(world):
    one = est(world=1).parts["optimizer"]
    assert est(world=world).parts["optimizer"] == pytest.approx(one / world)
    assert est(world=world, use_distributed_optimizer=None).parts["optimizer"] == pytest.approx(one)


@pytest.mark.parametrize("flags,bytes_per_param", [
    ({}, 12), ({"use_precision_aware_optimizer": True, "exp_avg_dtype": "bf16", "exp_avg_sq_dtype": "bf16"}, 8),
    ({"use_precision_aware_optimizer": True, "exp_avg_dtype": "fp8", "exp_avg_sq_dtype": "bf16",
      "main_params_dtype": "fp16"}, 5),
    ({"exp_avg_dtype": "bf16"}, 12),  # without --use-precision-aware-optimizer Megatron keeps fp32
    ({"optimizer": "sgd"}, 8),
])
def test_optimizer_state_dtypes(flags, bytes_per_param):
    e = est(world=1, **flags)
    assert e.parts["optimizer"] / e.parts["weights"] == pytest.approx(bytes_per_param / 2)


@pytest.mark.parametrize("flags,bytes_per_param", [({}, 4), ({"grad_reduce_in_bf16": True}, 2),
                                                   ({"bf16": None}, 4)])
def test_gradient_buffer_dtype(flags, bytes_per_param):
    e = est(world=1, **flags)
    weight_bytes = 2 if "bf16" not in flags else 4
    assert e.parts["gradients"] / e.parts["weights"] == pytest.approx(bytes_per_param / weight_bytes)


def test_optimizer_cpu_offload_moves_its_share():
    full = est(world=1).parts["optimizer"]
    assert est(world=1, optimizer_cpu_offload=True, optimizer_offload_fraction=0.75).parts["optimizer"] == \
        pytest.approx(full / 4)


@pytest.mark.parametrize("recipe,param_gather,copies", [
    ("delayed", True, 0.0), ("tensorwise", True, 0.0), ("tensorwise", False, 2.0),
    ("blockwise", False, 2.0), ("mxfp8", False, 2 * (1 + 1 / 32)),
])
def test_fp8_weight_copies_per_recipe(recipe, param_gather, copies):
    e = est(world=2, fp8_format="hybrid", fp8_recipe=recipe, fp8_param_gather=param_gather or None)
    linear = memory._linear_params_per_layer(memory.shape(memory.Flags(LLAMA8B), 2, VOCAB)) * 32
    assert e.parts["low-precision weight copies"] * memory.GIB == pytest.approx(linear * copies)
    assert e.parts["weights"] == pytest.approx(est(world=2).parts["weights"])  # FP8 data + transpose = 2 bytes


def test_bf16_first_and_last_layers_have_no_fp8_copies():
    all_fp8 = est(fp8_format="hybrid", fp8_recipe="blockwise").parts["low-precision weight copies"]
    one_each = est(fp8_format="hybrid", fp8_recipe="blockwise", first_last_layers_bf16=True,
                   num_layers_at_start_in_bf16=1, num_layers_at_end_in_bf16=1).parts["low-precision weight copies"]
    assert one_each == pytest.approx(all_fp8 * 30 / 32)


def test_fp8_saves_activations_in_fp8():
    assert est(fp8_format="hybrid", fp8_recipe="tensorwise").parts["activations"] < est().parts["activations"]


def test_activations_follow_megatrons_per_layer_figure():
    # Megatron's log: "Activation memory footprint per transformer layer (precise, without SP): 1088.0 MB"
    # for this shape in BF16; the per-layer model here counts the same bytes for Llama-3-8B.
    per_layer = (est(num_layers=32).parts["activations"] - est(num_layers=16).parts["activations"]) / 16
    assert per_layer * 1024 == pytest.approx(1088.0, rel=0.01)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_full_recompute_keeps_layer_inputs(n):
    full = est(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=n)
    layer = (est().parts["activations"] - est(num_layers=16).parts["activations"]) / 16
    outside = est().parts["activations"] - 32 * layer  # final norm, token ids
    inputs = 8192 * 4096 * 2 / memory.GIB
    assert full.parts["activations"] == pytest.approx(outside + 32 / n * inputs + n * layer, rel=0.001)


def test_unfused_attention_stores_the_score_matrix():
    assert est(attention_backend="unfused").parts["activations"] > 3 * est(attention_backend="fused").parts["activations"]


def test_tensor_and_sequence_parallel_divide_activations():
    base = est(world=2).parts["activations"]
    tp = est(world=2, tensor_model_parallel_size=2).parts["activations"]
    sp = est(world=2, tensor_model_parallel_size=2, sequence_parallel=True).parts["activations"]
    assert base / 2 < tp < base and sp == pytest.approx(base / 2, rel=0.01)


def test_pipeline_first_stage_holds_micro_batches_in_flight():
    e = est(world=4, pipeline_model_parallel_size=4, global_batch_size=64)
    assert e.rank == "first pipeline stage"
    last = memory._stage_parts(memory.Flags({**LLAMA8B, "--pipeline-model-parallel-size": 4,
                                             "--global-batch-size": 64}),
                               memory.shape(memory.Flags({**LLAMA8B, "--pipeline-model-parallel-size": 4,
                                                          "--global-batch-size": 64}), 4, VOCAB), False, True)
    assert e.parts["activations"] > 3 * last["activations"]


def test_logits_are_bf16_plus_fp32_copies():
    assert est().parts["logits"] * memory.GIB == pytest.approx(8192 * VOCAB * 6)
    assert est(tensor_model_parallel_size=2).parts["logits"] * memory.GIB == pytest.approx(8192 * VOCAB * 3)
    # The fused native cross entropy (torch.compile'd) keeps one more fp32 copy; TE's is refused.
    fused = est(cross_entropy_loss_fusion=True, cross_entropy_fusion_impl="native")
    assert fused.parts["logits"] * memory.GIB == pytest.approx(8192 * VOCAB * 10)
    assert est(cross_entropy_loss_fusion=True).parts["logits"] == fused.parts["logits"]  # native is the default


def test_usable_memory_and_expandable_segments():
    plain = memory.usable_gib("H200", {})
    expandable = memory.usable_gib("H200", {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"})
    capacity = 143771 / 1024  # nvidia-smi's total on the H200s of tests/data/real_h200x2
    assert memory.capacity_gib("H200") == pytest.approx(capacity)
    assert expandable == pytest.approx(capacity - memory.NON_PYTORCH_GIB)
    assert plain == pytest.approx(expandable - 0.054 * capacity)
    # What the out-of-memory message there accounted for: 126.02 allocated + 7.62 reserved + 2.88 free.
    assert capacity - memory.NON_PYTORCH_GIB == pytest.approx(126.02 + 7.62 + 2.88, abs=0.05)
    assert memory.usable_gib("A100", {}) is None


def test_check_levels_and_remedies():
    e = est()
    usable = memory.usable_gib("H200", {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"})
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    for gpu, level in (("H200", "warning"), ("H100", "problem"), ("B200", "ok")):
        v = memory.check(e, gpu, env, LLAMA8B, 2)
        assert v.level == level, (gpu, v.message)
    v = memory.check(e, "H100", {}, LLAMA8B, 2)
    for remedy in ("4 GPUs (target.gpus_per_node: 4: the distributed optimizer", "--recompute-granularity full", "expandable_segments:True",
                   "--use-precision-aware-optimizer"):
        assert remedy in v.message
    assert f"{e.total:.1f} GiB" in v.message and "of the H100's 79.6 GiB" in v.message
    assert usable > 0


def test_flags_from_argv():
    switches = {"--bf16", "--swiglu"}
    assert memory.flags_from_argv(["--num-layers", "4", "--bf16", "--recompute-modules", "core_attn", "mlp",
                                   "--lr=0.1", "--swiglu"], switches) == {
        "--num-layers": "4", "--bf16": True, "--recompute-modules": ["core_attn", "mlp"], "--lr": "0.1",
        "--swiglu": True}
    assert memory.flags_from_argv(["--min-lr", "-1e-5"]) == {"--min-lr": "-1e-5"}


# --- render and run.py ---------------------------------------------------------------------

BENCH = REPO / "experiments" / "h200x2_8b_bench.yaml"


def test_manifest_entries_carry_the_estimate():
    for manifest in (REPO / "experiments" / "generated").glob("*.manifest.json"):
        for entry in json.loads(manifest.read_text())["runs"]:
            result = memory.for_entry(entry)
            assert entry["peak_memory_gib"] == round(result[0].total, 1)


def test_committed_matrices_fit_their_targets():
    for path in committed_matrices():
        for r in load(path)[1]:
            result = memory.for_run(r)
            assert result is not None and result[1].level != "problem", (path.name, r.name, result[1].message)


def _matrix(tmp_path, **target) -> Path:
    data = yaml.safe_load(BENCH.read_text())
    data["target"].update(target)
    data["env"].pop("PYTORCH_CUDA_ALLOC_CONF")
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_render_refuses_a_run_that_cannot_fit(tmp_path, capsys):
    code = render.main([str(_matrix(tmp_path, gpu="H100")), "--out", str(tmp_path / "gen")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "gen").exists()
    line = next(line for line in err.splitlines() if "bench_llama3_8b_h200x2_bf16:" in line)
    assert ": target.gpus_per_node: " in line and "against 71.4 GiB usable of the H100's 79.6 GiB" in line
    assert "to make it fit under 71.4 GiB (estimate with each alone): " in line and "expandable_segments:True" in line
    assert re.search(r"\d+ GPUs \(target\.(gpus_per_node: \d+|nodes: \d+ with target\.gpus_per_node: 8): the "
                     r"distributed optimizer shards its state further\) -> [0-9.]+ GiB, (fits with|still above)", line)


def test_render_prints_estimates_and_warnings(tmp_path, capsys):
    code = render.main([str(BENCH), "--out", str(tmp_path / "gen")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "bench_llama3_8b_h200x2_fp8_cs: peak ~129.2 GiB" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "bench_llama3_8b_h200x2_bf16" in warnings[0]


def test_run_rechecks_memory_with_the_launch_world_size(capsys):
    code = run_cli.main([str(REPO / "experiments" / "h200_8b.yaml"), "--dry-run", "--only", "*_bf16",
                         "--env", "GPUS_PER_NODE=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "train_llama3_8b_h200_bf16 with GPUS_PER_NODE=1: estimated peak 174.7 GiB" in err
    assert ": the distributed optimizer shards its state further) -> " in err


def test_run_accepts_overrides_that_fit(capsys):
    code = run_cli.main([str(REPO / "experiments" / "h200_8b.yaml"), "--dry-run", "--only", "*_bf16",
                         "--env", "GPUS_PER_NODE=1", "--", "--num-layers", "4", "--global-batch-size", "2"])
    assert code == 0, capsys.readouterr().err


def test_remedies_quote_the_estimate_each_gives():
    v = memory.check(est(), "H100", {}, LLAMA8B, 2, VOCAB)
    moments = est(use_precision_aware_optimizer=True, exp_avg_dtype="bf16", exp_avg_sq_dtype="bf16").total
    recompute = est(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1).total
    assert f"--exp-avg-sq-dtype bf16 -> {moments:.1f} GiB" in v.message
    assert f"--recompute-num-layers 1 -> {recompute:.1f} GiB" in v.message
    m = re.search(r"(\d+) GPUs \([^;]+: the distributed optimizer shards its state further\) -> ([0-9.]+) GiB",
                  v.message)
    assert m and m.group(2) == f"{est(world=int(m.group(1))).total:.1f}", v.message


@pytest.mark.parametrize("env,world", [({}, 8), ({"GPUS_PER_NODE": "2"}, 2), ({"NNODES": "2"}, 16),
                                       ({"GPUS_PER_NODE": "4", "NNODES": "4"}, 16)])
def test_launch_environment_sets_the_world_size(env, world):
    entry = json.loads((REPO / "experiments" / "generated" / "h200_8b.manifest.json").read_text())["runs"][0]
    estimate, _ = memory.for_entry(entry, [], env)
    flags = memory.flags_from_argv(entry["megatron_args"])
    assert estimate.total == pytest.approx(memory.estimate(flags, world, VOCAB).total)


def test_a_remedy_that_still_does_not_fit_is_said_to_be_not_enough():
    """Micro batch 2 of full-depth Llama-3-8B on two H200s: twice the GPUs shards only the
    optimizer state and still leaves it over the limit; full recomputation fits."""
    flags = {**LLAMA8B, "--micro-batch-size": 2}
    v = memory.check(memory.estimate(flags, 2, VOCAB), "H200",
                     {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}, flags, 2, VOCAB)
    assert v.level == "problem"
    ways = v.message.split("(estimate with each alone): ")[1].split("; ")
    recompute = next(w for w in ways if w.startswith("--recompute-granularity full"))
    moments = next(w for w in ways if w.startswith("--use-precision-aware-optimizer"))
    assert moments.endswith(" GiB, still above 136.5"), moments
    assert re.search(r" -> [0-9.]+ GiB, fits with [0-9.]+ GiB to spare$", recompute), recompute
    assert "none is enough alone" not in v.message


def test_when_no_remedy_is_enough_alone_the_message_says_to_combine_them():
    flags = {**LLAMA8B, "--micro-batch-size": 8}
    v = memory.check(memory.estimate(flags, 2, VOCAB), "H200",
                     {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}, flags, 2, VOCAB)
    assert v.level == "problem"
    # Expandable segments are on already and BF16 moments are not needed: neither is named.
    assert re.search(r"; none is enough alone; together \(PP 2, full recomputation\) -> [0-9.]+ GiB, "
                     r"fits with [0-9.]+ GiB to spare under the 136.5 GiB usable$", v.message), v.message


# --- verdicts: refuse only what cannot fit; calibration per GPU family ----------------------

def test_bench_fp8_runs_without_expandable_segments_render_with_a_warning(tmp_path, capsys):
    """The bench's FP8 runs peaked at 128.4-129.4 GiB allocated and completed 16/16 iterations:
    without expandable segments they are warned (margin, remedy), not refused."""
    code = render.main([str(_matrix(tmp_path)), "--out", str(tmp_path / "gen")])
    out, err = capsys.readouterr()
    assert code == 0, err
    for name in ("fp8", "fp8_cs", "fp8_cs_1F1L"):
        line = next(line for line in err.splitlines() if f"run bench_llama3_8b_h200x2_{name}:" in line)
        assert line.startswith("warning: ") and "below the 136.5 GiB limit" in line, line
        assert "set env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (usable 136.5 GiB)" in line
    for log in sorted((REPO / "logs" / "h200x2_8b_bench").glob("*fp8*.log")):
        assert estimate_for(log)[0].total <= memory.limit_gib("H200"), log.name


def test_above_the_limit_is_a_problem_whatever_the_allocator():
    e = est(micro_batch_size=4)
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    v = memory.check(e, "H200", env, {**LLAMA8B, "--micro-batch-size": 4}, 2, VOCAB)
    assert e.total > memory.limit_gib("H200") and v.level == "problem"
    assert f"it cannot fit: PyTorch can allocate at most {memory.limit_gib('H200'):.1f} GiB" in v.message
    assert v.limit == pytest.approx(memory.capacity_gib("H200") - memory.NON_PYTORCH_GIB)


def test_calibration_names_its_measurement_per_gpu_family():
    assert memory.calibration("H200").source.startswith("measured on H200")
    assert "real_h200x2" in memory.calibration("NVIDIA H200").source
    for gpu in ("H100", "B200", "NVIDIA H100 80GB HBM3"):
        assert memory.calibration(gpu).source.startswith("assumed from H200"), gpu
    assert memory.limit_gib("H100") == pytest.approx(81559 / 1024 - memory.NON_PYTORCH_GIB)


QWEN14B = {
    "--num-layers": 48, "--hidden-size": 5120, "--ffn-hidden-size": 13824, "--num-attention-heads": 40,
    "--group-query-attention": True, "--num-query-groups": 8, "--kv-channels": 128, "--seq-length": 8192,
    "--max-position-embeddings": 32768, "--position-embedding-type": "rope", "--normalization": "RMSNorm",
    "--swiglu": True, "--untie-embeddings-and-output-weights": True, "--disable-bias-linear": True,
    "--micro-batch-size": 1, "--global-batch-size": 64, "--bf16": True, "--use-distributed-optimizer": True,
}
QWEN_VOCAB = 151665


def test_a_14b_refusal_on_eight_h200s_lists_tensor_and_pipeline_parallelism():
    e = memory.estimate(QWEN14B, 8, QWEN_VOCAB)
    v = memory.check(e, "H200", {}, QWEN14B, 8, QWEN_VOCAB, gpus_per_node=8)
    assert v.level == "problem" and f"{e.total:.1f}" == "164.7"
    assert "--tensor-model-parallel-size 2 --sequence-parallel -> 92.7 GiB, fits with 36.2 GiB to spare;" in v.message
    pp = re.search(r"--pipeline-model-parallel-size (\d+) -> ([0-9.]+) GiB", v.message)
    assert pp and 48 % int(pp.group(1)) == 0 and float(pp.group(2)) <= memory.limit_gib("H200")


def test_model_parallel_remedies_respect_divisibility():
    """12 heads and 3 query groups: no TP size of 2, 4 or 8 passes Megatron's query-group rule.
    30 layers on 8 GPUs: PP 2 only (3, 5, 6 do not divide the 8 GPUs)."""
    flags = {**LLAMA8B, "--num-layers": 30, "--num-attention-heads": 12, "--num-query-groups": 3,
             "--global-batch-size": 64, "--micro-batch-size": 8}
    v = memory.check(memory.estimate(flags, 8, VOCAB), "H100", {}, flags, 8, VOCAB, gpus_per_node=8)
    assert v.level == "problem"
    assert "--tensor-model-parallel-size" not in v.message
    assert re.findall(r"--pipeline-model-parallel-size (\d+)", v.message) == ["2"]
    # 4 query groups: TP 2 and 4 qualify (not 8: 12 heads); within 2 GPUs per node only TP 2.
    flags["--num-query-groups"] = 4
    v = memory.check(memory.estimate(flags, 8, VOCAB), "H100", {}, flags, 8, VOCAB, gpus_per_node=8)
    assert re.findall(r"--tensor-model-parallel-size (\d+) --sequence-parallel", v.message) == ["4"]
    v = memory.check(memory.estimate(flags, 8, VOCAB), "H100", {}, flags, 8, VOCAB, gpus_per_node=2)
    assert re.findall(r"--tensor-model-parallel-size (\d+) --sequence-parallel", v.message) == ["2"]
    # A global batch that does not divide by micro batch x the new DP rules a size out.
    flags["--global-batch-size"] = 8  # PP 2 leaves DP 4: 8 % (8 x 4) != 0
    v = memory.check(memory.estimate(flags, 8, VOCAB), "H100", {}, flags, 8, VOCAB, gpus_per_node=8)
    assert "--pipeline-model-parallel-size" not in v.message


def test_evaluation_that_would_not_fit_is_warned(monkeypatch):
    flags = {**LLAMA8B, "--fp8-format": "hybrid", "--fp8-recipe": "tensorwise", "--train-iters": 100,
             "--eval-interval": 50, "--eval-iters": 10}
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    monkeypatch.setitem(memory.EVALUATION_EXTRA_GIB, "tensorwise", None)
    e = memory.estimate(flags, 4, VOCAB)
    assert e.evaluation is None and "evaluation's extra memory (tensorwise: not measured yet)" in e.notes
    monkeypatch.setitem(memory.EVALUATION_EXTRA_GIB, "tensorwise", 40.0)
    e = memory.estimate(flags, 4, VOCAB)
    assert e.evaluation == pytest.approx(e.total + 40.0)
    v = memory.check(e, "H200", env, flags, 4, VOCAB)
    assert e.total < 0.95 * v.usable and v.level == "warning"
    assert f"evaluation would peak at {e.evaluation:.1f} GiB" in v.message
    off = memory.estimate({**flags, "--eval-iters": 0}, 4, VOCAB)
    assert off.evaluation is None and memory.check(off, "H200", env, flags, 4, VOCAB).level == "ok"


def test_evaluation_is_named_only_where_it_raises_the_peak(monkeypatch):
    """evalmem_h100's FP8 runs sit above the usable memory for their training peak; evaluation,
    measured to add nothing, is not warned for a second time; a kind that adds memory is."""
    run = next(r for r in load(REPO / "experiments/evalmem_h100.yaml")[1]
               if r.name == "evalmem_h100_fp8_cs")
    est, verdict = memory.for_run(run)
    assert est.evaluation == est.total and est.total > verdict.usable
    assert "above the 71.4 GiB left" in verdict.message
    assert "evaluation would peak" not in verdict.message
    monkeypatch.setitem(memory.EVALUATION_EXTRA_GIB, "tensorwise", 1.5)
    est, verdict = memory.for_run(run)
    assert f"evaluation would peak at {est.total + 1.5:.1f} GiB" in verdict.message


def test_every_recipe_kind_has_one_evaluation_calibration_value():
    from fp8suite.megatron import recipes
    kinds = {r.name for r in recipes.RECIPES if not r.name.endswith("_custom")}
    assert kinds <= set(memory.EVALUATION_EXTRA_GIB)
    for kind, value in memory.EVALUATION_EXTRA_GIB.items():
        assert value is None or kind in memory.EVALUATION_SOURCES, f"{kind}: a measured value cites its log"


def test_tensor_parallel_without_sequence_parallel_is_offered_sequence_parallel_first():
    flags = {**QWEN14B, "--tensor-model-parallel-size": 2, "--micro-batch-size": 2}
    v = memory.check(memory.estimate(flags, 8, QWEN_VOCAB), "H100", {}, flags, 8, QWEN_VOCAB, gpus_per_node=8)
    sp = memory.estimate({**flags, "--sequence-parallel": True}, 8, QWEN_VOCAB).total
    assert v.level == "problem" and f"; --sequence-parallel -> {sp:.1f} GiB" in v.message
    # An FFN width TP 8 does not divide is not split 8 ways (Megatron's ColumnParallelLinear asserts it).
    odd = {**QWEN14B, "--ffn-hidden-size": 13820, "--micro-batch-size": 4}
    v = memory.check(memory.estimate(odd, 8, QWEN_VOCAB), "H100", {}, odd, 8, QWEN_VOCAB, gpus_per_node=8)
    assert "--tensor-model-parallel-size 8" not in v.message


def test_render_shows_the_evaluation_peak_once_calibrated(tmp_path, capsys, monkeypatch):
    data = yaml.safe_load(BENCH.read_text())
    data["megatron"]["logging"].update({"--eval-interval": 10, "--eval-iters": 2})
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setitem(memory.EVALUATION_EXTRA_GIB, "tensorwise", 2.5)
    assert render.main([str(path), "--out", str(tmp_path / "gen")]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("  bench_llama3_8b_h200x2_fp8_cs:"))
    assert line.endswith("on 2 GPU(s); evaluation ~131.7 GiB"), line


def _usable_and_remedies(message: str) -> tuple[float, list[str]]:
    usable = float(re.search(r"to make it fit under ([0-9.]+) GiB", message).group(1))
    tail = message.split("(estimate with each alone): ")[1]
    return usable, tail.split("; none is enough alone")[0].split("; ")


def test_every_remedy_either_fits_the_usable_memory_or_says_it_is_still_above():
    """8B on 8 H100s: each remedy's estimate is compared with the 71.4 GiB usable (not the
    75.7 GiB limit): it fits with its margin, or says "still above 71.4"; the GPU count is the
    smallest power-of-two multiple that fits, in nodes of 8 GPUs beyond one node."""
    flags = {**LLAMA8B, "--global-batch-size": 512}
    v = memory.check(memory.estimate(flags, 8, VOCAB), "H100", {}, flags, 8, VOCAB, gpus_per_node=8)
    usable, ways = _usable_and_remedies(v.message)
    assert usable == pytest.approx(71.4, abs=0.05) and v.level == "problem"
    for way in ways:
        if "expandable_segments" in way:
            continue
        figure = float(re.search(r" -> ([0-9.]+) GiB, ", way).group(1))
        if figure <= usable:
            assert re.search(r"fits with [0-9.]+ GiB to spare$", way), way
        else:
            assert way.endswith(f"still above {usable:.1f}"), way
    gpus = next(w for w in ways if " GPUs (" in w)
    count = int(gpus.split()[0])
    assert f"target.nodes: {count // 8} with target.gpus_per_node: 8" in gpus, gpus
    smaller = memory.estimate(flags, count // 2, VOCAB).total
    assert smaller > usable or count == 16, gpus
    if "fits with" in gpus:
        assert memory.estimate(flags, count, VOCAB).total <= usable


def test_a_one_gpu_run_far_over_is_told_plainly_when_nothing_fits_even_combined():
    """A 70B-like shape on one H100 (hundreds of GiB): the GPU remedy searches past one node
    (target.nodes), and when even every remedy together does not fit, the message says so
    with that combination's estimate instead of "combine them"."""
    flags = {**LLAMA8B, "--num-layers": 80, "--hidden-size": 8192, "--ffn-hidden-size": 28672,
             "--num-attention-heads": 64, "--global-batch-size": 2, "--micro-batch-size": 1}
    e = memory.estimate(flags, 1, VOCAB)
    v = memory.check(e, "H100", {}, flags, 1, VOCAB, gpus_per_node=1)
    assert e.total > 400 and v.level == "problem"
    assert "combine them" not in v.message
    m = re.search(r"none is enough alone, and even all of them together \((.+)\) give ([0-9.]+) GiB, "
                  r"still above 75.7: this model and batch do not fit the H100 this way$", v.message)
    assert m, v.message
    assert "2 GPUs (target.gpus_per_node: 2)" in m.group(1) and float(m.group(2)) > 75.7
    flags["--global-batch-size"] = 1024
    v = memory.check(memory.estimate(flags, 1, VOCAB), "H100", {}, flags, 1, VOCAB, gpus_per_node=1)
    assert re.search(r"\d+ GPUs \(target\.nodes: \d+ with target\.gpus_per_node: 8: the distributed", v.message), \
        v.message
    assert re.search(r"together \(.*\) -> [0-9.]+ GiB, fits with", v.message), v.message


def test_gpu_layout_speaks_the_matrix_terms():
    assert memory.gpu_layout(4, 2, 1) == "target.gpus_per_node: 4"
    assert memory.gpu_layout(8, 1, 1) == "target.gpus_per_node: 8"
    assert memory.gpu_layout(16, 8, 1) == "target.nodes: 2 with target.gpus_per_node: 8"
    assert memory.gpu_layout(32, 1, 1) == "target.nodes: 4 with target.gpus_per_node: 8"
    assert memory.gpu_layout(8, 2, 2) == "target.nodes: 4 with target.gpus_per_node: 2"


_MEMORY_LINE = re.compile(r"\(after (\d+) iterations\) memory \(MB\) \| allocated: [\d.]+ \| "
                          r"max allocated: ([\d.]+)")
_EVALUATED_AT = re.compile(r"validation loss at iteration (\d+) \|")


@pytest.mark.parametrize("kind", sorted(memory.EVALUATION_SOURCES))
def test_evaluation_calibration_is_what_its_logs_measured(kind):
    """Each measured EVALUATION_EXTRA_GIB value is re-derived from the logs it cites: the
    largest rise of Megatron's `max allocated` from the iteration that evaluates to the next,
    over logs of that recipe kind that evaluated mid-run."""
    from fp8suite.logs import parse
    from fp8suite.megatron import recipes
    rises = []
    for log in memory.EVALUATION_SOURCES[kind]:
        path = REPO / log
        text = path.read_text(errors="replace")
        assert recipes.of_args(parse.read_log(path).args).recipe.name == kind, log
        peak = {int(i): float(mb) / 1024 for i, mb in _MEMORY_LINE.findall(text)}
        mid = [int(i) for i in _EVALUATED_AT.findall(text) if int(i) + 1 in peak]
        assert mid, f"{log}: no evaluation with memory lines on both sides"
        rises += [peak[i + 1] - peak[i] for i in mid]
    assert memory.EVALUATION_EXTRA_GIB[kind] == pytest.approx(round(max(rises), 1), abs=0.05)


def _runs(matrix: str, pattern: str = "*") -> list:
    """(plan, run) pairs as run.py selects them, from a committed manifest."""
    from fnmatch import fnmatch
    from types import SimpleNamespace
    manifest = json.loads((REPO / "experiments" / "generated" / f"{matrix}.manifest.json").read_text())
    return [(None, SimpleNamespace(name=e["name"], entry=e)) for e in manifest["runs"]
            if fnmatch(e["name"], pattern)]


H100_FOUND = [{"name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "memory_mib": 81559,
               "compute_capability": "9.0"}]


def test_a_launch_on_a_smaller_gpu_than_the_target_is_checked_for_it(capsys):
    """An H200 matrix launched on an H100: the memory pre-flight again for the H100. A run that
    fits gets a warning that names both GPUs; one that cannot fit is refused, naming the fix."""
    run_cli.recheck_gpu(_runs("convergence_8b_8l", "conv_8b8l_bf16_s1234"), [], {}, H100_FOUND)
    err = capsys.readouterr().err
    assert err.startswith("run.py: warning: conv_8b8l_bf16_s1234 targets H200; this host's GPU is "
                          "NVIDIA H100 80GB HBM3: it fits (estimated peak ")
    assert err.endswith("step times are this GPU's, not the target's\n")
    # Many runs that fit: one warning for them all.
    run_cli.recheck_gpu(_runs("convergence_8b_8l"), [], {}, H100_FOUND)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("run.py: warning: 16 runs target H200; this host's GPU is NVIDIA H100 "
                           "80GB HBM3: each fits (estimated peak ")
    with pytest.raises(run_cli.plan.UsageError) as refused:
        run_cli.recheck_gpu(_runs("h200_8b", "*_bf16"), [], {}, H100_FOUND)
    (line,) = refused.value.args
    assert line.startswith("train_llama3_8b_h200_bf16 targets H200; this host's GPU is NVIDIA H100")
    assert "it cannot fit" in line and line.endswith("render the matrix with target.gpu: H100")


def test_a_launch_on_the_target_gpu_or_an_unknown_one_is_not_rechecked(capsys):
    h200 = [dict(H100_FOUND[0], name="NVIDIA H200", memory_mib=143771)]
    for found in (h200, [], [dict(H100_FOUND[0], name="Some Future GPU")]):
        run_cli.recheck_gpu(_runs("h200_8b"), [], {}, found)
    assert capsys.readouterr().err == ""


def test_run_refuses_before_launching_what_cannot_fit_the_gpu_found(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(run_cli.environment, "gpus", lambda: H100_FOUND)
    code = run_cli.main([str(REPO / "experiments" / "h200_8b.yaml"), "--only", "*_bf16",
                         "--state", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "train_llama3_8b_h200_bf16 targets H200; this host's GPU is NVIDIA H100 80GB HBM3" in err
    assert not (tmp_path / "runs.json").exists()


@pytest.mark.parametrize("flag,words", memory.NOT_MODELLED)
def test_what_the_estimate_leaves_out_is_never_an_ok(flag, words):
    """A model feature the estimate counts as dense GPT layers (mixture-of-experts, ...) makes
    even a run far below the GPU a warning that says so, never a plain "ok"."""
    value = 8 if flag in ("--num-experts", "--mtp-num-layers") else True
    flags = {**LLAMA8B, "--num-layers": 4, flag: value}
    e = memory.estimate(flags, 8, VOCAB)
    v = memory.check(e, "H200", {}, flags, 8, VOCAB)
    assert v.level == "warning"
    assert f"(not modelled: {words})" in v.message
    assert v.message.endswith(f"it counts {words} as dense GPT layers, so it may be far too low")


def test_a_gpu_of_unknown_memory_is_said_to_be_unchecked(tmp_path, capsys):
    """GH200 comes with 96 or 144 GB: the estimate is printed, and said not to be checked."""
    e = est(world=1)
    v = memory.check(e, "GH200", {}, LLAMA8B, 1, VOCAB)
    assert v.level == "warning" and v.message.endswith("not checked: no memory capacity known for GH200")
    code = render.main([str(_matrix(tmp_path, gpu="GH200")), "--out", str(tmp_path / "gen")])
    captured = capsys.readouterr()
    assert code == 0
    assert "not checked: no memory capacity known for GH200" in captured.err
    assert "per GH200 on 2 GPU(s); not checked: the GH200's memory capacity is unknown" in captured.out


LLAMA70B_TP8 = {**LLAMA8B, "--num-layers": 80, "--hidden-size": 8192, "--ffn-hidden-size": 28672,
                "--num-attention-heads": 64, "--tensor-model-parallel-size": 8, "--sequence-parallel": True,
                "--global-batch-size": 128}


def test_remedies_together_name_only_what_the_combination_needs():
    """Llama-3-70B at TP8 on one node of H100s: no remedy is enough alone. The combination that
    fits is under the usable memory without expandable segments, so it does not name them, and
    it is compared with that usable memory, not with the limit they would give."""
    e = memory.estimate(LLAMA70B_TP8, 8, VOCAB)
    usable = memory.usable_gib("H100", {})
    v = memory.check(e, "H100", {}, LLAMA70B_TP8, 8, VOCAB, gpus_per_node=8)
    assert v.level == "problem"
    together = re.search(r"none is enough alone; together \((.*?)\) -> ([0-9.]+) GiB, fits with "
                         r"([0-9.]+) GiB to spare under the ([0-9.]+) GiB (usable|limit)", v.message)
    assert together, v.message
    named, total = together[1].split(", "), float(together[2])
    assert total <= usable and "expandable segments" not in named
    assert together[5] == "usable" and float(together[4]) == round(usable, 1)
    assert float(together[3]) == pytest.approx(usable - total, abs=0.11)


def test_a_remedy_that_falls_short_says_by_how_much():
    """Every remedy that does not fit says so the same way, with how far it stays above."""
    flags = {**LLAMA8B, "--micro-batch-size": 8}
    v = memory.check(memory.estimate(flags, 2, VOCAB), "H200", {}, flags, 2, VOCAB)
    m = re.search(r"expandable_segments:True \(usable ([0-9.]+) GiB\), ([0-9.]+) GiB short of the "
                  r"([0-9.]+) GiB estimate", v.message)
    assert m, v.message
    assert float(m[2]) == pytest.approx(float(m[3]) - float(m[1]), abs=0.11)
    assert "still below" not in v.message


def test_a_refusal_lists_the_remedies_that_fit_first():
    """A Qwen2.5-14B shape at TP1 on 8 H200s: more GPUs alone (listed first by kind) cannot make
    it fit, TP2 with sequence parallel can; the ones that fit come first."""
    v = memory.check(memory.estimate(QWEN14B, 8, QWEN_VOCAB), "H200", {}, QWEN14B, 8, QWEN_VOCAB,
                     gpus_per_node=8)
    assert v.level == "problem", v.message
    listed = v.message.split("(estimate with each alone): ")[1].split("; none is enough")[0].split("; ")
    fits = ["fits with" in way for way in listed]
    assert any(fits) and not all(fits), listed
    assert fits == sorted(fits, reverse=True), listed
    assert listed[0].startswith("--tensor-model-parallel-size 2 --sequence-parallel -> "), listed
