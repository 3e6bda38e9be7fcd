"""The suite's version, and the `--version` option every CLI in tools/ shares."""

from __future__ import annotations

import argparse

from .. import __version__


def add_version_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--version` (prints "<prog> <fp8suite version>" and exits 0); returns the parser."""
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s (fp8suite) {__version__}")
    return parser


def version_asked(prog: str, argv: list) -> bool:
    """For a CLI without argparse: print the version and return True when argv is
    exactly ["--version"]."""
    if list(argv) == ["--version"]:
        print(f"{prog} (fp8suite) {__version__}")
        return True
    return False
