"""The report's answer first (issue 24): step-time statistics that show stalls, CUDA-graph
capture as warm-up, the peers' windows, the seed band of time and tokens to target, Welch's
t-test with several seeds, speed-relevant settings apart from the rest, the verdict block and
summary.json's keys. Logs are Megatron 0.19 lines (test_report_metrics.write_log); every
expected figure is worked by hand in the test.
"""

from __future__ import annotations

import json
import statistics

import pytest
from scipy import stats

import report
from fp8suite.report import columns
from fp8suite.report import metrics
from fp8suite.report import summary
from fp8suite.report import verdict
from helpers import SHAPE, groups_of, write_log

FP8 = {"fp8": "hybrid", "fp8_recipe": "tensorwise"}


def render(tmp_path, *extra) -> tuple[str, dict]:
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "logs"), "--out", str(out), *extra]) == 0
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


# --- step time ---------------------------------------------------------------------------


def stall_times() -> list:
    """3 warm-up iterations, then 1000 ms with Python-GC-like stalls at 16, 18 and 19."""
    ms = [5000.0] * 3 + [1000.0] * 17
    ms[15], ms[17], ms[18] = 1088.0, 1053.0, 1057.0  # iterations 16, 18, 19
    return ms


def test_median_mean_max_and_stalls_by_hand(tmp_path):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(tmp_path / "logs" / "fp8.log", [3.0] * 20, stall_times(), args={**SHAPE, **FP8})
    (g,) = groups_of(tmp_path / "logs")
    s = g.summaries["fp8"]
    # Iterations 4-20 are timed (17): 14 at 1000 ms and the three stalls.
    assert s.timed_iterations == 17 and s.median_iter_ms == 1000.0
    assert s.mean_iter_ms == pytest.approx((14 * 1000 + 1088 + 1053 + 1057) / 17)
    assert (s.max_iter_ms, s.max_iteration) == (1088.0, 16)
    assert [(x.iteration, round(x.fraction, 3)) for x in s.stalls] == [
        (16, 0.088), (18, 0.053), (19, 0.057)]
    # 1000 / 1011.65: the mean reads the stalls the median hides.
    v = g.versus["fp8"]
    assert v.speedup == 1.0 and v.mean_speedup == pytest.approx(1000 / s.mean_iter_ms)
    assert v.mean_disagrees  # 1.1% apart, more than the 1% tolerance without a spread
    assert verdict.build(g).stalled == [{"run": "fp8", "speedup": 1.0,
                                         "speedup_by_mean": v.mean_speedup}]
    text, data = render(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| fp8:"))
    assert "| 1011.6 | 0.988x | 1088.0 @16 | 3 of 5–9%: 16, 18, 19 |" in row
    assert "1.000x (mean differs)" in row
    assert ("- Stalls the median hides (speedup by median / by mean; stalls over 5% of the "
            "median): fp8 1.000x / 0.988x (3 of 5–9%: 16, 18, 19).") in text
    run = next(r for r in data["runs"] if r["name"] == "fp8")
    assert run["itr_ms_median"] == 1000.0 and run["itr_ms_max"] == 1088.0
    assert run["itr_ms_mean"] == pytest.approx(s.mean_iter_ms)
    assert [x["iteration"] for x in run["stalls"]] == [16, 18, 19]
    # Under 50 iterations and 20 timed ones: warned, in the run and in the verdict.
    assert run["speed_warning"] == ("20 iterations (under 50: too short for the peers' windows); "
                                    "17 timed iterations (under 20)")
    assert "too few iterations for stable step times" in text.split("Directory")[0]


@pytest.mark.parametrize("impl,expected", [("transformer_engine", 4), ("local", 4), ("none", 0)])
def test_cuda_graph_capture_is_warm_up_found_from_the_arguments(tmp_path, impl, expected):
    # Megatron captures the graphs in the iteration after --cuda-graph-warmup-steps (3): the
    # 21.8 s iteration 4 of the committed ablation log.
    ms = [5000.0] * 3 + [21800.0] + [1000.0] * 16
    write_log(tmp_path / "r.log", [3.0] * 20, ms,
              args={**SHAPE, "cuda_graph_impl": impl, "cuda_graph_warmup_steps": 3})
    (g,) = groups_of(tmp_path)
    s = g.summaries["r"]
    assert s.graph_warmup == expected
    if expected:
        assert s.timed_iterations == 16 and s.max_iter_ms == 1000.0 and s.mean_iter_ms == 1000.0
    else:  # without graphs the slow iteration is timed: the mean shows it, the median does not
        assert s.timed_iterations == 17 and (s.max_iter_ms, s.max_iteration) == (21800.0, 4)
        assert s.median_iter_ms == 1000.0 and s.mean_iter_ms > 2000


def test_graph_warm_up_steps_are_read_not_assumed(tmp_path):
    ms = [5000.0] * 5 + [21800.0] + [1000.0] * 14
    write_log(tmp_path / "r.log", [3.0] * 20, ms,
              args={**SHAPE, "cuda_graph_impl": "transformer_engine", "cuda_graph_warmup_steps": 5})
    (g,) = groups_of(tmp_path)
    assert g.summaries["r"].graph_warmup == 6 and g.summaries["r"].max_iter_ms == 1000.0


def test_peer_windows_by_their_rules(tmp_path):
    ms = [float(1000 + i) for i in range(1, 51)]  # iteration i takes 1000 + i ms
    write_log(tmp_path / "long.log", [3.0] * 50, ms, args=SHAPE)
    write_log(tmp_path / "short.log", [3.0] * 20, ms[:20], args=SHAPE)
    (g,) = groups_of(tmp_path)
    llmb, bridge = g.summaries["long"].peer_windows
    assert (llmb.rule, llmb.itr_ms, llmb.first_iteration, llmb.last_iteration) == (
        "dgxc llmb-run", statistics.fmean(1000 + i for i in range(35, 45)), 35, 44)
    # Megatron-Bridge skips the first 70% (35 of 50): iterations 36-50.
    assert (bridge.rule, bridge.itr_ms, bridge.first_iteration, bridge.iterations) == (
        "Megatron-Bridge", statistics.fmean(1000 + i for i in range(36, 51)), 36, 15)
    llmb, bridge = g.summaries["short"].peer_windows
    assert llmb.itr_ms is None and llmb.why == "iterations 35-44 not all logged (the log ends at 20)"
    assert bridge.itr_ms == statistics.fmean(1000 + i for i in range(15, 21))  # skip 14 of 20


# --- loss and time to target held to the seed noise ----------------------------------------

N = 120
BASE = [4.0 - 0.01 * i for i in range(1, N + 1)]


def test_time_to_target_sooner_only_outside_the_seed_band(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "bf16_s1234.log", BASE, [1000.0] * N, args={**SHAPE, "seed": 1234})
    # Another BF16 seed 0.05 lower: it reaches the baseline's final loss 5 iterations sooner.
    write_log(logs / "bf16_s2345.log", [v - 0.05 for v in BASE], [1000.0] * N,
              args={**SHAPE, "seed": 2345})
    # As much sooner as that seed: within noise. Half the step time: sooner beyond it.
    write_log(logs / "fp8_like_seed.log", [v - 0.05 for v in BASE], [1000.0] * N,
              args={**SHAPE, **FP8, "seed": 1234})
    write_log(logs / "fp8_fast.log", BASE, [500.0] * N,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "blockwise", "seed": 1234})
    (g,) = groups_of(logs)
    base, ref = g.versus["bf16_s1234"], g.versus["bf16_s2345"]
    assert ref.ttt_iteration == base.ttt_iteration - 5
    assert g.ttt_band == pytest.approx(abs(ref.ttt_s / base.ttt_s - 1))
    assert g.versus["fp8_like_seed"].ttt_change == pytest.approx(ref.ttt_s / base.ttt_s - 1)
    assert g.versus["fp8_like_seed"].ttt_verdict == "same within noise"
    assert g.versus["fp8_fast"].ttt_verdict == "sooner"
    assert g.versus["fp8_fast"].tokens_verdict == "same within noise"  # same losses, same tokens
    text, data = render(tmp_path)
    cmp = {c["run"]: c for c in data["comparisons"]}
    assert cmp["fp8_like_seed"]["time_to_target_verdict"] == "same within noise"
    assert cmp["fp8_fast"]["time_to_target_verdict"] == "sooner"
    assert cmp["fp8_fast"]["time_to_target_band"] == pytest.approx(g.ttt_band)
    head = text.split("Directory")[0]
    assert "time to target **same within noise**" in head
    # One FP8 seed outside BF16's band: what was seen, not a finding (no test behind it).
    assert "time to target **sooner, outside BF16's seed band, one FP8 seed: not a finding**" in head
    assert "time to target **sooner**" not in head
    assert "rests on one run" in head


