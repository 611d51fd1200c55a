"""The scheduling queue and the loop's retries, driven by hand with a fake
clock: a pod that fits nowhere is tried again only when an event that
could cure what rejected it comes, and not before its back-off ends."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.client import Informer
from netplane.cluster.scheduler import events
from netplane.cluster.scheduler.loop import Scheduler
from netplane.cluster.scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_new_pods_are_active_and_popped_once() -> None:
    q = SchedulingQueue(clock=Clock())
    q.add("ns/a")
    q.add("ns/b")
    q.add("ns/a")
    assert q.pop_ready() == ["ns/a", "ns/b"]
    assert q.pop_ready() == []
    assert q.next_deadline() is None


def test_an_unschedulable_pod_waits_for_an_event_then_for_its_back_off() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("ns/a")
    q.pop_ready()
    q.failed("ns/a", {"NodeResourcesFit"})
    clock.now += 60
    assert q.pop_ready() == []  # no event: it waits, however long (up to the flush)
    q.move()
    assert q.pop_ready() == ["ns/a"]  # its 1 s back-off ended long ago
    q.failed("ns/a", {"NodeResourcesFit"})
    q.move()  # at once: the second back-off (2 s) is still running
    assert q.pop_ready() == []
    assert q.next_deadline() == clock.now + 2
    clock.now += 2
    assert q.pop_ready() == ["ns/a"]


def test_back_off_doubles_up_to_ten_seconds() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    waits = []
    for _ in range(6):
        q.failed("ns/a")
        waits.append(q.backoff_ends("ns/a") - clock.now)
    assert waits == [1, 2, 4, 8, 10, 10]
    q.succeeded("ns/a")
    assert q.backoff_ends("ns/a") == 0


def test_events_wake_only_the_pods_their_plugins_could_cure() -> None:
    q = SchedulingQueue(clock=Clock())
    for key in ("ns/cpu", "ns/taint", "ns/unknown"):
        q.add(key)
    q.pop_ready()
    q.failed("ns/cpu", {"NodeResourcesFit"})
    q.failed("ns/taint", {"TaintToleration"})
    q.failed("ns/unknown")
    q.pop_ready()  # the moves below come after this pass
    q.move(events.POD_GONE_CURES)
    assert sorted(q.backoff) == ["ns/cpu", "ns/unknown"]
    q.move(None)  # a node changed: anything may fit
    assert "ns/taint" in q.backoff and not q.unschedulable


def test_an_event_during_the_attempt_sends_the_failure_to_back_off() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("ns/a")
    q.pop_ready()
    q.move()  # a node came while the pod was being decided
    q.failed("ns/a", {"NodeResourcesFit"})
    assert "ns/a" not in q.unschedulable
    clock.now += 1
    assert q.pop_ready() == ["ns/a"]


def test_pods_unschedulable_for_five_minutes_are_flushed_back() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.failed("ns/a")
    assert q.next_deadline() == clock.now + 300
    clock.now += 299
    assert q.pop_ready() == []
    clock.now += 1
    assert q.pop_ready() == ["ns/a"]


def test_status_writes_and_heartbeats_are_not_events() -> None:
    pod: Obj = {"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {},
                "status": {"phase": "Pending"}}
    written = copy.deepcopy(pod)
    written["metadata"]["resourceVersion"] = "2"
    meta.set_condition(written, "PodScheduled", False, "Unschedulable", "0/1 nodes")
    assert not events.pod_spec_changed(pod, written)
    relabelled = copy.deepcopy(pod)
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert events.pod_spec_changed(pod, relabelled)
    node: Obj = {"metadata": {"name": "n"}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": "t1"}]}}
    beat = copy.deepcopy(node)
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "t2"
    assert not events.node_event_matters(node, beat)
    assert events.node_event_matters(None, node)
    assert not events.node_event_matters(node, None)
    bigger = copy.deepcopy(node)
    bigger["status"]["allocatable"] = {"cpu": "8"}
    assert events.node_event_matters(node, bigger)


class FakeClient:
    """Records binds and status writes; everything else is accepted."""

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}
        self.messages: list[str] = []

    async def bind(self, pod: Obj, node: str) -> None:
        self.bound[meta.name(pod)] = node

    async def update_status(self, res: object, obj: Obj) -> Obj:
        cond = meta.condition(obj, "PodScheduled")
        self.messages.append(cond["message"] if cond else "")
        return obj

    def __getattr__(self, name: str) -> Any:
        async def ignored(*args: object, **kw: object) -> Obj:
            return {}
        return ignored


def put(inf: Informer, handler: Any, obj: Obj | None, *, prev: Obj | None = None) -> None:
    """What a watch event does: the cache first, then the handler."""
    gone = obj is None
    target = prev if gone else obj
    assert target is not None
    key = meta.namespaced_name(target)
    old = inf.cache.get(key)
    if gone:
        inf.cache.pop(key, None)
    else:
        assert obj is not None
        inf.cache[key] = obj
    handler(old, obj)


def node(name: str, cpu: str) -> Obj:
    return {"metadata": {"name": name}, "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, cpu: str, node_name: str | None = None) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": name,
                         "creationTimestamp": name},
            "spec": {"nodeName": node_name, "containers": [
                {"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": "Running" if node_name else "Pending"}}


async def settle(s: Scheduler) -> None:
    await s.run_pass()
    await asyncio.gather(*s.binding)


async def test_a_pod_waiting_for_cpu_is_bound_once_the_pod_holding_it_goes() -> None:
    clock, client = Clock(), FakeClient()
    s = Scheduler(client, clock=clock)  # type: ignore[arg-type]
    put(s.nodes, s.on_node, node("node-1", "2"))
    hog = pod("hog", "1500m", "node-1")
    put(s.pods, s.on_pod, hog)
    put(s.pods, s.on_pod, pod("web", "1"))
    await settle(s)
    assert client.bound == {}
    assert client.messages == [
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod.."]
    # Our own status write, a heartbeat, a new pod elsewhere: no retry.
    written = copy.deepcopy(s.pods.get("web", "default"))
    assert written is not None
    written["status"]["conditions"] = [{"type": "PodScheduled", "status": "False"}]
    put(s.pods, s.on_pod, written)
    clock.now += 30
    await settle(s)
    assert "default/web" in s.queue.unschedulable and client.bound == {}
    put(s.pods, s.on_pod, None, prev=hog)  # the hog goes: cpu freed
    await settle(s)
    assert client.bound == {"web": "node-1"}


async def test_a_node_added_wakes_the_pod_and_back_off_holds_it_back() -> None:
    clock, client = Clock(), FakeClient()
    s = Scheduler(client, clock=clock)  # type: ignore[arg-type]
    put(s.nodes, s.on_node, node("small", "1"))
    put(s.pods, s.on_pod, pod("big", "2"))
    await settle(s)
    put(s.nodes, s.on_node, node("large", "4"))  # at once: back-off (1 s) not over
    await settle(s)
    assert client.bound == {}
    deadline = s.queue.next_deadline()
    assert deadline is not None and deadline == clock.now + 1
    clock.now = deadline
    await settle(s)
    assert client.bound == {"big": "large"}


def test_a_pod_frees_its_node_when_it_is_gone_or_finished_not_when_terminating() -> None:
    running = pod("a", "1", "node-1")
    terminating = copy.deepcopy(running)
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    finished = copy.deepcopy(running)
    finished["status"]["phase"] = "Succeeded"
    assert events.pod_event_cures(running, terminating) == frozenset()
    assert events.pod_event_cures(terminating, None) == events.POD_GONE_CURES
    assert events.pod_event_cures(running, finished) == events.POD_GONE_CURES
    assert events.pod_event_cures(pod("a", "1"), running) == events.POD_ARRIVED_CURES
    assert events.pod_event_cures(None, pod("b", "1")) == frozenset()


def test_only_an_event_that_could_cure_it_sends_a_failure_to_back_off() -> None:
    q = SchedulingQueue(clock=Clock())
    q.add("ns/a")
    q.pop_ready()
    q.move(events.POD_ARRIVED_CURES)  # a pod bound elsewhere: no help for a taint
    q.failed("ns/a", {"TaintToleration"})
    assert "ns/a" in q.unschedulable


class WitnessClient(FakeClient):
    """Notes, at each bind, how many pods the scheduler had decided."""

    def __init__(self, s: Callable[[], Scheduler]) -> None:
        super().__init__()
        self.scheduler = s
        self.decided_at_bind: list[int] = []

    async def bind(self, pod: Obj, node: str) -> None:
        self.decided_at_bind.append(len(self.scheduler().assumed))
        await super().bind(pod, node)


async def test_binds_leave_while_a_backlog_is_still_being_decided() -> None:
    s: Scheduler | None = None
    client = WitnessClient(lambda: s)  # type: ignore[arg-type, return-value]
    s = Scheduler(client, clock=Clock())  # type: ignore[arg-type]
    put(s.nodes, s.on_node, node("node-1", "8"))
    for i in range(5):
        put(s.pods, s.on_pod, pod(f"web-{i}", "100m"))
    await settle(s)
    assert sorted(client.bound) == [f"web-{i}" for i in range(5)]
    # kube-scheduler binds in goroutines beside its loop: the first pod's
    # bind went out before the last pod was decided.
    assert client.decided_at_bind[0] < 5
