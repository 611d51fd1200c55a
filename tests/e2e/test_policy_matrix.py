"""NetworkPolicy probe matrix in a real lab, in iptables and nftables mode:
namespaces x, y, z with pods a, b, c over two nodes (``tests.policycases``),
every (from, to) pair probed on TCP 80, TCP 81 and UDP 80 after each step
of each case, compared with the case's truth table and printed as a table
when they differ. A policy takes a moment to reach every node: the matrix
is probed again until it matches, up to a deadline.

Address plan: the lab's (pods 10.244.N.0/24 on node-N, DNS 10.96.0.10).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from netplane.api import meta, resources
from netplane.lab.paths import LabPaths
from tests import policycases as pc
from tests.e2e.conftest import Lab, wait_for

pytestmark = pytest.mark.e2e

# Probes every target at once; prints one JSON object: "ip proto port" -> answered.
PROBER = r"""
import json, socket, sys, threading
targets, out = json.loads(sys.argv[1]), {}
def probe(ip, proto, port):
    kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(1.0)
    try:
        s.connect((ip, port))
        if proto == "UDP":
            s.send(b"hi")
        else:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        out[f"{ip} {proto} {port}"] = bool(s.recv(100))
    except OSError:
        out[f"{ip} {proto} {port}"] = False
    finally:
        s.close()
