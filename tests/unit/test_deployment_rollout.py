"""The Deployment controller's sync over a fake cluster: the replica counts
of each step are those kube's deployment controller produces (its
rolling_test.go cases, and whole rollouts step by step), revisions and
rollbacks, Recreate, proportional scaling, pause, history cleanup and the
Progressing condition."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists
from netplane.cluster.controllers import deployment as dc
from netplane.cluster.events import Reason

NOW = 1_800_000_000.0


class FakeCluster:
    """ReplicaSets and one Deployment in memory; events and requeues noted."""

    def __init__(self) -> None:
        self.rss: dict[str, Obj] = {}
        self.deployment: Obj | None = None
        self.events: list[str] = []
        self.requeued: list[float] = []
        self.clock = NOW
        self._serial = itertools.count(1)

    def now(self) -> float:
        return self.clock

    async def create_rs(self, rs: Obj) -> Obj:
        if meta.name(rs) in self.rss:
            raise AlreadyExists(409, {"message": "exists"})
        rs = copy.deepcopy(rs)
        n = next(self._serial)
        rs["metadata"].update(uid=f"rs-uid-{n}", creationTimestamp=f"2026-01-01T00:00:{n:02}Z",
                              generation=1)
        rs["status"] = {"observedGeneration": 1}
        self.rss[meta.name(rs)] = rs
        return copy.deepcopy(rs)

    async def update_rs(self, rs: Obj) -> Obj:
        self.rss[meta.name(rs)] = copy.deepcopy(rs)
        return copy.deepcopy(rs)

    async def delete_rs(self, rs: Obj) -> None:
        del self.rss[meta.name(rs)]

    async def update_deployment(self, d: Obj) -> Obj:
        self.deployment = copy.deepcopy(d)
        return copy.deepcopy(d)

    def event(self, d: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        self.events.append(message)

    def requeue_after(self, d: Obj, seconds: float) -> None:
        self.requeued.append(seconds)

    # -- what the ReplicaSet controller and the kubelet would do --

    def settle(self, *, available: bool = True) -> None:
        """Every ReplicaSet gets its pods; they are available or not."""
        for rs in self.rss.values():
            n = dc.replicas(rs)
            rs["status"] = {"replicas": n, "readyReplicas": n if available else 0,
                            "availableReplicas": n if available else 0,
                            "observedGeneration": rs["metadata"].get("generation", 1)}

    def sizes(self, d: Obj) -> tuple[int, ...]:
        """Spec sizes: the ReplicaSet of the Deployment's template first."""
        new = [rs for rs in self.rss.values()
               if dc.same_template(rs["spec"]["template"], d["spec"]["template"])]
        olds = sorted((rs for rs in self.rss.values() if rs not in new),
                      key=lambda r: r["metadata"]["creationTimestamp"])
        return tuple(dc.replicas(rs) for rs in [*new, *olds])


def deployment(replicas: int = 3, *, surge: Any = "25%", unavailable: Any = "25%",
               image: str = "v1", **spec: Any) -> Obj:
    d: Obj = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "namespace": "default", "uid": "d-uid",
                           "generation": 1},
              "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                       "strategy": {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxSurge": surge,
                                                      "maxUnavailable": unavailable}},
                       "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "c", "image": image}]}}},
              "status": {}}
    d["spec"].update(spec)
    return d


async def sync(c: FakeCluster, d: Obj, pods: dict[str, list[Obj]] | None = None) -> Obj:
    """One sync; the Deployment as it is afterwards (status and annotations)."""
    c.deployment = None
    await dc.Sync(c, d, list(c.rss.values()), pods or {}).run()
    out = c.deployment or d
    return {**d, "metadata": out["metadata"], "status": out["status"]}


def with_template(d: Obj, image: str) -> Obj:
    d = copy.deepcopy(d)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = image
    d["metadata"]["generation"] += 1
    return d


async def rolled_out(c: FakeCluster, d: Obj) -> Obj:
    """A Deployment whose only ReplicaSet is fully available."""
    d = await sync(c, d)
    c.settle()
    return await sync(c, d)


