"""Runs as Slurm batch jobs: submit the rendered .sbatch files, watch the jobs, cancel them.

Submission happens from the suite's root (the batch scripts find the launch scripts from
SLURM_SUBMIT_DIR) after creating the log folder, since Slurm does not create the folder of
`#SBATCH --output`. sbatch exports the caller's environment to the job, so `--env` settings
and TRAIN_CMD reach the launch scripts on every node. Each job's output file is the run's log:
<log dir>/<run>.<jobid>.log, with its sidecar <run>.<jobid>.meta.json beside it.

What holds under faults:

* Slurm not answering (slurmctld restarting, a Ctrl-C while scontrol runs) changes no record:
  the watcher says so and asks again at its next poll. A job counts as forgotten only when
  scontrol answered without it.
* Before submitting, Slurm is asked for a live job of each run (the recorded one, or any job
  whose output file is the run's job log): such a run is not submitted again, and a job
  nothing recorded (run.py killed mid-submission) is recorded.
* A requeued job (node failure, `scontrol requeue`) appends to its log (#SBATCH
  --open-mode=append): each restart Slurm counts (Restarts=) is recorded as a new attempt of
  the same job and log.
* SIGINT/SIGTERM/SIGHUP during submission: the sbatch under way finishes and is recorded,
  nothing more is submitted, and what was and was not submitted is listed.
* A run sbatch refused is recorded as failed, with sbatch's reason.
"""

from __future__ import annotations

import argparse
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..common import paths
from . import plan as plans
from . import sidecar
from . import slurm_commands as slurm
from ..common.errors import SlurmUnavailable, UsageError
from ..logs.tail import LogTail
from .plan import Plan, RenderedRun
from .progress import Display, training
from ..common.clock import now
from .runstate import ACTIVE, RunState
from .base import Launcher, caught_signals, seconds, shell_line, time_limit_args

NAME = "slurm"


@dataclass
class Options:
    """How the Slurm launcher submits and watches (from run.py's options)."""
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    time_limit: Optional[float] = None
    resume: bool = False
    dry_run: bool = False
    partition: Optional[str] = None
    account: Optional[str] = None
    time: Optional[str] = None
    """sbatch --time, overriding the matrix's slurm.time."""
    poll: float = 10.0
    """Seconds between looks at the jobs while watching."""

    def sbatch_options(self) -> list[str]:
        """--partition/--account/--time given on run.py's command line, as sbatch options."""
        out = []
        for name in ("partition", "account", "time"):
            value = getattr(self, name)
            if value:
                out.append(f"--{name}={value}")
        if self.env.get("NNODES"):
            # The batch script takes NNODES from the allocation (SLURM_JOB_NUM_NODES): the
            # allocation must have the nodes asked for.
            out.append(f"--nodes={self.env['NNODES']}")
        return out


def _require(*tools: str) -> None:
    gone = slurm.missing(*tools)
    if gone:
        raise UsageError(f"{', '.join(gone)} not found on PATH: run this on a Slurm login node "
                         "(or without --slurm to run here)")


def job_log(run: RenderedRun, job_id: str) -> tuple[str, str]:
    """The job's log (#SBATCH --output) and sidecar, as the rendered .sbatch names them."""
    log = Path(paths.job_log(run.log_dir, run.name, job_id))
    return plans.shown(log), plans.shown(paths.sidecar_of(log))


