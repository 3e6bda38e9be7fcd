#!/usr/bin/env python3
"""Write one small log per producer era (tests/data/eras/*.log), each in that release's own
line formats, read at its tag (see fp8suite/megatron/logformats.py for the table):

* megatron_lm_v1_2020.log      Megatron-LM tag v1.0: megatron/arguments.py `_print_args` (20
  dashes, names dotted to 32 columns), megatron/training.py `training_log` (no consumed
  samples; `loss scale` only with fp16), `report_memory` in megatron/utils.py, and the final
  `validation loss at the end of training for val data` lines; no end marker.
* megatron_lm_2023_fp8_hybrid.log  tag 23.04: 24-dash dump with `fp8_hybrid True`,
  `training_log` with consumed samples, global batch size, skipped / nan iteration counts,
  `print_datetime('after training is done')`.
* megatron_core_r0_5.log       core_v0.5.0: + `throughput per GPU (TFLOP/s/GPU)`, `fp8` (from
  --fp8-format) in the dump, no timestamp before the anchor.
* megatron_core_r0_12.log      core_v0.12.0: `[%Y-%m-%d %H:%M:%S]` before the anchor,
  `learning rate` as {:.6E}, `fp8_recipe`.
* megatron_bridge.log          Megatron-Bridge train_utils.training_log: core's line plus
  `Step Time : ...s GPU utilization: ...MODEL_TFLOP/s/GPU` and `memory (GB)` lines.
* nemo2_lightning.log          NeMo 2.0's progress printer and Lightning's end of fit.

Numbers are synthetic (a smooth loss curve, fixed step times). Re-run to rewrite the files:
    python tests/data/eras/make_eras.py
"""

from __future__ import annotations

import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
N = 30
GBS, SEQ = 256, 4096


def loss(i: int) -> float:
    return 3.0 + 8.0 * math.exp(-i / 8.0)


def dump(args: dict, dashes: int, width: int) -> list:
    lines = ["-" * dashes + " arguments " + "-" * dashes]
    for name in sorted(args, key=str.lower):
        lines.append("  {} {} {}".format(name, "." * (width - len(name)), args[name]))
    lines.append("-" * (dashes - 4) + " end of arguments " + "-" * (dashes - 3)
                 if dashes == 24 else "-" * (dashes - 4) + " end of arguments " + "-" * (dashes - 4))
    return lines


BASE = {"num_layers": 32, "hidden_size": 4096, "ffn_hidden_size": 14336,
        "num_attention_heads": 32, "seq_length": SEQ, "global_batch_size": GBS,
        "micro_batch_size": 1, "world_size": 8, "tensor_model_parallel_size": 1,
        "pipeline_model_parallel_size": 1, "train_iters": N, "log_interval": 1, "seed": 1234,
        "eval_interval": 1000, "save_interval": None}


def v1_2020() -> list:
    args = {**BASE, "fp16": True, "bf16": False, "loss_scale": None, "initial_loss_scale": 4294967296.0,
            "min_loss_scale": 1.0}
    del args["global_batch_size"], args["micro_batch_size"]
    args["batch_size"] = 4
    out = ["using world size: 8 and model-parallel size: 1 "] + dump(args, 20, 32)
    scale = 4294967296.0
    for i in range(1, N + 1):
        if i <= 4:
            scale = 4294967296.0 / 2 ** (i - 1)
        out.append(" iteration {:8d}/{:8d} |".format(i, N)
                   + " elapsed time per iteration (ms): {:.1f} |".format(812.0 + (i % 3))
                   + " learning rate: {:.3E} |".format(1.5e-4)
                   + " {}: {:.6E} |".format("lm loss", loss(i))
                   + " loss scale: {:.1f} |".format(scale))
        if i == 1:
            out.append("after 1 iterations memory (MB) | allocated: 9801.5 | max allocated: "
                       "12001.2 | cached: 14000.0 | max cached: 14000.0")
    out += ["-" * 99,
            " validation loss at the end of training for val data | lm loss value: "
            "{:.6E} | lm loss PPL: {:.6E} | ".format(loss(N), math.exp(loss(N))),
            "-" * 99]
    return out


def core_line(i: int, ms: float, *, stamp: str = "", throughput: bool = False,
              lr_fmt: str = "{:.6E}") -> str:
    line = (f" [{stamp}]" if stamp else "") + " iteration {:8d}/{:8d} |".format(i, N)
    line += " consumed samples: {:12d} |".format(i * GBS)
    line += " elapsed time per iteration (ms): {:.1f} |".format(ms)
    if throughput:
        line += f" throughput per GPU (TFLOP/s/GPU): {400.0 * 2400 / ms:.1f} |"
    line += " learning rate: " + lr_fmt.format(1.5e-4) + " |"
    line += " global batch size: {:5d} |".format(GBS)
    line += " {}: {:.6E} |".format("lm loss", loss(i))
    line += " loss scale: {:.1f} |".format(1.0)
    line += " grad norm: {:.3f} |".format(1.5 - i / 100)
    line += " number of skipped iterations: {:3d} |".format(0)
    line += " number of nan iterations: {:3d} |".format(0)
    return line


