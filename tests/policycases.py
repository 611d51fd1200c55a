"""The network-policy probe matrix, as the Kubernetes e2e suite's (KEP-1611,
Cyclonus) sets it up: namespaces x, y, z, each with pods a, b, c; a and c
on node-1, b on node-2. Every pod serves TCP 80 and 81 and UDP 80 (and 81)
under the named ports ``serve-80-tcp`` etc. Each case is the policies to
apply and the truth it must give for every (from, to, protocol, port),
written from the specification, not from netplane's model. The unit tests
judge the cases on rendered rules, the e2e tests with real packets.

Address plan (the unit tests'; the lab allocates its own): node-1's pods
are 10.244.1.0/24, node-2's 10.244.2.0/24; pod P of namespace N has host
part 10 * (index of N, from 1) + index of P (a=0, b=1, c=2).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
NODE_OF = {"a": "node-1", "b": "node-2", "c": "node-1"}
PROBES = (("TCP", 80), ("TCP", 81), ("UDP", 80))
SERVED = (("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81))


def port_name(protocol: str, port: int) -> str:
    return f"serve-{port}-{protocol.lower()}"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def node(self) -> str:
        return NODE_OF[self.name]


ALL_PODS = tuple(Pod(ns, p) for ns in NAMESPACES for p in PODS)


def unit_ip(pod: Pod) -> str:
    node = 1 if pod.node == "node-1" else 2
    return f"10.244.{node}.{10 * (NAMESPACES.index(pod.namespace) + 1) + PODS.index(pod.name)}"


def pod_object(pod: Pod, *, ip: str | None = None, labels: dict[str, str] | None = None,
               image: str = "netplane/echo") -> dict:
    ports = [{"name": port_name(proto, port), "containerPort": port, "protocol": proto}
             for proto, port in SERVED]
    obj: dict = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": pod.name, "namespace": pod.namespace,
                              "labels": labels if labels is not None else {"pod": pod.name}},
                 "spec": {"nodeName": pod.node,
                          "containers": [{"name": "serve", "image": image, "ports": ports}]}}
    if ip is not None:
        obj["status"] = {"phase": "Running", "podIP": ip}
    return obj


def namespace_labels(ns: str) -> dict[str, str]:
    return {"ns": ns}


def netpol(name: str, ns: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


Truth = Callable[[Pod, Pod, str, int], bool]


@dataclass
class Step:
    """Policies in force (by name: applied or replaced), label changes, and
    what must then hold."""

    policies: list[dict]
    truth: Truth
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # pod key -> labels
    ns_labels: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Case:
    name: str
    steps: list[Step]


def _in(pod: Pod, *keys: str) -> bool:
    return pod.key in keys


ALLOW_ALL: Truth = lambda s, d, proto, port: True  # noqa: E731

XA_FROM_XB = netpol("allow-xb", "x", {
    "podSelector": {"matchLabels": {"pod": "a"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})


def _selfish(truth: Truth) -> Truth:
    # A pod may always reach itself.
    return lambda s, d, proto, port: s == d or truth(s, d, proto, port)


CASES: list[Case] = [
    Case("default deny ingress", [Step(
        [netpol("deny-all", "x", {"podSelector": {}, "policyTypes": ["Ingress"]})],
        _selfish(lambda s, d, proto, port: d.namespace != "x"))]),
    Case("default deny egress", [Step(
        [netpol("deny-all", "x", {"podSelector": {}, "policyTypes": ["Egress"]})],
        _selfish(lambda s, d, proto, port: s.namespace != "x"))]),
    Case("allow from a pod selector", [Step(
        [XA_FROM_XB],
        _selfish(lambda s, d, proto, port: d.key != "x/a" or s.key == "x/b"))]),
    Case("allow from a namespace selector", [Step(
        [netpol("allow-y", "x", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})],
        _selfish(lambda s, d, proto, port: d.key != "x/a" or s.namespace == "y"))]),
    Case("namespace and pod selector", [Step(
        [netpol("allow-yc", "x", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                   "podSelector": {"matchLabels": {"pod": "c"}}}]}]})],
        _selfish(lambda s, d, proto, port: d.key != "x/a" or s.key == "y/c"))]),
    Case("ipBlock with except", [Step(
        [netpol("allow-block", "x", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16",
                                               "except": ["10.244.2.0/24"]}}]}]})],
        _selfish(lambda s, d, proto, port: d.key != "x/a" or s.node == "node-1"))]),
    Case("named port", [Step(
        [netpol("allow-81", "x", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"ports": [{"port": "serve-81-tcp", "protocol": "TCP"}]}]})],
        _selfish(lambda s, d, proto, port: d.key != "x/a" or (proto, port) == ("TCP", 81)))]),
    Case("endPort range", [Step(
        [netpol("allow-range", "x", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"ports": [{"port": 79, "endPort": 80, "protocol": "TCP"}]}]})],
        _selfish(lambda s, d, proto, port: d.key != "x/a" or (proto, port) == ("TCP", 80)))]),
    Case("egress to one namespace plus DNS", [Step(
        [netpol("to-y", "x", {
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]},
                       {"ports": [{"port": 53, "protocol": "UDP"},
                                  {"port": 53, "protocol": "TCP"}]}]})],
        _selfish(lambda s, d, proto, port: s.namespace != "x" or d.namespace == "y"))]),
    # Egress rules and no policyTypes: isolated both ways (the API server's default).
    Case("egress rules without policyTypes isolate ingress too", [Step(
        [netpol("to-y", "x", {
            "podSelector": {},
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})],
        _selfish(lambda s, d, proto, port: d.namespace != "x"
                 and (s.namespace != "x" or d.namespace == "y")))]),
    Case("policies are a union", [Step(
        [netpol("deny-all", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}),
         netpol("allow-all-to-a", "x", {"podSelector": {"matchLabels": {"pod": "a"}},
                                        "ingress": [{}]})],
        _selfish(lambda s, d, proto, port: d.namespace != "x" or d.name == "a"))]),
    Case("policy updated in place", [
        Step([XA_FROM_XB],
             _selfish(lambda s, d, proto, port: d.key != "x/a" or s.key == "x/b")),
        Step([netpol("allow-xb", "x", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}],
                         "ports": [{"port": 80, "protocol": "TCP"}]}]})],
             _selfish(lambda s, d, proto, port: d.key != "x/a"
                      or (s.key == "x/c" and (proto, port) == ("TCP", 80))))]),
    Case("pod labels changed under a live policy", [
        Step([netpol("allow-clients", "x", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {},
                                   "podSelector": {"matchLabels": {"role": "client"}}}]}]})],
             _selfish(lambda s, d, proto, port: d.key != "x/a")),
        Step([], _selfish(lambda s, d, proto, port: d.key != "x/a" or s.key == "y/c"),
             pod_labels={"y/c": {"pod": "c", "role": "client"}})]),
    Case("namespace labels changed", [
        Step([netpol("allow-blue", "x", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]})],
             _selfish(lambda s, d, proto, port: d.key != "x/a")),
        Step([], _selfish(lambda s, d, proto, port: d.key != "x/a" or s.namespace == "z"),
             ns_labels={"z": {"ns": "z", "team": "blue"}})]),
]


class World:
    """Objects of the matrix as a case goes on: policies by key, labels."""

    def __init__(self) -> None:
        self.policies: dict[str, dict] = {}
        self.pod_labels = {p.key: {"pod": p.name} for p in ALL_PODS}
        self.ns_labels = {ns: namespace_labels(ns) for ns in NAMESPACES}

    def step(self, step: Step) -> None:
        for pol in step.policies:
            meta = pol["metadata"]
            self.policies[f"{meta['namespace']}/{meta['name']}"] = copy.deepcopy(pol)
        self.pod_labels.update(step.pod_labels)
        self.ns_labels.update(step.ns_labels)


def matrix(judge: Callable[[Pod, Pod, str, int], bool]) -> dict[tuple[str, str, str, int], bool]:
    return {(s.key, d.key, proto, port): judge(s, d, proto, port)
            for s in ALL_PODS for d in ALL_PODS for proto, port in PROBES}


def table(got: dict[tuple[str, str, str, int], bool],
          want: dict[tuple[str, str, str, int], bool]) -> str:
    """The matrix as the e2e suite prints it: rows from, columns to; per
    cell one mark per probe (. allowed, X denied), ! where it is wrong."""
    head = "from\\to " + " ".join(f"{d.key:>{2 * len(PROBES) + 1}}" for d in ALL_PODS)
    lines = [f"probes per cell: {', '.join(f'{p}/{n}' for p, n in PROBES)}", head]
    for s in ALL_PODS:
        cells = []
        for d in ALL_PODS:
            marks = ""
            for proto, port in PROBES:
                k = (s.key, d.key, proto, port)
                mark = "." if got[k] else "X"
                marks += mark + ("!" if got[k] != want[k] else " ")
            cells.append(f"{marks:>{2 * len(PROBES) + 1}}")
        lines.append(f"{s.key:>7} " + " ".join(cells))
    return "\n".join(lines)
