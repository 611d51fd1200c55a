"""The scheduling loop against a real in-process API server (no other
controllers): it binds pending pods to feasible nodes, spreads them, and
reports a pod it cannot place as PodScheduled=False, reason Unschedulable,
until a node that fits appears."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client, Connection
from netplane.cluster.controllers import nodetaints
from netplane.cluster.scheduler.loop import Scheduler
from tests.unit.test_client import Server

HANG = 60.0  # only a guard against a hung test
NS = "default"
ALLOCATABLE = {"cpu": "2", "memory": "4Gi", "pods": "110"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    server = Server(tmp_path)
    await server.start()
    task: asyncio.Task[None] | None = None
    try:
        async with Client(Connection(socket=str(server.cfg.socket))) as c:
            task = asyncio.create_task(Scheduler(c).run())
            yield c
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await server.stop()


async def eventually(read: Callable[[], Awaitable[Any]], cond: Callable[[Any], bool]) -> Any:
    """Reads until ``cond`` holds of what was read; returns that."""
    async with asyncio.timeout(HANG):
        while True:
            value = await read()
            if cond(value):
                return value
            await asyncio.sleep(0.02)


async def add_node(c: Client, name: str, *, ready: bool = True,
                   labels: dict[str, str] | None = None) -> None:
    node = await c.create(resources.NODE, {"apiVersion": "v1", "kind": "Node",
                                           "metadata": {"name": name, "labels": labels or {}}})
    # What an agent reports of its machine.
    node["status"] = {"capacity": dict(ALLOCATABLE), "allocatable": dict(ALLOCATABLE)}
    meta.set_condition(node, "Ready", ready, "AgentReady" if ready else "AgentNotReady")
    await taint_as_the_controller(c, await c.update_status(resources.NODE, node))


async def set_ready(c: Client, name: str) -> None:
    node = await c.get(resources.NODE, name)
    meta.set_condition(node, "Ready", True, "AgentReady")
    await taint_as_the_controller(c, await c.update_status(resources.NODE, node))


async def taint_as_the_controller(c: Client, node: Obj) -> None:
    """The node's condition taints, as the node lifecycle controller keeps them."""
    taints = nodetaints.reconciled(node, meta.now())
    if taints is not None:
        await c.patch(resources.NODE, meta.name(node), {"spec": {"taints": taints}})


def pod(name: str, **node_selector: str) -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": "busybox"}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def get_pod(c: Client, name: str) -> Callable[[], Awaitable[Obj]]:
    return lambda: c.get(resources.POD, name, NS)


def bound(p: Obj) -> bool:
    return bool(p["spec"].get("nodeName"))


def unschedulable(p: Obj) -> bool:
    cond = meta.condition(p, "PodScheduled")
    return cond is not None and cond["status"] == "False" and cond["reason"] == "Unschedulable"


async def test_a_pending_pod_is_bound_to_the_ready_node(client: Client) -> None:
    await add_node(client, "node-1")
    await add_node(client, "node-2", ready=False)
    await client.create(resources.POD, pod("web"), NS)
    placed = await eventually(get_pod(client, "web"), bound)
    assert placed["spec"]["nodeName"] == "node-1"


async def test_pods_created_together_are_spread_over_the_nodes(client: Client) -> None:
    await add_node(client, "node-1")
    await add_node(client, "node-2")
    for i in range(4):
        await client.create(resources.POD, pod(f"web-{i}"), NS)
    items = await eventually(lambda: client.list(resources.POD, NS),
                             lambda body: all(bound(p) for p in body["items"]))
    where = sorted(p["spec"]["nodeName"] for p in items["items"])
    assert where == ["node-1", "node-1", "node-2", "node-2"]


