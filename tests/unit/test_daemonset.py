"""The DaemonSet controller's sync over a fake cluster: which nodes get a
pod (node selectors, required node affinity, taints and the tolerations
daemon pods get), nodes coming and going, RollingUpdate within maxUnavailable
or with maxSurge step by step, OnDelete, minReadySeconds, revisions and the
status kubectl reads."""

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
from netplane.cluster.controllers import daemonset as dsc
from netplane.cluster.controllers import history
from netplane.cluster.events import Reason
from tests.unit.test_client import one_controller

NOW = 1_800_000_000.0


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class FakeCluster:
    """Pods, revisions and one DaemonSet's status in memory; the scheduler
    and the kubelet are the ``bind`` and ``ready`` steps a test takes."""

    def __init__(self) -> None:
        self.pods: dict[str, Obj] = {}
        self.revisions: dict[str, Obj] = {}
        self.status: Obj | None = None
        self.events: list[tuple[Reason, str]] = []
        self.requeued: list[float] = []
        self.clock = NOW
        self.graceful = False  # deleted pods linger (terminating) until ``finish``
        self._serial = itertools.count(1)

    def now(self) -> float:
        return self.clock

    async def create_pod(self, pod: Obj) -> Obj:
        pod = copy.deepcopy(pod)
        n = next(self._serial)
        pod["metadata"].update(name=f"{pod['metadata']['generateName']}{n:03}",
                               uid=f"pod-{n}", creationTimestamp=stamp(NOW + n))
        pod["status"] = {"phase": "Pending"}
        self.pods[meta.name(pod)] = pod
        return copy.deepcopy(pod)

    async def delete_pod(self, pod: Obj) -> Obj | None:
        if not self.graceful:
            del self.pods[meta.name(pod)]
            return None
        self.pods[meta.name(pod)]["metadata"]["deletionTimestamp"] = stamp(self.clock)
        return copy.deepcopy(self.pods[meta.name(pod)])

    async def patch_pod_labels(self, pod: Obj, labels: dict[str, str]) -> Obj:
        self.pods[meta.name(pod)]["metadata"]["labels"].update(labels)
        return copy.deepcopy(self.pods[meta.name(pod)])

    async def update_status(self, ds: Obj) -> Obj:
        self.status = copy.deepcopy(ds["status"])
        return copy.deepcopy(ds)

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

    def event(self, ds: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message))

    def requeue_after(self, ds: Obj, seconds: float) -> None:
        self.requeued.append(seconds)

    # -- what the scheduler and the kubelet would do --

    def bind(self) -> None:
        for pod in self.pods.values():
            pod["spec"].setdefault("nodeName", dsc.target_node(pod))

    def ready(self, *names: str, since: float | None = None) -> None:
        """Pods (all by default) run and are ready since ``since`` (long ago)."""
        at = stamp(self.clock - 3600 if since is None else since)
        for pod in self.pods.values():
            if (not names or meta.name(pod) in names) and pod["spec"].get("nodeName"):
                pod["status"] = {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": at}]}

    def finish(self) -> None:
        """Terminating pods are gone."""
        self.pods = {k: p for k, p in self.pods.items() if not meta.is_deleting(p)}

    def settle(self) -> None:
        self.bind()
        self.ready()
        self.finish()

    def by_node(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for pod in sorted(self.pods.values(), key=meta.name):
            out.setdefault(str(dsc.target_node(pod)), []).append(
                "new" if meta.labels(pod).get(dsc.HASH_LABEL) == self.current_hash() else "old")
        return dict(sorted(out.items()))

    def current_hash(self) -> str:
        newest = max(self.revisions.values(), key=history.number)
        return str(meta.labels(newest)[dsc.HASH_LABEL])


def node(name: str, *, labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
         ready: bool = True, unschedulable: bool = False,
         conditions: dict[str, str] | None = None) -> Obj:
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    conds += [{"type": k, "status": v} for k, v in (conditions or {}).items()]
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"conditions": conds}}


def daemon_set(*, image: str = "v1", strategy: Obj | None = None, **pod_spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid",
                         "generation": 1,
                         "annotations": {dsc.TEMPLATE_GENERATION: "1"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {
                         "maxUnavailable": 1, "maxSurge": 0}},
                     "revisionHistoryLimit": 10,
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": image}],
                                           **pod_spec}}},
            "status": {}}


