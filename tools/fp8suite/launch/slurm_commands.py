"""The Slurm commands the suite uses: sbatch, scontrol show job, scancel.

No sacct: it needs accounting storage (slurmdbd), which many small clusters and the CI's
one-node cluster do not run. A job's state comes from `scontrol show job`, which knows pending,
running and recently finished jobs (for MinJobAge seconds, 300 by default); after that the
job's sidecar (exit code) and log say how it ended.

Slurm not answering (slurmctld restarting, a command timed out or was stopped) is its own
condition, `SlurmUnavailable`: `jobs` raises it instead of returning no jobs, so that a failed
poll is never taken for jobs Slurm forgot. Every command runs in its own session (setsid), so a
Ctrl-C at the terminal stops run.py, which decides what to do, and never the command under way.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..common.errors import SlurmError, SlurmUnavailable

# Slurm job states (squeue/scontrol names) -> the suite's run states.
PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD",
           "POWER_UP_NODE"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "SUSPENDED", "STOPPED"}
FINAL = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "NODE_FAIL": "failed",
    "BOOT_FAIL": "failed",
    "OUT_OF_MEMORY": "failed",
    "DEADLINE": "failed",
    "PREEMPTED": "failed",
    "SPECIAL_EXIT": "failed",
    "REVOKED": "failed",
    "TIMEOUT": "time-limited",
    "CANCELLED": "interrupted",
}


@dataclass
class Job:
    """One Slurm job as `scontrol show job` reports it."""

    job_id: str
    state: str
    """Slurm's JobState, e.g. PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT."""
    exit_code: Optional[int]
    """The batch script's exit status (ExitCode=N:S); None before the end."""
    signal: int
    reason: str
    """Why it waits (Resources, Priority, ...) or why it ended (NonZeroExitCode, ...)."""
    restarts: int = 0
    """How often Slurm requeued it (Restarts=): node failure, `scontrol requeue`, preemption."""
    std_out: str = ""
    """Its output file as Slurm expanded it (StdOut=): the run's log."""
    nodes: str = ""
    """Its node list (NodeList=), e.g. fp8n[1-2]; "(null)" before it starts."""

    @property
    def run_state(self) -> str:
        """The suite's run state of the job: pending, running, completed, failed, time-limited
        or interrupted."""
        if self.state in PENDING:
            return "pending"
        if self.state in RUNNING:
            return "running"
        return FINAL.get(self.state, "failed")


def missing(*tools: str) -> list[str]:
    """The tools among `tools` that are not on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


def submit(sbatch_file: str, args: list[str], options: list[str], env: dict[str, str],
           cwd: Path) -> str:
    """sbatch --parsable; returns the job id. Slurm exports the caller's environment (env)."""
    cmd = ["sbatch", "--parsable", *options, sbatch_file, *args]
    out = _run(cmd, env, cwd)
    # --parsable prints "<jobid>" or "<jobid>;<cluster>".
    job_id = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed no job id: {out.strip()[:200]!r}")
    return job_id


def jobs(job_ids: Optional[list[str]], tries: int = 3, wait: float = 2.0) -> dict[str, Job]:
    """Every known job among job_ids (every job Slurm knows for None); a job Slurm no longer
    remembers is left out. SlurmUnavailable when scontrol did not answer after `tries` tries
    `wait` seconds apart: then nothing is known, and no job may be taken for forgotten."""
    if job_ids is not None and not job_ids:
        return {}
    for attempt in range(tries):
        try:
            out = _run(["scontrol", "show", "job", "-o"], None, None, timeout=QUERY_TIMEOUT)
            break
        except SlurmError as err:
            if attempt + 1 == tries:
                raise SlurmUnavailable(f"Slurm did not answer: {err}") from None
            time.sleep(wait)
    wanted = set(job_ids) if job_ids is not None else None
    found = {}
    for line in out.splitlines():
        fields = _fields(line)
        job_id = fields.get("JobId")
        if not job_id or (wanted is not None and job_id not in wanted):
            continue
        code, _, sig = fields.get("ExitCode", "").partition(":")
        state = fields.get("JobState", "UNKNOWN")
        finished = state not in PENDING and state not in RUNNING
        restarts = fields.get("Restarts", "0")
        found[job_id] = Job(job_id=job_id, state=state,
                            exit_code=int(code) if finished and code.isdigit() else None,
                            signal=int(sig) if sig.isdigit() else 0,
                            reason=fields.get("Reason", "None"),
                            restarts=int(restarts) if restarts.isdigit() else 0,
                            std_out=fields.get("StdOut", ""), nodes=fields.get("NodeList", ""))
    return found


def cancel(job_ids: list[str]) -> None:
    """scancel the jobs; SlurmError when scancel fails."""
    if job_ids:
        _run(["scancel", *job_ids], None, None)


def _fields(line: str) -> dict[str, str]:
    # `scontrol show job -o`: one job per line, space-separated Key=Value pairs.
    out = {}
    for word in line.split():
        key, eq, value = word.partition("=")
        if eq and key not in out:
            out[key] = value
    return out


QUERY_TIMEOUT = 30
"""Seconds a query (scontrol show job) may take before Slurm counts as not answering (its
own MessageTimeout is 10 s by default); sbatch and scancel get COMMAND_TIMEOUT."""
COMMAND_TIMEOUT = 120


def _run(cmd: list[str], env: Optional[dict[str, str]], cwd: Optional[Path],
         timeout: float = COMMAND_TIMEOUT) -> str:
    try:
        # Its own session: the terminal's Ctrl-C reaches run.py only, never the command.
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"{cmd[0]} did not answer within {timeout:g} s") from None
    if proc.returncode < 0:
        raise SlurmUnavailable(f"{cmd[0]} was stopped by signal {-proc.returncode}")
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise SlurmError(f"{cmd[0]} failed (exit status {proc.returncode}): "
                         f"{lines[0] if lines else 'no message'}")
    return proc.stdout
