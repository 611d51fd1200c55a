"""NetworkPolicy: the model as table tests, then the probe-matrix cases judged
on the rules each node renders (parsed back and traced packet by packet).

Address plan: see ``tests.policycases`` (node-1 10.244.1.0/24, node-2
10.244.2.0/24; x/a 10.244.1.10, x/b 10.244.2.11, x/c 10.244.1.12, ...).
"""

from __future__ import annotations

import pytest

from netplane.proxy import policy
from netplane.proxy.iptables import policy as ipt_policy
from netplane.proxy.iptables.parse import parse
from netplane.proxy.iptables.trace import trace_packet
from netplane.proxy.nftables import policy as nft_policy
from netplane.proxy.policy import Direction, PodInfo, PortRange
from netplane.proxy.policyloop import PolicyInputs, denied_connections, parse_conntrack
from netplane.proxy.trace import Packet, Verdict
from tests import policycases as pc

# -- the model -----------------------------------------------------------------


def info(ns: str, name: str, ip: str, node: str = "node-1", labels: dict | None = None,
         ports: tuple = ()) -> PodInfo:
    return PodInfo(ns, name, ip, node, tuple(sorted((labels or {}).items())), ports)


@pytest.mark.parametrize(("block", "want"), [
    ({"cidr": "10.0.0.0/24"}, ["10.0.0.0/24"]),
    ({"cidr": "10.0.0.0/24", "except": ["10.0.0.0/25"]}, ["10.0.0.128/25"]),
    ({"cidr": "10.0.0.0/24", "except": ["10.0.0.64/26", "10.0.0.128/26"]},
     ["10.0.0.0/26", "10.0.0.192/26"]),
    ({"cidr": "10.0.0.0/30", "except": ["10.0.0.1/32"]}, ["10.0.0.0/32", "10.0.0.2/31"]),
    ({"cidr": "10.0.0.5/24"}, ["10.0.0.0/24"]),  # host bits are ignored, as the kernel does
])
def test_ip_block_minus_except(block: dict, want: list[str]) -> None:
    assert policy.block_networks(block) == want


