"""``trace_steps``: the rule path and the chance of each way a packet goes,
computed from the random-statistic rules (what ``netplane trace`` shows)."""

from __future__ import annotations

import pytest

from netplane.proxy.iptables.render import PLUMBING, render
from netplane.proxy.iptables.trace import parse, trace_established, trace_steps
from netplane.proxy.trace import Packet, Verdict
from tests.unit.test_proxy_iptables_cases import CONFIG

SVC = {"apiVersion": "v1", "kind": "Service",
       "metadata": {"name": "web", "namespace": "default"},
       "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80,
                                                       "protocol": "TCP"}]}}


def slice_(*ips: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "nodeName": "node-1",
                           "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def test_each_endpoint_has_its_chance_and_path() -> None:
    rules = parse(render([SVC], [slice_("10.244.1.2", "10.244.1.3", "10.244.2.2")], CONFIG,
                         node_name="node-1")).with_jumps(PLUMBING)
    steps = trace_steps(rules, Packet("10.244.1.9", "tcp", "10.96.0.50", 80))
    chances = {s.flow.dnat: s.chance for s in steps}
    assert set(chances) == {"10.244.1.2:8080", "10.244.1.3:8080", "10.244.2.2:8080"}
    assert all(c == pytest.approx(1 / 3, abs=1e-6) for c in chances.values())
    path = next(s.path for s in steps if s.flow.dnat == "10.244.2.2:8080")
    assert "nat/PREROUTING -> NP-SERVICES" in path
    assert any(p.startswith("nat/NP-SERVICES -> NP-SVC-") for p in path)
    assert path[-1].endswith("-> DNAT") and "NP-SEP-" in path[-1]


def test_a_rejected_packet_says_where() -> None:
    rules = parse(render([SVC], [slice_()], CONFIG, node_name="node-1")).with_jumps(PLUMBING)
    (step,) = trace_steps(rules, Packet("10.244.1.9", "tcp", "10.96.0.50", 80))
    assert step.flow.verdict is Verdict.REJECT
    assert step.path[-1].endswith("-> REJECT") and step.path[-1].startswith("filter/")


def test_iptables_save_spelling_of_recent_is_understood() -> None:
    """The kernel prints ``--set``/``--rcheck`` before ``--name``, plus
    ``--mask`` and ``--rsource``: the same rule as ours, read back."""
    from netplane.proxy.iptables.parse import parse_rule

    saved = parse_rule("NP-SEP-X", "-A NP-SEP-X -p tcp -m recent --set --name NP-SEP-X "
                       "--mask 255.255.255.255 --rsource -j DNAT --to-destination 10.0.0.1:80", 1)
    ours = parse_rule("NP-SEP-X", "-A NP-SEP-X -p tcp -m recent --name NP-SEP-X --set "
                      "-j DNAT --to-destination 10.0.0.1:80", 1)
    assert saved.options == ours.options and ("--set", "NP-SEP-X") in saved.options
    check = parse_rule("NP-SVC-X", "-A NP-SVC-X -m recent --rcheck --seconds 10800 --reap "
                       "--name NP-SEP-X --mask 255.255.255.255 --rsource -j NP-SEP-X", 1)
    assert [(c.key, c.value) for c in check.conditions] == [("recent", "NP-SEP-X")]


def test_a_later_packet_skips_nat_and_lists_every_rule_it_meets() -> None:
    rules = parse("""*nat
:NP-X - [0:0]
-A PREROUTING -j NP-X
-A NP-X -p tcp -j DNAT --to-destination 10.244.1.3:8080
COMMIT
*filter
:NP-F - [0:0]
-A FORWARD -m conntrack --ctstate NEW -j NP-F
-A FORWARD -d 10.244.1.2/32 -j DROP
-A NP-F -j REJECT
COMMIT
""")
    [raw, flt] = trace_established(rules, Packet("10.244.1.9", "tcp", "10.244.2.2", 8080))
    assert (raw.chain, raw.evaluated) == ("raw/PREROUTING", ())
    assert (flt.chain, flt.verdict) == ("filter/FORWARD", Verdict.ACCEPT)
    assert flt.evaluated == ("filter/FORWARD: -m conntrack --ctstate NEW -j NP-F",
                             "filter/FORWARD: -d 10.244.1.2/32 -j DROP")
    # The first packet of the same connection is the one that is checked.
    assert trace_steps(rules, Packet("10.244.1.9", "tcp", "10.244.2.2", 8080))[0].flow \
        .verdict == Verdict.REJECT
    [_, dropped] = trace_established(rules, Packet("10.244.1.9", "tcp", "10.244.1.2", 8080))
    assert dropped.verdict == Verdict.DROP
