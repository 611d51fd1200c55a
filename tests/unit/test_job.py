"""The Job controller's sync over a fake cluster, with an injected clock:
how many pods run (parallelism, completions), counting through the tracking
finalizer without counting a pod twice, back-off, backoffLimit, the
deadline, Indexed Jobs and their completedIndexes, podFailurePolicy,
suspend, and the TTL after a Job finished."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from netplane.api import batch, meta
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError
from netplane.cluster.controllers import jobrules as rules
from netplane.cluster.controllers import ttl
from netplane.cluster.controllers.jobsync import Sync
from netplane.cluster.events import Reason

NOW = 1_800_000_000.0


class FakeCluster:
    """Pods and one Job in memory; the pods' agent is the test itself."""

    def __init__(self) -> None:
        self.pods: dict[str, Obj] = {}
        self.job: Obj | None = None
        self.events: list[tuple[Reason, str]] = []
        self.requeued: list[float] = []
        self.clock = NOW
        self.fail_release = False
        self._serial = itertools.count(1)

    def now(self) -> float:
        return self.clock

    async def create_pod(self, pod: Obj) -> Obj:
        pod = copy.deepcopy(pod)
        n = next(self._serial)
        md = pod["metadata"]
        md.update(name=f"{md['generateName']}{n:05}", uid=f"pod-{n}",
                  creationTimestamp=rules.stamp(self.clock))
        pod["status"] = {"phase": "Pending"}
        self.pods[md["uid"]] = pod
        return copy.deepcopy(pod)

    async def delete_pod(self, pod: Obj) -> bool:
        cur = self.pods.get(meta.uid(pod))
        if cur is None:
            return False
        md = cur["metadata"]
        md.setdefault("deletionTimestamp", rules.stamp(self.clock))
        md.setdefault("deletionGracePeriodSeconds", 30)
        return True

    async def release_pod(self, pod: Obj) -> bool:
        if self.fail_release:
            raise ApiError(500, "InternalError", "no")
        cur = self.pods.get(meta.uid(pod))
        if cur is None:
            return False
        cur["metadata"]["finalizers"] = [f for f in cur["metadata"].get("finalizers", [])
                                         if f != batch.TRACKING_FINALIZER]
        return True

    async def update_status(self, job: Obj) -> Obj:
        self.job = copy.deepcopy(job)
        return copy.deepcopy(job)

    def event(self, job: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message))

    def requeue_after(self, job: Obj, seconds: float) -> None:
        self.requeued.append(seconds)

    # -- what the node agents would do --

    def run_pods(self, *, ready: bool = True) -> None:
        for p in self.pods.values():
            if p["status"]["phase"] == "Pending" and not meta.is_deleting(p):
                p["spec"]["nodeName"] = "node-1"
                p["status"] = {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True" if ready else "False",
                     "lastTransitionTime": rules.stamp(self.clock)}]}

    def end(self, pod: Obj, phase: str = "Succeeded", code: int | None = None,
            container: str = "c") -> None:
        exit_code = code if code is not None else (0 if phase == "Succeeded" else 1)
        self.pods[meta.uid(pod)]["status"] = {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "False",
                            "lastTransitionTime": rules.stamp(self.clock)}],
            "containerStatuses": [{"name": container, "restartCount": 0, "state": {
                "terminated": {"exitCode": exit_code}}}]}

    def stop_deleted(self) -> None:
        """Agents stop deleted pods; released ones go."""
        for uid, p in list(self.pods.items()):
            if meta.is_deleting(p):
                p["metadata"]["deletionGracePeriodSeconds"] = 0
                if not rules.tracked(p):
                    del self.pods[uid]

    def live(self) -> list[Obj]:
        return [p for p in self.pods.values() if rules.active(p)]


def job(completions: int | None = 1, parallelism: int = 1, **spec: Any) -> Obj:
    body: Obj = {"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid",
                              "generation": 1},
                 "spec": {"parallelism": parallelism, "backoffLimit": 6,
                          "completionMode": "NonIndexed", "suspend": False,
                          "podReplacementPolicy": "TerminatingOrFailed",
                          "selector": {"matchLabels": {batch.CONTROLLER_UID: "job-uid"}},
                          "template": {"metadata": {"labels": {batch.CONTROLLER_UID: "job-uid"}},
                                       "spec": {"restartPolicy": "Never", "containers": [
                                           {"name": "c", "image": "busybox"}]}}},
                 "status": {}}
    if completions is not None:
        body["spec"]["completions"] = completions
    body["spec"].update(spec)
    return body


