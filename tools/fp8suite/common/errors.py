"""Problems found in user input, reported all at once, one line each.

A matrix file is checked completely before anything is written: every problem becomes a
`Problem` (file, dotted key path, message) and the CLI prints them one per line, e.g.

    experiments/h200_8b.yaml: axes.recipe.fp8.megatron.precision.--fp8-recipie: unknown Megatron flag (did you mean --fp8-recipe?)
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Optional


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Problem:
    """One problem of an input file: the file, the dotted key path in it ('' for the whole file)
    and what is wrong; `str()` gives the one line the CLIs print."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}: " if self.path else f"{self.file}: "
        # One line, whatever the input held: control characters are shown as escapes.
        return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                            where + self.message)


class ConfigError(Exception):
    """Raised with every problem of one input; `str()` gives one line per problem."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close.

    A choice spelled the same but for case ("h200" for "H200", "E4M3" for "e4m3") is the
    closest; otherwise difflib's closest match at a ratio of 0.75 or more."""
    choices = [str(c) for c in choices]
    same = [c for c in choices if c.lower() == str(word).lower()]
    close = same or difflib.get_close_matches(str(word), choices, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


class UsageError(Exception):
    """Bad command-line input: one line per problem (`lines`); the CLIs print them and exit 2."""

    def __init__(self, *lines: str):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class WriteFailed(Exception):
    """An output could not be written (a full disk, a read-only folder, a FIFO where a file
    goes); the message is one line naming the file. The CLIs print it and exit 1: the input
    was fine, the disk was not. Whatever was staged has been removed (fp8suite.common.fileio)."""

    @classmethod
    def of(cls, err: OSError, fallback: str = "") -> "WriteFailed":
        """From an OSError: "cannot write <file>: <reason>"."""
        where = err.filename if err.filename is not None else fallback
        return cls(f"cannot write {where}: {err.strerror or err}")


class NotRegularFile(OSError):
    """A path read as a file is a FIFO, a device, a socket or a folder (after following
    symlinks); `kind` names which (fp8suite.common.fileio.read_regular)."""

    def __init__(self, path, kind: str):
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", str(path))
        self.kind = kind


class TooLarge(OSError):
    """A file holds more bytes than its reader's bound (fp8suite.common.fileio.read_regular)."""

    def __init__(self, path, limit: int):
        super().__init__(errno.EFBIG, f"larger than {limit} bytes", str(path))


class StateFileError(Exception):
    """The status file (runs.json) exists but cannot be used; the message is one line."""


class SlurmError(Exception):
    """A Slurm command failed; the message is its first line of complaint."""


class SlurmUnavailable(SlurmError):
    """Slurm did not answer (slurmctld down or restarting, the command timed out or was
    stopped): nothing is known about the jobs, so no record may change because of it."""


class PreprocessError(Exception):
    """Bad preprocessing input or a missing dependency: reported as one line, no traceback."""


class DebError(ValueError):
    """A .deb package that cannot be read; the message names the file."""


class UnquotedValue(TypeError):
    """A template tried to write a value that did not go through the quoting path
    (fp8suite.render.templating): a bug in the suite, never bad input."""


class MarkupError(RuntimeError):
    """A document converter (BeautifulSoup, docutils, pod2text) is missing or failed; the
    message says which and how to get it (fp8suite.corpus.markup)."""


def exit_status(main: Callable[[], Optional[int]]) -> int:
    """Run a command-line tool's `main()` and return its exit status. A reader that closed the
    output early (`render.py ... | head`) ends the tool quietly, as Unix tools end, with status
    141 (128 + SIGPIPE) instead of a BrokenPipeError traceback."""
    try:
        return main() or 0
    except BrokenPipeError:
        # Python would report the error again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
