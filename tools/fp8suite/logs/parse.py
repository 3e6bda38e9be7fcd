"""Parse one raw Megatron-Core training log (bytes) into step records, segments and a status.

What a Megatron log holds (the words are declared in `logvocab`; megatron-core 0.19):

* one line per logged iteration, ` | `-separated `key: value` fields, printed by the last rank:
  ` [2026-11-23 04:01:35.321753] iteration        1/      30 | consumed samples:            8 |
  elapsed time per iteration (ms): 6712.4 | ... | lm loss: 1.257090E+01 | ... |`
* ` validation loss at iteration 20 | lm loss value: ... | lm loss PPL: ... |`,
* `[Rank 0] (after 1 iterations) memory (MB) | ... | max allocated: ... |` (Megatron-Bridge:
  `memory (GB) | mem-max-allocated-gigabytes: ... |`),
* the arguments dump between `---- arguments ----` and `---- end of arguments ----`,
* how it ended (read by `endstatus`).

Any line may carry launcher prefixes (`[default3]:`, `[rank3]: `, srun's ` 5: `, stacked);
CR-only and CRLF line ends are line ends.

Design, for speed (hundreds of MB per log) and robustness (a log never stops a report):

* The log is read as bytes and decoded only in the small pieces that become text
  (`errors="replace"`), so non-UTF-8 bytes cannot raise.
* Iteration lines are found by compiled regexes over the whole buffer, never a Python loop over
  lines. A layout (field order) gets one specific pattern anchored at the line start: 0.19's
  is compiled at import, any other is learned from the log's first whole iteration lines. The
  buffer is cut into ~1 MB chunks at line ends (and at each arguments dump, where a new launch
  begins); in each, the layout's pattern must account for every ` iteration N/M |` anchor.
  Where it does (nearly always), the rows become float columns at once. Where it does not, only
  the few kB around the lines left over are walked anchor by anchor, and those lines go to a
  general `key: value` parser. The cyclic GC is paused meanwhile.
* A large log is read by two processes, each over its own range (every line kind: iterations,
  dumps, validation, memory, checkpoints); the forked one starts where a chunk starts, so the
  result is exactly one process's, and hands its rows back as arrays through shared memory.
  `tests/bench/bench_report.py` measures the rate.
* Open grammar: a line whose fields are whole keeps its numeric fields; a derivative's
  non-numeric field (`elapsed time: 1d 6h 54m 11s`) is ignored. A line counts as garbled only
  when another line's text is glued into it: text before its anchor, a field that is no
  `key: value`, a value with brackets or a second key, a key twice, a key that cannot follow the
  previous one in Megatron's order. A garbled line is skipped and counted, never half-parsed.
* Values `nan`, `inf`, `NaN`, ... are kept as float nan/inf and counted per key.
* Launches within one log are segments: a new arguments dump or an iteration number that goes
  back starts one. The last occurrence of each iteration is kept; every segment's span and the
  downtime between segments are kept for the runtime.
"""

from __future__ import annotations

import gc
import itertools
import math
import mmap
import operator
import os
import pickle
import re
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from ..megatron import logformats
from ..megatron import logvocab as V
from ..common import status as S
from ..megatron.logvocab import FAST_KEYS, arg_int
from .endstatus import Status, find_status, last_iteration_before

_CHUNK = 1 << 20  # bytes per chunk of the iteration scan; only mismatching chunks go slow


# --- records -------------------------------------------------------------------------------


class Steps:
    """Long-format step records, stored column-wise: row i is iteration `iterations[i]`.

    Every numeric `key: value` field of the iteration lines is kept under its verbatim Megatron
    key: `column(key)` gives one float per row (nan/inf kept as floats), `None` where a row did
    not log that key (a mixed log, or Megatron leaving out a NaN loss), all `None` for a key
    never logged.
    """

    def __init__(self, iterations: Optional[list] = None, timestamps: Optional[list] = None,
                 columns: Optional[dict] = None):
        self.iterations: list = iterations or []  # ints, ascending, unique
        self._timestamps: list = timestamps or []  # b"2026-11-23 04:01:35.321753" or None
        # key -> floats; columns the parse itself does not read stay as the captured bytes
        # until first asked for (`column` converts them once).
        self._columns: dict = columns or {}
        self._raw: set = set()
        # Compact (streamed) columns: key -> row indices that did not log the key (NaN there).
        self._missing: dict = {}
        # First iteration of the log and of each restart (where a warm-up starts again).
        self.segment_starts: list = self.iterations[:1]

    def __len__(self) -> int:
        return len(self.iterations)

    def keys(self) -> list:
        """The numeric keys logged, in first-seen order."""
        return list(self._columns)

    def column(self, key: str) -> list:
        """One float or None per row for `key` (a streamed log's column without missing rows
        is an `array('d')`: indexing, iteration, slices and sums work alike)."""
        if key in self._raw:
            self._columns[key] = _to_floats(self._columns[key])
            self._raw.discard(key)
        missing = self._missing.get(key)
        if missing:  # a compact column with rows that did not log the key: None there
            values = self._columns[key].tolist()
            for i in missing:
                values[i] = None
            return values
        return self._columns.get(key) or [None] * len(self.iterations)

    @property
    def fields(self) -> dict:
        return {k: self.column(k) for k in list(self._columns)}

    def nonfinite(self) -> dict:
        """{key: count of nan/inf values} for every key that has any."""
        return {k: n for k in list(self._columns) if (n := _count_nonfinite(self.column(k)))}

    def timestamp(self, i: int) -> Optional[str]:
        """The iteration line's timestamp text, or None (older Megatron prints none)."""
        ts = self._timestamps[i]
        if isinstance(ts, float):  # compact: POSIX seconds of a naive local timestamp
            return datetime.fromtimestamp(ts).isoformat(" ") if math.isfinite(ts) else None
        return ts.decode("ascii", "replace") if isinstance(ts, bytes) else ts


@dataclass
class Segment:
    """One launch's stretch of iteration lines (a log holds several after restarts).

    `span_s`: wall-clock from the start of its first logged iteration to its last iteration
    line (timestamps), or the sum of its iteration times where timestamps are missing or the
    clock stepped back; `downtime_before_s`: from the previous segment's last line to this
    segment's start, None for the first segment or when unknown.
    """

    first_iteration: int
    last_iteration: int
    rows: int
    span_s: Optional[float] = None
    span_from: str = ""  # "timestamps" or "sum of iteration times"
    downtime_before_s: Optional[float] = None
    # Wall-clock (POSIX seconds) of its start and of its last iteration line, None when the
    # lines carry no timestamp: what the downtime to a neighbouring segment is measured from.
    start_s: Optional[float] = None
    end_s: Optional[float] = None