async def sync(c: FakeCluster, j: Obj, **kw: Any) -> Obj:
    """One sync; the Job as it is afterwards."""
    c.job = None
    await Sync(c, j, list(c.pods.values()), **kw).run()
    return c.job or j


async def settle(c: FakeCluster, j: Obj, rounds: int = 3) -> Obj:
    for _ in range(rounds):
        j = await sync(c, j)
    return j


def types(j: Obj) -> list[str]:
    return [cond["type"] for cond in j["status"].get("conditions") or []]


# -- how many pods --

@pytest.mark.parametrize(("completions", "parallelism", "succeeded", "running", "want"), [
    (5, 2, 0, 0, 2),
    (5, 2, 4, 0, 1),
    (5, 2, 3, 1, 2),
    (2, 5, 0, 0, 2),
    (None, 3, 0, 0, 3),  # a work queue: parallelism pods
    (None, 3, 1, 1, 1),  # after a success, no new pods
    (5, 2, 0, 3, 2),  # one too many: deleted
])
async def test_active_pods_follow_parallelism_and_remaining_completions(
        completions: int | None, parallelism: int, succeeded: int, running: int,
        want: int) -> None:
    c = FakeCluster()
    j = job(completions, parallelism)
    j["status"] = {"succeeded": succeeded, "startTime": rules.stamp(NOW)}
    for _ in range(running):
        await c.create_pod(rules.pod_for(j, None))
    c.run_pods()
    j = await sync(c, j)
    assert len(c.live()) == want
    assert j["status"]["active"] == want


async def test_a_job_completes_in_two_steps_and_counts_each_pod_once() -> None:
    c = FakeCluster()
    j = await sync(c, job(3, 2))
    assert j["status"]["active"] == 2 and j["status"]["startTime"] == rules.stamp(NOW)
    first = c.live()
    assert all(rules.tracked(p) and meta.controller_of(p)["uid"] == "job-uid" for p in first)
    assert [m for _, m in c.events][:2] == [f"Created pod: {meta.name(p)}" for p in first]
    c.run_pods()
    for p in first:
        c.end(p)
    j = await sync(c, j)
    assert j["status"]["succeeded"] == 2 and j["status"]["uncountedTerminatedPods"] == {}
    assert not any(rules.tracked(p) for p in first)
    c.run_pods()
    for p in c.live():
        c.end(p)
    c.clock += 5
    j = await settle(c, j)
    assert j["status"]["succeeded"] == 3  # not once more for each sync
    assert types(j) == ["SuccessCriteriaMet", "Complete"]
    complete = j["status"]["conditions"][1]
    assert (complete["reason"], complete["message"]) == (
        "CompletionsReached", "Reached expected number of succeeded pods")
    assert j["status"]["completionTime"] == rules.stamp(NOW + 5)
    assert (Reason.COMPLETED, "Job completed") in c.events
    assert "active" not in j["status"] and j["status"]["ready"] == 0


async def test_a_pod_is_counted_once_when_its_finalizer_cannot_be_removed_at_first() -> None:
    c = FakeCluster()
    j = await sync(c, job(1))
    c.run_pods()
    c.end(c.live()[0])
    c.fail_release = True
    with pytest.raises(ApiError):
        await sync(c, j)
    j = c.job
    assert j is not None
    assert j["status"]["uncountedTerminatedPods"] == {"succeeded": ["pod-1"]}
    assert "succeeded" not in j["status"]
    with pytest.raises(ApiError):  # still failing: the uid stays uncounted, not counted twice
        await sync(c, j)
    j = c.job or j
    assert "succeeded" not in j["status"] and types(j) == ["SuccessCriteriaMet"]
    c.fail_release = False
    j = await settle(c, j)
    assert j["status"]["succeeded"] == 1 and j["status"]["uncountedTerminatedPods"] == {}
    assert types(j) == ["SuccessCriteriaMet", "Complete"]


async def test_an_uncounted_pod_already_released_moves_into_the_counters() -> None:
    """A sync stopped after the finalizer went, before the count was written."""
    c = FakeCluster()
    j = job(2)
    j["status"] = {"startTime": rules.stamp(NOW),
                   "uncountedTerminatedPods": {"succeeded": ["pod-1"], "failed": ["gone"]}}
    pod = await c.create_pod(rules.pod_for(j, None))
    c.end(pod)
    await c.release_pod(pod)
    j = await sync(c, j)
    assert (j["status"]["succeeded"], j["status"]["failed"]) == (1, 1)
    assert j["status"]["uncountedTerminatedPods"] == {}


