"""Values walked by their Kubernetes 1.32 schema, as structured-merge-diff's
typed values are: the field set a value sets, what changed between two
values, the merge of an applied configuration into a live object, and the
removal of fields an applier gave up. The schema says how each part of an
object is owned and merged:

* a struct (``properties``) or a granular map: each key separately;
* an atomic map or list (``x-kubernetes-map-type`` / ``x-kubernetes-list-type``
  ``atomic``, and lists with no list type at all): as one value;
* a list-map (``x-kubernetes-list-type: map``, or a strategic-merge list with
  ``x-kubernetes-patch-merge-key``): item by item, by key;
* a set (``x-kubernetes-list-type: set``): value by value.

Pure: values in, values or sets out.
"""

from __future__ import annotations

import copy
import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netplane.api import schema
from netplane.api.fieldpath import (
    FieldSet,
    Path,
    field_element,
    go_json,
    prefixes,
    with_named_fields,
)


class _Absent:
    """An absent value (a key not in its map), as opposed to an explicit null."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

# Keys of list-maps that the schema defaults (``+default`` in the Go types),
# which an item that omits them is keyed by, as in kube-apiserver.
KEY_DEFAULTS = {("io.k8s.api.core.v1.ContainerPort", "protocol"): "TCP",
                ("io.k8s.api.core.v1.ServicePort", "protocol"): "TCP"}


class Shape(enum.Enum):
    SCALAR = "scalar"
    STRUCT = "struct"
    MAP = "map"
    ATOMIC = "atomic"
    LIST_MAP = "list-map"
    SET = "set"
    UNTYPED = "untyped"


@dataclass(frozen=True)
class Node:
    """One schema node, resolved: how a value there is owned and merged."""

    shape: Shape
    schema: Mapping[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] = ()
    name: str = ""  # the definition this node is, when it is one
    # A struct's fields' nodes, found once (bounded by its properties).
    fields: dict[str, Node] = field(default_factory=dict, compare=False, repr=False)

    def child(self, key: str) -> Node:
        """The node of a struct field or map value (untyped when unknown)."""
        if self.shape is Shape.STRUCT:
            known = self.fields.get(key)
            if known is not None:
                return known
            sub = (self.schema.get("properties") or {}).get(key)
            if sub is None:
                return UNTYPED
            known = self.fields[key] = node(sub)
            return known
        if self.shape is Shape.MAP:
            return node(self.schema["additionalProperties"])
        return UNTYPED

    def is_field(self, key: str) -> bool:
        """Whether a key is a named field of a struct (not a map entry)."""
        return self.shape is Shape.STRUCT and key in (self.schema.get("properties") or {})

    def item(self) -> Node:
        items = self.schema.get("items")
        return node(items) if isinstance(items, Mapping) else UNTYPED


UNTYPED = Node(Shape.UNTYPED)


def _resolve(sch: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    defs = schema.definitions()
    name = ""
    ref = schema.ref_name(sch)
    while ref is not None and ref in defs:
        name, sch = ref, defs[ref]
        ref = schema.ref_name(sch)
    return sch, name


def _list_shape(sch: Mapping[str, Any]) -> tuple[Shape, tuple[str, ...]]:
    """The list's kind as kube's schema conversion reads it: the list type
    when given, else the strategic-merge key, else atomic."""
    list_type = sch.get("x-kubernetes-list-type")
    if list_type == "map":
        return Shape.LIST_MAP, tuple(sch.get("x-kubernetes-list-map-keys") or ())
    if list_type == "set":
        return Shape.SET, ()
    if list_type is None and str(sch.get("x-kubernetes-patch-strategy", "")).startswith("merge") \
            and sch.get("x-kubernetes-patch-merge-key"):
        return Shape.LIST_MAP, (str(sch["x-kubernetes-patch-merge-key"]),)
    return Shape.ATOMIC, ()


# Nodes by the identity of their schema; each entry holds its schema, so
# that an id is never reused while it is cached. Schemas come from the
# definitions, read once per process, so the cache stays as big as they are.
_NODES: dict[int, tuple[Mapping[str, Any], Node]] = {}


def node(sch: Mapping[str, Any] | None) -> Node:
    """The node a (possibly referencing) schema stands for."""
    if sch is None:
        return UNTYPED
    hit = _NODES.get(id(sch))
    if hit is not None and hit[0] is sch:
        return hit[1]
    made = _node(sch)
    _NODES[id(sch)] = (sch, made)
    return made


def _node(sch: Mapping[str, Any]) -> Node:
    list_meta = sch if "items" in sch else None
    sch, name = _resolve(sch)
    list_meta = list_meta or (sch if "items" in sch else None)
    if list_meta is not None:
        shape, keys = _list_shape(list_meta)
        return Node(shape, list_meta, keys, name)
    if sch.get("x-kubernetes-map-type") == "atomic":
        return Node(Shape.ATOMIC, sch, (), name)
    if "properties" in sch:
        return Node(Shape.STRUCT, sch, (), name)
    if isinstance(sch.get("additionalProperties"), Mapping):
        return Node(Shape.MAP, sch, (), name)
    types = sch.get("type")
    kinds = set(types) if isinstance(types, list) else {types}
    if "object" in kinds or sch.get("x-kubernetes-preserve-unknown-fields"):
        return Node(Shape.UNTYPED, sch, (), name)
    return Node(Shape.SCALAR, sch, (), name)


@functools.cache
def kind_node(group: str, version: str, kind: str) -> Node:
    """The node of a whole object of a kind (untyped if 1.32 has no schema)."""
    name = schema.definition_name(group, version, kind)
    return node({"$ref": f"#/$defs/{name}"}) if name else UNTYPED


def item_element(list_node: Node, item: Any) -> str | None:
    """The element naming a list item: its key for a list-map, its value for
    a set; None when the item cannot be named (no key, or not a scalar)."""
    if list_node.shape is Shape.SET:
        if isinstance(item, (dict, list)) or item is None:
            return None
        return "v:" + go_json(item)
    if not isinstance(item, dict):
        return None
    key: dict[str, Any] = {}
    item_name = list_node.item().name
    for k in list_node.keys:
        if k in item:
            key[k] = item[k]
        elif (item_name, k) in KEY_DEFAULTS:
            key[k] = KEY_DEFAULTS[(item_name, k)]
    if not key:
        return None
    return "k:" + go_json(dict(sorted(key.items())))


# -- typed walks --

def _items(list_node: Node, value: Any) -> dict[str, Any]:
    """A list's items by element, first occurrence winning."""
    out: dict[str, Any] = {}
    for item in value if isinstance(value, list) else ():
        element = item_element(list_node, item)
        if element is not None and element not in out:
            out[element] = item
    return out


