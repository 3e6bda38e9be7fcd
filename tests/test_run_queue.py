"""tools/run.py's queue on this node, for real: rendered scripts, real processes and signals.

Each test renders tests/data/queue_matrix.yaml into a temporary folder (render.py --out), with
its logs there too, and runs `python tools/run.py` as a subprocess. TRAIN_CMD makes the
scripts start tests/standins/fake_megatron.py instead of torchrun + Megatron; the matrix's
`outcome` axis tells the stand-in to complete (fake_ok, fake_last), crash (fake_crash) or
hang ignoring SIGTERM (fake_hang).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from helpers import RUN, read_state, render_queue_matrix, run_cli, train_cmd


def group_gone(pgid: int, within: float = 10) -> bool:
    """True once no process of the group is left (killed ones may take a moment to be reaped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def manifest(tmp_path):
    return render_queue_matrix(tmp_path)


def test_queue_runs_each_script_and_continues_after_a_crash(manifest, tmp_path):
    logs = tmp_path / "logs"
    out = run_cli(str(manifest), "--only", "fake_ok", "--only", "fake_crash", "--only", "fake_last",
                  train=train_cmd())
    assert out.returncode == 1, out.stdout + out.stderr
    runs = read_state(logs)

    ok = runs["fake_ok"]
    assert ok["state"] == "completed" and (ok["iteration"], ok["train_iters"]) == (8, 8)
    assert ok["log"] == str(logs / "fake_ok.log") and ok["meta"] == str(logs / "fake_ok.meta.json")
    assert "[after training is done]" in (logs / "fake_ok.log").read_text()
    meta = json.loads((logs / "fake_ok.meta.json").read_text())
    assert meta["exit_code"] == 0 and meta["interrupted"] is False and meta["run"] == "fake_ok"
    assert len(ok["attempts"]) == 1 and ok["attempts"][0]["mode"] == "local"

    crash = runs["fake_crash"]
    assert crash["state"] == "failed"
    # The worker's exception, not torchrun's ChildFailedError that follows it in the log.
    assert crash["reason"].startswith("ValueError: fake_megatron: crash in iteration 3")
    assert "exit status 1" in crash["reason"] and crash["iteration"] == 2
    assert runs["fake_last"]["state"] == "completed"
    assert "fake_hang" not in runs

    assert "[1/3] fake_ok  completed  iteration 8/8" in out.stdout
    assert "[2/3] fake_crash  failed" in out.stdout
    summary = out.stdout[out.stdout.index("run  "):]
    assert "fake_crash  failed" in summary and f"status: {logs / 'runs.json'}" in out.stdout


def test_hung_run_is_killed_after_the_time_limit_and_grace(manifest, tmp_path):
    logs = tmp_path / "logs"
    started = time.monotonic()
    # 0.02 min = 1.2 s, then 0.5 s grace before SIGTERM (ignored) and 0.5 s more to SIGKILL.
    out = run_cli(str(manifest), "--only", "fake_hang", "--time-limit", "0.02", "--grace", "0.5",
                  train=train_cmd())
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stdout + out.stderr
    hang = read_state(logs)["fake_hang"]
    assert hang["state"] == "time-limited"
    assert hang["reason"].startswith("killed 0.5 s after the 0.02 min time limit")
    assert hang["exit_code"] == 137 and hang["iteration"] == 1
    assert 2.2 <= elapsed < 20
    # The whole process group is gone, and the sidecar records the kill the script could not.
    assert group_gone(hang["attempts"][-1]["pid"])
    meta = json.loads((logs / "fake_hang.meta.json").read_text())
    assert meta["exit_code"] == 137 and meta["interrupted"] is True
    assert "--exit-duration-in-mins 0.02" in hang["attempts"][-1]["command"]


def test_stopped_at_the_time_limit_but_hung_in_teardown_says_so(manifest, tmp_path):
    # Megatron printed "[exiting program after N minutes]" (and saved), then its processes did
    # not end: the kill is not "training ignored --exit-duration-in-mins".
    out = run_cli(str(manifest), "--only", "fake_ok", "--time-limit", "0.01", "--grace", "0.5",
                  "--", "--train-iters", "100000",
                  train=train_cmd(0.01, "--fake-hang-on-exit", "--fake-ignore-sigterm"))
    assert out.returncode == 1, out.stdout + out.stderr
    run = read_state(tmp_path / "logs")["fake_ok"]
    assert run["state"] == "time-limited"
    assert run["reason"].startswith("[exiting program after ")
    assert run["reason"].endswith("its processes had not exited 0.5 s later and were killed")
    assert "ignored" not in run["reason"]


def test_the_grace_runs_from_megatrons_exit_line_not_from_launch(manifest, tmp_path):
    # Megatron counts --exit-duration-in-mins from its own start: 1 s of start-up here, then
    # the limit (1.2 s), then 1.5 s of checkpoint save. From launch that is past limit + grace
    # (3.2 s), but the save must not be killed: the grace (2 s) runs from the exit line.
    out = run_cli(str(manifest), "--only", "fake_ok", "--time-limit", "0.02", "--grace", "2",
                  "--", "--train-iters", "100000",
                  train=train_cmd(0.01, "--fake-startup", "1", "--fake-exit-sleep", "1.5"))
    assert out.returncode == 1, out.stdout + out.stderr
    run = read_state(tmp_path / "logs")["fake_ok"]
    assert run["state"] == "time-limited" and run["exit_code"] == 0, run
    assert run["reason"].startswith("[exiting program after ") and "killed" not in run["reason"]


def test_megatron_exit_duration_is_time_limited(manifest, tmp_path):
    # 0.01 min: the stand-in, like Megatron, stops itself after the iteration that passes it.
    out = run_cli(str(manifest), "--only", "fake_ok", "--time-limit", "0.01",
                  "--", "--train-iters", "100000", train=train_cmd(0.01))
    assert out.returncode == 1, out.stdout + out.stderr
    run = read_state(tmp_path / "logs")["fake_ok"]
    assert run["state"] == "time-limited"
    assert run["reason"].startswith("[exiting program after ") and run["exit_code"] == 0
    assert run["train_iters"] == 100000 and 0 < run["iteration"] < 100000


def test_ctrl_c_interrupts_the_run_and_stops_the_queue(manifest, tmp_path):
    logs = tmp_path / "logs"
    environ = dict(os.environ, TRAIN_CMD=train_cmd(0.5))
    proc = subprocess.Popen([sys.executable, str(RUN), str(manifest), "--only", "fake_ok",
                             "--only", "fake_last"], cwd=REPO, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = logs / "fake_ok.log"
    deadline = time.monotonic() + 30
    while " iteration " not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the run never logged an iteration"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stdout + stderr

    runs = read_state(logs)
    ok = runs["fake_ok"]
    assert ok["state"] == "interrupted" and ok["reason"] == "stopped by SIGINT to run.py"
    text = log.read_text()
    assert " iteration " in text and "KeyboardInterrupt" in text
    meta = json.loads((logs / "fake_ok.meta.json").read_text())
    assert meta["interrupted"] is True
    # The next run was listed but never started: no attempt, no log.
    assert runs["fake_last"]["state"] == "pending" and runs["fake_last"]["attempts"] == []
    assert not (logs / "fake_last.log").exists()
    assert "1 run(s) not started" in stdout
    assert group_gone(ok["attempts"][-1]["pid"])


def test_resume_skips_completed_runs_and_retries_the_rest_with_a_new_log(manifest, tmp_path):
    logs = tmp_path / "logs"
    first = run_cli(str(manifest), "--only", "fake_ok", "--only", "fake_crash", train=train_cmd())
    assert first.returncode == 1
    again = run_cli(str(manifest), "--only", "fake_ok", "--only", "fake_crash", "--resume",
                    train=train_cmd())
    assert again.returncode == 1, again.stdout + again.stderr
    assert "skip fake_ok: completed" in again.stdout
    runs = read_state(logs)
    assert len(runs["fake_ok"]["attempts"]) == 1
    crash = runs["fake_crash"]
    assert [a["log"] for a in crash["attempts"]] == [str(logs / "fake_crash.log"),
                                                      str(logs / "fake_crash.1.log")]
    assert crash["log"] == str(logs / "fake_crash.1.log") and crash["state"] == "failed"
    assert (logs / "fake_crash.log").exists() and (logs / "fake_crash.1.meta.json").exists()
    # Without --resume a completed run runs again, into its next free log.
    third = run_cli(str(manifest), "--only", "fake_ok", train=train_cmd())
    assert third.returncode == 0
    assert read_state(logs)["fake_ok"]["log"] == str(logs / "fake_ok.1.log")


def test_only_takes_globs_and_launch_overrides_reach_the_script(manifest, tmp_path):
    logs = tmp_path / "logs"
    out = run_cli(str(manifest), "--only", "fake_o*", "--env", "GPUS_PER_NODE=2",
                  "--", "--train-iters", "4", train=train_cmd())
    assert out.returncode == 0, out.stdout + out.stderr
    runs = read_state(logs)
    assert list(runs) == ["fake_ok"]
    assert (runs["fake_ok"]["iteration"], runs["fake_ok"]["train_iters"]) == (4, 4)
    meta = json.loads((logs / "fake_ok.meta.json").read_text())
    assert meta["overrides"]["env"]["GPUS_PER_NODE"] == "2"
    assert meta["overrides"]["args"] == ["--train-iters", "4"]


def test_dry_run_prints_commands_and_writes_nothing(manifest, tmp_path):
    out = run_cli(str(manifest), "--dry-run", "--time-limit", "30", "--env", "GPUS_PER_NODE=1",
                  "--", "--num-layers", "4", train=train_cmd())
    assert out.returncode == 0, out.stderr
    script = tmp_path / "generated" / "fake_ok.sh"
    line = (f"GPUS_PER_NODE=1 LOG_FILE={tmp_path / 'logs' / 'fake_ok.log'} bash {script} "
            "--num-layers 4 --exit-duration-in-mins 30")
    assert line in out.stdout
    assert "[4/4] fake_hang" in out.stdout and "TRAIN_CMD=" in out.stdout
    assert not (tmp_path / "logs").exists()


def test_dry_run_shows_the_matrix_env_the_script_exports(manifest):
    """The environment a launch has includes what its script exports: the matrix env."""
    env = next(r for r in json.loads(manifest.read_text())["runs"] if r["name"] == "fake_crash")["env"]
    assert env
    out = run_cli(str(manifest), "--dry-run", "--only", "fake_crash", train=train_cmd())
    assert out.returncode == 0, out.stderr
    exported = " ".join(f"{k}={v}" for k, v in env.items())
    assert f"the script exports (matrix env, over any value above): {exported}" in out.stdout


def test_errors_are_one_line_with_exit_status_2(manifest, tmp_path):
    out = run_cli(str(manifest), "--only", "fake_okk")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "run.py: error: --only fake_okk: no run matches (did you mean fake_ok?); "
        "runs: fake_ok, fake_crash, fake_last, fake_hang"]

    matrix = tmp_path / "unrendered.yaml"
    matrix.write_text((tmp_path / "queue_matrix.yaml").read_text())
    out = run_cli(str(matrix))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "has not been rendered" in out.stderr and "python tools/render.py" in out.stderr
    # Rendered elsewhere with --out: the message says how to run that manifest.
    assert "if you rendered it with --out DIR, run python tools/run.py DIR/unrendered.manifest.json" in out.stderr

    # An unrendered matrix that could not render says why, as render.py does, not "render it".
    broken = tmp_path / "broken.yaml"
    broken.write_text((tmp_path / "queue_matrix.yaml").read_text().replace("--train-iters", "--train-iter", 1))
    out = run_cli(str(broken))
    assert out.returncode == 2 and "has not been rendered" not in out.stderr, out.stderr
    assert "--train-iter: unknown Megatron flag (did you mean --train-iters?)" in out.stderr

    out = run_cli(str(manifest), "--time-limit", "0.5")
    assert out.returncode == 2 and "takes whole minutes" in out.stderr

    out = run_cli(str(manifest), "--env", "LOG_FILE=x.log")
    assert out.returncode == 2 and "--env LOG_FILE" in out.stderr

    # sbatch missing from PATH: the one-line answer, before anything is submitted.
    out = run_cli(str(manifest), "--slurm", env={"PATH": str(tmp_path)})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "run.py: error: sbatch, scontrol not found on PATH: run this on a Slurm login node "
        "(or without --slurm to run here)"]
    assert "Traceback" not in out.stderr


