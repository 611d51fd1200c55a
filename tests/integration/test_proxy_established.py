"""What every packet pays, in a real kernel: only a connection's first packet
meets the NAT rules, and every later one leaves our filter rules at the
first rule that looks at it.

iptables mode (both backends): the rules set-up and a sync leave in the
kernel, read back with ``iptables-save``, traced for a later packet; then
the kernel's own counters after real connections through a ClusterIP. In
nftables mode the kernel's trace (``meta nftrace`` set by a table of the
test's own, ``nft monitor trace``) shows each rule that decided a packet.

Address plan (all inside throwaway namespaces):
    node netns   np0 10.244.1.1/24; default route via 169.254.0.2 on up0, a
                 gateway that never answers; node-local DNS 10.96.0.10 on lo
    pod-a netns  10.244.1.2  HTTP :8080, answers "pod-a"
    client netns 10.244.1.4
    default/web  ClusterIP 10.96.0.50: http 80/TCP -> 8080 (echo 9000/UDP -> 5353)
    client ports 41000.. for the connections looked at, 40999 to see the
                 kernel's trace is on
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.apply import Backend, IptablesApplier
from netplane.proxy.iptables.proxier import Proxier
from netplane.proxy.iptables.trace import parse, trace_established
from netplane.proxy.nftables.backend import NftablesBackend
from netplane.proxy.trace import Packet, Verdict
from tests.integration.topology import Topology, sh, single_node, web_endpoints, web_service

pytestmark = pytest.mark.root

VIP, DNS_IP = "10.96.0.50", "10.96.0.10"
PODS = {"pod-a": ("10.244.1.2", "node-1")}
POD_A, CLIENT_IP = "10.244.1.2", "10.244.1.4"
CONFIG = ProxyConfig(notrack_dns_ips=(DNS_IP,))
CONNECTIONS = 5
FIRST_PORT = 41000


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    with single_node(make_netns, pods={p: ip for p, (ip, _) in PODS.items()},
                     client_ip=CLIENT_IP, node_local_ip=DNS_IP) as t:
        yield t


def connect(topo: Topology, n: int = CONNECTIONS, first_port: int = FIRST_PORT) -> None:
    """``n`` HTTP connections to the ClusterIP, each from its own port."""
    for i in range(n):
        assert topo.probe("tcp", VIP, 80, sport=first_port + i) == ["pod-a"]


# -- iptables ------------------------------------------------------------------------------

_COUNTED = re.compile(r"^\[(\d+):\d+\] (-A .*)$")


def counters(topo: Topology, backend: Backend, table: str) -> dict[str, int]:
    """Packets matched per rule (``-A CHAIN ...`` text) of one table."""
    out: dict[str, int] = {}
    for line in sh(f"iptables-{backend}-save", "-c", "-t", table, netns=topo.node).splitlines():
        found = _COUNTED.match(line)
        if found:
            out[found[2]] = out.get(found[2], 0) + int(found[1])
    return out


def only(rules: dict[str, int], *parts: str) -> int:
    [count] = [n for text, n in rules.items() if all(p in text for p in parts)]
    return count


@pytest.mark.parametrize("backend", [Backend.NFT, Backend.LEGACY])
async def test_iptables_later_packets_stop_at_the_first_forward_rule(
        topo: Topology, backend: Backend) -> None:
    proxier = Proxier(node_name="node-1", config=CONFIG,
                      applier=IptablesApplier(netns=topo.node, backend=backend))
    proxier.set_up()
    try:
        proxier.on_service(None, web_service())
        proxier.on_endpoints(None, web_endpoints(PODS, "pod-a"))
        assert await proxier.sync()
        # The rules as set-up ordered them in the kernel.
        kernel = parse(sh(f"iptables-{backend}-save", netns=topo.node))
        [_, flt] = trace_established(kernel, Packet(CLIENT_IP, "tcp", POD_A, 8080))
        assert (flt.chain, len(flt.evaluated), flt.verdict) == ("filter/FORWARD", 2,
                                                               Verdict.ACCEPT)
        sh(f"iptables-{backend}", "-w", "-t", "nat", "-Z", netns=topo.node)
        sh(f"iptables-{backend}", "-w", "-t", "filter", "-Z", netns=topo.node)
        connect(topo)
        nat, flt_counts = counters(topo, backend, "nat"), counters(topo, backend, "filter")
        # nat sees one packet per connection: its first.
        assert only(nat, "-A PREROUTING ", "-j NP-SERVICES") == CONNECTIONS
        assert only(nat, "--to-destination 10.244.1.2:8080") == CONNECTIONS
        forwarded = only(flt_counts, "-A FORWARD ", "-j NP-FORWARD")
        established = only(flt_counts, "-A NP-FORWARD ", "RELATED,ESTABLISHED")
        new = only(flt_counts, "-A FORWARD ", "-j NP-SERVICES")
        # Every forwarded packet but the connections' first ones ended at the first rule.
        assert new == CONNECTIONS and established == forwarded - new
        assert established >= 4 * CONNECTIONS
    finally:
        proxier.clean_up()


# -- nftables ------------------------------------------------------------------------------

PROBE_TABLE = """table ip np-test-trace {
    chain trace {
        type filter hook prerouting priority -400; policy accept;
        tcp dport { 80, 8080 } meta nftrace set 1
        tcp sport 8080 meta nftrace set 1
    }
}
"""
_EVENT = re.compile(r"^trace id (\S+) ip (\S+) (\S+) (packet|rule|policy|verdict)\b:? ?(.*)$")
_PORTS = re.compile(r"tcp sport (\d+) tcp dport (\d+) tcp flags == (\S+)")


@dataclass
class Visit:
    """One packet in one base chain of ours, and what the trace said there."""

    chain: str
    client_port: int
    syn: bool
    events: list[str] = field(default_factory=list)


def visits(lines: list[str]) -> list[Visit]:
    out: list[Visit] = []
    current: dict[str, Visit] = {}
    for line in lines:
        found = _EVENT.match(line)
        if found is None:
            continue
        trace_id, table, chain, kind, rest = found.groups()
        if kind == "packet":
            ports = _PORTS.search(rest)
            current.pop(trace_id, None)
            if table == "netplane" and ports is not None:
                sport, dport, flags = int(ports[1]), int(ports[2]), ports[3]
                current[trace_id] = Visit(chain, sport if dport in (80, 8080) else dport,
                                          flags == "syn")
                out.append(current[trace_id])
        elif trace_id in current:
            current[trace_id].events.append(f"{kind} {rest}")
    return out


class TraceMonitor:
    """``nft monitor trace`` in the node namespace, its lines collected."""

    def __init__(self, netns: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, "nft", "monitor", "trace"],
                                     stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def seen(self, port: int) -> bool:
        return any(f"tcp sport {port} " in line for line in list(self.lines))

    def settle(self) -> None:
        """Waits until no event has come for a moment (bounded), then stops."""
        for _ in range(50):
            before = len(self.lines)
            time.sleep(0.2)
            if len(self.lines) == before:
                break
        self.proc.kill()
        self.proc.wait()
        self._reader.join(timeout=5)


def test_nft_later_packets_leave_at_the_guard_and_skip_nat(topo: Topology) -> None:
    backend = NftablesBackend(netns=topo.node)
    backend.ensure_plumbing()
    monitor: TraceMonitor | None = None
    try:
        backend.sync(model.build([web_service()], [web_endpoints(PODS, "pod-a")]), CONFIG,
                     node_name="node-1")
        subprocess.run(["ip", "netns", "exec", topo.node, "nft", "-f", "-"], input=PROBE_TABLE,
                       text=True, check=True)
        monitor = TraceMonitor(topo.node)
        # The monitor subscribes on its own time: knock until it hears us.
        for _ in range(50):
            connect(topo, 1, FIRST_PORT - 1)
            if monitor.seen(FIRST_PORT - 1):
                break
        connect(topo)
        monitor.settle()
        ours = [v for v in visits(monitor.lines)
                if FIRST_PORT <= v.client_port < FIRST_PORT + CONNECTIONS]
        nat = [v for v in ours if v.chain.startswith("nat-")]
        later = [v for v in ours if v.chain.startswith("filter-") and not v.syn]
        # NAT chains see the first packet of each connection only.
        assert nat and all(v.syn for v in nat)
        assert len([v for v in nat if v.chain == "nat-prerouting"]) == CONNECTIONS
        assert len(later) >= 8 * CONNECTIONS
        for v in later:
            assert v.events[0] == "rule ct state != new return (verdict return)", v
    finally:
        if monitor is not None and monitor.proc.poll() is None:
            monitor.proc.kill()
            monitor.proc.wait()
        backend.clean_up()
        backend.close()
