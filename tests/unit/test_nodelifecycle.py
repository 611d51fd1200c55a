"""The node lifecycle controller's monitoring and tainting: pure judgements
with a fake clock, then passes against a real in-process API server."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.controllers import nodetaints
from netplane.cluster.controllers.nodelifecycle import (
    NEVER_MESSAGE,
    NEVER_REASON,
    UNKNOWN_MESSAGE,
    UNKNOWN_REASON,
    NodeLifecycleController,
    silent,
    unknown_conditions,
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
    # Already Unknown, or never said anything and no time known: nothing to mark.
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


def keys(taints: list[Obj] | None) -> list[str]:
    return [f"{t['key']}:{t['effect']}" for t in taints or []]


def test_the_ready_condition_gives_one_no_execute_taint_swapped_as_it_changes() -> None:
    n = node(status="False")
    first = nodetaints.reconciled(n, "T1")
    assert keys(first) == ["node.kubernetes.io/not-ready:NoExecute",
                           "node.kubernetes.io/not-ready:NoSchedule"]
    assert first is not None and {t["timeAdded"] for t in first} == {"T1"}
    n["spec"] = {"taints": first}
    assert nodetaints.reconciled(n, "T2") is None  # already right
    n["status"]["conditions"][0]["status"] = "Unknown"
    swapped = nodetaints.reconciled(n, "T3")
    assert keys(swapped) == ["node.kubernetes.io/unreachable:NoExecute",
                             "node.kubernetes.io/unreachable:NoSchedule"]
    n["spec"]["taints"] = swapped
    n["status"]["conditions"][0]["status"] = "True"
    assert nodetaints.reconciled(n, "T4") == []


def test_condition_and_cordon_taints_and_others_left_alone() -> None:
    n = node()
    n["status"]["conditions"] += [{"type": "MemoryPressure", "status": "True"},
                                  {"type": "DiskPressure", "status": "True"},
                                  {"type": "PIDPressure", "status": "False"}]
    own = {"key": "dedicated", "value": "db", "effect": "NoExecute"}
    n["spec"] = {"unschedulable": True, "taints": [own]}
    assert keys(nodetaints.reconciled(n, "T")) == [
        "dedicated:NoExecute", "node.kubernetes.io/memory-pressure:NoSchedule",
        "node.kubernetes.io/disk-pressure:NoSchedule",
        "node.kubernetes.io/unschedulable:NoSchedule"]
    # A kept taint keeps its timeAdded.
    n["spec"]["taints"] = [own, {"key": "node.kubernetes.io/unschedulable",
                                 "effect": "NoSchedule", "timeAdded": "T0"}]
    n["spec"]["unschedulable"] = False
    n["status"]["conditions"] = n["status"]["conditions"][:1]
    assert nodetaints.reconciled(n, "T") == [own]


async def test_the_controller_keeps_the_taints_on_the_node(tmp_path: Path) -> None:
    clock = [NOW]
    made: list[NodeLifecycleController] = []

    def make(client: Any, informers: Any) -> NodeLifecycleController:
        c = NodeLifecycleController(client, informers.nodes, informers.leases, informers.pods,
                                    period=3600, clock=lambda: clock[0])
        made.append(c)
        return c

    async def taints() -> list[str]:
        got = await client.get(resources.NODE, "n1")
        return keys((got.get("spec") or {}).get("taints"))

    async def eventually(want: list[str]) -> None:
        async with asyncio.timeout(30):
            while await taints() != want:
                await asyncio.sleep(0.02)

    async with one_controller(tmp_path, make) as (client, informers):
        clock[0] = datetime.datetime.now(datetime.UTC).timestamp()
        await client.create(resources.NODE, {"metadata": {"name": "n1"}})
        await client.patch(resources.NODE, "n1", node("n1", heartbeat=clock[0] - 120,
                                                      status="False"), subresource="status")
        await eventually(["node.kubernetes.io/not-ready:NoExecute",
                          "node.kubernetes.io/not-ready:NoSchedule"])
        await client.patch(resources.NODE, "n1", node("n1", heartbeat=clock[0]),
                           subresource="status")
        await eventually([])
        # Silent: marked Unknown by the monitor, then tainted unreachable.
        clock[0] += 120
        async with asyncio.timeout(30):
            while not meta.node_ready(informers.nodes.get("n1") or {}):
                await asyncio.sleep(0.01)
        assert await made[0].monitor() == ["n1"]
        await eventually(["node.kubernetes.io/unreachable:NoExecute",
                          "node.kubernetes.io/unreachable:NoSchedule"])
        await client.patch(resources.NODE, "n1", {"spec": {"unschedulable": True}})
        await eventually(["node.kubernetes.io/unreachable:NoExecute",
                          "node.kubernetes.io/unreachable:NoSchedule",
                          "node.kubernetes.io/unschedulable:NoSchedule"])


def test_times_and_micro_times_read_as_seconds() -> None:
    assert meta.timestamp(stamp(NOW)) == NOW
    assert meta.timestamp(stamp(NOW + 0.25, micro=True)) == NOW + 0.25
    assert meta.timestamp("yesterday") is None
    assert meta.timestamp(None) is None


def test_a_node_that_never_posted_gets_the_startup_grace() -> None:
    new = {"metadata": {"name": "n1", "creationTimestamp": stamp(NOW - 50)}}
    assert not silent(new, None, NOW)
    assert silent(new, None, NOW + 11)
    assert not silent(new, None, NOW + 11, startup_grace=120)
    assert not silent(new, lease(NOW), NOW + 11)  # its Lease is renewed
    # No time at all: from when the controller first saw it.
    assert not silent({"metadata": {"name": "n1"}}, None, NOW, seen=NOW - 30)
    assert silent({"metadata": {"name": "n1"}}, None, NOW, seen=NOW - 61)


def test_unknown_conditions_as_kube_writes_them() -> None:
    n = node(status="True")
    n["metadata"]["creationTimestamp"] = "T0"
    n["status"]["conditions"] += [{"type": "MemoryPressure", "status": "False"},
                                  {"type": "NetworkUnavailable", "status": "False"}]
    got = {c["type"]: c for c in unknown_conditions(n, "T9")}
    assert [(t, c["status"], c.get("reason")) for t, c in got.items()] == [
        ("Ready", "Unknown", UNKNOWN_REASON), ("MemoryPressure", "Unknown", UNKNOWN_REASON),
        ("NetworkUnavailable", "False", None),  # the network's own, left alone
        ("DiskPressure", "Unknown", NEVER_REASON), ("PIDPressure", "Unknown", NEVER_REASON)]
    assert got["DiskPressure"]["message"] == NEVER_MESSAGE
    assert (got["DiskPressure"]["lastHeartbeatTime"],
            got["DiskPressure"]["lastTransitionTime"]) == ("T0", "T9")
    never = unknown_conditions({"metadata": {"name": "n1"}}, "T9")
    assert [(c["type"], c["reason"]) for c in never] == [
        ("Ready", NEVER_REASON), ("MemoryPressure", NEVER_REASON),
        ("DiskPressure", NEVER_REASON), ("PIDPressure", NEVER_REASON)]
