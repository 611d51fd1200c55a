"""The policy model's caches: ``ModelCache`` (incremental compute), the
``Planner`` and both renderers' chain memos. A cached answer must equal
the cold one after any sequence of changes, and must be the very object of
the last call where nothing it depends on changed.

Address plan: pods of node-N are 10.244.N.0/24 (host part = pod index + 2);
ipBlocks are drawn from 10.244.0.0/16 and 172.16.0.0/12, so that some hold
pods and some do not.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace

import pytest

from netplane.proxy import policy
from netplane.proxy.iptables import policy as ipt_policy
from netplane.proxy.nftables import policy as nft_policy
from netplane.proxy.policy import Direction, PodInfo

NAMESPACES = ("a", "b", "c", "d")
NODES = ("node-1", "node-2")
LOCAL = "node-1"
LABEL_VALUES = {"app": ("web", "db", "cache"), "tier": ("front", "back")}
PORT_NAMES = ("http", "metrics")


def local(p: PodInfo) -> bool:
    return p.node == LOCAL


# -- a random world and random changes to it ------------------------------------------


def random_labels(rng: random.Random) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, rng.choice(v)) for k, v in LABEL_VALUES.items()
                        if rng.random() < 0.8))


def random_ports(rng: random.Random) -> tuple[tuple[str, str, int], ...]:
    return tuple(sorted((n, "TCP", rng.choice((8080, 8081, 9090))) for n in PORT_NAMES
                        if rng.random() < 0.7))


def random_pod(rng: random.Random, i: int) -> PodInfo:
    node = rng.choice(NODES)
    return PodInfo(rng.choice(NAMESPACES), f"p{i}", f"10.244.{NODES.index(node) + 1}.{i + 2}",
                   node, random_labels(rng), random_ports(rng))


def random_selector(rng: random.Random) -> dict:
    roll = rng.random()
    if roll < 0.2:
        return {}
    key = rng.choice(tuple(LABEL_VALUES))
    if roll < 0.7:
        return {"matchLabels": {key: rng.choice(LABEL_VALUES[key])}}
    return {"matchExpressions": [{"key": key, "operator": rng.choice(("In", "NotIn")),
                                  "values": list(rng.sample(LABEL_VALUES[key], 1))}]}


def random_ns_selector(rng: random.Random) -> dict:
    if rng.random() < 0.3:
        return {}
    if rng.random() < 0.5:
        return {"matchLabels": {"kubernetes.io/metadata.name": rng.choice(NAMESPACES)}}
    return {"matchLabels": {"team": rng.choice(("red", "blue"))}}


def random_peer(rng: random.Random) -> dict:
    roll = rng.random()
    if roll < 0.35:
        return {"podSelector": random_selector(rng)}
    if roll < 0.6:
        return {"namespaceSelector": random_ns_selector(rng)}
    if roll < 0.85:
        return {"namespaceSelector": random_ns_selector(rng), "podSelector": random_selector(rng)}
    cidr = rng.choice(("10.244.1.0/24", "10.244.0.0/16", "172.16.0.0/24", "10.244.2.8/29"))
    return {"ipBlock": {"cidr": cidr, **({"except": ["10.244.1.0/28"]}
                                         if cidr == "10.244.0.0/16" else {})}}


def random_rule(rng: random.Random, peer_key: str) -> dict:
    rule: dict = {}
    if rng.random() < 0.8:
        rule[peer_key] = [random_peer(rng) for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.7:
        rule["ports"] = [rng.choice(({"port": 8080}, {"port": "http"}, {"port": "metrics"},
                                     {"port": 8080, "endPort": 8090}, {"protocol": "UDP"}))]
    return rule


def random_spec(rng: random.Random) -> dict:
    spec: dict = {"podSelector": random_selector(rng)}
    if rng.random() < 0.7:
        spec["ingress"] = [random_rule(rng, "from") for _ in range(rng.randint(0, 2))]
    if rng.random() < 0.4:
        spec["egress"] = [random_rule(rng, "to") for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.3:
        spec["policyTypes"] = rng.choice((["Ingress"], ["Egress"], ["Ingress", "Egress"]))
    return spec


class World:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_pod = 0
        self.pods: dict[str, PodInfo] = {}
        for _ in range(24):
            self.add_pod()
        self.namespaces = {ns: {"team": rng.choice(("red", "blue"))} for ns in NAMESPACES[:3]}
        self.policies: dict[str, dict] = {}
        for _ in range(10):
            self.add_policy()

    def add_pod(self) -> None:
        p = random_pod(self.rng, self.next_pod)
        self.next_pod += 1
        self.pods[f"{p.namespace}/{p.name}"] = p

    def add_policy(self) -> None:
        ns, n = self.rng.choice(NAMESPACES), len(self.policies) + self.rng.randint(0, 99)
        self.policies[f"{ns}/pol{n}"] = {"metadata": {"namespace": ns, "name": f"pol{n}"},
                                         "spec": random_spec(self.rng)}

    def change(self) -> str:
        """One random change; says what it was, for a failing test's message."""
        rng = self.rng
        kind = rng.choice(("relabel", "relabel", "ports", "move", "add-pod", "remove-pod",
                           "ns-labels", "ns-add-remove", "policy-add", "policy-remove",
                           "policy-edit", "policy-edit-in-place", "nothing"))
        key = rng.choice(sorted(self.pods)) if self.pods else None
        if kind == "relabel" and key:
            self.pods[key] = replace(self.pods[key], labels=random_labels(rng))
        elif kind == "ports" and key:
            self.pods[key] = replace(self.pods[key], ports=random_ports(rng))
        elif kind == "move" and key:
            node = rng.choice(NODES)
            host = self.pods[key].ip.rsplit(".", 1)[1]
            self.pods[key] = replace(self.pods[key], node=node,
                                     ip=f"10.244.{NODES.index(node) + 1}.{host}")
        elif kind == "add-pod":
            self.add_pod()
        elif kind == "remove-pod" and key:
            del self.pods[key]
        elif kind == "ns-labels":
            ns = rng.choice(NAMESPACES)
            self.namespaces[ns] = {"team": rng.choice(("red", "blue", "green"))}
        elif kind == "ns-add-remove":
            ns = rng.choice(NAMESPACES)
            if self.namespaces.pop(ns, None) is None:
                self.namespaces[ns] = {}
        elif kind == "policy-add":
            self.add_policy()
        elif kind == "policy-remove" and self.policies:
            del self.policies[rng.choice(sorted(self.policies))]
        elif kind == "policy-edit" and self.policies:
            pol = self.policies[rng.choice(sorted(self.policies))]
            self.policies[f"{pol['metadata']['namespace']}/{pol['metadata']['name']}"] = {
                **pol, "spec": random_spec(rng)}
        elif kind == "policy-edit-in-place" and self.policies:
            # The caller changes the very dict it handed in last time.
            pol = self.policies[rng.choice(sorted(self.policies))]
            pol["spec"]["podSelector"] = random_selector(rng)
        return kind

    def inputs(self) -> tuple[list[dict], list[PodInfo], dict[str, dict[str, str]]]:
        # A fresh order each time: the caches must not depend on it.
        pods = list(self.pods.values())
        self.rng.shuffle(pods)
        return list(self.policies.values()), pods, self.namespaces


