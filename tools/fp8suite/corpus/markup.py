"""Documentation markup to plain text, through the tools made for each format.

    HTML               BeautifulSoup (html.parser) -> visible text, one line per block element
    reStructuredText   docutils' parser -> doctree -> text, one paragraph per block
    POD                perl's pod2text (Pod::Text) -> text

The aim is prose a language model can learn from, not a faithful rendering: navigation chrome,
comments, tables of contents and code-generation directives go; headings, paragraphs, list
items, table rows (cells two spaces apart) and literal blocks (indented by four spaces) stay.
`versions()` names the versions that made a text, since a new release of a parser may change it.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from functools import lru_cache

from ..common.errors import MarkupError

# bs4 and docutils are the `data` extra (pip install -e '.[data]'); imported when first used.


def tidy(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines: one blank line between paragraphs."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CELL = "\x00"  # marks a cell boundary until the text is laid out, then two spaces
_BLOCK = {
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt",
    "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "ol", "p", "pre", "section", "table", "tbody", "thead", "tr", "ul",
}
_CELLS = {"td", "th"}  # a table row stays one line, its cells two spaces apart
# Navigation chrome (Sphinx sidebars, DocBook nav headers, permalink pilcrows) is dropped, so
# that hundreds of pages do not all repeat the same menus.
_SKIP_TAGS = {"script", "style", "head", "nav", "noscript", "svg", "button", "form", "template"}
_SKIP_CLASSES = {
    "headerlink", "navheader", "navfooter", "docnav", "related", "sphinxsidebar", "footer",
    "breadcrumbs", "copybutton", "toc",
}
_SKIP_IDS = {"banner", "hd", "ft", "footer", "global-nav", "sidebar"}


def _chrome(tag) -> bool:
    return (tag.name in _SKIP_TAGS or bool(set(tag.get("class") or ()) & _SKIP_CLASSES)
            or tag.get("id") in _SKIP_IDS or tag.get("role") == "navigation")


def _html_walk(node, out: list[str], pre: bool, cell: bool) -> None:
    from bs4 import NavigableString, Tag

    for child in node.children:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:   # not a comment, doctype or CDATA section
                # Outside <pre>, HTML whitespace (newlines inside a paragraph too) is one space.
                out.append(str(child) if pre else re.sub(r"\s+", " ", str(child)))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name
        if name in _CELLS:
            out.append(_CELL)
            _html_walk(child, out, pre, True)
            out.append(_CELL)
        elif name in _BLOCK:
            sep = _CELL if cell else "\n"
            out.append(sep)
            start = len(out)
            _html_walk(child, out, pre or name == "pre", cell)
            if name == "li":   # "- " before the item's first text, even inside a <p>
                first = next((i for i in range(start, len(out)) if out[i].strip(_CELL + " \n")), None)
                if first is not None:
                    out[first] = "- " + out[first].lstrip()
            if child.contents:  # an empty element (<br>, <hr>) breaks the line once
                out.append(sep)
        else:
            _html_walk(child, out, pre or name == "pre", cell)


def html_to_text(text: str, main: tuple[str, str] | None = None) -> str:
    """Visible text of an HTML page; with `main` (attribute, value), only the element so marked.

    A page without that element, or with an empty one, gives the text of the whole page, less
    navigation chrome.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup.find_all(_chrome):
        if not tag.decomposed:
            tag.decompose()
    root = soup
    if main:
        found = soup.find(attrs={main[0]: main[1]})
        if found is not None and found.get_text().strip():
            root = found
    out: list[str] = []
    _html_walk(root, out, pre=False, cell=False)
    joined = re.sub(f"[ \t]*{_CELL}[{_CELL} \t]*", _CELL, "".join(out))
    lines = []
    for line in joined.split("\n"):
        if _CELL in line:
            line = line.strip(_CELL + " ").replace(_CELL, "  ")   # a table row
        lines.append(line.rstrip() if line.startswith("    ") else line.strip())  # <pre> keeps indent
    return tidy("\n".join(lines))


# --------------------------------------------------------------------------------------------
# reStructuredText
# --------------------------------------------------------------------------------------------

# Directives whose whole block is machinery or code, not prose (Sphinx's and the kernel's
# included): they give no text. Other directives docutils does not know (c:function::,
# seealso::, versionadded::...) keep their argument line and their body.
RST_DROP_DIRECTIVES = frozenset({
    "toctree", "kernel-doc", "kernel-abi", "kernel-feat", "kernel-include", "include",
    "literalinclude", "code-block", "code", "sourcecode", "highlight", "image", "figure", "raw",
    "only", "index", "tabularcolumns", "cssclass", "contents", "sectnum", "csv-table", "graphviz",
    "math", "youtube", "default-domain", "c:namespace", "c:namespace-push", "c:namespace-pop",
})
_RST_NAME = r"[A-Za-z0-9][\w.+:-]*"
_RST_DIRECTIVE = re.compile(rf"^[ \t]*\.\.[ \t]+({_RST_NAME})::", re.M)
_RST_ROLE = re.compile(rf"(?<![\w`]):({_RST_NAME}):`")


