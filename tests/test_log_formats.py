"""Logs from every Megatron users run: the producer and era read from the log itself, launcher
and logger prefixes removed as a kind, launches that share one file, fp16 skipped steps, where
the data is (pipeline rank 0, OOM killer, start-up failures), and huge logs read as a stream.
"""

import re
from pathlib import Path

import pytest

from fp8suite.megatron import logformats, recipes
from fp8suite.logs import parse as logparse
from fp8suite.logs import stream as logstream
from fp8suite.megatron import logvocab
from fp8suite.report import metrics
from fp8suite.logs import runs
from fp8suite.logs.parse import parse_log

DATA = Path(__file__).parent / "data"
ERAS = DATA / "eras"
MEGATRON019 = DATA / "logs" / "megatron019"
FP8CS = (MEGATRON019 / "fp8cs.log").read_bytes()
BAD = (MEGATRON019 / "fp8delayed_1F1L_bad.log").read_bytes()


# --- eras ------------------------------------------------------------------------------------

# fixture -> (era, recipe label, median step ms)
ERA_CASES = {
    "megatron_lm_v1_2020.log": (logformats.MEGATRON_V1, "FP16", 813.0),
    "megatron_lm_2023_fp8_hybrid.log": (logformats.MEGATRON_2023, "FP8 delayed (hybrid)", 2401.0),
    "megatron_core_r0_5.log": (logformats.MEGATRON_CORE, "FP8 delayed (hybrid)", 2401.0),
    "megatron_core_r0_12.log": (logformats.MEGATRON_CORE, "FP8 tensorwise (hybrid)", 2301.0),
    "megatron_bridge.log": (logformats.MEGATRON_BRIDGE, "unknown (no arguments dump)", 2201.0),
    "nemo2_lightning.log": (logformats.NEMO2, "FP8 delayed (hybrid)", 2101.0),
}


def test_every_era_has_a_fixture():
    assert {p.name for p in ERAS.glob("*.log")} == set(ERA_CASES)
    assert {era for era, _, _ in ERA_CASES.values()} == set(logformats.ERAS)


