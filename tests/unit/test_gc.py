"""The garbage collector against a real in-process API server (no other
controllers run): cascading deletion through ownerReferences with each
propagation policy, and what it must leave alone. What the API server does
with a policy on its own is in test_delete_propagation.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.client import Client, Connection, NotFound
from netplane.cluster.controllers.gc import GarbageCollector
from netplane.cluster.controllers.gc import collected as gc_kinds
from netplane.cluster.controllers.shared import Informers
from tests.unit.test_client import Server, one_controller

HANG = 60.0  # only a guard against a hung test
NS = "default"


@dataclass
class Cluster:
    client: Client
    informers: Informers
    gc: GarbageCollector

    async def until(self, cond: Callable[[], bool]) -> None:
        async with asyncio.timeout(HANG):
            while not cond():
                await asyncio.sleep(0.01)

    def cached_refs(self, inf_name: str, name: str) -> list[Obj]:
        obj = getattr(self.informers, inf_name).get(name, NS)
        return list(obj["metadata"].get("ownerReferences") or []) if obj else []

    def cached(self, inf_name: str) -> set[str]:
        inf = getattr(self.informers, inf_name)
        return {o["metadata"]["name"] for o in inf.items()}

    async def names(self, res: Resource) -> set[str]:
        items = (await self.client.list(res, NS))["items"]
        return {o["metadata"]["name"] for o in items}

    async def marked(self, res: Resource, name: str) -> Obj:
        """The object once it has a deletionTimestamp."""
        async with asyncio.timeout(HANG):
            while True:
                obj = await self.client.get(res, name, NS)
                if obj["metadata"].get("deletionTimestamp"):
                    return obj
                await asyncio.sleep(0.02)

    async def gone(self, res: Resource, name: str) -> None:
        async with asyncio.timeout(HANG):
            while True:
                try:
                    await self.client.get(res, name, NS)
                except NotFound:
                    return
                await asyncio.sleep(0.02)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    made: list[GarbageCollector] = []

    def make(client: Client, informers: Informers) -> GarbageCollector:
        made.append(GarbageCollector(client, informers))
        return made[0]

    async with one_controller(tmp_path, make) as (client, informers):
        yield Cluster(client, informers, made[0])


def owner_ref(owner: Obj, *, controller: bool = True) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": controller}


def deployment(name: str) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def replicaset(name: str, owner: Obj | None = None) -> Obj:
    md: Obj = {"name": name, "labels": {"app": "web"}}
    if owner is not None:
        md["ownerReferences"] = [owner_ref(owner)]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": md,
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def pod(name: str, *refs: Obj) -> Obj:
    md: Obj = {"name": name, "labels": {"app": "web"}}
    if refs:
        md["ownerReferences"] = list(refs)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def test_deleting_a_deployment_removes_its_replicasets_and_their_pods(
        cluster: Cluster) -> None:
    c = cluster.client
    dep = await c.create(resources.DEPLOYMENT, deployment("web"), NS)
    rs = await c.create(resources.REPLICASET, replicaset("web-1", dep), NS)
    for i in range(3):
        await c.create(resources.POD, pod(f"web-1-{i}", owner_ref(rs)), NS)
    other_dep = await c.create(resources.DEPLOYMENT, deployment("db"), NS)
    other_rs = await c.create(resources.REPLICASET, replicaset("db-1", other_dep), NS)
    await c.create(resources.POD, pod("db-1-0", owner_ref(other_rs)), NS)
    await cluster.until(lambda: len(cluster.cached("pods")) == 4
                        and len(cluster.cached("replicasets")) == 2)
    await c.delete(resources.DEPLOYMENT, "web", NS)
    await cluster.gone(resources.REPLICASET, "web-1")
    for i in range(3):
        await cluster.gone(resources.POD, f"web-1-{i}")
    # Everything of the other Deployment is still there.
    assert await cluster.names(resources.REPLICASET) == {"db-1"}
    assert await cluster.names(resources.POD) == {"db-1-0"}


async def test_deleting_a_daemon_or_stateful_set_removes_its_pods_and_revisions(
        cluster: Cluster) -> None:
    c = cluster.client
    for kind, res in (("DaemonSet", resources.DAEMONSET), ("StatefulSet", resources.STATEFULSET)):
        name = kind.lower()
        owner = await c.create(res, {
            "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"serviceName": "x", "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}, NS)
        await c.create(resources.POD, pod(f"{name}-0", owner_ref(owner)), NS)
        await c.create(resources.CONTROLLERREVISION, {
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": f"{name}-rev", "ownerReferences": [owner_ref(owner)]},
            "data": {}, "revision": 1}, NS)
    await cluster.until(lambda: len(cluster.cached("controllerrevisions")) == 2
                        and len(cluster.cached("statefulsets")) == 1)
    await c.delete(resources.DAEMONSET, "daemonset", NS)
    await cluster.gone(resources.POD, "daemonset-0")
    await cluster.gone(resources.CONTROLLERREVISION, "daemonset-rev")
    assert await cluster.names(resources.CONTROLLERREVISION) == {"statefulset-rev"}
    await c.delete(resources.STATEFULSET, "statefulset", NS)
    await cluster.gone(resources.POD, "statefulset-0")
    await cluster.gone(resources.CONTROLLERREVISION, "statefulset-rev")


async def test_orphaned_dependents_survive_their_owner(cluster: Cluster) -> None:
    c = cluster.client
    rs = await c.create(resources.REPLICASET, replicaset("web-1"), NS)
    await c.create(resources.POD, pod("kept", owner_ref(rs)), NS)
    await c.create(resources.POD, pod("owned", owner_ref(rs)), NS)
    # What `--cascade=orphan` does first: the dependent lets go of its owner.
    await c.patch(resources.POD, "kept", {"metadata": {"ownerReferences": None}}, NS)
    await cluster.until(lambda: cluster.cached("pods") == {"kept", "owned"} and all(
        not p["metadata"].get("ownerReferences") for p in cluster.informers.pods.items()
        if p["metadata"]["name"] == "kept"))
    await c.delete(resources.REPLICASET, "web-1", NS)
    await cluster.gone(resources.POD, "owned")
    assert await cluster.names(resources.POD) == {"kept"}


async def test_a_dependent_with_a_live_or_unknown_owner_is_left_alone(
        cluster: Cluster) -> None:
    c = cluster.client
    gone = await c.create(resources.REPLICASET, replicaset("gone"), NS)
    stays = await c.create(resources.REPLICASET, replicaset("stays"), NS)
    widget_ref = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w",
                  "uid": "uid-of-a-widget", "controller": True}
    two = await c.create(resources.POD, pod("two-owners", owner_ref(gone, controller=False),
                                            owner_ref(stays)), NS)
    widget = await c.create(resources.POD, pod("widget-pod", widget_ref), NS)
    await c.create(resources.POD, pod("only-gone", owner_ref(gone)), NS)
    await cluster.until(lambda: len(cluster.cached("pods")) == 3)
    await c.delete(resources.REPLICASET, "gone", NS)
    await cluster.gone(resources.POD, "only-gone")
    # One owner still lives: the pod stays and lets go of the one that went.
    await cluster.until(lambda: [r["name"] for r in cluster.cached_refs("pods", "two-owners")]
                        == ["stays"])
    # A kind the server does not serve: nothing is decided about it.
    await cluster.gc.attempt_to_delete(widget["metadata"]["uid"])
    await cluster.gc.attempt_to_delete(two["metadata"]["uid"])
    assert await cluster.names(resources.POD) == {"two-owners", "widget-pod"}


async def test_a_dependent_created_after_its_owner_went_is_collected(
        cluster: Cluster) -> None:
    c = cluster.client
    rs = await c.create(resources.REPLICASET, replicaset("web-1"), NS)
    await cluster.until(lambda: cluster.cached("replicasets") == {"web-1"})
    await c.delete(resources.REPLICASET, "web-1", NS)
    await cluster.until(lambda: not cluster.cached("replicasets"))
    # A pod made by a controller that had not yet seen the delete.
    await c.create(resources.POD, pod("late", owner_ref(rs)), NS)
    await cluster.gone(resources.POD, "late")


# -- each propagation policy on a Deployment -> ReplicaSet -> Pod chain --

HOLD = "example.com/hold"


def blocking_ref(owner: Obj) -> Obj:
    return {**owner_ref(owner), "blockOwnerDeletion": True}


async def chain(cluster: Cluster, name: str = "web", pods: int = 2) -> tuple[Obj, Obj]:
    """A Deployment, its ReplicaSet and its pods, as their controllers link them."""
    c = cluster.client
    dep = await c.create(resources.DEPLOYMENT, deployment(name), NS)
    body = replicaset(f"{name}-1")
    body["metadata"]["ownerReferences"] = [blocking_ref(dep)]
    rs = await c.create(resources.REPLICASET, body, NS)
    for i in range(pods):
        await c.create(resources.POD, pod(f"{name}-1-{i}", blocking_ref(rs)), NS)
    await cluster.until(lambda: len(cluster.cached("pods")) >= pods
                        and f"{name}-1" in cluster.cached("replicasets"))
    return dep, rs


def deletions(cluster: Cluster) -> list[str]:
    """The kinds and names of objects as their removal reaches the caches."""
    seen: list[str] = []
    for inf in (cluster.informers.pods, cluster.informers.replicasets,
                cluster.informers.deployments):
        inf.add_handler(lambda prev, cur: seen.append(f"{prev['kind']}/{prev['metadata']['name']}")
                        if cur is None and prev is not None else None)
    return seen


async def test_background_deletes_the_owner_at_once_then_its_dependents(
        cluster: Cluster) -> None:
    await chain(cluster)
    await cluster.client.delete(resources.DEPLOYMENT, "web", NS, propagation_policy="Background")
    with pytest.raises(NotFound):
        await cluster.client.get(resources.DEPLOYMENT, "web", NS)
    await cluster.gone(resources.REPLICASET, "web-1")
    for i in range(2):
        await cluster.gone(resources.POD, f"web-1-{i}")


async def test_foreground_keeps_the_owner_until_its_dependents_are_gone(
        cluster: Cluster) -> None:
    c = cluster.client
    await chain(cluster)
    await c.patch(resources.POD, "web-1-0", {"metadata": {"finalizers": [HOLD]}}, NS)
    seen = deletions(cluster)
    await c.delete(resources.DEPLOYMENT, "web", NS, propagation_policy="Foreground")
    await cluster.gone(resources.POD, "web-1-1")
    await cluster.marked(resources.POD, "web-1-0")
    # The pod still held, its ReplicaSet and Deployment wait, marked.
    for res, name in ((resources.REPLICASET, "web-1"), (resources.DEPLOYMENT, "web")):
        waiting = await c.get(res, name, NS)
        assert waiting["metadata"]["deletionTimestamp"]
        assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"]
    await c.patch(resources.POD, "web-1-0", {"metadata": {"finalizers": None}}, NS)
    await cluster.gone(resources.DEPLOYMENT, "web")
    await cluster.until(lambda: "Deployment/web" in seen)  # the API may answer first
    assert seen.index("Pod/web-1-0") < seen.index("ReplicaSet/web-1") \
        < seen.index("Deployment/web")
    assert not await cluster.names(resources.POD)


async def test_orphan_leaves_the_dependents_without_the_owner_reference(
        cluster: Cluster) -> None:
    c = cluster.client
    _, rs = await chain(cluster)
    await c.delete(resources.DEPLOYMENT, "web", NS, propagation_policy="Orphan")
    await cluster.gone(resources.DEPLOYMENT, "web")
    kept = await c.get(resources.REPLICASET, "web-1", NS)
    assert not kept["metadata"].get("ownerReferences")
    assert not kept["metadata"].get("deletionTimestamp")
    for i in range(2):
        p = await c.get(resources.POD, f"web-1-{i}", NS)
        assert [r["uid"] for r in p["metadata"]["ownerReferences"]] == [rs["metadata"]["uid"]]


async def test_an_orphan_finalizer_set_beforehand_orphans_without_a_policy(
        cluster: Cluster) -> None:
    c = cluster.client
    await chain(cluster)
    await c.patch(resources.REPLICASET, "web-1", {"metadata": {"finalizers": ["orphan"]}}, NS)
    await c.delete(resources.REPLICASET, "web-1", NS)
    await cluster.gone(resources.REPLICASET, "web-1")
    for i in range(2):
        p = await c.get(resources.POD, f"web-1-{i}", NS)
        assert not p["metadata"].get("ownerReferences")


async def test_finalizers_of_a_dependent_hold_it_after_a_background_delete(
        cluster: Cluster) -> None:
    c = cluster.client
    await chain(cluster, pods=1)
    await c.patch(resources.POD, "web-1-0", {"metadata": {"finalizers": [HOLD]}}, NS)
    await c.delete(resources.DEPLOYMENT, "web", NS)
    await cluster.gone(resources.REPLICASET, "web-1")
    held = await cluster.marked(resources.POD, "web-1-0")
    assert held["metadata"]["finalizers"] == [HOLD]
    await c.patch(resources.POD, "web-1-0", {"metadata": {"finalizers": None}}, NS)
    await cluster.gone(resources.POD, "web-1-0")


async def test_foreground_waits_only_for_dependents_that_block(cluster: Cluster) -> None:
    c = cluster.client
    rs = await c.create(resources.REPLICASET, replicaset("web-1"), NS)
    blocker = pod("blocker", blocking_ref(rs))
    blocker["metadata"]["finalizers"] = [HOLD]
    await c.create(resources.POD, blocker, NS)
    await c.create(resources.POD, pod("free", owner_ref(rs)), NS)
    await cluster.until(lambda: cluster.cached("pods") == {"blocker", "free"})
    await c.delete(resources.REPLICASET, "web-1", NS, propagation_policy="Foreground")
    # Deleted too, but it does not hold the owner back: the held one does.
    await cluster.gone(resources.POD, "free")
    assert (await c.get(resources.REPLICASET, "web-1", NS))["metadata"]["finalizers"] == \
        ["foregroundDeletion"]
    await c.patch(resources.POD, "blocker", {"metadata": {"finalizers": None}}, NS)
    await cluster.gone(resources.REPLICASET, "web-1")


async def test_foreground_keeps_a_dependent_that_has_another_owner(cluster: Cluster) -> None:
    c = cluster.client
    going = await c.create(resources.REPLICASET, replicaset("going"), NS)
    stays = await c.create(resources.REPLICASET, replicaset("stays"), NS)
    await c.create(resources.POD, pod("shared", blocking_ref(going),
                                      owner_ref(stays, controller=False)), NS)
    await cluster.until(lambda: cluster.cached("pods") == {"shared"})
    await c.delete(resources.REPLICASET, "going", NS, propagation_policy="Foreground")
    await cluster.gone(resources.REPLICASET, "going")
    shared = await c.get(resources.POD, "shared", NS)
    assert [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["stays"]


async def test_a_dependent_is_kept_while_one_of_its_owners_lives(cluster: Cluster) -> None:
    c = cluster.client
    a = await c.create(resources.REPLICASET, replicaset("a"), NS)
    b = await c.create(resources.REPLICASET, replicaset("b"), NS)
    await c.create(resources.POD, pod("both", owner_ref(a), owner_ref(b, controller=False)), NS)
    await cluster.until(lambda: cluster.cached("pods") == {"both"})
    await c.delete(resources.REPLICASET, "a", NS)
    await cluster.until(lambda: [r["name"] for r in cluster.cached_refs("pods", "both")] == ["b"])
    await c.delete(resources.REPLICASET, "b", NS)
    await cluster.gone(resources.POD, "both")


# -- any kind the server serves; namespaces --

async def test_kinds_no_other_controller_watches(cluster: Cluster) -> None:
    """A ConfigMap owned by a Secret, and one owned by a (cluster-scoped) Node."""
    c = cluster.client
    secret = await c.create(resources.SECRET, {"apiVersion": "v1", "kind": "Secret",
                                               "metadata": {"name": "s"}}, NS)
    node = await c.create(resources.NODE, {"apiVersion": "v1", "kind": "Node",
                                           "metadata": {"name": "n1"}})
    for name, owner in (("of-secret", secret), ("of-node", node)):
        await c.create(resources.CONFIGMAP, {"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": name,
                                                          "ownerReferences": [owner_ref(owner)]}},
                       NS)
    await c.delete(resources.SECRET, "s", NS)
    await cluster.gone(resources.CONFIGMAP, "of-secret")
    await c.delete(resources.NODE, "n1")
    await cluster.gone(resources.CONFIGMAP, "of-node")


async def test_an_owner_in_another_namespace_counts_as_gone(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": "other"}})
    body = replicaset("elsewhere")
    body["metadata"]["namespace"] = "other"
    rs = await c.create(resources.REPLICASET, body, "other")
    await c.create(resources.POD, pod("cross", owner_ref(rs)), NS)
    await cluster.gone(resources.POD, "cross")
    # In the owner's own namespace the same reference holds.
    body = pod("same", owner_ref(rs))
    body["metadata"]["namespace"] = "other"
    same = await c.create(resources.POD, body, "other")
    await cluster.until(lambda: cluster.gc.cached(same["metadata"]["uid"]) is not None)
    await cluster.gc.attempt_to_delete(same["metadata"]["uid"])
    assert (await c.get(resources.POD, "same", "other"))["metadata"]["uid"] == \
        same["metadata"]["uid"]


async def test_a_cluster_scoped_object_with_a_namespaced_owner_is_left_alone(
        cluster: Cluster) -> None:
    c = cluster.client
    rs = await c.create(resources.REPLICASET, replicaset("web-1"), NS)
    await c.delete(resources.REPLICASET, "web-1", NS)
    role = await c.create(resources.CLUSTERROLE, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "np-test-owned", "ownerReferences": [owner_ref(rs)]}, "rules": []})
    await cluster.until(lambda: cluster.gc.cached(role["metadata"]["uid"]) is not None)
    await cluster.gc.attempt_to_delete(role["metadata"]["uid"])
    assert (await c.get(resources.CLUSTERROLE, "np-test-owned"))["metadata"]["uid"] == \
        role["metadata"]["uid"]


def test_the_collected_kinds_come_from_the_registry_of_kinds() -> None:
    widget = resources.Resource("Widget", "widgets", "widget", "example.com", "v1", True)
    kinds = gc_kinds([*resources.ALL, widget])
    plurals = {(r.group, r.plural) for r in kinds}
    assert widget in kinds
    assert {("", "pods"), ("apps", "replicasets"), ("", "configmaps"), ("", "nodes"),
            ("rbac.authorization.k8s.io", "clusterroles")} <= plurals
    assert ("", "events") not in plurals and ("events.k8s.io", "events") not in plurals
    assert not any(r.create_only for r in kinds)
    assert len(plurals) == len(kinds)


async def test_what_went_while_the_collector_was_down_is_collected_when_it_starts(
        tmp_path: Path) -> None:
    server = Server(tmp_path)
    await server.start()
    try:
        async with Client(Connection(socket=str(server.cfg.socket))) as c:
            dep = await c.create(resources.DEPLOYMENT, deployment("web"), NS)
            await c.create(resources.REPLICASET, replicaset("web-1", dep), NS)
            await c.delete(resources.DEPLOYMENT, "web", NS)
            informers = Informers.for_client(c)
            gc = GarbageCollector(c, informers)
            tasks = [asyncio.create_task(inf.run()) for inf in informers.all()]
            tasks.append(asyncio.create_task(gc.run()))
            try:
                await Cluster(c, informers, gc).gone(resources.REPLICASET, "web-1")
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await server.stop()


WIDGET = Resource("Widget", "widgets", "widget", "example.netplane.io", "v1", True, custom=True)
WIDGET_CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.netplane.io"},
    "spec": {"group": "example.netplane.io", "scope": "Namespaced",
             "names": {"plural": "widgets", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def configmap(name: str, owner: Obj) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "ownerReferences": [owner_ref(owner)]}}


async def test_custom_owners_once_their_definition_is_established(cluster: Cluster) -> None:
    c = cluster.client
    await c.create(resources.CUSTOMRESOURCEDEFINITION, WIDGET_CRD)
    await cluster.until(lambda: ("example.netplane.io", "Widget") in cluster.gc.by_kind)
    owner = await c.create(WIDGET, {"apiVersion": "example.netplane.io/v1", "kind": "Widget",
                                    "metadata": {"name": "w"}, "spec": {}}, NS)
    await c.create(resources.CONFIGMAP, configmap("made-by-w", owner), NS)
    await c.delete(WIDGET, "w", NS)
    await cluster.gone(resources.CONFIGMAP, "made-by-w")

    owner = await c.create(WIDGET, {"apiVersion": "example.netplane.io/v1", "kind": "Widget",
                                    "metadata": {"name": "f"}, "spec": {}}, NS)
    held = configmap("held", owner)
    held["metadata"]["finalizers"] = [HOLD]
    held["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
    await c.create(resources.CONFIGMAP, held, NS)
    await c.delete(WIDGET, "f", NS, propagation_policy="Foreground")
    await cluster.marked(resources.CONFIGMAP, "held")
    waiting = await c.get(WIDGET, "f", NS)
    assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"]
    await c.patch(resources.CONFIGMAP, "held", {"metadata": {"finalizers": None}}, NS)
    await cluster.gone(WIDGET, "f")

    await c.delete(resources.CUSTOMRESOURCEDEFINITION, "widgets.example.netplane.io")
    await cluster.until(lambda: ("example.netplane.io", "Widget") not in cluster.gc.by_kind)
