"""Field reports: situations users of Megatron-Core met, each read by tools/report.py and held to
what its `expected.txt` says (tests/data/field-reports/<ID>/), and the real two-H200 attempts.

Each test runs the whole CLI on the folder and reads both report.md and summary.json.
"""

import json
import shutil
from pathlib import Path

import pytest

import report
from fp8suite.logs import stream as logstream

DATA = Path(__file__).parent / "data"
FIELD = DATA / "field-reports"
REAL_H200X2 = DATA / "real_h200x2"
MEGATRON019 = DATA / "logs" / "megatron019"


def make_report(src: Path, out: Path, *extra: str):
    assert report.main([str(src), "--out", str(out), *extra]) == 0
    text = (out / "report.md").read_text()
    data = json.loads((out / "summary.json").read_text())
    return text, {r["name"]: r for r in data["runs"]}, data


def test_every_field_report_is_tested():
    tested = {"B01", "B02", "B04", "B07", "B11", "C01", "C06", "C11", "C14", "C16"}
    assert {p.name for p in FIELD.iterdir() if p.is_dir()} == tested
    for case in tested:
        assert (FIELD / case / "expected.txt").read_text().strip()


def test_b01_tee_and_rank_prefixes(tmp_path, capsys):
    """Recipe label 'FP8 delayed +param-gather' (arguments dump read through the '[default0]:'
    prefix) and status 'crashed in iteration 6: torch.OutOfMemoryError: CUDA out of memory'
    with no leftover '[rank3]:'."""
    text, runs, _ = make_report(FIELD / "B01", tmp_path)
    (run,) = runs.values()
    # recipes.py's one label, the field report's words followed by the format.
    assert run["label"] == "FP8 delayed +param-gather (hybrid)"
    assert "| train_fp8_delayed: FP8 delayed +param-gather (hybrid) |" in text
    assert run["status"] == "crashed"
    assert run["reason"].startswith(
        "crashed in iteration 6: torch.OutOfMemoryError: CUDA out of memory")
    assert run["tokens_per_s_per_gpu"] is not None  # the shape came from the arguments dump
    assert "[rank3]:" not in text and "[default" not in text
    assert "[rank3]:" not in json.dumps(runs)


def test_b02_nan_loss_left_out_of_the_line_is_divergence(tmp_path):
    """fp8_delayed flagged as diverged: lm loss missing (NaN) from iteration 31 on (20 of 50
    logged iterations), with no loss gap / final loss presented as a valid comparison."""
    text, runs, data = make_report(FIELD / "B02", tmp_path)
    fp8 = runs["fp8_delayed"]
    assert fp8["status"] == "diverged" and fp8["diverged_at_iteration"] == 31
    assert "lm loss missing (NaN) from iteration 31 on (20 of 50 logged iterations)" in fp8["reason"]
    assert fp8["final_loss"] is None and fp8["speedup"] is None
    (cmp,) = data["comparisons"]
    assert cmp["run"] == "fp8_delayed" and cmp["valid"] is False
    assert cmp["loss_gap_mean"] is None and cmp["time_to_target_s"] is None
    assert runs["bf16"]["status"] == "completed" and runs["bf16"]["baseline"] == "bf16"
    row = next(line for line in text.splitlines() if line.startswith("| fp8_delayed:"))
    assert "not valid (diverged)" in row
    # The verdict names the divergence that left the run out, not a missing step time.
    assert ("- **Fastest at equal settings**: none: no run besides the baseline can be compared "
            "(fp8_delayed diverged from iteration 31).\n") in text
    # Without --first-last-layers-bf16 the BF16 layer counts do nothing: not shown.
    assert ("- Recipe: FP8 delayed +param-gather (hybrid) (fp8 hybrid, fp8_recipe delayed, "
            "fp8_param_gather True, first_last_layers_bf16 False, bf16 True)\n") in text


def test_b04_non_numeric_fields_of_a_derivative(tmp_path):
    """30/30 iterations parsed (itr time about 85,500 ms, lm loss values) with the non-numeric
    fields (elapsed time, remaining time) ignored and 0 garbled lines."""
    text, runs, _ = make_report(FIELD / "B04", tmp_path)
    (run,) = runs.values()
    assert (run["iterations_done"], run["iterations_planned"]) == (30, 30)
    assert run["median_iteration_ms"] == pytest.approx(85500, abs=500)
    assert run["final_loss"] is not None and run["min_loss"] is not None
    assert "garbled" not in text


