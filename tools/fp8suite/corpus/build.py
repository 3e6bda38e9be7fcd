"""An English text corpus built from Debian packages, for offline convergence runs.

A GPU host without internet still needs real text: Debian's documentation packages hold tens of MB of
English prose under free licences, with a version and a sha256 that pin exactly what was used. This
module reads .deb files with dpkg-deb, turns the chosen files to plain text (fp8suite.corpus.markup:
BeautifulSoup for HTML, docutils for reStructuredText, pod2text for POD) and writes one JSON
object per document:

    .deb files -> (member path, bytes) -> plain text per document -> JSONL + provenance.json

The provenance record names the converters' versions too: the same packages give the same
corpus, byte for byte, with the same converters.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..common import fileio
from ..common.errors import DebError
from .markup import check, text_of, versions

# --------------------------------------------------------------------------------------------
# What the corpus is made of
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One Debian package and the files in it that become documents."""

    package: str
    """Binary package name, as `apt-get download` takes it (Debian 12 "bookworm" names)."""
    include: tuple[str, ...]
    """fnmatch patterns on member paths (without the leading './'); a trailing .gz is matched too."""
    kind: str
    """How to turn a file into text: "html", "rst", "pod" or "text"."""
    exclude: tuple[str, ...] = ()
    """fnmatch patterns removed after `include`: indexes, translations, machine-readable specs."""
    main: tuple[str, str] | None = None
    """HTML only: (attribute, value) of the element holding the page body; chrome around it is dropped."""
    licence: str | None = None
    """The licence by hand, where the copyright file does not state one for all files (`Files: *`)."""


LINUX_DOC = "usr/share/doc/linux-doc-6.1/Documentation/"
SOURCES: tuple[Source, ...] = (
    Source(
        "linux-doc-6.1",
        include=(LINUX_DOC + "*.rst", LINUX_DOC + "*.txt"),
        kind="rst",
        # translations/ is not English; devicetree/ and ABI/ are YAML and key-value specs, not prose.
        exclude=(LINUX_DOC + "translations/*", LINUX_DOC + "devicetree/*", LINUX_DOC + "ABI/*"),
    ),
    Source(
        "python3.11-doc",
        include=("usr/share/doc/python3.11/html/*.html",),
        kind="html",
        # contents.html is the whole table of contents: every title again, no prose.
        exclude=("*/_sources/*", "*/genindex*.html", "*/py-modindex.html", "*/search.html",
                 "*/contents.html"),
        main=("role", "main"),
        licence="PSF-2.0 (PSF License Agreement; code examples also 0BSD since Python 3.8.6, "
                "as html/license.html states)",
    ),
    Source(
        "python-django-doc",
        include=("usr/share/doc/python-django-doc/html/*.html",),
        kind="html",
        # _modules/ is Django's own source code rendered as HTML, not documentation.
        exclude=("*/_sources/*", "*/_modules/*", "*/genindex*.html", "*/py-modindex.html",
                 "*/search.html"),
        main=("id", "yui-main"),
    ),
    Source(
        "postgresql-doc-15",
        include=("usr/share/doc/postgresql-doc-15/html/*.html",),
        kind="html",
        exclude=("*/bookindex.html",),
    ),
    Source(
        "perl-doc",
        include=("usr/share/perl/*/pod/*.pod",),
        kind="pod",
        # perltoc repeats every heading of every page; perluniprops is a table of Unicode properties.
        exclude=("*/perltoc.pod", "*/perluniprops.pod"),
    ),
    Source(
        "debian-handbook",
        include=("usr/share/doc/debian-handbook/html/en-US/*.html",),
        kind="html",
        exclude=("*/Common_Content/*",),
    ),
    # git's manual pages, user manual and how-tos; the .txt files beside them are the same text
    # as AsciiDoc sources, so only the HTML is read.
    Source("git-doc", include=("usr/share/doc/git-doc/*.html",), kind="html"),
    Source("debian-reference-en", include=("usr/share/debian-reference/*.en.html",), kind="html"),
    # The Rust books (mdBook HTML). The API reference (std/, core/, alloc/) is generated from
    # code and is left out, as are print.html (every chapter again) and the old book editions.
    Source(
        "rust-doc",
        include=tuple(f"usr/share/doc/rust-doc/html/{book}/*.html" for book in (
            "book", "reference", "nomicon", "rust-by-example", "rustc", "embedded-book",
            "edition-guide", "rustdoc")),
        kind="html",
        exclude=("*/print.html", "*/toc.html", "*/404.html", "*/book/first-edition/*",
                 "*/book/second-edition/*", "*/book/2018-edition/*"),
        main=("id", "content"),
        # The copyright file has no "Files: *" stanza; this is its stanza covering src/doc/*.
        licence="MIT or Apache-2.0",
    ),
    Source(
        "sphinx-doc",
        include=("usr/share/doc/sphinx-doc/html/*.html",),
        kind="html",
        exclude=("*/_sources/*", "*/_modules/*", "*/genindex*.html", "*/py-modindex.html",
                 "*/search.html"),
        main=("role", "main"),
    ),
)