def _shape_of(n: Node, value: Any) -> Shape:
    """The shape a value takes at a node; untyped values are deduced from
    themselves (maps granular, lists atomic)."""
    if n.shape is Shape.UNTYPED:
        return Shape.MAP if isinstance(value, dict) else Shape.ATOMIC
    return n.shape


def field_set(value: Any, n: Node, path: Path = ()) -> FieldSet:
    """The fields a value sets (structured-merge-diff's ToFieldSet): what an
    applier owns when it applies this value."""
    out: FieldSet = set()
    _collect(value, n, path, out)
    out.discard(())
    return out


def _collect(value: Any, n: Node, path: Path, out: FieldSet) -> None:
    shape = _shape_of(n, value)
    if shape in (Shape.SCALAR, Shape.ATOMIC):
        out.add(path)
    elif shape in (Shape.LIST_MAP, Shape.SET):
        for element, item in _items(n, value).items():
            _collect(item, n.item(), (*path, element), out)
            out.add((*path, element))
    elif isinstance(value, dict):
        for key, sub in value.items():
            child = (*path, field_element(key))
            _collect(sub, n.child(key), child, out)
            if sub is None or sub == {} or not n.is_field(key):
                out.add(child)


@dataclass
class Comparison:
    """What changed from one value to another, by path."""

    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def changed(self) -> FieldSet:
        return self.added | self.modified


def _empty(value: Any) -> bool:
    return value is ABSENT or value is None or (type(value) in (dict, list) and not value)


def compare(lhs: Any, rhs: Any, n: Node) -> Comparison:
    """structured-merge-diff's Compare: leaves (and atomic values) are
    added, modified or removed; a map, struct or list item is itself added
    or removed when it appears or disappears as a whole."""
    out = Comparison()
    _compare(lhs, rhs, n, (), out)
    for s in (out.added, out.modified, out.removed):
        s.discard(())
    return out


def _compare(lhs: Any, rhs: Any, n: Node, path: Path, out: Comparison) -> None:
    shape = _shape_of(n, rhs if rhs is not ABSENT else lhs)
    granular = shape in (Shape.STRUCT, Shape.MAP, Shape.LIST_MAP, Shape.SET)
    if not granular or (_empty(lhs) and _empty(rhs)) or not _same_kind(lhs, rhs, shape):
        _compare_leaf(lhs, rhs, path, out)
        return
    if shape in (Shape.LIST_MAP, Shape.SET):
        left, right = _items(n, lhs), _items(n, rhs)
        for element in {**left, **right}:
            _compare(left.get(element, ABSENT), right.get(element, ABSENT), n.item(),
                     (*path, element), out)
    else:
        left, right = _as_map(lhs), _as_map(rhs)
        for key in {**left, **right}:
            _compare(left.get(key, ABSENT), right.get(key, ABSENT), n.child(key),
                     (*path, field_element(key)), out)
    if lhs is ABSENT:
        out.added.add(path)
    elif rhs is ABSENT:
        out.removed.add(path)


