"""Each kind of log the report must read right, with many generated cases per kind.

Cases are built from the fixture logs in tests/data (real Megatron-Core 0.19 logs and the field
reports, in Megatron's real line formats): launcher prefixes applied to every fixture, NaN
written every way Megatron writes it, derivative fields, glued lines, Slurm's endings, restarts
with clock steps, and files that must not stop the report.
"""

import json
import random
import re
import time
from datetime import datetime
from pathlib import Path

import pytest

import report
from fp8suite.logs import endstatus
from fp8suite.megatron import logvocab
from fp8suite.logs import runs
from fp8suite.common import status
from fp8suite.logs.parse import parse_log

DATA = Path(__file__).parent / "data"
FIXTURE_LOGS = sorted(p for p in DATA.rglob("*.log"))
B02_BF16 = (DATA / "field-reports" / "B02" / "nan_loss" / "bf16.log").read_bytes()


def signature(log):
    """What a parse says, for comparing two parses of the same content."""
    st = log.status
    return (log.steps.iterations,
            {k: [repr(v) for v in log.steps.column(k)] for k in log.steps.keys()},
            log.args, st.name, st.reason, st.last_iteration, st.planned_iterations,
            st.diverged_at, log.garbled_lines, log.restarts, log.repeated_iterations,
            log.memory_peak_mb, [(s.first_iteration, s.last_iteration, s.rows)
                                 for s in log.segments])


def lines_of(data: bytes) -> list:
    return data.split(b"\n")


# --- 1. launcher prefixes ----------------------------------------------------------------------

PREFIXES = [b"[default0]:", b"[default7]:", b"[rank0]: ", b"[rank12]:", b"[default3]:[rank3]: ",
            b" 5: ", b"15: ", b"  0: ", b"127: ", b" 3: [default3]:[rank3]: ",
            b"[rank1]: [rank1]: [rank1]: ", b"[default1]:[default1]:", b"[trainer2]:"]


