"""tools/report.py end to end: the golden report of the real logs, and the CLI's contract.

Re-record the golden file after an intended change with `python -m pytest tests --update-golden`.
"""

import json
import shutil
from pathlib import Path

import pytest

import report
from fp8suite.report import compare
from fp8suite.logs import runs

FIX = Path(__file__).parent / "data" / "logs" / "megatron019"
FIELD_C01 = Path(__file__).parent / "data" / "field-reports" / "C01" / "fp16_skipped_iterations"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch checkout-like folder with the real trimmed logs under logs/megatron019."""
    shutil.copytree(FIX, tmp_path / "logs" / "megatron019")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_golden_report_of_the_real_logs(workdir, golden, capsys):
    assert report.main(["logs", "--out", "assets"]) == 0
    golden("report/megatron019.md", (workdir / "assets" / "report.md").read_text())
    out, err = capsys.readouterr()
    assert out == "wrote assets/report.md (3 runs, 6 plots)\n"  # nothing else on stdout
    assert err == ""  # three small logs: no progress


def test_progress_on_stderr_for_many_or_large_logs(workdir, monkeypatch, capsys):
    monkeypatch.setattr(runs, "PROGRESS_MIN_LOGS", 3)
    assert report.main(["logs", "--out", "assets"]) == 0
    out, err = capsys.readouterr()
    assert out == "wrote assets/report.md (3 runs, 6 plots)\n"
    assert err.splitlines() == ["parsing 3 logs, 0.05 MB", "[1/3] bf16 0.02 MB",
                                "[2/3] fp8cs 0.02 MB", "[3/3] fp8delayed_1F1L_bad 0.01 MB"]


def test_every_linked_plot_exists_and_is_deterministic(workdir):
    assert report.main(["logs", "--out", "a"]) == 0
    assert report.main(["logs", "--out", "b"]) == 0
    text = (workdir / "a" / "report.md").read_text()
    pngs = sorted(p.name for p in (workdir / "a").glob("*.png"))
    assert len(pngs) == 6  # loss, iteration time, step time, one per run
    for name in pngs:
        assert f"]({name})" in text
        assert (workdir / "a" / name).read_bytes() == (workdir / "b" / name).read_bytes()
    # Only the command line differs (it names the output folder).
    assert (workdir / "b" / "report.md").read_text() == text.replace("--out a`", "--out b`")


def test_no_logs_is_bad_usage(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"report.py: no *.log files found in {tmp_path / 'empty'}\n"


def test_missing_path_is_bad_usage(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file or directory" in err
    assert not (tmp_path / "assets").exists()


def test_unknown_baseline_is_bad_usage_with_a_suggestion(workdir, capsys):
    assert report.main(["logs", "--baseline", "fp8_cs"]) == 2
    err = capsys.readouterr().err
    assert err == ("report.py: --baseline fp8_cs: no run of that name (did you mean fp8cs?); "
                   "valid: bf16, fp8cs, fp8delayed_1F1L_bad\n")
    assert not (workdir / "assets").exists()  # nothing half-written


def test_a_baseline_is_chosen_only_among_the_runs_the_report_reads(workdir, capsys):
    (workdir / "logs" / "megatron019" / "a.log").write_text("setup notes, not a run\n")
    assert report.main(["logs", "--baseline", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err == ("report.py: --baseline nosuch: no run of that name; "
                   "valid: bf16, fp8cs, fp8delayed_1F1L_bad\n")
    # A skipped file is no run: naming it is bad usage that says why, never a silent BF16.
    assert report.main(["logs", "--baseline", "a"]) == 2
    err = capsys.readouterr().err
    assert err == ("report.py: --baseline a: logs/megatron019/a.log was skipped: not a Megatron "
                   "training log (no iteration or argument lines)\n")
    assert not (workdir / "assets").exists()  # nothing half-written


def test_baseline_option(workdir):
    assert report.main(["logs", "--out", "assets", "--baseline", "fp8cs"]) == 0
    text = (workdir / "assets" / "report.md").read_text()
    assert "Baseline: **fp8cs** (chosen with --baseline)." in text
    assert "| fp8cs: FP8 tensorwise +param-gather (hybrid) (baseline) |" in text


def test_internal_error_is_one_line_unless_debug(workdir, monkeypatch, capsys):
    def boom(*a, **k):
        raise KeyError("lm loss")

    monkeypatch.setattr(compare, "build_groups", boom)
    assert report.main(["logs"]) == 1
    err = capsys.readouterr().err
    assert err == ("report.py: internal error: KeyError: 'lm loss' "
                   "(run with --debug for the traceback)\n")
    assert report.main(["logs", "--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_malformed_sidecar_is_a_note(workdir):
    (workdir / "logs" / "megatron019" / "fp8cs.meta.json").write_text('{"run": "fp8cs", ')
    assert report.main(["logs", "--out", "assets"]) == 0
    text = (workdir / "assets" / "report.md").read_text()
    assert "sidecar fp8cs.meta.json unreadable (" in text
    fp8_row = next(line for line in text.splitlines() if line.startswith("| fp8cs:"))
    assert "| – | 37.1 |" in fp8_row  # MFU blank: the GPU is unknown without the sidecar


def test_sidecar_missing_or_not_an_object(tmp_path):
    log = tmp_path / "r.log"
    log.write_bytes(b"")
    assert runs.load_sidecar(log) == ({}, None)
    (tmp_path / "r.meta.json").write_text("[1, 2]")
    data, note = runs.load_sidecar(log)
    assert data == {} and "not a JSON object" in note


def test_manifest_labels_and_gpu(workdir):
    logs = workdir / "logs" / "megatron019"
    (logs / "bf16.meta.json").unlink()
    (logs / "fp8cs.meta.json").unlink()
    (logs / "fp8cs.log").rename(logs / "fp8cs.1.log")  # a second launch of the run
    (workdir / "m.json").write_text(json.dumps({"matrix": "experiments/x.yaml", "runs": [
        {"name": "bf16", "axes": {"recipe": "bf16"}, "label": "BF16", "gpu": "H100"},
        {"name": "fp8cs", "axes": {"recipe": "fp8_cs"}, "label": "FP8 tensorwise (hybrid)",
         "recipe": "tensorwise", "gpu": "H100"}]}))
    assert report.main(["logs", "--out", "assets", "--manifest", "m.json"]) == 0
    text = (workdir / "assets" / "report.md").read_text()
    # fp8cs.1.log is an attempt of run fp8cs: shown once, under the run's name.
    assert "| fp8cs: FP8 tensorwise (hybrid) |" in text
    assert "- Attempts: `fp8cs.1.log` completed (30/30, itr time 615.0 ms)" in text
    assert "H100 (from the manifest; no sidecar); dense FP8 peak 1979 TFLOP/s" in text
    assert "- Manifest: axes recipe=fp8_cs, label FP8 tensorwise (hybrid), recipe tensorwise" in text
    fp8_row = next(line for line in text.splitlines() if line.startswith("| fp8cs:"))
    assert "| 468.3 | 23.7% |" in fp8_row  # 468.3 / 1979 = 0.2366


def test_bad_manifest_is_bad_usage(workdir, capsys):
    (workdir / "m.json").write_text("{")
    assert report.main(["logs", "--manifest", "m.json"]) == 2
    assert capsys.readouterr().err.startswith("report.py: manifest m.json is not valid JSON: ")


def test_files_and_directories_mix_without_duplicates(workdir, capsys):
    assert report.main(["logs", "logs/megatron019/bf16.log", "--out", "assets"]) == 0
    assert capsys.readouterr().out.startswith("wrote assets/report.md (3 runs,")


def test_wandb_and_hidden_folders_are_not_runs(workdir):
    for junk in ("logs/megatron019/wandb/run-20261123_040000-abc/logs/debug.log",
                 "logs/megatron019/.scratch/x.log"):
        (workdir / junk).parent.mkdir(parents=True)
        (workdir / junk).write_text("2026-11-23 04:00:00,000 INFO    MainThread:1 [wandb_init.py]\n")
    assert [p.name for p in runs.find_logs(["logs"])] == [
        "bf16.log", "fp8cs.log", "fp8delayed_1F1L_bad.log"]
    # named explicitly, a log is always taken
    assert len(runs.find_logs(["logs/megatron019/.scratch/x.log"])) == 1


@pytest.mark.parametrize("name, text", [
    ("README.md", "# A project\n\nSome words about it.\n"),
    ("matrix.yaml", "name: x\naxes:\n  recipe: [bf16, fp8]\n"),
    ("notes.log", "nothing from a training run here\n"),
])
def test_a_file_without_megatron_lines_is_no_run(tmp_path, capsys, name, text):
    (tmp_path / name).write_text(text)
    assert report.main([str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"report.py: {tmp_path / name}: not a Megatron training log (no iteration "
                   "or argument lines)\n")
    assert not (tmp_path / "out" / "report.md").exists()


def test_a_folder_scan_skips_files_without_megatron_lines(tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    for f in ("train_bf16.log", "train_fp16.log"):
        shutil.copy(FIELD_C01 / f, logs / f)
    (logs / "notes.log").write_text("setup notes, not a run\n")
    (logs / "junk.log").write_bytes(bytes(range(256)) * 16)
    # A crash at start-up (a traceback, no iteration) is a run with its status.
    (logs / "crashed.log").write_text(
        "Traceback (most recent call last):\n  File \"/workspace/pretrain_gpt.py\", line 3, "
        "in <module>\nModuleNotFoundError: No module named 'transformer_engine'\n")
    assert report.main([str(logs), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert (f"report.py: skipped 2 files that are not Megatron training logs (no iteration or "
            f"argument lines): {logs / 'junk.log'}, {logs / 'notes.log'}\n") in err
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    by = {r["name"]: r for r in data["runs"]}
    assert set(by) == {"train_bf16", "train_fp16", "crashed"}
    assert by["crashed"]["status"] == "crashed"
    # Nothing but such files: bad usage.
    for f in ("train_bf16.log", "train_fp16.log", "crashed.log"):
        (logs / f).unlink()
    assert report.main([str(logs), "--out", str(tmp_path / "out2")]) == 2
    assert "no Megatron training logs in" in capsys.readouterr().err


def test_a_run_on_another_gpu_than_its_matrix_targets_says_so(tmp_path):
    """The 8-layer convergence matrix targets H200 and ran on an H100: each run's Manifest line
    says so, since the memory estimate render printed was the H200's."""
    from conftest import REPO
    out = tmp_path / "out"
    logs = REPO / "logs" / "convergence_8b_8l"
    assert report.main([str(logs), "--manifest", str(logs / "launched.manifest.json"), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    lines = [x for x in text.splitlines() if x.startswith("- Manifest: ")]
    assert lines and all(x.endswith("gpu H200 (the matrix's target; it ran on H100: its memory "
                                    "estimate was for H200)") for x in lines), lines
    same = tmp_path / "same"
    logs = REPO / "logs" / "crossover_h100"
    assert report.main([str(logs), "--manifest", str(logs / "launched.manifest.json"), "--out", str(same)]) == 0
    assert "the matrix's target" not in (same / "report.md").read_text()
