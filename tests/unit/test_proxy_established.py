"""What every packet pays: later packets of known connections through our rules.

Only a connection's first packet meets the NAT rules and the checks of new
connections; every later one, in either direction, must be sent on by the
first rule of ours that looks at it, whatever the Services are. Traced with
the iptables tracer over the rendered rules with the fixed jumps in set-up's
order, and with the nftables evaluator over the kernel's listing of the
golden table (``golden/nft_table_features.json``).

Address plan (the iptables cases' and the nftables trace tests', which agree
on these):
    this node            node-1, 192.168.56.11, pod gateway 10.244.1.1
    pods on this node    10.244.1.2 (an endpoint), 10.244.1.4 (a client)
    pod on another node  10.244.2.3 (nftables) / 10.244.2.2 (iptables), endpoints
    outside host         192.168.56.100
    node-local DNS       10.96.0.10
    a later packet is traced as the filter chains see it: after the
    connection's DNAT (so to the endpoint, not to the ClusterIP or NodePort)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from netplane.api.meta import Obj
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.render import PLUMBING, render
from netplane.proxy.iptables.trace import Ruleset, parse, trace_established
from netplane.proxy.nftables.layout import RAW_CHAINS, Chain, fixed_chains
from netplane.proxy.nftables.trace import trace_nft_established
from netplane.proxy.trace import Crossing, Packet, Verdict
from tests.unit import test_proxy_iptables_cases as cases

NODE_IP, GATEWAY, DNS_IP = "192.168.56.11", "10.244.1.1", "10.96.0.10"
ENDPOINT, CLIENT, OUTSIDE = "10.244.1.2", "10.244.1.4", "192.168.56.100"
FEATURES = Path(__file__).parent / "golden" / "nft_table_features.json"
CONFIG = dataclasses.replace(cases.CONFIG, notrack_dns_ips=(DNS_IP,))


def forwarded(remote: str) -> list[Packet]:
    """Later packets the node forwards, both ways: pod to pod, pod to a
    service's endpoint, an outside client to a NodePort's endpoint."""
    return [
        Packet(CLIENT, "tcp", ENDPOINT, 8080), Packet(ENDPOINT, "tcp", CLIENT, 40000, 8080),
        Packet(CLIENT, "tcp", remote, 8080), Packet(remote, "tcp", CLIENT, 40000, 8080),
        Packet(OUTSIDE, "tcp", ENDPOINT, 8080), Packet(ENDPOINT, "tcp", OUTSIDE, 40000, 8080),
        Packet(CLIENT, "udp", ENDPOINT, 5353), Packet(ENDPOINT, "udp", CLIENT, 40000, 5353),
    ]


# Later packets to and from the node itself: a reply to its own connection,
# a client of a NodePort it serves, its own connection to a pod.
TO_NODE = [Packet(ENDPOINT, "tcp", NODE_IP, 40000, 8080), Packet(OUTSIDE, "tcp", NODE_IP, 30080)]
FROM_NODE = [Packet(NODE_IP, "tcp", ENDPOINT, 8080), Packet(NODE_IP, "tcp", OUTSIDE, 40000, 22)]


def verdicts(crossings: list[Crossing]) -> set[Verdict]:
    return {c.verdict for c in crossings}


# -- iptables ------------------------------------------------------------------------------


def iptables_rules(services: list[Obj], endpoints: list[Obj]) -> Ruleset:
    text = render(services, endpoints, CONFIG, node_name=cases.NODE)
    return parse(text).with_jumps(PLUMBING)


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    return iptables_rules(cases.services(), cases.endpoints())


def _notrack_walk() -> int:
    # The jump and NP-NOTRACK's rules: two protocols, two directions per address.
    return 1 + 4 * len(CONFIG.notrack_dns_ips)


@pytest.mark.parametrize("pkt", forwarded(cases.REMOTE))
def test_iptables_later_packets_are_accepted_by_the_first_forward_rule(
        rules: Ruleset, pkt: Packet) -> None:
    raw, flt = trace_established(rules, pkt, local_ips=(NODE_IP, GATEWAY))
    assert (raw.chain, len(raw.evaluated), raw.verdict) == ("raw/PREROUTING", _notrack_walk(),
                                                           Verdict.ACCEPT)
    assert flt.chain == "filter/FORWARD" and flt.verdict == Verdict.ACCEPT
    assert flt.evaluated == (
        "filter/FORWARD: -m comment --comment 'netplane forwarding rules' -j NP-FORWARD",
        'filter/NP-FORWARD: -m comment --comment "netplane forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")


def test_iptables_nat_never_sees_a_later_packet(rules: Ruleset) -> None:
    for pkt in [*forwarded(cases.REMOTE), *TO_NODE]:
        crossings = trace_established(rules, pkt, local_ips=(NODE_IP, GATEWAY))
        assert not [e for c in crossings for e in c.evaluated if e.startswith("nat/")]
    for pkt in FROM_NODE:
        crossings = trace_established(rules, pkt, local=True, local_ips=(NODE_IP, GATEWAY))
        assert not [e for c in crossings for e in c.evaluated if e.startswith("nat/")]


@pytest.mark.parametrize(("pkt", "local"), [*((p, False) for p in TO_NODE),
                                            *((p, True) for p in FROM_NODE)])
def test_iptables_node_traffic_skips_the_service_checks(rules: Ruleset, pkt: Packet,
                                                        local: bool) -> None:
    crossings = trace_established(rules, pkt, local=local, local_ips=(NODE_IP, GATEWAY))
    assert verdicts(crossings) == {Verdict.ACCEPT}
    # The checks of new connections are jumped over, never walked.
    walked = {e.split(":", 1)[0] for c in crossings for e in c.evaluated}
    assert not walked & {"filter/NP-SERVICES", "filter/NP-EXTERNAL-SERVICES",
                         "filter/NP-PROXY-FIREWALL"}


def test_iptables_a_later_packet_costs_the_same_whatever_the_services(rules: Ruleset) -> None:
    many = [cases.svc(f"s{i}", f"10.96.1.{i}") for i in range(1, 201)]
    big = iptables_rules([*cases.services(), *many], cases.endpoints())
    for pkt in forwarded(cases.REMOTE):
        assert trace_established(big, pkt) == trace_established(rules, pkt)


def test_iptables_node_local_dns_stays_untracked(rules: Ruleset) -> None:
    raw, flt = trace_established(rules, Packet(CLIENT, "udp", DNS_IP, 53),
                                 local_ips=(NODE_IP, DNS_IP))
    assert any(e.endswith("--dport 53 -j NOTRACK") for e in raw.evaluated)
    # Untracked is neither new nor established: no check of ours refuses it.
    assert flt.chain == "filter/INPUT" and flt.verdict == Verdict.ACCEPT


# -- nftables ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listing() -> object:
    return json.loads(FEATURES.read_text())


def test_nft_raw_chains_exist_only_for_node_local_dns() -> None:
    # A hooked chain costs every packet, even empty.
    assert not set(RAW_CHAINS) & set(fixed_chains(ProxyConfig()))
    chains = fixed_chains(ProxyConfig(notrack_dns_ips=(DNS_IP,)))
    assert all(len(chains[c]) == 2 for c in RAW_CHAINS)


@pytest.mark.parametrize("pkt", forwarded("10.244.2.3"))
def test_nft_later_packets_leave_each_base_chain_at_its_first_rule(
        listing: object, pkt: Packet) -> None:
    crossings = trace_nft_established(listing, pkt, local_ips=(NODE_IP, DNS_IP))
    assert [(c.chain, c.evaluated) for c in crossings] == [
        (Chain.RAW_PREROUTING, ("raw-prerouting#0", "raw-prerouting#1")),
        (Chain.FILTER_PREROUTING, ("filter-prerouting#0",)),
        (Chain.FILTER_FORWARD, ("filter-forward#0",)),
    ]
    assert verdicts(crossings) == {Verdict.ACCEPT}


@pytest.mark.parametrize(("pkt", "local"), [*((p, False) for p in TO_NODE),
                                            *((p, True) for p in FROM_NODE)])
def test_nft_node_traffic_meets_one_rule_per_filter_chain(listing: object, pkt: Packet,
                                                          local: bool) -> None:
    crossings = trace_nft_established(listing, pkt, local=local, local_ips=(NODE_IP, DNS_IP))
    assert verdicts(crossings) == {Verdict.ACCEPT}
    for c in crossings:
        # No NAT chain, and no jump into a check of new connections.
        assert c.chain.startswith(("raw-", "filter-"))
        assert c.evaluated == tuple(f"{c.chain}#{i}" for i in range(len(c.evaluated)))
        assert len(c.evaluated) == (2 if c.chain.startswith("raw-") else 1)