def test_stale_scripts_are_refused(manifest, tmp_path):
    script = tmp_path / "generated" / "fake_ok.sh"
    script.write_text(script.read_text() + "# edited by hand\n")
    out = run_cli(str(manifest), train=train_cmd())
    assert out.returncode == 2
    assert "rendered scripts are stale" in out.stderr and "fake_ok.sh is out of date" in out.stderr
    assert f"--out {tmp_path / 'generated'}" in out.stderr
    assert not (tmp_path / "logs").exists()


def test_a_manifest_whose_evidence_differs_still_launches(manifest, tmp_path):
    """The advice and predictions in a manifest come from the committed logs, which a GPU host
    may not have: run.py launches when only those differ, and refuses a changed setting."""
    data = json.loads(manifest.read_text())
    for run in data["runs"]:
        run["advice"] = [{"id": "x", "step_time_change": None, "logs": [], "text": "cited logs not found"}]
        run["predicted_speedup"] = 9.99
    manifest.write_text(json.dumps(data, indent=2))
    out = run_cli(str(manifest), "--dry-run")
    assert out.returncode == 0, out.stderr
    data["runs"][0]["train_iters"] = 12345
    manifest.write_text(json.dumps(data, indent=2))
    out = run_cli(str(manifest), "--dry-run")
    assert out.returncode == 2 and "manifest.json is out of date" in out.stderr


