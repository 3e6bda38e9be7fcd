"""tools/check_tracking.py: W&B offline runs and TensorBoard event files against the logs.

The trackers are written here with wandb's and tensorboard's own writers, the way Megatron
writes them (each iteration's own loss; the time in seconds, none for a launch's first
iteration), and the logs the way Megatron prints them (the line after a launch's first
iteration averages the two). The committed real runs are checked too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

wandb = pytest.importorskip("wandb")
pytest.importorskip("tensorboard")

from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: E402
from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "tools" / "check_tracking.py"
RUN = "conv_x_fp8_cs_s1"
SAVED = 20  # the first launch saves here; the second loads it and goes on to 40


def loss(it: int) -> float:
    return 10.0 / (1 + 0.05 * it) + 0.001 * (it % 7)


def seconds(it: int) -> float:
    return 0.2 + 0.001 * (it % 5)


def launches() -> list:
    """[(first iteration, last iteration)] of the run's two launches; the first logged 5
    iterations past its checkpoint before it stopped (the second launch redoes them)."""
    return [(1, SAVED + 5), (SAVED + 1, 40)]


def log_text(first: int, last: int) -> str:
    lines = []
    if first > 1:
        lines.append(f"  successfully loaded checkpoint from /ck/{RUN} [ t 1/1, gtp_remat 1/1, "
                     f"p 1/1 ] at iteration {first - 1}")
    for it in range(first, last + 1):
        # Megatron does not reset its accumulators after a launch's first iteration.
        shown = (loss(first) + loss(it)) / 2 if it == first + 1 else loss(it)
        ms = 1000 * ((seconds(first) + seconds(it)) / 2 if it == first + 1 else seconds(it))
        lines.append(f" [2026-11-30 12:00:{it % 60:02d}.000000] iteration {it:8d}/      40 | "
                     f"consumed samples: {4 * it:12d} | elapsed time per iteration (ms): {ms:.1f} | "
                     f"learning rate: 3.000000E-04 | global batch size:     4 | lm loss: {shown:.6E} | "
                     "loss scale: 1.0 | number of skipped iterations:   0 | "
                     "number of nan iterations:   0 |")
        if it == SAVED and first == 1:
            lines.append(f"  [2026-11-30 12:00:20.500000] successfully saved checkpoint from iteration "
                         f"{SAVED:7d} to /ck/{RUN} [ t 1/1, gtp_remat 1/1, p 1/1 ]")
    return "\n".join(lines) + "\n"


def write_trackers(log_dir: Path, tamper: dict | None = None, drop: int | None = None) -> None:
    """One W&B offline run and one TensorBoard event file per launch, as Megatron writes them."""
    tamper = tamper or {}
    tb = log_dir / "tensorboard" / RUN / "events"
    for n, (first, last) in enumerate(launches()):
        run = wandb.init(project="p", name=RUN, dir=str(log_dir / "wandb"), mode="offline",
                         settings=wandb.Settings(silent=True, console="off"))
        writer = EventFileWriter(str(tb), filename_suffix=f".{n}")
        for it in range(first, last + 1):
            if it == drop:
                continue
            values = {"lm loss": tamper.get(it, loss(it))}
            if it != first:
                values["iteration-time"] = seconds(it) if it != first + 1 else \
                    (seconds(first) + seconds(it)) / 2
            run.log(values, step=it)
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                                 for k, v in values.items()])
            writer.add_event(event_pb2.Event(step=it, wall_time=1.8e9 + it, summary=summary))
        writer.close()
        run.finish()


def write_logs(log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    for n, (first, last) in enumerate(launches()):
        name = f"{RUN}.log" if n == 0 else f"{RUN}.{n}.log"
        (log_dir / name).write_text(log_text(first, last))


def check(log_dir: Path, *args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), str(log_dir), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "WANDB_SILENT": "true", **env})


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("good") / "logs"
    write_logs(log_dir)
    write_trackers(log_dir)
    return log_dir


def test_a_resumed_run_matches_both_trackers(good):
    out = check(good)
    assert out.returncode == 0, out.stdout + out.stderr
    # 40 losses (the second launch's 21-25 replace the first's), 38 times (none for 1 and 21).
    assert f"| {RUN} | W&B | 40 / 40 | 38 / 38 | none | matches the log |" in out.stdout
    assert f"| {RUN} | TensorBoard | 40 / 40 | 38 / 38 | none | matches the log |" in out.stdout


def test_an_out_that_cannot_be_written_is_one_line_exit_1(good, tmp_path):
    os.mkfifo(tmp_path / "table.md")  # a FIFO where the table goes: refused, never opened
    out = check(good, "--out", str(tmp_path / "table.md"))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0] == f"check_tracking.py: cannot write {tmp_path / 'table.md'}: not a regular file (FIFO)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


@pytest.mark.parametrize("case", ["changed loss", "missing step", "no W&B run"])
def test_a_difference_fails_and_names_the_run(tmp_path, case):
    log_dir = tmp_path / "logs"
    write_logs(log_dir)
    if case == "changed loss":
        write_trackers(log_dir, tamper={33: loss(33) + 1e-4})
    elif case == "missing step":
        write_trackers(log_dir, drop=12)
    else:
        write_trackers(log_dir)
        for f in (log_dir / "wandb").rglob("*.wandb"):
            f.unlink()
    out = check(log_dir)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"check_tracking.py: {RUN} (" in out.stderr
    if case == "changed loss":
        assert "lm loss at 33" in out.stdout and "DIFFERS" in out.stdout
    elif case == "missing step":
        assert "| 39 / 40 | 37 / 38 |" in out.stdout
    else:
        assert "no W&B offline run named" in out.stdout


def test_without_the_readers_it_says_what_to_install(good, tmp_path):
    shadow = tmp_path / "shadow"
    (shadow / "wandb").mkdir(parents=True)
    (shadow / "wandb" / "__init__.py").write_text("raise ImportError('No module named wandb')\n")
    out = check(good, PYTHONPATH=str(shadow))
    assert out.returncode == 2 and "pip install -e '.[tracking]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_wandb_without_the_offline_reader_says_which_to_install(good, tmp_path):
    # wandb 0.30 dropped wandb.sdk.internal.datastore: a wandb that imports but lacks it.
    shadow = tmp_path / "shadow"
    package = shadow / "wandb"
    (package / "proto").mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = '0.31.0'\n")
    (package / "proto" / "__init__.py").write_text("")
    (package / "proto" / "wandb_internal_pb2.py").write_text("")
    out = check(good, PYTHONPATH=str(shadow))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert ("wandb 0.31.0 has no offline-run reader (wandb.sdk.internal.datastore, removed in "
            "wandb 0.30): pip install 'wandb>=0.17,<0.30'") in out.stderr


def test_the_install_extras_ask_for_a_wandb_with_the_reader():
    from fp8suite.report import tracking
    setup = (ROOT / "setup.py").read_text()
    for extra in ("tracking", "test"):
        body = setup[setup.index(f'"{extra}": ['):]
        assert f'"wandb{tracking.WANDB_READER}"' in body[:body.index("]")], extra


def test_no_logs_is_one_line(tmp_path):
    out = check(tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no training logs" in out.stderr


def test_only_checks_the_named_runs(good, tmp_path):
    log_dir = tmp_path / "logs"
    shutil.copytree(good, log_dir)
    shutil.copy(log_dir / f"{RUN}.log", log_dir / "untracked_run.log")  # a run with no tracker output
    assert check(log_dir).returncode == 1
    for only in (RUN, "conv_x_*"):  # a name, or a glob as run.py's --only takes
        out = check(log_dir, "--only", only)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"| {RUN} |" in out.stdout and "untracked_run" not in out.stdout
    out = check(log_dir, "--only", "conv_x_fp8_cs_s2")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no log of conv_x_fp8_cs_s2" in out.stderr


def test_the_committed_convergence_runs_match_their_trackers():
    """Each committed convergence run with its tracker output committed matches it (12 checks:
    6 runs x W&B and TensorBoard); the FP8-attention runs' tracker output was not kept, and the
    check of the whole folder says so."""
    log_dir = ROOT / "logs" / "convergence_8b_width"
    runs = {p.name.split(".")[0] for p in log_dir.glob("*.log")}  # RUN.log, RUN.1.log: one run
    kept = sorted(r for r in runs if (log_dir / "tensorboard" / r).is_dir())
    out = check(log_dir, "--only", *kept)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("matches the log") == 2 * len(kept) == 12
    whole = check(log_dir)
    assert whole.returncode == 1
    for run in sorted(runs - set(kept)):
        assert f"| {run} | W&B | – | – | – | no W&B offline run named {run}" in whole.stdout


def test_a_folder_without_trackers_or_missing_is_one_line(tmp_path):
    (tmp_path / "r.log").write_text(log_text(1, 3))
    out = check(tmp_path)
    assert out.returncode == 2 and "no wandb/ or tensorboard/ folder" in out.stderr
    out = check(tmp_path / "nope")
    assert out.returncode == 2 and out.stderr.strip().endswith("no such folder")
    assert "Warning" not in check(tmp_path).stderr
