"""The Megatron log parser: real 0.19 logs, every way a log can end, and every way it can be bad.

Synthetic cases are cut and spliced from the real trimmed logs in tests/data/logs/megatron019/,
so every iteration, argument and marker line has Megatron's real format.
"""

import math
import random
from pathlib import Path

from fp8suite.logs import parse as logparse
from fp8suite.megatron import logvocab
from fp8suite.logs.parse import parse_log

FIX = Path(__file__).parent / "data" / "logs" / "megatron019"


def real(name: str) -> bytes:
    return (FIX / f"{name}.log").read_bytes()


def iteration_line(data: bytes, it: int) -> bytes:
    start = data.index(b"] iteration %8d/" % it)
    start = data.rindex(b"\n", 0, start) + 1
    return data[start:data.index(b"\n", start) + 1]


def upto_iteration(data: bytes, it: int) -> bytes:
    """The log up to and including the line of iteration `it`."""
    line = iteration_line(data, it)
    return data[:data.index(line) + len(line)]


def set_arg(data: bytes, name: str, value: str) -> bytes:
    start = data.index(b"  %s ." % name.encode())
    end = data.index(b"\n", start)
    dots = "." * (48 - len(name))
    return data[:start] + f"  {name} {dots} {value}".encode() + data[end:]


# The end of the real start-up failure: torchrun's report after the worker died.
TORCHRUN_FAILURE = real("fp8delayed_1F1L_bad")[
    real("fp8delayed_1F1L_bad").index(b"E1123 04:03:38.468000"):]


def torchrun_failure(exitcode: str, traceback_line: str) -> bytes:
    return (TORCHRUN_FAILURE
            .replace(b"failed (exitcode: 1)", f"failed (exitcode: {exitcode})".encode())
            .replace(b"exitcode  : 1 (pid: 1663)", f"exitcode  : {exitcode} (pid: 1663)".encode())
            .replace(b"traceback : To enable traceback see: "
                     b"https://pytorch.org/docs/stable/elastic/errors.html",
                     f"traceback : {traceback_line}".encode()))


OOM_TRACEBACK = b"""WARNING:megatron.core.rerun_state_machine:Setting RerunStateMachine mode RerunMode.DISABLED
[rank0]: Traceback (most recent call last):
[rank0]:   File "/workspace/pretrain_entry.py", line 57, in <module>
[rank0]:     pretrain(
[rank0]:   File "/tmp/site/megatron/training/training.py", line 712, in pretrain
[rank0]:     iteration, num_floating_point_operations_so_far = train(
[rank0]:                                                       ^^^^^^
[rank0]:   File "/tmp/site/megatron/training/training.py", line 2704, in evaluate
[rank0]:     loss_dicts = forward_backward_func(
[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.91 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.35 GiB is free. Including non-PyTorch memory, this process has 77.83 GiB memory in use.
"""


# --- the real logs -------------------------------------------------------------------------


def test_real_completed_log_keeps_every_field_verbatim():
    log = parse_log(real("bf16"))
    steps = log.steps
    assert steps.iterations == [1, 2, 3, 19, 20, 21, 22, 29, 30]
    assert steps.keys() == list(logvocab.FAST_KEYS)
    assert steps.column("lm loss")[0] == 12.5709
    assert steps.column("elapsed time per iteration (ms)")[-1] == 653.4
    assert steps.column("throughput per GPU (TFLOP/s/GPU)")[2] == 431.7
    assert steps.column("consumed samples")[-1] == 240.0
    assert steps.column("no such key") == [None] * 9
    assert steps.timestamp(0) == "2026-11-23 04:01:35.321753"
    assert log.status.name == "completed" and log.status.reason == "completed 30/30"
    assert (log.status.last_iteration, log.status.planned_iterations) == (30, 30)
    assert [(v.iteration, v.split, v.fields["lm loss value"]) for v in log.validations] == [
        (20, "validation", 0.05842173), (30, "validation", 0.03652048), (30, "test", 0.04611472)]
    assert log.memory_peak_mb["max allocated"] == 38359.01
    assert log.memory_peak_mb["max reserved"] == 52210.0
    assert (log.restarts, log.garbled_lines, log.nonfinite) == (0, 0, {})


