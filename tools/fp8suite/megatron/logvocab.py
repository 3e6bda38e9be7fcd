"""Megatron-Core's log vocabulary, declared once: key names, the iteration anchor, end markers,
launcher prefixes, the arguments dump and its readers.

Every reader of a Megatron log (the report's parser `logparse`, its end-status forensics
`endstatus`, the run queue's live tail `logtail`, `metrics` and `markdown`) imports its words
from here; a renamed key is a one-line change. Formats are those of megatron-core 0.19
(`megatron/training/training.py`: `training_log`, `print_datetime`, `report_memory`; the
rerun state machine's NaN checks in `megatron/core/rerun_state_machine.py`).

Patterns on bytes (`rb"..."`) run over whole logs; patterns on `str` run over decoded lines.
"""

from __future__ import annotations

import re
from typing import Optional, Union

# --- keys of the iteration line, verbatim ----------------------------------------------------

ITERATION = "iteration"
SAMPLES = "consumed samples"
SKIPPED_SAMPLES = "skipped samples"
ITER_MS = "elapsed time per iteration (ms)"
TFLOPS = "throughput per GPU (TFLOP/s/GPU)"
ENERGY = "energy per GPU (J/iter/GPU)"
POWER = "power per GPU (W/GPU)"
LR = "learning rate"
GBS = "global batch size"
LOSS = "lm loss"
LOSS_SCALE = "loss scale"
GRAD_NORM = "grad norm"
NUM_ZEROS = "num zeros"
PARAMS_NORM = "params norm"
SKIPPED_ITERS = "number of skipped iterations"
NAN_ITERS = "number of nan iterations"
# Keys training_log() leaves out on a step the fp16 loss scaler skipped (grad norm is None).
SKIPPED_STEP_KEYS = ("grad norm", "num zeros")
VAL_LOSS = "lm loss value"  # in "validation loss at iteration N | lm loss value: ... |"

# Megatron-Core 0.19's field order with --log-throughput: the common layout, matched fastest.
FAST_KEYS = (SAMPLES, ITER_MS, TFLOPS, LR, GBS, LOSS, LOSS_SCALE, GRAD_NORM, SKIPPED_ITERS,
             NAN_ITERS)

# training_log() starts every iteration line with `consumed samples`: after one of its other
# keys it is the start of another line glued in.
FIRST_KEY = SAMPLES
MEGATRON_KEYS = frozenset((SKIPPED_SAMPLES, ITER_MS, TFLOPS, ENERGY, POWER, LR, GBS, LOSS,
                           LOSS_SCALE, GRAD_NORM, NUM_ZEROS, PARAMS_NORM, SKIPPED_ITERS,
                           NAN_ITERS))


def is_loss_key(key: str) -> bool:
    """A key of the loss dict ("lm loss", "mtp_1 loss", "load_balancing_loss"): Megatron
    prints its average only when it is >= 0, so a NaN loss leaves the line."""
    return key.endswith("loss")


# --- numbers -----------------------------------------------------------------------------------

# A number as Megatron prints it, plus every non-finite spelling: "{:.3f}" gives nan/inf,
# "{:.6E}" (lm loss, learning rate) gives NAN/INF, other code NaN/Infinity.
NUM = (rb"[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|"
       rb"[nN][aA][nN]|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)")
# A looser class that matches ~1.7x faster; float() then checks every captured token.
LOOSE_NUM = rb"[-+.0-9eEaAfFiInNtTyY]+"

# --- launcher prefixes -------------------------------------------------------------------------

