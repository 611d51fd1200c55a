"""The sync loop of the map-programmed modes (nftables, IPVS): what it hands
its backend (full or partial, which ports changed), what it does when a
sync fails or the kernel drifted, and the figures metrics and ``netplane
routes`` read. A recording backend stands in for the kernel; one test runs
the real IPVS backend over the in-memory IPVS table.

Address plan: default/web ClusterIP 10.96.0.50:80 -> 10.244.1.2/.3:8080,
default/dns ClusterIP 10.96.0.53:53/UDP -> 10.244.1.2:5353 (EndpointSlice).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from netplane.api.meta import Obj
from netplane.proxy import metrics
from netplane.proxy.config import ProxyConfig
from netplane.proxy.ipvs.backend import IPVSBackend
from netplane.proxy.ipvs.kernel import MemoryIPVS
from netplane.proxy.ipvs.plan import VirtualServerKey
from netplane.proxy.mapproxier import IPVSAdapter, MapProxier
from netplane.proxy.model import Protocol, ServiceMap, ServicePortName
from tests.unit.test_proxy_ipvs import FakeRunner
from tests.unit.test_proxy_proxier import DNS, WEB, endpoints, slice_of

HANG = 60.0  # only a guard against a hung test
WEB_HTTP = ServicePortName("default", "web", "", Protocol.TCP)
DNS_UDP = ServicePortName("default", "dns", "dns", Protocol.UDP)


@dataclass
class Call:
    full: bool
    changed: set[ServicePortName] | None
    ports: dict[ServicePortName, set[str]]  # endpoints "ip:port" per port


class RecordingBackend:
    """Keeps every map it was given; can fail, drift, or choose a full sync."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.plumbed = 0
        self.cleaned = 0
        self.fail = False
        self.matches = True
        self.force_full = False

    def ensure_plumbing(self) -> None:
        self.plumbed += 1

    def clean_up(self) -> None:
        self.cleaned += 1

    def kernel_matches(self) -> bool:
        return self.matches

    def sync(self, service_map: ServiceMap, config: ProxyConfig, *, node_name: str,
             node_ips: Iterable[str], full: bool,
             changed: set[ServicePortName] | None) -> tuple[bool, int]:
        if self.fail:
            raise RuntimeError("nft: transaction failed")
        ports = {spn: {f"{e.ip}:{e.port}" for e in eps} for spn, (_, eps) in service_map.items()}
        self.calls.append(Call(full, None if changed is None else set(changed), ports))
        self.matches = True
        return full or self.force_full, 10 * len(service_map)

    def details(self) -> Obj:
        return {"table": "netplane"}

    @property
    def last(self) -> Call:
        return self.calls[-1]


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


def proxier(backend: RecordingBackend, **kw: float) -> MapProxier:
    return MapProxier(mode="nftables", backend=backend, node_name="node-1", **kw)


def with_web_and_dns(p: MapProxier) -> MapProxier:
    p.on_service(None, WEB)
    p.on_endpoints(None, endpoints("10.244.1.2", "10.244.1.3"))
    p.on_service(None, DNS)
    p.on_endpoints(None, slice_of("dns", "10.244.1.2"))
    return p


async def test_first_sync_is_full_and_hands_over_every_port(backend: RecordingBackend) -> None:
    p = with_web_and_dns(proxier(backend))
    assert await p.sync()
    assert backend.last == Call(True, None, {WEB_HTTP: {"10.244.1.2:8080", "10.244.1.3:8080"},
                                             DNS_UDP: {"10.244.1.2:5353"}})
    assert (p.full_syncs, p.partial_syncs, p.rule_count) == (1, 0, 20)
    assert p.last_sync_ok and not p.dirty


