"""An English text corpus built from Debian packages, for offline convergence runs.

A GPU host without internet still needs real text: Debian's documentation packages hold tens of MB of
English prose under free licences, with a version and a sha256 that pin exactly what was used. This
module reads .deb files with the standard library only (a .deb is an `ar` archive holding a
compressed tar), turns the chosen files to plain text and writes one JSON object per document:

    .deb files -> (member path, bytes) -> plain text per document -> JSONL + provenance.json

Markup is stripped by small line- and tag-level converters (HTML, reStructuredText, POD). They are
not full parsers: the aim is prose a language model can learn from, not a faithful rendering.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import html
import io
import json
import lzma
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import DebError

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
# Reading .deb files
# --------------------------------------------------------------------------------------------


def read_ar(data: bytes, name: str = "<deb>") -> dict[str, bytes]:
    """Members of an `ar` archive (the outer layer of a .deb), by name."""
    if not data.startswith(b"!<arch>\n"):
        raise DebError(f"{name}: not a Debian package (no ar magic)")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        member = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DebError(f"{name}: corrupt ar header at byte {pos}") from None
        members[member] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)  # ar pads each member to an even offset
    return members


def _open_tar(members: dict[str, bytes], stem: str, name: str) -> tarfile.TarFile:
    for member, blob in members.items():
        if member.startswith(stem + "."):
            if member.endswith(".zst"):
                # Python's tarfile has no zstd before 3.14; Debian 12 ships xz-compressed members.
                raise DebError(f"{name}: {member} is zstd-compressed; unpack it with dpkg-deb instead")
            return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")
    raise DebError(f"{name}: no {stem}.tar.* member")


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
    """Read a .deb, keeping only the data files for which `want(path)` is true."""
    data = path.read_bytes()
    members = read_ar(data, str(path))
    try:
        with _open_tar(members, "control", str(path)) as tar:
            control_member = next((m for m in tar if m.name.removeprefix("./") == "control"), None)
            if control_member is None:
                raise DebError(f"{path}: control.tar has no control file")
            control = parse_control(tar.extractfile(control_member).read().decode("utf-8", "replace"))
        files = {}
        with _open_tar(members, "data", str(path)) as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and want(name):
                    files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as err:
        raise DebError(f"{path}: corrupt archive ({err})") from None
    return Deb(path, hashlib.sha256(data).hexdigest(), control, files)


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
# Markup to plain text
# --------------------------------------------------------------------------------------------


def tidy(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines: one blank line between paragraphs."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


_CELL = "\x00"  # marks a cell boundary until the text is laid out, then two spaces


class _HTMLText(HTMLParser):
    """Collect the visible text of an HTML page, one line per block element.

    Navigation chrome (Sphinx sidebars, DocBook nav headers, permalink pilcrows) is skipped so that
    hundreds of pages do not all repeat the same menus.
    """

    BLOCK = {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
        "main", "ol", "p", "pre", "section", "table", "tbody", "thead", "tr", "ul",
    }
    CELLS = {"td", "th"}  # a table row stays one line, its cells two spaces apart
    SKIP_TAGS = {"script", "style", "head", "nav", "noscript", "svg", "button", "form", "template"}
    SKIP_CLASSES = {
        "headerlink", "navheader", "navfooter", "docnav", "related", "sphinxsidebar", "footer",
        "breadcrumbs", "copybutton", "toc",
    }
    SKIP_IDS = {"banner", "hd", "ft", "footer", "global-nav", "sidebar"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self, main: tuple[str, str] | None):
        super().__init__(convert_charrefs=True)
        self.main = main
        self.parts: list[str] = []        # text of the whole page, less chrome
        self.main_parts: list[str] = []   # text inside the `main` element only
        self.skip: list[str] = []         # open tags of a skipped subtree (nesting of the same tag)
        self.main_stack: list[str] = []
        self.pre = 0
        self.cell = 0                     # inside <td>/<th>: paragraphs in a cell stay on its line
        self.bullet = False               # a <li> opened: its first text gets the "- " marker

    def _skipped(self, tag: str, attrs: dict[str, str | None]) -> bool:
        classes = set((attrs.get("class") or "").split())
        return (
            tag in self.SKIP_TAGS
            or bool(classes & self.SKIP_CLASSES)
            or attrs.get("id") in self.SKIP_IDS
            or attrs.get("role") == "navigation"
        )

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        if self.main_stack:
            self.main_parts.append(text)

    def handle_starttag(self, tag, attrs_list):
        attrs = dict(attrs_list)
        if self.skip:
            if tag == self.skip[0] and tag not in self.VOID:
                self.skip.append(tag)
            return
        if self._skipped(tag, attrs):
            if tag not in self.VOID:
                self.skip.append(tag)
            return
        if self.main_stack:
            if tag == self.main_stack[0] and tag not in self.VOID:
                self.main_stack.append(tag)
        elif self.main and attrs.get(self.main[0]) == self.main[1] and tag not in self.VOID:
            self.main_stack.append(tag)
        if tag == "pre":
            self.pre += 1
        if tag in self.CELLS:
            self.cell += 1
            self._emit(_CELL)
        elif tag in self.BLOCK:
            self._emit(_CELL if self.cell else "\n")
        if tag == "li":
            self.bullet = True  # not emitted yet: a <p> inside the <li> would split "- " from its text

    def handle_startendtag(self, tag, attrs_list):
        if not self.skip and tag in self.BLOCK:
            self._emit(_CELL if self.cell else "\n")

    def handle_endtag(self, tag):
        if self.skip:
            if tag == self.skip[0]:
                self.skip.pop()
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self.CELLS:
            self.cell = max(0, self.cell - 1)
        elif tag in self.BLOCK:
            self._emit(_CELL if self.cell else "\n")
        if self.main_stack and tag == self.main_stack[0]:
            self.main_stack.pop()

    def handle_data(self, data):
        if self.skip:
            return
        if not self.pre:
            # Outside <pre>, HTML whitespace (including newlines inside a paragraph) is one space.
            data = re.sub(r"\s+", " ", data)
        if self.bullet and data.strip():
            data, self.bullet = "- " + data.lstrip(), False
        self._emit(data)


def html_to_text(text: str, main: tuple[str, str] | None = None) -> str:
    """Visible text of an HTML page; with `main`, only the element whose attribute matches."""
    parser = _HTMLText(main)
    parser.feed(text)
    parser.close()
    parts = parser.main_parts if parser.main_parts else parser.parts
    text = re.sub(f"[ \t]*{_CELL}[{_CELL} \t]*", _CELL, "".join(parts))
    lines = []
    for line in text.split("\n"):
        if _CELL in line:
            line = line.strip(_CELL + " ").replace(_CELL, "  ")   # a table row
        lines.append(line.rstrip() if line.startswith("    ") else line.strip())  # <pre> keeps indent
    return tidy("\n".join(lines))


# reStructuredText: directives whose whole block is machinery or code, not prose.
_RST_DROP_DIRECTIVES = {
    "toctree", "kernel-doc", "kernel-abi", "kernel-feat", "kernel-include", "include",
    "literalinclude", "code-block", "code", "sourcecode", "highlight", "image", "figure", "raw",
    "only", "index", "tabularcolumns", "cssclass", "contents", "sectnum", "csv-table", "graphviz",
    "math", "youtube", "default-domain", "c:namespace", "c:namespace-push", "c:namespace-pop",
}
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$|^[= ]*={3,}[= ]*$|^\s*\+[-=+]+\+\s*$")
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:.-]+)::\s*(.*)$")
_RST_INLINE = (
    (re.compile(r":[\w:.+-]+:`([^`<]*?)\s*<[^`>]*>`"), r"\1"),   # :ref:`text <target>`
    (re.compile(r":[\w:.+-]+:`~?([^`]*)`"), r"\1"),              # :c:func:`name`
    (re.compile(r"``([^`]+)``"), r"\1"),                          # ``literal``
    (re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?"), r"\1"),           # `text <url>`_
    (re.compile(r"`([^`]+)`__?"), r"\1"),                          # `reference`_
    (re.compile(r"`([^`]+)`"), r"\1"),                             # `interpreted`
    (re.compile(r"\*\*([^*\s](?:[^*]*[^*\s])?)\*\*"), r"\1"),      # **strong**
    (re.compile(r"(?<![\w*])\*([^*\s](?:[^*]*[^*\s])?)\*(?![\w*])"), r"\1"),  # *emphasis*
    (re.compile(r"\|([\w -]+)\|(?!\w)"), r"\1"),                   # |substitution|
    # reference_ (a word ending in a letter or digit, so C names like __attribute__ survive)
    (re.compile(r"\b([A-Za-z0-9]\w*?[A-Za-z0-9])__?(?=[\s.,;:)]|$)", re.M), r"\1"),
)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def rst_to_text(text: str) -> str:
    """Plain text of a reStructuredText file (kernel documentation style).

    Line-based: section underlines, comments, targets and the blocks of code/toctree directives go;
    admonition bodies stay (dedented); roles and inline markup become their text. Literal blocks
    (after `::`) stay, as they read in the rendered docs.
    """
    text = text.expandtabs(8)
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        directive = _RST_DIRECTIVE.match(line)
        if re.match(r"\s*\.\.(\s|$)", line) and not directive:   # not "...ellipsis"
            # Comments (SPDX tags included), link targets and substitution definitions, with their
            # indented continuation lines.
            i = _skip_block(lines, i, _indent(line))
            continue
        if directive:
            indent, name, args = len(directive.group(1)), directive.group(2), directive.group(3)
            if name in _RST_DROP_DIRECTIVES or name.startswith("|"):
                i = _skip_block(lines, i, indent)
                continue
            if args:
                out.append(" " * indent + args)   # admonition titles, captions, C signatures
            i += 1
            while i < len(lines) and re.match(r"^\s+:[\w -]+:", lines[i]):
                i += 1  # directive options
            continue
        if _RST_ADORNMENT.match(line):
            i += 1
            continue
        if len(stripped) > 1 and stripped.startswith("|") and stripped.endswith("|"):
            # A grid-table row: its cells side by side, two spaces apart.
            line = " " * _indent(line) + re.sub(r"\s*\|\s*", "  ", stripped).strip()
        out.append(line)
        i += 1
    body = "\n".join(out)
    body = re.sub(r"^[ \t]*::[ \t]*\n", "", body, flags=re.M)  # a bare "::" only opens a literal block
    body = re.sub(r"[ \t]*::[ \t]*$", ":", body, flags=re.M)    # "Example::" reads as "Example:"
    for pattern, repl in _RST_INLINE:
        body = pattern.sub(repl, body)
    return tidy(_dedent_shallow(body))


def _skip_block(lines: list[str], i: int, indent: int) -> int:
    """Index after the line `i` and the lines indented deeper than it (blank lines included)."""
    i += 1
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        i += 1
    return i


def _dedent_shallow(text: str) -> str:
    """Shift lines indented by 1-3 spaces (admonition bodies, list continuations) back to column 0.

    Literal blocks, indented by 4 or more, keep their indent, as code does in the rendered docs.
    """
    return re.sub(r"^ {1,3}(?=\S)", "", text, flags=re.M)


_POD_CODE = re.compile(r"([A-Z])(<+)")


def pod_inline(text: str) -> str:
    """Expand POD formatting codes: B<bold>, C<<< code >>>, L<text|target>, E<gt>, X<index>..."""
    out, i = [], 0
    while i < len(text):
        m = _POD_CODE.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i:m.start()])
        code, opens = m.group(1), len(m.group(2))
        start = m.end()
        if opens > 1:
            # C<< a->b >>: delimited by a run of the same length, with whitespace inside.
            close = text.find(" " + ">" * opens, start)
            if close < 0:
                out.append(text[m.start():])
                break
            inner, i = text[start:close].strip(), close + 1 + opens
        else:
            depth, j = 1, start
            while j < len(text) and depth:
                if text[j] == "<" and j > 0 and text[j - 1].isupper():
                    depth += 1
                elif text[j] == ">":
                    depth -= 1
                j += 1
            inner, i = text[start:j - 1], j
        out.append(_pod_code(code, pod_inline(inner)))
    return "".join(out)


_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def _pod_code(code: str, inner: str) -> str:
    if code in "XZ":
        return ""
    if code == "E":
        if inner in _POD_ENTITIES:
            return _POD_ENTITIES[inner]
        if inner.isdigit() or inner.lower().startswith("0x"):
            return chr(int(inner, 0) if not inner.isdigit() else int(inner))
        return html.unescape(f"&{inner};")
    if code == "L":
        # L<text|target> shows text; L<name/"section"> reads as: "section" in name (perlpodspec).
        if "|" in inner:
            return inner.split("|", 1)[0]
        if "/" in inner and "://" not in inner:
            name, _, section = inner.partition("/")
            section = section.strip('"')
            return f'"{section}" in {name}' if name else f'"{section}"'
        return inner
    return inner


def pod_to_text(text: str) -> str:
    """Plain text of a Perl POD file: headings and items kept as lines, verbatim blocks as-is."""
    out: list[str] = []
    # Text before the first command is not POD (perlpodspec): often "If you read this file as is...".
    in_pod, skip_until = False, None
    for para in re.split(r"\n\s*\n", text.expandtabs(8)):
        para = para.strip("\n")
        if not para.strip():
            continue
        command_match = re.match(r"=(\w+)\s*(.*)", para, re.S)
        if command_match:
            command, rest = command_match.group(1), " ".join(command_match.group(2).split())
            if skip_until:
                if command == "end" and rest.split()[:1] == [skip_until]:
                    skip_until = None
                continue
            if command == "cut":
                in_pod = False
            elif command == "begin":
                skip_until = (rest.split() or [""])[0]   # =begin html ... =end html: not text
            elif command.startswith("head"):
                in_pod = True
                out.append(pod_inline(rest))
            elif command == "item":
                in_pod = True
                if rest not in ("*", "") and not rest.rstrip(".").isdigit():
                    out.append(pod_inline(rest))
            else:
                in_pod = True   # =pod, =over, =back, =encoding, =for: no text of their own
            continue
        if not in_pod or skip_until:
            continue
        if para[:1] in (" ", "\t"):
            out.append(para.rstrip())                       # verbatim: code, kept literally
        else:
            out.append(" ".join(pod_inline(para).split()))  # ordinary paragraph, reflowed
    return tidy("\n\n".join(out))


def text_of(kind: str, raw: bytes, main: tuple[str, str] | None = None) -> str:
    """Plain text of one file; undecodable bytes become U+FFFD rather than stopping the build."""
    text = raw.decode("utf-8", "replace")
    if kind == "html":
        return html_to_text(text, main)
    if kind == "rst":
        return rst_to_text(text)
    if kind == "pod":
        return pod_to_text(text)
    if kind == "text":
        return tidy(text)
    raise ValueError(f"unknown source kind {kind!r}; valid: html, pod, rst, text")


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
        licence["licence_from"] = "stated by hand in tools/fp8suite/corpus.py after reading the file"
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
    """Read each source's .deb, write `corpus.jsonl` and `provenance.json` into out_dir."""
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
    tmp = jsonl.with_suffix(".jsonl.tmp")
    n, size = write_jsonl(records, tmp)
    tmp.replace(jsonl)
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
        "packages": packages,
    }
    prov_path = out_dir / "provenance.json"
    prov_path.write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n")
    return CorpusResult(jsonl, prov_path, n, size, text_bytes, packages)
