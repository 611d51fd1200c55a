"""Tracing packets through the nftables rules the kernel really holds.

Each test loads Services with ``NftablesBackend`` into a throwaway node
namespace, reads the table back with ``nft -j list table ip netplane``,
traces packets through that listing, and asserts where they land, with what
chance, masqueraded or not, or rejected/dropped. Some then send real traffic
to show the kernel agrees with the trace.

Address plan (all inside throwaway namespaces):
    node netns    np0 10.244.1.1/24 (pod bridge), eth0 192.168.56.11/24 (node IP)
                  on the underlay; node-local DNS 10.96.0.10 (told to the tracer
                  as one of the node's addresses)
    pods          pod-a 10.244.1.2 (node-1, this node), pod-b 10.244.1.3 and
                  pod-c 10.244.1.5 (said to be on node-2); TCP :8080, UDP :5353
    client pod    10.244.1.4
    ext netns     192.168.56.100 and .101 on the underlay
    services      10.96.0.50 web (http 80/TCP -> 8080, echo 9000/UDP -> 5353),
                  NodePorts 30080/TCP, 30090/UDP; LB IP 192.168.56.200 (allowed
                  from 192.168.56.100/32 only); external IP 192.168.56.201
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netplane.api.meta import Obj
from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.nftables.backend import NftablesBackend
from netplane.proxy.nftables.trace import trace_nft
from netplane.proxy.trace import Packet, Step, Verdict
from tests.integration.topology import (
    EXT_CLIENT,
    EXT_IP,
    EXT_OTHER,
    LB_IP,
    NODE_IP,
    VIP,
    Topology,
    names,
    underlay_node,
    web_endpoints,
)
from tests.integration.topology import web_service as service

pytestmark = pytest.mark.root

GOLDEN = Path(__file__).parent.parent / "unit" / "golden"
NODE, DNS_IP = "node-1", "10.96.0.10"
PODS = {"pod-a": ("10.244.1.2", "node-1"), "pod-b": ("10.244.1.3", "node-2"),
        "pod-c": ("10.244.1.5", "node-2")}
CLIENT_IP = "10.244.1.4"
CONFIG = ProxyConfig(notrack_dns_ips=(DNS_IP,))
LOCAL_IPS = (NODE_IP, DNS_IP)


def at(pod: str, port: int = 8080) -> str:
    return f"{PODS[pod][0]}:{port}"


def endpoints(*pods: str) -> Obj:
    return web_endpoints(PODS, *pods)


def nft_json(netns: str) -> Any:
    out = subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "ip",
                          "netplane"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


class Node:
    """Our table in a node namespace: load Services, read the kernel's listing back."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.backend = NftablesBackend(netns=netns)

    def load(self, svc: Obj, eps: Obj) -> None:
        self.backend.sync(model.build([svc], [eps]), CONFIG, node_name=NODE,
                          node_ips=(NODE_IP,))

    def trace(self, src: str, dst: str, dport: int, proto: str = "tcp", *,
              local: bool = False) -> list[Step]:
        return trace_nft(nft_json(self.netns), Packet(src, proto, dst, dport),
                         local_ips=LOCAL_IPS, local=local)


def node_fixture(make_netns: Callable[[str], str], netns: str | None = None) -> Iterator[Node]:
    node = Node(netns or make_netns("node"))
    try:
        node.backend.ensure_plumbing()
        yield node
    finally:
        node.backend.clean_up()
        node.backend.close()


@pytest.fixture
def bare(make_netns: Callable[[str], str]) -> Iterator[Node]:
    """A node namespace with our table and no traffic: for traces alone."""
    yield from node_fixture(make_netns)


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    with underlay_node(make_netns, pods=PODS, client_ip=CLIENT_IP) as t:
        yield t


@pytest.fixture
def live(make_netns: Callable[[str], str], topo: Topology) -> Iterator[Node]:
    """Our table in the node of ``topo``, where pods answer."""
    yield from node_fixture(make_netns, topo.node)