def test_b07_slurm_time_limit_is_not_a_crash(tmp_path):
    """time-limit: Slurm cancelled the job at its time limit (40/1000), not crashed with
    SignalException."""
    text, runs, _ = make_report(FIELD / "B07", tmp_path)
    (run,) = runs.values()
    assert run["status"] == "time-limit" and run["run_state"] == "time-limited"
    assert run["reason"] == "Slurm cancelled the job at its time limit (40/1000)"
    assert "SignalException" not in run["reason"]


def test_b11_runtime_is_the_sum_of_segments(tmp_path):
    """runtime about 1m 42s (sum of the two segments' spans; the 6 h gap between the crash at
    iteration 23 and the restart excluded or called out), 1 restart, 3 repeated iterations
    replaced."""
    text, runs, _ = make_report(FIELD / "B11", tmp_path)
    (run,) = runs.values()
    assert run["runtime_s"] == pytest.approx(102, abs=3)
    assert run["downtime_s"] == pytest.approx(6 * 3600, rel=0.01)
    assert run["segments"] == 2
    assert "1 restart, 3 repeated iterations replaced" in run["notes"]
    assert "1m 42s (+6h" in text


def test_c01_fp16_skipped_steps_are_no_divergence_and_no_losses(tmp_path):
    """train_fp16 completed 120/120 and is compared with BF16 (about 1.01x): the 17 steps the
    fp16 loss scaler skipped (15 at start-up while the scale fell from 2^32 to 2^18, one each
    at 57 and 115, where megatron-core 0.19 prints lm loss 0.000000E+00 and no grad norm) are
    neither a divergence nor real losses of 0 (min loss about 3.03 and final smoothed loss
    about 3.1, not 0 or pulled down)."""
    text, runs, data = make_report(FIELD / "C01", tmp_path)
    fp16 = runs["train_fp16"]
    assert (fp16["status"], fp16["reason"]) == ("completed", "completed 120/120")
    assert fp16["speedup"] == pytest.approx(1.01, abs=0.01)
    assert fp16["min_loss"] == pytest.approx(3.03, abs=0.01)
    assert fp16["final_loss"] == pytest.approx(3.1, abs=0.05)
    # Every iteration line was read: the lone skipped lines at 57 and 115 are not garbled.
    assert "garbled" not in text


def test_c01_skipped_steps_are_no_samples():
    log = logstream.read_log(FIELD / "C01" / "fp16_skipped_iterations" / "train_fp16.log")
    assert log.skipped_iterations == 17
    loss = dict(zip(log.steps.iterations, log.steps.column("lm loss")))
    ms = dict(zip(log.steps.iterations, log.steps.column("elapsed time per iteration (ms)")))
    assert loss[57] is None and loss[115] is None and ms[57] is None
    assert len(log.steps) == 120 and log.garbled_lines == 0


def test_c06_nemo2_logs_complete_with_step_times(tmp_path):
    """NeMo 2.0 logs: both runs completed 50/50 steps (`Trainer.fit` stopped: `max_steps=50`
    reached), step time read from `train_step_timing in s` (about 12,410 ms BF16, 9,130 ms
    FP8), not 'running/truncated' and not blank."""
    _, runs, _ = make_report(FIELD / "C06", tmp_path)
    bf16, fp8 = runs["pretrain_llama3_8b_bf16"], runs["pretrain_llama3_8b_fp8"]
    for run in (bf16, fp8):
        assert (run["status"], run["reason"]) == ("completed", "completed 50/50")
        assert (run["iterations_done"], run["iterations_planned"]) == (50, 50)
    assert bf16["median_iteration_ms"] == pytest.approx(12410, rel=0.01)
    assert fp8["median_iteration_ms"] == pytest.approx(9130, rel=0.01)


