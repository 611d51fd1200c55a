"""The CronJob controller's sync over a fake cluster with an injected clock:
the times of a schedule in a time zone across daylight saving changes, the
names and annotations of its Jobs, concurrency policies, missed times,
startingDeadlineSeconds, suspend, history limits, and the requeue for the
next time."""

from __future__ import annotations

import copy
import datetime
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from netplane.api import batch, cron, meta
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists
from netplane.cluster.controllers import cronjob as cc
from netplane.cluster.controllers.jobrules import stamp
from netplane.cluster.events import Reason

NY = ZoneInfo("America/New_York")
UTC = datetime.UTC


def at(*args: int, zone: datetime.tzinfo = UTC) -> float:
    return datetime.datetime(*args, tzinfo=zone).timestamp()  # type: ignore[misc]


def local(t: float, zone: datetime.tzinfo = NY) -> str:
    return datetime.datetime.fromtimestamp(t, zone).isoformat()


# -- schedule times --

def test_spring_forward_skips_a_time_that_does_not_exist_as_kube_does() -> None:
    """2026-03-08 02:30 does not exist in New York. robfig/cron (kube) skips
    that day; croniter runs at the end of the gap, 03:00."""
    sched = cron.parse("30 2 * * *", NY)
    before = at(2026, 3, 7, 2, 30, zone=NY)
    assert local(sched.next(before) or 0) == "2026-03-09T02:30:00-04:00"
    naive = croniter("30 2 * * *", datetime.datetime(2026, 3, 7, 2, 30, tzinfo=NY))
    assert naive.get_next(datetime.datetime).isoformat() == "2026-03-08T03:00:00-04:00"


def test_fall_back_runs_once_at_a_time_past_the_repeat() -> None:
    sched = cron.parse("30 2 * * *", NY)
    first = sched.next(at(2026, 10, 31, 2, 30, zone=NY)) or 0
    assert local(first) == "2026-11-01T02:30:00-05:00"
    assert first == at(2026, 11, 1, 7, 30)  # 07:30 UTC
    assert local(sched.next(first) or 0) == "2026-11-02T02:30:00-05:00"


def test_fall_back_runs_twice_in_the_repeated_hour_as_both_libraries_do() -> None:
    sched = cron.parse("30 1 * * *", NY)
    t1 = sched.next(at(2026, 10, 31, 2, 30, zone=NY)) or 0
    t2 = sched.next(t1) or 0
    assert (local(t1), local(t2)) == ("2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00")
    assert t2 - t1 == 3600


@pytest.mark.parametrize(("schedule", "after", "want"), [
    ("*/1 * * * *", at(2026, 1, 1, 0, 0, 30), at(2026, 1, 1, 0, 1)),
    ("@hourly", at(2026, 1, 1, 0, 0), at(2026, 1, 1, 1, 0)),
    ("@daily", at(2026, 1, 1, 12, 0), at(2026, 1, 2, 0, 0)),
    ("0 9 * * mon-fri", at(2026, 1, 2, 10, 0), at(2026, 1, 5, 9, 0)),  # Friday to Monday
    ("@every 90m", at(2026, 1, 1, 0, 0), at(2026, 1, 1, 1, 30)),
])
def test_next_times(schedule: str, after: float, want: float) -> None:
    assert cron.parse(schedule).next(after) == want


# -- the sync --

class FakeCluster:
    def __init__(self, now: float) -> None:
        self.jobs: dict[str, Obj] = {}
        self.cronjob: Obj | None = None
        self.events: list[tuple[Reason, str]] = []
        self.clock = now
        self._serial = itertools.count(1)

    def now(self) -> float:
        return self.clock

    async def get_job(self, namespace: str, name: str) -> Obj | None:
        return copy.deepcopy(self.jobs.get(name))

    async def create_job(self, job: Obj) -> Obj:
        if meta.name(job) in self.jobs:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        job = copy.deepcopy(job)
        job["metadata"]["uid"] = f"job-{next(self._serial)}"
        job["status"] = {"startTime": stamp(self.clock)}
        self.jobs[meta.name(job)] = job
        return copy.deepcopy(job)

    async def delete_job(self, job: Obj) -> None:
        self.jobs.pop(meta.name(job), None)

    async def get_cronjob(self, namespace: str, name: str) -> Obj | None:
        return copy.deepcopy(self.cronjob)

    async def update_status(self, cj: Obj) -> Obj:
        self.cronjob = copy.deepcopy(cj)
        return copy.deepcopy(cj)

    def event(self, cj: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message))

    def finish(self, name: str, kind: str = "Complete") -> None:
        st = self.jobs[name]["status"]
        st["conditions"] = [{"type": kind, "status": "True",
                             "lastTransitionTime": stamp(self.clock)}]
        if kind == "Complete":
            st["completionTime"] = stamp(self.clock)


