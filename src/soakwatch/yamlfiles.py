"""The YAML of config files, read strictly and within bounds: a key given twice, a document
nested too deep or too large once its aliases are expanded, and a value PyYAML cannot build
are each a ConfigError naming the file (and the line).

Why a module of its own: ``soakwatch.configfile`` is imported by every command, and yaml is
about 0.9 MB of RSS that ``soak-exporter --pid`` (no config file) never needs; configfile
imports this module only when it reads a file.
"""

from __future__ import annotations

from typing import Any

import yaml

from soakwatch.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_VALUES", "load_yaml"]

# A config is a handful of levels deep; anything near Python's recursion limit is hostile (or a
# generator gone wrong), and PyYAML composes nodes recursively. The bounds are checked before
# any Python value is built, so a bad file costs milliseconds, never a RecursionError.
MAX_DEPTH = 100
# Aliases let a short file stand for a huge document ("billion laughs"): bounded too, counted as
# the values the document holds once every alias is expanded.
MAX_VALUES = 100_000


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _ShapeError(yaml.composer.ComposerError):
    """A document too deep, too large or holding itself: its problem is echoed in the error."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (plain YAML keeps the last one
    silently, so a pasted duplicate would hide the first value). Merge keys (``<<``) may still
    be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise _DuplicateKeyError(
                    problem=f"duplicate key {key_node.value!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose as PyYAML does, refusing a nesting deeper than ``MAX_DEPTH`` and an alias to
        a node that holds it (a value that contains itself)."""
        composing: list[str | None] = self.__dict__.setdefault("_composing", [])
        event = self._peek()
        if isinstance(event, yaml.AliasEvent) and event.anchor in composing:
            raise _shape_error(f"alias *{event.anchor} refers to a value that holds it", event)
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        if len(composing) >= MAX_DEPTH:
            raise _shape_error(f"nested deeper than {MAX_DEPTH} levels", event)
        composing.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            composing.pop()

    def _peek(self) -> yaml.Event:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
        return event


def _shape_error(problem: str, where: yaml.Event | yaml.Node) -> _ShapeError:
    mark: Any = where.start_mark  # yaml.error.Mark, or the C extension's Mark
    return _ShapeError(problem=problem, problem_mark=mark)


def _check_shape(root: yaml.Node) -> None:
    """Raise _ShapeError when the document, its aliases expanded, is deeper than ``MAX_DEPTH``
    or holds more than ``MAX_VALUES`` values. Iterative, each node once: aliases share nodes."""
    depth: dict[int, int] = {}
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in depth:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in depth)
            continue
        depth[id(node)] = 1 + max((depth[id(c)] for c in children), default=0)
        size[id(node)] = 1 + sum(size[id(c)] for c in children)
        if depth[id(node)] > MAX_DEPTH + 1:  # + 1: scalars are not a level of nesting
            raise _shape_error(f"nested deeper than {MAX_DEPTH} levels (through aliases)", node)
        if size[id(node)] > MAX_VALUES:
            raise _shape_error(f"more than {MAX_VALUES} values once its aliases are expanded", node)


def _load_yaml(text: str) -> Any:
    """The one document of ``text`` as Python values, within the bounds above."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_shape(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(text: str, source: str) -> Any:
    """The one document of ``text`` (the file ``source``) as Python values; a ConfigError naming
    ``source`` when it is not valid YAML or leaves the bounds above."""
    try:
        return _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        # Only our own problems are echoed: YAML's others are generic, or quote the text.
        own = isinstance(exc, (_DuplicateKeyError, _ShapeError))
        detail = f": {exc.problem}" if own and isinstance(exc, yaml.MarkedYAMLError) else ""
        raise ConfigError(f"not valid YAML{where}{detail}", source=source) from None
    except (ValueError, RecursionError):
        # PyYAML's own constructors: an integer of more than 4300 digits (int()'s limit), a
        # bad !!binary or timestamp. The exception text may quote the value: not echoed.
        raise ConfigError("not valid YAML: a value cannot be read", source=source) from None
