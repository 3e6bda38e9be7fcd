"""Parse one raw Megatron-Core training log (bytes) into step records and a run status.

What a Megatron log holds, keys verbatim (megatron-core 0.19; other versions add or drop keys):

* one line per logged iteration, ` | `-separated `key: value` fields, printed by the last rank:
  ` [2026-11-23 04:01:35.321753] iteration        1/      30 | consumed samples:            8 |
  elapsed time per iteration (ms): 6712.4 | ... | lm loss: 1.257090E+01 | ... |`
* ` validation loss at iteration 20 | lm loss value: ... | lm loss PPL: ... |` (and `... on
  validation set` / `... on test set` after training),
* `[Rank 0] (after 1 iterations) memory (MB) | allocated: ... | max allocated: ... | ...`,
* the arguments dump between `---- arguments ----` and `---- end of arguments ----`,
* how it ended: `[after training is done]`, `[exiting program after N minutes]`
  (--exit-duration-in-mins), `[exiting program at iteration N]` (--exit-interval), a Python
  traceback, torchrun's ChildFailedError, or nothing at all (still running or cut off).

Design, for speed (hundreds of MB per log) and robustness (a log never stops a report):

* The log is read as bytes and decoded only in the small pieces that become text
  (`errors="replace"`), so non-UTF-8 bytes cannot raise.
* Iteration lines are found by compiled regexes over the whole buffer, never a Python loop over
  lines. A layout (field order) gets one specific pattern: 0.19's is compiled at import, any
  other is learned from the log's first whole iteration line. The buffer is cut into ~1 MB
  chunks at line ends; in each, `findall` with the layout's pattern must account for every
  ` iteration N/M |` anchor. Where it does (nearly always), the rows become float columns at
  once (`map(float, ...)`, which also validates each token). Where it does not, the rows are
  lined up with the anchors by iteration and timestamp and only the lines left over go to a
  general `key: value` parser. The cyclic GC is paused meanwhile. About 100-130 MB/s on one
  core; `tools/bench_report.py` measures it.
* A line counts only as a whole match: every field `key: number`, ending in `|`. A line that
  another rank's output was glued into is skipped and counted in `garbled_lines`, never
  half-parsed into wrong numbers.
* Values `nan`, `inf`, `-inf`, `NaN`, `NAN`, `INF` are kept as float nan/inf; aggregates
  elsewhere skip them and the parser counts them per key.
* Restarts repeat iterations: the last occurrence of each iteration is kept, restarts counted.
"""

from __future__ import annotations

import gc
import math
import re
from dataclasses import dataclass, field
from typing import Optional

# --- iteration lines -----------------------------------------------------------------------

# A number as Megatron prints it, plus every non-finite spelling: "{:.3f}" gives nan/inf,
# "{:.6E}" (lm loss, learning rate) gives NAN/INF, other code NaN/Infinity.
_NUM = (rb"[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|"
        rb"[nN][aA][nN]|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)")
# The layout patterns capture values with this looser class, which matches ~1.7x faster than
# _NUM; float() then checks every captured token, and a row with one it rejects is garbled.
_LOOSE_NUM = rb"[-+.0-9eEaAfFiInNtTyY]+"

# Megatron-Core 0.19's field order with --log-throughput (the common case, kept fast).
FAST_KEYS = (
    "consumed samples",
    "elapsed time per iteration (ms)",
    "throughput per GPU (TFLOP/s/GPU)",
    "learning rate",
    "global batch size",
    "lm loss",
    "loss scale",
    "grad norm",
    "number of skipped iterations",
    "number of nan iterations",
)
_TS = rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?"  # " [2026-11-23 04:01:35.321753]"
_TS_FAST = rb"\d[-0-9 :.]{18,31}"  # the same, looser; fromisoformat() checks it where used
# Every iteration line, whatever its fields: the anchor the fast pattern must account for.
_ANCHOR = re.compile(rb" iteration +(\d+)/ *(\d+) \|")
_ANCHOR_COUNT = re.compile(rb" iteration +\d+/ *\d+ \|")  # no groups: findall allocates less
_TIMESTAMP_BEFORE = re.compile(rb"\[(" + _TS + rb")\][ \t]*$")
# One ` | `-separated field. Keys are words, spaces and ()/ (e.g. "throughput per GPU
# (TFLOP/s/GPU)"); a `[` or `:` inside means another rank's text was glued in.
_FIELD = re.compile(rb"[ \t]*([A-Za-z][A-Za-z0-9 _()/%.,'-]*?): +(" + _NUM + rb")[ \t]*")

