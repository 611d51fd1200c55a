"""Custom resources: the kinds that established CustomResourceDefinitions
serve, looked up from the stored definitions (rebuilt after a definition is
written), and the view that serves every version of a kind from its one
stored form, as apiextensions-apiserver does with conversion strategy None:
only the apiVersion differs, and each version's defaults apply on read."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from netplane.api import customresources, meta, resources, structural, typed
from netplane.api.customresources import Served
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.store.base import Store

CRD = resources.CUSTOMRESOURCEDEFINITION
CRD_PREFIX = f"/registry/{CRD.group}/{CRD.plural}/"
# The finalizer a definition holds while its objects are deleted.
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


class Catalog:
    """The served custom kinds, from the definitions in the store."""

    def __init__(self, store: Store, writes: Callable[[], int]) -> None:
        self.store, self._writes = store, writes
        self._seen = -1
        self._by_path: dict[tuple[str, str], Served] = {}
        self._by_resource: dict[Resource, Served] = {}
        self._storage: dict[tuple[str, str], Resource] = {}  # (group, plural)
        self._nodes: dict[Resource, typed.Node] = {}

    def _refresh(self) -> None:
        if self._writes() == self._seen:
            return
        self._seen = self._writes()
        self._by_path, self._by_resource, self._storage, self._nodes = {}, {}, {}, {}
        for kv in self.store.list(CRD_PREFIX)[0]:
            crd = kv.value
            for s in customresources.served(crd):
                self._by_path[(s.resource.api_version, s.resource.plural)] = s
                self._by_resource[s.resource] = s
            for s in _every_version(crd):
                self._by_resource.setdefault(s.resource, s)
                if s.resource.version == s.storage_version:
                    self._storage[(s.resource.group, s.resource.plural)] = s.resource

    def lookup(self, api_version: str, plural: str) -> Resource | None:
        self._refresh()
        found = self._by_path.get((api_version, plural))
        return found.resource if found else None

    def subresources(self, res: Resource) -> frozenset[str]:
        return frozenset({"", "status"}) if self.about(res).status else frozenset({""})

    def served(self) -> list[Resource]:
        self._refresh()
        return [s.resource for s in self._by_path.values()]

    def about(self, res: Resource) -> Served:
        """What a version says of its objects; a version no longer defined
        (its definition being deleted) keeps whatever its objects hold."""
        self._refresh()
        found = self._by_resource.get(res)
        if found is None:
            return Served(res, res.version, {"type": "object", structural.PRESERVE: True},
                          False, (), f"{res.kind}List")
        return found

    def node(self, res: Resource) -> typed.Node:
        """The kind's schema for the field manager, built once per definition
        (typed caches nodes by their schema's identity)."""
        self._refresh()
        found = self._nodes.get(res)
        if found is None:
            found = self._nodes[res] = typed.node(kind_schema(self.about(res), "#/$defs/"))
        return found

    def storage(self, res: Resource) -> Resource:
        self._refresh()
        return self._storage.get((res.group, res.plural), res)

    def stored_kinds(self) -> list[Resource]:
        """One entry per definition, its storage version: what holds objects."""
        self._refresh()
        return list(self._storage.values())

    def taken_names(self, except_name: str) -> set[tuple[str, str]]:
        """(group, name) pairs other definitions' accepted names hold."""
        out: set[tuple[str, str]] = set()
        for kv in self.store.list(CRD_PREFIX)[0]:
            crd = kv.value
            if meta.name(crd) == except_name:
                continue
            accepted = (crd.get("status") or {}).get("acceptedNames") or {}
            group = (crd.get("spec") or {}).get("group", "")
            for n in (accepted.get("plural"), accepted.get("kind"),
                      *(accepted.get("shortNames") or ())):
                if n:
                    out.add((group, n))
        return out


def _every_version(crd: Obj) -> list[Served]:
    """Every version, served or not: the storage version may not be served."""
    spec = crd.get("spec") or {}
    established = dict(crd)
    established["spec"] = {**spec, "versions": [{**v, "served": True}
                                                for v in spec.get("versions") or ()]}
    return customresources.served(established)


OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
# What OpenAPI v2 has no words for: kube leaves these out of its v2 document.
_NOT_IN_V2 = ("nullable", "oneOf", "anyOf", "not", "x-kubernetes-validations")
_API_VERSION = {"type": "string", "description": "APIVersion defines the versioned schema of "
                "this representation of an object."}
_KIND_FIELD = {"type": "string", "description": "Kind is a string value representing the "
               "REST resource this object represents."}


# What every object's body must hold the types of, whatever its schema.
ENVELOPE: Obj = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
    "metadata": {"$ref": "#/$defs/" + OBJECT_META}}}


