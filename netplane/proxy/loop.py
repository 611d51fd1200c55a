"""The proxy's control loop, shared by every mode.

Watch handlers only record changes (``ChangeTracker``); the loop syncs soon
after a change but never more often than ``min_sync_interval``, does a full
sync every ``sync_period`` (and whenever one is needed), and runs a cheap
drift check every ``check_interval`` so that rules someone removed come
back long before the period ends. A mode supplies ``sync`` and the check;
the loop keeps the timing and the figures that metrics and ``netplane
routes`` report.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from netplane.api.meta import Obj
from netplane.proxy.changes import ChangeTracker
from netplane.proxy.config import ProxyConfig
from netplane.proxy.metrics import LATENCY_BUCKETS, SYNC_BUCKETS, Histogram

log = logging.getLogger(__name__)


class SyncLoop:
    mode = ""

    def __init__(self, *, node_name: str, config: ProxyConfig | None = None,
                 node_ips: tuple[str, ...] = (), min_sync_interval: float = 0.1,
                 sync_period: float = 30.0, check_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        config = config if config is not None else ProxyConfig()
        self.config = replace(config, node_ips=node_ips) if node_ips else config
        self.node_name = node_name
        self.node_ips = self.config.node_ips
        self.min_sync_interval = min_sync_interval
        self.sync_period = sync_period
        self.check_interval = check_interval
        self._clock = clock
        self._wall = wall_clock
        self._tracker = ChangeTracker()
        self._needs_full = True
        self._wake = asyncio.Event()
        # True while ``run`` is inside a sync or a check (a worker thread may
        # be touching the kernel); False between them, when the figures below
        # and the kernel agree.
        self.busy = False
        self.last_sync_time: float | None = None  # clock() when the last sync ended
        self.last_full_sync_time: float | None = None
        self.last_check_time: float | None = None
        self.last_sync_wall_time: float | None = None
        self.last_sync_duration = 0.0
        self.last_sync_ok = False
        self.rule_count = 0
        self.sync_count = 0
        self.full_syncs = 0
        self.partial_syncs = 0
        self.failed_syncs = 0
        self.drift_repairs = 0
        self.conntrack_deletions = 0
        self.sync_duration = Histogram(SYNC_BUCKETS)
        self.programming_latency = Histogram(LATENCY_BUCKETS)

    # -- events ----------------------------------------------------------

    def _work_pending(self) -> bool:
        """Changes waiting for a sync (a mode with other inputs says so itself)."""
        return bool(self._tracker.pending)

    @property
    def dirty(self) -> bool:
        return bool(self._tracker.pending) or self._needs_full

    def on_service(self, prev: Obj | None, cur: Obj | None) -> None:
        if self._tracker.service(prev, cur):
            self._wake.set()

    def on_endpoints(self, prev: Obj | None, cur: Obj | None) -> None:
        """Takes v1 Endpoints and discovery.k8s.io/v1 EndpointSlices alike."""
        if self._tracker.endpoints_event(prev, cur):
            self._wake.set()

    # -- what a mode provides ----------------------------------------------

    def set_up(self) -> None:
        """Creates the fixed plumbing (base chains, table, interface)."""
        raise NotImplementedError

    def clean_up(self) -> None:
        """Removes everything this proxy owns."""
        raise NotImplementedError

    async def sync(self, *, full: bool = False) -> bool:
        raise NotImplementedError

    def describe(self, *, check_kernel: bool = False) -> Obj:
        """What was programmed, for ``netplane routes``."""
        raise NotImplementedError

    def _describe_sync(self) -> Obj:
        """The node-level part of ``describe``: mode, last sync, counts."""
        wall = self.last_sync_wall_time
        return {
            "node": self.node_name,
            "mode": self.mode,
            "nodeIPs": list(self.node_ips),
            "lastSyncTime": None if wall is None else datetime.datetime.fromtimestamp(
                wall, datetime.UTC).isoformat().replace("+00:00", "Z"),
            "lastSyncDurationSeconds": round(self.last_sync_duration, 6),
            "lastSyncOk": self.last_sync_ok,
            "fullSyncs": self.full_syncs,
            "partialSyncs": self.partial_syncs,
            "ruleCount": self.rule_count,
        }

    def _intact(self) -> bool:
        """The cheap drift check (blocking; runs in a worker thread)."""
        raise NotImplementedError

    def _drifted(self) -> None:
        """What a mode forgets when its rules were changed behind its back."""

    # -- bookkeeping -------------------------------------------------------

    def _record_sync(self, start: float) -> None:
        self.last_sync_time = self._clock()
        self.last_sync_duration = self.last_sync_time - start
        self.sync_duration.observe(self.last_sync_duration)
        self.sync_count += 1

    def _record_programmed(self, triggers: dict[str, float]) -> None:
        now = self._wall()
        self.last_sync_wall_time = now
        for stamp in triggers.values():
            self.programming_latency.observe(max(0.0, now - stamp))

    async def check(self) -> bool:
        """The cheap drift check; a failed one schedules a full sync with set-up."""
        try:
            ok = await asyncio.to_thread(self._intact)
        except Exception:
            log.exception("proxy drift check failed on node %s", self.node_name)
            ok = False
        self.last_check_time = self._clock()
        if not ok:
            log.info("proxy rules on node %s were changed by someone else; repairing",
                     self.node_name)
            self.drift_repairs += 1
            self._needs_full = True
            self._drifted()
            self._wake.set()
        return ok

    # -- the loop ----------------------------------------------------------

    def _since(self, stamp: float | None, period: float) -> float:
        if stamp is None:
            return 0.0
        return max(0.0, stamp + period - self._clock())

    def _full_due(self) -> bool:
        return self._needs_full or self._since(self.last_full_sync_time, self.sync_period) == 0

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        """Sleeps until a change, the next full sync or check, or stop."""
        timeout = min(self._since(self.last_full_sync_time, self.sync_period),
                      self._since(self.last_check_time, self.check_interval))
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Syncs until ``stop`` is set."""
        while not stop.is_set():
            if self._work_pending() or self._full_due():
                await self._sleep(self._since(self.last_sync_time, self.min_sync_interval), stop)
                if stop.is_set():
                    break
                self._wake.clear()
                full = self._full_due()
                self.busy = True
                try:
                    if full and not self._needs_full:
                        await self.check()  # a periodic full sync repairs the jumps too
                    await self.sync(full=full)
                finally:
                    self.busy = False
                continue
            if self._since(self.last_check_time, self.check_interval) == 0:
                self.busy = True
                try:
                    await self.check()
                finally:
                    self.busy = False
                continue
            await self._wait_for_work(stop)
            self._wake.clear()