# What launchers, loggers and log collectors put before Megatron's own text, as a grammar of
# prefix kinds (data: a new launcher is one more entry). Any run of them, stacked in any order,
# is removed from the start of a line before the line is read (the arguments dump, crash
# reasons, end markers). ANSI colour codes are removed anywhere in the line first.
PREFIX_KINDS = {
    # torchrun --tee "[default3]:", PyTorch "[rank3]: " (often stacked on it).
    "torchrun": r"\[[A-Za-z_][A-Za-z_-]*\d+\]: ?",
    # `srun -l`: a right-aligned task label (" 5: ", "15: ").
    "srun -l": r" *\d+: ",
    # SkyPilot / Ray: "(head, rank=0, pid=5121) ", "(worker1, rank=1, pid=4377, ip=10.0.1.12) ".
    "skypilot": r"\((?:[\w.-]+)(?:, [\w.-]+=[^,()\s]*)+\) ?",
    # kubectl logs --timestamps, docker logs -t, journald: RFC 3339 "2026-04-19T06:00:24.686010123Z ".
    "rfc3339": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? ",
    # Python logging / tee-with-date: "2026-04-19 06:00:24,123 ", "2026-04-19 06:00:24.123 - INFO - ".
    "logger time": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?(?:-|\|) ?[A-Z]+ ?(?:-|\|))? ",
    # kubectl --prefix / stern: "[pod/trainer-0/pytorch] ".
    "kubernetes": r"\[pod/[^\]\s]+\] ",
    # The c10 / glog header of C++ and torch.distributed.elastic messages, with or without its
    # brackets; the month is not zero-padded in every build: "[E302 09:10:00.153 ...] ",
    # "E0302 09:02:10.000000 4200 torch/distributed/elastic/...:874] ".
    "c10": r"\[?[EWIF]\d{3,4} \d\d:\d\d:\d\d(?:\.\d+)?(?: [^\]]*)?\] ?",
}
ANSI = r"\x1b\[[0-9;?]*[A-Za-z]"
_ANSI_STR = re.compile(ANSI)
# One launcher prefix as bytes, for patterns over whole logs (the c10 header excluded: it is
# read separately there).
PREFIX = ("(?:" + "|".join(v for k, v in PREFIX_KINDS.items() if k != "c10")
          + "|" + ANSI + ")").encode()
_PREFIX_STR = re.compile("^(?:" + "|".join(PREFIX_KINDS.values()) + ")+")


def strip_prefixes(line: str) -> str:
    """The line without ANSI colour codes and without launcher / logger prefixes (any kind of
    `PREFIX_KINDS`, any depth, stacked in any order)."""
    if "\x1b" in line:
        line = _ANSI_STR.sub("", line)
    m = _PREFIX_STR.match(line)
    return line[m.end():] if m else line


def prefix_of(line: str) -> str:
    """The launcher prefixes a line starts with ('' when none; ANSI codes kept)."""
    m = _PREFIX_STR.match(line)
    return m.group(0) if m else ""


# --- the iteration line ------------------------------------------------------------------------

TIMESTAMP = rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?"  # " [2026-11-23 04:01:35.321753]"
TIMESTAMP_LOOSE = rb"\d[-0-9 :.]{18,31}"  # the same, looser; fromisoformat() checks it
# The anchor of every iteration line, whatever its fields: " iteration   12/  100 |".
ANCHOR = re.compile(rb" iteration +(\d+)/ *(\d+) \|")
ANCHOR_COUNT = re.compile(rb" iteration +\d+/ *\d+ \|")  # no groups: findall allocates less
# The timestamp just before the anchor.
TIMESTAMP_BEFORE = re.compile(rb"\[(" + TIMESTAMP + rb")\][ \t]*$")
# One ` | `-separated field. Keys are words, spaces and ()/ (e.g. "throughput per GPU
# (TFLOP/s/GPU)", "memory(GiB)", "mem-max-allocated-gigabytes").
FIELD = re.compile(rb"[ \t]*([A-Za-z][A-Za-z0-9 _()/%.,'-]*?): +(" + NUM + rb")[ \t]*")
# A field a derivative adds with a non-numeric value ("elapsed time: 1d 6h 54m 11s"). Text
# with brackets, a second "key: " or a prefix in it is another line glued in.
TEXT_FIELD = re.compile(rb"[ \t]*([A-Za-z][A-Za-z0-9 _()/%.,'-]*?): +([^\[\]:|\n]{0,64}?)[ \t]*")

