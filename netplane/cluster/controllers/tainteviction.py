"""Taint eviction controller (kube 1.32's pkg/controller/tainteviction): a
pod bound to a node with a NoExecute taint it does not tolerate is deleted
at once; one that tolerates every such taint is deleted when the shortest
``tolerationSeconds`` among the tolerations used runs out, and kept for good
when none of them has a bound. netplane counts the time from the taint's
``timeAdded`` (or from when the controller first saw a taint without one),
so that a restarted controller keeps the deadlines it had. A scheduled
eviction is cancelled when the taint goes or the pod comes to tolerate it
forever. Before deleting, the pod gets kube's DisruptionTarget condition and
an event says so."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from netplane.api import meta, resources, scheduling
from netplane.api.meta import Obj
from netplane.cluster.client import Client, Conflict, Informer, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import split_key
from netplane.cluster.events import Reason, Recorder, Source

log = logging.getLogger(__name__)

NODE_INDEX = "taint-eviction-node"
DISRUPTION_TARGET = "DisruptionTarget"
DISRUPTION_REASON = "DeletionByTaintManager"
DISRUPTION_MESSAGE = "Taint manager: deleting due to NoExecute taint"

TaintKey = tuple[str, str, str]  # key, value, effect


def _taint_key(taint: Obj) -> TaintKey:
    return (str(taint.get("key") or ""), str(taint.get("value") or ""),
            str(taint.get("effect") or ""))


def _as_pod(pod: Obj) -> Obj:
    """The pod with its kind, which listed objects may lack, for events."""
    return dict(pod, apiVersion="v1", kind="Pod")


def no_execute_taints(node: Obj | None) -> list[Obj]:
    taints = ((node or {}).get("spec") or {}).get("taints") or []
    return [t for t in taints if isinstance(t, dict)
            and t.get("effect") == scheduling.NO_EXECUTE]


def eviction_time(tolerations: list[Obj], taints: list[Obj],
                  added: Callable[[Obj], float]) -> float | None:
    """When a pod with ``tolerations`` must go from a node with NoExecute
    ``taints`` (each added at ``added(taint)``): ``-inf`` at once, None
    never. As kube's GetMatchingTolerations, the first toleration of each
    taint is the one used; a used toleration of 0 or fewer seconds is at
    once, and one without seconds does not bound the time."""
    deadline: float | None = None
    for taint in taints:
        used = next((t for t in tolerations if scheduling.tolerates(t, taint)), None)
        if used is None:
            return -math.inf
        seconds = used.get("tolerationSeconds")
        if seconds is None:
            continue
        if int(seconds) <= 0:
            return -math.inf
        at = added(taint) + int(seconds)
        deadline = at if deadline is None else min(deadline, at)
    return deadline


class TaintEvictionController:
    def __init__(self, client: Client, pods: Informer, nodes: Informer, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.pods, self.nodes, self.clock = client, pods, nodes, clock
        self.queue = WorkQueue()
        self.events = Recorder(client, Source("taint-eviction-controller"))
        self.scheduled: dict[str, float] = {}  # pod key -> when it is to go
        # When a taint without timeAdded was first seen, per node.
        self._first_seen: dict[tuple[str, TaintKey], float] = {}
        pods.add_index(NODE_INDEX, lambda p: (
            (str(p["spec"]["nodeName"]),) if (p.get("spec") or {}).get("nodeName") else ()))
        pods.add_handler(self._on_pod)
        nodes.add_handler(self._on_node)

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur if cur is not None else prev
        if obj is not None and ((obj.get("spec") or {}).get("nodeName")
                                or meta.namespaced_name(obj) in self.scheduled):
            self.queue.add(meta.namespaced_name(obj))

    def _on_node(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur if cur is not None else prev
        if obj is None or (prev is not None and cur is not None
                           and no_execute_taints(prev) == no_execute_taints(cur)):
            return
        name = meta.name(obj)
        present = {_taint_key(t) for t in no_execute_taints(cur)}
        self._first_seen = {k: v for k, v in self._first_seen.items()
                            if k[0] != name or k[1] in present}
        for pod in self.pods.by_index(NODE_INDEX, name):
            self.queue.add(meta.namespaced_name(pod))

    def _added(self, node: str) -> Callable[[Obj], float]:
        def added(taint: Obj) -> float:
            stamp = meta.timestamp(taint.get("timeAdded"))
            if stamp is not None:
                return stamp
            return self._first_seen.setdefault((node, _taint_key(taint)), self.clock())
        return added

    def deadline(self, pod: Obj) -> float | None:
        """When ``pod`` must be evicted (``-inf``: now), None: not at all."""
        node_name = str((pod.get("spec") or {}).get("nodeName") or "")
        if not node_name or meta.is_deleting(pod) or \
                (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        taints = no_execute_taints(self.nodes.get(node_name))
        if not taints:
            return None
        tolerations = list((pod.get("spec") or {}).get("tolerations") or [])
        return eviction_time(tolerations, taints, self._added(node_name))

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        pod = self.pods.get(name, ns)
        at = self.deadline(pod) if pod is not None else None
        if pod is None or at is None:
            self._cancel(key, pod)
            return
        now = self.clock()
        if at > now:
            self.scheduled[key] = at
            self.queue.add_after(key, at - now)
            return
        self.scheduled.pop(key, None)
        await self.evict(pod)

    def _cancel(self, key: str, pod: Obj | None) -> None:
        """Forgets a pending eviction; kube tells of it when the pod stays."""
        if self.scheduled.pop(key, None) is not None and pod is not None \
                and not meta.is_deleting(pod):
            self.events.normal(_as_pod(pod), Reason.TAINT_MANAGER_EVICTION,
                               f"Cancelling deletion of Pod {key}")

    async def evict(self, pod: Obj) -> None:
        """kube's addConditionAndDeletePod: DisruptionTarget, then delete."""
        key = meta.namespaced_name(pod)
        self.events.normal(_as_pod(pod), Reason.TAINT_MANAGER_EVICTION,
                           f"Marking for deletion Pod {key}")
        try:
            fresh = await self.client.get(resources.POD, meta.name(pod), meta.namespace(pod))
            if meta.uid(fresh) != meta.uid(pod) or meta.is_deleting(fresh):
                return
            target = meta.condition(fresh, DISRUPTION_TARGET) or {}
            if target.get("status") != "True" or target.get("reason") != DISRUPTION_REASON:
                await self._mark(fresh)
            await self.client.delete(resources.POD, meta.name(pod), meta.namespace(pod),
                                     preconditions={"uid": meta.uid(pod)})
        except NotFound:
            return
        except Conflict:
            self.queue.add_after(key, 0.05)  # changed meanwhile: judged again
            return
        log.info("pod %s evicted from node %s: a NoExecute taint it does not tolerate (long "
                 "enough)", key, (pod.get("spec") or {}).get("nodeName"))

    async def _mark(self, pod: Obj) -> None:
        conditions = [c for c in (pod.get("status") or {}).get("conditions") or []
                      if c.get("type") != DISRUPTION_TARGET]
        conditions.append({"type": DISRUPTION_TARGET, "status": "True",
                           "reason": DISRUPTION_REASON, "message": DISRUPTION_MESSAGE,
                           "lastTransitionTime": meta.now()})
        await self.client.patch(resources.POD, meta.name(pod),
                                {"metadata": {"resourceVersion":
                                              pod["metadata"].get("resourceVersion")},
                                 "status": {"conditions": conditions}},
                                meta.namespace(pod), subresource="status")

    async def run(self) -> None:
        for pod in self.pods.items():
            self._on_pod(None, pod)
        await drain("taint-eviction", self.queue, self.sync)