@pytest.mark.parametrize("log", FIXTURE_LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_prefix_style_gives_the_same_parse(log):
    data = log.read_bytes()
    plain = signature(parse_log(data))
    for prefix in PREFIXES:
        prefixed = b"\n".join(prefix + line if line else line for line in lines_of(data))
        assert signature(parse_log(prefixed)) == plain, prefix
    # Mixed: each line with a random stack of 0-3 prefixes.
    rnd = random.Random(log.name)
    mixed = b"\n".join(b"".join(rnd.choice(PREFIXES) for _ in range(rnd.randint(0, 3))) + line
                       if line else line for line in lines_of(data))
    assert signature(parse_log(mixed)) == plain


@pytest.mark.parametrize("log", FIXTURE_LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reasons_carry_no_prefix_or_c10_header(log):
    data = log.read_bytes()
    for prefix in PREFIXES:
        prefixed = b"\n".join(prefix + line if line else line for line in lines_of(data))
        st = parse_log(prefixed).status
        for text in [st.reason, st.exception]:
            assert not re.search(r"\[(rank|default|trainer)\d+\]:", text), (prefix, text)
            assert not re.search(r"\[?[EWIF]\d{3,4} \d\d:\d\d:\d\d", text), (prefix, text)


@pytest.mark.parametrize("header", [
    b"[E302 09:10:00.153 4246 ProcessGroupNCCL.cpp:1895] ",
    b"[E1123 04:10:00.123456 4246 ProcessGroupNCCL.cpp:632] ",
    b"[W302 9:10:00.153000 ProcessGroupNCCL.cpp:1895] ".replace(b" 9:", b" 09:"),
    b"E0302 09:02:10.000000 4200 torch/distributed/elastic/multiprocessing/api.py:874] ",
    b"[F1201 23:59:59.000001 1 c10/util/Logging.cpp:1] ",
])
@pytest.mark.parametrize("prefix", [b"", b"[rank4]:", b"[default4]:[rank4]: ", b" 4: "])
def test_c10_header_never_stays_in_a_reason(header, prefix):
    cut = B02_BF16[:B02_BF16.index(iteration_lines(B02_BF16)[8])]
    line = (prefix + header + b"[PG ID 0 PG GUID 0(default_pg) Rank 4] Process group watchdog "
            b"thread terminated with exception: NCCL error: remote process exited\n")
    st = parse_log(cut + line).status
    assert st.name == "crashed"
    assert st.reason.startswith("crashed in iteration 8: [PG ID 0"), st.reason
    assert logvocab.strip_prefixes((prefix + header).decode() + "x") == "x"


# --- 2. non-finite training --------------------------------------------------------------------


def iteration_lines(data: bytes) -> dict:
    out = {}
    for line in lines_of(data):
        m = logvocab.ANCHOR.search(line)
        if m:
            out[int(m.group(1))] = line
    return out


def from_iteration(data: bytes, k: int, change) -> bytes:
    lines = iteration_lines(data)
    for it, line in lines.items():
        if it >= k:
            data = data.replace(line, change(line))
    return data


def sub_field(key: bytes, value: bytes):
    return lambda line: re.sub(rb"\| " + re.escape(key) + rb": +[^|]*\|",
                               b"| " + key + b": " + value + b" |", line)


NAN_CHANGES = {
    "lm loss left out": lambda line: re.sub(rb" lm loss: [^|]*\|", b"", line),
    **{f"lm loss {v}": sub_field(b"lm loss", v.encode())
       for v in ("nan", "NAN", "NaN", "inf", "INF", "-inf", "Infinity")},
    **{f"grad norm {v}": sub_field(b"grad norm", v.encode()) for v in ("nan", "inf", "-inf")},
    "both": lambda line: sub_field(b"grad norm", b"nan")(re.sub(rb" lm loss: [^|]*\|", b"", line)),
    "nan iterations": sub_field(b"number of nan iterations", b"  1"),
    "loss scale collapse": sub_field(b"loss scale", b"0.0"),
    "loss scale inf": sub_field(b"loss scale", b"inf"),
}


@pytest.mark.parametrize("k", [2, 9, 31, 50])
@pytest.mark.parametrize("how", sorted(NAN_CHANGES))
def test_non_finite_training_is_diverged_from_its_iteration(how, k):
    log = parse_log(from_iteration(B02_BF16, k, NAN_CHANGES[how]))
    assert log.status.name == "diverged", log.status.reason
    assert log.status.diverged_at == k
    assert f"iteration {k}" in log.status.reason


@pytest.mark.parametrize("k", [3, 20, 45])
def test_dynamic_loss_scale_collapse(k):
    """The dynamic scale collapses when it reaches its minimum (--min-loss-scale, 1.0), or
    keeps falling while every step is skipped to the end; a fall with real steps is the
    scaler at work (fp16's start-up search halves it from 2^32 to about 2^18)."""
    data = from_iteration(B02_BF16, 1, sub_field(b"loss scale", b"65536.0"))
    collapsed = from_iteration(data, k, sub_field(b"loss scale", b"1.0"))
    log = parse_log(collapsed)
    assert log.status.name == "diverged" and log.status.diverged_at == k
    assert "loss scale collapsed from 65536 to 1" in log.status.reason
    fallen = from_iteration(data, k, sub_field(b"loss scale", b"16.0"))
    assert parse_log(fallen).status.name == "completed"
    # Falling while every step is skipped, to the end of the log: no step moves any more.
    lines = iteration_lines(data)
    for j, it in enumerate(sorted(i for i in lines if i >= k)):
        line = sub_field(b"loss scale", b"%.1f" % (65536.0 - 1000 * (j + 1)))(lines[it])
        data = data.replace(lines[it], sub_field(b"number of skipped iterations", b"  1")(line))
    log = parse_log(data)
    if 50 - k + 1 >= 3:
        assert log.status.name == "diverged" and log.status.diverged_at == k
        assert f"every step skipped from iteration {k} on" in log.status.reason


NAN_MESSAGES = [
    b"Unexpected result nan on rank 3 at iteration #{k} invocation #1 (message='found NaN in "
    b"local grad norm for bucket #0 in backward pass before data-parallel communication "
    b"collective')",
    b"Rank 3, node node-a, device 3, iteration {k}: Unexpected result inf (message='found Inf in "
    b"local grad norm for bucket #2 in backward pass before data-parallel communication "
    b"collective')",
    b"Rank 0, node node-a, device 0, iteration #{k}: Unexpected result nan (message='loss is NaN')",
]


@pytest.mark.parametrize("code", [16, 17])
@pytest.mark.parametrize("message", NAN_MESSAGES)
@pytest.mark.parametrize("prefix", [b"", b"[rank3]: ", b"[default3]:", b" 3: "])
def test_nan_check_exit_without_traceback(message, code, prefix):
    k = 31
    cut = B02_BF16[:B02_BF16.index(iteration_lines(B02_BF16)[k])]
    tail = (prefix + b"WARNING:megatron.core.rerun_state_machine:"
            + message.replace(b"{k}", str(k).encode()) + b"\n"
            + prefix + b"WARNING:megatron.core.rerun_state_machine:Exiting now. A checkpoint at "
            b"the last iteration already exists if further examination is needed\n"
            + b"E0302 09:02:10.000000 4200 torch/distributed/elastic/multiprocessing/api.py:874]"
            b" failed (exitcode: %d) local_rank: 3 (pid: 4242) of binary: /usr/bin/python3\n" % code
            + b"torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
            + b"  exitcode  : %d (pid: 4242)\n" % code)
    st = parse_log(cut + tail).status
    assert st.name == "diverged" and st.diverged_at == k, st.reason
    assert f"(exit code {code})" in st.reason and "iteration 31" in st.reason


@pytest.mark.parametrize("code", [16, 17])
def test_nan_check_exit_code_alone_is_divergence(code):
    cut = B02_BF16[:B02_BF16.index(iteration_lines(B02_BF16)[20])]
    tail = (b"E0302 09:02:10.000000 4200 torch/distributed/elastic/multiprocessing/api.py:874]"
            b" failed (exitcode: %d) local_rank: 0 (pid: 4242) of binary: /usr/bin/python3\n" % code
            + b"torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
            + b"  exitcode  : %d (pid: 4242)\n" % code)
    st = parse_log(cut + tail).status
    assert st.name == "diverged" and st.diverged_at == 20 and f"exit code {code}" in st.reason
    # Any other exit code is a crash.
    assert parse_log(cut + tail.replace(b"%d" % code, b"1")).status.name == "crashed"


def test_exit_code_16_or_17_of_a_log_that_just_stops():
    from fp8suite.report import metrics
    for code in logvocab.NAN_EXIT_CODES:
        name, reason = metrics.with_exit_code("running/truncated", "log ends", code)
        assert name == "diverged" and str(code) in reason


@pytest.mark.parametrize("log", FIXTURE_LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_false_divergence(log):
    st = parse_log(log.read_bytes()).status
    assert (st.name == "diverged") == (log.name == "fp8_delayed.log"), st.reason


# --- 3. open line grammar ----------------------------------------------------------------------

DERIVED = [b"elapsed time: 1d 6h 54m 11s", b"remaining time: 0m 0s", b"eta: n/a",
           b"memory(GiB): 72.89", b"tokens per sec per gpu: 1234.5", b"phase: warmup",
           b"elapsed time: 1m 25s"]


@pytest.mark.parametrize("position", [1, 2, 4, 7, -1])
def test_derivative_fields_are_ignored_and_numeric_fields_kept(position):
    plain = parse_log(B02_BF16)
    for extra in DERIVED:
        def add(line, extra=extra):
            fields = line.split(b" |")
            at = position if position >= 0 else len(fields) - 1
            return b" |".join(fields[:at] + [b" " + extra] + fields[at:])
        log = parse_log(from_iteration(B02_BF16, 1, add))
        assert log.garbled_lines == 0, extra
        assert log.steps.iterations == plain.steps.iterations
        assert log.steps.column("lm loss") == plain.steps.column("lm loss")
        assert log.steps.column("elapsed time per iteration (ms)") == plain.steps.column(
            "elapsed time per iteration (ms)")
        assert log.status.name == "completed"


def field_bounds(line: bytes) -> list:
    """Offsets just after each ' |' of an iteration line (field boundaries)."""
    return [m.end() for m in re.finditer(rb" \|", line)]


def test_glued_lines_are_skipped_never_half_parsed():
    its = iteration_lines(B02_BF16)
    truth = parse_log(B02_BF16).steps
    loss_of = dict(zip(truth.iterations, truth.column("lm loss")))
    ms_of = dict(zip(truth.iterations, truth.column("elapsed time per iteration (ms)")))
    cases = 0
    for k in (10, 20, 30):
        a, b = its[k], its[k + 1]
        for i, c in enumerate(field_bounds(a)[:-1]):
            for j, d in enumerate(field_bounds(b)[:-1]):
                if i == j:
                    continue  # a splice at the same field gives a line of the same keys
                glued = a[:c] + b[d:]
                data = B02_BF16.replace(a, glued)
                log = parse_log(data)
                row = dict(zip(log.steps.iterations, log.steps.column("lm loss")))
                ms = dict(zip(log.steps.iterations,
                              log.steps.column("elapsed time per iteration (ms)")))
                # Iteration k is either skipped as garbled, or its numbers are all its own
                # (only when the splice happens to give back exactly its own fields).
                if k in row:
                    assert ms[k] == ms_of[k] and row[k] in (loss_of[k], None) or glued == a
                    if row[k] is None:
                        # lm loss may be left out only as Megatron does: nothing else missing
                        assert b"lm loss" not in glued
                else:
                    assert log.garbled_lines == 1
                assert log.status.name != "diverged" or b"lm loss" not in glued, glued
                cases += 1
    assert cases > 100


@pytest.mark.parametrize("k", [5, 25, 49])
def test_interleaved_rank_output_inside_a_line(k):
    line = iteration_lines(B02_BF16)[k]
    for cut in range(20, len(line) - 5, 23):
        for junk in (b"[rank1]: some warning\n", b"WARNING: a: b\n",
                     iteration_lines(B02_BF16)[k + 1 if k < 50 else 1] + b"\n"):
            data = B02_BF16.replace(line, line[:cut] + junk + line[cut:], 1)
            log = parse_log(data)
            assert log.status.name == "completed"
            truth = dict(zip(*[parse_log(B02_BF16).steps.iterations,
                               parse_log(B02_BF16).steps.column("lm loss")]))
            for it, loss in zip(log.steps.iterations, log.steps.column("lm loss")):
                assert loss == truth[it]


@pytest.mark.parametrize("ending", [b"\r\n", b"\r", b"\n\r"])
@pytest.mark.parametrize("log", FIXTURE_LOGS[:6], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cr_and_crlf_line_ends(log, ending):
    data = log.read_bytes()
    assert signature(parse_log(data.replace(b"\n", ending))) == signature(parse_log(data))


def test_parse_time_is_linear_for_cr_only_logs():
    """A 20 MB log with CR-only line ends parses as fast as with LF ones (no quadratic scan)."""
    block = B02_BF16.replace(b"\n", b"\r")
    n = 20_000_000 // len(block)
    big = block * n
    t0 = time.perf_counter()
    log = parse_log(big)
    elapsed = time.perf_counter() - t0
    # Each copy is a fresh launch (a dump, iteration 1, no checkpoint): one attempt each.
    assert len(log.steps) == 50 and len(log.earlier_launches) == n - 1
    assert elapsed < 10, f"{elapsed:.1f} s for 20 MB"


@pytest.mark.parametrize("value, gib", [(b"71.20", 71.2e9 / 2**30), (b"140.01", 140.01e9 / 2**30)])
def test_megatron_bridge_memory_lines(value, gib):
    line = (b"[Rank 0] memory (GB) | mem-allocated-gigabytes: 50.1 | mem-max-allocated-gigabytes: "
            + value + b" | mem-reserved-gigabytes: 60.0 | mem-max-reserved-gigabytes: 75.0 |\n")
    log = parse_log(B02_BF16.replace(b"[Rank 0] (after", b"[Rank 9] (before") + line)
    assert log.memory_peak_mb["max allocated"] / 1024 == pytest.approx(gib)
    assert log.memory_peak_mb["max reserved"] / 1024 == pytest.approx(75e9 / 2**30)


# --- 4. order of evidence ----------------------------------------------------------------------

B07 = (DATA / "field-reports" / "B07" / "slurm_timelimit" / "train_bf16.812345.log").read_bytes()
B07_CUT = B07[:B07.index(b"slurmstepd:")]
SIGNAL_TB = B07[B07.index(b"W0302 09:02:10.100000"):B07.index(b"srun: Job step aborted")]


@pytest.mark.parametrize("what", ["JOB 812345", "STEP 812345.0", "JOB 812345_7", "STEP 9.batch"])
@pytest.mark.parametrize("due, name, words", [
    (b" DUE TO TIME LIMIT", "time-limit", "at its time limit"),
    (b" DUE TO PREEMPTION", "cancelled", "preempted"),
    (b"", "cancelled", "cancelled the job"),
    (b" DUE TO NODE FAILURE", "crashed", "node failure"),
])
@pytest.mark.parametrize("launcher_tb", [False, True])
def test_slurm_lines_decide_before_launcher_tracebacks(what, due, name, words, launcher_tb):
    line = (b"slurmstepd: error: *** " + what.encode() + b" ON node-a CANCELLED AT "
            b"2026-03-02T09:02:10" + due + b" ***\n")
    data = B07_CUT + line + (SIGNAL_TB if launcher_tb else b"")
    st = parse_log(data).status
    assert st.name == name, st.reason
    assert words in st.reason and "SignalException" not in st.reason


def test_cancelled_by_user_without_due():
    data = B07_CUT + b"slurmstepd: error: *** JOB 812345 ON node-a CANCELLED AT 2026-03-02T09:02:10 ***\n"
    assert parse_log(data).status.name == "cancelled"


def test_launcher_signal_without_slurm_is_no_crash():
    st = parse_log(B07_CUT + SIGNAL_TB).status
    assert st.name == "cancelled" and "signal" in st.reason


@pytest.mark.parametrize("trouble", [
    b"[rank0]: Traceback (most recent call last):\n[rank0]:   File \"x.py\", line 1, in <module>\n"
    b"[rank0]: torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1\n",
    b"[rank1]:[E302 09:02:00.000 4246 ProcessGroupNCCL.cpp:1895] NCCL error: unhandled system error\n",
    b"Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
    b"RuntimeError: destroy_process_group failed\n",
])
def test_abort_at_teardown_after_all_iterations_is_completed_with_a_note(trouble):
    st = parse_log(B02_BF16 + trouble).status
    assert st.name == "completed" and st.reason == "completed 50/50"
    assert st.notes and "teardown" in st.notes[0]


def test_startup_failure_reason_is_the_last_exception():
    cut = B02_BF16[:B02_BF16.index(b"training ...")]
    for exc in (b"ModuleNotFoundError: No module named 'transformer_engine'",
                b"ImportError: cannot import name 'x' from 'y'"):
        st = parse_log(cut + exc + b"\n").status
        assert st.name == "crashed" and exc.decode() in st.reason


# --- 5. segments -------------------------------------------------------------------------------

B11 = (DATA / "field-reports" / "B11" / "restart_gap" / "train_bf16.log").read_bytes()


def relaunch(data: bytes, resume_at: int, stop_at: int, shift_s: float) -> bytes:
    """The log's start-up again, then its iterations resume_at..stop_at shifted by shift_s."""
    from datetime import datetime, timedelta
    head = data[:data.index(b"training ...")]
    out = []
    for it, line in iteration_lines(data).items():
        if resume_at <= it <= stop_at:
            ts = re.search(rb"\[(\d{4}-[^\]]+)\]", line).group(1)
            new = datetime.fromisoformat(ts.decode()) + timedelta(seconds=shift_s)
            out.append(line.replace(ts, new.isoformat(" ", "microseconds").encode()))
    return head + b"training ...\n" + b"\n".join(out) + b"\n"


@pytest.mark.parametrize("restarts", [1, 2, 4])
@pytest.mark.parametrize("shift", [6 * 3600.0, 30.0, -3600.0, -86400.0])
def test_runtime_is_the_sum_of_segments_whatever_the_clock(restarts, shift):
    """Each relaunch repeats 3 iterations; a negative shift is a clock stepped back."""
    per = 50 // (restarts + 1)
    data = B02_BF16[:B02_BF16.index(iteration_lines(B02_BF16)[per + 1])]
    for r in range(1, restarts + 1):
        lo, hi = r * per - 2, min(50, (r + 1) * per) if r < restarts else 50
        data += relaunch(B02_BF16, lo, hi, shift * r)
    data += b"[after training is done] datetime: 2026-03-03 09:01:27.523456 \n"
    log = parse_log(data)
    assert log.status.name == "completed" and log.status.last_iteration == 50
    assert len(log.segments) == restarts + 1 and log.restarts == restarts
    assert log.repeated_iterations == 3 * restarts
    spans = [s.span_s for s in log.segments]
    assert all(s is not None and s > 0 for s in spans)
    # Each segment's span is its own stretch of the original log, whatever the shift.
    truth = parse_log(B02_BF16)
    ts = {it: datetime.fromisoformat(truth.steps.timestamp(i))
          for i, it in enumerate(truth.steps.iterations)}
    ms = dict(zip(truth.steps.iterations, truth.steps.column("elapsed time per iteration (ms)")))
    expected = [(ts[s.last_iteration] - ts[s.first_iteration]).total_seconds()
                + ms[s.first_iteration] / 1000 for s in log.segments]
    assert spans == pytest.approx(expected)
    down = [s.downtime_before_s for s in log.segments[1:]]
    if shift > 0:
        assert all(d is not None and d >= 0 for d in down)
    else:
        assert all(d is None for d in down)


@pytest.mark.parametrize("step", [-60.0, -3600.0, -86400.0])
def test_a_clock_step_back_inside_a_segment_never_gives_a_negative_runtime(step):
    its = iteration_lines(B02_BF16)
    data = B02_BF16[:B02_BF16.index(its[26])] + relaunch(B02_BF16, 26, 50, step).split(
        b"training ...\n", 1)[1] + b"[after training is done] datetime: x \n"
    log = parse_log(data)
    assert len(log.segments) == 1 and log.status.name == "completed"
    (seg,) = log.segments
    assert seg.span_s is not None and seg.span_s > 0
    assert seg.span_from == "sum of iteration times"


def test_status_and_last_iteration_come_from_the_last_segment():
    first = B02_BF16  # completed 50/50
    second = relaunch(B02_BF16, 40, 44, 7200)  # resumed, then cut off at 44
    st = parse_log(first + second).status
    assert st.name == "running/truncated" and st.last_iteration == 44


# --- 6. no file stops the report ---------------------------------------------------------------


def test_bad_files_are_notes_and_other_runs_are_reported(tmp_path, monkeypatch, capsys):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "bf16.log").write_bytes(B02_BF16)
    # Values whose sums overflow.
    (d / "huge_values.log").write_bytes(from_iteration(
        B02_BF16, 1, sub_field(b"elapsed time per iteration (ms)", b"1.7e308")))
    # A huge integer in the arguments dump.
    (d / "huge_int.log").write_bytes(re.sub(rb"(  global_batch_size \.+ )\d+",
                                            rb"\g<1>" + b"9" * 5000, B02_BF16))
    (d / "huge_seq.log").write_bytes(re.sub(rb"(  seq_length \.+ )\d+",
                                            rb"\g<1>" + b"9" * 400, B02_BF16))
    # A deeply nested sidecar.
    (d / "nested.log").write_bytes(B02_BF16)
    (d / "nested.meta.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "nested_env.log").write_bytes(B02_BF16)
    (d / "nested_env.meta.json").write_text(
        '{"environment": {"gpu": ' + "[" * 500 + "]" * 500 + "}}")
    # An unreadable log.
    (d / "unreadable.log").write_bytes(B02_BF16)
    real_read = runs.read_log

    def read_log(path):
        if Path(path).name == "unreadable.log":
            raise PermissionError(13, "Permission denied")
        return real_read(path)
    monkeypatch.setattr(runs, "read_log", read_log)
    assert report.main([str(d), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    by = {r["name"]: r for r in data["runs"]}
    assert set(by) == {"bf16", "huge_values", "huge_int", "huge_seq", "nested", "nested_env",
                       "unreadable"}
    assert by["unreadable"]["status"] == "unreadable"
    assert "Permission denied" in by["unreadable"]["reason"]
    assert any("sidecar nested.meta.json unreadable" in n for n in by["nested"]["notes"])
    assert by["bf16"]["status"] == "completed" and by["bf16"]["median_iteration_ms"] == 1799.6
    text = (tmp_path / "out" / "report.md").read_text()
    assert "internal error" not in text


# --- 9. results as data, 10. rough edges -------------------------------------------------------


def test_summary_files_hold_every_documented_field(tmp_path, capsys):
    from fp8suite.report import summary
    report.main([str(DATA / "field-reports" / "B02"), "--out", str(tmp_path)])
    capsys.readouterr()
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["schema_version"] == summary.SCHEMA_VERSION
    required = ("name", "label", "status", "reason", "iterations_done", "iterations_planned",
                "runtime_s", "median_iteration_ms", "tokens_per_s_per_gpu", "tflops_per_gpu",
                "mfu", "peak_allocated_gib", "min_loss", "final_loss", "baseline", "speedup",
                "attempts")
    for r in data["runs"]:
        assert set(required) <= set(r) and set(r) == set(summary.RUN_FIELDS)
    for c in data["comparisons"]:
        assert set(c) == set(summary.COMPARISON_FIELDS)
    head = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert tuple(head) == summary.RUN_FIELDS
    def no_constant(name):
        raise AssertionError(f"{name} in summary.json")
    json.loads((tmp_path / "summary.json").read_text(), parse_constant=no_constant)


def test_stale_plots_are_removed_and_others_kept(tmp_path, capsys):
    out = tmp_path / "out"
    report.main([str(DATA / "field-reports" / "B02"), "--out", str(out)])
    before = {p.name for p in out.glob("*.png")}
    (out / "mine.png").write_bytes(b"not the report's")
    report.main([str(DATA / "field-reports" / "B04"), "--out", str(out)])
    capsys.readouterr()
    after = {p.name for p in out.glob("*.png")}
    assert not (before & after) and "mine.png" in after
    text = (out / "report.md").read_text()
    assert all(name in text for name in after - {"mine.png"})


def test_unknown_baseline_lists_the_valid_names(capsys):
    assert report.main([str(DATA / "field-reports" / "B02"), "--out", "/nonexistent/x",
                        "--baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert "valid: bf16, fp8_delayed" in err and err.count("\n") == 1


def test_reference_without_a_matching_group_says_so(tmp_path, capsys):
    ref = tmp_path / "ref.yaml"
    ref.write_text("source: a paper\nurl: https://example.org/p\nrecorded: 2026-01-02\n"
                   "shape: {num_layers: 99}\nrows:\n"
                   "  - {label: BF16, precision: bf16, tokens_per_s_gpu: 1000}\n")
    assert report.main([str(DATA / "field-reports" / "B02"), "--out", str(tmp_path / "o"),
                        "--reference", str(ref)]) == 0
    assert "no comparison group has its model shape (num_layers 99)" in capsys.readouterr().err


def test_reports_show_no_absolute_paths(tmp_path, capsys):
    out = tmp_path / "out"
    assert report.main([str(DATA.resolve() / "real_h200x2"), "--out", str(out)]) == 0
    capsys.readouterr()
    for name in ("report.md", "summary.json", "summary.csv"):
        text = (out / name).read_text()
        assert str(DATA.resolve()) not in text and "/home/" not in text, name
        assert not re.search(r"(?<![\w.…])/(?:usr|workspace|root|tmp|opt)/\w", text), name


def test_status_table_maps_every_log_status():
    assert set(status.RUN_STATE) == set(status.LOG_STATUSES)
    from fp8suite.launch import runstate
    assert set(status.RUN_STATE.values()) <= set(runstate.STATES)
    assert status.run_state("time-limit") == "time-limited"
    with pytest.raises(KeyError, match="valid: completed"):
        status.run_state("exploded")


def test_attempt_names():
    assert runs.attempt_of("train_bf16.812345") == ("train_bf16", 812345)
    assert runs.attempt_of("train_bf16") == ("train_bf16", -1)
    assert runs.attempt_of("a.b.1") == ("a.b", 1)


def test_endstatus_is_the_only_reader_of_end_markers():
    """The log vocabulary has one home: no other module restates a key or marker pattern."""
    tools = Path(__file__).resolve().parents[1] / "tools" / "fp8suite"
    for name in ("logs/parse.py", "logs/endstatus.py", "logs/tail.py", "report/metrics.py",
                 "report/markdown.py", "report/compare.py", "report/plots.py"):
        text = (tools / name).read_text()
        for word in ("after training is done", "elapsed time per iteration (ms)",
                     "exiting program", "CANCELLED AT", "end of arguments"):
            if word in text:
                # only inside docstrings/comments: not as a pattern or key literal
                code = re.sub(r'"""[\s\S]*?"""|#[^\n]*', "", text)
                assert word not in code, (name, word)
    assert endstatus.find_status


def test_sidecar_records_the_cuda_versions(tmp_path, monkeypatch):
    from fp8suite.launch import sidecar

    class Done:
        stdout = "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0 |"
    monkeypatch.setattr(sidecar.subprocess, "run", lambda *a, **k: Done())
    monkeypatch.setattr(sidecar, "describe", lambda: {"torch": "2.11.0", "cuda": "13.0"})
    data = sidecar.start(tmp_path / "r.meta.json", "r", "s.sh", "m.yaml", "r.log", [], [])
    assert data["environment"]["cuda"] == "13.0" and data["environment"]["cuda_driver"] == "13.0"

    def missing(*a, **k):
        raise FileNotFoundError("nvidia-smi")
    monkeypatch.setattr(sidecar.subprocess, "run", missing)
    data = sidecar.start(tmp_path / "r.meta.json", "r", "s.sh", "m.yaml", "r.log", [], [])
    assert data["environment"]["cuda_driver"] is None


@pytest.mark.parametrize("variant", ["clean", "garbled", "other-order", "restarts", "prefixed"])
def test_two_process_scan_gives_the_serial_parse(tmp_path, monkeypatch, variant):
    from bench import bench_report
    from fp8suite.logs import parse as logparse
    path = tmp_path / "big.log"
    if variant in ("clean", "garbled", "other-order"):
        bench_report.build(path, 3, variant)
        data = path.read_bytes()
    elif variant == "restarts":
        data = B11 * 120
    else:
        data = b"\n".join(b"[default1]:[rank1]: " + line for line in lines_of(B11 * 120))
    monkeypatch.setattr(logparse, "PARALLEL_MIN_BYTES", 1 << 40)
    serial = signature(parse_log(data))
    monkeypatch.setattr(logparse, "PARALLEL_MIN_BYTES", 1 << 16)
    monkeypatch.setattr(logparse, "_CHUNK", 1 << 15)
    assert signature(parse_log(data)) == serial


def test_every_cli_in_tools_has_version():
    import subprocess
    import sys
    tools = Path(__file__).resolve().parents[1] / "tools"
    for cli in sorted(tools.glob("*.py")):
        done = subprocess.run([sys.executable, str(cli), "--version"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (cli.name, done.stderr[-300:])
        assert done.stdout.startswith(f"{cli.name} (fp8suite) "), (cli.name, done.stdout)
