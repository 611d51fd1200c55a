"""nftables mode (``--proxy-mode nftables``): the backend a proxier drives.

Everything lives in our own table ``ip netplane`` (``layout``): set-up
creates it, clean-up deletes it, and no other table is ever touched.
A sync is one transaction: a *full* sync declares, flushes and refills
every chain and map of the table and deletes our stale chains and sets; a
*partial* sync carries only the element adds/deletes and chain rewrites of
the service ports that changed (``render.update``). After a sync, UDP
conntrack entries made stale by the change are deleted
(``conntrack``). ``kernel_matches`` is the cheap periodic check (a
netlink dump of our chains, rules and sets, by count): when someone flushed
or deleted our table, it says so and the next sync is a full one.

How a proxier uses it::

    backend = NftablesBackend(netns=None)      # or a named netns in tests
    backend.ensure_plumbing()                  # once: route_localnet, table
    backend.sync(service_map, config, node_name=..., node_ips=...)   # per change
    if not backend.kernel_matches():           # per sync period
        backend.sync(..., full=True)
    backend.clean_up(); backend.close()

or step by step: ``render_full`` / ``render_partial`` then ``apply``.
"""

from __future__ import annotations

import enum
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from netplane.proxy import collector, model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.model import ServiceMap, ServicePortName
from netplane.proxy.nftables.conntrack import Flow, stale_udp_flows
from netplane.proxy.nftables.kernel import (
    Loader,
    NetlinkReader,
    NftError,
    TableReader,
    make_loader,
)
from netplane.proxy.nftables.layout import TABLE, TABLE_REF
from netplane.proxy.nftables.render import (
    Rendered,
    clean_text,
    full_text,
    move,
    render,
    stale_text,
    update,
    wanted_objects,
)

__all__ = ["NftError", "NftablesBackend", "SyncKind", "SyncResult"]

COMMAND_TIMEOUT = 60.0
# Traffic to 127.0.0.1:NODEPORT is DNATed away from loopback; the kernel drops
# such packets unless route_localnet is on (kube-proxy sets the same).
SYSCTLS = ("net.ipv4.conf.all.route_localnet=1",)


