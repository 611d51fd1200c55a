"""Garbage collector: the other half of deletion with a propagation policy
(netplane.api.deletion), as kube-controller-manager's is.

- An object whose owners (ownerReferences, by uid) are all gone is deleted,
  Background unless its own finalizers say otherwise; one owner still alive
  keeps it, and references to owners that are gone are then dropped.
- An owner deleted in the Foreground (``foregroundDeletion`` finalizer) has
  its dependents deleted, those with dependents of their own in the
  Foreground too; once none with ``blockOwnerDeletion`` is left, the
  finalizer is removed and the API server lets the owner go.
- An owner deleted with Orphan (``orphan`` finalizer) has its reference
  removed from every dependent, then the finalizer.

It watches every kind the server stores (netplane.api.resources), reusing
the shared informers and keeping only metadata for the kinds no other
controller watches, and the kinds of established CustomResourceDefinitions
from when they are established until they go; it acts on informer events
only: no periodic sweep.
Owners are found by uid in the caches; one the cache does not hold is
asked of the API server before anything is deleted. As in kube, a
namespaced owner must be in its dependent's namespace (else it counts as
gone), and a cluster-scoped object naming a namespaced owner, or a kind the
server does not serve, is left alone.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import logging
from collections.abc import Iterable, Sequence

from netplane.api import customresources, meta, resources
from netplane.api.deletion import FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Propagation
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.client import Client, Informer, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers

log = logging.getLogger(__name__)

UID_INDEX = "uid"
OWNER_INDEX = "owner-uid"
JSON_PATCH = "application/json-patch+json"
# kube's collector ignores Events too: many, short-lived, never owners.
IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})
ABSENT_CACHE_SIZE = 1024
DELETE, ORPHAN = "delete", "orphan"


def collected(kinds: Iterable[Resource]) -> list[Resource]:
    """The kinds the collector watches: each stored kind that can be listed,
    watched and deleted, once per group and plural (the first version)."""
    out, seen = [], set()
    for r in kinds:
        key = (r.group, r.plural)
        if key in seen or key in IGNORED or not {"delete", "list", "watch"} <= set(r.verbs):
            continue
        seen.add(key)
        out.append(r)
    return out


def metadata_only(obj: Obj) -> Obj:
    """What the collector keeps of an object no other controller watches."""
    md = {k: v for k, v in (obj.get("metadata") or {}).items()
          if k not in ("managedFields", "annotations", "labels")}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": md}


def owner_refs(obj: Obj) -> list[Obj]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or [])


def finalizers(obj: Obj) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def deleting_dependents(obj: Obj) -> bool:
    return meta.is_deleting(obj) and FOREGROUND_FINALIZER in finalizers(obj)


def orphaning(obj: Obj) -> bool:
    return meta.is_deleting(obj) and ORPHAN_FINALIZER in finalizers(obj)


def blocks(dependent: Obj, owner_uid: str) -> bool:
    """Whether the dependent holds back its owner's Foreground deletion."""
    return any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
               for r in owner_refs(dependent))


def _blocking_uids(obj: Obj) -> set[str]:
    return {str(r.get("uid")) for r in owner_refs(obj) if r.get("blockOwnerDeletion")}


def _uid(obj: Obj) -> tuple[str, ...]:
    return (meta.uid(obj),)


def _owner_uids(obj: Obj) -> tuple[str, ...]:
    return tuple(str(r.get("uid")) for r in owner_refs(obj) if r.get("uid"))


class Verdict(enum.Enum):
    SOLID = "solid"  # the owner exists and is not waiting for its dependents
    DANGLING = "dangling"  # the owner is gone (or never was)
    WAITING = "waiting"  # the owner is being deleted in the Foreground
    UNRESOLVED = "unresolved"  # not a kind the server serves, or not allowed


