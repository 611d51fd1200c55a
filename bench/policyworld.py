"""A synthetic cluster for the policy benchmark: pods, namespaces and
NetworkPolicies in realistic shapes, as API objects.

1,000 pods over 50 namespaces (20 each) and 5 nodes (every node holds a
fifth of every namespace); node N's pods are 10.244.N.2 and up. Pods carry
``app`` (10 values per namespace, two pods each) and ``tier`` labels and
the named container ports ``http`` (8080, 8081 on a few pods, so that the
name means two numbers) and ``metrics`` (9090). Namespaces carry ``team``
and ``env``; ``ns-0`` is the monitoring namespace.

Policies: one default-deny-ingress per namespace first, then allow rules
taken in turn from ``SHAPES`` and spread over the namespaces: from a pod
selector, from a namespace selector on a named port, namespace AND pod
selector with an ``endPort`` range, ``ipBlock`` with ``except``, the
monitoring namespace on the named port ``metrics``, and egress to a
namespace's databases plus DNS. The selectors' values vary with the
policy's index, so few policies share a selector. Pure; no kernel here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NODES = 5
NAMESPACES = 50
PODS = 1_000
APPS = 10
TIERS = ("web", "api", "db", "cache")
TEAMS = 10
MEASURED_NODE = "node-1"
Obj = dict


def node_name(n: int) -> str:
    return f"node-{n}"


@dataclass(frozen=True)
class PodSpec:
    namespace: str
    name: str
    node: str
    ip: str
    labels: dict[str, str] = field(hash=False)
    http_port: int = 8080


def pods(count: int = PODS, namespaces: int = NAMESPACES, nodes: int = NODES) -> list[PodSpec]:
    """Pod i: namespace i // per-namespace, node i % nodes (round robin, so
    that every node holds its share of every namespace)."""
    per_ns = max(1, count // namespaces)
    out, next_host = [], {n: 2 for n in range(1, nodes + 1)}
    for i in range(count):
        ns, j, node = i // per_ns, i % per_ns, i % nodes + 1
        host = next_host[node]
        next_host[node] += 1
        if host > 254:
            raise ValueError(f"more than 253 pods on {node_name(node)}: one /24 per node")
        out.append(PodSpec(f"ns-{ns}", f"pod-{j}", node_name(node), f"10.244.{node}.{host}",
                           {"app": f"app-{j % APPS}", "tier": TIERS[j % len(TIERS)]},
                           8081 if j % 7 == 6 else 8080))
    return out


def pod_object(p: PodSpec, labels: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": p.namespace, "name": p.name,
                         "labels": dict(p.labels if labels is None else labels)},
            "spec": {"nodeName": p.node, "containers": [{"name": "app", "ports": [
                {"name": "http", "containerPort": p.http_port, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": p.ip}}


def namespace_labels(count: int = NAMESPACES) -> dict[str, dict[str, str]]:
    out = {f"ns-{n}": {"team": f"team-{n % TEAMS}", "env": "prod" if n % 2 == 0 else "dev"}
           for n in range(count)}
    out["ns-0"]["purpose"] = "monitoring"
    return out


def namespace_object(name: str, labels: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {**labels,
                                                  "kubernetes.io/metadata.name": name}}}


def netpol(ns: str, name: str, spec: Obj) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def _labels(**kv: str) -> Obj:
    return {"matchLabels": dict(kv)}


def _from_pods(k: int) -> Obj:
    return {"podSelector": _labels(app=f"app-{k % APPS}"),
            "ingress": [{"from": [{"podSelector": _labels(app=f"app-{(k + 1) % APPS}")}],
                         "ports": [{"port": 8080, "protocol": "TCP"}]}]}


def _from_namespaces(k: int) -> Obj:
    return {"podSelector": _labels(tier=TIERS[k % len(TIERS)]),
            "ingress": [{"from": [{"namespaceSelector": _labels(team=f"team-{k % TEAMS}")}],
                         "ports": [{"port": "http"}]}]}


def _namespace_and_pods(k: int) -> Obj:
    return {"podSelector": _labels(app=f"app-{k % APPS}"),
            "ingress": [{"from": [{"namespaceSelector": _labels(env=("prod", "dev")[k % 2]),
                                   "podSelector": _labels(tier=TIERS[(k + 1) % len(TIERS)])}],
                         "ports": [{"port": 8080, "endPort": 8090, "protocol": "TCP"}]}]}


def _ip_block(k: int) -> Obj:
    return {"podSelector": _labels(tier="web"),
            "ingress": [{"from": [{"ipBlock": {"cidr": f"172.{16 + k % 16}.{k % 256}.0/24",
                                               "except": [f"172.{16 + k % 16}.{k % 256}.128/28"]}}],
                         "ports": [{"port": 443, "protocol": "TCP"}]}]}


def _monitoring(k: int) -> Obj:
    return {"podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": _labels(purpose="monitoring")}],
                         "ports": [{"port": "metrics"}]}]}


def _egress(k: int) -> Obj:
    return {"podSelector": _labels(app=f"app-{k % APPS}"), "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": _labels(team=f"team-{k % TEAMS}"),
                                "podSelector": _labels(tier="db")}],
                        "ports": [{"port": 5432, "protocol": "TCP"}]},
                       {"ports": [{"port": 53, "protocol": "UDP"},
                                  {"port": 53, "protocol": "TCP"}]}]}


SHAPES: tuple[tuple[str, Callable[[int], Obj]], ...] = (
    ("from-pods", _from_pods), ("from-namespaces", _from_namespaces),
    ("namespace-and-pods", _namespace_and_pods), ("ip-block", _ip_block),
    ("monitoring", _monitoring), ("egress", _egress))


def policies(count: int, namespaces: int = NAMESPACES) -> list[Obj]:
    """``count`` policies: default-deny-ingress per namespace (as many as
    fit), then allow rules of every shape in turn, over the namespaces."""
    out = [netpol(f"ns-{n}", "default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
           for n in range(min(count, namespaces))]
    for i in range(count - len(out)):
        shape, make = SHAPES[i % len(SHAPES)]
        k = i // len(SHAPES)
        out.append(netpol(f"ns-{i % namespaces}", f"{shape}-{i}", make(k + i)))
    return out


@dataclass
class World:
    """The objects a node's enforcer is fed."""

    pods: list[PodSpec]
    namespaces: dict[str, dict[str, str]]
    policies: list[Obj]

    @classmethod
    def build(cls, n_policies: int) -> World:
        return cls(pods(), namespace_labels(), policies(n_policies))

    def local(self, node: str = MEASURED_NODE) -> list[PodSpec]:
        return [p for p in self.pods if p.node == node]
