"""The proxier's change tracking and bounded-frequency sync loop, with a fake kernel.

The fake applier keeps the last document it was given, parsed, so tests ask
where a packet would go rather than which calls were made.

Tests of the running loop wait for conditions, never for time: a sync
applies in a worker thread and counts itself on the event loop afterwards,
so a test that sees new rules in the fake kernel waits for ``not
proxier.busy`` before it reads the loop's figures or changes the kernel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from netplane.api.meta import Obj
from netplane.proxy import metrics
from netplane.proxy.command import BufferedInput
from netplane.proxy.conntrack import Entry
from netplane.proxy.iptables.proxier import TRIGGER_TIME_ANNOTATION, Proxier
from netplane.proxy.iptables.render import PLUMBING, Table, declared_chains
from netplane.proxy.iptables.trace import Ruleset, parse, trace_packet
from netplane.proxy.trace import Packet

WEB: Obj = {"metadata": {"namespace": "default", "name": "web", "resourceVersion": "1"},
       "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}}


def endpoints(*ips: str, rv: str = "1") -> Obj:
    return {"metadata": {"namespace": "default", "name": "web", "resourceVersion": rv},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 8080}]}]}


class FakeKernel:
    """Holds what was applied, as the restore model plays it; can be told to fail."""

    def __init__(self) -> None:
        self.rules = Ruleset()
        self.restores: list[str] = []
        self.plumbed = False
        self.fail = False

    @property
    def applies(self) -> int:
        return len(self.restores)

    def restore(self, text: str) -> None:
        if self.fail:
            raise RuntimeError("iptables-restore: line 3 failed")
        self.rules = self.rules.restore(text)
        self.restores.append(text)

    def open_restore(self) -> BufferedInput:
        return BufferedInput(self.restore)

    def current_chains(self) -> dict[Table, set[str]]:
        return declared_chains(self.save())

    def save(self) -> str:
        return self.rules.dump()

    def ensure_plumbing(self) -> None:
        self.plumbed = True

    def intact(self) -> bool:
        return self.plumbed

    def clean_up(self) -> None:
        self.rules = Ruleset()
        self.plumbed = False

    def flush(self) -> None:
        """What ``iptables -t nat -F`` does: every rule gone, the jumps too."""
        self.rules = Ruleset({t: {c: [] for c in chains} if t == "nat" else chains
                              for t, chains in self.rules.tables.items()})
        self.plumbed = False

    def backends(self, dst: str = "10.96.0.50", proto: str = "tcp", port: int = 80) \
            -> set[str | None]:
        rs = self.rules.with_jumps(PLUMBING) if self.plumbed else self.rules
        return {f.dnat for f in trace_packet(rs, Packet("10.244.1.4", proto, dst, port))}


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


class TimedProxier(Proxier):
    """Remembers when each sync began and when the loop counted it as ended."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.spans: list[tuple[float, float]] = []

    async def sync(self, *, full: bool = False) -> bool:
        start = self._clock()
        ok = await super().sync(full=full)
        assert self.last_sync_time is not None
        self.spans.append((start, self.last_sync_time))
        return ok


P = TypeVar("P", bound=Proxier)


@asynccontextmanager
async def looping(proxier: P) -> AsyncIterator[P]:
    stop = asyncio.Event()
    task = asyncio.create_task(proxier.run(stop))
    try:
        yield proxier
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=HANG)


@pytest.fixture
async def running(kernel: FakeKernel) -> AsyncIterator[Proxier]:
    """A loop that also syncs in full every half second."""
    async with looping(Proxier(node_name="node-1", applier=kernel, min_sync_interval=0.05,
                               sync_period=0.5)) as proxier:
        yield proxier


@pytest.fixture
async def quiet(kernel: FakeKernel) -> AsyncIterator[TimedProxier]:
    """A loop whose period and drift check never come due: only changes make it sync."""
    async with looping(TimedProxier(node_name="node-1", applier=kernel, min_sync_interval=0.05,
                                    sync_period=3600.0, check_interval=3600.0)) as proxier:
        yield proxier


