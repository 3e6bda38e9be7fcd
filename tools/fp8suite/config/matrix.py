"""Load a matrix file and expand it into runs.

    YAML -> checked fragments (base, one per axis value) -> product of axes minus excludes
         -> one merged Settings per run, with the file position every value came from.

The file positions (`origin`) let the consistency checks name the exact key that causes a
problem, e.g. `axes.recipe.fp8_cs_1F1L.megatron.precision.--first-last-layers-bf16`.
"""

from __future__ import annotations

import copy
import itertools
import string
from pathlib import Path
from typing import Any, Optional

from . import limits
from . import loader
from . import reserved
from . import schema
from .checks import check_runs
from ..common.errors import ConfigError, Problem, did_you_mean
from ..megatron.flags import FLAG_NAME, FlagSpec, load_snapshot, tokens
from .schema import ExpandedRun, Matrix, Origin, Settings


# Names are matched whole (re.fullmatch): `$` would accept a final newline.
RUN_NAME = limits.NAME
GROUP_NAME = limits.IDENTIFIER
ENV_NAME = limits.ENV_NAME
CONTROL = limits.CONTROL

# Set through `data:`, `wandb:` or `checkpoint:` (the scripts build them, with launch-time overrides).
RESERVED_FLAGS = {
    "--data-path": "data.data_path", "--mock-data": "data.mock_data", "--split": "data.split",
    "--tokenizer-type": "data.tokenizer_type", "--tokenizer-model": "data.tokenizer_model",
    "--vocab-size": "data.vocab_size", "--wandb-project": "wandb.project",
    "--wandb-entity": "wandb.entity", "--wandb-exp-name": "wandb (the run name)",
    "--wandb-save-dir": "wandb.save_dir",
    "--save": "checkpoint.dir", "--load": "checkpoint.dir", "--save-interval": "checkpoint.save_interval",
    "--no-gradient-accumulation-fusion": "gradient_accumulation_fusion: off",
    "--gradient-accumulation-fusion": "gradient_accumulation_fusion: on",
}

def read_yaml(path: Path, display: Optional[str] = None) -> Any:
    """The parsed file, or ConfigError with one line per problem (see loader.read_yaml)."""
    return loader.read_yaml(path, display)


