"""iptables rendering: golden text, naming, and packets traced through the rules.

Address plan:
    pod network (cluster CIDR)   10.244.0.0/16
    web pods (ready)             10.244.1.2, 10.244.1.3   (http 8080/TCP, dns 5353/UDP)
    web pod (not ready)          10.244.2.9
    client pod                   10.244.1.4
    off-cluster source           192.168.56.11 (a node's underlay address)
    default/web                  10.96.0.50   http 80/TCP, dns 53/UDP
    default/lonely (no endpoints) 10.96.0.51  80/TCP
    default/headless             None         (nothing rendered)
    default/ext                  ExternalName (nothing rendered)
    node-local DNS               10.96.0.10
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.api.meta import Obj
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.render import (
    MAX_CHAIN_LEN,
    PLUMBING,
    Table,
    declared_chains,
    endpoint_chain,
    probability,
    render,
    rule_count,
    service_chain,
    with_stale_chains,
)
from netplane.proxy.iptables.trace import ParseError, Ruleset, parse, trace_packet
from netplane.proxy.model import Protocol, ServicePortName
from netplane.proxy.trace import Flow, Packet, Verdict

GOLDEN = Path(__file__).parent / "golden" / "proxy_iptables.txt"
CONFIG = ProxyConfig(notrack_dns_ips=("10.96.0.10",))
WEB_HTTP = {"10.244.1.2:8080", "10.244.1.3:8080"}
WEB_DNS = {"10.244.1.2:5353", "10.244.1.3:5353"}


def _svc(name: str, cluster_ip: str, ports: list[Obj], **spec: object) -> Obj:
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}}


def services() -> list[Obj]:
    return [
        _svc("web", "10.96.0.50", [{"name": "http", "port": 80, "protocol": "TCP"},
                                   {"name": "dns", "port": 53, "protocol": "UDP"}]),
        _svc("lonely", "10.96.0.51", [{"port": 80}]),
        _svc("headless", "None", [{"port": 80}]),
        _svc("ext", "", [], type="ExternalName", externalName="example.org"),
    ]


def endpoints() -> list[Obj]:
    return [
        {"metadata": {"namespace": "default", "name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.244.1.2", "nodeName": "node-1"},
                          {"ip": "10.244.1.3", "nodeName": "node-1"}],
            "notReadyAddresses": [{"ip": "10.244.2.9", "nodeName": "node-2"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
        }]},
        {"metadata": {"namespace": "default", "name": "headless"}, "subsets": [{
            "addresses": [{"ip": "10.244.1.7"}], "ports": [{"port": 80}]}]},
    ]


@pytest.fixture
def rules() -> Ruleset:
    return parse(render(services(), endpoints(), CONFIG)).with_jumps(PLUMBING)


def flows(rules: Ruleset, src: str, proto: str, dst: str, dport: int,
          *, local: bool = False) -> list[Flow]:
    return trace_packet(rules, Packet(src, proto, dst, dport), local=local)


def test_render_matches_golden_after_sorting() -> None:
    got = parse(render(services(), endpoints(), CONFIG)).dump()
    assert got == GOLDEN.read_text()


def test_render_is_deterministic_whatever_the_input_order() -> None:
    a = render(services(), endpoints(), CONFIG)
    b = render(list(reversed(services())), list(reversed(endpoints())), CONFIG)
    assert a == b


def test_chain_names_are_kube_proxy_hashes_within_the_length_limit() -> None:
    spn = ServicePortName("ns1", "svc1", "p80", Protocol.TCP)
    # The same hash kube-proxy gives this service port and endpoint.
    assert service_chain(spn) == "NP-SVC-XPGD46QRK7WJZT7O"
    assert endpoint_chain(spn, "10.180.0.1:80") == "NP-SEP-SXIVWICOYRO3J4NJ"
    chains = set().union(*declared_chains(render(services(), endpoints(), CONFIG)).values())
    assert chains and all(len(c) <= MAX_CHAIN_LEN for c in chains)


def test_probability_is_spelled_like_kube_proxy() -> None:
    assert [probability(n) for n in (3, 2)] == ["0.3333333333", "0.5000000000"]


def test_every_rule_carries_a_comment() -> None:
    text = render(services(), endpoints(), CONFIG)
    rules = [line for line in text.splitlines() if line.startswith("-A ")]
    assert rules and all(" -m comment --comment " in r for r in rules)
    assert rule_count(text) == len(rules)


def test_pod_to_service_lands_on_a_ready_endpoint_without_masquerade(rules: Ruleset) -> None:
    got = flows(rules, "10.244.1.4", "tcp", "10.96.0.50", 80)
    assert {f.dnat for f in got} == WEB_HTTP  # never the not-ready 10.244.2.9
    assert all(f.verdict == Verdict.ACCEPT and not f.masquerade for f in got)


def test_udp_port_of_a_multi_port_service_has_its_own_endpoints(rules: Ruleset) -> None:
    got = flows(rules, "10.244.1.4", "udp", "10.96.0.50", 53)
    assert {f.dnat for f in got} == WEB_DNS
    # The TCP port's rules do not catch UDP to port 80.
    assert flows(rules, "10.244.1.4", "udp", "10.96.0.50", 80) == [Flow(Verdict.ACCEPT)]


def test_off_cluster_source_is_masqueraded(rules: Ruleset) -> None:
    got = flows(rules, "192.168.56.11", "tcp", "10.96.0.50", 80)
    assert {f.dnat for f in got} == WEB_HTTP
    assert all(f.masquerade for f in got)


def test_node_itself_reaching_service_is_masqueraded(rules: Ruleset) -> None:
    got = flows(rules, "192.168.56.11", "tcp", "10.96.0.50", 80, local=True)
    assert {f.dnat for f in got} == WEB_HTTP and all(f.masquerade for f in got)


def test_hairpin_endpoint_reaching_itself_is_masqueraded(rules: Ruleset) -> None:
    got = {f.dnat: f.masquerade for f in flows(rules, "10.244.1.2", "tcp", "10.96.0.50", 80)}
    assert got == {"10.244.1.2:8080": True, "10.244.1.3:8080": False}


def test_service_without_endpoints_is_rejected_in_filter(rules: Ruleset) -> None:
    assert flows(rules, "10.244.1.4", "tcp", "10.96.0.51", 80) == [Flow(Verdict.REJECT)]
    assert flows(rules, "10.244.1.4", "tcp", "10.96.0.51", 80, local=True) == \
        [Flow(Verdict.REJECT)]


def test_headless_service_gets_no_rules(rules: Ruleset) -> None:
    text = render(services(), endpoints(), CONFIG)
    assert "default/headless" not in text and "10.244.1.7" not in text


def test_node_local_dns_skips_conntrack_and_nat(rules: Ruleset) -> None:
    for proto in ("udp", "tcp"):
        assert flows(rules, "10.244.1.4", proto, "10.96.0.10", 53) == \
            [Flow(Verdict.ACCEPT, notrack=True)]
    reply = trace_packet(rules, Packet("10.96.0.10", "udp", "10.244.1.4", 40000, sport=53),
                         local=True)
    assert reply == [Flow(Verdict.ACCEPT, notrack=True)]


def test_no_endpoints_anywhere_renders_only_fixed_chains() -> None:
    text = render([], [], ProxyConfig())
    assert declared_chains(text) == {
        Table.RAW: {"NP-NOTRACK"},
        Table.NAT: {"NP-SERVICES", "NP-NODEPORTS", "NP-POSTROUTING", "NP-MARK-MASQ"},
        Table.FILTER: {"NP-SERVICES", "NP-EXTERNAL-SERVICES", "NP-NODEPORTS",
                       "NP-PROXY-FIREWALL", "NP-FORWARD", "NP-FIREWALL"},
    }
    parse(text).with_jumps(PLUMBING)  # loads


def test_masquerade_bit_sets_the_mark() -> None:
    text = render([], [], ProxyConfig(masquerade_bit=5))
    assert "--or-mark 0x20" in text and "! --mark 0x20/0x20" in text


def test_stale_chains_are_flushed_then_deleted_only_if_ours() -> None:
    text = render([], [], ProxyConfig())
    stale = {Table.NAT: {"NP-SVC-OLD", "KUBE-SVC-NOTOURS"}}
    out = with_stale_chains(text, stale)
    nat = out.split("*nat\n", 1)[1].split("COMMIT", 1)[0]
    assert ":NP-SVC-OLD - [0:0]" in nat and nat.rstrip().endswith("-X NP-SVC-OLD")
    assert "KUBE-SVC-NOTOURS" not in out
    assert "NP-SVC-OLD" not in parse(out).dump()


def test_parser_rejects_jump_to_missing_chain() -> None:
    with pytest.raises(ParseError, match="missing chain NP-SVC-GONE"):
        parse("*nat\n:NP-SERVICES - [0:0]\n-A NP-SERVICES -j NP-SVC-GONE\nCOMMIT\n")


def test_parser_rejects_deleting_a_chain_still_jumped_to() -> None:
    text = "*nat\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-X B\nCOMMIT\n"
    with pytest.raises(ParseError, match="missing chain B"):
        parse(text)


def test_parser_rejects_rule_in_undeclared_chain_and_unknown_options() -> None:
    with pytest.raises(ParseError, match="undeclared chain"):
        parse("*nat\n-A NP-X -j ACCEPT\nCOMMIT\n")
    with pytest.raises(ParseError, match="not understood"):
        parse("*nat\n:X - [0:0]\n-A X -m owner --uid-owner 0 -j ACCEPT\nCOMMIT\n")
    with pytest.raises(ParseError, match="no COMMIT"):
        parse("*nat\n:X - [0:0]\n")


def test_three_endpoints_are_all_reachable() -> None:
    eps = [{"metadata": {"namespace": "default", "name": "lonely"}, "subsets": [{
        "addresses": [{"ip": f"10.244.3.{i}"} for i in (1, 2, 3)], "ports": [{"port": 80}]}]}]
    text = render(services(), eps, CONFIG)
    assert "--probability 0.3333333333" in text and "--probability 0.5000000000" in text
    got = flows(parse(text).with_jumps(PLUMBING), "10.244.1.4", "tcp", "10.96.0.51", 80)
    assert {f.dnat for f in got} == {"10.244.3.1:80", "10.244.3.2:80", "10.244.3.3:80"}
