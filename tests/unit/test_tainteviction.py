"""The taint eviction controller: when a pod must leave a tainted node
(pure, a table), then its state machine with a fake clock against a real
in-process API server: at once, after tolerationSeconds counted from the
taint's timeAdded, never; DisruptionTarget and kube's events; a pending
eviction cancelled when the taint goes."""

from __future__ import annotations

import asyncio
import datetime
import math
from pathlib import Path
from typing import Any

import pytest

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client
from netplane.cluster.controllers import daemonset
from netplane.cluster.controllers.tainteviction import (
    DISRUPTION_REASON,
    TaintEvictionController,
    eviction_time,
)
from tests.unit.test_client import one_controller

T0 = 1_800_000_000.0
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
DRAIN = {"key": "example.com/drain", "effect": "NoExecute"}


def tol(key: str | None = None, seconds: int | None = None, effect: str = "NoExecute") -> Obj:
    t: Obj = {"operator": "Exists", "effect": effect}
    if key is not None:
        t["key"] = key
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


def added(taint: Obj) -> float:
    return T0 + (100 if taint["key"] == DRAIN["key"] else 0)


@pytest.mark.parametrize(("tolerations", "taints", "at"), [
    ([], [UNREACHABLE], -math.inf),
    ([tol(UNREACHABLE["key"], effect="NoSchedule")], [UNREACHABLE], -math.inf),
    ([tol(UNREACHABLE["key"], 300)], [UNREACHABLE], T0 + 300),
    ([tol(UNREACHABLE["key"])], [UNREACHABLE], None),
    ([tol()], [UNREACHABLE, DRAIN], None),
    ([tol(UNREACHABLE["key"], 0)], [UNREACHABLE], -math.inf),
    ([tol(UNREACHABLE["key"], -5)], [UNREACHABLE], -math.inf),
    # Each taint counts from its own timeAdded; the earliest end wins.
    ([tol(UNREACHABLE["key"], 300), tol(DRAIN["key"], 60)], [UNREACHABLE, DRAIN], T0 + 160),
    ([tol(UNREACHABLE["key"], 30), tol(DRAIN["key"])], [UNREACHABLE, DRAIN], T0 + 30),
    # One untolerated taint is enough to go at once.
    ([tol(UNREACHABLE["key"])], [UNREACHABLE, DRAIN], -math.inf),
    # The first toleration that matches is the one used (kube's rule).
    ([tol(UNREACHABLE["key"]), tol(UNREACHABLE["key"], 10)], [UNREACHABLE], None),
    ([], [], None),
])
def test_eviction_time(tolerations: list[Obj], taints: list[Obj], at: float | None) -> None:
    assert eviction_time(tolerations, taints, added) == at


def stamp(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, node: str, *tolerations: Obj) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"nodeName": node, "tolerations": list(tolerations),
                     "containers": [{"name": "c", "image": "i"}]}}


async def events_for(client: Client, name: str) -> list[tuple[str, str]]:
    listed = await client.list(resources.EVENT, "default")
    return [(e["reason"], e["message"]) for e in listed["items"]
            if e["involvedObject"]["name"] == name]


async def until(check: Any) -> None:
    async with asyncio.timeout(30):
        while not await check():
            await asyncio.sleep(0.02)


async def test_evictions_at_once_after_their_time_and_never(tmp_path: Path) -> None:
    clock = [T0 + 10]
    made: list[TaintEvictionController] = []

    def make(client: Any, informers: Any) -> TaintEvictionController:
        made.append(TaintEvictionController(client, informers.pods, informers.nodes,
                                            clock=lambda: clock[0]))
        return made[0]

    async with one_controller(tmp_path, make) as (client, _):
        c = made[0]
        unreachable = dict(UNREACHABLE, timeAdded=stamp(T0))
        await client.create(resources.NODE, {"metadata": {"name": "n1"},
                                             "spec": {"taints": [unreachable]}})
        await client.create(resources.NODE, {"metadata": {"name": "n2"},
                                             "spec": {"taints": [DRAIN]}})
        # The API server adds 300 s tolerations of unreachable and not-ready.
        for p in (pod("patient", "n1"), pod("brief", "n1", tol(UNREACHABLE["key"], 60)),
                  pod("forever", "n1", tol()), pod("intolerant", "n2")):
            await client.create(resources.POD, p, "default")

        async def deleting(name: str) -> bool:
            return meta.is_deleting(await client.get(resources.POD, name, "default"))

        # Not tolerated: deleted at once, marked first, with kube's event.
        await until(lambda: deleting("intolerant"))
        gone = await client.get(resources.POD, "intolerant", "default")
        target = meta.condition(gone, "DisruptionTarget")
        assert target is not None
        assert (target["status"], target["reason"]) == ("True", DISRUPTION_REASON)
        await c.events.flush()
        assert await events_for(client, "intolerant") == [
            ("TaintManagerEviction", "Marking for deletion Pod default/intolerant")]

        async def scheduled() -> bool:
            return set(c.scheduled) == {"default/patient", "default/brief"}
        await until(scheduled)
        assert c.scheduled == {"default/patient": T0 + 300, "default/brief": T0 + 60}
        assert not await deleting("brief")

        # Its toleration runs out (from the taint's timeAdded, not from now).
        clock[0] = T0 + 61
        await c.sync("default/brief")
        assert await deleting("brief")
        assert not await deleting("patient") and not await deleting("forever")

        # The taint goes: the pending eviction is cancelled, and said so.
        await client.patch(resources.NODE, "n1", {"spec": {"taints": []}})

        async def cancelled() -> bool:
            return "default/patient" not in c.scheduled
        await until(cancelled)
        clock[0] = T0 + 400
        await c.sync("default/patient")
        assert not await deleting("patient") and not await deleting("forever")
        await c.events.flush()
        assert await events_for(client, "patient") == [
            ("TaintManagerEviction", "Cancelling deletion of Pod default/patient")]


async def test_a_taint_without_time_counts_from_when_it_was_seen(tmp_path: Path) -> None:
    clock = [T0]
    made: list[TaintEvictionController] = []

    def make(client: Any, informers: Any) -> TaintEvictionController:
        made.append(TaintEvictionController(client, informers.pods, informers.nodes,
                                            clock=lambda: clock[0]))
        return made[0]

    async with one_controller(tmp_path, make) as (client, _):
        c = made[0]
        await client.create(resources.NODE, {"metadata": {"name": "n1"},
                                             "spec": {"taints": [UNREACHABLE]}})
        await client.create(resources.POD, pod("web", "n1", tol(UNREACHABLE["key"], 20)),
                            "default")

        async def scheduled() -> bool:
            return "default/web" in c.scheduled
        await until(scheduled)
        assert c.scheduled["default/web"] == T0 + 20
        clock[0] = T0 + 15
        await c.sync("default/web")
        assert c.scheduled["default/web"] == T0 + 20


def test_daemon_pods_stay_on_a_failed_node() -> None:
    spec: Obj = {"containers": [{"name": "c"}]}
    daemonset.with_daemon_tolerations(spec)
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    assert eviction_time(spec["tolerations"], [UNREACHABLE], added) is None
    assert eviction_time(spec["tolerations"], [not_ready], added) is None
    # Their own taints are another matter.
    assert eviction_time(spec["tolerations"], [DRAIN], added) == -math.inf