@pytest.mark.parametrize(("spec", "want"), [
    ({"podSelector": {}}, ("Ingress",)),
    ({"podSelector": {}, "egress": [{}]}, ("Ingress", "Egress")),
    ({"podSelector": {}, "policyTypes": ["Egress"]}, ("Egress",)),
    ({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": []},
     ("Ingress", "Egress")),
])
def test_policy_types_default_as_the_api_server_does(spec: dict, want: tuple) -> None:
    assert tuple(map(str, policy.policy_types(pc.netpol("p", "x", spec)))) == want


def test_pod_info_skips_pods_without_an_address_of_their_own() -> None:
    pod = pc.pod_object(pc.Pod("x", "a"), ip="10.244.1.10")
    assert policy.pod_info(pod) is not None
    assert ("serve-81-tcp", "TCP", 81) in policy.pod_info(pod).ports  # type: ignore[union-attr]
    pending = pc.pod_object(pc.Pod("x", "a"))
    assert policy.pod_info(pending) is None
    host = pc.pod_object(pc.Pod("x", "a"), ip="192.168.56.11")
    host["spec"]["hostNetwork"] = True
    assert policy.pod_info(host) is None
    done = pc.pod_object(pc.Pod("x", "a"), ip="10.244.1.10")
    done["status"]["phase"] = "Succeeded"
    assert policy.pod_info(done) is None


def test_named_ports_resolve_per_target_pod_for_ingress() -> None:
    web1 = info("x", "w1", "10.244.1.2", labels={"app": "web"}, ports=(("http", "TCP", 8080),))
    web2 = info("x", "w2", "10.244.1.3", labels={"app": "web"}, ports=(("http", "TCP", 9090),))
    pol = pc.netpol("p", "x", {"podSelector": {"matchLabels": {"app": "web"}},
                               "ingress": [{"ports": [{"port": "http", "protocol": "TCP"}]}]})
    model = policy.compute([pol], [web1, web2], {"x": {}})
    rules = model.rules[("x/p", Direction.INGRESS)]
    got = {(c.ports, c.targets) for c in rules.clauses}
    assert got == {((PortRange("TCP", 8080, 8080),), frozenset({"10.244.1.2"})),
                   ((PortRange("TCP", 9090, 9090),), frozenset({"10.244.1.3"}))}
    assert policy.evaluate(model, "10.244.2.9", "10.244.1.2", "TCP", 8080).allowed
    assert not policy.evaluate(model, "10.244.2.9", "10.244.1.2", "TCP", 9090).allowed


def test_named_ports_resolve_on_each_peer_for_egress_and_never_on_an_ip_block() -> None:
    client = info("x", "c", "10.244.1.2", labels={"app": "client"})
    db = info("y", "db", "10.244.2.5", labels={"app": "db"}, ports=(("sql", "TCP", 5432),))
    pol = pc.netpol("p", "x", {"podSelector": {"matchLabels": {"app": "client"}},
                               "egress": [{"to": [{"namespaceSelector": {}},
                                                  {"ipBlock": {"cidr": "10.0.0.0/8"}}],
                                           "ports": [{"port": "sql"}]}]})
    model = policy.compute([pol], [client, db], {"x": {}, "y": {}})
    assert policy.evaluate(model, "10.244.1.2", "10.244.2.5", "TCP", 5432).allowed
    assert not policy.evaluate(model, "10.244.1.2", "10.9.9.9", "TCP", 5432).allowed


def test_an_egress_named_port_without_peers_means_that_port_on_any_pod() -> None:
    client = info("x", "c", "10.244.1.2")
    db = info("y", "db", "10.244.2.5", ports=(("sql", "TCP", 5432),))
    other = info("y", "o", "10.244.2.6", ports=(("sql", "TCP", 3306),))
    pol = pc.netpol("p", "x", {"podSelector": {}, "egress": [{"ports": [{"port": "sql"}]}]})
    model = policy.compute([pol], [client, db, other], {})
    assert policy.evaluate(model, "10.244.1.2", "10.244.2.5", "TCP", 5432).allowed
    assert policy.evaluate(model, "10.244.1.2", "10.244.2.6", "TCP", 3306).allowed
    assert not policy.evaluate(model, "10.244.1.2", "10.244.2.6", "TCP", 5432).allowed


def test_namespaces_match_by_their_name_label_even_when_it_was_not_written() -> None:
    a = info("x", "a", "10.244.1.2")
    b = info("kube-system", "b", "10.244.1.3")
    pol = pc.netpol("p", "x", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]}]})
    model = policy.compute([pol], [a, b], {"x": {}, "kube-system": {}})
    assert policy.evaluate(model, "10.244.1.3", "10.244.1.2", "TCP", 80).allowed


def test_a_denied_packet_says_which_policy_isolates_which_pod() -> None:
    a = info("x", "a", "10.244.1.2")
    pol = pc.netpol("deny-all", "x", {"podSelector": {}})
    model = policy.compute([pol], [a, info("y", "b", "10.244.1.3")], {})
    d = policy.evaluate(model, "10.244.1.3", "10.244.1.2", "TCP", 80,
                        names={"10.244.1.3": "y/b"})
    assert not d.allowed
    assert d.reason == ("x/a is isolated for ingress by x/deny-all; "
                        "no policy allows from y/b on TCP 80")
    assert policy.evaluate(model, "10.244.1.2", "10.244.1.2", "TCP", 80).allowed
    assert policy.evaluate(model, "10.244.1.1", "10.244.1.2", "TCP", 80,
                           node_ips=frozenset({"10.244.1.1"})).allowed


# -- the matrix on rendered rules --------------------------------------------------


def _world_objects(world: pc.World) -> tuple[list[PodInfo], dict[str, dict[str, str]]]:
    pods = []
    for p in pc.ALL_PODS:
        obj = pc.pod_object(p, ip=pc.unit_ip(p), labels=world.pod_labels[p.key])
        got = policy.pod_info(obj)
        assert got is not None
        pods.append(got)
    return pods, dict(world.ns_labels)