_CHUNK = 1 << 20  # bytes per chunk of the iteration scan; only mismatching chunks go slow

# --- other lines ---------------------------------------------------------------------------

_VALID = re.compile(rb"validation loss at iteration +(\d+)(?: on ([^|\n]*?))? *\|([^\n]*)")
_MEMORY = re.compile(rb"\[Rank (\d+)\] \(after (\d+) iterations\) memory \(MB\) \|([^\n]*)")
_ARGS_BEGIN = b"------------------------ arguments ------------------------"
_ARGS_END = b"-------------------- end of arguments ---------------------"
# `  name ..... value`; names of 48+ characters get no dots, just two spaces.
_ARG_LINE = re.compile(r"^  (\w+) \.* ?(.*?)[ \t\r]*$", re.M)

_DONE = b"[after training is done]"
_EXIT_DURATION = re.compile(rb"\[exiting program after ([0-9.]+) minutes\]")
_EXIT_INTERVAL = re.compile(rb"\[exiting program at iteration +(\d+)\]")
_EXIT_SIGNAL = re.compile(rb"exiting program after receiving (SIG\w+)")
_SLURM_TIME_LIMIT = re.compile(
    rb"\*\*\* (?:JOB|STEP) [\w.]+ ON \S+ CANCELLED AT \S+ DUE TO TIME LIMIT")
_SLURM_CANCELLED = re.compile(rb"\*\*\* (?:JOB|STEP) [\w.]+ ON \S+ CANCELLED AT [^\n]*")
_TRACEBACK = b"Traceback (most recent call last):"
# torchrun and Slurm prefix worker lines with their rank: "[rank3]: ", "[default3]:", "3: ".
_RANK_PREFIX = re.compile(r"^(?:\[(?:rank|default)\d+\]:|\d+: )")
# "ValueError: msg", "torch.OutOfMemoryError: msg", "KeyboardInterrupt". The class name must
# look like one (CamelCase last part), so log lines such as "WARNING:megatron..." do not pass.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*[a-z]\w*(?::(?: .*)?)?$")
# glog-style header of C++ messages: "[E1123 04:10:00.123456 ProcessGroupNCCL.cpp:632] "
_GLOG_HEADER = re.compile(r"^\[[EWIF]\d{4} [^\]]*\] ")
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
# Searched as plain literals (a leading `[^\n]*` would make the scan quadratic, an alternation
# would lose the fast literal search); the whole line is cut out around the hit afterwards.
_OOM = b"CUDA out of memory"
_NCCL = (b"NCCL error", b"ncclInternalError", b"ncclSystemError", b"ncclUnhandledCudaError",
         b"ncclRemoteError", b"ncclInvalidUsage", b"Watchdog caught collective operation timeout",
         b"DistBackendError")
_CHILD_FAILED = b"ChildFailedError"
_CHILD_EXITCODE = re.compile(rb"exitcode +: (-?\d+)")
_ELASTIC_FAILED = re.compile(rb"failed \(exitcode: (-?\d+)\) local_rank")
_CHILD_SIGNAL = re.compile(rb"Signal (\d+) \((SIG\w+)\) received by PID")
_EVALUATING = re.compile(rb"Evaluating (?:iter|on) ")
_SAVING = b"saving checkpoint at iteration"
_SAVED = b"successfully saved checkpoint"

