"""Load a matrix file and expand it into runs.

    YAML -> checked fragments (base, one per axis value) -> product of axes minus excludes
         -> one merged Settings per run, with the file position every value came from.

The file positions (`origin`) let the consistency checks name the exact key that causes a
problem, e.g. `axes.recipe.fp8_cs_1F1L.megatron.precision.--first-last-layers-bf16`.
"""

from __future__ import annotations

import copy
import itertools
import re
import string
from pathlib import Path
from typing import Any, Optional

import yaml

from . import schema
from .checks import check_runs
from .errors import ConfigError, Problem, did_you_mean
from .megatron_flags import FLAG_NAME, FlagSpec, load_snapshot, tokens
from .schema import ExpandedRun, Matrix, Origin, Settings

Run = ExpandedRun
"""Former name of `schema.ExpandedRun`, kept for code that imports it from here."""

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Set through `data:` or `wandb:` (the scripts build them, with launch-time overrides).
RESERVED_FLAGS = {
    "--data-path": "data.data_path", "--mock-data": "data.mock_data", "--split": "data.split",
    "--tokenizer-type": "data.tokenizer_type", "--tokenizer-model": "data.tokenizer_model",
    "--vocab-size": "data.vocab_size", "--wandb-project": "wandb.project",
    "--wandb-entity": "wandb.entity", "--wandb-exp-name": "wandb (the run name)",
    "--wandb-save-dir": "wandb.save_dir",
    "--no-gradient-accumulation-fusion": "gradient_accumulation_fusion: off",
    "--gradient-accumulation-fusion": "gradient_accumulation_fusion: on",
}

