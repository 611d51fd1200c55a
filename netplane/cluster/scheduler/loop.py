"""The scheduling loop: watches pods, nodes and what volumes and affinity
depend on; each pass takes the pods the queue says are ready, builds one
snapshot of the nodes and decides them in turn, each pod assumed on its
node before the next is decided."""

from __future__ import annotations

import asyncio
import copy
import logging
import time

from netplane.api import meta, resources, selectors, storage
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client, Informer
from netplane.cluster.events import Reason, Recorder, Source
from netplane.cluster.scheduler import events
from netplane.cluster.scheduler.framework import schedule
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo, snapshot
from netplane.cluster.scheduler.profiles import default_profile
from netplane.cluster.scheduler.queue import Clock, SchedulingQueue
from netplane.cluster.scheduler.spread import default_selector
from netplane.cluster.scheduler.volumes import VolumeBinding

log = logging.getLogger(__name__)


def _pending(pod: Obj) -> bool:
    return not pod.get("spec", {}).get("nodeName") and not meta.is_deleting(pod) \
        and pod.get("status", {}).get("phase", "Pending") == "Pending"


def _key(pod: Obj) -> str:
    return meta.namespaced_name(pod)


class Scheduler:
    def __init__(self, client: Client, *, clock: Clock = time.monotonic) -> None:
        self.client = client
        self.events = Recorder(client, Source("default-scheduler"))
        self.pods = Informer(client, resources.POD)
        self.nodes = Informer(client, resources.NODE)
        self.namespaces = Informer(client, resources.NAMESPACE)
        self.claims = Informer(client, resources.PERSISTENTVOLUMECLAIM)
        self.volumes = Informer(client, resources.PERSISTENTVOLUME)
        self.classes = Informer(client, resources.STORAGECLASS)
        # What the system-default spreading reads: who selects a pod.
        self.services = Informer(client, resources.SERVICE)
        self.owners = {"ReplicaSet": Informer(client, resources.REPLICASET),
                       "StatefulSet": Informer(client, resources.STATEFULSET)}
        self.volume_binding = VolumeBinding(lambda ns, n: self.claims.get(n, ns),
                                            self.volumes.get, self.classes.get)
        self.profile = default_profile(volume_binding=self.volume_binding,
                                       namespace_labels=self._namespace_labels,
                                       default_selector=self._default_selector)
        self.queue = SchedulingQueue(clock=clock)
        self.clock = clock
        self.wake = asyncio.Event()
        # Pods decided (bound or being bound) but not yet seen bound in the
        # cache, so that the next snapshot still counts them on their node.
        self.assumed: dict[str, str] = {}
        self.binding: set[asyncio.Task[None]] = set()

    def _namespace_labels(self, name: str) -> dict[str, str]:
        ns = self.namespaces.get(name)
        return meta.labels(ns) if ns is not None else {}

    def _default_selector(self, pod: Obj) -> selectors.Selector | None:
        ref = meta.controller_of(pod)
        owners = self.owners.get(str(ref.get("kind"))) if ref else None
        owner = owners.get(str(ref["name"]), meta.namespace(pod)) if owners and ref else None
        return default_selector(pod, self.services.in_namespace(meta.namespace(pod)), owner)

    def _cached(self, key: str) -> Obj | None:
        namespace, name = key.split("/", 1)
        return self.pods.get(name, namespace)

    def _moved(self, cures: frozenset[str] | None) -> None:
        self.queue.move(cures)
        self.wake.set()

    def on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is None or not _pending(cur):
            gone = prev if cur is None else cur
            if gone is not None:
                self.queue.remove(_key(gone))
        elif prev is None or events.pod_spec_changed(prev, cur):
            self.queue.add(_key(cur))
            self.queue.update(_key(cur))
        cures = events.pod_event_cures(prev, cur)
        if cures:
            self.queue.move(cures)
        self.wake.set()

    def on_node(self, prev: Obj | None, cur: Obj | None) -> None:
        if events.node_event_matters(prev, cur):
            self._moved(None)

    def on_namespace(self, prev: Obj | None, cur: Obj | None) -> None:
        if prev is None or cur is None or meta.labels(prev) != meta.labels(cur):
            self._moved(events.NAMESPACE_CURES)

    def on_storage(self, prev: Obj | None, cur: Obj | None) -> None:
        self._moved(events.STORAGE_CURES)

    def node_infos(self) -> list[NodeInfo]:
        return snapshot(self.nodes.items(), self.pods.items(), self.assumed)

    async def schedule_one(self, pod: Obj, infos: list[NodeInfo] | None = None) -> None:
        """The scheduling cycle: a decision, the pod assumed on its node (so
        the next decision counts it), then the binding cycle in a task of its
        own, as kube-scheduler runs it, so that one bind's round trip holds
        up no other pod."""
        infos = self.node_infos() if infos is None else infos
        decision = schedule(pod, infos, self.profile)
        if decision.node is None:
            self.queue.failed(_key(pod), decision.rejectors)
            await self._unschedulable(pod, decision.message)
            return
        self.assumed[meta.uid(pod)] = decision.node
        for info in infos:
            if info.name == decision.node:
                info.add_pod(PodInfo.of(pod))
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
            # Forgotten, and tried again after back-off (kube's unreserve).
            log.debug("binding %s failed: %s", meta.namespaced_name(pod), e)
            self.assumed.pop(meta.uid(pod), None)
            self.queue.errored(_key(pod))
            self.wake.set()
            return
        self.queue.succeeded(_key(pod))
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

    async def run_pass(self) -> None:
        """Decides every pod the queue has ready, over one snapshot."""
        keys = self.queue.pop_ready()
        if not keys:
            return
        waiting = {meta.uid(p) for p in self.pods.items()
                   if not p.get("spec", {}).get("nodeName")}
        self.assumed = {u: n for u, n in self.assumed.items() if u in waiting}
        infos = self.node_infos()
        ready = [p for k in keys if (p := self._cached(k)) is not None]
        for pod in sorted(ready, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            if _pending(pod) and meta.uid(pod) not in self.assumed:
                await self.schedule_one(pod, infos)

    async def run(self) -> None:
        handlers = ((self.pods, self.on_pod), (self.nodes, self.on_node),
                    (self.namespaces, self.on_namespace), (self.claims, self.on_storage),
                    (self.volumes, self.on_storage), (self.classes, self.on_storage))
        for inf, handler in handlers:
            inf.add_handler(handler)
        informers = [*(inf for inf, _ in handlers), self.services, *self.owners.values()]
        tasks = [asyncio.create_task(inf.run()) for inf in informers]
        try:
            await asyncio.gather(*(inf.synced.wait() for inf in informers))
            while True:
                self.wake.clear()
                await self.run_pass()
                deadline = self.queue.next_deadline()
                timeout = None if deadline is None else max(deadline - self.clock(), 0.0)
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            for t in [*tasks, *self.binding]:
                t.cancel()