# -- incremental equals cold -----------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_every_cache_equals_a_cold_computation_over_random_changes(seed: int) -> None:
    world = World(random.Random(seed))
    models, planner = policy.ModelCache(local=local), policy.Planner()
    ipt, nft = ipt_policy.Renderer(), nft_policy.Renderer()
    history = []
    for _ in range(60):
        history.append(world.change())
        policies, pods, namespaces = world.inputs()
        model = models.compute(policies, pods, namespaces)
        cold = policy.compute(copy.deepcopy(policies), pods, namespaces, local=local)
        assert model == cold, f"after {history}"
        plan, cold_plan = planner.plan(model), policy.plan(cold)
        assert plan == cold_plan, f"after {history}"
        # A set shared by several rules holds what each of them needs.
        for (key, direction), rules in model.rules.items():
            chain = plan.policy_chains[policy.policy_chain_name(key, direction)]
            for clause, entry in zip(rules.clauses, chain.entries, strict=True):
                if entry.peer_set is not None:
                    assert plan.sets[entry.peer_set] == clause.peers, f"after {history}"
        assert ipt.chains(plan) == ipt_policy.chains(cold_plan), f"after {history}"
        assert nft.render(plan) == nft_policy.render(cold_plan), f"after {history}"


def test_a_policy_given_twice_counts_as_compute_counts_it() -> None:
    pods = [PodInfo("a", "web", "10.244.1.2", LOCAL, (("app", "web"),))]
    pol = {"metadata": {"namespace": "a", "name": "p"}, "spec": {"podSelector": {}}}
    twice = [pol, {**pol, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}]
    models = policy.ModelCache(local=local)
    for _ in range(2):
        assert models.compute(twice, pods, {}) == policy.compute(twice, pods, {}, local=local)


