#!/usr/bin/env python3
"""Run a matrix's rendered launch scripts: as a queue on this node, or as Slurm batch jobs.

Each way is a launcher (tools/fp8suite/launch/: local, slurm), picked with --launcher. The
local queue runs each run's experiments/generated/<run>.sh in turn, with one live progress line
read from the log it writes (a new <run>.log, <run>.1.log, ... per attempt), and keeps every
run's state in a status file (default: logs/<matrix name>/runs.json). --slurm submits the
rendered <run>.sbatch files instead and records the job ids in the same file; --watch follows
them, --cancel stops them. Extra Megatron args go after `--`. When --env GPUS_PER_NODE / NNODES
or extra args change a run, its peak memory per GPU is estimated again first (exit 2 if it
cannot fit the GPU).
"""

from __future__ import annotations

import os
import signal
import sys


def _stop_quietly(signum, _frame):
    # Ctrl-C or SIGTERM outside the queue's own handling (while the modules below load, while
    # the matrix is checked; nothing is written then): exit at once with the usual status.
    # os._exit, not an exception: one raised inside an import's cleanup would be printed as
    # "Exception ignored" with a traceback, and the program would go on.
    os._exit(128 + signum)


for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _stop_quietly)

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.evidence import advice
from fp8suite.launch import check as launch_check
from fp8suite.launch import registry as launchers
from fp8suite.config import memory
from fp8suite.megatron import recipes
from fp8suite.common import paths
from fp8suite.launch import environment, plan
from fp8suite.common.errors import ConfigError, SlurmUnavailable, WriteFailed  # noqa: E402
from fp8suite.config.matrix import load as load_matrix  # noqa: E402
from fp8suite.megatron.flags import DEFAULT_MEGATRON_CORE
from fp8suite.launch.base import minutes, seconds  # noqa: E402
from fp8suite.common.version import add_version_option  # noqa: E402
from fp8suite.launch.progress import Display, summary  # noqa: E402
from fp8suite.launch.runstate import RunState, StateFileError  # noqa: E402