def load(path: Path, display: Optional[str] = None) -> tuple[Matrix, list[ExpandedRun]]:
    """Load and expand a matrix file; ConfigError lists every problem found in it.

    Every failure is a ConfigError (one `Problem` per line: file, dotted key, message), never
    another exception: unreadable, oversized or non-UTF-8 files, invalid or duplicate-key
    YAML, unknown keys, wrong types, out-of-range values, unsafe names, bad run-name templates.
    """
    file = _printable(display or str(path))
    raw = read_yaml(path, file)
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        raise ConfigError([Problem(file, "", "expected a mapping of settings at the top level")])

    _check_keys(raw, "", file, problems)
    for key in raw:
        if not isinstance(key, str):
            # YAML reads `~:` as null, `1:` as an integer, `true:` as a boolean: never a setting.
            problems.append(Problem(file, "~" if key is None else _printable(str(key)), f"a key must be a name, got "
                                    f"{schema.kind(key)}; valid keys: {', '.join(schema.TOP_LEVEL_KEYS)}"))
            continue
        if CONTROL.search(key):
            continue
        if key not in schema.TOP_LEVEL_KEYS:
            problems.append(Problem(file, str(key), "unknown key"
                                    f"{did_you_mean(str(key), schema.TOP_LEVEL_KEYS)}; valid keys: "
                                    f"{', '.join(schema.TOP_LEVEL_KEYS)}"))
    meta_raw = {k: v for k, v in raw.items() if k in schema.MATRIX_KEYS}
    base_raw = {k: v for k, v in raw.items() if k in schema.SETTINGS_KEYS}
    meta_clean = schema.check_fragment(Matrix, meta_raw, "", file, problems)
    for key in ("name", "description", "run_name"):
        if isinstance(meta_clean.get(key), str) and CONTROL.search(meta_clean[key]):
            problems.append(Problem(file, key, "control characters (newlines, tabs) are not allowed"))
            meta_clean[key] = ""
    meta = schema.build(Matrix, meta_clean)
    if not meta.name:
        if "name" not in meta_clean:
            problems.append(Problem(file, "name", "missing: give the study a short name"))
    elif not RUN_NAME.fullmatch(meta.name) or len(meta.name) > limits.MAX_NAME:
        problems.append(Problem(file, "name", f"{meta.name!r} may hold only letters, digits, '_', '.', '-' "
                                f"(at most {limits.MAX_NAME}, starting with a letter or digit)"))

    version = str(base_raw.get("target", {}).get("megatron_core", schema.Target.megatron_core)) \
        if isinstance(base_raw.get("target"), dict) else schema.Target.megatron_core
    snapshot = load_snapshot(version)

    # Stage 1, names and values: a fragment with a problem here taints every run that merges it
    # (stage 2, the checks of meaning, then skips those runs: no follow-on problem).
    before = len(problems)
    base = _check_settings(base_raw, "", file, problems, snapshot)
    tainted: set[tuple[str, str]] = {("", "")} if len(problems) > before else set()
    overlays: dict[tuple[str, str], dict] = {}
    for axis, values in meta.axes.items():
        if not GROUP_NAME.fullmatch(axis):
            problems.append(Problem(file, f"axes.{axis}", "axis names are lower-case identifiers"))
        if not values:
            problems.append(Problem(file, f"axes.{axis}", "an axis needs at least one value"))
        for value, overlay in values.items():
            where = f"axes.{axis}.{value}"
            if not RUN_NAME.fullmatch(value) or len(value) > limits.MAX_NAME:
                problems.append(Problem(file, where, "value names may hold only letters, digits, '_', '.', '-' "
                                        f"(at most {limits.MAX_NAME}, starting with a letter or digit)"))
            before = len(problems)
            overlays[(axis, value)] = _check_settings(overlay or {}, where, file, problems, snapshot)
            if len(problems) > before:
                tainted.add((axis, value))

    total = 1
    for values in meta.axes.values():
        total *= max(1, len(values))
    if total > limits.MAX_RUNS:
        problems.append(Problem(file, "axes", f"the axes make {total} combinations; a matrix expands to "
                                f"at most {limits.MAX_RUNS} runs: split the study"))
        raise ConfigError(list(dict.fromkeys(problems)))
    values = _count_values(raw)
    if values * total > limits.MAX_EXPANDED:
        problems.append(Problem(file, "axes", f"{values} values x {total} runs is more than the "
                                f"{limits.MAX_EXPANDED} a render expands: split the study or shorten its lists"))
        raise ConfigError(list(dict.fromkeys(problems)))
    combos = _combinations(meta, file, problems)
    if not combos and meta.exclude:
        problems.append(Problem(file, "exclude", "leaves no run: every combination of the axes is excluded"))
    runs = [_merge_run(meta, base, overlays, combo, file, problems, snapshot, tainted) for combo in combos]
    runs = [r for r in runs if r is not None]
    _check_unique(runs, file, problems)
    # Values that failed their own checks were dropped from the runs above, so the consistency
    # checks (divisions included) only see values in range; a run with such a problem gets only
    # the checks of single values (checks.check_runs).
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
        if not GROUP_NAME.fullmatch(group):
            problems.append(Problem(file, where, "group names are lower-case identifiers (model, training, ...)"))
            del clean["megatron"][group]
            continue
        if not isinstance(flags, dict):
            problems.append(Problem(file, where, "expected a mapping of --flag: value"))
            del clean["megatron"][group]
            continue
        for flag, value in list(flags.items()):
            reason = flag_problem(str(flag), value, snapshot)
            if reason:
                problems.append(Problem(file, f"{where}.{flag}", reason))
                flags[flag] = REFUSED  # left out of the run, remembered so rules add no follow-on
    for name, value in list(clean.get("env", {}).items()):
        where = f"{prefix}env.{name}"
        if not ENV_NAME.fullmatch(name):
            problems.append(Problem(file, where, "not a valid environment variable name"))
            del clean["env"][name]
        elif isinstance(value, str) and CONTROL.search(value):
            problems.append(Problem(file, where, "control characters (newlines, tabs) are not allowed"))
            del clean["env"][name]
    _check_strings(clean, prefix.rstrip("."), file, problems)
    limits.check_settings(clean, path, file, problems)
    data = clean.get("data")
    spec = snapshot.get("--tokenizer-type") if snapshot else None
    if isinstance(data, dict) and isinstance(data.get("tokenizer_type"), str) and spec and spec.choices \
            and data["tokenizer_type"] not in spec.choices:
        problems.append(Problem(file, f"{prefix}data.tokenizer_type", f"{data['tokenizer_type']!r} is not one "
                                f"of: {', '.join(spec.choices)}{did_you_mean(data['tokenizer_type'], spec.choices)}"))
        del data["tokenizer_type"]
    return clean


