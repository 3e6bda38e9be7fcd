"""The FP8 speedup predictor (fp8suite.evidence.predict): its calibration and its leave-one-out error
table are rebuilt from the committed logs and must match what is committed; the model prices
the settings the advice names; render and the manifest carry the prediction."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
import predict_speedup
from fp8suite.evidence import advice, predict
from fp8suite.megatron import recipes
from fp8suite.config.matrix import load

FOLDERS = [REPO / "logs", REPO / "tests" / "data" / "real_h200x2"]


@pytest.fixture(scope="module")
def data():
    return predict.measured_logs(FOLDERS)


def test_committed_calibration_is_rebuilt_from_the_logs(data):
    committed = json.loads(predict.CALIBRATION.read_text())
    fitted = predict.fit(data)
    assert committed["logs"] == list(fitted.logs), "re-run: " + committed["generated_by"]
    for name in predict.FEATURES:
        assert committed["coefficients"][name] == pytest.approx(fitted.coefficients[name], rel=1e-4, abs=1e-9), (
            f"{name}: re-run {committed['generated_by']}")
    assert committed["generated_by"] == predict_speedup.command("--calibrate", FOLDERS)


def test_committed_error_table_is_rebuilt_from_the_logs(data):
    page = predict_speedup.page(predict_speedup.validate(data), FOLDERS)
    assert (REPO / "docs" / "results" / "predictor.md").read_text() == page, (
        "re-run " + predict_speedup.command("--validate", FOLDERS))


def test_every_committed_pair_is_validated(data):
    fp8_with_twin = [m for m in data if m.recipe != "bf16"
                     and any(b.recipe == "bf16" and b.setup == m.setup for b in data)]
    checks = predict.leave_one_out(data)
    assert len(checks) == len(fp8_with_twin) >= 40
    assert {c.fp8.log for c in checks} >= {"logs/h200x2_8b_bench/bench_llama3_8b_h200x2_fp8_cs.log",
                                           "logs/convergence_1gpu/conv_llama_1gpu_fp8_cs_s1234.log"}
    errors = sorted(abs(c.error) for c in checks)
    assert errors[len(errors) // 2] <= 0.10  # the median pair within the 10% target
    for c in checks:  # a pair is never fitted on its own setup
        assert c.fp8.setup == c.bf16.setup


def test_a_seed_pairs_with_the_bf16_run_of_its_own_seed(data):
    """Seeds of one setup: each FP8 seed is timed against the BF16 launch of the same seed."""
    seeded = [(f, b) for f, b in predict.pairs(data) if "conv_8b8l_fp8_cs_s" in f.log]
    assert len(seeded) >= 2
    for fp8, bf16 in seeded:
        assert bf16.run.flags["--seed"] == fp8.run.flags["--seed"], (fp8.log, bf16.log)


def test_bf16_twin_drops_every_low_precision_flag():
    flags = {"--bf16": True, "--fp8-format": "hybrid", "--fp8-recipe": "tensorwise", "--fp8-param-gather": True,
             "--first-last-layers-bf16": True, "--num-layers-at-start-in-bf16": 1, "--num-layers": 4}
    assert predict.bf16_twin(flags) == {"--bf16": True, "--num-layers": 4}


def test_param_gather_at_low_data_parallel_size_is_priced():
    """The measured trap: --fp8-param-gather at DP=1 makes FP8 slower; the model predicts a
    lower speedup with it, and less of a penalty at DP=8."""
    model = predict.committed()
    flags = {"--num-layers": 4, "--hidden-size": 4096, "--ffn-hidden-size": 14336, "--num-attention-heads": 32,
             "--group-query-attention": True, "--num-query-groups": 8, "--kv-channels": 128, "--seq-length": 4096,
             "--swiglu": True, "--untie-embeddings-and-output-weights": True, "--disable-bias-linear": True,
             "--micro-batch-size": 4, "--global-batch-size": 4, "--bf16": True, "--use-distributed-optimizer": True,
             "--fp8-format": "hybrid", "--fp8-recipe": "tensorwise"}
    without = model.speedup(predict.CostedRun(flags, 1, 128256, "H200", False))
    with_pg = model.speedup(predict.CostedRun({**flags, "--fp8-param-gather": True}, 1, 128256, "H200", False))
    assert with_pg < without
    dp8 = {**flags, "--global-batch-size": 32}
    loss_dp8 = (model.speedup(predict.CostedRun(dp8, 8, 128256, "H200", False))
                - model.speedup(predict.CostedRun({**dp8, "--fp8-param-gather": True}, 8, 128256, "H200", False)))
    assert loss_dp8 < without - with_pg


def test_committed_validation_is_rebuilt_from_the_logs(data):
    """The band every prediction quotes comes from the leave-one-out validation, never typed."""
    stored = json.loads(predict.CALIBRATION.read_text())
    checks = predict_speedup.validate(data)
    assert stored["validation"] == predict.validation_of(checks, predict_speedup.command("--validate", FOLDERS))
    assert stored["span"] == predict.span_of(data)
    assert stored["validation"]["band_abs_error"] >= stored["validation"]["median_abs_error"]
    page = (REPO / "docs" / "results" / "predictor.md").read_text()
    assert page.rstrip().splitlines()[-1] == predict.summary_line(stored["validation"])


def _costed(gpu="H200", world=2, hidden=4096, layers=32):
    return predict.CostedRun({"--hidden-size": hidden, "--num-layers": layers}, world, 128256, gpu, False)


def test_a_prediction_beyond_the_calibration_says_it_extrapolates():
    found = predict.committed_calibration()
    span, validation = found.span, found.validation
    high = validation["measured_speedup"][1]
    assert predict.extrapolation(_costed(), 1.2, span, validation) == ()
    reasons = predict.extrapolation(_costed("NVIDIA B200", 8, 8192, 80), high + 0.2, span, validation)
    assert reasons[0] == "no B200 log"
    assert reasons[1] == f"above the largest measured {high:.2f}x"
    assert "H100" in span["gpu_families"]  # the one-H100 studies are calibration logs
    assert predict.extrapolation(_costed("NVIDIA H100 80GB HBM3", 1), 1.2, span, validation) == ()
    assert any(r.startswith("hidden size 8192 above the calibrated") for r in reasons)
    assert any(r.startswith("80 layers above the calibrated") for r in reasons)
    assert any(r.startswith("8 GPUs above the calibrated") for r in reasons)
    low = validation["measured_speedup"][0]
    assert predict.extrapolation(_costed(), low - 0.1, span, validation) == (
        f"below the smallest measured {low:.2f}x",)


def test_every_printed_prediction_carries_its_band_and_extrapolation(capsys, tmp_path):
    import render

    validation = predict.committed_calibration().validation
    assert render.main([str(REPO / "experiments" / "examples" / "qwen2.5_7b_h200.yaml"), "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "predicted speedup" in line]
    assert lines
    for line in lines:
        assert f"±{validation['band_abs_error'] * 100:.1f}% (90% of the {validation['pairs']} committed pairs" in line
        assert f"worst off by {validation['worst_abs_error'] * 100:.1f}%" in line
        assert "extrapolated: " in line and "8 GPUs above the calibrated" in line, line


def test_manifest_records_the_predicted_speedup():
    for manifest in sorted((REPO / "experiments" / "generated").glob("*.manifest.json")):
        data = json.loads(manifest.read_text())
        runs = {r.name: r for r in load(REPO / data["matrix"])[1]}
        for entry in data["runs"]:
            assert "predicted_speedup" in entry
            found = predict.predict_run(runs[entry["name"]])
            crashes = advice.crashes(runs[entry["name"]])
            if crashes:  # no speedup claimed for a run a committed log shows crashing
                found = None
            assert entry["predicted_speedup"] == (found.speedup if found else None)
            expected = found.manifest() if found else predict.NO_PREDICTION
            assert {k: entry.get(k) for k in expected} == expected, entry["name"]
            quantized = recipes.of_flags(runs[entry["name"]].flags).recipe.quantized
            assert (entry["predicted_speedup"] is not None) == (quantized and not crashes), entry["name"]


def test_calibrate_refuses_a_missing_folder(tmp_path, capsys):
    assert predict_speedup.main([str(tmp_path / "nope"), "--validate"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_a_folder_of_one_setup_is_validated_against_the_committed_logs(tmp_path, capsys):
    """New logs of one shape (a BF16/FP8 pair, no other setup) are fitted on the committed
    calibration's logs, their own setup left out."""
    shared = REPO / "logs" / "h200x2_8b_seed"
    for name in ("train_llama3_8b_h200_bf16", "train_llama3_8b_h200_fp8_cs"):
        for suffix in (".log", ".meta.json"):
            (tmp_path / (name + suffix)).write_bytes((shared / (name + suffix)).read_bytes())
    out = tmp_path / "table.md"
    code = predict_speedup.main([str(tmp_path), "--validate", "--out", str(out)])
    assert code in (0, 1), capsys.readouterr().err
    text = out.read_text()
    assert "train_llama3_8b_h200_fp8_cs.log | train_llama3_8b_h200_bf16.log | 1.311 |" in text
    assert "1 pairs;" in text


def test_a_model_feature_the_cost_model_leaves_out_is_an_extrapolation():
    found = predict.committed_calibration()
    run = predict.CostedRun({"--hidden-size": 4096, "--num-layers": 32, "--num-experts": 8,
                             "--moe-router-topk": 2}, 2, 128256, "H200", False)
    assert predict.extrapolation(run, 1.2, found.span, found.validation) == (
        "mixture-of-experts layers not modelled",)


def test_tensor_parallelism_beyond_the_calibration_is_an_extrapolation():
    """TP shrinks each GPU's GEMMs, where FP8's gain lies: a TP size no calibration log ran at
    is named."""
    found = predict.committed_calibration()
    low, high = found.span["tensor_parallel"]
    tp = high * 2
    run = predict.CostedRun({"--hidden-size": 4096, "--num-layers": 32, "--tensor-model-parallel-size": tp,
                             "--sequence-parallel": True}, 2, 128256, "H200", False)
    assert f"TP {tp} above the calibrated {low}–{high}" in predict.extrapolation(run, 1.2, found.span,
                                                                                  found.validation)
