"""Every Service feature in iptables mode: golden rules, then packets traced through them.

The address plan is in ``test_proxy_iptables_cases`` (node-1 = 192.168.56.11,
local pods 10.244.1.2/.3, a pod on node-2 10.244.2.2, external clients
192.168.56.100 inside the LB source range and .200 outside).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.proxy.iptables.render import PLUMBING, endpoint_chain, render
from netplane.proxy.iptables.trace import Condition, Ruleset, parse, trace_packet
from netplane.proxy.model import Protocol, ServicePortName
from netplane.proxy.trace import Flow, Packet, Verdict
from tests.unit.test_proxy_iptables_cases import (
    ALLOWED,
    CLIENT_POD,
    CONFIG,
    DENIED,
    LOCAL_A,
    LOCAL_B,
    NODE,
    NODE_IP,
    REMOTE,
    endpoints,
    services,
)

GOLDEN = Path(__file__).parent / "golden" / "proxy_iptables_features.txt"
BOTH = {f"{LOCAL_A}:8080", f"{REMOTE}:8080"}
LOCAL_ONLY = {f"{LOCAL_A}:8080"}


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    return parse(render(services(), endpoints(), CONFIG, node_name=NODE)).with_jumps(PLUMBING)


def trace(rules: Ruleset, src: str, dst: str, dport: int, *, local: bool = False,
          recent: tuple[str, ...] = ()) -> list[Flow]:
    return trace_packet(rules, Packet(src, "tcp", dst, dport), local=local,
                        local_ips=(NODE_IP, "10.244.1.1"), recent=recent)


def landing(flows: list[Flow]) -> set[str | None]:
    assert all(f.verdict == Verdict.ACCEPT for f in flows), flows
    return {f.dnat for f in flows}


def masqueraded(flows: list[Flow]) -> set[bool]:
    return {f.masquerade for f in flows}


def test_render_matches_golden_after_sorting() -> None:
    got = parse(render(services(), endpoints(), CONFIG, node_name=NODE)).dump()
    assert got == GOLDEN.read_text()


@pytest.mark.parametrize("src", [ALLOWED, CLIENT_POD])
def test_node_port_from_elsewhere_reaches_every_endpoint_masqueraded(rules: Ruleset,
                                                                     src: str) -> None:
    got = trace(rules, src, NODE_IP, 30080)
    assert landing(got) == BOTH and masqueraded(got) == {True}


@pytest.mark.parametrize("dst", [NODE_IP, "127.0.0.1"])
def test_node_port_from_the_node_itself(rules: Ruleset, dst: str) -> None:
    src = "127.0.0.1" if dst.startswith("127.") else NODE_IP
    got = trace(rules, src, dst, 30080, local=True)
    assert landing(got) == BOTH and masqueraded(got) == {True}


def test_node_port_is_not_answered_on_other_addresses(rules: Ruleset) -> None:
    # Only node_ips and loopback dispatch to NodePorts; the pod gateway does not.
    assert trace(rules, CLIENT_POD, "10.244.1.1", 30080) == \
        [Flow(Verdict.ACCEPT, to_node=True)]


def test_load_balancer_source_ranges(rules: Ruleset) -> None:
    allowed = trace(rules, ALLOWED, "192.168.56.240", 80)
    assert landing(allowed) == BOTH and masqueraded(allowed) == {True}
    assert trace(rules, DENIED, "192.168.56.240", 80) == [Flow(Verdict.DROP)]
    # The NodePort of the same service has no source ranges, as in Kubernetes.
    assert landing(trace(rules, DENIED, NODE_IP, 30081)) == BOTH


def test_external_ip_is_dnated_and_masqueraded(rules: Ruleset) -> None:
    got = trace(rules, ALLOWED, "192.168.56.241", 80)
    assert landing(got) == BOTH and masqueraded(got) == {True}
    # Another port on the external IP is not ours.
    assert trace(rules, ALLOWED, "192.168.56.241", 81) == [Flow(Verdict.ACCEPT)]


def test_affinity_sends_a_known_client_back_to_its_endpoint(rules: Ruleset) -> None:
    spn = ServicePortName("default", "aff", "http", Protocol.TCP)
    remote = endpoint_chain(spn, f"{REMOTE}:8080")
    assert landing(trace(rules, CLIENT_POD, "10.96.0.62", 80)) == BOTH
    got = trace(rules, CLIENT_POD, "10.96.0.62", 80, recent=(remote,))
    assert landing(got) == {f"{REMOTE}:8080"} and masqueraded(got) == {False}
    # Each endpoint records the client in its own list when it is picked...
    (dnat,) = [r for r in rules.chain("nat", remote) if r.target == "DNAT"]
    assert dnat.option("--set") == remote
    # ...and the service chain sends a client found in that list, within the
    # affinity timeout, straight back to it.
    sticky = [r for c, chain in rules.tables["nat"].items() if c.startswith("NP-SVC-")
              for r in chain if Condition("recent", remote) in r.conditions]
    assert [r.target for r in sticky] == [remote]
    assert "--rcheck --seconds 60 --reap" in sticky[0].text


@pytest.mark.parametrize("dst,dport", [("192.168.56.243", 80), (NODE_IP, 30083)])
def test_external_policy_local_keeps_the_client_address(rules: Ruleset, dst: str,
                                                        dport: int) -> None:
    got = trace(rules, ALLOWED, dst, dport)
    assert landing(got) == LOCAL_ONLY and masqueraded(got) == {False}


def test_external_policy_local_does_not_apply_to_pods_or_the_node(rules: Ruleset) -> None:
    pod = trace(rules, CLIENT_POD, "192.168.56.243", 80)
    assert landing(pod) == BOTH and masqueraded(pod) == {False}
    node = trace(rules, NODE_IP, NODE_IP, 30083, local=True)
    assert landing(node) == BOTH and masqueraded(node) == {True}


def test_external_policy_local_without_local_endpoints_drops(rules: Ruleset) -> None:
    assert trace(rules, ALLOWED, NODE_IP, 30084) == [Flow(Verdict.DROP, to_node=True)]
    assert landing(trace(rules, CLIENT_POD, NODE_IP, 30084)) == {f"{REMOTE}:8080"}
    # Inside the cluster the ClusterIP still reaches the remote endpoint.
    assert landing(trace(rules, CLIENT_POD, "10.96.0.64", 80)) == {f"{REMOTE}:8080"}


def test_health_check_node_port_is_let_in(rules: Ruleset) -> None:
    # On a node whose INPUT ends in DROP, only our accept lets the probe in.
    closed = rules.restore("*filter\n-A INPUT -j DROP\nCOMMIT\n")
    assert trace(closed, ALLOWED, NODE_IP, 32000) == [Flow(Verdict.ACCEPT, to_node=True)]
    assert trace(closed, ALLOWED, NODE_IP, 32001) == [Flow(Verdict.DROP, to_node=True)]


def test_internal_policy_local(rules: Ruleset) -> None:
    got = trace(rules, CLIENT_POD, "10.96.0.65", 80)
    assert landing(got) == LOCAL_ONLY and masqueraded(got) == {False}
    assert trace(rules, CLIENT_POD, "10.96.0.66", 80) == [Flow(Verdict.DROP)]


def test_terminating_endpoints_serve_when_nothing_is_ready(rules: Ruleset) -> None:
    # The serving terminating pod, never the one that stopped serving.
    assert landing(trace(rules, CLIENT_POD, "10.96.0.67", 80)) == {f"{LOCAL_B}:8080"}


def test_no_endpoints_rejects_cluster_ip_and_node_port(rules: Ruleset) -> None:
    assert trace(rules, CLIENT_POD, "10.96.0.68", 80) == [Flow(Verdict.REJECT)]
    assert trace(rules, CLIENT_POD, "10.96.0.68", 80, local=True) == [Flow(Verdict.REJECT)]
    assert trace(rules, ALLOWED, NODE_IP, 30088) == [Flow(Verdict.REJECT, to_node=True)]


def test_hairpin_is_masqueraded_and_pod_traffic_is_not(rules: Ruleset) -> None:
    got = {f.dnat: f.masquerade for f in trace(rules, LOCAL_A, "10.96.0.60", 80)}
    assert got == {f"{LOCAL_A}:8080": True, f"{REMOTE}:8080": False}


def test_off_cluster_source_to_cluster_ip_is_masqueraded(rules: Ruleset) -> None:
    got = trace(rules, ALLOWED, "10.96.0.60", 80)
    assert landing(got) == BOTH and masqueraded(got) == {True}


def test_outside_hosts_cannot_reach_loopback_services(rules: Ruleset) -> None:
    # route_localnet is on for NodePorts; the localnet guard keeps the rest out.
    assert trace(rules, ALLOWED, "127.0.0.1", 8080) == [Flow(Verdict.DROP, to_node=True)]
    assert landing(trace(rules, ALLOWED, "127.0.0.1", 30080)) == BOTH


def test_no_node_ips_means_every_local_address() -> None:
    from dataclasses import replace
    rs = parse(render(services(), endpoints(), replace(CONFIG, node_ips=()),
                      node_name=NODE)).with_jumps(PLUMBING)
    assert landing(trace(rules=rs, src=CLIENT_POD, dst="10.244.1.1", dport=30080)) == BOTH
