"""The StatefulSet controller's sync over a fake cluster: stable names and
identities, OrderedReady (one pod at a time, each Ready before the next;
scale down from the highest ordinal) and Parallel, pods made again under
their name, RollingUpdate from the highest ordinal down to the partition
(and with maxUnavailable), OnDelete, revisions and status."""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, Client
from netplane.cluster.controllers import history
from netplane.cluster.controllers import statefulset as ssc
from netplane.cluster.events import Reason
from tests.unit.test_client import one_controller

NOW = 1_800_000_000.0


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class FakeCluster:
    """Pods, revisions and one StatefulSet's status in memory; the kubelet
    is the ``ready`` and ``finish`` steps a test takes."""

    def __init__(self) -> None:
        self.pods: dict[str, Obj] = {}
        self.claims: dict[str, Obj] = {}
        self.revisions: dict[str, Obj] = {}
        self.status: Obj | None = None
        self.events: list[tuple[Reason, str]] = []
        self.requeued: list[float] = []
        self.created: list[str] = []  # pod names, in the order they were made
        self.clock = NOW
        self._serial = itertools.count(1)

    def now(self) -> float:
        return self.clock

    async def ensure_claim(self, claim: Obj) -> None:
        self.claims.setdefault(meta.name(claim), copy.deepcopy(claim))

    async def own_claim(self, namespace: str, name: str, owner: Obj) -> None:
        if name in self.claims:
            self.claims[name]["metadata"].setdefault("ownerReferences", []).append(
                meta.owner_ref(owner, controller=False))

    async def create_pod(self, pod: Obj) -> Obj:
        if meta.name(pod) in self.pods:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        pod = copy.deepcopy(pod)
        n = next(self._serial)
        pod["metadata"].update(uid=f"pod-{n}", creationTimestamp=stamp(NOW + n))
        pod["spec"]["nodeName"] = "node-1"
        pod["status"] = {"phase": "Pending"}
        self.pods[meta.name(pod)] = pod
        self.created.append(meta.name(pod))
        return copy.deepcopy(pod)

    async def delete_pod(self, pod: Obj) -> Obj | None:
        """As the API server does: a pod on a node terminates first."""
        there = self.pods[meta.name(pod)]
        if there["status"].get("phase") in ("Failed", "Succeeded"):
            del self.pods[meta.name(pod)]
            return None
        there["metadata"].setdefault("deletionTimestamp", stamp(self.clock))
        return copy.deepcopy(there)

    async def patch_pod_labels(self, pod: Obj, labels: dict[str, str]) -> Obj:
        self.pods[meta.name(pod)]["metadata"]["labels"].update(labels)
        return copy.deepcopy(self.pods[meta.name(pod)])

    async def update_status(self, sts: Obj) -> Obj:
        self.status = copy.deepcopy(sts["status"])
        return copy.deepcopy(sts)

    async def create_revision(self, rev: Obj) -> Obj:
        if meta.name(rev) in self.revisions:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        rev = copy.deepcopy(rev)
        n = next(self._serial)
        rev["metadata"].update(uid=f"rev-{n}", creationTimestamp=stamp(NOW + n))
        self.revisions[meta.name(rev)] = rev
        return copy.deepcopy(rev)

    async def get_revision(self, namespace: str, name: str) -> Obj:
        return copy.deepcopy(self.revisions[name])

    async def update_revision(self, rev: Obj) -> Obj:
        self.revisions[meta.name(rev)] = copy.deepcopy(rev)
        return copy.deepcopy(rev)

    async def delete_revision(self, rev: Obj) -> None:
        del self.revisions[meta.name(rev)]

    def event(self, sts: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message))

    def requeue_after(self, sts: Obj, seconds: float) -> None:
        self.requeued.append(seconds)

    # -- what the kubelet would do --

    def ready(self, *names: str, since: float | None = None) -> None:
        at = stamp(self.clock - 3600 if since is None else since)
        for pod in self.pods.values():
            if (not names or meta.name(pod) in names) and not meta.is_deleting(pod):
                pod["status"] = {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": at}]}

    def finish(self) -> None:
        self.pods = {k: p for k, p in self.pods.items() if not meta.is_deleting(p)}

    def names(self) -> list[str]:
        return sorted(self.pods, key=lambda n: int(n.rsplit("-", 1)[1]))

    def revision(self, name: str) -> int:
        return history.number(self.revisions[ssc.revision_of(self.pods[name])])

    def terminating(self) -> list[str]:
        return sorted(n for n, p in self.pods.items() if meta.is_deleting(p))


def stateful_set(replicas: int = 3, *, image: str = "v1", template: Obj | None = None,
                 **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid",
                         "generation": 1, "annotations": {"kubernetes.io/change-cause": "v1"}},
            "spec": {"replicas": replicas, "serviceName": "nginx",
                     "selector": {"matchLabels": {"app": "web"}},
                     "podManagementPolicy": "OrderedReady",
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"partition": 0}},
                     "revisionHistoryLimit": 10,
                     "template": template or {
                         "metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": image}]}},
                     **spec},
            "status": {}}