def _same_kind(lhs: Any, rhs: Any, shape: Shape) -> bool:
    """Both sides are of the container kind the shape wants (or missing)."""
    want = list if shape in (Shape.LIST_MAP, Shape.SET) else dict
    return (lhs is ABSENT or lhs is None or isinstance(lhs, want)) \
        and (rhs is ABSENT or rhs is None or isinstance(rhs, want))


def _as_map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _compare_leaf(lhs: Any, rhs: Any, path: Path, out: Comparison) -> None:
    if lhs is ABSENT:
        out.added.add(path)
    elif rhs is ABSENT:
        out.removed.add(path)
    elif not equal(lhs, rhs):
        out.modified.add(path)


def equal(lhs: Any, rhs: Any) -> bool:
    """JSON equality, where ``true`` is not ``1`` (Python would say it is)."""
    if type(lhs) is type(rhs) and type(lhs) in (str, int, bool):
        return bool(lhs == rhs)
    return _canonical(lhs) == _canonical(rhs)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def merge(live: Any, config: Any, n: Node, *, share: bool = False) -> Any:
    """The applied configuration merged into the live value: leaves and
    atomic values of the configuration win, maps merge key by key, list-maps
    and sets item by item (keeping the configuration's order, live-only
    items staying next to the item they followed). The result is a copy
    unless ``share``: then it may hold parts of both, for reading only."""
    dup = _same if share else copy.deepcopy
    return _merge(live, config, n, dup)


def _same(value: Any) -> Any:
    return value


def _merge(live: Any, config: Any, n: Node, dup: Any) -> Any:
    if config is ABSENT:
        return dup(live)
    if live is ABSENT:
        return dup(config)
    shape = _shape_of(n, config)
    if shape in (Shape.SCALAR, Shape.ATOMIC) or not _same_kind(live, config, shape) \
            or live is None or config is None:
        return dup(config)
    if shape in (Shape.LIST_MAP, Shape.SET):
        return _merge_list(live, config, n, dup)
    out: dict[str, Any] = {}
    for key in {**live, **config}:
        out[key] = _merge(live.get(key, ABSENT), config.get(key, ABSENT), n.child(key), dup)
    return out


def _merge_list(live: list[Any], config: list[Any], n: Node, dup: Any) -> list[Any]:
    left, right = _items(n, live), _items(n, config)
    # Live-only items travel with the shared item they followed in the live list.
    after: dict[str | None, list[Any]] = {}
    anchor: str | None = None
    for item in live:
        element = item_element(n, item)
        if element is not None and element in right:
            anchor = element
        else:
            after.setdefault(anchor, []).append(dup(item))
    out = list(after.get(None, []))
    for element, item in right.items():
        out.append(_merge(left.get(element, ABSENT), item, n.item(), dup))
        if element in left:
            out.extend(after.get(element, []))
    return out


def prune(value: Any, last: FieldSet, owned: FieldSet, n: Node) -> Any:
    """Fields an applier set before and no longer sets go, unless someone
    (the applier's new configuration included) still owns them: a path goes
    when it is in ``last`` and not in ``owned`` (both with their named
    fields as members), and with it all below it."""
    gone = with_named_fields(last) - with_named_fields(owned)
    return _prune(copy.deepcopy(value), (), gone, prefixes(gone), n)


def _prune(value: Any, path: Path, gone: FieldSet, below: FieldSet, n: Node) -> Any:
    if path not in below:
        return value
    shape = _shape_of(n, value)
    if shape in (Shape.LIST_MAP, Shape.SET) and isinstance(value, list):
        kept = []
        for item in value:
            element = item_element(n, item)
            child = (*path, element) if element is not None else None
            if child is None:
                kept.append(item)
            elif child not in gone:
                kept.append(_prune(item, child, gone, below, n.item()))
        return kept
    if isinstance(value, dict):
        for key in list(value):
            child = (*path, field_element(key))
            if child in gone:
                del value[key]
            else:
                value[key] = _prune(value[key], child, gone, below, n.child(key))
    return value


def undeclared(value: Any, n: Node, path: Path = ()) -> list[Path]:
    """Fields the schema does not declare: structured-merge-diff cannot type
    them, so kube-apiserver refuses to apply a configuration that has any."""
    shape = _shape_of(n, value)
    if shape in (Shape.LIST_MAP, Shape.SET):
        return [found for element, item in _items(n, value).items()
                for found in undeclared(item, n.item(), (*path, element))]
    if shape not in (Shape.STRUCT, Shape.MAP) or not isinstance(value, dict):
        return []
    out: list[Path] = []
    for key, sub in value.items():
        child = (*path, field_element(key))
        if shape is Shape.STRUCT and not n.is_field(key):
            out.append(child)
        else:
            out.extend(undeclared(sub, n.child(key), child))
    return out