# -- numbers --

@pytest.mark.parametrize(("value", "total", "up", "want"), [
    (1, 10, True, 1), ("25%", 10, True, 3), ("25%", 10, False, 2), ("25%", 3, True, 1),
    ("25%", 3, False, 0), ("100%", 7, False, 7), ("0%", 5, True, 0), ("5", 10, True, 5)])
def test_int_or_percent_rounds_surge_up_and_unavailable_down(
        value: Any, total: int, up: bool, want: int) -> None:
    assert dc.scaled_value(value, total, up) == want


def test_fenceposts_never_both_zero() -> None:
    assert dc.fenceposts(deployment(3, surge="25%", unavailable="25%")) == (1, 0)
    assert dc.fenceposts(deployment(1, surge=0, unavailable="10%")) == (0, 1)
    assert dc.max_unavailable(deployment(2, surge=0, unavailable=5)) == 2


# -- kube's rolling_test.go --

def _rs(name: str, replicas: int, available: int, created: str, template: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                         "uid": f"uid-{name}", "annotations": {}},
            "spec": {"replicas": replicas,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": template}]}}},
            "status": {"replicas": replicas, "availableReplicas": available}}


@pytest.mark.parametrize(("want", "surge", "old", "new", "expected"), [
    (10, 0, 10, 0, None), (10, 2, 10, 0, 2), (10, 2, 5, 0, 7), (10, 2, 10, 2, None),
    (2, 2, 2, 4, 2)])
async def test_reconcile_new_replica_set(want: int, surge: int, old: int, new: int,
                                         expected: int | None) -> None:
    c = FakeCluster()
    d = deployment(want, surge=surge, unavailable=0, image="v2")
    olds = _rs("old", old, old, "2026-01-01T00:00:01Z", "v1")
    fresh = _rs("new", new, 0, "2026-01-01T00:00:02Z", "v2")
    sync_ = dc.Sync(c, d, [olds, fresh], {})
    scaled = await sync_._reconcile_new([olds, fresh], fresh)
    assert scaled == (expected is not None)
    if expected is not None:
        assert dc.replicas(c.rss["new"]) == expected


@pytest.mark.parametrize(("unavailable", "old", "new", "old_ready", "new_ready", "expected"), [
    (0, 10, 0, 10, 0, 9),   # surge 0 and unavailable 0 resolve to one unavailable
    (2, 10, 0, 10, 0, 8),
    (2, 10, 0, 8, 0, 8),    # the unhealthy old pods go first
    (2, 10, 0, 9, 0, 8),    # one unhealthy, then one healthy
    (2, 8, 2, 8, 0, None)])  # the new ReplicaSet's unavailable pods count against the budget
async def test_reconcile_old_replica_sets(unavailable: int, old: int, new: int, old_ready: int,
                                          new_ready: int, expected: int | None) -> None:
    c = FakeCluster()
    d = deployment(10, surge=0, unavailable=unavailable, image="v2")
    olds = _rs("old", old, old_ready, "2026-01-01T00:00:01Z", "v1")
    fresh = _rs("new", new, new_ready, "2026-01-01T00:00:02Z", "v2")
    scaled = await dc.Sync(c, d, [olds, fresh], {})._reconcile_olds(
        [olds, fresh], [olds], fresh)
    assert scaled == (expected is not None)
    if expected is not None:
        assert dc.replicas(c.rss["old"]) == expected


# -- whole rollouts --

