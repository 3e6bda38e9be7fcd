#!/usr/bin/env python3
"""Calibrate and validate the FP8 speedup predictor (fp8suite.evidence.predict) on committed logs.

--calibrate fits the cost model to every log under the folders given (with a sidecar, an
arguments dump and timed iterations) and writes tools/fp8suite/data/predictor.json, which
render.py uses for `predicted_speedup`: the coefficients, the span the logs cover (GPU families,
hidden sizes, layers, GPUs) and the leave-one-out validation of their pairs. --validate predicts
every BF16/FP8 pair of those logs leave-one-out (fitted on those logs and the committed
calibration's, the pair's own setup left out) and writes the error table; on the calibration's
own logs it also refreshes predictor.json's validation. Every prediction render prints or a
manifest stores quotes that validation as its band (±the |error| 90% of the pairs stay within).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.evidence import predict  # noqa: E402
from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.common.paths import ROOT, display_path  # noqa: E402
from fp8suite.common.version import add_version_option  # noqa: E402

EPILOG = """examples:
  python tools/predict_speedup.py --calibrate logs/ tests/data/real_h200x2/
  python tools/predict_speedup.py --validate logs/ tests/data/real_h200x2/   # docs/results/predictor.md

exit status: 0 written, 1 some pair's error is beyond --target, 2 bad input
"""

RESULTS = ROOT / "docs" / "results" / "predictor.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="folders of committed logs")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--calibrate", action="store_true", help=f"write {display_path(predict.CALIBRATION)}")
    what.add_argument("--validate", action="store_true", help="write the leave-one-out error table")
    ap.add_argument("--out", type=Path, help=f"where --validate writes (default {display_path(RESULTS)})")
    ap.add_argument("--target", type=float, default=0.10, metavar="SHARE",
                    help="error beyond which --validate exits 1 (default 0.10)")
    add_version_option(ap)
    args = ap.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        print(f"predict_speedup: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    data = predict.measured_logs(args.folders)
    if not data:
        print("predict_speedup: no log with a sidecar, arguments and timed iterations in "
              f"{', '.join(str(f) for f in args.folders)}", file=sys.stderr)
        return 2
    if args.calibrate:
        try:
            checks = predict.leave_one_out(data)
        except ValueError as err:
            print(f"predict_speedup: {err}", file=sys.stderr)
            return 2
        predict.CALIBRATION.write_text(predict.to_json(
            predict.fit(data), command("--calibrate", args.folders), predict.span_of(data),
            predict.validation_of(checks, command("--validate", args.folders))))
        predict.committed_calibration.cache_clear()
        print(f"{display_path(predict.CALIBRATION)}: fitted on {len(data)} logs; "
              f"{predict.table(checks).splitlines()[-1]}")
        return 0
    try:
        checks = validate(data)
    except ValueError as err:
        print(f"predict_speedup: {err}", file=sys.stderr)
        return 2
    out = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(checks, args.folders))
    store_validation(data, checks, args.folders)
    print(f"{display_path(out)}: {predict.table(checks).splitlines()[-1]}")
    return 1 if any(abs(c.error) > args.target for c in checks) else 0


def validate(data: list) -> list:
    """Leave-one-out checks of the pairs in `data`, fitted on `data` and the committed
    calibration's logs (so a folder of one setup still has other setups to be fitted on)."""
    known = {m.log for m in data}
    return predict.leave_one_out(data, data + [m for m in predict.calibration_logs() if m.log not in known])


def store_validation(data: list, checks: list, folders: list[Path]) -> bool:
    """Refresh predictor.json's validation when `data` are the calibration's own logs (a
    validation of other logs leaves it alone); True when it was written."""
    found = predict.committed_calibration()
    if found is None or sorted(m.log for m in data) != sorted(found.model.logs):
        return False
    stored = json.loads(predict.CALIBRATION.read_text())
    stored["validation"] = predict.validation_of(checks, command("--validate", folders))
    predict.CALIBRATION.write_text(json.dumps(stored, indent=2) + "\n")
    predict.committed_calibration.cache_clear()
    return True


def command(option: str, folders: list[Path]) -> str:
    """The command line that rebuilds an output from `folders`."""
    return f"python tools/predict_speedup.py {option} " + " ".join(
        display_path(f).rstrip("/") + "/" for f in folders)


def page(checks: list, folders: list[Path]) -> str:
    """docs/results/predictor.md: how the table is made, the table, the summary line."""
    return (
        "# FP8 speedup predictor: leave-one-out error on the committed BF16/FP8 pairs\n\n"
        f"Rebuilt by `{command('--validate', folders)}`.\n\n"
        "Each FP8 log is paired with the BF16 log of the same folder, model, batch and layout whose\n"
        "flags differ least. The cost model (tools/fp8suite/evidence/predict.py) is fitted without any log of\n"
        "that folder and setup, then predicts the pair's speedup (BF16 step time / FP8 step time);\n"
        "the error is predicted / measured - 1. Step times are medians after warm-up (the report's rule).\n"
        "The summary's figures are stored in tools/fp8suite/data/predictor.json (`validation`); every\n"
        f"prediction render prints quotes its {predict.BAND_QUANTILE:.0%} band as ±error and says when it extrapolates.\n\n"
        + predict.table(checks))


if __name__ == "__main__":
    sys.exit(exit_status(main))