CREATED = at(2026, 1, 1, 0, 0)


def cronjob(schedule: str = "*/1 * * * *", **spec: Any) -> Obj:
    body: Obj = {"apiVersion": "batch/v1", "kind": "CronJob",
                 "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid",
                              "creationTimestamp": stamp(CREATED)},
                 "spec": {"schedule": schedule, "concurrencyPolicy": "Allow", "suspend": False,
                          "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                          "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                                          "spec": {"template": {"spec": {
                                              "restartPolicy": "OnFailure",
                                              "containers": [{"name": "c", "image": "x"}]}}}}},
                 "status": {}}
    body["spec"].update(spec)
    return body


async def sync(c: FakeCluster, cj: Obj) -> tuple[Obj, float | None]:
    c.cronjob = None
    again = await cc.Sync(c, cj, [j for j in c.jobs.values()
                                  if meta.controller_of(j)["uid"] == "cj-uid"]).run()
    return (c.cronjob or cj), again


async def test_a_job_per_time_named_by_its_minute_and_requeued_for_the_next() -> None:
    c = FakeCluster(CREATED + 30)
    cj, again = await sync(c, cronjob())
    assert not c.jobs and again == pytest.approx(30.1)  # the first time is 00:01
    c.clock = CREATED + 60.5
    cj, again = await sync(c, cj)
    name = f"tick-{int(CREATED + 60) // 60}"
    job = c.jobs[name]
    assert job["metadata"]["annotations"][batch.SCHEDULED_TIMESTAMP] == "2026-01-01T00:01:00Z"
    assert job["metadata"]["labels"] == {"team": "a"}
    assert meta.controller_of(job)["kind"] == "CronJob"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert [r["name"] for r in cj["status"]["active"]] == [name]
    assert cj["status"]["lastScheduleTime"] == "2026-01-01T00:01:00Z"
    assert again == pytest.approx(59.6)
    assert (Reason.SUCCESSFUL_CREATE, f"Created job {name}") in c.events
    # The same time is not run twice.
    cj, _ = await sync(c, cj)
    assert len(c.jobs) == 1
    c.finish(name)
    cj, _ = await sync(c, cj)
    assert "active" not in cj["status"]
    assert (Reason.SAW_COMPLETED_JOB, f"Saw completed job: {name}, status: Complete") in \
        c.events
    cj, _ = await sync(c, cj)
    assert cj["status"]["lastSuccessfulTime"] == stamp(c.clock)


async def test_time_zone_names_the_annotation_in_that_zone() -> None:
    c = FakeCluster(at(2026, 3, 9, 2, 30, 5, zone=NY))
    cj = cronjob("30 2 * * *", timeZone="America/New_York")
    cj["status"]["lastScheduleTime"] = stamp(at(2026, 3, 7, 2, 30, zone=NY))
    await sync(c, cj)
    (job,) = c.jobs.values()
    assert job["metadata"]["annotations"][batch.SCHEDULED_TIMESTAMP] == \
        "2026-03-09T02:30:00-04:00"


