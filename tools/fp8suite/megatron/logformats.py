"""Where a training log comes from: its producer and era, read from the log itself, and each
era's vocabulary kept as data beside megatron-core 0.19's (`logvocab`).

Eras (each from that release's own printing code, read at its tag):

| era | arguments dump header | iteration line | FP8 switch in the dump |
|---|---|---|---|
| Megatron-LM v1.x (2020; tag v1.0, `megatron/training.py`) | 20 dashes, `arguments` | ` iteration N/M \\| elapsed time per iteration (ms) \\| learning rate \\| lm loss \\| loss scale` (fp16 only); no `consumed samples`, no `[after training is done]` | none |
| Megatron-LM 2022-2023 (tags 23.04 / 23.06) | 24 dashes | + `consumed samples`, `global batch size`, `number of skipped/nan iterations` | `fp8_hybrid` / `fp8_e4m3` (`--fp8-hybrid`, `--fp8-e4m3`) |
| megatron-core core_r0.5 .. 0.19 (`megatron/training/training.py`) | 24 dashes | + `throughput per GPU (TFLOP/s/GPU)` (`--log-throughput`), a `[YYYY-MM-DD hh:mm:ss]` timestamp before the anchor (0.8 on) | `fp8` (`--fp8-format`), `fp8_recipe` (0.12 on) |
| Megatron-Bridge (`megatron/bridge/training/utils/train_utils.py`) | none (a config dump) | megatron-core's, memory as `memory (GB) \\| mem-max-allocated-gigabytes` | from the recipe config |
| NeMo 2.0 / Lightning (`nemo/lightning/pytorch/callbacks/progress_printer.py`) | none | `Training epoch E, iteration I/M \\| lr \\| global_batch_size \\| global_step \\| reduced_train_loss \\| train_step_timing in s \\| consumed_samples` (I from 0, M = max_steps - 1); ends with `` `Trainer.fit` stopped: `max_steps=N` reached.`` | `Using FP8 (format, scaling[, amax history N, amax compute algo A])` info line (`nemo_fp8_args`); a log without it states no precision |

`detect` names the era; `to_megatron` rewrites a NeMo 2.0 log's step and end lines in
megatron-core's words (so one parser reads both); `looks_like` guesses what an unplaceable log
is, for the one-line "format not recognised: looks like X".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import logvocab as V
from . import recipes


@dataclass(frozen=True)
class Era:
    """One producer's release range and the signs of it in a log."""

    name: str  # shown in the report, e.g. "Megatron-LM 2022-2023"
    producer: str  # "Megatron-LM", "megatron-core", "Megatron-Bridge", "NeMo 2.0"
    releases: str  # e.g. "tags 23.04 .. 23.06"


MEGATRON_V1 = Era("Megatron-LM v1.x (2020)", "Megatron-LM", "v1.0 .. v2.x")
MEGATRON_2023 = Era("Megatron-LM 2022-2023", "Megatron-LM", "tags 22.x .. 23.06")
MEGATRON_CORE = Era("megatron-core", "megatron-core", "core_r0.5 .. core_v0.19")
MEGATRON_BRIDGE = Era("Megatron-Bridge", "Megatron-Bridge", "0.1 ..")
NEMO2 = Era("NeMo 2.0 (Lightning)", "NeMo 2.0", "24.09 ..")
# Megatron's own lines with nothing that tells its release apart.
MEGATRON_UNPLACED = Era("Megatron (release not placed)", "Megatron-LM", "")
UNKNOWN = Era("unknown", "", "")
ERAS = (MEGATRON_V1, MEGATRON_2023, MEGATRON_CORE, MEGATRON_BRIDGE, NEMO2)

# --- signs of each era ------------------------------------------------------------------------

