"""The scheduling loop: watches pods and nodes, binds each pending pod."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging

from netplane.api import meta, resources, storage
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client, Informer
from netplane.cluster.events import Reason, Recorder, Source
from netplane.cluster.scheduler import plugins
from netplane.cluster.scheduler.framework import FilterPlugin, NodeInfo, schedule
from netplane.cluster.scheduler.volumes import VolumeBinding

log = logging.getLogger(__name__)
RETRY_SECONDS = 2.0


def _pending(pod: Obj) -> bool:
    return not pod.get("spec", {}).get("nodeName") and not meta.is_deleting(pod) \
        and pod.get("status", {}).get("phase", "Pending") == "Pending"


class Scheduler:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.events = Recorder(client, Source("default-scheduler"))
        self.pods = Informer(client, resources.POD)
        self.nodes = Informer(client, resources.NODE)
        self.claims = Informer(client, resources.PERSISTENTVOLUMECLAIM)
        self.volumes = Informer(client, resources.PERSISTENTVOLUME)
        self.classes = Informer(client, resources.STORAGECLASS)
        self.volume_binding = VolumeBinding(lambda ns, n: self.claims.get(n, ns),
                                            self.volumes.get, self.classes.get)
        self.filters: tuple[FilterPlugin, ...] = (*plugins.DEFAULT_FILTERS, self.volume_binding)
        self.wake = asyncio.Event()
        # Pods decided (bound or being bound) but not yet seen bound in the
        # cache, so counts stay right.
        self.assumed: dict[str, str] = {}
        self.binding: set[asyncio.Task[None]] = set()

    def _poke(self, prev: Obj | None, cur: Obj | None) -> None:
        self.wake.set()

    def node_infos(self) -> list[NodeInfo]:
        counts: dict[str, int] = {}
        for pod in self.pods.items():
            node = pod.get("spec", {}).get("nodeName") or self.assumed.get(meta.uid(pod))
            if node:
                counts[node] = counts.get(node, 0) + 1
        return [NodeInfo(n, counts.get(meta.name(n), 0)) for n in self.nodes.items()]

    async def schedule_one(self, pod: Obj, infos: list[NodeInfo] | None = None) -> None:
        """The scheduling cycle: a decision, the pod assumed on its node (so
        the next decision counts it), then the binding cycle in a task of its
        own, as kube-scheduler runs it, so that one bind's round trip holds
        up no other pod."""
        infos = self.node_infos() if infos is None else infos
        decision = schedule(pod, infos, self.filters, plugins.DEFAULT_SCORERS)
        if decision.node is None:
            await self._unschedulable(pod, decision.message)
            return
        self.assumed[meta.uid(pod)] = decision.node
        for i, info in enumerate(infos):
            if meta.name(info.node) == decision.node:
                infos[i] = dataclasses.replace(info, pods=info.pods + 1)
        task = asyncio.create_task(self._bind(pod, decision.node))
        self.binding.add(task)
        task.add_done_callback(self.binding.discard)

    async def _bind(self, pod: Obj, node: str) -> None:
        try:
            # PreBind: claims that waited for this pod learn where it goes.
            for pvc in self.volume_binding.to_provision(pod):
                await self.client.patch(resources.PERSISTENTVOLUMECLAIM, meta.name(pvc), {
                    "metadata": {"annotations": {storage.SELECTED_NODE: node}}},
                    meta.namespace(pvc))
            await self.client.bind(pod, node)
        except ApiError as e:
            # Forgotten, so that the next pass decides again (kube's unreserve).
            log.debug("binding %s failed: %s", meta.namespaced_name(pod), e)
            self.assumed.pop(meta.uid(pod), None)
            self.wake.set()
            return
        log.info("bound %s to %s", meta.namespaced_name(pod), node)
        self.events.normal(pod, Reason.SCHEDULED, f"Successfully assigned "
                           f"{meta.namespaced_name(pod)} to {node}")

    async def _unschedulable(self, pod: Obj, message: str) -> None:
        cond = meta.condition(pod, "PodScheduled")
        if cond and cond.get("message") == message:
            return
        # A copy: the informer's cached pod must stay what the server said, or
        # a failed update would look done and never be retried.
        pod = copy.deepcopy(pod)
        meta.set_condition(pod, "PodScheduled", False, "Unschedulable", message)
        self.events.warning(pod, Reason.FAILED_SCHEDULING, message)
        try:
            await self.client.update_status(resources.POD, pod)
        except ApiError:
            pass

    async def run(self) -> None:
        informers = (self.pods, self.nodes, self.claims, self.volumes, self.classes)
        for inf in informers:
            inf.add_handler(self._poke)
        tasks = [asyncio.create_task(inf.run()) for inf in informers]
        try:
            await asyncio.gather(*(inf.synced.wait() for inf in informers))
            while True:
                self.wake.clear()
                waiting = {meta.uid(p) for p in self.pods.items()
                           if not p.get("spec", {}).get("nodeName")}
                self.assumed = {u: n for u, n in self.assumed.items() if u in waiting}
                infos = self.node_infos()
                for pod in sorted(self.pods.items(),
                                  key=lambda p: p["metadata"].get("creationTimestamp", "")):
                    if _pending(pod) and meta.uid(pod) not in self.assumed:
                        await self.schedule_one(pod, infos)
                try:
                    await asyncio.wait_for(self.wake.wait(), RETRY_SECONDS)
                except TimeoutError:
                    pass
        finally:
            for t in [*tasks, *self.binding]:
                t.cancel()