def rolling(unavailable: Any = 1, surge: Any = 0) -> Obj:
    return {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": surge}}


async def sync(c: FakeCluster, ds: Obj, nodes: list[Obj]) -> Obj:
    c.status = None
    await dsc.Sync(c, ds, nodes, list(c.pods.values()), list(c.revisions.values())).run()
    return {**ds, "status": c.status if c.status is not None else ds["status"]}


def with_image(ds: Obj, image: str) -> Obj:
    ds = copy.deepcopy(ds)
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = image
    ds["metadata"]["generation"] += 1
    notes = ds["metadata"]["annotations"]
    notes[dsc.TEMPLATE_GENERATION] = str(int(notes[dsc.TEMPLATE_GENERATION]) + 1)
    return ds


def three() -> list[Obj]:
    return [node("node-1"), node("node-2"), node("node-3")]


async def rolled_out(c: FakeCluster, ds: Obj, nodes: list[Obj]) -> Obj:
    ds = await sync(c, ds, nodes)
    c.settle()
    return await sync(c, ds, nodes)


# -- which nodes --

GPU = {"key": "gpu", "value": "yes", "effect": "NoSchedule"}
DRAIN = {"key": "drain", "effect": "NoExecute"}


@pytest.mark.parametrize(("nodes", "pod_spec", "placed"), [
    # Every node, also a cordoned one and one under memory pressure (daemon
    # pods tolerate both); not one that is not ready.
    ([node("a"), node("b", unschedulable=True), node("c", ready=False),
      node("d", conditions={"MemoryPressure": "True"})], {}, ["a", "b", "d"]),
    ([node("a", labels={"disk": "ssd"}), node("b")], {"nodeSelector": {"disk": "ssd"}}, ["a"]),
    ([node("a", labels={"zone": "x"}), node("b", labels={"zone": "y"}), node("c")],
     {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
         "nodeSelectorTerms": [{"matchExpressions": [
             {"key": "zone", "operator": "In", "values": ["y", "z"]}]}]}}}}, ["b"]),
    ([node("a", taints=[GPU]), node("b")], {}, ["b"]),
    ([node("a", taints=[GPU]), node("b")],
     {"tolerations": [{"key": "gpu", "operator": "Exists"}]}, ["a", "b"]),
    ([node("a", taints=[DRAIN]), node("b")], {}, ["b"]),
    ([node("a"), node("b")], {"nodeName": "b"}, ["b"]),
])
async def test_which_nodes_get_a_daemon_pod(nodes: list[Obj], pod_spec: Obj,
                                            placed: list[str]) -> None:
    c = FakeCluster()
    ds = await sync(c, daemon_set(**pod_spec), nodes)
    assert list(c.by_node()) == placed
    assert ds["status"]["desiredNumberScheduled"] == len(placed)
    assert ds["status"]["currentNumberScheduled"] == len(placed)


async def test_a_daemon_pod_is_pinned_to_its_node_and_tolerates_node_trouble() -> None:
    c = FakeCluster()
    await sync(c, daemon_set(tolerations=[
        {"key": "gpu", "operator": "Exists"},
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
         "effect": "NoSchedule"}]), [node("node-1")])
    (pod,) = c.pods.values()
    assert "nodeName" not in pod["spec"]  # the scheduler binds it
    assert pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In",
                              "values": ["node-1"]}]}]}
    assert [(t["key"], t.get("effect")) for t in pod["spec"]["tolerations"]] == [
        ("gpu", None),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),  # had it: not twice
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule")]
    assert all(t["operator"] == "Exists" for t in pod["spec"]["tolerations"])
    labels = meta.labels(pod)
    assert labels["pod-template-generation"] == "1"
    assert labels["controller-revision-hash"] == c.current_hash()
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    assert pod["metadata"]["generateName"] == "agent-"
    assert (Reason.SUCCESSFUL_CREATE, f"Created pod: {meta.name(pod)}") in c.events


async def test_host_network_pods_tolerate_an_unavailable_network() -> None:
    c = FakeCluster()
    await sync(c, daemon_set(hostNetwork=True), [node("node-1")])
    (pod,) = c.pods.values()
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in [
        (t["key"], t["effect"]) for t in pod["spec"]["tolerations"]]