def test_c06_precision_from_nemo_fp8_line_and_bf16_assumed(tmp_path):
    """NeMo 2.0 logs have no arguments dump: the FP8 run's precision is read from NeMo's
    `Using FP8 (hybrid, delayed scaling, amax history 1024, amax compute algo max)` line, and the
    run of the same launcher without that line is BF16 *assumed*, said in the verdict, the
    baseline note, its label and the answer by study."""
    text, runs, data = make_report(FIELD / "C06", tmp_path)
    bf16, fp8 = runs["pretrain_llama3_8b_bf16"], runs["pretrain_llama3_8b_fp8"]
    assert (fp8["label"], fp8["precision"]) == ("FP8 delayed (hybrid)", "fp8")
    assert (bf16["label"], bf16["precision"]) == ("BF16 (assumed: no 'Using FP8' line)", "bf16")
    verdict = text.split("**Verdict**")[1].split("Directory")[0]
    assert "**FP8 delayed (hybrid)** (pretrain_llama3_8b_fp8), **1.359x**" in verdict
    assert ("- **Assumed**: precision BF16 assumed: no 'Using FP8' line "
            "(pretrain_llama3_8b_bf16)") in verdict
    assert "precision unknown" not in text
    group = data["groups"][0]
    assert group["baseline"] == "pretrain_llama3_8b_bf16"
    assert ("precision BF16 assumed: no 'Using FP8' line (pretrain_llama3_8b_bf16)"
            in group["verdict"]["caveats"])
    assert "fp8_amax_history_len 1024, fp8_amax_compute_algo max" in text
    # Beside another study, the answer table names the assumption too.
    two = tmp_path / "two"
    shutil.copytree(FIELD / "C06" / "nemo2_progress_lines", two / "a")
    shutil.copytree(FIELD / "C06" / "nemo2_progress_lines", two / "b")
    text, _, _ = make_report(two, tmp_path / "out2")
    answers = text.split("## Answer by study")[1].split("\n## ")[0]
    assert answers.count("(precision BF16 assumed: no 'Using FP8' line: "
                         "pretrain_llama3_8b_bf16)") == 2


def test_c06_lone_nemo_log_without_fp8_line_stays_unknown(tmp_path):
    """A NeMo log without a `Using FP8` line and no FP8 neighbour states no precision: the
    verdict says the precision is unknown, never that the group has no BF16 run."""
    src = tmp_path / "src" / "nemo"
    src.mkdir(parents=True)
    for name in ("pretrain_llama3_8b_bf16.log", "pretrain_llama3_8b_fp8.log"):
        data = (FIELD / "C06" / "nemo2_progress_lines" / name).read_bytes()
        lines = [line for line in data.splitlines(True) if b"Using FP8" not in line]
        (src / name.replace("fp8", "other")).write_bytes(b"".join(lines))
    text, runs, data = make_report(src.parent, tmp_path / "out")
    verdict = text.split("**Verdict**")[1].split("Directory")[0]
    assert ("- No comparison: precision unknown for 2 of 2 runs (no argument dump): no "
            "baseline") in verdict
    assert "no BF16 run" not in text and "assumed" not in text
    assert {r["precision"] for r in runs.values()} == {None}


@pytest.mark.parametrize("case, run, status", [("B04", "sft_bf16", "completed 30/30"),
                                                ("B11", "train_bf16", "completed")])
def test_one_run_has_nothing_to_compare(tmp_path, case, run, status):
    text, _, _ = make_report(FIELD / case, tmp_path)
    verdict = text.split("**Verdict**")[1].split("Directory")[0]
    assert f"- Nothing to compare: one run ({run}, {status}" in verdict
    assert "no run besides the baseline" not in text


def test_c11_a_fresh_launch_appended_to_a_log_is_an_attempt(tmp_path):
    """train_fp8_tensorwise.log holds two separate launches (appended, the second a fresh
    start with --fp8-param-gather and --train-iters 50, no checkpoint loaded): the run shown is
    the last launch, completed 50/50 at about 5,350 ms; the first launch's iterations 51-100
    (5,600 ms, another recipe) are not merged into it."""
    text, runs, _ = make_report(FIELD / "C11", tmp_path)
    run = runs["train_fp8_tensorwise"]
    assert (run["status"], run["reason"]) == ("completed", "completed 50/50")
    assert run["iterations_done"] == 50
    assert run["median_iteration_ms"] == pytest.approx(5350, rel=0.01)
    assert run["label"] == "FP8 tensorwise +param-gather (hybrid)"
    assert [(a["iterations_done"], a["log"].endswith("(launch 1 of 2)"))
            for a in run["attempts"]] == [(100, True), (50, False)]
    assert any("holds 2 launches" in n for n in run["notes"])
    assert runs["train_bf16"]["attempts"] == [] or len(runs["train_bf16"]["attempts"]) == 1


