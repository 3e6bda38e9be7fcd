"""The sidecar of a log: which GPU, driver, versions and overrides produced it, and its end.

The launch scripts call it twice, around training:

    python -m fp8suite.launch.sidecar --meta logs/x/run.meta.json start --run R --script S \\
        --matrix M --log L --env GPUS_PER_NODE=1 ... -- [extra Megatron args]
    python -m fp8suite.launch.sidecar --meta logs/x/run.meta.json end --exit-code 0 --interrupted 0

It must never stop a run: the scripts treat its failure as a warning.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from ..common import fileio
from ..common.clock import now
from ..megatron import envvars
from .environment import describe


def start(meta: Path, run: str, script: str, matrix: str, log: str, env: list[str],
          args: list[str]) -> dict[str, Any]:
    """Write the sidecar at `meta` as a run starts: the run, its script (and SHA-256), matrix,
    log, launch overrides (env NAME=VALUE words, extra Megatron args), the process's
    environment variables that can change speed or numerics (`launch_env`: megatron.envvars;
    the launch scripts export the matrix's env before they call this) and the machine
    (environment.describe()); returns what was written."""
    data = {
        "run": run,
        "script": script,
        "script_sha256": _sha256(script),
        "matrix": matrix,
        "log": log,
        "started": now(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "overrides": {"args": args, "env": dict(item.split("=", 1) for item in env if "=" in item)},
        "launch_env": envvars.settings(os.environ),
        "environment": describe(),
    }
    env = data["environment"]
    if isinstance(env, dict):
        # torch's CUDA (what the kernels were built for) is env["cuda"]; the driver's own
        # CUDA version says what the machine can run.
        env.setdefault("cuda_driver", cuda_driver_version())
    _write(meta, data)
    return data


def cuda_driver_version() -> Optional[str]:
    """The CUDA version the NVIDIA driver supports ("13.0", from nvidia-smi's header), or
    None without nvidia-smi. Never raises."""
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"CUDA Version:\s*([0-9.]+)", out)
    return m.group(1) if m else None


def end(meta: Path, exit_code: int, interrupted: bool) -> dict[str, Any]:
    """Record how the run ended in its sidecar: ended (UTC ISO time), exit_code (the script's
    status), interrupted."""
    data = read(meta) or {}
    data.update(ended=now(), exit_code=exit_code, interrupted=interrupted)
    _write(meta, data)
    return data


def read(meta: Path) -> Optional[dict[str, Any]]:
    """The sidecar at `meta` as a dict, or None when it is missing or not valid JSON."""
    try:
        data = json.loads(fileio.read_text_regular(meta, 16 * 1024 * 1024))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _sha256(path: str) -> Optional[str]:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def stopped(meta: Path, status: str, reason: str) -> None:
    """Record in an existing sidecar why the launcher stopped the run (`stopped`: a log status
    of fp8suite.common.status, e.g. "time-limit"; `stopped_reason`: one line), so that the report
    names the stop as the queue does; OSError when it cannot be written."""
    data = read(meta)
    if data is not None:
        data.update(stopped=status, stopped_reason=reason)
        _write(meta, data)


def _write(path: Path, data: dict[str, Any]) -> None:
    fileio.write_atomic(path, json.dumps(data, indent=2) + "\n")


def main(argv: Optional[list[str]] = None) -> int:
    """Command line of the launch scripts (python -m fp8suite.launch.sidecar ... start|end); returns
    the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is the run's extra Megatron args, verbatim (they start with "--").
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(prog="python -m fp8suite.launch.sidecar", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meta", type=Path, required=True, help="the sidecar file (<log>.meta.json)")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start", help="record the run's machine, software and overrides")
    s.add_argument("--run", required=True)
    s.add_argument("--script", required=True)
    s.add_argument("--matrix", default="")
    s.add_argument("--log", required=True)
    s.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE")
    e = sub.add_parser("end", help="record the end and exit status")
    e.add_argument("--exit-code", type=int, required=True)
    e.add_argument("--interrupted", type=int, choices=(0, 1), default=0)
    args = ap.parse_args(argv)
    if args.command == "start":
        start(args.meta, args.run, args.script, args.matrix, args.log, args.env, extra)
    else:
        end(args.meta, args.exit_code, bool(args.interrupted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