# v1.x: `print('-------------------- arguments --------------------')` (20 dashes; later
# releases print 24), argument names padded with dots to 32 columns (later: 48).
V1_ARGS_HEADER = re.compile(rb"(?<!-)-{20} arguments -{20}(?!-)")
# 2022-2023 Megatron-LM turns FP8 on with --fp8-hybrid / --fp8-e4m3 (dests fp8_hybrid,
# fp8_e4m3); megatron-core replaced both with --fp8-format (dest fp8). The old switches in
# megatron-core's words: {dump name: (megatron-core's name, its value when the switch is on)}.
FP8_2023_ARGS = {"fp8_hybrid": ("fp8", "hybrid"), "fp8_e4m3": ("fp8", "e4m3")}
THROUGHPUT = V.TFLOPS.encode()
# Megatron-Bridge's training_log (megatron/bridge/training/utils/train_utils.py) prints
# megatron-core's iteration line plus "Step Time : 1.23s GPU utilization: 450.1MODEL_TFLOP/s/GPU"
# and "[Rank 0] (after N iterations) memory (GB) | mem-max-allocated-gigabytes: ..." lines.
BRIDGE_SIGNS = (b"mem-max-allocated-gigabytes", b"MODEL_TFLOP/s/GPU", b"megatron.bridge",
                b"megatron/bridge")
# NeMo 2.0's progress printer and Lightning's end of fit.
NEMO_STEP = re.compile(
    rb"^(?P<pre>[^\n]*?)Training epoch (?P<epoch>\d+), iteration (?P<it>\d+)/(?P<max>\d+) \|"
    rb"(?P<fields>[^\n]*)$", re.M)
NEMO_FIT_STOPPED = re.compile(rb"`Trainer\.fit` stopped: `max_steps=(\d+)` reached\.?")
# NeMo's own logger prefix ("[NeMo I 2025-01-10 08:30:02 nemo_logging:393] ...").
NEMO_LOGGER = b"[NeMo I "
# NeMo 2.0's keys -> megatron-core's, with the factor to its unit (train_step_timing is in s).
NEMO_KEYS = {
    "train_step_timing in s": (V.ITER_MS, 1000.0),
    "lr": (V.LR, 1.0),
    "global_batch_size": (V.GBS, 1.0),
    "reduced_train_loss": (V.LOSS, 1.0),
}
# Every NeMo step line is rewritten with these keys, in this order (one layout for all).
NEMO_ORDER = (V.ITER_MS, V.LR, V.GBS, V.LOSS)
# NeMo 2.0 prints no arguments dump; its info line names the FP8 settings instead:
# "Using FP8 (hybrid, delayed scaling, amax history 1024, amax compute algo max)". The part in
# brackets is comma-separated: the format first, then the scaling and, for delayed scaling,
# its amax settings.
NEMO_FP8 = re.compile(rb"Using FP8 \((?P<settings>[^)\n]*)\)")
_SAMPLE = 4 << 20  # bytes of the log's start read for detection


def detect(buf, args: dict) -> Era:
    """The era of a log (bytes or any buffer; its first 4 MiB are read) and its last arguments
    dump `args`: NeMo 2.0 by its progress lines or logger, Megatron-Bridge by its GB memory keys
    or step-time line, Megatron-LM v1.x by its 20-dash dump header, 2022-2023 by
    `fp8_hybrid`/`fp8_e4m3` in the dump without `fp8`, megatron-core by an `fp8` argument, the
    throughput field or a timestamped iteration line; MEGATRON_UNPLACED for Megatron's lines
    with none of these (an iteration line without `consumed samples` is no proof of v1.x:
    later releases print none without their options either); UNKNOWN when nothing places it."""
    head = bytes(buf[:_SAMPLE])
    if NEMO_STEP.search(head) or NEMO_FIT_STOPPED.search(head) or NEMO_LOGGER in head:
        return NEMO2
    if any(s in head for s in BRIDGE_SIGNS):
        return MEGATRON_BRIDGE
    if V1_ARGS_HEADER.search(head):
        return MEGATRON_V1
    if "fp8" not in args and any(k in args for k in FP8_2023_ARGS):
        return MEGATRON_2023
    if "fp8" in args or THROUGHPUT in head or b"] iteration " in head:
        return MEGATRON_CORE
    if args or V.ANCHOR.search(head):
        return MEGATRON_UNPLACED
    return UNKNOWN


