"""The parser's faster paths give exactly the plain parse.

Each path is compared with the simplest way to the same result, over many generated logs:
a chunk with a garbled line is walked only around that line (against walking the whole chunk),
a large log is read by two processes whose second hands its rows over through shared memory
or a pipe (against one process, with the split at many lines: inside a restart, on an
arguments dump, next to a garbled line), and a segment's summed iteration time (against the
per-row formula). The logs are built from the real Megatron-Core 0.19 lines by
tests/bench/bench_report.py and spliced from the fixture logs in tests/data.
"""

import math
import operator
import random
from pathlib import Path

import pytest

from bench import bench_report
from fp8suite.logs import parse as logparse
# These tests compare the serial and the two-process parse of one launch (restarts that
# continue it included), so they read every log as one launch.
from fp8suite.logs.parse import parse_launch as parse_log

DATA = Path(__file__).parent / "data"
B11 = (DATA / "field-reports" / "B11" / "restart_gap" / "train_bf16.log").read_bytes()


def everything(log):
    """All a parse says, exactly (floats by repr, so nan and -0.0 count)."""
    st = log.status
    steps = log.steps
    return (steps.iterations, [steps.timestamp(i) for i in range(len(steps))], steps.keys(),
            {k: [repr(v) for v in steps.column(k)] for k in steps.keys()},
            steps.segment_starts, steps.nonfinite(),
            [(v.iteration, v.split, sorted(v.fields.items())) for v in log.validations],
            list(log.memory_peak_mb.items()), log.args, log.args_dumps,
            (st.name, st.reason, st.last_iteration, st.planned_iterations, st.diverged_at),
            log.restarts, log.repeated_iterations, log.garbled_lines,
            [vars(s) for s in log.segments], len(log.earlier_failures),
            log.checkpoint_loads, log.checkpoint_saves)


def generated(tmp_path, variant: str, size_mb: float = 0.15) -> bytes:
    path = tmp_path / f"{variant}.log"
    bench_report.build(path, size_mb, variant)
    return path.read_bytes()


def garble(data: bytes, rng: random.Random, n: int) -> bytes:
    """`n` iteration lines spoiled the ways other ranks' output spoils them."""
    lines = data.split(b"\n")
    anchored = [i for i, line in enumerate(lines) if b"| consumed samples:" in line]
    chosen = rng.sample(anchored, n)
    first = chosen[0]
    for i in sorted(chosen, reverse=True):
        line = lines[i]
        cut = rng.randrange(line.index(b"| consumed") + 1, len(line))  # after the anchor
        kind = "split" if i == first else rng.choice(
            ["split", "glued text", "two lines", "bad number", "prefix"])
        if kind == "split":  # another rank's line in the middle: the rest on a line of its own
            lines[i] = line[:cut] + b"[rank1]: interleaved output\n" + line[cut:]
        elif kind == "glued text":
            lines[i] = line[:cut] + b" WARNING: something |" + line[cut:]
        elif kind == "two lines" and i + 1 < len(lines):
            lines[i] = line + lines.pop(i + 1)
        elif kind == "bad number":  # the layout's pattern takes it, float() does not
            lines[i] = line.replace(b"lm loss: ", b"lm loss: 1.2.3", 1)
        else:
            lines[i] = b"[default1]:" + line
    return b"\n".join(lines)


# --- a garbled line: only its piece of the chunk is walked line by line ------------------------


@pytest.mark.parametrize("variant", ["clean", "other-order"])
@pytest.mark.parametrize("seed", range(12))
def test_narrowed_walk_gives_the_whole_chunk_walk(tmp_path, monkeypatch, variant, seed):
    """Garbled lines anywhere (chunk and piece boundaries included: small chunks and pieces
    put many of both in a small log): the rows, garbled counts and segments are those of the
    walk over every anchor of the chunk."""
    rng = random.Random(seed)
    data = garble(generated(tmp_path, variant), rng, rng.randint(1, 12))
    monkeypatch.setattr(logparse, "PARALLEL_MIN_BYTES", 1 << 40)
    monkeypatch.setattr(logparse, "_CHUNK", rng.choice([2048, 8192, 30000]))
    monkeypatch.setattr(logparse, "_PIECE", 1 << 40)  # one piece: the whole chunk is walked
    whole = everything(parse_log(data))
    monkeypatch.setattr(logparse, "_PIECE", rng.choice([512, 1024, 4096]))
    narrowed = everything(parse_log(data))
    assert narrowed == whole
    assert whole[13] > 0  # garbled lines were counted


