"""Job controller: syncs each Job (:mod:`jobsync`) when it or one of its
pods changes, and keeps what kube's controller keeps between syncs: the
pods it created or deleted whose events have not come yet (no more pods are
made until they have), the finalizer removals not seen yet (so a pod is not
counted twice from a stale cache), and each Job's back-off record. Pods still
held by the tracking finalizer whose Job is gone or finished are released."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from netplane.api import batch, meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client, NotFound
from netplane.cluster.controllers import jobrules as rules
from netplane.cluster.controllers.jobsync import Sync
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, split_key
from netplane.cluster.events import Reason, Recorder, Source

log = logging.getLogger(__name__)
# Pods created or deleted whose events have not come for this long are
# given up on (kube's ExpectationsTimeout).
EXPECTATIONS_TIMEOUT = 300.0
POD_INDEX = "job-controller-uid"
RELEASE = {"metadata": {"$deleteFromPrimitiveList/finalizers": [batch.TRACKING_FINALIZER]}}
STRATEGIC = "application/strategic-merge-patch+json"


def _job_ref(pod: Obj) -> Obj | None:
    ref = meta.controller_of(pod)
    return ref if ref is not None and ref.get("kind") == "Job" and \
        ref.get("apiVersion") == "batch/v1" else None


@dataclass
class Expectations:
    """Per Job: pods created or deleted (uid -> when) not yet seen as such,
    and finalizer removals not yet seen."""

    created: dict[str, float] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)
    released: dict[str, float] = field(default_factory=dict)

    def observe(self, pods: dict[str, Obj], now: float) -> None:
        fresh = now - EXPECTATIONS_TIMEOUT
        self.created = {u: t for u, t in self.created.items() if u not in pods and t > fresh}
        self.deleted = {u: t for u, t in self.deleted.items()
                        if u in pods and not meta.is_deleting(pods[u]) and t > fresh}
        self.released = {u: t for u, t in self.released.items()
                         if u in pods and rules.tracked(pods[u]) and t > fresh}

    def satisfied(self) -> bool:
        return not self.created and not self.deleted


class _ApiCluster:
    """The Cluster of a sync, through the API server."""

    def __init__(self, controller: JobController) -> None:
        self.ctl = controller

    def now(self) -> float:
        return time.time()

    async def create_pod(self, pod: Obj) -> Obj:
        return await self.ctl.client.create(resources.POD, pod)

    async def delete_pod(self, pod: Obj) -> bool:
        try:
            await self.ctl.client.delete(resources.POD, meta.name(pod), meta.namespace(pod))
        except NotFound:
            return False
        return True

    async def release_pod(self, pod: Obj) -> bool:
        return await self.ctl.release(pod)

    async def update_status(self, job: Obj) -> Obj:
        return await self.ctl.client.update_status(resources.JOB, job)

    def event(self, job: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        (self.ctl.events.warning if warning else self.ctl.events.normal)(job, reason, message)

    def requeue_after(self, job: Obj, seconds: float) -> None:
        self.ctl.queue.add_after(meta.namespaced_name(job), seconds)


class JobController:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client, self.inf = client, informers
        self.events = Recorder(client, Source("job-controller"))
        self.queue = WorkQueue()
        self.orphans = WorkQueue()  # pods to release, by namespace/name
        self.expectations: dict[str, Expectations] = {}
        self.backoff: dict[str, rules.Backoff] = {}
        informers.pods.add_index(POD_INDEX, lambda p: (
            (str(ref["uid"]),) if (ref := _job_ref(p)) is not None else ()))
        informers.jobs.add_handler(self._on_job)
        informers.pods.add_handler(self._on_pod)

    # -- events --

    def _on_job(self, prev: Obj | None, cur: Obj | None) -> None:
        job = cur or prev
        if job is None:
            return
        self.queue.add(meta.namespaced_name(job))
        if cur is None or rules.job_finished(cur):
            # Its pods' finalizers are no sync's business any more.
            for pod in self.inf.pods.by_index(POD_INDEX, meta.uid(job)):
                if rules.tracked(pod):
                    self.orphans.add(meta.namespaced_name(pod))

    def _owner(self, pod: Obj) -> Obj | None:
        ref = _job_ref(pod)
        if ref is None:
            return None
        job = self.inf.jobs.get(str(ref.get("name")), meta.namespace(pod))
        return job if job is not None and meta.uid(job) == ref.get("uid") else None

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        pod = cur or prev
        if pod is None:
            return
        job = self._owner(pod)
        if job is not None:
            self.queue.add(meta.namespaced_name(job))
        if cur is not None and rules.tracked(cur) and (job is None or rules.job_finished(job)):
            self.orphans.add(meta.namespaced_name(cur))

    # -- work --

    async def release(self, pod: Obj) -> bool:
        """Removes the tracking finalizer; False if the pod was gone."""
        ref = _job_ref(pod)
        key = f"{meta.namespace(pod)}/{ref['name']}" if ref else ""
        if key:
            self.expectations.setdefault(key, Expectations()).released[meta.uid(pod)] = \
                time.time()
        try:
            await self.client.patch(resources.POD, meta.name(pod), RELEASE, meta.namespace(pod),
                                    content_type=STRATEGIC)
        except NotFound:
            return False
        except ApiError:
            if key:
                self.expectations[key].released.pop(meta.uid(pod), None)
            raise
        return True

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        job = self.inf.jobs.get(name, ns)
        if job is None:
            self.expectations.pop(key, None)
            self.backoff.pop(key, None)
            return
        if rules.job_finished(job):
            self.backoff.pop(key, None)
            return
        pods = self.inf.pods.by_index(POD_INDEX, meta.uid(job))
        exp = self.expectations.setdefault(key, Expectations())
        exp.observe({meta.uid(p): p for p in pods}, time.time())
        sync = Sync(_ApiCluster(self), job, pods, satisfied=exp.satisfied(),
                    releasing=set(exp.released), backoff=self.backoff.get(key))
        try:
            await sync.run()
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self.queue.add_after(key, 0.1)  # a stale cache: again once it has caught up
        finally:
            now = time.time()
            exp.created.update(dict.fromkeys(sync.created, now))
            exp.deleted.update(dict.fromkeys(sync.deleted, now))
            if sync.flushed_backoff is not None:
                self.backoff[key] = sync.flushed_backoff

    async def release_orphan(self, key: str) -> None:
        """syncOrphanPod: a tracked pod whose Job is gone or finished."""
        ns, name = split_key(key)
        pod = self.inf.pods.get(name, ns)
        if pod is None or not rules.tracked(pod):
            return
        job = self._owner(pod)
        if job is not None and not rules.job_finished(job):
            return  # still its Job's to count
        try:
            await self.client.patch(resources.POD, name, RELEASE, ns, content_type=STRATEGIC)
        except NotFound:
            pass

    async def run(self) -> None:
        for pod in self.inf.pods.items():
            self._on_pod(None, pod)
        await asyncio.gather(drain("job", self.queue, self.reconcile),
                             drain("job-orphans", self.orphans, self.release_orphan))
