"""The library's shape: no import cycle, one home per concept, read from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

LIBRARY = REPO / "tools" / "fp8suite"
PACKAGE = "fp8suite"


def module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(LIBRARY.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Library modules `name` imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from . import x` imports module x when there is one, else a name of the package.
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES else origin
                       for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: imports(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_right():
    assert "fp8suite.config.schema" in GRAPH["fp8suite.config.checks"]
    assert "fp8suite.launch.plan" in GRAPH["fp8suite.launch.local"]
    assert "fp8suite.common.errors" in GRAPH["fp8suite.launch.registry"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_library():
    assert cycles(GRAPH) == []


HOMES = ("fp8suite.common.errors", "fp8suite.common.paths", "fp8suite.megatron.recipes", "fp8suite.common.clock",
         "fp8suite.megatron.flags")


@pytest.mark.parametrize("leaf", HOMES)
def test_homes_depend_on_nothing_but_other_homes(leaf):
    assert GRAPH[leaf] <= set(HOMES) - {leaf}


def test_launchers_do_not_import_the_renderer():
    for name in GRAPH:
        if name.startswith("fp8suite.launch.registry"):
            assert "fp8suite.render.templating" not in GRAPH[name], name


def test_the_launchers_share_nothing_but_base():
    for name in GRAPH:
        if name.startswith("fp8suite.launch.registry.") and name != "fp8suite.launch.base":
            others = {m for m in GRAPH[name] if m.startswith("fp8suite.launch.registry")}
            assert others <= {"fp8suite.launch.base"}, name


def _defs(kind):
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, kind):
                yield name, node


def test_error_types_live_in_the_error_module():
    found = [(name, node.name) for name, node in _defs(ast.ClassDef)
             if any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception"))
                    for b in node.bases)]
    assert found and {name for name, _ in found} == {"fp8suite.common.errors"}, found
    assert [cls for _, cls in found].count("UsageError") == 1


@pytest.mark.parametrize("function", ["duration", "now"])
def test_one_definition_of(function):
    where = [name for name, node in _defs(ast.FunctionDef) if node.name == function]
    assert where == ["fp8suite.common.clock"]


def test_run_classes_have_role_names():
    names = [node.name for _, node in _defs(ast.ClassDef)]
    assert "Run" not in names
    assert {"ExpandedRun", "RenderedRun", "LoggedRun"} <= set(names)


def test_one_import_style_inside_the_library():
    """Modules of the library import each other relatively (`from .x import y`)."""
    absolute = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == PACKAGE:
                absolute.append(f"{name}: from {node.module} import ...")
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in node.names):
                absolute.append(f"{name}: import {node.names[0].name}")
    assert absolute == []