async def test_no_feasible_node_is_reported_then_the_pod_is_bound_when_one_is_ready(
        client: Client) -> None:
    await add_node(client, "node-1", ready=False)
    await client.create(resources.POD, pod("web"), NS)
    waiting = await eventually(get_pod(client, "web"), unschedulable)
    cond = meta.condition(waiting, "PodScheduled")
    assert cond is not None
    assert cond["message"] == ("0/1 nodes are available: 1 node(s) had untolerated taint "
                               "{node.kubernetes.io/not-ready: }. preemption: "
                               "0/1 nodes are available: 1 Preemption is not helpful for "
                               "scheduling..")
    assert not bound(waiting) and waiting["status"]["phase"] == "Pending"
    await set_ready(client, "node-1")
    placed = await eventually(get_pod(client, "web"), bound)
    assert placed["spec"]["nodeName"] == "node-1"


async def test_node_selector_that_no_node_matches_is_unschedulable(client: Client) -> None:
    await add_node(client, "node-1", labels={"disk": "hdd"})
    await add_node(client, "node-2", labels={"disk": "hdd"})
    await client.create(resources.POD, pod("db", disk="ssd"), NS)
    waiting = await eventually(get_pod(client, "db"), unschedulable)
    cond = meta.condition(waiting, "PodScheduled")
    assert cond is not None and cond["message"] == (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: "
        "0/2 nodes are available: 2 Preemption is not helpful for scheduling..")
    await add_node(client, "node-3", labels={"disk": "ssd"})
    placed = await eventually(get_pod(client, "db"), bound)
    assert placed["spec"]["nodeName"] == "node-3"


class ConflictingClient:
    """Answers every status update with 409, as a stale resourceVersion gets."""

    def __init__(self) -> None:
        self.status_updates = 0

    async def update_status(self, res: object, obj: Obj) -> Obj:
        self.status_updates += 1
        raise ApiError(409, "Conflict", "the object has been modified")

    def __getattr__(self, name: str) -> Any:  # anything else (events): accepted, ignored
        async def ignored(*args: object, **kw: object) -> Obj:
            return {}
        return ignored


async def test_a_failed_unschedulable_update_is_retried_and_the_cache_left_as_it_was() -> None:
    fake = ConflictingClient()
    scheduler = Scheduler(fake)  # type: ignore[arg-type]
    cached = {**pod("web"), "metadata": {"name": "web", "namespace": NS, "uid": "u1"},
              "status": {"phase": "Pending"}}
    before = copy.deepcopy(cached)
    await scheduler.schedule_one(cached)  # no nodes at all
    await scheduler.schedule_one(cached)
    assert fake.status_updates == 2  # the second round tried again
    assert cached == before  # the informer's copy still says what the server said


def hungry(name: str, cpu: str) -> Obj:
    p = pod(name)
    p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu}}
    return p


async def test_a_pod_short_of_cpu_is_bound_when_the_pod_holding_it_is_deleted(
        client: Client) -> None:
    await add_node(client, "node-1")  # 2 cpus
    await client.create(resources.POD, hungry("hog", "1500m"), NS)
    await eventually(get_pod(client, "hog"), bound)
    await client.create(resources.POD, hungry("web", "1"), NS)
    waiting = await eventually(get_pod(client, "web"), unschedulable)
    cond = meta.condition(waiting, "PodScheduled")
    assert cond is not None and cond["message"] == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod..")
    # No agent here to see it stop: gone at once.
    await client.delete(resources.POD, "hog", NS, grace_period=0)
    placed = await eventually(get_pod(client, "web"), bound)
    assert placed["spec"]["nodeName"] == "node-1"


