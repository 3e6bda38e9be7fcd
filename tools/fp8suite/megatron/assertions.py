"""Megatron's argument assertions, read from its source, and the reviewed list of them.

megatron-core refuses a bad combination of flags only once a job has started: by an
`assert` or a `raise` in `validate_args` (megatron/training/arguments.py), in the
`__post_init__` of TransformerConfig / ModelParallelConfig, or in the optimizer and DDP
configs. `extract(source_root)` finds every such statement with Python's `ast`: the
function it is in (the root functions below and the same module's helpers they call),
the conditions of the `if` blocks around it, its own condition and its message.

The reviewed list, tools/fp8suite/data/megatron_assertions_<version>.json, gives each one a
status: `ported` with the id of the render-time rule that checks the same condition before
launch (tools/fp8suite/config/rules.py), or `not ported` with the reason. `refresh`
re-reads the source (tools/snapshot_megatron_flags.py calls it on a GPU host) and keeps the
review of every assertion whose text did not change; new ones come out `unreviewed`.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from .flags import DATA_DIR

# Where Megatron checks its arguments: file (from the folder holding `megatron/`) -> root
# functions ("Class.method" or "function"). Helpers of the same module they call are included.
SOURCES: dict[str, tuple[str, ...]] = {
    "megatron/training/arguments.py": ("validate_args",),
    "megatron/core/transformer/transformer_config.py": (
        "TransformerConfig.__post_init__", "MLATransformerConfig.__post_init__"),
    "megatron/core/model_parallel_config.py": ("ModelParallelConfig.__post_init__",),
    "megatron/core/optimizer/optimizer_config.py": ("OptimizerConfig.__post_init__",),
    "megatron/core/distributed/distributed_data_parallel_config.py": (
        "DistributedDataParallelConfig.__post_init__",),
}
STATUSES = ("ported", "not ported", "unreviewed")


@dataclass(frozen=True)
class Assertion:
    """One `assert` or `raise` of Megatron's argument checks."""

    file: str
    """Path from the folder holding `megatron/`, e.g. megatron/training/arguments.py."""
    line: int
    function: str
    """Enclosing function, "Class.method" or "function"."""
    kind: str
    """assert or raise."""
    when: str
    """Conditions of the enclosing `if` blocks, joined by ` and ` ('' at top level)."""
    condition: str
    """The asserted condition (what must hold); '' for a raise."""
    message: str
    """The message expression as written (an f-string stays a template)."""

    @property
    def id(self) -> str:
        """Stable across line moves: file, function, kind and the texts."""
        text = "\x1f".join((self.file, self.function, self.kind, self.when, self.condition, self.message))
        return hashlib.sha1(text.encode()).hexdigest()[:10]


def list_path(version: str) -> Path:
    return DATA_DIR / f"megatron_assertions_{version}.json"


def extract(source_root: Path) -> list[Assertion]:
    """Every assertion of SOURCES under `source_root` (the folder holding `megatron/`).

    Raises FileNotFoundError when a source file is missing and ValueError when a root
    function is not found in it (a renamed function must be noticed, not skipped).
    """
    out: list[Assertion] = []
    for file, roots in SOURCES.items():
        tree = ast.parse((source_root / file).read_text(), filename=file)
        functions = _functions(tree)
        for root in roots:
            if root not in functions:
                raise ValueError(f"{file}: no function {root}")
        seen: set[str] = set()
        queue = list(roots)
        while queue:
            name = queue.pop(0)
            if name in seen:
                continue
            seen.add(name)
            node = functions[name]
            out += _assertions(file, name, node)
            queue += [c for c in _callees(name, node, functions) if c not in seen]
    return sorted(out, key=lambda a: (list(SOURCES).index(a.file), a.line))


def load(version: str) -> Optional[dict[str, Any]]:
    """The reviewed list of megatron-core `version`, or None when there is none."""
    path = list_path(version)
    return json.loads(path.read_text()) if path.exists() else None


def refresh(source_root: Path, version: str, out: Optional[Path] = None,
            reviewed: Optional[Path] = None) -> tuple[Path, int, int]:
    """Re-read the source into the reviewed list, keeping every review that still applies.

    Reviews are taken from `reviewed` (default: the list at `out`, else the package's list of
    `version`); the result is written to `out` (default: the package's list). Returns (path
    written, assertions found, how many of them are new and unreviewed).
    """
    path = out or list_path(version)
    source = reviewed or path
    old = {}
    if source.exists():
        old = {e["id"]: e for e in json.loads(source.read_text())["assertions"]}
    entries = []
    new = 0
    for a in extract(source_root):
        entry = {"id": a.id, **asdict(a)}
        review = old.get(a.id)
        if review is None:
            new += 1
            entry.update(status="unreviewed", rule=None, reason="")
        else:
            entry.update(status=review["status"], rule=review.get("rule"), reason=review.get("reason", ""))
        entries.append(entry)
    data = {
        "megatron_core": version,
        "recorded_by": "tools/snapshot_megatron_flags.py (fp8suite.megatron.assertions.refresh)",
        "sources": {f: list(r) for f, r in SOURCES.items()},
        "statuses": {"ported": "checked at render time by the rule named in `rule` "
                               "(tools/fp8suite/config/rules.py)",
                     "not ported": "`reason` says why",
                     "unreviewed": "found by the last refresh; review it"},
        "assertions": entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path, len(entries), new


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    out: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out[f"{node.name}.{item.name}"] = item
    return out


def _callees(name: str, node: ast.FunctionDef, functions: dict[str, ast.FunctionDef]) -> list[str]:
    """Same-module functions called by name, and same-class methods called on self."""
    cls = name.rsplit(".", 1)[0] if "." in name else None
    out = []
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        f = call.func
        if isinstance(f, ast.Name) and f.id in functions:
            out.append(f.id)
        elif (cls and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
              and f.value.id == "self" and f"{cls}.{f.attr}" in functions):
            out.append(f"{cls}.{f.attr}")
    return out


def _assertions(file: str, function: str, node: ast.FunctionDef) -> list[Assertion]:
    out: list[Assertion] = []

    def visit(stmts: list[ast.stmt], when: list[str]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.Assert):
                out.append(Assertion(file, stmt.lineno, function, "assert", " and ".join(when),
                                     _text(stmt.test), _text(stmt.msg) if stmt.msg else ""))
            elif isinstance(stmt, ast.Raise):
                out.append(Assertion(file, stmt.lineno, function, "raise", " and ".join(when), "",
                                     _text(stmt.exc) if stmt.exc else "re-raise"))
            elif isinstance(stmt, ast.If):
                test = _text(stmt.test)
                visit(stmt.body, when + [test])
                visit(stmt.orelse, when + [f"not ({test})"])
            elif isinstance(stmt, (ast.For, ast.While)):
                head = (f"for {_text(stmt.target)} in {_text(stmt.iter)}" if isinstance(stmt, ast.For)
                        else f"while {_text(stmt.test)}")
                visit(stmt.body, when + [head])
                visit(stmt.orelse, when)
            elif isinstance(stmt, ast.With):
                visit(stmt.body, when)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body, when)
                for handler in stmt.handlers:
                    visit(handler.body, when + [f"except {_text(handler.type) if handler.type else ''}".strip()])
                visit(stmt.orelse, when)
                visit(stmt.finalbody, when)
            elif isinstance(stmt, ast.Match):
                for case in stmt.cases:
                    visit(case.body, when + [f"case {_text(case.pattern)}"])

    visit(node.body, [])
    return out


def _text(node: Optional[ast.AST]) -> str:
    return " ".join(ast.unparse(node).split()) if node is not None else ""