@dataclass
class Validation:
    iteration: int
    split: str  # "validation" (periodic evaluation or final), "test", or a named set
    fields: dict  # verbatim keys, e.g. {"lm loss value": 0.058, "lm loss PPL": 1.06}


@dataclass
class ParsedLog:
    size_bytes: int
    steps: Steps
    validations: list  # [Validation]
    memory_peak_mb: dict  # {"max allocated": MiB, "max reserved": MiB, ...} over lines/ranks
    args: dict  # the last arguments dump, verbatim name -> value text
    args_dumps: int
    status: Status
    restarts: int = 0  # launches after the first (iteration went back or arguments again)
    repeated_iterations: int = 0  # rows dropped because a later occurrence replaced them
    garbled_lines: int = 0  # iteration lines skipped because they were not whole
    earlier_failures: list = field(default_factory=list)  # crashes before the last restart
    segments: list = field(default_factory=list)  # [Segment] in file order
    # Checkpoints, in file order: [(iteration, directory as printed)] of every
    # `successfully loaded checkpoint ... at iteration N` and `successfully saved checkpoint
    # from iteration N to DIR` line (`runs` chains a resumed launch to the log that saved).
    checkpoint_loads: list = field(default_factory=list)
    checkpoint_saves: list = field(default_factory=list)
    # Transformer Engine's attention backends as it named them (NVTE_DEBUG=1), distinct, in file
    # order: [(backend, detail)], e.g. [("FusedAttention", "2")]; [] when the log does not say.
    attention_backends: list = field(default_factory=list)
    # Where the log comes from (`logformats`): "megatron-core", "Megatron-LM 2022-2023",
    # "NeMo 2.0 (Lightning)", ..., "unknown".
    log_format: str = ""
    # Earlier launches in the same file that started afresh (no checkpoint loaded), each parsed
    # on its own, oldest first: attempts of the run, never merged into this log's steps.
    earlier_launches: list = field(default_factory=list)
    # Iterations the fp16 loss scaler skipped (`number of skipped iterations`): no loss and no
    # time sample for them.
    skipped_iterations: int = 0
    # The last arguments dump has no end line (the log was cut inside it): arguments it lacks
    # are unknown, not absent.
    args_cut: bool = False
    # The line that states the precision where the log has no arguments dump: NeMo 2.0's
    # `Using FP8 (...)` (its settings are in `args`, in megatron-core's names); '' otherwise.
    precision_line: str = ""

    @property
    def nonfinite(self) -> dict:
        """{key: count of nan/inf values kept} (Steps.nonfinite)."""
        return self.steps.nonfinite()


# --- entry points --------------------------------------------------------------------------


# `logstream.read_log` reads files up to this size whole (`parse_log`) and streams larger
# ones in blocks of `STREAM_BLOCK` bytes, keeping only compact per-iteration rows.
STREAM_MIN_BYTES = 64 << 20
STREAM_BLOCK = 8 << 20


def read_log(path) -> ParsedLog:
    """Read a log file whole and parse it (I/O errors propagate to the caller). For a file
    that may be large use `logstream.read_log`, which never reads it whole."""
    with open(path, "rb") as f:
        return parse_log(f.read())


def parse_log(data: bytes) -> ParsedLog:
    """Parse a whole Megatron log. Never raises on content: every input gets a status."""
    # Millions of small tuples would trigger the cyclic GC over and over (it roughly halves
    # the parse rate on large logs); nothing here creates cycles, so pause it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(data)
    finally:
        if gc_was_enabled:
            gc.enable()


def parse_launch(data: bytes) -> ParsedLog:
    """Parse a log as one launch: every arguments dump and restart in it is a segment of one
    run, the last occurrence of each iteration kept (what `parse_log` does for each launch
    that started afresh). Never raises on content."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_launch(_in_megatron_lines(data))
    finally:
        if gc_was_enabled:
            gc.enable()


def _in_megatron_lines(buf: bytes) -> bytes:
    """CRLF and CR-only line ends as LF (two C-speed passes), a NeMo 2.0 log's step and end
    lines in megatron-core's words (`logformats.to_megatron`)."""
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if logformats.detect(buf, {}) is logformats.NEMO2:
        buf = logformats.to_megatron(buf)
    return buf


def _parse(buf: bytes) -> ParsedLog:
    buf = _in_megatron_lines(buf)
    starts = fresh_launches(buf)
    if len(starts) > 1:
        # Launches that share one file: each fresh one is a launch of its own (an attempt),
        # never merged with the others; the last is the log's.
        bounds = starts + [len(buf)]
        earlier = [_parse_launch(buf[a:b]) for a, b in zip(bounds, bounds[1:-1])]
        log = _parse_launch(buf[starts[-1]:])
        log.earlier_launches = earlier
        log.size_bytes = len(buf)
        return log
    return _parse_launch(buf)


def _parse_launch(buf: bytes) -> ParsedLog:
    scan, rows = _read_lines(buf)
    dumps = scan.dumps
    args = _parse_args(buf, dumps[-1]) if dumps else {}
    era = logformats.detect(buf, args)
    args = logformats.in_core_words(args)
    interval = arg_int(args, "log_interval")
    _drop_skipped(rows, interval)
    steps, segments, repeated = _build_steps(rows, interval)
    planned = _planned_iterations(buf, args)
    seg_start = dumps[-1] if dumps else 0
    status, earlier = find_status(buf, seg_start, steps, segments, planned, args)
    status = placed_status(status, era, buf)
    args, precision_line = stated_precision(args, era, buf)
    return ParsedLog(
        size_bytes=len(buf),
        steps=steps,
        validations=scan.validations,
        memory_peak_mb=scan.memory_mb or scan.memory_gb,
        args=args,
        args_dumps=len(dumps),
        status=status,
        restarts=max(len(segments) - 1, len(dumps) - 1, 0),
        repeated_iterations=repeated,
        garbled_lines=scan.garbled,
        earlier_failures=earlier,
        segments=segments,
        checkpoint_loads=scan.checkpoint_loads,
        checkpoint_saves=scan.checkpoint_saves,
        attention_backends=_attention_backends(buf),
        log_format=era.name,
        skipped_iterations=rows.skipped,
        precision_line=precision_line,
        args_cut=bool(dumps) and dump_cut(buf, dumps[-1]),
    )


def stated_precision(args: dict, era, head: bytes) -> tuple[dict, str]:
    """(args, line): a NeMo 2.0 log without an arguments dump gets the FP8 settings of its
    `Using FP8 (...)` line as arguments in megatron-core's names (`logformats.nemo_fp8_args`),
    and that line; any other log its arguments as they are and ''."""
    if args or era is not logformats.NEMO2:
        return args, ""
    line = logformats.nemo_fp8_line(head)
    return logformats.nemo_fp8_args(line), line


