#!/usr/bin/env python3
"""Fuzz the suite as a hostile or careless user would: malformed matrices, injection attempts
into every value that reaches a script, and random kills of a running queue.

Three benches, each printing its goal figures:

  malformed  matrices that are broken in every way the loader must survive (encodings,
             nesting, aliases, duplicate keys, zero and infinite numbers, bad run-name
             templates, files that are not files...) -> render.py and run.py on each: tracebacks,
             files written, exit status, and whether every message names the file (and the key)
  injection  shell payloads in every matrix field, the matrix file name, the --out folder and
             every launch-time variable -> each accepted script must pass `bash -n` and
             shellcheck, and is run (the .sh with a stand-in for training, the .sbatch with
             stub srun/scontrol): did any payload execute?
  kills      SIGKILL of tools/run.py at a random moment of a running queue (CPU stand-in for
             Megatron), the orphaned run left to finish on its own, then run.py --resume ->
             lost logs, corrupt status files, completed runs trained again

    python tests/fuzz/fuzz_matrix.py                 # the full goal run (a few minutes)
    python tests/fuzz/fuzz_matrix.py --quick         # a sample of each bench (the test suite runs this)
    python tests/fuzz/fuzz_matrix.py --bench kills --kills 40 --seed 7

Exit status: 0 every goal met, 1 some goal missed (the failing cases are listed).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

TOOLS = Path(__file__).resolve().parents[2] / "tools"
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))

from fp8suite.common.errors import exit_status  # noqa: E402

import render  # noqa: E402

STANDIN = ROOT / "tests" / "standins" / "fake_megatron.py"

# A small valid matrix every case starts from: two runs, mock data, a W&B section, a
# container image and mounts, so that every template branch a value can reach is rendered.
BASE: dict[str, Any] = {
    "name": "fuzz",
    "description": "Fuzzing base matrix.",
    "run_name": "fz_{recipe}",
    "target": {"gpu": "H100", "gpus_per_node": 8, "nodes": 1},
    "env": {"CUDA_DEVICE_MAX_CONNECTIONS": 1},
    "data": {"mock_data": True, "vocab_size": 128},
    "min_free_gb": 0,
    "gradient_accumulation_fusion": "off",
    "wandb": {"project": "fuzz", "entity": "team", "save_dir": "wandb_dir"},
    "slurm": {"time": "00:05:00", "partition": "gpu", "account": "acct",
              "container_image": "nvcr.io/nvidia/pytorch:25.01-py3",
              "container_mounts": ["/data:/data"], "sbatch_options": ["--exclusive"],
              "request_gpus": False},
    "megatron": {
        "model": {"--num-layers": 4, "--hidden-size": 64, "--num-attention-heads": 4,
                  "--seq-length": 128, "--max-position-embeddings": 128},
        "training": {"--micro-batch-size": 1, "--global-batch-size": 8, "--train-iters": 4,
                     "--lr": 1.0e-4, "--use-distributed-optimizer": True},
        "precision": {"--bf16": True},
        "logging": {"--log-interval": 1, "--eval-interval": 1000, "--eval-iters": 0},
    },
    "axes": {"recipe": {"bf16": {}, "fp8": {"megatron": {"precision": {
        "--fp8-format": "hybrid", "--fp8-recipe": "tensorwise"}}}}},
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def put(m: dict, dotted: str, value: Any) -> dict:
    """Set `value` at a '/'-separated key path (created as needed); returns m."""
    keys = dotted.split("/")
    node = m
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return m


def dump(m: Any) -> bytes:
    return yaml.safe_dump(m, sort_keys=False, allow_unicode=True).encode("utf-8")


# --------------------------------------------------------------------------------------------
# Malformed matrices
# --------------------------------------------------------------------------------------------

@dataclass
class Malformed:
    name: str
    make: Callable[[Path], Path]
    """Writes the case under a folder; returns the path given to render.py."""
    key: Optional[str] = None
    """The dotted key a message must name (None: a problem of the whole file)."""


def _text(name: str, data: bytes | str, key: Optional[str] = None, filename: str = "m.yaml") -> Malformed:
    raw = data.encode("utf-8") if isinstance(data, str) else data

    def make(folder: Path) -> Path:
        path = folder / filename
        path.write_bytes(raw)
        return path
    return Malformed(name, make, key)


def _matrix(name: str, m: Any, key: Optional[str]) -> Malformed:
    return _text(name, dump(m), key)


def _edit(label: str, key: Optional[str], /, **changes: Any) -> Malformed:
    m = base()
    for path, value in changes.items():
        put(m, path.replace("__", "/"), value)
    return _matrix(label, m, key)


def _replace_in(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def malformed_cases() -> list[Malformed]:
    cases: list[Malformed] = []
    good = dump(base()).decode()

    # Files that are not UTF-8 text, not files, too large.
    cases += [
        _text("empty file", b""),
        _text("utf-16 le with bom", good.encode("utf-16")),
        _text("utf-16 be with bom", b"\xfe\xff" + good.encode("utf-16-be")),
        _text("utf-16 without bom", good.encode("utf-16-le")),
        _text("utf-32 with bom", good.encode("utf-32")),
        _text("latin-1 byte", good.replace("Fuzzing", "Fuzz\u00e9").encode("latin-1")),
        _text("invalid utf-8 byte", good.encode() + b"# \xff\xfe\n"),
        _text("nul byte", good.encode() + b"\x00\n"),
        _text("oversized comments", good + ("#" + "x" * 99 + "\n") * 3000),
        _text("oversized list", _replace_in(good, "container_mounts:\n",
                                            "container_mounts:\n" + "  - /a:/b\n" * 40000)),
        _text("binary garbage", bytes(range(256)) * 4),
    ]

    def symlink_loop(folder: Path) -> Path:
        (folder / "a.yaml").symlink_to(folder / "b.yaml")
        (folder / "b.yaml").symlink_to(folder / "a.yaml")
        return folder / "a.yaml"

    def self_link(folder: Path) -> Path:
        (folder / "self.yaml").symlink_to(folder / "self.yaml")
        return folder / "self.yaml"

    def dangling(folder: Path) -> Path:
        (folder / "gone.yaml").symlink_to(folder / "nowhere.yaml")
        return folder / "gone.yaml"

    def directory(folder: Path) -> Path:
        (folder / "dir.yaml").mkdir()
        return folder / "dir.yaml"

    def fifo(folder: Path) -> Path:
        os.mkfifo(folder / "fifo.yaml")
        return folder / "fifo.yaml"

    cases += [Malformed("symlink loop", symlink_loop), Malformed("symlink to itself", self_link),
              Malformed("dangling symlink", dangling), Malformed("a directory", directory),
              Malformed("a fifo", fifo), Malformed("missing file", lambda f: f / "missing.yaml"),
              Malformed("character device", lambda f: Path("/dev/zero"))]

    # YAML that must not be parsed into trouble.
    lol = "lol: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    cases += [
        _text("deep flow nesting", "name: x\nexclude: " + "[" * 5000 + "]" * 5000 + "\n"),
        _text("deep flow mapping", "name: x\ndescription: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"),
        _text("deep block nesting", "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"),
        _text("billion laughs in exclude", lol + good + "exclude: [*i]\n"),
        _text("billion laughs in exclude, 8 lines", lol + "exclude: *i\n"),
        _text("billion laughs in megatron", lol + good.replace("megatron:\n", "megatron:\n  big: *i\n", 1)),
        _text("billion laughs in a flag", lol + good.replace("    --bf16: true\n", "    --bf16: *i\n", 1)),
        _text("recursive alias", "name: &a [*a]\n"),
        _text("undefined alias", good + "exclude: *nothing\n"),
        _text("python object tag", good + "description: !!python/object/apply:os.system ['touch /tmp/x']\n"),
        _text("unknown tag", good + "slurm: !vault secret\n"),
        _text("binary tag", good.replace("name: fuzz", "name: !!binary aGVsbG8=")),
        _text("tab indentation", good.replace("  gpu: H100", "\tgpu: H100")),
        _text("unclosed quote", good + 'description: "never closed\n'),
        _text("unclosed flow", good + "exclude: [{recipe: bf16}\n"),
        _text("two documents", good + "---\n" + good),
        _text("top-level list", "- name: x\n- run_name: y\n"),
        _text("top-level scalar", "just text\n"),
        _text("top-level null", "~\n"),
        _text("complex key", good + "? [a, b]\n: c\n"),
        _text("unhashable key in axes", good.replace("    bf16: {}", "    ? {a: 1}\n    : {}")),
        _text("stray document end", "...\n" + good),
    ]

    # Duplicate keys anywhere: the later one would silently win.
    def dup(name: str, anchor: str, extra: str, key: str) -> Malformed:
        return _text(name, _replace_in(good, anchor, anchor + extra), key)

    cases += [
        dup("duplicate top-level key", "name: fuzz\n", "name: other\n", "name"),
        dup("duplicate axis value", "    bf16: {}\n", "    bf16: {}\n", "axes.recipe.bf16"),
        dup("duplicate flag", "    --bf16: true\n", "    --bf16: false\n", "megatron.precision.--bf16"),
        dup("duplicate target key", "  gpus_per_node: 8\n", "  gpus_per_node: 1\n", "target.gpus_per_node"),
        dup("duplicate env var", "  CUDA_DEVICE_MAX_CONNECTIONS: 1\n", "  CUDA_DEVICE_MAX_CONNECTIONS: 2\n",
            "env.CUDA_DEVICE_MAX_CONNECTIONS"),
        dup("duplicate data key", "  vocab_size: 128\n", "  vocab_size: 256\n", "data.vocab_size"),
        dup("duplicate slurm key", "  time: 00:05:00\n", "  time: 01:00:00\n", "slurm.time"),
        dup("duplicate group", "  logging:\n", "    --seed: 1\n  logging:\n", "megatron.logging"),
        _text("duplicate fp8 axis value turning FP8 into BF16", _replace_in(good, "  recipe:\n", "  recipe:\n    fp8: {}\n"),
              "axes.recipe.fp8"),
        _text("duplicate key in exclude", good + "exclude:\n- recipe: bf16\n  recipe: fp8\n", "exclude[0].recipe"),
        _text("duplicate quoted and plain key", _replace_in(good, "name: fuzz\n", "name: fuzz\n'name': again\n"), "name"),
    ]

    # Counts and sizes that must be >= 1, anywhere they are set.
    positive = ["--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size",
                "--micro-batch-size", "--global-batch-size", "--hidden-size", "--num-attention-heads",
                "--num-layers", "--seq-length", "--max-position-embeddings", "--train-iters",
                "--ffn-hidden-size", "--num-query-groups", "--expert-model-parallel-size", "--log-interval",
                "--eval-interval"]
    def group(flag: str) -> str:
        return next((g for g, flags in BASE["megatron"].items() if flag in flags), "model")

    for flag in positive:
        for value in (0, -1):
            g = group(flag)
            cases.append(_edit(f"{flag} {value}", f"megatron.{g}.{flag}", **{f"megatron__{g}__{flag}": value}))
    for flag in ("--tensor-model-parallel-size", "--micro-batch-size", "--context-parallel-size"):
        g = group(flag)
        cases.append(_edit(f"{flag} 0 in an axis", f"axes.recipe.fp8.megatron.{g}.{flag}",
                           **{f"axes__recipe__fp8__megatron__{g}__{flag}": 0}))
    cases.append(_edit("--hidden-size as text -4096", "megatron.model.--hidden-size",
                       **{"megatron__model__--hidden-size": "-4096"}))
    cases.append(_edit("--num-layers 2^70", "megatron.model.--num-layers", **{"megatron__model__--num-layers": 2 ** 70}))
    cases.append(_edit("--seed -5", "megatron.training.--seed", **{"megatron__training__--seed": -5}))
    for key in ("target__gpus_per_node", "target__nodes"):
        for value in (0, -2, 10 ** 9):
            cases.append(_edit(f"{key} {value}", key.replace("__", "."), **{key: value}))
    for value in (0, -128, 2 ** 40):
        cases.append(_edit(f"vocab_size {value}", "data.vocab_size", data__vocab_size=value))

    # Floats: finite, in range; the free-space guard bounded.
    for flag, value in [("--lr", float("inf")), ("--lr", float("nan")), ("--lr", -1e-4), ("--lr", "nan"),
                        ("--min-lr", float("-inf")), ("--clip-grad", float("inf")), ("--weight-decay", -0.1),
                        ("--hidden-dropout", 1.5), ("--adam-beta2", 2.0), ("--init-method-std", float("nan")),
                        ("--adam-eps", "inf"), ("--attention-dropout", -0.5)]:
        cases.append(_edit(f"{flag} {value}", f"megatron.training.{flag}", **{f"megatron__training__{flag}": value}))
    for value in (float("inf"), float("nan"), 1e300, -1, float("-inf"), 1e10):
        cases.append(_edit(f"min_free_gb {value}", "min_free_gb", min_free_gb=value))

    # Run-name templates.
    for template in ["train_{recipe", "train_}{recipe}", "{recipe:x}", "{recipe:{w}}", "{recipe.x}",
                     "{recipe[0]}", "{}", "{0}", "{recipe!r}", "{recipe!s}", "{{recipe}}", "train_{recipe}\n",
                     "a" * 300 + "{recipe}", "{recipe}/../x", "{ recipe}", "{recipe }", "../{recipe}",
                     "{recipe}.sh;x", "{recipe}{", "}", "{recipe:>{w}}", "{recipe!}", "{recipe:}x",
                     "{axis_missing}", "-{recipe}", "{recipe}\u2028x"]:
        cases.append(_edit(f"run_name {template!r}", "run_name", run_name=template))
    cases.append(_edit("run_name empty", "run_name", run_name=""))
    cases.append(_edit("run_name a list", "run_name", run_name=["fz_{recipe}"]))

    # Control characters and unsafe names.
    cases += [
        _edit("name with newline", "name", name="fuzz\n"),
        _edit("name with carriage return", "name", name="fuzz\rx"),
        _edit("name starting with a dash", "name", name="-fuzz"),
        _edit("name with a slash", "name", name="../fuzz"),
        _edit("name too long", "name", name="f" * 300),
        _edit("description with newline", "description", description="ok\ntouch /tmp/x"),
        _edit("description with escape", "description", description="ok\x1b[2J"),
        _text("description with nel", _replace_in(good, "description: Fuzzing base matrix.",
                                                  'description: "ok\\Ntouch"'), "description"),
        _text("name with line separator", _replace_in(good, "name: fuzz", 'name: "fuzz\\Lx"'), "name"),
        _edit("axis value with newline", "axes.recipe.a\\n", axes={"recipe": {"a\n": {}, "fp8": {}}}),
        _edit("axis value with tab", "axes.recipe.a\\tb", **{"axes__recipe__a\tb": {}}),
        _edit("axis name with newline", "axes.r\\n", axes={"r\n": {"a": {}}}, run_name="x_{r}"),
        _edit("env name with newline", "env.X\\n", env={"X\n": 1}),
        _edit("env value with newline", "env.X", env={"X": "a\nb"}),
        _edit("flag with newline", "megatron.model.--num-layers\\n", **{"megatron__model__--num-layers\n": 4}),
        _edit("flag value with newline", "megatron.training.--data-cache-path", **{"megatron__training__--data-cache-path": "/c\nx"}),
        _edit("group name with newline", "megatron.mo\\ndel", megatron={"mo\ndel": {"--num-layers": 4}}),
        _edit("data path with newline", "data.data_path", data__data_path=["a\nb"], data__mock_data=False),
        _edit("slurm time with newline", "slurm.time", slurm__time="00:05:00\n"),
        _edit("unknown key with newline", "bad\\nkey", **{"bad\nkey": 1}),
        _edit("key with line separator", "target.gpu\\u2028", **{"target__gpu\u2028": "H100"}),
    ]

    # Excludes and the size of the expansion.
    cases += [
        _edit("exclude leaves no run", "exclude", exclude=[{"recipe": ["bf16", "fp8"]}]),
        _edit("exclude every value one by one", "exclude", exclude=[{"recipe": "bf16"}, {"recipe": "fp8"}]),
        _edit("exclude unknown axis", "exclude[0].recipes", exclude=[{"recipes": "bf16"}]),
        _edit("exclude unknown value", "exclude[0].recipe", exclude=[{"recipe": "fp16"}]),
        _edit("exclude a string", "exclude", exclude="recipe"),
        _edit("exclude entry a list", "exclude[0]", exclude=[["recipe"]]),
        _edit("exclude entry empty", "exclude[0]", exclude=[{}]),
        _edit("exclude a mapping", "exclude", exclude={"recipe": "bf16"}),
        _edit("axes make 1000 runs", "axes", run_name="fz_{a}_{b}_{c}",
              axes={ax: {f"v{i}": {} for i in range(10)} for ax in "abc"}),
        _edit("axes make 4^8 runs", "axes", run_name="fz_" + "_".join("{%s}" % ax for ax in "abcdefgh"),
              axes={ax: {f"v{i}": {} for i in range(4)} for ax in "abcdefgh"}),
        _edit("an axis without values", "axes.recipe", axes={"recipe": {}}),
        _text("long list times 256 runs", dump(put(put(put(base(), "megatron/training/--iterations-to-skip",
                                                            list(range(20000))), "run_name", "fz_{a}_{b}"),
                                                   "axes", {ax: {f"v{i}": {} for i in range(16)} for ax in "ab"})),
              "axes"),
    ]

    # Wrong types everywhere.
    cases += [
        _edit("axes a list", "axes", axes=["bf16"]),
        _edit("axis a list", "axes.recipe", axes={"recipe": ["bf16", "fp8"]}),
        _edit("overlay a list", "axes.recipe.bf16", axes={"recipe": {"bf16": [], "fp8": {}}}),
        _edit("overlay null", "axes.recipe.bf16", axes={"recipe": {"bf16": None, "fp8": {}}}),
        _edit("axis value an integer", "axes.recipe", axes={"recipe": {1: {}, "fp8": {}}}),
        _edit("megatron a list", "megatron", megatron=["--bf16"]),
        _edit("megatron group a list", "megatron.model", megatron__model=["--num-layers"]),
        _edit("megatron group a string", "megatron.model", megatron__model="--num-layers 4"),
        _edit("flag value a mapping", "megatron.model.--num-layers", **{"megatron__model__--num-layers": {"a": 1}}),
        _edit("flag value a list of lists", "megatron.training.--data-cache-path", **{"megatron__training__--data-cache-path": [[1]]}),
        _edit("target a string", "target", target="H100"),
        _edit("env a list", "env", env=["A=1"]),
        _edit("env value a mapping", "env.X", env={"X": {"a": 1}}),
        _edit("data path a string", "data.data_path", data__data_path="prefix"),
        _edit("container mounts a string", "slurm.container_mounts", slurm__container_mounts="/a:/b"),
        _edit("name an integer", "name", name=5),
        _edit("gpus per node a boolean", "target.gpus_per_node", target__gpus_per_node=True),
        _edit("gpus per node a float", "target.gpus_per_node", target__gpus_per_node=8.0),
        _edit("wandb a string", "wandb", wandb="fuzz"),
        _edit("min_free_gb a string", "min_free_gb", min_free_gb="5GB"),
        _edit("unknown top-level key", "tagret", tagret={}),
        _edit("unknown target key", "target.gpus", target__gpus=8),
        _edit("unknown flag", "megatron.model.--num-layer", **{"megatron__model__--num-layer": 4}),
        _edit("flag without dashes", "megatron.model.num-layers", **{"megatron__model__num-layers": 4}),
        _edit("switch given a value", "megatron.precision.--bf16", megatron__precision__bf16=None,
              **{"megatron__precision__--bf16": "yes"}),
        _edit("reserved flag", "megatron.training.--data-path", **{"megatron__training__--data-path": ["x"]}),
        _edit("integer flag given a float", "megatron.model.--num-layers", **{"megatron__model__--num-layers": 4.5}),
        _edit("integer flag given text", "megatron.training.--train-iters", **{"megatron__training__--train-iters": "ten"}),
    ]

    # Versions, parallel layouts, environment and Slurm values.
    cases += [
        _edit("megatron_core a path", "target.megatron_core", target__megatron_core="../../../etc/passwd"),
        _edit("megatron_core with a slash", "target.megatron_core", target__megatron_core="0.19.2/../../x"),
        _edit("transformer_engine not a version", "target.transformer_engine", target__transformer_engine="two"),
        _edit("cuda not a version", "target.cuda", target__cuda="12.x"),
        _edit("unknown gpu", "target.gpu", target__gpu="Z100"),
        _edit("tp does not divide the world", "megatron.model.--tensor-model-parallel-size",
              **{"megatron__model__--tensor-model-parallel-size": 3}),
        _edit("cp does not divide the world", "megatron.model.--context-parallel-size",
              **{"megatron__model__--context-parallel-size": 3}),
        _edit("cp in an axis does not fit", "axes.recipe.fp8.megatron.model.--context-parallel-size",
              **{"axes__recipe__fp8__megatron__model__--context-parallel-size": 16}),
        _edit("pp does not divide the layers", "megatron.model.--num-layers",
              **{"megatron__model__--pipeline-model-parallel-size": 8, "megatron__model__--num-layers": 12}),
        _edit("heads do not divide by tp", "megatron.model.--num-attention-heads",
              **{"megatron__model__--tensor-model-parallel-size": 8, "megatron__model__--num-attention-heads": 12}),
        _edit("global batch does not divide", "megatron.training.--global-batch-size",
              **{"megatron__training__--global-batch-size": 12}),
        _edit("env IFS", "env.IFS", env={"IFS": "x"}),
        _edit("env BASH_ENV", "env.BASH_ENV", env={"BASH_ENV": "/tmp/x"}),
        _edit("env SUITE_DIR", "env.SUITE_DIR", env={"SUITE_DIR": "/tmp"}),
        _edit("env launch knob", "env.GPUS_PER_NODE", env={"GPUS_PER_NODE": 2}),
        _edit("env bash function", "env.BASH_FUNC_x%%", env={"BASH_FUNC_x%%": "() { :; }"}),
        _edit("sbatch option not long", "slurm.sbatch_options", slurm__sbatch_options=["-x"]),
        _edit("sbatch option with a space", "slurm.sbatch_options", slurm__sbatch_options=["--qos high"]),
        _edit("sbatch option with a substitution", "slurm.sbatch_options", slurm__sbatch_options=["--qos=$(id)"]),
        _edit("log dir with a space", "log_dir", log_dir="logs/a b"),
        _edit("log dir empty", "log_dir", log_dir=""),
        _edit("container image with a space", "slurm.container_image", slurm__container_image="a b"),
        _edit("container mount with a comma", "slurm.container_mounts", slurm__container_mounts=["/a:/b,/c:/d"]),
        _edit("slurm partition with a semicolon", "slurm.partition", slurm__partition="gpu;id"),
        _edit("slurm time not a time", "slurm.time", slurm__time="4 hours"),
        _edit("triton cache dir empty", "triton_cache_dir", triton_cache_dir=""),
        _edit("fusion not a choice", "gradient_accumulation_fusion", gradient_accumulation_fusion="maybe"),
        _edit("wandb without project", "wandb", wandb={"entity": "x"}),
        _edit("mock data without vocab", "data.mock_data", data={"mock_data": True}),
        _edit("split not proportions", "data.split", data__split="train"),
        _edit("split all zero", "data.split", data__split="0,0,0"),
        _edit("split four parts", "data.split", data__split="1,1,1,1"),
        _edit("tokenizer type not a choice", "data.tokenizer_type", data__tokenizer_type="GPT3Tokenizer"),
        _edit("hidden size not divisible by heads", "megatron.model.--hidden-size",
              **{"megatron__model__--hidden-size": 66}),
    ]
    return cases + round_two_cases()


# Raw characters PyYAML's reader refuses (ESC, DEL, C1, VT, FF, BEL, the non-characters).
READER_CHARS = {"ESC": "\x1b", "DEL": "\x7f", "C1 PAD": "\x80", "C1 CSI": "\x9b", "VT": "\x0b",
                "FF": "\x0c", "BEL": "\x07", "U+FFFE": "\ufffe", "U+FFFF": "\uffff"}
# Environment names no launch may take (fp8suite.config.reserved), one or more of each kind.
RESERVED_NAMES = {"UID": "readonly", "EUID": "readonly", "PPID": "readonly",
                  "BASH_VERSINFO": "readonly", "SHELLOPTS": "readonly", "RANDOM": "bash's own",
                  "BASHPID": "bash's own", "BASH_ENV": "behaviour", "PS4": "behaviour",
                  "ENV": "behaviour", "FP8SUITE_ATTEMPT": "suite token", "FP8SUITE_X": "suite token",
                  "RUN_NAME": "script variable", "MODEL_ARGS": "script variable",
                  "ARGS": "script variable"}
# #SBATCH options the suite sets itself, whole and abbreviated, and --export (BASH_ENV=...).
SUITE_SBATCH = ["--output=/tmp/x.log", "--error=/tmp/x.err", "--nodes=4", "--time=1:00:00",
                "--job-name=x", "--out=/tmp/x.log", "--nod=2", "--export=ALL,BASH_ENV=/tmp/x",
                "--chdir=/tmp", "--gpus=8"]
# Axis values that make run names read back as another run's attempt, node or job log.
LOG_LIKE_VALUES = ["fp8.1", "fp8.node1", "fp8.812345", "fp8.node2.3"]


def round_two_cases() -> list[Malformed]:
    """The kinds of hardening round two: every PyYAML reader/constructor error, unencodable
    strings, names and values no launch may take (fp8suite.config.reserved), non-string keys."""
    good = dump(base()).decode()
    cases = [_text(f"raw {label} in a value", _replace_in(good, "Fuzzing base", f"Fuzz{ch}ing base"))
             for label, ch in READER_CHARS.items()]
    cases += [_text(f"raw {label} in a key", good + f"x{ch}y: 1\n") for label, ch in
              list(READER_CHARS.items())[:3]]
    cases += [
        _text("lone surrogate escape in a value", _replace_in(
            good, "description: Fuzzing base matrix.", 'description: "a\\ud800b"'), "description"),
        _text("lone low surrogate in an env value", _replace_in(
            good, "CUDA_DEVICE_MAX_CONNECTIONS: 1", 'CUDA_DEVICE_MAX_CONNECTIONS: "\\udc80"'),
            "env.CUDA_DEVICE_MAX_CONNECTIONS"),
        _text("lone surrogate in a key", good + '"\\ud83d": 1\n'),
        _text("impossible date", good + "when: 2024-02-30\n"),
        _text("impossible time", good + "when: 2024-01-01 25:00:00\n"),
        _text("tagged bool that is not one", good + "when: !!bool maybe\n"),
        _text("tagged timestamp that is not one", good + "when: !!timestamp nope\n"),
        _text("tagged empty integer", good + "when: !!int ''\n"),
        _text("integer too large to write (a flag)", _replace_in(
            good, "--num-layers: 4", "--num-layers: 0x" + "f" * 5000)),
        _text("integer too large to write (an env value)", _replace_in(
            good, "CUDA_DEVICE_MAX_CONNECTIONS: 1", "CUDA_DEVICE_MAX_CONNECTIONS: 0x" + "f" * 5000)),
        _text("null top-level key", good + "~: 1\n", "~"),
        _text("integer top-level key", good + "1: x\n", "1"),
        _text("boolean top-level key", good + "true: 1\n", "True"),
    ]
    cases += [_edit(f"env {name} ({kind})", f"env.{name}", **{f"env__{name}": "1"})
              for name, kind in RESERVED_NAMES.items()]
    cases += [
        _edit("env value with $VAR", "env.PATH", env__PATH="/opt/bin:$PATH"),
        _edit("env value with ${VAR}", "env.NCCL_DEBUG_FILE", env__NCCL_DEBUG_FILE="${HOME}/nccl"),
        _edit("checkpoint dir with $HOME", "checkpoint.dir", checkpoint={"dir": "$HOME/ckpt"}),
        _edit("triton cache dir with $TMPDIR", "triton_cache_dir", triton_cache_dir="$TMPDIR/t"),
        _edit("log_dir with %u", "log_dir", log_dir="logs/%u"),
        _edit("log_dir with %j", "log_dir", log_dir="/scratch/%j/logs"),
    ]
    cases += [_edit(f"sbatch option {opt.split('=')[0]}", "slurm.sbatch_options",
                    slurm__sbatch_options=[opt]) for opt in SUITE_SBATCH]
    for value in LOG_LIKE_VALUES:
        m = base()
        m["axes"]["recipe"][value] = m["axes"]["recipe"].pop("fp8")
        cases.append(_matrix(f"run name ending {value[3:]}", m, "run_name"))
    return cases


@dataclass
class Outcome:
    case: str
    ok: bool
    why: str = ""
    seconds: float = 0.0


class Hang(Exception):
    """A CLI call ran past its time limit (raised from SIGALRM)."""


def _alarm(_signum, _frame):
    raise Hang()


def _call(main: Callable[[list[str]], int], argv: list[str],
          limit: float = 20.0) -> tuple[Optional[int], str, str]:
    """Run a CLI's main in this process: (exit status or None on an escaped exception or a
    hang past `limit` seconds, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code: Optional[int]
    timed = threading.current_thread() is threading.main_thread()
    if timed:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Hang:
            code = None
            err.write(f"\nhang: no answer within {limit:g} s")
        except BaseException as exc:  # noqa: BLE001 -- a traceback is what is being counted
            import traceback
            traceback.print_exc(file=err)
            code = None
            err.write(f"\n{type(exc).__name__}")
        finally:
            if timed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def check_malformed(case: Malformed, work: Path) -> Outcome:
    """render.py (and run.py) on one malformed matrix: exit 2, one-line messages naming the
    file (and the key), no traceback, nothing written."""
    folder = work / "case"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    path = case.make(folder)
    code, _, err = _call(render.main, [str(path), "--out", str(out)])
    seconds = time.monotonic() - started
    problems = []
    if code is None and "hang:" in err:
        problems.append(err.strip().splitlines()[-1])
    elif code is None or "Traceback" in err:
        problems.append("traceback: " + err.strip().splitlines()[-1][:200])
    elif code != 2:
        problems.append(f"exit status {code}, expected 2")
    if files_under(out):
        problems.append(f"{len(files_under(out))} file(s) written")
    lines = [ln for ln in err.splitlines() if ln and not ln.startswith("render: ")]
    try:
        shown = render.display_path(path)
    except Exception:  # noqa: BLE001 -- the code under test may fail here too
        shown = str(path)
    if not lines:
        problems.append("no message")
    for line in lines:
        if not line.startswith(shown + ": "):
            problems.append(f"message does not start with the file: {line[:160]!r}")
            break
    if case.key is not None and not any(line.startswith(f"{shown}: {case.key}") for line in lines):
        problems.append(f"no message names {case.key}: {lines[:3]}")
    # run.py reads a matrix through the same loader: a render's manifest whose matrix is the
    # malformed file (run.py checks the scripts against the matrix before running any).
    manifest = _run_manifest(work)
    data = json.loads(manifest.read_text())
    data["matrix"] = str(path.absolute())
    manifest.write_text(json.dumps(data))
    code, _, err = _call(_run_cli().main, [str(manifest), "--dry-run"])
    if code is None or "Traceback" in err:
        problems.append("run.py traceback: " + err.strip().splitlines()[-1][:200])
    elif code != 2:
        problems.append(f"run.py exit status {code}, expected 2")
    elif not err.startswith("run.py: error: "):
        problems.append(f"run.py message: {err[:160]!r}")
    return Outcome(case.name, not problems, "; ".join(problems), seconds)