# --- other lines -------------------------------------------------------------------------------

VALIDATION_LITERAL = b"validation loss at iteration"
VALIDATION = re.compile(rb"validation loss at iteration +(\d+)(?: on ([^|\n]*?))? *\|([^\n]*)")
# report_memory(): "[Rank 0] (after 2 iterations) memory (MB) | max allocated: ... |" (MiB).
MEMORY_MB_LITERAL = b"memory (MB) |"
MEMORY_MB = re.compile(rb"\[Rank (\d+)\] \(after (\d+) iterations\) memory \(MB\) \|([^\n]*)")
# Megatron-Bridge: "memory (GB) | mem-max-allocated-gigabytes: 71.2 | ..." (10^9 bytes).
MEMORY_GB_LITERAL = b"memory (GB)"
MEMORY_GB = re.compile(rb"memory \(GB\) *\|([^\n]*)")
MEMORY_GB_KEYS = {"mem-max-allocated-gigabytes": "max allocated",
                  "mem-max-reserved-gigabytes": "max reserved",
                  "mem-allocated-gigabytes": "allocated",
                  "mem-reserved-gigabytes": "reserved"}
MAX_ALLOCATED = "max allocated"
MAX_RESERVED = "max reserved"

# The dump's header and footer, in the words every release shares: megatron-core prints
# "------------------------ arguments ------------------------" (24 dashes), Megatron-LM v1.x
# "-------------------- arguments --------------------" (20); the footer "... end of arguments ...".
ARGS_BEGIN = b"- arguments -"
ARGS_END = b"- end of arguments -"
# `  name ..... value`; names of 48+ characters get no dots (v1.x pads to 32). Read after
# prefixes are stripped.
ARG_LINE = re.compile(r"^[ \t]*(\w+) +(?:\.+ ?)?(.*?)[ \t\r]*$")

# --- how training ends -------------------------------------------------------------------------

DONE = b"[after training is done]"
EXIT_DURATION = re.compile(rb"\[exiting program after ([0-9.]+) minutes\]")
EXIT_INTERVAL = re.compile(rb"\[exiting program at iteration +(\d+)\]")
EXIT_SIGNAL = re.compile(rb"exiting program after receiving (SIG\w+)")
# The same markers as the live tail reads them, on one decoded line.
EXITING_STR = re.compile(r"\[exiting program (?:after [0-9.]+ minutes|at iteration +\d+)\]")
DONE_STR = DONE.decode()

# slurmstepd: "*** JOB 812345 ON node-a CANCELLED AT 2026-03-02T09:02:10 DUE TO TIME LIMIT ***",
# "... DUE TO PREEMPTION ***", "... DUE TO NODE FAILURE ***", "... CANCELLED AT ... ***".
SLURM_CANCELLED = re.compile(
    rb"\*\*\* (?:JOB|STEP) [\w.+]+ (?:ON \S+ )?CANCELLED AT \S+(?: DUE TO ([A-Z ]+?))?(?: \*\*\*|\s*$)",
    re.M)
SLURM_NODE_FAIL = re.compile(rb"srun: error: Node failure on (\S+)|NODE_FAIL")
# srun when a task of a step ends badly, before --kill-on-bad-exit cancels the others ("***
# STEP 16.0 ON node-a CANCELLED AT ... ***" then follows on the surviving nodes), as Slurm
# 22.05 (the CI's cluster, .ci/slurm_setup.sh) prints it: "srun: error: node-b: task 1: Exited
# with exit code 1"; several tasks: "tasks 2-3: ..."; a task killed: "task 1: Killed".
SRUN_TASK_FAILED = re.compile(
    rb"^srun: error: (\S+): tasks? ([\d,-]+): (Exited with exit code [1-9]\d*|Killed|Segmentation fault)",
    re.M)