# The start of placed_status's reason for a file in which nothing is Megatron's.
NOT_RECOGNISED = "format not recognised: looks like "


def recognised(log: ParsedLog) -> bool:
    """Whether the log holds any Megatron training-log content: an arguments dump, an
    iteration line, a launcher's or Megatron's start-up or end lines (a crash at start-up
    included). False for a README, a YAML file, JSON, another trainer's log or binary data,
    which placed_status calls "format not recognised"."""
    return not (log.status.name == S.UNREADABLE
                and log.status.reason.startswith(NOT_RECOGNISED))


def placed_status(status: Status, era, head: bytes) -> Status:
    """The status as the log's era backs it: an unplaceable log with nothing recognised says
    so ("format not recognised: looks like X"), and an era that prints no end marker
    (Megatron-LM v1.x) completed when its last iteration line reached the planned count."""
    if era is logformats.UNKNOWN and status.name == S.TRUNCATED \
            and status.last_iteration is None and status.reason == "no Megatron output recognised":
        return Status(S.UNREADABLE, NOT_RECOGNISED + logformats.looks_like(head or b"\0"))
    if logformats.ends_without_marker(era) and status.name == S.TRUNCATED \
            and status.last_iteration is not None and status.planned_iterations \
            and status.last_iteration >= status.planned_iterations:
        return Status(S.COMPLETED, f"completed {status.last_iteration}/"
                      f"{status.planned_iterations} ({era.name} prints no end marker: its last "
                      "iteration was reached)", status.last_iteration,
                      status.planned_iterations, notes=status.notes)
    return status


def fresh_launches(buf: bytes) -> list:
    """Line offsets of the launches in one file that start afresh: the start (0) and every
    arguments dump after the first whose first iteration line is within its first log interval (iteration 1
    with --log-interval 1) with no `successfully loaded checkpoint` between the dump and that
    line. A launch that loaded a checkpoint continues the one before it (a resume) and is not
    listed; nor is a launch with no iteration line."""
    dumps = _dump_offsets(buf, 0, len(buf))
    out = [0]
    for k, d in enumerate(dumps):
        if k == 0:  # the first launch: from the start of the file, its dump included
            continue
        stop = dumps[k + 1] if k + 1 < len(dumps) else len(buf)
        if starts_afresh(buf, d, stop):
            out.append(d)
    return out


def starts_afresh(buf: bytes, dump: int, stop: int) -> bool:
    """Whether the launch whose arguments dump starts at line offset `dump` (its text up to
    `stop`) started afresh: its first iteration line is within its first log interval and no
    checkpoint was loaded before it (`fresh_launches`)."""
    first = V.ANCHOR.search(buf, dump, stop)
    if first is None or buf.find(V.CKPT_LOADED_LITERAL, dump, first.start()) >= 0:
        return False
    interval = arg_int(_parse_args(buf, dump), "log_interval") or 1
    return int(first.group(1)) <= max(interval, 1)


def _drop_skipped(rows: "_Columns", log_interval: Optional[int]) -> None:
    """Skipped steps are no steps: on a line whose `number of skipped iterations` covers all
    the iterations it logs (the fp16 loss scaler skipped them: an overflow), the loss and the
    iteration time are no samples (None). megatron-core >= 0.17 prints `lm loss:
    0.000000E+00` on such a line, older releases leave the loss out. Counts them in
    `rows.skipped`."""
    col = rows.columns.get(V.SKIPPED_ITERS)
    rows.skipped = 0
    if col is None:
        return
    if V.SKIPPED_ITERS in rows.raw:
        rows.columns[V.SKIPPED_ITERS] = col = _to_floats(col)
        rows.raw.discard(V.SKIPPED_ITERS)
    interval = log_interval if log_interval and log_interval > 0 else 1
    its = rows.iterations
    for i, n in enumerate(col):
        if n is None or n <= 0:
            continue
        covered = its[i] - its[i - 1] if i and its[i] > its[i - 1] else interval
        rows.skipped += int(min(n, covered))
        if n >= covered:
            for key in (V.LOSS, V.ITER_MS, V.GRAD_NORM):
                if key in rows.columns:
                    rows.set_missing(key, i)


def _attention_backends(buf: bytes) -> list:
    """Transformer Engine's `Running with ... backend` lines: distinct (backend, detail) pairs
    in file order (detail: FusedAttention's sub-backend or FlashAttention's version, "" when
    none). One substring search where the log has none."""
    if V.ATTENTION_BACKEND_LITERAL not in buf:
        return []
    found = {}
    for m in V.ATTENTION_BACKEND.finditer(buf):
        key = (m.group(1).decode(), (m.group(2) or b"").decode("utf-8", "replace").strip())
        found.setdefault(key, None)
    return list(found)


# --- iteration lines -----------------------------------------------------------------------


class _Layout:
    """One field order of iteration lines and the specific regex that matches it whole.

    The pattern starts at the timestamp (or the anchor), so launcher prefixes before it do not
    matter. Keys in `text_keys` take any non-numeric value and are not captured.
    """

    def __init__(self, keys: tuple, timestamped: bool, text_keys: frozenset = frozenset()):
        self.keys = keys  # every field, in order
        self.text_keys = text_keys
        self.numeric = tuple(k for k in keys if k not in text_keys)
        self.timestamped = timestamped
        # The timestamp as one character class and the "/ planned" count uncaptured (only
        # the last line's is needed) keep the per-line work down.
        head = (rb"\[(" + V.TIMESTAMP_LOOSE + rb")\] iteration +(\d+)/ *\d+ \|") if timestamped \
            else rb" iteration +(\d+)/ *\d+ \|"
        body = b"".join(
            b" " + re.escape(k.encode()) + (b": [^|\\n\\[\\]]*? \\|" if k in text_keys
                                            else b": +(" + V.LOOSE_NUM + b") \\|")
            for k in keys)
        self.regex = re.compile(head + body + rb"[ \t]*$", re.M)  # CRs are gone by now

    @property
    def ident(self) -> tuple:
        return self.keys, self.timestamped, self.text_keys


_LAYOUT_019 = _Layout(FAST_KEYS, True)


def _choose_layout(buf: bytes, start: int = 0, end: int = -1) -> _Layout:
    """The layout most of the first whole iteration lines share (up to 8 lines; the first
    one's on a tie; 0.19's when there is none). One line alone can mislead: a line cut by
    another rank's output right after one of its `|` reads as whole, with fewer keys."""
    votes: dict = {}
    for n, m in enumerate(V.ANCHOR.finditer(buf, start, len(buf) if end < 0 else end)):
        row = _parse_general(buf, m)
        if row is not None:
            ident = (row[4], row[2] is not None, frozenset(row[5]))
            votes[ident] = votes.get(ident, 0) + 1
            if sum(votes.values()) >= 8:
                break
        if n > 100:
            break
    if not votes:
        return _LAYOUT_019
    keys, timestamped, text_keys = max(votes, key=votes.get)  # the first-seen on a tie
    if keys == FAST_KEYS and timestamped and not text_keys:
        return _LAYOUT_019
    return _Layout(keys, timestamped, text_keys)


