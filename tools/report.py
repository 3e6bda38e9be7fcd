#!/usr/bin/env python3
"""Compare FP8 and BF16 training runs from raw Megatron-Core logs: markdown report + PNG plots.

Every `*.log` under the given directories (and every given file) is one run, named by its
file stem. Runs compare within a group: the same directory and the same model/batch shape.
Each group's baseline is its BF16 run unless --baseline names another. A crashed, cut off or
garbled log never stops the report: its status and reason become part of it.

`RUN.log`, `RUN.1.log`, ... are attempts of one run RUN, shown once; attempts that resumed
from each other's checkpoints are stitched into one run, one segment per launch. The node logs
of a launch by hand as several nodes (`RUN.node1.log`, ... beside node 0's `RUN.log`) are
joined into one run.

Writes OUT/report.md, the PNGs it shows, and the figures as data (OUT/summary.json,
OUT/summary.csv; schema in fp8suite/report/summary.py and docs/reading-a-report.md) into OUT/,
removes the plots an earlier report.md there showed and this one does not, and prints one
line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import WriteFailed, exit_status  # noqa: E402
from fp8suite.report import compare
from fp8suite.common import fileio
from fp8suite.report import markdown
from fp8suite.report import plots
from fp8suite.report import reference
from fp8suite.logs import runs
from fp8suite.report import summary
from fp8suite.common.version import add_version_option  # noqa: E402

EPILOG = """examples:
  python tools/report.py logs/                          # every log under logs/ -> assets/
  python tools/report.py logs/h200_8b --out assets/h200_8b --title "Llama 3 8B on H200"
  python tools/report.py logs/convergence_1gpu --baseline conv_llama_1gpu_bf16_s5678 \\
      --manifest experiments/generated/convergence_1gpu.manifest.json
  python tools/report.py run_a.log run_b.log --warmup 10 --out /tmp/report
  python tools/report.py logs/h200x2_8b_bench --reference experiments/reference/nvidia_llama3_8b.yaml

exit status: 0 report written (failed runs are part of it), 1 a write failed (full disk,
             read-only folder: one line naming the file, nothing half-written) or internal error,
             2 bad usage (no logs found, unreadable path, unknown --baseline, bad manifest
               or reference)
"""

DEFAULT_TITLE = "FP8 vs BF16 training report"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="report.py", description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", metavar="LOGS_DIR_OR_FILE",
                    help="directories (searched recursively for *.log) and/or log files")
    ap.add_argument("--out", default="assets", help="output folder (default: assets)")
    ap.add_argument("--baseline", metavar="RUN",
                    help="run name to compare against, in each group that has it "
                         "(default: the group's BF16 run)")
    ap.add_argument("--title", default=DEFAULT_TITLE,
                    help=f"report title (default: {DEFAULT_TITLE})")
    ap.add_argument("--warmup", type=int, default=3, metavar="N",
                    help="iterations left out of timing at the start and after each restart; "
                         "with --log-interval N the lines that log them (default: 3)")
    ap.add_argument("--manifest", metavar="PATH",
                    help="experiments/generated/<matrix>.manifest.json, for labels and GPUs")
    ap.add_argument("--reference", metavar="YAML",
                    help="published figures to show beside groups of the same model "
                         "(e.g. experiments/reference/nvidia_llama3_8b.yaml)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of internal errors")
    add_version_option(ap)
    args = ap.parse_args(argv)
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")

    try:
        return _report(args, argv if argv is not None else sys.argv[1:])
    except runs.UsageError as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 2
    except WriteFailed as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not bad input: one line unless asked for more
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(e).split())
        print(f"report.py: internal error: {type(e).__name__}: {message} "
              f"(run with --debug for the traceback)", file=sys.stderr)
        return 1


def _report(args, argv: list) -> int:
    paths = runs.find_logs(args.inputs)
    manifest = runs.load_manifest(args.manifest)
    published = reference.load(args.reference)
    loaded = runs.load_runs(paths, manifest, progress=runs.stderr_progress)
    loaded, skipped = runs.training_runs(loaded, args.inputs)
    baseline = _baseline(args.baseline, loaded, skipped)
    if skipped:
        what = ("1 file that is not a Megatron training log" if len(skipped) == 1 else
                f"{len(skipped)} files that are not Megatron training logs")
        print(f"report.py: skipped {what} (no iteration or argument lines): "
              f"{', '.join(skipped)}", file=sys.stderr)
    if not loaded:
        raise runs.UsageError(f"no Megatron training logs in {', '.join(args.inputs)}")
    groups = compare.build_groups(loaded, args.warmup, baseline)
    if published is not None and not any(reference.matches(published, g) for g in groups):
        print(f"report.py: --reference {args.reference}: no comparison group has its model "
              f"shape ({', '.join(f'{k} {v}' for k, v in published.shape.items())}), so no "
              "published figures are shown", file=sys.stderr)

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise runs.UsageError(f"cannot create {args.out}: {e.strerror or e}") from None
    earlier = _shown_images(out / "report.md")
    try:
        written = plots.write_plots(groups, out)
        command = shlex.join(["python", "tools/report.py",
                              *[markdown.shown_path(a) if os.path.exists(a) else a for a in argv]])
        text = markdown.render(groups, written, args.title, command,
                               [markdown.shown_path(i) for i in args.inputs], args.warmup, published)
        data = summary.build(groups, markdown.shown_path)
        fileio.write_atomic(out / "summary.json", summary.to_json(data))
        fileio.write_atomic(out / "summary.csv", summary.to_csv(data))
        # Write the report last and atomically: a half-written report.md never replaces a good one.
        fileio.write_atomic(out / "report.md", text)
    except OSError as e:
        raise WriteFailed.of(e, str(out)) from None
    now = {name for files in written.values() for _, name in files}
    for name in sorted(earlier - now):
        try:
            (out / name).unlink()
        except OSError:
            pass
    n_plots = sum(len(files) for files in written.values())
    n_runs = len(loaded)
    print(f"wrote {out / 'report.md'} ({n_runs} run{'s' if n_runs != 1 else ''}, "
          f"{n_plots} plot{'s' if n_plots != 1 else ''})")
    return 0


def _baseline(wanted, loaded: list, skipped: list):
    """The run --baseline names (RUN.1 names run RUN), checked against the runs the report
    reads: a name of a skipped file, or of no file, is bad usage (UsageError)."""
    if not wanted or not loaded:
        return wanted
    names = sorted({r.name for r in loaded})
    for name in (wanted, runs.attempt_of(wanted)[0]):
        if name in names:
            return name
    for path in skipped:
        if wanted in (Path(path).stem, runs.attempt_of(Path(path).stem)[0]):
            raise runs.UsageError(f"--baseline {wanted}: {path} was skipped: "
                                  f"{runs.NOT_TRAINING_LOG}")
    close = difflib.get_close_matches(wanted, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    shown = names if len(names) <= 20 else names[:20] + ["..."]
    raise runs.UsageError(f"--baseline {wanted}: no run of that name{hint}; "
                          f"valid: {', '.join(shown)}")


def _shown_images(report_md: Path) -> set:
    """The PNG files an earlier report.md in the output folder showed (plain names only)."""
    try:
        text = fileio.read_text_regular(report_md, 16 * 1024 * 1024)
    except OSError:
        return set()
    names = {part.split(")")[0] for line in text.splitlines() for part in line.split("](")[1:]}
    return {n for n in names if n.endswith(".png") and "/" not in n and "\\" not in n
            and not n.startswith(".")}


if __name__ == "__main__":
    sys.exit(exit_status(main))