def test_c14_skypilot_prefixes_do_not_hide_the_arguments_dump(tmp_path):
    """every line carries SkyPilot's colour-coded node prefix: the arguments dump is still read
    (labels BF16 and FP8 tensorwise, one shape), both completed 100/100 and FP8 is compared
    with BF16 (about 1.35x)."""
    text, runs, data = make_report(FIELD / "C14", tmp_path)
    bf16, fp8 = runs["sky_llama8b_bf16"], runs["sky_llama8b_fp8"]
    assert bf16["label"] == "BF16" and fp8["label"].startswith("FP8 tensorwise")
    assert bf16["status"] == fp8["status"] == "completed"
    assert fp8["speedup"] == pytest.approx(1.35, abs=0.01)
    assert "\x1b" not in text and "(head, rank=0" not in text


def test_c16_megatron_2023_fp8_hybrid_is_fp8(tmp_path):
    """Megatron-LM of 2023 turned FP8 on with --fp8-hybrid (dump: fp8_hybrid True, no 'fp8'
    argument): gpt13b_fp8 is labelled FP8 (hybrid), not BF16, and compared with the BF16
    baseline gpt13b_bf16 (about 1.42x)."""
    _, runs, _ = make_report(FIELD / "C16", tmp_path)
    fp8 = runs["gpt13b_fp8"]
    assert fp8["label"].startswith("FP8") and "(hybrid)" in fp8["label"]
    assert fp8["baseline"] == "gpt13b_bf16" and runs["gpt13b_bf16"]["label"] == "BF16"
    assert fp8["speedup"] == pytest.approx(1.42, abs=0.01)


