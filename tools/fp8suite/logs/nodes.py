"""One run from the logs of its nodes: a run launched by hand as several nodes, joined.

A run launched by hand as NNODES > 1 nodes (its launch script started once per node with
NODE_RANK=0..NNODES-1 and no LOG_FILE) writes one log per node (`paths.attempt_log`): node 0
`<run>.log`, node k `<run>.node<k>.log` (`.1.log`, `.node<k>.1.log`, ... for later launches).
Megatron-Core prints on some ranks only (megatron/training/training.py): rank 0, on node 0,
the arguments dump, `print_datetime`'s markers (`[before the start of training step]`,
`[after training is done]`, `[exiting program ...]`) and the checkpoint lines; the last rank,
on the last node, the iteration and validation lines (`print_rank_last`); each rank that
reports memory its own `[Rank N] ... memory (MB)` line. No node's log is the run alone.

Pairing (`pair`): a node log joins the node-0 log of the same run in the same folder whose
launch it was part of: the one whose launch time overlaps it, or lies nearest to it within
SLACK_S. Launch times are the sidecars' `started`..`ended` when both logs have a sidecar, else
the logs' first..last timestamps (both in the logs' own clock), else unknown: then a node log
joins the node-0 log of the same attempt number (`RUN.node1.2.log` -> `RUN.2.log`). Each
node-0 log takes at most one log per node rank, nearest first. A node log left without a
partner is shown as a run of its own, `<run>.node<k>`, with a note.

Joining (`join`): the node logs' lines are merged into one log by time (`interleave`), as a
Slurm job's output file holds every node's lines, and parsed as one log. So the arguments come
from node 0, the iterations (and with them the runtime) from the node that logged them, the
peak memory is the largest any rank printed; the nodes' clocks are taken to agree (NTP).
Status: the joined log's, except that a crash in any node's own log makes the run crashed,
with that node's reason; the reason names the node.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..megatron import logvocab as V
from ..common import paths
from ..common import status as S
from .parse import parse_log

SLACK_S = 300.0
"""Seconds two launches' times may lie apart and still be one launch (a node that started or
stopped a little later; log timestamps only start at the first print)."""

_EDGE_BYTES = 4 << 20  # how much of a log's head and tail is searched for its time span
# A line's time: ` [2026-11-23 04:01:35.321753] iteration ...` or `[...] datetime: 2026-...`.
_STAMP = re.compile(rb"(?:\[|datetime: )(" + V.TIMESTAMP + rb")")
_LAST = b"\xff"  # after every timestamp: a log's lines after its last one


@dataclass
class Launch:
    """One log as the pairing sees it."""

    directory: str
    run: str  # the run's name (paths.log_name)
    node: int  # node rank, 0 for node 0 and for every log of a single-node launch
    attempt: int  # attempt number or job id, -1 for the first
    sidecar_span: Optional[tuple] = None  # (start, end) POSIX seconds from the sidecar
    log_span: Optional[tuple] = None  # (first, last) timestamp of the log, POSIX seconds


def launch_of(path: Path, sidecar: dict) -> Launch:
    """The Launch of the log at `path` with its sidecar ({} when none), without its log span
    (`add_log_span` reads that, for the `candidates` only)."""
    run, node, attempt = paths.log_name(path.stem)
    return Launch(str(path.parent), run, node, attempt, _sidecar_span(sidecar))


def add_log_span(launch: Launch, path: Path) -> None:
    """Fill `launch.log_span` from the first and last timestamps in the log (None when it has
    none or cannot be read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_EDGE_BYTES)
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _EDGE_BYTES))
            tail = f.read()
    except OSError:
        return
    first = _STAMP.search(head)
    last = None
    for last in _STAMP.finditer(tail):
        pass
    if first is not None and last is not None:
        a, b = _seconds(first.group(1)), _seconds(last.group(1))
        if a is not None and b is not None:
            launch.log_span = (a, max(a, b))