def _run_cli():
    """tools/run.py as a module, without the signal handlers it installs for its own process."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        import run
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return run


def _run_manifest(work: Path) -> Path:
    """A render of the base matrix under work/run (made once)."""
    folder = work / "run"
    manifest = folder / "out" / "fuzz.manifest.json"
    if not manifest.exists():
        folder.mkdir(parents=True, exist_ok=True)
        matrix = folder / "fuzz.yaml"
        matrix.write_bytes(dump(base()))
        code, _, err = _call(render.main, [str(matrix), "--out", str(folder / "out")])
        if code != 0:
            raise RuntimeError(f"the base matrix does not render: {err}")
    return manifest


def bench_malformed(quick: bool, work: Path, skip: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[Outcome]]:
    cases = [c for c in malformed_cases() if not any(word in c.name for word in skip)]
    if quick:
        cases = cases[::6]
    outcomes = [check_malformed(c, work) for c in cases]
    tracebacks = sum("traceback" in o.why for o in outcomes)
    hangs = sum("hang:" in o.why for o in outcomes)
    written = sum("written" in o.why for o in outcomes)
    figures = {
        "malformed matrices": len(outcomes),
        "tracebacks": tracebacks,
        "hangs (no answer within 20 s)": hangs,
        "files written": written,
        "handled (exit 2, each message names the file and key)": sum(o.ok for o in outcomes),
        "slowest case (s)": round(max(o.seconds for o in outcomes), 2),
    }
    return figures, outcomes


# --------------------------------------------------------------------------------------------
# Injection attempts
# --------------------------------------------------------------------------------------------

MARK = "pwned"

PAYLOADS = [
    "$(touch${IFS}@)",
    "`touch @`",
    "x;touch @",
    "x|touch @",
    "x&&touch @",
    "x\ntouch @",
    "x\rtouch @ #",
    "x'$(touch${IFS}@)'",
    'x"$(touch${IFS}@)"',
    "x\\$(touch${IFS}@)",
    "a'b\"c\\d$(touch${IFS}@)",
    "x$(touch${IFS}@)#{{ 7*7 }}{% if 1 %}",
    "x\u2028touch @",
    "x\x85touch @",
]
"""Shell payloads; `@` stands for the file the payload would create (a fresh name per case)."""


@dataclass
class Injection:
    field: str
    payload: str
    kind: str = "matrix"
    """matrix: a matrix value; file: the matrix file's name; out: the --out folder; launch: an
    environment variable of the rendered scripts at launch."""
    target: str = ""


def _matrix_setters() -> dict[str, Callable[[dict, str], None]]:
    """field -> how to put a payload into the base matrix."""
    def flag(group: str, name: str) -> Callable[[dict, str], None]:
        return lambda m, p: put(m, f"megatron/{group}/{name}", p)

    def axis_value(m: dict, p: str) -> None:
        m["axes"]["recipe"][p] = {}

    def run_name_and_value(m: dict, p: str) -> None:
        m["run_name"] = "{recipe}" + "touch"
        m["axes"]["recipe"]["a" + p] = {}

    return {
        "name": lambda m, p: put(m, "name", "fz" + p),
        "description": lambda m, p: put(m, "description", "d " + p),
        "run_name": lambda m, p: put(m, "run_name", "fz_{recipe}" + p),
        "axis value": axis_value,
        "run_name + axis value": run_name_and_value,
        "axis name": lambda m, p: (put(m, "axes", {"r" + p: {"a": {}}}), put(m, "run_name", "fz")),
        "exclude value": lambda m, p: put(m, "exclude", [{"recipe": p}]),
        "env name": lambda m, p: put(m, "env", {"X" + p: 1}),
        "env value": lambda m, p: put(m, "env/NCCL_DEBUG", p),
        "target.gpu": lambda m, p: put(m, "target/gpu", "H100" + p),
        "target.megatron_core": lambda m, p: put(m, "target/megatron_core", "9.9" + p),
        "target.megatron_core (no snapshot) + flag": lambda m, p: (
            put(m, "target/megatron_core", "9.9"), put(m, "megatron/training/--fp8-recipe", p)),
        "target.cuda": lambda m, p: put(m, "target/cuda", "13.0" + p),
        "data.split": lambda m, p: put(m, "data/split", "99,1,0" + p),
        "data.tokenizer_type": lambda m, p: put(m, "data/tokenizer_type", "HuggingFaceTokenizer" + p),
        "data.tokenizer_model": lambda m, p: put(m, "data/tokenizer_model", "./tok" + p),
        "data.tokenizer_model (name)": lambda m, p: put(m, "data/tokenizer_model", "meta/llama" + p),
        "data.data_path": lambda m, p: put(m, "data/data_path", ["0.5", "pre" + p, "0.5", "/abs" + p]),
        "wandb.project": lambda m, p: put(m, "wandb/project", "w" + p),
        "wandb.entity": lambda m, p: put(m, "wandb/entity", "e" + p),
        "wandb.save_dir": lambda m, p: put(m, "wandb/save_dir", "wd" + p),
        "checkpoint.dir": lambda m, p: put(m, "checkpoint/dir", "ck" + p),
        "slurm.partition": lambda m, p: put(m, "slurm/partition", "gpu" + p),
        "slurm.account": lambda m, p: put(m, "slurm/account", "acct" + p),
        "slurm.time": lambda m, p: put(m, "slurm/time", "00:05:00" + p),
        "slurm.container_image": lambda m, p: put(m, "slurm/container_image", "img" + p),
        "slurm.container_mounts": lambda m, p: put(m, "slurm/container_mounts", ["/a:/b" + p]),
        "slurm.sbatch_options": lambda m, p: put(m, "slurm/sbatch_options", ["--qos=" + p]),
        "triton_cache_dir": lambda m, p: put(m, "triton_cache_dir", "{scratch}/t" + p),
        "log_dir": lambda m, p: put(m, "log_dir", "{scratch}/l" + p),
        "flag value (str)": flag("training", "--data-cache-path"),
        "flag value (list)": lambda m, p: put(m, "megatron/training/--iterations-to-skip", ["1", p]),
        "flag value (choice)": flag("model", "--attention-backend"),
        "flag value (int)": flag("model", "--num-layers"),
        "flag value (float)": flag("training", "--lr"),
        "flag name": lambda m, p: put(m, "megatron/training/--data-cache-path" + p, "x"),
        "group name": lambda m, p: put(m, "megatron/g" + p, {"--seed": 1}),
    }


LAUNCH_VARS = ["GPUS_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "MOCK_DATA",
               "DATA_PATH", "TOKENIZER_MODEL", "LOG_DIR", "LOG_FILE", "META_FILE", "TRITON_CACHE_DIR",
               "MEGATRON_LM_DIR", "WANDB_MODE", "TRAIN_CMD", "PYTHON", "SLURM_JOB_NODELIST", "SLURM_JOB_ID",
               "CHECKPOINT_DIR"]


def injection_cases() -> list[Injection]:
    cases = [Injection(f, p) for f in _matrix_setters() for p in PAYLOADS]
    cases += [Injection("matrix file name", p, "file") for p in PAYLOADS if "\x85" not in p]
    cases += [Injection("--out folder", p, "out") for p in PAYLOADS]
    cases += [Injection(v, p, "launch", v) for v in LAUNCH_VARS for p in PAYLOADS if "\x00" not in p]
    return cases


STUB_SRUN = """#!/usr/bin/env bash
# srun stand-in: drop srun's options, run the command as node 0 of one.
while [[ $# -gt 0 && "$1" == --* ]]; do shift; done
export SLURM_NODEID=0 SLURM_PROCID=0
exec "$@"
"""
STUB_SCONTROL = """#!/usr/bin/env bash
echo localhost
"""


@dataclass
class InjectionResult:
    case: Injection
    accepted: bool = False
    executed: bool = False
    scripts: int = 0
    bash_n_failed: list[str] = field(default_factory=list)
    shellcheck_failed: list[str] = field(default_factory=list)
    traceback: str = ""
    ran: int = 0


def prepare_injection(case: Injection, work: Path, n: int,
                      sidecar: bool = True) -> tuple[InjectionResult, dict[str, Any]]:
    """Write the case's matrix and render it (in this process); returns the result so far and
    what `run_injection` needs to check and run the accepted scripts. sidecar=False lets
    PYTHON=true stand in for the sidecar in every case (faster; the test suite's sample)."""
    res = InjectionResult(case)
    root = work / f"i{n}"
    shutil.rmtree(root, ignore_errors=True)
    canary = root / "canary"      # the scripts' working folder: an executed `touch` lands here
    scratch = root / "scratch"    # folders the scripts create (caches, logs)
    stubs = root / "stubs"
    for d in (canary, scratch, stubs):
        d.mkdir(parents=True)
    # A relative name: wherever a payload would run, `touch` creates it in the working folder
    # (checked after every script, with the suite's root and the render's folders).
    marker = f"{MARK}{n}"
    payload = case.payload.replace("@", marker)

    m = base()
    m["log_dir"] = str(scratch / "logs")
    m["triton_cache_dir"] = str(scratch / "triton")
    matrix_dir = root / "matrix"
    matrix_dir.mkdir()
    matrix_name = "fuzz.yaml"
    out = root / "out"
    if case.kind == "matrix":
        _matrix_setters()[case.field](m, payload)
        for key in ("triton_cache_dir", "log_dir"):
            if isinstance(m.get(key), str):
                m[key] = m[key].replace("{scratch}", str(scratch))
    elif case.kind == "file":
        matrix_name = f"fz{payload}.yaml"
    elif case.kind == "out":
        out = root / f"out{payload}"
    job = {"root": root, "canary": canary, "marker": marker, "out": out, "matrix_dir": matrix_dir,
           "scripts": []}
    try:
        matrix = matrix_dir / matrix_name
        matrix.write_bytes(dump(m))
    except (OSError, ValueError) as err:
        res.traceback = f"cannot create the case: {err}"
        return res, job
    code, _, err = _call(render.main, [str(matrix), "--out", str(out)])
    if code is None or "Traceback" in err:
        res.traceback = err.strip().splitlines()[-1][:200] if err.strip() else "traceback"
    res.accepted = code == 0
    if not res.accepted:
        return res, job
    job["scripts"] = sorted(p for p in out.iterdir() if p.suffix in (".sh", ".sbatch"))
    res.scripts = len(job["scripts"])
    (stubs / "srun").write_text(STUB_SRUN)
    (stubs / "scontrol").write_text(STUB_SCONTROL)
    for stub in ("srun", "scontrol"):
        (stubs / stub).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "FP8SUITE_"))}
    env.update(MOCK_DATA="1", WANDB_MODE="disabled", TRAIN_CMD="true", PYTHON=sys.executable,
               LOG_DIR=str(scratch / "launch_logs"), TRITON_CACHE_DIR=str(scratch / "triton"),
               GPUS_PER_NODE="1", PATH=f"{stubs}:{env.get('PATH', '')}",
               SLURM_JOB_NODELIST="node1", SLURM_JOB_NUM_NODES="1", SLURM_JOB_ID="42",
               SLURM_SUBMIT_DIR=str(ROOT))
    # The sidecar (two Python starts, the slow part of a run) only where the matrix file's name
    # or the --out folder reaches its arguments; PYTHON=true stands in for it elsewhere.
    if case.kind not in ("file", "out") or not sidecar:
        env["PYTHON"] = "true"
    if case.kind == "launch":
        value = payload
        if case.target in ("LOG_DIR", "TRITON_CACHE_DIR", "MEGATRON_LM_DIR"):
            value = str(scratch / ("v" + payload))
        elif case.target in ("LOG_FILE", "META_FILE"):
            value = str(scratch / ("f" + payload))
        env[case.target] = value
    job["env"] = env
    return res, job


