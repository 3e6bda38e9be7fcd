"""What several test files share: a matrix rendered and run through the CLIs, the CPU stand-in
trainer, written logs, a free port. Test modules import from here, never from each other."""

import copy
import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import render
import yaml
from conftest import REPO
from fp8suite.logs import runs
from fp8suite.report import compare

RUN = REPO / "tools" / "run.py"


STANDIN = REPO / "tests" / "standins" / "fake_megatron.py"


MATRIX = REPO / "tests" / "data" / "queue_matrix.yaml"


def render_queue_matrix(tmp: Path, name: str = "queue_matrix", **target) -> Path:
    """Render the test matrix under tmp (as <name>.yaml, `target` fields such as nodes= or
    gpus_per_node= changed), logs in tmp/logs; returns the manifest."""
    data = yaml.safe_load(MATRIX.read_text())
    data["target"].update(target)
    data["log_dir"] = str(tmp / "logs")
    data["triton_cache_dir"] = str(tmp / "triton")
    matrix = tmp / f"{name}.yaml"
    matrix.write_text(yaml.safe_dump(data, sort_keys=False))
    out = subprocess.run([sys.executable, str(REPO / "tools" / "render.py"), str(matrix),
                          "--out", str(tmp / "generated")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return tmp / "generated" / f"{name}.manifest.json"


def train_cmd(sleep: float = 0.01, *extra: str) -> str:
    return f"{sys.executable} {STANDIN} --fake-sleep {sleep} {' '.join(extra)}".strip()


def run_cli(*args: str, train: str | None = None, timeout: float = 60,
            env: dict | None = None) -> subprocess.CompletedProcess:
    environ = dict(os.environ, **(env or {}))
    environ.pop("TRAIN_CMD", None)
    if train is not None:
        environ["TRAIN_CMD"] = train
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True,
                          timeout=timeout, env=environ, cwd=REPO)


def read_state(logs: Path) -> dict:
    return json.loads((logs / "runs.json").read_text())["runs"]


BASE = {
    "name": "t",
    "run_name": "r_{recipe}",
    "target": {"gpu": "H100", "gpus_per_node": 8, "nodes": 1},
    "env": {"CUDA_DEVICE_MAX_CONNECTIONS": 1},  # Megatron asserts it on Hopper with TP > 1
    "data": {"mock_data": True, "vocab_size": 1024},
    "megatron": {
        "model": {"--num-layers": 4, "--hidden-size": 256, "--num-attention-heads": 8,
                  "--seq-length": 128, "--max-position-embeddings": 128},
        "training": {"--micro-batch-size": 1, "--global-batch-size": 16, "--train-iters": 10,
                     "--lr": 0.001, "--use-distributed-optimizer": True},
        "precision": {"--bf16": True},
        "logging": {"--eval-interval": 5, "--eval-iters": 1},
    },
    "axes": {"recipe": {
        "bf16": {},
        "cs": {"megatron": {"precision": {"--fp8-format": "hybrid", "--fp8-recipe": "tensorwise"}}},
    }},
}


def run_render(tmp_path, capsys, matrix, *extra):
    path = tmp_path / "m.yaml"
    path.write_text(matrix if isinstance(matrix, str) else yaml.safe_dump(matrix, sort_keys=False))
    out = tmp_path / "gen"
    code = render.main([str(path), "--out", str(out), *extra])
    err = capsys.readouterr().err
    lines = [line.split("m.yaml: ", 1)[1] for line in err.splitlines() if "m.yaml: " in line]
    return code, lines, out


def broken(**changes):
    """BASE with dotted-path changes applied; a value of DELETE removes the key."""
    m = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        keys = dotted.split("/")
        node = m
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(keys[-1])
        else:
            node[keys[-1]] = value
    return m


DELETE = object()


CS = "axes/recipe/cs/megatron/precision"


CKPT = "/lustre/ckpt/conv_llama_bf16_s1234"


T0 = datetime(2026, 11, 23, 4, 0, 0)


GBS = 16


def loss_of(it: int, lost: bool = False) -> float:
    return 10.0 - it / 100 + (1.0 if lost else 0.0)


@dataclass
class Launch:
    """One launch: it logs iterations first..last, saves at `saves`, ends with `end`."""

    first: int
    last: int
    saves: list
    end: str  # "done", "exit-duration", "slurm-time-limit", "killed", "crashed"
    start: datetime  # wall-clock of its first iteration's start
    load: Optional[int] = None  # the checkpoint iteration it loaded
    load_dir: str = CKPT
    cut_mid_line: bool = False
    lost_after: Optional[int] = None  # rows past this iteration are lost (a later launch redoes them)
    save_dir: str = CKPT
    extra: dict = field(default_factory=dict)
    nan_at: tuple = ()  # iterations whose loss is NaN
    max_allocated_mb: float = 60000.0  # report_memory's peak after its first iteration


def launch_text(ln: Launch, planned: int, seed: int = 1234, bf16: bool = True) -> str:
    args = {"global_batch_size": GBS, "train_iters": planned, "seed": seed, "save": ln.save_dir,
            "load": ln.load_dir, "save_interval": 1000, "eval_interval": 1000,
            "exit_duration_in_mins": 30, "seq_length": 2048, **ln.extra}
    head = REAL[:REAL.index(" [2026-11-23 04:01:35.321753] iteration")]
    for name, value in args.items():
        head = set_arg(head, name, value)
    if ln.load is not None:
        built = head.index("[after model, optimizer, and learning rate scheduler are built]")
        head = (head[:built]
                + f" loading distributed checkpoint from {ln.load_dir} at iteration {ln.load}\n"
                + f"  successfully loaded checkpoint from {ln.load_dir} "
                  f"[ t 1/1, gtp_remat 1/1, p 1/1 ] at iteration {ln.load}\n"
                + head[built:])
    lines = []
    t = ln.start
    for it in range(ln.first, ln.last + 1):
        lost = ln.lost_after is not None and it > ln.lost_after
        ms = 5000.0 if lost else 1000.0
        t += timedelta(milliseconds=ms)
        stamp = t.isoformat(" ", "microseconds")
        lines.append(ITER.format(ts=stamp, it=it, total=planned, samples=it * GBS, ms=ms,
                                 tflops=100.0, lr=3e-4, gbs=GBS,
                                 loss=math.nan if it in ln.nan_at else loss_of(it, lost),
                                 scale=1.0, gnorm=1.0, skip=0, nan=0))
        if it == ln.first:
            lines.append(f"[Rank 0] (after {it} iterations) memory (MB) | allocated: 50000.00 | "
                         f"max allocated: {ln.max_allocated_mb:.2f} | reserved: 70000.00 | "
                         "max reserved: 72000.00")
        if it in ln.saves:
            lines.append(f"[{stamp}] saving checkpoint at iteration {it:7d} to {ln.save_dir} "
                         "in torch_dist format")
            lines.append(f"  [{stamp}] successfully saved checkpoint from iteration {it:7d} to "
                         f"{ln.save_dir} [ t 1/1, gtp_remat 1/1, p 1/1 ]")
    stamp = t.isoformat(" ", "microseconds")
    tail = {
        "done": f"[after training is done] datetime: {stamp} \n",
        "exit-duration": f"[exiting program after 30.0166 minutes] datetime: {stamp} \n",
        "slurm-time-limit": "slurmstepd: error: *** JOB 812345 ON node-a CANCELLED AT "
                            f"{t.isoformat(timespec='seconds')} DUE TO TIME LIMIT ***\n",
        "killed": "",
        "crashed": ("[rank0]: Traceback (most recent call last):\n"
                    "[rank0]:   File \"/workspace/pretrain_entry.py\", line 57, in <module>\n"
                    "[rank0]: RuntimeError: CUDA error: an illegal memory access was "
                    "encountered\n"),
    }[ln.end]
    text = head + "\n".join(lines) + "\n" + tail
    if ln.cut_mid_line:
        text = text.rstrip("\n")[:-40]  # killed while writing its last line
    return text


def plan(saves_at: list, lost: list, gaps_s: list, planned: int, ends: list) -> list:
    """Launches of one run: launch k ends at saves_at[k] + lost[k] (the last at `planned`),
    after saving at saves_at[k]; launch k + 1 loads saves_at[k] and starts gaps_s[k] seconds
    after launch k's last line (negative: the clock went back)."""
    out, first, t = [], 1, T0
    for k, end in enumerate(ends):
        if k < len(saves_at):
            last = saves_at[k] + lost[k]
            ln = Launch(first, last, [saves_at[k]], end, t, lost_after=saves_at[k])
        else:
            ln = Launch(first, planned, [], end, t)
        if k:
            ln.load = saves_at[k - 1]
        out.append(ln)
        span = sum(5.0 if ln.lost_after is not None and it > ln.lost_after else 1.0
                   for it in range(ln.first, ln.last + 1))
        if k < len(saves_at):
            t = t + timedelta(seconds=span + gaps_s[k])
            first = saves_at[k] + 1
    return out


FIX = Path(__file__).parent / "data" / "logs" / "megatron019"


REAL = (FIX / "bf16.log").read_text()


ITER = (" [{ts}] iteration {it:8d}/{total:8d} | consumed samples: {samples:12d} |"
        " elapsed time per iteration (ms): {ms:.1f} | throughput per GPU (TFLOP/s/GPU): {tflops:.1f} |"
        " learning rate: {lr:.6E} | global batch size: {gbs:5d} | lm loss: {loss:.6E} |"
        " loss scale: {scale:.1f} | grad norm: {gnorm:.3f} | number of skipped iterations: {skip:3d} |"
        " number of nan iterations: {nan:3d} |")


def set_arg(text: str, name: str, value) -> str:
    if f"  {name} ." not in text:  # not in the trimmed dump: add it
        end = text.index("-------------------- end of arguments")
        return text[:end] + f"  {name} {'.' * (48 - len(name))} {value}\n" + text[end:]
    start = text.index(f"  {name} .")
    end = text.index("\n", start)
    return text[:start] + f"  {name} {'.' * (48 - len(name))} {value}" + text[end:]


def write_log(path: Path, losses, ms, tflops=None, args=None, gbs=16, end="done", gpu=None):
    """A Megatron 0.19 log: the real start-up with `args` set, then one line per iteration."""
    head = REAL[:REAL.index(" [2026-11-23 04:01:35.321753] iteration")]
    args = {"global_batch_size": gbs, "train_iters": len(losses), **(args or {})}
    for name, value in args.items():
        head = set_arg(head, name, value)
    t = datetime(2026, 11, 23, 4, 0, 0)
    lines = []
    for i, (loss, t_ms) in enumerate(zip(losses, ms), 1):
        t += timedelta(milliseconds=t_ms if math.isfinite(t_ms) else 0)
        lines.append(ITER.format(ts=t.isoformat(" ", "microseconds"), it=i, total=args["train_iters"],
                                 samples=i * gbs, ms=t_ms, tflops=(tflops or [100.0] * i)[i - 1],
                                 lr=3e-4, gbs=gbs, loss=loss, scale=1.0, gnorm=1.0, skip=0, nan=0))
    tail = {"done": f"[after training is done] datetime: {t.isoformat(' ', 'microseconds')} \n",
            "cut": ""}.get(end, end)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n".join(lines) + "\n" + tail)
    if gpu:
        path.with_name(path.stem + ".meta.json").write_text(json.dumps(
            {"run": path.stem, "exit_code": 0, "environment": {"gpu": {"name": gpu, "count": 2}}}))


def groups_of(directory, warmup=3, baseline=None):
    return compare.build_groups(runs.load_runs(runs.find_logs([str(directory)]), {}), warmup,
                                baseline)


SHAPE = {"seq_length": 2048, "world_size": 2, "data_parallel_size": 2, "micro_batch_size": 8,
         "eval_interval": 1000}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