def seeds_study(root, fp8_offsets, bf16_offsets=(0.0, 0.012, -0.009)):
    for seed, c in zip((1234, 2345, 3456), bf16_offsets):
        write_log(root / f"bf16_s{seed}.log", [v + c for v in BASE], [1000.0] * N,
                  args={**SHAPE, "seed": seed})
    for seed, c in zip((1234, 2345, 3456), fp8_offsets):
        write_log(root / f"fp8_s{seed}.log", [v + c for v in BASE], [800.0] * N,
                  args={**SHAPE, **FP8, "seed": seed})


@pytest.mark.parametrize("offsets,word", [((-0.2, -0.21, -0.19), "better"),
                                          ((0.2, 0.21, 0.19), "worse"),
                                          ((0.005, -0.004, 0.001), "same as BF16 within noise")])
def test_welch_t_test_with_three_seeds_a_side(tmp_path, offsets, word):
    seeds_study(tmp_path / "logs", offsets)
    (g,) = groups_of(tmp_path / "logs")
    (rv,) = verdict.build(g).recipes
    assert rv.seeds == 3 and rv.loss == word
    fp8 = [g.summaries[f"fp8_s{s}"].final_loss for s in (1234, 2345, 3456)]
    bf16 = [g.summaries[f"bf16_s{s}"].final_loss for s in (1234, 2345, 3456)]
    expected = stats.ttest_ind(fp8, bf16, equal_var=False)
    t = rv.loss_test
    assert t.name == "Welch's t-test" and (t.n_recipe, t.n_bf16) == (3, 3)
    assert t.p_value == pytest.approx(expected.pvalue)
    assert t.mean_difference == pytest.approx(statistics.fmean(fp8) - statistics.fmean(bf16))
    assert t.ci_low < t.mean_difference < t.ci_high
    text, data = render(tmp_path)
    (group,) = data["groups"]
    (recipe,) = group["verdict"]["recipes"]
    assert recipe["loss"] == word and recipe["loss_test"]["p_value"] == pytest.approx(t.p_value)
    assert f"Welch's t-test {verdict.p_text(t.p_value)}" in text.split("Directory")[0]