def _node_rules(world: pc.World, node: str):
    pods, namespaces = _world_objects(world)
    model = policy.compute(world.policies.values(), pods, namespaces,
                           local=lambda p: p.node == node)
    plan = policy.plan(model)
    doc = ipt_policy.restore_document(ipt_policy.chains(plan))
    assert doc is not None
    return parse(doc).with_jumps(ipt_policy.JUMPS), plan.sets


def _judge_on_rules(world: pc.World):
    rules = {n: _node_rules(world, n) for n in ("node-1", "node-2")}

    def judge(s: pc.Pod, d: pc.Pod, proto: str, port: int) -> bool:
        pkt = Packet(pc.unit_ip(s), proto.lower(), pc.unit_ip(d), port)
        for node in dict.fromkeys((s.node, d.node)):
            rs, sets = rules[node]
            flows = trace_packet(rs, pkt, sets=sets)
            if {f.verdict for f in flows} != {Verdict.ACCEPT}:
                return False
        return True
    return judge


def _judge_on_model(world: pc.World):
    pods, namespaces = _world_objects(world)
    model = policy.compute(world.policies.values(), pods, namespaces)
    return lambda s, d, proto, port: policy.evaluate(
        model, pc.unit_ip(s), pc.unit_ip(d), proto, port).allowed


@pytest.mark.parametrize("case", pc.CASES, ids=[c.name for c in pc.CASES])
def test_probe_matrix_on_rendered_iptables_rules(case: pc.Case) -> None:
    world = pc.World()
    for i, step in enumerate(case.steps):
        world.step(step)
        want = pc.matrix(step.truth)
        for how, judge in (("rules", _judge_on_rules(world)), ("model", _judge_on_model(world))):
            got = pc.matrix(judge)
            assert got == want, f"step {i} ({how}):\n{pc.table(got, want)}"