STATUSES = ("completed", "time-limit", "exit-interval", "crashed", "running/truncated")


# --- records -------------------------------------------------------------------------------


class Steps:
    """Long-format step records, stored column-wise: row i is iteration `iterations[i]`.

    Every `key: value` field of the iteration lines is kept under its verbatim Megatron key:
    `column(key)` gives one float per row (nan/inf kept as floats), `None` where a row did not
    log that key (a mixed log), all `None` for a key never logged.
    """

    def __init__(self, iterations=None, timestamps=None, columns=None):
        self.iterations = iterations or []  # ints, ascending, unique
        self._timestamps = timestamps or []  # b"2026-11-23 04:01:35.321753" or None per row
        self._columns = columns or {}
        # First iteration of the log and of each restart (where a warm-up starts again).
        self.segment_starts = self.iterations[:1]

    def __len__(self) -> int:
        return len(self.iterations)

    def keys(self) -> list:
        return list(self._columns)

    def column(self, key: str) -> list:
        return self._columns.get(key) or [None] * len(self.iterations)

    @property
    def fields(self) -> dict:
        return dict(self._columns)

    def timestamp(self, i: int):
        """The iteration line's timestamp text, or None (older Megatron prints none)."""
        ts = self._timestamps[i]
        return ts.decode("ascii") if isinstance(ts, bytes) else ts


@dataclass
class Validation:
    iteration: int
    split: str  # "validation" (periodic evaluation or final), "test", or a named set
    fields: dict  # verbatim keys, e.g. {"lm loss value": 0.058, "lm loss PPL": 1.06}


@dataclass
class Status:
    """How the log ended. `name` is one of STATUSES; `reason` is one line for a table."""

    name: str
    reason: str
    last_iteration: Optional[int] = None
    planned_iterations: Optional[int] = None
    phase: str = ""  # for crashes: "at start-up", "during evaluation after iteration 20", ...
    exception: str = ""  # the full final exception line, when there is one
    context: list = field(default_factory=list)  # the log lines leading to the crash


@dataclass
class ParsedLog:
    size_bytes: int
    steps: Steps
    validations: list
    memory_peak_mb: dict  # {"max allocated": MB, "max reserved": MB, ...} over lines and ranks
    args: dict  # the last arguments dump, verbatim name -> value text
    args_dumps: int
    status: Status
    restarts: int = 0  # times the iteration number went back or the arguments were printed again
    repeated_iterations: int = 0  # rows dropped because a later occurrence replaced them
    garbled_lines: int = 0  # iteration lines skipped because they were not whole
    nonfinite: dict = field(default_factory=dict)  # key -> count of nan/inf values kept
    earlier_failures: list = field(default_factory=list)  # crashes before the last restart


# --- entry points --------------------------------------------------------------------------


def read_log(path) -> ParsedLog:
    """Read a log file as bytes and parse it (I/O errors propagate to the caller)."""
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


def _parse(buf: bytes) -> ParsedLog:
    args, args_dumps, last_args_at = _parse_args(buf)
    parts, garbled = _scan_iterations(buf)
    steps, restarts_seen, repeated, nonfinite = _build_steps(parts)
    planned = _planned_iterations(buf, args)
    status, earlier = _find_status(buf, last_args_at, steps, planned, args)
    return ParsedLog(
        size_bytes=len(buf),
        steps=steps,
        validations=_parse_validations(buf),
        memory_peak_mb=_parse_memory(buf),
        args=args,
        args_dumps=args_dumps,
        status=status,
        restarts=max(restarts_seen, max(args_dumps - 1, 0)),
        repeated_iterations=repeated,
        garbled_lines=garbled,
        nonfinite=nonfinite,
        earlier_failures=earlier,
    )


# --- iteration lines -----------------------------------------------------------------------


