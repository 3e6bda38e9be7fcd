"""The pre-flight again, for what a launch changes: `run.py --env ... -- <Megatron args>`.

A matrix is checked when it is rendered; a launch can still change a run's world size
(GPUS_PER_NODE, NNODES) and any Megatron flag (arguments after `--` override the script's,
argparse keeping the last). `problems` checks those the way the matrix loader checks a matrix:
each launch knob and each flag on its own (names against the flag snapshot, types, choices,
ranges), then every rule of `checks` (Megatron's own rules included) on the run as launched.
Memory is left to `memory` (run.py estimates it again separately).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Optional

from ..config import checks
from ..config import limits
from ..config import matrix
from ..common import paths
from ..common.errors import did_you_mean
from ..megatron.flags import SUITE_FLAGS, FlagSpec, load_snapshot
from ..config.schema import ExpandedRun

# Launch knobs that must be whole numbers, with their least value.
INT_KNOBS = {"GPUS_PER_NODE": 1, "NNODES": 1, "NODE_RANK": 0, "MASTER_PORT": 1}
MAX_PORT = 65535
# Launch knobs whose empty value would silently mean the default.
NON_EMPTY_KNOBS = ("CHECKPOINT_DIR", "LOG_DIR", "TRITON_CACHE_DIR", "PYTHON")


def knob_problems(env: dict[str, str]) -> list[str]:
    """One line per launch knob in `env` that is not a whole number in its range."""
    out = []
    for name, least in INT_KNOBS.items():
        if name not in env:
            continue
        text = env[name].strip()
        if not text.isdigit() or int(text) < least or int(text) > limits.MAX_INT:
            out.append(f"--env {name}={env[name]}: expected a whole number >= {least}")
        elif name == "MASTER_PORT" and int(text) > MAX_PORT:
            out.append(f"--env {name}={env[name]}: a TCP port is at most {MAX_PORT}")
        elif name == "GPUS_PER_NODE" and int(text) > limits.MAX_GPUS_PER_NODE:
            out.append(f"--env {name}={env[name]}: at most {limits.MAX_GPUS_PER_NODE} GPUs per node")
    for name, value in env.items():
        if name in paths.KNOBS:
            if name in NON_EMPTY_KNOBS and not value.strip():
                out.append(f"--env {name}=: must not be empty (leave it out for the script's default)")
            continue
        close = difflib.get_close_matches(name.upper(), paths.KNOBS, n=1, cutoff=0.8)
        if close:  # other names are passed on as they are (NCCL_DEBUG=INFO, ...)
            out.append(f"--env {name}: not a launch setting of the scripts; did you mean {close[0]}?")
    if not out and "NODE_RANK" in env and "NNODES" in env and int(env["NODE_RANK"]) >= int(env["NNODES"]):
        out.append(f"--env NODE_RANK={env['NODE_RANK']}: node ranks run from 0 to NNODES - 1 "
                   f"(NNODES={env['NNODES']})")
    return out


def parse_args(extra: list[str], snapshot: Optional[dict[str, FlagSpec]]) -> tuple[dict[str, Any], list[str]]:
    """Megatron arguments after `--` as {flag: value} (switches True, lists as lists), and one
    line per argument that is no flag, an unknown flag or a bad value."""
    flags: dict[str, Any] = {}
    problems = []
    i = 0
    while i < len(extra):
        word = extra[i]
        flag, eq, inline = word.partition("=")
        if not flag.startswith("--"):
            problems.append(f"-- {word}: expected a Megatron flag (--name [value])")
            i += 1
            continue
        spec = snapshot.get(flag) if snapshot else None
        if snapshot is not None and spec is None:
            problems.append(f"-- {flag}: unknown Megatron flag{did_you_mean(flag, snapshot)}")
            i += 1
            while i < len(extra) and not extra[i].startswith("--"):
                i += 1
            continue
        values = [inline] if eq else []
        i += 1
        if spec is None or not spec.is_switch:
            while not eq and i < len(extra) and not extra[i].startswith("--"):
                values.append(extra[i])
                i += 1
                if spec is not None and not spec.takes_list:
                    break
        value: Any = True if spec is not None and spec.is_switch else (
            values if spec is not None and spec.takes_list else (values[0] if values else None))
        if value is None:
            problems.append(f"-- {flag}: expects a value")
            continue
        if flag in matrix.RESERVED_FLAGS:  # at launch, the way to change it is a launch setting
            knob = matrix.RESERVED_AT_LAUNCH.get(flag)
            reason = (f"the scripts build it: set --env {knob}=... instead" if knob else
                      f"the scripts build it from the matrix's {matrix.RESERVED_FLAGS[flag]}")
        else:
            reason = matrix.flag_problem(flag, value, snapshot)
        if reason:
            problems.append(f"-- {flag} {' '.join(values)}: {reason}".rstrip())
            continue
        flags[flag] = _typed(value, spec)
    return flags, problems


# Launch settings the rules look at: the world size, and the training entry.
RULED_KNOBS = ("GPUS_PER_NODE", "NNODES", "MEGATRON_LM_DIR")


def changes_rules(extra: list, env: dict[str, str]) -> bool:
    """Whether a launch changes what the matrix's rules saw: Megatron args after `--`, a ruled
    launch setting, or a variable passed on to training."""
    return bool(extra) or any(k in env for k in RULED_KNOBS) or bool(passed_env(env))


def passed_env(env: dict[str, str]) -> dict[str, str]:
    """The --env names that are no launch setting: passed on to training as they are (NCCL_DEBUG,
    NVTE_*, ...)."""
    return {k: v for k, v in env.items() if k not in paths.KNOBS}


def env_problems(runs: list[ExpandedRun], flags: dict[str, Any], env: dict[str, str]) -> list[str]:
    """What --env cannot do: change a variable the script exports itself (the matrix's env
    wins, silently), or run a Megatron-LM checkout (MEGATRON_LM_DIR) with the suite's own flags
    (only tools/pretrain_gpt.py knows them)."""
    out = []
    for name, value in passed_env(env).items():
        fixed = [r for r in runs if name in r.settings.env]
        if fixed:
            names = ", ".join(r.name for r in fixed)
            out.append(f"--env {name}={value}: the script of {names} sets {name}="
                       f"{fixed[0].settings.env[name]} itself (the matrix's env), which wins over "
                       "the launch's; change it in the matrix")
    if env.get("MEGATRON_LM_DIR"):
        for run in runs:
            launched = {**run.flags, **flags}
            own = [f for f in SUITE_FLAGS if launched.get(f)]
            if own:
                out.append(f"--env MEGATRON_LM_DIR: {run.name} uses {', '.join(own)}, a flag of the "
                           "suite's tools/pretrain_gpt.py that a Megatron-LM checkout's parser refuses; "
                           "leave MEGATRON_LM_DIR unset for it")
    return out


def problems(runs: list[ExpandedRun], extra: list[str], env: dict[str, str], version: str) -> list[str]:
    """Every problem of the launch: its knobs, its Megatron arguments, what --env cannot do,
    and the rules on each run as launched (one line each, naming the run)."""
    out = knob_problems(env)
    snapshot = load_snapshot(version)
    flags, flag_problems = parse_args(extra, snapshot)
    out += flag_problems
    out += env_problems(runs, flags, env)
    if out or not runs or not changes_rules(list(flags), env):
        return out
    launched = [as_launched(run, flags, env) for run in runs]
    rules = [rule for rule in checks.RULES if rule is not checks.memory_rules]
    for p in checks.check_runs(launched, "", rules):
        who, _, message = p.message.partition(": ")
        out.append(f"{p.path or 'launch'}: {who} as launched: {message}")
    return out


def as_launched(run: ExpandedRun, flags: dict[str, Any], env: dict[str, str]) -> ExpandedRun:
    """`run` with the launch's flags, world size and passed-on environment (where the matrix
    does not set the name: the script's export wins there); their positions read `-- --flag`
    and `--env NAME`, so a problem names what the launch set."""
    target = run.settings.target
    target = dataclasses.replace(target, gpus_per_node=int(env.get("GPUS_PER_NODE", target.gpus_per_node)),
                                 nodes=int(env.get("NNODES", target.nodes)))
    added = {k: v for k, v in passed_env(env).items() if k not in run.settings.env}
    settings = dataclasses.replace(run.settings, target=target, env={**run.settings.env, **added})
    merged = {**run.flags, **flags}
    groups = {g: {f: v for f, v in fl.items() if f not in flags} for g, fl in run.groups.items()}
    groups["launch"] = dict(flags)
    origin = dict(run.origin)
    for flag in flags:
        origin[("megatron", "launch", flag)] = f"-- {flag}"
    for name, key in (("GPUS_PER_NODE", "gpus_per_node"), ("NNODES", "nodes")):
        if name in env:
            origin[("target", key)] = f"--env {name}"
    for name in added:
        origin[("env", name)] = f"--env {name}"
    return dataclasses.replace(run, settings=settings, flags=merged, groups=groups, origin=origin)


def _typed(value: Any, spec: Optional[FlagSpec]) -> Any:
    """A flag's text as the matrix would hold it: int or float by the parser's type."""
    if spec is None or isinstance(value, bool):
        return value
    convert = {"int": int, "float": float}.get(spec.type or "")
    if convert is None:
        return value
    try:
        return [convert(v) for v in value] if isinstance(value, list) else convert(value)
    except ValueError:
        return value