class GarbageCollector:
    def __init__(self, client: Client, informers: Informers, *,
                 kinds: Iterable[Resource] = resources.ALL) -> None:
        self.client = client
        self.queue = WorkQueue()
        shared = {(inf.res.group, inf.res.plural): inf for inf in informers.all()}
        self.own: list[Informer] = []  # informers of kinds no other controller watches
        self.by_kind: dict[tuple[str, str], Informer] = {}  # (group, kind)
        for res in collected(kinds):
            inf = shared.get((res.group, res.plural))
            if inf is None:
                inf = Informer(client, res, transform=metadata_only)
                self.own.append(inf)
            self._watch_kind(res, inf)
        # Owners verified absent, by namespace and uid: a uid never comes back.
        self.absent: collections.OrderedDict[str, None] = collections.OrderedDict()
        # Custom kinds, watched while their definitions serve them.
        self.definitions = Informer(client, resources.CUSTOMRESOURCEDEFINITION)
        self.definitions.add_handler(self._on_definition)
        self.custom: dict[tuple[str, str], asyncio.Task[None]] = {}  # (group, kind)

    def _watch_kind(self, res: Resource, inf: Informer) -> None:
        self.by_kind[(res.group, res.kind)] = inf
        inf.add_index(UID_INDEX, _uid)
        inf.add_index(OWNER_INDEX, _owner_uids)
        inf.add_handler(functools.partial(self._on_event, inf.res))

    def _on_definition(self, prev: Obj | None, cur: Obj | None) -> None:
        """A custom kind is watched once its definition is established (any
        served version: they are views of the same objects), until it goes."""
        served = customresources.served(cur) if cur is not None else []
        wanted = {(s.resource.group, s.resource.kind): s.resource for s in served[:1]}
        for old in customresources.served(prev) if prev is not None else []:
            key = (old.resource.group, old.resource.kind)
            if key not in wanted and key in self.custom:
                self.custom.pop(key).cancel()
                self.by_kind.pop(key, None)
        for key, res in wanted.items():
            if key not in self.custom and key not in self.by_kind:
                inf = Informer(self.client, res, transform=metadata_only)
                self._watch_kind(res, inf)
                self.custom[key] = asyncio.create_task(inf.run())

    # -- the graph, from the caches --

    def cached(self, uid: str) -> tuple[Resource, Obj] | None:
        for inf in self.by_kind.values():
            for obj in inf.by_index(UID_INDEX, uid):
                return inf.res, obj
        return None

    def dependents(self, uid: str) -> list[tuple[Resource, Obj]]:
        return [(inf.res, obj) for inf in self.by_kind.values()
                for obj in inf.by_index(OWNER_INDEX, uid)]

    def owner_kind(self, dependent: Resource, ref: Obj) -> Resource | None:
        """The kind a reference names, if the server serves it and the
        dependent may have an owner of that kind."""
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        inf = self.by_kind.get((group, str(ref.get("kind", ""))))
        if inf is None or not ref.get("uid") or not ref.get("name"):
            return None
        if inf.res.namespaced and not dependent.namespaced:
            return None
        return inf.res

    def cached_owner(self, dependent: Resource, obj: Obj, ref: Obj) -> Obj | None:
        owner_res = self.owner_kind(dependent, ref)
        if owner_res is None:
            return None
        ns = meta.namespace(obj) if owner_res.namespaced else ""
        for owner in self.by_kind[(owner_res.group, owner_res.kind)].by_index(
                UID_INDEX, str(ref["uid"])):
            if meta.namespace(owner) == ns and meta.name(owner) == ref["name"]:
                return owner
        return None

    def solid_in_cache(self, dependent: Resource, obj: Obj, ref: Obj) -> bool:
        if self.owner_kind(dependent, ref) is None:
            return True  # left alone: nothing to do for it
        owner = self.cached_owner(dependent, obj, ref)
        return owner is not None and not deleting_dependents(owner)

    # -- events --

    def _on_event(self, res: Resource, prev: Obj | None, cur: Obj | None) -> None:
        if prev is not None and (cur is None or meta.uid(prev) != meta.uid(cur)):
            self._gone(prev)
            prev = None
        if cur is None:
            return
        uid = meta.uid(cur)
        if orphaning(cur) and not (prev is not None and orphaning(prev)):
            self.queue.add(f"{ORPHAN}/{uid}")
        if deleting_dependents(cur) and not (prev is not None and deleting_dependents(prev)):
            for _, dep in self.dependents(uid):
                self.queue.add(f"{DELETE}/{meta.uid(dep)}")
            self.queue.add(f"{DELETE}/{uid}")
        if prev is not None and owner_refs(prev) == owner_refs(cur):
            return
        if not all(self.solid_in_cache(res, cur, ref) for ref in owner_refs(cur)):
            self.queue.add(f"{DELETE}/{uid}")
        if prev is not None:  # owners it no longer holds back
            self._wake_owners(_blocking_uids(prev) - _blocking_uids(cur))

    def _gone(self, obj: Obj) -> None:
        for _, dep in self.dependents(meta.uid(obj)):
            self.queue.add(f"{DELETE}/{meta.uid(dep)}")
        self._wake_owners(_blocking_uids(obj))

    def _wake_owners(self, uids: Iterable[str]) -> None:
        for uid in uids:
            hit = self.cached(uid)
            if hit is not None and deleting_dependents(hit[1]):
                self.queue.add(f"{DELETE}/{uid}")

    # -- work --

    async def reconcile(self, key: str) -> None:
        action, _, uid = key.partition("/")
        if action == ORPHAN:
            await self.orphan_dependents(uid)
        else:
            await self.attempt_to_delete(uid)

    async def attempt_to_delete(self, uid: str) -> None:
        hit = self.cached(uid)
        if hit is None:
            return
        res, obj = hit
        if meta.is_deleting(obj):
            if deleting_dependents(obj):
                await self._finish_foreground(res, obj)
            return
        if all(self.solid_in_cache(res, obj, ref) for ref in owner_refs(obj)):
            return
        try:  # decide on the object as it is now, not as the cache has it
            obj = await self.client.get(res, meta.name(obj), meta.namespace(obj) or None)
        except NotFound:
            return
        if meta.uid(obj) != uid or meta.is_deleting(obj) or not owner_refs(obj):
            return
        verdicts = [(ref, await self._classify(res, obj, ref)) for ref in owner_refs(obj)]
        kinds = {v for _, v in verdicts}
        if Verdict.UNRESOLVED in kinds:
            return
        if Verdict.SOLID in kinds:
            # References to owners that are gone, or that wait for their
            # dependents (which would never end), are dropped.
            await self._drop_owner_refs(res, obj, {str(r["uid"]) for r, v in verdicts
                                                   if v is not Verdict.SOLID})
            return
        if Verdict.WAITING in kinds and self.dependents(uid):
            policy = Propagation.FOREGROUND
        elif ORPHAN_FINALIZER in finalizers(obj):
            policy = Propagation.ORPHAN
        elif FOREGROUND_FINALIZER in finalizers(obj):
            policy = Propagation.FOREGROUND
        else:
            policy = Propagation.BACKGROUND
        log.debug("gc: deleting %s %s (%s)", res.kind, meta.namespaced_name(obj), policy)
        try:
            await self.client.delete(res, meta.name(obj), meta.namespace(obj) or None,
                                     propagation_policy=policy.value, preconditions={
                                         "uid": uid, "resourceVersion": str(
                                             meta.meta(obj).get("resourceVersion", ""))})
        except NotFound:
            pass

    async def _classify(self, res: Resource, obj: Obj, ref: Obj) -> Verdict:
        owner_res = self.owner_kind(res, ref)
        if owner_res is None:
            return Verdict.UNRESOLVED
        ns = meta.namespace(obj) if owner_res.namespaced else ""
        absent = f"{ns}/{ref['uid']}"  # a uid absent here may be an owner in its own namespace
        owner = self.cached_owner(res, obj, ref)
        if owner is None:
            if absent in self.absent:
                return Verdict.DANGLING
            try:
                owner = await self.client.get(owner_res, str(ref["name"]), ns or None)
            except NotFound:
                owner = None
            if owner is None or meta.uid(owner) != ref["uid"]:
                self._remember_absent(absent)
                return Verdict.DANGLING
        return Verdict.WAITING if deleting_dependents(owner) else Verdict.SOLID

    def _remember_absent(self, key: str) -> None:
        self.absent[key] = None
        if len(self.absent) > ABSENT_CACHE_SIZE:
            self.absent.popitem(last=False)

    async def _finish_foreground(self, res: Resource, owner: Obj) -> None:
        uid = meta.uid(owner)
        holding = [dep for _, dep in self.dependents(uid) if blocks(dep, uid)]
        if not holding:
            await self._remove_finalizer(res, owner, FOREGROUND_FINALIZER)
            return
        for dep in holding:
            if not deleting_dependents(dep):
                self.queue.add(f"{DELETE}/{meta.uid(dep)}")

    async def orphan_dependents(self, uid: str) -> None:
        hit = self.cached(uid)
        if hit is None or not orphaning(hit[1]):
            return
        for dep_res, dep in self.dependents(uid):
            await self._drop_owner_refs(dep_res, dep, {uid})
        await self._remove_finalizer(hit[0], hit[1], ORPHAN_FINALIZER)

    # -- writes: JSON patches that test what they were computed from --

    async def _drop_owner_refs(self, res: Resource, obj: Obj, uids: set[str]) -> None:
        refs = owner_refs(obj)
        kept = [r for r in refs if r.get("uid") not in uids]
        if len(kept) == len(refs):
            return
        await self._patch(res, obj, "/metadata/ownerReferences", refs, kept)

    async def _remove_finalizer(self, res: Resource, obj: Obj, name: str) -> None:
        have = finalizers(obj)
        if name in have:
            await self._patch(res, obj, "/metadata/finalizers", have,
                              [f for f in have if f != name])

    async def _patch(self, res: Resource, obj: Obj, path: str, old: Sequence[object],
                     new: Sequence[object]) -> None:
        ops: list[Obj] = [{"op": "test", "path": "/metadata/uid", "value": meta.uid(obj)},
                          {"op": "test", "path": path, "value": old}]
        ops.append({"op": "replace", "path": path, "value": new} if new
                   else {"op": "remove", "path": path})
        try:
            await self.client.patch(res, meta.name(obj), ops, meta.namespace(obj) or None,
                                    content_type=JSON_PATCH)
        except NotFound:
            pass

    async def run(self) -> None:
        tasks = [asyncio.create_task(inf.run()) for inf in (*self.own, self.definitions)]
        try:
            await asyncio.gather(*(inf.synced.wait() for inf in self.own))
            await drain("garbage-collector", self.queue, self.reconcile)
        finally:
            tasks.extend(self.custom.values())
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

