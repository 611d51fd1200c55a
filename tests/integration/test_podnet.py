"""The pod network in the kernel: two nodes joined by an underlay link, each
with its bridge, a pod or two, and host-gw routes to the other.

Address plan (every address lives in namespaces this test creates):

    node-1  eth0 192.168.56.11/24  ──veth──  node-2  eth0 192.168.56.12/24
            np0  10.244.1.1/24                        np0  10.244.2.1/24
    pod a   eth0 10.244.1.2 (node-1)          pod b   eth0 10.244.2.2 (node-2)
    pod a2  eth0 10.244.1.3 (node-1)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netplane.net import netns as nsutil
from netplane.net.ipam import HostLocalIPAM
from netplane.net.podnet import NodeNetwork, host_veth_name
from netplane.net.routes import RTPROT_NETPLANE, owned_routes, sync_routes
from tests.integration.topology import curl, veth

pytestmark = pytest.mark.root

UNDERLAY = {1: "192.168.56.11", 2: "192.168.56.12"}
POD_CIDR = {1: "10.244.1.0/24", 2: "10.244.2.0/24"}

# ICMP echo over a raw socket: the test image has no ping binary.
PING = r"""
import os, socket, struct, sys, time
dst = sys.argv[1]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
ident = os.getpid() & 0xFFFF
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"netplane"
pkt = body[:2] + struct.pack("!H", csum(body)) + body[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
s.sendto(pkt, (dst, 0))
end = time.monotonic() + 2
try:
    while time.monotonic() < end:
        data, addr = s.recvfrom(2048)
        ihl = (data[0] & 0x0F) * 4
        kind, _, _, got_id, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if kind == 0 and got_id == ident and addr[0] == dst:
            sys.exit(0)
except socket.timeout:
    pass
sys.exit(1)
"""


def ping(netns: str, dst: str) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PING, dst],
                          capture_output=True, text=True, timeout=10, check=False)
    return proc.returncode == 0


@dataclass
class Node:
    netns: str
    net: NodeNetwork
    ipam: HostLocalIPAM


@dataclass
class Lab:
    nodes: dict[int, Node]
    pods: dict[str, tuple[str, str]]  # pod name -> (netns, ip)

    def add_pod(self, name: str, node: int, make_netns: Callable[[str], str]) -> str:
        pod_ns = make_netns(f"pod{name}")
        n = self.nodes[node]
        alloc = n.ipam.allocate(pod_ns)
        n.net.attach_pod(netns=pod_ns, ip=alloc.ip, prefixlen=alloc.prefixlen,
                         gateway=alloc.gateway)
        self.pods[name] = (pod_ns, alloc.ip)
        return alloc.ip


@pytest.fixture
def lab(make_netns: Callable[[str], str], tmp_path: Path) -> Lab:
    ns = {i: make_netns(f"node{i}") for i in (1, 2)}
    veth(ns[1], "eth0", ns[2], addresses=[f"{UNDERLAY[1]}/24"],
         peer_addresses=[f"{UNDERLAY[2]}/24"])
    nodes: dict[int, Node] = {}
    for i in (1, 2):
        net = NodeNetwork(pod_cidr=POD_CIDR[i], netns=ns[i])
        net.set_up()
        other = 3 - i
        sync_routes({POD_CIDR[other]: UNDERLAY[other]}, netns=ns[i])
        nodes[i] = Node(ns[i], net, HostLocalIPAM(POD_CIDR[i], tmp_path / f"ipam{i}"))
    result = Lab(nodes, {})
    result.add_pod("a", 1, make_netns)
    result.add_pod("b", 2, make_netns)
    return result


@pytest.fixture
def echo_in_pod_b(lab: Lab) -> Iterator[str]:
    pod_ns, ip = lab.pods["b"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POD_NAME": "b", "POD_IP": ip,
           "NODE_NAME": "node-2", "PORT": "8080"}
    proc = subprocess.Popen(["ip", "netns", "exec", pod_ns, sys.executable, "-m",
                             "netplane.node.runtime.echo"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield ip
    finally:
        proc.kill()
        proc.wait()


def test_pods_on_different_nodes_ping_by_pod_ip(lab: Lab) -> None:
    (ns_a, ip_a), (ns_b, ip_b) = lab.pods["a"], lab.pods["b"]
    assert ip_a.startswith("10.244.1.") and ip_b.startswith("10.244.2.")
    assert ping(ns_a, ip_b)
    assert ping(ns_b, ip_a)


def test_tcp_across_nodes_reaches_the_echo_server(lab: Lab, echo_in_pod_b: str) -> None:
    ns_a, ip_a = lab.pods["a"]
    deadline = time.monotonic() + 10
    while True:
        got = curl(ns_a, f"http://{echo_in_pod_b}:8080/hello")
        if got.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # Routed, not translated: the server sees pod A's own address.
    assert got.stdout == f"pod=b ip={echo_in_pod_b} node=node-2 client={ip_a}\n", got.stderr


def test_pods_on_the_same_node_reach_each_other(lab: Lab, make_netns: Callable[[str], str]
                                                ) -> None:
    ip_a2 = lab.add_pod("a2", 1, make_netns)
    assert ping(lab.pods["a"][0], ip_a2)


def test_node_side_wiring_is_what_pods_need(lab: Lab) -> None:
    node = lab.nodes[1]
    pod_ns = lab.pods["a"][0]
    veth = host_veth_name(pod_ns)
    assert len(veth) <= 15
    assert node.net.pod_ports() == [veth]
    link = json.loads(nsutil.run(["ip", "-d", "-j", "link", "show", "dev", veth],
                                 netns=node.netns))[0]
    assert link["linkinfo"]["info_slave_data"]["hairpin"] is True
    for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
        assert nsutil.run(["sysctl", "-n", key], netns=node.netns).strip() == "1"
    route = nsutil.run(["ip", "route", "show", "default"], netns=pod_ns)
    assert route.startswith("default via 10.244.1.1 dev eth0")


def test_set_up_and_attach_are_idempotent_and_detach_removes(lab: Lab) -> None:
    node = lab.nodes[1]
    pod_ns, ip = lab.pods["a"]
    node.net.set_up()
    assert node.net.attach_pod(netns=pod_ns, ip=ip, prefixlen=24, gateway="10.244.1.1") == (
        host_veth_name(pod_ns))
    addrs = json.loads(nsutil.run(["ip", "-j", "-4", "addr", "show", "dev", "eth0"],
                                  netns=pod_ns))[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [(ip, 24)]
    assert ping(lab.pods["b"][0], ip)
    node.net.detach_pod(netns=pod_ns)
    node.net.detach_pod(netns=pod_ns)
    assert node.net.pod_ports() == []
    assert nsutil.run(["ip", "-o", "link", "show", "dev", "eth0"], netns=pod_ns,
                      check=False) == ""


def test_routes_sync_replaces_idempotently_and_removes_only_our_stale_routes(lab: Lab
                                                                            ) -> None:
    ns = lab.nodes[1].netns
    want = {POD_CIDR[2]: UNDERLAY[2]}
    assert not sync_routes(want, netns=ns).changed
    # Someone else's route, and a stale one of ours (a node that left).
    nsutil.run(["ip", "route", "add", "10.244.8.0/24", "via", UNDERLAY[2]], netns=ns)
    nsutil.run(["ip", "route", "add", "10.244.9.0/24", "via", UNDERLAY[2],
                "proto", str(RTPROT_NETPLANE)], netns=ns)
    result = sync_routes({**want, "10.244.3.0/24": "192.168.56.13"}, netns=ns)
    assert (result.added, result.removed) == (["10.244.3.0/24"], ["10.244.9.0/24"])
    assert owned_routes(netns=ns) == {**want, "10.244.3.0/24": "192.168.56.13"}
    assert "10.244.8.0/24 via 192.168.56.12" in nsutil.run(["ip", "route"], netns=ns)
    # A node whose underlay address changed: replaced in place.
    result = sync_routes({**want, "10.244.3.0/24": "192.168.56.23"}, netns=ns)
    assert result.replaced == ["10.244.3.0/24"]
    assert owned_routes(netns=ns)["10.244.3.0/24"] == "192.168.56.23"
    assert ping(lab.pods["a"][0], lab.pods["b"][1])
    # Without our route node-1 has no path to node-2's pods.
    assert sync_routes({}, netns=ns).removed == ["10.244.2.0/24", "10.244.3.0/24"]
    assert not ping(lab.pods["a"][0], lab.pods["b"][1])
    assert "10.244.8.0/24" in nsutil.run(["ip", "route"], netns=ns)
