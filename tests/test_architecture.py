"""The library's shape: no import cycle, one home per concept, read from the source with ast."""

from __future__ import annotations

import ast
import subprocess
import sys
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
        elif _is_import_module_call(node):
            # importlib.import_module(f"{_PACKAGE}.{name}"): every module of that package may be
            # imported at run time, so the graph counts an edge to each of them.
            targets = [m for m in MODULES if m.rsplit(".", 1)[0] == _dynamic_package(name, node)]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def _is_import_module_call(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module" and getattr(node.func.value, "id", "") == "importlib")


def _dynamic_package(name: str, node: ast.Call) -> str:
    """The package an importlib.import_module call reaches into: a constant's, or, for an
    f-string built on the module's own name (`__name__`, `_PACKAGE`), the module's package."""
    arg = node.args[0] if node.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value.rsplit(".", 1)[0]
    return name.rsplit(".", 1)[0]


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
         "fp8suite.megatron.flags", "fp8suite.common.fileio")


@pytest.mark.parametrize("leaf", HOMES)
def test_homes_depend_on_nothing_but_other_homes(leaf):
    assert GRAPH[leaf] <= set(HOMES) - {leaf}


LAYERS = {
    "common": 0,    # errors, paths and names, clock, states, version: imports nothing of the suite
    "megatron": 1,  # Megatron's and Transformer Engine's vocabulary: flags, log keys, recipes
    "config": 2,    # the matrix: schema, loader, expansion, pre-flight checks, memory
    "logs": 2,      # reading what runs wrote
    "corpus": 2,    # the offline corpus
    "report": 3,    # runs -> comparison, figures, plots
    "evidence": 4,  # what the committed logs measured: speed advice, the speedup predictor
    "render": 5,    # runs -> launch scripts and manifest (with advice and predicted speedup)
    "launch": 6,    # the launchers, run.py's side
}
"""Each subpackage's floor: a module imports only from its own subpackage or from lower floors
(never upward, never sideways into another subpackage of the same floor)."""


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""  # "" = the top package fp8suite


def test_every_module_lives_in_a_subpackage_with_a_floor():
    loose = [m for m in MODULES if m != PACKAGE and layer_of(m) not in LAYERS]
    assert loose == [], f"add these to a subpackage named in LAYERS: {loose}"


def test_nothing_imports_upward_or_sideways():
    wrong = []
    for name, targets in GRAPH.items():
        here = layer_of(name)
        for target in targets:
            there = layer_of(target)
            if not here or not there or here == there:
                continue
            if LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{name} (floor {LAYERS[here]}) imports {target} (floor {LAYERS[there]})")
    assert wrong == []


def test_dynamic_imports_are_in_the_graph():
    assert "fp8suite.launch.local" in GRAPH["fp8suite.launch.registry"]
    assert "fp8suite.launch.slurm" in GRAPH["fp8suite.launch.registry"]


def test_only_run_py_uses_the_launcher_registry():
    users = sorted(str(p.relative_to(REPO)) for p in REPO.glob("tools/**/*.py")
                   if "fp8suite.launch" in p.read_text() and "registry" in p.read_text()
                   and p.name != "registry.py" and "import registry" in p.read_text())
    assert users == ["tools/run.py"]


def test_rendering_loads_nothing_of_the_launch_side(tmp_path):
    code = ("import sys; sys.path.insert(0, 'tools'); import render; "
            f"rc = render.main(['experiments/h200_8b.yaml', '--out', {str(tmp_path)!r}]); "
            "print(sorted(m for m in sys.modules if m.startswith('fp8suite.launch')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_launchers_share_nothing_but_base():
    launchers = {"fp8suite.launch.local", "fp8suite.launch.slurm"}
    for name in launchers:
        assert not (GRAPH[name] & launchers), name


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
