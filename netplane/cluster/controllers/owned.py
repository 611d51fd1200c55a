"""What the DaemonSet and StatefulSet controllers write through the API:
their pods and ControllerRevisions, their status, events and requeues.

Their own writes are laid over the informers' caches until the caches have
caught up (what client-go's controller expectations are for): a pod just
created is seen at once, a pod just deleted is seen going, so a reconcile
that runs before the watch events arrive does not act twice."""

from __future__ import annotations

import time

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.client import AlreadyExists, Client, Informer, NotFound
from netplane.cluster.controllers.queue import WorkQueue
from netplane.cluster.controllers.shared import owned_by
from netplane.cluster.events import Reason, Recorder


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