# Only a guard against a hung test, never a measure of speed.
HANG = 60.0


async def until(cond: Callable[[], bool], timeout: float = HANG) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def settled(proxier: Proxier, cond: Callable[[], bool] = lambda: True) -> None:
    """Waits until no sync or check is under way, nothing is pending, and ``cond``."""
    await until(lambda: not proxier.busy and not proxier.dirty and cond())


async def test_sync_puts_service_endpoints_in_the_rules(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel)
    proxier.on_service(None, WEB)
    proxier.on_endpoints(None, endpoints("10.244.1.2", "10.244.1.3"))
    assert await proxier.sync()
    assert kernel.backends() == {"10.244.1.2:8080", "10.244.1.3:8080"}
    assert proxier.rule_count > 0 and proxier.last_sync_ok and not proxier.dirty


async def test_updates_that_change_nothing_are_dropped(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel)
    proxier.on_service(None, WEB)
    proxier.on_endpoints(None, endpoints("10.244.1.2"))
    await proxier.sync()
    proxier.on_endpoints(endpoints("10.244.1.2"), endpoints("10.244.1.2", rv="2"))
    proxier.on_service(WEB, {**WEB, "metadata": {**WEB["metadata"], "labels": {"a": "b"}}})
    assert not proxier.dirty
    proxier.on_endpoints(endpoints("10.244.1.2"), None)
    assert proxier.dirty


async def test_loop_syncs_after_a_change_without_waiting_for_the_period(
        kernel: FakeKernel, quiet: TimedProxier) -> None:
    await settled(quiet, lambda: quiet.full_syncs == 1)  # the first, full sync
    quiet.on_service(None, WEB)
    quiet.on_endpoints(None, endpoints("10.244.1.2"))
    await settled(quiet, lambda: quiet.partial_syncs == 1)
    assert kernel.backends() == {"10.244.1.2:8080"}
    quiet.on_endpoints(endpoints("10.244.1.2"), endpoints("10.244.1.3", rv="2"))
    await settled(quiet, lambda: quiet.partial_syncs == 2)
    assert kernel.backends() == {"10.244.1.3:8080"}
    # Neither change waited for a periodic sync: the period is an hour.
    assert quiet.full_syncs == 1 and kernel.applies == 3


async def test_changes_made_together_are_one_sync(kernel: FakeKernel,
                                                  quiet: TimedProxier) -> None:
    await settled(quiet, lambda: quiet.full_syncs == 1)
    quiet.on_service(None, WEB)
    for i in range(20):  # no await in between: the loop cannot run until all are in
        quiet.on_endpoints(None, endpoints(f"10.244.1.{i + 2}", rv=str(i)))
    await settled(quiet, lambda: quiet.partial_syncs >= 1)
    assert kernel.backends() == {"10.244.1.21:8080"}
    assert (quiet.full_syncs, quiet.partial_syncs, kernel.applies) == (1, 1, 2)


async def test_a_stream_of_changes_never_syncs_more_often_than_the_interval(
        kernel: FakeKernel, quiet: TimedProxier) -> None:
    await settled(quiet, lambda: quiet.full_syncs == 1)
    quiet.on_service(None, WEB)
    for i in range(20):
        quiet.on_endpoints(None, endpoints(f"10.244.1.{i + 2}", rv=str(i)))
        await asyncio.sleep(0.005)
    await settled(quiet, lambda: kernel.backends() == {"10.244.1.21:8080"})
    # However slow the machine, each sync starts at least min_sync_interval
    # after the one before it ended (timers may fire a clock tick early).
    gaps = [nxt[0] - prev[1] for prev, nxt in zip(quiet.spans, quiet.spans[1:], strict=False)]
    assert gaps and min(gaps) >= quiet.min_sync_interval - 1e-3, gaps
    assert len(quiet.spans) == kernel.applies