class _Layout:
    """One field order of iteration lines and the specific regex that matches it whole.

    Megatron-Core 0.19's order is compiled once; a log in another order (other versions, other
    logging flags) gets a pattern built from its own first whole iteration line, so it parses
    just as fast.
    """

    def __init__(self, keys: tuple, timestamped: bool):
        self.keys = keys
        self.timestamped = timestamped
        # The timestamp as one character class and the "/ planned" count uncaptured (only
        # the last line's is needed) keep the per-line work down: ~10% of the parse time.
        head = (rb"\[(" + _TS_FAST + rb")\] iteration +(\d+)/ *\d+ \|") if timestamped \
            else rb" iteration +(\d+)/ *\d+ \|"
        body = b"".join(b" " + re.escape(k.encode()) + b": +(" + _LOOSE_NUM + b") \\|"
                        for k in keys)
        self.regex = re.compile(head + body + rb"[ \t\r]*$", re.M)


_LAYOUT_019 = _Layout(FAST_KEYS, True)


def _choose_layout(buf: bytes, start: int = 0, end: int = -1) -> _Layout:
    """The layout of the first whole iteration line (0.19's when there is none)."""
    for n, m in enumerate(_ANCHOR.finditer(buf, start, len(buf) if end < 0 else end)):
        row = _parse_general(buf, m)
        if row is not None:
            keys, timestamped = tuple(row[3]), row[2] is not None
            if keys == FAST_KEYS and timestamped:
                return _LAYOUT_019
            return _Layout(keys, timestamped)
        if n > 100:
            break
    return _LAYOUT_019


@dataclass
class _Part:
    """Consecutive iteration rows of one chunk, already as columns (so the millions of row
    tuples of a large log never live at the same time)."""

    iterations: list
    timestamps: list
    columns: dict  # key -> [float | None]
    bad: int = 0  # rows dropped because float() rejected a captured token ("1.2.3")


def _fast_part(layout: "_Layout", rows: list) -> _Part:
    cols = list(zip(*rows))
    off = 1 if layout.timestamped else 0
    iterations = list(map(int, cols[off]))
    timestamps = list(cols[0]) if off else [None] * len(rows)
    columns, bad = {}, set()
    for j, k in enumerate(layout.keys):
        raw = cols[off + 1 + j]
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
    return _Part(iterations, timestamps, columns, len(bad))


def _slow_part(rows: list) -> _Part:
    keys = []
    for r in rows:
        keys.extend(k for k in r[3] if k not in keys)
    return _Part([r[0] for r in rows], [r[2] for r in rows],
                 {k: [r[3].get(k) for r in rows] for k in keys})


def _scan_iterations(buf: bytes):
    """Iteration rows in file order as a list of `_Part`, and the count of garbled lines."""
    layout = _choose_layout(buf)
    parts = []
    garbled = 0
    n = len(buf)
    start = 0
    while start < n:
        end = buf.find(b"\n", min(start + _CHUNK, n))
        end = n if end < 0 else end + 1
        rows = layout.regex.findall(buf, start, end)
        anchors = len(_ANCHOR_COUNT.findall(buf, start, end))
        if len(rows) != anchors:
            # A restart under another Megatron version or other logging flags changes the
            # layout mid-log: try the layout of this chunk's own first whole line.
            other = _choose_layout(buf, start, end)
            if (other.keys, other.timestamped) != (layout.keys, layout.timestamped):
                other_rows = other.regex.findall(buf, start, end)
                if len(other_rows) > len(rows):
                    layout, rows = other, other_rows
        if len(rows) == anchors:
            if rows:
                parts.append(_fast_part(layout, rows))
        else:
            chunk_parts, chunk_garbled = _scan_exact(buf, start, end, layout, rows)
            parts.extend(chunk_parts)
            garbled += chunk_garbled
        start = end
    return parts, garbled + sum(p.bad for p in parts)