# The host's OOM killer as Slurm and the kernel report it: slurmstepd "Detected 1 oom_kill
# event in StepId=812345.0. Some of the step tasks have been OOM Killed.", "error: ... task 0:
# Out Of Memory", srun's "task 0: Out Of Memory", dmesg's "Out of memory: Killed process 4321
# (python)" / "oom-kill:".
HOST_OOM = re.compile(
    rb"Detected \d+ oom[-_]kill events?[^\n]*|Some of (?:your processes|the step tasks) "
    rb"(?:may )?ha(?:ve|s) been OOM Killed[^\n]*|task \d+: Out Of Memory[^\n]*"
    rb"|Out of memory: Kill(?:ed)? process[^\n]*|oom-kill:[^\n]*")
# A launch that failed before Python ran Megatron: the interpreter has no torch (`python -m
# torch.distributed.run` prints "/usr/bin/python3: No module named torch" with no traceback),
# the launcher is missing ("torchrun: command not found"), or an import failed.
STARTUP_FAILURE = re.compile(
    rb"^(?:[^\n]*?: )?(No module named '?[\w.]+'?|[\w./-]+: (?:command not found|No such file "
    rb"or directory)|ImportError: [^\n]+|cannot import name [^\n]+)[ \t]*$", re.M)

TRACEBACK = b"Traceback (most recent call last):"
# "ValueError: msg", "torch.OutOfMemoryError: msg", "KeyboardInterrupt". The class name must
# look like one (CamelCase last part), so lines such as "WARNING:megatron..." do not pass.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*[a-z]\w*(?::(?: .*)?)?$")
# An exception printed without its traceback (python -c, a launcher's last word).
BARE_EXCEPTION = re.compile(
    rb"^(?:" + PREFIX + rb")*((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Interrupt)(?:: [^\n]*)?)[ \t\r]*$",
    re.M)
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
# Launcher exceptions and frames: torchrun's report of a failed worker, its own signal handler.
LAUNCHER_EXCEPTIONS = ("ChildFailedError", "SignalException")
LAUNCHER_FRAMES = ("torch/distributed/elastic/", "torch/distributed/run.py", "bin/torchrun",
                   "torch/distributed/launch.py")
OOM = b"CUDA out of memory"
NCCL = (b"NCCL error", b"ncclInternalError", b"ncclSystemError", b"ncclUnhandledCudaError",
        b"ncclRemoteError", b"ncclInvalidUsage", b"Watchdog caught collective operation timeout",
        b"DistBackendError")
CHILD_FAILED = b"ChildFailedError"
CHILD_EXITCODE = re.compile(rb"exitcode +: (-?\d+)")
ELASTIC_FAILED = re.compile(rb"failed \(exitcode: (-?\d+)\) local_rank")
CHILD_SIGNAL = re.compile(rb"Signal (\d+) \((SIG\w+)\) received by PID")
EVALUATING = re.compile(rb"Evaluating (?:iter|on) ")
TRAINING_STARTS = b"[before the start of training step]"
"""print_datetime's marker just before the training loop: a crash after it, before any
iteration line, is in the first training step, not at start-up."""
SAVING = b"saving checkpoint at iteration"
SAVED = b"successfully saved checkpoint"

# --- checkpoints: where a launch resumed, what it saved ------------------------------------------

# megatron/training/checkpointing.py, printed by rank 0 once a save is complete (its tracker file
# written): "  [2026-11-23 04:05:01.123456] successfully saved checkpoint from iteration     100
# to /ckpt/run [ t 1/1, gtp_remat 1/1, p 1/1 ]" (0.19; older releases print "[ t 1/1, p 1/1 ]"
# or no brackets, and "at iteration"). The iteration is the next launch's `at iteration N`.
CKPT_SAVED = re.compile(
    rb"successfully saved checkpoint (?:from|at) iteration +(\d+) to (.*?)"
    rb"(?: \[ t [^\]\n]*\])?[ \t]*$", re.M)