async def test_a_joining_node_gets_its_pod_and_one_that_stops_matching_loses_it() -> None:
    c = FakeCluster()
    ds = daemon_set(nodeSelector={"role": "edge"})
    nodes = [node("node-1", labels={"role": "edge"}), node("node-2", labels={"role": "edge"})]
    ds = await rolled_out(c, ds, nodes)
    assert list(c.by_node()) == ["node-1", "node-2"]
    # node-3 registers: not ready yet (it carries not-ready:NoSchedule), then ready.
    joining = node("node-3", labels={"role": "edge"}, ready=False)
    await sync(c, ds, [*nodes, joining])
    assert list(c.by_node()) == ["node-1", "node-2"]
    ds = await sync(c, ds, [*nodes, node("node-3", labels={"role": "edge"})])
    assert list(c.by_node()) == ["node-1", "node-2", "node-3"]
    assert ds["status"]["desiredNumberScheduled"] == 3
    # node-2 loses the label: its pod is misscheduled, and deleted.
    c.settle()
    c.graceful = True
    moved = [nodes[0], node("node-2"), node("node-3", labels={"role": "edge"})]
    ds = await sync(c, ds, moved)
    gone = [p for p in c.pods.values() if meta.is_deleting(p)]
    assert [dsc.target_node(p) for p in gone] == ["node-2"]
    assert ds["status"]["numberMisscheduled"] == 1 and ds["status"]["desiredNumberScheduled"] == 2
    c.finish()
    ds = await sync(c, ds, moved)
    assert ds["status"]["numberMisscheduled"] == 0 and list(c.by_node()) == ["node-1", "node-3"]


async def test_noexecute_taints_evict_and_noschedule_taints_keep_what_runs() -> None:
    c = FakeCluster()
    ds = await rolled_out(c, daemon_set(), [node("a"), node("b")])
    ds = await sync(c, ds, [node("a", taints=[GPU]), node("b", taints=[DRAIN])])
    assert list(c.by_node()) == ["a"]  # may stay on a; must leave b
    assert ds["status"]["desiredNumberScheduled"] == 0
    assert ds["status"]["numberMisscheduled"] == 1


async def test_a_deleted_node_takes_its_unbound_pod_with_it() -> None:
    c = FakeCluster()
    ds = await sync(c, daemon_set(), [node("a"), node("b")])  # created, not bound
    await sync(c, ds, [node("a")])
    assert list(c.by_node()) == ["a"]


async def test_failed_pods_are_replaced_and_extra_pods_pruned_oldest_first() -> None:
    c = FakeCluster()
    ds = await rolled_out(c, daemon_set(), [node("a"), node("b")])
    first_a = next(p for p in c.pods.values() if dsc.target_node(p) == "a")
    first_a["status"]["phase"] = "Failed"
    extra = copy.deepcopy(next(p for p in c.pods.values() if dsc.target_node(p) == "b"))
    extra["metadata"].update(name="agent-zzz", uid="extra", creationTimestamp=stamp(NOW + 99))
    c.pods["agent-zzz"] = extra
    ds = await sync(c, ds, [node("a"), node("b")])
    assert meta.name(first_a) not in c.pods and "agent-zzz" not in c.pods
    assert any(r is Reason.FAILED_DAEMON_POD for r, _ in c.events)
    await sync(c, ds, [node("a"), node("b")])  # the failed pod's node gets a new one
    assert {n: len(p) for n, p in c.by_node().items()} == {"a": 1, "b": 1}


# -- status --

async def test_status_counts_what_kubectl_reads() -> None:
    c = FakeCluster()
    ds = daemon_set()
    ds["spec"]["minReadySeconds"] = 30
    ds["metadata"]["generation"] = 4
    ds = await sync(c, ds, three())
    assert ds["status"] == {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                            "numberMisscheduled": 0, "numberReady": 0,
                            "updatedNumberScheduled": 3, "numberAvailable": 0,
                            "numberUnavailable": 3, "observedGeneration": 4}
    c.bind()
    names = sorted(c.pods)
    c.ready(names[0])  # long ago: available
    c.ready(names[1], since=c.clock - 10)  # ready, not yet for minReadySeconds
    ds = await sync(c, ds, three())
    assert (ds["status"]["numberReady"], ds["status"]["numberAvailable"],
            ds["status"]["numberUnavailable"]) == (2, 1, 2)
    assert c.requeued == [30]  # to count it available once it is
    c.clock += 20
    ds = await sync(c, ds, three())
    assert ds["status"]["numberAvailable"] == 2


# -- revisions --

