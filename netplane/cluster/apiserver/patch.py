"""Patch formats the API accepts: JSON merge patch (RFC 7386), and strategic
merge patch, applied here as a merge patch whose lists of named items
(containers, ports, env...) are merged by name instead of replaced."""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# Lists whose items strategic merge patch merges by a key instead of replacing.
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "ports": "name", "env": "name",
               "volumes": "name", "volumeMounts": "mountPath", "conditions": "type"}


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == "$patch":
            continue
        if value is None:
            out.pop(key, None)
        elif strategic and key in _MERGE_KEYS and isinstance(value, list) \
                and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value, _MERGE_KEYS[key])
        else:
            out[key] = merge_patch(out.get(key), value, strategic=strategic)
    return out


def _merge_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    if not all(isinstance(x, dict) and key in x for x in current + patch):
        return copy.deepcopy(patch)
    out = [copy.deepcopy(x) for x in current]
    index = {x[key]: i for i, x in enumerate(out)}
    for item in patch:
        if item.get("$patch") == "delete":
            out = [x for x in out if x[key] != item[key]]
            index = {x[key]: i for i, x in enumerate(out)}
        elif item[key] in index:
            out[index[item[key]]] = merge_patch(out[index[item[key]]], item, strategic=True)
        else:
            index[item[key]] = len(out)
            out.append(copy.deepcopy(item))
    return out


class JSONPatchError(ValueError):
    pass


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
