"""One sync of a Job, as kube-controller-manager's syncJob (pkg/controller/job): runs
pods of the Job's template until ``completions`` of them succeed, at most
``parallelism`` at a time; re-creates failed pods after an exponential
back-off until more than ``backoffLimit`` failed; ``activeDeadlineSeconds``;
``Indexed`` completion (one pod per index, ``status.completedIndexes``);
``podFailurePolicy`` (FailJob, Ignore, Count by exit codes or pod
conditions); ``suspend``.

Pods are counted as kube 1.32 counts them, with the
``batch.kubernetes.io/job-tracking`` finalizer: a finished pod's uid goes to
``status.uncountedTerminatedPods`` first, then its finalizer is removed, then
it moves into ``succeeded`` or ``failed``, so that a pod is counted once
even if the controller stops half way or a pod is deleted meanwhile. The
end is two steps, as in kube: SuccessCriteriaMet or FailureTarget first,
then Complete or Failed once every pod is counted and none is terminating.

The sync works on a ``Cluster`` (what it reads and writes), so that its steps
are tested without a server."""

from __future__ import annotations

import copy
from typing import Protocol

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError
from netplane.cluster.controllers import jobrules as rules
from netplane.cluster.events import Reason

SUCCESS_CRITERIA_MET, FAILURE_TARGET = "SuccessCriteriaMet", "FailureTarget"
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_LIMIT = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = ("DeadlineExceeded", "Job was active longer than specified deadline")
POD_FAILURE_POLICY = "PodFailurePolicy"


class Cluster(Protocol):
    def now(self) -> float: ...
    async def create_pod(self, pod: Obj) -> Obj: ...
    async def delete_pod(self, pod: Obj) -> bool: ...  # False: it was gone
    async def release_pod(self, pod: Obj) -> bool: ...  # removes the finalizer
    async def update_status(self, job: Obj) -> Obj: ...
    def event(self, job: Obj, reason: Reason, message: str, *, warning: bool = False) -> None: ...
    def requeue_after(self, job: Obj, seconds: float) -> None: ...


def _count(st: Obj, key: str) -> int:
    return int(st.get(key) or 0)


