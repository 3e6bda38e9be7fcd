#!/usr/bin/env python3
"""Reduce a PyTorch profiler trace of Megatron training to a kernel table and print where the
step time goes (GEMM BF16 / FP8, attention, quantize/cast/amax/transpose, norms, elementwise,
optimizer, communication exposed vs overlapped, idle).

The queue does this itself: `python tools/run.py <matrix> --profile-step 20` profiles iteration
20 of each run on rank 0 and writes <log>.kernels.json beside its log. By hand (a Slurm job, a
trace from elsewhere), profile with Megatron's own flags after `--`:

    python tools/run.py experiments/h200x2_8b_bench.yaml --slurm --only bench_llama3_8b_h200x2_fp8_cs -- \\
        --profile --use-pytorch-profiler --profile-step-start 20 --profile-step-end 21 \\
        --profile-ranks 0 --tensorboard-dir /tmp/tb/fp8_cs/events

Megatron writes the trace to <tensorboard-dir>/../torch_profile/rank-0.json.gz (beside the
TensorBoard folder, not in it). Then, on the same host:

    python tools/profile_breakdown.py /tmp/tb/fp8_cs/torch_profile/rank-0.json.gz --fp8 \\
        --out logs/h200x2_8b_bench/bench_llama3_8b_h200x2_fp8_cs.kernels.json

The kernel table (a few hundred rows, a few tens of kB) sits beside the run's log; report.py
shows it as a table and a stacked bar per run. The trace itself can stay on the GPU host.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.logs import kernels  # noqa: E402
from fp8suite.common.errors import WriteFailed, exit_status  # noqa: E402
from fp8suite.common.version import add_version_option  # noqa: E402

EPILOG = """examples:
  python tools/profile_breakdown.py /tmp/tb/torch_profile/rank-0.json.gz --out run.kernels.json
  python tools/profile_breakdown.py run.kernels.json --fp8          # print the breakdown again

exit status: 0 written/printed, 1 --out cannot be written (one line, nothing half-written),
             2 unreadable or not a profiler trace
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="profile_breakdown.py", description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace", type=Path, help="rank-N.json[.gz] trace, or a kernel table written before")
    ap.add_argument("--out", type=Path, help="write the kernel table (JSON) here")
    ap.add_argument("--fp8", action="store_true",
                    help="the run trains in FP8 (Transformer Engine GEMMs count as FP8)")
    add_version_option(ap)
    args = ap.parse_args(argv)
    try:
        table = kernels.table_of(args.trace)
    except (OSError, EOFError) as e:
        print(f"profile_breakdown.py: {args.trace}: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # not JSON, or JSON that is no profiler trace
        print(f"profile_breakdown.py: {args.trace}: not a PyTorch profiler trace or kernel table ({e})",
              file=sys.stderr)
        return 2
    if args.out:
        try:
            kernels.write_table(table, args.out)
        except OSError as e:
            print(f"profile_breakdown.py: {WriteFailed.of(e, str(args.out))}", file=sys.stderr)
            return 1
    steps = table["steps"] or ["?"]
    ms = kernels.breakdown(table, args.fp8)
    span = table["span_us"] / 1000.0 / max(len(table["steps"]), 1)
    print(f"profiled step(s) {', '.join(map(str, steps))}: {span:,.1f} ms of GPU timeline per step")
    for name in kernels.ORDER:
        print(f"  {name:<36} {ms[name]:>9,.1f} ms  {100 * ms[name] / span if span else 0:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
