"""Garbage collector: deletes objects whose owner (by ownerReferences uid) is
gone, so deleting a Deployment removes its ReplicaSets and their pods, and
deleting a DaemonSet or StatefulSet its pods and ControllerRevisions."""

from __future__ import annotations

import asyncio

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client, Informer, NotFound
from netplane.cluster.controllers.shared import Informers

SWEEP_SECONDS = 1.0
UID_INDEX = "uid"


class GarbageCollector:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client = client
        self.owners: dict[str, Informer] = {"Deployment": informers.deployments,
                                            "ReplicaSet": informers.replicasets,
                                            "Service": informers.services,
                                            "Node": informers.nodes,
                                            "Job": informers.jobs,
                                            "CronJob": informers.cronjobs,
                                            "DaemonSet": informers.daemonsets,
                                            "StatefulSet": informers.statefulsets}
        self.dependents = [(resources.REPLICASET, informers.replicasets),
                           (resources.POD, informers.pods),
                           (resources.ENDPOINTSLICE, informers.endpointslices),
                           (resources.JOB, informers.jobs),
                           (resources.CONTROLLERREVISION, informers.controllerrevisions)]
        self.wake = asyncio.Event()
        for inf in self.owners.values():
            inf.add_index(UID_INDEX, lambda o: (meta.uid(o),))
            inf.add_handler(self._on_owner)
        for _, inf in self.dependents:
            inf.add_handler(self._on_dependent)

    def _on_owner(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is None:
            self.wake.set()

    def _on_dependent(self, prev: Obj | None, cur: Obj | None) -> None:
        # One created (or seen) after its owner went, e.g. a pod a ReplicaSet
        # controller made as the ReplicaSet was deleted: swept now, not at
        # the next periodic sweep.
        if cur is not None and self.orphaned(cur):
            self.wake.set()

    def orphaned(self, obj: Obj) -> bool:
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        known = [r for r in refs if r.get("kind") in self.owners]
        if not known or len(known) != len(refs):
            return False
        for ref in known:
            inf = self.owners[ref["kind"]]
            if not inf.synced.is_set():
                return False
            if inf.by_index(UID_INDEX, str(ref.get("uid"))):
                return False
        return True

    async def sweep(self) -> None:
        for res, inf in self.dependents:
            if not inf.synced.is_set():
                continue
            for obj in inf.items():
                if self.orphaned(obj) and not meta.is_deleting(obj):
                    try:
                        await self.client.delete(res, meta.name(obj), meta.namespace(obj))
                    except NotFound:
                        pass

    async def run(self) -> None:
        while True:
            self.wake.clear()
            await self.sweep()
            try:
                await asyncio.wait_for(self.wake.wait(), SWEEP_SECONDS * 10)
            except TimeoutError:
                pass