def read_yaml(path: Path) -> Any:
    """The parsed file, or ConfigError with the parser's position of the first error."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError([Problem(str(path), "", f"cannot read: {err.strerror}")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError([Problem(str(path), "", f"invalid YAML: {where}{problem}")]) from None


def load(path: Path, display: Optional[str] = None) -> tuple[Matrix, list[ExpandedRun]]:
    """Load and expand a matrix file; ConfigError lists every problem found in it."""
    file = display or str(path)
    raw = read_yaml(path)
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        raise ConfigError([Problem(file, "", "expected a mapping of settings at the top level")])

    for key in raw:
        if key not in schema.TOP_LEVEL_KEYS:
            problems.append(Problem(file, str(key), "unknown key"
                                    f"{did_you_mean(str(key), schema.TOP_LEVEL_KEYS)}; valid keys: "
                                    f"{', '.join(schema.TOP_LEVEL_KEYS)}"))
    meta_raw = {k: v for k, v in raw.items() if k in schema.MATRIX_KEYS}
    base_raw = {k: v for k, v in raw.items() if k in schema.SETTINGS_KEYS}
    meta = schema.build(Matrix, schema.check_fragment(Matrix, meta_raw, "", file, problems))
    if not meta.name:
        problems.append(Problem(file, "name", "missing: give the study a short name"))
    elif not RUN_NAME.match(meta.name):
        problems.append(Problem(file, "name", f"{meta.name!r} may hold only letters, digits, '_', '.', '-'"))

    version = str(base_raw.get("target", {}).get("megatron_core", schema.Target.megatron_core)) \
        if isinstance(base_raw.get("target"), dict) else schema.Target.megatron_core
    snapshot = load_snapshot(version)

    base = _check_settings(base_raw, "", file, problems, snapshot)
    overlays: dict[tuple[str, str], dict] = {}
    for axis, values in meta.axes.items():
        if not GROUP_NAME.match(axis):
            problems.append(Problem(file, f"axes.{axis}", "axis names are lower-case identifiers"))
        if not values:
            problems.append(Problem(file, f"axes.{axis}", "an axis needs at least one value"))
        for value, overlay in values.items():
            where = f"axes.{axis}.{value}"
            if not RUN_NAME.match(value):
                problems.append(Problem(file, where, "value names may hold only letters, digits, '_', '.', '-'"))
            overlays[(axis, value)] = _check_settings(overlay or {}, where, file, problems, snapshot)

    combos = _combinations(meta, file, problems)
    runs = [_merge_run(meta, base, overlays, combo, file, problems, snapshot) for combo in combos]
    runs = [r for r in runs if r is not None]
    _check_unique(runs, file, problems)
    problems += check_runs(runs, file)
    if problems:
        # A problem of the base shows up once per run: report it once.
        raise ConfigError(list(dict.fromkeys(problems)))
    return meta, runs


def _check_settings(data: Any, path: str, file: str, problems: list[Problem],
                    snapshot: Optional[dict[str, FlagSpec]]) -> dict:
    """Schema check of one fragment, plus Megatron flag names and values and env names."""
    clean = schema.check_fragment(Settings, data, path, file, problems)
    prefix = f"{path}." if path else ""
    for group, flags in list(clean.get("megatron", {}).items()):
        where = f"{prefix}megatron.{group}"
        if not GROUP_NAME.match(group):
            problems.append(Problem(file, where, "group names are lower-case identifiers (model, training, ...)"))
            del clean["megatron"][group]
            continue
        if not isinstance(flags, dict):
            problems.append(Problem(file, where, "expected a mapping of --flag: value"))
            del clean["megatron"][group]
            continue
        for flag, value in list(flags.items()):
            reason = _flag_problem(flag, value, snapshot)
            if reason:
                problems.append(Problem(file, f"{where}.{flag}", reason))
                del flags[flag]
    for name, value in list(clean.get("env", {}).items()):
        where = f"{prefix}env.{name}"
        if not ENV_NAME.match(name):
            problems.append(Problem(file, where, "not a valid environment variable name"))
            del clean["env"][name]
        elif isinstance(value, str) and CONTROL.search(value):
            problems.append(Problem(file, where, "control characters (newlines, tabs) are not allowed"))
            del clean["env"][name]
    _check_strings(clean, prefix.rstrip("."), file, problems)
    return clean


def _flag_problem(flag: str, value: Any, snapshot: Optional[dict[str, FlagSpec]]) -> str:
    if not FLAG_NAME.match(flag):
        return "not a Megatron flag: flags look like --some-name"
    if flag in RESERVED_FLAGS:
        return f"set it as {RESERVED_FLAGS[flag]} instead (the scripts build it, with launch overrides)"
    spec = None
    if snapshot is not None:
        spec = snapshot.get(flag)
        if spec is None:
            return f"unknown Megatron flag{did_you_mean(flag, snapshot)}"
    _, reason = tokens(flag, value, spec)
    if reason:
        return reason
    if isinstance(value, str) and CONTROL.search(value):
        return "control characters (newlines, tabs) are not allowed"
    return ""


def _check_strings(data: Any, path: str, file: str, problems: list[Problem]) -> None:
    """Reject control characters anywhere: they would break the rendered shell script."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("megatron", "env") and not path:
                continue
            _check_strings(value, f"{path}.{key}" if path else str(key), file, problems)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _check_strings(value, f"{path}[{i}]", file, problems)
    elif isinstance(data, str) and CONTROL.search(data):
        problems.append(Problem(file, path, "control characters (newlines, tabs) are not allowed"))


def _combinations(meta: Matrix, file: str, problems: list[Problem]) -> list[dict[str, str]]:
    axes = list(meta.axes)
    for i, rule in enumerate(meta.exclude):
        for axis, values in rule.items():
            where = f"exclude[{i}].{axis}"
            if axis not in meta.axes:
                problems.append(Problem(file, where, f"no such axis{did_you_mean(str(axis), axes)}; "
                                        f"axes: {', '.join(axes) or 'none'}"))
                continue
            for value in values if isinstance(values, list) else [values]:
                if str(value) not in meta.axes[axis]:
                    problems.append(Problem(file, where, f"{value!r} is not a value of axis {axis}"
                                            f"{did_you_mean(str(value), meta.axes[axis])}"))
    for i, rule in enumerate(meta.exclude):
        if not rule:
            problems.append(Problem(file, f"exclude[{i}]", "empty: name the axes and values to leave out"))
    combos = [dict(zip(axes, values)) for values in itertools.product(*(meta.axes[a] for a in axes))]
    return [c for c in combos if not any(_excluded(c, rule) for rule in meta.exclude)]


