"""The report's arithmetic on small synthetic runs, with the numbers worked by hand.

The logs are written with Megatron-Core 0.19's own line formats: the arguments dump and start-up
come from the real trimmed log, and ITER reproduces the real iteration line exactly (checked by
test_iteration_template_is_the_real_format).
"""

import json
import math
from pathlib import Path

import pytest

import report
from fp8suite.report import markdown
from fp8suite.report import metrics
from helpers import ITER, REAL, SHAPE, groups_of, write_log


H100 = "NVIDIA H100 80GB HBM3"


def test_iteration_template_is_the_real_format():
    line = ITER.format(ts="2026-11-23 04:01:35.321753", it=1, total=30, samples=8, ms=6712.4,
                       tflops=42.9, lr=6e-05, gbs=8, loss=12.5709, scale=1.0, gnorm=5.866,
                       skip=0, nan=0)
    assert line + "\n" in REAL


# --- speed ---------------------------------------------------------------------------------


def test_speedup_tokens_and_mfu_by_hand(tmp_path):
    loss = [3.0] * 8
    write_log(tmp_path / "bf16.log", loss, [5000] * 3 + [1300, 1250, 1200, 1250, 1300],
              [100] * 3 + [400, 410, 420, 400, 390], args=SHAPE, gpu=H100)
    write_log(tmp_path / "fp8.log", loss, [5000] * 3 + [1000, 1000, 1200, 1000, 1000],
              [100] * 3 + [500, 500, 600, 500, 500],
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise"}, gpu=H100)
    (g,) = groups_of(tmp_path)
    b, f = g.summaries["bf16"], g.summaries["fp8"]
    assert (g.baseline, f.label) == ("bf16", "FP8 tensorwise (hybrid)")
    # Iterations 4-8 count (the first 3 are warm-up): medians 1250 ms and 1000 ms.
    assert (b.timed_iterations, b.median_iter_ms, f.median_iter_ms) == (5, 1250, 1000)
    assert g.versus["fp8"].speedup == 1.25  # 1250 / 1000
    # 16 sequences x 2048 tokens per iteration, shared by 2 GPUs = 16384 tokens per GPU.
    assert b.tokens_per_s_gpu == pytest.approx(16384 / 1.25)  # 13107.2
    assert f.tokens_per_s_gpu == pytest.approx(16384 / 1.0)
    # Megatron's own TFLOP/s medians against the H100 dense peaks, 989 BF16 and 1979 FP8.
    assert (b.tflops_gpu, f.tflops_gpu) == (400, 500)
    assert b.mfu == pytest.approx(400 / 989) and f.mfu == pytest.approx(500 / 1979)
    row = next(line for line in markdown.render([g], {}, "t", "c", ["d"], 3).splitlines()
               if line.startswith("| fp8:"))
    assert "| 1000.0 | 1.250x (mean differs) | 16,384 |" in row and "| 500.0 | 25.3% |" in row
    # The 1200 ms iteration 6 is a stall: the means (1260 vs 1040 ms) give 1.212x, 3.8 points
    # from the medians' 1.250x, more than the 1% tolerance.
    assert "| 1040.0 | 1.212x | 1200.0 @6 | 1 of 20%: 6 |" in row


def test_unknown_gpu_leaves_mfu_blank(tmp_path):
    write_log(tmp_path / "bf16.log", [3.0] * 5, [1000] * 5, args=SHAPE)
    (g,) = groups_of(tmp_path)
    s = g.summaries["bf16"]
    assert s.tflops_gpu == 100 and s.gpu is None and s.mfu is None


def test_timed_iterations_skip_warmup_and_the_row_after_eval_or_save():
    its = list(range(1, 13))
    mask = metrics.timed_mask(its, [1], warmup=3, eval_interval=5, save_interval=4,
                              log_interval=1)
    # warm-up 1-3; after an evaluation at 5 and 10: 6, 11; after a save at 4 and 8: 5, 9
    assert [it for it, keep in zip(its, mask) if keep] == [4, 7, 8, 10, 12]
    # --log-interval 10: the row of 30 covers 21-30, which holds the evaluation after 25
    assert metrics.timed_mask([10, 20, 30], [10], 0, 25, None, 10) == [True, True, False]
    # a restart at 21 warms up again
    assert metrics.timed_mask([19, 20, 21, 22, 23], [19, 21], 1, None, None, 1) == [
        False, True, False, True, True]


def test_nonfinite_values_stay_out_of_aggregates(tmp_path):
    write_log(tmp_path / "bf16.log", [3.0, 2.0, math.nan, 1.0, math.inf, 1.0, 1.0],
              [1000, 1000, 1000, math.nan, 1000, math.inf, 3000], args=SHAPE)
    (g,) = groups_of(tmp_path, warmup=0)
    s = g.summaries["bf16"]
    assert s.min_loss == 1.0
    # A NaN loss is divergence: no final loss is presented as valid.
    assert s.status == "diverged" and s.diverged_at == 3 and s.final_loss is None
    assert s.smooth_window == 5  # over the 5 finite values
    assert s.median_iter_ms == 1000 and s.timed_iterations == 5
    assert "2 non-finite elapsed time per iteration (ms)" in s.notes
    assert "2 non-finite lm loss" in s.notes


# --- convergence: noise band and time to target --------------------------------------------

BASE = [3.0 - 0.1 * i for i in range(1, 21)]  # 2.9 ... 1.0 over 20 iterations


def write_study(root: Path) -> None:
    """BF16 at two seeds, two FP8 recipes, a crash at an evaluation, a run that never started."""
    d = root / "logs" / "convergence"
    seed2 = [v + (0.04 if i % 2 == 0 else -0.01) for i, v in enumerate(BASE, 1)]
    write_log(d / "bf16_s1234.log", BASE, [1000] * 20, args={**SHAPE, "seed": 1234}, gpu=H100)
    write_log(d / "bf16_s5678.log", seed2, [1000] * 20, args={**SHAPE, "seed": 5678}, gpu=H100)
    fp8 = {**SHAPE, "seed": 1234, "fp8": "hybrid", "fp8_recipe": "tensorwise"}
    write_log(d / "fp8_within.log", [v - 0.015 for v in BASE], [800] * 20, args=fp8, gpu=H100)
    write_log(d / "fp8_fast.log", [v - 0.35 for v in BASE], [900] * 20,
              args={**fp8, "fp8_recipe": "blockwise"}, gpu=H100)
    oom = ("[rank0]: Traceback (most recent call last):\n"
           "[rank0]:   File \"/workspace/pretrain_entry.py\", line 57, in <module>\n"
           "[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.91 GiB.\n")
    write_log(d / "fp8_delayed_oom.log", BASE[:10], [850] * 10,
              args={**fp8, "fp8_recipe": "delayed", "eval_interval": 10, "train_iters": 20},
              end=oom)
    (d / "never_started.log").write_text(
        "Traceback (most recent call last):\n  File \"/workspace/pretrain_entry.py\", line 3, "
        "in <module>\nModuleNotFoundError: No module named 'transformer_engine'\n")


def test_noise_band_and_time_to_target_by_hand(tmp_path):
    write_study(tmp_path)
    (g,) = groups_of(tmp_path / "logs")
    assert g.baseline == "bf16_s1234"  # the BF16 run with the lowest seed
    assert g.noise_run == "bf16_s5678"
    # Gaps are between smoothed curves (trailing mean of 5), which exist from iteration 5:
    # 16 shared points, last quarter 17-20. Seed 5678 is +.04 at even and -.01 at odd
    # iterations, so its 5-mean gap is (2 x .04 - 3 x .01) / 5 = .01 at odd iterations and
    # (3 x .04 - 2 x .01) / 5 = .02 at even ones: mean .015, largest +.02. The band is the
    # same statistic as each run's gap: |mean| = .015.
    assert (g.noise.first, g.noise.last, g.noise.n) == (17, 20, 4)
    assert g.noise.mean == pytest.approx(0.015) and g.band == pytest.approx(0.015)
    assert g.noise.max == pytest.approx(0.02)
    within, fast = g.versus["fp8_within"], g.versus["fp8_fast"]
    assert within.gap.mean == pytest.approx(-0.015) and within.gap.max == pytest.approx(-0.015)
    assert fast.gap.mean == pytest.approx(-0.35)
    assert fast.verdict == "outside noise (-0.3350)"  # 0.335 beyond the 0.015 band, better
    # Target: the baseline's final smoothed loss, mean of its last 5 losses 1.4 ... 1.0.
    assert (g.window, g.target) == (5, pytest.approx(1.2))
    base = g.versus["bf16_s1234"]
    assert (base.ttt_iteration, base.ttt_s, base.ttt_tokens) == (20, pytest.approx(20.0), 655360)
    # fp8_fast's trailing 5-mean is 2.85 - 0.1 i: first <= 1.2 at i = 17, after 17 x 0.9 s.
    assert (fast.ttt_iteration, fast.ttt_s) == (17, pytest.approx(15.3))
    assert fast.ttt_tokens == 17 * 16 * 2048
    assert fast.ttt_speedup == pytest.approx(20.0 / 15.3)
    # fp8_within's is 3.185 - 0.1 i: only at i = 20, after 20 x 0.8 s.
    assert (within.ttt_iteration, within.ttt_s) == (20, pytest.approx(16.0))
    assert within.ttt_speedup == pytest.approx(1.25)
    # The crashed run compares over what it logged; the run with no arguments joined the group.
    assert g.summaries["fp8_delayed_oom"].reason.startswith(
        "crashed during evaluation after iteration 10: torch.OutOfMemoryError")
    assert "never_started" in g.summaries and g.versus["never_started"].gap is None


def test_no_bf16_run_means_no_baseline(tmp_path):
    write_log(tmp_path / "fp8.log", BASE, [900] * 20,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise"})
    (g,) = groups_of(tmp_path)
    assert g.baseline is None and g.versus == {}
    assert "no BF16 run in this group" in g.baseline_note


def test_unknown_precision_is_no_claim_of_no_bf16_run(tmp_path):
    # An FP8 run with its dump and a log without one named *_bf16: its precision is unknown.
    write_log(tmp_path / "fp8.log", BASE, [900] * 20,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise"})
    text = (tmp_path / "fp8.log").read_text()
    first = text.index(" [2026-11-23")  # the iteration lines without the start-up and dump
    (tmp_path / "x_bf16.log").write_text(text[first:])
    (g,) = groups_of(tmp_path)
    assert g.summaries["x_bf16"].precision is None
    assert g.baseline is None
    assert g.baseline_note.startswith("precision unknown for 1 of 2 runs (no argument dump): "
                                      "no baseline")


def test_groups_split_by_directory_and_shape(tmp_path):
    write_log(tmp_path / "a" / "bf16.log", BASE, [1000] * 20, args=SHAPE)
    write_log(tmp_path / "a" / "bf16_seq4k.log", BASE, [1000] * 20,
              args={**SHAPE, "seq_length": 4096})
    write_log(tmp_path / "b" / "bf16.log", BASE, [1000] * 20, args=SHAPE)
    groups = groups_of(tmp_path)
    assert [(g.title.split(" (")[0], [r.name for r in g.runs]) for g in groups] == [
        ("a", ["bf16"]), ("a", ["bf16_seq4k"]), ("b", ["bf16"])]
    assert len({g.slug for g in groups}) == 3


def test_golden_report_of_a_convergence_study(tmp_path, monkeypatch, golden):
    write_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert report.main(["logs", "--out", "assets", "--title", "Convergence study"]) == 0
    golden("report/convergence_study.md", (tmp_path / "assets" / "report.md").read_text())


# --- labels and launch facts ---------------------------------------------------------------

ARGS_BF16 = {"bf16": "True", "fp8": "None", "fp8_recipe": "delayed", "fp8_param_gather": "False",
             "first_last_layers_bf16": "False", "num_layers_at_start_in_bf16": "1",
             "num_layers_at_end_in_bf16": "1"}


@pytest.mark.parametrize("args, label", [
    ({}, "BF16"),
    ({"fp8": "hybrid"}, "FP8 delayed (hybrid)"),
    ({"fp8": "hybrid", "fp8_recipe": "tensorwise", "fp8_param_gather": "True"},
     "FP8 tensorwise +param-gather (hybrid)"),
    ({"fp8": "hybrid", "fp8_recipe": "tensorwise", "first_last_layers_bf16": "True",
      "num_layers_at_end_in_bf16": "2"}, "FP8 tensorwise (BF16 first/last 1/2) (hybrid)"),
    ({"fp8": "e4m3", "fp8_recipe": "blockwise"}, "FP8 blockwise (e4m3)"),
    ({"fp8": "e4m3", "fp8_recipe": "mxfp8"}, "MXFP8 (e4m3)"),
    ({"fp4": "e2m1", "fp4_recipe": "nvfp4"}, "FP4 NVFP4 (e2m1)"),
    ({"bf16": "False", "fp16": "True"}, "FP16"),
])
def test_recipe_labels(args, label):
    assert metrics.recipe_label({**ARGS_BF16, **args}) == label


def test_recipe_label_without_arguments():
    assert metrics.recipe_label({}) == "unknown (no arguments dump)"


def test_exit_code_of_a_log_that_just_stops():
    cut = "log ends after iteration 22 of 30 (no end marker)"
    assert metrics.with_exit_code("running/truncated", cut, 137) == (
        "crashed", f"crashed: exit code 137 (SIGKILL) with no error in the log ({cut})")
    assert metrics.with_exit_code("running/truncated", cut, 0) == (
        "running/truncated", cut + "; the process exited with code 0")
    assert metrics.with_exit_code("completed", "completed 30/30", 0) == (
        "completed", "completed 30/30")


def test_launch_wall_clock_from_the_sidecar(tmp_path):
    write_log(tmp_path / "bf16.log", BASE, [1000] * 20, args=SHAPE)
    (tmp_path / "bf16.meta.json").write_text(json.dumps(
        {"started": "2026-11-23T04:00:00+00:00", "ended": "2026-11-23T04:01:05+00:00"}))
    (g,) = groups_of(tmp_path)
    assert g.summaries["bf16"].launch_s == 65.0
    text = markdown.render([g], {}, "t", "c", ["d"], 3)
    assert "| 20.0 s (launch 1m 05s) |" in text


# --- honest comparisons --------------------------------------------------------------------


@pytest.mark.parametrize("base_first_ms, run_first_ms", [(9000, 2000), (2000, 9000), (5000, 5000)])
def test_time_to_target_leaves_out_warmup_as_the_median_does(tmp_path, base_first_ms, run_first_ms):
    """A 50-iteration pair with the same loss: time to target agrees with the speedup, whatever
    the first (warm-up) iteration cost."""
    losses = [5.0 - 0.05 * i for i in range(50)]
    write_log(tmp_path / "bf16.log", losses, [base_first_ms] + [1000.0] * 49, args=SHAPE)
    write_log(tmp_path / "fp8.log", losses, [run_first_ms] + [1010.0] * 49,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise"})
    (g,) = groups_of(tmp_path)
    v = g.versus["fp8"]
    assert v.speedup == pytest.approx(1000 / 1010)
    assert v.ttt_speedup == pytest.approx(v.speedup, rel=1e-6)
    assert "under 100 iterations (bf16, fp8)" in g.caveats and not g.loss_meaningful


def test_mock_data_and_differing_settings_are_listed(tmp_path):
    write_log(tmp_path / "bf16.log", BASE * 6, [1000] * 120, args={**SHAPE, "mock_data": True})
    write_log(tmp_path / "fp8_pg.log", BASE * 6, [900] * 120,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise", "fp8_param_gather": True})
    write_log(tmp_path / "fp8_bw.log", BASE * 6, [800] * 120,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "blockwise"})
    (g,) = groups_of(tmp_path)
    assert g.caveats == ["mock data (bf16)"]
    diffs = dict(g.differences)
    assert diffs["fp8_param_gather"] == [("False", ["bf16", "fp8_bw"]), ("True", ["fp8_pg"])]
    assert "fp8" not in diffs and "fp8_recipe" not in diffs and "seed" not in diffs
    text = markdown.render([g], {}, "t", "c", ["d"], 3)
    assert "- `fp8_param_gather`: False (bf16, fp8_bw); True (fp8_pg)" in text
    assert "**Loss comparisons not meaningful here**: mock data (bf16)." in text
    assert "(not meaningful)" in text and "In words" not in text


def test_largest_gap_keeps_its_sign(tmp_path):
    write_log(tmp_path / "bf16.log", BASE, [1000] * 20, args=SHAPE)
    worse = [v + (0.1 if i % 2 else -0.3) for i, v in enumerate(BASE)]
    write_log(tmp_path / "fp8.log", worse, [900] * 20,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise"})
    (g,) = groups_of(tmp_path, warmup=0)
    gap = g.versus["fp8"].gap
    assert gap.max < 0 and abs(gap.max) == gap.max_abs
    assert all(abs(gap.max) >= abs(d) for d in (gap.mean,))


def test_step_time_bars_are_the_tables_medians_with_their_speedups(tmp_path):
    from fp8suite.report import plots
    loss = [3.0] * 8
    write_log(tmp_path / "bf16.log", loss, [5000] * 3 + [1300, 1250, 1200, 1250, 1300], args=SHAPE)
    write_log(tmp_path / "fp8.log", loss, [5000] * 3 + [1000, 900, 1200, 1000, 1000],
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise"})
    # Diverged at iteration 6: its times are real, its speedup is not given.
    write_log(tmp_path / "fp8_nan.log", [3.0] * 5 + [math.nan] * 3, [900] * 8,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "delayed"})
    (g,) = groups_of(tmp_path)
    bars = [r for r in g.runs if plots._timed_ms(g, r)]
    fig = plots._step_time_figure(g, bars)
    (ax,) = fig.axes
    widths = {label.get_text().split(" (")[0]: p.get_width()
              for label, p in zip(ax.get_yticklabels(), ax.patches)}
    assert widths == {name: g.summaries[name].median_iter_ms for name in ("bf16", "fp8", "fp8_nan")}
    assert widths["fp8"] == 1000 and widths["bf16"] == 1250
    notes = [t.get_text().split("ms")[1].strip() for t in ax.texts]
    assert notes == ["baseline", "1.25x", f"{g.summaries['fp8_nan'].status}: no speedup"]
    assert g.summaries["fp8_nan"].status == "diverged"
    # The whisker spans the middle half of the timed iterations: fp8's 900-1100 ms quartiles.
    (low, high), = [seg[:, 0] for seg in ax.collections[1].get_segments()]
    assert (low, high) == (950.0, 1100.0)


def test_a_group_of_one_run_has_no_step_time_bars(tmp_path):
    write_log(tmp_path / "logs" / "bf16.log", [3.0] * 8, [1000] * 8, args=SHAPE)
    assert report.main([str(tmp_path / "logs"), "--out", str(tmp_path / "out")]) == 0
    assert not list((tmp_path / "out").glob("*step-time*"))
    write_log(tmp_path / "logs" / "fp8.log", [3.0] * 8, [900] * 8,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise"})
    assert report.main([str(tmp_path / "logs"), "--out", str(tmp_path / "out")]) == 0
    (png,) = (tmp_path / "out").glob("*step-time*")
    assert f"![Step time per run]({png.name})" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("log_interval", [1, 2, 5])
def test_the_iterations_a_profiler_slowed_are_not_timed(tmp_path, log_interval):
    # Megatron's PyTorch profiler records iterations start..end-1 and exports its trace as
    # iteration `end` starts (megatron/training/training.py): those rows are slow.
    n = 40
    ms = [1000.0] * n
    ms[20 - 1] = 1100.0   # profiled
    ms[21 - 1] = 9000.0   # trace export
    iters = list(range(log_interval, n + 1, log_interval))
    rows = [sum(ms[i - log_interval:i]) / log_interval for i in iters]
    args = {**SHAPE, "log_interval": log_interval, "profile": "True", "use_pytorch_profiler": "True",
            "profile_step_start": 20, "profile_step_end": 21}
    mask = metrics.timed_mask(iters, [], 3, 1000, None, log_interval, metrics.profiled_span(
        {k: str(v) for k, v in args.items()}))
    slowed = [it for it, keep, r in zip(iters, mask, rows) if r != 1000.0]
    assert slowed and not any(keep for it, keep, r in zip(iters, mask, rows) if r != 1000.0)
    # Only rows covering iterations 20-21 are dropped, besides the warm-up (the rows that
    # cover any of the first 3 iterations: warm-up counts iterations, not lines).
    warm = [it for it in iters if it - log_interval < 3]
    assert [it for it, keep in zip(iters, mask) if not keep] == warm + [
        it for it in iters[len(warm):] if it - log_interval < 21 and it >= 20]
    # Without --profile in the arguments nothing else is dropped.
    assert metrics.profiled_span({"profile": "False", "profile_step_start": "20",
                                  "profile_step_end": "21"}) is None


def test_a_profiled_run_times_as_its_unprofiled_twin(tmp_path):
    base = [1000.0 + (i % 3) for i in range(30)]
    slow = list(base)
    slow[20 - 1], slow[21 - 1] = 1090.0, 9500.0
    write_log(tmp_path / "bf16.log", [3.0] * 30, base, args=SHAPE)
    write_log(tmp_path / "fp8.log", [3.0] * 30, slow,
              args={**SHAPE, "fp8": "hybrid", "fp8_recipe": "tensorwise", "profile": True,
                    "use_pytorch_profiler": True, "profile_step_start": 20, "profile_step_end": 21})
    (g,) = groups_of(tmp_path)
    b, f = g.summaries["bf16"], g.summaries["fp8"]
    assert f.timed_iterations == b.timed_iterations - 2
    assert f.median_iter_ms == 1001.0 and b.median_iter_ms == 1001.0


# --- repeated launches ---------------------------------------------------------------------


def launch(path: Path, ms: float, started: str, args=None) -> None:
    """A completed launch of 8 iterations at `ms` each after warm-up, with its sidecar."""
    write_log(path, [3.0] * 8, [5000] * 3 + [ms] * 5, args={**SHAPE, **(args or {})})
    path.with_name(path.stem + ".meta.json").write_text(json.dumps(
        {"run": path.stem, "exit_code": 0, "started": started}))


FP8 = {"fp8": "hybrid", "fp8_recipe": "tensorwise"}


def test_each_run_is_compared_with_the_baseline_launch_of_its_own_sitting(tmp_path):
    # Two sittings hours apart: the baseline ran 1000 ms in the first and 1020 ms in the second.
    launch(tmp_path / "bf16.log", 1000, "2026-11-23T10:00:00+00:00")
    launch(tmp_path / "early.log", 800, "2026-11-23T10:05:00+00:00", FP8)
    launch(tmp_path / "same.log", 1005, "2026-11-23T10:10:00+00:00", FP8)
    launch(tmp_path / "bf16.1.log", 1020, "2026-11-23T14:00:00+00:00")
    launch(tmp_path / "late.log", 850, "2026-11-23T13:55:00+00:00", FP8)
    (g,) = groups_of(tmp_path)
    assert g.baseline == "bf16" and g.summaries["bf16"].median_iter_ms == 1020  # the latest shown
    assert [a.median_iter_ms for a in g.summaries["bf16"].repeats] == [1000, 1020]
    assert g.spread == pytest.approx(0.02) and g.spread_run == "bf16"
    early, same, late = g.versus["early"], g.versus["same"], g.versus["late"]
    assert (early.speedup, early.baseline_log) == (1000 / 800, "bf16.log")
    assert (late.speedup, late.baseline_log) == (1020 / 850, "")  # the shown launch is nearest
    # 1000 / 1005 = 0.995: within the 2% the baseline itself moved between sittings.
    assert same.within_spread and not early.within_spread and not late.within_spread
    text = markdown.render([g], {}, "t", "c", ["d"], 3)
    assert "| 0.995x (within spread) vs `bf16.log` (1,000.0 ms) |" in text
    assert "| 1.250x vs `bf16.log` (1,000.0 ms) |" in text and "| 1.200x |" in text
    assert (early.baseline_ms, late.baseline_ms) == (1000, None)
    # The baseline's own section lists both launches with their itr times.
    assert "`bf16.log` completed (8/8, itr time 1,000.0 ms); `bf16.1.log` completed (8/8, itr time 1,020.0 ms)" in text
    assert "Step-time spread between launches: ±2.0%" in text and "1,000.0 ms (`bf16.log`)" in text


def test_one_launch_of_each_run_changes_nothing(tmp_path):
    launch(tmp_path / "bf16.log", 1000, "2026-11-23T10:00:00+00:00")
    launch(tmp_path / "fp8.log", 995, "2026-11-23T10:05:00+00:00", FP8)
    (g,) = groups_of(tmp_path)
    v = g.versus["fp8"]
    assert g.spread is None and (v.baseline_log, v.within_spread) == ("", False)
    assert "Step-time spread between" not in markdown.render([g], {}, "t", "c", ["d"], 3)


def test_a_repeated_run_other_than_the_baseline_sets_the_spread(tmp_path):
    # The FP8 run launched twice, 3% apart; a crashed launch is no repeat.
    launch(tmp_path / "bf16.log", 1000, "2026-11-23T10:00:00+00:00")
    launch(tmp_path / "fp8.log", 800, "2026-11-23T10:05:00+00:00", FP8)
    launch(tmp_path / "fp8.1.log", 824, "2026-11-23T10:10:00+00:00", FP8)
    launch(tmp_path / "other.log", 980, "2026-11-23T10:15:00+00:00", FP8)
    write_log(tmp_path / "other.1.log", [3.0] * 6, [5000] * 3 + [500] * 3,
              args={**SHAPE, **FP8, "train_iters": 8}, end="cut")
    (g,) = groups_of(tmp_path)
    assert g.spread_run == "fp8" and g.spread == pytest.approx(0.03)
    assert [a.median_iter_ms for a in g.summaries["other"].repeats] == [980]
    assert g.versus["other"].within_spread  # 1000 / 980 = 1.020, within 3%
    assert not g.versus["fp8"].within_spread  # 1000 / 824 = 1.214


def test_seeds_of_one_recipe_at_equal_settings_set_the_spread(tmp_path):
    """A seed moves the data order and initial weights, not the work per step: the seeds of a
    recipe at equal settings measure the step-time spread as repeated launches do. A run at
    other settings (here --fp8-param-gather) is not one of those seeds."""
    t = "2026-11-23T10:00:00+00:00"
    launch(tmp_path / "bf16_s1.log", 1000, t, {"seed": 1})
    launch(tmp_path / "bf16_s2.log", 1010, t, {"seed": 2})
    launch(tmp_path / "fp8_s1.log", 800, t, {**FP8, "seed": 1})
    launch(tmp_path / "fp8_s2.log", 824, t, {**FP8, "seed": 2})
    launch(tmp_path / "fp8_pg_s2.log", 990, t, {**FP8, "fp8_param_gather": True, "seed": 2})
    (g,) = groups_of(tmp_path)
    assert g.launch_spread is None and g.spread_from_seeds
    spread, label, runs = g.seed_spread
    assert spread == pytest.approx(0.03) and g.spread == pytest.approx(0.03)
    assert [name for name, _ in runs] == ["fp8_s1", "fp8_s2"]
    assert g.versus["bf16_s2"].within_spread  # 1000 / 1010, within 3%
    text = markdown.render([g], {}, "t", "c", ["d"], 3)
    assert "Step-time spread between seeds: ±3.0%" in text and "824.0 ms (fp8_s2)" in text
    assert "step-time spread ±3.0% between seeds" in text


def test_one_seed_per_recipe_gives_no_spread(tmp_path):
    t = "2026-11-23T10:00:00+00:00"
    launch(tmp_path / "bf16_s1.log", 1000, t, {"seed": 1})
    launch(tmp_path / "fp8_s1.log", 800, t, {**FP8, "seed": 1})
    launch(tmp_path / "fp8_pg_s2.log", 990, t, {**FP8, "fp8_param_gather": True, "seed": 2})
    (g,) = groups_of(tmp_path)
    assert g.seed_spread is None and g.spread is None
    assert "no run launched twice, no recipe with two seeds" in markdown.render([g], {}, "t", "c", ["d"], 3)


def test_without_launch_times_the_shown_baseline_launch_is_used(tmp_path):
    # No sidecars: which baseline launch is nearest is unknown; the spread still is.
    write_log(tmp_path / "bf16.log", [3.0] * 8, [5000] * 3 + [1000] * 5, args=SHAPE)
    write_log(tmp_path / "bf16.1.log", [3.0] * 8, [5000] * 3 + [1030] * 5, args=SHAPE)
    write_log(tmp_path / "fp8.log", [3.0] * 8, [5000] * 3 + [800] * 5, args={**SHAPE, **FP8})
    (g,) = groups_of(tmp_path)
    v = g.versus["fp8"]
    assert (v.speedup, v.baseline_log) == (1030 / 800, "") and g.spread == pytest.approx(0.03)


def test_a_launch_with_another_setup_is_no_repeat(tmp_path):
    # bf16.log ran on one GPU (a quick test), bf16.1.log on two: not the same measurement.
    launch(tmp_path / "bf16.log", 1900, "2026-11-23T10:00:00+00:00", {"world_size": 1})
    launch(tmp_path / "bf16.1.log", 1000, "2026-11-23T14:00:00+00:00")
    launch(tmp_path / "fp8.log", 800, "2026-11-23T10:05:00+00:00", FP8)
    (g,) = groups_of(tmp_path)
    assert [a.median_iter_ms for a in g.summaries["bf16"].repeats] == [1000]
    v = g.versus["fp8"]
    assert g.spread is None and (v.speedup, v.baseline_log) == (1000 / 800, "")


def _profiled_and_repeat(tmp_path, change=None):
    """The committed profiled launch of a run and its unprofiled repeat, in a fresh folder;
    `change` rewrites the repeat's text."""
    src = Path(__file__).resolve().parents[1] / "logs" / "h200_8b_one_gpu"
    logs = tmp_path / "logs"
    logs.mkdir()
    run = "one_llama3_8b_h200_fp8_cs_base"
    for name in (f"{run}.log", f"{run}.kernels.json"):
        (logs / name).write_bytes((src / name).read_bytes())
    repeat = (src / f"{run}.1.log").read_text()
    (logs / f"{run}.1.log").write_text(change(repeat) if change else repeat)
    assert report.main([str(logs), "--out", str(tmp_path / "out")]) == 0
    return (tmp_path / "out" / "report.md").read_text(), run


def test_a_repeat_without_the_profiler_shows_the_profiled_launch_s_breakdown(tmp_path):
    text, run = _profiled_and_repeat(tmp_path)
    assert "### Where the step time goes" in text
    assert f"(profiled launch `{run}.log`) | 1,440 |" in text


def test_a_profiled_launch_of_another_setup_lends_no_breakdown(tmp_path):
    dots = "  micro_batch_size ................................ "
    text, _ = _profiled_and_repeat(tmp_path, lambda t: t.replace(dots + "1", dots + "2"))
    assert "### Where the step time goes" not in text


@pytest.mark.parametrize("log_interval, warmup, timed", [(1, 3, 37), (20, 3, 1), (10, 10, 3),
                                                         (10, 11, 2), (5, 0, 8)])
def test_warmup_counts_iterations_not_lines(log_interval, warmup, timed):
    """--log-interval N: each line's time is already per iteration; warm-up drops the lines
    that cover any of the first `warmup` iterations, and the count says how many iterations
    the median rests on (lines x interval)."""
    iters = list(range(log_interval, 40 + 1, log_interval))
    mask = metrics.timed_mask(iters, [], warmup, None, None, log_interval)
    assert sum(mask) == timed
    assert metrics.timed_iteration_count(mask, log_interval,
                                         [1000.0] * len(iters)) == timed * log_interval