async def test_a_change_is_a_partial_sync_naming_only_its_ports(
        backend: RecordingBackend) -> None:
    p = with_web_and_dns(proxier(backend))
    await p.sync()
    p.on_endpoints(endpoints("10.244.1.2", "10.244.1.3"), endpoints("10.244.1.3", rv="2"))
    assert await p.sync()
    assert backend.last.full is False and backend.last.changed == {WEB_HTTP}
    # The backend still gets the whole map, to compare with the last one.
    assert backend.last.ports == {WEB_HTTP: {"10.244.1.3:8080"}, DNS_UDP: {"10.244.1.2:5353"}}
    assert (p.full_syncs, p.partial_syncs) == (1, 1)


async def test_a_deleted_service_leaves_the_map_as_a_changed_port(
        backend: RecordingBackend) -> None:
    p = with_web_and_dns(proxier(backend))
    await p.sync()
    p.on_service(DNS, None)
    await p.sync()
    assert backend.last.changed == {DNS_UDP} and set(backend.last.ports) == {WEB_HTTP}
    assert [port["service"] for port in p.describe()["ports"]] == ["default/web"]


async def test_a_backend_that_chose_a_full_sync_is_counted_as_one(
        backend: RecordingBackend) -> None:
    p = with_web_and_dns(proxier(backend))
    await p.sync()
    backend.force_full = True  # as nftables does when a partial cannot be expressed
    p.on_endpoints(endpoints("10.244.1.2", "10.244.1.3"), endpoints("10.244.1.3", rv="2"))
    await p.sync()
    assert backend.last.full is False  # asked for partial...
    assert (p.full_syncs, p.partial_syncs) == (2, 0)  # ...reported as what was done


async def test_a_failed_sync_keeps_its_changes_and_the_next_one_is_full(
        backend: RecordingBackend) -> None:
    p = with_web_and_dns(proxier(backend))
    await p.sync()
    backend.fail = True
    p.on_endpoints(endpoints("10.244.1.2", "10.244.1.3"), endpoints("10.244.1.3", rv="2"))
    assert not await p.sync()
    assert p.failed_syncs == 1 and not p.last_sync_ok and p.dirty
    assert p.describe()["ports"][1]["service"] == "default/web"  # old state still shown
    backend.fail = False
    assert await p.sync()
    assert backend.last.full is True and backend.last.changed is None
    assert backend.last.ports[WEB_HTTP] == {"10.244.1.3:8080"}  # the change was not lost
    assert p.last_sync_ok and not p.dirty and p.full_syncs == 2


async def test_set_up_and_clean_up_reach_the_backend_and_clean_up_forces_a_full_sync(
        backend: RecordingBackend) -> None:
    p = with_web_and_dns(proxier(backend))
    p.set_up()
    await p.sync()
    p.clean_up()
    assert (backend.plumbed, backend.cleaned) == (1, 1) and p.dirty
    await p.sync()
    assert backend.last.full is True


async def test_metrics_and_describe(backend: RecordingBackend) -> None:
    p = MapProxier(mode="nftables", backend=backend, node_name="node-1",
                   wall_clock=lambda: 1_700_000_002.5)
    p.on_service(None, DNS)
    p.on_endpoints(None, slice_of("dns", "10.244.1.2", trigger="2023-11-14T22:13:20.250000Z"))
    await p.sync()
    assert p.programming_latency.count == 1
    assert p.programming_latency.total == pytest.approx(2.25)
    text = metrics.render(p)
    assert 'netplane_proxy_sync_proxy_rules_total{kind="full"} 1' in text
    assert 'netplane_proxy_sync_proxy_rules_total{kind="partial"} 0' in text
    assert 'netplane_proxy_rules{mode="nftables"} 10' in text
    assert "netplane_proxy_sync_proxy_rules_duration_seconds_count 1" in text
    report = p.describe(check_kernel=True)
    assert report["mode"] == "nftables" and report["kernelMatches"] is True
    assert report["backend"] == {"table": "netplane"} and report["mismatches"] == []
    (port,) = report["ports"]
    assert port["service"] == "default/dns" and port["clusterIP"] == "10.96.0.53"
    backend.matches = False
    report = p.describe(check_kernel=True)
    assert report["kernelMatches"] is False and report["mismatches"]
    assert p.describe()["kernelMatches"] is None  # not read unless asked


