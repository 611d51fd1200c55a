"""What every packet pays, in a real kernel: only a connection's first packet
meets the NAT rules, and every later one leaves our filter rules at the
first rule that looks at it.

iptables mode (both backends): the rules set-up and a sync leave in the
kernel, read back with ``iptables-save``, traced for a later packet; then
the kernel's own counters after real connections through a ClusterIP.

Address plan (all inside throwaway namespaces):
    node netns   np0 10.244.1.1/24; default route via 169.254.0.2 on up0, a
                 gateway that never answers; node-local DNS 10.96.0.10 on lo
    pod-a netns  10.244.1.2  HTTP :8080, answers "pod-a"
    client netns 10.244.1.4
    default/web  ClusterIP 10.96.0.50: http 80/TCP -> 8080 (echo 9000/UDP -> 5353)
    client ports 41000.. for the connections looked at
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.apply import Backend, IptablesApplier
from netplane.proxy.iptables.proxier import Proxier
from netplane.proxy.iptables.trace import parse, trace_established
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
