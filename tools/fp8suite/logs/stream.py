"""Parse a log too large to read whole: block by block, keeping compact per-iteration rows.

`read_streamed(path)` gives what `logparse.parse_log(open(path).read())` gives, while memory
holds one block of the file (`logparse.STREAM_BLOCK`, cut at a line end) plus, per logged
iteration, 8 bytes for its number, 8 for its timestamp and 8 per numeric field (`array`s; a
row that did not log a key is recorded by its index). What the end status needs is kept
apart: the last arguments dump and the log's tail (from a little before the last iteration
line to the end, at most `TAIL_BYTES` from there plus the last `TAIL_BYTES`), and the
exception lines of crashes before the last launch.

Two passes over the file: the first finds the arguments dumps and which of them start a
launch afresh (`logparse.fresh_launches`' rule, read from a window after each dump), the
second parses each such launch. A line longer than a block (a file of NUL bytes, a binary
file) is skipped, never held.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import os
from array import array
from typing import Iterator, Optional

from . import endstatus
from ..megatron import logformats
from . import parse as P
from ..megatron import logvocab as V

# What the status keeps of the end of a launch: from 64 KiB before its last iteration line on,
# up to this much, and the last this much of the file (a burst of output at the end).
TAIL_BYTES = 16 << 20
_BEFORE_LAST_ITERATION = 64 << 10
# Bytes read after an arguments dump to see whether its launch started afresh.
_DUMP_WINDOW = 8 << 20
# Exception lines of earlier crashes kept (a log of millions of warnings must not grow it).
_MAX_EARLIER = 1000


def read_log(path) -> P.ParsedLog:
    """Read a log file and parse it (I/O errors propagate to the caller): a file up to
    `logparse.STREAM_MIN_BYTES` is read whole (`logparse.parse_log`), a larger one is never
    read whole (`read_streamed`): memory holds one block plus 8 bytes per number per
    iteration line."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= P.STREAM_MIN_BYTES:
            return P.parse_log(f.read())
    return read_streamed(path)


def _large_buffers_to_mmap() -> None:
    """Have glibc's malloc serve every buffer of 128 KiB or more by mmap, returned to the
    system when freed. By default glibc raises that threshold as large buffers are freed, so
    the blocks read and the growing row arrays end up on the heap, whose freed holes stay in
    the process: about 90 bytes per logged iteration of the peak resident memory. A no-op
    where the C library is not glibc."""
    global _MMAP_SET
    if _MMAP_SET:
        return
    _MMAP_SET = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 128 << 10)
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_MMAP_SET = False


def read_streamed(path, block: int = 0) -> P.ParsedLog:
    """Parse the log at `path` without reading it whole; never raises on content (I/O errors
    propagate). `block`: bytes per read (default `logparse.STREAM_BLOCK`)."""
    block = block or P.STREAM_BLOCK
    _large_buffers_to_mmap()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            starts = _launch_starts(f, size, block)
            bounds = starts + [size]
            logs = [_read_launch(f, a, b, block) for a, b in zip(bounds, bounds[1:])]
    finally:
        if gc_was_enabled:
            gc.enable()
    log = logs[-1]
    log.earlier_launches = logs[:-1]
    log.size_bytes = size
    return log


def _blocks(f, start: int, end: int, block: int) -> Iterator[tuple[int, bytes]]:
    """(file offset, bytes) of f[start:end] in pieces of about `block` bytes, each ending at a
    line end (LF or CR), an arguments dump never cut in two. A line longer than a block is
    dropped."""
    f.seek(start)
    pos, carry, carry_at = start, b"", start
    while pos < end:
        data = f.read(min(block, end - pos))
        if not data:
            break
        pos += len(data)
        buf = carry + data if carry else data
        at = carry_at
        if pos >= end:
            yield at, buf
            return
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
        dump = buf.rfind(V.ARGS_BEGIN, 0, cut)
        if dump >= 0 and buf.find(V.ARGS_END, dump, cut) < 0:
            line = buf.rfind(b"\n", 0, dump) + 1
            if line > 0:
                cut = line  # the dump goes whole into the next block
            elif len(buf) < block + (1 << 20):  # a dump of up to 1 MiB is read whole
                carry, carry_at = buf, at
                continue
        if cut == 0:
            # No line end in a whole block: an overlong line (or NUL bytes), skipped.
            carry, carry_at = b"", pos
            continue
        yield at, buf[:cut]
        carry, carry_at = buf[cut:], at + cut


