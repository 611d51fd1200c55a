"""IPVS-mode proxy in a real kernel, inside throwaway namespaces.

Address plan (the same topology as the iptables-mode tests):
    node netns   br0 10.244.1.1/24, a silent default route via up0,
                 node-local DNS 10.96.0.10 on lo, underlay 192.168.56.11 on up0
    pod-a netns  10.244.1.2  HTTP :8080, UDP echo :5353, answers "pod-a"
    pod-b netns  10.244.1.3  same, answers "pod-b"
    client netns 10.244.1.4
    default/web    ClusterIP 10.96.0.50: http 80/TCP -> 8080, echo 9000/UDP -> 5353
    default/empty  ClusterIP 10.96.0.51: 80/TCP, 9000/UDP, no endpoints

Without kernel IPVS (no ip_vs module) the ipsets, iptables rules, bound
addresses and rejects are still real and tested here, with an in-memory
IPVS table standing in; the tests that need packets balanced by IPVS skip
with the reason ``available()`` gives.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.ipvs.backend import LO_LABEL, IPVSBackend, available
from netplane.proxy.ipvs.kernel import MemoryIPVS
from netplane.proxy.model import EndpointInfo, Protocol, ServicePortInfo
from tests.integration.topology import (
    POD_GATEWAY,
    Reply,
    ServerStyle,
    Topology,
    names,
    sh,
    single_node,
)

pytestmark = pytest.mark.root

VIP, EMPTY_VIP, NODE_IP, DNS_IP = "10.96.0.50", "10.96.0.51", "192.168.56.11", "10.96.0.10"
PODS = {"pod-a": "10.244.1.2", "pod-b": "10.244.1.3"}
CLIENT_IP = "10.244.1.4"
CONFIG = ProxyConfig(notrack_dns_ips=(DNS_IP,))


def _port(name: str, ip: str, port: int, proto: Protocol, **kw: object) -> ServicePortInfo:
    return ServicePortInfo("default", name, proto.lower(), ip, port, proto,
                           **kw)  # type: ignore[arg-type]


def service_map(*pods: str, affinity: int = 0) -> model.ServiceMap:
    http = _port("web", VIP, 80, Protocol.TCP, affinity_seconds=affinity)
    echo = _port("web", VIP, 9000, Protocol.UDP, affinity_seconds=affinity)
    items = [(http, [EndpointInfo(PODS[p], 8080, node_name="node-1") for p in pods]),
             (echo, [EndpointInfo(PODS[p], 5353, node_name="node-1") for p in pods]),
             (_port("empty", EMPTY_VIP, 80, Protocol.TCP), []),
             (_port("empty", EMPTY_VIP, 9000, Protocol.UDP), [])]
    return {info.key: (info, eps) for info, eps in items}


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    with single_node(make_netns, pods=PODS, client_ip=CLIENT_IP, bridge="br0",
                     node_local_ip=DNS_IP, uplink_address=f"{NODE_IP}/24") as t:
        yield t


def kernel_backend(t: Topology) -> IPVSBackend:
    """The real thing: IPVS over netlink in the node netns; skips without IPVS."""
    ok, why = available()
    if not ok:
        pytest.skip(why)
    return IPVSBackend(netns=t.node)


def table_backend(t: Topology) -> IPVSBackend:
    """Real ipsets, rules and addresses; IPVS tables in memory."""
    return IPVSBackend(netns=t.node, handle=MemoryIPVS())


def sync(b: IPVSBackend, m: model.ServiceMap, *, full: bool = False) -> None:
    b.sync(m, CONFIG, "node-1", [NODE_IP], full=full)


# -- real without IPVS: sets, rules, addresses, rejects ----------------------------------


def test_ipsets_rules_and_addresses_land_in_the_kernel_and_clean_up(topo: Topology) -> None:
    b = table_backend(topo)
    sync(b, service_map("pod-a", "pod-b"))
    members = sh("ipset", "list", "NP-CLUSTER-IP", netns=topo.node)
    assert f"{VIP},tcp:80" in members and f"{VIP},udp:9000" in members
    assert f"{EMPTY_VIP},tcp:80" in sh("ipset", "list", "NP-NO-ENDPOINTS", netns=topo.node)
    assert f"{PODS['pod-a']},tcp:8080,{PODS['pod-a']}" in sh(
        "ipset", "list", "NP-LOOP-BACK", netns=topo.node)
    saved = sh("iptables-save", netns=topo.node)
    assert "-A INPUT -m conntrack --ctstate NEW" in saved and "-j NP-IPVS-FILTER" in saved
    assert saved.count("\n-A NP-") == b.rule_count
    bound = sh("ip", "-o", "-4", "addr", "show", "dev", b.interface, netns=topo.node)
    assert f"{VIP}/32" in bound and f"{EMPTY_VIP}/32" in bound
    assert b.kernel_matches()
    b.clean_up()
    assert "NP-" not in sh("ipset", "list", "-n", netns=topo.node)
    assert "NP-" not in sh("iptables-save", netns=topo.node)
    left = sh("ip", "-o", "-4", "addr", "show", "dev", "lo", netns=topo.node)
    assert VIP not in left and LO_LABEL not in left
    assert DNS_IP in left  # the node-local DNS address is not ours to remove


def test_drift_is_noticed_and_a_full_sync_repairs_it(topo: Topology) -> None:
    b = table_backend(topo)
    m = service_map("pod-a")
    sync(b, m)
    sh("ipset", "flush", "NP-CLUSTER-IP", netns=topo.node)
    assert not b.kernel_matches()
    sync(b, m, full=True)
    assert b.kernel_matches()
    sh("iptables", "-t", "filter", "-F", "INPUT", netns=topo.node)
    assert not b.kernel_matches()
    sync(b, m, full=True)
    assert b.kernel_matches()
    sh("ip", "addr", "del", f"{VIP}/32", "dev", b.interface, netns=topo.node)
    assert not b.kernel_matches()
    sync(b, m, full=True)
    assert b.kernel_matches()
    b.clean_up()


def test_service_without_endpoints_refuses_at_once(topo: Topology) -> None:
    # A node process on the same ports proves the refusal is our rule: a VIP
    # bound locally would otherwise reach it.
    topo.serve(topo.node, "node", udp_port=9000, tcp_port=80)
    b = table_backend(topo)
    sync(b, service_map("pod-a"))
    # Refused, not dropped: a dropped probe reports ERR:TIMEOUT.
    assert topo.probe("tcp", EMPTY_VIP, 80, 1) == ["ERR:ECONNREFUSED"]
    assert topo.probe("udp", EMPTY_VIP, 9000, 1) == ["ERR:ECONNREFUSED"]
    # Same ports on a VIP that has endpoints pass the filter (and, with no
    # IPVS service behind it here, reach the node process).
    assert topo.probe("tcp", VIP, 80, 1) == ["node"]
    b.clean_up()


def test_other_ports_of_a_service_address_are_refused(topo: Topology) -> None:
    # Something on the node listening on every address must not answer on a VIP.
    topo.serve(topo.node, "node", udp_port=2053, tcp_port=2222)
    b = table_backend(topo)
    sync(b, service_map("pod-a"))
    assert topo.probe("tcp", VIP, 2222, 1) == ["ERR:ECONNREFUSED"]
    assert topo.probe("tcp", "10.244.1.1", 2222, 1) == ["node"]  # its own address still works
    b.clean_up()
    assert topo.probe("tcp", "10.244.1.1", 2222, 1) == ["node"]


# -- need kernel IPVS ----------------------------------------------------------------------


@pytest.fixture
def peer_topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    """As ``topo``, but every server also says which client address it saw."""
    style = ServerStyle(tcp=Reply.NAME_AND_PEER, udp=Reply.NAME_AND_PEER)
    with single_node(make_netns, pods=PODS, client_ip=CLIENT_IP, bridge="br0",
                     node_local_ip=DNS_IP, uplink_address=f"{NODE_IP}/24", style=style) as t:
        yield t


def test_cluster_ip_balances_tcp_and_udp_through_ipvs(peer_topo: Topology) -> None:
    topo = peer_topo
    b = kernel_backend(topo)
    try:
        sync(b, service_map("pod-a", "pod-b"))
        assert "TCP 10.96.0.50:80 rr" in b.describe()
        # Pod to service keeps the pod's address...
        tcp = topo.probe("tcp", VIP, 80, 20)
        udp = topo.probe("udp", VIP, 9000, 20)
        assert names(tcp) == names(udp) == {"pod-a", "pod-b"}
        assert {a.split()[1] for a in tcp + udp} == {CLIENT_IP}
        # ...the node itself is masqueraded: its packets leave with the VIP as
        # their source, and the pods see the node's bridge address instead.
        from_node = topo.probe("tcp", VIP, 80, 4, src=topo.node)
        assert names(from_node) <= {"pod-a", "pod-b"}
        assert {a.split()[1] for a in from_node} == {POD_GATEWAY}
    finally:
        b.clean_up()


def test_session_affinity_sticks_to_one_pod(topo: Topology) -> None:
    b = kernel_backend(topo)
    try:
        sync(b, service_map("pod-a", "pod-b", affinity=600))
        assert len(set(topo.probe("tcp", VIP, 80, 10))) == 1
    finally:
        b.clean_up()


def test_removed_endpoint_stops_getting_traffic_and_udp_conntrack_is_cleared(
        topo: Topology) -> None:
    b = kernel_backend(topo)
    try:
        sync(b, service_map("pod-a", "pod-b"))
        topo.probe("udp", VIP, 9000, 10)
        sync(b, service_map("pod-b"))
        assert set(topo.probe("tcp", VIP, 80, 10)) == {"pod-b"}
        assert set(topo.probe("udp", VIP, 9000, 10)) == {"pod-b"}
        tracked = subprocess.run(["ip", "netns", "exec", topo.node, "conntrack", "-L", "-p",
                                  "udp", "--orig-dst", VIP], capture_output=True, text=True,
                                 check=False).stdout
        assert PODS["pod-a"] not in tracked
    finally:
        b.clean_up()


def test_hairpin_pod_reaches_itself_through_its_service(topo: Topology) -> None:
    b = kernel_backend(topo)
    try:
        sync(b, service_map("pod-a", "pod-b"))
        assert set(topo.probe("tcp", VIP, 80, 20, src=topo.pods["pod-a"])) == {"pod-a", "pod-b"}
    finally:
        b.clean_up()
