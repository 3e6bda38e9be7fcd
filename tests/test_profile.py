"""run.py --profile-step: one iteration profiled on rank 0, its kernel table beside the log.

The queue runs real rendered scripts with tests/standins/fake_megatron.py as TRAIN_CMD; with
Megatron's profiler flags the stand-in writes a small trace where Megatron's trace_handler
writes it (<--tensorboard-dir>/../torch_profile/rank-0.json.gz).
"""

from __future__ import annotations

import json

import pytest

from fp8suite.logs import kernels
from fp8suite.common import paths
from helpers import read_state, render_queue_matrix, run_cli, train_cmd


@pytest.fixture
def manifest(tmp_path):
    return render_queue_matrix(tmp_path)


def test_the_profiled_step_becomes_the_kernel_table_the_report_shows(manifest, tmp_path):
    logs = tmp_path / "logs"
    out = run_cli(str(manifest), "--only", "fake_ok", "--profile-step", "3", train=train_cmd())
    assert out.returncode == 0, out.stderr
    trace = paths.profiler_trace(logs, "fake_ok")
    assert trace == logs / "tensorboard" / "fake_ok" / "torch_profile" / "rank-0.json.gz"
    assert trace.is_file()
    table = json.loads((logs / "fake_ok.kernels.json").read_text())
    assert table == kernels.reduce_trace(kernels.read_trace(trace)) and table["steps"] == [3]
    assert f"profile: iteration 3 -> {paths.display_path(logs / 'fake_ok.kernels.json')}" in out.stdout
    # Megatron got the profiler flags, the trace's folder beside the run's TensorBoard events.
    command = read_state(logs)["fake_ok"]["attempts"][-1]["command"]
    assert ("--profile --use-pytorch-profiler --profile-step-start 3 --profile-step-end 4 "
            "--profile-ranks 0 --tensorboard-dir") in command
    assert command.endswith(paths.display_path(paths.tensorboard_dir(logs, "fake_ok")))

    import report
    assert report.main([str(logs), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    section = text[text.index("### Where the step time goes"):]
    assert "fake_ok" in section.split("###")[1]


def test_a_launch_that_never_reaches_the_step_writes_no_table_from_an_older_trace(manifest, tmp_path):
    logs = tmp_path / "logs"
    assert run_cli(str(manifest), "--only", "fake_ok", "--profile-step", "3",
                   train=train_cmd()).returncode == 0
    # Again, crashing in iteration 2: the first launch's trace is still there, but stale.
    out = run_cli(str(manifest), "--only", "fake_ok", "--profile-step", "3",
                  train=train_cmd(0.01, "--fake-crash-at", "2"))
    assert out.returncode == 1
    assert "profile: no trace from this launch at" in out.stdout
    assert "once training passes iteration 4" in out.stdout
    assert (logs / "fake_ok.kernels.json").is_file() and not (logs / "fake_ok.1.kernels.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--profile-step", "8"], "--profile-step 8: fake_ok trains 8 iterations; pick a step from 1 to 7"),
    (["--profile-step", "3", "--", "--train-iters", "3"], "fake_ok trains 3 iterations; pick a step from 1 to 2"),
    (["--profile-step", "3", "--", "--train-iters", "1"], "fake_ok trains 1 iteration; too few to profile one"),
    (["--profile-step", "3", "--", "--profile", "--tensorboard-dir", "/tmp/x"],
     "--profile-step sets --profile, --tensorboard-dir itself: drop them after `--`"),
    (["--profile-step", "3", "--", "--profile-ranks", "1"],
     "--profile-step sets --profile-ranks itself: drop it after `--`"),
    (["--profile-step", "0"], "iterations count from 1"),
    (["--profile-step", "x"], "'x' is not an iteration number"),
    (["--profile-step", "3", "--slurm"], "--profile-step profiles runs of the local queue"),
])
def test_a_profile_that_cannot_happen_is_refused_before_anything_runs(manifest, tmp_path, args,
                                                                      message):
    out = run_cli(str(manifest), "--only", "fake_ok", *args, train=train_cmd())
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not list((tmp_path / "logs").glob("*.log"))


def test_the_dry_run_shows_the_profiler_flags(manifest, tmp_path):
    out = run_cli(str(manifest), "--only", "fake_ok", "--profile-step", "5", "--dry-run",
                  train=train_cmd())
    assert out.returncode == 0, out.stderr
    assert "--profile-step-start 5 --profile-step-end 6 --profile-ranks 0" in out.stdout
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("*.log"))


def test_on_a_node_other_than_0_the_queue_leaves_the_table_to_node_0(tmp_path):
    from fp8suite.launch import local
    opts = local.Options(env={"NODE_RANK": "1"}, profile_step=3)
    assert local._kernel_table(None, tmp_path / "r.node1.log", opts, 0.0) == (
        "profile: rank 0 runs on node 0; the queue there writes the kernel table")
    assert not list(tmp_path.iterdir())