def test_many_isolated_pods_are_dispatched_through_address_blocks() -> None:
    # 100 pods on node-1 (10.244.1.2-101): even ones web, odd ones client;
    # the web pods take clients only, the clients may reach web pods only.
    pods = [info("x", f"p{i}", f"10.244.1.{i + 2}",
                 labels={"app": "web" if i % 2 == 0 else "client"}) for i in range(100)]
    pols = [pc.netpol("web", "x", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
            pc.netpol("client", "x", {"podSelector": {"matchLabels": {"app": "client"}},
                                      "policyTypes": ["Egress"], "egress": [
                {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})]
    plan = policy.plan(policy.compute(pols, pods, {}))
    chains = ipt_policy.chains(plan)
    # 50 pods each way: 7 blocks of 16 addresses each way, then a rule per pod of the block.
    assert len(chains[ipt_policy.FILTER_CHAIN]) == 14
    assert "-s 10.244.1.0/28 -j NPOL-DE-" in chains[ipt_policy.FILTER_CHAIN][0]
    blocks = [c for c in chains if c.startswith(("NPOL-DE-", "NPOL-DI-"))]
    assert len(blocks) == 14 and max(len(chains[b]) for b in blocks) <= 8
    rs = parse(ipt_policy.restore_document(chains) or "").with_jumps(ipt_policy.JUMPS)

    def verdicts(src: int, dst: int) -> set[Verdict]:
        pkt = Packet(f"10.244.1.{src + 2}", "tcp", f"10.244.1.{dst + 2}", 80)
        return {f.verdict for f in trace_packet(rs, pkt, sets=plan.sets)}
    assert verdicts(99, 0) == {Verdict.ACCEPT}  # client -> web
    assert verdicts(1, 98) == {Verdict.ACCEPT}
    assert verdicts(98, 0) != {Verdict.ACCEPT}  # web -> web: not from a client
    assert verdicts(1, 3) != {Verdict.ACCEPT}  # client -> client: egress denied


def test_no_policy_renders_no_rule() -> None:
    plan = policy.plan(policy.compute([], [info("x", "a", "10.244.1.2")], {}))
    assert ipt_policy.chains(plan) == {
        ipt_policy.FILTER_CHAIN: [],
        ipt_policy.REJECT_CHAIN: ['-A NPOL-REJECT -m comment --comment "denied by network policy" '
                                  "-j REJECT --reject-with icmp-admin-prohibited"]}


def test_a_label_change_updates_set_elements_and_no_chain() -> None:
    world = pc.World()
    world.step(pc.CASES[2].steps[0])  # x/a from pod=b
    pods, nss = _world_objects(world)
    before = policy.plan(policy.compute(world.policies.values(), pods, nss))
    world.pod_labels["x/c"] = {"pod": "b"}
    pods, nss = _world_objects(world)
    after = policy.plan(policy.compute(world.policies.values(), pods, nss))
    assert ipt_policy.chains(before) == ipt_policy.chains(after)
    changed = {s for s in after.sets if after.sets[s] != before.sets.get(s)}
    assert len(changed) == 1
    text = ipt_policy.ipset_updates(after.sets, before.sets)
    assert text == f"add {changed.pop()} 10.244.1.12/32 -exist\n"
    old, new = nft_policy.render(before), nft_policy.render(after)
    script = nft_policy.update_script(new, old)
    assert script is not None and script.startswith("add element ip netplane-policy NPOL-S-")
    assert script.count("\n") == 1


def test_iptables_rules_read_as_the_specification_says() -> None:
    pods = [info("x", "a", "10.244.1.10", labels={"pod": "a"},
                 ports=(("serve-81-tcp", "TCP", 81),)),
            info("x", "b", "10.244.1.11", labels={"pod": "b"})]
    pol = pc.netpol("web", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
         "ports": [{"port": 80, "endPort": 90, "protocol": "TCP"}, {"port": "serve-81-tcp"}]}]})
    plan = policy.plan(policy.compute([pol], pods, {}))
    chains = ipt_policy.chains(plan)
    (pod_chain,) = plan.pod_chains.values()
    (pol_chain,) = plan.policy_chains.values()
    peers, targets = sorted(e.peer_set for e in pol_chain.entries)[0], \
        next(e.target_set for e in pol_chain.entries if e.target_set)
    assert chains[ipt_policy.FILTER_CHAIN] == [
        f'-A NPOL-FILTER -m comment --comment "x/a ingress" -d 10.244.1.10/32 -j {pod_chain.name}']
    assert chains[pod_chain.name] == [
        f'-A {pod_chain.name} -m comment --comment "x/a to itself" -s 10.244.1.10/32 -j RETURN',
        f'-A {pod_chain.name} -m comment --comment "x/web" -j {pol_chain.name}',
        f'-A {pod_chain.name} -m comment --comment "x/a is isolated for ingress by x/web" '
        "-m mark ! --mark 0x10000/0x10000 -j NPOL-REJECT",
        f'-A {pod_chain.name} -m comment --comment "x/a" -j MARK --set-xmark 0x0/0x10000']
    assert chains[pol_chain.name] == [
        f'-A {pol_chain.name} -m comment --comment "x/web ingress rule 0 on TCP 80-90" '
        f"-m set --match-set {peers} src -p tcp -m tcp --dport 80:90 "
        "-j MARK --set-xmark 0x10000/0x10000",
        f'-A {pol_chain.name} -m comment --comment "x/web ingress rule 0 on TCP 81" '
        f"-m set --match-set {peers} src -m set --match-set {targets} dst "
        "-p tcp -m tcp --dport 81 -j MARK --set-xmark 0x10000/0x10000"]
    assert plan.sets == {peers: frozenset({"10.244.1.11/32"}),
                         targets: frozenset({"10.244.1.10/32"})}