async def sync(c: FakeCluster, sts: Obj) -> Obj:
    c.status = None
    await ssc.Sync(c, sts, list(c.pods.values()), list(c.revisions.values())).run()
    return {**sts, "status": c.status if c.status is not None else sts["status"]}


async def up(c: FakeCluster, sts: Obj, *, rounds: int = 10) -> Obj:
    """Sync, with every pod getting ready, until nothing changes."""
    for _ in range(rounds):
        before = (sorted(c.pods), c.terminating(), copy.deepcopy(sts["status"]))
        sts = await sync(c, sts)
        c.finish()
        c.ready()
        if (sorted(c.pods), c.terminating(), sts["status"]) == before:
            break
    return sts


def with_image(sts: Obj, image: str) -> Obj:
    sts = copy.deepcopy(sts)
    sts["spec"]["template"]["spec"]["containers"][0]["image"] = image
    sts["metadata"]["generation"] += 1
    return sts


# -- identity and order --

async def test_ordered_ready_makes_one_pod_at_a_time_in_order() -> None:
    c = FakeCluster()
    sts = await sync(c, stateful_set())
    assert c.names() == ["web-0"]
    sts = await sync(c, sts)
    assert c.names() == ["web-0"]  # web-0 is not ready yet
    c.ready("web-0")
    sts = await sync(c, sts)
    assert c.names() == ["web-0", "web-1"]
    c.pods["web-1"]["status"] = {"phase": "Running"}  # running, not ready
    sts = await sync(c, sts)
    assert c.names() == ["web-0", "web-1"]
    c.ready("web-1")
    sts = await sync(c, sts)
    assert c.created == ["web-0", "web-1", "web-2"]
    assert sts["status"]["replicas"] == 3 and sts["status"]["readyReplicas"] == 2


