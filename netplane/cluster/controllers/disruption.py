"""Disruption controller (kube's pkg/controller/disruption): keeps each
PodDisruptionBudget's status — the pods it expects, how many must stay
healthy, how many are, and so how many may be disrupted now — from the
pods it selects and, for a maxUnavailable or a percentage, the replicas
their controllers want. The Eviction API spends disruptionsAllowed and
marks the evicted pod; the mark goes once the pod is being deleted, or
after two minutes if it never is."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from netplane.api import disruption, meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, split_key
from netplane.cluster.events import Reason, Recorder, Source

log = logging.getLogger(__name__)


class NoController(Exception):
    pass


def _replicas(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


class DisruptionController:
    def __init__(self, client: Client, informers: Informers, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.inf, self.clock = client, informers, clock
        self.events = Recorder(client, Source("controllermanager"))
        self.queue = WorkQueue()
        informers.pdbs.add_handler(self._on_budget)
        informers.pods.add_handler(self._on_pod)
        for owners in (informers.replicasets, informers.deployments, informers.statefulsets):
            owners.add_handler(self._on_owner)

    def _on_budget(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is not None:
            self.queue.add(meta.namespaced_name(cur))

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        for pod in (prev, cur):
            if pod is None:
                continue
            for pdb in disruption.budgets_of(pod, self.inf.pdbs.in_namespace(
                    meta.namespace(pod))):
                self.queue.add(meta.namespaced_name(pdb))

    def _on_owner(self, prev: Obj | None, cur: Obj | None) -> None:
        """A controller's replicas are what budgets by scale count on."""
        obj = cur if cur is not None else prev
        if obj is None or (prev is not None and cur is not None
                           and _replicas(prev) == _replicas(cur)):
            return
        for pdb in self.inf.pdbs.in_namespace(meta.namespace(obj)):
            if disruption.needs_scale(pdb):
                self.queue.add(meta.namespaced_name(pdb))

    def _controller_scale(self, pod: Obj) -> tuple[str, int] | None:
        """The uid and replicas of the controller that answers for ``pod``
        (a Deployment through its ReplicaSet); None when it has none."""
        ref = meta.controller_of(pod)
        if ref is None:
            return None
        ns = meta.namespace(pod)
        kind, name, uid = ref.get("kind"), str(ref.get("name")), ref.get("uid")
        if kind == "ReplicaSet":
            rs = self.inf.replicasets.get(name, ns)
            if rs is not None and meta.uid(rs) == uid:
                owner = meta.controller_of(rs)
                if owner is not None and owner.get("kind") == "Deployment":
                    dep = self.inf.deployments.get(str(owner.get("name")), ns)
                    if dep is not None and meta.uid(dep) == owner.get("uid"):
                        return meta.uid(dep), _replicas(dep)
                return meta.uid(rs), _replicas(rs)
        elif kind == "StatefulSet":
            sts = self.inf.statefulsets.get(name, ns)
            if sts is not None and meta.uid(sts) == uid:
                return meta.uid(sts), _replicas(sts)
        raise NoController(f'found no controllers for pod "{meta.name(pod)}"')

    def expected_scale(self, pods: Sequence[Obj]) -> tuple[int, list[str]]:
        """kube's getExpectedScale: the replicas of the pods' controllers,
        each counted once, and the pods that have no controller."""
        wanted: dict[str, int] = {}
        unmanaged = []
        for pod in pods:
            found = self._controller_scale(pod)
            if found is None:
                unmanaged.append(meta.name(pod))
            else:
                wanted[found[0]] = found[1]
        return sum(wanted.values()), unmanaged

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        pdb = self.inf.pdbs.get(name, ns)
        if pdb is None or meta.is_deleting(pdb):
            return
        pods = [p for p in self.inf.pods.in_namespace(ns) if disruption.selects(pdb, p)]
        if not pods:
            self.events.normal(pdb, Reason.NO_PODS, "No matching pods found")
        recheck = None
        try:
            scale, unmanaged = self.expected_scale(pods) if disruption.needs_scale(pdb) \
                else (0, [])
        except NoController as e:
            self.events.warning(pdb, Reason.CALCULATE_EXPECTED_POD_COUNT_FAILED,
                                f"Failed to calculate the number of expected pods: {e}")
            status = disruption.failed_status(pdb, str(e))
        else:
            if unmanaged:
                self.events.warning(pdb, Reason.UNMANAGED_PODS, (
                    "Pods selected by this PodDisruptionBudget (selector: "
                    f"{(pdb.get('spec') or {}).get('selector')}) were found to be unmanaged. "
                    "As a result, the status of the PDB cannot be calculated correctly, which "
                    "may result in undefined behavior. To account for these pods please set "
                    '".spec.minAvailable" field of the PDB to an integer value.'))
            status, recheck = disruption.status_of(pdb, pods, scale, self.clock())
        if recheck is not None:
            self.queue.add_after(key, max(recheck - self.clock(), 0.0) + 0.1)
        if _same(status, pdb.get("status") or {}):
            return
        try:
            await self.client.update_status(resources.PODDISRUPTIONBUDGET,
                                            {**pdb, "status": status})
        except ApiError as e:
            if e.code == 404:
                return
            raise  # a conflict: the drain loop tries again with the newer budget

    async def run(self) -> None:
        await drain("disruption", self.queue, self.reconcile)


def _same(a: Obj, b: Obj) -> bool:
    """Equal but for the conditions' transition times."""
    def strip(s: Obj) -> Obj:
        return {**s, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                    for c in s.get("conditions") or []]}
    return strip(a) == strip(b)