# "  successfully loaded checkpoint from /ckpt/run [ t 1/1, gtp_remat 1/1, p 1/1 ] at iteration
# 100" (older releases: without gtp_remat, or without the brackets). Training goes on with
# iteration N+1; N is 0 for a checkpoint without an iteration (--finetune, a release).
CKPT_LOADED = re.compile(
    rb"successfully loaded checkpoint from (.*?)(?: \[ t [^\]\n]*\])? at iteration +(\d+)[ \t]*$",
    re.M)
CKPT_LOADED_LITERAL = b"successfully loaded checkpoint from"

# Transformer Engine's DotProductAttention names the backend it picked, once per attention
# configuration, when NVTE_DEBUG=1 and NVTE_DEBUG_LEVEL>=1 (transformer_engine/pytorch/attention/
# dot_product_attention/dot_product_attention.py): "Running with FusedAttention backend
# (sub-backend 2)", "Running with FlashAttention backend (version 2.7.4)", "Running with
# UnfusedDotProductAttention backend", after a logging prefix such as "INFO:DotProductAttention:".
ATTENTION_BACKEND = re.compile(
    rb"Running with (FlashAttention|FusedAttention|UnfusedDotProductAttention) backend"
    rb"(?: \((?:version|sub-backend) ([^)\n]{1,32})\))?")
ATTENTION_BACKEND_LITERAL = b"Running with "
# FusedAttention's sub-backends (NVTE_Fused_Attn_Backend in TE's fused_attn.h): cuDNN kernels.
FUSED_SUB_BACKENDS = {"0": "BF16/FP16, seq <= 512", "1": "BF16/FP16", "2": "FP8"}
FP8_SUB_BACKEND = "2"

# NaN / Inf checks (--check-for-nan-in-loss-and-grad, on by default in 0.19): the rerun state
# machine logs "Unexpected result nan on rank 3 at iteration #31 invocation #1 (message='found
# NaN in local grad norm ...')" and exits with code 16 or 17, without a traceback.
NAN_MESSAGE = re.compile(
    rb"(?:found (?:NaN|Inf) in [^\n'\"]*|Unexpected result (?:nan|inf|-inf|NaN|Inf)\b[^\n]*"
    rb"|[Ll]oss is (?:NaN|Inf)\b[^\n]*)")
NAN_ITERATION = re.compile(rb"iteration #?(\d+)")
EXIT_CODE_RESUME_TO_DISAMBIGUATE = 16  # megatron.core.rerun_state_machine
EXIT_CODE_FAILED_ON_RESULT_VALIDATION = 17
NAN_EXIT_CODES = (EXIT_CODE_RESUME_TO_DISAMBIGUATE, EXIT_CODE_FAILED_ON_RESULT_VALIDATION)

# --- argument readers --------------------------------------------------------------------------

ArgValue = Union[None, bool, int, float, str]


def arg_value(args: dict, name: str) -> ArgValue:
    """An argument of the dump as Python: None, bool, int, float or the text as printed.

    Never raises: an integer too long for int() (Python's 4300-digit limit) or a float that
    overflows stays text.
    """
    text = args.get(name)
    if text is None or text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    if len(text) > 40:
        return text
    for conv in (int, float):
        try:
            return conv(text)
        except (ValueError, OverflowError):
            pass
    return text


def arg_int(args: dict, name: str) -> Optional[int]:
    """An integer argument, None when absent, None or not an integer."""
    value = arg_value(args, name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def mock_data(args: dict) -> bool:
    """True when the run trained on Megatron's mock (random) data: --mock-data, or no data."""
    if not args:
        return False
    if arg_value(args, "mock_data") is True:
        return True
    keys = [k for k in ("data_path", "train_data_path", "per_split_data_args_path") if k in args]
    return bool(keys) and all(arg_value(args, k) is None for k in keys)
