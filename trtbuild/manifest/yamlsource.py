"""Safe YAML loading that remembers where every value came from.

PyYAML composes the document into nodes that carry line marks; walking the nodes ourselves gives plain
Python data plus a ``{path: line}`` map and rejects duplicate keys (which PyYAML silently overwrites).

Composition is bounded: what the document would expand to, aliases included, and how deep, is counted
node by node in document order (``_Bounds``), and a document over ``MAX_NODES`` expanded nodes or
``MAX_DEPTH`` levels is refused at the line where it crosses the limit, so a "billion laughs" document
or a deeply nested one fails in milliseconds with ``file:line``, never with a RecursionError, a crash or
gigabytes of memory.

Two composers, one verdict:

* With libyaml (``yaml.__with_libyaml__``), libyaml composes (``yaml.CSafeLoader``): about 5x faster
  than pure Python for a whole ``load_located``. Its composer cannot be hooked, and it recurses in C (a
  hundred thousand ``[`` crash the interpreter with SIGSEGV), so libyaml's events are first counted
  through ``_Bounds`` without composing anything (``_check_events``); only a document within the limits
  reaches the C composer. libyaml's events carry the Python parser's line marks and are counted in the
  same order, so a refusal names the same line with the same message. Anything libyaml refuses (a syntax
  error, an undefined alias, a second document) goes to the Python composer, which gives the verdict and
  words the error as it always has. libyaml accepts a little more than the Python scanner (a ``?`` inside
  a plain scalar in a flow collection, ``[a?b]``); nothing else differs.
* Without libyaml, ``_BoundedLoader`` (``SafeLoader`` with the same ``_Bounds`` counting as it composes).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from trtbuild.errors import ManifestError

#: Largest manifest read, in bytes. A fleet manifest of 10,000 models stays far below it.
MAX_BYTES = 64 * 1024 * 1024
#: Most YAML nodes a document may expand to, aliases expanded (a bound on time and memory).
MAX_NODES = 2_000_000
#: Deepest nesting of mappings and sequences, aliases expanded (a manifest needs about 6).
MAX_DEPTH = 64

Path_ = tuple[str | int, ...]
#: The only tags a mapping or sequence may carry: plain YAML. Anything else (``!!python/...``) is refused.
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap"})
_STR_TAG = "tag:yaml.org,2002:str"


class LocatedData:
    """YAML data and where every mapping key and sequence item was written.

    Attributes:
        data: the document as dicts, lists and scalars.
        lines: ``{("models", "pose", "precision"): "builds.yaml:14", ...}`` — file and 1-based line.
        file: the file the document came from (the base file of a merged document).
    """

    def __init__(self, data: Any, lines: dict[Path_, str], file: Path) -> None:
        self.data = data
        self.lines = lines
        self.file = file

    def where(self, path: Path_) -> str:
        """``file:line`` of ``path`` or of its nearest ancestor that has one (``file:1`` at worst)."""
        for end in range(len(path), -1, -1):
            location = self.lines.get(tuple(path[:end]))
            if location is not None:
                return location
        return f"{self.file}:1"


def _merge(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _merge(base.get(key), value)
        return merged
    return top


def overlay(base: LocatedData, top: LocatedData) -> LocatedData:
    """``top`` merged over ``base``: mappings merge key by key, anything else is replaced.

    Locations follow the values: a field set by ``top`` points into ``top``'s file; a replaced list
    forgets ``base``'s item locations.
    """
    replaced = [path for path in top.lines if not isinstance(_get(top.data, path), dict)]
    lines = {
        path: where
        for path, where in base.lines.items()
        if not any(path[: len(r)] == r and len(path) > len(r) for r in replaced)
    }
    lines.update(top.lines)
    return LocatedData(_merge(base.data, top.data), lines, base.file)


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


#: Whether PyYAML was built with libyaml (``yaml.CSafeLoader``); tests turn it off to check the fallback.
_LIBYAML: bool = bool(getattr(yaml, "__with_libyaml__", False))


class _Bounds:
    """Counts what a document expands to, node by node in document order, and refuses it over the limits.

    For every node it records ``(expanded size, height)``; an alias counts as the whole of its anchor, so
    the running total is the size of the document with every alias expanded. Both composers feed it the
    same events in the same order, so both refuse a document at the same line with the same message.
    """

    def __init__(self, file: Path) -> None:
        self._file = file
        self._expanded = 0
        self._tallest: list[int] = [0]  # per open node (and the document): its tallest child so far

    def _refuse(self, event: yaml.Event, message: str) -> ManifestError:
        return ManifestError(f"{self._file}:{event.start_mark.line + 1}: {message}; refusing to load")

    def _add(self, event: yaml.Event, size: int, height: int) -> None:
        self._expanded += size
        if self._expanded > MAX_NODES:
            raise self._refuse(event, f"more than {MAX_NODES} YAML nodes after alias expansion")
        if len(self._tallest) - 1 + height > MAX_DEPTH:
            raise self._refuse(event, f"nested more than {MAX_DEPTH} levels deep (aliases expanded)")
        self._tallest[-1] = max(self._tallest[-1], height)

    def enter(self, event: yaml.Event) -> int:
        """Open the node ``event`` starts (a scalar, sequence or mapping); returns the count before it."""
        if len(self._tallest) > MAX_DEPTH:
            raise self._refuse(event, f"nested more than {MAX_DEPTH} levels deep")
        self._tallest.append(0)
        return self._expanded

    def leave(self, event: yaml.Event, before: int) -> tuple[int, int]:
        """Close the node ``event`` started, ``before`` from ``enter``; returns its ``(size, height)``."""
        height = self._tallest.pop() + 1
        self._add(event, 1, height)
        return self._expanded - before, height

    def alias(self, event: yaml.AliasEvent, extent: tuple[int, int] | None) -> None:
        """Count an alias as the whole of its anchor (``extent``; ``None``: the anchor is still open)."""
        if extent is None:
            raise self._refuse(event, f"alias *{event.anchor} is used inside the node it names")
        self._add(event, *extent)


class _BoundedLoader(yaml.SafeLoader):
    """A ``SafeLoader`` whose composer refuses documents that expand too far or nest too deep (``_Bounds``).

    An alias to a node still being composed (a recursive alias) is refused too.

    Raises (from ``get_single_node``):
        ManifestError: ``file:line: ...`` over ``MAX_NODES`` or ``MAX_DEPTH``, or a recursive alias.
    """

    def __init__(self, stream: str, file: Path) -> None:
        super().__init__(stream)
        self._bounds = _Bounds(file)
        self._extent: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._bounds.alias(event, self._extent.get(id(node)))
            return node
        before = self._bounds.enter(event)
        node = super().compose_node(parent, index)
        self._extent[id(node)] = self._bounds.leave(event, before)
        return node


class _ComposerWillRefuse(yaml.YAMLError):
    """The C composer would refuse this document (undefined alias, duplicate anchor): let Python word it."""


def _check_events(loader: Any, file: Path) -> None:
    """Count the first document's events through ``_Bounds`` without composing it, as ``_BoundedLoader`` would.

    Raises:
        ManifestError: over ``MAX_NODES`` or ``MAX_DEPTH``, or a recursive alias (the composer's message).
        yaml.YAMLError: libyaml's parser refused the text, or the composer would (``_ComposerWillRefuse``).
    """
    bounds = _Bounds(file)
    extents: dict[str, tuple[int, int]] = {}  # anchor -> (size, height) of the node it names, once closed
    opened: set[str] = set()  # anchors of nodes still open: an alias to one is recursive
    starts: list[tuple[yaml.Event, int]] = []  # open sequences and mappings: start event, count before
    scalar, alias, end = yaml.ScalarEvent, yaml.AliasEvent, (yaml.SequenceEndEvent, yaml.MappingEndEvent)
    collection = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
    while (event := loader.get_event()) is not None:
        kind = type(event)
        if kind is alias:
            if event.anchor not in extents and event.anchor not in opened:
                raise _ComposerWillRefuse(f"undefined alias {event.anchor!r}")
            bounds.alias(event, extents.get(event.anchor))
            continue
        if kind is scalar or kind in collection:
            before = bounds.enter(event)
            anchor = event.anchor
            if anchor is not None and (anchor in extents or anchor in opened):
                raise _ComposerWillRefuse(f"duplicate anchor {anchor!r}")
            if kind is not scalar:
                starts.append((event, before))
                if anchor is not None:
                    opened.add(anchor)
                continue
            extent = bounds.leave(event, before)
        elif kind in end:
            start, before = starts.pop()
            extent = bounds.leave(start, before)
            anchor = start.anchor
            opened.discard(anchor)
        elif kind is yaml.DocumentEndEvent:
            return  # only the first document is composed: another is the composer's error
        else:
            continue
        if anchor is not None:
            extents[anchor] = extent


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block: composing allocates many objects and frees none."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compose_libyaml(text: str, file: Path) -> yaml.Node | None:
    """``compose_bounded`` with libyaml: count the events within the limits, then let libyaml compose."""
    checker = yaml.CSafeLoader(text)
    try:
        _check_events(checker, file)
    finally:
        checker.dispose()
    loader = yaml.CSafeLoader(text)
    try:
        with _gc_paused():
            return loader.get_single_node()
    finally:
        loader.dispose()


def compose_bounded(text: str, file: Path) -> yaml.Node | None:
    """Compose ``text`` (one YAML document) into nodes, within the limits; ``None`` when empty.

    libyaml composes when PyYAML has it, after ``_check_events`` has counted the document within the
    limits; otherwise, or when libyaml refuses the text, ``_BoundedLoader`` composes (and words the error).

    Raises:
        ManifestError: over ``MAX_NODES`` expanded nodes or ``MAX_DEPTH`` levels, a recursive alias.
        yaml.YAMLError: the text is not YAML (the caller words it).
    """
    if _LIBYAML:
        try:
            return _compose_libyaml(text, file)
        except (yaml.YAMLError, UnicodeEncodeError):
            pass  # (UnicodeEncodeError: a lone surrogate, no UTF-8 for libyaml) the Python composer decides,
            # and words the error as it does without libyaml
    loader = _BoundedLoader(text, file)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _Walker:
    def __init__(self, file: Path) -> None:
        self.file = file
        self.lines: dict[Path_, str] = {}
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
                self.lines[path + (index,)] = f"{self.file}:{item.start_mark.line + 1}"
                items.append(self.walk(item, path + (index,)))
            return items
        if node.tag == _STR_TAG:  # most scalars: what SafeConstructor makes of them, minus its bookkeeping
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise self.error(node, f"{_dotted(path)}: {problem}") from None
        except (ValueError, TypeError, OverflowError) as exc:  # an explicit tag on a value it cannot be: !!int abc
            raise self.error(
                node, f"{_dotted(path)}: {node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}: {exc}"
            ) from None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        self.constructor.flatten_mapping(node)  # resolves merge keys (<<): merged pairs first, then own
        merged = len(node.value) - own
        result: dict[Any, Any] = {}
        from_merge: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.walk(key_node, path)
            if not isinstance(key, (str, int)):
                raise self.error(key_node, f"{_dotted(path)}: mapping keys must be strings")
            key = str(key)
            if index < merged:
                if key in from_merge:  # merged pairs of a mapping that merges another: the later one wins
                    result.pop(key)
                from_merge.add(key)
            elif key in from_merge:  # an explicit key overrides a merged one (YAML merge semantics)
                from_merge.discard(key)
                result.pop(key)
            if key in result:
                first = self.lines[path + (key,)].rsplit(":", 1)[1]
                raise self.error(key_node, f"{_dotted(path + (key,))}: duplicate key (first at line {first})")
            self.lines[path + (key,)] = f"{self.file}:{key_node.start_mark.line + 1}"
            result[key] = self.walk(value_node, path + (key,))
        return result


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path) or "<document>"


def load_located(file: Path) -> LocatedData:
    """Read ``file`` as YAML with line numbers.

    Raises:
        ManifestError: the file is missing, too large, not UTF-8, not valid YAML (message carries the
            line), has duplicate keys, expands to more than ``MAX_NODES`` nodes or nests deeper than
            ``MAX_DEPTH`` levels (aliases expanded).
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
        root = compose_bounded(text, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
        raise ManifestError(f"{file}:{line} YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{file}: YAML error: {exc}") from None
    walker = _Walker(file)
    try:
        data = {} if root is None else walker.walk(root, ())
    except RecursionError:  # merge keys (<<) chained through many anchors: not bounded by the composer's depth
        raise ManifestError(
            f"{file}: nested too deeply (merge keys chained through too many anchors); refusing to load"
        ) from None
    return LocatedData(data, walker.lines, file)
