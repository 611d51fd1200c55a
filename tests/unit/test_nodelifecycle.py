"""The node lifecycle controller's monitoring: pure judgements with a fake
clock, then a pass against a real in-process API server."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.controllers.nodelifecycle import (
    UNKNOWN_MESSAGE,
    UNKNOWN_REASON,
    NodeLifecycleController,
    silent,
)
from netplane.node.registration import lease_object
from tests.unit.test_client import one_controller

NOW = 1_800_000_000.0


def stamp(at: float, *, micro: bool = False) -> str:
    when = datetime.datetime.fromtimestamp(at, datetime.UTC)
    return meta.micro_time(when) if micro else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str = "n1", *, heartbeat: float | None = None, status: str = "True") -> Obj:
    ready: Obj = {"type": "Ready", "status": status, "reason": "NodeReady"}
    if heartbeat is not None:
        ready["lastHeartbeatTime"] = stamp(heartbeat)
    return {"metadata": {"name": name}, "status": {"conditions": [ready]}}


def lease(renewed: float) -> Obj:
    return {"spec": {"renewTime": stamp(renewed, micro=True)}}


def test_silent_after_the_grace_period_from_whatever_was_heard_last() -> None:
    assert not silent(node(heartbeat=NOW - 30), None, NOW)
    assert silent(node(heartbeat=NOW - 41), None, NOW)
    # A renewed lease is enough, whatever the status says.
    assert not silent(node(heartbeat=NOW - 300), lease(NOW - 5), NOW)
    assert silent(node(heartbeat=NOW - 300), lease(NOW - 40.5), NOW)
    assert not silent(node(heartbeat=NOW - 300), lease(NOW - 5), NOW, grace=10)
    # Already Unknown, or never said anything: nothing to mark.
    assert not silent(node(heartbeat=NOW - 300, status="Unknown"), None, NOW)
    assert not silent({"metadata": {"name": "n1"}}, None, NOW)
    # No time at all: counted from when the controller first saw the node.
    assert not silent(node(), None, NOW, seen=NOW - 10)
    assert silent(node(), None, NOW, seen=NOW - 50)


async def test_a_silent_node_is_marked_unknown_once(tmp_path: Path) -> None:
    clock = [NOW]
    made: list[NodeLifecycleController] = []

    def make(client: Any, informers: Any) -> NodeLifecycleController:
        c = NodeLifecycleController(client, informers.nodes, informers.leases, informers.pods,
                                    period=3600, clock=lambda: clock[0])
        made.append(c)
        return c

    async with one_controller(tmp_path, make) as (client, informers):
        controller = made[0]
        real_now = datetime.datetime.now(datetime.UTC).timestamp()
        clock[0] = real_now
        for name in ("quiet", "alive"):
            created = await client.create(resources.NODE, {"metadata": {"name": name}})
            status = node(name, heartbeat=real_now - 120)
            await client.patch(resources.NODE, name, status, subresource="status")
            if name == "alive":
                fresh = lease_object(created)
                await client.create(resources.LEASE, fresh)
        for name in ("quiet", "alive"):
            await client.create(resources.POD, {
                "metadata": {"name": f"on-{name}"},
                "spec": {"nodeName": name, "containers": [{"name": "c", "image": "i"}]}},
                "default")
            await client.patch(resources.POD, f"on-{name}", {"status": {"phase": "Running",
                               "conditions": [{"type": "Ready", "status": "True"}]}},
                               "default", subresource="status")
        async with asyncio.timeout(30):
            while sum(meta.pod_ready(p) for p in informers.pods.items()) < 2:
                await asyncio.sleep(0.01)
        async with asyncio.timeout(30):
            while len(informers.nodes.items()) < 2 or informers.leases.get(
                    "alive", "kube-node-lease") is None or not all(
                    meta.condition(n, "Ready") for n in informers.nodes.items()):
                await asyncio.sleep(0.01)
        assert await controller.monitor() == ["quiet"]
        quiet = await client.get(resources.NODE, "quiet")
        ready = meta.condition(quiet, "Ready")
        assert ready is not None
        assert (ready["status"], ready["reason"], ready["message"]) == \
            ("Unknown", UNKNOWN_REASON, UNKNOWN_MESSAGE)
        assert meta.condition_true(await client.get(resources.NODE, "alive"), "Ready")
        # Its pods are not ready any more, so their endpoints go; the others stay.
        assert not meta.pod_ready(await client.get(resources.POD, "on-quiet", "default"))
        assert meta.pod_ready(await client.get(resources.POD, "on-alive", "default"))
        async with asyncio.timeout(30):
            while (meta.condition(informers.nodes.get("quiet") or {}, "Ready") or {}).get(
                    "status") != "Unknown":
                await asyncio.sleep(0.01)
        assert await controller.monitor() == []
