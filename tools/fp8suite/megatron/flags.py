"""Megatron flags: the parser's real flag set (a snapshot), and flag values to argv tokens.

CI cannot import megatron (megatron-core 0.19 needs Python >= 3.12), so
tools/snapshot_megatron_flags.py records the parser's flags on a GPU host into
tools/fp8suite/data/megatron_flags_<version>.json. The renderer checks every flag of a
matrix against it, so a typo or a value the parser would refuse fails at render time.

`SUITE_FLAGS` are TransformerConfig fields that megatron-core 0.19 has no flag for;
tools/pretrain_gpt.py adds them to Megatron's parser (`add_suite_flags`) under the name older
Megatron-LM releases gave them, and Megatron copies every parsed argument named like a
TransformerConfig field into the config (core_transformer_config_from_args).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from ..common.errors import did_you_mean

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

DEFAULT_MEGATRON_CORE = "0.19.2"
"""The megatron-core release a matrix targets when it names none (`target.megatron_core`): the
one whose flag snapshot and assertions ship in data/."""
FLAG_NAME = re.compile(r"^--[A-Za-z0-9][A-Za-z0-9-]*$")
_INT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class FlagSpec:
    """What the parser knows of one option string."""

    action: str
    """store, store_true, store_false, store_const, boolean_optional, append, ..."""
    dest: str
    nargs: Any = None
    choices: Optional[tuple[str, ...]] = None
    type: Optional[str] = None

    @property
    def is_switch(self) -> bool:
        """True for a flag that takes no value (store_true/store_false)."""
        return self.action in ("store_true", "store_false", "store_const", "boolean_optional")

    @property
    def takes_list(self) -> bool:
        """True for a flag that takes several values (nargs * or +)."""
        return self.nargs in ("*", "+") or (isinstance(self.nargs, int) and self.nargs > 1)


SUITE_FLAGS: dict[str, tuple[FlagSpec, str]] = {
    "--fp8-dot-product-attention": (
        FlagSpec(action="store_true", dest="fp8_dot_product_attention"),
        "Run dot-product attention in FP8 (TransformerConfig.fp8_dot_product_attention; Transformer "
        "Engine's cuDNN fused attention). Added by the suite: megatron-core 0.19 has no flag for it."),
}
"""Flags tools/pretrain_gpt.py adds to Megatron's parser: flag -> (its spec, its help text)."""


def add_suite_flags(parser):
    """Megatron's `extra_args_provider`: add each of SUITE_FLAGS the parser lacks; returns it.

    A Megatron release that has the flag itself keeps its own definition.
    """
    known = set(parser._option_string_actions)
    group = parser.add_argument_group(title="fp8suite (TransformerConfig fields without a flag)")
    for flag, (spec, help_text) in SUITE_FLAGS.items():
        if flag not in known:
            group.add_argument(flag, action=spec.action, dest=spec.dest, help=help_text)
    return parser


def snapshot_path(version: str) -> Path:
    """tools/fp8suite/data/megatron_flags_<version>.json: the flag snapshot of a megatron-core
    version."""
    return DATA_DIR / f"megatron_flags_{version}.json"


def load_snapshot(version: str) -> Optional[dict[str, FlagSpec]]:
    """The flag set of megatron-core `version` with SUITE_FLAGS added, or None when no snapshot
    of it exists."""
    path = snapshot_path(version)
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    suite = {flag: spec for flag, (spec, _) in SUITE_FLAGS.items()}
    return suite | {
        flag: FlagSpec(
            action=spec["action"],
            dest=spec["dest"],
            nargs=spec.get("nargs"),
            choices=tuple(spec["choices"]) if spec.get("choices") is not None else None,
            type=spec.get("type"),
        )
        for flag, spec in raw["flags"].items()
    }


def tokens(flag: str, value: Any, spec: Optional[FlagSpec]) -> tuple[list[str], Optional[str]]:
    """argv tokens for `flag: value`, or ([], reason) when the parser would refuse the value.

    true renders the bare switch, false/null leave it out (a boolean_optional flag renders
    --no-<name> for false), lists render one token per item.
    """
    if value is None:
        return [], None
    if isinstance(value, bool):
        if spec is not None and not spec.is_switch:
            return [], f"takes a value, not {str(value).lower()}"
        if value:
            return [flag], None
        if spec is not None and spec.action == "boolean_optional":
            return ["--no-" + flag[2:]], None
        return [], None
    if spec is not None and spec.is_switch:
        return [], f"is a switch: write true or false, not {value!r}"
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and spec is not None and not spec.takes_list:
        return [], "takes one value, not a list"
    if isinstance(value, list) and not value:
        return [], "needs at least one value"
    out = [flag]
    for item in items:
        if isinstance(item, (dict, list)) or isinstance(item, bool) or item is None:
            return [], f"values must be strings or numbers, got {item!r}"
        text = str(item)
        if spec is not None:
            reason = _check_type(text, item, spec)
            if reason:
                return [], reason
        out.append(text)
    return out, None


def _check_type(text: str, item: Any, spec: FlagSpec) -> Optional[str]:
    if spec.choices is not None and text not in spec.choices:
        return f"{text!r} is not one of: {', '.join(spec.choices)}{did_you_mean(text, spec.choices)}"
    if spec.type == "int" and not (isinstance(item, int) or _INT.match(text)):
        return f"expects an integer, got {item!r}"
    if spec.type == "float":
        try:
            float(text)
        except ValueError:
            return f"expects a number, got {item!r}"
    return None


def flag_int(value: Any, default: int) -> int:
    """A flag's value as an integer; `default` for an unset (None), boolean or non-numeric one."""
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default

