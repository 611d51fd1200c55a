"""Node lifecycle controller (kube's pkg/controller/nodelifecycle). Its
monitoring half: a node whose agent has neither renewed its Lease nor
posted its status for ``grace`` seconds (kube's node-monitor-grace-period;
one that never posted it, ``startup_grace`` after its creation) gets its
agent's conditions set to Unknown, with kube's reasons and words, and its
pods' Ready condition set to False (kube's MarkPodsNotReady), so that their
endpoints stop taking traffic at once. ``kubectl get nodes`` then says
NotReady. Its tainting half keeps the node's condition taints
(nodetaints.py) in ``spec.taints`` whenever the node changes: the
scheduler sends no new pod to a tainted node, and the taint eviction
controller deletes pods that do not tolerate a NoExecute one. When the
agent is heard again it posts Ready for the node and its pods itself, and
the taints go."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client, Conflict, Informer, NotFound
from netplane.cluster.controllers import nodetaints
from netplane.cluster.controllers.queue import WorkQueue, drain

log = logging.getLogger(__name__)

GRACE_SECONDS = 40.0  # kube's node-monitor-grace-period
PERIOD_SECONDS = 5.0  # kube's node-monitor-period
STARTUP_GRACE_SECONDS = 60.0  # kube's node-startup-grace-period
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
NEVER_REASON = "NodeStatusNeverUpdated"
NEVER_MESSAGE = "Kubelet never posted node status."
# The conditions a silent node's are set Unknown (kube leaves
# NetworkUnavailable to whoever manages the network).
AGENT_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def last_heard(node: Obj, lease: Obj | None) -> float | None:
    """When the node's agent was last heard from: its Lease's renewTime or
    its Ready condition's heartbeat, whichever is later."""
    ready = meta.condition(node, "Ready") or {}
    times = [meta.timestamp(ready.get("lastHeartbeatTime"))]
    if lease is not None:
        times.append(meta.timestamp((lease.get("spec") or {}).get("renewTime")))
    known = [t for t in times if t is not None]
    return max(known) if known else None


def silent(node: Obj, lease: Obj | None, now: float, grace: float = GRACE_SECONDS, *,
           seen: float | None = None, startup_grace: float = STARTUP_GRACE_SECONDS) -> bool:
    """Whether the node must be marked Unknown: it is not Unknown already,
    and nothing was heard for longer than ``grace`` since it was heard or,
    for a node that never gave a time, since the controller first ``seen``
    it (kube's probe timestamp). A node that never posted its status gets
    ``startup_grace`` from its creation or its Lease's last renewal."""
    ready = meta.condition(node, "Ready")
    if ready is not None and ready.get("status") == "Unknown":
        return False
    heard = last_heard(node, lease)
    if ready is None:
        created = meta.timestamp((node.get("metadata") or {}).get("creationTimestamp"))
        known = [t for t in (heard, created) if t is not None]
        since = max(known) if known else seen
        return since is not None and now - since > startup_grace
    if heard is None:
        heard = seen
    return heard is None or now - heard > grace


def unknown_conditions(node: Obj, now: str) -> list[Obj]:
    """The node's agent conditions as Unknown, heartbeats kept, and those it
    never posted added as such (kube's tryUpdateNodeHealth); the others as
    they are."""
    out, posted = [], set()
    for c in (node.get("status") or {}).get("conditions") or []:
        c = dict(c)
        posted.add(c.get("type"))
        if c.get("type") in AGENT_CONDITIONS and c.get("status") != "Unknown":
            c.update(status="Unknown", reason=UNKNOWN_REASON, message=UNKNOWN_MESSAGE,
                     lastTransitionTime=now)
        out.append(c)
    created = (node.get("metadata") or {}).get("creationTimestamp") or now
    out += [{"type": t, "status": "Unknown", "reason": NEVER_REASON, "message": NEVER_MESSAGE,
             "lastHeartbeatTime": created, "lastTransitionTime": now}
            for t in AGENT_CONDITIONS if t not in posted]
    return out


class NodeLifecycleController:
    def __init__(self, client: Client, nodes: Informer, leases: Informer,
                 pods: Informer | None = None, *, grace: float = GRACE_SECONDS,
                 startup_grace: float = STARTUP_GRACE_SECONDS, period: float = PERIOD_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.nodes, self.leases, self.pods = client, nodes, leases, pods
        self.grace, self.startup_grace = grace, startup_grace
        self.period, self.clock = period, clock
        self._seen: dict[str, float] = {}  # when each node was first seen
        self.taint_queue = WorkQueue()
        nodes.add_handler(self._on_node)

    def _on_node(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is not None and nodetaints.reconciled(cur, "") is not None:
            self.taint_queue.add(meta.name(cur))

    async def sync_taints(self, name: str) -> None:
        """Brings the node's condition taints in line with its conditions;
        a write that lost a race is retried by the queue on a fresher copy."""
        node = self.nodes.get(name)
        taints = nodetaints.reconciled(node, meta.now()) if node is not None else None
        if node is None or taints is None:
            return
        patch = {"metadata": {"resourceVersion": node["metadata"].get("resourceVersion")},
                 "spec": {"taints": taints}}
        try:
            await self.client.patch(resources.NODE, name, patch)
        except NotFound:
            return
        except Conflict:
            self.taint_queue.add_after(name, 0.05)
            return
        log.info("node %s: taints now %s", name,
                 ", ".join(f"{t['key']}:{t['effect']}" for t in taints) or "none")

    async def monitor(self) -> list[str]:
        """One pass over the nodes; the names of those marked Unknown."""
        marked = []
        now = self.clock()
        nodes = self.nodes.items()
        self._seen = {meta.name(n): self._seen.get(meta.name(n), now) for n in nodes}
        for node in nodes:
            name = meta.name(node)
            lease = self.leases.get(name, resources.NODE_LEASE_NAMESPACE)
            if not silent(node, lease, now, self.grace, seen=self._seen[name],
                          startup_grace=self.startup_grace):
                continue
            patch = {"status": {"conditions": unknown_conditions(node, meta.now())}}
            try:
                await self.client.patch(resources.NODE, name, patch, subresource="status")
            except ApiError as e:
                log.warning("marking node %s unknown failed: %s", name, e)
                continue
            log.info("node %s: nothing heard for %.0f s; its status is now Unknown",
                     name, self.grace)
            marked.append(name)
        for name in marked:
            await self.mark_pods_not_ready(name)
        return marked

    async def mark_pods_not_ready(self, node: str) -> None:
        """Every ready pod of ``node`` not ready any more."""
        if self.pods is None:
            return
        for pod in self.pods.items():
            if (pod.get("spec") or {}).get("nodeName") != node or \
                    not meta.condition_true(pod, "Ready"):
                continue
            conditions = [dict(c, status="False", lastTransitionTime=meta.now())
                          if c.get("type") == "Ready" else c
                          for c in (pod.get("status") or {}).get("conditions") or []]
            try:
                await self.client.patch(resources.POD, meta.name(pod),
                                        {"status": {"conditions": conditions}},
                                        meta.namespace(pod), subresource="status")
            except ApiError as e:
                log.warning("marking pod %s not ready failed: %s",
                            meta.namespaced_name(pod), e)

    async def run(self) -> None:
        for node in self.nodes.items():
            self._on_node(None, node)
        tainting = asyncio.create_task(drain("node-taints", self.taint_queue, self.sync_taints))
        try:
            while True:
                await self.monitor()
                await asyncio.sleep(self.period)
        finally:
            tainting.cancel()
