"""TTL-after-finished controller (kube's pkg/controller/ttlafterfinished):
a finished Job with ``ttlSecondsAfterFinished`` is deleted that many seconds
after its Complete or Failed condition, its pods with it (background
propagation: the garbage collector removes them)."""

from __future__ import annotations

import time
from collections.abc import Callable

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, split_key


def finish_time(job: Obj) -> float | None:
    """When the Job's Complete or Failed condition became true."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True" \
                and c.get("lastTransitionTime"):
            return meta.parse_time(str(c["lastTransitionTime"])).timestamp()
    return None


def time_left(job: Obj, now: float) -> float | None:
    """Seconds until the Job expires (0 or less: now); None: never."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    finished = finish_time(job)
    if ttl is None or finished is None or meta.is_deleting(job):
        return None
    return finished + int(ttl) - now


class TTLAfterFinishedController:
    def __init__(self, client: Client, informers: Informers, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.inf, self.clock = client, informers, clock
        self.queue = WorkQueue()
        informers.jobs.add_handler(self._on_job)

    def _on_job(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is not None and time_left(cur, self.clock()) is not None:
            self.queue.add(meta.namespaced_name(cur))

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        job = self.inf.jobs.get(name, ns)
        left = time_left(job, self.clock()) if job is not None else None
        if job is None or left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        # Read again: the TTL may have changed since the cache saw it.
        try:
            fresh = await self.client.get(resources.JOB, name, ns)
        except NotFound:
            return
        left = time_left(fresh, self.clock())
        if left is None or meta.uid(fresh) != meta.uid(job):
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        try:
            await self.client.request("DELETE", resources.JOB.object_path(name, ns),
                                      params={"propagationPolicy": "Background"})
        except NotFound:
            pass

    async def run(self) -> None:
        await drain("ttl-after-finished", self.queue, self.reconcile)