def submit(selected: list[tuple[Plan, RenderedRun]], states: dict[str, RunState], opts: Options,
           display: Display) -> int:
    """sbatch each selected run; 0 when every submission worked, 1 if one failed, 128+N when
    signal N stopped the submissions (the sbatch under way is finished and recorded first)."""
    if not opts.dry_run:
        _require("sbatch", "scontrol")
    problems = [p for _, run in selected if (p := time_limit_problem(run, opts))]
    if problems:
        raise UsageError(*problems)
    live = _live_jobs(selected, states) if not opts.dry_run else {}
    failures = 0
    env = dict(os.environ, **opts.env)
    submitted, unsubmitted = [], []
    with caught_signals() as caught:
        for n, (plan, run) in enumerate(selected, 1):
            tag = f"[{n}/{len(selected)}]"
            state = states[plan.name]
            rec = state.record(run.name)
            if caught.count:
                unsubmitted.append(run.name)
                continue
            if opts.resume and rec["state"] == "completed":
                display.note(f"{tag} skip {run.name}: completed ({rec.get('log')})")
                continue
            if run.name in live:
                job = live[run.name]
                if not _recorded_job(state, run.name, job.job_id):
                    _adopt(state, run, job)
                    state.save()
                    display.note(f"{tag} {run.name}: job {job.job_id} of this run is {job.run_state} "
                                 "in Slurm but was not recorded: recorded it, not submitting again")
                else:
                    display.note(f"{tag} skip {run.name}: already queued as job {job.job_id} "
                                 "(--cancel it first to submit again)")
                continue
            args = [*opts.extra_args, *time_limit_args(opts.time_limit)]
            batch_file = plans.shown(run.scripts[NAME])
            cmd = ["sbatch", "--parsable", *opts.sbatch_options(), batch_file, *args]
            if opts.dry_run:
                display.note(f"{tag} {run.name}\n  mkdir -p {plans.shown(run.log_dir)} && "
                             f"{shell_line(cmd, opts.env)}")
                continue
            run.log_dir.mkdir(parents=True, exist_ok=True)
            attempt = dict(mode=NAME, token=uuid.uuid4().hex, submitted=now(), started=None,
                           ended=None, exit_code=None, iteration=None,
                           train_iters=plans.planned_iterations(run, args),
                           command=shell_line(cmd, opts.env))
            try:
                job_id = slurm.submit(batch_file, args, opts.sbatch_options(), env, paths.ROOT)
            except slurm.SlurmError as err:
                failures += 1
                # Recorded: a refused run is not a queued one. One sbatch did not answer may
                # still have submitted: the next --slurm finds such a job by its log's name.
                unsure = ("; it may have been submitted: --slurm again finds and records it"
                          if isinstance(err, SlurmUnavailable) else "")
                state.begin(run.name, state="failed", reason=f"not submitted: {err}{unsure}",
                            job_id=None, log=None, meta=None, **attempt)
                state.save()
                display.note(f"{tag} {run.name}: not submitted: {err}")
                continue
            log, meta = job_log(run, job_id)
            state.begin(run.name, state="pending", job_id=job_id, log=log, meta=meta, **attempt)
            state.save()
            submitted.append(f"{run.name} (job {job_id})")
            display.note(f"{tag} {run.name}: submitted as job {job_id}; log {log}")
    if opts.dry_run:
        for state in states.values():
            display.note(f"status file: {plans.shown(state.path)}")
    if caught.count:
        display.note(f"stopped by {caught.name}: submitted {', '.join(submitted) or 'none'}; "
                     f"not submitted: {', '.join(unsubmitted) or 'none'}")
        return caught.exit_code
    return 1 if failures else 0


def _recorded_job(state: RunState, run: str, job_id: str) -> bool:
    """Whether the run's latest attempt is this job and still counts as pending or running."""
    last = state.latest(run)
    return bool(last) and last.get("job_id") == job_id and last.get("state") in ACTIVE


def _adopt(state: RunState, run: RenderedRun, job: slurm.Job) -> None:
    """Record a live job of the run that no record holds as its latest attempt."""
    log, meta = job_log(run, job.job_id)
    state.begin(run.name, mode=NAME, token=uuid.uuid4().hex, state=job.run_state,
                reason="found in Slurm's queue; run.py had not recorded it", job_id=job.job_id,
                submitted=None, started=None, ended=None, log=log, meta=meta, exit_code=None,
                iteration=None, train_iters=run.train_iters, command=None,
                restarts=job.restarts)


def _live_jobs(selected, states) -> dict[str, slurm.Job]:
    """Runs that have a job Slurm still has pending or running: run name -> the job. A run's
    job is the one its record names, or any job whose output file is the run's job log (a
    job submitted by a run.py that was stopped before it could record it)."""
    try:
        known = slurm.jobs(None)
    except SlurmUnavailable as err:
        raise SlurmUnavailable(f"{err}: cannot tell whether the runs already have a job queued; "
                               "nothing was submitted, try again") from None
    live = {}
    for plan, run in selected:
        last = states[plan.name].latest(run.name)
        recorded = last.get("job_id") if last and last.get("mode") == NAME else None
        for job in known.values():
            mine = job.job_id == recorded or _same_file(job.std_out, paths.job_log(
                run.log_dir, run.name, job.job_id))
            if mine and job.run_state in ACTIVE:
                live[run.name] = job
                break
    return live


