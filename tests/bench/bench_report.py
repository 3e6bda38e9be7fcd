#!/usr/bin/env python3
"""Benchmark the report's log parser on large generated Megatron logs; print MB/s.

The logs are built from the real Megatron-Core 0.19 lines in tests/data/logs/megatron019/:
the real start-up and arguments dump, then the real iteration lines repeated with changing
iteration numbers, with real non-iteration lines (warnings, memory, validation) interleaved.
Each scenario is written to a temporary folder, read back as bytes and parsed a few times;
the best and the median wall-clock rate are printed, with the CPU model and the load average
(other processes on the same cores slow it down). Logs over 16 MB are scanned by two processes.
A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.logs.parse import parse_log  # noqa: E402
from fp8suite.megatron.logvocab import DONE  # noqa: E402
from fp8suite.common.version import add_version_option  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "tests" / "data" / "logs" / "megatron019" / "bf16.log"
GOAL_MB_S = 100.0

EPILOG = """examples:
  python tests/bench/bench_report.py                 # three scenarios of 300 MB each
  python tests/bench/bench_report.py --size-mb 50 --repeat 1
"""

_ITERATION = re.compile(rb"iteration +\d+/ *\d+ \|")


def real_lines():
    """(start-up text, iteration lines split around their counter, noise lines)."""
    data = SOURCE.read_bytes()
    first = data.index(b" [2026-11-23 04:01:35.321753] iteration")
    head = data[:first]
    iters, noise = [], []
    for line in data[first:].splitlines():
        m = _ITERATION.search(line)
        if m:
            iters.append((line[:m.start()], line[m.end():]))
        elif line.strip():
            noise.append(line)
    return head, iters, noise


def build(path: Path, size_mb: float, variant: str) -> int:
    """Write a log of about `size_mb` MB; return its number of iteration lines."""
    head, iters, noise = real_lines()
    if variant == "other-order":
        # Another Megatron's field order: no timestamps, no throughput, an extra key.
        iters = [(b" ", after.replace(b" throughput per GPU (TFLOP/s/GPU): ", b" params norm: "))
                 for _, after in iters]
    target = int(size_mb * 1e6)
    written, it, total = 0, 0, 10_000_000
    with open(path, "wb") as f:
        f.write(head)
        written += len(head)
        while written < target:
            block = []
            for _ in range(50):  # 50 iteration lines, then a few lines of other output
                it += 1
                before, after = iters[it % len(iters)]
                line = before + b"iteration %8d/%8d |" % (it, total) + after
                if variant == "garbled" and it % 10_000 == 0:
                    line = line[:150] + b"[rank1]: interleaved output\n" + line[150:]
                block.append(line)
            block.extend(noise[(it // 50 * 3 + k) % len(noise)] for k in range(3))
            chunk = b"\n".join(block) + b"\n"
            f.write(chunk)
            written += len(chunk)
        f.write(DONE + b" datetime: 2026-11-23 04:01:55.848437 \n")
    return it


SCENARIOS = (
    ("0.19 layout, noise every 50 lines", "clean"),
    ("0.19 layout, a garbled line per 10k", "garbled"),
    ("other field order (learned layout)", "other-order"),
)


def _cpu_model() -> str:
    """The CPU's model name (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=300.0, help="size of each log (default 300)")
    ap.add_argument("--repeat", type=int, default=3, help="parses per scenario (default 3)")
    add_version_option(ap)
    args = ap.parse_args(argv)
    if not SOURCE.exists():
        print(f"bench_report: {SOURCE} is missing (the real log lines the logs are built from)",
              file=sys.stderr)
        return 2

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_report: fp8suite.logs.parse on generated Megatron-Core 0.19 logs "
          f"(Python {platform.python_version()}, {_cpu_model()}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f}, best of {args.repeat})")
    print(f"{'scenario':38} {'size':>9} {'iterations':>11} {'best s':>7} {'MB/s best':>10} "
          f"{'MB/s median':>12}")
    best_rates = []
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        for title, variant in SCENARIOS:
            path = Path(tmp) / f"{variant}.log"
            n_iters = build(path, args.size_mb, variant)
            size = path.stat().st_size
            times = []
            for _ in range(max(1, args.repeat)):
                log = None  # freeing the previous parse's rows is no part of this one's time
                t0 = time.perf_counter()
                log = parse_log(path.read_bytes())  # what report.py does per log: read + parse
                times.append(time.perf_counter() - t0)
            expected = n_iters - (n_iters // 10_000 if variant == "garbled" else 0)
            if len(log.steps) != expected or log.status.name != "completed":
                print(f"bench_report: {title}: parsed {len(log.steps)} of {expected} iterations, "
                      f"status {log.status.name}", file=sys.stderr)
                return 1
            rates = [size / 1e6 / t for t in times]
            best_rates.append(max(rates))
            print(f"{title:38} {size / 1e6:7.1f}MB {n_iters:11,d} {min(times):7.2f} "
                  f"{max(rates):10.1f} {statistics.median(rates):12.1f}")
            path.unlink()
    verdict = "met" if min(best_rates) >= GOAL_MB_S else "NOT met"
    print(f"goal >= {GOAL_MB_S:.0f} MB/s: {verdict} (slowest scenario {min(best_rates):.1f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
