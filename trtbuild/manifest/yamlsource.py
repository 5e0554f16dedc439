"""Safe YAML loading that remembers where every value came from.

PyYAML's ``SafeLoader`` composes the document into nodes that carry line marks; walking the nodes
ourselves gives plain Python data plus a ``{path: line}`` map, rejects duplicate keys (which PyYAML
silently overwrites) and bounds alias expansion, so a "billion laughs" document fails fast instead
of exhausting memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trtbuild.errors import ManifestError

#: Largest manifest read, in bytes. A fleet manifest of 10,000 models stays far below it.
MAX_BYTES = 64 * 1024 * 1024
#: Most YAML nodes visited while expanding aliases (a bound on time and memory).
MAX_NODES = 2_000_000

Path_ = tuple[str | int, ...]
#: The only tags a mapping or sequence may carry: plain YAML. Anything else (``!!python/...``) is refused.
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap"})


class LocatedData:
    """YAML data and the 1-based line of every mapping key and sequence item.

    Attributes:
        data: the document as dicts, lists and scalars.
        lines: ``{("models", "pose", "precision"): 14, ...}``.
        file: the file the document came from (used in error messages).
    """

    def __init__(self, data: Any, lines: dict[Path_, int], file: Path) -> None:
        self.data = data
        self.lines = lines
        self.file = file

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


class _Walker:
    def __init__(self, file: Path) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.visited = 0
        self.constructor = yaml.SafeLoader("")

    def error(self, node: yaml.Node, message: str) -> ManifestError:
        return ManifestError(f"{self.file}:{node.start_mark.line + 1}: {message}")

    def walk(self, node: yaml.Node, path: Path_) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise self.error(node, f"more than {MAX_NODES} YAML nodes after alias expansion; refusing to load")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            raise self.error(node, f"{_dotted(path)}: YAML tag {node.tag!r} is not allowed (the manifest is data)")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.walk(item, path + (index,)))
            return items
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise self.error(node, f"{_dotted(path)}: {problem}") from None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.walk(key_node, path)
            if not isinstance(key, (str, int)):
                raise self.error(key_node, f"{_dotted(path)}: mapping keys must be strings")
            key = str(key)
            if key in result:
                first = self.lines[path + (key,)]
                raise self.error(key_node, f"{_dotted(path + (key,))}: duplicate key (first at line {first})")
            self.lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = self.walk(value_node, path + (key,))
        return result


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path) or "<document>"


def load_located(file: Path) -> LocatedData:
    """Read ``file`` as YAML with line numbers.

    Raises:
        ManifestError: the file is missing, too large, not UTF-8, not valid YAML (message carries the
            line), has duplicate keys, or expands to more than ``MAX_NODES`` nodes.
    """
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise ManifestError(f"{file}: {size} bytes is larger than the {MAX_BYTES}-byte limit for a manifest")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{file}: no such manifest (pass one with -f/--file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{file}: cannot read: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
        raise ManifestError(f"{file}:{line} YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{file}: YAML error: {exc}") from None
    walker = _Walker(file)
    data = {} if root is None else walker.walk(root, ())
    return LocatedData(data, walker.lines, file)
