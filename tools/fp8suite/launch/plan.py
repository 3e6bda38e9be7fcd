"""Which rendered runs to launch: a matrix, a manifest or a folder of them -> checked runs.

    experiments/h200_8b.yaml                 its manifest experiments/generated/h200_8b.manifest.json
    experiments/generated/                   every *.manifest.json in the folder
    /tmp/gen/h200_8b.manifest.json           a render elsewhere (render.py --out)

The queue runs the rendered scripts, never the matrix itself, so a manifest that is missing or
older than its matrix (or than the templates) is refused with the render command to run.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..render import manifest as manifests
from ..common.errors import ConfigError, UsageError, did_you_mean
from ..config.matrix import load as load_matrix
from ..common import paths
from ..config import reserved
from ..common.paths import GENERATED, display_path
from ..render.templating import render_runs

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The queue picks each attempt's log (and so its sidecar); a launch env must not fix them.
OWNED_ENV = reserved.OWNED


@dataclass
class RenderedRun:
    """One rendered run, as its manifest lists it: where its scripts and logs are (absolute)."""

    name: str
    scripts: dict[str, Path]
    """Launcher name -> the run's script for it."""
    log_dir: Path
    train_iters: Optional[int]
    entry: dict[str, Any] = field(repr=False)
    """The run's manifest entry as written by render.py."""


@dataclass
class Plan:
    """The runs of one matrix, from its manifest."""

    matrix: str
    """The matrix file as render.py names it (relative to the suite's root)."""
    name: str
    manifest: Path
    runs: list[RenderedRun]




def shown(path: Path) -> str:
    """`paths.display_path`: how messages name a path."""
    return display_path(path)


def load(target: Path) -> list[Plan]:
    """The plans of a matrix file, a manifest, or a folder of manifests."""
    if target.is_dir():
        found = sorted(target.glob("*.manifest.json"))
        if not found:
            raise UsageError(f"{target}: no *.manifest.json in this folder; render a matrix first: "
                             "python tools/render.py experiments/<matrix>.yaml")
        return [_from_manifest(path.resolve(), None) for path in found]
    if target.suffix in (".yaml", ".yml"):
        if not target.is_file():
            raise UsageError(f"{target}: no such matrix file")
        mf = manifests.manifest_path(GENERATED, str(target))
        if not mf.is_file():
            try:  # a matrix that cannot render says why, as render.py would
                load_matrix(target, shown(target))
            except ConfigError as err:
                raise UsageError(*(str(x) for x in err.problems)) from None
            raise UsageError(f"{shown(target)} has not been rendered ({shown(mf)} is missing): "
                             f"run python tools/render.py {shown(target)}, or, if you rendered "
                             f"it with --out DIR, run python tools/run.py DIR/{mf.name}")
        return [_from_manifest(mf, target)]
    if target.name.endswith(".json"):
        if not target.is_file():
            raise UsageError(f"{target}: no such manifest")
        return [_from_manifest(target.resolve(), None)]
    raise UsageError(f"{target}: expected a matrix (.yaml), a manifest (.manifest.json) "
                     "or a folder of manifests (experiments/generated/)")


def _from_manifest(path: Path, matrix_file: Optional[Path]) -> Plan:
    try:
        data = json.loads(path.read_text())
        matrix = matrix_file or paths.suite(data["matrix"])
        runs = [RenderedRun(name=r["name"], scripts={k: paths.suite(v) for k, v in r["scripts"].items()},
                            log_dir=paths.suite(r["log_dir"]), train_iters=r.get("train_iters"), entry=r)
                for r in data["runs"]]
        plan = Plan(matrix=shown(matrix), name=data["name"], manifest=path, runs=runs)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        raise UsageError(f"{shown(path)}: not a manifest written by tools/render.py ({err!r}); "
                         "render the matrix again") from None
    _check_fresh(plan, matrix)
    return plan


def _check_fresh(plan: Plan, matrix: Path) -> None:
    """Refuse a manifest whose scripts a fresh render would change."""
    render = f"python tools/render.py {plan.matrix}" + (
        "" if plan.manifest.parent.resolve() == GENERATED.resolve()
        else f" --out {shown(plan.manifest.parent)}")
    if not matrix.is_file():
        raise UsageError(f"{shown(plan.manifest)}: its matrix {plan.matrix} is missing, so the "
                         "scripts cannot be checked against it; restore it or render again")
    try:
        meta, runs = load_matrix(matrix, plan.matrix)  # every pre-flight check included
    except ConfigError as err:
        raise UsageError(*[str(p) for p in err.problems],
                         f"{plan.matrix} is invalid; fix it and run {render}") from None
    out_dir = plan.manifest.parent
    rendered = render_runs(meta, runs, plan.matrix, out_dir)
    expected = manifests.files(meta, plan.matrix, rendered, out_dir)
    stale = manifests.stale(expected, plan.manifest, evidence=False)
    if stale:
        more = f" (and {len(stale) - 2} more)" if len(stale) > 2 else ""
        raise UsageError(f"{plan.matrix}: the rendered scripts are stale ({'; '.join(stale[:2])}{more}): "
                         f"run {render}")


def select(plans: list[Plan], patterns: list[str]) -> list[tuple[Plan, RenderedRun]]:
    """The runs named by --only (names or globs), in manifest order; all when none given."""
    every = [(plan, run) for plan in plans for run in plan.runs]
    if not patterns:
        return every
    names = [run.name for _, run in every]
    unknown = [p for p in patterns if not fnmatch.filter(names, p)]
    if unknown:
        raise UsageError(*[f"--only {p}: no run matches{did_you_mean(p, names)}; runs: {', '.join(names)}"
                           for p in unknown])
    return [(plan, run) for plan, run in every if any(fnmatch.fnmatchcase(run.name, p) for p in patterns)]


def launch_env(pairs: list[str]) -> dict[str, str]:
    """--env NAME=VALUE pairs as a dict, checked against the names and values no launch may
    take (fp8suite.config.reserved: the same rules as a matrix's `env:`, launch settings allowed);
    UsageError with one line per problem."""
    env: dict[str, str] = {}
    problems = []
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not ENV_NAME.fullmatch(name):
            problems.append(f"--env {_shown(pair)}: expected NAME=VALUE, e.g. --env GPUS_PER_NODE=1")
        elif reserved.env_name_problem(name, launch=True):
            problems.append(f"--env {name}: cannot be set: {reserved.env_name_problem(name, launch=True)}")
        elif reserved.env_value_problem(value):
            problems.append(f"--env {name}={_shown(value)}: {reserved.env_value_problem(value)} "
                            "(in double quotes your shell expands it before run.py)")
        else:
            env[name] = value
    if problems:
        raise UsageError(*problems)
    return env


def _shown(text: str) -> str:
    """`text` on one line: control characters and undecodable bytes as escapes."""
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def planned_iterations(run: RenderedRun, extra_args: list[str]) -> Optional[int]:
    """--train-iters of the run, as the extra args override it (argparse keeps the last)."""
    planned = run.train_iters
    for i, arg in enumerate(extra_args):
        value = None
        if arg == "--train-iters" and i + 1 < len(extra_args):
            value = extra_args[i + 1]
        elif arg.startswith("--train-iters="):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                planned = int(value)
            except ValueError:
                pass
    return planned


def log_dir(run: RenderedRun, env: dict[str, str]) -> Path:
    """Where the run's logs go: LOG_DIR from --env, else the matrix's log folder."""
    return paths.suite(env["LOG_DIR"]) if env.get("LOG_DIR") else run.log_dir