@pytest.mark.parametrize("offset, word", [(-0.1, "lower"), (0.1, "higher")])
def test_one_seed_verdict_rests_on_one_run_with_words_for_signs(tmp_path, offset, word):
    """One FP8 seed outside the BF16 seed band is what was seen, not a finding: no test backs
    "better" or "worse", in the verdict or in summary.json."""
    seeds_study(tmp_path / "logs", (offset,), bf16_offsets=(0.0, 0.03))
    (g,) = groups_of(tmp_path / "logs")
    (rv,) = verdict.build(g).recipes
    said = f"{word}, outside BF16's seed band, one FP8 seed: not a finding"
    assert rv.loss == said and rv.loss_test is None
    assert rv.loss_basis == (f"{word} loss by 0.1000, outside the ±0.0300 band of 2 BF16 seeds; "
                             "rests on one run")
    text, data = render(tmp_path)
    assert f"outside noise: {word} loss, 0.0700 beyond the ±0.0300 band" in text
    assert f"loss **{said}** ({rv.loss_basis})" in text
    assert "**better**" not in text and "**worse**" not in text
    (recipe,) = data["groups"][0]["verdict"]["recipes"]
    assert recipe["loss"] == said and recipe["loss_test"] is None and recipe["seeds"] == 1


# --- settings, verdict block, frictions --------------------------------------------------