async def test_failed_apply_does_not_stop_the_loop(kernel: FakeKernel,
                                                   running: Proxier) -> None:
    await settled(running, lambda: running.full_syncs >= 1)
    kernel.fail = True
    running.on_service(None, WEB)
    running.on_endpoints(None, endpoints("10.244.1.2"))
    await until(lambda: running.failed_syncs >= 1)
    kernel.fail = False
    # The periodic repair retries without any new event.
    await settled(running, lambda: kernel.backends() == {"10.244.1.2:8080"})
    assert running.last_sync_ok


async def test_periodic_sync_repairs_removed_rules(kernel: FakeKernel,
                                                   running: Proxier) -> None:
    running.on_service(None, WEB)
    running.on_endpoints(None, endpoints("10.244.1.2"))
    # Between syncs, so that no apply in a worker thread races the flush.
    await settled(running, lambda: kernel.backends() == {"10.244.1.2:8080"})
    kernel.flush()  # someone flushed the nat table
    assert kernel.backends() == {None}
    await settled(running, lambda: kernel.backends() == {"10.244.1.2:8080"})
    assert running.drift_repairs >= 1  # the periodic sync checked first and re-plumbed


async def test_clean_up_removes_everything(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel)
    proxier.set_up()
    proxier.on_service(None, WEB)
    await proxier.sync()
    proxier.clean_up()
    assert kernel.rules.tables == {} and not kernel.plumbed