# --------------------------------------------------------------------------------------------
# Reading .deb files, with dpkg-deb
# --------------------------------------------------------------------------------------------


def _dpkg_deb() -> str:
    found = shutil.which("dpkg-deb")
    if found is None:
        raise DebError("dpkg-deb not found (Debian and Ubuntu have it; elsewhere install dpkg)")
    return found


def _complaint(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[0].removeprefix("dpkg-deb: error: ") if lines else "no message"


def parse_control(text: str) -> dict[str, str]:
    """The fields of a Debian control stanza (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    return fields


@dataclass
class Deb:
    """An opened .deb: its control fields and the regular files of its data archive."""

    path: Path
    sha256: str
    control: dict[str, str]
    files: dict[str, bytes]
    """Member path without the leading './' -> content, for regular files only."""

    @property
    def package(self) -> str:
        return self.control.get("Package", "")

    @property
    def version(self) -> str:
        return self.control.get("Version", "")


def open_deb(path: Path, want: Callable[[str], bool] = lambda p: True) -> Deb:
    """Read a .deb with dpkg-deb, keeping only the data files for which `want(path)` is true.

    `dpkg-deb --field` gives the control fields and `dpkg-deb --fsys-tarfile` the data archive
    as a plain tar, whatever its compression (gzip, xz, zstd). Raises DebError (one line, naming
    the file) for a file that is not a readable package.
    """
    dpkg_deb = _dpkg_deb()
    fields = subprocess.run([dpkg_deb, "--field", str(path)], capture_output=True)
    if fields.returncode != 0:
        raise DebError(f"{path}: not a readable Debian package ({_complaint(fields.stderr)})")
    control = parse_control(fields.stdout.decode("utf-8", "replace"))
    files = {}
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([dpkg_deb, "--fsys-tarfile", str(path)], stdout=subprocess.PIPE,
                                stderr=errors)
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    name = member.name.removeprefix("./")
                    if member.isfile() and want(name):
                        files[name] = tar.extractfile(member).read()
        except tarfile.TarError as err:
            proc.kill()
            proc.wait()
            errors.seek(0)
            raise DebError(f"{path}: corrupt data archive ({_complaint(errors.read()) or err})") from None
        finally:
            proc.stdout.close()
        if proc.wait() != 0:
            errors.seek(0)
            raise DebError(f"{path}: corrupt data archive ({_complaint(errors.read())})")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return Deb(path, digest.hexdigest(), control, files)


def find_deb(directory: Path, package: str) -> Path:
    """The one `<package>_*.deb` in a directory (as `apt-get download` names them)."""
    found = sorted(directory.glob(f"{package}_*.deb"))
    if not found:
        raise DebError(f"{directory}: no {package}_*.deb (fetch it with: apt-get download {package})")
    if len(found) > 1:
        raise DebError(f"{directory}: several {package}_*.deb ({', '.join(p.name for p in found)}); keep one")
    return found[0]


# --------------------------------------------------------------------------------------------
# Licences, from /usr/share/doc/PKG/copyright
# --------------------------------------------------------------------------------------------


def licence_from_copyright(text: str) -> dict[str, object]:
    """The licence a Debian copyright file states.

    Machine-readable (DEP-5) files give the `License:` of the `Files: *` stanza, which covers the
    documentation, plus every distinct licence named anywhere in the file.
    """
    if not text.startswith("Format:"):
        return {"machine_readable": False}
    main, names = None, []
    for stanza in re.split(r"\n\s*\n", text):
        fields = parse_control(stanza)
        short = fields.get("License", "").split("\n")[0].strip()
        if not short:
            continue
        if short not in names:
            names.append(short)
        if main is None and fields.get("Files", "").split() == ["*"]:
            main = short
    return {"machine_readable": True, "licence": main, "all_licences": names}


# --------------------------------------------------------------------------------------------
# Documents, JSONL and provenance
# --------------------------------------------------------------------------------------------


def _matches(path: str, patterns: Iterable[str]) -> bool:
    bare = path[:-3] if path.endswith(".gz") else path
    return any(fnmatch.fnmatchcase(bare, p) for p in patterns)


def wanted(source: Source) -> Callable[[str], bool]:
    """The predicate selecting a source's documents among a package's files."""
    return lambda p: _matches(p, source.include) and not _matches(p, source.exclude)


@dataclass
class PackageStats:
    """What one package contributed, for provenance.json."""

    files_selected: int = 0
    documents: int = 0
    dropped_small: int = 0
    dropped_duplicate: int = 0
    bytes_in: int = 0
    """Uncompressed bytes of the selected files, markup included."""
    text_bytes: int = 0
    """UTF-8 bytes of the text written to the JSONL."""


def documents_of(deb: Deb, source: Source, min_chars: int, seen: set[str],
                 stats: PackageStats) -> Iterator[dict[str, str]]:
    """`{"text", "source"}` records of one package, tiny and duplicate documents dropped."""
    select = wanted(source)
    for path in sorted(p for p in deb.files if select(p)):
        raw = deb.files[path]
        if path.endswith(".gz"):
            raw = gzip.decompress(raw)
        stats.files_selected += 1
        stats.bytes_in += len(raw)
        text = text_of(source.kind, raw, source.main)
        if len(text.strip()) < min_chars:
            stats.dropped_small += 1
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            stats.dropped_duplicate += 1
            continue
        seen.add(digest)
        stats.documents += 1
        stats.text_bytes += len(text.encode())
        yield {"text": text, "source": f"{deb.package}:{path}"}


def order_key(record: dict[str, str]) -> str:
    """Order documents by a hash of their source name.

    A fixed pseudo-random order rather than package order, so that any prefix of the JSONL (what
    `preprocess_data.py --max-tokens` keeps) and Megatron's contiguous --split ranges each hold a
    mix of all packages instead of one package's documents.
    """
    return hashlib.sha256(record["source"].encode()).hexdigest()


def write_jsonl(records: Iterable[dict[str, str]], path: Path) -> tuple[int, int]:
    """Write one JSON object per line (UTF-8, not ASCII-escaped); returns (lines, bytes)."""
    n = size = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            line = json.dumps({"text": record["text"], "source": record["source"]},
                              ensure_ascii=False) + "\n"
            f.write(line)
            n += 1
            size += len(line.encode())
    return n, size


def package_provenance(deb: Deb, source: Source, stats: PackageStats) -> dict[str, object]:
    """The provenance record of one package: identity, licence and what was taken from it."""
    copyright_path = f"usr/share/doc/{deb.package}/copyright"
    copyright_text = deb.files.get(copyright_path, b"").decode("utf-8", "replace")
    licence = licence_from_copyright(copyright_text) if copyright_text else {"machine_readable": None}
    if not licence.get("licence"):
        licence["licence"] = source.licence or "UNKNOWN: read the copyright file"
        licence["licence_from"] = "stated by hand in tools/fp8suite/corpus/build.py after reading the file"
    return {
        "package": deb.package,
        "version": deb.version,
        "deb": deb.path.name,
        "deb_sha256": deb.sha256,
        "copyright_file": "/" + copyright_path,
        "copyright_sha256": hashlib.sha256(copyright_text.encode()).hexdigest() if copyright_text else None,
        **licence,
        "include": list(source.include),
        "exclude": list(source.exclude),
        "kind": source.kind,
        **stats.__dict__,
    }


@dataclass
class CorpusResult:
    """What build_corpus wrote."""

    jsonl: Path
    provenance: Path
    documents: int
    jsonl_bytes: int
    text_bytes: int
    packages: list[dict[str, object]] = field(default_factory=list)


def build_corpus(debs: dict[str, Path], out_dir: Path, sources: Iterable[Source] = SOURCES,
                 min_chars: int = 500, log: Callable[[str], None] = lambda s: None) -> CorpusResult:
    """Read each source's .deb, write `corpus.jsonl` and `provenance.json` into out_dir.

    Raises MarkupError before reading anything when a converter the sources need is missing,
    and DebError for a package that cannot be read or is not the one expected.
    """
    sources = list(sources)
    check(source.kind for source in sources)   # before any work: every converter is here
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, str]] = []
    packages = []
    seen: set[str] = set()
    for source in sources:
        select = wanted(source)
        copyright_path = f"usr/share/doc/{source.package}/copyright"
        deb = open_deb(debs[source.package], lambda p: select(p) or p == copyright_path)
        if deb.package != source.package:
            raise DebError(f"{deb.path}: holds package {deb.package!r}, expected {source.package!r}")
        stats = PackageStats()
        records.extend(documents_of(deb, source, min_chars, seen, stats))
        packages.append(package_provenance(deb, source, stats))
        log(f"{source.package} {deb.version}: {stats.files_selected} files, {stats.documents} documents, "
            f"{stats.text_bytes / 1e6:.1f} MB text ({stats.dropped_small} small, "
            f"{stats.dropped_duplicate} duplicate dropped)")
    records.sort(key=order_key)
    jsonl = out_dir / "corpus.jsonl"
    with fileio.Staged() as staged:
        n, size = write_jsonl(records, staged.reserve(jsonl))
    text_bytes = sum(p["text_bytes"] for p in packages)
    provenance = {
        "description": "English text from Debian 12 documentation packages, one document per file, "
                       "markup stripped; built by tools/make_corpus.py",
        "jsonl": jsonl.name,
        "jsonl_sha256": hashlib.sha256(jsonl.read_bytes()).hexdigest(),
        "documents": n,
        "jsonl_bytes": size,
        "text_bytes": text_bytes,
        "min_chars": min_chars,
        "order": "sha256 of the 'source' field (a fixed shuffle; see corpus.order_key)",
        "converters": versions(),
        "packages": packages,
    }
    prov_path = out_dir / "provenance.json"
    fileio.write_atomic(prov_path, json.dumps(provenance, indent=2, ensure_ascii=False) + "\n")
    return CorpusResult(jsonl, prov_path, n, size, text_bytes, packages)
