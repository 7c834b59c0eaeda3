"""The strict YAML reader behind every config file and ``--set`` value.

YAML is read strictly: a key given twice in one mapping is an error naming both lines; aliases may not
expand the document beyond `MAX_YAML_NODES` values (a "billion laughs" file is refused, not expanded) nor
nest it deeper than `MAX_YAML_DEPTH`; files must be UTF-8 text and at most `MAX_CONFIG_BYTES` long. Every
error is a :class:`vjepa.errors.ConfigError` naming the source and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vjepa.errors import ConfigError, shown, utf8_text

# Bounds on what a YAML document may expand to (every value counted once per place it appears).
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64
MAX_CONFIG_BYTES = 16 * 2**20


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; a clear one-line error for a missing, binary or non-UTF-8 file, bad
    YAML, a duplicate key, an alias bomb, or a top level that is not a mapping."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{shown(path)}: a folder, not a config file")
    if not path.is_file():
        raise ConfigError(f"{shown(path)}: no such config file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{shown(path)}: {path.stat().st_size} bytes is too large for a config file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{shown(path)}: cannot read the config ({err.strerror})") from None
    text = utf8_text(raw, path, ConfigError, "a config is a YAML text file")
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{shown(path)}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text strictly (see the module docstring); errors name ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except _BoundError as err:
        raise ConfigError(f"{shown(source)}:{err}") from None
    except yaml.reader.ReaderError as err:
        line = text[: err.position].count("\n") + 1
        raise ConfigError(
            f"{shown(source)}:{line}: invalid YAML: {shown(err.reason)} (character #x{err.character:04x})"
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = "; ".join(x for x in (err.context, err.problem) if x)
        raise ConfigError(f"{shown(source)}{where}: invalid YAML: {shown(what)}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{shown(source)}: invalid YAML: {shown(' '.join(str(err).split()))}") from None
    except RecursionError:
        raise ConfigError(
            f"{shown(source)}: invalid YAML: nested deeper than {MAX_YAML_DEPTH} levels"
        ) from None


class _BoundError(Exception):
    """A YAML document past a bound; the message starts with the line (``"12: ..."``)."""


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys and documents that aliases expand past the bounds."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line, key = key_node.start_mark.line + 1, (key_node.tag, key_node.value)
            if key in seen:
                raise _BoundError(
                    f"{line}: duplicate key {shown(key_node.value, 80)!r} (first given on line {seen[key]})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def _check_expansion(root: yaml.Node) -> None:
    """Count the values of ``root`` once per place an alias puts them (without expanding anything) and its
    nesting depth; refuse past `MAX_YAML_NODES` / `MAX_YAML_DEPTH` or on a recursive alias."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            on_path.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            depth[id(node)] = 1 + max((depth[id(c)] for c in children), default=0)
            line = node.start_mark.line + 1
            if size[id(node)] > MAX_YAML_NODES:
                raise _BoundError(
                    f"{line}: aliases expand the document past {MAX_YAML_NODES} values (an alias bomb?)"
                )
            if depth[id(node)] > MAX_YAML_DEPTH:
                raise _BoundError(f"{line}: nested deeper than {MAX_YAML_DEPTH} levels")
            continue
        if id(node) in size:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise _BoundError(
                    f"{child.start_mark.line + 1}: a recursive alias (a value that holds itself)"
                )
            if id(child) not in size:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