def test_only_speed_relevant_settings_are_listed_and_named_in_the_verdict(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(logs / "fp8.log", [3.0] * 20, [800.0] * 20,
              args={**SHAPE, **FP8, "profile": True, "profile_step_start": 10,
                    "profile_step_end": 12, "log_interval": 1})
    write_log(logs / "fp8_pg.log", [3.0] * 20, [700.0] * 20,
              args={**SHAPE, **FP8, "fp8_param_gather": True})
    (g,) = groups_of(logs)
    assert [k for k, _ in g.differences] == ["fp8_param_gather"]
    assert {"profile", "profile_step_start", "profile_step_end"} <= set(g.quiet_differences)
    v = verdict.build(g)
    # The fastest at equal settings is the run without param gather: 1000 / 800.
    assert (v.fastest, v.over, v.speedup) == ("fp8", "bf16", 1.25)
    assert v.fastest_overall == "fp8_pg"
    assert v.fastest_overall_settings == ["fp8_param_gather True (baseline False)"]
    text, data = render(tmp_path)
    assert "- `fp8_param_gather`:" in text and "- `profile`" not in text
    head = text.split("Directory")[0]
    assert "**Fastest at equal settings**: **FP8 tensorwise (hybrid)** (fp8), **1.250x**" in head
    assert "that speedup mixes recipe and setting" in head
    cmp = {c["run"]: c for c in data["comparisons"]}
    assert cmp["fp8_pg"]["settings_differing"] == [
        {"setting": "fp8_param_gather", "value": "True", "baseline_value": "False"}]
    assert cmp["fp8"]["settings_differing"] == []


def test_settings_without_effect_are_neither_shown_nor_compared(tmp_path):
    """The BF16 layer counts without --first-last-layers-bf16 and the amax settings of a recipe
    without delayed scaling do nothing (recipes.idle_args): no recipe line shows them and no
    difference in them splits runs that ran at equal settings."""
    logs = tmp_path / "logs"
    idle = {"first_last_layers_bf16": False, "num_layers_at_start_in_bf16": 2,
            "num_layers_at_end_in_bf16": 2, "fp8_amax_history_len": 16}
    write_log(logs / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(logs / "fp8.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8, **idle})
    (g,) = groups_of(logs)
    assert g.differences == []
    assert verdict.build(g).fastest == "fp8"
    text, _ = render(tmp_path)
    assert ("- Recipe: FP8 tensorwise (hybrid) (fp8 hybrid, fp8_recipe tensorwise, "
            "fp8_param_gather False, first_last_layers_bf16 False, bf16 True)\n") in text
    # Where the layer counts act, they are part of the recipe (tensorwise 1F1L is a recipe of its
    # own), never a setting beside it: each gets its own label and a speedup at equal settings.
    for name, layers in (("fp8_1f1l", 1), ("fp8_2f2l", 2)):
        write_log(logs / f"{name}.log", [3.0] * 20, [900.0 - layers] * 20,
                  args={**SHAPE, **FP8, "first_last_layers_bf16": True,
                        "num_layers_at_start_in_bf16": layers, "num_layers_at_end_in_bf16": layers})
    (g,) = groups_of(logs)
    assert g.differences == []
    labels = {s.name: s.label for s in g.summaries.values()}
    assert "first/last 1/1" in labels["fp8_1f1l"] and "first/last 2/2" in labels["fp8_2f2l"]
    text, _ = render(tmp_path)
    head = text.split("Directory")[0]
    assert "mixes recipe and setting" not in head and "not compared at equal settings" not in head


def test_verdict_first_rows_by_speed_definitions_last(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "a_bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(logs / "b_slow.log", [3.0] * 20, [950.0] * 20,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "delayed"})
    write_log(logs / "c_fast.log", [3.0] * 20, [700.0] * 20, args={**SHAPE, **FP8})
    text, data = render(tmp_path)
    lines = text.splitlines()
    assert lines.index("**Verdict**") < next(i for i, x in enumerate(lines)
                                             if x.startswith("Directory"))
    assert lines.index("## How to read this") > next(i for i, x in enumerate(lines)
                                                     if x.startswith("### Runs"))
    rows = [x.split(":")[0][2:] for x in lines if x.startswith("| ") and ": " in x.split("|")[1]]
    assert rows[:3] == ["a_bf16", "c_fast", "b_slow"]  # baseline, then fastest first
    assert [r["name"] for r in data["runs"]] == ["a_bf16", "c_fast", "b_slow"]
    (group,) = data["groups"]
    assert group["verdict"]["fastest"] == "c_fast"
    assert group["verdict"]["speedup"] == pytest.approx(1000 / 700)


def test_bf16_details_show_no_fp8_defaults_and_sidecar_without_gpu(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    (logs / "bf16.meta.json").write_text(json.dumps({"run": "bf16", "exit_code": 0,
                                                     "environment": {"python": "3.12"}}))
    text, _ = render(tmp_path)
    assert "- Recipe: BF16 (bf16 True)" in text
    assert ("- GPU: unknown (the sidecar records no GPU and the manifest names none), so MFU "
            "is blank") in text


def test_predicted_speedup_beside_the_measured_one(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(logs / "fp8.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8})
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"runs": [{"name": "bf16"},
                                             {"name": "fp8", "predicted_speedup": 1.3}]}))
    text, data = render(tmp_path, "--manifest", str(manifest))
    assert "| 1.250x (predicted 1.30x) |" in text
    assert next(r for r in data["runs"] if r["name"] == "fp8")["predicted_speedup"] == 1.3


def test_predicted_band_and_extrapolation_beside_the_measured_one(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(logs / "fp8.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8})
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"runs": [{"name": "bf16"}, {
        "name": "fp8", "predicted_speedup": 1.3, "predicted_speedup_band": 0.083,
        "predicted_speedup_extrapolated": ["no H100 log"]}]}))
    text, data = render(tmp_path, "--manifest", str(manifest))
    assert "| 1.250x (predicted 1.30x ±8.3%, extrapolated) |" in text
    assert "predicted 1.30x ±8.3%, extrapolated: no H100 log" in text
    entry = next(r for r in data["runs"] if r["name"] == "fp8")
    assert entry["predicted_speedup_band"] == 0.083
    assert entry["predicted_speedup_extrapolated"] == ["no H100 log"]


@pytest.mark.parametrize("key,value", [("predicted_speedup_band", -0.1), ("predicted_speedup_band", "8%"),
                                       ("predicted_speedup_extrapolated", "no H100 log")])
def test_bad_predicted_band_is_bad_usage(tmp_path, capsys, key, value):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"runs": [{"name": "bf16", "predicted_speedup": 1.3, key: value}]}))
    assert report.main([str(tmp_path / "logs"), "--out", str(tmp_path / "o"), "--manifest", str(manifest)]) == 2
    assert f"runs[0].{key}: {value!r}" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["fast", -1, 0, True])
