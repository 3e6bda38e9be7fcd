#!/usr/bin/env python3
"""Check that what runs sent to W&B (offline) and TensorBoard matches their training logs.

For every run log in a log folder, reads the run's W&B offline history
(<folder>/wandb/wandb/offline-run-*/run-*.wandb, matched by the run's name) and its TensorBoard
event files (<folder>/tensorboard/<run>/events/, or <folder>/tensorboard/<run>/ in logs written
before that layout), and compares each iteration's `lm loss` and
iteration time with the log's line. The launch scripts write both when the matrix has a
`wandb:` section (TensorBoard follows `--tensorboard-dir`; the time needs
`--log-timers-to-tensorboard`). Needs `pip install -e '.[tracking]'` (wandb, tensorboard).

To upload an offline W&B run later, from a machine with network access:

    wandb login && wandb sync <folder>/wandb/wandb/offline-run-*
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.common import fileio
from fp8suite.report import tracking
from fp8suite.common.errors import UsageError, WriteFailed  # noqa: E402
from fp8suite.common.version import add_version_option  # noqa: E402

EPILOG = """examples:
  python tools/check_tracking.py logs/convergence_8b_width
  python tools/check_tracking.py logs/convergence_8b_width --out logs/convergence_8b_width/tracking.md
  python tools/check_tracking.py logs/convergence_8b_width --only 'conv_8bw_bf16_*' conv_8bw_fp8_s1234

exit status: 0 every run matches its log in both trackers, 1 some value is missing or differs
             (or --out cannot be written: one line, nothing half-written),
2 bad usage (no logs, wandb or tensorboard not installed)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="check_tracking.py", description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log_dir", type=Path, help="a matrix's log folder (logs/<matrix>)")
    ap.add_argument("--only", nargs="+", metavar="NAME_OR_GLOB",
                    help="check these runs only (names as in the logs, or globs: 'conv_*_s1234')")
    ap.add_argument("--out", type=Path, help="also write the table (markdown) here")
    add_version_option(ap)
    args = ap.parse_args(argv)
    try:
        checks = tracking.check_dir(args.log_dir, args.only)
    except UsageError as e:
        print(f"check_tracking.py: {e}", file=sys.stderr)
        return 2
    table = tracking.markdown(checks)
    print(table, end="")
    if args.out:
        try:
            fileio.write_atomic(args.out, table)
        except OSError as e:
            print(f"check_tracking.py: {WriteFailed.of(e, str(args.out))}", file=sys.stderr)
            return 1
    problem = tracking.first_problem(checks)
    if problem:
        print(f"check_tracking.py: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