_SHELLCHECKED: set[str] = set()


def run_injection(res: InjectionResult, job: dict[str, Any], shellcheck: Optional[str]) -> InjectionResult:
    """bash -n and shellcheck on the accepted scripts, then run each; did the payload run?"""
    scripts = job["scripts"]
    for script in scripts:
        if subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode != 0:
            res.bash_n_failed.append(script.name)
    # shellcheck takes most of the time: a script text checked once (launch-variable cases
    # run the same scripts with different environments) is not checked again.
    fresh = [s for s in scripts if hashlib.sha256(s.read_bytes()).hexdigest() not in _SHELLCHECKED]
    if shellcheck and fresh:
        done = subprocess.run([shellcheck, *map(str, fresh)], capture_output=True, text=True)
        if done.returncode != 0:
            res.shellcheck_failed = [s.name for s in fresh if s.name in done.stdout] or ["?"]
            res.traceback = res.traceback or done.stdout[-400:]
        else:
            _SHELLCHECKED.update(hashlib.sha256(s.read_bytes()).hexdigest() for s in fresh)
    for script in scripts:
        try:
            subprocess.run(["bash", str(script), "--train-iters", "1"], cwd=job["canary"], env=job["env"],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            res.ran += 1
        except subprocess.TimeoutExpired:
            res.traceback = res.traceback or f"{script.name} timed out"
    marker = job["marker"]
    places = [job["canary"], ROOT, Path.cwd(), job["root"], job["matrix_dir"], ROOT / "tools"]
    if job["out"].is_dir():
        places.append(job["out"])
    res.executed = any((place / marker).exists() for place in places)
    if not res.executed:
        shutil.rmtree(job["root"], ignore_errors=True)
    return res


def run_injections(cases: list[Injection], work: Path, shellcheck: Optional[str],
                   sidecar: bool = True) -> list[InjectionResult]:
    """Render each case here (in turn: render.py's output is captured by redirecting
    sys.stdout), check and run the accepted scripts on a pool of threads."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = []
        for n, case in enumerate(cases):
            res, job = prepare_injection(case, work, n, sidecar)
            futures.append(pool.submit(run_injection, res, job, shellcheck))
        return [f.result() for f in futures]


def bench_injection(quick: bool, work: Path) -> tuple[dict[str, Any], list[InjectionResult]]:
    cases = injection_cases()
    if quick:
        cases = cases[::17]
    shellcheck = shutil.which("shellcheck")
    results = run_injections(cases, work, shellcheck)
    accepted = [r for r in results if r.accepted]
    figures = {
        "injection attempts": len(results),
        "fields and variables": len({r.case.field for r in results}),
        "rejected at render": len(results) - len(accepted),
        "accepted (scripts rendered, checked and run)": len(accepted),
        "scripts run (.sh with a stand-in, .sbatch with stub srun)": sum(r.ran for r in results),
        "payloads executed": sum(r.executed for r in results),
        "scripts failing bash -n": sum(len(r.bash_n_failed) for r in results),
        "scripts failing shellcheck": (sum(len(r.shellcheck_failed) for r in results)
                                       if shellcheck else "shellcheck not installed"),
        "tracebacks": sum(bool(r.traceback) and "Traceback" in r.traceback for r in results),
    }
    return figures, results


# --------------------------------------------------------------------------------------------
# Kills of a running queue
# --------------------------------------------------------------------------------------------

QUEUE_MATRIX = ROOT / "tests" / "data" / "queue_matrix.yaml"


def _render_queue(folder: Path) -> Path:
    data = yaml.safe_load(QUEUE_MATRIX.read_text())
    data["log_dir"] = str(folder / "logs")
    data["triton_cache_dir"] = str(folder / "triton")
    matrix = folder / "queue_matrix.yaml"
    matrix.write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, err = _call(render.main, [str(matrix), "--out", str(folder / "generated")])
    if code != 0:
        raise RuntimeError(err)
    return folder / "generated" / "queue_matrix.manifest.json"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphans(folder: Path) -> list[int]:
    """Process groups of runs an earlier run.py started (from the status file)."""
    try:
        runs = json.loads((folder / "logs" / "runs.json").read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return []
    return [a["pid"] for r in runs.values() for a in r.get("attempts", []) if a.get("pid")]


def kill_trial(n: int, rng: random.Random, work: Path) -> dict[str, Any]:
    """Start a queue of three stand-in runs, SIGKILL run.py at a random moment, let the
    orphaned run finish, then run.py --resume; report what was lost or trained twice."""
    folder = work / f"k{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    manifest = _render_queue(folder)
    logs = folder / "logs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FP8SUITE_", "TRAIN_CMD"))}
    env["TRAIN_CMD"] = f"{sys.executable} {STANDIN} --fake-sleep 0.05"
    cmd = [sys.executable, str(ROOT / "tools" / "run.py"), str(manifest), "--only", "fake_ok",
           "--only", "fake_last", "--resume"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    delay = rng.uniform(0.3, 3.5)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result: dict[str, Any] = {"trial": n, "delay": round(delay, 2), "problems": []}
    corrupt = _status_corrupt(logs)
    # The orphaned run (its own session) goes on and ends by itself.
    deadline = time.monotonic() + 60
    while any(_group_alive(pid) for pid in _orphans(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    logs_before = {p.name: p.read_bytes() for p in logs.glob("*.log")} if logs.exists() else {}
    completed_before = {name for name, text in logs_before.items() if b"[after training is done]" in text}
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    corrupt = corrupt or _status_corrupt(logs)
    if "Traceback" in again.stderr or "Traceback" in (proc.stderr.read().decode() if proc.stderr else ""):
        result["problems"].append("traceback")
    if corrupt:
        result["problems"].append(f"corrupt status file: {corrupt}")
        result["corrupt"] = 1
    logs_after = {p.name: p.read_bytes() for p in logs.glob("*.log")} if logs.exists() else {}
    lost = [name for name, text in logs_before.items()
            if name not in logs_after or not logs_after[name].startswith(text)]
    try:
        runs = json.loads((logs / "runs.json").read_text())["runs"]
    except (OSError, ValueError, KeyError):
        runs = {}
    recorded = [a.get("log") for r in runs.values() for a in r.get("attempts", [])]
    lost += [log for log in recorded if log and not (ROOT / log if not os.path.isabs(log) else Path(log)).exists()
             and not log.endswith("fake_hang.log")]
    if lost:
        result["problems"].append(f"lost logs: {lost}")
        result["lost"] = len(lost)
    retrained = 0
    for name in completed_before:
        run = name.split(".")[0]
        attempts = runs.get(run, {}).get("attempts", [])
        later = [a for a in attempts if a.get("log") and Path(a["log"]).name not in logs_before]
        if later:
            retrained += 1
    if retrained:
        result["problems"].append(f"{retrained} completed run(s) trained again")
        result["retrained"] = retrained
    states = {name: r.get("state") for name, r in runs.items()}
    if again.returncode != 0 or any(s != "completed" for s in states.values()):
        result["problems"].append(f"resume ended {again.returncode} with {states}: {again.stderr[-300:]}")
    result["states"] = states
    result["stale_closed"] = sum("after run.py ended" in (r.get("reason") or "") for r in runs.values())
    if not result["problems"]:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _status_corrupt(logs: Path) -> str:
    path = logs / "runs.json"
    if not path.exists():
        return ""
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        return f"invalid JSON ({err})"
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        return "no runs mapping"
    return ""


def bench_kills(count: int, seed: int, work: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = random.Random(seed)
    results = [kill_trial(n, rng, work) for n in range(count)]
    figures = {
        "kills of a running queue (SIGKILL to run.py)": len(results),
        "lost logs": sum(r.get("lost", 0) for r in results),
        "corrupt status files": sum(r.get("corrupt", 0) for r in results),
        "completed runs trained again": sum(r.get("retrained", 0) for r in results),
        "runs closed from their log and sidecar": sum(r["stale_closed"] for r in results),
        "trials with any problem": sum(bool(r["problems"]) for r in results),
    }
    return figures, results


# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Hostile launches, files beside logs and disks (hardening round two)
# --------------------------------------------------------------------------------------------

@dataclass
class Hostile:
    name: str
    kind: str
    """"env" (run.py --env), "beside" (report.py on a log folder), "disk" (render/report)."""
    ok: bool = False
    why: str = ""
    traceback: bool = False
    hang: bool = False
    wrong_exit: bool = False
    files_left: int = 0
    executed: bool = False
    wrong_figures: bool = False


def env_cases(marker: Path) -> dict[str, list[str]]:
    """--env settings run.py must refuse (exit 2 before anything runs); the payloads that
    can run code touch `marker`."""
    hook = marker.with_suffix(".sh")
    hook.write_text(f"touch {marker}\n")
    return {
        "BASH_ENV=<file>": [f"BASH_ENV={hook}"],
        "ENV=<file>": [f"ENV={hook}"],
        "SHELLOPTS=xtrace + PS4=$(...)": ["SHELLOPTS=xtrace", f"PS4=$(touch {marker})"],
        "PS4=$(...)": [f"PS4=$(touch {marker})"],
        "PROMPT_COMMAND": [f"PROMPT_COMMAND=touch {marker}"],
        "UID (readonly)": ["UID=0"], "EUID (readonly)": ["EUID=0"], "PPID (readonly)": ["PPID=1"],
        "BASH_VERSINFO (readonly)": ["BASH_VERSINFO=x"],
        "FP8SUITE_ATTEMPT (the queue's token)": ["FP8SUITE_ATTEMPT=x"],
        "RUN_NAME (the script's own)": ["RUN_NAME=other"],
        "LOG_FILE (the queue's own)": ["LOG_FILE=/tmp/x.log"],
        "PATH with literal $PATH": ["PATH=/opt/bin:$PATH"],
    }


def check_env_case(name: str, pairs: list[str], manifest: Path, marker: Path) -> Hostile:
    """run.py on a rendered queue with hostile --env settings: exit 2, nothing run."""
    out = Hostile(name, "env")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FP8SUITE_", "TRAIN_CMD"))}
    env["TRAIN_CMD"] = f"{sys.executable} {STANDIN} --fake-sleep 0.01"
    cmd = [sys.executable, str(ROOT / "tools" / "run.py"), str(manifest), "--only", "fake_ok"]
    for pair in pairs:
        cmd += ["--env", pair]
    marker.unlink(missing_ok=True)
    logs = manifest.parent.parent / "logs"
    before = set(logs.glob("*.log")) if logs.exists() else set()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        out.hang, out.why = True, "no answer within 60 s"
        return out
    out.traceback = "Traceback" in done.stderr
    out.executed = marker.exists()
    out.wrong_exit = done.returncode != 2
    out.files_left = len(set(logs.glob("*.log")) - before) if logs.exists() else 0
    lines = done.stderr.strip().splitlines()
    problems = [w for w, bad in (("traceback", out.traceback), ("executed", out.executed),
                                 (f"exit {done.returncode}", out.wrong_exit),
                                 (f"{out.files_left} log(s) written", out.files_left))
                if bad]
    if not any("--env" in ln for ln in lines):
        problems.append(f"no --env message: {lines[:2]}")
    out.ok, out.why = not problems, "; ".join(problems)
    return out


LOGS = ROOT / "tests" / "data" / "logs" / "megatron019"

KERNEL_SHAPES: dict[str, Any] = {
    "a list": [1, 2],
    "kernels not a list": {"schema": 1, "span_us": 1, "busy_us": 1, "comm_us": 0,
                           "comm_exposed_us": 0, "kernels": "x"},
    "a kernel row not an object": {"schema": 1, "span_us": 1, "busy_us": 1, "comm_us": 0,
                                   "comm_exposed_us": 0, "kernels": [7]},
    "total_us text": {"schema": 1, "span_us": 1, "busy_us": 1, "comm_us": 0, "comm_exposed_us": 0,
                      "kernels": [{"name": "gemm", "total_us": "x"}]},
    "busy_us missing": {"schema": 1, "span_us": 1, "comm_us": 0, "comm_exposed_us": 0,
                        "kernels": [{"name": "gemm", "total_us": 1}]},
    "span_us infinite": {"schema": 1, "span_us": 1e999, "busy_us": 1, "comm_us": 0,
                         "comm_exposed_us": 0, "kernels": []},
    "name a number": {"schema": 1, "span_us": 1, "busy_us": 1, "comm_us": 0, "comm_exposed_us": 0,
                      "kernels": [{"name": 3, "total_us": 1}]},
}
BAD_STEP_TIMES = {"negative": "-330.0", "zero": "0.0", "denormal": "5e-324", "infinite": "inf",
                  "NaN": "nan"}


def _beside_cases() -> dict[str, Callable[[Path], None]]:
    """Log folders with something hostile beside (or inside) a log; each maker fills a folder
    that already holds bf16.log and fp8cs.log."""
    def fifo(name):
        return lambda d: os.mkfifo(d / name)

    def link(name, target):
        return lambda d: os.symlink(target, d / name)

    def table(shape):
        return lambda d: (d / "fp8cs.kernels.json").write_text(json.dumps(shape))

    def times(value):
        def make(d: Path) -> None:
            text = (d / "fp8cs.log").read_text()
            for ms in ("667.2", "651.1", "650.8"):
                text = text.replace(f"elapsed time per iteration (ms): {ms} |",
                                    f"elapsed time per iteration (ms): {value} |")
            # every timed row of fp8cs.log gets the value (iterations 4..9)
            lines = []
            for line in text.splitlines(keepends=True):
                if " iteration " in line and "elapsed time per iteration (ms):" in line:
                    head, _, rest = line.partition("elapsed time per iteration (ms): ")
                    it = int(head.split("iteration")[1].split("/")[0])
                    if it >= 4:
                        rest = value + rest[rest.index(" |"):]
                    line = head + "elapsed time per iteration (ms): " + rest
                lines.append(line)
            (d / "fp8cs.log").write_text("".join(lines))
        return make

    def rename_non_utf8(d: Path) -> None:
        os.rename(d / "fp8cs.log", os.path.join(os.fsencode(d), b"fp8\xff.log"))

    cases = {
        "FIFO as <run>.meta.json": fifo("fp8cs.meta.json"),
        "FIFO as <run>.kernels.json": fifo("fp8cs.kernels.json"),
        "<run>.meta.json -> /dev/zero": link("fp8cs.meta.json", "/dev/zero"),
        "<run>.kernels.json -> /dev/zero": link("fp8cs.kernels.json", "/dev/zero"),
        "<run>.meta.json a folder": lambda d: (d / "fp8cs.meta.json").mkdir(),
        "non-UTF-8 log name": rename_non_utf8,
    }
    cases.update({f"kernel table: {k}": table(v) for k, v in KERNEL_SHAPES.items()})
    cases.update({f"step times {k}": times(v) for k, v in BAD_STEP_TIMES.items()})
    return cases


def _wrong_figures(summary_file: Path) -> str:
    """A step time, speed or MFU figure that is not a positive finite number."""
    try:
        data = json.loads(summary_file.read_text())
    except (OSError, ValueError) as e:
        return f"summary.json unreadable: {e}"
    bad = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif (isinstance(node, (int, float)) and not isinstance(node, bool)
              and any(w in path for w in ("iteration_ms", "tokens_per_s", "tflops", "speedup"))
              and not (math.isfinite(node) and node > 0)):
            bad.append(f"{path}={node}")
    walk(data, "")
    return ", ".join(bad[:3])


def check_beside_case(name: str, make: Callable[[Path], None], work: Path) -> Hostile:
    """report.py on two logs with one hostile thing beside them: exit 0 within 20 s, no
    traceback, no step-time figure that is not a positive finite number."""
    import report
    out = Hostile(name, "beside")
    folder = work / "beside"
    shutil.rmtree(folder, ignore_errors=True)
    logs = folder / "logs"
    logs.mkdir(parents=True)
    for log in ("bf16.log", "fp8cs.log"):
        shutil.copy(LOGS / log, logs / log)
    make(logs)
    code, _, err = _call(report.main, [str(logs), "--out", str(folder / "out")])
    out.hang = code is None and "hang:" in err
    out.traceback = code is None and not out.hang or "Traceback" in err
    out.wrong_exit = code not in (0, None)
    wrong = _wrong_figures(folder / "out" / "summary.json") if code == 0 else ""
    out.wrong_figures = bool(wrong)
    problems = [w for w, bad in (("hang", out.hang), ("traceback", out.traceback),
                                 (f"exit {code}", out.wrong_exit), (f"figures: {wrong}", wrong)) if bad]
    out.ok, out.why = not problems, "; ".join(problems) or ""
    if not out.ok:
        out.why += " | " + err.strip().splitlines()[-1][:200] if err.strip() else ""
    return out


@contextlib.contextmanager
def full_disk(folder: Path):
    """A folder on a full file system: a 64 KiB tmpfs filled up (needs root, as on CI); None
    where it cannot be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True).returncode == 0
    if not mounted:
        yield None
        return
    try:
        (folder / "out").mkdir()
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        yield folder / "out"
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def _leftovers(folder: Path) -> list[Path]:
    """Staged files a write left behind (.<name>.*.tmp and the like)."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def check_disk_cases(work: Path) -> list[Hostile]:
    """render.py and report.py against a full disk and a FIFO where an output goes: exit 1,
    one line, no temporary file left, no hang."""
    import report
    results = []
    matrix = work / "disk" / "fuzz.yaml"
    matrix.parent.mkdir(parents=True, exist_ok=True)
    matrix.write_bytes(dump(base()))

    def judge(name: str, code, err: str, folder: Path, want: int = 1, one_line: bool = True) -> Hostile:
        out = Hostile(name, "disk")
        out.hang = code is None and "hang:" in err
        out.traceback = (code is None and not out.hang) or "Traceback" in err
        out.wrong_exit = code != want
        out.files_left = len(_leftovers(folder)) if folder.exists() else 0
        lines = err.strip().splitlines()
        problems = [w for w, bad in (("hang", out.hang), ("traceback", out.traceback),
                                     (f"exit {code}", out.wrong_exit),
                                     (f"{out.files_left} file(s) left", out.files_left),
                                     (f"{len(lines)} lines", one_line and len(lines) != 1),
                                     ("internal error", "internal error" in err)) if bad]
        out.ok, out.why = not problems, "; ".join(problems) + (f" | {lines[-1][:160]}" if problems and lines else "")
        return out

    with full_disk(work / "disk" / "full-render") as out:
        if out is not None:
            code, _, err = _call(render.main, [str(matrix), "--out", str(out)])
            results.append(judge("render on a full disk", code, err, out))
    with full_disk(work / "disk" / "full-report") as out:
        if out is not None:
            code, _, err = _call(report.main, [str(LOGS / "bf16.log"), str(LOGS / "fp8cs.log"),
                                               "--out", str(out)])
            results.append(judge("report on a full disk", code, err, out))
    fifo_out = work / "disk" / "fifo-out"
    shutil.rmtree(fifo_out, ignore_errors=True)
    fifo_out.mkdir(parents=True)
    os.mkfifo(fifo_out / "fz_bf16.sh")
    code, _, err = _call(render.main, [str(matrix), "--out", str(fifo_out)])
    results.append(judge("render with a FIFO in --out", code, err, fifo_out))
    os.mkfifo(fifo_out / "fuzz.manifest.json.x")
    os.rename(fifo_out / "fuzz.manifest.json.x", fifo_out / "fuzz.manifest.json")
    code, _, err = _call(render.main, [str(matrix), "--out", str(fifo_out), "--check"])
    # --check lists each stale file on its own line.
    results.append(judge("render --check with FIFOs in --out", code, err, fifo_out, one_line=False))
    report_fifo = work / "disk" / "fifo-report"
    shutil.rmtree(report_fifo, ignore_errors=True)
    report_fifo.mkdir(parents=True)
    os.mkfifo(report_fifo / "report.md")
    code, _, err = _call(report.main, [str(LOGS / "bf16.log"), "--out", str(report_fifo)])
    results.append(judge("report with a FIFO as report.md", code, err, report_fifo))
    return results


def bench_hostile(quick: bool, work: Path) -> tuple[dict[str, Any], list[Hostile]]:
    """Round two's kinds outside the matrix: run.py --env, what sits beside a log, disks."""
    folder = work / "hostile-env"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    manifest = _render_queue(folder)
    marker = folder / "pwned"
    envs = list(env_cases(marker).items())
    beside = list(_beside_cases().items())
    if quick:
        envs, beside = envs[::4], beside[::3]
    results = [check_env_case(name, pairs, manifest, marker) for name, pairs in envs]
    results += [check_beside_case(name, make, work) for name, make in beside]
    results += check_disk_cases(work)
    figures = {
        "cases (run.py --env, beside a log, disks)": f"{len(results)} ({len(envs)}, {len(beside)}, "
                                                     f"{len(results) - len(envs) - len(beside)})",
        "tracebacks": sum(r.traceback for r in results),
        "wrong exits (2 bad input, 1 failed write, 0 report)": sum(r.wrong_exit for r in results),
        "files left (logs of refused launches, staged temps)": sum(r.files_left for r in results),
        "executed (a payload ran)": sum(r.executed for r in results),
        "hangs": sum(r.hang for r in results),
        "silent wrong figures (step time, speed <= 0 or not finite)": sum(r.wrong_figures for r in results),
        "handled": sum(r.ok for r in results),
    }
    return figures, results