def _scan_exact(buf: bytes, start: int, end: int, layout: "_Layout", rows: list):
    """A chunk where some iteration lines did not match the layout: walk its anchors in order,
    take the layout's rows where they line up (same iteration and timestamp) and give the
    others to the general parser, which takes whole lines and counts the rest as garbled."""
    runs = []  # [("fast" | "slow", [rows])] in file order
    garbled = 0
    off = 1 if layout.timestamped else 0
    j = 0
    for m in _ANCHOR.finditer(buf, start, end):
        if j < len(rows):
            row = rows[j]
            a = m.start()
            if row[off] == m.group(1) and (not off or buf[a - 1 - len(row[0]):a - 1] == row[0]):
                if not runs or runs[-1][0] != "fast":
                    runs.append(("fast", []))
                runs[-1][1].append(row)
                j += 1
                continue
        parsed = _parse_general(buf, m)
        if parsed is None:
            garbled += 1
            continue
        if not runs or runs[-1][0] != "slow":
            runs.append(("slow", []))
        runs[-1][1].append(parsed)
    parts = [_fast_part(layout, r) if kind == "fast" else _slow_part(r) for kind, r in runs]
    return parts, garbled


def _parse_general(buf: bytes, m: re.Match):
    """Parse an iteration line in any field order, or None when it is not whole."""
    line_start = buf.rfind(b"\n", 0, m.start()) + 1
    line_end = buf.find(b"\n", m.end())
    if line_end < 0:
        line_end = len(buf)
    parts = buf[m.end():line_end].split(b"|")
    # A whole line ends with "|" (only blanks after it) and has at least one field.
    if parts[-1].strip() or len(parts) < 2:
        return None
    fields = {}
    for part in parts[:-1]:
        fm = _FIELD.fullmatch(part)
        if fm is None:
            return None
        fields[fm.group(1).decode("ascii")] = float(fm.group(2))
    ts = _TIMESTAMP_BEFORE.search(buf, line_start, m.start())
    return int(m.group(1)), int(m.group(2)), ts.group(1) if ts else None, fields


def _build_steps(parts: list):
    """One `Steps` from the parts, the last occurrence of each iteration kept.

    Returns (steps, restarts, repeated rows, {key: non-finite count}).
    """
    keys = []  # first-seen order
    for part in parts:
        keys.extend(k for k in part.columns if k not in keys)
    iterations, timestamps = [], []
    columns = {k: [] for k in keys}
    for part in parts:
        iterations.extend(part.iterations)
        timestamps.extend(part.timestamps)
        for k in keys:
            col = part.columns.get(k)
            columns[k].extend(col if col is not None else [None] * len(part.iterations))

    # A restart resumes from a checkpoint and logs iterations again: the iteration number
    # goes back (or repeats). Each resumed segment has its own warm-up.
    resumed_at = [b for a, b in zip(iterations, iterations[1:]) if b <= a]
    repeated = 0
    if resumed_at:
        last = {it: i for i, it in enumerate(iterations)}
        keep = [last[it] for it in sorted(last)]
        repeated = len(iterations) - len(keep)
        iterations = [iterations[i] for i in keep]
        timestamps = [timestamps[i] for i in keep]
        columns = {k: [col[i] for i in keep] for k, col in columns.items()}
    steps = Steps(iterations, timestamps, columns)
    steps.segment_starts = iterations[:1] + sorted(set(resumed_at))
    nonfinite = {k: n for k, col in columns.items() if (n := _count_nonfinite(col))}
    return steps, len(resumed_at), repeated, nonfinite


def _count_nonfinite(col: list) -> int:
    """nan/inf values in a column. A finite plain sum (C speed) proves there are none; only a
    column with a non-finite value, an overflow or a None is counted one by one."""
    try:
        if math.isfinite(sum(col)):
            return 0
    except TypeError:
        pass
    return sum(1 for v in col if v is not None and not math.isfinite(v))


def _planned_iterations(buf: bytes, args) -> Optional[int]:
    """The `/ N` of the last iteration line, else --train-iters from the arguments."""
    it, at = _last_iteration_before(buf, len(buf), 0)
    return int(_ANCHOR.match(buf, at).group(2)) if it is not None else arg_int(args, "train_iters")


