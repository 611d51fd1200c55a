"""``metadata.managedFields``: who owns which fields of an object, kept on
every write and used by server-side apply, as kube-apiserver's field
manager keeps them (``k8s.io/apimachinery/pkg/util/managedfields`` over
structured-merge-diff).

Each entry is one manager's field set, for one operation (``Update``: a
create, update or patch; ``Apply``: a server-side apply) and subresource.

* An update gives its manager the fields it added or changed; every other
  manager loses those, and everyone loses the fields it removed.
* An apply merges the configuration into the live object; the applier owns
  exactly the fields of its configuration; the fields it applied last time
  and no longer applies are removed unless someone else owns them; a field
  that it would change and that another manager owns is a conflict, unless
  forced (then the other manager loses it).

Paths are ``netplane.api.fieldpath``, schema-typed walks ``netplane.api.typed``;
this module is pure.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from netplane.api import fieldpath, typed
from netplane.api.fieldpath import FieldSet, Path
from netplane.api.meta import Obj
from netplane.api.typed import Node

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# The manager whose server-side applies keep kubectl's client-side apply
# annotation in step, and may take over fields that annotation vouches for.
KUBECTL = "kubectl"

# Fields nobody owns: identity, versioning and bookkeeping (kube's stripMeta).
STRIPPED: frozenset[Path] = frozenset(
    [("f:apiVersion",), ("f:kind",), ("f:metadata",)]
    + [("f:metadata", f"f:{k}") for k in ("name", "namespace", "creationTimestamp", "selfLink",
                                          "uid", "clusterName", "generation", "managedFields",
                                          "resourceVersion")])


class Operation(enum.Enum):
    APPLY = "Apply"
    UPDATE = "Update"


@dataclass(frozen=True)
class Entry:
    """One managedFields entry."""

    manager: str
    operation: Operation
    api_version: str
    fields: frozenset[Path]
    time: str | None = None
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes two entries the same one: an applier is one entry
        whatever apiVersion it applied with (kube's BuildManagerIdentifier)."""
        version = "" if self.operation is Operation.APPLY else self.api_version
        return (self.manager, self.operation.value, version, self.subresource)

    def to_json(self) -> Obj:
        out: Obj = {"manager": self.manager, "operation": self.operation.value,
                    "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = fieldpath.to_fields_v1(set(self.fields))
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    def described(self) -> str:
        """The manager as a conflict names it (kube's printManager)."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation is Operation.UPDATE:
            text += f" using {self.api_version}"
        return text


def decode(raw: Any) -> list[Entry]:
    """``metadata.managedFields`` as entries; ValueError when malformed."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("managedFields must be a list")
    return [_decode_entry(e) for e in raw]


def _decode_entry(raw: Any) -> Entry:
    if not isinstance(raw, dict):
        raise ValueError("a managedFields entry must be an object")
    try:
        operation = Operation(raw.get("operation"))
    except ValueError:
        raise ValueError("operation must be `Apply` or `Update`") from None
    if not raw.get("apiVersion"):
        raise ValueError("apiVersion must not be empty")
    if raw.get("fieldsType") != "FieldsV1":
        raise ValueError(f"invalid fieldsType {raw.get('fieldsType')!r}")
    fields = fieldpath.from_fields_v1(raw.get("fieldsV1") or {})
    return Entry(str(raw.get("manager", "")), operation, str(raw["apiVersion"]),
                 frozenset(fields), raw.get("time"), str(raw.get("subresource", "")))


def encode(entries: Iterable[Entry]) -> list[Obj]:
    """Entries in kube's order: appliers first, then by time, manager,
    apiVersion and subresource."""
    def order(e: Entry) -> tuple[str, str, str, str, str]:
        return (e.operation.value, e.time or "", e.manager, e.api_version, e.subresource)
    return [e.to_json() for e in sorted(entries, key=order)]


@dataclass(frozen=True)
class Scope:
    """Where a write lands: the kind's schema node and apiVersion, and the
    subresource, which decides the fields that write may own (kube's reset
    fields: the main resource never owns status, /status owns only status,
    /scale only the replicas, a CertificateSigningRequest's /approval only
    its conditions)."""

    node: Node
    api_version: str
    subresource: str = ""

    def counts(self, path: Path) -> bool:
        if path in STRIPPED:
            return False
        if self.subresource == "status":
            return path[:1] == ("f:status",)
        if self.subresource == "scale":
            return path == ("f:spec", "f:replicas")
        if self.subresource == "approval":
            return path[:2] == ("f:status", "f:conditions")
        return path[:1] != ("f:status",)

    def only(self, paths: Iterable[Path]) -> FieldSet:
        return {p for p in paths if self.counts(p)}


def _clean(obj: Obj | None) -> Obj:
    """An object as field management compares it: without its managedFields."""
    if not obj:
        return {}
    md = obj.get("metadata")
    if not isinstance(md, dict) or "managedFields" not in md:
        return obj
    # merge() copies what it keeps, so a shallow copy is enough here.
    return {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}


def _as_go(obj: Obj | None, scope: Scope) -> Obj:
    """An object as Go holds it, for comparing: what Go always writes
    (``status: {}``...) is there even when the stored JSON lacks it."""
    merged: Obj = typed.merge(_zero(scope.node), _clean(obj), scope.node, share=True)
    return merged


def _comparison(old: Obj, new: Obj, scope: Scope) -> typed.Comparison:
    cmp = typed.compare(_as_go(old, scope), _as_go(new, scope), scope.node)
    return typed.Comparison(scope.only(cmp.added), scope.only(cmp.modified),
                            scope.only(cmp.removed))


def _without(entries: Iterable[Entry], lost: FieldSet) -> list[Entry]:
    """Entries less the lost fields; an entry left with nothing goes."""
    out = []
    for e in entries:
        kept = e.fields - lost
        if kept:
            out.append(dataclasses.replace(e, fields=frozenset(kept)))
    return out


def _find(entries: Iterable[Entry], identity: tuple[str, str, str, str]) -> Entry | None:
    return next((e for e in entries if e.identity == identity), None)


# -- updates --

def update(entries: list[Entry], old: Obj | None, new: Obj, scope: Scope, *, manager: str,
           now: str) -> list[Entry]:
    """The entries after ``manager`` turned ``old`` into ``new`` with a
    create (``old`` None), update or patch."""
    cmp = _comparison(old or {}, new, scope)
    mine = cmp.changed()
    out = _without(entries, mine | cmp.removed)
    if not mine:
        return out
    me = Entry(manager, Operation.UPDATE, scope.api_version, frozenset(), None, scope.subresource)
    prev = _find(out, me.identity)
    fields = frozenset(mine | (prev.fields if prev else set()))
    rest = [e for e in out if e.identity != me.identity]
    return cap_updates([*rest, dataclasses.replace(me, fields=fields, time=now)])


MAX_UPDATE_MANAGERS = 10
ANCIENT = "ancient-changes"


def cap_updates(entries: list[Entry], limit: int = MAX_UPDATE_MANAGERS) -> list[Entry]:
    """At most ``limit`` Update entries: beyond that the oldest are folded,
    per apiVersion, into one ``ancient-changes`` entry (as kube does, so
    that objects many clients touch do not grow without end)."""
    updates = sorted((e for e in entries if e.operation is Operation.UPDATE),
                     key=lambda e: (e.time or "", e.identity))
    if len(updates) <= limit:
        return entries
    out = [e for e in entries if e.operation is not Operation.UPDATE]
    kept = {e.identity: e for e in updates}
    first: dict[str, Entry] = {}
    count = len(updates)
    for e in updates:
        if count <= limit:
            break
        seed = first.setdefault(e.api_version, e)
        if seed is e:
            continue
        bucket = Entry(ANCIENT, Operation.UPDATE, e.api_version, frozenset())
        prev = kept.pop(bucket.identity, None) or kept.pop(seed.identity)
        kept.pop(e.identity)
        kept[bucket.identity] = dataclasses.replace(bucket, fields=prev.fields | e.fields,
                                                    time=e.time)
        count -= 1
    return out + list(kept.values())


# The members of Go structs that encoding/json always writes: structs held
# by value ({}) and lists without omitempty (null). A create is compared
# with the zero object they make, so that these are never "added" as a
# whole (no "." for them in FieldsV1), as with kube-apiserver's zero object.
_BY_VALUE: dict[str, tuple[str, ...]] = {
    "io.k8s.api.core.v1.PodTemplateSpec": ("metadata", "spec"),
    "io.k8s.api.batch.v1.JobTemplateSpec": ("metadata", "spec"),
    "io.k8s.api.apps.v1.DeploymentSpec": ("template", "strategy"),
    "io.k8s.api.apps.v1.ReplicaSetSpec": ("template",),
    "io.k8s.api.apps.v1.DaemonSetSpec": ("template", "updateStrategy"),
    "io.k8s.api.apps.v1.StatefulSetSpec": ("template", "updateStrategy"),
    "io.k8s.api.batch.v1.JobSpec": ("template",),
    "io.k8s.api.batch.v1.CronJobSpec": ("jobTemplate",),
    "io.k8s.api.core.v1.ServiceStatus": ("loadBalancer",),
    "io.k8s.api.core.v1.NodeStatus": ("daemonEndpoints", "nodeInfo"),
    "io.k8s.api.core.v1.NodeDaemonEndpoints": ("kubeletEndpoint",),
    "io.k8s.api.networking.v1.NetworkPolicySpec": ("podSelector",),
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec": ("scaleTargetRef",),
    "io.k8s.api.rbac.v1.RoleBinding": ("roleRef",),
    "io.k8s.api.rbac.v1.ClusterRoleBinding": ("roleRef",),
    "io.k8s.api.core.v1.Event": ("involvedObject", "source"),
    "io.k8s.api.core.v1.Binding": ("target",),
}
_ALWAYS_NULL: dict[str, tuple[str, ...]] = {
    "io.k8s.api.core.v1.PodSpec": ("containers",),
    "io.k8s.api.discovery.v1.EndpointSlice": ("endpoints",),
}
# Every kind holds its metadata, spec and status by value.
_KIND_PARTS = ("metadata", "spec", "status")


_ZEROS: dict[str, Obj] = {}


def _zero(n: Node) -> Obj:
    """``zero`` of a kind, made once: for reading only."""
    if n.name not in _ZEROS:
        _ZEROS[n.name] = zero(n)
    return _ZEROS[n.name]


def zero(n: Node) -> Obj:
    """The zero object of a kind, as Go would write it (see _BY_VALUE)."""
    parts = _KIND_PARTS if n.schema.get("x-kubernetes-group-version-kind") else ()
    by_value = (*parts, *_BY_VALUE.get(n.name, ()))
    out: Obj = {}
    for key in by_value:
        if n.is_field(key):
            out[key] = zero(n.child(key))
    for key in _ALWAYS_NULL.get(n.name, ()):
        out[key] = None
    return out


# -- server-side apply --

@dataclass(frozen=True)
class Conflict:
    entry: Entry
    path: Path

    def __str__(self) -> str:
        return f"conflict with {self.entry.described()}: {fieldpath.path_string(self.path)}"


class Conflicts(Exception):
    """An apply would change fields other managers own."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = conflicts
        super().__init__(self.message())

    def message(self) -> str:
        """kube-apiserver's wording, managers sorted when there are several."""
        if len(self.conflicts) == 1:
            return f"Apply failed with 1 conflict: {self.conflicts[0]}"
        by_manager: dict[Entry, list[str]] = {}
        for c in self.conflicts:
            by_manager.setdefault(c.entry, []).append(fieldpath.path_string(c.path))
        lines = []
        for entry in sorted(by_manager, key=lambda e: e.identity):
            lines.append(f"conflicts with {entry.described()}:")
            lines.extend(f"- {p}" for p in by_manager[entry])
        return f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[Obj]:
        return [{"reason": "FieldManagerConflict",
                 "message": f"conflict with {c.entry.described()}",
                 "field": fieldpath.path_string(c.path)} for c in self.conflicts]


def apply(entries: list[Entry], live: Obj | None, config: Obj, scope: Scope, *, manager: str,
          force: bool, now: str) -> tuple[Obj, list[Entry]]:
    """Server-side apply of ``config`` by ``manager`` onto ``live`` (None:
    the object does not exist yet). Returns the new object (managedFields
    not yet set) and entries; raises Conflicts."""
    try:
        return _apply(entries, live, config, scope, manager=manager, force=force, now=now)
    except Conflicts as e:
        if manager != KUBECTL or force or live is None:
            raise
        left = _not_vouched(e.conflicts, live, scope)
        if left:
            raise Conflicts(left) from None
        return _apply(entries, live, config, scope, manager=manager, force=True, now=now)


def _apply(entries: list[Entry], live: Obj | None, config: Obj, scope: Scope, *, manager: str,
           force: bool, now: str) -> tuple[Obj, list[Entry]]:
    applied = {p for p in typed.field_set(config, scope.node) if _applies(scope, p)}
    me = Entry(manager, Operation.APPLY, scope.api_version, frozenset(), None, scope.subresource)
    last = _find(entries, me.identity)
    others = [e for e in entries if e.identity != me.identity]
    owned = applied.union(*(e.fields for e in others))
    merged = typed.merge(_clean(live), config, scope.node)
    new = typed.prune(merged, set(last.fields) if last else set(), owned, scope.node)
    cmp = _comparison(live or {}, new, scope)
    changed = cmp.changed()
    conflicts = [Conflict(e, p) for e in others for p in fieldpath.iterate(e.fields & changed)]
    if conflicts and not force:
        raise Conflicts(conflicts)
    out = _without(others, changed | cmp.removed)
    mine = frozenset(scope.only(applied))
    if mine:
        unchanged = last is not None and last.fields == mine and not cmp.changed()
        out.append(dataclasses.replace(me, fields=mine,
                                       time=last.time if unchanged and last else now))
    if manager == KUBECTL and live is not None:
        _keep_last_applied(new, config)
    return new, out


def _applies(scope: Scope, path: Path) -> bool:
    """Applied fields the applier may own; identity fields are kept until
    the end, so that pruning never takes the object's name away."""
    return path in STRIPPED or scope.counts(path)


def _not_vouched(conflicts: list[Conflict], live: Obj, scope: Scope) -> list[Conflict]:
    """Conflicts kubectl's client-side apply annotation does not vouch for.
    Moving from client-side to server-side apply, kubectl may take over the
    fields it applied before and that still hold the values it applied."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        last_applied = json.loads(annotations.get(LAST_APPLIED) or "null")
    except ValueError:
        return conflicts
    if not isinstance(last_applied, dict) or last_applied.get("apiVersion") != scope.api_version:
        return conflicts
    cmp = typed.compare(last_applied, _clean(live), scope.node)
    vouched = typed.field_set(last_applied, scope.node) - cmp.changed() - cmp.removed
    return [c for c in conflicts if c.path not in vouched]


def _keep_last_applied(new: Obj, config: Obj) -> None:
    """A server-side apply by kubectl rewrites the client-side apply
    annotation, when there is one, so that both agree."""
    annotations = (new.get("metadata") or {}).get("annotations") or {}
    if not annotations.get(LAST_APPLIED):
        return
    body = copy.deepcopy(config)
    (body.get("metadata") or {}).get("annotations", {}).pop(LAST_APPLIED, None)
    annotations[LAST_APPLIED] = json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"