def test_bad_predicted_speedup_is_bad_usage(tmp_path, capsys, value):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"runs": [{"name": "bf16", "predicted_speedup": value}]}))
    assert report.main([str(tmp_path / "logs"), "--out", str(tmp_path / "o"),
                        "--manifest", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert err == (f"report.py: manifest {manifest}: runs[0].predicted_speedup: {value!r}: a "
                   "positive number (the speedup over BF16 the matrix predicts)\n")
    assert not (tmp_path / "o" / "report.md").exists()


def test_each_column_is_declared_once_and_feeds_table_json_and_definitions(tmp_path):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(tmp_path / "logs" / "fp8.log", [3.0] * 20, stall_times(), args={**SHAPE, **FP8})
    text, data = render(tmp_path)
    (g,) = groups_of(tmp_path / "logs")
    head = next(x for x in text.splitlines() if x.startswith("| Configuration | Status"))
    for c in columns.FIGURES:
        assert c.key in summary.RUN_FIELDS
        assert f" {c.title()} |" in head
        assert f"- *{c.title()}* [`{c.key}`]: {c.definition}." in text
        for r in data["runs"]:
            value = c.value(g.summaries[r["name"]], g.versus.get(r["name"]))
            assert r[c.key] == (pytest.approx(value) if value is not None else None), c.key
    assert summary.RUN_FIELDS == tuple(f.name for f in summary.fields(summary.RunEntry))
    csv_head = (tmp_path / "out" / "summary.csv").read_text().splitlines()[0]
    assert csv_head == ",".join(summary.RUN_FIELDS)


def test_stall_threshold_is_the_stated_one():
    # Exactly 5% slower is not a stall; just over is.
    _, _, _, _, stalls = metrics.step_stats([1, 2, 3, 4, 5],
                                            [1000.0, 1000.0, 1000.0, 1050.0, 1050.1])
    assert [x.iteration for x in stalls] == [5]


def test_every_summary_key_is_documented():
    """docs/reading-a-report.md names every key of the typed schema, so it cannot drift."""
    from dataclasses import fields
    from conftest import REPO
    doc = (REPO / "docs" / "reading-a-report.md").read_text()
    for cls in (summary.RunEntry, summary.ComparisonEntry, summary.GroupEntry, summary.SweepEntry,
                summary.SweepPoint, verdict.Verdict, verdict.RecipeVerdict, verdict.Test,
                metrics.PeerWindow, metrics.Stall):
        for f in fields(cls):
            assert f"`{f.name}`" in doc or f'"{f.name}"' in doc, f"{cls.__name__}.{f.name}"


def test_a_verdict_that_cannot_be_built_is_blank_with_its_reason(tmp_path, monkeypatch):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)

    def broken(g):
        raise ZeroDivisionError("float division by zero")
    monkeypatch.setattr(verdict, "build", broken)
    text, data = render(tmp_path)
    assert ("**Verdict**\n\n- Cannot tell: verdict blank (ZeroDivisionError: float division by "
            "zero).\n") in text
    assert data["groups"][0]["verdict"]["caveats"] == [
        "verdict blank (ZeroDivisionError: float division by zero)"]


CRASH = ("Traceback (most recent call last):\n  File \"pretrain_gpt.py\", line 1, in <module>\n"
         "torch.OutOfMemoryError: CUDA out of memory.\n")


@pytest.mark.parametrize("losses, ms, end, why", [
    ([3.0] * 10 + [float("nan")] * 10, [1000.0] * 20, "done", "fp8 diverged from iteration 11"),
    ([3.0] * 10, [1000.0] * 10, CRASH, "fp8 crashed"),
    ([3.0] * 3, [1000.0] * 3, "done", "fp8 has no timed iterations"),
], ids=["diverged", "crashed", "untimed"])
def test_no_answer_names_what_left_each_run_out(tmp_path, losses, ms, end, why):
    """A diverged run has step times (its row shows them): the answer names the divergence,
    not a missing step time."""
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(tmp_path / "logs" / "fp8.log", losses, ms, args={**SHAPE, **FP8}, end=end)
    (g,) = groups_of(tmp_path / "logs")
    assert verdict.build(g).no_answer == f"no run besides the baseline can be compared ({why})"


def test_no_answer_among_runs_of_the_baseline_recipe_says_so(tmp_path):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [1000.0] * 20, args={**SHAPE, "seed": 1})
    write_log(tmp_path / "logs" / "bf16_s2.log", [3.0] * 20, [990.0] * 20,
              args={**SHAPE, "seed": 2})
    write_log(tmp_path / "logs" / "fp8.log", [3.0] * 10, [800.0] * 10, args={**SHAPE, **FP8},
              end=CRASH)
    (g,) = groups_of(tmp_path / "logs")
    assert verdict.build(g).no_answer == ("every other run that can be compared is BF16 like "
                                          "the baseline; fp8 crashed")