def _excluded(combo: dict[str, str], rule: dict[str, Any]) -> bool:
    return bool(rule) and all(
        combo.get(axis) in [str(v) for v in (values if isinstance(values, list) else [values])]
        for axis, values in rule.items())


def _merge_run(meta: Matrix, base: dict, overlays: dict, combo: dict[str, str], file: str,
               problems: list[Problem], snapshot: Optional[dict[str, FlagSpec]]) -> Optional[ExpandedRun]:
    merged: dict = {}
    origin: Origin = {}
    _merge(merged, base, (), "", origin)
    for axis, value in combo.items():
        _merge(merged, overlays.get((axis, value), {}), (), f"axes.{axis}.{value}", origin)

    name = _run_name(meta, combo, file, problems)
    if name is None:
        return None
    groups = {g: {f: v for f, v in flags.items() if v is not None}
              for g, flags in merged.get("megatron", {}).items()}
    flags: dict[str, Any] = {}
    for group, group_flags in groups.items():
        for flag, value in group_flags.items():
            if flag in flags:
                first = next(g for g in groups if flag in groups[g])
                problems.append(Problem(file, origin.get(("megatron", group, flag), ""),
                                        f"run {name}: {flag} is set in groups {first} and {group}; keep it in one"))
            flags[flag] = value
    merged["megatron"] = groups
    merged["env"] = {k: v for k, v in merged.get("env", {}).items() if v is not None}
    settings = schema.build(Settings, merged)
    return ExpandedRun(name=name, axes=dict(combo), settings=settings, flags=flags, groups=groups, origin=origin)


def _merge(into: dict, overlay: dict, keys: tuple[str, ...], path: str, origin: Origin) -> None:
    """Deep-merge `overlay` into `into`, recording where each leaf came from."""
    for key, value in overlay.items():
        here = keys + (key,)
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, here, where, origin)
        else:
            into[key] = copy.deepcopy(value)
            origin[here] = where
            if isinstance(value, dict):
                _record(value, here, where, origin)


def _record(value: dict, keys: tuple[str, ...], path: str, origin: Origin) -> None:
    for key, item in value.items():
        origin[keys + (key,)] = f"{path}.{key}"
        if isinstance(item, dict):
            _record(item, keys + (key,), f"{path}.{key}", origin)


def _run_name(meta: Matrix, combo: dict[str, str], file: str, problems: list[Problem]) -> Optional[str]:
    """The run's name from the template; problems of the template itself are found once."""
    if not meta.run_name:
        problems.append(Problem(file, "run_name", "missing: a run-name template such as "
                                "\"train_{recipe}\" (placeholders are axis names)"))
        return None
    fields = [f for _, f, _, _ in string.Formatter().parse(meta.run_name) if f is not None]
    unknown = [f for f in fields if f not in combo]
    if unknown:
        problems.append(Problem(file, "run_name", f"placeholder {{{unknown[0]}}} is not an axis"
                                f"{did_you_mean(unknown[0], combo)}; axes: {', '.join(combo) or 'none'}"))
        return None
    # Axis value names are checked to be safe, so the template's own text decides.
    literal = meta.run_name.format(**{f: "x" for f in fields})
    if not RUN_NAME.match(literal):
        problems.append(Problem(file, "run_name", f"{meta.run_name!r} does not make safe file names "
                                "(letters, digits, '_', '.', '-')"))
        return None
    return meta.run_name.format(**combo)


def _check_unique(runs: list[ExpandedRun], file: str, problems: list[Problem]) -> None:
    seen: dict[str, dict[str, str]] = {}
    for run in runs:
        if run.name in seen:
            problems.append(Problem(file, "run_name", f"runs {seen[run.name]} and {run.axes} are both "
                                    f"named {run.name}: add the differing axis to the template"))
        seen.setdefault(run.name, run.axes)
