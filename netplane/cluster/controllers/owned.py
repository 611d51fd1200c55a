"""What the DaemonSet and StatefulSet controllers share: their writes
through the API (pods and ControllerRevisions, status, events, requeues)
and the controller around their syncs (handlers, queue, reconcile).

Their own writes are laid over the informers' caches until the caches have
caught up (what client-go's controller expectations are for): a pod just
created is seen at once, a pod just deleted is seen going, so a reconcile
that runs before the watch events arrive does not act twice."""

from __future__ import annotations

import time

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.client import AlreadyExists, ApiError, Client, Informer, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, owned_by, split_key
from netplane.cluster.events import Reason, Recorder, Source


class OwnWrites:
    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        # key -> (resource version of the write, the object written; None: removed)
        self._notes: dict[str, tuple[int, Obj | None]] = {}

    def wrote(self, obj: Obj) -> None:
        """What a create, update or delete answered with."""
        self._notes[meta.namespaced_name(obj)] = (meta.resource_version(obj), obj)

    def removed(self, obj: Obj) -> None:
        """A delete that removed the object at once (the answer is the last state)."""
        self._notes[meta.namespaced_name(obj)] = (meta.resource_version(obj), None)

    def view(self, cached: list[Obj], owner: Obj) -> list[Obj]:
        """``cached`` (the owner's objects in the cache) with the writes the
        informer has not shown yet laid over it."""
        seen = int(self.informer.resource_version or 0)
        self._notes = {k: note for k, note in self._notes.items() if note[0] > seen}
        out = {meta.namespaced_name(o): o for o in cached}
        for key, (_, obj) in self._notes.items():
            if obj is None:
                out.pop(key, None)
            elif owned_by(obj, owner):
                out[key] = obj
        return list(out.values())


class ApiCluster:
    """The Cluster of a DaemonSet or StatefulSet sync, through the API server."""

    def __init__(self, client: Client, owner: Resource, *, pods: OwnWrites,
                 revisions: OwnWrites, events: Recorder, queue: WorkQueue) -> None:
        self.client, self.owner = client, owner
        self.pod_writes, self.revision_writes = pods, revisions
        self.events, self.queue = events, queue

    def now(self) -> float:
        return time.time()

    async def create_pod(self, pod: Obj) -> Obj:
        out = await self.client.create(resources.POD, pod)
        self.pod_writes.wrote(out)
        return out

    async def delete_pod(self, pod: Obj) -> Obj | None:
        """The pod as it goes (terminating), or None when it went at once."""
        out = await self.client.delete(resources.POD, meta.name(pod), meta.namespace(pod))
        if meta.is_deleting(out):
            self.pod_writes.wrote(out)
            return out
        self.pod_writes.removed(out)
        return None

    async def ensure_claim(self, claim: Obj) -> None:
        try:
            await self.client.create(resources.PERSISTENTVOLUMECLAIM, claim,
                                     meta.namespace(claim))
        except AlreadyExists:
            pass  # kept from an earlier pod of the ordinal: its data stays

    async def own_claim(self, namespace: str, name: str, owner: Obj) -> None:
        try:
            claim = await self.client.get(resources.PERSISTENTVOLUMECLAIM, name, namespace)
        except NotFound:
            return
        refs = list(meta.meta(claim).get("ownerReferences") or [])
        if any(r.get("uid") == meta.uid(owner) for r in refs):
            return
        refs.append(meta.owner_ref(owner, controller=False))
        await self.client.patch(resources.PERSISTENTVOLUMECLAIM, name,
                                {"metadata": {"ownerReferences": refs}}, namespace)

    async def patch_pod_labels(self, pod: Obj, labels: dict[str, str]) -> Obj:
        out = await self.client.patch(resources.POD, meta.name(pod),
                                      {"metadata": {"labels": labels}}, meta.namespace(pod))
        self.pod_writes.wrote(out)
        return out

    async def update_status(self, obj: Obj) -> Obj:
        return await self.client.update_status(self.owner, obj)

    async def create_revision(self, rev: Obj) -> Obj:
        out = await self.client.create(resources.CONTROLLERREVISION, rev)
        self.revision_writes.wrote(out)
        return out

    async def get_revision(self, namespace: str, name: str) -> Obj:
        return await self.client.get(resources.CONTROLLERREVISION, name, namespace)

    async def update_revision(self, rev: Obj) -> Obj:
        out = await self.client.update(resources.CONTROLLERREVISION, rev)
        self.revision_writes.wrote(out)
        return out

    async def delete_revision(self, rev: Obj) -> None:
        try:
            out = await self.client.delete(resources.CONTROLLERREVISION, meta.name(rev),
                                           meta.namespace(rev))
            self.revision_writes.removed(out)
        except NotFound:
            pass

    def event(self, obj: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        (self.events.warning if warning else self.events.normal)(obj, reason, message)

    def requeue_after(self, obj: Obj, seconds: float) -> None:
        self.queue.add_after(meta.namespaced_name(obj), seconds)


class OwnerController:
    """A controller of one kind that owns pods and ControllerRevisions:
    an owner is reconciled when it or one of its objects changes; a sync
    sees the cache with the controller's own writes laid over it."""

    name = ""  # as the event source and the logs name it, e.g. "daemonset"

    def __init__(self, client: Client, informers: Informers, resource: Resource,
                 owners: Informer) -> None:
        self.client, self.inf, self.owners = client, informers, owners
        self.kind = resource.kind
        self.events = Recorder(client, Source(f"{self.name}-controller"))
        self.queue = WorkQueue()
        self.pod_writes = OwnWrites(informers.pods)
        self.revision_writes = OwnWrites(informers.controllerrevisions)
        self.cluster = ApiCluster(client, resource, pods=self.pod_writes,
                                  revisions=self.revision_writes, events=self.events,
                                  queue=self.queue)
        owners.add_handler(self._on_owner)
        informers.pods.add_handler(self._on_owned)
        informers.controllerrevisions.add_handler(self._on_owned)

    def _on_owner(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is not None:
            self.queue.add(meta.namespaced_name(obj))

    def _on_owned(self, prev: Obj | None, cur: Obj | None) -> None:
        for obj in (prev, cur):
            ref = meta.controller_of(obj) if obj else None
            if obj and ref and ref.get("kind") == self.kind:
                self.queue.add(f"{meta.namespace(obj)}/{ref['name']}")

    async def sync(self, owner: Obj, pods: list[Obj], revisions: list[Obj]) -> None:
        raise NotImplementedError

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        owner = self.owners.get(name, ns)
        if owner is None:
            return
        pods = self.pod_writes.view(
            [p for p in self.inf.pods.in_namespace(ns) if owned_by(p, owner)], owner)
        revisions = self.revision_writes.view(
            [r for r in self.inf.controllerrevisions.in_namespace(ns) if owned_by(r, owner)],
            owner)
        try:
            await self.sync(owner, pods, revisions)
        except AlreadyExists:
            raise  # a pod of that name is still going, or not ours: retried with backoff
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self.queue.add_after(key, 0.1)  # a stale cache: again once it has caught up

    async def run(self) -> None:
        await drain(self.name, self.queue, self.reconcile)
