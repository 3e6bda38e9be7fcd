#!/usr/bin/env python3
"""Build the English text corpus (JSONL + provenance.json) from Debian documentation packages.

The packages are listed in tools/fp8suite/corpus/build.py (SOURCES). Without --debs they are fetched
with `apt-get download` into OUT/debs/; with --debs the .deb files already there are used and
nothing is downloaded, so the corpus can be rebuilt offline, byte for byte (with the converters
that provenance.json names). Needs dpkg-deb, pod2text and `pip install -e '.[data]'`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.corpus import build as corpus
from fp8suite.corpus import markup
from fp8suite.common.version import add_version_option  # noqa: E402

EPILOG = """examples:
  # fetch the packages with apt and build experiments/data/corpus/{corpus.jsonl,provenance.json}
  python tools/make_corpus.py

  # offline: reuse .deb files fetched earlier (one PKG_*.deb per package)
  python tools/make_corpus.py --debs experiments/data/corpus/debs --out /tmp/corpus

  # list the packages and the files taken from each
  python tools/make_corpus.py --list

exit status: 0 built (or listed), 1 a package could not be fetched or read, or the corpus could
not be written, 2 bad usage
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("experiments/data/corpus"),
                        help="output directory for corpus.jsonl and provenance.json "
                             "(default: %(default)s, git-ignored)")
    parser.add_argument("--debs", type=Path,
                        help="directory of already-downloaded .deb files; nothing is fetched")
    parser.add_argument("--min-chars", type=int, default=500,
                        help="drop documents shorter than this after markup is stripped "
                             "(index pages, stubs; default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="print the sources and exit")
    add_version_option(parser)
    return parser.parse_args(argv)


def fetch(packages: list[str], directory: Path) -> None:
    """`apt-get download` the packages into directory (apt names them PKG_VERSION_ARCH.deb)."""
    if shutil.which("apt-get") is None:
        raise corpus.DebError("apt-get not found; fetch the .deb files elsewhere and pass --debs DIR")
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.deb"):
        if old.name.split("_")[0] in packages:
            old.unlink()  # a newer version would otherwise sit next to the old one
    # apt drops privileges to _apt for downloads; a root-owned 0755 directory only earns a warning.
    result = subprocess.run(["apt-get", "download", *packages], cwd=directory,
                            capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise corpus.DebError(f"apt-get download failed: {last}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.list:
        for s in corpus.SOURCES:
            print(f"{s.package:20} {s.kind:5} {', '.join(s.include)}"
                  + (f"  (minus {', '.join(s.exclude)})" if s.exclude else ""))
        return 0
    packages = [s.package for s in corpus.SOURCES]
    start = time.monotonic()
    try:
        markup.check(s.kind for s in corpus.SOURCES)   # before a download of 120 MB
        deb_dir = args.debs
        if deb_dir is None:
            deb_dir = args.out / "debs"
            log(f"apt-get download {' '.join(packages)} -> {deb_dir}")
            fetch(packages, deb_dir)
        elif not deb_dir.is_dir():
            raise corpus.DebError(f"--debs {deb_dir}: not a directory")
        debs = {p: corpus.find_deb(deb_dir, p) for p in packages}
        result = corpus.build_corpus(debs, args.out, corpus.SOURCES, args.min_chars, log)
    except (corpus.DebError, markup.MarkupError, OSError) as err:
        print(f"make_corpus: error: {err}", file=sys.stderr)
        return 1
    print(f"{result.documents} documents, {result.text_bytes / 1e6:.1f} MB of text "
          f"({result.jsonl_bytes / 1e6:.1f} MB JSONL) from {len(result.packages)} packages "
          f"in {time.monotonic() - start:.0f} s")
    print(f"wrote {result.jsonl}")
    print(f"wrote {result.provenance}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