class _AnyOption(dict):
    """An option_spec that takes every option (unknown directives' options are not text)."""

    def __bool__(self):   # docutils reads options only where option_spec is truthy
        return True

    def __contains__(self, key):
        return True

    def __getitem__(self, key):
        return lambda value: value


@lru_cache(maxsize=None)
def _rst_machinery():
    """docutils' modules, with the roles and directive kinds this module adds (once)."""
    from docutils import nodes, utils
    from docutils.parsers.rst import Directive, directives, roles

    class Drop(Directive):
        optional_arguments, final_argument_whitespace, has_content = 1, True, True
        option_spec = _AnyOption()

        def run(self):
            return []

    class Generic(Directive):
        """An unknown directive: its argument line (a title, a C signature) and its body."""

        optional_arguments, final_argument_whitespace, has_content = 1, True, True
        option_spec = _AnyOption()

        def run(self):
            out = [nodes.paragraph(text=" ".join(self.arguments[0].split()))] if self.arguments else []
            if self.content:
                box = nodes.container()
                self.state.nested_parse(self.content, self.content_offset, box)
                out.append(box)
            return out

    def generic_role(name, rawtext, text, lineno, inliner, options=None, content=None):
        # :ref:`the rules <target>` reads "the rules"; :c:func:`~mod.name` reads "mod.name".
        text = utils.unescape(text)
        titled = re.match(r"(?s)(.*?\S)\s*<[^<>]*>$", text)
        return [nodes.literal(rawtext, titled.group(1) if titled else text.lstrip("~!"))], []

    for name in RST_DROP_DIRECTIVES:
        directives.register_directive(name, Drop)
    return nodes, roles, directives, Generic, generic_role


def _rst_register(text: str) -> None:
    """Make every role and directive name used in `text` known to docutils."""
    nodes, roles, directives, generic, generic_role = _rst_machinery()
    for name in set(_RST_ROLE.findall(text)):
        if name not in roles._roles and name not in roles._role_registry:
            roles.register_local_role(name, generic_role)
    for name in set(_RST_DIRECTIVE.findall(text)):
        if name not in directives._directives and name not in directives._directive_registry:
            directives.register_directive(name, generic)


def _rst_blocks(node, out: list[str]) -> None:
    """Append the text of each block under `node` to out, one entry per block."""
    from docutils import nodes

    for child in node.children:
        if isinstance(child, (nodes.comment, nodes.target, nodes.substitution_definition,
                              nodes.system_message, nodes.raw, nodes.image, nodes.pending)):
            continue
        if isinstance(child, (nodes.literal_block, nodes.doctest_block)):
            # Code reads as in the rendered docs: indented.
            out.append("\n".join("    " + line if line.strip() else "" for line in child.astext().split("\n")))
        elif isinstance(child, (nodes.title, nodes.subtitle, nodes.paragraph, nodes.rubric,
                                nodes.attribution, nodes.caption)):
            out.append(_rst_inline(child))
        elif isinstance(child, nodes.line_block):
            out.append("\n".join(_rst_inline(line) for line in child.findall(nodes.line)))
        elif isinstance(child, (nodes.bullet_list, nodes.enumerated_list)):
            items: list[str] = []   # one item per line; items of several paragraphs stay apart
            for n, item in enumerate(child.children, start=int(child.get("start", 1))):
                marker = "- " if isinstance(child, nodes.bullet_list) else f"{n}. "
                _rst_item(item, marker, items)
            out.append("\n".join(items))
        elif isinstance(child, nodes.definition_list_item):
            out.append(" ".join(_rst_inline(part) for part in child.children
                                if not isinstance(part, nodes.definition)))   # term : classifier
            for part in child.children:
                if isinstance(part, nodes.definition):
                    _rst_blocks(part, out)
        elif isinstance(child, (nodes.field, nodes.option_list_item)):
            head, *body = child.children       # ":Author: text" and "-v  text" keep one line
            for part in body:
                _rst_item(part, _rst_inline(head) + (": " if isinstance(child, nodes.field) else "  "), out)
        elif isinstance(child, nodes.table):
            out.append("\n".join("  ".join(" ".join(_rst_inline(entry).split()) for entry in row.children)
                                 for row in child.findall(nodes.row)))
        elif isinstance(child, nodes.Element):
            _rst_blocks(child, out)   # sections, admonitions, block quotes, directive bodies...
        elif child.astext().strip():
            out.append(child.astext())


