"""The scheduling loop: watches pods, nodes and what volumes, affinity and
preemption depend on; each pass takes the pods the queue says are ready,
highest priority first, builds one snapshot of the nodes and decides them
in turn, each pod assumed on its node before the next is decided. A pod
that fits nowhere may preempt: its victims are evicted, and it is
nominated to their node, where pods of lower priority leave it room."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterator

from netplane.api import meta, priority, resources, selectors, storage
from netplane.api.meta import Obj
from netplane.cluster.client import UNREACHABLE, ApiError, Client, Informer
from netplane.cluster.events import Reason, Recorder, Source
from netplane.cluster.scheduler import events
from netplane.cluster.scheduler.config import DEFAULT_SCHEDULER, Deps, ProfileSpec, build
from netplane.cluster.scheduler.framework import (
    Equivalence,
    Nominated,
    PostFilterResult,
    Profile,
    Trace,
    schedule,
)
from netplane.cluster.scheduler.nodeinfo import NodeCache, NodeInfo, PodInfo, Snapshot, snapshot
from netplane.cluster.scheduler.preemption import PREEMPTION_BY_SCHEDULER
from netplane.cluster.scheduler.queue import Clock, SchedulingQueue
from netplane.cluster.scheduler.spread import default_selector
from netplane.cluster.scheduler.volumes import VolumeBinding

log = logging.getLogger(__name__)
_BIND_FAILED: tuple[type[Exception], ...] = (ApiError, *UNREACHABLE)


def _pending(pod: Obj) -> bool:
    return not pod.get("spec", {}).get("nodeName") and not meta.is_deleting(pod) \
        and pod.get("status", {}).get("phase", "Pending") == "Pending"


def scheduler_name(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER)


def _key(pod: Obj) -> str:
    return meta.namespaced_name(pod)


def _renominate(nominated: dict[str, list[PodInfo]], pod: Obj, node: str) -> None:
    """The pass's nominations with ``pod`` moved to ``node`` (or nowhere)."""
    uid = meta.uid(pod)
    for infos in nominated.values():
        infos[:] = [p for p in infos if meta.uid(p.pod) != uid]
    if node:
        nominated.setdefault(node, []).append(PodInfo.of(pod))