async def test_pods_have_a_stable_identity_under_the_service() -> None:
    c = FakeCluster()
    sts = await sync(c, stateful_set())
    pod = c.pods["web-0"]
    assert pod["spec"]["hostname"] == "web-0" and pod["spec"]["subdomain"] == "nginx"
    labels = meta.labels(pod)
    rev = next(iter(c.revisions.values()))
    assert labels == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-0",
                      "apps.kubernetes.io/pod-index": "0",
                      "controller-revision-hash": meta.name(rev)}
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "sts-uid"
    assert (Reason.SUCCESSFUL_CREATE, "create Pod web-0 in StatefulSet web successful") in \
        c.events
    # A pod that lost an identity label gets it back.
    c.ready()
    del c.pods["web-0"]["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
    await sync(c, sts)
    assert meta.labels(c.pods["web-0"])["apps.kubernetes.io/pod-index"] == "0"


async def test_parallel_makes_and_removes_all_at_once() -> None:
    c = FakeCluster()
    sts = await sync(c, stateful_set(podManagementPolicy="Parallel"))
    assert c.names() == ["web-0", "web-1", "web-2"]
    sts["spec"]["replicas"] = 1
    await sync(c, sts)  # none ready: Parallel does not wait
    assert c.terminating() == ["web-1", "web-2"]


async def test_ordinals_start_where_the_set_says() -> None:
    c = FakeCluster()
    sts = await up(c, stateful_set(2, ordinals={"start": 5}))
    assert c.names() == ["web-5", "web-6"]
    sts["spec"]["ordinals"] = {"start": 6}
    await up(c, sts)
    assert c.names() == ["web-6", "web-7"]


async def test_scale_down_goes_from_the_highest_ordinal_one_at_a_time() -> None:
    c = FakeCluster()
    sts = await up(c, stateful_set(4))
    sts["spec"]["replicas"] = 1
    sts = await sync(c, sts)
    assert c.terminating() == ["web-3"]
    sts = await sync(c, sts)
    assert c.terminating() == ["web-3"]  # waits for it to be gone
    c.finish()
    c.pods["web-2"]["status"] = {"phase": "Running"}  # web-2 unready: it may go first...
    c.pods["web-0"]["status"] = {"phase": "Running"}  # ...but not while web-0 is unready
    sts = await sync(c, sts)
    assert c.terminating() == []
    c.ready("web-0")
    sts = await sync(c, sts)
    assert c.terminating() == ["web-2"]
    c.finish()
    sts = await sync(c, sts)
    assert c.terminating() == ["web-1"]
    c.finish()
    sts = await sync(c, sts)
    assert c.names() == ["web-0"] and sts["status"]["replicas"] == 1


async def test_a_deleted_pod_comes_back_under_its_name() -> None:
    c = FakeCluster()
    sts = await up(c, stateful_set())
    uid = meta.uid(c.pods["web-0"])
    await c.delete_pod(c.pods["web-0"])
    sts = await sync(c, sts)
    assert c.terminating() == ["web-0"]  # waited for, not replaced while it goes
    c.finish()
    sts = await sync(c, sts)
    assert c.names() == ["web-0", "web-1", "web-2"]
    assert meta.uid(c.pods["web-0"]) != uid
    assert c.pods["web-0"]["spec"]["hostname"] == "web-0"


WWW = {"metadata": {"name": "www", "labels": {"tier": "data"}},
       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


async def test_each_ordinal_gets_its_own_claim_before_its_pod_and_keeps_it() -> None:
    c = FakeCluster()
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {
        "containers": [{"name": "c", "image": "v1",
                        "volumeMounts": [{"name": "www", "mountPath": "/data"}]}],
        "volumes": [{"name": "www", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]}}
    sts = await up(c, stateful_set(template=template, volumeClaimTemplates=[WWW]))
    assert sorted(c.claims) == ["www-web-0", "www-web-1", "www-web-2"]
    claim = c.claims["www-web-1"]
    assert claim["metadata"]["labels"] == {"tier": "data", "app": "web"}
    assert claim["spec"] == WWW["spec"] and "ownerReferences" not in claim["metadata"]
    volumes = c.pods["web-1"]["spec"]["volumes"]
    assert volumes == [{"name": "other", "emptyDir": {}},
                       {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}}]
    # The pod made again under its name mounts the same claim.
    await c.delete_pod(c.pods["web-1"])
    c.finish()
    sts = await up(c, sts)
    assert c.pods["web-1"]["spec"]["volumes"][-1]["persistentVolumeClaim"] == {
        "claimName": "www-web-1"}
    assert len(c.claims) == 3


async def test_claim_retention_policy_names_the_owner_for_the_collector() -> None:
    c = FakeCluster()
    policy = {"whenDeleted": "Delete", "whenScaled": "Delete"}
    sts = await up(c, stateful_set(volumeClaimTemplates=[WWW],
                                   persistentVolumeClaimRetentionPolicy=policy))
    owners = c.claims["www-web-0"]["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o["controller"]) for o in owners] == [
        ("StatefulSet", "web", False)]
    sts["spec"]["replicas"] = 2
    await sync(c, sts)
    assert c.terminating() == ["web-2"]
    owners = c.claims["www-web-2"]["metadata"]["ownerReferences"]
    assert [o["kind"] for o in owners] == ["StatefulSet", "Pod"]
    assert "Pod" not in [o["kind"] for o in c.claims["www-web-1"]["metadata"][
        "ownerReferences"]]


async def test_a_failed_pod_is_made_again() -> None:
    c = FakeCluster()
    sts = await up(c, stateful_set(2))
    uid = meta.uid(c.pods["web-1"])
    c.pods["web-1"]["status"] = {"phase": "Failed"}
    await sync(c, sts)
    assert meta.uid(c.pods["web-1"]) != uid
    assert (Reason.RECREATING_FAILED_POD,
            "StatefulSet default/web is recreating failed Pod web-1") in c.events


# -- updates --

async def test_rolling_update_goes_from_the_highest_ordinal_down() -> None:
    c = FakeCluster()
    v1 = await up(c, stateful_set())
    old = v1["status"]["currentRevision"]
    sts = with_image(v1, "v2")
    order = []
    for _ in range(20):
        sts = await sync(c, sts)
        order += [n for n in c.terminating() if n not in order]
        if sts["status"].get("updatedReplicas") == 3 and \
                sts["status"].get("readyReplicas") == 3:
            break
        c.finish()
        c.ready()
    assert order == ["web-2", "web-1", "web-0"]
    status = sts["status"]
    assert status["currentRevision"] == status["updateRevision"] != old
    assert status["currentReplicas"] == status["updatedReplicas"] == 3
    assert status["observedGeneration"] == 2


async def test_rolling_update_waits_for_each_updated_pod() -> None:
    c = FakeCluster()
    sts = with_image(await up(c, stateful_set()), "v2")
    sts = await sync(c, sts)
    c.finish()
    sts = await sync(c, sts)  # web-2 made at the new revision, pending
    assert sts["status"]["updatedReplicas"] == 1
    sts = await sync(c, sts)
    assert c.terminating() == []  # not while web-2 is unready
    c.ready("web-2")
    await sync(c, sts)
    assert c.terminating() == ["web-1"]


async def test_a_partition_keeps_the_lower_ordinals_at_the_current_revision() -> None:
    c = FakeCluster()
    v1 = await up(c, stateful_set(updateStrategy={"type": "RollingUpdate",
                                                  "rollingUpdate": {"partition": 2}}))
    sts = await up(c, with_image(v1, "v2"))
    assert [c.revision(n) for n in c.names()] == [1, 1, 2]
    status = sts["status"]
    assert (status["currentReplicas"], status["updatedReplicas"]) == (2, 1)
    assert status["currentRevision"] == v1["status"]["currentRevision"]
    # A pod below the partition that is deleted comes back as it was.
    await c.delete_pod(c.pods["web-0"])
    c.finish()
    sts = await up(c, sts)
    assert c.revision("web-0") == 1
    sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 0
    sts = await up(c, sts)
    assert [c.revision(n) for n in c.names()] == [2, 2, 2]
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]