class SyncKind(enum.StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    NONE = "none"  # nothing changed


@dataclass(frozen=True)
class SyncResult:
    kind: SyncKind
    seconds: float
    text_bytes: int
    conntrack_flows: tuple[Flow, ...] = ()


# Seam for tests: runs argv (conntrack, sysctl) and returns (returncode, stderr).
CommandRunner = Callable[[list[str]], tuple[int, str]]


def run_command(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                          timeout=COMMAND_TIMEOUT)
    return proc.returncode, proc.stderr


class NftablesBackend:
    """Renders service maps into our table and keeps the kernel in step."""

    mode = "nftables"

    def __init__(self, *, netns: str | None = None, loader: Loader | None = None,
                 reader: TableReader | None = None,
                 runner: CommandRunner = run_command) -> None:
        self._netns = netns
        self._loader = loader if loader is not None else make_loader(netns=netns)
        self._reader: TableReader = (reader if reader is not None
                                     else NetlinkReader(table=TABLE, netns=netns))
        self._runner = runner
        self._applied: Rendered | None = None  # what the kernel holds, as far as we know
        self._pending: Rendered | None = None  # rendered, not applied yet
        # The last state rendered, whatever became of it in the kernel: a pure
        # function of its map and node settings, so a full sync moves it to the
        # new map (rendering only the service ports that differ) instead of
        # rendering every one again. ``_applied``, when set, is this object.
        self._rendered: Rendered | None = None
        self._pending_full = False
        self.last_sync: SyncResult | None = None
        self.full_syncs = 0
        self.partial_syncs = 0

    # -- rendering (pure apart from remembering the state) ------------------

    def render_full(self, service_map: ServiceMap, config: ProxyConfig, *, node_name: str,
                    node_ips: Iterable[str] = ()) -> str:
        """The whole table for ``service_map`` (stale objects are added by apply)."""
        ips = tuple(sorted(node_ips))
        state = self._rendered
        with collector.paused():
            if state is not None and state.same_setup(config, node_name, ips):
                if state is self._applied:
                    self._applied = None  # moved below, while the kernel has it as it was
                move(state, service_map)
            else:
                state = render(service_map, config, node_name=node_name, node_ips=ips)
        self._rendered = self._pending = state
        self._pending_full = True
        return full_text(state)

    def render_partial(self, prev: ServiceMap, cur: ServiceMap, config: ProxyConfig, *,
                       node_name: str, node_ips: Iterable[str] = (),
                       changed: Iterable[ServicePortName] | None = None) -> str | None:
        """The delta from ``prev`` (what was applied last) to ``cur``; "" when
        nothing changes, None when only a full sync will do (first sync, a
        failed apply, other node settings, or ``prev`` is not what we applied)."""
        state = self._applied
        if state is None or not state.same_setup(config, node_name, tuple(sorted(node_ips))) \
                or (state.services is not prev and state.services != prev):
            return None
        # update() moves the state; until the kernel has it, we do not trust it.
        self._applied = None
        self._pending, self._pending_full = state, False
        return update(state, cur, changed=changed)

    # -- kernel ---------------------------------------------------------------

    def apply(self, text: str) -> None:
        """Loads the text of the last ``render_*`` call in one transaction."""
        pending, self._pending = self._pending, None
        if pending is not None and self._pending_full:
            summary = self._reader.summary()
            text += stale_text(pending, chains=summary.chains, sets=summary.sets)
        if text:
            self._loader.load(text)
        self._applied = pending

    def ensure_plumbing(self) -> None:
        """Sets the sysctls NodePorts on 127.0.0.1 need and creates our table."""
        prefix = ["ip", "netns", "exec", self._netns] if self._netns else []
        for setting in SYSCTLS:
            rc, err = self._runner([*prefix, "sysctl", "-qw", setting])
            if rc != 0:
                raise NftError(f"sysctl {setting} failed: {err.strip()}")
        self._loader.load(f"add table {TABLE_REF}\n")

    def clean_up(self) -> None:
        """Deletes our table and everything in it."""
        self._loader.load(clean_text())
        self._applied = None

    def kernel_matches(self, expected: Rendered | None = None) -> bool:
        """Cheap check that our table still has every chain, set and rule
        (counted, not compared) of ``expected`` (default: the last applied)."""
        want = expected if expected is not None else self._applied
        if want is None:
            return False
        have = self._reader.summary()
        chains, sets = wanted_objects(want)
        if not have.exists or not chains <= have.chains or not sets <= have.sets:
            return False
        return all(have.rules.get(name, 0) == len(rules)
                   for name, rules in want.chains().items())

    def close(self) -> None:
        """Releases the library context and netlink socket."""
        self._loader.close()
        self._reader.close()

    # -- the whole step -------------------------------------------------------

    def sync(self, service_map: ServiceMap, config: ProxyConfig, *, node_name: str,
             node_ips: Iterable[str] = (), full: bool = False,
             changed: Iterable[ServicePortName] | None = None) -> SyncResult:
        """Partial sync when possible, else full; then UDP conntrack clean-up."""
        start = time.perf_counter()
        ips = tuple(node_ips)
        prev: ServiceMap = self._applied.services if self._applied is not None else {}
        changed = list(changed) if changed is not None else None
        text = None if full else self.render_partial(prev, service_map, config,
                                                     node_name=node_name, node_ips=ips,
                                                     changed=changed)
        kind = SyncKind.PARTIAL if text else SyncKind.NONE
        try:
            if text is None:
                kind, text = SyncKind.FULL, self._full(service_map, config, node_name, ips)
            else:
                self.apply(text)
        except NftError:
            if kind == SyncKind.FULL:
                raise
            kind, text = SyncKind.FULL, self._full(service_map, config, node_name, ips)
        flows = tuple(stale_udp_flows(prev, service_map, node_name=node_name,
                                      changed=changed if kind != SyncKind.FULL else None))
        self._delete_flows(flows)
        self.full_syncs += kind == SyncKind.FULL
        self.partial_syncs += kind == SyncKind.PARTIAL
        self.last_sync = SyncResult(kind, time.perf_counter() - start, len(text), flows)
        return self.last_sync

    def _full(self, service_map: ServiceMap, config: ProxyConfig, node_name: str,
              node_ips: tuple[str, ...]) -> str:
        text = self.render_full(service_map, config, node_name=node_name, node_ips=node_ips)
        pending = self._pending
        try:
            self.apply(text)
        except NftError:
            # Our table may hold something this version cannot redeclare
            # (a set of another type): start from an empty table.
            self._loader.load(clean_text())
            self._pending, self._pending_full = pending, True
            self.apply(text)
        return text

    def _delete_flows(self, flows: Iterable[Flow]) -> None:
        prefix = ["ip", "netns", "exec", self._netns] if self._netns else []
        for flow in flows:
            # Exit status 1 just means there was nothing to delete.
            self._runner([*prefix, "conntrack", "-D", *flow])

    # -- what was programmed --------------------------------------------------

    def describe(self, spn: ServicePortName | None = None) -> dict[str, object]:
        """Mode, table, sizes and last sync; with ``spn``, that service port's
        map elements and chains as they were rendered."""
        state = self._applied
        out: dict[str, object] = {
            "mode": self.mode, "table": TABLE_REF, "in_sync": state is not None,
            "full_syncs": self.full_syncs, "partial_syncs": self.partial_syncs,
        }
        if self.last_sync is not None:
            out["last_sync"] = {"kind": str(self.last_sync.kind),
                                "seconds": self.last_sync.seconds}
        if state is not None:
            out["rules"] = state.rule_count()
            out["elements"] = state.element_count()
            if spn is not None:
                out["items"] = [{"in": c, "key": k, "value": v}
                                for c, k, v in state.fragments.get(spn, ())]
        return out


def health_check_counts(service_map: ServiceMap, *, node_name: str) -> dict[int, int]:
    """``healthCheckNodePort`` -> number of this node's usable endpoints, for
    the agent's health server (200 when > 0, else 503)."""
    out: dict[int, int] = {}
    for info, eps in service_map.values():
        if info.health_check_node_port and info.external_policy_local:
            local = model.select(eps, node_name=node_name).local
            out[info.health_check_node_port] = out.get(info.health_check_node_port, 0) \
                + len(local)
    return out
