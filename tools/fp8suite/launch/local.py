"""Run rendered launch scripts one after another on this node, and stop them cleanly.

Each run's script starts in its own session (so its own process group): the script, torchrun
or a TRAIN_CMD stand-in, its workers and `tee` all get the signals the queue sends to the
group, and a Ctrl-C at the terminal reaches only the queue, which decides what to send:

* Ctrl-C (or SIGTERM to run.py): SIGINT to the run's group, then SIGTERM and SIGKILL a grace
  period apart (a second Ctrl-C escalates at once). The run is marked interrupted, its log
  kept, and the queue does not start the next run.
* --time-limit M: Megatron stops itself through --exit-duration-in-mins M (it checks after
  every iteration, then saves a checkpoint if --save is set); when it has not ended a grace
  period after M minutes (or, once its log says it stops, a grace period after that line, for
  the save and exit), the group gets SIGTERM, then SIGKILL: a hung NCCL collective never
  reaches that check.

The script picks nothing itself: the queue creates the log exclusively (the next free
<run>.log, <run>.1.log, ..., never through a symlink) and passes it as LOG_FILE, so that it can
follow the log while training writes it. Whether a run may start (not running under another
run.py, not started by one since this queue began, not completed by one after this run.py
started: `ended_epoch` against the process's start) is checked and its attempt recorded under
one lock (RunState.claim), and the log is created under that lock once the run is claimed:
two queues started at the same moment never train one run twice, the one that trains it writes
<run>.log, and the other takes no log name, even when it is still starting up while the first
completes a run.

--time-limit counts from training's start, its first line in the log (Megatron's own clock
starts there too), not from the launch: a slow start-up is not cut short. A run with no line
from training by the limit and grace is killed and recorded "killed during start-up".

A write that fails (the log, the status file: a full disk) is recorded as that, in one line,
and the queue stops (run.py exits 1). A run on several nodes is refused unless NODE_RANK and
MASTER_ADDR say which node this is and where node 0 is (torchrun would wait for the others).

A queue that was killed outright (SIGKILL, a lost machine) leaves its run recorded as
running while the run goes on in its own session. The next run.py finds it from the
attempt's token (FP8SUITE_ATTEMPT in the run's environment, recorded before it starts): a run
still going is refused; one that ended is closed from its evidence, the log's end markers
and the sidecar's exit code, so a run that completed on its own is recorded completed and
`--resume` does not train it again.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import IO, Optional

from ..logs import kernels
from ..common import paths
from ..config import reserved
from . import plan as plans
from . import sidecar
from ..common import status as log_status
from ..common.errors import UsageError, WriteFailed
from ..logs.tail import LogTail
from .plan import Plan, RenderedRun
from ..common.clock import duration, now
from .progress import Display, training
from .runstate import RunState, attempt_key
from .base import (TIME_LIMIT_FLAG, Launcher, Signals, caught_signals, iteration, shell_line,
                   time_limit_args)

NAME = "local"

SAVE_EVERY = 30.0  # seconds between status-file updates of a running run's iteration
LOG_WRITE_FAILED = 74
"""The launch script's exit status when its log could not be written (EX_IOERR of sysexits.h;
templates/train.sh.j2 exits with it when tee failed)."""
# The launch scripts' environment knobs a dry run shows when inherited (LOG_FILE is the queue's).
KNOBS = tuple(k for k in (*paths.KNOBS, paths.SUITE_DIR) if k not in plans.OWNED_ENV)


@dataclass
class Options:
    """How the local launcher runs the queue (from run.py's options)."""
    extra_args: list[str] = field(default_factory=list)
    """Megatron args appended to every run's command (they override the script's)."""
    env: dict[str, str] = field(default_factory=dict)
    """Launch environment for the scripts (GPUS_PER_NODE=1, LOG_DIR=..., TRAIN_CMD=...)."""
    time_limit: Optional[float] = None
    """Minutes per run: Megatron's --exit-duration-in-mins, then the hard kill."""
    profile_step: Optional[int] = None
    """Iteration to profile on rank 0 (Megatron's PyTorch profiler), reduced to a kernel table
    beside the log when the run ends; None: no profiling."""
    grace: float = 60.0
    """Seconds from the time limit to the hard kill, and between escalating signals."""
    resume: bool = False
    dry_run: bool = False
    poll: float = 0.2
    """Seconds between looks at the run (its log, its process, a Ctrl-C)."""


def command(run: RenderedRun, opts: Options) -> list[str]:
    """bash <the run's launch script> [extra args] [profiler args] [time-limit args], from the
    suite's root."""
    return ["bash", plans.shown(run.scripts[NAME]), *opts.extra_args, *profile_args(run, opts),
            *time_limit_args(opts.time_limit)]


def profile_args(run: RenderedRun, opts: Options) -> list[str]:
    """Megatron's flags that profile iteration opts.profile_step on rank 0 with PyTorch's
    profiler; its trace goes to paths.profiler_trace (the TensorBoard folder is the one the
    launch scripts use, so a matrix's `wandb:` TensorBoard events land in the same place)."""
    if opts.profile_step is None:
        return []
    step = opts.profile_step
    tensorboard = paths.tensorboard_dir(plans.log_dir(run, opts.env), run.name)
    return ["--profile", "--use-pytorch-profiler", "--profile-step-start", str(step),
            "--profile-step-end", str(step + 1), "--profile-ranks", "0",
            "--tensorboard-dir", plans.shown(tensorboard)]


_PROFILE_FLAGS = ("--profile", "--use-pytorch-profiler", "--profile-step-start", "--profile-step-end",
                  "--profile-ranks", "--tensorboard-dir")


def profile_problems(selected: list[tuple[Plan, RenderedRun]], opts: Options) -> list[str]:
    """What keeps --profile-step from profiling, one line each: Megatron's profiler flags also
    given after `--`, and runs that would end before the profiled iteration."""
    if opts.profile_step is None:
        return []
    out = []
    given = sorted({a.split("=")[0] for a in opts.extra_args} & set(_PROFILE_FLAGS))
    if given:
        out.append(f"--profile-step sets {', '.join(given)} itself: drop "
                   f"{'it' if len(given) == 1 else 'them'} after `--`")
    for _, run in selected:
        planned = plans.planned_iterations(run, opts.extra_args)
        if planned is not None and opts.profile_step >= planned:
            out.append(f"--profile-step {opts.profile_step}: {run.name} trains {planned} "
                       f"iteration{'' if planned == 1 else 's'}; "
                       + (f"pick a step from 1 to {planned - 1} (Megatron writes the trace as the "
                          "next iteration starts)" if planned > 1 else "too few to profile one"))
    return out


def _kernel_table(run: RenderedRun, log: Path, opts: Options, since: float) -> str:
    """After a profiled run: rank 0's trace from this launch reduced to <log>.kernels.json
    (report.py shows it per run); one line saying what was written or why nothing was."""
    if _node_rank(opts.env) > 0:
        return "profile: rank 0 runs on node 0; the queue there writes the kernel table"
    trace = paths.profiler_trace(plans.log_dir(run, opts.env), run.name)
    try:
        fresh = trace.stat().st_mtime >= since
    except OSError:
        fresh = False
    if not fresh:
        return (f"profile: no trace from this launch at {plans.shown(trace)} (Megatron writes it "
                f"once training passes iteration {opts.profile_step + 1})")
    try:
        table = kernels.table_of(trace)
    except (OSError, EOFError, ValueError) as e:
        return f"profile: {plans.shown(trace)} is not a readable profiler trace ({e})"
    out = paths.kernel_table_of(log)
    kernels.write_table(table, out)
    return f"profile: iteration {opts.profile_step} -> {plans.shown(out)} (trace {plans.shown(trace)})"


def run_queue(selected: list[tuple[Plan, RenderedRun]], states: dict[str, RunState], opts: Options,
              display: Display) -> int:
    """Run the selected runs in turn; 0 when all completed, 1 if not, 128+N on signal N."""
    if not opts.dry_run:
        _close_stale(selected, states)
    todo, skipped = [], []
    for plan, run in selected:
        rec = states[plan.name].record(run.name)
        if opts.resume and rec["state"] == "completed":
            other = _other_launch(rec, run, opts)
            if not other:
                skipped.append((plan, run))
                continue
            display.note(f"{run.name}: completed with other launch settings ({other}); running it "
                         "again with these")
        todo.append((plan, run))
    for plan, run in skipped:
        display.note(f"skip {run.name}: completed ({states[plan.name].record(run.name).get('log')})")
    if opts.dry_run:
        return _dry_run(todo, states, opts, display)
    problems = node_problems(todo, opts)
    if problems:
        raise UsageError(*problems)
    _check_not_running(todo, states)
    # Each run's latest attempt as this queue found it: one begun since then is another queue's;
    # and one another queue completed after this run.py started (while it was starting up) is
    # not trained again either.
    seen = {run.name: _key(states[plan.name].latest(run.name)) for plan, run in todo}
    began = process_started()

    for plan, run in todo:
        states[plan.name].queue(run.name)
    for state in states.values():
        state.save()

    started = 0
    with caught_signals() as caught:
        for n, (plan, run) in enumerate(todo, 1):
            if caught.count:
                break
            started = n
            _run_one(f"[{n}/{len(todo)}]", run, states[plan.name], opts, display, caught,
                     seen[run.name], began)
    if caught.count:
        if len(todo) > started:
            display.note(f"stopped by {caught.name}: {len(todo) - started} run(s) not started")
        return caught.exit_code
    return 0 if all(states[p.name].record(r.name)["state"] == "completed" for p, r in selected) else 1


def process_started() -> float:
    """When this process started, epoch seconds: from /proc (its start time after boot, and the
    boot time as now less the uptime, both to 10 ms), else now. A queue compares it with
    attempts other queues ended."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5): starttime, counted from field 3
        boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


def _key(attempt: Optional[dict]) -> Optional[str]:
    return attempt_key(attempt) if attempt else None


def node_problems(todo, opts: Options) -> list[str]:
    """Runs on several nodes (NNODES from --env or this shell, else target.nodes) launched here
    without NODE_RANK and MASTER_ADDR naming this node's rank and node 0's host: torchrun
    would wait for nodes that never come. One line each."""
    env = dict(os.environ, **opts.env)
    out = []
    for _, run in todo:
        nodes = env.get("NNODES") or str(run.entry.get("nodes") or 1)
        if not nodes.isdigit() or int(nodes) <= 1:
            continue
        unset = [k for k in ("NODE_RANK", "MASTER_ADDR") if not env.get(k)]
        if env.get("MASTER_ADDR") in ("localhost", "127.0.0.1") and _node_rank(opts.env) > 0:
            unset.append("MASTER_ADDR (localhost is this node, not node 0)")
        if unset:
            out.append(f"{run.name} runs on {nodes} nodes (target.nodes or NNODES): set "
                       f"{' and '.join(unset)} for this node (--env NODE_RANK=k MASTER_ADDR=<node 0>), "
                       "run it on each node, or submit it with --slurm")
    return out


def _node_rank(env: dict[str, str]) -> int:
    """NODE_RANK of the launches (`--env`, else this shell; 0 when unset): node k > 0 of a run
    on several nodes logs to <run>.node<k>.log, as the launch scripts name it."""
    value = env.get("NODE_RANK", os.environ.get("NODE_RANK", "0")).strip()
    return int(value) if value.isdigit() else 0


# Launch settings that change what a run trains (not only where its files go).
TRAINING_KNOBS = ("GPUS_PER_NODE", "NNODES", "MOCK_DATA", "DATA_PATH", "TOKENIZER_MODEL",
                  "TRAIN_CMD", "MEGATRON_LM_DIR", "PYTHON")


def _launch(env: dict[str, str], args: list[str]) -> tuple[dict[str, str], list[str]]:
    """The part of a launch that changes the training: knobs of TRAINING_KNOBS and the Megatron
    args after `--`, without the time limit's --exit-duration-in-mins (it only stops a run)."""
    kept, skip = [], False
    for word in args:
        if skip:
            skip = False
        elif word == TIME_LIMIT_FLAG:
            skip = True
        else:
            kept.append(word)
    return {k: v for k, v in env.items() if k in TRAINING_KNOBS}, kept


def _other_launch(rec: dict, run: RenderedRun, opts: Options) -> str:
    """How the launch of a run's last completed attempt differs from this one ("" when it does
    not, or when the attempt recorded no command): --resume skips only a run completed the same
    way, so shrunk test launches are never taken for the real run."""
    done = [a for a in rec.get("attempts") or [] if a.get("state") == "completed" and a.get("command")]
    if not done:
        return ""
    try:
        words = shlex.split(done[-1]["command"])
    except ValueError:
        return "an unreadable recorded command"
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    script = str(plans.shown(run.scripts[NAME]))
    args = words[words.index(script) + 1:] if script in words else words[2:]
    then = _launch(env, args)
    now_ = _launch(opts.env, opts.extra_args)
    if then == now_:
        return ""
    was = " ".join([*(f"{k}={v}" for k, v in then[0].items()), *then[1]]) or "no overrides"
    return f"then: {was}"


def matrix_environment(run) -> dict[str, str]:
    """The environment the run's script exports whatever the caller's is: the matrix's env of
    its manifest entry (a dry run shows it beside LOG_FILE, --env and inherited knobs)."""
    env = run.entry.get("env") if isinstance(run.entry, dict) else None
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


def _dry_run(todo, states, opts: Options, display: Display) -> int:
    display.note(f"dry run: {len(todo)} run(s) would run in turn, from {paths.ROOT}; nothing is written")
    inherited = {k: os.environ[k] for k in KNOBS if k in os.environ and k not in opts.env}
    if inherited:
        display.note(f"inherited from this shell: {shell_line([], inherited)}")
    for n, (plan, run) in enumerate(todo, 1):
        log = paths.next_log(plans.log_dir(run, opts.env), run.name, _node_rank(opts.env))
        env = dict(opts.env, LOG_FILE=plans.shown(log))
        matrix_env = matrix_environment(run)
        exported = (f"\n  the script exports (matrix env, over any value above): {shell_line([], matrix_env)}"
                    if matrix_env else "")
        display.note(f"[{n}/{len(todo)}] {run.name}\n  {shell_line(command(run, opts), env)}{exported}")
    for name, state in states.items():
        display.note(f"status file: {plans.shown(state.path)}")
    return 0


def _close_stale(selected, states) -> None:
    """Runs recorded as running whose run.py is gone and whose run has ended: record how they
    ended, from the log and the sidecar (before --resume decides what to skip)."""
    changed = set()
    for plan, run, state, last in _recorded_running(selected, states):
        if _attempt_alive(last):
            continue  # _check_not_running refuses it
        result, reason, fields = _evidence(last)
        state.update(run.name, state=result, reason=reason, **fields)
        changed.add(plan.name)
    for name in changed:
        states[name].save()


def _recorded_running(selected, states):
    """(plan, run, its state file, its last attempt) for each selected run whose last attempt
    this launcher recorded as running."""
    for plan, run in selected:
        state = states[plan.name]
        last = state.latest(run.name)
        if last and last.get("mode") == NAME and last.get("state") == "running":
            yield plan, run, state, last


def _evidence(attempt: dict) -> tuple[str, str, dict]:
    """(state, reason, fields) of an attempt whose runner died, from what it left on disk."""
    log = paths.suite(attempt["log"]) if attempt.get("log") else None
    if log is None or not log.exists():
        return "interrupted", "run.py ended before the run wrote its log", {"ended": now()}
    meta = paths.suite(attempt["meta"]) if attempt.get("meta") else paths.sidecar_of(log)
    tail = LogTail(log)
    tail.finish()
    side = sidecar.read(meta) or {}
    fields = {"ended": side.get("ended") or now(), "iteration": tail.iteration,
              "train_iters": tail.train_iters or attempt.get("train_iters")}
    note = "recorded from the log and sidecar after run.py ended"
    code = side.get("exit_code") if "ended" in side else None
    if isinstance(code, int) and not isinstance(code, bool):
        fields["exit_code"] = code
        if side.get("interrupted") and not tail.done:
            return "interrupted", f"stopped by a signal ({note})", fields
        result, reason = _outcome(code, tail, io.BytesIO(), Options(), False, False, Signals())
        return result, f"{reason} ({note})" if reason else note, fields
    # The script ended without recording its end (killed outright): the log alone decides.
    if tail.done:
        return "completed", f"[after training is done] ({note}; no exit status recorded)", fields
    if tail.exiting:
        return "time-limited", f"{tail.exiting} ({note})", fields
    failure = tail.failure()
    if failure:
        return "failed", f"{failure} ({note})", fields
    return "interrupted", (f"run.py and the run ended without recording an end; the log stops at "
                           f"iteration {tail.iteration or 0}"), fields


def _check_not_running(todo, states) -> None:
    """A run another run.py is running now is refused (a run whose runner died and that has
    ended was closed by _close_stale)."""
    problems = []
    for _, run, state, last in _recorded_running(todo, states):
        if _attempt_alive(last):
            pid = last.get("pid") or "unknown"
            problems.append(f"{run.name} is running now (pid {pid}, log {last.get('log')}) under "
                            f"another run.py; wait for it or stop it first")
        else:
            result, reason, fields = _evidence(last)
            state.update(run.name, state=result, reason=reason, **fields)
    if problems:
        raise UsageError(*problems)


ATTEMPT_VAR = f"{reserved.SUITE_PREFIX}ATTEMPT"
"""Environment variable holding an attempt's token in every process of the run."""


def _attempt_alive(attempt: dict) -> bool:
    """Whether any process of the attempt still runs: its recorded pid (when that process
    carries the attempt's token, so a reused pid does not count), or any process carrying
    the token (run.py may have died between starting the run and recording its pid)."""
    token = attempt.get("token")
    pid = attempt.get("pid")
    if not token:
        return bool(pid) and _alive(pid)
    if pid and _alive(pid) and _has_token(pid, token) is not False:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return bool(pid) and _alive(pid)
    for entry in proc.iterdir():
        if entry.name.isdigit() and _has_token(int(entry.name), token):
            return True
    return False


def _has_token(pid: int, token: str) -> Optional[bool]:
    """True/False when the process's environment can be read, None when it cannot."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return f"{ATTEMPT_VAR}={token}".encode() in environ.split(b"\0")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Escalation:
    """SIGINT -> SIGTERM -> SIGKILL to a process group, a grace period apart."""

    ORDER = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)

    def __init__(self, pgid: int, grace: float):
        self.pgid, self.grace = pgid, grace
        self.stage = -1
        self.next_at = 0.0

    def start(self, first: signal.Signals) -> None:
        if self.stage < 0:
            self.stage = self.ORDER.index(first) - 1
            self.escalate()

    def tick(self) -> None:
        if 0 <= self.stage < len(self.ORDER) - 1 and time.monotonic() >= self.next_at:
            self.escalate()

    def escalate(self) -> None:
        if self.stage >= len(self.ORDER) - 1:
            return
        self.stage += 1
        try:
            os.killpg(self.pgid, self.ORDER[self.stage])
        except ProcessLookupError:
            pass
        self.next_at = time.monotonic() + self.grace


def _run_one(tag: str, run: RenderedRun, state: RunState, opts: Options, display: Display,
             caught: Signals, seen: Optional[str] = None, began: Optional[float] = None) -> None:
    """Start one run, follow it to its end and record how it ended. Skipped (with a note) when
    another run.py runs it or started it since this queue began (`seen`: its latest attempt's
    key then), or completed it after this run.py started (`began`, epoch seconds, against the
    attempt's `ended_epoch`); WriteFailed (after recording what it can) when its log or the status file could
    not be written."""
    cmd = command(run, opts)
    planned = plans.planned_iterations(run, cmd[2:])
    token = uuid.uuid4().hex
    taken: dict = {}

    def take_log() -> dict:
        """Create the attempt's log (paths.claim_log), under the status file's lock: a queue
        that is refused the run never takes a log name, so the one that runs it writes <run>.log."""
        try:
            log = paths.claim_log(plans.log_dir(run, opts.env), run.name, _node_rank(opts.env))
        except OSError as err:
            raise WriteFailed(f"{plans.shown(plans.log_dir(run, opts.env))}: cannot create the log "
                              f"of {run.name}: {err.strerror or err}") from None
        taken["log"] = log
        return {"log": plans.shown(log), "meta": plans.shown(paths.sidecar_of(log)),
                "command": shell_line(cmd, dict(opts.env, LOG_FILE=plans.shown(log)))}

    def refuse(latest: Optional[dict]) -> str:
        if latest is not None and attempt_key(latest) != seen:
            return (f"started by another run.py since this queue began (log {latest.get('log')}, "
                    f"{latest.get('state')})")
        if latest is not None and latest.get("state") == "completed" and began is not None \
                and isinstance(latest.get("ended_epoch"), (int, float)) \
                and latest["ended_epoch"] > began:
            return (f"completed by another run.py since this one started (log {latest.get('log')})")
        if latest is not None and latest.get("mode") == NAME and latest.get("state") == "running" \
                and _attempt_alive(latest):
            return f"running now under another run.py (log {latest.get('log')})"
        return ""

    # Recorded before the run starts: a run.py killed at any moment leaves the attempt's log
    # and token on record, so the next run.py can find the run, running or ended.
    why = state.claim(run.name, refuse, take_log, mode=NAME, state="running", pid=None,
                      token=token, started=now(), ended=None, job_id=None, exit_code=None,
                      iteration=None, train_iters=planned)
    if why:
        display.note(f"{tag} skip {run.name}: {why}")
        return
    log = taken["log"]
    meta = paths.sidecar_of(log)
    env = dict(os.environ, **opts.env, LOG_FILE=str(log), **{ATTEMPT_VAR: token})
    stderr = tempfile.TemporaryFile()
    started, launched_at = time.monotonic(), time.time()
    proc = subprocess.Popen(cmd, cwd=paths.ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    state.update(run.name, pid=proc.pid)
    _save_progress(state)

    tail = LogTail(log, own=f"{run.name}: ")
    stop = _Escalation(proc.pid, opts.grace)
    try:
        stopped_by_user, hard_killed = _follow(tag, run, proc, tail, stop, started, planned, state,
                                               opts, display, caught)
    except BaseException as err:
        # run.py itself failed: never leave training running unwatched in its own session.
        stop.start(signal.SIGTERM)
        try:
            proc.wait(timeout=min(opts.grace, 10))
        except subprocess.TimeoutExpired:
            stop.escalate()
            proc.wait()
        state.update(run.name, state="interrupted", ended=now(), exit_code=proc.returncode,
                     reason=f"run.py stopped on {type(err).__name__}: {err}"[:300])
        _save_progress(state)
        raise
    if stop.stage >= 0:
        # The script is gone; make sure nothing it started lingers in its group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    tail.finish()
    elapsed = time.monotonic() - started

    code = proc.returncode
    shell_code = 128 - code if code < 0 else code
    result, reason = _outcome(code, tail, stderr, opts, stopped_by_user, hard_killed, caught)
    write_failed = shell_code == LOG_WRITE_FAILED and not (stopped_by_user or hard_killed)
    if write_failed:
        result, reason = "failed", (_last_line(stderr) or f"the log {plans.shown(log)} could not "
                                    "be written")
    stderr.close()
    try:
        _close_sidecar(meta, shell_code, interrupted=stopped_by_user or hard_killed)
        if hard_killed:
            sidecar.stopped(meta, log_status.TIME_LIMIT, reason)
    except OSError as err:
        display.note(f"{tag} {run.name}: could not write the sidecar {plans.shown(meta)}: "
                     f"{err.strerror or err}")
    state.update(run.name, state=result, reason=reason, ended=now(), ended_epoch=time.time(),
                 exit_code=shell_code, iteration=tail.iteration,
                 train_iters=tail.train_iters or planned)
    try:
        state.save()
    except WriteFailed as err:
        raise WriteFailed(f"{run.name} {result}" + (f" ({reason})" if reason else "")
                          + f", not recorded: {err}; the queue stopped") from None
    display.note(f"{tag} {run.name}  {result}  {training(tail, planned, eta=False)}  in {duration(elapsed)}"
                 + (f"  ({reason})" if reason else ""), key=run.name)
    if write_failed:
        raise WriteFailed(f"{run.name}: {reason}; the queue stopped")
    if opts.profile_step is not None and not stopped_by_user:
        display.note(f"{tag} {run.name}  {_kernel_table(run, log, opts, launched_at)}")


def _save_progress(state: RunState) -> None:
    """Save while the run trains: a status file that cannot be written now (a full disk)
    must not stop training; the save at its end reports it."""
    try:
        state.save()
    except WriteFailed:
        pass


def _follow(tag, run, proc, tail, stop, started, planned, state, opts, display, caught):
    """Poll the run until its script exits: progress, Ctrl-C, the time limit's hard kill.
    Returns (stopped by the user, killed at the time limit)."""
    deadline = started + opts.time_limit * 60 + opts.grace if opts.time_limit else None
    stopped_by_user = hard_killed = False
    presses = 0
    exit_seen = None  # when the log first said Megatron stops at the time limit
    output_seen = False  # whether training has written a line yet (its start)
    saved_at = time.monotonic()
    while proc.poll() is None:
        tail.poll()
        now_s = time.monotonic()
        if deadline is not None and not output_seen and tail.output_lines:
            # Megatron's --exit-duration-in-mins counts from its own start: so does the limit.
            output_seen = True
            deadline = max(deadline, now_s + opts.time_limit * 60 + opts.grace)
        if deadline is not None and tail.time_limited and exit_seen is None:
            # Megatron counts the limit from its own start, after start-up: once it says it
            # stops, the grace runs from then (its checkpoint save and exit), not from launch.
            exit_seen = now_s
            deadline = max(deadline, now_s + opts.grace)
        if caught.count > presses:
            # First Ctrl-C: SIGINT; each further one escalates without waiting.
            if not stopped_by_user and not hard_killed:
                stop.start(signal.SIGINT)
            else:
                stop.escalate()
            stopped_by_user, presses = True, caught.count
        elif deadline is not None and now_s >= deadline and not (stopped_by_user or hard_killed):
            hard_killed = True
            stop.start(signal.SIGTERM)
        stop.tick()
        what = "stopping" if (stopped_by_user or hard_killed) else ""
        display.show({run.name: _line(tag, run.name, tail, planned, now_s - started, what)})
        if now_s - saved_at >= SAVE_EVERY and tail.iteration is not None:
            state.update(run.name, iteration=tail.iteration, train_iters=tail.train_iters or planned)
            _save_progress(state)
            saved_at = now_s
        time.sleep(opts.poll)
    return stopped_by_user, hard_killed


def _line(tag: str, name: str, tail: LogTail, planned: Optional[int], elapsed: float, what: str) -> str:
    if tail.iteration is None:
        body = f"starting ({duration(elapsed)})"
    else:
        body = training(tail, planned)
    return f"{tag} {name}  {body}" + (f"  [{what}]" if what else "")


def _outcome(code: int, tail: LogTail, stderr: IO[bytes], opts: Options, stopped_by_user: bool,
             hard_killed: bool, caught: Signals) -> tuple[str, str]:
    if stopped_by_user:
        return "interrupted", f"stopped by {caught.name} to run.py"
    if hard_killed:
        if tail.time_limited:
            # Megatron stopped at the limit (and saved a checkpoint when --save is set), but
            # its processes did not end (a hang in teardown).
            return "time-limited", (f"{tail.exiting}; its processes had not exited {opts.grace:g} s "
                                    "later and were killed")
        if not tail.output_lines:
            return "time-limited", (f"killed during start-up: no line from training {opts.time_limit:g} "
                                    f"min + {opts.grace:g} s after the launch")
        if tail.iteration is None:
            return "time-limited", (f"killed during start-up: no iteration {opts.time_limit:g} min + "
                                    f"{opts.grace:g} s after training's first line")
        return "time-limited", (f"killed {opts.grace:g} s after the {opts.time_limit:g} min time limit "
                                "(counted from training's first line), after training ignored "
                                "--exit-duration-in-mins")
    if tail.time_limited:
        return "time-limited", tail.exiting
    if code == 0:
        if tail.done or tail.exiting:
            return "completed", tail.exiting
        planned = tail.train_iters
        if planned and tail.iteration == planned:
            return "completed", ""
        node = _node_rank(opts.env)
        if node > 0:
            # Megatron prints its end lines on rank 0 only: this node's log cannot say how
            # training ended, node 0's does (the report joins the two).
            where = f"at iteration {tail.iteration}/{planned or '?'} " if tail.iteration else ""
            said = f"exit status 0 {where}on node {node}; Megatron's end line is in node 0's log"
            return ("time-limited" if opts.time_limit and tail.iteration else "completed"), said
        return "failed", (f"exit status 0 at iteration {tail.iteration or 0}/{planned or '?'} "
                          "without Megatron's [after training is done]")
    reason = tail.failure() or _last_line(stderr)
    # How the log says it ended, in the queue's words (one table: fp8suite.common.status): a
    # scheduler's time limit or cancellation is not a failure of the run.
    state = tail.run_state()
    state = state if state in (log_status.RUN_STATE[log_status.TIME_LIMIT],
                               log_status.RUN_STATE[log_status.CANCELLED]) else "failed"
    if code < 0:
        detail = f"killed by {signal.Signals(-code).name}"
    else:
        detail = f"exit status {code}"
    return state, f"{reason}; {detail}" if reason else detail


def _last_line(f: IO[bytes]) -> str:
    """The script's own last complaint (it writes to stderr before the log exists)."""
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - 4096))
    lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _close_sidecar(meta, exit_code: int, interrupted: bool) -> None:
    """A script killed by SIGKILL cannot record its end in the sidecar: do it for it."""
    data = sidecar.read(meta)
    if data is not None and "ended" not in data:
        sidecar.end(meta, exit_code, interrupted)