# -- the running loop ------------------------------------------------------------------------


@asynccontextmanager
async def looping(p: MapProxier) -> AsyncIterator[MapProxier]:
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    try:
        yield p
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=HANG)


async def settled(p: MapProxier, cond: Callable[[], bool]) -> None:
    """Waits, between syncs and checks, for ``cond``; never for a time."""
    async with asyncio.timeout(HANG):
        while p.busy or p.dirty or not cond():
            await asyncio.sleep(0.01)


async def test_loop_syncs_changes_as_partial_syncs(backend: RecordingBackend) -> None:
    p = with_web_and_dns(proxier(backend, sync_period=3600.0, check_interval=3600.0,
                                 min_sync_interval=0.01))
    async with looping(p):
        await settled(p, lambda: p.full_syncs == 1)
        p.on_endpoints(endpoints("10.244.1.2", "10.244.1.3"), endpoints("10.244.1.3", rv="2"))
        await settled(p, lambda: p.partial_syncs == 1)
        assert backend.last.changed == {WEB_HTTP}
        assert p.full_syncs == 1 and p.drift_repairs == 0


async def test_drift_check_makes_a_full_sync_long_before_the_period(
        backend: RecordingBackend) -> None:
    p = with_web_and_dns(proxier(backend, sync_period=3600.0, check_interval=0.02,
                                 min_sync_interval=0.01))
    async with looping(p):
        await settled(p, lambda: p.full_syncs == 1 and p.last_check_time is not None)
        syncs = len(backend.calls)
        backend.matches = False  # someone changed our table
        await settled(p, lambda: p.drift_repairs == 1 and p.full_syncs == 2)
        assert len(backend.calls) == syncs + 1 and backend.last.full is True
        assert set(backend.last.ports) == {WEB_HTTP, DNS_UDP}


async def test_loop_retries_a_failed_sync_in_full(backend: RecordingBackend) -> None:
    backend.fail = True
    p = with_web_and_dns(proxier(backend, sync_period=3600.0, check_interval=3600.0,
                                 min_sync_interval=0.01))
    async with looping(p):
        async with asyncio.timeout(HANG):
            while p.failed_syncs < 2:  # it keeps trying, at most every min_sync_interval
                await asyncio.sleep(0.01)
        backend.fail = False
        await settled(p, lambda: p.last_sync_ok)
        assert backend.last.full is True and p.full_syncs == 1


# -- with the real IPVS backend --------------------------------------------------------------


async def test_ipvs_mode_programs_the_in_memory_table() -> None:
    ipvs = MemoryIPVS()
    adapter = IPVSAdapter(IPVSBackend(handle=ipvs, runner=FakeRunner()))
    p = MapProxier(mode="ipvs", backend=adapter, node_name="node-1",
                   node_ips=("192.168.56.11",))
    p.on_service(None, WEB)
    p.on_endpoints(None, endpoints("10.244.1.2", "10.244.1.3"))
    assert await p.sync()
    key = VirtualServerKey("10.96.0.50", 80, Protocol.TCP)
    assert {(r.address, r.port) for r in ipvs.list_dests(key)} == {
        ("10.244.1.2", 8080), ("10.244.1.3", 8080)}
    p.on_endpoints(endpoints("10.244.1.2", "10.244.1.3"), endpoints("10.244.1.3", rv="2"))
    assert await p.sync()
    assert {(r.address, r.port, r.weight) for r in ipvs.list_dests(key)} <= {
        ("10.244.1.3", 8080, 1), ("10.244.1.2", 8080, 0)}  # gone, or draining at weight 0
    assert p.partial_syncs == 1 and p.rule_count == adapter.backend.rule_count
    assert p.describe()["backend"]["virtualServers"].startswith("TCP 10.96.0.50:80 rr")