def test_real_arguments_dump_including_awkward_lines():
    args = parse_log(real("fp8cs")).args
    assert args["fp8"] == "hybrid" and args["fp8_recipe"] == "tensorwise"
    assert args["fp8_param_gather"] == "True" and args["seq_length"] == "4096"
    assert args["ddp_param_name_patterns_for_fp32_local_accumulation"] == "[]"  # no dots
    assert args["config_logger_dir"] == ""  # empty value
    assert args["cp_comm_type"] == "['p2p']"
    assert logvocab.arg_value(args, "exit_interval") is None
    assert logvocab.arg_int(args, "world_size") == 1


def test_real_startup_valueerror_under_torchrun():
    st = parse_log(real("fp8delayed_1F1L_bad")).status
    assert st.name == "crashed"
    # the worker's exception, not torchrun's ChildFailedError wrapper
    assert st.reason == ("crashed at start-up: ValueError: Delayed scaling does not support "
                         "first / last layer in BF16.")
    assert st.phase == "at start-up" and st.last_iteration is None
    assert st.context[-1] == st.exception



def test_a_crash_in_the_first_optimizer_step_is_not_at_start_up():
    """The committed precision-aware-optimizer crash: Megatron printed its marker before the
    training loop, then the first step's optimizer asserted before any iteration line."""
    from conftest import REPO
    log = REPO / "logs" / "param_gather_h100" / "pg_h100_w4096_l4_s4096_fp8_param_gather_pao.log"
    st = parse_log(log.read_bytes()).status
    assert st.name == "crashed" and st.last_iteration is None
    assert st.phase == "in the first training step"
    assert st.reason.startswith("crashed in the first training step: RuntimeError: ")
    assert "multi_tensor_adam_fp8" in st.reason

# --- one test per way a log ends -----------------------------------------------------------


def test_time_limit():
    data = set_arg(upto_iteration(real("bf16"), 22), "exit_duration_in_mins", "0.25")
    data += b"[exiting program after 0.2601733803749084 minutes] datetime: 2026-11-23 04:01:50.638102 \n"
    st = parse_log(data).status
    assert (st.name, st.last_iteration) == ("time-limit", 22)
    assert st.reason == "exited after 0.3 min (--exit-duration-in-mins 0.25)"


def test_exit_interval():
    data = set_arg(upto_iteration(real("bf16"), 22), "exit_interval", "22")
    data += b"[exiting program at iteration 22] datetime: 2026-11-23 04:01:50.640211 \n"
    st = parse_log(data).status
    assert (st.name, st.last_iteration) == ("exit-interval", 22)
    assert st.reason == "exited at iteration 22 (--exit-interval 22)"