async def test_revisions_follow_the_template_and_a_rollback_renumbers() -> None:
    c = FakeCluster()
    v1 = await rolled_out(c, daemon_set(), [node("a")])
    (rev1,) = c.revisions.values()
    assert rev1["revision"] == 1 and meta.name(rev1) == f"agent-{c.current_hash()}"
    assert rev1["data"]["spec"]["template"]["$patch"] == "replace"
    assert history.template_of(rev1) == v1["spec"]["template"]
    assert meta.labels(rev1)["app"] == "agent"  # kubectl rollout history selects them
    assert rev1["metadata"]["ownerReferences"][0]["uid"] == "ds-uid"
    v2 = await sync(c, with_image(v1, "v2"), [node("a")])
    assert sorted(r["revision"] for r in c.revisions.values()) == [1, 2]
    # kubectl rollout undo puts the first template back: its revision becomes 3.
    back = copy.deepcopy(v2)
    back["spec"]["template"] = copy.deepcopy(v1["spec"]["template"])
    await sync(c, back, [node("a")])
    assert c.revisions[meta.name(rev1)]["revision"] == 3
    assert len(c.revisions) == 2


async def test_old_revisions_beyond_the_limit_go_unless_a_pod_uses_them() -> None:
    c = FakeCluster()
    ds = daemon_set(strategy={"type": "OnDelete"})
    ds["spec"]["revisionHistoryLimit"] = 1
    ds = await rolled_out(c, ds, [node("a")])
    for image in ("v2", "v3", "v4"):
        ds = await sync(c, with_image(ds, image), [node("a")])
    # OnDelete: the v1 pod still runs, so v1's revision stays (it is skipped,
    # not counted); v2 and then v3 went, oldest first.
    numbers = sorted(r["revision"] for r in c.revisions.values())
    assert numbers == [1, 4]


async def test_a_hash_taken_by_another_template_counts_a_collision() -> None:
    c = FakeCluster()
    ds = daemon_set()
    hash_ = history.hash_of(ds["spec"]["template"])
    c.revisions[f"agent-{hash_}"] = {"metadata": {"name": f"agent-{hash_}", "labels": {}},
                                     "data": {"other": True}, "revision": 7}
    with pytest.raises(AlreadyExists):
        await sync(c, ds, [node("a")])
    assert c.status is not None and c.status["collisionCount"] == 1
    ds["status"] = c.status
    await sync(c, ds, [node("a")])
    assert len(c.revisions) == 2 and len(c.pods) == 1


# -- updates --

async def test_rolling_update_replaces_one_node_at_a_time() -> None:
    c = FakeCluster()
    c.graceful = True
    ds = with_image(await rolled_out(c, daemon_set(), three()), "v2")
    steps = []
    for _ in range(12):
        ds = await sync(c, ds, three())
        steps.append(c.by_node())
        # The kubelet stops the deleted pod; the scheduler binds; pods get ready.
        c.finish()
        c.bind()
        c.ready()
        if ds["status"].get("updatedNumberScheduled") == 3 and \
                ds["status"].get("numberAvailable") == 3:
            break
    old, new = ["old"], ["new"]
    assert steps[0] == {"node-1": old, "node-2": old, "node-3": old}  # node-1's is terminating
    assert steps[1] == {"node-1": new, "node-2": old, "node-3": old}
    assert steps[2] == {"node-1": new, "node-2": old, "node-3": old}  # node-2's terminating
    assert steps[3] == {"node-1": new, "node-2": new, "node-3": old}
    assert steps[-1] == {"node-1": new, "node-2": new, "node-3": new}
    assert ds["status"]["updatedNumberScheduled"] == 3


@pytest.mark.parametrize(("unavailable", "at_once"), [(2, 2), ("50%", 2), ("10%", 1),
                                                      ("100%", 4)])
async def test_max_unavailable_bounds_how_many_go_at_once(unavailable: Any,
                                                          at_once: int) -> None:
    c = FakeCluster()
    nodes = [*three(), node("node-4")]
    ds = await rolled_out(c, daemon_set(strategy=rolling(unavailable)), nodes)
    before = set(c.pods)
    await sync(c, with_image(ds, "v2"), nodes)
    assert len(before - set(c.pods)) == at_once  # percentages round up, as kube's do


async def test_unavailable_old_pods_are_replaced_whatever_the_budget() -> None:
    c = FakeCluster()
    ds = await rolled_out(c, daemon_set(), three())
    for pod in c.pods.values():
        pod["status"] = {"phase": "Running"}  # none ready
    before = set(c.pods)
    await sync(c, with_image(ds, "v2"), three())
    assert not before & set(c.pods)