threads = [threading.Thread(target=probe, args=t) for t in targets]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"""


def pod_manifest(p: pc.Pod, labels: dict[str, str]) -> dict:
    # Two echo servers: each answers TCP and UDP on its port.
    containers = []
    for port in (80, 81):
        containers.append({
            "name": f"serve-{port}", "image": "netplane/echo",
            "env": [{"name": "PORT", "value": str(port)}],
            "ports": [{"name": pc.port_name(proto, port), "containerPort": port,
                       "protocol": proto} for proto in ("TCP", "UDP")]})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.namespace, "labels": labels},
            "spec": {"nodeName": p.node, "containers": containers,
                     "terminationGracePeriodSeconds": 0}}


def namespace_manifest(ns: str, labels: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}


def apply(lab: Lab, *objs: dict) -> None:
    lab.netplane("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                        "items": list(objs)}))


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates network namespaces")
    the_lab = Lab(LabPaths(f"pol{uuid.uuid4().hex[:8]}"))
    try:
        the_lab.netplane("lab", "up", "--nodes", "2", "--proxy-mode", request.param,
                         timeout=120)
        apply(the_lab, *(namespace_manifest(ns, pc.namespace_labels(ns))
                         for ns in pc.NAMESPACES))
        apply(the_lab, *(pod_manifest(p, {"pod": p.name}) for p in pc.ALL_PODS))

        def ready() -> bool:
            pods = [p for ns in pc.NAMESPACES for p in json.loads(the_lab.netplane(
                "get", "pods", "-n", ns, "-o", "json").stdout)["items"]]
            return len(pods) == len(pc.ALL_PODS) and all(meta.pod_ready(p) for p in pods)
        wait_for("the matrix pods to be ready", ready, timeout=120)
        yield the_lab
    finally:
        the_lab.netplane("lab", "down", check=False, timeout=120)


def pod_ips(lab: Lab) -> dict[str, str]:
    out = {}
    for ns in pc.NAMESPACES:
        for p in json.loads(lab.netplane("get", "pods", "-n", ns, "-o", "json").stdout)["items"]:
            out[f"{ns}/{meta.name(p)}"] = p["status"]["podIP"]
    return out


def probe_matrix(lab: Lab, ips: dict[str, str]) -> dict[tuple[str, str, str, int], bool]:
    targets = [(ips[d.key], proto, port) for d in pc.ALL_PODS for proto, port in pc.PROBES]
    got = {}
    for s in pc.ALL_PODS:
        out = lab.netplane("exec", s.name, "-n", s.namespace, "--", "python3", "-c", PROBER,
                           json.dumps(targets), timeout=60)
        answers = json.loads(out.stdout)
        for d in pc.ALL_PODS:
            for proto, port in pc.PROBES:
                got[(s.key, d.key, proto, port)] = answers[f"{ips[d.key]} {proto} {port}"]
    return got


def reset(lab: Lab) -> None:
    for ns in pc.NAMESPACES:
        lab.netplane("delete", "networkpolicy", "--all", "-n", ns)
    apply(lab, *(namespace_manifest(ns, pc.namespace_labels(ns)) for ns in pc.NAMESPACES))
    for p in pc.ALL_PODS:
        lab.api(lambda c, p=p: c.patch(resources.POD, p.name,
                                       {"metadata": {"labels": {"pod": p.name, "role": None}}},
                                       p.namespace))


def expect(lab: Lab, ips: dict[str, str], truth: pc.Truth, what: str,
           timeout: float = 30.0) -> None:
    want = pc.matrix(truth)
    deadline = time.monotonic() + timeout
    while True:
        got = probe_matrix(lab, ips)
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the probes differ from the truth table "
                                 f"(! marks a wrong cell):\n{pc.table(got, want)}")


@pytest.mark.parametrize("case", pc.CASES, ids=[c.name for c in pc.CASES])
def test_probe_matrix(lab: Lab, case: pc.Case) -> None:
    ips = pod_ips(lab)
    reset(lab)
    expect(lab, ips, pc.ALLOW_ALL, "with no policy")
    try:
        for i, step in enumerate(case.steps):
            if step.policies:
                apply(lab, *step.policies)
            for key, labels in step.pod_labels.items():
                ns, name = key.split("/")
                lab.api(lambda c, n=name, s=ns, lb=labels: c.patch(
                    resources.POD, n, {"metadata": {"labels": lb}}, s))
            if step.ns_labels:
                apply(lab, *(namespace_manifest(ns, lb) for ns, lb in step.ns_labels.items()))
            expect(lab, ips, step.truth, f"{case.name}, step {i}")
    finally:
        reset(lab)


def test_default_deny_egress_blocks_dns_and_an_allowed_port_lets_it_through(lab: Lab) -> None:
    reset(lab)

    def resolves() -> bool:
        out = lab.netplane("exec", "a", "-n", "x", "--", "python3", "-c",
                           "import socket; socket.setdefaulttimeout(2); "
                           "print(socket.gethostbyname('kubernetes.default.svc.cluster.local'))",
                           check=False)
        return out.returncode == 0 and out.stdout.strip() == "10.96.0.1"
    try:
        wait_for("DNS with no policy", resolves)
        apply(lab, pc.netpol("deny-egress", "x", {"podSelector": {}, "policyTypes": ["Egress"]}))
        wait_for("DNS to fail under default-deny egress", lambda: not resolves())
        apply(lab, pc.netpol("dns", "x", {"podSelector": {}, "policyTypes": ["Egress"],
                                          "egress": [{"ports": [{"port": 53, "protocol": "UDP"},
                                                                {"port": 53,
                                                                 "protocol": "TCP"}]}]}))
        wait_for("DNS allowed by port 53", resolves)
    finally:
        reset(lab)


def test_policy_command_and_metrics_show_what_the_nodes_enforce(lab: Lab) -> None:
    reset(lab)
    try:
        apply(lab, pc.XA_FROM_XB)
        out = lab.netplane("policy", "a", "-n", "x").stdout
        assert "ingress: isolated by x/allow-xb" in out
        assert "x/allow-xb rule 0: from x/b on any port" in out
        table = lab.netplane("policy", "-A").stdout
        assert any(line.split()[:1] == ["x/a"] and "x/allow-xb" in line
                   for line in table.splitlines())
        # x/a lives on node-1: its agent isolates it and counts what it rejects.
        ips = pod_ips(lab)
        wait_for("x/a isolated on node-1", lambda: not probe_matrix(lab, ips)[
            ("y/b", "x/a", "TCP", 80)])
        # y/b is on node-2: the trace reads both nodes' kernels.
        trace = lab.netplane("trace", "--from", "b", "-n", "y", f"{ips['x/a']}:80").stdout
        assert (f"to x/a ({ips['x/a']}:80): dropped: x/a is isolated for ingress by "
                "x/allow-xb; no policy allows from y/b on TCP 80") in trace, trace
        assert "kernel on node-1: REJECT" in trace and "kernel on node-2: ACCEPT" in trace
        allowed = lab.netplane("trace", "--from", "b", "-n", "x", f"{ips['x/a']}:80").stdout
        assert "allowed: ingress by x/allow-xb rule 0" in allowed, allowed
        metrics = lab.netplane("lab", "exec", "control", "--", "curl", "-sS", "--max-time", "3",
                               "http://192.168.56.11:10249/metrics").stdout
        assert "netplane_policy_isolated_pods 1" in metrics, metrics[-2000:]
        dropped = [line for line in metrics.splitlines()
                   if line.startswith("netplane_policy_dropped_packets_total ")]
        assert dropped and int(dropped[0].split()[1]) > 0
    finally:
        reset(lab)
