"""Read a matrix file: bounded, strict YAML, every failure a one-line `Problem`.

A matrix is a small hand-written file, so anything unusual is refused before it can crash
or exhaust the renderer:

* not a regular file (a folder, a FIFO, a device, a symlink loop) or over `MAX_BYTES`;
* not UTF-8 text (UTF-16/32 byte-order marks, undecodable bytes, NUL);
* invalid YAML, or a YAML tag beyond plain data (PyYAML's safe loader);
* a mapping that sets the same key twice (YAML keeps the last one silently);
* nesting deeper than `MAX_DEPTH`, or aliases that expand to more than `MAX_NODES` nodes
  (an 8-line "billion laughs" expands to 10^9).

    read_yaml(Path("experiments/h200_8b.yaml"))  ->  {"name": "h200_8b", ...}
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError, Problem

MAX_BYTES = 256 * 1024
"""Largest matrix file read (bytes); the committed ones are a few KB."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_NODES = 100_000
"""Most YAML nodes after expanding aliases."""

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}


class _DepthLimitedLoader(yaml.SafeLoader):
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
    text = read_text(path, file)
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        # libyaml (C) parses ~50x faster than PyYAML's Python parser; its composer recurses
        # per level, so the depth is checked on the event stream first. Invalid YAML is read
        # again by the Python parser, whose messages say what it expected and what it found.
        try:
            _check_depth(yaml.parse(text, Loader=fast))
            return _load(fast(text), file)
        except yaml.YAMLError:
            pass
    return _load(_DepthLimitedLoader(text), file)


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
    except yaml.YAMLError as err:
        if isinstance(loader, _DepthLimitedLoader):
            raise ConfigError([_yaml_problem(file, err)]) from None
        raise
    except RecursionError:
        raise ConfigError([Problem(file, "", f"nested deeper than {MAX_DEPTH} levels")]) from None
    finally:
        loader.dispose()


def _yaml_problem(file: str, err: yaml.YAMLError) -> Problem:
    mark = getattr(err, "problem_mark", None)
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

    def walk(node: Node, path: str) -> None:
        if id(node) in seen_nodes:
            return  # an alias: its content was checked where it was anchored
        seen_nodes.add(id(node))
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")
        elif isinstance(node, MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    name = key.value
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


def _printable(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