def test_nft_rules_read_as_the_specification_says() -> None:
    pods = [info("x", "a", "10.244.1.10", labels={"pod": "a"})]
    pol = pc.netpol("web", "x", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"protocol": "SCTP"}]}]})
    plan = policy.plan(policy.compute([pol], pods, {}))
    r = nft_policy.render(plan)
    (pod_chain,) = plan.pod_chains.values()
    (pol_chain,) = plan.policy_chains.values()
    (peers,) = plan.sets
    assert r.maps == {"pod-egress": {"10.244.1.10": pod_chain.name}, "pod-ingress": {}}
    assert r.chains[pol_chain.name] == [
        f'ip daddr @{peers} meta l4proto sctp meta mark set meta mark | 0x10000 '
        'comment "x/web egress rule 0 on SCTP any port, UDP 53"',
        f'ip daddr @{peers} udp dport 53 meta mark set meta mark | 0x10000 '
        'comment "x/web egress rule 0 on SCTP any port, UDP 53"']
    assert r.chains[pod_chain.name][0] == 'ip daddr 10.244.1.10 return comment "x/a to itself"'
    assert plan.sets[peers] == frozenset(
        {"10.0.0.0/9", "10.128.0.0/10", "10.192.0.0/11", "10.224.0.0/12", "10.240.0.0/14",
         "10.245.0.0/16", "10.246.0.0/15", "10.248.0.0/13"})
    script = nft_policy.full_script(r)
    assert script.startswith("add table ip netplane-policy\ndelete table ip netplane-policy\n")
    assert "type filter hook forward priority -5; policy accept;" in script


def test_comments_stay_within_what_iptables_takes_under_many_policies() -> None:
    pods = [info("x", "a", "10.244.1.10", labels={"pod": "a"})]
    pols = [pc.netpol(f"allow-with-a-long-name-{i}", "x", {"podSelector": {}, "ingress": [{}]})
            for i in range(40)]
    plan = policy.plan(policy.compute(pols, pods, {}))
    rules = [r for c in ipt_policy.chains(plan).values() for r in c]
    comments = [r.split('--comment "', 1)[1].split('"', 1)[0] for r in rules]
    assert max(map(len, comments)) == ipt_policy.MAX_COMMENT
    assert any(c.startswith("x/a is isolated for ingress by x/allow-with") and c.endswith("...")
               for c in comments)


def test_collapse_drops_networks_inside_others_and_keeps_neighbours_apart() -> None:
    assert policy.collapse(["10.0.0.0/24", "10.0.0.7/32", "10.0.1.1/32", "10.0.1.0/32",
                            "10.0.0.128/25"]) == frozenset(
        {"10.0.0.0/24", "10.0.1.0/32", "10.0.1.1/32"})
    assert policy.collapse(["10.0.0.5/24"]) == frozenset({"10.0.0.0/24"})
    assert policy.collapse([]) == frozenset()


def test_host_sets_are_plain_sets_in_nftables_and_networks_interval_sets() -> None:
    pods = [info("a", "web", "10.244.1.2", labels={"app": "web"}),
            info("a", "db", "10.244.1.3", labels={"app": "db"})]
    pol = {"metadata": {"namespace": "a", "name": "p"}, "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
                    {"from": [{"ipBlock": {"cidr": "172.16.0.0/24"}}]}]}}
    plan = policy.plan(policy.compute([pol], pods, {}))
    (hosts,) = [s for s, e in plan.sets.items() if e == {"10.244.1.3/32"}]
    (nets,) = [s for s, e in plan.sets.items() if e == {"172.16.0.0/24"}]
    assert plan.networks == {nets}
    script = nft_policy.full_script(nft_policy.render(plan))
    assert f"add set ip netplane-policy {hosts} {{ type ipv4_addr; }}" in script
    assert f"add element ip netplane-policy {hosts} {{ 10.244.1.3 }}" in script
    assert f"add set ip netplane-policy {nets} {{ type ipv4_addr; flags interval; }}" in script
    assert f"add element ip netplane-policy {nets} {{ 172.16.0.0/24 }}" in script


