"""CronJob controller, as kube-controller-manager's (pkg/controller/cronjob,
controller v2): at each time of the schedule, in the CronJob's ``timeZone``,
a Job named ``NAME-<minutes since the epoch>`` made from ``jobTemplate``;
``concurrencyPolicy`` (Allow, Forbid, Replace), ``startingDeadlineSeconds``,
more than 100 missed times (a warning, and only the latest runs),
``suspend``, the history limits, ``status.active``, ``lastScheduleTime`` and
``lastSuccessfulTime``. The key is queued again for the next time of the
schedule; nothing polls.

The sync works on a ``Cluster`` (what it reads and writes), so that its steps
are tested without a server, with any clock."""

from __future__ import annotations

import copy
import datetime
import time
from typing import Protocol

from netplane.api import batch, cron, meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client, NotFound
from netplane.cluster.controllers.jobrules import job_finished, stamp
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, split_key
from netplane.cluster.events import Reason, Recorder, Source

# Past the time itself, against clock skew (kube's nextScheduleDelta).
NEXT_SCHEDULE_DELTA = 0.1
TOO_MANY_MISSED = 100
JOB_INDEX = "cronjob-controller-uid"


class ScheduleBroken(ValueError):
    """A schedule that parses but never comes, or comes twice a second."""


class Cluster(Protocol):
    def now(self) -> float: ...
    async def get_job(self, namespace: str, name: str) -> Obj | None: ...
    async def create_job(self, job: Obj) -> Obj: ...  # raises AlreadyExists
    async def delete_job(self, job: Obj) -> None: ...
    async def get_cronjob(self, namespace: str, name: str) -> Obj | None: ...
    async def update_status(self, cj: Obj) -> Obj: ...
    def event(self, cj: Obj, reason: Reason, message: str, *, warning: bool = False) -> None: ...


# -- times --

def _seconds(text: str | None) -> float | None:
    return meta.parse_time(text).timestamp() if text else None


def rfc3339(at: float, zone: datetime.tzinfo) -> str:
    """Go's time.RFC3339 in ``zone``: ``Z`` for UTC, else the offset."""
    text = datetime.datetime.fromtimestamp(at, zone).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def most_recent(cj: Obj, now: float, sched: cron.Schedule, *,
                with_deadline: bool) -> tuple[float, float | None, int]:
    """kube's mostRecentScheduleTime: the earliest time considered, the
    latest time of the schedule not after ``now`` (None if none came), and
    about how many were missed."""
    earliest = _seconds((cj.get("status") or {}).get("lastScheduleTime")) or \
        _seconds(meta.meta(cj).get("creationTimestamp")) or now
    deadline = (cj.get("spec") or {}).get("startingDeadlineSeconds")
    if with_deadline and deadline is not None:
        earliest = max(earliest, now - int(deadline))
    t1 = sched.next(earliest)
    t2 = sched.next(t1) if t1 is not None else None
    if t1 is None or t2 is None:
        raise ScheduleBroken("the schedule has no next time")
    if now < t1:
        return earliest, None, 0
    if now < t2:
        return earliest, t1, 0
    between = round(t2 - t1)
    if between < 1:
        raise ScheduleBroken("time difference between two schedules is less than 1 second")
    missed = int(now - t1) // between + 1
    latest: float | None = None
    t: float | None = sched.next(t1 + (missed - 2) * between)
    while t is not None and t <= now:
        latest, t = t, sched.next(t)
    return earliest, latest, missed


def next_run_in(cj: Obj, now: float, sched: cron.Schedule) -> float:
    """nextScheduleTimeDuration: seconds until the schedule's next time."""
    try:
        earliest, latest, missed = most_recent(cj, now, sched, with_deadline=False)
        base = latest if latest is not None else (earliest if missed == 0 else now)
    except ScheduleBroken:
        base = now
    nxt = sched.next(base)
    return max((nxt if nxt is not None else now + 3600) + NEXT_SCHEDULE_DELTA - now, 0.0)


def job_name(cj: Obj, scheduled: float) -> str:
    return f"{meta.name(cj)}-{int(scheduled) // 60}"