async def test_a_high_priority_pod_preempts_and_is_nominated_then_bound(
        client: Client) -> None:
    await add_node(client, "node-1")  # 2 cpus
    await client.create(resources.PRIORITYCLASS, {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "vip"}, "value": 1000})
    await client.create(resources.POD, hungry("hog", "1500m"), NS)
    await eventually(get_pod(client, "hog"), bound)
    vip = hungry("vip", "1")
    vip["spec"]["priorityClassName"] = "vip"
    await client.create(resources.POD, vip, NS)
    victim = await eventually(get_pod(client, "hog"), meta.is_deleting)
    cond = meta.condition(victim, "DisruptionTarget")
    assert cond is not None and (cond["status"], cond["reason"], cond["message"]) == (
        "True", "PreemptionByScheduler",
        "default-scheduler: preempting to accommodate a higher priority pod")
    waiting = await eventually(get_pod(client, "vip"), lambda p: p.get("status", {}).get(
        "nominatedNodeName") == "node-1")
    scheduled = meta.condition(waiting, "PodScheduled")
    assert scheduled is not None and scheduled["message"] == \
        "0/1 nodes are available: 1 Insufficient cpu."
    # The victim holds its cpu until it is gone; no agent here to see it stop.
    await client.delete(resources.POD, "hog", NS, grace_period=0)
    placed = await eventually(get_pod(client, "vip"), bound)
    assert placed["spec"]["nodeName"] == "node-1"
    said = f"Preempted by pod {meta.uid(placed)} on node node-1"
    await eventually(lambda: client.list(resources.EVENT, NS), lambda events: any(
        e.get("reason") == "Preempted" and e["involvedObject"]["name"] == "hog"
        and e["message"] == said for e in events["items"]))


async def test_each_profile_schedules_its_own_pods_and_no_others(tmp_path: Path) -> None:
    from netplane.cluster.scheduler.config import ProfileSpec

    server = Server(tmp_path)
    await server.start()
    packer = ProfileSpec(name="packer", args={"NodeResourcesFit": {
        "scoringStrategy": {"type": "MostAllocated"}}})
    try:
        async with Client(Connection(socket=str(server.cfg.socket))) as c:
            task = asyncio.create_task(Scheduler(c, profiles=[ProfileSpec(), packer]).run())
            try:
                await add_node(c, "node-1")
                await add_node(c, "node-2")
                await c.create(resources.POD, {**hungry("first", "1"), "spec": {
                    **hungry("first", "1")["spec"], "nodeName": "node-1"}}, NS)
                for name, scheduler in (("packed", "packer"), ("spread", "default-scheduler"),
                                        ("foreign", "someone-else")):
                    p = hungry(name, "500m")
                    p["spec"]["schedulerName"] = scheduler
                    await c.create(resources.POD, p, NS)
                packed = await eventually(get_pod(c, "packed"), bound)
                spread = await eventually(get_pod(c, "spread"), bound)
                assert (packed["spec"]["nodeName"], spread["spec"]["nodeName"]) == \
                    ("node-1", "node-2")
                await eventually(lambda: c.list(resources.EVENT, NS), lambda got: any(
                    e["involvedObject"]["name"] == "packed" and e["reason"] == "Scheduled"
                    and e["source"]["component"] == "packer" for e in got["items"]))
                foreign = await c.get(resources.POD, "foreign", NS)
                assert not foreign["spec"].get("nodeName")
                assert meta.condition(foreign, "PodScheduled") is None  # not ours to judge
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await server.stop()


class DroppingClient(ConflictingClient):
    """Drops the connection on the first bind, as an API server restarting does."""

    def __init__(self) -> None:
        super().__init__()
        self.binds: list[str] = []

    async def bind(self, pod: Obj, node: str) -> Obj:
        self.binds.append(node)
        if len(self.binds) == 1:
            raise aiohttp.ServerDisconnectedError()
        return {}


async def test_a_bind_the_api_never_answered_is_forgotten_and_tried_again() -> None:
    fake = DroppingClient()
    scheduler = Scheduler(fake)  # type: ignore[arg-type]
    scheduler.on_node(None, {"metadata": {"name": "node-1", "resourceVersion": "1"},
                             "status": {"allocatable": {"cpu": "2", "memory": "4Gi",
                                                        "pods": "10"}}})
    web = {**pod("web"), "metadata": {"name": "web", "namespace": NS, "uid": "u1"},
           "status": {"phase": "Pending"}}
    await scheduler.schedule_one(web)
    await asyncio.gather(*scheduler.binding)
    assert fake.binds == ["node-1"]
    assert "u1" not in scheduler.assumed  # not assumed for ever
    assert not scheduler.cache.infos["node-1"].pods
    await scheduler.schedule_one(web)  # the queue's retry, after its back-off
    await asyncio.gather(*scheduler.binding)
    assert fake.binds == ["node-1", "node-1"]