def test_every_field_report_folder_at_once_without_internal_errors(tmp_path, capsys):
    """All the handed situations in one report: every run gets a status, none an internal
    error or an unparseable log."""
    assert report.main([str(FIELD), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "internal error" not in out.err + out.out and "Traceback" not in out.err
    data = json.loads((tmp_path / "summary.json").read_text())
    assert len(data["runs"]) >= 15
    assert not [r["name"] for r in data["runs"] if "cannot parse" in (r["reason"] or "")]


# --- attempts ----------------------------------------------------------------------------------


def test_real_h200x2_failed_bf16_attempt_is_no_baseline(tmp_path):
    text, runs, data = make_report(REAL_H200X2, tmp_path / "out")
    assert set(runs) == {"train_llama3_8b_h200_bf16", "train_llama3_8b_h200_fp8_cs"}
    assert runs["train_llama3_8b_h200_bf16"]["status"] == "crashed"
    assert all(r["baseline"] != "train_llama3_8b_h200_bf16" for r in runs.values())
    assert "no completed BF16 run (train_llama3_8b_h200_bf16: crashed)" in text


@pytest.mark.parametrize("order", ["failed-first", "failed-last"])
def test_a_run_shows_once_with_its_attempts_and_never_a_failed_baseline(tmp_path, order):
    d = tmp_path / "logs" / "h200_8b"
    d.mkdir(parents=True)
    oom = REAL_H200X2 / "train_llama3_8b_h200_bf16.1.log"
    good = MEGATRON019 / "bf16.log"
    # The same run launched twice: one attempt OOMed, the other completed.
    first, second = (oom, good) if order == "failed-first" else (good, oom)
    shutil.copy(first, d / "bf16.log")
    shutil.copy(second, d / "bf16.1.log")
    shutil.copy(MEGATRON019 / "fp8cs.log", d / "fp8cs.2.log")
    _, runs, _ = make_report(tmp_path / "logs", tmp_path / "out")
    assert set(runs) == {"bf16", "fp8cs"}
    bf16 = runs["bf16"]
    assert bf16["status"] == "completed"
    assert [a["status"] for a in bf16["attempts"]] == (
        ["crashed", "completed"] if order == "failed-first" else ["completed", "crashed"])
    assert len(runs["fp8cs"]["attempts"]) == 1


def test_only_failed_attempts_mean_no_baseline(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    oom = REAL_H200X2 / "train_llama3_8b_h200_bf16.1.log"
    for n in ("", ".1", ".2"):
        shutil.copy(oom, d / f"train_bf16{n}.log")
    shutil.copy(REAL_H200X2 / "train_llama3_8b_h200_fp8_cs.1.log", d / "fp8.log")
    _, runs, data = make_report(d, tmp_path / "out")
    assert len(runs["train_bf16"]["attempts"]) == 3
    assert all(r["baseline"] is None for r in runs.values())
    assert data["comparisons"] == []


@pytest.mark.parametrize("case, run", [("C01", "train_fp16"), ("C16", "gpt13b_fp8")])
def test_a_precision_switch_is_never_a_setting_that_differs_besides_precision(tmp_path, case, run):
    """The precision under comparison, whatever switch turns it on (--fp16; Megatron-LM 2023's
    --fp8-hybrid), is not listed as a setting that differs besides precision: the run's speedup
    is the recipe's, at equal settings."""
    _, _, data = make_report(FIELD / case, tmp_path)
    versus = next(c for c in data["comparisons"] if c["run"] == run)
    assert versus["settings_differing"] == []
    verdict = data["groups"][0]["verdict"]
    assert verdict["fastest"] == run and verdict["fastest_overall"] in (None, "", run)


LOGS = Path(__file__).parent.parent / "logs"


def _study_with_cut_log(tmp_path: Path, cut: int, study: str = "h200_8b") -> Path:
    """The study's committed logs, and its FP8 log's first `cut` bytes beside them."""
    src = tmp_path / "src" / study
    src.mkdir(parents=True)
    for log in sorted((LOGS / study).glob("*.log")):
        shutil.copy(log, src / log.name)
    data = (LOGS / study / "train_llama3_8b_h200_fp8.log").read_bytes()
    (src / "cut_train_llama3_8b_h200_fp8.log").write_bytes(data[:cut])
    return src.parent


def test_cut_log_renders_no_python_none_and_joins_its_group(tmp_path):
    """A log cut inside its arguments dump (its first 20 kB) lacks some shape keys: it joins the
    group whose known keys it matches, no heading, cell, CSV or JSON text says None or nan, its
    unknown values read '?', and the keys after the cut are not listed as settings that
    differ."""
    text, runs, data = make_report(_study_with_cut_log(tmp_path, 20_000), tmp_path / "out")
    csv_text = (tmp_path / "out" / "summary.csv").read_text()
    assert len(data["groups"]) == 1
    assert {r["group"] for r in runs.values()} == {"h200_8b"}
    cut = runs["cut_train_llama3_8b_h200_fp8"]
    assert cut["label"] == "FP8 delayed +param-gather (hybrid)"
    assert any(n.startswith("arguments dump cut short") for n in cut["notes"])
    assert "- Model: ? layers, hidden 4096, FFN 14336, ? heads, seq ?" in text
    for word in ("None layers", "None heads", "seq None", "world size None", "nan"):
        assert word not in text and word not in csv_text
    assert "None" not in json.dumps(data) and "None" not in csv_text
    assert "(absent) (cut_train_llama3_8b_h200_fp8)" not in text
    assert "inference_rng_tracker" not in text  # the dump's last, half-written line


def test_cut_log_that_matches_no_group_says_why_it_stands_alone(tmp_path):
    """A cut log whose known shape keys agree with no full group of its directory stands alone,
    and its group says why; its heading shows '?' for the keys it lacks."""
    root = _study_with_cut_log(tmp_path, 20_000)
    cut = root / "h200_8b" / "cut_train_llama3_8b_h200_fp8.log"
    cut.write_bytes(cut.read_bytes().replace(b" 4096\n", b" 8192\n"))  # hidden_size
    text, runs, data = make_report(root, tmp_path / "out")
    assert len(data["groups"]) == 2
    assert ("(a group of its own: its arguments dump lacks num_layers, num_attention_heads, "
            "seq_length, world_size: no group of this directory agrees with the keys it has)"
            in text)
    assert "None" not in text.split("### Runs")[0]


def test_dump_cut_before_its_precision_arguments_states_no_precision(tmp_path):
    """A dump cut before `bf16`/`fp8` is no FP32 run: its precision is unknown."""
    data = (LOGS / "h200_8b" / "train_llama3_8b_h200_fp8.log").read_bytes()
    at = data.index(b"  bf16 ")
    _, runs, _ = make_report(_study_with_cut_log(tmp_path, at + 40), tmp_path / "out")
    cut = runs["cut_train_llama3_8b_h200_fp8"]
    assert cut["precision"] is None and cut["label"].startswith("unknown (arguments dump cut")