def _same_file(a: str, b: str) -> bool:
    return bool(a) and os.path.normpath(a) == os.path.normpath(b)


# Slurm's --time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def slurm_minutes(text: str) -> Optional[float]:
    """Minutes of a Slurm --time value (`sbatch --time`'s formats), None for "UNLIMITED",
    "infinite" or one that does not parse."""
    m = _SLURM_TIME.match(text.strip())
    if not m:
        return None
    days, a, b, c = m.groups()
    if days is not None:  # D-H[:M[:S]]
        return int(days) * 1440 + int(a) * 60 + int(b or 0) + int(c or 0) / 60
    if c is not None:  # H:M:S
        return int(a) * 60 + int(b) + int(c) / 60
    return int(a) + int(b or 0) / 60  # M[:S]


def job_time(run: RenderedRun, opts: Options) -> Optional[str]:
    """The job's --time: run.py's --time, else the #SBATCH --time of the rendered batch script."""
    if opts.time:
        return opts.time
    try:
        text = run.scripts[NAME].read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"^#SBATCH --time=(\S+)$", text, re.M)
    return m.group(1) if m else None


def time_limit_problem(run: RenderedRun, opts: Options) -> str:
    """'' unless --time-limit is longer than the job's Slurm --time (Slurm would stop the job
    before Megatron's --exit-duration-in-mins does, without the limit's orderly exit)."""
    if opts.time_limit is None:
        return ""
    given = job_time(run, opts)
    limit = slurm_minutes(given) if given else None
    if limit is None or opts.time_limit < limit:
        return ""
    return (f"--time-limit {opts.time_limit:g} min is not shorter than Slurm's --time {given} "
            f"({limit:g} min) of {run.name}: Slurm would end the job first; lower --time-limit or "
            "raise --time")


def _recorded(selected, states) -> list[tuple[Plan, RenderedRun, dict]]:
    out = []
    for plan, run in selected:
        last = states[plan.name].latest(run.name)
        if last and last.get("mode") == NAME and last.get("job_id"):
            out.append((plan, run, last))
    if not out:
        names = ", ".join(sorted({p.name for p, _ in selected}))
        raise UsageError(f"no Slurm job is recorded for the selected runs of {names}: "
                         "submit them with --slurm first")
    return out


def watch(selected: list[tuple[Plan, RenderedRun]], states: dict[str, RunState], opts: Options,
          display: Display) -> int:
    """Poll the recorded jobs until every one ended; 0 when all completed, 1 if not. A poll
    Slurm did not answer changes nothing and is said on the live line; the next poll asks again."""
    _require("scontrol")
    items = _recorded(selected, states)
    tails = {run.name: LogTail(paths.suite(att["log"])) for _, run, att in items if att.get("log")}
    reported = {run.name for _, run, att in items if att["state"] not in ACTIVE}
    for plan, run, att in items:
        if run.name in reported:
            display.note(_final_line(run, att, tails.get(run.name)), key=run.name)
    with caught_signals() as caught:
        while True:
            ids = [att["job_id"] for _, run, att in items]
            try:
                known, silent = slurm.jobs(ids, tries=1), ""
            except SlurmUnavailable as err:
                known, silent = None, str(err)
            lines = {}
            for n, (plan, run, att) in enumerate(items, 1):
                if run.name in reported and known is not None and _requeued(att, known.get(att["job_id"])):
                    reported.discard(run.name)  # an ended job Slurm runs again
                if run.name in reported:
                    continue
                tail = tails[run.name]
                tail.poll()
                if known is not None:
                    att = _refresh(states[plan.name], run, att, known.get(att["job_id"]), tail)
                    items[n - 1] = (plan, run, att)
                if att["state"] in ACTIVE:
                    lines[run.name] = _live_line(f"[{n}/{len(items)}]", run, att, tail) + (
                        f"  [Slurm not answering: {silent}; asking again]" if silent else "")
                else:
                    reported.add(run.name)
                    display.note(_final_line(run, att, tail), key=run.name)
            for state in states.values():
                state.save()
            if not lines:
                break
            display.show(lines)
            if caught.count:
                display.note(f"stopped watching ({caught.name}); the jobs keep running: "
                             "--watch again, or --cancel them")
                return caught.exit_code
            _sleep(opts.poll, caught)
    return 0 if all(att["state"] == "completed" for _, _, att in items) else 1


