"""Read a matrix file: bounded, strict YAML, every failure a one-line `Problem`.

A matrix is a small hand-written file, so anything unusual is refused before it can crash
or exhaust the renderer:

* not a regular file (a folder, a FIFO, a device, a symlink loop) or over `MAX_BYTES`;
* not UTF-8 text (UTF-16/32 byte-order marks, undecodable bytes, NUL);
* invalid YAML, or a YAML tag beyond plain data (PyYAML's safe loader): every error of its
  reader (raw control characters such as ESC, DEL, C1, VT, FF, BEL, U+FFFE/U+FFFF), scanner,
  parser, composer and constructor (a date such as 2024-02-30, an integer of 5,000 digits)
  becomes "file: invalid YAML: line L, column C: ...";
* a string no encoder can write: a lone surrogate from an escape such as "\\ud800" (named by
  its key, line and column);
* a mapping that sets the same key twice (YAML keeps the last one silently);
* nesting deeper than `MAX_DEPTH`, or aliases that expand to more than `MAX_NODES` nodes
  (an 8-line "billion laughs" expands to 10^9).

    read_yaml(Path("experiments/h200_8b.yaml"))  ->  {"name": "h200_8b", ...}
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..common.errors import ConfigError, Problem

MAX_BYTES = 256 * 1024
"""Largest matrix file read (bytes); the committed ones are a few KB."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_NODES = 100_000
"""Most YAML nodes after expanding aliases."""

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}


_MAX_INT_BITS = 1024
"""Largest integer read (bits): far above any setting (2^63 - 1 at most), far below the
~14,000 bits beyond which Python refuses to write an integer as text."""


class _MarkedConstructor:
    """Errors Python raises while PyYAML's constructors turn a scalar into a value (a timestamp
    out of range, `!!bool maybe`, `!!int ''`) and integers too large to write as text become
    ConstructorErrors at the node's mark."""

    def construct_object(self, node, deep=False):  # noqa: D102 (PyYAML's hook)
        try:
            value = super().construct_object(node, deep)
            if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
                # Python refuses to write such an integer as text (sys.get_int_max_str_digits),
                # so no message, script or manifest could show it.
                raise ValueError(f"an integer of {value.bit_length()} bits, more than any setting takes")
            return value
        except (ValueError, ArithmeticError, LookupError, TypeError, AttributeError) as err:
            # PyYAML's constructors assume well-formed scalars: `!!bool maybe` raises KeyError,
            # `!!timestamp nope` AttributeError, `!!int ''` IndexError.
            shown = node.value if isinstance(node.value, str) else node.tag
            if isinstance(shown, str) and len(shown) > 40:
                shown = shown[:40] + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown!r} ({node.tag.rpartition(':')[2]}): {err}",
                node.start_mark) from None