def megatron_2023() -> list:
    args = {**BASE, "bf16": True, "fp16": False, "fp8_hybrid": True, "fp8_e4m3": False,
            "fp8_margin": 0, "fp8_interval": 1, "fp8_amax_history_len": 1024,
            "fp8_amax_compute_algo": "max", "fp8_wgrad": True, "transformer_impl": "transformer_engine"}
    out = ["using world size: 8, data-parallel-size: 8, tensor-model-parallel size: 1, "
           "pipeline-model-parallel size: 1 "] + dump(args, 24, 48)
    out += [core_line(i, 2400.0 + (i % 3), lr_fmt="{:.3E}") for i in range(1, N + 1)]
    out.append("[after training is done] datetime: 2023-05-02 10:20:00 ")
    return out


def core_r0_5() -> list:
    args = {**BASE, "bf16": True, "fp16": False, "fp8": "hybrid", "fp8_margin": 0,
            "fp8_amax_history_len": 1024, "fp8_amax_compute_algo": "max", "log_throughput": True}
    out = ["using world size: 8, data-parallel size: 8, context-parallel size: 1 "
           "tensor-model-parallel size: 1, pipeline-model-parallel size: 1 "] + dump(args, 24, 48)
    out += [core_line(i, 2400.0 + (i % 3), throughput=True, lr_fmt="{:.3E}")
            for i in range(1, N + 1)]
    out.append("[after training is done] datetime: 2024-03-01 10:20:00 ")
    return out


def core_r0_12() -> list:
    args = {**BASE, "bf16": True, "fp16": False, "fp8": "hybrid", "fp8_recipe": "tensorwise",
            "fp8_param_gather": False, "log_throughput": True}
    out = ["using world size: 8, data-parallel size: 8, context-parallel size: 1, "
           "hierarchical context-parallel sizes: None, tensor-model-parallel size: 1, "
           "encoder-tensor-model-parallel size: 0, pipeline-model-parallel size: 1, "
           "encoder-pipeline-model-parallel size: 0"] + dump(args, 24, 48)
    for i in range(1, N + 1):
        out.append(core_line(i, 2300.0 + (i % 3), stamp=f"2025-05-01 10:{i // 60:02d}:{i % 60:02d}",
                             throughput=True))
    out.append("[after training is done] datetime: 2025-05-01 10:20:00 ")
    return out


def bridge() -> list:
    out = ["[NeMo-free] Megatron-Bridge pretrain: megatron.bridge.training.pretrain"]
    for i in range(1, N + 1):
        ms = 2200.0 + (i % 3)
        out.append(f"Step Time : {ms / 1000:.2f}s GPU utilization: {400.0 * 2400 / ms:.1f}"
                   "MODEL_TFLOP/s/GPU")
        out.append(core_line(i, ms, stamp=f"2025-09-01 10:{i // 60:02d}:{i % 60:02d}",
                             throughput=True))
        if i == 1:
            out.append("[Rank 0] (after 1 iterations) memory (GB) | mem-allocated-gigabytes: 40.1"
                       " | mem-max-allocated-gigabytes: 61.5 | mem-reserved-gigabytes: 66.0 | "
                       "mem-max-reserved-gigabytes: 66.0")
    out.append("[after training is done] datetime: 2025-09-01 10:20:00 ")
    return out


def nemo2() -> list:
    out = ["[NeMo I 2025-01-10 08:30:02 nemo_logging:393] Experiments will be logged at /results",
           "GPU available: True (cuda), used: True",
           "[NeMo I 2025-01-10 08:30:19 nemo_logging:393] Using FP8 (hybrid, delayed scaling)"]
    for i in range(N):
        line = (f"Training epoch 0, iteration {i}/{N - 1} | lr: {1.5e-4:.3g} | global_batch_size: "
                f"{GBS} | global_step: {i} | reduced_train_loss: {loss(i + 1):.4g} | "
                f"train_step_timing in s: {2.1 + (i % 3) / 1000:.4g}")
        if i:
            line += f" | consumed_samples: {(i + 1) * GBS}"
        out.append(line)
    out.append(f"`Trainer.fit` stopped: `max_steps={N}` reached.")
    return out


ERAS = {
    "megatron_lm_v1_2020.log": v1_2020,
    "megatron_lm_2023_fp8_hybrid.log": megatron_2023,
    "megatron_core_r0_5.log": core_r0_5,
    "megatron_core_r0_12.log": core_r0_12,
    "megatron_bridge.log": bridge,
    "nemo2_lightning.log": nemo2,
}

if __name__ == "__main__":
    for name, make in ERAS.items():
        (HERE / name).write_text("\n".join(make()) + "\n")
        print(f"wrote {HERE / name}")