def ends_without_marker(era: Era) -> bool:
    """Whether the era prints no end marker: Megatron-LM v1.x (2020) has no
    `[after training is done]`; its training ends with the final validation lines."""
    return era is MEGATRON_V1


def in_core_words(args: dict) -> dict:
    """A 2022-2023 dump's FP8 switches added in megatron-core's words (`fp8_hybrid True` ->
    `fp8 hybrid`), so the recipe registry reads every era alike; other dumps unchanged."""
    if "fp8" in args:
        return args
    for name, (core, value) in FP8_2023_ARGS.items():
        if args.get(name) == "True":
            return {**args, core: value}
    return args


def nemo_fp8_line(buf) -> str:
    """The last `Using FP8 (...)` line of a NeMo 2.0 log (bytes or any buffer), as text from
    "Using FP8"; '' when it has none."""
    found = None
    for found in NEMO_FP8.finditer(bytes(buf)):
        pass
    return found.group(0).decode("utf-8", "replace") if found else ""


def nemo_fp8_args(line: str) -> dict:
    """The FP8 settings of NeMo's `Using FP8 (...)` line in megatron-core's argument names, as
    its dump would print them (recipes.args_of_nemo_fp8); {} for a line without one."""
    m = NEMO_FP8.search(line.encode("utf-8", "replace"))
    return recipes.args_of_nemo_fp8(m.group("settings").decode("utf-8", "replace")) if m else {}


def to_megatron(buf: bytes) -> bytes:
    """A NeMo 2.0 log with its step lines and end of fit in megatron-core's words: `Training
    epoch E, iteration I/M | ...` becomes ` iteration I+1/M+1 | elapsed time per iteration
    (ms): ... | learning rate: ... | global batch size: ... | lm loss: ... |` (NeMo counts
    steps from 0, M is max_steps - 1), `Trainer.fit stopped: max_steps=N reached` becomes
    `[after training is done]`. Other lines are kept as they are."""
    def step(m: re.Match) -> bytes:
        values = {}
        for piece in m.group("fields").split(b"|"):
            key, sep, value = piece.partition(b":")
            mapped = NEMO_KEYS.get(key.strip().decode("ascii", "replace")) if sep else None
            if mapped is None:
                continue
            try:
                values[mapped[0]] = float(value) * mapped[1]
            except ValueError:
                continue
        it, top = int(m.group("it")) + 1, int(m.group("max")) + 1
        fields = "".join(f" {k}: {values[k]!r} |" for k in NEMO_ORDER if k in values)
        return m.group("pre") + f" iteration {it:8d}/{top:8d} |{fields}".encode()

    buf = NEMO_STEP.sub(step, buf)
    return NEMO_FIT_STOPPED.sub(lambda m: V.DONE + m.group(0), buf)


def looks_like(buf) -> str:
    """What an unplaceable log seems to be, in a few words ("binary data", "a Hugging Face
    Trainer log", "plain text"), from its first 64 KiB."""
    head = bytes(buf[:1 << 16])
    if not head.strip(b"\0"):
        return "NUL bytes only (a sparse or zeroed file)"
    printable = sum(1 for b in head if 32 <= b < 127 or b in (9, 10, 13))
    if printable < 0.9 * len(head):
        return "binary data"
    text = head.decode("utf-8", "replace")
    if text.lstrip().startswith(("{", "[")) and '":' in text:
        return "JSON"
    if "'loss':" in text and "'epoch':" in text:
        return "a Hugging Face Trainer log"
    if "Epoch " in text and ("it/s]" in text or "s/it]" in text):
        return "a Lightning / tqdm progress log without Megatron or NeMo step lines"
    if "#SBATCH" in text or text.startswith("#!"):
        return "a shell script"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"plain text ({first[:60]!r})" if first else "blank lines"