def landings(steps: list[Step]) -> dict[str | None, float]:
    out: dict[str | None, float] = {}
    for s in steps:
        if s.flow.verdict is Verdict.ACCEPT:
            out[s.flow.dnat] = round(out.get(s.flow.dnat, 0.0) + s.chance, 6)
    return out


def test_captured_listing_is_what_the_kernel_prints(make_netns: Callable[[str], str]) -> None:
    """The unit tests' fixture is the kernel's listing of the golden rendering."""
    ns = make_netns("golden")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(GOLDEN / "proxy_nft.txt")],
                   check=True)
    listing = nft_json(ns)
    fixture = GOLDEN / "nft_table_features.json"
    if os.environ.get("NETPLANE_UPDATE_GOLDEN"):
        fixture.write_text(json.dumps(listing, indent=1) + "\n")

    def objects(doc: Any) -> list[Any]:
        return [o for o in doc["nftables"] if "metainfo" not in o]

    assert objects(listing) == objects(json.loads(fixture.read_text())), \
        "stale fixture: rerun with NETPLANE_UPDATE_GOLDEN=1"


def test_cluster_ip_with_three_endpoints_as_traced_and_as_sent(
        topo: Topology, live: Node) -> None:
    live.load(service(), endpoints("pod-a", "pod-b", "pod-c"))
    steps = live.trace(CLIENT_IP, VIP, 80)
    third = round(1 / 3, 6)
    assert landings(steps) == {at("pod-a"): third, at("pod-b"): third, at("pod-c"): third}
    assert not any(s.flow.masquerade for s in steps)
    assert steps[2].path[-1] == ("cluster-tcp-3: dnat via map @service-endpoints-tcp"
                                 "[10.96.0.50 . 80 . 2] -> 10.244.1.5:8080 (p=0.333)")
    assert landings(live.trace(CLIENT_IP, VIP, 9000, "udp")) == {
        at("pod-a", 5353): third, at("pod-b", 5353): third, at("pod-c", 5353): third}
    # The kernel agrees: every endpoint answers, and sees the pod's own address.
    assert set(topo.probe("tcp", VIP, 80, 40)) == {f"{p} {CLIENT_IP}" for p in PODS}


@pytest.mark.parametrize(("src", "dst", "local"), [
    (EXT_CLIENT, NODE_IP, False), (NODE_IP, NODE_IP, True), ("127.0.0.1", "127.0.0.1", True)])
def test_node_port_from_outside_from_the_node_and_from_loopback(
        bare: Node, src: str, dst: str, local: bool) -> None:
    bare.load(service(type="NodePort"), endpoints("pod-a", "pod-b"))
    for dport, port, proto in ((30080, 8080, "tcp"), (30090, 5353, "udp")):
        steps = bare.trace(src, dst, dport, proto, local=local)
        assert landings(steps) == {at("pod-a", port): 0.5, at("pod-b", port): 0.5}
        assert all(s.flow.masquerade for s in steps)


def test_load_balancer_source_ranges_and_external_ips_as_traced_and_as_sent(
        topo: Topology, live: Node) -> None:
    live.load(service(type="LoadBalancer", loadBalancerSourceRanges=[f"{EXT_CLIENT}/32"],
                      externalIPs=[EXT_IP]), endpoints("pod-a", "pod-b"))
    assert landings(live.trace(EXT_CLIENT, LB_IP, 80)) == {at("pod-a"): 0.5, at("pod-b"): 0.5}
    [denied] = live.trace(EXT_OTHER, LB_IP, 80)
    assert denied.flow.verdict is Verdict.DROP and denied.path[-1].endswith("-> drop")
    assert landings(live.trace(EXT_OTHER, EXT_IP, 80)) == {at("pod-a"): 0.5, at("pod-b"): 0.5}
    # The kernel agrees.
    assert names(topo.probe("tcp", LB_IP, 80, 10, src=topo.ext, src_ip=EXT_CLIENT)) \
        == {"pod-a", "pod-b"}
    assert topo.probe("tcp", LB_IP, 80, 1, src=topo.ext, src_ip=EXT_OTHER) == ["ERR:TIMEOUT"]