class _FastLoader(_MarkedConstructor, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's parser (when PyYAML has it) with the marked constructor."""


class _DepthLimitedLoader(_MarkedConstructor, yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH while composing (the
    composer recurses once per level, so thousands of levels would exhaust the stack)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: D102 (PyYAML's hook)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_text(path: Path, file: str) -> str:
    """The file's text, or ConfigError: not a regular file, too large, not UTF-8."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise ConfigError([Problem(file, "", f"cannot read: {err.strerror or err}")]) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError([Problem(file, "", "not a regular file")])
    if info.st_size > MAX_BYTES:
        raise ConfigError([Problem(file, "", f"{info.st_size} bytes: a matrix is at most "
                                   f"{MAX_BYTES // 1024} KiB")])
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError([Problem(file, "", f"cannot read: {err.strerror or err}")]) from None
    if len(data) > MAX_BYTES:
        raise ConfigError([Problem(file, "", f"a matrix is at most {MAX_BYTES // 1024} KiB")])
    for bom, name in _BOMS.items():
        if data.startswith(bom):
            raise ConfigError([Problem(file, "", f"encoded as {name}: save the matrix as UTF-8")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError([Problem(file, "", f"not UTF-8 text: byte 0x{data[err.start]:02x} on "
                                   f"line {line}; save the matrix as UTF-8")]) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ConfigError([Problem(file, "", f"NUL byte on line {line}: not a text file")])
    return text.removeprefix("\ufeff")


def read_yaml(path: Path, display: Optional[str] = None) -> Any:
    """The parsed file (plain dicts, lists and scalars), or ConfigError naming every problem."""
    file = display or str(path)
    return parse_yaml(read_text(path, file), file)


def parse_yaml(text: str, file: str) -> Any:
    """YAML text parsed with PyYAML's safe loader, or ConfigError: every reader, scanner,
    parser, composer or constructor error as "file: invalid YAML: line L, column C: what";
    duplicate keys, deep nesting, alias bombs and unencodable strings as their own problems.
    The one reader of YAML text in the suite (matrix files)."""
    try:
        if getattr(yaml, "CSafeLoader", None) is not None:
            # libyaml (C) parses ~50x faster than PyYAML's Python parser; its composer recurses
            # per level, so the depth is checked on the event stream first. Invalid YAML is read
            # again by the Python parser, whose messages say what it expected and what it found.
            try:
                _check_depth(yaml.parse(text, Loader=_FastLoader))
                return _load(_FastLoader(text), file)
            except yaml.YAMLError:
                pass
        # The reader checks every character when it is made: its errors come from here too.
        return _load(_DepthLimitedLoader(text), file)
    except yaml.YAMLError as err:
        raise ConfigError([_yaml_problem(file, err, text)]) from None
    except RecursionError:
        raise ConfigError([Problem(file, "", f"nested deeper than {MAX_DEPTH} levels")]) from None


def _load(loader: yaml.SafeLoader, file: str) -> Any:
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems: list[Problem] = []
        _check_nodes(node, file, problems)
        if problems:
            raise ConfigError(problems)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(file: str, err: yaml.YAMLError, text: str) -> Problem:
    """One line for any PyYAML error. A ReaderError (a character YAML does not allow) has a
    position in the text instead of a mark."""
    if isinstance(err, yaml.reader.ReaderError):
        before = text[: err.position]
        line, column = before.count("\n") + 1, err.position - (before.rfind("\n") + 1) + 1
        char = err.character
        shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        return Problem(file, "", f"invalid YAML: line {line}, column {column}: character {shown} "
                       "is not allowed in YAML (a control character or a non-character): remove it")
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return Problem(file, "", f"invalid YAML: {where}{problem}")


def _check_depth(events) -> None:
    depth = 0
    for event in events:
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  event.start_mark)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_nodes(root: Node, file: str, problems: list[Problem]) -> None:
    """Duplicate keys (with both lines) and the expanded size of aliases."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    recursive: list[Node] = []

    def size(node: Node) -> int:
        # Nodes an alias shares are counted once per use: that is what the suite would walk.
        if id(node) in open_nodes:
            recursive.append(node)  # an alias inside its own anchor: an endless structure
            return 1
        known = sizes.get(id(node))
        if known is not None:
            return known
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(id(node))
        sizes[id(node)] = total = min(total, MAX_NODES + 1)
        return total

    total = size(root)
    if recursive:
        mark = recursive[0].start_mark
        problems.append(Problem(file, "", f"line {mark.line + 1}: an alias refers to its own anchor "
                                "(an endless structure)"))
        return
    if total > MAX_NODES:
        problems.append(Problem(file, "", f"aliases expand to more than {MAX_NODES} YAML nodes"))
        return

    seen_nodes: set[int] = set()

    def unencodable(node: Node, path: str) -> None:
        found = _SURROGATE.search(node.value) if isinstance(node.value, str) else None
        if found:
            mark = node.start_mark
            problems.append(Problem(file, _printable(path), (
                f"line {mark.line + 1}, column {mark.column + 1}: "
                f"{found.group().encode('unicode_escape').decode('ascii')} is half of a UTF-16 "
                "surrogate pair: no encoder can write it; write the character itself")))

    def walk(node: Node, path: str) -> None:
        if id(node) in seen_nodes:
            return  # an alias: its content was checked where it was anchored
        seen_nodes.add(id(node))
        if isinstance(node, ScalarNode):
            unencodable(node, path)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")
        elif isinstance(node, MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    name = key.value
                    unencodable(key, f"{path}.{name}" if path else name)
                    line = key.start_mark.line + 1
                    where = f"{path}.{name}" if path else name
                    if (key.tag, name) in first:
                        problems.append(Problem(file, _printable(where), (
                            f"duplicate key: set on line {first[(key.tag, name)]} and again on line "
                            f"{line} (YAML would keep only the last); keep one")))
                    else:
                        first[(key.tag, name)] = line
                    walk(value, where)
                else:
                    walk(value, path)

    walk(root, "")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _printable(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