class Scheduler:
    def __init__(self, client: Client, *, clock: Clock = time.monotonic,
                 profiles: list[ProfileSpec] | None = None) -> None:
        self.client = client
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
        self.budgets = Informer(client, resources.PODDISRUPTIONBUDGET)
        deps = Deps(self.volume_binding, self._namespace_labels, self._default_selector,
                    self.budgets.items)
        # One profile per schedulerName; pods naming another are not ours.
        self.profiles = {spec.name: build(spec, deps) for spec in profiles or [ProfileSpec()]}
        self.profile = self.profiles.get(DEFAULT_SCHEDULER) or next(iter(self.profiles.values()))
        self.recorders = {name: Recorder(client, Source(name)) for name in self.profiles}
        # Where the next pod's filtering starts (kube goes round the nodes).
        self.next_start = 0
        self.equivalence = Equivalence()
        self.queue = SchedulingQueue(clock=clock)
        self.clock = clock
        self.wake = asyncio.Event()
        # Pods decided (bound or being bound) but not yet seen bound in the
        # cache, so that the next snapshot still counts them on their node.
        self.assumed: dict[str, str] = {}
        self.binding: set[asyncio.Task[None]] = set()
        # The nodes and the pods they hold, kept from events (and assumptions).
        self.cache = NodeCache()
        # Nominations this scheduler made or cleared ("") that the cache may
        # not show yet, by pod uid.
        self.nominations: dict[str, str] = {}

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

    def ours(self, pod: Obj) -> bool:
        return scheduler_name(pod) in self.profiles

    def _cache_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        """Bound pods go to the cache as the API has them; an assumed pod's
        assumption holds until its binding is seen (kube's cache takes only
        assigned pods), unless it is deleted."""
        if cur is None:
            if prev is not None:
                self.cache.remove_pod(meta.uid(prev))
        elif (cur.get("spec") or {}).get("nodeName"):
            self.cache.set_pod(cur)
        elif meta.uid(cur) not in self.assumed:
            self.cache.remove_pod(meta.uid(cur))

    def on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        self._cache_pod(prev, cur)
        if cur is None or not _pending(cur) or not self.ours(cur):
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
        if cur is not None:
            self.cache.set_node(cur)
        elif prev is not None:
            self.cache.remove_node(meta.name(prev))
        if events.node_event_matters(prev, cur):
            self._moved(None)

    def on_namespace(self, prev: Obj | None, cur: Obj | None) -> None:
        if prev is None or cur is None or meta.labels(prev) != meta.labels(cur):
            self._moved(events.NAMESPACE_CURES)

    def on_storage(self, prev: Obj | None, cur: Obj | None) -> None:
        self._moved(events.STORAGE_CURES)

    def _events(self, pod: Obj) -> Recorder:
        return self.recorders.get(scheduler_name(pod)) or self.recorders[self.profile.name]

    def explain(self, pod: Obj) -> tuple[Profile, Trace, str | None, str]:
        """What this scheduler would decide for ``pod`` now, with every
        node's verdict and scores: the pod taken off its node if bound."""
        profile = self.profiles.get(scheduler_name(pod), self.profile)
        infos = snapshot(self.nodes.items(), self.pods.items(), self.assumed)
        for info in infos:
            info.remove_pod(meta.uid(pod))
        unbound = copy.deepcopy(pod)
        unbound.setdefault("spec", {}).pop("nodeName", None)
        trace = Trace()
        decision = schedule(unbound, infos, profile, self.nominated(), trace=trace)
        return profile, trace, decision.node, decision.message

    def node_infos(self) -> Snapshot:
        """This pass's nodes: the cache's own NodeInfos, in name order."""
        return self.cache.snapshot()

    def nominated(self) -> dict[str, list[PodInfo]]:
        """The waiting pods nominated to each node (kube's nominator)."""
        out: dict[str, list[PodInfo]] = {}
        for pod in self.pods.items():
            if not _pending(pod) or meta.uid(pod) in self.assumed:
                continue
            node = self.nominations.get(meta.uid(pod),
                                        (pod.get("status") or {}).get("nominatedNodeName"))
            if node:
                out.setdefault(node, []).append(PodInfo.of(pod))
        return out

    async def schedule_one(self, pod: Obj, infos: list[NodeInfo] | None = None,
                           nominated: dict[str, list[PodInfo]] | None = None) -> None:
        """The scheduling cycle: a decision, the pod assumed on its node (so
        the next decision counts it), then the binding cycle in a task of its
        own, as kube-scheduler runs it, so that one bind's round trip holds
        up no other pod."""
        infos = self.node_infos() if infos is None else infos
        nominated = self.nominated() if nominated is None else nominated
        profile = self.profiles[scheduler_name(pod)]
        decision = schedule(pod, infos, profile, nominated, start=self.next_start,
                            cache=self.equivalence)
        if infos:
            self.next_start = (self.next_start + decision.processed) % len(infos)
        if decision.node is None:
            self.queue.failed(_key(pod), decision.rejectors)
            if decision.preempted.victims:
                await self._preempt(pod, decision.preempted, nominated)
            if decision.preempted.nominated is not None:
                _renominate(nominated, pod, decision.preempted.nominated)
            await self._unschedulable(pod, decision.message, decision.preempted.nominated)
            return
        self.nominations.pop(meta.uid(pod), None)
        self.assumed[meta.uid(pod)] = decision.node
        self.cache.assume(pod, decision.node)
        if infos is not self.cache.last_snapshot:  # a list of the caller's own
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
        except _BIND_FAILED as e:
            # Forgotten, and tried again after back-off (kube's unreserve); an
            # unreachable API too, or the pod would stay assumed for ever.
            log.debug("binding %s failed: %s", meta.namespaced_name(pod), e)
            self.assumed.pop(meta.uid(pod), None)
            current = self._cached(_key(pod))
            if current is not None and (current.get("spec") or {}).get("nodeName"):
                self.cache.set_pod(current)  # bound by someone else meanwhile
            else:
                self.cache.forget(pod)
            self.queue.errored(_key(pod))
            self.wake.set()
            return
        self.queue.succeeded(_key(pod))
        log.info("bound %s to %s", meta.namespaced_name(pod), node)
        self._events(pod).normal(pod, Reason.SCHEDULED, f"Successfully assigned "
                           f"{meta.namespaced_name(pod)} to {node}")

    async def _preempt(self, pod: Obj, done: PostFilterResult, nominated: Nominated) -> None:
        """kube's prepareCandidate: each victim marked as a disruption target
        and deleted (gracefully: it holds its room until it is gone), and
        pods of lower priority nominated to the same node lose that."""
        node = str(done.nominated)
        for victim in done.victims:
            if meta.is_deleting(victim):
                continue
            name, namespace = meta.name(victim), meta.namespace(victim)
            scheduler = (pod.get("spec") or {}).get("schedulerName") or "default-scheduler"
            condition = {"type": "DisruptionTarget", "status": "True",
                         "reason": PREEMPTION_BY_SCHEDULER, "lastTransitionTime": meta.now(),
                         "message": f"{scheduler}: preempting to accommodate a higher "
                                    "priority pod"}
            try:
                await self.client.patch(resources.POD, name, {"status": {
                    "conditions": [condition]}}, namespace, subresource="status",
                    content_type="application/strategic-merge-patch+json")
                await self.client.delete(resources.POD, name, namespace)
            except ApiError as e:
                if e.code != 404:
                    log.warning("preempting %s failed: %s", meta.namespaced_name(victim), e)
                    continue
            log.info("%s preempted %s on %s", meta.namespaced_name(pod),
                     meta.namespaced_name(victim), node)
            self._events(pod).normal(victim, Reason.PREEMPTED,
                               f"Preempted by pod {meta.uid(pod)} on node {node}")
        prio = priority.of(pod)
        for other in nominated.get(node, ()):
            if priority.of(other.pod) < prio and meta.uid(other.pod) != meta.uid(pod):
                self.nominations[meta.uid(other.pod)] = ""
                try:
                    await self.client.patch(resources.POD, meta.name(other.pod), {
                        "status": {"nominatedNodeName": None}}, meta.namespace(other.pod),
                        subresource="status")
                except ApiError:
                    pass
                self.queue.update(_key(other.pod))

    async def _unschedulable(self, pod: Obj, message: str,
                             nominated: str | None = None) -> None:
        """PodScheduled false with the FitError message; the nomination set
        (a node), cleared ("") or left (None) as the post-filter said."""
        cond = meta.condition(pod, "PodScheduled")
        status = pod.get("status") or {}
        if nominated is not None:
            self.nominations[meta.uid(pod)] = nominated
        same_nomination = nominated is None or \
            (status.get("nominatedNodeName") or "") == nominated
        if cond and cond.get("message") == message and same_nomination:
            return
        # A copy: the informer's cached pod must stay what the server said, or
        # a failed update would look done and never be retried.
        pod = copy.deepcopy(pod)
        meta.set_condition(pod, "PodScheduled", False, "Unschedulable", message)
        if nominated:
            pod["status"]["nominatedNodeName"] = nominated
        elif nominated == "":
            pod["status"].pop("nominatedNodeName", None)
        if not cond or cond.get("message") != message:
            self._events(pod).warning(pod, Reason.FAILED_SCHEDULING, message)
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
        self.nominations = {u: n for u, n in self.nominations.items() if u in waiting}
        infos = self.node_infos()
        nominated = self.nominated()
        ready = [p for k in keys if (p := self._cached(k)) is not None]
        # kube's PrioritySort: the highest priority first, then the oldest.
        ready.sort(key=lambda p: (-priority.of(p), p["metadata"].get("creationTimestamp", "")))
        for queued in ready:
            # The binds already sent, and the watch, go on between decisions:
            # a pass over a backlog would otherwise decide every pod before
            # the first bind left. What they change is seen by the next pod.
            await asyncio.sleep(0)
            pod = self._cached(_key(queued))
            if pod is None or not _pending(pod) or meta.uid(pod) in self.assumed \
                    or not self.ours(pod):
                continue
            if infos.epoch != self.cache.feed.epoch:  # nodes came or went
                infos = self.node_infos()
            await self.schedule_one(pod, infos, nominated)

    def informers(self) -> list[Informer]:
        return [self.pods, self.nodes, self.namespaces, self.claims, self.volumes,
                self.classes, self.services, self.budgets, *self.owners.values()]

    @contextlib.asynccontextmanager
    async def synced(self) -> AsyncIterator[None]:
        """The caches filled and kept up to date while the block runs."""
        tasks = [asyncio.create_task(inf.run()) for inf in self.informers()]
        try:
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers()))
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        handlers = ((self.pods, self.on_pod), (self.nodes, self.on_node),
                    (self.namespaces, self.on_namespace), (self.claims, self.on_storage),
                    (self.volumes, self.on_storage), (self.classes, self.on_storage))
        for inf, handler in handlers:
            inf.add_handler(handler)
        try:
            async with self.synced():
                await self._loop()
        finally:
            for t in self.binding:
                t.cancel()

    async def _loop(self) -> None:
        while True:
            self.wake.clear()
            await self.run_pass()
            deadline = self.queue.next_deadline()
            timeout = None if deadline is None else max(deadline - self.clock(), 0.0)
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                pass