@dataclass
class _Part:
    """Consecutive iteration rows of one chunk, already as columns (so the millions of row
    tuples of a large log never live at the same time)."""

    iterations: list
    timestamps: list
    columns: dict  # key -> [float | None]
    bad: int = 0  # rows dropped because float() rejected a captured token ("1.2.3")
    launch: int = 0  # arguments dumps before this part (a new dump = a new launch)
    raw: set = field(default_factory=set)  # keys whose column holds captured bytes


# Keys the parse reads itself (segments, divergence): converted at once, and a row with a token
# float() rejects ("1.2.3") is dropped as garbled. Other keys convert when first asked for.
_EAGER = frozenset((V.ITER_MS, V.LOSS, V.GRAD_NORM, V.LOSS_SCALE, V.NAN_ITERS))


def _to_floats(col) -> list:
    """Captured bytes (or floats, or None) -> floats, None for what float() rejects."""
    try:
        return list(map(float, col))
    except (TypeError, ValueError):
        out = []
        for v in col:
            try:
                out.append(float(v) if v is not None else None)
            except ValueError:
                out.append(None)
        return out


def _fast_part(layout: _Layout, rows: list) -> _Part:
    cols = list(zip(*rows))
    off = 1 if layout.timestamped else 0
    iterations = list(map(int, cols[off]))
    timestamps = list(cols[0]) if off else [None] * len(rows)
    columns, bad = {}, set()
    raw_keys = set()
    for j, k in enumerate(layout.numeric):
        raw = cols[off + 1 + j]
        if k not in _EAGER:
            columns[k] = raw
            raw_keys.add(k)
            continue
        try:
            # float() takes the bytes as captured; it is also the check of the loose pattern.
            columns[k] = list(map(float, raw))
        except ValueError:
            converted = []
            for i, v in enumerate(raw):
                try:
                    converted.append(float(v))
                except ValueError:
                    converted.append(None)
                    bad.add(i)
            columns[k] = converted
    if bad:
        keep = [i for i in range(len(rows)) if i not in bad]
        iterations = [iterations[i] for i in keep]
        timestamps = [timestamps[i] for i in keep]
        columns = {k: [col[i] for i in keep] for k, col in columns.items()}
    part = _Part(iterations, timestamps, columns, len(bad))
    part.raw = raw_keys
    return part


def _slow_part(rows: list) -> _Part:
    keys: list = []
    for r in rows:
        keys.extend(k for k in r[3] if k not in keys)
    return _Part([r[0] for r in rows], [r[2] for r in rows],
                 {k: [r[3].get(k) for r in rows] for k in keys})


def _dump_offsets(buf: bytes, lo: int, hi: int) -> list:
    """Line-start offsets of every arguments dump in buf[lo:hi] (each starts a launch)."""
    out, pos = [], buf.find(V.ARGS_BEGIN, lo, hi)
    while pos >= 0:
        out.append(buf.rfind(b"\n", 0, pos) + 1)
        pos = buf.find(V.ARGS_BEGIN, pos + len(V.ARGS_BEGIN), hi)
    return out


# --- one or two processes ------------------------------------------------------------------

# Logs larger than this are read by two processes (the parent and a fork), each over its own
# range: the line scans are most of the parse time, and the report's machines have two or
# more cores.
PARALLEL_MIN_BYTES = 16 << 20

# The forked child's share of the log. Both processes read their range at the same rate; the
# child then packs its rows for the parent while the parent gathers its own into columns,
# about the same work, so each takes half and both finish about together (measured with
# tests/bench/bench_report.py). The child's range starts at the chunk that holds this point.
_CHILD_SHARE = 0.5


@dataclass
class _Scan:
    """What one process reads from its range of the log (its lines only)."""

    dumps: list  # line offsets of the arguments dumps
    parts: list  # [_Part] in file order; `launch` counts the range's own dumps
    garbled: int
    validations: list  # [Validation] in file order
    memory_mb: dict  # peaks (MiB) from `memory (MB)` lines
    memory_gb: dict  # peaks (MiB) from `memory (GB)` lines; read only where no MB line was
    checkpoint_loads: list  # [(iteration, directory)] in file order (ParsedLog's)
    checkpoint_saves: list


def _read_range(buf: bytes, lo: int, hi: int, dumps: Optional[list] = None) -> _Scan:
    """Every line kind the parse reads, over buf[lo:hi] (lo, hi at line starts); `dumps`:
    the range's arguments dumps where already found."""
    dumps = _dump_offsets(buf, lo, hi) if dumps is None else dumps
    parts, garbled = _scan_range(buf, dumps, lo, hi)
    return _Scan(dumps, parts, garbled, _parse_validations(buf, lo, hi),
                 *_parse_memory(buf, lo, hi),
                 _checkpoints(buf, V.CKPT_LOADED_LITERAL, V.CKPT_LOADED, 2, 1, lo, hi),
                 _checkpoints(buf, V.SAVED, V.CKPT_SAVED, 1, 2, lo, hi))


def _read_lines(buf: bytes):
    """`_read_range` over the whole log, in two processes where it is large: its `_Scan` and
    the rows of its parts as `_Columns`."""
    n = len(buf)
    if n >= PARALLEL_MIN_BYTES and hasattr(os, "fork") and (os.cpu_count() or 1) > 1:
        # The child starts where one process's scan would start a chunk anyway, so each
        # chunk, and so the parse, is the same as one process's.
        target = int(n * (1 - _CHILD_SHARE))
        dumps = _dump_offsets(buf, 0, target)
        mid = 0
        for start, end, _ in _chunks(buf, dumps, 0, n):
            if end > target:
                mid = start
                break
        if mid > 0:
            found = _read_in_two(buf, mid, [c for c in dumps if c < mid])
            if found is not None:
                return found
    scan = _read_range(buf, 0, n)
    rows = _Columns()
    rows.add(scan.parts)
    return scan, rows