# --- other lines ---------------------------------------------------------------------------


def _parse_fields(text: bytes) -> dict:
    """`key: number | key: number |` -> {key: float}, skipping pieces that are not fields."""
    out = {}
    for part in text.split(b"|"):
        fm = _FIELD.fullmatch(part)
        if fm:
            out[fm.group(1).decode("ascii")] = float(fm.group(2))
    return out


def _parse_validations(buf: bytes) -> list:
    out = []
    for m in _VALID.finditer(buf):
        split = m.group(2).decode("utf-8", "replace").strip() if m.group(2) else ""
        split = split[: -len(" set")] if split.endswith(" set") else split
        fields = _parse_fields(m.group(3))
        if fields:
            out.append(Validation(int(m.group(1)), split or "validation", fields))
    return out


def _parse_memory(buf: bytes) -> dict:
    peak = {}
    for m in _MEMORY.finditer(buf):
        for k, v in _parse_fields(m.group(3)).items():
            if math.isfinite(v) and v > peak.get(k, -math.inf):
                peak[k] = v
    return peak


def _parse_args(buf: bytes):
    """The last arguments dump as {name: value text}, the number of dumps, and its offset."""
    begin = buf.rfind(_ARGS_BEGIN)
    if begin < 0:
        return {}, 0, 0
    end = buf.find(_ARGS_END, begin)
    stop = end if end >= 0 else min(len(buf), begin + (1 << 20))
    text = buf[begin + len(_ARGS_BEGIN):stop].decode("utf-8", "replace")
    args = {m.group(1): m.group(2) for m in _ARG_LINE.finditer(text)}
    return args, buf.count(_ARGS_BEGIN), begin


