"""The garbage collector against a real in-process API server (no other
controllers run): cascading deletion through ownerReferences, and what it
must leave alone.

The API server does not take ``propagationPolicy`` on DELETE; orphaning is
done the other way Kubernetes allows, by removing the dependents'
ownerReferences before the owner is deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.client import Client, NotFound
from netplane.cluster.controllers.gc import GarbageCollector
from netplane.cluster.controllers.shared import Informers
from tests.unit.test_client import one_controller

HANG = 60.0  # only a guard against a hung test
NS = "default"


@dataclass
class Cluster:
    client: Client
    informers: Informers

    async def until(self, cond: Callable[[], bool]) -> None:
        async with asyncio.timeout(HANG):
            while not cond():
                await asyncio.sleep(0.01)

    def cached(self, inf_name: str) -> set[str]:
        inf = getattr(self.informers, inf_name)
        return {o["metadata"]["name"] for o in inf.items()}

    async def names(self, res: Resource) -> set[str]:
        items = (await self.client.list(res, NS))["items"]
        return {o["metadata"]["name"] for o in items}

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
    async with one_controller(tmp_path, GarbageCollector) as (client, informers):
        yield Cluster(client, informers)


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
    job_ref = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "j",
               "uid": "uid-of-a-widget", "controller": True}
    await c.create(resources.POD, pod("two-owners", owner_ref(gone, controller=False),
                                      owner_ref(stays)), NS)
    await c.create(resources.POD, pod("job-pod", job_ref), NS)
    await c.create(resources.POD, pod("only-gone", owner_ref(gone)), NS)
    await cluster.until(lambda: len(cluster.cached("pods")) == 3)
    await c.delete(resources.REPLICASET, "gone", NS)
    await cluster.gone(resources.POD, "only-gone")
    # One owner still lives; the other kind is not one the collector watches.
    assert await cluster.names(resources.POD) == {"two-owners", "job-pod"}


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
