"""Follow a growing Megatron log: the last iteration, how it ended, why it failed.

The run queue polls this every fraction of a second while training writes the log, so it only
reads the bytes added since the last poll and keeps a few facts, never the log itself:

* the last iteration line, ` [date] iteration  120/ 1000 | ... | elapsed time per iteration
  (ms): 650.4 | ... | lm loss: 3.412E+00 | ...` (Megatron prints it from the last rank);
* the end markers: `[after training is done]`, `[exiting program after N minutes]`
  (--exit-duration-in-mins) and `[exiting program at iteration N]` (--exit-interval).

Why a run failed is read once, at the end, by the report's parser (fp8suite.logs.parse and
fp8suite.logs.endstatus), so the queue's status file and the report describe a crash in the same
words; `run_state()` gives the queue's state for the log's status (fp8suite.common.status). The words
of the log (anchor, keys, markers, prefixes) come from fp8suite.megatron.logvocab.

Lines end at `\n` or `\r` (tqdm-style progress redraws a line with `\r`), and a line without
an end is kept only up to _MAX_LINE bytes, so memory stays bounded whatever the log holds. A log
that shrank or was replaced (Slurm truncating the output of a requeued job, a file moved away)
is read again from its start (`restarts` counts them), so its facts are the new file's.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Optional

from . import stream as logstream
from ..megatron import logvocab as V
from ..common import status as S

_ITERATION = re.compile(V.ANCHOR.pattern.decode())
_MS_PER_ITER = re.compile(r"\| " + re.escape(V.ITER_MS) + r": +([0-9.eE+-]+) \|")
_LOSS = re.compile(r"\| " + re.escape(V.LOSS) + r": +([-+0-9.eEnaNif]+) \|")

# Bytes read per poll: a log that is far behind (a long job watched late) catches up over a
# few polls instead of stalling the display.
_CHUNK = 8 << 20
# The most of one line kept while its end has not come: an iteration line is ~400 bytes.
_MAX_LINE = 64 << 10
_LINE_END = re.compile(rb"\r\n|\r|\n")


class LogTail:
    """Incremental reader of one log file (which may not exist yet)."""

    def __init__(self, path: Path, own: Optional[str] = None):
        self.path = Path(path)
        self.own = own
        """The prefix of the launch script's own notes ("<run>: "); other lines are training's."""
        self.restarts = 0
        """How often the file was found shorter than read so far, or replaced, and read again."""
        self._reset()
        self._file_id: Optional[tuple[int, int]] = None

    def _reset(self) -> None:
        self.offset = 0
        self._partial = b""
        self.iteration: Optional[int] = None
        self.train_iters: Optional[int] = None
        self.loss: Optional[float] = None
        self.ms_per_iter: Optional[float] = None
        self.done = False
        self.exiting = ""  # Megatron's own early-exit line
        self.output_lines = 0
        """Lines read so far that are training's, not the launch script's notes (`own`)."""

    def poll(self) -> bool:
        """Read what was added since the last call (at most one chunk); True when a progress
        fact changed."""
        before = (self.iteration, self.done, self.exiting, self.restarts)
        self._read()
        return before != (self.iteration, self.done, self.exiting, self.restarts)

    def _read(self) -> int:
        """Read one chunk of what was added; the number of bytes read."""
        try:
            # O_NONBLOCK: a FIFO in the log's place is skipped, never waited on.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return 0
            file_id = (info.st_dev, info.st_ino)
            if self._file_id not in (None, file_id) or info.st_size < self.offset:
                self._reset()
                self.restarts += 1
            self._file_id = file_id
            os.lseek(fd, self.offset, os.SEEK_SET)
            data = os.read(fd, _CHUNK)
        except OSError:
            return 0
        finally:
            os.close(fd)
        if not data:
            return 0
        self.offset += len(data)
        parts = _LINE_END.split(self._partial + data)
        self._partial = parts.pop()[:_MAX_LINE]
        for raw in parts:
            self._line(raw.decode("utf-8", "replace"))
        return len(data)

    def finish(self) -> None:
        """Read to the end of the file, including a last line without its end."""
        while self._read():
            pass
        if self._partial:
            self._line(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def _line(self, line: str) -> None:
        if line.strip() and not (self.own and line.startswith(self.own)):
            self.output_lines += 1
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
        if status.exception and status.where:
            return f"{status.exception} {status.where}"  # the node a task failed on
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
