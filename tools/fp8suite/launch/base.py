"""The launcher interface, and the helpers every launcher shares.

A launcher is one way to run a matrix's rendered runs: `local` (a queue of the launch scripts
on this node) or `slurm` (batch jobs). Each is a `Launcher` subclass in its own module of this
package, found by name (`fp8suite.launch.registry.get`); it

* has its script rendered per run from its template in templates/ (whose first line names the
  launcher and the suffix: fp8suite.render.scripts), written as <run><suffix>,
* adds its command-line options to tools/run.py (`add_arguments`) and checks them (`check`),
* launches runs (`launch`), and where the runs outlive run.py, follows (`watch`) and stops
  them (`cancel`),

recording every attempt in the status file (`RunState`, mode = the launcher's name).
"""

from __future__ import annotations

import argparse
import shlex
import signal
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterator, Optional

from ..common.errors import UsageError
from ..render import scripts

# The arguments of the verbs below, by role (their classes import the renderer, so they are not
# imported here): `selected` is a list of (plan.Plan, plan.RenderedRun) pairs in run order,
# `states` maps each plan's name to its runstate.RunState, `display` is a progress.Display.
Selected = list
States = dict


class Launcher:
    """One way to launch rendered runs. Subclasses set the class attributes and `launch`."""

    name: ClassVar[str] = ""
    """Registry name, also the key of its script in the manifest and the mode in runs.json."""
    summary: ClassVar[str] = ""
    """One line for run.py --help."""

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """Add this launcher's own options to run.py's parser (none by default)."""

    def requested(self, args: argparse.Namespace) -> bool:
        """Whether run.py's options ask for this launcher without --launcher (e.g. --slurm)."""
        return False

    def check(self, args: argparse.Namespace, env: dict[str, str], chosen: bool) -> list[str]:
        """Problems with run.py's options, one line each; `chosen`: this launcher was picked."""
        return []

    def ready(self, args: argparse.Namespace) -> None:
        """Raise UsageError when this launcher cannot launch here (its tools missing), before
        run.py prints anything about the runs; nothing to check by default."""

    def launch(self, selected: Selected, states: States, args: argparse.Namespace,
               extra: list[str], env: dict[str, str], display: Any) -> int:
        """Start the selected runs; 0 when all went well, 1 if not, 128+N on signal N."""
        raise NotImplementedError

    def watch(self, selected: Selected, states: States, args: argparse.Namespace,
              display: Any) -> int:
        """Follow runs launched before until they end; 0 when all completed, 1 if not."""
        raise UsageError(f"--watch: the {self.name} launcher runs in the foreground; "
                         "there is nothing to follow afterwards")

    def cancel(self, selected: Selected, states: States, display: Any) -> int:
        """Stop the selected runs' pending or running launches; 0 when done."""
        raise UsageError(f"--cancel: the {self.name} launcher's runs stop with Ctrl-C")

    @classmethod
    def can(cls, verb: str) -> bool:
        """Whether the launcher implements `verb` ("watch" or "cancel")."""
        return getattr(cls, verb) is not getattr(Launcher, verb)

    @property
    def suffix(self) -> str:
        """File suffix of its script, <run><suffix> beside the manifest: declared by its template
        in templates/ (fp8suite.render.scripts)."""
        return scripts.kinds()[self.name].suffix


# --- helpers shared by the launchers -------------------------------------------------------


class Signals:
    """SIGINT/SIGTERM/SIGHUP sent to run.py, counted; launchers look at it between polls."""

    def __init__(self) -> None:
        self.count = 0
        self.first: Optional[int] = None

    def handle(self, signum: int, _frame) -> None:
        """Signal handler: count the signal and remember the first one."""
        self.count += 1
        self.first = self.first or signum

    @property
    def exit_code(self) -> int:
        """128 + the first signal's number (130 for Ctrl-C), the shell's convention."""
        return 128 + (self.first or signal.SIGINT)

    @property
    def name(self) -> str:
        """Name of the first signal caught (SIGINT when none)."""
        return signal.Signals(self.first or signal.SIGINT).name


@contextmanager
def caught_signals() -> Iterator[Signals]:
    """Count SIGINT, SIGTERM (and SIGHUP unless ignored) instead of dying; restore on exit."""
    caught = Signals()
    wanted = [signal.SIGINT, signal.SIGTERM]
    # A closed terminal stops the run like Ctrl-C (the run has its own session, so the hangup
    # would not reach it); under nohup, SIGHUP stays ignored.
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        wanted.append(signal.SIGHUP)
    old = {sig: signal.signal(sig, caught.handle) for sig in wanted}
    try:
        yield caught
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def number_type(convert: Callable[[str], Any], what: str, ok: Callable[[Any], bool],
                rule: str) -> Callable[[str], Any]:
    """An argparse type: `convert(text)`, refused as "'text' is not <what>" when it cannot be
    converted and with `rule` when `ok(value)` is false."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(rule)
        return value
    return parse


seconds = number_type(float, "a number of seconds", lambda v: not v < 0, "must not be negative")
"""An argparse type: a number of seconds, zero or more."""
minutes = number_type(float, "a number of minutes", lambda v: v > 0, "must be more than 0 minutes")
"""An argparse type: a number of minutes, more than zero."""
iteration = number_type(int, "an iteration number", lambda v: v >= 1, "iterations count from 1")
"""An argparse type: an iteration number (Megatron counts from 1)."""


TIME_LIMIT_FLAG = "--exit-duration-in-mins"


def time_limit_args(minutes: Optional[float]) -> list[str]:
    """Megatron args that stop training after `minutes` (none without a limit)."""
    if minutes is None:
        return []
    return [TIME_LIMIT_FLAG, f"{minutes:g}"]


def shell_line(cmd: list[str], env: dict[str, str]) -> str:
    """The command as one line to paste into a shell at the suite's root."""
    assignments = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    return " ".join(assignments + [shlex.quote(c) for c in cmd])
