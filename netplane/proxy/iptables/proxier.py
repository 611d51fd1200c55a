"""The proxy's control loop: change tracking, partial and full syncs, drift repair.

Watch handlers (``on_service``, ``on_endpoints``) only record the newest
object and which Service it concerns, dropping updates that change nothing
the rules depend on. A sync re-renders only the Services that changed
(pure, on the event loop), then applies in a worker thread a partial
document (their chains, and their lines in the shared chains). Every
``sync_period`` and after any failure or detected drift it writes the full
one instead, into an ``iptables-restore`` started before rendering, so
that the restore parses what is rendered while the rest is rendered.
Every ``check_interval`` a cheap check looks for our jumps in the built-in
chains, so a flushed table is repaired long before the period ends.
After rules are applied, stale UDP conntrack entries are deleted.
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
from netplane.proxy.command import Input
from netplane.proxy.config import ProxyConfig
from netplane.proxy.conntrack import Entry, PortView, stale_entries
from netplane.proxy.iptables.chains import FIXED_CHAINS, Table
from netplane.proxy.iptables.describe import describe_port, kernel_mismatches
from netplane.proxy.iptables.document import Layout, Part, Pieces, Streamed
from netplane.proxy.iptables.render import (
    document,
    partial_document,
    render,
    streamed_document,
)
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

    def open_restore(self) -> Input: ...

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


@dataclass
class _FullStream:
    """A full sync's restore, open before rendering starts (``Streamed``)."""

    restore: Input
    document: Streamed
    # Our chains in the kernel when they were not known (read before the restore).
    kernel: dict[Table, set[str]] | None
    # The ports whose text went into the restore as they were rendered.
    streamed: set[ServicePortName]


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

    def _rerender(self, keys: set[str], stream: _FullStream | None = None) -> tuple[
            dict[ServicePortName, Port | None], dict[str, tuple[ServicePortName, ...]]]:
        """The ports of the Services named by ``keys``, rendered again (None
        for a port that went), and which ports each Service now has; each
        port's nat chains also go into ``stream`` as soon as it is rendered."""
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
                rules = render_port(info, eps, config=self.config, node_name=self.node_name)
                changes[spn] = Port(info, rules)
                ports.append(spn)
                if stream is not None:
                    stream.document.owner(rules.nat_chain_text)
                    stream.streamed.add(spn)
            if ports:
                by_service[key] = tuple(ports)
        return changes, by_service

    def _plan(self, keys: set[str], *, full: bool,
              stream: _FullStream | None = None) -> _SyncPlan:
        with collector.paused():
            changes, by_service = self._rerender(keys, stream)
        desired = self._desired.with_changes(changes)
        applied = self._applied
        if applied is self._desired:
            changed = set(changes)
        else:  # the kernel was emptied (clean-up): every port differs
            changed = {s for s in desired if applied.get(s) is not desired[s]}
            changed.update(s for s in applied if s not in desired)
        return _SyncPlan(full=full, ensure=self._needs_plumbing and stream is None,
                         changed=changed, desired=desired, by_service=by_service)

    def _open_full(self, keys: set[str]) -> _FullStream:
        """Runs in a worker thread: what must precede a full restore (the
        plumbing, the kernel's chains when unknown), then the restore itself.

        Which chains a changed Service leaves behind is known only after
        rendering, so the chains its ports had are all emptied first."""
        if self._needs_plumbing:
            self._applier.ensure_plumbing()
        kernel: dict[Table, set[str]] | None = None
        if self._kernel_chains_known:
            flush = {c for key in keys for spn in self._by_service.get(key, ())
                     for c in self._applied.owned(spn, Table.NAT)}
        else:
            kernel = self._applier.current_chains()
            flush = kernel.get(Table.NAT, set()) - set(FIXED_CHAINS[Table.NAT])
        restore = self._applier.open_restore()
        try:
            doc = streamed_document(restore.write, self.config, flush=flush)
        except BaseException:
            restore.abort()
            raise
        return _FullStream(restore, doc, kernel, set())

    def _finish_full(self, plan: _SyncPlan, stream: _FullStream) -> None:
        """Runs in a worker thread: the rest of the document, and the restore's end."""
        desired = plan.desired
        if not stream.streamed:
            rest = (desired.joined(Table.NAT, Part.DECLS) + desired.joined(Table.NAT, Part.OWN))
        else:
            rest = "".join([desired[spn].rules.nat_chain_text
                            for spn in desired.ordered() if spn not in stream.streamed])
        stale: dict[Table, set[str]] | None = None
        if stream.kernel is not None:
            stale = {t: have - set(FIXED_CHAINS[t]) - desired.chains(t)
                     for t, have in stream.kernel.items() if t is not Table.NAT}
        stream.document.finish([desired], rest=rest,
                               declared=lambda: desired.chains(Table.NAT), stale=stale)
        stream.restore.close()

    def _apply(self, plan: _SyncPlan, stream: _FullStream | None = None) -> None:
        """Runs in a worker thread: the only place that touches the kernel."""
        if stream is not None:
            self._finish_full(plan, stream)
            return
        if plan.ensure:
            self._applier.ensure_plumbing()
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
        full = full or self._needs_full
        stream: _FullStream | None = None
        try:
            if full:
                stream = await asyncio.to_thread(self._open_full, keys)
            plan = self._plan(keys, full=full, stream=stream)
            await asyncio.to_thread(self._apply, plan, stream)
            stream = None
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
        finally:
            if stream is not None:  # failed or cancelled mid-way: the restore plays nothing more
                stream.restore.abort()
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
