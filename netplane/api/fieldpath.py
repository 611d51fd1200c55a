"""Field paths and field sets, in the terms of Kubernetes'
structured-merge-diff: what ``metadata.managedFields`` are made of.

A *path* is a tuple of serialized path elements, exactly as FieldsV1 spells
them: ``f:spec`` (a field), ``k:{"name":"web"}`` (the item of a list-map, by
its keys), ``v:"a"`` (the item of a set), ``i:0`` (an index). A field set is
a Python set of paths. This module orders, prints and (de)serializes them;
``netplane.api.typed`` computes them from objects and their schemas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
FieldSet = set[Path]


# -- path elements --

def go_json(value: Any) -> str:
    """JSON as Go writes it in FieldsV1: compact, HTML characters escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def field_element(name: str) -> str:
    return f"f:{name}"


def _value_rank(value: Any) -> tuple[int, Any]:
    """A total order over JSON values close to structured-merge-diff's."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (3, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (4, go_json(value))


def element_order(element: str) -> tuple[int, Any]:
    """The order FieldsV1 lists elements in: fields, then keys, values, indexes."""
    kind, body = element[0], element[2:]
    if kind == "f":
        return (0, body)
    if kind == "k":
        return (1, tuple((k, _value_rank(v)) for k, v in json.loads(body).items()))
    if kind == "v":
        return (2, _value_rank(json.loads(body)))
    return (3, int(body) if body.lstrip("-").isdigit() else 0)


def element_string(element: str) -> str:
    """An element as kube prints it in a conflict: ``.replicas``,
    ``[name="web"]``, ``[="a"]``."""
    kind, body = element[0], element[2:]
    if kind == "f":
        return "." + body
    if kind == "k":
        return "[" + ",".join(f"{k}={_shown(v)}" for k, v in json.loads(body).items()) + "]"
    if kind == "v":
        return f"[={_shown(json.loads(body))}]"
    return f"[{body}]"


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def path_string(path: Path) -> str:
    return "".join(element_string(e) for e in path)


# -- FieldsV1 --

@dataclass
class _Tree:
    member: bool = False
    children: dict[str, _Tree] = field(default_factory=dict)


def _tree(paths: FieldSet | frozenset[Path]) -> _Tree:
    root = _Tree()
    for path in paths:
        at = root
        for element in path:
            at = at.children.setdefault(element, _Tree())
        at.member = True
    return root


def to_fields_v1(paths: FieldSet) -> dict[str, Any]:
    """A field set as FieldsV1 JSON: ``.`` marks a node that is itself a
    member and also has children; elements in kube's order."""
    return _emit(_tree(paths))


def _emit(tree: _Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if tree.member and tree.children:
        out["."] = {}
    for element in sorted(tree.children, key=element_order):
        out[element] = _emit(tree.children[element])
    return out


def from_fields_v1(fields: Any, prefix: Path = ()) -> FieldSet:
    """FieldsV1 JSON back into a field set (ValueError when malformed)."""
    if not isinstance(fields, dict):
        raise ValueError(f"FieldsV1 must be a JSON object, not {type(fields).__name__}")
    out: FieldSet = set()
    for element, sub in fields.items():
        if element == ".":
            out.add(prefix)
            continue
        _check_element(element)
        inner = from_fields_v1(sub, (*prefix, element))
        out |= inner or {(*prefix, element)}
    return out


def _check_element(element: str) -> None:
    """An element of a client's FieldsV1 must be one this module can order
    and print: a field, an index, a key object or a JSON value."""
    kind, body = element[:2], element[2:]
    if kind == "f:" or (kind == "i:" and body.isdigit()):
        return
    bad = ValueError(f"unknown FieldsV1 element {element!r}")
    if kind in ("k:", "v:"):
        try:
            value = json.loads(body)
        except ValueError:
            raise bad from None
        if kind == "v:" or (isinstance(value, dict) and value):
            return
    raise bad


def iterate(paths: FieldSet | frozenset[Path]) -> Iterator[Path]:
    """Paths in structured-merge-diff's order: at each level the members,
    then the children, each sorted."""
    yield from _walk_tree(_tree(paths), ())


def _walk_tree(tree: _Tree, prefix: Path) -> Iterator[Path]:
    ordered = sorted(tree.children, key=element_order)
    for element in ordered:
        if tree.children[element].member:
            yield (*prefix, element)
    for element in ordered:
        yield from _walk_tree(tree.children[element], (*prefix, element))


def with_named_fields(paths: FieldSet) -> FieldSet:
    """A set plus every field on the way to its members, so that removing
    such a field removes all below it (structured-merge-diff's
    EnsureNamedFieldsAreMembers; list items on the way are not added)."""
    out = set(paths)
    for path in paths:
        for i in range(1, len(path)):
            if path[i - 1].startswith("f:"):
                out.add(path[:i])
    return out


def prefixes(paths: FieldSet) -> FieldSet:
    """Every proper prefix of the paths: where something of the set lies below."""
    return {path[:i] for path in paths for i in range(len(path))}