def test_bf16_fastest_at_equal_settings_names_the_next_recipe(tmp_path):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [800.0] * 20, args=SHAPE)
    write_log(tmp_path / "logs" / "fp8.log", [3.0] * 20, [1000.0] * 20, args={**SHAPE, **FP8})
    (g,) = groups_of(tmp_path / "logs")
    v = verdict.build(g)
    assert (v.fastest, v.over, v.speedup) == ("bf16", "bf16", 1.0)
    assert (v.runner_up, v.runner_up_speedup) == ("fp8", 0.8)
    text, _ = render(tmp_path)
    assert ("- **Fastest at equal settings**: **BF16** (bf16); the fastest other recipe there, "
            "**FP8 tensorwise (hybrid)** (fp8), runs at **0.800x** its speed") in text


# --- recipes not told apart ----------------------------------------------------------------

DELAYED = {"fp8": "hybrid", "fp8_recipe": "delayed"}


def test_recipes_within_the_spread_between_sittings_are_not_told_apart(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    # Two sittings of the delayed run, 800 and 812 ms: a ±1.5% spread.
    write_log(logs / "fp8_delayed.log", [3.0] * 20, [812.0] * 20, args={**SHAPE, **DELAYED})
    write_log(logs / "fp8_delayed.1.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **DELAYED})
    write_log(logs / "fp8_cs.log", [3.0] * 20, [806.0] * 20, args={**SHAPE, **FP8})
    (g,) = groups_of(logs)
    assert g.spread == pytest.approx(0.015)
    v = verdict.build(g)
    shown = g.summaries["fp8_delayed"].median_iter_ms
    fast, slow = sorted([("fp8_delayed", shown), ("fp8_cs", 806.0)], key=lambda x: x[1])
    assert [t["run"] for t in v.tied] == [fast[0], slow[0]]
    assert v.tie_gap == pytest.approx(slow[1] / fast[1] - 1)
    assert (v.tie_noise, v.tie_noise_basis) == (pytest.approx(0.015), "between sittings")
    text, data = render(tmp_path)
    line = next(x for x in text.splitlines() if x.startswith("- **Fastest at equal settings**"))
    assert "not told apart" in line and "inside the ±1.5% between sittings" in line
    assert "**FP8 delayed (hybrid)** (fp8_delayed)" in line
    assert "**FP8 tensorwise (hybrid)** (fp8_cs)" in line
    assert [t["run"] for t in data["groups"][0]["verdict"]["tied"]] == [fast[0], slow[0]]


def test_without_repeats_the_least_step_time_noise_decides(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(logs / "fp8_cs.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8})
    write_log(logs / "fp8_delayed.log", [3.0] * 20, [806.0] * 20, args={**SHAPE, **DELAYED})
    (g,) = groups_of(logs)
    v = verdict.build(g)
    assert [(t["run"], t["label"]) for t in v.tied] == [
        ("fp8_cs", "FP8 tensorwise (hybrid)"), ("fp8_delayed", "FP8 delayed (hybrid)")]
    assert [t["speedup"] for t in v.tied] == [pytest.approx(1.25), pytest.approx(1000 / 806)]
    assert verdict.tie_text(v) == (
        "FP8 tensorwise (hybrid) and FP8 delayed (hybrid), 1.24–1.25x, not told apart: 0.8% "
        "apart, inside the ±1.0% step-time noise assumed at the least (no run launched twice, and no recipe with two seeds, to measure it)")
    # 2.5% apart: outside the noise, one fastest.
    write_log(logs / "fp8_delayed.log", [3.0] * 20, [820.0] * 20, args={**SHAPE, **DELAYED})
    (g,) = groups_of(logs)
    v = verdict.build(g)
    assert v.tied == [] and v.fastest == "fp8_cs" and verdict.tie_text(v) == ""
    text, _ = render(tmp_path)
    assert "not told apart" not in text.split("Directory")[0]
    assert "**FP8 tensorwise (hybrid)** (fp8_cs), **1.250x**" in text


def test_bf16_fastest_within_noise_of_a_recipe_is_not_told_apart(tmp_path):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [800.0] * 20, args=SHAPE)
    write_log(tmp_path / "logs" / "fp8.log", [3.0] * 20, [805.0] * 20, args={**SHAPE, **FP8})
    (g,) = groups_of(tmp_path / "logs")
    v = verdict.build(g)
    assert [t["run"] for t in v.tied] == ["bf16", "fp8"]
    text, _ = render(tmp_path)
    assert ("- **Fastest at equal settings**: **BF16** (bf16) and **FP8 tensorwise (hybrid)** "
            "(fp8), 0.99–1.00x, not told apart: 0.6% apart") in text
    assert "runs at **0.994x** its speed" not in text


def test_one_run_has_nothing_to_compare(tmp_path):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    text, data = render(tmp_path)
    assert "- Nothing to compare: one run (bf16, completed 20/20).\n" in text
    assert "no run besides the baseline" not in text
    assert data["groups"][0]["verdict"]["no_answer"] == (
        "nothing to compare: one run (bf16, completed 20/20)")
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 12, [1000.0] * 12,
              args={**SHAPE, "train_iters": 20}, end="cut")
    text, _ = render(tmp_path)
    assert "- Nothing to compare: one run (bf16, running/truncated" in text


def test_a_multi_study_report_opens_with_the_answer_by_study(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "small" / "bf16.log", [3.0] * 20, [800.0] * 20, args=SHAPE)
    write_log(logs / "small" / "fp8.log", [3.0] * 20, [1000.0] * 20, args={**SHAPE, **FP8})
    big = {**SHAPE, "world_size": 8, "data_parallel_size": 8}
    write_log(logs / "big" / "bf16.log", [3.0] * 20, [1000.0] * 20, args=big)
    write_log(logs / "big" / "fp8.log", [3.0] * 20, [800.0] * 20, args={**big, **FP8})
    write_log(logs / "lone" / "bf16.log", [3.0] * 20, [1000.0] * 20,
              args={**SHAPE, "world_size": 4, "data_parallel_size": 4})
    text, _ = render(tmp_path)
    lines = text.splitlines()
    assert lines[4] == "## Answer by study"
    rows = [x for x in lines[:20] if x.startswith("| [")]
    assert [r.split("]")[0] for r in rows] == ["| [big", "| [lone", "| [small"]
    assert rows[0].endswith("| FP8 tensorwise (hybrid) fastest, 1.250x (spread unknown: no run "
                            "launched twice, no recipe with two seeds) |")
    assert "| 8 |" in rows[0] and "(#big)" in rows[0]
    assert rows[1].endswith("| nothing to compare: one run (bf16, completed 20/20) |")
    assert rows[2].endswith("| BF16 fastest; next FP8 tensorwise (hybrid) at 0.800x (spread "
                            "unknown: no run launched twice, no recipe with two seeds) |")
    assert text.index("## Answer by study") < text.index("## big")
    # One study: no block.
    import shutil
    shutil.rmtree(logs / "big")
    shutil.rmtree(logs / "lone")
    text, _ = render(tmp_path)
    assert "Answer by study" not in text


def test_no_bf16_at_another_recipes_settings_names_the_fastest_fp8_row_as_mixed(tmp_path):
    logs = tmp_path / "logs"
    mixed = logs / "mixed"
    write_log(mixed / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(mixed / "fp8_pg.log", [3.0] * 20, [800.0] * 20,
              args={**SHAPE, **FP8, "fp8_param_gather": True})
    write_log(mixed / "fp8_pg_fast.log", [3.0] * 20, [700.0] * 20,
              args={**SHAPE, **FP8, "fp8_param_gather": True, "exp_avg_dtype": "torch.bfloat16"})
    (g,) = groups_of(mixed)
    v = verdict.build(g)
    assert v.fastest is None and v.no_answer.startswith("no BF16 run ran at the settings")
    label = "FP8 tensorwise +param-gather (hybrid)"
    assert v.mixed_fastest == {"run": "fp8_pg_fast", "label": label,
                               "speedup": pytest.approx(1000 / 700)}
    assert set(v.mixed_by) == {"fp8_param_gather", "exp_avg_dtype"}
    text, data = render(tmp_path)
    assert data["groups"][0]["verdict"]["mixed_fastest"]["run"] == "fp8_pg_fast"
    assert "- **Fastest at equal settings**: none: no BF16 run ran" in text
    assert (f"- **Mixed, recipe and settings**: the fastest run overall and fastest FP8 row "
            f"**{label}** (fp8_pg_fast), **1.429x** the BF16 row (bf16)") in text
    # The fastest run is that row: said once, with the settings it differs in from the baseline.
    assert "Fastest run" not in text
    assert ("it differs from the baseline in exp_avg_dtype torch.bfloat16 (baseline (absent)); "
            "fp8_param_gather True (baseline False): not a speedup") in text
    # Settings only other rows differ in are named after the row's own.
    write_log(mixed / "fp8_tp.log", [3.0] * 20, [900.0] * 20,
              args={**SHAPE, **FP8, "fp8_param_gather": True, "apply_query_key_layer_scaling": True})
    text, _ = render(tmp_path)
    assert "(baseline False); other rows differ in apply_query_key_layer_scaling: not" in text
    # In the answer by study, beside another study.
    write_log(logs / "other" / "bf16.log", [3.0] * 20, [1000.0] * 20,
              args={**SHAPE, "world_size": 4, "data_parallel_size": 4})
    text, _ = render(tmp_path)
    row = next(x for x in text.splitlines() if x.startswith("| [mixed"))
    assert "no answer at equal settings (the rows differ in " in row
    assert "fp8_param_gather" in row and "exp_avg_dtype" in row
    assert row.endswith(f": fastest FP8 row {label}, 1.429x the BF16 row, recipe and settings "
                        "mixed |")


def test_mixed_text_names_three_settings_then_dots():
    v = verdict.Verdict(mixed_fastest={"run": "r", "label": "FP8", "speedup": 1.4},
                        mixed_by=["a", "b", "c", "d"])
    assert verdict.mixed_text(v) == ("no answer at equal settings (the rows differ in a, b, c, "
                                     "...): fastest FP8 row FP8, 1.400x the BF16 row, recipe "
                                     "and settings mixed")
    assert verdict.mixed_text(verdict.Verdict()) == ""


def test_no_bf16_at_all_still_says_no_baseline(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "fp8.log", [3.0] * 20, [900.0] * 20, args={**SHAPE, **FP8})
    write_log(logs / "fp8_pg.log", [3.0] * 20, [800.0] * 20,
              args={**SHAPE, **FP8, "fp8_param_gather": True})
    (g,) = groups_of(logs)
    v = verdict.build(g)
    assert v.mixed_fastest is None and v.mixed_by == []
    assert "no BF16 run" in v.no_answer
    text, data = render(tmp_path)
    assert "- No comparison: " in text and "Mixed, recipe and settings" not in text
    assert data["groups"][0]["verdict"]["mixed_fastest"] is None


def test_untested_time_words_name_the_band_they_rest_on():
    assert verdict.untested_time("sooner", 1, "fp8") == (
        "sooner, outside BF16's seed band, one FP8 seed: not a finding")
    assert verdict.untested_time("later", 2, "fp8", band=False) == (
        "later, no BF16 seed band to judge it by, 2 FP8 seeds without a test: not a finding")


def test_no_committed_verdict_line_claims_a_band_it_lacks():
    """A time-to-target word never says "outside BF16's seed band" where the basis beside it
    says there is no band."""
    from conftest import REPO
    for page in sorted(REPO.glob("assets/**/report.md")):
        for line in page.read_text().splitlines():
            seg = line.split("time to target")[-1]
            assert not ("outside BF16's seed band" in seg
                        and ("no BF16 seed band" in seg or "do not reach the target" in seg)
                        ), f"{page}: {line[:200]}"


def test_the_answer_names_recipes_left_out_of_the_equal_settings_comparison(tmp_path):
    """An FP8 recipe that ran only at other settings (here: with --fp8-param-gather) is not
    covered by "fastest at equal settings": the answer names it and the setting it differs in."""
    from fp8suite.report import markdown
    logs = tmp_path / "logs"
    write_log(logs / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_log(logs / "fp8_cs.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8})
    write_log(logs / "fp8_pg.log", [3.0] * 20, [700.0] * 20,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "delayed", "fp8_param_gather": True})
    (g,) = groups_of(logs)
    v = verdict.build(g)
    assert v.fastest == "fp8_cs"
    assert v.not_compared == ["FP8 delayed +param-gather (hybrid)"]
    assert v.not_compared_by == ["fp8_param_gather"]
    assert markdown.answer_text(g, v).endswith(
        "; not compared at equal settings: FP8 delayed +param-gather (hybrid) (they differ in "
        "fp8_param_gather)")
    # Every FP8 recipe at equal settings: nothing left out, nothing said.
    (logs / "fp8_pg.log").unlink()
    (g,) = groups_of(logs)
    v = verdict.build(g)
    assert v.not_compared == [] and "not compared" not in markdown.answer_text(g, v)
