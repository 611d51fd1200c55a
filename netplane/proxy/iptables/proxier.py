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
from typing import NamedTuple, Protocol

from netplane.api.meta import Obj
from netplane.proxy import collector
from netplane.proxy.changes import TRIGGER_TIME_ANNOTATION, ChangeTracker
from netplane.proxy.config import ProxyConfig
from netplane.proxy.conntrack import Entry, PortView, stale_entries
from netplane.proxy.iptables.chains import FIXED_CHAINS, Table
from netplane.proxy.iptables.describe import describe_port, kernel_mismatches
from netplane.proxy.iptables.document import Layout, Pieces
from netplane.proxy.iptables.render import document, partial_document, render
from netplane.proxy.iptables.rules import PORT_CHAINS, PORT_TEXTS, PortRules, render_port
from netplane.proxy.loop import SyncLoop
from netplane.proxy.model import Protocol as IPProtocol
from netplane.proxy.model import ServicePortInfo, ServicePortName, is_ipv4, port_order

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


class Port(NamedTuple):
    """One service port as rendered: what it is and its rules."""

    info: ServicePortInfo
    rules: PortRules


Ports = Pieces[ServicePortName, Port]
_LAYOUT: Layout[Port] = Layout.of_fields(PORT_TEXTS, PORT_CHAINS, prefix="rules.")


def _ports() -> Ports:
    return Pieces(layout=_LAYOUT, order=port_order)


@dataclass
class _SyncPlan:
    full: bool
    ensure: bool
    # The ports whose rules differ from what the kernel holds.
    changed: set[ServicePortName]
    desired: Ports
    by_service: dict[str, tuple[ServicePortName, ...]]


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
        # Every port as last rendered, kept across syncs (full ones too): only
        # the Services that changed are rendered again.
        self._desired: Ports = _ports()
        # What the kernel holds, as far as we know: the same object as
        # ``_desired`` after every successful sync.
        self._applied: Ports = self._desired
        self._needs_plumbing = True
        self._kernel_chains_known = False

    def set_up(self) -> None:
        """Creates our base chains and the jumps into them."""
        self._applier.ensure_plumbing()
        self._needs_plumbing = False

    def clean_up(self) -> None:
        """Removes every rule and chain this proxy owns."""
        self._applier.clean_up()
        self._applied = _ports()
        self._needs_plumbing = self._needs_full = True
        self._kernel_chains_known = False

    def render(self) -> str:
        """The full rule set for the current objects (pure)."""
        t = self._tracker
        return render(list(t.services.values()),
                      [o for group in t.endpoints.values() for o in group.values()],
                      self.config, node_name=self.node_name)

    # -- syncing ---------------------------------------------------------

    def _rerender(self, keys: set[str]) -> tuple[dict[ServicePortName, Port | None],
                                                 dict[str, tuple[ServicePortName, ...]]]:
        """The ports of the Services named by ``keys``, rendered again (None
        for a port that went), and which ports each Service now has."""
        by_service = dict(self._by_service) if keys else self._by_service
        changes: dict[ServicePortName, Port | None] = {}
        for key in keys:
            for spn in by_service.pop(key, ()):
                changes[spn] = None
            ports: list[ServicePortName] = []
            for info, eps in self._tracker.build(key):
                spn = info.key
                if not is_ipv4(info.cluster_ip):
                    continue  # IPv6 service IPs belong to ip6tables
                changes[spn] = Port(info, render_port(info, eps, config=self.config,
                                                      node_name=self.node_name))
                ports.append(spn)
            if ports:
                by_service[key] = tuple(ports)
        return changes, by_service

    def _plan(self, keys: set[str], *, full: bool) -> _SyncPlan:
        with collector.paused():
            changes, by_service = self._rerender(keys)
        desired = self._desired.with_changes(changes)
        applied = self._applied
        if applied is self._desired:
            changed = set(changes)
        else:  # the kernel was emptied (clean-up): every port differs
            changed = {s for s in desired if applied.get(s) is not desired[s]}
            changed.update(s for s in applied if s not in desired)
        return _SyncPlan(full=full or self._needs_full, ensure=self._needs_plumbing,
                         changed=changed, desired=desired, by_service=by_service)

    def _full_text(self, plan: _SyncPlan) -> str:
        desired = plan.desired
        if self._kernel_chains_known:
            # Chains are named after their own port, so only a changed port
            # can leave one behind.
            stale: dict[Table, set[str]] = {t: set() for t in Table}
            for spn in plan.changed:
                if spn not in self._applied:
                    continue  # a new port: nothing of it to leave behind
                for t in Table:
                    keep = desired.owned(spn, t)
                    stale[t].update(c for c in self._applied.owned(spn, t) if c not in keep)
        else:
            have = self._applier.current_chains()
            stale = {t: have.get(t, set()) - set(FIXED_CHAINS[t]) - desired.chains(t)
                     for t in Table}
        return document(self.config, [desired], stale=stale)

    def _apply(self, plan: _SyncPlan) -> None:
        """Runs in a worker thread: the only place that touches the kernel."""
        if plan.ensure:
            self._applier.ensure_plumbing()
        if plan.full:
            text = self._full_text(plan)
        else:
            text = partial_document(self._rules_of(self._applied, plan.changed),
                                    self._rules_of(plan.desired, plan.changed), plan.changed)
        if text:
            self._applier.restore(text)

    @staticmethod
    def _rules_of(ports: Ports, only: set[ServicePortName]) -> dict[ServicePortName, PortRules]:
        return {spn: port.rules for spn in only if (port := ports.get(spn)) is not None}

    @staticmethod
    def _views_of(ports: Ports, only: set[ServicePortName]) -> dict[ServicePortName, PortView]:
        return {spn: PortView.of(port.info, port.rules.cluster, port.rules.local)
                for spn in only if (port := ports.get(spn)) is not None}

    def _clean_conntrack(self, plan: _SyncPlan) -> None:
        if self._conntrack is None:
            return
        # Only UDP entries outlive a change (see ``conntrack``).
        udp = {spn for spn in plan.changed if spn.protocol is IPProtocol.UDP}
        old = self._views_of(self._applied, udp)
        new = self._views_of(plan.desired, udp)
        entries = stale_entries(old, new, udp)
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
            self.rule_count = sum(p.rules.rule_count for p in plan.desired.values())
        else:
            # Adjusted by the changed ports only: summing 10,000 ports costs.
            self.rule_count += sum(p.rule_count for p in self._rules_of(
                plan.desired, plan.changed).values()) - sum(p.rule_count for p in self._rules_of(
                    self._applied, plan.changed).values())
        self._desired = self._applied = plan.desired
        self._by_service = plan.by_service
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
        text = document(self.config, [self._applied])
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
            "ports": [describe_port(*applied[spn]) for spn in applied.ordered()],
        }
