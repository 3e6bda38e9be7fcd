#!/usr/bin/env python3
"""Check that this machine can run the suite's FP8 training, and which recipes it supports.

Reports the GPU and its compute capability, CUDA, cuDNN, torch, Transformer Engine and
megatron-core versions, apex's fused weight-gradient accumulation, the environment variables
the launch scripts rely on, TRITON_CACHE_DIR, and for every FP8/FP4 recipe of
fp8suite/megatron/recipes.py (delayed, tensorwise, ...) whether a Transformer Engine layer actually
trains with it here.

With --matrix it also asks megatron-core itself about every run of the matrix: each run's
generated script is started with tools/megatron_check.py in place of training
(TRAIN_CMD), so Megatron parses and validates exactly the arguments the script would pass,
at the run's world size, and builds its TransformerConfig and optimizer/DDP configs. "Ready"
then means Megatron accepts every run; otherwise the run and Megatron's message are named.

A probe that raised, or found something wrong that training does not need (torch refusing the
cuDNN it loaded, a recipe's test layer failing where Transformer Engine supports it), ends the
report with "Ready, with warnings:" and names it; what training needs ends it with "Problems:".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.config.schema import Settings  # noqa: E402
from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.launch import environment  # noqa: E402
from fp8suite.megatron import recipes  # noqa: E402
from fp8suite.common import paths
from fp8suite.common.version import add_version_option  # noqa: E402

EPILOG = """examples:
  python tools/verify_env.py                          # human-readable report
  python tools/verify_env.py --json > env.json
  python tools/verify_env.py --recipe tensorwise --recipe blockwise
  python tools/verify_env.py --matrix experiments/h200_8b.yaml   # its recipes, and Megatron's
                                                                 # own validation of every run
  GPUS_PER_NODE=2 python tools/verify_env.py --matrix experiments/h200_8b.yaml  # at 2 GPUs

exit status: 0 ready (and every requested recipe runs here; "Ready, with warnings:" names
what a probe found wrong that training does not need), 1 a requested recipe or a required
package cannot run here, 2 bad usage
"""


def matrix_recipes(path: Path) -> list[str]:
    """The FP8/FP4 recipes of a matrix's runs that verify_env can try (rendering checks included)."""
    from fp8suite.megatron import recipes
    from fp8suite.config.matrix import load

    _, runs = load(path)
    return sorted({recipes.of_flags(r.flags).recipe.name for r in runs} & set(environment.RECIPES))


TOOLS = Path(__file__).resolve().parent


def megatron_verdicts(path: Path, timeout_s: float = 600.0) -> dict[str, str]:
    """Megatron's own verdict on every run of a matrix: {run name: "" if accepted, else why}.

    Runs each generated script (experiments/generated/<run>.sh, which must be current) with
    TRAIN_CMD=tools/megatron_check.py, LOG_FILE=- (no log, no sidecar) and WORLD_SIZE set to
    the run's GPUs (GPUS_PER_NODE x NNODES when set in the environment, else the matrix's).
    """
    from fp8suite.config.matrix import load

    matrix, runs = load(path)
    stale = subprocess.run([sys.executable, str(TOOLS / "render.py"), "--check", str(path)],
                           capture_output=True, text=True)
    if stale.returncode != 0:
        why = f"generated scripts are not current: run python tools/render.py {path}"
        return {run.name: why for run in runs}

    def one(run) -> tuple[str, str]:
        s = run.settings.target
        nodes = int(os.environ.get("NNODES") or s.nodes)
        gpus = int(os.environ.get("GPUS_PER_NODE") or s.gpus_per_node)
        env = dict(os.environ, TRAIN_CMD=f"{sys.executable} {TOOLS / 'megatron_check.py'}",
                   LOG_FILE="-", WORLD_SIZE=str(nodes * gpus), RANK="0", LOCAL_RANK="0")
        script = paths.script(paths.GENERATED, run.name, ".sh")
        try:
            done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                                  timeout=timeout_s, cwd=paths.ROOT)
        except subprocess.TimeoutExpired:
            return run.name, f"no verdict within {timeout_s:.0f} s"
        verdict = [ln for ln in done.stdout.splitlines() if ln.startswith("megatron-core ")]
        if verdict and done.returncode == 0:
            return run.name, ""
        if verdict:
            return run.name, verdict[-1].split(": ", 1)[-1]
        tail = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        return run.name, f"exit {done.returncode}: {tail[-1] if tail else 'no output'}"

    with ThreadPoolExecutor(max_workers=min(8, len(runs) or 1)) as pool:
        return dict(pool.map(one, runs))