def test_cuda_oom_during_evaluation():
    # Iteration 20 is a multiple of --eval-interval 20 and no validation line followed: the
    # memory surge of the evaluation killed it (what the seed study's FP8 runs died of).
    data = upto_iteration(real("fp8cs"), 20) + OOM_TRACEBACK + torchrun_failure("1", "<N/A>")
    st = parse_log(data).status
    assert st.name == "crashed"
    assert st.phase == "during evaluation after iteration 20"
    assert st.reason.startswith("crashed during evaluation after iteration 20: "
                                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
    assert st.last_iteration == 20


def test_oom_in_the_final_evaluation_after_training():
    bf16 = real("bf16")
    done = bf16.index(b"[after training is done]")
    data = bf16[:bf16.index(b"Evaluating iter 2/2", done)] + OOM_TRACEBACK
    st = parse_log(data).status
    assert st.phase == "after training, during the final evaluation"


def test_oom_in_a_training_iteration():
    data = upto_iteration(real("bf16"), 22) + OOM_TRACEBACK.split(b"\n", 1)[1]
    assert parse_log(data).status.phase == "in iteration 23"


def test_nccl_watchdog_timeout_without_python_traceback():
    data = upto_iteration(real("bf16"), 22) + (
        b"[rank0]:[E1123 04:12:01.123456789 ProcessGroupNCCL.cpp:632] [Rank 0] Watchdog caught "
        b"collective operation timeout: WorkNCCL(SeqNum=1234, OpType=ALLREDUCE, NumelIn=1, "
        b"NumelOut=1, Timeout(ms)=600000) ran for 600012 milliseconds before timing out.\n"
        b"terminate called after throwing an instance of 'c10::DistBackendError'\n"
    ) + torchrun_failure("-6", "Signal 6 (SIGABRT) received by PID 1663")
    st = parse_log(data).status
    assert st.name == "crashed" and st.phase == "in iteration 23"
    assert st.reason.startswith("crashed in iteration 23: [Rank 0] Watchdog caught collective "
                                "operation timeout: WorkNCCL(SeqNum=1234")


def test_nccl_error_with_python_traceback():
    data = upto_iteration(real("bf16"), 22) + (
        b"[rank0]: Traceback (most recent call last):\n"
        b"[rank0]:   File \"/workspace/pretrain_entry.py\", line 57, in <module>\n"
        b"[rank0]: torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/"
        b"distributed/c10d/ProcessGroupNCCL.cpp:3356, unhandled system error\n")
    st = parse_log(data).status
    assert st.reason == ("crashed in iteration 23: torch.distributed.DistBackendError: NCCL "
                         "error in: /pytorch/torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:"
                         "3356, unhandled system error")


def test_child_failed_error_only():
    data = upto_iteration(real("bf16"), 22) + torchrun_failure(
        "-9", "Signal 9 (SIGKILL) received by PID 1663")
    st = parse_log(data).status
    assert st.name == "crashed"
    assert st.reason == ("crashed in iteration 23: torchrun ChildFailedError (exitcode -9, "
                         "SIGKILL; SIGKILL is often the host's OOM killer, but the log has no "
                         "oom_kill line), no worker traceback in the log")


def test_truncated():
    st = parse_log(upto_iteration(real("bf16"), 22)).status
    assert (st.name, st.last_iteration) == ("running/truncated", 22)
    assert st.reason == "log ends after iteration 22 of 30 (no end marker)"


def test_truncated_before_the_first_iteration():
    bf16 = real("bf16")
    st = parse_log(bf16[:bf16.index(b"training ...")]).status
    assert st.reason == "log ends before the first iteration (no end marker)"


# --- bad input -----------------------------------------------------------------------------


def test_restart_keeps_the_last_occurrence_of_each_iteration():
    bf16 = real("bf16")
    first = upto_iteration(bf16, 22)
    head = bf16[:bf16.index(iteration_line(bf16, 1))]  # start-up again, arguments and all
    again = b"".join(iteration_line(bf16, it) for it in (21, 22, 29, 30))
    again = again.replace(b"lm loss: 5.728696E-02", b"lm loss: 4.000000E-02")
    log = parse_log(first + head + again + bf16[bf16.index(b"[after training is done]"):])
    assert log.steps.iterations == [1, 2, 3, 19, 20, 21, 22, 29, 30]
    assert log.steps.column("lm loss")[5] == 0.04  # iteration 21 from the second attempt
    assert (log.restarts, log.repeated_iterations, log.args_dumps) == (1, 2, 2)
    assert log.steps.segment_starts == [1, 21]
    assert log.status.name == "completed"


def test_crash_before_a_restart_is_kept_as_an_earlier_failure():
    bf16 = real("bf16")
    head = bf16[:bf16.index(iteration_line(bf16, 1))]
    data = upto_iteration(bf16, 20) + OOM_TRACEBACK + head + bf16[bf16.index(
        iteration_line(bf16, 21)):]
    log = parse_log(data)
    assert log.status.name == "completed"
    assert log.earlier_failures[0].startswith("torch.OutOfMemoryError: CUDA out of memory")


def test_interleaved_ranks_count_only_whole_lines():
    bf16 = real("bf16")
    l21, l22, l29 = (iteration_line(bf16, it) for it in (21, 22, 29))
    memory = (b"[Rank 1] (after 21 iterations) memory (MB) | allocated: 33110.64 | "
              b"max allocated: 40000.00 | reserved: 52210.00 | max reserved: 52210.00\n")
    warning = b"[rank1]:[W1123 04:01:50.1 ProcessGroupNCCL.cpp:1575] Warning: WARNING: x "
    garbled21 = l21[:150] + memory + l21[150:]  # another rank's whole line cut into ours
    garbled22 = l22.replace(b"lm loss: 7.362796E-02", b"lm loss: 7.36" + warning + b"2796E-02")
    data = (bf16.replace(l21, garbled21).replace(l22, garbled22)
            .replace(l29, warning + l29))  # text glued before a whole record is harmless
    log = parse_log(data)
    assert log.garbled_lines == 2
    assert log.steps.iterations == [1, 2, 3, 19, 20, 29, 30]
    assert log.steps.column("lm loss")[-2] == 0.03002075  # iteration 29, exact
    assert log.memory_peak_mb["max allocated"] == 40000.0  # the glued-in line was whole
    assert log.status.name == "completed"


def test_small_chunks_give_the_same_result(monkeypatch):
    """The exact per-chunk path (taken where a chunk has a garbled line) agrees with the fast one."""
    bf16 = real("bf16")
    l21 = iteration_line(bf16, 21)
    data = bf16.replace(l21, l21[:150] + b"\n" + l21[150:])
    expected = parse_log(data)
    monkeypatch.setattr(logparse, "_CHUNK", 256)
    small = parse_log(data)
    assert small.steps.iterations == expected.steps.iterations == [1, 2, 3, 19, 20, 22, 29, 30]
    assert small.steps.fields == expected.steps.fields
    assert small.garbled_lines == expected.garbled_lines == 1


def test_non_utf8_bytes():
    data = real("bf16").replace(b"/tmp/tb_bf16", b"/tmp/tb_\xff\xfe")
    data = data.replace(b"done with setup ...", b"done with setup \x80\xc3(...")
    log = parse_log(data + b"\xff\xfe\xfd\n")
    assert log.args["tensorboard_dir"] == "/tmp/tb_\ufffd\ufffd"
    assert log.status.name == "completed" and len(log.steps) == 9


def test_nan_and_inf_values_are_kept_and_counted():
    # Megatron prints lm loss with "{:.6E}", which spells them NAN and INF; grad norm with
    # "{:.3f}": nan, inf, -inf.
    bf16 = real("bf16")
    data = (bf16.replace(b"lm loss: 6.177481E-02", b"lm loss: NAN")
            .replace(b"lm loss: 5.728696E-02", b"lm loss: INF")
            .replace(b"lm loss: 3.002075E-02", b"lm loss: NaN")
            .replace(b"grad norm: 0.877", b"grad norm: -inf"))
    log = parse_log(data)
    loss = log.steps.column("lm loss")
    assert math.isnan(loss[4]) and loss[5] == math.inf and math.isnan(loss[7])
    assert log.steps.column("grad norm")[6] == -math.inf
    assert log.nonfinite == {"lm loss": 3, "grad norm": 1}
    assert log.garbled_lines == 0 and len(log.steps) == 9


def test_empty_file():
    log = parse_log(b"")
    assert (log.status.name, log.status.reason) == ("running/truncated", "empty log")
    assert len(log.steps) == 0 and log.args == {}


def test_binary_junk():
    junk = random.Random(0).randbytes(1 << 20)
    log = parse_log(junk)
    # A log nothing places says so in one line instead of a status it cannot back.
    assert log.status.name == "unreadable"
    assert log.status.reason == "format not recognised: looks like binary data"
    assert len(log.steps) == 0


def test_another_field_order_without_timestamps():
    """Older Megatron: no timestamp, no throughput; a key this parser never saw."""
    bf16 = real("bf16")
    lines = [iteration_line(bf16, it) for it in (1, 2, 3, 19, 20)]
    old = [line[line.index(b" iteration"):].replace(b" throughput per GPU (TFLOP/s/GPU): ", b" x: ")
           for line in lines]
    old = [line.replace(b" x: ", b" params norm: ", 1) for line in old]
    log = parse_log(b"".join(old))
    assert log.steps.iterations == [1, 2, 3, 19, 20]
    assert log.steps.timestamp(0) is None
    assert log.steps.column("params norm")[0] == 42.9
    assert "throughput per GPU (TFLOP/s/GPU)" not in log.steps.keys()
    assert log.garbled_lines == 0


def test_a_value_that_is_no_number_makes_its_line_garbled():
    # "1.2.3" passes the fast pattern's character class; float() rejects it.
    data = real("bf16").replace(b"grad norm: 0.877", b"grad norm: 1.2.3")
    log = parse_log(data)
    assert log.garbled_lines == 1
    assert 22 not in log.steps.iterations and len(log.steps) == 8


def test_layout_change_after_a_restart(monkeypatch):
    """A restart under other logging flags: the second half has no throughput field."""
    bf16 = real("bf16")
    first = upto_iteration(bf16, 22)
    rest = b"".join(iteration_line(bf16, it).replace(
        iteration_line(bf16, it)[iteration_line(bf16, it).index(b" throughput"):
                                 iteration_line(bf16, it).index(b" learning rate")], b"")
        for it in (29, 30))
    monkeypatch.setattr(logparse, "_CHUNK", 1)  # one line per chunk
    log = parse_log(first + rest)
    assert log.steps.iterations == [1, 2, 3, 19, 20, 21, 22, 29, 30]
    assert log.steps.column("throughput per GPU (TFLOP/s/GPU)")[-2:] == [None, None]
    assert log.steps.column("lm loss")[-1] == 0.05712964 and log.garbled_lines == 0
