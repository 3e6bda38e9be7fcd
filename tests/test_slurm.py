"""tools/run.py --slurm against a real Slurm cluster (CI: the two nodes of .ci/slurm_setup.sh).

The rendered .sbatch files are submitted as they are, from the suite's root, with TRAIN_CMD in
the submission environment (sbatch exports it to the job): srun starts the launch script on
each node, which starts tests/standins/fake_megatron.py. The test matrix sets
`slurm: {request_gpus: false}`, since the CI nodes have no GPU GRES.

Without Slurm these tests skip; with FP8SUITE_REQUIRE_SLURM=1 (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO
from fp8suite.logs.parse import parse_log
from helpers import MATRIX, read_state, render_queue_matrix, run_cli, train_cmd
from helpers import free_port

REQUIRED = os.environ.get("FP8SUITE_REQUIRE_SLURM") == "1"


def _slurm_reachable() -> str:
    """'' when sinfo answers, else why not."""
    if shutil.which("sinfo") is None:
        return "sinfo is not on PATH (set Slurm up with: bash .ci/slurm_setup.sh)"
    try:
        out = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if out.returncode != 0:
        return f"sinfo failed: {(out.stderr or out.stdout).strip()[:200]} (bash .ci/slurm_setup.sh)"
    return ""


def _nodes_up() -> list[str]:
    """Names of the nodes that respond and take jobs (idle, busy or finishing one)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True,
                         timeout=20)
    states = dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)
    # A trailing * is a node that does not respond; down, drained or failed nodes take no job.
    return sorted(n for n, state in states.items()
                  if not state.endswith("*") and not state.startswith(("down", "drain", "fail", "unk")))


def _missing(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"FP8SUITE_REQUIRE_SLURM=1 but {why}")
    pytest.skip(why)


WHY_NOT = _slurm_reachable()
pytestmark = [pytest.mark.slurm]


@pytest.fixture(autouse=True)
def slurm_up():
    if WHY_NOT:
        _missing(f"no Slurm here: {WHY_NOT}")


@pytest.fixture
def two_nodes() -> list[str]:
    nodes = _nodes_up()
    if len(nodes) < 2:
        _missing(f"Slurm has {len(nodes)} node(s) up ({', '.join(nodes) or 'none'}), two are needed "
                 "(bash .ci/slurm_setup.sh starts two)")
    return nodes