def test_narrowed_walk_reads_a_garbled_line_split_at_a_chunk_boundary(tmp_path, monkeypatch):
    """Another rank's newline in an iteration line where a chunk ends (the first half ends
    one chunk, the rest starts the next), at many places in the line."""
    data = generated(tmp_path, "clean", 0.05)
    anchor = list(logparse.V.ANCHOR.finditer(data))[10]
    line_end = data.index(b"\n", anchor.end())
    monkeypatch.setattr(logparse, "PARALLEL_MIN_BYTES", 1 << 40)
    monkeypatch.setattr(logparse, "_CHUNK", anchor.end())  # the first chunk ends in this line
    for cut in range(anchor.end() + 1, line_end, 17):
        spoiled = data[:cut] + b"\n" + data[cut:]
        monkeypatch.setattr(logparse, "_PIECE", 1024)
        narrowed = everything(parse_log(spoiled))
        monkeypatch.setattr(logparse, "_PIECE", 1 << 40)
        assert narrowed == everything(parse_log(spoiled))
        assert narrowed[13] == 1 and int(anchor.group(1)) not in narrowed[0]


# --- two processes: the split anywhere, the rows handed over through shared memory ------------


def with_checkpoints(data: bytes) -> bytes:
    """Megatron's checkpoint save and load lines every few dozen lines."""
    lines = data.split(b"\n")
    for i in range(len(lines) - 1, 0, -37):
        lines.insert(i, b"  [2026-11-23 04:01:50.637773] successfully saved checkpoint from "
                     b"iteration %7d to /c/run [ t 1/1, gtp_remat 1/1, p 1/1 ]" % i)
        if i % 3 == 0:
            lines.insert(i, b"  successfully loaded checkpoint from /c/run [ t 1/1, "
                         b"gtp_remat 1/1, p 1/1 ] at iteration %d" % i)
    return b"\n".join(lines)


def two_process_cases(tmp_path):
    """Logs with restarts (iterations going back, new arguments dumps, another layout after a
    restart), validation, memory and checkpoint lines in both halves, and garbled lines."""
    clean = with_checkpoints(generated(tmp_path, "clean", 0.1))
    other = generated(tmp_path, "other-order", 0.1)
    bridge = clean.replace(
        b"[Rank 0] (after 1 iterations) memory (MB)",
        b"[Rank 0] memory (GB) | mem-max-allocated-gigabytes: 71.20 | "
        b"mem-max-reserved-gigabytes: 75.0 |\n[Rank 0] (after 1 iterations) memory (Mb)")
    return {
        "restarts": B11 * 6,
        "layout change": clean + other,
        "garbled": garble(clean + clean, random.Random(7), 6),
        "memory (GB) only in the second half": clean.replace(b"memory (MB)", b"memory (Mb)")
        + bridge.replace(b"memory (MB)", b"memory (Mb)"),
    }


def line_starts_near(data: bytes, marks: list, spread: int = 3) -> list:
    """Line starts around each mark offset (a few lines before and after)."""
    out = set()
    for mark in marks:
        start = data.rfind(b"\n", 0, mark) + 1
        for _ in range(spread):
            start = data.rfind(b"\n", 0, max(start - 1, 0)) + 1
        for _ in range(2 * spread + 1):
            out.add(start)
            start = data.find(b"\n", start) + 1
            if start <= 0:
                break
    return sorted(s for s in out if 0 < s < len(data) - 1)