def _launch_starts(f, size: int, block: int) -> list:
    """File offsets where a launch starts afresh: 0 and each later arguments dump that
    `logparse.starts_afresh` accepts (read from a window after the dump)."""
    dumps = []
    for at, buf in _blocks(f, 0, size, block):
        dumps.extend(at + d for d in P._dump_offsets(buf, 0, len(buf)))
    starts = [0]
    for k, d in enumerate(dumps[1:], 1):
        stop = dumps[k + 1] if k + 1 < len(dumps) else size
        f.seek(d)
        window = f.read(min(stop - d, _DUMP_WINDOW))
        window = window.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if P.starts_afresh(window, 0, len(window)):
            starts.append(d)
    return starts


class _CompactColumns(P._Columns):
    """`logparse._Columns` with compact storage: iterations as `array('q')`, timestamps as
    POSIX seconds in `array('d')` (NaN: none), numeric columns as `array('d')` with the rows
    that did not log a key listed in `missing[key]` (NaN there)."""

    def __init__(self):
        super().__init__()
        self.iterations = array("q")
        self.timestamps = array("d")
        self.missing: dict = {}
        self._day: dict = {}  # "2026-11-23" -> POSIX seconds of its midnight (local time)

    def set_missing(self, key: str, i: int) -> None:
        self.columns[key][i] = math.nan
        self.missing.setdefault(key, array("q")).append(i)

    def _seconds(self, ts) -> float:
        """A timestamp's POSIX seconds (local time, as `logparse._seconds`), NaN when none;
        the date part is converted once per day."""
        if not isinstance(ts, bytes) or len(ts) < 19:
            return math.nan
        day = self._day.get(ts[:10])
        if day is None:
            day = P._seconds(ts[:10] + b" 00:00:00")
            self._day[ts[:10]] = day = math.nan if day is None else day
        try:
            return day + int(ts[11:13]) * 3600 + int(ts[14:16]) * 60 + float(ts[17:])
        except ValueError:
            value = P._seconds(ts)
            return math.nan if value is None else value

    def add(self, parts: list) -> None:
        columns = self.columns
        for part in parts:
            n = len(part.iterations)
            if not n:
                continue
            base = len(self.iterations)
            for k in part.columns:
                if k not in columns:
                    columns[k] = array("d", [math.nan]) * base
                    if base:
                        self.missing[k] = array("q", range(base))
            if part.launch != self._launch:
                if base:
                    self.new_launch.append(base)
                self._launch = part.launch
            self.iterations.extend(part.iterations)
            self.timestamps.extend(map(self._seconds, part.timestamps))
            for k, out in columns.items():
                col = part.columns.get(k)
                if col is None:
                    out.extend(array("d", [math.nan]) * n)
                    self.missing.setdefault(k, array("q")).extend(range(base, base + n))
                    continue
                if k in part.raw:
                    col = P._to_floats(col)
                try:
                    out.extend(col)
                except TypeError:  # a None among the values (extend kept those before it)
                    del out[base:]
                    for i, v in enumerate(col):
                        if v is None:
                            out.append(math.nan)
                            self.missing.setdefault(k, array("q")).append(base + i)
                        else:
                            out.append(v)


class _Tail:
    """The end of a launch's text as the status reads it: from `_BEFORE_LAST_ITERATION`
    before its last iteration line on (at most TAIL_BYTES of that) and the last TAIL_BYTES."""

    def __init__(self):
        self.head = b""  # from just before the last iteration line on, at most TAIL_BYTES
        self.rest: list = []  # what followed, in blocks; trimmed to its last TAIL_BYTES
        self.rest_len = 0
        self.trimmed = False

    def add(self, buf: bytes) -> None:
        found = _last_anchor(buf)
        if found is not None:
            start = max(0, found - _BEFORE_LAST_ITERATION)
            before = self.text()[-(_BEFORE_LAST_ITERATION - found):] if start == 0 and found \
                else b""
            text = before + buf[start:]
            self.head, rest = text[:TAIL_BYTES], text[TAIL_BYTES:]
            self.rest, self.rest_len, self.trimmed = ([rest] if rest else []), len(rest), False
            return
        if len(self.head) < TAIL_BYTES and not self.rest_len:
            room = TAIL_BYTES - len(self.head)
            self.head += buf[:room]
            buf = buf[room:]
        if buf:
            self.rest.append(buf)
            self.rest_len += len(buf)
            while self.rest_len - len(self.rest[0]) >= TAIL_BYTES:
                self.rest_len -= len(self.rest.pop(0))
                self.trimmed = True

    def text(self) -> bytes:
        rest = b"".join(self.rest)
        if self.rest_len > TAIL_BYTES:
            rest, self.trimmed = rest[-TAIL_BYTES:], True
        return self.head + rest


