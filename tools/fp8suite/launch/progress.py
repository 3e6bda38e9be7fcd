"""What the run queue shows: one progress line per run, and the summary table at the end.

    [2/5] train_x  iteration 120/1000  loss 3.412  1.23 s/it  ETA 18m02s

On a terminal the lines of the runs in flight are redrawn in place; anywhere else (CI, a file,
a pipe) they are printed as plain lines, at most one per run every PLAIN_EVERY seconds, so a
log of the queue stays readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Optional, TextIO

from ..common.clock import duration
from ..logs.tail import LogTail

PLAIN_EVERY = 30.0


def training(tail: LogTail, planned: Optional[int], eta: bool = True) -> str:
    """'iteration 120/1000  loss 3.412  1.23 s/it  ETA 18m02s' from what the log said so far."""
    total = tail.train_iters or planned
    if tail.iteration is None:
        return f"iteration 0/{total or '?'}"
    parts = [f"iteration {tail.iteration}/{total or '?'}"]
    if tail.loss is not None:
        parts.append(f"loss {tail.loss:.4g}")
    if tail.ms_per_iter:
        parts.append(f"{tail.ms_per_iter / 1000:.2f} s/it")
        if eta and total and total > tail.iteration:
            parts.append(f"ETA {duration((total - tail.iteration) * tail.ms_per_iter / 1000)}")
    return "  ".join(parts)


class Display:
    """The block of live lines at the bottom of the output, plus lines that stay above it."""

    def __init__(self, out: TextIO = sys.stdout, tty: Optional[bool] = None):
        self.out: Optional[TextIO] = out
        self.tty = out.isatty() if tty is None else tty
        self._drawn = 0  # live lines on screen (terminal only)
        self._shown: list[str] = []
        self._printed: dict[str, tuple[str, float]] = {}  # key -> (text, when) for plain output

    def show(self, lines: dict[str, str]) -> None:
        """Redraw the live lines (key -> text)."""
        if self.tty:
            if self._drawn and list(lines.values()) == self._shown:
                return
            self._shown = list(lines.values())
            self._clear()
            width = shutil.get_terminal_size((120, 24)).columns - 1
            # A wrapped line would break the redraw: cut each to the terminal's width.
            self._write("".join(text[:width] + "\x1b[K\n" for text in lines.values()))
            self._drawn = len(lines)
            return
        now = time.monotonic()
        for key, text in lines.items():
            last = self._printed.get(key)
            if last is None or (last[0] != text and now - last[1] >= PLAIN_EVERY):
                self._print(key, text, now)

    def note(self, text: str, key: Optional[str] = None) -> None:
        """A line that stays (a run finished, a job was submitted); live lines are redrawn after."""
        if self.tty:
            self._clear()
            self._drawn = 0
        if key is not None:
            self._printed[key] = (text, time.monotonic())
        self._write(text + "\n")

    def _print(self, key: str, text: str, now: float) -> None:
        self._printed[key] = (text, now)
        self._write(text + "\n")

    def _clear(self) -> None:
        if self._drawn:
            # Up to the first live line, then clear to the end of the screen.
            self._write(f"\x1b[{self._drawn}F\x1b[J")

    def _write(self, text: str) -> None:
        # A closed pipe or terminal must not stop the queue (or orphan the run it is watching):
        # the progress output just stops.
        if self.out is None:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            self.out = None


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain, aligned text table."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def summary(records: list[tuple[str, dict]]) -> str:
    """The end-of-queue table: one row per run from its status record."""
    rows = []
    for name, rec in records:
        done, total = rec.get("iteration"), rec.get("train_iters")
        iters = "" if done is None and total is None else f"{done or 0}/{total or '?'}"
        where = rec.get("log") or ""
        if rec.get("job_id"):
            where = f"job {rec['job_id']}  {where}"
        rows.append([name, rec.get("state", "pending"), iters, str(len(rec.get("attempts", []))),
                     where, rec.get("reason") or ""])
    return table(rows, ["run", "state", "iterations", "attempts", "log", "reason"])
