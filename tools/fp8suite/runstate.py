"""The status file of a matrix's runs (logs/<matrix name>/runs.json): what ran, how it ended.

    {"matrix": "experiments/h200_8b.yaml", "name": "h200_8b", "updated": "...",
     "runs": {"train_x": {"state": "failed", "reason": "ValueError: ...", "iteration": 12,
                          "train_iters": 1000, "log": "logs/h200_8b/train_x.1.log",
                          "meta": "logs/h200_8b/train_x.1.meta.json", "job_id": null,
                          "attempts": [{"state": "completed", "log": "logs/.../train_x.log", ...},
                                       {"state": "failed", "log": "logs/.../train_x.1.log", ...}]}}}

A run's fields mirror its latest attempt; every attempt keeps its own log. The file is
rewritten atomically (temporary file, then rename) whenever a state changes, under a lock,
merging only the runs this process changed: a `--slurm --watch` in one shell and a submission
in another do not undo each other's records.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from . import fileio
from .clock import now
from .errors import StateFileError

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
        self._dirty: set[str] = set()

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
            self._dirty.add(run)

    def begin(self, run: str, **attempt: Any) -> dict[str, Any]:
        """Start a new attempt (its own log); the run mirrors it from now on."""
        rec = self.record(run)
        attempt.setdefault("state", "running")
        attempt.setdefault("reason", "")
        rec["attempts"].append(attempt)
        self._mirror(run)
        return attempt

    def update(self, run: str, **fields: Any) -> None:
        """Change the latest attempt (and so the run)."""
        attempt = self.latest(run)
        if attempt is None:
            raise ValueError(f"run {run} has no attempt to update")
        attempt.update(fields)
        self._mirror(run)

    def _mirror(self, run: str) -> None:
        rec, attempt = self.record(run), self.latest(run)
        for key in MIRRORED:
            rec[key] = attempt.get(key)
        self._dirty.add(run)

    def save(self) -> None:
        """Write the runs changed since the last save, keeping what other processes wrote."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            on_disk = _read(self.path) or {}
            runs = on_disk.get("runs", {}) if isinstance(on_disk.get("runs"), dict) else {}
            for run in self._dirty:
                runs[run] = self.runs[run]
            # Keep the other process's newer records of runs this one did not touch.
            for run, rec in runs.items():
                if run not in self._dirty:
                    self.runs[run] = rec
            self.data["updated"] = now()
            out = dict(self.data, runs=runs)
            fileio.write_atomic(self.path, json.dumps(out, indent=2) + "\n")
        self._dirty.clear()


def _read(path: Path) -> Optional[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateFileError(f"{path}: cannot read the run status file: {err.strerror}") from None
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


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # A lock file beside the status file: the status file itself is replaced on every save.
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