def split_at(monkeypatch, data: bytes, line_start: int):
    """Make the two-process read split `data` at the start of the chunk that holds
    `line_start` (with one line per chunk, there)."""
    monkeypatch.setattr(logparse, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(logparse, "_CHILD_SHARE", 1 - (line_start + 0.5) / len(data))


@pytest.mark.parametrize("case", ["restarts", "layout change", "garbled",
                                  "memory (GB) only in the second half"])
def test_two_processes_give_the_serial_parse_wherever_the_split(tmp_path, monkeypatch, case):
    data = two_process_cases(tmp_path)[case]
    monkeypatch.setattr(logparse, "PARALLEL_MIN_BYTES", 1 << 40)
    serial = everything(parse_log(data))
    if case.startswith("memory"):
        assert serial[7], "the case has memory peaks"
    if case != "restarts":
        assert serial[16] and serial[17], "the case has checkpoint lines"
    # Split points: around arguments dumps, iterations that go back, garbled lines and
    # memory (GB) lines, and a few anywhere.
    dumps, goes_back, garbled, gb = [], [], [], []
    pos = data.find(logparse.V.ARGS_BEGIN)
    while pos >= 0:
        dumps.append(pos)
        pos = data.find(logparse.V.ARGS_BEGIN, pos + 1)
    offset, prev = 0, None
    for line in data.split(b"\n"):
        m = logparse.V.ANCHOR.search(line)
        if m:
            if prev is not None and int(m.group(1)) <= prev:
                goes_back.append(offset)
            prev = int(m.group(1))
        if b"[rank1]: interleaved" in line:
            garbled.append(offset)
        if b"memory (GB)" in line:
            gb.append(offset)
        offset += len(line) + 1
    rng = random.Random(case)
    marks = dumps[:3] + goes_back[:3] + garbled[:3] + gb[:2] + [
        rng.randrange(len(data)) for _ in range(3)]
    splits = []
    real_read_in_two = logparse._read_in_two
    monkeypatch.setattr(logparse, "_read_in_two",
                        lambda buf, mid, dumps: splits.append(mid) or real_read_in_two(
                            buf, mid, dumps))
    # One line per chunk puts the split at exactly those lines; larger chunks near them.
    for chunk, spread in ((1, 1), (3000, 2)):
        monkeypatch.setattr(logparse, "_CHUNK", chunk)
        monkeypatch.setattr(logparse, "PARALLEL_MIN_BYTES", 1 << 40)
        assert everything(parse_log(data)) == serial
        starts = line_starts_near(data, marks, spread)
        assert len(starts) >= 10
        for start in starts:
            split_at(monkeypatch, data, start)
            assert everything(parse_log(data)) == serial, (case, chunk, start)
            if chunk == 1:
                assert splits.pop() == start
            elif splits:  # none where the chunk that holds `start` is the first
                assert start - 6000 < splits.pop() <= start


def serial_then_two_processes(tmp_path, monkeypatch, case: str) -> tuple:
    """(log bytes, its one-process parse), with small chunks and the two-process read then
    forced for the next parse, split in the middle of the log."""
    data = two_process_cases(tmp_path)[case]
    monkeypatch.setattr(logparse, "_CHUNK", 4096)
    monkeypatch.setattr(logparse, "PARALLEL_MIN_BYTES", 1 << 40)
    serial = everything(parse_log(data))
    split_at(monkeypatch, data, data.index(b"\n", len(data) // 2) + 1)
    return data, serial


def recorded_loads(monkeypatch) -> list:
    """The type of each file the parent unpickles the child's rows from ("mmap": the shared map)."""
    loads = []
    real_load = logparse.pickle.load
    monkeypatch.setattr(logparse.pickle, "load",
                        lambda f: loads.append(type(f).__name__) or real_load(f))
    return loads


def test_the_child_scan_goes_through_the_pipe_when_the_shared_map_is_too_small(
        tmp_path, monkeypatch):
    data, serial = serial_then_two_processes(tmp_path, monkeypatch, "layout change")
    monkeypatch.setattr(logparse, "_shared_map_size", lambda n: 64)
    loads = recorded_loads(monkeypatch)
    assert everything(parse_log(data)) == serial
    assert len(loads) == 1 and loads != ["mmap"]


def test_a_failing_child_leaves_the_serial_parse(tmp_path, monkeypatch):
    """The child dies before it sends anything: the parent reads the whole log itself."""
    data, serial = serial_then_two_processes(tmp_path, monkeypatch, "restarts")

    def broken(parts):
        raise MemoryError("in the child")
    monkeypatch.setattr(logparse, "_pack", broken)
    assert everything(parse_log(data)) == serial


def test_the_shared_map_handoff_is_taken(tmp_path, monkeypatch):
    """The default path: the child's rows come through the shared map, not the pipe."""
    data, serial = serial_then_two_processes(tmp_path, monkeypatch, "restarts")
    loads = recorded_loads(monkeypatch)
    assert everything(parse_log(data)) == serial
    assert loads == ["mmap"]


# --- a segment's summed iteration time ---------------------------------------------------------


def per_row_sum(its, ms, interval):
    """The definition: each row's ms times the iterations it covers (the first row, and any
    row whose iteration does not advance, one log interval)."""
    lengths = [interval] + [b - a if b > a else interval for a, b in zip(its, its[1:])]
    try:
        summed = math.fsum(map(operator.mul, ms, lengths)) / 1000
    except (TypeError, OverflowError, ValueError):  # ValueError: inf and -inf
        summed = math.fsum(v * n for v, n in zip(ms, lengths)
                           if v is not None and math.isfinite(v) and abs(v) < 1e15) / 1000
    return summed if math.isfinite(summed) else 0.0


@pytest.mark.parametrize("seed", range(4))
def test_summed_seconds_is_the_per_row_sum(seed):
    rng = random.Random(seed)
    odd = [None, math.nan, math.inf, -math.inf, 1e308, -0.0, 0.0, 1e16, 5e-324]
    for _ in range(3000):
        interval = rng.choice([1, 1, 2, 10])
        n = rng.randint(1, 8)
        first = rng.randint(0, 50) * interval
        if rng.random() < 0.6:  # one interval apart, the usual case
            its = [first + k * interval for k in range(n)]
        else:
            its = sorted(rng.sample(range(first, first + 40), n))
        ms = [rng.choice(odd) if rng.random() < 0.2 else rng.uniform(0, 2e4) for _ in range(n)]
        assert repr(logparse._summed_seconds(its, ms, interval)) == repr(
            per_row_sum(its, ms, interval)), (its, ms, interval)


@pytest.mark.parametrize("values", [(b"inf", b"-inf"), (b"1e308", b"1e308"), (b"-inf", b"inf")])
def test_untimed_segment_with_odd_iteration_times_gets_a_span(tmp_path, values):
    """Without timestamps a segment's span is its summed iteration times: values that
    cannot be summed (inf and -inf) are left out, never raise."""
    data = generated(tmp_path, "other-order", 0.05)
    for value, near in zip(values, (20000, 30000)):
        at = data.index(b"elapsed time per iteration (ms): ", data.index(b" iteration ", near))
        end = data.index(b" |", at)
        data = data[:at] + b"elapsed time per iteration (ms): " + value + data[end:]
    log = parse_log(data)
    assert log.segments and log.segments[0].span_s is not None and log.segments[0].span_s > 0


@pytest.mark.parametrize("field", [b"| learning rate:", b"| lm loss:", b"| grad norm:"])
def test_lines_cut_after_the_same_field_are_garbled_not_a_restart(tmp_path, field):
    """Two iteration lines of one chunk cut by another rank's output right after the same
    field have the same keys, like the lines of a restart under other logging flags: they
    are still splices (other text follows their final `|`), never half-parsed rows."""
    data = generated(tmp_path, "clean", 0.1)
    anchors = list(logparse.V.ANCHOR.finditer(data))
    cut_its = []
    for m in reversed([anchors[40], anchors[90]]):
        cut = data.index(field, m.end()) + 1
        data = data[:cut] + b"[rank1]: interleaved output\n" + data[cut:]
        cut_its.append(int(m.group(1)))
    log = parse_log(data)
    assert log.garbled_lines == 2
    assert not set(cut_its) & set(log.steps.iterations)
    assert len(log.steps) == len(anchors) - 2
