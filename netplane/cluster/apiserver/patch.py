"""Patch formats the API accepts: JSON merge patch (RFC 7386), and strategic
merge patch: a merge patch whose lists of named items (containers, ports,
env...) are merged by name instead of replaced, steered by the directives
clients send:

* ``$patch: replace`` in a map replaces the whole map; as an item of a list
  (``{"$patch": "replace"}``) it replaces the whole list with the others;
* ``$patch: delete`` in a map removes that map; in a list item, the item
  with that merge key;
* ``$retainKeys: [...]`` keeps only the named fields of the merged map;
* ``$deleteFromPrimitiveList/<field>: [...]`` removes those values from a
  list of strings or numbers;
* ``$setElementOrder/<field>: [...]`` puts the items named (by merge key,
  or by value for primitives) first and in that order; items the patch
  does not name keep their order after them.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# Lists whose items strategic merge patch merges by a key instead of replacing.
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "ports": "name", "env": "name",
               "volumes": "name", "volumeMounts": "mountPath", "conditions": "type"}
PATCH = "$patch"
RETAIN_KEYS = "$retainKeys"
ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVES = "$deleteFromPrimitiveList/"


class JSONPatchError(ValueError):
    pass


class _Deleted:
    """What a map carrying ``$patch: delete`` merges into: its key goes."""


_DELETED = _Deleted()


def apply_patch(target: Any, patch: Any, content_type: str) -> Any:
    """``target`` with a patch of any of the three formats (by content type);
    a JSON patch that cannot apply raises JSONPatchError."""
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    return merge_patch(target, patch, strategic=content_type == STRATEGIC)


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    if strategic:
        out = _strategic(target, patch)
        if out is _DELETED:
            raise JSONPatchError("$patch: delete cannot remove the whole object; "
                                 "send a DELETE request instead")
        return out
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == PATCH:
            continue
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _plain(value: Any) -> Any:
    """A value with every directive taken out (what replaces, or is added)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_plain(v) for v in value if not _is_marker(v)]
    return copy.deepcopy(value)


def _is_marker(item: Any) -> bool:
    return isinstance(item, dict) and set(item) == {PATCH}


def _strategic(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, list):
        return _merge_list(target if isinstance(target, list) else [], patch, field)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get(PATCH)
    if directive == "replace":
        return _plain(patch)
    if directive == "delete":
        return _DELETED
    if directive not in (None, "merge"):
        raise JSONPatchError(f"unknown $patch directive {directive!r}: use replace, delete "
                             "or merge")
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        merged = None if value is None else _strategic(out.get(key), value, key)
        if merged is None or merged is _DELETED:
            out.pop(key, None)
        else:
            out[key] = merged
    _apply_list_directives(out, patch)
    retain = patch.get(RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise JSONPatchError(f"{RETAIN_KEYS} must be a list of field names")
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _apply_list_directives(out: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, values in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVES):
            field = key[len(DELETE_FROM_PRIMITIVES):]
            if isinstance(out.get(field), list) and isinstance(values, list):
                out[field] = [x for x in out[field] if x not in values]
    for key, order in patch.items():
        if key.startswith(ELEMENT_ORDER):
            field = key[len(ELEMENT_ORDER):]
            if isinstance(out.get(field), list) and isinstance(order, list):
                out[field] = _ordered(out[field], order, _MERGE_KEYS.get(field))


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def name(x: Any) -> Any:
        if key is None:
            return x
        return x.get(key) if isinstance(x, dict) else None

    wanted = [name(o) if key is not None else o for o in order]
    first = [x for w in wanted for x in items if name(x) == w]
    return first + [x for x in items if name(x) not in wanted]


def _merge_list(current: list[Any], patch: list[Any], field: str) -> list[Any]:
    if any(_is_marker(x) and x[PATCH] == "replace" for x in patch):
        return _plain(patch)  # type: ignore[no-any-return]
    key = _MERGE_KEYS.get(field)
    items = [x for x in patch if not _is_marker(x)]
    if key is None or not all(isinstance(x, dict) and key in x for x in current + items):
        return _plain(items)  # type: ignore[no-any-return]
    out = [copy.deepcopy(x) for x in current]
    for item in items:
        at = next((i for i, x in enumerate(out) if x[key] == item[key]), None)
        if at is None:
            if item.get(PATCH) != "delete":
                out.append(_plain(item))
            continue
        merged = _strategic(out[at], item, field)
        if merged is _DELETED:
            del out[at]
        else:
            out[at] = merged
    return out


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 add / remove / replace / test (move and copy are rarely sent)."""
    if not isinstance(ops, list):
        raise JSONPatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        if not parts:
            raise JSONPatchError(f"invalid path {path!r}")
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        try:
            if kind in ("add", "replace"):
                if isinstance(parent, list):
                    idx = len(parent) if last == "-" else int(last)
                    if kind == "add":
                        parent.insert(idx, op["value"])
                    else:
                        parent[idx] = op["value"]
                else:
                    parent[last] = op["value"]
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "test":
                actual = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if actual != op.get("value"):
                    raise JSONPatchError(f"test failed at {path}")
            else:
                raise JSONPatchError(f"unsupported operation {kind!r}")
        except (KeyError, IndexError, ValueError) as e:
            raise JSONPatchError(f"cannot apply {kind} at {path}: {e}") from None
    return doc