def _last_anchor(buf: bytes) -> Optional[int]:
    """Offset of the last ` iteration N/M |` anchor in buf, None when there is none."""
    at = buf.rfind(b" iteration ")
    while at >= 0:
        if V.ANCHOR.match(buf, at):
            return at
        at = buf.rfind(b" iteration ", 0, at)  # "elapsed time per iteration (ms)" etc.
    return None


def _read_launch(f, start: int, end: int, block: int) -> P.ParsedLog:
    """One launch (f[start:end]) parsed block by block."""
    rows = _CompactColumns()
    validations, loads, saves, backends = [], [], [], {}
    memory_mb, memory_gb = {}, {}
    garbled = 0
    dumps = 0  # arguments dumps seen
    cuts = 0  # of those, the ones after the launch's first byte (each starts a segment)
    last_dump: Optional[bytes] = None  # the last dump's text (for its arguments)
    earlier: list = []  # (dump count before it, exception) of worker crashes
    tail = _Tail()
    head = b""
    nemo = None
    offset = 0  # in the launch's text as read (after line-end and NeMo rewriting)
    for _, buf in _blocks(f, start, end, block):
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if nemo is None:
            head = buf[:1 << 16]
            nemo = logformats.detect(buf, {}) is logformats.NEMO2
        if nemo:
            buf = logformats.to_megatron(buf)
        scan = P._read_range(buf, 0, len(buf))
        # `_scan_range` counts the dumps after a block's start; a launch counts every dump
        # after the launch's start.
        before = cuts + (1 if scan.dumps and scan.dumps[0] == 0 and offset > 0 else 0)
        for part in scan.parts:
            part.launch += before
        cuts += sum(1 for d in scan.dumps if offset + d > 0)
        rows.add(scan.parts)
        garbled += scan.garbled
        validations += scan.validations
        loads += scan.checkpoint_loads
        saves += scan.checkpoint_saves
        for key in P._attention_backends(buf):
            backends.setdefault(key, None)
        for peak, found in ((memory_mb, scan.memory_mb), (memory_gb, scan.memory_gb)):
            for k, v in found.items():
                if v > peak.get(k, -math.inf):
                    peak[k] = v
        for tb in endstatus._tracebacks(buf, 0):
            if tb.exception and not tb.launcher and len(earlier) < _MAX_EARLIER:
                earlier.append((dumps + sum(1 for d in scan.dumps if d <= tb.at), tb.exception))
        if scan.dumps:
            d = scan.dumps[-1]
            stop = buf.find(b"\n", buf.find(V.ARGS_END, d) + 1)
            last_dump = buf[d:stop if stop > 0 else min(len(buf), d + (1 << 20))]
            dumps += len(scan.dumps)
        tail.add(buf)
        offset += len(buf)
    # The status reads the last dump and the tail as one text: the launch's last segment.
    text = tail.text()
    if last_dump is not None and text.find(last_dump) < 0:
        text = last_dump + b"\n" + text
    seg_start = text.find(last_dump) if last_dump is not None else 0
    args = P._parse_args(last_dump, 0) if last_dump is not None else {}
    era = logformats.detect(head, args)
    args = logformats.in_core_words(args)
    interval = V.arg_int(args, "log_interval")
    P._drop_skipped(rows, interval)
    steps, segments, repeated = P._build_steps(rows, interval)
    planned = P._planned_iterations(text, args)
    status, _ = endstatus.find_status(text, max(seg_start, 0), steps, segments, planned, args)
    status = P.placed_status(status, era, head)
    args, precision_line = P.stated_precision(args, era, head)
    if tail.trimmed:
        status.notes.append("the log's middle after its last iteration line was too long to "
                            f"keep whole: its first and last {TAIL_BYTES >> 20} MiB were read")
    return P.ParsedLog(
        size_bytes=end - start,
        steps=steps,
        validations=validations,
        memory_peak_mb=memory_mb or memory_gb,
        args=args,
        args_dumps=dumps,
        status=status,
        restarts=max(len(segments) - 1, dumps - 1, 0),
        repeated_iterations=repeated,
        garbled_lines=garbled,
        earlier_failures=[e for n, e in earlier if n < dumps],
        segments=segments,
        checkpoint_loads=loads,
        checkpoint_saves=saves,
        attention_backends=list(backends),
        log_format=era.name,
        skipped_iterations=rows.skipped,
        precision_line=precision_line,
        args_cut=last_dump is not None and P.dump_cut(last_dump, 0),
    )
