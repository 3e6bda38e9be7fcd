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
import socket
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from fp8suite.logparse import parse_log
from test_run_queue import MATRIX, read_state, render_queue_matrix, run_cli, train_cmd

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def render_nodes_matrix(tmp_path, nodes: int, gpus_per_node: int):
    """The queue test matrix with `target: {nodes, gpus_per_node}`, rendered under tmp_path."""
    data = yaml.safe_load(MATRIX.read_text())
    data["target"].update(nodes=nodes, gpus_per_node=gpus_per_node)
    data["log_dir"] = str(tmp_path / "logs")
    data["triton_cache_dir"] = str(tmp_path / "triton")
    matrix = tmp_path / "nodes_matrix.yaml"
    matrix.write_text(yaml.safe_dump(data, sort_keys=False))
    out = subprocess.run([sys.executable, str(REPO / "tools" / "render.py"), str(matrix),
                          "--out", str(tmp_path / "generated")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return tmp_path / "generated" / "nodes_matrix.manifest.json"


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