@pytest.mark.parametrize("name", sorted(ERA_CASES))
def test_each_era_reads_with_its_label_status_and_step_time(name):
    era, label, ms = ERA_CASES[name]
    log = logstream.read_log(ERAS / name)
    assert log.log_format == era.name
    assert metrics.recipe_label(log.args) == label
    assert log.status.name == "completed", log.status.reason
    assert (log.status.last_iteration, log.status.planned_iterations) == (30, 30)
    assert len(log.steps) == 30 and log.garbled_lines == 0
    mask = metrics.timed_rows(log.steps, log.args, 3)
    times = metrics.timed_iter_ms(log.steps, mask)
    assert sorted(times)[len(times) // 2] == pytest.approx(ms, abs=2)


def test_the_2023_fp8_switches_in_core_words():
    assert logformats.in_core_words({"fp8_hybrid": "True"})["fp8"] == "hybrid"
    assert logformats.in_core_words({"fp8_e4m3": "True", "fp8_hybrid": "False"})["fp8"] == "e4m3"
    assert "fp8" not in logformats.in_core_words({"fp8_hybrid": "False"})
    # A dump with megatron-core's own switch is read as it is.
    assert logformats.in_core_words({"fp8": "None", "fp8_hybrid": "True"})["fp8"] == "None"


def test_v1_without_the_last_iteration_is_still_truncated():
    data = (ERAS / "megatron_lm_v1_2020.log").read_bytes()
    cut = data[:data.index(b" iteration       20/")]
    st = parse_log(cut).status
    assert st.name == "running/truncated" and "19 of 30" in st.reason


@pytest.mark.parametrize("data, looks", [
    (b"\0" * 4096, "NUL bytes only (a sparse or zeroed file)"),
    (bytes(range(256)) * 64, "binary data"),
    (b'{"loss": 1.0, "step": 3}\n' * 50, "JSON"),
    (b"{'loss': 2.1, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.1}\n" * 20,
     "a Hugging Face Trainer log"),
    (b"hello world\nsome other program\n", "plain text ('hello world')"),
], ids=["nul", "binary", "json", "hf-trainer", "text"])
def test_an_unplaceable_log_says_so_in_one_line(data, looks):
    st = parse_log(data).status
    assert st.name == "unreadable"
    assert st.reason == f"format not recognised: looks like {looks}"
    assert "\n" not in st.reason


def test_megatron_start_up_text_alone_is_not_called_unrecognised():
    # The arguments dump (or an iteration line) places the log: a launch still starting.
    head = FP8CS[:FP8CS.index(b"iteration        1/")]
    head = head[:head.rindex(b"\n") + 1]
    assert parse_log(head).status.name == "running/truncated"


# --- prefixes as a kind ------------------------------------------------------------------------

PREFIXES = {
    "ansi skypilot": lambda n: f"\x1b[36m(worker{n % 3}, rank={n % 3}, pid=4377, ip=10.0.1.12)\x1b[0m ",
    "kubectl --timestamps": lambda n: f"2026-04-19T06:00:{n % 60:02d}.{n:09d}Z ",
    "logger time": lambda n: f"2026-04-19 06:00:{n % 60:02d},{n % 1000:03d} - INFO - ",
    "srun -l + tee": lambda n: f"{n % 16:2d}: [default{n % 8}]:",
    "stern pod": lambda n: "[pod/trainer-0/pytorch] ",
    "stacked": lambda n: (f"2026-04-19T06:00:{n % 60:02d}Z \x1b[1;32m[pod/t-0/c]\x1b[0m "
                          f"{n % 4}: [default{n % 4}]:[rank{n % 4}]: "),
}


def prefixed(data: bytes, kind: str) -> bytes:
    make = PREFIXES[kind]
    return b"".join(make(n).encode() + line
                    for n, line in enumerate(data.splitlines(keepends=True)))


@pytest.mark.parametrize("kind", sorted(PREFIXES))
def test_prefixes_of_any_kind_leave_dump_iterations_and_status(kind):
    plain = parse_log(FP8CS)
    log = parse_log(prefixed(FP8CS, kind))
    assert log.args == plain.args and metrics.recipe_label(log.args).startswith("FP8 tensorwise")
    assert log.steps.iterations == plain.steps.iterations
    assert log.steps.column("lm loss") == plain.steps.column("lm loss")
    assert (log.status.name, log.status.reason) == (plain.status.name, plain.status.reason)


@pytest.mark.parametrize("kind", sorted(PREFIXES))
def test_prefixes_of_any_kind_leave_crash_reasons_clean(kind):
    plain = parse_log(BAD).status
    st = parse_log(prefixed(BAD, kind)).status
    assert st.name == plain.name == "crashed"
    assert st.reason == plain.reason
    assert not re.search(r"\x1b|pod/|default\d|rank\d|2026-04-19", st.reason)


def test_strip_prefixes_keeps_megatron_own_brackets():
    for line in ("[after training is done] datetime: 2026-01-01 00:00:00 ",
                 " [2026-01-01 00:00:00] iteration        1/      30 |",
                 "[Rank 0] (after 1 iterations) memory (MB) | max allocated: 1.0 |",
                 "[exiting program at iteration 20] datetime: 2026-01-01 00:00:00 "):
        assert logvocab.strip_prefixes("\x1b[36m(head, rank=0, pid=1)\x1b[0m " + line) == line


# --- launches that share a file ------------------------------------------------------------------


def test_a_fresh_launch_is_an_attempt_and_a_resume_continues():
    bf16 = (MEGATRON019 / "bf16.log").read_bytes()
    fresh = parse_log(bf16 + FP8CS)
    assert len(fresh.earlier_launches) == 1
    assert metrics.recipe_label(fresh.args).startswith("FP8 tensorwise")
    assert metrics.recipe_label(fresh.earlier_launches[0].args) == "BF16"
    assert fresh.steps.iterations == parse_log(FP8CS).steps.iterations
    # The same second launch after loading a checkpoint continues the run: one log, merged.
    at = FP8CS.index(b" [2026")
    resumed = FP8CS[:at] + (b"  successfully loaded checkpoint from /ckpt/run [ t 1/1, p 1/1 ] "
                            b"at iteration 0\n") + FP8CS[at:]
    merged = parse_log(bf16 + resumed)
    assert merged.earlier_launches == [] and merged.restarts >= 1


def test_a_launch_without_iterations_is_not_split_off():
    # A second launch that crashed at start-up stays the log's last segment (its crash shown).
    log = parse_log((MEGATRON019 / "bf16.log").read_bytes() + BAD)
    assert log.earlier_launches == [] and log.status.name == "crashed"


# --- fp16 skipped steps ----------------------------------------------------------------------------


def test_a_lone_skipped_step_line_without_grad_norm_is_read():
    lines = FP8CS.split(b"\n")
    k = next(i for i, line in enumerate(lines) if b"iteration       20/" in line)
    lines[k] = re.sub(rb" grad norm: [^|]*\|", b"", lines[k])
    lines[k] = re.sub(rb"lm loss: [^|]*\|", b"lm loss: 0.000000E+00 |", lines[k])
    lines[k] = re.sub(rb"number of skipped iterations: +\d+", b"number of skipped iterations:   1",
                      lines[k])
    log = parse_log(b"\n".join(lines))
    assert log.garbled_lines == 0 and 20 in log.steps.iterations
    assert log.skipped_iterations == 1 and log.status.name == "completed"
    loss = dict(zip(log.steps.iterations, log.steps.column("lm loss")))
    assert loss[20] is None and min(v for v in loss.values() if v is not None) > 0


# --- where the data is --------------------------------------------------------------------------------


def pipeline_rank0(data: bytes, pp: int = 4, world: int = 8) -> bytes:
    """The rank-0 log of a pipeline-parallel run: no iteration lines, PP and world in the dump."""
    data = re.sub(rb"(pipeline_model_parallel_size \.+ )\d+", rb"\g<1>%d" % pp, data)
    data = re.sub(rb"(\n  world_size \.+ )\d+", rb"\g<1>%d" % world, data)
    return b"\n".join(line for line in data.split(b"\n") if not logvocab.ANCHOR.search(line))


def test_pipeline_rank0_says_where_its_iterations_are(tmp_path):
    data = pipeline_rank0((MEGATRON019 / "bf16.log").read_bytes())
    st = parse_log(data).status
    assert "None" not in st.reason
    assert "--pipeline-model-parallel-size 4" in st.reason and "last pipeline rank" in st.reason
    assert "(global rank 7)" in st.reason
    # torchrun --log-dir: one folder per local rank; the last rank's holds the iteration lines.
    (tmp_path / "run.log").write_bytes(data)
    for rank, text in ((3, FP8CS), (5, b"nothing here\n"), (7, FP8CS)):
        (tmp_path / "attempt_0" / str(rank)).mkdir(parents=True)
        (tmp_path / "attempt_0" / str(rank) / "stdout.txt").write_bytes(text)
    held = runs.iteration_lines_beside(tmp_path / "run.log", parse_log(data).args)
    assert held == str(tmp_path / "attempt_0" / "7" / "stdout.txt")
    # Not pipeline-parallel: nothing is looked for.
    assert runs.iteration_lines_beside(tmp_path / "run.log", {"world_size": "8"}) == ""


def test_a_non_pipeline_log_without_iterations_says_nothing_of_ranks():
    st = parse_log(BAD).status
    assert "pipeline" not in st.reason


HOST_OOM_LINES = [
    b"slurmstepd: error: Detected 1 oom_kill event in StepId=812345.0. Some of the step tasks "
    b"have been OOM Killed.",
    b"srun: error: node-a: task 0: Out Of Memory",
    b"[Tue Mar  3 10:00:00 2026] Out of memory: Killed process 4321 (python) total-vm:1kB",
]


@pytest.mark.parametrize("line", HOST_OOM_LINES)
def test_the_host_oom_killer_is_named(line):
    bf16 = (MEGATRON019 / "bf16.log").read_bytes()
    anchors = list(logvocab.ANCHOR.finditer(bf16))
    cut = bf16[:anchors[5].start()]
    cut = cut[:cut.rindex(b"\n") + 1]
    st = parse_log(cut + line + b"\n" + b"srun: error: node-a: task 0: Killed\n").status
    assert st.name == "crashed"
    assert "host memory exhausted, killed by the OOM killer" in st.reason


@pytest.mark.parametrize("line, what", [
    (b"/usr/bin/python3: No module named torch", "No module named torch"),
    (b"bash: torchrun: command not found", "torchrun: command not found"),
    (b"ImportError: libcudart.so.12: cannot open shared object file", "ImportError: libcudart"),
])
def test_a_launch_that_failed_before_training_says_why(line, what):
    st = parse_log(b"+ export CUDA_DEVICE_MAX_CONNECTIONS=1\n" + line + b"\n").status
    assert st.name == "crashed"
    assert st.reason.startswith("crashed at start-up: ") and what in st.reason


# --- huge logs: the streamed reader ------------------------------------------------------------------

STREAM_CASES = sorted(
    [p for p in (DATA / "field-reports").glob("*/*/*.log")]
    + [p for p in ERAS.glob("*.log")] + [p for p in MEGATRON019.glob("*.log")]
    + [p for p in (DATA / "real_h200x2").glob("*.log")], key=str)


def everything(log):
    st, steps = log.status, log.steps
    nan = float("nan")
    return (list(steps.iterations), [steps.timestamp(i) for i in range(len(steps))], steps.keys(),
            {k: [None if v is None else ("nan" if v != v else repr(v)) for v in steps.column(k)]
             for k in steps.keys()}, list(steps.segment_starts), steps.nonfinite(),
            [(v.iteration, v.split, sorted(v.fields.items())) for v in log.validations],
            sorted(log.memory_peak_mb.items()), log.args, log.args_dumps,
            (st.name, st.reason, st.last_iteration, st.planned_iterations, st.diverged_at),
            log.restarts, log.repeated_iterations, log.garbled_lines,
            [(s.first_iteration, s.last_iteration, s.rows, s.span_from,
              round(s.span_s if s.span_s is not None else nan, 3)) for s in log.segments],
            len(log.earlier_failures), log.checkpoint_loads, log.checkpoint_saves,
            log.attention_backends, log.log_format, len(log.earlier_launches),
            log.skipped_iterations)


@pytest.mark.parametrize("path", STREAM_CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_streamed_reader_gives_the_whole_read(path):
    whole = everything(parse_log(path.read_bytes()))
    for block in (1 << 14, 1 << 16):
        assert repr(everything(logstream.read_streamed(path, block))) == repr(whole), block


def test_read_log_streams_large_files(tmp_path, monkeypatch):
    path = tmp_path / "big.log"
    path.write_bytes(FP8CS * 3)
    read_whole = []
    monkeypatch.setattr(logparse, "STREAM_MIN_BYTES", 1000)
    monkeypatch.setattr(logparse, "parse_log", lambda data: read_whole.append(1))
    monkeypatch.setattr(logstream.P, "parse_log", lambda data: read_whole.append(1))
    log = logstream.read_log(path)
    assert read_whole == [] and len(log.earlier_launches) == 2
    assert log.size_bytes == 3 * len(FP8CS)


def test_a_sparse_file_of_nul_bytes_is_not_held(tmp_path):
    path = tmp_path / "zeros.log"
    with open(path, "wb") as f:
        f.truncate(200 << 20)  # sparse: no disk used
    log = logstream.read_streamed(path, 1 << 20)
    assert log.status.name == "unreadable"
    assert log.status.reason == "format not recognised: looks like NUL bytes only (a sparse or zeroed file)"


def test_a_long_burst_after_the_last_iteration_keeps_the_end_marker(tmp_path, monkeypatch):
    monkeypatch.setattr(logstream, "TAIL_BYTES", 1 << 16)
    bf16 = (MEGATRON019 / "bf16.log").read_bytes()
    done = bf16.index(logvocab.DONE)
    data = bf16[:done] + b"some warning printed over and over\n" * 20000 + bf16[done:]
    path = tmp_path / "burst.log"
    path.write_bytes(data)
    log = logstream.read_streamed(path, 1 << 16)
    assert (log.status.name, log.status.reason) == ("completed", "completed 30/30")
    assert any("too long to keep whole" in n for n in log.status.notes)


@pytest.mark.parametrize("line, label", [
    ("Using FP8 (hybrid, delayed scaling, amax history 1024, amax compute algo max)",
     "FP8 delayed (hybrid)"),
    ("Using FP8 (hybrid, tensorwise scaling)", "FP8 tensorwise (hybrid)"),
    ("Using FP8 (e4m3, current scaling)", "FP8 tensorwise (e4m3)"),
    ("Using FP8 (e4m3, blockwise scaling)", "FP8 blockwise (e4m3)"),
    ("Using FP8 (e4m3, MXFP8 block scaling)", "MXFP8 (e4m3)"),
    ("Using FP8 (hybrid)", "FP8 delayed (hybrid)"),
])
def test_nemo_fp8_line_in_core_words(line, label):
    """NeMo 2.0's `Using FP8 (...)` line read as megatron-core's arguments, every scaling."""
    args = logformats.nemo_fp8_args(f"[NeMo I 2026-04-12 08:30:19 nemo_logging:393] {line}")
    assert recipes.of_args(args).label == label
    if "amax" in line:
        assert (args["fp8_amax_history_len"], args["fp8_amax_compute_algo"]) == ("1024", "max")
    assert logformats.nemo_fp8_args("no such line") == {}