FIXTURES = REPO / "tests" / "data" / "logs" / "megatron019"


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="tests/data/logs/megatron019 is missing")
def test_log_tail_reads_real_megatron_logs_incrementally(tmp_path):
    from fp8suite.logs.tail import LogTail

    # Fed to the tail in pieces that split lines, as a log looks while training writes it.
    log = tmp_path / "growing.log"
    data = (FIXTURES / "bf16.log").read_bytes()
    tail = LogTail(log)
    assert not tail.poll()  # no file yet
    with open(log, "wb") as f:
        for start in range(0, len(data), 7919):
            f.write(data[start:start + 7919])
            f.flush()
            tail.poll()
    tail.finish()
    assert (tail.iteration, tail.train_iters, tail.done) == (30, 30, True)
    assert tail.ms_per_iter == pytest.approx(655.5, abs=200) and tail.loss is not None
    assert tail.failure() == ""

    bad = LogTail(FIXTURES / "fp8delayed_1F1L_bad.log")
    bad.finish()
    assert bad.failure() == "ValueError: Delayed scaling does not support first / last layer in BF16."
    assert bad.iteration is None and not bad.done


def test_a_job_slurm_forgot_is_judged_by_its_sidecar_and_log(tmp_path):
    # scontrol forgets finished jobs after MinJobAge; the watch then reads the sidecar's exit.
    from fp8suite.launch import plan
    from fp8suite.launch import slurm as batch
    from fp8suite.logs.tail import LogTail
    from fp8suite.launch.runstate import RunState

    log, meta = tmp_path / "r.41.log", tmp_path / "r.41.meta.json"
    log.write_text(" [2026-11-23 04:01:35.3] iteration        4/       4 | lm loss: 1.0E+00 |\n"
                   "[after training is done] datetime: 2026-11-23 04:01:55 \n")
    meta.write_text(json.dumps({"run": "r", "exit_code": 0, "ended": "2026-11-23T04:01:56+00:00"}))
    state = RunState(tmp_path / "runs.json", "m.yaml", "m")
    att = state.begin("r", mode="slurm", state="running", job_id="41", log=str(log), meta=str(meta),
                      train_iters=4)
    run = plan.RenderedRun("r", {"local": tmp_path / "r.sh", "slurm": tmp_path / "r.sbatch"}, tmp_path, 4, {})
    batch._refresh(state, run, att, None, LogTail(log))
    assert (att["state"], att["exit_code"], att["iteration"]) == ("completed", 0, 4)
    assert att["ended"] == "2026-11-23T04:01:56+00:00"

    meta.write_text(json.dumps({"run": "r"}))  # no end recorded: the job vanished
    state.begin("r", mode="slurm", state="running", job_id="42", log=str(log), meta=str(meta))
    batch._refresh(state, run, state.latest("r"), None, LogTail(tmp_path / "missing.log"))
    assert state.record("r")["state"] == "failed"
    assert "job 42 is unknown to Slurm" in state.record("r")["reason"]


