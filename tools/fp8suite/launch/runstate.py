"""The status file of a matrix's runs (logs/<matrix name>/runs.json): what ran, how it ended.

    {"matrix": "experiments/h200_8b.yaml", "name": "h200_8b", "updated": "...",
     "runs": {"train_x": {"state": "failed", "reason": "ValueError: ...", "iteration": 12,
                          "train_iters": 1000, "log": "logs/h200_8b/train_x.1.log",
                          "meta": "logs/h200_8b/train_x.1.meta.json", "job_id": null,
                          "attempts": [{"state": "completed", "log": "logs/.../train_x.log", ...},
                                       {"state": "failed", "log": "logs/.../train_x.1.log", ...}]}}}

A run's fields mirror its latest attempt; every attempt keeps its own log. The file is
rewritten atomically (temporary file, then rename) whenever a state changes, under a lock
(runs.json.lock beside it), merging only the attempts this process changed, each known by its
token (or Slurm job id): a `--slurm --watch` in one shell and a submission in another never
undo each other's records, and a watcher never writes back a stale copy of an attempt another
process added. `claim` checks a run and starts its attempt under that one lock, so two queues
started at the same moment cannot both start it.

Errors: a status file (or its lock) that is not a regular file, or holds no run records, is
`StateFileError` (bad input, exit 2); a write that fails (a full disk, a folder gone
read-only) is `WriteFailed` (exit 1), with its temporary file removed. Both are one line.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..common import fileio
from ..common.clock import now
from ..common.errors import StateFileError, WriteFailed

STATES = ("pending", "running", "completed", "failed", "interrupted", "time-limited")
ACTIVE = ("pending", "running")
# Fields of an attempt that are mirrored on its run.
MIRRORED = ("state", "reason", "iteration", "train_iters", "exit_code", "log", "meta", "job_id")


class RunState:
    """The status file of one matrix's runs, in memory: `runs` maps run names to records whose
    fields mirror their latest attempt. Changes are written by `save()`."""

    def __init__(self, path: Path, matrix: str, name: str):
        self.path = Path(path)
        self.data: dict[str, Any] = {"matrix": matrix, "name": name, "updated": None, "runs": {}}
        # Run name -> keys (attempt_key) of the attempts this process changed since its last
        # write; a run with an empty set is one newly listed as pending.
        self._dirty: dict[str, set[str]] = {}

    @classmethod
    def load(cls, path: Path, matrix: str, name: str) -> "RunState":
        """The status file at `path` (empty when it does not exist yet); StateFileError when it
        exists but cannot be used."""
        state = cls(path, matrix, name)
        found = _read(state.path)
        if found is not None:
            state.data["runs"] = found.get("runs", {})
        return state

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """Run name -> record ({state, reason, iteration, train_iters, exit_code, log, meta,
        job_id, attempts})."""
        return self.data["runs"]

    def record(self, run: str) -> dict[str, Any]:
        """The run's record, created as pending (no attempt yet) when new."""
        return self.runs.setdefault(run, {"state": "pending", "reason": "", "attempts": []})

    def latest(self, run: str) -> Optional[dict[str, Any]]:
        """The run's latest attempt (a dict: mode, state, log, meta, job_id, ...), None before
        the first."""
        attempts = self.record(run)["attempts"]
        return attempts[-1] if attempts else None

    def queue(self, run: str) -> None:
        """List a run the queue will start: a new run shows as pending. One that ran before
        keeps its last attempt's state until it starts again, so a queue stopped early leaves
        true records (and --resume still skips what completed)."""
        if not self.record(run)["attempts"]:
            self._dirty.setdefault(run, set())

    def begin(self, run: str, **attempt: Any) -> dict[str, Any]:
        """Start a new attempt (its own log); the run mirrors it from now on."""
        rec = self.record(run)
        attempt.setdefault("state", "running")
        attempt.setdefault("reason", "")
        rec["attempts"].append(attempt)
        self._mark(run, attempt)
        return attempt

    def update(self, run: str, **fields: Any) -> None:
        """Change the latest attempt (and so the run)."""
        attempt = self.latest(run)
        if attempt is None:
            raise ValueError(f"run {run} has no attempt to update")
        self.update_attempt(run, attempt, **fields)

    def update_attempt(self, run: str, attempt: dict[str, Any], **fields: Any) -> None:
        """Change one attempt of the run (found by its key, `attempt_key`), whichever is the
        latest now: a watcher changes the job it follows, never a newer one."""
        attempt.update(fields)
        attempts = self.record(run)["attempts"]
        key = attempt_key(attempt)
        for i, one in enumerate(attempts):
            if attempt_key(one) == key:
                attempts[i] = attempt
                break
        else:
            attempts.append(attempt)
        self._mark(run, attempt)

    def _mark(self, run: str, attempt: dict[str, Any]) -> None:
        _mirror(self.record(run))
        self._dirty.setdefault(run, set()).add(attempt_key(attempt))

    def save(self) -> None:
        """Write the attempts changed since the last save, keeping what other processes wrote;
        WriteFailed (one line) when the file cannot be written."""
        if not self._dirty:
            return
        with self._locked():
            self._merge_from_disk()
            self._write()

    def claim(self, run: str, refuse: Callable[[Optional[dict[str, Any]]], str],
              prepare: Optional[Callable[[], dict[str, Any]]] = None, **attempt: Any) -> str:
        """Start a new attempt of `run` unless `refuse(latest attempt on disk)` gives a reason
        ('' to go on); the check and the start happen under one lock, and the attempt is
        written before the lock is let go. `prepare()`, called under the lock once the run is
        not refused, returns more of the attempt's fields (e.g. the log it has just created,
        so that a refused queue never takes a log name; what it raises propagates and nothing
        is recorded). Returns the reason ('' when claimed)."""
        with self._locked():
            self._merge_from_disk()
            why = refuse(self.latest(run))
            if not why:
                self.begin(run, **attempt, **(prepare() if prepare else {}))
            if self._dirty:
                self._write()
        return why

    def check_writable(self) -> None:
        """Before a launch: the status file and its lock are regular files or absent
        (StateFileError), and the status file's folder can be created and written
        (WriteFailed); one line each."""
        with self._locked():
            _read(self.path)
            try:
                fileio.probe_write(self.path.parent)
            except OSError as err:
                raise WriteFailed(f"{self.path.parent}: cannot write the run status file there: "
                                  f"{err.strerror or err}") from None

    def _merge_from_disk(self) -> None:
        """Take the other processes' records from the file and keep this one's changes."""
        on_disk = _read(self.path) or {}
        runs = on_disk.get("runs", {})
        for run, rec in runs.items():
            mine = self.runs.get(run)
            if mine is None or run not in self._dirty:
                self.runs[run] = rec
                continue
            self.runs[run] = _merged(rec, mine, self._dirty[run])

    def _write(self) -> None:
        self.data["updated"] = now()
        # A Ctrl-C in the middle would leave the staged file behind: signals wait until the
        # file is in place (or removed).
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        try:
            fileio.write_atomic(self.path, json.dumps(self.data, indent=2) + "\n")
        except OSError as err:
            raise WriteFailed(f"{self.path}: cannot write the run status file: "
                              f"{err.strerror or err}") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        self._dirty.clear()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # A lock file beside the status file: the status file itself is replaced on every save.
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: a FIFO put in the lock's place must not hang the queue.
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
        except IsADirectoryError:
            raise StateFileError(f"{lock}: is a folder, not the status file's lock file; "
                                 "move it away") from None
        except OSError as err:
            raise WriteFailed(f"{lock}: cannot create the status file's lock: "
                              f"{err.strerror or err}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StateFileError(f"{lock}: not a regular file (the status file's lock); "
                                     "move it away")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


_HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def attempt_key(attempt: dict[str, Any]) -> str:
    """What tells an attempt apart from the others of its run: its token (every attempt this
    version records has one), else its Slurm job id, else its log."""
    return str(attempt.get("token") or attempt.get("job_id") or attempt.get("log") or "")


def _mirror(rec: dict[str, Any]) -> None:
    last = rec["attempts"][-1] if rec["attempts"] else None
    if last is not None:
        for key in MIRRORED:
            rec[key] = last.get(key)


def _merged(on_disk: dict[str, Any], mine: dict[str, Any], changed: set[str]) -> dict[str, Any]:
    """One run's record: the file's attempts, with this process's changed attempts put in
    their place (or added after them); the run mirrors the latest."""
    attempts = list(on_disk.get("attempts", []))
    where = {attempt_key(a): i for i, a in enumerate(attempts)}
    for attempt in mine["attempts"]:
        key = attempt_key(attempt)
        if key in where and key in changed:
            attempts[where[key]] = attempt
        elif key not in where:
            where[key] = len(attempts)
            attempts.append(attempt)
    rec = dict(on_disk, attempts=attempts)
    if not attempts:
        rec.update({k: v for k, v in mine.items() if k != "attempts"})
    _mirror(rec)
    return rec


# The most a status file may hold: a records file of a few thousand runs is well under this.
MAX_BYTES = 64 << 20


def _read(path: Path) -> Optional[dict[str, Any]]:
    try:
        # O_NONBLOCK: a FIFO in the status file's place is refused instead of hanging.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateFileError(f"{path}: cannot read the run status file: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StateFileError(f"{path}: not a regular file (the run status file); move it away")
        if info.st_size > MAX_BYTES:
            raise StateFileError(f"{path}: {info.st_size} bytes, more than a run status file holds "
                                 f"({MAX_BYTES}); move it away to start afresh")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise StateFileError(f"{path}: cannot read the run status file: {err.strerror}") from None
    finally:
        os.close(fd)
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise StateFileError(f"{path}: not a run status file (invalid JSON: {err}); "
                             "move it away to start afresh") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs", {}), dict):
        raise StateFileError(f"{path}: not a run status file (no 'runs' mapping); "
                             "move it away to start afresh")
    for name, rec in data.get("runs", {}).items():
        attempts = rec.get("attempts") if isinstance(rec, dict) else None
        if not (isinstance(attempts, list) and all(isinstance(a, dict) for a in attempts)
                and all(isinstance(a.get(k), (str, type(None))) for a in attempts for k in ("log", "meta", "state"))):
            raise StateFileError(f"{path}: runs.{name} is not a run record (a mapping with a list of "
                                 "attempts); move the file away to start afresh")
    return data