def arg_value(args: dict, name: str):
    """An argument as Python: None, bool, int, float or the text as printed."""
    text = args.get(name)
    if text is None or text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def arg_int(args: dict, name: str) -> Optional[int]:
    value = arg_value(args, name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- how the log ended ---------------------------------------------------------------------


def _lines_of(buf: bytes, start: int, limit: int):
    """Up to `limit` decoded lines from offset `start`, with their start offsets."""
    out = []
    pos = start
    while pos < len(buf) and len(out) < limit:
        nl = buf.find(b"\n", pos)
        nl = len(buf) if nl < 0 else nl
        out.append((pos, buf[pos:nl].decode("utf-8", "replace").rstrip("\r")))
        pos = nl + 1
    return out


def _lines_before(buf: bytes, pos: int, count: int) -> list:
    """The `count` lines ending just before offset `pos`."""
    start = pos
    for _ in range(count):
        if start <= 0:
            break
        start = buf.rfind(b"\n", 0, start - 1) + 1
    text = buf[start:pos].decode("utf-8", "replace")
    return [line.rstrip("\r") for line in text.split("\n")[:count] if line.strip()]


@dataclass
class _Traceback:
    at: int  # offset of the "Traceback" line
    end: int  # offset just past the exception line
    exception: str  # "ValueError: message" ("" when the log ends inside the traceback)
    chained_to_next: bool = False


def _tracebacks(buf: bytes, start: int) -> list:
    """Every Python traceback from offset `start`, with its final exception line."""
    out = []
    pos = buf.find(_TRACEBACK, start)
    while pos >= 0:
        line_start = buf.rfind(b"\n", 0, pos) + 1
        head = buf[line_start:pos].decode("utf-8", "replace")
        prefix_m = _RANK_PREFIX.match(head)
        prefix = prefix_m.group(0) if prefix_m else ""
        exception, end = "", len(buf)
        for off, line in _lines_of(buf, pos, 2000)[1:]:
            # With several ranks interleaved, follow only this rank's lines.
            if prefix and not line.startswith(prefix):
                continue
            body = line[len(prefix):] if prefix else line
            body = body[1:] if prefix and body.startswith(" ") else body
            if not body.strip() or body[0] in " \t":
                continue
            if _EXCEPTION_LINE.match(body.rstrip()):
                exception, end = body.strip(), off + len(line)
                break
        out.append(_Traceback(line_start, end, exception))
        pos = buf.find(_TRACEBACK, end if exception else pos + 1)
    # Python prints chained exceptions as consecutive tracebacks joined by a marker line.
    for a, b in zip(out, out[1:]):
        between = buf[a.end:b.at].decode("utf-8", "replace")
        if any(marker in between for marker in _CHAINED) and len(between) < 4096:
            a.chained_to_next = True
    return out


def _root_cause(tracebacks: list):
    """The traceback that explains the crash: the first one that is not torchrun's wrapper,
    followed to the end of its exception chain."""
    i = 0
    while i < len(tracebacks):
        tb = tracebacks[i]
        while tb.chained_to_next and i + 1 < len(tracebacks):
            i += 1
            tb = tracebacks[i]
        if tb.exception and "ChildFailedError" not in tb.exception:
            return tb
        i += 1
    return None


def _last_iteration_before(buf: bytes, pos: int, start: int):
    """(iteration, offset) of the last iteration line before `pos`, or (None, start)."""
    p = pos
    while True:
        p = buf.rfind(b" iteration ", start, p)
        if p < 0:
            return None, start
        m = _ANCHOR.match(buf, p)
        if m:
            return int(m.group(1)), p
        # "elapsed time per iteration (ms)" etc.: keep looking further back


def _crash_phase(buf, crash_at, seg_start, args, done_at) -> tuple:
    """Where in training a crash happened, as (phase text, last iteration before it)."""
    last_it, last_at = _last_iteration_before(buf, crash_at, seg_start)
    if done_at >= 0 and done_at < crash_at:
        if _EVALUATING.search(buf, done_at, crash_at):
            return "after training, during the final evaluation", last_it
        return "after training", last_it
    if last_it is None:
        return "at start-up", None
    between = buf[last_at:crash_at]
    eval_interval = arg_int(args, "eval_interval")
    save_interval = arg_int(args, "save_interval")
    validated = re.search(rb"validation loss at iteration +%d\b" % last_it, between)
    if _EVALUATING.search(between) and not validated:
        return f"during evaluation after iteration {last_it}", last_it
    if eval_interval and last_it % eval_interval == 0 and not validated:
        # Megatron evaluates right after logging a multiple of --eval-interval; 0.19 prints
        # nothing before the validation line, so this is the only sign of an evaluation.
        return f"during evaluation after iteration {last_it}", last_it
    if _SAVING in between and _SAVED not in between.split(_SAVING)[-1]:
        return f"during the checkpoint save after iteration {last_it}", last_it
    if save_interval and last_it % save_interval == 0 and _SAVED not in between:
        return f"during the checkpoint save after iteration {last_it}", last_it
    return f"in iteration {last_it + 1}", last_it


def _find_status(buf: bytes, seg_start: int, steps: Steps, planned, args):
    """The status of the last segment (after the last arguments dump) and earlier crashes.

    Order of evidence: a worker's Python traceback; Megatron's own exit markers; NCCL / CUDA
    OOM messages and torchrun's ChildFailedError without a worker traceback; the
    `[after training is done]` marker; otherwise the log just stops.
    """
    last_it = steps.iterations[-1] if steps.iterations else None
    tracebacks = _tracebacks(buf, 0)
    earlier = [tb.exception for tb in tracebacks
               if tb.at < seg_start and tb.exception and "ChildFailedError" not in tb.exception]
    root = _root_cause([tb for tb in tracebacks if tb.at >= seg_start])
    # Training stops at whatever ends it, so end markers and fatal messages come after the
    # last iteration line; searching only from just before it keeps large logs fast. The
    # margin covers other ranks' output that lands a little before the last rank's line.
    _, last_at = _last_iteration_before(buf, len(buf), seg_start)
    tail = max(seg_start, last_at - (64 << 10))
    done_at = buf.find(_DONE, tail)

    def crashed(reason: str, at: int, exception: str, context: list) -> Status:
        phase, _ = _crash_phase(buf, at, seg_start, args, done_at)
        return Status("crashed", f"crashed {phase}: {reason}", last_it, planned, phase,
                      exception, context)

    def ended(name: str, reason: str) -> Status:
        return Status(name, reason, last_it, planned)

    if root is not None:
        tb_lines = [line for off, line in _lines_of(buf, root.at, 400) if off < root.end]
        context = _lines_before(buf, root.at, 8) + tb_lines[:1] + ["  ..."] + tb_lines[-3:]
        return crashed(root.exception, root.at, root.exception, context), earlier
    if m := _EXIT_DURATION.search(buf, tail):
        limit = args.get("exit_duration_in_mins", "?")
        return ended("time-limit", f"exited after {float(m.group(1)):.1f} min "
                     f"(--exit-duration-in-mins {limit})"), earlier
    if m := _EXIT_INTERVAL.search(buf, tail):
        return ended("exit-interval", f"exited at iteration {int(m.group(1))} "
                     f"(--exit-interval {args.get('exit_interval', '?')})"), earlier
    if m := _EXIT_SIGNAL.search(buf, tail):
        return ended("time-limit", f"exited on {m.group(1).decode()} (--exit-signal-handler, "
                     "usually the scheduler's time limit)"), earlier
    if _SLURM_TIME_LIMIT.search(buf, tail):
        return ended("time-limit", "Slurm cancelled the job at its time limit"), earlier
    child = buf.find(_CHILD_FAILED, tail)
    if done_at < 0 or child >= 0:
        nccl = [p for p in (buf.find(lit, tail) for lit in _NCCL) if p >= 0]
        oom = buf.find(_OOM, tail)
        for hit in (min(nccl, default=-1), oom):
            if hit >= 0:
                at, line = _line_at(buf, hit)
                line = _GLOG_HEADER.sub("", _strip_rank(line)).strip()
                return crashed(line, at, line, _lines_before(buf, at, 8) + [line]), earlier
    if child >= 0:
        elastic = _ELASTIC_FAILED.search(buf, tail)
        code = _CHILD_EXITCODE.search(buf, child)
        sig = _CHILD_SIGNAL.search(buf, tail)
        detail = f"exitcode {code.group(1).decode()}" if code else "worker failed"
        if sig:
            detail += f", {sig.group(2).decode()}"
        at, line = _line_at(buf, elastic.start() if elastic else child)
        context = _lines_before(buf, at, 10) + [line]
        reason = f"torchrun ChildFailedError ({detail}), no worker traceback in the log"
        return crashed(reason, at, "", context), earlier
    if done_at >= 0:
        if planned is None or (last_it is not None and last_it >= planned):
            return ended("completed", f"completed {last_it}/{planned}" if planned
                         else "completed"), earlier
        return ended("completed", f"training ended at iteration {last_it} of {planned}"), earlier
    if m := _SLURM_CANCELLED.search(buf, tail):
        return ended("running/truncated",
                     m.group(0).decode("utf-8", "replace").strip("* ")), earlier
    if not re.search(rb"\S", buf):
        reason = "empty log"
    elif last_it is None and not args:
        reason = "no Megatron output recognised"
    elif last_it is None:
        reason = "log ends before the first iteration (no end marker)"
    else:
        reason = f"log ends after iteration {last_it} of {planned or '?'} (no end marker)"
    return ended("running/truncated", reason), earlier


def _line_at(buf: bytes, pos: int):
    """(start offset, decoded text) of the line containing offset `pos`."""
    start = buf.rfind(b"\n", 0, pos) + 1
    end = buf.find(b"\n", pos)
    return start, buf[start:len(buf) if end < 0 else end].decode("utf-8", "replace").rstrip()


def _strip_rank(line: str) -> str:
    m = _RANK_PREFIX.match(line)
    return line[m.end():] if m else line
