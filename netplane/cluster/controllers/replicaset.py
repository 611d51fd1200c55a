"""ReplicaSet controller: keeps ``spec.replicas`` live pods matching the
template, and reports how many are ready."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable

from netplane.api import meta, resources, selectors
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, owned_by, split_key
from netplane.cluster.events import Reason, Recorder, Source

log = logging.getLogger(__name__)

# The most pods one reconcile creates or deletes (kube's burstReplicas).
BURST = 500


def active(pod: Obj) -> bool:
    return not meta.is_deleting(pod) and \
        pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (kube's IsPodAvailable)."""
    if not meta.pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = (meta.condition(pod, "Ready") or {}).get("lastTransitionTime")
    return since is not None and \
        meta.parse_time(str(since)).timestamp() + min_ready_seconds <= now


def pod_from_template(rs: Obj) -> Obj:
    template = copy.deepcopy(rs["spec"]["template"])
    md = template.get("metadata") or {}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": f"{meta.name(rs)}-", "namespace": meta.namespace(rs),
                     "labels": md.get("labels") or {},
                     "annotations": md.get("annotations") or {},
                     "ownerReferences": [meta.owner_ref(rs)]},
        "spec": template.get("spec") or {},
    }


async def slow_start(count: int, create: Callable[[], Awaitable[None]]) -> None:
    """kube's slowStartBatch: creations in batches of 1, 2, 4, ... at once,
    so that a failing template costs one request, not ``count``; stops at
    the first batch with a failure (re-raised)."""
    done, batch = 0, 1
    while done < count:
        size = min(batch, count - done)
        results = await asyncio.gather(*(create() for _ in range(size)),
                                       return_exceptions=True)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
        done += size
        batch *= 2


def _delete_order(pod: Obj) -> tuple[int, int, str]:
    """Pods to remove first: unscheduled, then not ready, then the newest."""
    scheduled = 1 if pod.get("spec", {}).get("nodeName") else 0
    ready = 1 if meta.pod_ready(pod) else 0
    created = pod.get("metadata", {}).get("creationTimestamp", "")
    return scheduled, ready, "".join(chr(0x10FFFF - ord(c)) for c in created)


class ReplicaSetController:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client, self.inf = client, informers
        self.events = Recorder(client, Source("replicaset-controller"))
        self.queue = WorkQueue()
        # Expectations: pods created or deleted whose events the cache has not
        # shown yet, so a reconcile in between does not act twice.
        self.created: dict[str, Obj] = {}
        self.deleted: set[str] = set()
        informers.replicasets.add_handler(self._on_rs)
        informers.pods.add_handler(self._on_pod)

    def _on_rs(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is not None:
            self.queue.add(meta.namespaced_name(obj))

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        for obj in (prev, cur):
            ref = meta.controller_of(obj) if obj else None
            if obj and ref and ref.get("kind") == "ReplicaSet":
                self.queue.add(f"{meta.namespace(obj)}/{ref['name']}")

    def pods_of(self, rs: Obj) -> list[Obj]:
        return [p for p in self.inf.pods.in_namespace(meta.namespace(rs)) if owned_by(p, rs)]

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        rs = self.inf.replicasets.get(name, ns)
        if rs is None or meta.is_deleting(rs):
            return
        pods = self._live_pods(rs)
        want = int(rs["spec"].get("replicas", 1))
        if len(pods) < want:
            await slow_start(min(want - len(pods), BURST), lambda: self._create(rs))
        elif len(pods) > want:
            doomed = sorted(pods, key=_delete_order)[:min(len(pods) - want, BURST)]
            await asyncio.gather(*(self._delete(rs, pod) for pod in doomed))
        await self._status(rs, [p for p in self.pods_of(rs) if active(p)])

    async def _create(self, rs: Obj) -> None:
        pod = await self.client.create(resources.POD, pod_from_template(rs))
        self.created[meta.uid(pod)] = pod
        self.events.normal(rs, Reason.SUCCESSFUL_CREATE, f"Created pod: {meta.name(pod)}")

    async def _delete(self, rs: Obj, pod: Obj) -> None:
        self.deleted.add(meta.uid(pod))
        try:
            await self.client.delete(resources.POD, meta.name(pod), meta.namespace(pod))
            self.events.normal(rs, Reason.SUCCESSFUL_DELETE, f"Deleted pod: {meta.name(pod)}")
        except NotFound:
            pass

    def _live_pods(self, rs: Obj) -> list[Obj]:
        cached = self.pods_of(rs)
        seen = {meta.uid(p) for p in cached}
        for uid in list(self.created):
            if uid in seen:
                del self.created[uid]
        still_active = {meta.uid(p) for p in cached if active(p)}
        self.deleted = {u for u in self.deleted if u not in seen or u in still_active}
        pods = [p for p in cached if active(p) and meta.uid(p) not in self.deleted]
        return pods + [p for p in self.created.values() if owned_by(p, rs)]

    async def _status(self, rs: Obj, pods: list[Obj]) -> None:
        sel = selectors.from_label_selector(rs["spec"].get("selector"))
        matching = [p for p in pods if sel.matches(meta.labels(p))]
        ready = sum(1 for p in matching if meta.pod_ready(p))
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        now = time.time()
        avail = sum(1 for p in matching if available(p, min_ready, now))
        st = {"replicas": len(matching), "readyReplicas": ready, "availableReplicas": avail,
              "fullyLabeledReplicas": len(matching),
              "observedGeneration": rs["metadata"].get("generation", 1)}
        if min_ready and ready == int(rs["spec"].get("replicas", 1)) and avail != ready:
            # Available once ready for minReadySeconds: look again then.
            self.queue.add_after(meta.namespaced_name(rs), min_ready)
        if all(rs.get("status", {}).get(k) == v for k, v in st.items()):
            return
        rs = copy.deepcopy(rs)
        rs["status"] = {**rs.get("status", {}), **st}
        try:
            await self.client.update_status(resources.REPLICASET, rs)
        except ApiError as e:
            if e.code != 404:
                raise

    async def run(self) -> None:
        await drain("replicaset", self.queue, self.reconcile)
