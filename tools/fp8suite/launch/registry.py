"""The launchers, by name: every module of this package that defines a `base.Launcher`.

    from fp8suite import launchers
    launchers.names()            # ("local", "slurm")
    launchers.get("slurm")       # a SlurmLauncher
    launchers.all()              # every launcher, by name

A new launcher is a new module here (a `Launcher` subclass with its name, template and
suffix) and its template in templates/: the renderer writes its script for every run, the
manifest lists it, and tools/run.py offers it (--launcher NAME, plus the options it adds).
Modules are imported when first asked for, so that the renderer can list launchers without
importing what they need to run.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Optional

from ..common.errors import UsageError, did_you_mean
from .base import Launcher

DEFAULT = "local"
"""The launcher run.py uses when none is asked for."""

_found: Optional[dict[str, Launcher]] = None


def all() -> dict[str, Launcher]:  # noqa: A001 (the registry's natural name)
    """Every launcher of this package, name -> instance, sorted by name."""
    global _found
    if _found is None:
        found: dict[str, Launcher] = {}
        for info in pkgutil.iter_modules(__path__):
            if info.name == "base" or info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
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