def collect(min_free_gb: float) -> dict[str, Any]:
    # Transformer Engine first: once torch has loaded its own cuDNN, TE can pick up a
    # mismatched system copy and fail to import.
    support = environment.recipe_support()
    torch = environment.torch_facts()
    # The launch scripts' default unless the environment sets one (a matrix may set another).
    cache = os.environ.get("TRITON_CACHE_DIR") or Settings().triton_cache_dir
    free = environment.disk_free_mb(cache)
    writable = os.access(environment.nearest_existing(cache), os.W_OK)
    return {
        "machine": environment.describe(),
        "torch": torch,
        "apex_gradient_accumulation_fusion": environment.apex_fusion(),
        "te_gradient_accumulation_fusion": environment.te_wgrad_fusion(),
        "env": environment.script_env(),
        "triton_cache_dir": {"path": cache, "writable": writable, "free_mb": free,
                             "enough_space": free is not None and free >= min_free_gb * 1024},
        "recipes": support,
    }


def problems_of(report: dict[str, Any], wanted: list[str]) -> list[str]:
    """What keeps training (or a requested recipe) from running here: each fails the check."""
    out = []
    m, t = report["machine"], report["torch"]
    for package in ("torch", "transformer_engine", "megatron_core"):
        if not m.get(package):
            out.append(f"{package} is not installed (pip install -e '.[gpu]', Python >= 3.12)")
    if m.get("torch") and t.get("error"):
        out.append(t["error"])
    elif m.get("torch") and not t.get("cuda_available"):
        out.append("torch sees no CUDA GPU")
    broken_te = sorted({v["reason"] for v in report["recipes"].values()
                        if v["reason"].startswith(environment.TE_NOT_IMPORTABLE)})
    if m.get("transformer_engine") and broken_te and not t.get("error"):  # not torch's failure again
        out.append(f"transformer_engine {m['transformer_engine']} is installed but {broken_te[0]}")
    for recipe in wanted:
        verdict = report["recipes"].get(recipe)
        known = {r.name: r for r in recipes.quantized()}
        if verdict is None and recipe in known:
            out.append(f"recipe {recipe} cannot be tried here: Transformer Engine has no check for it "
                       f"(a custom recipe's quantizers are the run's own; {recipes.selecting_flags(known[recipe])})")
        elif verdict is None:
            out.append(f"unknown recipe {recipe!r}; known: {', '.join(recipes.names())}")
        elif not verdict["ok"]:
            out.append(f"recipe {recipe} cannot run here: {verdict['reason']}")
    cache = report["triton_cache_dir"]
    if not cache["writable"] or not cache["enough_space"]:
        out.append(f"TRITON_CACHE_DIR {cache['path']} is not writable or has too little space "
                   f"({cache['free_mb']} MB free)")
    return out


CUDNN_EFFECT = "cuDNN-backed ops (e.g. fused attention backend cudnn) may fail"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def cudnn_warnings(torch_facts: dict[str, Any]) -> list[str]:
    """torch's cuDNN as `environment.cudnn_facts` probed it: a warning when torch refused the
    cuDNN it loaded or has none. Not a failure: torch loads cuDNN lazily, so it imports and
    Transformer Engine trains (the committed H200 logs ran so); torch's cuDNN-backed ops raise."""
    t = torch_facts
    state = t.get("cudnn")
    if not t.get("cuda_available") or isinstance(state, int):
        return []  # no GPU is a problem of its own; an int is the version torch accepted
    if state is None:
        return [f"torch has no cuDNN: {CUDNN_EFFECT}"]
    build, runtime = t.get("cudnn_build"), t.get("cudnn_runtime")
    if build and runtime:
        b, r = _version(build), _version(runtime)
        how = "of another major version than" if r[0] != b[0] else "older than" if r < b else \
            "not accepted by"
        return [f"cuDNN runtime {runtime} {how} torch's build {build}: {CUDNN_EFFECT}"]
    return [f"torch refuses its cuDNN ({str(state).removeprefix(environment.UNAVAILABLE)}): "
            f"{CUDNN_EFFECT}"]


def warnings_of(report: dict[str, Any], wanted: list[str]) -> list[str]:
    """What a probe found wrong that training does not need: the check still passes, but says so."""
    t = report["torch"]
    out = cudnn_warnings(t)
    te_cudnn = str(t.get("cudnn_transformer_engine", ""))
    if te_cudnn.startswith(environment.UNAVAILABLE):
        out.append(f"Transformer Engine's cuDNN version cannot be read "
                   f"({te_cudnn.removeprefix(environment.UNAVAILABLE)}): its fused attention may fail")
    for name, verdict in report["recipes"].items():
        if name not in wanted and verdict["reason"].startswith(environment.LAYER_FAILED):
            out.append(f"recipe {name}: Transformer Engine supports it here but its {verdict['reason']}")
    return out


def verdict_problems(verdicts: dict[str, str]) -> list[str]:
    return [f"run {name}: megatron-core refuses it: {why}" for name, why in verdicts.items() if why]