def test_resume_skips_only_runs_completed_with_the_same_launch(manifest, tmp_path):
    """A run completed by a shrunk launch (other args after `--`, another world size) is no
    completed run for a different launch: --resume runs it again and says why."""
    logs = tmp_path / "logs"
    shrunk = run_cli(str(manifest), "--only", "fake_ok", "--time-limit", "5", "--", "--train-iters", "4",
                     train=train_cmd())
    assert shrunk.returncode == 0, shrunk.stderr
    same = run_cli(str(manifest), "--only", "fake_ok", "--resume", "--", "--train-iters", "4", train=train_cmd())
    assert "skip fake_ok: completed" in same.stdout  # the time limit only stops a run: same launch
    full = run_cli(str(manifest), "--only", "fake_ok", "--resume", train=train_cmd())
    assert full.returncode == 0
    assert "completed with other launch settings (then: --train-iters 4)" in full.stdout
    assert len(read_state(logs)["fake_ok"]["attempts"]) == 2
    wider = run_cli(str(manifest), "--only", "fake_ok", "--resume", "--env", "GPUS_PER_NODE=2",
                    train=train_cmd())
    assert "completed with other launch settings (then: no overrides)" in wider.stdout
    assert len(read_state(logs)["fake_ok"]["attempts"]) == 3
    again = run_cli(str(manifest), "--only", "fake_ok", "--resume", "--env", "GPUS_PER_NODE=2",
                    train=train_cmd())
    assert "skip fake_ok: completed" in again.stdout