def scontrol_job(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    return dict(w.split("=", 1) for w in out.stdout.split() if "=" in w)


@pytest.fixture
def manifest(tmp_path):
    return render_queue_matrix(tmp_path)


def _cancel_left_over(logs):
    try:
        runs = read_state(logs)
    except OSError:
        return
    ids = [a["job_id"] for r in runs.values() for a in r["attempts"] if a.get("job_id")]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def test_submit_and_watch_records_completed_and_failed_jobs(manifest, tmp_path):
    logs = tmp_path / "logs"
    try:
        out = run_cli("--slurm", str(manifest), "--only", "fake_ok", "--only", "fake_crash",
                      "--watch", "--poll", "0.5", train=train_cmd(0.05), timeout=180)
    finally:
        _cancel_left_over(logs)
    assert out.returncode == 1, out.stdout + out.stderr
    runs = read_state(logs)

    ok = runs["fake_ok"]
    job = ok["job_id"]
    assert job and job.isdigit() and f"fake_ok: submitted as job {job}" in out.stdout
    assert ok["state"] == "completed" and (ok["iteration"], ok["train_iters"]) == (8, 8)
    assert ok["exit_code"] == 0 and ok["attempts"][-1]["mode"] == "slurm"
    # The job's output file is the log, under the matrix's log folder, with the sidecar beside it.
    log = logs / f"fake_ok.{job}.log"
    assert ok["log"] == str(log) and "[after training is done]" in log.read_text()
    meta = json.loads((logs / f"fake_ok.{job}.meta.json").read_text())
    assert meta["slurm_job_id"] == job and meta["exit_code"] == 0 and meta["run"] == "fake_ok"
    # Slurm itself ran it (scontrol keeps finished jobs for MinJobAge seconds).
    info = scontrol_job(job)
    if info:
        assert info["JobState"] == "COMPLETED" and info["JobName"] == "fake_ok"

    crash = runs["fake_crash"]
    assert crash["state"] == "failed" and crash["job_id"] != job
    assert crash["reason"].startswith("ValueError: fake_megatron: crash in iteration 3")
    assert "Slurm FAILED, exit status 1" in crash["reason"]
    assert (logs / f"fake_crash.{crash['job_id']}.log").exists()


def test_resubmitting_skips_queued_jobs_and_cancel_stops_them(manifest, tmp_path):
    logs = tmp_path / "logs"
    try:
        out = run_cli("--slurm", str(manifest), "--only", "fake_hang", train=train_cmd(), timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        job = read_state(logs)["fake_hang"]["job_id"]
        assert read_state(logs)["fake_hang"]["state"] == "pending"

        again = run_cli("--slurm", str(manifest), "--only", "fake_hang", train=train_cmd(), timeout=60)
        assert again.returncode == 0
        assert f"skip fake_hang: already queued as job {job}" in again.stdout
        assert len(read_state(logs)["fake_hang"]["attempts"]) == 1

        cancel = run_cli("--cancel", str(manifest), "--only", "fake_hang", timeout=60)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert f"cancelled fake_hang: job {job}" in cancel.stdout
    finally:
        _cancel_left_over(logs)
    hang = read_state(logs)["fake_hang"]
    assert hang["state"] == "interrupted" and hang["reason"] == "cancelled by run.py --cancel"
    assert scontrol_job(job).get("JobState") in ("CANCELLED", "COMPLETING", None)




def render_nodes_matrix(tmp_path, nodes: int, gpus_per_node: int):
    """The queue test matrix with `target: {nodes, gpus_per_node}`, rendered under tmp_path."""
    return render_queue_matrix(tmp_path, "nodes_matrix", nodes=nodes, gpus_per_node=gpus_per_node)


@pytest.mark.parametrize("gpus_per_node", [1, 2])
def test_two_node_job_meets_at_one_rendezvous_with_node_ranks_from_slurm(two_nodes, tmp_path,
                                                                          gpus_per_node):
    manifest = render_nodes_matrix(tmp_path, nodes=2, gpus_per_node=gpus_per_node)
    sbatch = (manifest.parent / "fake_ok.sbatch").read_text()
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n" in sbatch
    logs, record = tmp_path / "logs", tmp_path / "record"
    port = free_port()
    try:
        out = run_cli("--slurm", str(manifest), "--only", "fake_ok", "--watch", "--poll", "0.5",
                      train=train_cmd(0.05, "--fake-record", str(record)),
                      env={"MASTER_PORT": str(port), "FAKE_MEGATRON_RENDEZVOUS_S": "60"},
                      timeout=180)
    finally:
        _cancel_left_over(logs)
    run = read_state(logs)["fake_ok"]
    job = run["job_id"]
    log = logs / f"fake_ok.{job}.log"
    assert out.returncode == 0, out.stdout + out.stderr + (log.read_text() if log.exists() else "")
    assert run["state"] == "completed" and (run["iteration"], run["train_iters"]) == (8, 8)

    assert sorted(record.iterdir()) == [record / "node0.json", record / "node1.json"]
    nodes = [json.loads((record / f"node{rank}.json").read_text()) for rank in (0, 1)]
    # One torchrun per node, each on its own node of the allocation, ranked by SLURM_NODEID.
    names = [node["slurm"]["SLURMD_NODENAME"] for node in nodes]
    assert sorted(names) == sorted(set(names)) and set(names) <= set(two_nodes)
    hostnames = subprocess.run(["scontrol", "show", "hostnames", nodes[0]["slurm"]["SLURM_JOB_NODELIST"]],
                               capture_output=True, text=True).stdout.split()
    for rank, node in enumerate(nodes):
        assert node["slurm"]["SLURM_JOB_ID"] == job and node["slurm"]["SLURM_NODEID"] == str(rank)
        assert node["env"] == {"NNODES": "2", "NODE_RANK": str(rank), "MASTER_ADDR": hostnames[0],
                               "MASTER_PORT": str(port), "GPUS_PER_NODE": str(gpus_per_node)}
        assert node["world_size"] == 2 * gpus_per_node
        # Both met at node 0's address: the same members, in node-rank order, on either side.
        assert [m["node_rank"] for m in node["members"]] == [0, 1]
        assert [m["slurm_nodename"] for m in node["members"]] == names
    assert names[0] == hostnames[0]

    # One log for the job, both nodes' lines in it as Megatron prints them: node 0 the
    # arguments and the end, node 1 (the last) the iterations; node 0 writes the sidecar. The
    # report reads it as one completed run.
    text = log.read_text()
    assert text.count("[after training is done]") == 1 and text.count(" iteration        8/") == 1
    assert f"using world size: {2 * gpus_per_node}," in text
    parsed = parse_log(log.read_bytes())
    assert parsed.status.name == "completed" and parsed.steps.iterations == list(range(1, 9))
    assert parsed.args["world_size"] == str(2 * gpus_per_node)
    meta = json.loads((logs / f"fake_ok.{job}.meta.json").read_text())
    assert meta["slurm_job_id"] == job and meta["exit_code"] == 0


# --- faults (issue 26): each test is one kind, against the real Slurm ------------------------


def _long_run(sleep: float = 0.05, iters: int = 2000) -> tuple[str, list[str]]:
    """TRAIN_CMD and Megatron args of a run that trains for a while and stops on SIGTERM."""
    return train_cmd(sleep), ["--", "--train-iters", str(iters)]


def _shadow(tmp_path, name: str, body: str) -> dict:
    """An environment whose PATH finds `name` as the script `body` first ($REAL is the real one)."""
    bin_dir = tmp_path / f"bin_{name}"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!/bin/bash\nREAL={shutil.which(name)}\n{body}\n")
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _popen(*args: str, env: dict) -> subprocess.Popen:
    environ = dict(os.environ)
    environ.pop("TRAIN_CMD", None)
    environ.update(env)
    # Its own process group, as a shell starts a job: the test's SIGINT to the group is a
    # Ctrl-C at the terminal, reaching run.py and every command it started in the group.
    return subprocess.Popen([sys.executable, str(REPO / "tools" / "run.py"), *args], cwd=REPO,
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(predicate, within: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_slurm_not_answering_keeps_the_records_and_resume_trains_nothing_twice(manifest, tmp_path):
    """Kind 1: a failed scontrol poll (slurmctld down), and a Ctrl-C at the terminal while
    scontrol runs, leave the running job recorded as it was; --slurm --resume then finds it
    live and submits nothing."""
    logs = tmp_path / "logs"
    train, args = _long_run()
    try:
        out = run_cli("--slurm", str(manifest), "--only", "fake_ok", *args, train=train, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        job = read_state(logs)["fake_ok"]["job_id"]
        _wait_for(lambda: scontrol_job(job).get("JobState") == "RUNNING", what="the job to run")

        down = _shadow(tmp_path, "scontrol",
                       'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1')
        watcher = _popen("--watch", str(manifest), "--only", "fake_ok", "--poll", "0.3", env=down)
        time.sleep(3)
        os.killpg(watcher.pid, signal.SIGINT)
        stdout, stderr = watcher.communicate(timeout=30)
        assert watcher.returncode == 130, stdout + stderr
        assert "Slurm not answering" in stdout and "Traceback" not in stderr
        rec = read_state(logs)["fake_ok"]
        assert rec["state"] in ("pending", "running") and rec["job_id"] == job, rec

        # Ctrl-C while scontrol runs: it has its own session, so only run.py gets the signal.
        marker = tmp_path / "scontrol_started"
        slow = _shadow(tmp_path, "scontrol", f'touch {marker}; sleep 2; exec "$REAL" "$@"')
        watcher = _popen("--watch", str(manifest), "--only", "fake_ok", "--poll", "0.3", env=slow)
        _wait_for(marker.exists, 30, "scontrol to start")
        os.killpg(watcher.pid, signal.SIGINT)
        stdout, stderr = watcher.communicate(timeout=30)
        assert watcher.returncode == 130, stdout + stderr
        rec = read_state(logs)["fake_ok"]
        assert rec["state"] == "running" and len(rec["attempts"]) == 1, rec

        again = run_cli("--slurm", str(manifest), "--only", "fake_ok", "--resume", *args,
                        train=train, timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"already queued as job {job}" in again.stdout
        assert len(read_state(logs)["fake_ok"]["attempts"]) == 1
    finally:
        _cancel_left_over(logs)


def test_a_requeued_job_keeps_its_first_launch_and_is_a_new_attempt(manifest, tmp_path):
    """Kind 2: `scontrol requeue` reruns the job with the same id: its log keeps the first
    launch (--open-mode=append), the restart is a second attempt, and the run is recorded
    completed with every iteration."""
    logs = tmp_path / "logs"
    try:
        out = run_cli("--slurm", str(manifest), "--only", "fake_ok", "--", "--train-iters", "40",
                      train=train_cmd(0.1), timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        job = read_state(logs)["fake_ok"]["job_id"]
        log = logs / f"fake_ok.{job}.log"
        _wait_for(lambda: log.exists() and " iteration        5/" in log.read_text(), 60,
                  "iteration 5")
        requeue = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        assert requeue.returncode == 0, requeue.stderr
        # Slurm holds a requeued job back for a while (BeginTime); start it at once.
        _wait_for(lambda: scontrol_job(job).get("JobState") == "PENDING", 60, "the requeue")
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        out = run_cli("--watch", str(manifest), "--only", "fake_ok", "--poll", "0.5", timeout=300)
    finally:
        _cancel_left_over(logs)
    assert out.returncode == 0, out.stdout + out.stderr
    text = log.read_text()
    assert text.count(" iteration        1/") == 2 and " iteration        5/" in text
    rec = read_state(logs)["fake_ok"]
    assert rec["state"] == "completed" and (rec["iteration"], rec["train_iters"]) == (40, 40)
    assert [a["job_id"] for a in rec["attempts"]] == [job, job]
    assert rec["attempts"][0]["state"] == "interrupted" and "requeued" in rec["attempts"][0]["reason"]
    assert rec["attempts"][1]["restarts"] == 1


def test_a_two_node_job_failing_on_one_node_names_the_node_and_the_error(two_nodes, tmp_path):
    """Kind 5: the crash on node 1 is the reason, named with its node, not the CANCELLED line
    srun's --kill-on-bad-exit prints on node 0; the report reads the same."""
    manifest = render_nodes_matrix(tmp_path, nodes=2, gpus_per_node=1)
    logs = tmp_path / "logs"
    try:
        out = run_cli("--slurm", str(manifest), "--only", "fake_crash", "--watch", "--poll", "0.5",
                      train=train_cmd(0.05), env={"MASTER_PORT": str(free_port()),
                                                  "FAKE_MEGATRON_CRASH_NODE": "1"}, timeout=180)
    finally:
        _cancel_left_over(logs)
    assert out.returncode == 1, out.stdout + out.stderr
    rec = read_state(logs)["fake_crash"]
    log = logs / f"fake_crash.{rec['job_id']}.log"
    node1 = [n for n in two_nodes if n in log.read_text().split("srun: error: ", 1)[-1][:40]]
    assert rec["state"] == "failed", rec
    assert rec["reason"].startswith("ValueError: fake_megatron: crash in iteration 3 on node "), rec
    assert node1 and f"on node {node1[0]}" in rec["reason"]
    status = parse_log(log.read_bytes()).status
    assert status.name == "crashed" and f"on node {node1[0]}" in status.reason


def test_ctrl_c_during_submission_records_the_job_under_way(manifest, tmp_path):
    """Kind 8: Ctrl-C while sbatch submits: that job is recorded, nothing more is submitted,
    the lists say what was and was not; the next --slurm finds the job, --cancel knows it."""
    logs = tmp_path / "logs"
    marker = tmp_path / "sbatch_started"
    slow = _shadow(tmp_path, "sbatch",
                   f'trap "" INT TERM; touch {marker}; out=$("$REAL" "$@"); rc=$?; sleep 2; '
                   'echo "$out"; exit $rc')
    try:
        proc = _popen("--slurm", str(manifest), "--only", "fake_ok", "--only", "fake_last",
                      "--", "--train-iters", "2000",
                      env=dict(slow, TRAIN_CMD=train_cmd(0.05)))
        _wait_for(marker.exists, 30, "sbatch to start")
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stdout + stderr
        assert "Traceback" not in stderr
        runs = read_state(logs)
        job = runs["fake_ok"]["job_id"]
        assert job and runs["fake_ok"]["state"] == "pending"
        assert f"submitted fake_ok (job {job}); not submitted: fake_last" in stdout
        assert scontrol_job(job).get("JobState") in ("PENDING", "RUNNING")
        assert not runs.get("fake_last", {}).get("attempts")
        cancel = run_cli("--cancel", str(manifest), "--only", "fake_ok", timeout=60)
        assert f"cancelled fake_ok: job {job}" in cancel.stdout, cancel.stdout + cancel.stderr
    finally:
        _cancel_left_over(logs)


def test_a_job_nothing_recorded_is_found_before_submitting_again(manifest, tmp_path):
    """Kind 8 (run.py killed outright mid-submission): a live job whose output is the run's
    job log is recorded, and not submitted a second time."""
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        batch = manifest.parent / "fake_ok.sbatch"
        env = dict(os.environ, TRAIN_CMD=train_cmd(0.05))
        sub = subprocess.run(["sbatch", "--parsable", str(batch), "--train-iters", "2000"],
                             capture_output=True, text=True, cwd=REPO, env=env)
        assert sub.returncode == 0, sub.stderr
        job = sub.stdout.strip().split(";")[0]
        out = run_cli("--slurm", str(manifest), "--only", "fake_ok", train=train_cmd(), timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        rec = read_state(logs)["fake_ok"]
        assert rec["job_id"] == job and len(rec["attempts"]) == 1
        assert f"job {job} of this run is" in out.stdout
    finally:
        _cancel_left_over(logs)
        subprocess.run(["scancel", job], capture_output=True)


def test_a_refused_submission_is_recorded_failed_with_sbatchs_reason(manifest, tmp_path):
    """Kind 11: sbatch refusing a run (an unknown partition) is a failed run with the reason,
    not a queued one."""
    logs = tmp_path / "logs"
    out = run_cli("--slurm", str(manifest), "--only", "fake_ok", "--partition", "nosuchpartition",
                  train=train_cmd(), timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    rec = read_state(logs)["fake_ok"]
    assert rec["state"] == "failed" and len(rec["attempts"]) == 1
    assert rec["reason"].startswith("not submitted: sbatch failed") and "partition" in rec["reason"]
    assert "fake_ok  failed" in out.stdout


def test_a_checkpointed_matrix_saves_at_slurms_time_limit_and_a_longer_limit_is_refused(tmp_path):
    """Kind 10: with a checkpoint the batch script asks Slurm for SIGTERM before --time ends
    and the launch script has Megatron save on it; --time-limit not shorter than Slurm's
    --time is refused in one line."""
    data = yaml.safe_load(MATRIX.read_text())
    data.update(log_dir=str(tmp_path / "logs"), triton_cache_dir=str(tmp_path / "triton"),
                checkpoint={"dir": str(tmp_path / "ckpt"), "save_interval": 4})
    matrix = tmp_path / "ckpt_matrix.yaml"
    matrix.write_text(yaml.safe_dump(data, sort_keys=False))
    out = subprocess.run([sys.executable, str(REPO / "tools" / "render.py"), str(matrix),
                          "--out", str(tmp_path / "generated")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    sbatch = (tmp_path / "generated" / "fake_ok.sbatch").read_text()
    assert "\n#SBATCH --signal=TERM@600\n" in sbatch and "\n#SBATCH --open-mode=append\n" in sbatch
    assert "--exit-signal-handler)" in (tmp_path / "generated" / "fake_ok.sh").read_text()
    manifest = tmp_path / "generated" / "ckpt_matrix.manifest.json"
    for flags in (["--time", "01:00:00", "--time-limit", "90"], ["--time-limit", "5"]):
        out = run_cli("--slurm", str(manifest), *flags, train=train_cmd(), timeout=60)
        assert out.returncode == 2, out.stdout + out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(set(lines)) == len(lines) >= 1 and "is not shorter than Slurm's --time" in lines[0]
    assert not (tmp_path / "logs" / "runs.json").exists()


def test_nnodes_reaches_sbatch_and_the_local_queue_refuses_a_multi_node_run(manifest, tmp_path,
                                                                           two_nodes):
    """Kind 12: --slurm --env NNODES=2 asks sbatch for two nodes (the job trains on both);
    the local queue refuses a two-node run without NODE_RANK/MASTER_ADDR."""
    logs = tmp_path / "logs"
    try:
        out = run_cli("--slurm", str(manifest), "--only", "fake_ok", "--env", "NNODES=2",
                      "--watch", "--poll", "0.5", train=train_cmd(0.05),
                      env={"MASTER_PORT": str(free_port())}, timeout=180)
    finally:
        _cancel_left_over(logs)
    rec = read_state(logs)["fake_ok"]
    assert out.returncode == 0, out.stdout + out.stderr
    assert "--nodes=2" in rec["attempts"][-1]["command"]
    assert scontrol_job(rec["job_id"]).get("NumNodes") == "2"
    assert "using world size: 2," in (logs / f"fake_ok.{rec['job_id']}.log").read_text()

    (tmp_path / "two").mkdir()
    nodes = render_nodes_matrix(tmp_path / "two", nodes=2, gpus_per_node=1)
    out = run_cli(str(nodes), "--only", "fake_ok", train=train_cmd(), timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "fake_ok runs on 2 nodes" in out.stderr and "NODE_RANK and MASTER_ADDR" in out.stderr
