"""The proxy's control loop: change tracking, partial and full syncs, drift repair.

Watch handlers (``on_service``, ``on_endpoints``) only record the newest
object and which Service it concerns, dropping updates that change nothing
the rules depend on. A sync re-renders only the Services that changed
(pure, on the event loop), then applies in a worker thread either a
partial document (their chains, and their lines in the shared chains) or,
every ``sync_period`` and after any failure or detected drift, the full
one. Every ``check_interval`` a cheap check looks for our jumps in the
built-in chains, so a flushed table is repaired long before the period
ends. After rules are applied, stale UDP conntrack entries are deleted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from netplane.api.meta import Obj
from netplane.proxy.changes import TRIGGER_TIME_ANNOTATION, ChangeTracker
from netplane.proxy.config import ProxyConfig
from netplane.proxy.conntrack import Entry, PortView, stale_entries
from netplane.proxy.iptables.chains import FIXED_CHAINS, Table, is_ipv4
from netplane.proxy.iptables.describe import describe_port, kernel_mismatches
from netplane.proxy.iptables.render import full_document, partial_document, render
from netplane.proxy.iptables.rules import PortRules, render_port
from netplane.proxy.loop import SyncLoop
from netplane.proxy.model import ServicePortInfo, ServicePortName

log = logging.getLogger(__name__)

__all__ = ["TRIGGER_TIME_ANNOTATION", "ChangeTracker", "ConntrackCleaner", "Proxier",
           "RuleApplier"]


class RuleApplier(Protocol):
    """Puts rendered rules in the kernel (``apply.IptablesApplier`` or a fake)."""

    def restore(self, text: str) -> None: ...

    def current_chains(self) -> dict[Table, set[str]]: ...

    def ensure_plumbing(self) -> None: ...

    def clean_up(self) -> None: ...

    def intact(self) -> bool: ...

    def save(self) -> str: ...


class ConntrackCleaner(Protocol):
    """Deletes conntrack entries (``conntrack.Conntrack`` or a fake)."""

    def delete(self, entries: Iterable[Entry]) -> int: ...


Port = tuple[ServicePortInfo, PortRules]


@dataclass
class _SyncPlan:
    full: bool
    ensure: bool
    changed: set[ServicePortName]
    desired: dict[ServicePortName, Port]


class Proxier(SyncLoop):
    """Keeps this node's service rules in step with Services and endpoints."""

    mode = "iptables"

    def __init__(self, *, node_name: str, applier: RuleApplier,
                 config: ProxyConfig | None = None, node_ips: tuple[str, ...] = (),
                 conntrack: ConntrackCleaner | None = None, min_sync_interval: float = 0.1,
                 sync_period: float = 30.0, check_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(node_name=node_name, config=config, node_ips=node_ips,
                         min_sync_interval=min_sync_interval, sync_period=sync_period,
                         check_interval=check_interval, clock=clock, wall_clock=wall_clock)
        self._applier = applier
        self._conntrack = conntrack
        self._by_service: dict[str, tuple[ServicePortName, ...]] = {}
        self._desired: dict[ServicePortName, Port] = {}
        self._applied: dict[ServicePortName, Port] = {}
        self._needs_plumbing = True
        self._kernel_chains_known = False

    def set_up(self) -> None:
        """Creates our base chains and the jumps into them."""
        self._applier.ensure_plumbing()
        self._needs_plumbing = False

    def clean_up(self) -> None:
        """Removes every rule and chain this proxy owns."""
        self._applier.clean_up()
        self._applied = {}
        self._needs_plumbing = self._needs_full = True
        self._kernel_chains_known = False

    def render(self) -> str:
        """The full rule set for the current objects (pure)."""
        t = self._tracker
        return render(list(t.services.values()),
                      [o for group in t.endpoints.values() for o in group.values()],
                      self.config, node_name=self.node_name)

    # -- syncing ---------------------------------------------------------

    def _rerender(self, keys: set[str]) -> tuple[dict[ServicePortName, Port],
                                                 set[ServicePortName]]:
        desired = dict(self._desired)
        changed: set[ServicePortName] = set()
        for key in keys:
            for spn in self._by_service.pop(key, ()):
                desired.pop(spn, None)
                changed.add(spn)
            ports: list[ServicePortName] = []
            for info, eps in self._tracker.build(key):
                spn = info.key
                if not is_ipv4(info.cluster_ip):
                    continue  # IPv6 service IPs belong to ip6tables
                desired[spn] = (info, render_port(info, eps, config=self.config,
                                                  node_name=self.node_name))
                ports.append(spn)
                changed.add(spn)
            if ports:
                self._by_service[key] = tuple(ports)
        return desired, changed

    def _plan(self, keys: set[str], *, full: bool) -> _SyncPlan:
        desired, changed = self._rerender(keys)
        full = full or self._needs_full
        if full:
            changed = set(desired) | set(self._applied)
        return _SyncPlan(full=full, ensure=self._needs_plumbing, changed=changed,
                         desired=desired)

    def _full_text(self, desired: dict[ServicePortName, Port]) -> str:
        ports = [desired[spn][1] for spn in sorted(desired)]
        if self._kernel_chains_known:
            have = self._chains_of(self._applied)
        else:
            have = self._applier.current_chains()
        wanted = self._chains_of(desired)
        stale = {t: have.get(t, set()) - wanted[t] for t in Table}
        return full_document(ports, self.config, stale=stale)

    @staticmethod
    def _chains_of(ports: dict[ServicePortName, Port]) -> dict[Table, set[str]]:
        out = {t: set(FIXED_CHAINS[t]) for t in Table}
        for _, rules in ports.values():
            out[Table.NAT].update(rules.nat_chains)
        return out

    def _apply(self, plan: _SyncPlan) -> None:
        """Runs in a worker thread: the only place that touches the kernel."""
        if plan.ensure:
            self._applier.ensure_plumbing()
        if plan.full:
            text = self._full_text(plan.desired)
        else:
            text = partial_document(self._rules_of(self._applied, plan.changed),
                                    self._rules_of(plan.desired, plan.changed), plan.changed)
        if text:
            self._applier.restore(text)

    @staticmethod
    def _rules_of(ports: dict[ServicePortName, Port],
                  only: set[ServicePortName]) -> dict[ServicePortName, PortRules]:
        return {spn: ports[spn][1] for spn in only if spn in ports}

    @staticmethod
    def _views_of(ports: dict[ServicePortName, Port],
                  only: set[ServicePortName]) -> dict[ServicePortName, PortView]:
        return {spn: PortView.of(ports[spn][0], ports[spn][1].cluster, ports[spn][1].local)
                for spn in only if spn in ports}

    def _clean_conntrack(self, plan: _SyncPlan) -> None:
        if self._conntrack is None:
            return
        old = self._views_of(self._applied, plan.changed)
        new = self._views_of(plan.desired, plan.changed)
        entries = stale_entries(old, new, plan.changed)
        if entries:
            self._conntrack.delete(entries)
            self.conntrack_deletions += len(entries)

    async def sync(self, *, full: bool = False) -> bool:
        """Applies what changed (everything when ``full``); returns whether it worked."""
        start = self._clock()
        keys, triggers = self._tracker.take()
        try:
            plan = self._plan(keys, full=full)
            await asyncio.to_thread(self._apply, plan)
            await asyncio.to_thread(self._clean_conntrack, plan)
        except Exception:
            # Keep the loop alive: the next sync retries everything, in full.
            log.exception("proxy sync failed on node %s", self.node_name)
            self._tracker.give_back(keys, triggers)
            self._needs_full = self._needs_plumbing = True
            self._kernel_chains_known = False
            self.failed_syncs += 1
            self.last_sync_ok = False
        else:
            self._committed(plan, triggers)
        self._record_sync(start)
        return self.last_sync_ok

    def _committed(self, plan: _SyncPlan, triggers: dict[str, float]) -> None:
        if plan.full:
            self.rule_count = sum(r.rule_count for _, r in plan.desired.values())
        else:
            # Adjusted by the changed ports only: summing 10,000 ports costs.
            self.rule_count += sum(p.rule_count for p in self._rules_of(
                plan.desired, plan.changed).values()) - sum(p.rule_count for p in self._rules_of(
                    self._applied, plan.changed).values())
        self._desired = plan.desired
        self._applied = dict(plan.desired)
        self._needs_plumbing = False
        self._kernel_chains_known = True
        if plan.full:
            self._needs_full = False
            self.full_syncs += 1
            self.last_full_sync_time = self._clock()
        else:
            self.partial_syncs += 1
        self.last_sync_ok = True
        self._record_programmed(triggers)
        log.debug("proxy %s sync: %d ports changed, %d rules",
                  "full" if plan.full else "partial", len(plan.changed), self.rule_count)

    def _intact(self) -> bool:
        return self._applier.intact()

    def _drifted(self) -> None:
        self._needs_plumbing = True
        self._kernel_chains_known = False

    # -- inspection ------------------------------------------------------

    def kernel_mismatches(self) -> list[str]:
        """Differences between the kernel and what was last applied (blocking)."""
        applied = self._applied
        text = full_document([applied[s][1] for s in sorted(applied)], self.config)
        problems = kernel_mismatches(self._applier.save(), text)
        if not self._applier.intact():
            problems.insert(0, "jumps from the built-in chains are missing")
        return problems

    def describe(self, *, check_kernel: bool = False) -> Obj:
        """Per-service-port data for ``netplane routes``; ``check_kernel``
        also reads the kernel back (blocking: call it in a thread)."""
        applied = self._applied
        mismatches = self.kernel_mismatches() if check_kernel else None
        return {
            **self._describe_sync(),
            "kernelMatches": None if mismatches is None else not mismatches,
            "mismatches": mismatches or [],
            "ports": [describe_port(*applied[spn]) for spn in sorted(applied)],
        }