class _Refused:
    """The one marker value (kept as itself by copy.deepcopy when fragments are merged)."""

    def __deepcopy__(self, memo: dict) -> "_Refused":
        return self

    def __repr__(self) -> str:
        return "REFUSED"


REFUSED = _Refused()
"""Stands in a checked fragment for a Megatron flag whose value was refused: the run leaves the
flag out, and its `refused` set names it (see checks._refused)."""

RESERVED_AT_LAUNCH = {"--save": "CHECKPOINT_DIR", "--load": "CHECKPOINT_DIR", "--data-path": "DATA_PATH",
                      "--tokenizer-model": "TOKENIZER_MODEL", "--mock-data": "MOCK_DATA"}
"""The launch setting that changes a reserved flag at launch time (run.py --env NAME=...)."""


def flag_problem(flag: str, value: Any, snapshot: Optional[dict[str, FlagSpec]]) -> str:
    if not FLAG_NAME.fullmatch(flag):
        return "not a Megatron flag: flags look like --some-name"
    if flag in RESERVED_FLAGS:
        return f"set it as {RESERVED_FLAGS[flag]} instead (the scripts build it, with launch overrides)"
    spec = None
    if snapshot is not None:
        spec = snapshot.get(flag)
        if spec is None:
            return f"unknown Megatron flag{did_you_mean(flag, snapshot)}"
    if any(isinstance(v, str) and CONTROL.search(v) for v in (value if isinstance(value, list) else [value])):
        return "control characters (newlines, tabs) are not allowed"
    _, reason = tokens(flag, value, spec)
    if reason:
        return reason
    return limits.flag_value_problem(flag, value, spec.type if spec is not None else None)


def _count_values(data: Any) -> int:
    """Keys, items and scalars of the parsed file (bounded by the loader's node limit)."""
    if isinstance(data, dict):
        return 1 + sum(1 + _count_values(v) for v in data.values())
    if isinstance(data, list):
        return 1 + sum(_count_values(v) for v in data)
    return 1


def _check_keys(data: Any, path: str, file: str, problems: list[Problem]) -> None:
    """Every mapping key anywhere: a string without control characters."""
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and CONTROL.search(key):
                problems.append(Problem(file, _printable(where), "control characters (newlines, tabs) "
                                        "are not allowed in keys"))
            _check_keys(value, where, file, problems)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _check_keys(value, f"{path}[{i}]", file, problems)