def _sleep(seconds: float, caught) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not caught.count:
        time.sleep(min(0.2, seconds))


def _refresh(state: RunState, run: RenderedRun, att: dict, job: Optional[slurm.Job],
             tail: LogTail) -> dict:
    """Update the attempt `att` from Slurm's view of its job (None: scontrol answered without
    it) and from its log; returns the attempt to follow from now on (a new one when Slurm
    restarted the job)."""
    if _requeued(att, job):
        # Requeued (node failure, scontrol requeue): the earlier launch ended; the job's next
        # launch appends to the same log (#SBATCH --open-mode=append). An attempt that had
        # ended keeps how it ended.
        if att.get("state") in ACTIVE:
            state.update_attempt(run.name, att, state="interrupted", ended=now(),
                                 iteration=tail.iteration,
                                 reason=f"Slurm requeued job {job.job_id} (restart {job.restarts})")
        att = state.begin(run.name, **{k: v for k, v in att.items() if k not in (
            "state", "reason", "ended", "token", "started", "iteration", "exit_code")},
            token=uuid.uuid4().hex, state=job.run_state, reason="", ended=None, started=None,
            iteration=None, exit_code=None, restarts=job.restarts)
    fields = {"iteration": tail.iteration, "train_iters": tail.train_iters or att.get("train_iters")}
    if job is not None and job.run_state in ACTIVE:
        fields["state"] = job.run_state
        waiting = job.run_state == "pending" and job.reason != "None"
        fields["reason"] = f"Slurm: {job.reason}" if waiting else ""
        if job.run_state == "running" and not att.get("started"):
            fields["started"] = now()
        state.update_attempt(run.name, att, **fields)
        return att
    tail.finish()
    fields.update(iteration=tail.iteration, train_iters=tail.train_iters or att.get("train_iters"))
    meta = sidecar.read(paths.suite(att["meta"])) or {}
    if job is not None:
        code = job.exit_code
        result, reason = _ended(job.run_state, job.state, code, tail)
    elif "exit_code" in meta:
        # Slurm forgot the job (MinJobAge): the launch script recorded its exit in the sidecar.
        code = meta["exit_code"]
        result, reason = _ended("completed" if code == 0 else "failed", "", code, tail)
    else:
        code = None
        result, reason = "failed", (tail.failure() or f"job {att['job_id']} is unknown to Slurm "
                                    "and left no exit status in its sidecar")
    fields.update(state=result, reason=reason, exit_code=code, ended=meta.get("ended") or now())
    state.update_attempt(run.name, att, **fields)
    return att


def _requeued(att: dict, job: Optional[slurm.Job]) -> bool:
    """Whether Slurm restarted the attempt's job since the attempt began (Restarts= grew)."""
    return job is not None and job.restarts > int(att.get("restarts") or 0)


def _ended(result: str, slurm_state: str, code: Optional[int], tail: LogTail) -> tuple[str, str]:
    if result == "completed":
        if tail.time_limited:
            return "time-limited", tail.exiting
        return "completed", tail.exiting
    if result == "time-limited":
        return result, "Slurm stopped the job at its time limit (sbatch --time)"
    if result == "interrupted":
        return result, "cancelled with scancel"
    detail = f"Slurm {slurm_state}" if slurm_state else "job failed"
    if code is not None:
        detail += f", exit status {code}"
    found = tail.failure()
    return "failed", f"{found}; {detail}" if found else detail


def _live_line(tag: str, run: RenderedRun, att: dict, tail: LogTail) -> str:
    head = f"{tag} {run.name}  job {att['job_id']}"
    if att["state"] == "pending":
        return f"{head} pending" + (f" ({att['reason']})" if att.get("reason") else "")
    if tail.iteration is None:
        return f"{head} starting"
    return f"{head}  {training(tail, att.get('train_iters'))}"


