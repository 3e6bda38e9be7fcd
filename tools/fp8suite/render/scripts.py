"""Which launch scripts a run gets: one per template in templates/ that declares itself.

A launch template's first line names the launcher that starts its script and the script's
suffix, as a Jinja comment (it leaves no trace in the script):

    <%#- launch script: launcher slurm, suffix .sbatch -#%>

The renderer writes `<run><suffix>` from every such template, so a new launcher is its template
(with that line) and its module in fp8suite.launch; nothing on the render side imports the launch
side to find them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..common import paths

DEFAULT_LAUNCHER = "local"
"""The launcher run.py uses when none is asked for; its script is the one every launcher starts."""

_HEADER = re.compile(r"<%#- launch script: launcher (?P<launcher>[a-z][a-z0-9_]*), "
                     r"suffix (?P<suffix>\.[a-z]+) -#%>\n")


@dataclass(frozen=True)
class ScriptKind:
    launcher: str
    """The launcher that starts this script (`run.py --launcher NAME`)."""
    template: str
    """The template's file name in templates/."""
    suffix: str
    """The script is written as <run><suffix> (`.sh`, `.sbatch`)."""


@functools.cache
def kinds() -> dict[str, ScriptKind]:
    """Launcher name -> its script kind, from the headers of templates/*.j2, sorted by name."""
    found = {}
    for path in sorted(paths.TEMPLATES.glob("*.j2")):
        header = _HEADER.match(path.read_text())
        if header:
            found[header["launcher"]] = ScriptKind(header["launcher"], path.name, header["suffix"])
    return dict(sorted(found.items()))


def suffixes() -> set[str]:
    """The suffixes of every launch script (written executable)."""
    return {kind.suffix for kind in kinds().values()}
