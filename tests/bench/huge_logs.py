#!/usr/bin/env python3
"""Benchmark `tools/report.py` on huge logs: wall-clock time and peak RSS per log size.

Generates valid megatron-core 0.19 logs (tests/bench/bench_report.py's generator: the real start-up,
arguments dump and iteration lines of tests/data/logs/megatron019/bf16.log, repeated with
changing iteration numbers) of each size in a temporary folder, and optionally a sparse file of
NUL bytes, then runs the whole report CLI on each in a child process and prints its wall time
and its peak resident memory (the child's `ru_maxrss`, Linux: KiB). A benchmark, not a test:
nothing is asserted; the goal (issue 30) is a 2 GB log under 1.5 GB peak RSS with time linear
in size.

    python tests/bench/huge_logs.py                      # 20 MB and 200 MB
    python tests/bench/huge_logs.py --sizes-mb 20 200 2000 --nul-gb 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import bench_report  # noqa: E402


def run_report(log_dir: Path, out: Path) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS in MiB, exit status, last line of output) of report.py."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "report.py"), str(log_dir),
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    last = output.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return wall, usage.ru_maxrss / 1024, proc.returncode, last[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", type=float, nargs="+", default=[20.0, 200.0],
                    help="log sizes to generate, in MB (default: 20 200)")
    ap.add_argument("--nul-gb", type=float, default=0.0,
                    help="also a sparse file of this many GB of NUL bytes (default: none)")
    ap.add_argument("--dir", default=None, help="where to write the logs (default: a temp dir)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="huge_logs_", dir=args.dir))
    print(f"huge_logs: tools/report.py per log (Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}), logs in {tmp}")
    print(f"{'log':>22} {'size MB':>9} {'iterations':>11} {'time s':>8} {'s/GB':>7} "
          f"{'peak RSS MiB':>13}  exit  last line")
    try:
        cases = []
        for mb in args.sizes_mb:
            folder = tmp / f"valid_{mb:g}MB"
            folder.mkdir()
            n = bench_report.build(folder / "train_bf16.log", mb, "clean")
            cases.append((f"valid {mb:g} MB", folder, n))
        if args.nul_gb:
            folder = tmp / "nul"
            folder.mkdir()
            with open(folder / "zeros.log", "wb") as f:
                f.truncate(int(args.nul_gb * 1e9))
            cases.append((f"NUL bytes {args.nul_gb:g} GB", folder, 0))
        for title, folder, n in cases:
            size = sum(p.stat().st_size for p in folder.glob("*.log"))
            wall, rss, code, last = run_report(folder, tmp / f"out_{folder.name}")
            print(f"{title:>22} {size / 1e6:9.1f} {n:11,d} {wall:8.1f} "
                  f"{wall / (size / 1e9):7.1f} {rss:13.0f}  {code:4d}  {last[:60]}", flush=True)
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