class Sync:
    """One syncJob over the Job's pods. ``satisfied``: every pod this
    controller created or deleted shows in ``pods`` (else it creates and
    deletes nothing); ``releasing``: uids whose finalizer removal is not
    seen yet; ``backoff``: the Job's back-off record."""

    def __init__(self, cluster: Cluster, job: Obj, pods: list[Obj], *, satisfied: bool = True,
                 releasing: set[str] | None = None,
                 backoff: rules.Backoff | None = None) -> None:
        self.c, self.job, self.pods = cluster, copy.deepcopy(job), pods
        self.satisfied = satisfied
        self.releasing = set(releasing or ())
        self.backoff = backoff or rules.Backoff()
        st = self.job.setdefault("status", {})
        uncounted = st.get("uncountedTerminatedPods") or {}
        st["uncountedTerminatedPods"] = {k: list(uncounted.get(k) or [])
                                         for k in ("succeeded", "failed")}
        # What the controller keeps track of after the sync.
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.released: list[str] = []
        self.flushed_backoff: rules.Backoff | None = None
        self.error: ApiError | None = None
        self.active = self.ready = self.terminating = self.succeeded = self.failed = 0
        self.new_backoff = self.backoff
        self.succeeded_indexes: list[rules.Interval] = []
        self.prev_indexes: list[rules.Interval] = []

    @property
    def spec(self) -> Obj:
        return dict(self.job.get("spec") or {})

    @property
    def status(self) -> Obj:
        st: Obj = self.job["status"]
        return st

    def _uncounted(self, kind: str) -> list[str]:
        out: list[str] = self.status["uncountedTerminatedPods"][kind]
        return out

    def suspended(self) -> bool:
        return bool(self.spec.get("suspend"))

    async def run(self) -> None:
        if rules.job_finished(self.job):
            return
        now = self.c.now()
        active_pods = [p for p in self.pods if rules.active(p)]
        self.active, self.ready = len(active_pods), sum(map(meta.pod_ready, active_pods))
        self.terminating = sum(map(rules.terminating, self.pods))
        new_succeeded, new_failed = self._newly_finished()
        st = self.status
        self.succeeded = _count(st, "succeeded") + len(new_succeeded) + \
            len(self._uncounted("succeeded"))
        self.failed = _count(st, "failed") + \
            sum(rules.match_policy(self.job, p).counts for p in new_failed) + \
            len(self._uncounted("failed"))
        if not st.get("startTime") and not self.suspended():
            st["startTime"] = rules.stamp(now)
        self.new_backoff = rules.next_backoff(self.backoff, new_succeeded, new_failed)
        finished = self._finished_condition(now)
        if rules.indexed(self.job):
            self._succeeded_indexes()
        suspend_changed = False
        if finished is not None:
            deleted, deleted_ready = await self._delete(active_pods, release=False)
            if deleted != self.active or not self.satisfied:
                finished = None  # pods it has not seen yet may be left
            self.active -= deleted
            self.terminating += deleted
            self.ready -= deleted_ready
        else:
            managed = False
            if self.satisfied and not meta.is_deleting(self.job):
                await self._manage(active_pods, now)
                managed = True
            completions = self.spec.get("completions")
            done = self.succeeded > 0 if completions is None else \
                self.succeeded >= int(completions)
            if done and self.active == 0:
                finished = rules.new_condition(SUCCESS_CRITERIA_MET, *COMPLETIONS_REACHED, now)
            elif managed:
                suspend_changed = self._suspend_condition(now)
        needs = suspend_changed or (self.active, self.ready, self.terminating) != (
            _count(st, "active"), st.get("ready"), st.get("terminating"))
        st.update(active=self.active, ready=self.ready, terminating=self.terminating)
        await self._track(finished, needs, now)
        if self.error is not None:
            raise self.error

    # -- counting --

    def _counted_already(self, pod: Obj) -> bool:
        uid = meta.uid(pod)
        return not rules.tracked(pod) or uid in self.releasing or \
            uid in self._uncounted("succeeded") or uid in self._uncounted("failed")

    def _newly_finished(self) -> tuple[list[Obj], list[Obj]]:
        """getNewFinishedPods: finished pods not counted yet."""
        completions = int(self.spec.get("completions") or 0)
        fresh = [p for p in self.pods if not self._counted_already(p) and (
            not rules.indexed(self.job) or rules.valid_index(p, completions) is not None)]
        return ([p for p in fresh if rules.phase(p) == rules.SUCCEEDED],
                [p for p in fresh if rules.failed(p, self.job)])

    def _succeeded_indexes(self) -> None:
        completions = int(self.spec.get("completions") or 0)
        self.prev_indexes = rules.parse_intervals(self.status.get("completedIndexes", ""),
                                                  completions)
        fresh = {ix for p in self.pods if rules.phase(p) == rules.SUCCEEDED and rules.tracked(p)
                 and (ix := rules.valid_index(p, completions)) is not None}
        self.succeeded_indexes = rules.with_indexes(self.prev_indexes, fresh)
        self.succeeded = rules.total(self.succeeded_indexes)

    def _fail_message(self) -> str | None:
        if not self.spec.get("podFailurePolicy"):
            return None
        for p in self.pods:
            if rules.failed(p, self.job):
                msg = rules.match_policy(self.job, p).fail_message
                if msg is not None:
                    return msg
        return None

    def _past_backoff_on_failure(self) -> bool:
        """For restartPolicy OnFailure: container restarts count as failures."""
        template = self.spec.get("template") or {}
        if (template.get("spec") or {}).get("restartPolicy") != "OnFailure":
            return False
        restarts = sum(int(cs.get("restartCount", 0)) for p in self.pods
                       if (p.get("status") or {}).get("phase") in ("Running", "Pending")
                       for cs in (p.get("status") or {}).get("containerStatuses") or [])
        limit = int(self.spec.get("backoffLimit", 6))
        return restarts > 0 if limit == 0 else restarts >= limit

    def _finished_condition(self, now: float) -> Obj | None:
        """What ends the Job, if anything does (syncJob's finishedCondition)."""
        met = rules.condition(self.job, SUCCESS_CRITERIA_MET)
        if met is not None:
            return met
        target = rules.condition(self.job, FAILURE_TARGET)
        if target is not None:
            return rules.new_condition("Failed", target.get("reason", ""),
                                       target.get("message", ""), now)
        msg = self._fail_message()
        if msg is not None:
            return rules.new_condition(FAILURE_TARGET, POD_FAILURE_POLICY, msg, now)
        if self.failed > int(self.spec.get("backoffLimit", 6)) or \
                self._past_backoff_on_failure():
            return rules.new_condition(FAILURE_TARGET, *BACKOFF_LIMIT, now)
        deadline = self.spec.get("activeDeadlineSeconds")
        start = self.status.get("startTime")
        if deadline is None or start is None or self.suspended():
            return None
        left = meta.parse_time(start).timestamp() + int(deadline) - now
        if left <= 0:
            return rules.new_condition(FAILURE_TARGET, *DEADLINE, now)
        self.c.requeue_after(self.job, left)
        return None

    # -- pods --

    async def _delete(self, pods: list[Obj], *, release: bool) -> tuple[int, int]:
        """Deletes pods; ``release``: their finalizer first, so that they are
        not counted (scaling down, suspending), as kube's deleteJobPods."""
        deleted = deleted_ready = 0
        for p in pods:
            try:
                if release and rules.tracked(p):
                    await self.c.release_pod(p)
                    self.releasing.add(meta.uid(p))
                    self.released.append(meta.uid(p))
                if await self.c.delete_pod(p):
                    self.c.event(self.job, Reason.SUCCESSFUL_DELETE,
                                 f"Deleted pod: {meta.name(p)}")
                self.deleted.append(meta.uid(p))
            except ApiError as e:
                self.error = e
                continue
            deleted += 1
            deleted_ready += meta.pod_ready(p)
        return deleted, deleted_ready

    async def _manage(self, active_pods: list[Obj], now: float) -> None:
        """manageJob: as many active pods as parallelism and the remaining
        completions allow, none while suspended."""
        spec = self.spec
        if self.suspended():
            await self._shrink(rules.pods_for_removal(self.job, active_pods, len(active_pods)))
            return
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            want = self.active if self.succeeded > 0 else parallelism
        else:
            want = max(0, min(int(completions) - self.succeeded, parallelism))
        extra = rules.pods_for_removal(self.job, active_pods, max(self.active - want, 0))
        if extra:
            await self._shrink(extra)
            return
        waiting = self.terminating if rules.only_replace_failed(self.job) else 0
        missing = want - waiting - self.active
        if missing <= 0:
            return
        remaining = rules.backoff_remaining(self.new_backoff, now)
        if remaining > 0:
            self.c.requeue_after(self.job, max(remaining, 1.0))
            return
        await self._create(missing, active_pods)

    async def _shrink(self, pods: list[Obj]) -> None:
        removed, removed_ready = await self._delete(pods, release=True)
        self.active -= removed
        self.terminating += removed
        self.ready -= removed_ready

    async def _create(self, count: int, active_pods: list[Obj]) -> None:
        indexes: list[int | None] = [None] * count
        if rules.indexed(self.job):
            busy = {ix for p in active_pods if (ix := rules.completion_index(p)) is not None}
            if rules.only_replace_failed(self.job):
                busy |= {ix for p in self.pods if rules.terminating(p)
                         and (ix := rules.completion_index(p)) is not None}
            indexes = list(rules.first_pending_indexes(
                self.succeeded_indexes, busy, count, int(self.spec.get("completions") or 0)))
        for ix in indexes:
            try:
                pod = await self.c.create_pod(rules.pod_for(self.job, ix))
            except ApiError as e:
                self.c.event(self.job, Reason.FAILED_CREATE, f"Error creating: {e.message}",
                             warning=True)
                self.error = e
                return
            self.created.append(meta.uid(pod))
            self.active += 1
            self.c.event(self.job, Reason.SUCCESSFUL_CREATE, f"Created pod: {meta.name(pod)}")

    def _suspend_condition(self, now: float) -> bool:
        if self.suspended():
            cond = rules.new_condition("Suspended", "JobSuspended", "Job suspended", now)
            if rules.ensure_condition(self.job, cond):
                self.c.event(self.job, Reason.SUSPENDED, "Job suspended")
                return True
            return False
        cond = rules.new_condition("Suspended", "JobResumed", "Job resumed", now, "False")
        if not rules.ensure_condition(self.job, cond):
            return False
        self.c.event(self.job, Reason.RESUMED, "Job resumed")
        # The deadline counts from the resume, as from a first start.
        self.status["startTime"] = rules.stamp(now)
        return True

    # -- status --

    def _move_counted(self, holding: set[str]) -> bool:
        """cleanUncountedPodsWithoutFinalizers: uids whose finalizer is gone
        move from uncountedTerminatedPods into the counters."""
        changed = False
        for kind in ("succeeded", "failed"):
            uids = self._uncounted(kind)
            keep = [u for u in uids if u in holding]
            if len(keep) != len(uids):
                self.status[kind] = _count(self.status, kind) + len(uids) - len(keep)
                self.status["uncountedTerminatedPods"][kind] = keep
                changed = True
        return changed

    def _to_count(self, finished: Obj | None) -> tuple[list[Obj], list[int], bool]:
        """Pods whose finalizer may go now, with their uids noted as
        uncounted (or their index as completed); whether that changed the
        status."""
        changed = False
        completions = int(self.spec.get("completions") or 0)
        is_indexed = rules.indexed(self.job)
        release: list[Obj] = []
        new_indexes: list[int] = []
        pods = sorted(self.pods, key=lambda p: rules.completion_index(p) or 0) \
            if is_indexed else self.pods
        for p in pods:
            uid = meta.uid(p)
            if not rules.tracked(p) or uid in self.releasing:
                continue
            failed = rules.failed(p, self.job)
            succeeded = rules.phase(p) == rules.SUCCEEDED
            if not (meta.is_deleting(self.job) or finished is not None or succeeded or failed):
                continue
            release.append(p)
            ix = rules.valid_index(p, completions)
            if succeeded and uid not in self._uncounted("failed"):
                if is_indexed:
                    if ix is not None and not rules.contains(self.prev_indexes, ix):
                        new_indexes.append(ix)
                        changed = True
                elif uid not in self._uncounted("succeeded"):
                    self._uncounted("succeeded").append(uid)
                    changed = True
            elif (failed or (finished is not None and finished["type"] != SUCCESS_CRITERIA_MET)) \
                    and uid not in self._uncounted("failed") \
                    and (not is_indexed or ix is not None) \
                    and rules.match_policy(self.job, p).counts:
                # When the Job ends, every pod still running counts as failed.
                self._uncounted("failed").append(uid)
                changed = True
        return release, new_indexes, changed

    async def _track(self, finished: Obj | None, needs: bool, now: float) -> None:
        """trackJobStatusAndRemoveFinalizers."""
        holding = {meta.uid(p) for p in self.pods
                   if rules.tracked(p) and meta.uid(p) not in self.releasing}
        needs = self._move_counted(holding) or needs
        release, new_indexes, changed = self._to_count(finished)
        needs = needs or changed
        if rules.indexed(self.job):
            self.succeeded_indexes = rules.with_indexes(self.succeeded_indexes, new_indexes)
            text = rules.format_intervals(self.succeeded_indexes)
            needs = needs or text != self.status.get("completedIndexes", "")
            self.status["succeeded"] = rules.total(self.succeeded_indexes)
            self.status["completedIndexes"] = text
        finished, interim = self._interim(finished, now)
        needs = needs or interim
        if needs:
            await self._write()
            self.flushed_backoff = self.new_backoff
            needs = False
        for p in release:
            try:
                await self.c.release_pod(p)
            except ApiError as e:
                self.error = e
                continue
            self.released.append(meta.uid(p))
            holding.discard(meta.uid(p))
        needs = self._move_counted(holding)
        done = self._enact(finished, now)
        if needs or done:
            await self._write()
        if done and finished is not None:
            self._record_finished(finished)

    def _interim(self, finished: Obj | None, now: float) -> tuple[Obj | None, bool]:
        """FailureTarget or SuccessCriteriaMet goes in the status before the
        finalizers go; returns the Failed or Complete that follows, and
        whether the interim condition is new."""
        if finished is None or finished["type"] not in (FAILURE_TARGET, SUCCESS_CRITERIA_MET):
            return finished, False
        new = rules.condition(self.job, finished["type"]) is None
        if new:
            self.status.setdefault("conditions", []).append(finished)
        final = "Failed" if finished["type"] == FAILURE_TARGET else "Complete"
        return rules.new_condition(final, finished["reason"], finished["message"], now), new

    def _enact(self, finished: Obj | None, now: float) -> bool:
        """enactJobFinished: the final condition, once nothing is uncounted
        and no pod is terminating."""
        if finished is None or self._uncounted("succeeded") or self._uncounted("failed") \
                or self.terminating > 0:
            return False
        rules.ensure_condition(self.job, finished)
        if finished["type"] == "Complete":
            self.status["completionTime"] = finished["lastTransitionTime"]
        return True

    def _record_finished(self, finished: Obj) -> None:
        if finished["type"] == "Complete":
            completions = self.spec.get("completions")
            if completions is not None and _count(self.status, "succeeded") > int(completions):
                self.c.event(self.job, Reason.TOO_MANY_SUCCEEDED_PODS, "Too many succeeded "
                             "pods running after completion count reached", warning=True)
            self.c.event(self.job, Reason.COMPLETED, "Job completed")
            return
        reason = {"BackoffLimitExceeded": Reason.BACKOFF_LIMIT_EXCEEDED,
                  "DeadlineExceeded": Reason.DEADLINE_EXCEEDED}.get(
            finished.get("reason", ""), Reason.POD_FAILURE_POLICY)
        self.c.event(self.job, reason, finished.get("message", ""), warning=True)

    async def _write(self) -> None:
        out = copy.deepcopy(self.job)
        st = out["status"]
        for key in ("active", "succeeded", "failed"):
            if not st.get(key):
                st.pop(key, None)
        uncounted = st["uncountedTerminatedPods"]
        st["uncountedTerminatedPods"] = {k: v for k, v in uncounted.items() if v}
        if not st.get("completedIndexes"):
            st.pop("completedIndexes", None)
        written = await self.c.update_status(out)
        self.job["metadata"] = written.get("metadata", self.job["metadata"])
