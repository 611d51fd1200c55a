"""The control loop for modes whose backend takes the whole service map and
programs the difference itself: nftables (maps and elements) and IPVS
(virtual and real servers). Same change tracking, timing, drift checks and
figures as iptables mode (``SyncLoop``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from netplane.api.meta import Obj
from netplane.proxy import collector
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.describe import describe_selection
from netplane.proxy.ipvs.backend import IPVSBackend
from netplane.proxy.loop import SyncLoop
from netplane.proxy.model import ServiceMap, ServicePortName, port_order, select
from netplane.proxy.nftables.backend import NftablesBackend, SyncKind

log = logging.getLogger(__name__)


class MapBackend(Protocol):
    def ensure_plumbing(self) -> None: ...

    def clean_up(self) -> None: ...

    def kernel_matches(self) -> bool: ...

    def sync(self, service_map: ServiceMap, config: ProxyConfig, *, node_name: str,
             node_ips: Iterable[str], full: bool,
             changed: set[ServicePortName] | None) -> tuple[bool, int]:
        """Programs the map; returns (whether it was a full sync, rule count)."""
        ...

    def details(self) -> Obj: ...


class _Plumbing(Protocol):
    def ensure_plumbing(self) -> None: ...

    def clean_up(self) -> None: ...

    def kernel_matches(self) -> bool: ...


class _Adapter:
    """What both backends already spell the same way."""

    backend: _Plumbing

    def ensure_plumbing(self) -> None:
        self.backend.ensure_plumbing()

    def clean_up(self) -> None:
        self.backend.clean_up()

    def kernel_matches(self) -> bool:
        return self.backend.kernel_matches()


class NftablesAdapter(_Adapter):
    """``nftables.NftablesBackend`` behind ``MapBackend``."""

    def __init__(self, backend: NftablesBackend) -> None:
        self.backend: NftablesBackend = backend

    def sync(self, service_map: ServiceMap, config: ProxyConfig, *, node_name: str,
             node_ips: Iterable[str], full: bool,
             changed: set[ServicePortName] | None) -> tuple[bool, int]:
        result = self.backend.sync(service_map, config, node_name=node_name,
                                   node_ips=tuple(node_ips), full=full, changed=changed)
        info = self.backend.describe()
        return result.kind is SyncKind.FULL, int(str(info.get("rules", 0) or 0))

    def details(self) -> Obj:
        return dict(self.backend.describe())


class IPVSAdapter(_Adapter):
    """``ipvs.IPVSBackend`` behind ``MapBackend``."""

    def __init__(self, backend: IPVSBackend) -> None:
        self.backend: IPVSBackend = backend

    def sync(self, service_map: ServiceMap, config: ProxyConfig, *, node_name: str,
             node_ips: Iterable[str], full: bool,
             changed: set[ServicePortName] | None) -> tuple[bool, int]:
        report = self.backend.sync(service_map, config, node_name, tuple(node_ips), full=full)
        return report.full, self.backend.rule_count

    def details(self) -> Obj:
        return {"interface": self.backend.interface, "note": self.backend.interface_note,
                "virtualServers": self.backend.describe()}


class MapProxier(SyncLoop):
    def __init__(self, *, mode: str, backend: MapBackend, node_name: str,
                 config: ProxyConfig | None = None, node_ips: tuple[str, ...] = (),
                 min_sync_interval: float = 0.1, sync_period: float = 30.0,
                 check_interval: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(node_name=node_name, config=config, node_ips=node_ips,
                         min_sync_interval=min_sync_interval, sync_period=sync_period,
                         check_interval=check_interval, clock=clock, wall_clock=wall_clock)
        self.mode = mode
        self.backend = backend
        self._map: ServiceMap = {}
        self._by_service: dict[str, tuple[ServicePortName, ...]] = {}

    def set_up(self) -> None:
        self.backend.ensure_plumbing()

    def clean_up(self) -> None:
        self.backend.clean_up()
        self._needs_full = True

    def _intact(self) -> bool:
        return self.backend.kernel_matches()

    def _rebuild(self, keys: set[str]) -> tuple[ServiceMap, set[ServicePortName],
                                                 dict[str, tuple[ServicePortName, ...]]]:
        """A new map (backends compare it with the last one) and what changed.

        Ports that stay are replaced in place and ports that go are dropped,
        which keeps the map in order; it is sorted again only when a port
        is new."""
        new_map = dict(self._map)
        by_service = dict(self._by_service)
        changed: set[ServicePortName] = set()
        added = False
        for key in keys:
            old = by_service.pop(key, ())
            ports = []
            for info, eps in self._tracker.build(key):
                added = added or info.key not in new_map
                new_map[info.key] = (info, eps)
                ports.append(info.key)
            for spn in old:
                if spn not in ports:
                    new_map.pop(spn, None)
            changed.update(old, ports)
            if ports:
                by_service[key] = tuple(ports)
        if added:
            new_map = dict(sorted(new_map.items(), key=lambda kv: port_order(kv[0])))
        return new_map, changed, by_service

    async def sync(self, *, full: bool = False) -> bool:
        start = self._clock()
        keys, triggers = self._tracker.take()
        full = full or self._needs_full
        try:
            with collector.paused():
                new_map, changed, by_service = self._rebuild(keys)
            was_full, rules = await asyncio.to_thread(
                self.backend.sync, new_map, self.config, node_name=self.node_name,
                node_ips=self.node_ips, full=full, changed=None if full else changed)
        except Exception:
            log.exception("proxy sync (%s) failed on node %s", self.mode, self.node_name)
            self._tracker.give_back(keys, triggers)
            self._needs_full = True
            self.failed_syncs += 1
            self.last_sync_ok = False
        else:
            self._map, self._by_service = new_map, by_service
            self.rule_count = rules
            self._needs_full = False
            if was_full:
                self.full_syncs += 1
                self.last_full_sync_time = self._clock()
            else:
                self.partial_syncs += 1
            self.last_sync_ok = True
            self._record_programmed(triggers)
        self._record_sync(start)
        return self.last_sync_ok

    def describe(self, *, check_kernel: bool = False) -> Obj:
        matches = self.backend.kernel_matches() if check_kernel else None
        return {
            **self._describe_sync(),
            "kernelMatches": matches,
            "mismatches": [] if matches in (None, True) else ["kernel state differs from "
                                                              "what was last applied"],
            "backend": self.backend.details(),
            "ports": [describe_selection(info, select(eps, node_name=self.node_name))
                      for info, eps in self._map.values()],
        }