@pytest.mark.parametrize(("surge", "unavailable", "steps"), [
    (1, 0, [(1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]),
    # The new ReplicaSet is made at 0, and the old one scaled down in the same sync.
    (0, 1, [(0, 2), (1, 2), (1, 1), (2, 1), (2, 0), (3, 0)]),
    ("25%", "25%", [(1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]),  # 3 pods: 1 and 0
    (3, 3, [(3, 0)])])
async def test_rolling_update_steps(surge: Any, unavailable: Any,
                                    steps: list[tuple[int, int]]) -> None:
    c = FakeCluster()
    d = await rolled_out(c, deployment(3, surge=surge, unavailable=unavailable))
    d = with_template(d, "v2")
    seen = []
    for _ in range(len(steps)):
        d = await sync(c, d)
        seen.append(c.sizes(d))
        c.settle()
    assert seen == steps
    d = await sync(c, d)
    assert c.sizes(d) == (3, 0)
    assert d["status"]["updatedReplicas"] == 3 and d["status"]["availableReplicas"] == 3
    progressing = dc.condition(d["status"], "Progressing")
    assert progressing is not None and progressing["reason"] == dc.NEW_RS_AVAILABLE


async def test_rollout_never_goes_below_the_available_minimum_while_pods_are_not_ready() -> None:
    c = FakeCluster()
    d = await rolled_out(c, deployment(3, surge=1, unavailable=0))
    d = with_template(d, "v2")
    for _ in range(5):
        d = await sync(c, d)
        c.settle(available=False)
        for rs in c.rss.values():  # the old pods stay available
            if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "v1":
                rs["status"]["availableReplicas"] = dc.replicas(rs)
    assert c.sizes(d) == (1, 3)


async def test_revisions_and_rollback_to_an_earlier_template() -> None:
    c = FakeCluster()
    d = await rolled_out(c, deployment(2, surge=2, unavailable=0))
    assert d["metadata"]["annotations"][dc.REVISION] == "1"
    d["metadata"]["annotations"]["kubernetes.io/change-cause"] = "to v2"
    d = with_template(d, "v2")
    for _ in range(3):
        d = await sync(c, d)
        c.settle()
    by_image = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs
                for rs in c.rss.values()}
    assert by_image["v2"]["metadata"]["annotations"][dc.REVISION] == "2"
    assert by_image["v2"]["metadata"]["annotations"]["kubernetes.io/change-cause"] == "to v2"
    assert d["metadata"]["annotations"][dc.REVISION] == "2"
    # kubectl rollout undo: revision 1's template (and annotations) back on the Deployment.
    d = with_template(d, "v1")
    for _ in range(3):
        d = await sync(c, d)
        c.settle()
    notes = by_image["v1"]["metadata"]["name"]
    back = c.rss[notes]["metadata"]["annotations"]
    assert back[dc.REVISION] == "3" and back[dc.REVISION_HISTORY] == "1"
    assert d["metadata"]["annotations"][dc.REVISION] == "3"
    assert c.sizes(d) == (2, 0) and len(c.rss) == 2  # no third ReplicaSet


async def test_recreate_scales_old_to_zero_and_waits_for_their_pods() -> None:
    c = FakeCluster()
    d = deployment(3)
    d["spec"]["strategy"] = {"type": "Recreate"}
    d = await rolled_out(c, d)
    old_uid = next(iter(c.rss.values()))["metadata"]["uid"]
    d = with_template(d, "v2")
    d = await sync(c, d)
    assert c.sizes(d) == (0,)  # scaled down; no new ReplicaSet yet
    c.settle()
    running = {old_uid: [{"status": {"phase": "Running"}}]}
    d = await sync(c, d, running)
    assert len(c.rss) == 1  # its pods are still terminating
    d = await sync(c, d, {})
    assert c.sizes(d) == (3, 0)


async def test_resizing_mid_rollout_scales_every_replica_set_in_proportion() -> None:
    c = FakeCluster()
    d = await rolled_out(c, deployment(5, surge=1, unavailable=0))
    d = with_template(d, "v2")
    d = await sync(c, d)  # new 1, old 5
    c.settle()
    d = await sync(c, d)  # new 1, old 4
    c.settle()
    assert c.sizes(d) == (1, 4)
    d = copy.deepcopy(d)
    d["spec"]["replicas"] = 10  # maxSurge 1: at most 11, annotated at most 6
    d = await sync(c, d)
    # 11 - 5 = 6 more to share, larger first: round(4*11/6)-4 = 3 for the old,
    # round(1*11/6)-1 = 1 for the new; the leftover 2 go to the largest.
    assert c.sizes(d) == (2, 9)
    assert all(rs["metadata"]["annotations"][dc.DESIRED] == "10" for rs in c.rss.values())


async def test_paused_deployment_scales_but_does_not_roll() -> None:
    c = FakeCluster()
    d = await rolled_out(c, deployment(3))
    d = with_template(d, "v2")
    d["spec"]["paused"] = True
    d = await sync(c, d)
    assert len(c.rss) == 1
    progressing = dc.condition(d["status"], "Progressing")
    assert progressing is not None and progressing["reason"] == dc.PAUSED
    d["spec"]["replicas"] = 5
    d = await sync(c, d)
    assert c.sizes(d) == (5,)
    d["spec"]["paused"] = False
    d = await sync(c, d)
    progressing = dc.condition(d["status"], "Progressing")
    assert progressing is not None and progressing["reason"] in (dc.RESUMED, dc.NEW_RS_CREATED)
    assert len(c.rss) == 2


async def test_old_replica_sets_beyond_the_history_limit_are_deleted() -> None:
    c = FakeCluster()
    d = await rolled_out(c, deployment(1, surge=1, unavailable=0, revisionHistoryLimit=1))
    for image in ("v2", "v3", "v4"):
        d = with_template(d, image)
        for _ in range(4):
            d = await sync(c, d)
            c.settle()
    images = sorted(rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    for rs in c.rss.values())
    assert images == ["v3", "v4"]


async def test_progress_deadline_exceeded_when_no_pod_becomes_available() -> None:
    c = FakeCluster()
    d = await rolled_out(c, deployment(2, surge=1, unavailable=0, progressDeadlineSeconds=30))
    d = with_template(d, "v2")
    d = await sync(c, d)
    c.settle(available=False)
    d = await sync(c, d)
    assert c.requeued and c.requeued[-1] <= 31
    c.clock += 31
    d = await sync(c, d)
    progressing = dc.condition(d["status"], "Progressing")
    assert progressing is not None
    assert (progressing["status"], progressing["reason"]) == ("False", dc.TIMED_OUT)
    assert "has timed out progressing" in progressing["message"]


async def test_first_rollout_events_and_conditions() -> None:
    c = FakeCluster()
    d = await sync(c, deployment(3))
    (rs,) = c.rss.values()
    assert rs["metadata"]["name"].startswith("web-")
    assert rs["spec"]["selector"]["matchLabels"][dc.HASH_LABEL] == \
        rs["spec"]["template"]["metadata"]["labels"][dc.HASH_LABEL]
    assert rs["metadata"]["ownerReferences"][0]["uid"] == "d-uid"
    assert rs["metadata"]["annotations"][dc.DESIRED] == "3"
    assert c.events == [f"Scaled up replica set {meta.name(rs)} from 0 to 3"]
    progressing = dc.condition(d["status"], "Progressing")
    assert progressing is not None and progressing["reason"] == dc.NEW_RS_CREATED
    c.settle()
    d = await sync(c, d)
    available = dc.condition(d["status"], "Available")
    assert available is not None and available["status"] == "True"


def test_templates_compare_as_go_does() -> None:
    a = deployment()["spec"]["template"]
    b = copy.deepcopy(a)
    b["spec"]["containers"][0]["resources"] = {}
    b["metadata"]["labels"][dc.HASH_LABEL] = "abc"
    assert dc.same_template(a, b)
    b["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    assert not dc.same_template(a, b)


async def test_a_status_behind_a_scale_down_never_scales_an_old_replica_set_up() -> None:
    """Seen in a 30-replica rollout: the old ReplicaSet was scaled down to 20
    while its status still counted 21 available; treating the extra one as
    unhealthy gave a negative scale-down, and the old ReplicaSet grew."""
    c = FakeCluster()
    d = deployment(30, image="v2")
    c.rss["old"] = _rs("old", 20, 21, "2026-01-01T00:00:01Z", "v1")
    c.rss["new"] = _rs("new", 18, 10, "2026-01-01T00:00:02Z", "v2")
    with pytest.raises(dc.StaleStatus):
        await dc.Sync(c, d, list(c.rss.values()), {}).run()
    assert dc.replicas(c.rss["old"]) == 20
    assert c.events == []