async def test_max_surge_starts_the_new_pod_before_the_old_one_goes() -> None:
    c = FakeCluster()
    nodes = three()
    ds = await rolled_out(c, daemon_set(strategy=rolling(0, 1)), nodes)
    ds = await sync(c, with_image(ds, "v2"), nodes)
    assert c.by_node() == {"node-1": ["old", "new"], "node-2": ["old"], "node-3": ["old"]}
    c.bind()
    ds = await sync(c, ds, nodes)  # the new pod is not available yet: nothing more
    assert c.by_node()["node-1"] == ["old", "new"] and len(c.pods) == 4
    c.ready()
    ds = await sync(c, ds, nodes)  # available: the old one goes...
    assert c.by_node()["node-1"] == ["new"]
    ds = await sync(c, ds, nodes)  # ...and the next node surges
    assert c.by_node()["node-2"] == ["old", "new"]
    for _ in range(6):
        c.bind()
        c.ready()
        ds = await sync(c, ds, nodes)
    assert c.by_node() == {"node-1": ["new"], "node-2": ["new"], "node-3": ["new"]}
    assert ds["status"]["updatedNumberScheduled"] == 3


async def test_min_ready_seconds_hold_the_rollout() -> None:
    c = FakeCluster()
    ds = daemon_set()
    ds["spec"]["minReadySeconds"] = 60
    ds = await rolled_out(c, ds, three())
    ds = await sync(c, with_image(ds, "v2"), three())  # node-1's old pod goes
    ds = await sync(c, ds, three())  # its new pod is made
    c.bind()
    (made,) = [n for n, p in c.pods.items() if dsc.target_node(p) == "node-1"]
    c.ready(made, since=c.clock)
    ds = await sync(c, ds, three())
    assert c.by_node() == {"node-1": ["new"], "node-2": ["old"], "node-3": ["old"]}
    c.clock += 61
    await sync(c, ds, three())
    assert "node-2" not in c.by_node()  # now available: the next one goes


async def test_on_delete_changes_only_pods_someone_deleted() -> None:
    c = FakeCluster()
    ds = await rolled_out(c, daemon_set(strategy={"type": "OnDelete"}), three())
    ds = await sync(c, with_image(ds, "v2"), three())
    assert c.by_node() == {"node-1": ["old"], "node-2": ["old"], "node-3": ["old"]}
    assert ds["status"]["updatedNumberScheduled"] == 0
    del c.pods[next(n for n, p in c.pods.items() if dsc.target_node(p) == "node-2")]
    ds = await sync(c, ds, three())
    assert c.by_node() == {"node-1": ["old"], "node-2": ["new"], "node-3": ["old"]}
    new = next(p for p in c.pods.values() if dsc.target_node(p) == "node-2")
    assert meta.labels(new)["pod-template-generation"] == "2"
    c.settle()
    ds = await sync(c, ds, three())
    assert ds["status"]["updatedNumberScheduled"] == 1


async def test_a_deleting_daemon_set_is_left_alone() -> None:
    c = FakeCluster()
    ds = daemon_set()
    ds["metadata"]["deletionTimestamp"] = stamp(NOW)
    await sync(c, ds, three())
    assert not c.pods and not c.revisions


# -- through a real API server --

HANG = 60.0  # only a guard against a hung test


async def _until(cond: Any) -> Any:
    async with asyncio.timeout(HANG):
        while not (found := await cond()):
            await asyncio.sleep(0.02)
        return found


async def _ready_node(client: Client, name: str) -> None:
    created = await client.create(resources.NODE, {"apiVersion": "v1", "kind": "Node",
                                                   "metadata": {"name": name}})
    created["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    await client.update_status(resources.NODE, created)


async def test_the_controller_keeps_one_pod_per_node_through_the_api(tmp_path: Path) -> None:
    async with one_controller(tmp_path, dsc.DaemonSetController) as (client, _):
        for name in ("node-1", "node-2"):
            await _ready_node(client, name)
        body = daemon_set()
        for key in ("uid", "generation", "annotations"):
            del body["metadata"][key]
        await client.create(resources.DAEMONSET, body, "default")

        async def pods() -> list[Obj]:
            return list((await client.list(resources.POD, "default"))["items"])

        async def status(want: int) -> Obj | None:
            ds = await client.get(resources.DAEMONSET, "agent", "default")
            return ds if ds["status"].get("desiredNumberScheduled") == want else None

        await _until(lambda: status(2))
        assert sorted(dsc.target_node(p) for p in await pods()) == ["node-1", "node-2"]
        await _ready_node(client, "node-3")
        await _until(lambda: status(3))
        placed = sorted(dsc.target_node(p) for p in await pods())
        assert placed == ["node-1", "node-2", "node-3"]  # one each, never two
        revs = (await client.list(resources.CONTROLLERREVISION, "default"))["items"]
        assert [r["revision"] for r in revs] == [1]
