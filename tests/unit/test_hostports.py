"""Which host ports a node maps, and the rules it writes for them."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.node.hostports import COMMENT, JUMPS, Mapping, mappings, render
from netplane.proxy.iptables.trace import parse, trace_steps
from netplane.proxy.trace import Packet


def pod(name: str, *, node: str = "node-1", ip: str = "10.244.1.2", phase: str = "Running",
        created: str = "2026-01-01T00:00:00Z", host_network: bool = False,
        ports: list[Obj] | None = None) -> Obj:
    return {"metadata": {"namespace": "default", "name": name, "uid": name,
                         "creationTimestamp": created},
            "spec": {"nodeName": node, "hostNetwork": host_network, "containers": [
                {"name": "c", "ports": ports if ports is not None else [
                    {"containerPort": 8080, "hostPort": 18080}]}]},
            "status": {"phase": phase, "podIP": ip}}


def test_only_running_pods_of_this_node_with_a_pod_ip_and_a_host_port() -> None:
    pods = [pod("a"), pod("other-node", node="node-2"), pod("done", phase="Succeeded"),
            pod("no-ip", ip=""), pod("host", host_network=True),
            pod("v6", ip="fd00::2"), pod("plain", ports=[{"containerPort": 80}])]
    assert mappings(pods, "node-1") == [Mapping("tcp", 18080, "", "10.244.1.2", 8080,
                                                "default/a")]


def test_protocol_and_host_ip_are_kept_and_any_address_means_every_one() -> None:
    p = pod("a", ports=[{"containerPort": 53, "hostPort": 1053, "protocol": "UDP",
                         "hostIP": "192.168.56.11"},
                        {"containerPort": 80, "hostPort": 8000, "hostIP": "0.0.0.0"}])
    assert mappings([p], "node-1") == [
        Mapping("tcp", 8000, "", "10.244.1.2", 80, "default/a"),
        Mapping("udp", 1053, "192.168.56.11", "10.244.1.2", 53, "default/a")]


def test_a_port_claimed_twice_stays_with_the_older_pod() -> None:
    young = pod("young", ip="10.244.1.3", created="2026-01-02T00:00:00Z")
    old = pod("old", created="2026-01-01T00:00:00Z")
    (m,) = mappings([young, old], "node-1")
    assert m.pod == "default/old"


def test_rules_dnat_the_port_and_masquerade_hairpin_and_localhost() -> None:
    text = render([Mapping("udp", 1053, "192.168.56.11", "10.244.1.2", 53, "default/a")])
    assert text.splitlines() == [
        "*nat", ":NPHOSTPORT-DNAT - [0:0]", ":NPHOSTPORT-MASQ - [0:0]",
        '-A NPHOSTPORT-DNAT -d 192.168.56.11/32 -p udp -m udp --dport 1053 -m comment '
        '--comment "default/a hostPort 1053/udp" -j DNAT --to-destination 10.244.1.2:53',
        '-A NPHOSTPORT-MASQ -s 10.244.1.2/32 -d 10.244.1.2/32 -p udp -m udp --dport 53 '
        '-m comment --comment "default/a hostPort 1053/udp hairpin" -j MASQUERADE',
        '-A NPHOSTPORT-MASQ -s 127.0.0.0/8 -d 10.244.1.2/32 -p udp -m udp --dport 53 '
        '-m comment --comment "default/a hostPort 1053/udp localhost" -j MASQUERADE',
        "COMMIT"]
    assert render([]).splitlines() == ["*nat", ":NPHOSTPORT-DNAT - [0:0]",
                                       ":NPHOSTPORT-MASQ - [0:0]", "COMMIT"]


def test_the_iptables_trace_follows_a_host_port_to_its_pod() -> None:
    nat = render([Mapping("tcp", 18080, "", "10.244.1.2", 8080, "default/a")]).splitlines()
    jumps = [f"-A {base} {' '.join(match)} -m comment --comment \"{COMMENT}\" -j {chain}"
             for base, chain, match in JUMPS]
    saved = [nat[0], ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]", *nat[1:-1], *jumps, "COMMIT",
             "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             "COMMIT"]
    rules = parse("\n".join(saved) + "\n")
    (outside,) = trace_steps(rules, Packet("10.244.2.5", "tcp", "192.168.56.11", 18080),
                             local_ips=["192.168.56.11"])
    assert (outside.flow.dnat, outside.flow.masquerade) == ("10.244.1.2:8080", False)
    assert outside.path == ("nat/PREROUTING -> NPHOSTPORT-DNAT", "nat/NPHOSTPORT-DNAT -> DNAT")
    (node,) = trace_steps(rules, Packet("127.0.0.1", "tcp", "127.0.0.1", 18080), local=True,
                          local_ips=["192.168.56.11"])
    assert (node.flow.dnat, node.flow.masquerade) == ("10.244.1.2:8080", True)