def _print(title: str, figures: dict[str, Any]) -> None:
    print(f"{title}:")
    for key, value in figures.items():
        print(f"  {key:<60} {value}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a sample of each bench (for the test suite)")
    ap.add_argument("--bench", action="append", choices=("malformed", "injection", "kills", "hostile"),
                    help="run only these benches (repeatable; default: all)")
    ap.add_argument("--kills", type=int, default=None, help="queue kills (default 25; 3 with --quick)")
    ap.add_argument("--seed", type=int, default=12, help="seed of the kill moments")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep failing cases there")
    ap.add_argument("--skip", action="append", default=[], metavar="WORDS",
                    help="leave out malformed cases whose name holds WORDS (e.g. 'laughs' when "
                         "measuring an older version that would exhaust memory on them)")
    from fp8suite.common.version import add_version_option  # tools/ is this script's folder
    add_version_option(ap)
    args = ap.parse_args(argv)
    benches = args.bench or ["malformed", "injection", "kills", "hostile"]
    work = args.keep or Path(tempfile.mkdtemp(prefix="fp8suite-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    failed = []
    started = time.monotonic()
    try:
        if "malformed" in benches:
            figures, outcomes = bench_malformed(args.quick, work, tuple(args.skip))
            _print("malformed matrices", figures)
            for o in outcomes:
                if not o.ok:
                    failed.append(f"malformed: {o.case}: {o.why}")
        if "injection" in benches:
            figures, results = bench_injection(args.quick, work)
            _print("injection attempts", figures)
            for r in results:
                if r.executed or r.bash_n_failed or r.shellcheck_failed or "Traceback" in r.traceback:
                    failed.append(f"injection: {r.case.field} {r.case.payload!r}: executed={r.executed} "
                                  f"bash -n={r.bash_n_failed} shellcheck={r.shellcheck_failed} {r.traceback[:300]}")
        if "hostile" in benches:
            figures, hostile = bench_hostile(args.quick, work)
            _print("hostile launches, files beside logs, disks", figures)
            failed += [f"hostile: {r.kind}: {r.name}: {r.why}" for r in hostile if not r.ok]
        if "kills" in benches:
            count = args.kills if args.kills is not None else (3 if args.quick else 25)
            figures, results = bench_kills(count, args.seed, work)
            _print("queue kills", figures)
            for r in results:
                if r["problems"]:
                    failed.append(f"kill {r['trial']} after {r['delay']} s: {'; '.join(r['problems'])}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MB; {time.monotonic() - started:.0f} s")
    for line in failed:
        print(f"FAILED {line}")
    print("all goals met" if not failed else f"{len(failed)} case(s) missed a goal")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