def test_rules_with_the_same_peers_share_one_set_in_any_policy() -> None:
    pods = [info("x", "a", "10.244.1.10", labels={"pod": "a"}),
            info("x", "b", "10.244.1.11", labels={"pod": "b"}),
            info("y", "b", "10.244.1.21", labels={"pod": "b"})]
    from_b = {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}
    from_ns_y = {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}
    pols = [pc.netpol("one", "x", {"podSelector": {}, "ingress": [from_b, from_ns_y]}),
            pc.netpol("two", "x", {"podSelector": {"matchLabels": {"pod": "a"}},
                                   "ingress": [from_ns_y, from_b]}),
            pc.netpol("three", "y", {"podSelector": {}, "ingress": [from_b, from_ns_y]})]
    plan = policy.plan(policy.compute(pols, pods, {"x": {"ns": "x"}, "y": {"ns": "y"}}))
    sets = {c.policy: [e.peer_set for e in c.entries] for c in plan.policy_chains.values()}
    assert sets["x/one"] == sets["x/two"][::-1]  # the same peers, the same sets
    # A pod selector alone looks into its policy's namespace: y/three's own set.
    assert sets["y/three"][0] != sets["x/one"][0] and sets["y/three"][1] == sets["x/one"][1]
    assert plan.sets[sets["x/one"][0]] == frozenset({"10.244.1.11/32"})
    assert plan.sets[sets["y/three"][0]] == frozenset({"10.244.1.21/32"})
    assert len(plan.sets) == 3


def test_restore_document_holds_only_what_changed() -> None:
    old = {"NPOL-FILTER": ["-A NPOL-FILTER x"], "NPOL-I-A": ["-A NPOL-I-A y"]}
    new = {"NPOL-FILTER": ["-A NPOL-FILTER x"], "NPOL-I-B": ["-A NPOL-I-B z"]}
    assert ipt_policy.restore_document(new, old) == (
        "*filter\n:NPOL-I-B - [0:0]\n:NPOL-I-A - [0:0]\n-A NPOL-I-B z\n-X NPOL-I-A\nCOMMIT\n")
    assert ipt_policy.restore_document(new, new) is None


IPSET_SAVE = """\
create NPOL-S-A hash:net family inet hashsize 64 maxelem 65536 bucketsize 12 initval 0x1
add NPOL-S-A 10.244.1.2
add NPOL-S-A 10.0.0.0/24
create NPOL-S-B hash:ip family inet hashsize 1024 maxelem 65536
add NPOL-S-B 10.244.1.3
create NPOL-S-C hash:net family inet hashsize 64 maxelem 65536
add NPOL-S-C 10.244.1.4 nomatch
create KUBE-OTHER hash:net family inet hashsize 64 maxelem 65536
add KUBE-OTHER 10.9.9.9
"""


def test_a_full_sync_reads_the_kernel_sets_and_writes_only_the_difference() -> None:
    kernel = ipt_policy.parse_ipset_save(IPSET_SAVE)
    assert kernel.sets == {"NPOL-S-A": frozenset({"10.244.1.2/32", "10.0.0.0/24"}),
                           "NPOL-S-B": frozenset({"10.244.1.3/32"}),
                           "NPOL-S-C": frozenset({"10.244.1.4/32"})}
    assert kernel.odd == {"NPOL-S-B", "NPOL-S-C"}  # a foreign type; an element with options
    new = {"NPOL-S-A": frozenset({"10.244.1.2/32", "10.244.1.9/32"}),
           "NPOL-S-B": frozenset({"10.244.1.3/32"}), "NPOL-S-D": frozenset({"10.1.0.0/16"})}
    text = ipt_policy.ipset_updates(new, kernel.sets, rebuild=kernel.odd)
    assert text.splitlines() == [
        "del NPOL-S-A 10.0.0.0/24 -exist", "add NPOL-S-A 10.244.1.9/32 -exist",
        "create NPOL-S-B hash:net family inet hashsize 64 -exist",
        "create NPOL-S-B-T hash:net family inet hashsize 64 -exist", "flush NPOL-S-B-T",
        "add NPOL-S-B-T 10.244.1.3/32", "swap NPOL-S-B-T NPOL-S-B", "destroy NPOL-S-B-T",
        "create NPOL-S-D hash:net family inet hashsize 64 -exist",
        "add NPOL-S-D 10.1.0.0/16 -exist"]
    assert ipt_policy.ipset_updates(kernel.sets, kernel.sets) == ""


# -- inputs and conntrack -------------------------------------------------------------


