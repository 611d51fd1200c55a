"""Tracing a packet through ``nft -j`` listings of our table.

Two kinds of input, both in the exact shape ``nft -j list table ip netplane``
prints: small hand-written listings for the evaluator's rules (hook order,
jump/goto, lookups, numgen, dependencies, errors), and
``golden/nft_table_features.json``, the kernel's own listing of
``golden/proxy_nft.txt`` (the integration test checks it is current), for
the whole layout.

Address plan:
    pod network          10.244.0.0/16; client pod 10.244.1.4
    endpoints            10.244.1.2 (this node), 10.244.2.3 (node-2), 10.244.2.5
    this node            192.168.56.11; outside hosts 192.168.56.1, 192.168.56.100
    default/web          10.96.0.50 http 80/TCP, echo 9000/UDP -> 8080 / 5353
    default/np           10.96.0.51 NodePort 30080
    default/lb           10.96.0.52 LB 192.168.56.200 (from 192.168.56.0/28), external
                         IP 192.168.56.201, NodePort 30081, externalTrafficPolicy Local
    default/sticky       10.96.0.53 ClientIP affinity, NodePort 30082
    default/lonely       10.96.0.54 no endpoints, NodePort 30083
    default/inside       10.96.0.55 internalTrafficPolicy Local, remote endpoint only
    node-local DNS       10.96.0.10
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from netplane.proxy.nftables.trace import (
    NftTraceError,
    load_table,
    trace_nft,
    trace_nft_established,
)
from netplane.proxy.trace import Packet, Step, Verdict

Json = Any
FEATURES = Path(__file__).parent / "golden" / "nft_table_features.json"
NODE_IP, DNS_IP = "192.168.56.11", "10.96.0.10"
CLIENT, A, B, C = "10.244.1.4", "10.244.1.2", "10.244.2.3", "10.244.2.5"
VIP = "10.96.0.50"

# -- expressions in the shapes nft prints ---------------------------------------------------


def payload(proto: str, field: str) -> Json:
    return {"payload": {"protocol": proto, "field": field}}


def meta(key: str) -> Json:
    return {"meta": {"key": key}}


def match(left: Json, right: Json, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def concat(*parts: Json) -> Json:
    return {"concat": list(parts)}


def numgen(n: int) -> Json:
    return {"numgen": {"mode": "random", "mod": n, "offset": 0}}


def prefix(addr: str, length: int) -> Json:
    return {"prefix": {"addr": addr, "len": length}}


def goto(chain: str) -> Json:
    return {"goto": {"target": chain}}


def jump(chain: str) -> Json:
    return {"jump": {"target": chain}}


def dnat_to(addr: str, port: int) -> Json:
    return {"dnat": {"addr": addr, "port": port}}


def dnat_map(key: Json, m: str) -> Json:
    return {"dnat": {"family": "ip", "addr": {"map": {"key": key, "data": f"@{m}"}}}}


DADDR, SADDR = payload("ip", "daddr"), payload("ip", "saddr")
TUPLE = concat(DADDR, meta("l4proto"), payload("th", "dport"))
NEW = match({"ct": {"key": "state"}}, "new", "in")
DROP: Json = {"drop": None}
MARK = 0x4000

# Base chains: name -> (type, hook, priority), as our layout declares them.
BASES = {"raw-prerouting": ("filter", "prerouting", -300),
         "raw-output": ("filter", "output", -300),
         "filter-prerouting": ("filter", "prerouting", -110),
         "filter-forward": ("filter", "forward", -110),
         "filter-input": ("filter", "input", -110),
         "filter-output": ("filter", "output", -110),
         "nat-prerouting": ("nat", "prerouting", -100),
         "nat-output": ("nat", "output", -100),
         "nat-postrouting": ("nat", "postrouting", 100)}


def listing(chains: dict[str, list[list[Json]]], sets: dict[str, list[Json]] | None = None,
            bases: dict[str, tuple[str, str, int]] | None = None) -> Json:
    """A table as ``nft -j list table ip netplane`` prints it."""
    own = {"family": "ip", "table": "netplane"}
    objs: list[Json] = [{"metainfo": {"json_schema_version": 1}},
                        {"table": {"family": "ip", "name": "netplane", "handle": 1}}]
    objs += [{"set": {**own, "name": n, "elem": e}} for n, e in (sets or {}).items()]
    for name in chains:
        spec = (bases or BASES).get(name)
        hook = {"type": spec[0], "hook": spec[1], "prio": spec[2], "policy": "accept"} \
            if spec else {}
        objs.append({"chain": {**own, "name": name, **hook}})
    objs += [{"rule": {**own, "chain": name, "expr": expr}}
             for name, rules in chains.items() for expr in rules]
    return {"nftables": objs}


def pkt(src: str = CLIENT, dst: str = VIP, dport: int = 80, proto: str = "tcp") -> Packet:
    return Packet(src, proto, dst, dport)


def landings(steps: list[Step]) -> dict[str | None, float]:
    """Where the accepted ways end (DNAT target) and with what chance."""
    out: dict[str | None, float] = {}
    for s in steps:
        if s.flow.verdict is Verdict.ACCEPT:
            out[s.flow.dnat] = out.get(s.flow.dnat, 0.0) + s.chance
    return out


# -- the evaluator -----------------------------------------------------------------------------

SERVICES = {
    "nat-prerouting": [[{"vmap": {"key": TUPLE, "data": "@service-ips"}}]],
    "cluster-tcp-3": [[dnat_map(concat(DADDR, payload("tcp", "dport"), numgen(3)),
                                "service-endpoints-tcp")]],
}
SERVICE_SETS = {
    "service-ips": [[concat(VIP, "tcp", 80), goto("cluster-tcp-3")]],
    "service-endpoints-tcp": [[concat(VIP, 80, i), concat(ip, 8080)]
                              for i, ip in enumerate((A, B, C))],
}


def test_numgen_fans_out_to_every_endpoint_with_equal_chance() -> None:
    steps = trace_nft(listing(SERVICES, SERVICE_SETS), pkt())
    assert landings(steps) == pytest.approx({f"{A}:8080": 1 / 3, f"{B}:8080": 1 / 3,
                                             f"{C}:8080": 1 / 3})
    assert steps[2].path == (
        "nat-prerouting: vmap @service-ips[10.96.0.50 . tcp . 80] -> goto cluster-tcp-3",
        "cluster-tcp-3: dnat via map @service-endpoints-tcp[10.96.0.50 . 80 . 2] "
        "-> 10.244.2.5:8080 (p=0.333)")
    assert trace_nft(json.dumps(listing(SERVICES, SERVICE_SETS)), pkt()) == steps


def test_a_tcp_header_match_never_matches_udp() -> None:
    sets = {**SERVICE_SETS, "service-ips": [[concat(VIP, "udp", 80), goto("cluster-tcp-3")]]}
    [step] = trace_nft(listing(SERVICES, sets), pkt(proto="udp"))
    assert step.flow.verdict is Verdict.ACCEPT and step.flow.dnat is None


def test_a_bucket_missing_from_the_map_falls_through_with_its_chance() -> None:
    sets = {**SERVICE_SETS, "service-endpoints-tcp": SERVICE_SETS["service-endpoints-tcp"][:2]}
    assert landings(trace_nft(listing(SERVICES, sets), pkt())) == pytest.approx(
        {f"{A}:8080": 1 / 3, f"{B}:8080": 1 / 3, None: 1 / 3})


def test_interval_concatenations_allow_prefixes_and_ranges() -> None:
    lb = concat("192.168.56.200", "tcp", 80)
    chains = {"filter-prerouting": [[
        match(TUPLE, "@firewall-ips"),
        match(concat(DADDR, meta("l4proto"), payload("th", "dport"), SADDR),
              "@firewall-allow", "!="), DROP]]}
    sets = {"firewall-ips": [lb], "firewall-allow": [
        concat("192.168.56.200", "tcp", 80, prefix("192.168.56.0", 28)),
        concat("192.168.56.200", "tcp", 80, {"range": ["192.168.56.100", "192.168.56.102"]})]}

    def verdict(src: str, dport: int = 80) -> Verdict:
        [step] = trace_nft(listing(chains, sets), pkt(src, "192.168.56.200", dport))
        return step.flow.verdict

    assert verdict("192.168.56.3") is verdict("192.168.56.101") is Verdict.ACCEPT
    assert verdict("192.168.56.99") is Verdict.DROP
    assert verdict("192.168.56.99", dport=443) is Verdict.ACCEPT  # not a guarded port


AFFINITY = {
    "nat-prerouting": [
        [match(SADDR, "@affinity-a"), goto("endpoint-a")],
        [match(SADDR, "@affinity-b"), goto("endpoint-b")],
        [{"vmap": {"key": numgen(2), "data": {"set": [[0, goto("endpoint-a")],
                                                      [1, goto("endpoint-b")]]}}}]],
    "endpoint-a": [[{"set": {"op": "update", "elem": SADDR, "set": "@affinity-a"}}],
                   [match(meta("l4proto"), "tcp"), dnat_to(A, 8080)]],
    "endpoint-b": [[{"set": {"op": "update", "elem": SADDR, "set": "@affinity-b"}}],
                   [match(meta("l4proto"), "tcp"), dnat_to(B, 8080)]],
}


def test_affinity_sends_a_known_client_to_its_endpoint_only() -> None:
    known = {"affinity-a": [], "affinity-b": [{"elem": {"val": CLIENT, "expires": 59}}]}
    [step] = trace_nft(listing(AFFINITY, known), pkt())
    assert (step.flow.dnat, step.chance) == (f"{B}:8080", 1.0)
    assert step.path[0] == "nat-prerouting: 10.244.1.4 in @affinity-b -> goto endpoint-b"
    others = trace_nft(listing(AFFINITY, known), pkt(src="10.244.1.9"))
    assert landings(others) == {f"{A}:8080": 0.5, f"{B}:8080": 0.5}
    assert "nat-prerouting: vmap {…}[1] -> goto endpoint-b (p=0.5)" in others[1].path
    assert "endpoint-b: update @affinity-b { ip saddr }" in others[1].path


def test_goto_returns_past_its_caller_and_jump_comes_back() -> None:
    chains = {"nat-prerouting": [[jump("outer")], [dnat_to(C, 1)]],
              "outer": [[goto("inner")], [dnat_to(A, 1)]],
              "inner": [[{"mangle": {"key": meta("mark"), "value": MARK}}]]}
    [step] = trace_nft(listing(chains), pkt())
    assert step.flow.dnat == f"{C}:1"


MASQUERADING = {
    "nat-prerouting": [[match(SADDR, prefix("10.244.0.0", 16), "!="), jump("mark")],
                       [dnat_to(A, 8080)]],
    "mark": [[{"mangle": {"key": meta("mark"),
                          "value": {"|": [meta("mark"), MARK]}}}]],
    "nat-postrouting": [[jump("masquerading")]],
    "masquerading": [[match({"&": [meta("mark"), MARK]}, 0), {"return": None}],
                     [{"masquerade": None}]],
}


@pytest.mark.parametrize(("src", "masqueraded"), [(CLIENT, False), ("192.168.56.1", True)])
def test_masquerade_follows_the_mark(src: str, masqueraded: bool) -> None:
    [step] = trace_nft(listing(MASQUERADING), pkt(src))
    assert step.flow.masquerade is masqueraded
    assert ("masquerading: masquerade" in step.path) is masqueraded
    if masqueraded:
        assert "mark: meta mark set meta mark | 0x4000 (mark 0x4000)" in step.path


def test_notrack_keeps_the_packet_out_of_nat() -> None:
    chains = {"raw-prerouting": [[match(DADDR, DNS_IP), match(payload("udp", "dport"), 53),
                                  {"notrack": None}]],
              "nat-prerouting": [[dnat_to(A, 53)]]}
    [step] = trace_nft(listing(chains), pkt(dst=DNS_IP, dport=53, proto="udp"),
                       local_ips=[DNS_IP])
    assert (step.flow.notrack, step.flow.dnat, step.flow.to_node) == (True, None, True)
    assert step.path == ("raw-prerouting: ip daddr 10.96.0.10, udp dport 53 -> notrack",)


@pytest.mark.parametrize(("prio", "verdict"), [(-110, Verdict.ACCEPT), (-90, Verdict.DROP)])
def test_base_chains_run_in_priority_order(prio: int, verdict: Verdict) -> None:
    """A filter chain before DNAT sees the service address, after it the endpoint."""
    bases = {**BASES, "filter-prerouting": ("filter", "prerouting", prio)}
    chains = {"filter-prerouting": [[match(DADDR, A), DROP]],
              "nat-prerouting": [[dnat_to(A, 8080)]]}
    [step] = trace_nft(listing(chains, bases=bases), pkt())
    assert step.flow.verdict is verdict


REJECT = {"filter-forward": [[NEW, match(DADDR, VIP), goto("reject-chain")]],
          "reject-chain": [[{"reject": {"type": "tcp reset"}}],
                           [{"reject": {"type": "icmp", "expr": "port-unreachable"}}]]}


@pytest.mark.parametrize(("proto", "how"), [("tcp", "reject with tcp reset"),
                                            ("udp", "reject with icmp port-unreachable")])
def test_reject_with_tcp_reset_is_for_tcp_only(proto: str, how: str) -> None:
    [step] = trace_nft(listing(REJECT), pkt(proto=proto))
    assert step.flow.verdict is Verdict.REJECT and step.path[-1] == f"reject-chain: {how}"


def test_the_nodes_own_packet_to_itself_crosses_input_on_loopback() -> None:
    chains = {"filter-prerouting": [[match(meta("iifname"), "lo", "!="),
                                     match(DADDR, prefix("127.0.0.0", 8)), NEW, DROP]],
              "filter-input": [[NEW, match(payload("tcp", "dport"), 22),
                                goto("reject-chain")]],
              "reject-chain": REJECT["reject-chain"]}
    local = trace_nft(listing(chains), pkt("127.0.0.1", "127.0.0.1", 22), local=True)
    assert [(s.flow.verdict, s.flow.to_node) for s in local] == [(Verdict.REJECT, True)]
    routed = trace_nft(listing(chains), pkt(dst="127.0.0.1", dport=22))
    assert [s.flow.verdict for s in routed] == [Verdict.DROP]


def test_a_later_packet_skips_nat_and_lists_every_rule_it_meets() -> None:
    chains = {"filter-prerouting": [[NEW, jump("check")], [match(DADDR, A), DROP]],
              "check": [[DROP]],
              "nat-prerouting": [[dnat_to(B, 8080)]]}
    crossings = trace_nft_established(listing(chains), pkt(dst=C, dport=8080))
    assert [(c.chain, c.evaluated, c.verdict) for c in crossings] == [
        ("filter-prerouting", ("filter-prerouting#0", "filter-prerouting#1"), Verdict.ACCEPT)]
    # The first packet of the same connection is the one that is checked.
    [first] = trace_nft(listing(chains), pkt(dst=C, dport=8080))
    assert first.flow.verdict is Verdict.DROP
    [dropped] = trace_nft_established(listing(chains), pkt(dst=A, dport=8080))
    assert dropped.verdict is Verdict.DROP


@pytest.mark.parametrize(("expr", "named"), [
    ({"log": {"prefix": "svc "}}, "'log'"),
    ({"limit": {"rate": 10, "per": "second"}}, "'limit'"),
    (match(meta("skuid"), 0), "skuid"),
    (match({"ct": {"key": "mark"}}, 1), "conntrack key"),
    (match({"numgen": {"mode": "inc", "mod": 2, "offset": 0}}, 0), "numgen other than random"),
    (match(meta("iifname"), "eth0"), "'eth0'"),
])
def test_unknown_expressions_raise_naming_them(expr: Json, named: str) -> None:
    with pytest.raises(NftTraceError, match=named):
        trace_nft(listing({"nat-prerouting": [[expr, DROP]]}), pkt())


def test_a_listing_without_our_table_or_with_a_dangling_jump_is_refused() -> None:
    with pytest.raises(NftTraceError, match="no table ip netplane"):
        trace_nft({"nftables": [{"table": {"family": "ip", "name": "filter"}}]}, pkt())
    with pytest.raises(NftTraceError, match="gone"):
        trace_nft(listing({"nat-prerouting": [[jump("gone")]]}), pkt())
    with pytest.raises(NftTraceError, match="@nowhere"):
        trace_nft(listing({"nat-prerouting": [[match(SADDR, "@nowhere"), DROP]]}), pkt())


# -- the whole layout, as the kernel lists it ----------------------------------------------


@pytest.fixture(scope="module")
def features() -> Json:
    return json.loads(FEATURES.read_text())


def trace(table: Json, src: str, dst: str, dport: int, proto: str = "tcp",
          local: bool = False) -> list[Step]:
    return trace_nft(table, Packet(src, proto, dst, dport), local=local,
                     local_ips=(NODE_IP, DNS_IP))


def test_cluster_ip_from_a_pod_keeps_its_source(features: Json) -> None:
    steps = trace(features, CLIENT, VIP, 80)
    assert landings(steps) == {f"{A}:8080": 0.5, f"{B}:8080": 0.5}
    assert not any(s.flow.masquerade for s in steps)
    assert steps[0].path == (
        "nat-prerouting: jump services",
        "services: vmap @service-ips[10.96.0.50 . tcp . 80] -> goto cluster-tcp-2",
        "cluster-tcp-2: dnat via map @service-endpoints-tcp[10.96.0.50 . 80 . 0] "
        "-> 10.244.1.2:8080 (p=0.5)")
    assert landings(trace(features, CLIENT, VIP, 9000, "udp")) == {f"{A}:5353": 0.5,
                                                                     f"{B}:5353": 0.5}


def test_an_endpoint_reaching_itself_is_masqueraded(features: Json) -> None:
    masq = {s.flow.dnat: s.flow.masquerade for s in trace(features, A, VIP, 80)}
    assert masq == {f"{A}:8080": True, f"{B}:8080": False}


@pytest.mark.parametrize(("src", "dst", "local"), [
    ("192.168.56.100", NODE_IP, False), (NODE_IP, NODE_IP, True),
    ("127.0.0.1", "127.0.0.1", True)])
def test_node_port_is_masqueraded_from_outside_the_node_and_loopback(
        features: Json, src: str, dst: str, local: bool) -> None:
    steps = trace(features, src, dst, 30080, local=local)
    assert landings(steps) == {f"{A}:8080": 0.5, f"{B}:8080": 0.5}
    assert all(s.flow.masquerade and not s.flow.to_node for s in steps)


def test_loopback_node_port_from_another_host_is_dropped(features: Json) -> None:
    [step] = trace(features, "192.168.56.100", "127.0.0.1", 30080)
    assert step.flow.verdict is Verdict.DROP


def test_load_balancer_source_ranges_and_local_policy(features: Json) -> None:
    [allowed] = trace(features, "192.168.56.1", "192.168.56.200", 80)
    assert (allowed.flow.dnat, allowed.chance, allowed.flow.masquerade) == (f"{A}:8080", 1.0,
                                                                             False)
    [denied] = trace(features, "192.168.56.100", "192.168.56.200", 80)
    assert denied.flow.verdict is Verdict.DROP
    assert denied.path[-1] == ("firewall-check: 192.168.56.200 . tcp . 80 in @firewall-ips, "
                               "192.168.56.200 . tcp . 80 . 192.168.56.100 not in "
                               "@firewall-allow -> drop")
    # The external IP has no source ranges; pods are not "external" under Local.
    assert landings(trace(features, "192.168.56.100", "192.168.56.201", 80)) == {
        f"{A}:8080": 1.0}
    assert landings(trace(features, CLIENT, "192.168.56.201", 80)) == {f"{A}:8080": 0.5,
                                                                        f"{B}:8080": 0.5}
    assert landings(trace(features, "192.168.56.100", NODE_IP, 30081)) == {f"{A}:8080": 1.0}


def test_affinity_as_the_kernel_remembers_it(features: Json) -> None:
    assert landings(trace(features, CLIENT, "10.96.0.53", 80)) == {f"{A}:8080": 0.5,
                                                                    f"{B}:8080": 0.5}
    known = copy.deepcopy(features)
    pool = load_table(known).rules["pool-T2ECBIYT2WDZZK45-cluster"]
    remembered = pool[1][0]["match"]["right"][1:]  # the second endpoint's set
    for obj in known["nftables"]:
        if obj.get("set", {}).get("name") == remembered:
            obj["set"]["elem"] = [{"elem": {"val": CLIENT, "expires": 42}}]
    [step] = trace(known, CLIENT, "10.96.0.53", 80)
    assert (step.flow.dnat, step.chance) == (f"{B}:8080", 1.0)


@pytest.mark.parametrize(("dst", "dport", "proto", "verdict"), [
    ("10.96.0.54", 80, "tcp", Verdict.REJECT),  # no endpoints
    (NODE_IP, 30083, "tcp", Verdict.REJECT),  # its NodePort
    ("10.96.0.55", 80, "tcp", Verdict.DROP),  # internal Local, no endpoint here
    (VIP, 81, "tcp", Verdict.REJECT),  # not a service port
    (VIP, 80, "udp", Verdict.REJECT),
])
def test_services_that_cannot_answer_fail_at_once(features: Json, dst: str, dport: int,
                                                  proto: str, verdict: Verdict) -> None:
    [step] = trace(features, CLIENT, dst, dport, proto)
    assert step.flow.verdict is verdict and step.flow.dnat is None


def test_node_local_dns_is_not_tracked(features: Json) -> None:
    for proto in ("udp", "tcp"):
        [step] = trace(features, CLIENT, DNS_IP, 53, proto)
        assert (step.flow.notrack, step.flow.to_node, step.flow.dnat) == (True, True, None)