# --- faults (issue 26 kinds 3, 4, 6, 7, 9; issue 30: symlinked log names, the tail, hostile disks)


def test_a_watcher_never_writes_back_a_stale_record(tmp_path):
    """Kind 3: a watcher that loaded the file before another shell submitted a new job writes
    back only the attempt it follows: the new job stays recorded, and the run mirrors it."""
    from fp8suite.launch.runstate import RunState

    path = tmp_path / "runs.json"
    first = RunState(path, "m.yaml", "m")
    first.begin("r", mode="slurm", state="running", job_id="1", token="a", log="r.1.log")
    first.save()
    watcher = RunState.load(path, "m.yaml", "m")
    submitter = RunState.load(path, "m.yaml", "m")
    submitter.update("r", state="interrupted", reason="cancelled by run.py --cancel")
    submitter.begin("r", mode="slurm", state="pending", job_id="2", token="b", log="r.2.log")
    submitter.save()
    # The watcher still holds job 1 as running; the poll finds it cancelled.
    watcher.update_attempt("r", watcher.latest("r"), state="interrupted", iteration=5)
    watcher.save()
    rec = RunState.load(path, "m.yaml", "m").record("r")
    assert [(a["job_id"], a["state"]) for a in rec["attempts"]] == [("1", "interrupted"),
                                                                    ("2", "pending")]
    assert rec["job_id"] == "2" and rec["state"] == "pending"
    assert rec["attempts"][0]["iteration"] == 5 and watcher.record("r")["job_id"] == "2"