def definition_name(res: Resource, kind: str = "") -> str:
    """The OpenAPI name of a custom kind, as kube names it: the group's
    labels reversed, the version, the kind (``io.netplane.example.v1.Widget``)."""
    return ".".join([*reversed(res.group.split(".")), res.version, kind or res.kind])


def _for_v2(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _for_v2(v) for k, v in node.items() if k not in _NOT_IN_V2}
    if isinstance(node, list):
        return [_for_v2(v) for v in node]
    return node


def kind_schema(served: Served, ref_prefix: str, *, v2: bool = False) -> Obj:
    """A custom kind's schema with the fields every object has, its
    metadata a reference (``ref_prefix`` says where references point)."""
    out: Obj = copy.deepcopy(served.schema)
    out.setdefault("type", "object")
    props = out.setdefault("properties", {})
    props["apiVersion"], props["kind"] = dict(_API_VERSION), dict(_KIND_FIELD)
    props["metadata"] = {"$ref": ref_prefix + OBJECT_META}
    res = served.resource
    out["x-kubernetes-group-version-kind"] = [
        {"group": res.group, "kind": res.kind, "version": res.version}]
    return _for_v2(out) if v2 else out


def list_schema(served: Served, ref_prefix: str) -> Obj:
    res, list_kind = served.resource, served.list_kind
    return {"description": f"{list_kind} is a list of {res.kind}", "type": "object",
            "required": ["items"],
            "properties": {"apiVersion": dict(_API_VERSION), "kind": dict(_KIND_FIELD),
                           "items": {"type": "array", "description": f"List of {res.plural}.",
                                     "items": {"$ref": ref_prefix + definition_name(res)}},
                           "metadata": {"$ref": ref_prefix + LIST_META}},
            "x-kubernetes-group-version-kind": [
                {"group": res.group, "kind": list_kind, "version": res.version}]}


def as_version(obj: Obj, served: Served, *, shared: bool = False) -> Obj:
    """A stored object as a served version shows it; a copy when ``shared``
    (the watches that get one event share its object)."""
    if shared:
        obj = copy.deepcopy(obj)
    obj["apiVersion"] = served.resource.api_version
    structural.default(obj, served.schema)
    return obj


def column_value(obj: Obj, json_path: str) -> Any:
    """A printer column's value: the simple JSONPaths CRDs use (``.spec.x``,
    ``.status.conditions[0].type``, ``.status.conditions[?(@.type=="Ready")].status``,
    ``.status.addresses[*].value``). Of several results, the first, as
    apiextensions-apiserver's table convertor prints."""
    values: list[Any] = [obj]
    path = json_path.strip().lstrip("{").rstrip("}").lstrip(".")
    for part in _path_parts(path):
        step: list[Any] = []
        for value in values:
            if isinstance(part, int):
                if isinstance(value, list) and -len(value) <= part < len(value):
                    step.append(value[part])
            elif part is ALL:
                step += value if isinstance(value, list) else []
            elif isinstance(part, tuple):
                key, want = part
                step += [i for i in value if isinstance(i, dict) and str(i.get(key)) == want] \
                    if isinstance(value, list) else []
            elif isinstance(value, dict) and value.get(part) is not None:
                step.append(value[part])
        values = step
    return values[0] if values else None


ALL = object()  # "[*]"


_PART = re.compile(r"""\[\?\(@\.([^=)\s]+)\s*==\s*['"]?([^'")]*)['"]?\)\]"""
                   r"|\[(\*|-?\d+|'[^']*'|\"[^\"]*\")\]|\.?([^.\[]+)")


def _path_parts(path: str) -> list[Any]:
    out: list[Any] = []
    for key, want, index, name in _PART.findall(path):
        if key:
            out.append((key, want))
        elif index == "*":
            out.append(ALL)
        elif index:
            out.append(int(index) if index.lstrip("-").isdigit() else index.strip("'\""))
        elif name:
            out.append(name)
    return out