def test_affinity_follows_the_clients_the_kernel_remembers(
        topo: Topology, live: Node) -> None:
    live.load(service(sessionAffinity="ClientIP",
                      sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}}),
              endpoints("pod-a", "pod-b"))
    assert landings(live.trace(CLIENT_IP, VIP, 80)) == {at("pod-a"): 0.5, at("pod-b"): 0.5}
    [answer] = topo.probe("tcp", VIP, 80)
    [step] = live.trace(CLIENT_IP, VIP, 80)  # now the client is in an affinity set
    assert (step.flow.dnat, step.chance) == (at(answer.split()[0]), 1.0)
    assert any(" in @affinity-" in hop for hop in step.path)


def test_local_traffic_policies(bare: Node) -> None:
    bare.load(service(type="NodePort", externalTrafficPolicy="Local"),
              endpoints("pod-a", "pod-b"))
    [outside] = bare.trace(EXT_CLIENT, NODE_IP, 30080)
    assert (outside.flow.dnat, outside.chance, outside.flow.masquerade) == (at("pod-a"), 1.0,
                                                                             False)
    assert landings(bare.trace(CLIENT_IP, NODE_IP, 30080)) == {at("pod-a"): 0.5,
                                                               at("pod-b"): 0.5}
    bare.load(service(type="NodePort", externalTrafficPolicy="Local"), endpoints("pod-b"))
    assert [s.flow.verdict for s in bare.trace(EXT_CLIENT, NODE_IP, 30080)] == [Verdict.DROP]
    bare.load(service(internalTrafficPolicy="Local"), endpoints("pod-a", "pod-b"))
    assert landings(bare.trace(CLIENT_IP, VIP, 80)) == {at("pod-a"): 1.0}
    bare.load(service(internalTrafficPolicy="Local"), endpoints("pod-b"))
    assert [s.flow.verdict for s in bare.trace(CLIENT_IP, VIP, 80)] == [Verdict.DROP]


def test_hairpin_endpoint_reaching_itself_is_masqueraded(bare: Node) -> None:
    bare.load(service(), endpoints("pod-a", "pod-b"))
    steps = bare.trace(PODS["pod-a"][0], VIP, 80)
    assert {s.flow.dnat: s.flow.masquerade for s in steps} == {at("pod-a"): True,
                                                               at("pod-b"): False}
    hairpin = next(s for s in steps if s.flow.masquerade)
    assert hairpin.path[-1] == ("nat-postrouting: ct status dnat, "
                                "10.244.1.2 . 10.244.1.2 in @hairpin -> masquerade")


def test_no_endpoints_reject_as_traced_and_as_sent(topo: Topology, live: Node) -> None:
    live.load(service(type="NodePort"), endpoints())
    for src, dst, dport, proto in ((CLIENT_IP, VIP, 80, "tcp"), (CLIENT_IP, VIP, 9000, "udp"),
                                   (EXT_CLIENT, NODE_IP, 30080, "tcp"),
                                   (CLIENT_IP, VIP, 81, "tcp")):
        [step] = live.trace(src, dst, dport, proto)
        assert step.flow.verdict is Verdict.REJECT, (dst, dport, proto)
    [step] = live.trace(CLIENT_IP, VIP, 80)
    assert step.path[-1] == "reject-chain: reject with tcp reset"
    # The kernel agrees: refused at once.
    assert topo.probe("tcp", VIP, 80) == ["ERR:ECONNREFUSED"]
    assert topo.probe("tcp", NODE_IP, 30080, src=topo.ext) == ["ERR:ECONNREFUSED"]


def test_node_local_dns_is_kept_out_of_conntrack(bare: Node) -> None:
    bare.load(service(), endpoints("pod-a"))
    for proto in ("udp", "tcp"):
        [step] = bare.trace(CLIENT_IP, DNS_IP, 53, proto)
        assert (step.flow.notrack, step.flow.to_node, step.flow.dnat) == (True, True, None)
        assert step.path == (f"raw-prerouting: ip daddr {DNS_IP}, meta l4proto {{ tcp, udp }}, "
                             "th dport 53 -> notrack",)