# -- failures --

@pytest.mark.parametrize(("failures", "delay"), [(0, 0), (1, 10), (2, 20), (3, 40), (6, 320),
                                                 (7, 600), (30, 600)])
def test_back_off_doubles_from_ten_seconds_to_its_cap(failures: int, delay: float) -> None:
    assert rules.backoff_delay(failures) == delay


def test_a_success_resets_the_back_off() -> None:
    def ended(at: float) -> Obj:
        return {"status": {"conditions": [{"type": "Ready", "status": "False",
                                           "lastTransitionTime": rules.stamp(at)}]}}
    record = rules.next_backoff(rules.Backoff(), [], [ended(NOW), ended(NOW + 5)])
    assert record == rules.Backoff(2, NOW + 5)
    assert rules.backoff_remaining(record, NOW + 15) == 10
    assert rules.next_backoff(record, [ended(NOW + 10)], [ended(NOW + 20)]) == \
        rules.Backoff(1, NOW + 20)
    assert rules.next_backoff(record, [ended(NOW + 30)], [ended(NOW + 20)]) == rules.Backoff()


async def test_failed_pods_are_recreated_after_the_back_off() -> None:
    c = FakeCluster()
    j = await sync(c, job(1))
    c.run_pods()
    c.end(c.live()[0], "Failed")
    s = Sync(c, j, list(c.pods.values()))
    await s.run()
    j = c.job or j
    assert j["status"]["failed"] == 1 and not c.live()
    assert c.requeued[-1] == 10.0  # no new pod before the back-off
    record = s.flushed_backoff
    assert record == rules.Backoff(1, NOW)
    c.clock += 10
    j = await sync(c, j, backoff=record)
    assert len(c.live()) == 1


