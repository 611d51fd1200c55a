"""nftables-mode proxy in a real kernel: real traffic through ``table ip netplane``.

Address plan (all inside throwaway namespaces):
    node netns    np0 10.244.1.1/24 (pod bridge, fixed MAC), underlay eth0
                  192.168.56.11/24 (the node IP); default route via
                  169.254.0.2 on up0, a gateway that never answers (a packet
                  nobody handles vanishes, it does not bounce)
    pod-a netns   10.244.1.2  on node-1 (this node)   TCP :8080, UDP :5353
    pod-b netns   10.244.1.3  said to be on node-2     same servers
    client netns  10.244.1.4  a pod with no server
    ext netns     192.168.56.100 and .101 on the underlay, routes to the
                  service CIDR, the LB IP and the external IP via the node
    every server answers "<pod> <peer address>", so a test sees both where
    a packet landed and whether it was masqueraded.
    services      10.96.0.50 web (http 80/TCP -> 8080, echo 9000/UDP -> 5353)
                  NodePorts 30080/TCP, 30090/UDP; LB IP 192.168.56.200
                  (allowed from 192.168.56.100/32 only); external IP
                  192.168.56.201
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netplane.api.meta import Obj
from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.nftables.backend import NftablesBackend, SyncKind
from netplane.proxy.nftables.render import full_text, render
from tests.integration.topology import (
    EXT_CLIENT,
    EXT_IP,
    EXT_OTHER,
    LB_IP,
    NODE_IP,
    POD_GATEWAY,
    VIP,
    Topology,
    names,
    underlay_node,
    web_endpoints,
)
from tests.integration.topology import web_service as service

pytestmark = pytest.mark.root

NODE = "node-1"
PODS = {"pod-a": ("10.244.1.2", "node-1"), "pod-b": ("10.244.1.3", "node-2")}
CLIENT_IP = "10.244.1.4"
CONFIG = ProxyConfig()


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    with underlay_node(make_netns, pods=PODS, client_ip=CLIENT_IP) as t:
        yield t


def nft(t: Topology, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", t.node, "nft", *args],
                          capture_output=True, text=True, check=True)


@pytest.fixture
def backend(topo: Topology) -> Iterator[NftablesBackend]:
    b = NftablesBackend(netns=topo.node)
    b.ensure_plumbing()
    try:
        yield b
    finally:
        b.clean_up()
        b.close()


def endpoints(*pods: str, name: str = "web") -> Obj:
    return web_endpoints(PODS, *pods, name=name)


def sync(b: NftablesBackend, services: list[Obj], eps: list[Obj], *,
         full: bool = False) -> SyncKind:
    return b.sync(model.build(services, eps), CONFIG, node_name=NODE, node_ips=(NODE_IP,),
                  full=full).kind


def test_cluster_ip_balances_tcp_and_udp_keeping_the_pod_source(
        topo: Topology, backend: NftablesBackend) -> None:
    assert sync(backend, [service()], [endpoints("pod-a", "pod-b")]) == SyncKind.FULL
    tcp = topo.probe("tcp", VIP, 80, 30)
    assert set(tcp) == {f"pod-a {CLIENT_IP}", f"pod-b {CLIENT_IP}"}
    assert set(topo.probe("udp", VIP, 9000, 30)) == {f"pod-a {CLIENT_IP}", f"pod-b {CLIENT_IP}"}
    # From the node itself (outside the pod network), masqueraded to the bridge address.
    assert names(topo.probe("tcp", VIP, 80, 30, src=topo.node)) == {"pod-a", "pod-b"}


def test_node_port_from_outside_from_the_node_and_from_loopback(
        topo: Topology, backend: NftablesBackend) -> None:
    sync(backend, [service(type="NodePort")], [endpoints("pod-a", "pod-b")])
    outside = topo.probe("tcp", NODE_IP, 30080, 20, src=topo.ext)
    assert set(outside) == {f"pod-a {POD_GATEWAY}", f"pod-b {POD_GATEWAY}"}  # masqueraded
    assert names(topo.probe("udp", NODE_IP, 30090, 20, src=topo.ext)) == {"pod-a", "pod-b"}
    assert names(topo.probe("tcp", NODE_IP, 30080, 30, src=topo.node)) == {"pod-a", "pod-b"}
    assert names(topo.probe("tcp", "127.0.0.1", 30080, 30, src=topo.node)) == {"pod-a", "pod-b"}


def test_load_balancer_ip_honours_source_ranges_and_external_ips_answer(
        topo: Topology, backend: NftablesBackend) -> None:
    svc = service(type="LoadBalancer", loadBalancerSourceRanges=[f"{EXT_CLIENT}/32"],
                  externalIPs=[EXT_IP])
    sync(backend, [svc], [endpoints("pod-a", "pod-b")])
    allowed = topo.probe("tcp", LB_IP, 80, 30, src=topo.ext, src_ip=EXT_CLIENT)
    assert names(allowed) == {"pod-a", "pod-b"}
    assert topo.probe("tcp", LB_IP, 80, 1, src=topo.ext, src_ip=EXT_OTHER) == ["ERR:TIMEOUT"]
    assert names(topo.probe("tcp", EXT_IP, 80, 30, src=topo.ext, src_ip=EXT_OTHER)) \
        == {"pod-a", "pod-b"}


def test_client_ip_affinity_sticks_to_one_endpoint(
        topo: Topology, backend: NftablesBackend) -> None:
    svc = service(sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}})
    sync(backend, [svc], [endpoints("pod-a", "pod-b")])
    assert len(names(topo.probe("tcp", VIP, 80, 20))) == 1
    assert len(names(topo.probe("udp", VIP, 9000, 10, src=topo.pods["pod-b"]))) == 1
    # A full resync keeps the remembered clients (sets are not flushed).
    first = topo.probe("tcp", VIP, 80, 1)
    sync(backend, [svc], [endpoints("pod-a", "pod-b")], full=True)
    assert set(topo.probe("tcp", VIP, 80, 10)) == set(first)


def test_external_local_policy_keeps_the_client_ip_and_drops_without_local_endpoints(
        topo: Topology, backend: NftablesBackend) -> None:
    svc = service(type="NodePort", externalTrafficPolicy="Local")
    sync(backend, [svc], [endpoints("pod-a", "pod-b")])
    assert set(topo.probe("tcp", NODE_IP, 30080, 10, src=topo.ext)) == {f"pod-a {EXT_CLIENT}"}
    sync(backend, [svc], [endpoints("pod-b")])
    start = time.monotonic()
    assert topo.probe("tcp", NODE_IP, 30080, 1, src=topo.ext) == ["ERR:TIMEOUT"]
    assert time.monotonic() - start >= 1.0  # dropped, not refused
    # Pods are not external: they still reach the (remote) endpoint.
    assert names(topo.probe("tcp", NODE_IP, 30080, 3)) == {"pod-b"}


def test_internal_local_policy_uses_only_this_nodes_endpoints(
        topo: Topology, backend: NftablesBackend) -> None:
    svc = service(internalTrafficPolicy="Local")
    sync(backend, [svc], [endpoints("pod-a", "pod-b")])
    assert set(topo.probe("tcp", VIP, 80, 10)) == {f"pod-a {CLIENT_IP}"}
    sync(backend, [svc], [endpoints("pod-b")])
    assert topo.probe("tcp", VIP, 80, 1) == ["ERR:TIMEOUT"]


def test_hairpin_endpoint_reaches_itself_masqueraded(
        topo: Topology, backend: NftablesBackend) -> None:
    sync(backend, [service()], [endpoints("pod-a", "pod-b")])
    answers = set(topo.probe("tcp", VIP, 80, 30, src=topo.pods["pod-a"]))
    assert answers == {f"pod-a {POD_GATEWAY}", f"pod-b {PODS['pod-a'][0]}"}


def test_service_without_endpoints_refuses_at_once(
        topo: Topology, backend: NftablesBackend) -> None:
    sync(backend, [service(type="NodePort")], [endpoints()])
    # "At once" is the kind of failure, not a time: a rule that dropped the
    # packets would show as ERR:TIMEOUT; a refusal is a reject coming back.
    assert topo.probe("tcp", VIP, 80) == ["ERR:ECONNREFUSED"]
    assert topo.probe("udp", VIP, 9000) == ["ERR:ECONNREFUSED"]
    assert topo.probe("tcp", NODE_IP, 30080, src=topo.ext) == ["ERR:ECONNREFUSED"]
    assert topo.probe("tcp", VIP, 81) == ["ERR:ECONNREFUSED"]  # not a service port


def test_udp_client_moves_when_its_endpoint_goes(
        topo: Topology, backend: NftablesBackend) -> None:
    sync(backend, [service()], [endpoints("pod-a", "pod-b")])
    first = topo.probe("udp", VIP, 9000, 3, sport=40000)
    assert len(set(first)) == 1  # one conntrack entry: the same endpoint each time
    stuck = first[0].split()[0]
    other = "pod-b" if stuck == "pod-a" else "pod-a"
    sync(backend, [service()], [endpoints(other)])
    assert backend.last_sync is not None and backend.last_sync.conntrack_flows
    assert names(topo.probe("udp", VIP, 9000, 3, sport=40000)) == {other}


@pytest.mark.parametrize("vandalism", [("flush", "table", "ip", "netplane"),
                                       ("delete", "table", "ip", "netplane")])
def test_rules_come_back_after_someone_removes_them(
        topo: Topology, backend: NftablesBackend, vandalism: tuple[str, ...]) -> None:
    sync(backend, [service()], [endpoints("pod-a", "pod-b")])
    assert backend.kernel_matches()
    nft(topo, *vandalism)
    assert not backend.kernel_matches()
    assert sync(backend, [service()], [endpoints("pod-a", "pod-b")], full=True) == SyncKind.FULL
    assert backend.kernel_matches()
    assert names(topo.probe("tcp", VIP, 80, 30)) == {"pod-a", "pod-b"}


def test_partial_sync_changes_only_the_changed_elements(
        topo: Topology, backend: NftablesBackend) -> None:
    svcs = [service(), *(service(f"other-{i}", f"10.96.1.{i}") for i in range(3))]
    other_eps = [endpoints("pod-a", "pod-b", name=f"other-{i}") for i in range(3)]
    prev = model.build(svcs, [endpoints("pod-a", "pod-b"), *other_eps])
    backend.sync(prev, CONFIG, node_name=NODE, node_ips=(NODE_IP,))
    handles_before = nft(topo, "-a", "list", "chain", "ip", "netplane", "cluster-tcp-2").stdout
    cur = model.build(svcs, [endpoints("pod-b"), *other_eps])
    text = backend.render_partial(prev, cur, CONFIG, node_name=NODE, node_ips=(NODE_IP,))
    assert text and "10.96.1." not in text and "flush map" not in text
    assert "\t10.96.0.50 . 80 . 1" in text  # the second bucket goes
    assert "\t10.96.0.50 . 80 . 0 : 10.244.1.3 . 8080" in text  # the first leads to pod-b
    backend.apply(text)
    assert names(topo.probe("tcp", VIP, 80, 10)) == {"pod-b"}
    assert names(topo.probe("tcp", "10.96.1.1", 80, 20)) == {"pod-a", "pod-b"}
    # The shared chain was not rewritten: its rule handles are the same.
    after = nft(topo, "-a", "list", "chain", "ip", "netplane", "cluster-tcp-2").stdout
    assert after == handles_before
    assert backend.kernel_matches()
    # The periodic check passes, so the next sync of the same state does nothing.
    result = backend.sync(cur, CONFIG, node_name=NODE, node_ips=(NODE_IP,))
    assert result.kind == SyncKind.NONE


def test_clean_up_removes_our_table_only(topo: Topology) -> None:
    nft(topo, "add", "table", "ip", "someone-else")
    b = NftablesBackend(netns=topo.node)
    try:
        b.ensure_plumbing()
        sync(b, [service()], [endpoints("pod-a")])
        b.clean_up()
    finally:
        b.close()
    tables = nft(topo, "list", "tables").stdout
    assert "netplane" not in tables and "someone-else" in tables


def test_rendered_text_is_accepted_by_nft_check(topo: Topology) -> None:
    svcs = [service(type="LoadBalancer", externalTrafficPolicy="Local", externalIPs=[EXT_IP],
                    loadBalancerSourceRanges=["192.168.56.0/28"]),
            service("sticky", "10.96.0.60", type="NodePort", sessionAffinity="ClientIP")]
    svcs[1]["spec"]["ports"] = [{"name": "http", "port": 80, "nodePort": 30081}]
    eps = [endpoints("pod-a", "pod-b"), endpoints("pod-a", name="sticky")]
    text = full_text(render(model.build(svcs, eps), CONFIG, node_name=NODE,
                            node_ips=(NODE_IP,)))
    golden = Path(__file__).parent.parent / "unit" / "golden" / "proxy_nft.txt"
    for doc in (text, golden.read_text()):
        check = subprocess.run(["ip", "netns", "exec", topo.node, "nft", "-c", "-f", "-"],
                               input=doc, capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