def _merged(first: _Scan, second: _Scan) -> _Scan:
    """Two adjacent ranges' scans as the scan of both: the second's launches count on from
    the first's dumps, memory peaks are the larger value (first-seen key order kept)."""
    launches = sum(1 for c in first.dumps if c > 0)  # `_scan_range` counts those
    for p in second.parts:
        p.launch += launches
    peaks = []
    for a, b in ((first.memory_mb, second.memory_mb), (first.memory_gb, second.memory_gb)):
        merged = dict(a)
        for k, v in b.items():
            if v > merged.get(k, -math.inf):
                merged[k] = v
        peaks.append(merged)
    return _Scan(first.dumps + second.dumps, first.parts + second.parts,
                 first.garbled + second.garbled, first.validations + second.validations,
                 *peaks, first.checkpoint_loads + second.checkpoint_loads,
                 first.checkpoint_saves + second.checkpoint_saves)


def _shared_map_size(child_bytes: int) -> int:
    """Bytes of the shared map for a child reading `child_bytes` of log: its packed scan is
    about a quarter of that (more goes through the pipe). Only the pages written take memory,
    but the whole map must be granted, so it is not made larger than that needs."""
    return child_bytes // 2 + (1 << 20)


def _read_in_two(buf: bytes, mid: int, dumps: list):
    """`_read_lines` with `_read_range` over [0, mid) here (`dumps`: its arguments dumps) and
    [mid, end) in a forked child; None when the child fails (the caller then reads serially).

    The parent gathers its own rows into columns before it waits for the child, so that work
    overlaps the child's reading too.

    The child writes its scan, rows packed as arrays (`_pack`), into an anonymous shared
    memory map made before the fork, and only a small header through a pipe: it does not wait
    for the parent to read, and the parent takes the data without a pipe's copies. A scan
    larger than the map (it is sized with room to spare) goes through the pipe instead.
    """
    try:
        shared = mmap.mmap(-1, _shared_map_size(len(buf) - mid))
    except (OSError, ValueError):
        return None
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
    except OSError:
        shared.close()
        return None
    if pid == 0:  # the child: scan, send, exit without running the parent's cleanup
        code = 1
        try:
            os.close(read_fd)
            scan = _read_range(buf, mid, len(buf))
            scan.parts = _pack(scan.parts)
            try:
                pickle.dump(scan, shared, protocol=pickle.HIGHEST_PROTOCOL)
                message = b"M" + shared.tell().to_bytes(8, "little")
            except ValueError:  # did not fit
                message = b"P" + pickle.dumps(scan, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as out:
                out.write(message)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        first = _read_range(buf, 0, mid, dumps)
        rows = _Columns()
        rows.add(first.parts)
        first.parts = []  # free the parts' own lists now, not after the child's data came
    except BaseException:
        os.close(read_fd)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        shared.close()
        raise
    second = None
    with os.fdopen(read_fd, "rb") as inp:
        try:
            kind = inp.read(1)
            if kind == b"M" and len(inp.read(8)) == 8:
                shared.seek(0)
                second = pickle.load(shared)
            elif kind == b"P":
                second = pickle.load(inp)
        except Exception:  # the child died: nothing (or half a message) came
            second = None
    _, status = os.waitpid(pid, 0)
    shared.close()
    if second is None or status != 0:
        return None
    second.parts = _unpack(second.parts)
    scan = _merged(first, second)
    rows.add(second.parts)
    return scan, rows


def _pack(parts: list) -> list:
    """Parts as compact arrays and joined bytes, cheap to send between processes."""
    def packed(kind, col):
        # A None (a row without the key or the timestamp) makes array() and join() raise:
        # cheaper than looking for one first.
        try:
            return (kind, array("d", col) if kind == "f" else b"\0".join(col))
        except TypeError:
            return ("list", col)

    out = []
    for p in parts:
        cols = {k: packed("raw" if k in p.raw else "f", col) for k, col in p.columns.items()}
        ts = packed("raw", p.timestamps) if p.timestamps else ("list", p.timestamps)
        out.append((array("q", p.iterations), ts, cols, p.bad, p.launch, p.raw))
    return out


def _unpack(packed: list) -> list:
    """`_pack`'s parts as `_Part`s again. Number columns stay arrays: `_build_steps` extends
    its lists from them directly, making each float or int once."""
    def unlist(kind, value, n):
        if kind == "raw":
            return value.split(b"\0") if n else []
        return value

    parts = []
    for its, ts, cols, bad, launch, raw in packed:
        n = len(its)
        part = _Part(its, unlist(*ts, n),
                     {k: unlist(kind, v, n) for k, (kind, v) in cols.items()}, bad, launch)
        part.raw = raw
        parts.append(part)
    return parts


def _chunks(buf: bytes, cuts: list, lo: int, hi: int):
    """(start, end, launch) of each chunk of buf[lo:hi]: about `_CHUNK` bytes, cut at a line
    end and where a launch starts (an offset in `cuts`: its lines are a part of their own);
    `launch` counts the cuts (but one at offset 0) up to the chunk's start. Where a chunk
    ends depends only on the cuts before that end."""
    cuts = [c for c in cuts if c > 0]
    launch = 0
    start = lo
    while start < hi:
        end = buf.find(b"\n", min(start + _CHUNK, hi), hi)
        end = hi if end < 0 else end + 1
        while launch < len(cuts) and cuts[launch] <= start:
            launch += 1
        if launch < len(cuts) and cuts[launch] < end:
            end = cuts[launch]
        yield start, end, launch
        start = end


def _scan_range(buf: bytes, cuts: list, lo: int, hi: int):
    """Iteration rows of buf[lo:hi] (lo, hi at line starts) in file order as `_Part`s, and
    the count of garbled lines. `cuts`: line offsets where a launch starts (arguments dumps);
    a part's `launch` counts those (but one at offset 0) up to its start."""
    layout = _choose_layout(buf, lo)
    parts: list = []
    garbled = 0
    for start, end, launch in _chunks(buf, cuts, lo, hi):
        anchors = _count_anchors(buf, start, end, layout.timestamped)
        if not anchors and _count_anchors(buf, start, end, not layout.timestamped):
            # Iteration lines of the other kind only (a restart under a Megatron that does,
            # or does not, print timestamps): counted with their own layout, not skipped.
            other = _choose_layout(buf, start, end)
            if other.timestamped != layout.timestamped:
                layout = other
                anchors = _count_anchors(buf, start, end, layout.timestamped)
        if anchors:
            pieces = _pieces(buf, start, end, layout, _PIECE)
            rows = _rows_of(pieces)
            if len(rows) != anchors:
                # A restart under another Megatron version or other logging flags changes the
                # layout mid-log: try the layout of this chunk's own first whole line.
                other = _choose_layout(buf, start, end)
                if other.ident != layout.ident:
                    other_pieces = _pieces(buf, start, end, other, _PIECE)
                    other_rows = _rows_of(other_pieces)
                    if len(other_rows) > len(rows):
                        layout, rows, pieces = other, other_rows, other_pieces
            if len(rows) == anchors:
                chunk_parts = [_fast_part(layout, rows)]
            else:
                chunk_parts, chunk_garbled = _scan_exact(buf, layout, pieces)
                garbled += chunk_garbled
            for p in chunk_parts:
                p.launch = launch
            parts.extend(chunk_parts)
        start = end
    return parts, garbled + sum(p.bad for p in parts)


def _count_anchors(buf: bytes, start: int, end: int, timestamped: bool) -> int:
    """The ` iteration N/M |` anchors in buf[start:end], counted at C speed in one pass:
    `] iteration ` for timestamped lines, every ` iteration N/M |` anchor otherwise. A count
    that differs from the layout's rows (another phrase, a prefixed or glued line) sends the
    chunk through the anchor-by-anchor walk, which is exact."""
    if timestamped:
        return buf.count(b"] iteration ", start, end)
    # Lines without a timestamp may carry a launcher prefix before " iteration" (older
    # releases under torchrun --tee): every anchor counts, wherever it starts.
    return len(V.ANCHOR_COUNT.findall(buf, start, end))


# The layout's regex runs over pieces of a chunk of about this many bytes (cut at line ends):
# where a chunk holds a line the layout does not match, only the pieces that hold one are
# walked anchor by anchor, the others' rows are taken as they are.
_PIECE = 1 << 16


def _pieces(buf: bytes, start: int, end: int, layout: _Layout, size: int) -> list:
    """[(piece start, piece end, the layout's rows there)] over buf[start:end], each piece
    about `size` bytes and cut at a line end. A match never spans a line, so the pieces'
    rows, joined, are the rows of one regex pass over the whole range."""
    out = []
    a = start
    while a < end:
        b = buf.find(b"\n", min(a + size, end), end)
        b = end if b < 0 else b + 1
        out.append((a, b, layout.regex.findall(buf, a, b)))
        a = b
    return out


def _rows_of(pieces: list) -> list:
    return pieces[0][2] if len(pieces) == 1 else list(
        itertools.chain.from_iterable(p[2] for p in pieces))


def _scan_exact(buf: bytes, layout: _Layout, pieces: list):
    """A chunk where some iteration lines did not match the layout: take the layout's rows
    where they line up with the anchors and give the other lines to the general parser, which
    takes whole lines and counts the rest as garbled.

    A line the general parser takes must also fit the layout (`_fits`) unless another line of
    the chunk has exactly its keys (a restart under other logging flags): a glued line is a
    one-off splice. A line with other output after its final `|` is a splice whatever its
    neighbours: two lines cut after the same field are not a restart.
    """
    entries: list = []  # ("fast", [rows]) | ("slow", row) in file order
    garbled = 0
    for a, b, rows in pieces:
        garbled += _walk(buf, a, b, layout, rows, entries)
    seen: dict = {}
    for kind, row in entries:
        if kind == "slow" and not row[6]:
            seen[row[4]] = seen.get(row[4], 0) + 1
    runs: list = []
    for kind, row in entries:
        if kind == "slow" and (row[6] or seen[row[4]] < 2) and not _fits(row[4], layout.keys):
            garbled += 1
            continue
        if not runs or runs[-1][0] != kind:
            runs.append((kind, []))
        if kind == "fast":
            runs[-1][1].extend(row)
        else:
            runs[-1][1].append(row)
    parts = [_fast_part(layout, r) if kind == "fast" else _slow_part(r) for kind, r in runs]
    return parts, garbled


def _walk(buf: bytes, start: int, end: int, layout: _Layout, rows: list, entries: list) -> int:
    """Append buf[start:end]'s rows to `entries` in file order; return the anchors that are no
    whole line (garbled). `rows` are the layout's matches in that range.

    Each row holds one anchor, so where the rows are as many as the anchors they are the
    anchors' lines, in order: taken at once. Elsewhere the range is cut in smaller pieces
    (one more C-speed regex pass over a few kB), so the Python walk reads only the lines
    around the one that does not match.
    """
    if len(rows) == len(V.ANCHOR_COUNT.findall(buf, start, end)):
        if rows:
            entries.append(("fast", rows))
        return 0
    if end - start > _PIECE // 16:
        pieces = _pieces(buf, start, end, layout, _PIECE // 16)
        if len(pieces) > 1:
            return sum(_walk(buf, a, b, layout, r, entries) for a, b, r in pieces)
    return _walk_anchors(buf, start, end, layout, rows, entries)


def _walk_anchors(buf: bytes, start: int, end: int, layout: _Layout, rows: list,
                  entries: list) -> int:
    """`_walk` anchor by anchor: a layout row that lines up with the anchor (same iteration
    and timestamp) is taken, any other anchor goes to the general parser."""
    garbled = 0
    off = 1 if layout.timestamped else 0
    j = 0
    for m in V.ANCHOR.finditer(buf, start, end):
        if j < len(rows):
            row = rows[j]
            a = m.start()
            if row[off] == m.group(1) and (not off or buf[a - 1 - len(row[0]):a - 1] == row[0]):
                entries.append(("fast", [row]))
                j += 1
                continue
        parsed = _parse_general(buf, m)
        if parsed is None:
            garbled += 1
        else:
            entries.append(("slow", parsed))
    return garbled


def _fits(keys: tuple, layout_keys: tuple) -> bool:
    """Whether a line's keys can be the layout's line: the keys they share in the same order,
    and none of the layout's keys missing but losses (Megatron leaves out a NaN loss) and, on
    a line that logs skipped iterations, the gradient's (a skipped step has none)."""
    have, known = set(keys), set(layout_keys)
    if [k for k in keys if k in known] != [k for k in layout_keys if k in have]:
        return False
    optional = V.SKIPPED_STEP_KEYS if V.SKIPPED_ITERS in have else ()
    return all(k in have or V.is_loss_key(k) or k in optional for k in layout_keys)


def _parse_general(buf: bytes, m: re.Match):
    """Parse an iteration line in any field order, or None when it is not whole.

    Returns (iteration, planned, timestamp bytes or None, {numeric key: float},
    (every key in order), [non-numeric keys], whether other text follows the final `|`).
    """
    line_start = buf.rfind(b"\n", 0, m.start()) + 1
    line_end = buf.find(b"\n", m.end())
    if line_end < 0:
        line_end = len(buf)
    pieces = buf[m.end():line_end].split(b"|")
    # A whole record ends with "|" and has at least one field. Another rank's text written
    # right after the final "|" (no newline between) leaves the record whole: it is ignored.
    if len(pieces) < 2:
        return None
    fields: dict = {}
    keys: list = []
    text_keys: list = []
    for piece in pieces[:-1]:
        fm = V.FIELD.fullmatch(piece)
        if fm is not None:
            key = fm.group(1).decode("ascii")
            value: Optional[float] = float(fm.group(2))
        else:
            tm = V.TEXT_FIELD.fullmatch(piece)
            if tm is None:
                return None
            key, value = tm.group(1).decode("ascii"), None
        if key in keys:
            return None  # a key twice: two lines in one
        if key == V.FIRST_KEY and any(k in V.MEGATRON_KEYS or V.is_loss_key(k) for k in keys):
            return None  # a key that cannot follow the previous one: another line's start
        keys.append(key)
        if value is None:
            text_keys.append(key)
        else:
            fields[key] = value
    if not fields:
        return None
    ts = V.TIMESTAMP_BEFORE.search(buf, line_start, m.start())
    return (int(m.group(1)), int(m.group(2)), ts.group(1) if ts else None, fields, tuple(keys),
            text_keys, bool(pieces[-1].strip()))


class _Columns:
    """The rows of consecutive `_Part`s gathered into one list per column, part by part (the
    parent adds its own parts while the forked child still reads).

    A key first seen in a later part gets None for the rows before; a key's captured bytes
    stay bytes while every part that has the key left them so, else they become floats.
    """

    def __init__(self):
        self.iterations: list = []
        self.timestamps: list = []
        self.columns: dict = {}  # key -> list, first-seen order
        self.raw: set = set()
        self.new_launch: list = []  # row indices where a part of a later launch begins
        self.skipped = 0  # iterations the loss scaler skipped (`_drop_skipped`)
        self._launch = None

    def set_missing(self, key: str, i: int) -> None:
        """Row i did not log `key` (None)."""
        if key in self.raw:
            self.columns[key] = _to_floats(self.columns[key])
            self.raw.discard(key)
        self.columns[key][i] = None

    def add(self, parts: list) -> None:
        columns = self.columns
        for part in parts:
            n = len(part.iterations)
            for k in part.columns:
                if k not in columns:
                    columns[k] = [None] * len(self.iterations)
                    if k in part.raw:
                        self.raw.add(k)
                elif k in self.raw and k not in part.raw:
                    self.raw.discard(k)
                    columns[k] = _to_floats(columns[k])
            if part.launch != self._launch and n:
                if self.iterations:
                    self.new_launch.append(len(self.iterations))
                self._launch = part.launch
            self.iterations.extend(part.iterations)
            self.timestamps.extend(part.timestamps)
            for k, out in columns.items():
                col = part.columns.get(k)
                if col is None:
                    col = [None] * n
                elif k in part.raw and k not in self.raw:
                    col = _to_floats(col)
                out.extend(col)


def _build_steps(parts, log_interval: Optional[int]):
    """One `Steps` (the last occurrence of each iteration kept) and the segments, from a
    list of `_Part`s or their `_Columns`.

    Returns (steps, segments, repeated rows).
    """
    if not isinstance(parts, _Columns):
        gathered = _Columns()
        gathered.add(parts)
        parts = gathered
    iterations, timestamps, columns = parts.iterations, parts.timestamps, parts.columns
    raw, new_launch = parts.raw, parts.new_launch

    # A new launch (arguments dump) or an iteration number that goes back starts a segment.
    ascending = all(map(operator.lt, iterations, iterations[1:]))
    starts = [] if ascending else [
        i for i, (a, b) in enumerate(zip(iterations, iterations[1:]), 1) if b <= a]
    if new_launch:
        starts = sorted(set(starts) | set(new_launch))
    segments = _segments(iterations, timestamps, columns.get(V.ITER_MS), [0] + starts,
                         log_interval)

    repeated = 0
    missing = dict(getattr(parts, "missing", None) or {})  # a streamed log's compact columns
    if not ascending:
        if missing:
            columns = {k: _with_none(col, missing.get(k, ())) for k, col in columns.items()}
            missing = {}
        last = {it: i for i, it in enumerate(iterations)}
        keep = [last[it] for it in sorted(last)]
        repeated = len(iterations) - len(keep)
        iterations = [iterations[i] for i in keep]
        timestamps = [timestamps[i] for i in keep]
        columns = {k: [col[i] for i in keep] for k, col in columns.items()}
    steps = Steps(iterations, timestamps, columns)
    steps._raw = raw
    steps._missing = missing
    steps.segment_starts = list(iterations[:1]) + sorted(
        {s.first_iteration for s in segments[1:]} - set(iterations[:1]))
    return steps, segments, repeated


def _with_none(col, rows) -> list:
    """A compact column as a list, None at `rows`."""
    out = list(col)
    for i in rows:
        out[i] = None
    return out


def _seconds(ts) -> Optional[float]:
    if isinstance(ts, float):  # a streamed log's compact timestamps: POSIX seconds, NaN = none
        return ts if math.isfinite(ts) else None
    if not ts:
        return None
    try:
        text = ts.decode("ascii") if isinstance(ts, bytes) else ts
        return datetime.fromisoformat(text.strip()).timestamp()
    except (ValueError, UnicodeDecodeError, OverflowError, OSError):
        return None


def _segments(iterations, timestamps, iter_ms, starts, log_interval) -> list:
    """Segments with their spans and the downtime between them (see `Segment`)."""
    out: list = []
    bounds = starts + [len(iterations)]
    prev_end: Optional[float] = None
    interval = log_interval if log_interval and log_interval > 0 else 1
    for a, b in zip(bounds, bounds[1:]):
        if a >= b:
            continue
        its = iterations[a:b]
        ms = iter_ms[a:b] if iter_ms is not None else [None] * (b - a)
        first_ms = ms[0] if ms[0] is not None and math.isfinite(ms[0]) and 0 <= ms[0] < 1e12 \
            else None
        t0, t1 = _seconds(timestamps[a]), _seconds(timestamps[b - 1])
        seg = Segment(its[0], its[-1], b - a)
        stamps = timestamps[a:b]
        try:  # ISO timestamps of one format compare as text; a step back breaks the order
            monotonic = all(map(operator.le, stamps, stamps[1:]))
        except TypeError:  # some rows without one
            monotonic = False
        start_s = t0 - first_ms * interval / 1000 if t0 is not None and first_ms is not None \
            else t0
        if start_s is not None and t1 is not None and monotonic and t1 >= start_s:
            seg.span_s, seg.span_from = t1 - start_s, "timestamps"
        else:
            # No timestamps, or the clock stepped back inside the segment.
            summed = _summed_seconds(its, ms, interval)
            if summed > 0:
                seg.span_s, seg.span_from = summed, "sum of iteration times"
        if out and prev_end is not None and start_s is not None and start_s >= prev_end:
            seg.downtime_before_s = start_s - prev_end
        seg.start_s, seg.end_s = start_s, t1
        prev_end = t1
        out.append(seg)
    return out


def _summed_seconds(its: list, ms: list, interval: int) -> float:
    """Sum of iteration times: each row's ms times the iterations it covers (the first row
    one log interval). `its`: one segment's iterations, so strictly ascending."""
    # Every row one log interval after the previous (the usual case): the products need no
    # per-row lengths list, and with an interval of 1 none at all (x * 1 is x, bit for bit).
    # Ascending integers that span len - 1 are all one apart.
    if interval == 1 and len(its) > 1 and its[-1] - its[0] == len(its) - 1:
        gaps, uniform = None, True
    else:
        gaps = list(map(operator.sub, its[1:], its[:-1]))
        uniform = bool(gaps) and min(gaps) == interval == max(gaps)
    lengths = [n if n > 0 else interval for n in [interval] + gaps] if not uniform else None
    try:
        if uniform:
            terms = ms if interval == 1 else map(operator.mul, ms, itertools.repeat(interval))
        else:
            terms = map(operator.mul, ms, lengths)
        summed = math.fsum(terms) / 1000
    except (TypeError, OverflowError, ValueError):  # None; too large; inf and -inf
        if lengths is None:
            lengths = [interval] * len(its)
        summed = math.fsum(v * n for v, n in zip(ms, lengths)
                           if v is not None and math.isfinite(v) and abs(v) < 1e15) / 1000
    if isinstance(ms, array) and math.isnan(summed):  # a streamed log's missing rows (NaN)
        summed = math.fsum(v * n for v, n in zip(ms, lengths or itertools.repeat(interval))
                           if v is not None and math.isfinite(v) and abs(v) < 1e15) / 1000
    return summed if math.isfinite(summed) else 0.0


def _count_nonfinite(col: list) -> int:
    """nan/inf values in a column. A finite plain sum (C speed) proves there are none; only a
    column with a non-finite value, an overflow or a None is counted one by one."""
    try:
        if math.isfinite(sum(col)):
            return 0
    except (TypeError, OverflowError):
        pass
    return sum(1 for v in col if v is not None and not math.isfinite(v))


def _planned_iterations(buf: bytes, args: dict) -> Optional[int]:
    """The `/ N` of the last iteration line, else --train-iters from the arguments."""
    it, at = last_iteration_before(buf, len(buf), 0)
    return int(V.ANCHOR.match(buf, at).group(2)) if it is not None else arg_int(args,
                                                                                 "train_iters")


# --- other lines ---------------------------------------------------------------------------


def parse_fields(text: bytes) -> dict:
    """`key: number | key: number |` -> {key: float}, skipping pieces that are not fields."""
    out = {}
    for part in text.split(b"|"):
        fm = V.FIELD.fullmatch(part)
        if fm:
            out[fm.group(1).decode("ascii")] = float(fm.group(2))
    return out


def _matches(buf: bytes, literal: bytes, pattern: re.Pattern, lo: int, hi: int):
    """`pattern` matched at each line of buf[lo:hi] holding `literal`: a C-speed find per
    line instead of a regex scan of the whole log (these lines are few)."""
    pos = buf.find(literal, lo, hi)
    while pos >= 0:
        start = buf.rfind(b"\n", 0, pos) + 1
        end = buf.find(b"\n", pos)
        end = len(buf) if end < 0 else end
        m = pattern.search(buf, start, end)
        if m:
            yield m
        pos = buf.find(literal, end, hi)


def _parse_validations(buf: bytes, lo: int, hi: int) -> list:
    out = []
    for m in _matches(buf, V.VALIDATION_LITERAL, V.VALIDATION, lo, hi):
        split = m.group(2).decode("utf-8", "replace").strip() if m.group(2) else ""
        split = split[: -len(" set")] if split.endswith(" set") else split
        fields = parse_fields(m.group(3))
        if fields:
            out.append(Validation(int(m.group(1)), split or "validation", fields))
    return out


def _checkpoints(buf: bytes, literal: bytes, pattern: re.Pattern, it: int, where: int,
                 lo: int, hi: int) -> list:
    """[(iteration, directory)] of the checkpoint lines of buf[lo:hi] `pattern` matches, in
    file order."""
    return [(int(m.group(it)), m.group(where).decode("utf-8", "replace").strip())
            for m in _matches(buf, literal, pattern, lo, hi)]


def _parse_memory(buf: bytes, lo: int, hi: int) -> tuple:
    """Peak memory per key in MiB over every memory line and rank of buf[lo:hi]: ({from
    `memory (MB)` lines}, {from Megatron-Bridge's `memory (GB)` lines, read only where the
    first is empty}). The log's peaks are the first unless it is empty."""
    peak: dict = {}

    def keep(key: str, mib: float) -> None:
        if math.isfinite(mib) and mib > peak.get(key, -math.inf):
            peak[key] = mib

    seen: set = set()  # many memory lines repeat the same figures: parse each text once
    for m in _matches(buf, V.MEMORY_MB_LITERAL, V.MEMORY_MB, lo, hi):
        if m.group(3) not in seen:
            seen.add(m.group(3))
            for k, v in parse_fields(m.group(3)).items():
                keep(k, v)
    if peak or buf.find(V.MEMORY_GB_LITERAL, lo, hi) < 0:
        return peak, {}
    for m in _matches(buf, V.MEMORY_GB_LITERAL, V.MEMORY_GB, lo, hi):
        for k, v in parse_fields(m.group(1)).items():
            if k in V.MEMORY_GB_KEYS:
                keep(V.MEMORY_GB_KEYS[k], v * 1e9 / 2**20)  # 10^9 bytes -> MiB
    return {}, peak


def dump_cut(buf: bytes, begin: int) -> bool:
    """Whether the arguments dump starting at line offset `begin` has no end line: the log was
    cut inside it, so the arguments after its last whole line are unknown, not absent."""
    at = buf.find(V.ARGS_BEGIN, begin)
    return at >= 0 and buf.find(V.ARGS_END, at) < 0


def _parse_args(buf: bytes, begin: int) -> dict:
    """The arguments dump starting at line offset `begin` as {name: value text}."""
    at = buf.find(V.ARGS_BEGIN, begin)
    end = buf.find(V.ARGS_END, at)
    stop = end if end >= 0 else min(len(buf), at + (1 << 20))
    text = buf[at + len(V.ARGS_BEGIN):stop].decode("utf-8", "replace")
    lines = text.split("\n")[1:]
    if end < 0 and not text.endswith("\n"):
        lines = lines[:-1]  # a dump cut short: its last line may end mid-value
    args = {}
    for line in lines:
        m = V.ARG_LINE.match(V.strip_prefixes(line))
        if m:
            args[m.group(1)] = m.group(2)
    return args