async def test_unrenderable_object_fails_the_sync_not_the_proxier(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel)
    bad: Obj = {"metadata": {"namespace": "default", "name": "bad"},
                "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 1, "protocol": "ICMP"}]}}
    proxier.on_service(None, bad)
    assert not await proxier.sync()
    assert proxier.failed_syncs == 1
    proxier.on_service(bad, None)
    assert await proxier.sync()


def slice_of(service: str, *ips: str, trigger: str | None = None) -> Obj:
    meta: Obj = {"namespace": "default", "name": f"{service}-x1",
                 "labels": {"kubernetes.io/service-name": service}}
    if trigger:
        meta["annotations"] = {TRIGGER_TIME_ANNOTATION: trigger}
    return {"kind": "EndpointSlice", "addressType": "IPv4", "metadata": meta,
            "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [{"addresses": [ip], "nodeName": "node-1"} for ip in ips]}


DNS: Obj = {"metadata": {"namespace": "default", "name": "dns"},
            "spec": {"clusterIP": "10.96.0.53",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}


class FakeConntrack:
    def __init__(self) -> None:
        self.deleted: list[list[str]] = []

    def delete(self, entries: Iterable[Entry]) -> int:
        self.deleted += [e.argv() for e in entries]
        return 0


async def test_one_change_is_a_partial_sync_of_that_service_only(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel)
    proxier.on_service(None, WEB)
    proxier.on_endpoints(None, endpoints("10.244.1.2", "10.244.1.3"))
    proxier.on_service(None, DNS)
    proxier.on_endpoints(None, slice_of("dns", "10.244.1.2"))
    assert await proxier.sync()
    assert (proxier.full_syncs, proxier.partial_syncs) == (1, 0)
    proxier.on_endpoints(endpoints("10.244.1.2", "10.244.1.3"),
                         endpoints("10.244.1.3", rv="2"))
    assert await proxier.sync()
    assert (proxier.full_syncs, proxier.partial_syncs) == (1, 1)
    assert "default/dns" not in kernel.restores[-1] and "NP-SERVICES" not in kernel.restores[-1]
    assert kernel.backends() == {"10.244.1.3:8080"}
    assert kernel.backends("10.96.0.53", "udp", 53) == {"10.244.1.2:5353"}
    # What a partial sync left is what a full render gives.
    assert kernel.rules.dump() == parse(proxier.render()).dump()


async def test_full_sync_deletes_chains_of_deleted_services(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel)
    proxier.on_service(None, WEB)
    proxier.on_endpoints(None, endpoints("10.244.1.2"))
    await proxier.sync()
    proxier.on_service(WEB, None)
    await proxier.sync(full=True)
    assert not any(c.startswith(("NP-SVC-", "NP-SEP-")) for c in kernel.current_chains()[Table.NAT])


async def test_drift_check_triggers_a_repair_before_the_period(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel, sync_period=3600.0,
                      check_interval=0.05, min_sync_interval=0.01)
    proxier.on_service(None, WEB)
    proxier.on_endpoints(None, endpoints("10.244.1.2"))
    async with looping(proxier):
        await settled(proxier, lambda: kernel.backends() == {"10.244.1.2:8080"})
        kernel.flush()
        # The rules are back once the repair's restore ran in its worker
        # thread; the loop counts the sync only when the sync returns.
        await settled(proxier, lambda: kernel.backends() == {"10.244.1.2:8080"})
        assert proxier.drift_repairs == 1 and proxier.full_syncs == 2


async def test_udp_endpoint_changes_clean_conntrack(kernel: FakeKernel) -> None:
    ct = FakeConntrack()
    proxier = Proxier(node_name="node-1", applier=kernel, conntrack=ct)
    proxier.on_service(None, DNS)
    await proxier.sync()
    assert ct.deleted == []
    proxier.on_endpoints(None, slice_of("dns", "10.244.1.2", "10.244.1.3"))
    await proxier.sync()
    # First endpoints: flows that hit the service while it had none are dropped.
    assert ct.deleted == [["conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53",
                           "--orig-port-dst", "53"]]
    ct.deleted.clear()
    proxier.on_endpoints(slice_of("dns", "10.244.1.2", "10.244.1.3"),
                         slice_of("dns", "10.244.1.3"))
    await proxier.sync()
    assert ct.deleted == [["conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53",
                           "--dst-nat", "10.244.1.2"]]


async def test_tcp_changes_leave_conntrack_alone(kernel: FakeKernel) -> None:
    ct = FakeConntrack()
    proxier = Proxier(node_name="node-1", applier=kernel, conntrack=ct)
    proxier.on_service(None, WEB)
    proxier.on_endpoints(None, endpoints("10.244.1.2"))
    await proxier.sync()
    proxier.on_endpoints(endpoints("10.244.1.2"), endpoints("10.244.1.3", rv="2"))
    await proxier.sync()
    assert ct.deleted == []


async def test_metrics_record_syncs_and_programming_latency(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel, wall_clock=lambda: 1_700_000_002.5)
    proxier.on_service(None, DNS)
    proxier.on_endpoints(None, slice_of("dns", "10.244.1.2",
                                        trigger="2023-11-14T22:13:20.250000Z"))
    await proxier.sync()
    # 1_700_000_000.25 is 2023-11-14T22:13:20.25Z: 2.25 s from change to rules.
    assert proxier.programming_latency.count == 1
    assert proxier.programming_latency.total == pytest.approx(2.25)
    text = metrics.render(proxier)
    assert "netplane_proxy_network_programming_duration_seconds_bucket{le=\"5\"} 1" in text
    assert 'netplane_proxy_sync_proxy_rules_total{kind="full"} 1' in text
    assert f'netplane_proxy_rules{{mode="iptables"}} {proxier.rule_count}' in text
    assert "netplane_proxy_sync_proxy_rules_duration_seconds_count 1" in text


async def test_describe_lists_ports_with_endpoints_and_kernel_state(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel, node_ips=("192.168.56.11",))
    proxier.set_up()
    proxier.on_service(None, WEB)
    proxier.on_endpoints(None, endpoints("10.244.1.2", "10.244.1.3"))
    await proxier.sync()
    report = proxier.describe(check_kernel=True)
    assert report["mode"] == "iptables" and report["kernelMatches"] is True
    (port,) = report["ports"]
    assert port["service"] == "default/web" and port["clusterIP"] == "10.96.0.50"
    assert [(e["address"], e["probability"]) for e in port["endpoints"]] == \
        [("10.244.1.2:8080", 0.5), ("10.244.1.3:8080", 0.5)]
    kernel.flush()
    report = proxier.describe(check_kernel=True)
    assert report["kernelMatches"] is False and report["mismatches"]