def _final_line(run: RenderedRun, att: dict, tail: Optional[LogTail]) -> str:
    text = f"{run.name}  job {att['job_id']} {att['state']}"
    if tail is None:
        return text + (f"  ({att['reason']})" if att.get("reason") else "")
    if tail.iteration is not None or att.get("iteration") is not None:
        done = tail.iteration if tail.iteration is not None else att.get("iteration")
        text += f"  iteration {done}/{tail.train_iters or att.get('train_iters') or '?'}"
    if att.get("reason"):
        text += f"  ({att['reason']})"
    return text


def cancel(selected: list[tuple[Plan, RenderedRun]], states: dict[str, RunState], display: Display) -> int:
    """scancel the selected runs' recorded jobs that are still pending or running."""
    _require("scancel", "scontrol")
    items = _recorded(selected, states)
    try:
        known = slurm.jobs([att["job_id"] for _, _, att in items])
    except SlurmUnavailable as err:
        raise SlurmUnavailable(f"{err}: nothing was cancelled, try again") from None
    targets = [(plan, run, att) for plan, run, att in items
               if att["job_id"] in known and known[att["job_id"]].run_state in ACTIVE]
    if not targets:
        display.note("nothing to cancel: no recorded job of the selected runs is pending or running")
        return 0
    try:
        slurm.cancel([att["job_id"] for _, _, att in targets])
    except slurm.SlurmError as err:
        raise UsageError(str(err)) from None
    for plan, run, att in targets:
        states[plan.name].update_attempt(run.name, att, state="interrupted", reason="cancelled by run.py --cancel",
                                 ended=now())
        display.note(f"cancelled {run.name}: job {att['job_id']}")
    for state in states.values():
        state.save()
    return 0


class SlurmLauncher(Launcher):
    """The runs' batch scripts as Slurm jobs: sbatch, then scontrol to watch, scancel to stop."""

    name = NAME
    summary = "submit the batch scripts (<run>.sbatch) as Slurm jobs"

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """--slurm, and the sbatch options --partition, --account, --time, --poll."""
        group = ap.add_argument_group("Slurm")
        group.add_argument("--slurm", action="store_true", help="submit the runs' .sbatch files "
                           "(same as --launcher slurm)")
        group.add_argument("--partition", help="sbatch --partition")
        group.add_argument("--account", help="sbatch --account")
        group.add_argument("--time", help="sbatch --time (default: the matrix's slurm.time)")
        group.add_argument("--poll", type=seconds, default=10.0, metavar="SECONDS",
                           help="seconds between looks at the jobs while watching (default 10)")

    def requested(self, args: argparse.Namespace) -> bool:
        """True with --slurm."""
        return bool(args.slurm)

    def check(self, args: argparse.Namespace, env: dict[str, str], chosen: bool) -> list[str]:
        """sbatch options without --slurm, --slurm with --cancel, LOG_DIR for a job log."""
        problems = []
        if args.slurm and args.cancel:
            problems.append("--slurm and --cancel exclude each other")
        if not (args.slurm or args.launcher == NAME):
            for option in ("partition", "account", "time"):
                if getattr(args, option):
                    problems.append(f"--{option} is an sbatch option: add --slurm")
        if chosen and "LOG_DIR" in env:
            problems.append("--env LOG_DIR: a Slurm job's log is its #SBATCH --output "
                            "(set log_dir in the matrix and render again)")
        return problems

    def options(self, args: argparse.Namespace, extra: list[str], env: dict[str, str]) -> Options:
        """The submission and watch options from run.py's arguments."""
        return Options(extra_args=extra, env=env, time_limit=args.time_limit, resume=args.resume,
                       dry_run=args.dry_run, partition=args.partition, account=args.account,
                       time=args.time, poll=args.poll)

    def ready(self, args) -> None:
        """sbatch and scontrol on PATH (not needed for --dry-run)."""
        if not args.dry_run:
            _require("sbatch", "scontrol")

    def launch(self, selected, states, args, extra, env, display) -> int:
        """sbatch each run's batch script; see `submit`."""
        return submit(selected, states, self.options(args, extra, env), display)

    def watch(self, selected, states, args, display) -> int:
        """Follow the recorded jobs; see `watch`."""
        return watch(selected, states, self.options(args, [], {}), display)

    def cancel(self, selected, states, display) -> int:
        """scancel the recorded pending/running jobs; see `cancel`."""
        return cancel(selected, states, display)

