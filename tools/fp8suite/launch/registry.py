"""The launchers, by name: every module of this package that defines a `base.Launcher`.

    from fp8suite.launch import registry
    registry.names()            # ("local", "slurm")
    registry.get("slurm")       # a SlurmLauncher
    registry.all()              # every launcher, by name

A new launcher is a new module here (a `Launcher` subclass with its name) and its template in
templates/, whose first line names the launcher and its script's suffix: the renderer writes
its script for every run without importing this package (fp8suite.render.scripts), the manifest
lists it, and tools/run.py, the one user of this registry, offers it (--launcher NAME, plus the
options it adds).
"""

from __future__ import annotations

import importlib
from typing import Optional

from ..common.errors import UsageError, did_you_mean
from ..render import scripts
from .base import Launcher

DEFAULT = scripts.DEFAULT_LAUNCHER
"""The launcher run.py uses when none is asked for."""

_PACKAGE = __name__.rsplit(".", 1)[0]  # fp8suite.launch
_found: Optional[dict[str, Launcher]] = None


def all() -> dict[str, Launcher]:  # noqa: A001 (the registry's natural name)
    """Every launcher, name -> instance, sorted by name: for each launch template that names a
    launcher (fp8suite.render.scripts), the `Launcher` subclass of this package's module of that
    name."""
    global _found
    if _found is None:
        found: dict[str, Launcher] = {}
        for name in scripts.kinds():
            module = importlib.import_module(f"{_PACKAGE}.{name}")
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, Launcher) and value.name \
                        and value.__module__ == module.__name__:
                    found[value.name] = value()
        _found = dict(sorted(found.items()))
    return _found


def names() -> tuple[str, ...]:
    """The launchers' names, sorted."""
    return tuple(all())


def get(name: str) -> Launcher:
    """The launcher called `name`; UsageError (with the valid names) for an unknown one."""
    found = all()
    if name not in found:
        raise UsageError(f"--launcher {name}: no such launcher{did_you_mean(name, found)}; "
                         f"launchers: {', '.join(found)}")
    return found[name]