class LocalLauncher(Launcher):
    """The runs' launch scripts one after another on this node (torchrun per run)."""

    name = NAME
    summary = "run the launch scripts (<run>.sh) one after another on this node (default)"

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """--profile-step."""
        group = ap.add_argument_group("profiling (local queue)")
        group.add_argument("--profile-step", type=iteration, metavar="N",
                           help="profile iteration N of each run on rank 0 (Megatron's PyTorch "
                                "profiler) and write the kernel table <log>.kernels.json beside "
                                "its log when it ends; report.py shows where the step time goes")

    def check(self, args: argparse.Namespace, env: dict[str, str], chosen: bool) -> list[str]:
        """--profile-step with another launcher."""
        if args.profile_step is not None and not chosen:
            return ["--profile-step profiles runs of the local queue; for a batch job pass "
                    "Megatron's flags after `--` (--profile --use-pytorch-profiler "
                    "--profile-step-start N --profile-step-end N+1 --profile-ranks 0 "
                    "--tensorboard-dir DIR) and run tools/profile_breakdown.py on the trace"]
        return []

    def launch(self, selected, states, args, extra, env, display) -> int:
        """Run the selected runs' scripts in turn; see `run_queue`."""
        opts = Options(extra_args=extra, env=env, time_limit=args.time_limit, grace=args.grace,
                       resume=args.resume, dry_run=args.dry_run, profile_step=args.profile_step)
        problems = profile_problems(selected, opts)
        if problems:
            raise UsageError(*problems)
        return run_queue(selected, states, opts, display)
