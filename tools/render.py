#!/usr/bin/env python3
"""Render experiment matrices (experiments/*.yaml) into Megatron launch scripts.

For every run of a matrix: experiments/generated/<run>.sh (torchrun on one node, or one node
of many) and <run>.sbatch (Slurm, one torchrun per node), plus <matrix>.manifest.json with
the resolved settings of every run. Every problem of the input is reported at once, one line
each; nothing is written unless all matrices are valid.
"""

from __future__ import annotations

import argparse
import errno
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.evidence import advice
from fp8suite.render import manifest
from fp8suite.config import memory
from fp8suite.common.version import add_version_option  # noqa: E402
from fp8suite.common.errors import ConfigError, Problem  # noqa: E402
from fp8suite.config.matrix import load  # noqa: E402
from fp8suite.common.paths import GENERATED, display_path  # noqa: E402
from fp8suite.render.templating import render_runs  # noqa: E402

EPILOG = """examples:
  python tools/render.py experiments/h200_8b.yaml
  python tools/render.py experiments/*.yaml --check     # fail if generated files are stale
  python tools/render.py my_study.yaml --out /tmp/gen   # render elsewhere

exit status: 0 rendered (or up to date), 1 --check found stale files or a write failed
(full disk, a FIFO or folder where a file goes: nothing is changed), 2 invalid input
"""


BAD_PATH_ERRORS = (errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP)
"""Errors that creating --out gives for a path that cannot be a folder (exit 2, bad input);
any other (ENOSPC, EROFS, EACCES, ...) is a failed write (exit 1)."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("matrices", nargs="+", type=Path, metavar="MATRIX", help="matrix YAML files")
    ap.add_argument("--out", type=Path, default=GENERATED,
                    help="output folder (default: experiments/generated)")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when the generated files differ from a fresh render")
    add_version_option(ap)
    args = ap.parse_args(argv)

    problems: list[Problem] = []
    outputs = []  # (matrix file, runs, {path: text}, manifest path)
    claimed: dict[Path, str] = {}
    for path in args.matrices:
        shown = display_path(path)
        try:
            matrix, runs = load(path, shown)
        except ConfigError as err:
            problems += err.problems
            continue
        rendered = render_runs(matrix, runs, shown, args.out)
        expected = manifest.files(matrix, shown, rendered, args.out)
        for out_path in expected:
            if out_path in claimed:
                problems.append(Problem(shown, "run_name", f"{display_path(out_path)} is also "
                                        f"rendered by {claimed[out_path]}: rename the runs"))
            claimed[out_path] = shown
        outputs.append((shown, runs, expected, manifest.manifest_path(args.out, shown)))

    warnings = [f"warning: {shown}: run {run.name}: {result[1].message}"
                for shown, runs, _, _ in outputs for run in runs
                for result in [memory.for_run(run)] if result is not None and result[1].level == "warning"]
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"render: {len(problems)} problem(s); nothing written", file=sys.stderr)
        return 2

    for line in warnings:
        print(line, file=sys.stderr)
    if args.check:
        stale = [line for _, _, expected, mf in outputs for line in manifest.stale(expected, mf)]
        for line in stale:
            print(f"stale: {line}", file=sys.stderr)
        if stale:
            print(f"render --check: re-run python tools/render.py "
                  f"{' '.join(str(m) for m in args.matrices)} and commit the result", file=sys.stderr)
            return 1
        print(f"up to date: {sum(len(r) for _, r, _, _ in outputs)} runs in {display_path(args.out)}")
        return 0

    if args.out.exists() and not args.out.is_dir():
        print(f"render: --out {display_path(args.out)}: not a folder; nothing written", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"render: --out {display_path(args.out)}: cannot create the folder: "
              f"{err.strerror or err}; nothing written", file=sys.stderr)
        # A file on the way or a name too long is a bad --out; a full or read-only disk is a
        # failed write.
        return 2 if err.errno in BAD_PATH_ERRORS else 1
    for shown, runs, expected, mf in outputs:
        try:
            changed = manifest.write(expected, mf)
        except OSError as err:
            # Staged files are removed and nothing was renamed into place: the folder is as it was.
            where = display_path(err.filename) if err.filename else display_path(args.out)
            print(f"render: cannot write {where}: {err.strerror or err}; the files of {shown} "
                  "are unchanged", file=sys.stderr)
            return 1
        print(f"{shown}: {len(runs)} runs -> {display_path(args.out)}/ "
              f"({changed} file(s) changed): {', '.join(r.name for r in runs)}")
        for run in runs:
            print(f"  {run.name}: {_memory_line(run)}")
            prediction = manifest.predicted(run)
            if prediction is not None:
                print(f"    predicted speedup over its BF16 twin: {prediction.text()}")
            elif advice.crashes(run):
                print("    predicted speedup over its BF16 twin: none: a committed log shows "
                      "these settings crash (advice below)")
        for line in advice_lines(runs):
            print(line)
    return 0


ADVICE_WIDTH = 100
"""Columns the advice paragraphs are wrapped to (a log path longer than that stays whole)."""


def advice_lines(runs) -> list[str]:
    """Each distinct advice of a matrix once, after its runs, naming the runs it applies to
    ("advice for 2 runs (a, b): ..."), wrapped to ADVICE_WIDTH columns and indented; the
    manifest still records the advice per run."""
    applies: dict[str, list[str]] = {}
    for run in runs:
        for entry in advice.for_run(run):
            applies.setdefault(entry.line(), []).append(run.name)
    out = []
    for text, names in applies.items():
        who = f"run {names[0]}" if len(names) == 1 else f"{len(names)} runs ({', '.join(names)})"
        out += textwrap.wrap(f"advice for {who}: {text}", ADVICE_WIDTH, initial_indent="  ",
                             subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)
    return out


def _memory_line(run) -> str:
    """The run's estimated peak memory per GPU against its target GPU's usable memory."""
    result = memory.for_run(run)
    if result is None:
        return "peak memory not estimated (set data.vocab_size)"
    est, verdict = result
    gpus = run.settings.target.gpus_per_node * run.settings.target.nodes
    gpu = run.settings.target.gpu
    of = f" of {verdict.usable:.1f} usable" if verdict.usable else ""
    unchecked = "" if verdict.usable else f"; not checked: the {gpu}'s memory capacity is unknown"
    evaluation = (f"; evaluation ~{est.evaluation:.1f} GiB"
                  if est.evaluation is not None and est.evaluation > est.total else "")
    left_out = f"; not modelled: {', '.join(est.notes)}" if est.notes else ""
    return f"peak ~{est.describe()}{of} per {gpu} on {gpus} GPU(s){evaluation}{unchecked}{left_out}"


if __name__ == "__main__":
    sys.exit(exit_status(main))
