"""The proxier's change tracking and bounded-frequency sync loop, with a fake kernel.

The fake applier keeps the last document it was given, parsed, so tests ask
where a packet would go rather than which calls were made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from netplane.api.meta import Obj
from netplane.proxy.iptables import PLUMBING
from netplane.proxy.proxier import Proxier
from netplane.proxy.trace import Packet, Ruleset, parse, trace_packet

WEB: Obj = {"metadata": {"namespace": "default", "name": "web", "resourceVersion": "1"},
       "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}}


def endpoints(*ips: str, rv: str = "1") -> Obj:
    return {"metadata": {"namespace": "default", "name": "web", "resourceVersion": rv},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 8080}]}]}


class FakeKernel:
    """Holds what was applied; can be told to fail."""

    def __init__(self) -> None:
        self.rules = Ruleset()
        self.applies = 0
        self.plumbed = False
        self.fail = False

    def apply(self, text: str) -> None:
        if self.fail:
            raise RuntimeError("iptables-restore: line 3 failed")
        self.applies += 1
        self.rules = parse(text)

    def ensure_plumbing(self) -> None:
        self.plumbed = True

    def clean_up(self) -> None:
        self.rules = Ruleset()
        self.plumbed = False

    def backends(self) -> set[str | None]:
        rs = self.rules.with_jumps(PLUMBING) if self.plumbed else self.rules
        return {f.dnat for f in trace_packet(rs, Packet("10.244.1.4", "tcp", "10.96.0.50", 80))}


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
async def running(kernel: FakeKernel) -> AsyncIterator[Proxier]:
    proxier = Proxier(node_name="node-1", applier=kernel, min_sync_interval=0.05,
                      sync_period=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(proxier.run(stop))
    yield proxier
    stop.set()
    await asyncio.wait_for(task, timeout=2)


async def until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


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


async def test_loop_syncs_soon_after_a_change(kernel: FakeKernel, running: Proxier) -> None:
    await until(lambda: kernel.applies == 1)  # the first, full sync
    running.on_service(None, WEB)
    running.on_endpoints(None, endpoints("10.244.1.2"))
    await until(lambda: kernel.backends() == {"10.244.1.2:8080"}, timeout=0.4)
    running.on_endpoints(endpoints("10.244.1.2"), endpoints("10.244.1.3", rv="2"))
    await until(lambda: kernel.backends() == {"10.244.1.3:8080"}, timeout=0.4)


async def test_bursts_of_changes_are_batched(kernel: FakeKernel, running: Proxier) -> None:
    await until(lambda: kernel.applies == 1)
    running.on_service(None, WEB)
    for i in range(20):
        running.on_endpoints(None, endpoints(f"10.244.1.{i + 2}", rv=str(i)))
        await asyncio.sleep(0.005)
    await until(lambda: kernel.backends() == {"10.244.1.21:8080"})
    # 20 changes over ~0.1 s with a 0.05 s minimum interval: a handful of syncs.
    assert kernel.applies <= 6


async def test_failed_apply_does_not_stop_the_loop(kernel: FakeKernel,
                                                   running: Proxier) -> None:
    await until(lambda: kernel.applies == 1)
    kernel.fail = True
    running.on_service(None, WEB)
    running.on_endpoints(None, endpoints("10.244.1.2"))
    await until(lambda: running.failed_syncs >= 1)
    kernel.fail = False
    # The periodic repair retries without any new event.
    await until(lambda: kernel.backends() == {"10.244.1.2:8080"})
    assert running.last_sync_ok


async def test_periodic_sync_repairs_removed_rules(kernel: FakeKernel,
                                                   running: Proxier) -> None:
    running.on_service(None, WEB)
    running.on_endpoints(None, endpoints("10.244.1.2"))
    await until(lambda: kernel.backends() == {"10.244.1.2:8080"})
    kernel.clean_up()  # someone flushed our rules
    assert kernel.backends() == {None}
    await until(lambda: kernel.backends() == {"10.244.1.2:8080"})


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