EPILOG = """examples:
  python tools/run.py experiments/h200_8b.yaml                  # every run, one after another
  python tools/run.py experiments/h200_8b.yaml --only '*fp8_cs*' --dry-run
  python tools/run.py experiments/h200_8b.yaml --resume         # skip completed, retry the rest
  python tools/run.py experiments/generated/ --time-limit 30 --env GPUS_PER_NODE=1 \\
      -- --num-layers 4 --train-iters 50 --lr-warmup-iters 5   # shrink every run
  python tools/run.py --slurm experiments/h200_8b.yaml --partition gpu --account proj --watch
  python tools/run.py --watch experiments/h200_8b.yaml          # follow jobs submitted before
  python tools/run.py --cancel experiments/h200_8b.yaml --only train_llama3_8b_h200_fp8

exit status: 0 every selected run completed (with --slurm alone: was submitted), 1 some did
not, a file could not be written (also found before anything starts: a read-only or full
log folder) or Slurm did not answer, 2 bad input (a status file or lock that is not a regular
file, too), 130 stopped by Ctrl-C (143 by SIGTERM)
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="run.py", description=__doc__, epilog=EPILOG,
                                 usage="%(prog)s TARGET [options] [-- MEGATRON_ARGS ...]",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", type=Path, metavar="TARGET",
                    help="a matrix (experiments/<matrix>.yaml), its manifest, or a folder of "
                         "manifests (experiments/generated/)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME_OR_GLOB",
                    help="run only these runs (repeatable; globs like '*fp8*')")
    ap.add_argument("--resume", action="store_true", help="skip completed runs, retry the rest")
    ap.add_argument("--dry-run", action="store_true",
                    help="print each launch as it would run: the variables run.py sets (LOG_FILE, "
                         "--env), the launch knobs inherited from this shell, the script, and the "
                         "matrix env the script exports (from the manifest entry); the torchrun line "
                         "is in the script; run and write nothing")
    ap.add_argument("--time-limit", type=minutes, metavar="MINUTES",
                    help="per run: Megatron's --exit-duration-in-mins, and a hard kill --grace "
                         "seconds later if training has not stopped")
    ap.add_argument("--grace", type=seconds, default=60.0, metavar="SECONDS",
                    help="from the time limit to the hard kill, and between SIGINT, SIGTERM and "
                         "SIGKILL when stopping a run (default 60)")
    ap.add_argument("--state", type=Path, metavar="DIR",
                    help="folder of the status file runs.json (default: the matrix's log folder, "
                         "logs/<matrix name>)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="launch environment for the scripts, e.g. GPUS_PER_NODE=1, LOG_DIR=..., "
                         "TRAIN_CMD=... (repeatable)")
    how = ap.add_argument_group("launchers")
    how.add_argument("--launcher", choices=launchers.names(), metavar="NAME",
                     help="how to launch: " + "; ".join(f"{name}: {one.summary}"
                                                        for name, one in launchers.all().items()))
    how.add_argument("--watch", action="store_true",
                     help="follow the recorded jobs until they end (after launching them, with a "
                          "batch launcher)")
    how.add_argument("--cancel", action="store_true", help="stop the recorded pending/running jobs")
    for one in launchers.all().values():
        one.add_arguments(ap)
    return add_version_option(ap)


def launcher_of(args: argparse.Namespace) -> tuple[launchers.Launcher, bool]:
    """The launcher the options ask for, and whether they ask to launch (not only watch/cancel).

    --launcher NAME or a launcher's own switch (--slurm) launches with it; --watch or --cancel
    alone act on the one launcher that can; otherwise the default (local) launches.
    """
    named = [one for one in launchers.all().values() if one.requested(args)]
    if args.launcher:
        named.insert(0, launchers.get(args.launcher))
    if len({one.name for one in named}) > 1:
        raise plan.UsageError(f"--launcher {args.launcher} and --{named[-1].name} name two launchers: "
                              "choose one")
    if named:
        return named[0], not args.cancel
    verb = "cancel" if args.cancel else "watch" if args.watch else None
    if verb is None:
        return launchers.get(launchers.DEFAULT), True
    able = [one for one in launchers.all().values() if one.can(verb)]
    if len(able) != 1:
        raise plan.UsageError(f"--{verb}: name the launcher with --launcher "
                              f"({', '.join(one.name for one in able) or 'none can'})")
    return able[0], False


def check(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """Combinations of options that cannot work, one line each."""
    problems = []
    chosen, _ = launcher_of(args)
    for one in launchers.all().values():
        problems += one.check(args, env, one is chosen)
    if args.cancel and (args.watch or args.dry_run):
        problems.append("--cancel runs alone: no --watch or --dry-run")
    for verb in ("watch", "cancel"):
        if getattr(args, verb) and not chosen.can(verb):
            problems.append(f"--{verb}: the {chosen.name} launcher runs in the foreground; "
                            f"--{verb} is for launchers whose runs outlive run.py")
    tl = args.time_limit
    if tl is not None and tl != int(tl) and not (env.get("TRAIN_CMD") or os.environ.get("TRAIN_CMD")):
        problems.append(f"--time-limit {tl:g}: Megatron's --exit-duration-in-mins takes whole minutes "
                        "(fractions are only for TRAIN_CMD stand-ins)")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" goes to Megatron verbatim (its flags start with "--" too).
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    try:
        env = plan.launch_env(args.env)
        problems = check(args, env)
        if problems:
            raise plan.UsageError(*problems)
        plans = plan.load(args.target)
        selected = plan.select(plans, args.only)
        used = [p for p in plans if any(sp is p for sp, _ in selected)]
        if args.state and len(used) > 1:
            raise plan.UsageError(f"--state takes one matrix; {args.target} holds "
                                  f"{', '.join(p.name for p in used)}: use --only or the default")
        if not args.cancel and (args.slurm or not args.watch):
            recheck_launch(selected, extra, env)
            recheck_memory(selected, extra, env)
            if not args.slurm and not args.dry_run:
                recheck_gpu(selected, extra, env, environment.gpus())
        states = {p.name: RunState.load(status_file(p, env, args.state), p.matrix, p.name) for p in used}
        if not args.dry_run:
            preflight(args, env, selected, states)
        display = Display()
        code = dispatch(args, extra, env, selected, states, display)
    except (plan.UsageError, StateFileError) as err:
        for line in str(err).splitlines():
            print(f"run.py: error: {line}", file=sys.stderr)
        return 2
    except (WriteFailed, SlurmUnavailable) as err:
        # Nothing half-done is left unsaid: what was recorded before stays; the queue stops.
        print(f"run.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        if not args.dry_run:
            print()
            print(summary([(run.name, states[p.name].record(run.name)) for p, run in selected]))
            for state in states.values():
                print(f"status: {plan.shown(state.path)}")
        sys.stdout.flush()
    except BrokenPipeError:
        # `run.py ... | head`: the reader left; say nothing more (not even at exit).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def preflight(args, env: dict[str, str], selected, states) -> None:
    """Before anything starts: each status file and its lock are regular files or absent
    (StateFileError, exit 2), and each status file's folder and, for a launch, each run's log
    folder can be created and written and has room (WriteFailed, exit 1); one line."""
    for state in states.values():
        state.check_writable()
    if args.cancel or (args.watch and not args.slurm):
        return
    problems = []
    for folder in sorted({plan.log_dir(run, env) for _, run in selected}):
        problem = paths.writable_problem(folder)
        if problem:
            problems.append(f"log folder {plan.shown(folder)}: {problem}")
    if problems:
        raise WriteFailed("; ".join(problems) + "; nothing was started")


def recheck_launch(selected, extra: list[str], env: dict[str, str]) -> None:
    """The matrix's pre-flight on what the launch changes (fp8suite.launch.check): the launch
    knobs in --env and the Megatron args after `--`; UsageError with one line per problem."""
    problems = launch_check.knob_problems(env)
    if not problems and launch_check.changes_rules(extra, env):
        expanded: dict[str, object] = {}
        for p in {id(p): p for p, _ in selected}.values():
            matrix_file = paths.suite(p.matrix)
            if matrix_file.is_file():
                try:
                    expanded.update({r.name: r for r in load_matrix(matrix_file)[1]})
                except ConfigError as err:  # plan.load already refuses a stale render
                    raise plan.UsageError(*(str(x) for x in err.problems)) from None
        runs = [expanded[run.name] for _, run in selected if run.name in expanded]
        version = next((r.settings.target.megatron_core for r in runs), DEFAULT_MEGATRON_CORE)
        problems = launch_check.problems(runs, extra, env, version)
    if problems:
        raise plan.UsageError(*problems)


def recheck_memory(selected, extra: list[str], env: dict[str, str]) -> None:
    """Estimate each run's peak memory again when the launch changes its shape or world size
    (GPUS_PER_NODE / NNODES in --env, Megatron args after `--`); UsageError if one cannot fit."""
    overrides = {k: v for k, v in env.items() if k in ("GPUS_PER_NODE", "NNODES")}
    if not overrides and not extra:
        return  # render.py checked the runs as rendered
    launch = " ".join([*(f"{k}={v}" for k, v in overrides.items()), *(["--", *extra] if extra else [])])
    problems = []
    for _, run in selected:
        result = memory.for_entry(run.entry, extra, env)
        if result is None or result[1].level == "ok":
            continue
        line = f"{run.name} with {launch}: {result[1].message}"
        if result[1].level == "problem":
            problems.append(line)
        else:
            print(f"run.py: warning: {line}", file=sys.stderr)
    if problems:
        raise plan.UsageError(*problems)


def recheck_gpu(selected, extra: list[str], env: dict[str, str], found: list[dict]) -> None:
    """A local launch on a GPU other than the matrix's `target.gpu` (an H200 matrix on an H100;
    `found`: environment.gpus()): the memory pre-flight again for the GPU found. The runs that
    fit it get one warning together ("3 runs target H200; this host's GPU is NVIDIA H100 80GB
    HBM3: each fits ..."), a run close to its limit a warning of its own, and runs that cannot
    fit it a UsageError. Nothing when no GPU is found or its family, or its memory, is unknown."""
    here = recipes.gpu(found[0]["name"]) if found else None
    if here is None or here.memory_gib is None:
        return
    fitting, problems = [], []
    for _, run in selected:
        target = recipes.gpu(run.entry["gpu"])
        if target is not None and target.name == here.name:
            continue
        result = memory.for_entry(run.entry, extra, env, gpu=here.name)
        if result is None:
            continue
        est, verdict = result
        where = f"targets {run.entry['gpu']}; this host's GPU is {found[0]['name']}"
        if verdict.level == "ok":
            fitting.append((run.name, run.entry["gpu"], est.total, verdict.usable))
        elif verdict.level == "problem":
            problems.append(f"{run.name} {where}: {verdict.message}; render the matrix with "
                            f"target.gpu: {here.name}")
        else:
            print(f"run.py: warning: {run.name} {where}: {verdict.message}", file=sys.stderr)
    if fitting:
        who = fitting[0][0] if len(fitting) == 1 else f"{len(fitting)} runs"
        targets = " or ".join(sorted({t for _, t, _, _ in fitting}))
        peak = max(total for _, _, total, _ in fitting)
        print(f"run.py: warning: {who} target{'s' if len(fitting) == 1 else ''} {targets}; this host's "
              f"GPU is {found[0]['name']}: {'it fits' if len(fitting) == 1 else 'each fits'} (estimated "
              f"peak {peak:.1f} GiB at most, of {fitting[0][3]:.1f} usable); step times are this "
              "GPU's, not the target's", file=sys.stderr)
    if problems:
        raise plan.UsageError(*problems)


def print_advice(selected, extra: list[str], env: dict[str, str]) -> None:
    """The speed advice (fp8suite.evidence.advice) that applies to each selected run as it will launch,
    with the launch's GPUS_PER_NODE / NNODES and Megatron args: one line each on stdout (stderr
    is kept for what went wrong). Advice never stops a launch."""
    for _, run in selected:
        for entry in advice.for_entry(run.entry, extra, env):
            print(f"run.py: advice: {run.name}: {entry.line()}", flush=True)


def dispatch(args, extra, env, selected, states, display) -> int:
    """Hand the selected runs to the chosen launcher: launch, then watch, or cancel."""
    launcher, launching = launcher_of(args)
    if args.cancel:
        return launcher.cancel(selected, states, display)
    code = 0
    if launching:
        launcher.ready(args)
        print_advice(selected, extra, env)
        code = launcher.launch(selected, states, args, extra, env, display)
    if args.watch and not args.dry_run:
        code = max(code, launcher.watch(selected, states, args, display))
    return code


def status_file(p: plan.Plan, env: dict[str, str], state_dir: Path | None) -> Path:
    """runs.json in --state, else beside the logs of the matrix's (first) run."""
    folder = state_dir if state_dir else plan.log_dir(p.runs[0], env)
    return paths.status_file(folder)


if __name__ == "__main__":
    sys.exit(exit_status(main))