def job_for(cj: Obj, scheduled: float, zone: datetime.tzinfo) -> Obj:
    """getJobFromTemplate2: the template's labels, annotations and spec."""
    template = copy.deepcopy((cj.get("spec") or {}).get("jobTemplate") or {})
    md = template.get("metadata") or {}
    notes = dict(md.get("annotations") or {})
    notes[batch.SCHEDULED_TIMESTAMP] = rfc3339(scheduled, zone)
    job_md: Obj = {"name": job_name(cj, scheduled), "namespace": meta.namespace(cj),
                   "annotations": notes, "ownerReferences": [meta.owner_ref(cj)]}
    if md.get("labels"):
        job_md["labels"] = dict(md["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_md,
            "spec": template.get("spec") or {}}


def _ref(job: Obj) -> Obj:
    return {"apiVersion": "batch/v1", "kind": "Job", "name": meta.name(job),
            "namespace": meta.namespace(job), "uid": meta.uid(job),
            "resourceVersion": str(meta.meta(job).get("resourceVersion", ""))}


def _start(job: Obj) -> tuple[int, float, str]:
    """byJobStartTime: started ones first, oldest first, then by name."""
    started = _seconds((job.get("status") or {}).get("startTime"))
    return (0 if started is not None else 1, started or 0.0, meta.name(job))


class Sync:
    """One sync of a CronJob over its Jobs; ``run`` returns the seconds
    until it should run again (None: not until it changes)."""

    def __init__(self, cluster: Cluster, cj: Obj, jobs: list[Obj]) -> None:
        self.c, self.cj, self.jobs = cluster, copy.deepcopy(cj), jobs
        self.cj.setdefault("status", {})
        self.changed = False

    @property
    def active(self) -> list[Obj]:
        out: list[Obj] = self.cj["status"].setdefault("active", [])
        return out

    def _in_active(self, uid: str) -> bool:
        return any(r.get("uid") == uid for r in self.active)

    def _drop_active(self, uid: str) -> None:
        self.cj["status"]["active"] = [r for r in self.active if r.get("uid") != uid]
        self.changed = True

    async def run(self) -> float | None:
        try:
            await self._clean_up()
            return await self._sync()
        finally:
            await self._write()

    async def _write(self) -> None:
        if not self.changed:
            return
        out = copy.deepcopy(self.cj)
        if not out["status"].get("active"):
            out["status"].pop("active", None)
        await self.c.update_status(out)

    # -- history --

    async def _clean_up(self) -> None:
        """cleanupFinishedJobs: the oldest finished Jobs past the limits go."""
        spec = self.cj.get("spec") or {}
        for kind, key in (("Complete", "successfulJobsHistoryLimit"),
                          ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(key)
            done = sorted((j for j in self.jobs if job_finished(j) == kind), key=_start)
            if limit is None or len(done) <= int(limit):
                continue
            for job in done[:len(done) - int(limit)]:
                if await self._delete(job):
                    self.jobs = [j for j in self.jobs if meta.uid(j) != meta.uid(job)]

    async def _delete(self, job: Obj) -> bool:
        try:
            await self.c.delete_job(job)
        except ApiError as e:
            self.c.event(self.cj, Reason.FAILED_DELETE, f"Deleted job: {e.message}",
                         warning=True)
            return False
        if self._in_active(meta.uid(job)):
            self._drop_active(meta.uid(job))
        self.c.event(self.cj, Reason.SUCCESSFUL_DELETE, f"Deleted job {meta.name(job)}")
        return True

    # -- the schedule --

    async def _children(self) -> None:
        """The active list against the Jobs as they are."""
        for j in self.jobs:
            found, finished = self._in_active(meta.uid(j)), job_finished(j)
            if not found and not finished:
                fresh = await self.c.get_cronjob(meta.namespace(self.cj), meta.name(self.cj))
                if fresh is not None and any(r.get("uid") == meta.uid(j) for r in
                                             (fresh.get("status") or {}).get("active") or []):
                    self.cj = {**fresh, "status": {**fresh.get("status", {})}}
                    continue
                self.c.event(self.cj, Reason.UNEXPECTED_JOB, "Saw a job that the controller "
                             f"did not create or forgot: {meta.name(j)}", warning=True)
            elif found and finished:
                self._drop_active(meta.uid(j))
                self.c.event(self.cj, Reason.SAW_COMPLETED_JOB,
                             f"Saw completed job: {meta.name(j)}, status: {finished}")
            elif finished == "Complete":
                done = (j.get("status") or {}).get("completionTime")
                last = self.cj["status"].get("lastSuccessfulTime")
                if done and (last is None or meta.parse_time(done) > meta.parse_time(last)):
                    self.cj["status"]["lastSuccessfulTime"] = done
                    self.changed = True
        known = {meta.uid(j) for j in self.jobs}
        for ref in list(self.active):
            if ref.get("uid") in known:
                continue
            if await self.c.get_job(str(ref.get("namespace")), str(ref.get("name"))) is None:
                self.c.event(self.cj, Reason.MISSING_JOB,
                             f"Active job went missing: {ref.get('name')}")
                self._drop_active(str(ref.get("uid")))

    async def _sync(self) -> float | None:
        await self._children()
        cj, spec = self.cj, self.cj.get("spec") or {}
        if meta.is_deleting(cj):
            return None
        try:
            zone = cron.zone(spec.get("timeZone"))
        except ValueError as e:
            self.c.event(cj, Reason.UNKNOWN_TIME_ZONE,
                         f'invalid timeZone: "{spec.get("timeZone")}": {e}', warning=True)
            return None
        if spec.get("suspend"):
            return None
        try:
            sched = cron.parse(str(spec.get("schedule", "")), zone)
        except cron.ScheduleError as e:
            self.c.event(cj, Reason.INVALID_SCHEDULE, f"unparseable schedule: "
                         f'"{spec.get("schedule")}" : {e}', warning=True)
            return None
        now = self.c.now()
        try:
            scheduled = self._next_time(now, sched)
        except ScheduleBroken as e:
            self.c.event(cj, Reason.INVALID_SCHEDULE,
                         f"invalid schedule: {spec.get('schedule')} : {e}", warning=True)
            return None
        if scheduled is None:
            return next_run_in(cj, now, sched)
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + int(deadline) < now:
            when = datetime.datetime.fromtimestamp(scheduled, datetime.UTC)
            self.c.event(cj, Reason.MISS_SCHEDULE, "Missed scheduled time to start a job: "
                         + when.strftime("%a, %d %b %Y %H:%M:%S +0000"), warning=True)
            return next_run_in(cj, now, sched)
        name = job_name(cj, scheduled)
        if any(r.get("name") == name for r in self.active) or \
                _seconds(cj["status"].get("lastScheduleTime")) == scheduled:
            return next_run_in(cj, now, sched)
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and self.active:
            self.c.event(cj, Reason.JOB_ALREADY_ACTIVE, "Not starting job because prior "
                         "execution is running and concurrency policy is Forbid")
            return next_run_in(cj, now, sched)
        if policy == "Replace":
            for ref in list(self.active):
                job = await self.c.get_job(str(ref.get("namespace")), str(ref.get("name")))
                if job is not None and not await self._delete(job):
                    raise RuntimeError(f"could not replace job {ref.get('name')}")
                if job is None:
                    self._drop_active(str(ref.get("uid")))
        await self._start(job_for(cj, scheduled, zone), scheduled)
        return next_run_in(self.cj, now, sched)

    def _next_time(self, now: float, sched: cron.Schedule) -> float | None:
        """nextScheduleTime: the latest time due, with a warning when more
        than 100 were missed (only the latest runs)."""
        _, latest, missed = most_recent(self.cj, now, sched, with_deadline=True)
        if latest is None or latest > now:
            return None
        if missed > TOO_MANY_MISSED:
            self.c.event(self.cj, Reason.TOO_MANY_MISSED_TIMES, "too many missed start times. "
                         "Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                         warning=True)
        return latest

    async def _start(self, job: Obj, scheduled: float) -> None:
        try:
            created = await self.c.create_job(job)
            self.c.event(self.cj, Reason.SUCCESSFUL_CREATE, f"Created job {meta.name(created)}")
        except AlreadyExists:
            # Made by an earlier sync that stopped before it wrote the status.
            found = await self.c.get_job(meta.namespace(job), meta.name(job))
            ref = meta.controller_of(found) if found is not None else None
            if found is None or ref is None or ref.get("uid") != meta.uid(self.cj) or \
                    self._in_active(meta.uid(found)):
                return
            created = found
        self.active.append(_ref(created))
        self.cj["status"]["lastScheduleTime"] = stamp(scheduled)
        self.changed = True


# -- the controller --

class _ApiCluster:
    def __init__(self, controller: CronJobController) -> None:
        self.ctl = controller

    def now(self) -> float:
        return time.time()

    async def get_job(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self.ctl.client.get(resources.JOB, name, namespace)
        except NotFound:
            return None

    async def create_job(self, job: Obj) -> Obj:
        return await self.ctl.client.create(resources.JOB, job)

    async def delete_job(self, job: Obj) -> None:
        try:
            await self.ctl.client.request(
                "DELETE", resources.JOB.object_path(meta.name(job), meta.namespace(job)),
                params={"propagationPolicy": "Background"})
        except NotFound:
            pass

    async def get_cronjob(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self.ctl.client.get(resources.CRONJOB, name, namespace)
        except NotFound:
            return None

    async def update_status(self, cj: Obj) -> Obj:
        return await self.ctl.client.update_status(resources.CRONJOB, cj)

    def event(self, cj: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        (self.ctl.events.warning if warning else self.ctl.events.normal)(cj, reason, message)


def _cronjob_ref(job: Obj) -> Obj | None:
    ref = meta.controller_of(job)
    return ref if ref is not None and ref.get("kind") == "CronJob" else None


class CronJobController:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client, self.inf = client, informers
        self.events = Recorder(client, Source("cronjob-controller"))
        self.queue = WorkQueue()
        informers.jobs.add_index(JOB_INDEX, lambda j: (
            (str(ref["uid"]),) if (ref := _cronjob_ref(j)) is not None else ()))
        informers.cronjobs.add_handler(self._on_cronjob)
        informers.jobs.add_handler(self._on_job)

    def _on_cronjob(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is not None:
            self.queue.add(meta.namespaced_name(cur))

    def _on_job(self, prev: Obj | None, cur: Obj | None) -> None:
        ref = _cronjob_ref(cur or prev or {})
        if ref is not None:
            self.queue.add(f"{meta.namespace(cur or prev or {})}/{ref['name']}")

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        cj = self.inf.cronjobs.get(name, ns)
        if cj is None:
            return
        jobs = self.inf.jobs.by_index(JOB_INDEX, meta.uid(cj))
        try:
            again = await Sync(_ApiCluster(self), cj, jobs).run()
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self.queue.add_after(key, 0.1)  # a stale cache: again once it has caught up
            return
        if again is not None:
            self.queue.add_after(key, again)

    async def run(self) -> None:
        await drain("cronjob", self.queue, self.reconcile)