def _fusion(report: dict) -> str:
    """How the scripts accumulate weight gradients into main_grad on this machine."""
    if report["apex_gradient_accumulation_fusion"]:
        return "yes"
    if report["te_gradient_accumulation_fusion"]:
        return ("through Transformer Engine's GEMM in scripts rendered with gradient_accumulation_fusion: "
                "te (tools/te_wgrad); the others add --no-gradient-accumulation-fusion")
    return "no: scripts add --no-gradient-accumulation-fusion"


def _cudnn(t: dict[str, Any]) -> str:
    """The cuDNN versions behind the run: torch's build and runtime, and Transformer Engine's."""
    te = t.get("cudnn_transformer_engine") or "-"
    te = "unreadable" if te.startswith(environment.UNAVAILABLE) else te
    state = t.get("cudnn")
    verdict = ""
    if isinstance(state, str):
        verdict = " (torch refuses it)"
    elif "cudnn" in t and state is None:
        verdict = " (torch has none)"
    return (f"torch built with {t.get('cudnn_build') or '-'}, runtime {t.get('cudnn_runtime') or '-'}"
            f"{verdict}; Transformer Engine {te}")


def human(report: dict[str, Any], problems: list[str], warnings: list[str] | None = None) -> str:
    m, t = report["machine"], report["torch"]
    gpu = m.get("gpu") or {}
    gpu_line = (f"GPU              {gpu.get('name')} x{gpu.get('count', 0)}, compute capability "
                f"{t.get('compute_capability', gpu.get('compute_capability', '?'))}, "
                f"{gpu.get('memory_mib', '?')} MiB, driver {gpu.get('driver', '?')}"
                if gpu.get("name") else "GPU              none found (nvidia-smi lists no NVIDIA GPU here)")
    lines = [
        gpu_line,
        f"CUDA / cuDNN     {t.get('cuda', m.get('cuda')) or '-'} / {_cudnn(t)}",
        f"Python           {m['python']}",
        f"torch            {m.get('torch') or 'not installed'}",
        f"TransformerEngine {m.get('transformer_engine') or 'not installed'}",
        f"megatron-core    {m.get('megatron_core') or 'not installed'}",
        f"apex             {m.get('apex') or 'not installed'} (fused wgrad accumulation: {_fusion(report)})",
        f"wandb            {m.get('wandb') or 'not installed'}",
        "FP8/FP4 recipes:",
    ]
    for name, verdict in report["recipes"].items():
        lines.append(f"  {name:<11} {'yes' if verdict['ok'] else 'no '}  {verdict['reason']}")
    cache = report["triton_cache_dir"]
    lines.append(f"TRITON_CACHE_DIR {cache['path']}: {'writable' if cache['writable'] else 'NOT writable'}, "
                 f"{cache['free_mb']} MB free")
    lines.append("Environment:")
    for key, value in report["env"].items():
        lines.append(f"  {key}={'' if value is None else value}")
    if report.get("requested_matrix") and "megatron" not in report:
        lines.append("Megatron's own validation: skipped (megatron-core is not installed here)")
    if "megatron" in report:
        lines.append("Megatron's own validation (parse_args, validate_args, TransformerConfig, "
                     "optimizer/DDP configs):")
        for name, why in report["megatron"].items():
            lines.append(f"  {name:<40} {'accepted' if not why else 'REFUSED: ' + why}")
    if problems:
        lines.append("Problems:")
        lines += [f"  - {p}" for p in problems]
    if warnings:
        lines.append("Warnings:" if problems else "Ready, with warnings:")
        lines += [f"  - {w}" for w in warnings]
    if not problems and not warnings:
        lines.append("Ready.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--recipe", action="append", default=[], choices=recipes.names(), metavar="RECIPE",
                    help="fail unless this FP8/FP4 recipe runs here (repeatable); one of "
                         f"{', '.join(recipes.names())} (fp8suite/megatron/recipes.py, as render "
                         "knows them; a custom recipe cannot be tried and fails)")
    ap.add_argument("--matrix", type=Path, help="fail unless every FP8 recipe of this matrix runs here")
    ap.add_argument("--min-free-gb", type=float, default=5.0, help="space TRITON_CACHE_DIR needs (default 5)")
    add_version_option(ap)
    args = ap.parse_args(argv)

    wanted = list(args.recipe)
    if args.matrix:
        from fp8suite.common.errors import ConfigError
        try:
            wanted += matrix_recipes(args.matrix)
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 2
    try:
        report = collect(args.min_free_gb)
    except Exception as err:  # a probe broke in a way not foreseen: say so in one line
        print(f"verify_env: could not inspect this machine: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    problems = problems_of(report, wanted)
    if args.matrix and report["machine"].get("megatron_core"):
        report["megatron"] = megatron_verdicts(args.matrix)
        problems += verdict_problems(report["megatron"])
    report["requested_recipes"] = wanted
    report["requested_matrix"] = str(args.matrix) if args.matrix else None
    report["problems"] = problems
    report["warnings"] = warnings = warnings_of(report, wanted)
    print(json.dumps(report, indent=2) if args.json else human(report, problems, warnings))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