async def test_more_failures_than_the_backoff_limit_fail_the_job() -> None:
    c = FakeCluster()
    j = await sync(c, job(1, backoffLimit=1))
    record = rules.Backoff()
    for _ in range(2):
        c.run_pods()
        c.end(c.live()[0], "Failed")
        s = Sync(c, j, list(c.pods.values()), backoff=record)
        await s.run()
        j, record = c.job or j, s.flushed_backoff or record
        c.clock += 60
        if not rules.job_finished(j):
            j = await sync(c, j, backoff=record)
    assert j["status"]["failed"] == 2
    assert types(j) == ["FailureTarget", "Failed"]
    failed = j["status"]["conditions"][1]
    assert (failed["reason"], failed["message"]) == (
        "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert (Reason.BACKOFF_LIMIT_EXCEEDED, "Job has reached the specified backoff limit") in \
        c.events
    assert "completionTime" not in j["status"]


async def test_the_deadline_stops_the_pods_and_fails_the_job() -> None:
    c = FakeCluster()
    j = await sync(c, job(3, 2, activeDeadlineSeconds=30))
    assert c.requeued == [30.0]
    c.run_pods()
    c.clock += 30
    j = await sync(c, j)
    assert types(j) == ["FailureTarget"]
    assert all(meta.is_deleting(p) for p in c.pods.values())
    assert j["status"]["failed"] == 2 and j["status"]["terminating"] == 2
    c.stop_deleted()  # the agents stop them: then the Job has failed
    j = await sync(c, j)
    assert types(j) == ["FailureTarget", "Failed"]
    assert j["status"]["conditions"][1]["reason"] == "DeadlineExceeded"
    assert j["status"]["failed"] == 2 and j["status"]["terminating"] == 0
    assert (Reason.DEADLINE_EXCEEDED, "Job was active longer than specified deadline") in \
        c.events


async def test_on_failure_restarts_count_against_the_backoff_limit() -> None:
    c = FakeCluster()
    j = job(1, backoffLimit=2)
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    j = await sync(c, j)
    c.run_pods()
    pod = c.live()[0]
    c.pods[meta.uid(pod)]["status"]["containerStatuses"] = [{"name": "c", "restartCount": 2}]
    j = await sync(c, j)
    assert types(j) == ["FailureTarget"]


# -- podFailurePolicy --

def policy(action: str, **on: Any) -> Obj:
    return {"rules": [{"action": action, **on}]}


EXIT_42 = {"onExitCodes": {"operator": "In", "values": [42]}}


async def test_fail_job_rule_ends_the_job_with_the_rule_in_the_message() -> None:
    c = FakeCluster()
    j = await sync(c, job(2, 2, podFailurePolicy=policy("FailJob", **EXIT_42),
                          podReplacementPolicy="Failed"))
    c.run_pods()
    doomed = c.live()[0]
    c.end(doomed, "Failed", 42)
    j = await sync(c, j)
    assert types(j) == ["FailureTarget"]
    msg = f"Container c for pod default/{meta.name(doomed)} failed with exit code 42 " \
          "matching FailJob rule at index 0"
    assert j["status"]["conditions"][0]["reason"] == "PodFailurePolicy"
    assert j["status"]["conditions"][0]["message"] == msg
    c.stop_deleted()
    j = await sync(c, j)
    assert types(j) == ["FailureTarget", "Failed"]
    assert (Reason.POD_FAILURE_POLICY, msg) in c.events


@pytest.mark.parametrize(("rule", "code", "counted"), [
    (policy("Ignore", **EXIT_42), 42, 0),
    (policy("Ignore", **EXIT_42), 1, 1),
    (policy("Count", **EXIT_42), 42, 1),
    (policy("Ignore", onExitCodes={"operator": "NotIn", "values": [1, 2]}), 42, 0),
    (policy("Ignore", onExitCodes={"operator": "NotIn", "values": [1, 2]}), 2, 1),
    (policy("Ignore", onExitCodes={"containerName": "other", "operator": "In",
                                   "values": [42]}), 42, 1),
])
async def test_ignore_and_count_rules(rule: Obj, code: int, counted: int) -> None:
    c = FakeCluster()
    j = await sync(c, job(1, podFailurePolicy=rule, podReplacementPolicy="Failed"))
    c.run_pods()
    c.end(c.live()[0], "Failed", code)
    j = await sync(c, j)
    assert j["status"].get("failed", 0) == counted
    assert not rules.job_finished(j) and not any(map(rules.tracked, c.pods.values()))
    # Ignored or not, a failure delays the next pod (kube's back-off record
    # takes every new failure).
    assert c.requeued[-1] == 10.0


def test_pod_condition_rules_match_type_and_status() -> None:
    j = job(1, podFailurePolicy=policy("Ignore", onPodConditions=[
        {"type": "DisruptionTarget", "status": "True"}]))
    pod = {"metadata": {"name": "p", "namespace": "default"}, "status": {
        "phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}}
    assert rules.match_policy(j, pod) == rules.PolicyMatch("Ignore")
    pod["status"]["conditions"][0]["status"] = "False"
    assert rules.match_policy(j, pod) == rules.PolicyMatch()


# -- Indexed --

@pytest.mark.parametrize(("indexes", "text"), [
    ([0, 1, 2, 4], "0-2,4"), ([5, 6], "5,6"), ([3], "3"), ([], ""), ([0, 2, 3, 4, 9], "0,2-4,9")])
def test_completed_indexes_are_written_as_ranges(indexes: list[int], text: str) -> None:
    assert rules.format_intervals(rules.with_indexes([], indexes)) == text
    assert rules.parse_intervals(text, 100) == rules.with_indexes([], indexes)


def test_completed_indexes_past_completions_are_dropped() -> None:
    assert rules.parse_intervals("0-2,4-9", 6) == [(0, 2), (4, 5)]
    assert rules.first_pending_indexes([(0, 1)], {3}, 2, 5) == [2, 4]


async def test_indexed_pods_carry_their_index_and_complete_every_index() -> None:
    c = FakeCluster()
    j = await sync(c, job(5, 2, completionMode="Indexed"))
    pods = sorted(c.live(), key=lambda p: rules.completion_index(p) or 0)
    assert [rules.completion_index(p) for p in pods] == [0, 1]
    first = pods[0]
    assert first["metadata"]["labels"][batch.COMPLETION_INDEX] == "0"
    assert first["metadata"]["generateName"] == "pi-0-"
    assert first["spec"]["hostname"] == "pi-0"
    assert first["spec"]["containers"][0]["env"] == [{
        "name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.labels['{batch.COMPLETION_INDEX}']"}}}]
    c.run_pods()
    c.end(pods[1])  # index 1 first
    j = await sync(c, j)
    assert j["status"]["completedIndexes"] == "1" and j["status"]["succeeded"] == 1
    assert sorted(rules.completion_index(p) or 0 for p in c.live()) == [0, 2]
    for _ in range(4):
        c.run_pods()
        for p in c.live():
            c.end(p)
        j = await sync(c, j)
    j = await settle(c, j)
    assert j["status"]["completedIndexes"] == "0-4" and j["status"]["succeeded"] == 5
    assert types(j) == ["SuccessCriteriaMet", "Complete"]
    assert "uncountedTerminatedPods" in j["status"]


async def test_a_repeated_index_keeps_one_pod() -> None:
    c = FakeCluster()
    j = job(2, 2, completionMode="Indexed")
    j["status"] = {"startTime": rules.stamp(NOW)}
    for ix in (0, 0, 1):
        await c.create_pod(rules.pod_for(j, ix))
    c.run_pods()
    await sync(c, j)
    assert sorted(rules.completion_index(p) or 0 for p in c.live()) == [0, 1]


# -- suspend --

async def test_suspend_stops_pods_uncounted_and_resume_restarts_the_clock() -> None:
    c = FakeCluster()
    j = await sync(c, job(2, 2))
    c.run_pods()
    j["spec"]["suspend"] = True
    j = await sync(c, j)
    assert not c.live() and "failed" not in j["status"]
    assert not any(rules.tracked(p) for p in c.pods.values())  # released: never counted
    cond = j["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Suspended", "True",
                                                              "JobSuspended")
    assert (Reason.SUSPENDED, "Job suspended") in c.events
    c.stop_deleted()
    c.clock += 100
    j["spec"]["suspend"] = False
    j = await sync(c, j)
    cond = j["status"]["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "JobResumed")
    assert j["status"]["startTime"] == rules.stamp(NOW + 100)
    assert len(c.live()) == 2


async def test_a_job_created_suspended_has_no_start_time_and_no_pods() -> None:
    c = FakeCluster()
    j = await sync(c, job(1, suspend=True))
    assert "startTime" not in j["status"] and not c.pods


async def test_nothing_is_created_until_the_expected_pods_are_seen() -> None:
    c = FakeCluster()
    await sync(c, job(3, 3), satisfied=False)
    assert not c.pods


# -- TTL after finished --

@pytest.mark.parametrize(("ttl_seconds", "finished_ago", "want"), [
    (100, 30, 70.0), (100, 100, 0.0), (0, 5, -5.0), (None, 30, None)])
def test_ttl_counts_from_the_finished_condition(
        ttl_seconds: int | None, finished_ago: float, want: float | None) -> None:
    j = job(1)
    if ttl_seconds is not None:
        j["spec"]["ttlSecondsAfterFinished"] = ttl_seconds
    j["status"]["conditions"] = [{"type": "Complete", "status": "True",
                                  "lastTransitionTime": rules.stamp(NOW)}]
    assert ttl.time_left(j, NOW + finished_ago) == want


def test_a_running_job_never_expires() -> None:
    assert ttl.time_left(job(1, ttlSecondsAfterFinished=0), NOW) is None


# -- the controller over a real API server --

async def _until(what: str, check: Any) -> Any:
    import asyncio
    async with asyncio.timeout(30):  # only a guard against a hung test
        while not (out := await check()):
            await asyncio.sleep(0.05)
    return out


async def test_the_controller_counts_through_the_finalizer_and_expires_the_job(
        tmp_path: Any) -> None:
    from netplane.api import resources
    from netplane.cluster.controllers.job import JobController
    from tests.unit.test_client import one_controller

    def both(client: Any, informers: Any) -> Any:
        import asyncio

        class Both:
            def __init__(self) -> None:
                self.parts = [JobController(client, informers),
                              ttl.TTLAfterFinishedController(client, informers)]

            async def run(self) -> None:
                await asyncio.gather(*(p.run() for p in self.parts))
        return Both()

    async with one_controller(tmp_path, both) as (client, _):
        body = job(2, 2, ttlSecondsAfterFinished=0)
        for key in ("uid", "generation"):
            del body["metadata"][key]
        for key in ("selector", "template"):
            body["spec"].pop(key)
        body["spec"]["template"] = {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox"}]}}
        await client.create(resources.JOB, body)

        async def pods() -> list[Obj]:
            found = (await client.list(resources.POD, "default"))["items"]
            return found if len(found) == 2 else []
        for p in await _until("two pods", pods):
            assert p["metadata"]["finalizers"] == [batch.TRACKING_FINALIZER]
            await client.patch(resources.POD, meta.name(p), {"status": {"phase": "Succeeded"}},
                               "default", subresource="status")

        async def gone() -> bool:
            listing = await client.list(resources.JOB, "default")
            return not listing["items"]
        await _until("the finished Job deleted by its TTL", gone)
        left = (await client.list(resources.POD, "default"))["items"]
        assert all(not p["metadata"].get("finalizers") for p in left)
