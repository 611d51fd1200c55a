"""The proxy's control loop: change tracking plus a bounded-frequency sync.

Watch handlers (``on_service``, ``on_endpoints``) only record the newest
object and mark the state dirty, dropping updates that change nothing the
rules depend on. ``run`` syncs soon after a change, never more often than
``min_sync_interval``, and at least every ``sync_period`` to repair rules
someone else removed. A sync renders everything (pure, on the event loop)
and applies it in a worker thread; a failed apply is logged and retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from netplane.api.meta import Obj, namespaced_name
from netplane.proxy.iptables import ProxyConfig, render, rule_count

log = logging.getLogger(__name__)


class RuleApplier(Protocol):
    """Puts rendered rules in the kernel (``apply.IptablesApplier`` or a fake)."""

    def apply(self, text: str) -> None: ...

    def ensure_plumbing(self) -> None: ...

    def clean_up(self) -> None: ...


def _record(store: dict[str, Obj], prev: Obj | None, cur: Obj | None, field: str) -> bool:
    """Updates ``store`` from one watch event; returns whether rules may change."""
    if cur is None:
        return store.pop(namespaced_name(prev), None) is not None if prev is not None else False
    key = namespaced_name(cur)
    old = store.get(key)
    store[key] = cur
    return old is None or old.get(field) != cur.get(field)


class Proxier:
    """Keeps this node's service rules in step with Services and Endpoints."""

    def __init__(self, *, node_name: str, applier: RuleApplier,
                 config: ProxyConfig | None = None, min_sync_interval: float = 0.1,
                 sync_period: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node_name = node_name
        self.config = config if config is not None else ProxyConfig()
        self.min_sync_interval = min_sync_interval
        self.sync_period = sync_period
        self._applier = applier
        self._clock = clock
        self._services: dict[str, Obj] = {}
        self._endpoints: dict[str, Obj] = {}
        self._dirty = True
        self._plumbing_ok = False
        self._wake = asyncio.Event()
        self.last_sync_time: float | None = None  # clock() when the last sync ended
        self.last_sync_duration = 0.0
        self.last_sync_ok = False
        self.rule_count = 0
        self.sync_count = 0
        self.failed_syncs = 0

    @property
    def dirty(self) -> bool:
        return self._dirty

    def on_service(self, prev: Obj | None, cur: Obj | None) -> None:
        if _record(self._services, prev, cur, "spec"):
            self._mark_dirty()

    def on_endpoints(self, prev: Obj | None, cur: Obj | None) -> None:
        if _record(self._endpoints, prev, cur, "subsets"):
            self._mark_dirty()

    def _mark_dirty(self) -> None:
        self._dirty = True
        self._wake.set()

    def set_up(self) -> None:
        """Creates our base chains and the jumps into them."""
        self._applier.ensure_plumbing()
        self._plumbing_ok = True

    def clean_up(self) -> None:
        """Removes every rule and chain this proxy owns."""
        self._applier.clean_up()
        self._plumbing_ok = False

    def render(self) -> str:
        """The rules for the current state (pure)."""
        return render(list(self._services.values()), list(self._endpoints.values()),
                      self.config)

    async def sync(self, *, repair: bool = False) -> bool:
        """Renders and applies everything; returns whether it worked."""
        self._dirty = False
        ensure = repair or not self._plumbing_ok
        start = self._clock()
        text = ""
        try:
            text = self.render()
            await asyncio.to_thread(self._apply, text, ensure_plumbing=ensure)
        except Exception:
            # Keep the loop alive: the next period (or change) retries.
            log.exception("proxy sync failed on node %s", self.node_name)
            self.failed_syncs += 1
            self._plumbing_ok = False
            self.last_sync_ok = False
        else:
            self.rule_count = rule_count(text)
            self.last_sync_ok = True
            log.debug("proxy synced %d rules", self.rule_count)
        self.last_sync_time = self._clock()
        self.last_sync_duration = self.last_sync_time - start
        self.sync_count += 1
        return self.last_sync_ok

    def _apply(self, text: str, *, ensure_plumbing: bool) -> None:
        if ensure_plumbing:
            self._applier.ensure_plumbing()
            self._plumbing_ok = True
        self._applier.apply(text)

    def _seconds_until_allowed(self) -> float:
        if self.last_sync_time is None:
            return 0.0
        return max(0.0, self.last_sync_time + self.min_sync_interval - self._clock())

    def _seconds_until_repair(self) -> float:
        if self.last_sync_time is None:
            return 0.0
        return max(0.0, self.last_sync_time + self.sync_period - self._clock())

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        """Sleeps until a change, the repair period, or stop."""
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=self._seconds_until_repair(),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Syncs until ``stop`` is set."""
        while not stop.is_set():
            repair = self._seconds_until_repair() == 0.0
            if self._dirty or repair:
                await self._sleep(self._seconds_until_allowed(), stop)
                if stop.is_set():
                    break
                self._wake.clear()
                await self.sync(repair=repair)
                continue
            await self._wait_for_work(stop)
            self._wake.clear()
