"""tools/run.py --slurm against a real Slurm cluster (CI: the one node of .ci/slurm_setup.sh).

The rendered .sbatch files are submitted as they are, from the suite's root, with TRAIN_CMD in
the submission environment (sbatch exports it to the job): srun starts the launch script,
which starts tests/standins/fake_megatron.py. The test matrix sets
`slurm: {request_gpus: false}`, since the CI node has no GPU GRES.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from test_run_queue import read_state, render_queue_matrix, run_cli, train_cmd


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


WHY_NOT = _slurm_reachable()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(bool(WHY_NOT), reason=f"no Slurm here: {WHY_NOT}")]


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