def _printable(text: str) -> str:
    """`text` for a one-line message: control characters as escapes."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


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
               problems: list[Problem], snapshot: Optional[dict[str, FlagSpec]],
               tainted: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset()) -> Optional[ExpandedRun]:
    merged: dict = {}
    origin: Origin = {}
    _merge(merged, base, (), "", origin)
    for axis, value in combo.items():
        _merge(merged, overlays.get((axis, value), {}), (), f"axes.{axis}.{value}", origin)

    name = _run_name(meta, combo, file, problems)
    if name is None:
        return None
    refused = frozenset(f for flags in merged.get("megatron", {}).values() for f, v in flags.items()
                        if v is REFUSED)
    groups = {g: {f: v for f, v in flags.items() if v is not None and v is not REFUSED}
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
    input_problems = bool(refused) or ("", "") in tainted or any(item in tainted for item in combo.items())
    return ExpandedRun(name=name, axes=dict(combo), settings=settings, flags=flags, groups=groups, origin=origin,
                       refused=refused, input_problems=input_problems)


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
    """The run's name from the template; problems of the template itself are found once.

    A template is literal text and `{axis}` placeholders only: no format specs (`{a:x}`),
    conversions (`{a!r}`), attribute or index access (`{a.x}`, `{a[0]}`), positional fields
    (`{}`, `{0}`) or unbalanced braces; `{{` and `}}` stand for literal braces, which no file
    name may hold anyway.
    """
    if not meta.run_name:
        problems.append(Problem(file, "run_name", "missing: a run-name template such as "
                                "\"train_{recipe}\" (placeholders are axis names)"))
        return None
    bad = _template_problem(meta.run_name, combo)
    if bad:
        problems.append(Problem(file, "run_name", bad))
        return None
    parts = list(string.Formatter().parse(meta.run_name))
    name = "".join(text + (combo[field] if field is not None else "") for text, field, _, _ in parts)
    literal = "".join(text + ("x" if field is not None else "") for text, field, _, _ in parts)
    if not RUN_NAME.fullmatch(literal):
        problems.append(Problem(file, "run_name", f"{meta.run_name!r} does not make safe file names "
                                "(letters, digits, '_', '.', '-')"))
        return None
    if len(name) > limits.MAX_NAME:
        problems.append(Problem(file, "run_name", f"run name {name[:40]}... is {len(name)} characters; "
                                f"at most {limits.MAX_NAME}"))
        return None
    if reserved.run_name_problem(name):
        problems.append(Problem(file, "run_name", reserved.run_name_problem(name)))
        return None
    return name


def _template_problem(template: str, combo: dict[str, str]) -> str:
    axes = ", ".join(combo) or "none"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        return (f"{template!r} is not a valid template ({err}); placeholders look like {{axis}}, "
                "and names hold no braces")
    canonical = "".join(text.replace("{", "{{").replace("}", "}}") + ("" if field is None else f"{{{field}}}")
                        for text, field, _, _ in parts)
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field == "" or field.isdigit():
            return f"positional placeholder {{{field}}}: name an axis, e.g. {{{next(iter(combo), 'recipe')}}}"
        if spec or conversion:
            return (f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}} has a conversion or format spec; write {{{field}}}")
        if field not in combo:
            if not GROUP_NAME.fullmatch(field):
                return f"placeholder {{{field}}}: only plain axis names are allowed; axes: {axes}"
            return f"placeholder {{{field}}} is not an axis{did_you_mean(field, combo)}; axes: {axes}"
    if canonical != template:
        return f"{template!r}: write placeholders as {{axis}}, without ':' or '!'"
    return ""


def _check_unique(runs: list[ExpandedRun], file: str, problems: list[Problem]) -> None:
    seen: dict[str, dict[str, str]] = {}
    for run in runs:
        if run.name in seen:
            problems.append(Problem(file, "run_name", f"runs {seen[run.name]} and {run.axes} are both "
                                    f"named {run.name}: add the differing axis to the template"))
        seen.setdefault(run.name, run.axes)