def _seconds(stamp: bytes) -> Optional[float]:
    try:
        return dt.datetime.fromisoformat(stamp.decode("ascii")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _sidecar_span(sidecar: dict) -> Optional[tuple]:
    def when(key):
        value = sidecar.get(key)
        if not isinstance(value, str):
            return None
        try:
            return dt.datetime.fromisoformat(value).timestamp()
        except (ValueError, OverflowError, OSError):
            return None

    start, end = when("started"), when("ended")
    if start is None:
        return None
    return start, end if end is not None and end >= start else start


def _gap(a: Launch, b: Launch) -> Optional[float]:
    """Seconds between two launches' spans (<= 0 when they overlap: minus the overlap),
    measured by one clock; None when no clock covers both."""
    for one, other in ((a.sidecar_span, b.sidecar_span), (a.log_span, b.log_span)):
        if one and other:
            return max(one[0], other[0]) - min(one[1], other[1])
    return None


def candidates(launches: list) -> set:
    """Indices of the logs pairing has to look at: node logs, and node-0 logs of a run that
    has a node log in the same folder."""
    wanted = {(x.directory, x.run) for x in launches if x.node > 0}
    return {i for i, x in enumerate(launches) if (x.directory, x.run) in wanted}


def pair(launches: list) -> tuple[dict, list]:
    """({index of a node-0 log: [indices of its node logs, by node rank]}, [indices of node
    logs with no node-0 partner]) for `launches` (one Launch per log)."""
    options = []  # (rank by closeness, node log, node-0 log)
    for j, b in enumerate(launches):
        if b.node == 0:
            continue
        for i, a in enumerate(launches):
            if a.node != 0 or (a.directory, a.run) != (b.directory, b.run):
                continue
            gap = _gap(a, b)
            if gap is None:
                if a.attempt == b.attempt:
                    options.append((SLACK_S, 0.0, j, i))
            elif gap <= SLACK_S:
                options.append((max(gap, 0.0), gap, j, i))
    options.sort()
    joined: dict = {}
    taken_logs, taken_slots = set(), set()
    for _, _, j, i in options:
        slot = (i, launches[j].node)
        if j in taken_logs or slot in taken_slots:
            continue
        taken_logs.add(j)
        taken_slots.add(slot)
        joined.setdefault(i, []).append(j)
    for i in joined:
        joined[i].sort(key=lambda j: launches[j].node)
    strays = [j for j, b in enumerate(launches) if b.node > 0 and j not in taken_logs]
    return joined, strays


# --- joining -------------------------------------------------------------------------------


def interleave(buffers: list, last_order: Optional[list] = None) -> bytes:
    """One log from several nodes' logs (bytes, node 0 first), lines merged by time.

    Each line goes at the first timestamp at or after it in its own log (so a log's order is
    kept); lines at one time go in the order of `buffers`; lines after a log's last
    timestamp go to the end, in `last_order` (indices into `buffers`; default: their order).
    """
    order = {k: n for n, k in enumerate(last_order or range(len(buffers)))}
    logs = []
    for k, buf in enumerate(buffers):
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if buf and not buf.endswith(b"\n"):
            buf += b"\n"
        keys, ends, top = [], [], b""
        for m in _STAMP.finditer(buf):
            end = buf.find(b"\n", m.end())
            end = len(buf) if end < 0 else end + 1
            if ends and end <= ends[-1]:
                continue  # a second timestamp on the line
            top = max(top, m.group(1))  # never back: the log's own order stands
            keys.append(top)
            ends.append(end)
        if not ends or ends[-1] < len(buf):
            keys.append(_LAST + bytes([min(order.get(k, k), 254)]))
            ends.append(len(buf))
        logs.append((buf, keys, ends))
    pos, start, out = [0] * len(logs), [0] * len(logs), []
    while True:
        live = [k for k, (_, keys, _) in enumerate(logs) if pos[k] < len(keys)]
        if not live:
            break
        k = min(live, key=lambda k: (logs[k][1][pos[k]], k))
        buf, keys, ends = logs[k]
        others = [(logs[j][1][pos[j]], j) for j in live if j != k]
        if others:
            bound, j = min(others)
            # Blocks before the other logs' next one (at the same time: the earlier log first).
            stop = (bisect.bisect_right if k < j else bisect.bisect_left)(keys, bound, pos[k])
            stop = max(stop, pos[k] + 1)
        else:
            stop = len(keys)
        out.append(buf[start[k]:ends[stop - 1]])
        start[k], pos[k] = ends[stop - 1], stop
    return b"".join(out)


def join(parts: list) -> tuple:
    """(the run's ParsedLog, notes) from its nodes' logs: `parts` is [(node rank, bytes,
    sidecar dict)], node 0 first. Never raises on content (parse_log's promise)."""
    ended = [(_sidecar_span(side) or (None, None))[1] for _, _, side in parts]
    last_order = sorted(range(len(parts)), key=lambda k: (ended[k] is None, ended[k] or 0, k)) \
        if all(e is not None for e in ended) else None
    log = parse_log(interleave([data for _, data, _ in parts], last_order))
    # Each node's own status, for the crashes in it; a log with no word of a failure (most
    # of them: the iteration lines) cannot have crashed and is not parsed twice.
    own = [(node, parse_log(data).status) for node, data, _ in parts if _may_crash(data)]
    log.status = _status(log.status, own)
    notes = []
    code0 = parts[0][2].get("exit_code")
    for node, _, side in parts[1:]:
        code = side.get("exit_code")
        if isinstance(code, int) and not isinstance(code, bool) and code not in (0, code0):
            notes.append(f"node {node} exited with code {code} (its sidecar)")
    return log, notes


def joined_sidecar(sidecars: list) -> dict:
    """The sidecar of a joined launch: node 0's ([(node rank, sidecar dict)], node 0 first),
    with the first non-zero exit code of any node when node 0's is 0 or missing."""
    side = dict(sidecars[0][1])
    if not side.get("exit_code"):
        for _, other in sidecars[1:]:
            code = other.get("exit_code")
            if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                side["exit_code"] = code
                break
    return side


# Every sign of a crash endstatus reads contains one of these (tracebacks, exception lines,
# CUDA OOM, NCCL, torchrun's report, Slurm's node failure).
_CRASH_WORDS = (V.TRACEBACK, b"Error", b"Exception", b"Interrupt", b"error", V.OOM, *V.NCCL,
                V.CHILD_FAILED, b"NODE_FAIL")


def _may_crash(data: bytes) -> bool:
    return any(word in data for word in _CRASH_WORDS)


def _status(joined, own: list):
    """The joined log's status, or a node's crash (see the module doc), naming the node."""
    crashed = [(node, st) for node, st in own if st.name == S.CRASHED]
    if joined.name == S.DIVERGED or not crashed:
        return joined
    if joined.name == S.CRASHED:
        node = next((n for n, st in crashed if st.exception and st.exception == joined.exception),
                    crashed[0][0])
        base = joined
    else:
        node, base = crashed[0]
        base = dataclasses.replace(base, last_iteration=joined.last_iteration,
                                   planned_iterations=joined.planned_iterations
                                   or base.planned_iterations)
    head = S.CRASHED
    reason = base.reason
    reason = f"{head} on node {node}{reason[len(head):]}" if reason.startswith(head) \
        else f"{head} on node {node}: {reason}"
    others = [f"node {n}: {st.reason}" for n, st in crashed if n != node]
    notes = list(base.notes) + ([f"also crashed: {'; '.join(others)}"] if others else [])
    return dataclasses.replace(base, name=S.CRASHED, reason=reason, notes=notes)


def stray_note(run: str, node: int) -> str:
    """The note on a node log with no node-0 log of the same launch beside it."""
    return (f"node {node}'s log of run {run}, launched by hand as several nodes, with no "
            f"node-0 log of the same launch beside it: shown alone (Megatron prints the "
            f"arguments on node 0, so figures that need them are blank)")


def missing_nodes_note(sidecar: dict) -> str:
    """The note on a node-0 log whose sidecar says it was one of NNODES > 1 launches by hand
    (no Slurm job) when no other node's log joined it; "" otherwise."""
    env = (sidecar.get("overrides") or {}).get("env") if isinstance(sidecar.get("overrides"),
                                                                  dict) else None
    if not isinstance(env, dict) or sidecar.get("slurm_job_id") or env.get("LOG_FILE"):
        return ""
    try:
        nnodes = int(env.get("NNODES", "1"))
    except ValueError:
        return ""
    if nnodes <= 1:
        return ""
    return (f"node 0 of a launch on {nnodes} nodes (NNODES={nnodes} in its sidecar); no other "
            f"node's log (<run>.node<k>.log) of the same launch was found beside it, so the "
            f"iterations the last node logged are missing")