def test_a_refused_claim_takes_no_log_name(tmp_path):
    """The attempt's log is created under the status file's lock, only once the run is not
    refused: two queues started at once cannot leave the winner writing <run>.1.log beside a
    <run>.log the loser took and then removed. A prepare step that fails records nothing."""
    from fp8suite.launch.runstate import RunState

    path = tmp_path / "runs.json"
    state = RunState(path, "m.yaml", "m")
    made = []

    def take_log():
        made.append(f"r.{len(made)}.log" if made else "r.log")
        return {"log": made[-1]}

    assert state.claim("r", lambda latest: "", take_log, state="running") == ""
    assert state.claim("r", lambda latest: "running now under another run.py", take_log,
                       state="running") == "running now under another run.py"
    assert made == ["r.log"]
    assert RunState.load(path, "m.yaml", "m").record("r")["log"] == "r.log"

    def fails():
        raise OSError("disk full")

    with pytest.raises(OSError):
        state.claim("q", lambda latest: "", fails, state="running")
    assert RunState.load(path, "m.yaml", "m").record("q")["attempts"] == []


def test_two_queues_started_at_once_train_each_run_once(manifest, tmp_path):
    """Kind 4: two queues started at the same moment: each run trains once, into its own log;
    the second queue skips what the first one claimed (check and claim under one lock)."""
    logs = tmp_path / "logs"
    environ = dict(os.environ, TRAIN_CMD=train_cmd(0.1))
    argv = [sys.executable, str(RUN), str(manifest), "--only", "fake_ok", "--only", "fake_last"]
    procs = [subprocess.Popen(argv, cwd=REPO, env=environ, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for (stdout, stderr) in outs:
        assert "Traceback" not in stderr, stderr
    runs = read_state(logs)
    for name in ("fake_ok", "fake_last"):
        assert len(runs[name]["attempts"]) == 1, (runs[name], outs)
        assert runs[name]["state"] == "completed"
        text = (logs / f"{name}.log").read_text()
        assert text.count("[after training is done]") == 1 and text.count(" iteration        1/") == 1
    assert sorted(p.name for p in logs.glob("*.log")) == ["fake_last.log", "fake_ok.log"]
    # The other queue skipped what was claimed, or (started after the first one's claim) was
    # refused as a whole.
    assert sum("skip " in out or "is running now" in err for out, err in outs) >= 1


def test_a_run_another_queue_completed_after_this_one_started_is_not_trained_again(manifest, tmp_path):
    """Kind 4, the slow start: a second run.py that reads the status file only after the first
    queue completed a run (a loaded machine) skips it, since it ended after this run.py
    started; a run completed before this run.py started is trained again, as asked."""
    logs = tmp_path / "logs"
    first = run_cli(str(manifest), "--only", "fake_ok", train=train_cmd())
    assert first.returncode == 0, first.stdout + first.stderr
    # As if the first queue had ended it a moment after the second run.py started.
    data = json.loads((logs / "runs.json").read_text())
    assert isinstance(data["runs"]["fake_ok"]["attempts"][-1]["ended_epoch"], float)
    data["runs"]["fake_ok"]["attempts"][-1]["ended_epoch"] = time.time() + 30
    (logs / "runs.json").write_text(json.dumps(data))
    again = run_cli(str(manifest), "--only", "fake_ok", train=train_cmd())
    assert again.returncode == 0, again.stdout + again.stderr
    assert "skip fake_ok: completed by another run.py since this one started" in again.stdout
    assert len(read_state(logs)["fake_ok"]["attempts"]) == 1
    # Ended before this run.py started: trained again (no --resume).
    data["runs"]["fake_ok"]["attempts"][-1]["ended_epoch"] = time.time() - 30
    (logs / "runs.json").write_text(json.dumps(data))
    third = run_cli(str(manifest), "--only", "fake_ok", train=train_cmd())
    assert third.returncode == 0 and len(read_state(logs)["fake_ok"]["attempts"]) == 2


def test_a_dangling_symlink_never_takes_a_log(manifest, tmp_path):
    """Issue 30: a dangling symlink named like the next log is a taken name (lexists): the log
    goes to the next free name in the folder, nothing is written through the link."""
    logs = tmp_path / "logs"
    logs.mkdir()
    outside = tmp_path / "outside.log"
    (logs / "fake_ok.log").symlink_to(outside)
    out = run_cli(str(manifest), "--only", "fake_ok", train=train_cmd())
    assert out.returncode == 0, out.stdout + out.stderr
    assert not outside.exists()
    assert read_state(logs)["fake_ok"]["log"] == str(logs / "fake_ok.1.log")
    # The script on its own (no LOG_FILE) takes names by the same rule.
    (logs / "fake_ok.2.log").symlink_to(outside)
    env = dict(os.environ, TRAIN_CMD=train_cmd())
    env.pop("LOG_FILE", None)
    done = subprocess.run(["bash", str(tmp_path / "generated" / "fake_ok.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not outside.exists() and (logs / "fake_ok.3.log").is_file()


def test_the_log_tail_reads_to_the_end_splits_on_cr_and_bounds_a_line(tmp_path):
    """Issue 30: a burst of output (more than one read chunk without an iteration line) before
    the end is read to EOF by finish(); a tqdm-style \\r ends a line; a line without an end is
    kept only up to a bound. Kind 2: a file that shrank is read again from its start."""
    from fp8suite.logs import tail as logtail
    from fp8suite.logs.tail import LogTail

    log = tmp_path / "r.log"
    line = " [2026-11-23 04:01:35.3] iteration        {i}/       4 | lm loss: 1.0E+00 |\n"
    burst = b"x" * 1000 + b"\n"
    with open(log, "wb") as f:
        f.write(line.format(i=3).encode())
        f.write(burst * ((logtail._CHUNK // len(burst)) * 2))
        f.write(line.format(i=4).encode() + b"[after training is done] datetime: 2026-11-23\n")
    tail = LogTail(log)
    tail.poll()
    tail.finish()
    assert (tail.iteration, tail.done) == (4, True)

    cr = tmp_path / "cr.log"
    cr.write_bytes(b"progress 1%\rprogress 2%\r" + line.format(i=2).encode().rstrip(b"\n")
                   + b"\r" + b"y" * (logtail._MAX_LINE * 4))
    tail = LogTail(cr)
    tail.poll()
    assert tail.iteration == 2 and len(tail._partial) <= logtail._MAX_LINE

    tail = LogTail(log)
    tail.finish()
    log.write_text(line.format(i=1))  # truncated and rewritten, as Slurm does on a requeue
    tail.poll()
    assert (tail.iteration, tail.done, tail.restarts) == (1, False, 1)


def _read_only_folder(path: Path):
    """A folder nothing can be written to, even by root (a read-only tmpfs), or skip."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {done.stderr.strip()}")
    return lambda: subprocess.run(["umount", str(path)], capture_output=True)


@pytest.mark.parametrize("status_elsewhere", [False, True])
def test_an_unwritable_log_folder_is_one_line_before_anything_starts(manifest, tmp_path,
                                                                     status_elsewhere):
    """Kind 6 / issue 30: a read-only log folder: one line naming it, exit 1 (a write that
    fails), nothing trained (with the status file elsewhere the run used to train with no log
    and exit 0)."""
    logs = tmp_path / "logs"
    undo = _read_only_folder(logs)
    try:
        extra = ["--state", str(tmp_path / "state")] if status_elsewhere else []
        out = run_cli(str(manifest), "--only", "fake_ok", *extra, train=train_cmd())
    finally:
        undo()
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(logs) in lines[0] and "cannot" in lines[0]
    assert "runs.json" not in os.listdir(tmp_path / "state") if status_elsewhere else True


@pytest.mark.parametrize("what", ["lock-folder", "fifo"])
def test_a_hostile_status_file_is_one_line_not_a_hang(manifest, tmp_path, what):
    """Issue 30: runs.json.lock that is a folder, runs.json that is a FIFO: one line, exit 2."""
    logs = tmp_path / "logs"
    logs.mkdir()
    if what == "lock-folder":
        (logs / "runs.json.lock").mkdir()
    else:
        os.mkfifo(logs / "runs.json")
    out = run_cli(str(manifest), "--only", "fake_ok", train=train_cmd(), timeout=30)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr and "runs.json" in lines[0], lines
    assert not (logs / "fake_ok.log").exists()


def test_a_full_disk_is_recorded_in_one_line_and_stops_the_queue(manifest, tmp_path):
    """Kind 7 / issue 30: the disk fills while a run trains: one line, exit 1, the next run
    not started, no temporary file left behind."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    logs = tmp_path / "logs"
    logs.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(logs)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        environ = dict(os.environ, TRAIN_CMD=train_cmd(0.3))
        proc = subprocess.Popen([sys.executable, str(RUN), str(manifest), "--only", "fake_ok",
                                 "--only", "fake_last"], cwd=REPO, env=environ,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log = logs / "fake_ok.log"
        deadline = time.monotonic() + 30
        while " iteration " not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the run never logged an iteration"
            time.sleep(0.05)
        with open(logs / "filler", "wb") as f:  # fill the disk
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        stdout, stderr = proc.communicate(timeout=60)
        left = sorted(p.name for p in logs.iterdir())
    finally:
        subprocess.run(["umount", str(logs)], capture_output=True)
    assert proc.returncode == 1, stdout + stderr
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert "fake_ok" in lines[0] and ("No space left" in lines[0] or "could not write" in lines[0])
    assert not any(name.startswith(".") for name in left), left
    assert "fake_last.log" not in left


def test_the_time_limit_counts_from_trainings_first_line(manifest, tmp_path):
    """Kind 9: 2 s of silent start-up, then training with a 3 s limit: Megatron stops itself
    (its clock starts after start-up), the queue does not kill it. A start-up that never
    ends is "killed during start-up", and the report says time-limit, as the queue does."""
    logs = tmp_path / "logs"
    out = run_cli(str(manifest), "--only", "fake_ok", "--time-limit", "0.05", "--grace", "0.5",
                  "--", "--train-iters", "100000",
                  train=train_cmd(0.01, "--fake-startup", "2"))
    assert out.returncode == 1, out.stdout + out.stderr
    run = read_state(logs)["fake_ok"]
    assert run["state"] == "time-limited" and run["exit_code"] == 0, run
    assert run["reason"].startswith("[exiting program after ")

    out = run_cli(str(manifest), "--only", "fake_last", "--time-limit", "0.01", "--grace", "0.3",
                  train=train_cmd(0.01, "--fake-startup", "30"), timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    run = read_state(logs)["fake_last"]
    assert run["state"] == "time-limited" and run["reason"].startswith("killed during start-up"), run
    report = subprocess.run([sys.executable, str(REPO / "tools" / "report.py"), str(logs / "fake_last.log"),
                             "--out", str(tmp_path / "report")], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    statuses = [r.get("status") for r in summary["runs"]] if isinstance(summary, dict) else []
    assert statuses == ["time-limit"], (report.stderr, summary)


def test_a_script_run_by_hand_with_an_unwritable_log_folder_stops(manifest, tmp_path):
    """Kind 6, the script alone: no log can be created, so nothing trains (it used to train
    with no log and exit 0)."""
    logs = tmp_path / "ro"
    undo = _read_only_folder(logs)
    try:
        env = dict(os.environ, TRAIN_CMD=train_cmd(), LOG_DIR=str(logs))
        env.pop("LOG_FILE", None)
        done = subprocess.run(["bash", str(tmp_path / "generated" / "fake_ok.sh")], env=env,
                              capture_output=True, text=True, timeout=60)
    finally:
        undo()
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot create {logs}/fake_ok.log" in done.stderr
    assert "iteration" not in done.stdout
