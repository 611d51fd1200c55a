"""Host ports in the kernel: a pod's ``hostPort`` answers on the node's
address from outside, on 127.0.0.1 from the node itself and from the pod
through its own node (hairpin), over TCP and UDP; the client's address is
kept from outside and masqueraded where the reply would otherwise miss
the node. Plan: ``tests.integration.topology.underlay_node`` (node
192.168.56.11, outside host 192.168.56.100, pod-a 10.244.1.2)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from netplane.node.hostports import DNAT_CHAIN, MASQ_CHAIN, HostPortApplier, Mapping
from tests.integration.topology import (
    EXT_CLIENT,
    NODE_IP,
    POD_GATEWAY,
    SERVER_TCP_PORT,
    SERVER_UDP_PORT,
    Topology,
    underlay_node,
)

pytestmark = pytest.mark.root

POD_A = "10.244.1.2"
TCP = Mapping("tcp", 18080, "", POD_A, SERVER_TCP_PORT, "default/pod-a")
UDP = Mapping("udp", 15353, "", POD_A, SERVER_UDP_PORT, "default/pod-a")


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    with underlay_node(make_netns, pods={"pod-a": (POD_A, "node-1")},
                       client_ip="10.244.1.4") as t:
        yield t


@pytest.fixture
def applier(topo: Topology) -> Iterator[HostPortApplier]:
    a = HostPortApplier(netns=topo.node)
    a.set_up()
    try:
        yield a
    finally:
        a.clean_up()


def saved(t: Topology) -> str:
    return subprocess.run(["ip", "netns", "exec", t.node, "iptables-save", "-t", "nat"],
                          capture_output=True, text=True, check=True).stdout


def test_a_host_port_answers_from_outside_with_the_clients_address(
        topo: Topology, applier: HostPortApplier) -> None:
    applier.apply([TCP, UDP])
    assert topo.probe("tcp", NODE_IP, 18080, src=topo.ext) == [f"pod-a {EXT_CLIENT}"]
    assert topo.probe("udp", NODE_IP, 15353, src=topo.ext) == [f"pod-a {EXT_CLIENT}"]
    # Another pod on the node reaches it by the node's address too.
    assert topo.probe("tcp", NODE_IP, 18080) == ["pod-a 10.244.1.4"]


def test_the_node_itself_and_the_pod_through_its_node_are_masqueraded(
        topo: Topology, applier: HostPortApplier) -> None:
    applier.apply([TCP])
    (from_node,) = topo.probe("tcp", "127.0.0.1", 18080, src=topo.node)
    assert from_node == f"pod-a {POD_GATEWAY}"
    (hairpin,) = topo.probe("tcp", NODE_IP, 18080, src=topo.pods["pod-a"])
    assert hairpin == f"pod-a {POD_GATEWAY}"


def test_a_port_given_up_stops_answering_and_clean_up_leaves_nothing(
        topo: Topology, applier: HostPortApplier) -> None:
    applier.apply([TCP, UDP])
    applier.apply([UDP])
    assert topo.probe("tcp", NODE_IP, 18080, src=topo.ext)[0].startswith("ERR:")
    assert topo.probe("udp", NODE_IP, 15353, src=topo.ext) == [f"pod-a {EXT_CLIENT}"]
    # Applying again keeps each jump once.
    applier.apply([UDP])
    assert saved(topo).count(f"-j {DNAT_CHAIN}") == 2
    applier.clean_up()
    assert DNAT_CHAIN not in saved(topo) and MASQ_CHAIN not in saved(topo)