async def test_max_unavailable_replaces_several_at_once() -> None:
    c = FakeCluster()
    sts = await up(c, stateful_set(4, updateStrategy={
        "type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}))
    await sync(c, with_image(sts, "v2"))
    assert c.terminating() == ["web-2", "web-3"]


async def test_on_delete_updates_only_pods_someone_deleted() -> None:
    c = FakeCluster()
    sts = await up(c, stateful_set(updateStrategy={"type": "OnDelete"}))
    sts = await up(c, with_image(sts, "v2"))
    assert [c.revision(n) for n in c.names()] == [1, 1, 1]
    await c.delete_pod(c.pods["web-1"])
    c.finish()
    sts = await up(c, sts)
    assert [c.revision(n) for n in c.names()] == [1, 2, 1]
    assert (sts["status"]["currentReplicas"], sts["status"]["updatedReplicas"]) == (2, 1)


# -- revisions and status --

async def test_revisions_name_the_template_and_a_rollback_renumbers() -> None:
    c = FakeCluster()
    v1 = await up(c, stateful_set())
    (rev1,) = c.revisions.values()
    assert meta.name(rev1) == f"web-{meta.labels(rev1)['controller.kubernetes.io/hash']}"
    assert meta.labels(rev1)["app"] == "web"
    assert rev1["metadata"]["annotations"]["kubernetes.io/change-cause"] == "v1"
    assert history.template_of(rev1) == v1["spec"]["template"]
    assert v1["status"]["currentRevision"] == v1["status"]["updateRevision"] == meta.name(rev1)
    v2 = await up(c, with_image(v1, "v2"))
    back = copy.deepcopy(v2)
    back["spec"]["template"] = copy.deepcopy(v1["spec"]["template"])
    back = await up(c, back)
    assert c.revisions[meta.name(rev1)]["revision"] == 3
    assert back["status"]["updateRevision"] == meta.name(rev1)
    assert [c.revision(n) for n in c.names()] == [3, 3, 3]


async def test_history_keeps_revision_history_limit_past_revisions() -> None:
    c = FakeCluster()
    sts = await up(c, stateful_set(1, revisionHistoryLimit=1))
    for image in ("v2", "v3", "v4"):
        sts = await up(c, with_image(sts, image))
    assert sorted(r["revision"] for r in c.revisions.values()) == [3, 4]


async def test_status_and_min_ready_seconds() -> None:
    c = FakeCluster()
    sts = await up(c, stateful_set(2), rounds=1)
    c.ready("web-0", since=c.clock)
    sts["spec"]["minReadySeconds"] = 30
    sts = await sync(c, sts)
    assert c.names() == ["web-0"]  # ready, not yet available: web-1 waits
    assert sts["status"] == {**sts["status"], "replicas": 1, "readyReplicas": 1,
                             "availableReplicas": 0, "collisionCount": 0,
                             "observedGeneration": 1}
    assert c.requeued == [30]
    c.clock += 31
    sts = await sync(c, sts)
    assert c.names() == ["web-0", "web-1"] and sts["status"]["availableReplicas"] == 1


# -- through a real API server --

HANG = 60.0  # only a guard against a hung test


async def test_the_controller_makes_pods_in_order_through_the_api(tmp_path: Path) -> None:
    async with one_controller(tmp_path, ssc.StatefulSetController) as (client, _):
        body = stateful_set(2)
        for key in ("uid", "generation"):
            del body["metadata"][key]
        await client.create(resources.STATEFULSET, body, "default")

        async def pod(name: str) -> Obj | None:
            items = (await client.list(resources.POD, "default"))["items"]
            return next((p for p in items if meta.name(p) == name), None)

        async with asyncio.timeout(HANG):
            while (web0 := await pod("web-0")) is None:
                await asyncio.sleep(0.02)
            assert await pod("web-1") is None
            await _make_ready(client, web0)
            while await pod("web-1") is None:
                await asyncio.sleep(0.02)


async def _make_ready(client: Client, pod: Obj) -> None:
    await client.patch(resources.POD, meta.name(pod), {"status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}, "default",
        subresource="status")


@pytest.mark.parametrize("name", ["web-0", "web-12"])
def test_parent_and_ordinal(name: str) -> None:
    assert ssc.parent_and_ordinal({"metadata": {"name": name}}) == (
        "web", int(name.rsplit("-", 1)[1]))
    assert ssc.parent_and_ordinal({"metadata": {"name": "web"}}) == ("", -1)