def test_inputs_ignore_changes_that_policy_does_not_read() -> None:
    inputs = PolicyInputs.empty()
    pod = pc.pod_object(pc.Pod("x", "a"), ip="10.244.1.10")
    assert inputs.pod(None, pod)
    again = {**pod, "metadata": {**pod["metadata"], "resourceVersion": "9",
                                 "annotations": {"a": "b"}}}
    assert not inputs.pod(pod, again)
    relabelled = {**pod, "metadata": {**pod["metadata"], "labels": {"pod": "z"}}}
    assert inputs.pod(again, relabelled)
    assert inputs.pod(relabelled, None) and not inputs.pod(None, None)
    ns = {"metadata": {"name": "x", "labels": {"a": "1"}}}
    assert inputs.namespace(None, ns) and not inputs.namespace(ns, ns)
    pol = pc.netpol("p", "x", {"podSelector": {}})
    assert inputs.policy(None, pol) and not inputs.policy(pol, pol)


CONNTRACK = """\
tcp      6 431999 ESTABLISHED src=10.244.2.11 dst=10.96.0.50 sport=40000 dport=80 \
src=10.244.1.10 dst=10.244.2.11 sport=8080 dport=40000 [ASSURED] mark=0 use=1
udp      17 29 src=10.244.1.12 dst=10.244.1.10 sport=5000 dport=80 [UNREPLIED] \
src=10.244.1.10 dst=10.244.1.12 sport=80 dport=5000 mark=0 use=1
icmp     1 29 src=10.244.1.1 dst=10.244.1.10 type=8 code=0 id=7 src=10.244.1.10 \
dst=10.244.1.1 type=0 code=0 id=7 mark=0 use=1
tcp      6 100 ESTABLISHED src=10.244.1.1 dst=10.244.1.10 sport=4000 dport=80 \
src=10.244.1.10 dst=10.244.1.1 sport=80 dport=4000 [ASSURED] mark=0 use=1
tcp      6 118 TIME_WAIT src=10.244.1.12 dst=10.244.1.10 sport=4001 dport=80 \
src=10.244.1.10 dst=10.244.1.12 sport=80 dport=4001 [ASSURED] mark=0 use=1
"""


def test_conntrack_entries_are_judged_where_they_really_go() -> None:
    conns = parse_conntrack(CONNTRACK)
    assert [(c.protocol, c.src, c.real_dst, c.real_dport) for c in conns] == [
        ("TCP", "10.244.2.11", "10.244.1.10", 8080), ("UDP", "10.244.1.12", "10.244.1.10", 80),
        ("TCP", "10.244.1.1", "10.244.1.10", 80)]
    pods = [info("x", "a", "10.244.1.10", labels={"pod": "a"}),
            info("x", "b", "10.244.2.11", "node-2", labels={"pod": "b"}),
            info("x", "c", "10.244.1.12", labels={"pod": "c"})]
    model = policy.compute([pc.XA_FROM_XB], pods, {}, local=lambda p: p.node == "node-1")
    cut = denied_connections(model, conns, frozenset({"10.244.1.1"}))
    assert [(c.src, c.dport) for c in cut] == [("10.244.1.12", 80)]


def test_policy_command_explains_a_pod() -> None:
    from netplane.cli.policycmd import describe_pod

    pods = [info("x", "a", "10.244.1.10", labels={"pod": "a"}),
            info("x", "b", "10.244.2.11", "node-2", labels={"pod": "b"})]
    model = policy.compute([pc.XA_FROM_XB, pc.netpol("deny-out", "x", {
        "podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"]})], pods, {})
    by_host = {f"{p.ip}/32": p.key for p in pods}
    assert describe_pod(model, pods[0], by_host) == [
        "x/a (10.244.1.10 on node-1)",
        "  ingress: isolated by x/allow-xb",
        "    x/allow-xb rule 0: from x/b on any port",
        "  egress: not isolated, everything allowed"]
    assert describe_pod(model, pods[1], by_host)[-2:] == [
        "  egress: isolated by x/deny-out", "    nothing is allowed"]
