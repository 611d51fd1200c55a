"""IPVS mode: the kube-proxy IPVS way of serving Services on a node.

Each service address (ClusterIP, each node address x NodePort, load-balancer
and external IPs) is an IPVS virtual server whose real servers are the
endpoints :func:`model.select` picks (weight 1; see ``plan``); ClientIP
affinity is IPVS persistence. Service addresses are bound to a local
interface so that the node accepts their packets: by default a dummy
interface ``np-ipvs0``; where the kernel has no dummy driver the backend
detects it at set-up and binds them on ``lo`` instead, under the address
label ``lo:np-ipvs`` so that only our addresses are ever removed there.
Masquerade, rejects and the source-range firewall are a constant set of
iptables rules over ipsets (``rules``).

A sync is not one atomic kernel transaction (IPVS has none); it is ordered
so that nothing points at what does not exist yet: ipsets (each swapped in
whole), iptables rules, addresses, virtual and real servers (only the
difference, ``ipvs_diff``), then removal of what is stale, then UDP
conntrack clean-up. ``kernel_matches`` is the cheap drift check; a full
sync (``full=True``) re-reads the kernel and repairs.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from netplane.proxy.command import CommandResult, Runner, run_in
from netplane.proxy.command import run_command as default_runner
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.apply import Backend, detect_backend
from netplane.proxy.iptables.render import Table
from netplane.proxy.ipvs import rules as ipvs_rules
from netplane.proxy.ipvs.diff import Op, OpKind, dest_ops, is_draining, service_ops
from netplane.proxy.ipvs.kernel import IPVSHandle, PyrouteIPVS, apply_op
from netplane.proxy.ipvs.plan import (
    DEFAULT_SCHEDULER,
    LOCALHOST,
    DesiredService,
    IPSetName,
    RealServer,
    VirtualServer,
    VirtualServerKey,
    plan,
)
from netplane.proxy.model import Protocol, ServiceMap

log = logging.getLogger(__name__)

DEFAULT_INTERFACE = "np-ipvs0"
LOOPBACK = "lo"
LO_LABEL = "lo:np-ipvs"
PROC_IPVS = Path("/proc/net/ip_vs")
NODE_PORT_RANGE = (30000, 32767)
SYSCTLS = ("net.ipv4.conf.all.route_localnet=1",)
# Only present when the kernel has IPVS: conntrack for masquerade, and
# dropping connections whose real server is gone.
IPVS_SYSCTLS = ("net.ipv4.vs.conntrack=1", "net.ipv4.vs.expire_nodest_conn=1",
                "net.ipv4.vs.expire_quiescent_template=1")


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def available(*, runner: Runner = default_runner, proc: Path = PROC_IPVS,
              has_module: Callable[[str], bool] = _has_module,
              which: Callable[[str], str | None] = shutil.which) -> tuple[bool, str]:
    """Whether this machine can run the IPVS mode, and if not, why."""
    if not has_module("pyroute2"):
        return False, "pyroute2 is not installed (IPVS is programmed through it)"
    if which("ipset") is None:
        return False, "the ipset command is not installed"
    if not proc.exists():
        loaded = runner(["modprobe", "ip_vs"], None)
        if not proc.exists():
            why = loaded.stderr.strip() or f"exit {loaded.returncode}"
            return False, f"kernel has no IPVS ({proc} missing; modprobe ip_vs failed: {why})"
    return True, "IPVS is available"


@dataclass
class SyncReport:
    """What one sync did."""

    full: bool
    ops: list[Op] = field(default_factory=list)
    ipsets_written: list[IPSetName] = field(default_factory=list)
    conntrack_cleared: list[list[str]] = field(default_factory=list)


def _addresses(output: str) -> set[str]:
    """IPv4 addresses from ``ip -o -4 addr show`` lines."""
    out: set[str] = set()
    for line in output.splitlines():
        words = line.split()
        if "inet" in words:
            out.add(words[words.index("inet") + 1].split("/")[0])
    return out


def _set_counts(output: str) -> dict[str, int]:
    """Members per set from ``ipset list -t`` headers."""
    counts: dict[str, int] = {}
    name = ""
    for line in output.splitlines():
        if line.startswith("Name: "):
            name = line[6:].strip()
        elif line.startswith("Number of entries: ") and name:
            counts[name] = int(line.split(":", 1)[1])
    return counts


class IPVSBackend:
    """Keeps one node's IPVS tables, ipsets, addresses and rules in step.

    ``netns`` names the network namespace commands run in (the node's, in
    tests); ``handle`` is the IPVS seam (default: pyroute2 in that netns,
    opened at first use)."""

    def __init__(self, *, netns: str | None = None, handle: IPVSHandle | None = None,
                 runner: Runner = default_runner, interface: str = DEFAULT_INTERFACE,
                 scheduler: str = DEFAULT_SCHEDULER, graceful_termination: bool = True,
                 iptables_backend: Backend | None = None,
                 node_port_range: tuple[int, int] = NODE_PORT_RANGE) -> None:
        self._netns = netns
        self._handle = handle
        self._runner = runner
        self.interface = interface
        self.interface_note = ""
        self.scheduler = scheduler
        self.graceful_termination = graceful_termination
        self.node_port_range = node_port_range
        self._iptables_backend = iptables_backend
        self._applied: dict[VirtualServerKey, DesiredService] = {}
        self._applied_sets: dict[IPSetName, set[str]] = {}
        self._applied_addresses: set[str] = set()
        self._applied_rules = ""
        self._node_ips: tuple[str, ...] = ()
        self._draining: set[VirtualServerKey] = set()
        self._synced = False

    available = staticmethod(available)

    # -- commands -----------------------------------------------------------

    def _run(self, argv: list[str], stdin: str | None = None, *,
             check: bool = True) -> CommandResult:
        return run_in(self._runner, self._netns, argv, stdin, check=check)

    def _tool(self, suffix: str) -> str:
        if self._iptables_backend is None:
            self._iptables_backend = detect_backend(runner=self._runner)
        name = f"iptables-{self._iptables_backend}{suffix}"
        return name if shutil.which(name) else f"iptables{suffix}"

    @property
    def handle(self) -> IPVSHandle:
        if self._handle is None:
            self._handle = PyrouteIPVS(netns=self._netns)
        return self._handle

    @property
    def rule_count(self) -> int:
        """iptables rules we own: a constant, whatever the number of Services."""
        return sum(1 for line in self._applied_rules.splitlines() if line.startswith("-A "))

    # -- set-up and clean-up --------------------------------------------------

    def ensure_plumbing(self) -> None:
        """Sysctls, the service interface, our ipsets, chains and jumps."""
        for setting in SYSCTLS:
            self._run(["sysctl", "-qw", setting])
        for setting in IPVS_SYSCTLS:
            self._run(["sysctl", "-qw", setting], check=False)
        self._ensure_interface()
        self._run(["ipset", "restore"], ipvs_rules.render_ipset_creation())
        self._run([self._tool("-restore"), "-w", "--noflush"],
                  self._applied_rules or _empty_chains())
        for jump in ipvs_rules.PLUMBING:
            args = jump.rule_args()
            if self._iptables(jump.table, "-C", jump.base_chain, *args, check=False).returncode:
                self._iptables(jump.table, "-I", jump.base_chain, "1", *args)

    def _iptables(self, table: Table, *args: str, check: bool = True) -> CommandResult:
        return self._run([self._tool(""), "-w", "-t", table, *args], check=check)

    def _ensure_interface(self) -> None:
        if self.interface == LOOPBACK:
            return
        if self._run(["ip", "link", "show", "dev", self.interface], check=False).returncode:
            made = self._run(["ip", "link", "add", self.interface, "type", "dummy"], check=False)
            if made.returncode:
                # No dummy driver in this kernel: lo accepts any bound address as well.
                self.interface_note = (f"cannot create dummy interface {self.interface} "
                                       f"({made.stderr.strip()}); binding on {LOOPBACK}")
                log.warning("ipvs: %s", self.interface_note)
                self.interface = LOOPBACK
                return
        self._run(["ip", "link", "set", self.interface, "up"])

    def clean_up(self) -> None:
        """Removes our virtual servers, addresses, rules, jumps and ipsets."""
        on_lo = self._lo_addresses(label=LO_LABEL)
        on_dummy = self._dummy_addresses()
        try:
            for server in self.handle.list_services():
                if self._owns(server.key, on_lo | on_dummy):
                    self.handle.del_service(server.key)
        except Exception as exc:  # no IPVS at all means nothing of ours is there
            log.info("ipvs: no virtual servers to remove (%s)", exc)
        self._batch([f"addr del {ip}/32 dev {LOOPBACK}" for ip in sorted(on_lo)])
        if self.interface != LOOPBACK:
            self._run(["ip", "link", "del", self.interface], check=False)
        for jump in ipvs_rules.PLUMBING:
            while not self._iptables(jump.table, "-C", jump.base_chain, *jump.rule_args(),
                                     check=False).returncode:
                self._iptables(jump.table, "-D", jump.base_chain, *jump.rule_args())
        self._run([self._tool("-restore"), "-w", "--noflush"], _delete_chains())
        names = self._run(["ipset", "list", "-n"], check=False).stdout.split()
        destroy = ipvs_rules.render_ipset_destruction(names)
        if destroy:
            self._run(["ipset", "restore"], destroy)
        self._applied, self._applied_sets, self._applied_addresses = {}, {}, set()
        self._applied_rules, self._synced = "", False
        self._draining = set()

    # -- addresses -------------------------------------------------------------

    def _lo_addresses(self, *, label: str | None = None) -> set[str]:
        argv = ["ip", "-o", "-4", "addr", "show", "dev", LOOPBACK]
        return _addresses(self._run([*argv, *(["label", label] if label else [])],
                                    check=False).stdout)

    def _dummy_addresses(self) -> set[str]:
        if self.interface == LOOPBACK:
            return set()
        return _addresses(self._run(["ip", "-o", "-4", "addr", "show", "dev", self.interface],
                                    check=False).stdout)

    def _owned_addresses(self) -> set[str]:
        """Addresses we bound: all of our dummy's, or lo's under our label."""
        if self.interface == LOOPBACK:
            return self._lo_addresses(label=LO_LABEL)
        return self._dummy_addresses()

    def _batch(self, lines: list[str]) -> None:
        if lines:
            self._run(["ip", "-force", "-batch", "-"], "".join(f"{x}\n" for x in lines))

    def _bind(self, wanted: set[str], have: set[str]) -> None:
        missing = wanted - have
        if self.interface == LOOPBACK and missing:
            # An address already on lo that is not ours (node-local DNS) stays as it is.
            missing -= self._lo_addresses()
        label = ["label", LO_LABEL] if self.interface == LOOPBACK else []
        self._batch([" ".join(["addr", "add", f"{ip}/32", "dev", self.interface, *label])
                     for ip in sorted(missing)])

    def _unbind(self, stale: Iterable[str]) -> None:
        self._batch([f"addr del {ip}/32 dev {self.interface}" for ip in sorted(stale)])

    # -- sync --------------------------------------------------------------------

    def sync(self, service_map: ServiceMap, config: ProxyConfig, node_name: str,
             node_ips: Iterable[str], *, full: bool = False) -> SyncReport:
        """Makes the kernel match the service map; only the difference unless ``full``."""
        full = full or not self._synced
        report = SyncReport(full=full)
        if full:
            self.ensure_plumbing()
        self._node_ips = tuple(node_ips)
        desired = plan(service_map, config, node_name=node_name, node_ips=self._node_ips,
                       scheduler=self.scheduler)
        report.ipsets_written = self._sync_ipsets(desired.ipsets, full=full)
        self._sync_rules(config, full=full)
        have = self._owned_addresses() if full else set(self._applied_addresses)
        self._bind(desired.bound_addresses, have)
        previous = self._applied
        report.ops = self._sync_ipvs(desired.services, full=full, owned=have)
        self._unbind(have - desired.bound_addresses)
        self._applied_addresses = set(desired.bound_addresses)
        if self._synced:
            report.conntrack_cleared = self._clear_udp_conntrack(previous, desired.services)
        self._applied = dict(desired.services)
        self._synced = True
        return report

    def _sync_ipsets(self, members: dict[IPSetName, set[str]], *,
                     full: bool) -> list[IPSetName]:
        changed = {name: entries for name, entries in members.items()
                   if full or self._applied_sets.get(name) != entries}
        if changed:
            self._run(["ipset", "restore"], ipvs_rules.render_ipsets(changed))
        self._applied_sets = {name: set(entries) for name, entries in members.items()}
        return sorted(changed)

    def _sync_rules(self, config: ProxyConfig, *, full: bool) -> None:
        text = ipvs_rules.render_iptables(config)
        if full or text != self._applied_rules:
            self._run([self._tool("-restore"), "-w", "--noflush"], text)
        self._applied_rules = text

    def _owns(self, key: VirtualServerKey, addresses: set[str]) -> bool:
        if key in self._applied or key.address in addresses:
            return True
        low, high = self.node_port_range
        node = key.address in self._node_ips or key.address == LOCALHOST
        return node and low <= key.port <= high

    def _sync_ipvs(self, desired: dict[VirtualServerKey, DesiredService], *, full: bool,
                   owned: set[str]) -> list[Op]:
        if full:
            current = {s.key: s for s in self.handle.list_services()}
            stale = {k for k in current if k not in desired and self._owns(k, owned)}
            keys = set(desired) | stale
        else:
            current = {k: d.server for k, d in self._applied.items()}
            keys = {k for k in set(desired) | set(current)
                    if desired.get(k) != self._applied.get(k)} | self._draining
            # One removed behind our back since the last sync is added again.
            current = {k: s for k, s in current.items() if k not in keys or self._exists(k)}
        ops: list[Op] = []
        for key in sorted(keys):
            ops += self._sync_one(key, desired.get(key), current.get(key))
        return ops

    def _sync_one(self, key: VirtualServerKey, want: DesiredService | None,
                  have: VirtualServer | None) -> list[Op]:
        ops = service_ops(want, have, key)
        for op in ops:
            apply_op(self.handle, op)
        self._draining.discard(key)
        if want is None:
            return ops
        dests = self.handle.list_dests(key) if have is not None else []
        more = dest_ops(key, want.real_servers, dests, graceful=self.graceful_termination)
        for op in more:
            apply_op(self.handle, op)
        deleted = {o.real_server.endpoint for o in more
                   if o.kind == OpKind.DEL_DEST and o.real_server is not None}
        if is_draining(key, want.real_servers, [d for d in dests if d.endpoint not in deleted]):
            self._draining.add(key)
        return ops + more

    def _exists(self, key: VirtualServerKey) -> bool:
        try:
            self.handle.list_dests(key)
        except Exception:  # the kernel answers "no such service" with an error
            return False
        return True

    # -- conntrack -----------------------------------------------------------------

    def _clear_udp_conntrack(self, before: dict[VirtualServerKey, DesiredService],
                             after: dict[VirtualServerKey, DesiredService]) -> list[list[str]]:
        """Deletes UDP conntrack entries that would keep sending to a gone endpoint,
        or keep a service that just got endpoints black-holed."""
        commands: list[list[str]] = []
        for key in sorted(set(before) | set(after)):
            if key.protocol != Protocol.UDP:
                continue
            old = _endpoint_ips(before.get(key))
            new = _endpoint_ips(after.get(key))
            base = ["conntrack", "-D", "-p", "udp", "--orig-dst", key.address]
            if new and not old:
                commands.append([*base, "--orig-port-dst", str(key.port)])
            commands += [[*base, "--dst-nat", ip] for ip in sorted(old - new)]
        for argv in commands:
            # Exit 1 means "nothing matched", which is fine.
            self._run(argv, check=False)
        return commands

    # -- inspection --------------------------------------------------------------------

    def kernel_matches(self) -> bool:
        """Cheap drift check: virtual servers (one dump), set sizes, our rules and
        jumps, bound addresses. Real servers are repaired by the next full sync."""
        if not self._synced:
            return False
        servers = {s.key: s for s in self.handle.list_services()}
        want = {k: d.server for k, d in self._applied.items()}
        if set(servers) != set(want) or any(
                not want[k].same_kernel_settings(s) for k, s in servers.items()):
            return False
        counts = _set_counts(self._run(["ipset", "list", "-t"], check=False).stdout)
        if any(counts.get(name) != len(m) for name, m in self._applied_sets.items()):
            return False
        if not self._rules_present():
            return False
        return self._owned_addresses() >= self._applied_addresses

    def _rules_present(self) -> bool:
        saved = self._run([self._tool("-save")], check=False).stdout
        ours = sorted(line for line in saved.splitlines() if line.startswith("-A NP-")
                      and any(line.startswith(f"-A {c} ") for cs in ipvs_rules.CHAINS.values()
                              for c in cs))
        jumps = all(f"-j {j.chain}" in saved for j in ipvs_rules.PLUMBING)
        return jumps and len(ours) == self.rule_count

    def describe(self) -> str:
        """Virtual servers in the kernel with their real servers, like ``ipvsadm -Ln``."""
        lines: list[str] = []
        for server in self.handle.list_services():
            applied = self._applied.get(server.key)
            label = applied.server.service if applied else ""
            persist = f" persistent {server.persistence}" if server.persistence else ""
            lines.append(f"{server.key} {server.scheduler}{persist}"
                         + (f"  # {label}" if label else ""))
            for rs in self.handle.list_dests(server.key):
                lines.append(f"  -> {rs.address}:{rs.port} weight {rs.weight} "
                             f"active {rs.active_connections} "
                             f"inactive {rs.inactive_connections}")
        return "\n".join(lines) + ("\n" if lines else "")


def _endpoint_ips(desired: DesiredService | None) -> set[str]:
    if desired is None:
        return set()
    return {rs.address for rs in desired.real_servers}


def _empty_chains() -> str:
    lines: list[str] = []
    for table, chains in ipvs_rules.CHAINS.items():
        lines += [f"*{table}", *(f":{c} - [0:0]" for c in chains), "COMMIT"]
    return "\n".join(lines) + "\n"


def _delete_chains() -> str:
    lines: list[str] = []
    for table, chains in ipvs_rules.CHAINS.items():
        lines += [f"*{table}", *(f":{c} - [0:0]" for c in chains),
                  *(f"-X {c}" for c in chains), "COMMIT"]
    return "\n".join(lines) + "\n"


__all__ = ["DEFAULT_INTERFACE", "IPVSBackend", "RealServer", "SyncReport", "VirtualServer",
           "available"]