def test_a_policy_changed_in_place_is_worked_out_again() -> None:
    pods = [PodInfo("a", "web", "10.244.1.2", LOCAL, (("app", "web"),)),
            PodInfo("a", "db", "10.244.1.3", LOCAL, (("app", "db"),))]
    pol = {"metadata": {"namespace": "a", "name": "p"},
           "spec": {"podSelector": {"matchLabels": {"app": "web"}}}}
    models = policy.ModelCache(local=local)
    assert set(models.compute([pol], pods, {}).pods) == {"10.244.1.2"}
    pol["spec"]["podSelector"]["matchLabels"]["app"] = "db"
    assert set(models.compute([pol], pods, {}).pods) == {"10.244.1.3"}


# -- and it does cache -----------------------------------------------------------------


def _world() -> tuple[list[dict], list[PodInfo]]:
    pods = [PodInfo("a", "web", "10.244.1.2", LOCAL, (("app", "web"),)),
            PodInfo("a", "db", "10.244.1.3", LOCAL, (("app", "db"),)),
            PodInfo("b", "client", "10.244.2.2", "node-2", (("app", "client"),)),
            PodInfo("b", "other", "10.244.2.3", "node-2", (("app", "other"),))]
    from_b = {"metadata": {"namespace": "a", "name": "from-b"}, "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "b"}}, "podSelector": {
            "matchLabels": {"app": "client"}}}]}]}}
    deny_db = {"metadata": {"namespace": "a", "name": "deny-db"}, "spec": {
        "podSelector": {"matchLabels": {"app": "db"}}}}
    return [from_b, deny_db], pods


def test_what_a_change_does_not_reach_is_the_same_object_as_before() -> None:
    policies, pods = _world()
    models, planner, renderer = policy.ModelCache(local=local), policy.Planner(), \
        ipt_policy.Renderer()
    model = models.compute(policies, pods, {})
    plan = planner.plan(model)
    chains = renderer.chains(plan)
    # b/other becomes a client: from-b's peers grow, deny-db is not reached.
    pods[3] = replace(pods[3], labels=(("app", "client"),))
    model2 = models.compute(policies, pods, {})
    key_from_b, key_deny = ("a/from-b", Direction.INGRESS), ("a/deny-db", Direction.INGRESS)
    assert model2.rules[key_deny] is model.rules[key_deny]
    assert model2.rules[key_from_b] is not model.rules[key_from_b]
    plan2 = planner.plan(model2)
    chains2 = renderer.chains(plan2)
    # Only a set changed: every pod and policy chain is the very list rendered before.
    assert all(chains2[c] is chains[c] for c in [*plan.pod_chains, *plan.policy_chains])
    assert {s for s in plan2.sets if plan2.sets[s] != plan.sets.get(s)} == \
        {e.peer_set for c in plan2.policy_chains.values() if c.policy == "a/from-b"
         for e in c.entries}


def test_a_namespace_relabelled_reaches_only_policies_that_choose_namespaces() -> None:
    policies, pods = _world()
    policies[0]["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = {
        "matchLabels": {"team": "blue"}}
    models = policy.ModelCache(local=local)
    model = models.compute(policies, pods, {"b": {"team": "red"}})
    assert model.rules[("a/from-b", Direction.INGRESS)].clauses[0].peers == frozenset()
    model2 = models.compute(policies, pods, {"b": {"team": "blue"}})
    assert model2.rules[("a/deny-db", Direction.INGRESS)] is \
        model.rules[("a/deny-db", Direction.INGRESS)]
    assert model2.rules[("a/from-b", Direction.INGRESS)].clauses[0].peers == \
        frozenset({"10.244.2.2/32"})
