"""Follow a growing Megatron log: the last iteration, how it ended, why it failed.

The run queue polls this every fraction of a second while training writes the log, so it only
reads the bytes added since the last poll and keeps a few facts, never the log itself:

* the last iteration line, ` [date] iteration  120/ 1000 | ... | elapsed time per iteration
  (ms): 650.4 | ... | lm loss: 3.412E+00 | ...` (Megatron prints it from the last rank);
* the end markers: `[after training is done]`, `[exiting program after N minutes]`
  (--exit-duration-in-mins) and `[exiting program at iteration N]` (--exit-interval).

Why a run failed is read once, at the end, by the report's parser (fp8suite.logparse and
fp8suite.endstatus), so the queue's status file and the report describe a crash in the same
words; `run_state()` gives the queue's state for the log's status (fp8suite.status). The words
of the log (anchor, keys, markers, prefixes) come from fp8suite.logvocab.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from . import logstream
from . import logvocab as V
from . import status as S

_ITERATION = re.compile(V.ANCHOR.pattern.decode())
_MS_PER_ITER = re.compile(r"\| " + re.escape(V.ITER_MS) + r": +([0-9.eE+-]+) \|")
_LOSS = re.compile(r"\| " + re.escape(V.LOSS) + r": +([-+0-9.eEnaNif]+) \|")

# Bytes read per poll: a log that is far behind (a long job watched late) catches up over a
# few polls instead of stalling the display.
_CHUNK = 8 << 20


class LogTail:
    """Incremental reader of one log file (which may not exist yet)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        self.iteration: Optional[int] = None
        self.train_iters: Optional[int] = None
        self.loss: Optional[float] = None
        self.ms_per_iter: Optional[float] = None
        self.done = False
        self.exiting = ""  # Megatron's own early-exit line

    def poll(self) -> bool:
        """Read what was added since the last call; True when a progress fact changed."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(_CHUNK)
        except OSError:
            return False
        if not data:
            return False
        self.offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        before = (self.iteration, self.done, self.exiting)
        for raw in data[:cut].split(b"\n"):
            self._line(raw.decode("utf-8", "replace").rstrip("\r"))
        return before != (self.iteration, self.done, self.exiting)

    def finish(self) -> None:
        """Read to the end, including a last line without its newline."""
        while self.poll():
            pass
        self.poll()
        if self._partial:
            self._line(self._partial.decode("utf-8", "replace").rstrip("\r"))
            self._partial = b""

    def _line(self, line: str) -> None:
        if " iteration " in line and (m := _ITERATION.search(line)):
            self.iteration, self.train_iters = int(m.group(1)), int(m.group(2))
            if ms := _MS_PER_ITER.search(line):
                self.ms_per_iter = _number(ms.group(1))
            if loss := _LOSS.search(line):
                self.loss = _number(loss.group(1))
            return
        line = V.strip_prefixes(line)
        if line.startswith("[") and (V.DONE_STR in line[:40] or V.EXITING_STR.match(line)):
            if V.DONE_STR in line[:40]:
                self.done = True
            else:
                self.exiting = V.EXITING_STR.match(line).group(0)

    @property
    def time_limited(self) -> bool:
        """Megatron stopped itself at --exit-duration-in-mins (`[exiting program after N
        minutes]`)."""
        return bool(self.exiting) and V.EXIT_DURATION.match(self.exiting.encode()) is not None

    def failure(self) -> str:
        """One line on why training failed, from the whole log; '' when the log does not say."""
        try:
            status = logstream.read_log(self.path).status
        except OSError:
            return ""
        if status.name not in (S.CRASHED, S.DIVERGED):
            return ""
        return status.exception or status.reason

    def run_state(self) -> Optional[str]:
        """The queue's run state for how the whole log ended (status.RUN_STATE), None when
        the log cannot be read."""
        try:
            return S.run_state(logstream.read_log(self.path).status.name)
        except OSError:
            return None


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None