@pytest.mark.parametrize(("policy", "want_jobs", "event"), [
    ("Allow", 2, None),
    ("Forbid", 1, Reason.JOB_ALREADY_ACTIVE),
    ("Replace", 1, Reason.SUCCESSFUL_DELETE),
])
async def test_concurrency_policies(policy: str, want_jobs: int, event: Reason | None) -> None:
    c = FakeCluster(CREATED + 60)
    cj, _ = await sync(c, cronjob(concurrencyPolicy=policy))
    first = next(iter(c.jobs))
    c.clock = CREATED + 120
    cj, _ = await sync(c, cj)
    assert len(c.jobs) == want_jobs
    if event is not None:
        assert event in [r for r, _ in c.events]
    if policy == "Replace":
        assert first not in c.jobs and len(cj["status"]["active"]) == 1
    if policy == "Forbid":
        assert [r["name"] for r in cj["status"]["active"]] == [first]


async def test_many_missed_times_warn_and_run_only_the_latest() -> None:
    c = FakeCluster(CREATED + 200 * 60 + 10)
    await sync(c, cronjob())
    assert list(c.jobs) == [f"tick-{int(CREATED) // 60 + 200}"]
    assert Reason.TOO_MANY_MISSED_TIMES in [r for r, _ in c.events]


async def test_a_few_missed_times_run_the_latest_without_a_warning() -> None:
    c = FakeCluster(CREATED + 5 * 60 + 10)
    await sync(c, cronjob())
    assert list(c.jobs) == [f"tick-{int(CREATED) // 60 + 5}"]
    assert Reason.TOO_MANY_MISSED_TIMES not in [r for r, _ in c.events]


async def test_starting_deadline_limits_how_late_a_job_starts() -> None:
    # Due at 00:01, seen at 00:01:40 with a 30 s deadline: missed.
    c = FakeCluster(CREATED + 100)
    _, again = await sync(c, cronjob(startingDeadlineSeconds=30))
    assert not c.jobs
    assert again == pytest.approx(20.1)
    # With the deadline, 200 missed minutes are not "too many": only the
    # last 30 seconds count, and nothing is due in them.
    c = FakeCluster(CREATED + 200 * 60 + 40)
    await sync(c, cronjob(startingDeadlineSeconds=30))
    assert not c.jobs and Reason.TOO_MANY_MISSED_TIMES not in [r for r, _ in c.events]
    c = FakeCluster(CREATED + 200 * 60 + 10)
    await sync(c, cronjob(startingDeadlineSeconds=30))
    assert len(c.jobs) == 1


async def test_suspended_cronjobs_start_nothing() -> None:
    c = FakeCluster(CREATED + 600)
    _, again = await sync(c, cronjob(suspend=True))
    assert not c.jobs and again is None


@pytest.mark.parametrize(("finished", "kept"), [
    (["Complete"] * 5, 3), (["Failed"] * 3, 1), (["Complete", "Failed", "Failed"], 2)])
async def test_history_limits_keep_the_newest_finished_jobs(finished: list[str],
                                                            kept: int) -> None:
    c = FakeCluster(CREATED)
    cj = cronjob()
    for i, kind in enumerate(finished):
        c.clock = CREATED + 60 * (i + 1)
        cj, _ = await sync(c, cj)
        c.finish(f"tick-{int(c.clock) // 60}", kind)
        cj, _ = await sync(c, cj)
    cj, _ = await sync(c, cj)
    assert len(c.jobs) == kept
    newest = f"tick-{int(c.clock) // 60}"
    assert newest in c.jobs


async def test_a_job_made_by_a_sync_that_stopped_early_is_adopted_into_active() -> None:
    c = FakeCluster(CREATED + 61)
    cj = cronjob()
    job = cc.job_for(cj, CREATED + 60, UTC)
    await c.create_job(job)
    cj, _ = await sync(c, cj)
    assert [r["name"] for r in cj["status"]["active"]] == [meta.name(job)]
    assert len(c.jobs) == 1


async def test_an_active_job_that_went_missing_is_dropped() -> None:
    c = FakeCluster(CREATED + 30)
    cj = cronjob()
    cj["status"]["active"] = [{"name": "tick-1", "namespace": "default", "uid": "gone"}]
    cj, _ = await sync(c, cj)
    assert "active" not in cj["status"]
    assert (Reason.MISSING_JOB, "Active job went missing: tick-1") in c.events