def _rst_inline(node) -> str:
    """The text of an inline run; a reference docutils could not resolve (`name`_ or |name|,
    whose target or substitution lives in a file not read here) reads as its name."""
    from docutils import nodes

    if isinstance(node, (nodes.system_message, nodes.comment, nodes.raw, nodes.substitution_definition)):
        return ""
    if isinstance(node, nodes.problematic):
        raw = node.astext()
        if re.fullmatch(r"\|[^|]+\|(?:__?)?", raw):
            return raw.strip("_").strip("|")
        return re.sub(r"^`?(.*?)(?:\s*<[^<>]*>)?`?__?$", r"\1", raw, flags=re.S)
    if isinstance(node, nodes.Text):
        return node.astext()
    return "".join(_rst_inline(child) for child in node.children)


def _rst_item(item, marker: str, out: list[str]) -> None:
    parts: list[str] = []
    _rst_blocks(item, parts)
    if parts:
        parts[0] = marker + parts[0]
    out.append("\n".join(parts))


def rst_to_text(text: str) -> str:
    """Plain text of a reStructuredText file (kernel documentation style), parsed by docutils.

    Section titles, paragraphs, list items (marked "- " or "N. "), definition and field lists,
    admonition bodies and table rows stay; comments, targets, substitution definitions, the
    directives in RST_DROP_DIRECTIVES and docutils' own error reports go; roles read as their
    text. Plain-text files parse as paragraphs and literal blocks. Never raises on bad markup.
    """
    from docutils.core import publish_doctree

    _rst_register(text)
    settings = {
        "report_level": 5, "halt_level": 5, "warning_stream": io.StringIO(),
        "file_insertion_enabled": False, "raw_enabled": False, "doctitle_xform": False,
        "sectsubtitle_xform": False, "syntax_highlight": "none", "tab_width": 8,
        "input_encoding": "unicode", "_disable_config": True, "line_length_limit": 10**7,
    }
    doctree = publish_doctree(text, settings_overrides=settings)
    out: list[str] = []
    _rst_blocks(doctree, out)
    return tidy("\n\n".join(out))


# --------------------------------------------------------------------------------------------
# POD
# --------------------------------------------------------------------------------------------

# pod2text: no quotes around C<>, no indent of ordinary paragraphs, no rewrapping (a paragraph
# is one line, as the other converters leave them), POD errors ignored rather than fatal.
POD2TEXT = ("pod2text", "--utf8", "--quotes=none", "--indent=0", "--width=1000000", "--errors=none")


def pod_to_text(text: str) -> str:
    """Plain text of a Perl POD file, by pod2text (Pod::Text, part of perl).

    Text before the first POD command and after =cut is code, not text, and is left out.
    Raises MarkupError when pod2text is missing or fails.
    """
    if shutil.which(POD2TEXT[0]) is None:
        raise MarkupError("pod2text not found (it comes with perl: apt-get install perl)")
    proc = subprocess.run(POD2TEXT, input=text.encode("utf-8"), capture_output=True)
    if proc.returncode != 0:
        raise MarkupError(f"pod2text failed (exit status {proc.returncode}): "
                          f"{proc.stderr.decode('utf-8', 'replace').strip()[:200]}")
    return tidy(proc.stdout.decode("utf-8", "replace"))


# --------------------------------------------------------------------------------------------


KINDS = ("html", "pod", "rst", "text")


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
    raise ValueError(f"unknown source kind {kind!r}; valid: {', '.join(KINDS)}")


_NEEDS = {
    "html": ("bs4", "beautifulsoup4 (pip install -e '.[data]')"),
    "rst": ("docutils", "docutils (pip install -e '.[data]')"),
    "pod": ("pod2text", "pod2text (it comes with perl: apt-get install perl)"),
}


def check(kinds) -> None:
    """Raise MarkupError naming every converter that the given kinds need and this host lacks."""
    import importlib.util

    lacking = []
    for kind in sorted(set(kinds)):
        if kind not in _NEEDS:
            continue
        name, what = _NEEDS[kind]
        found = shutil.which(name) if kind == "pod" else importlib.util.find_spec(name)
        if not found:
            lacking.append(f"{kind} needs {what}")
    if lacking:
        raise MarkupError("missing converters: " + "; ".join(lacking))


def versions() -> dict[str, str]:
    """Versions of the converters in use (for provenance records); 'missing' where absent."""
    found = {}
    for module, name in (("bs4", "beautifulsoup4"), ("docutils", "docutils")):
        try:
            found[name] = __import__(module).__version__
        except ImportError:
            found[name] = "missing"
    try:
        out = subprocess.run(["perl", "-MPod::Text", "-e", "print $Pod::Text::VERSION"],
                             capture_output=True, text=True, timeout=30)
        found["Pod::Text (pod2text)"] = out.stdout.strip() if out.returncode == 0 else "missing"
    except (OSError, subprocess.TimeoutExpired):
        found["Pod::Text (pod2text)"] = "missing"
    return found
