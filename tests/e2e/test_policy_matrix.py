"""NetworkPolicy probe matrix in a real lab, in iptables and nftables mode:
namespaces x, y, z with pods a, b, c over two nodes (``tests.policycases``),
every (from, to) pair probed on TCP 80, TCP 81 and UDP 80 after each step
of each case, compared with the case's truth table and printed as a table
when they differ. A policy takes a moment to reach every node: the matrix
is probed again until it matches, up to a deadline. The probes run in each
source pod's network namespace (what ``netplane exec`` would give them,
without its round trips through the API server, nine at a time); the last
tests go through ``netplane exec``, ``policy`` and ``trace`` as a user does.

Address plan: the lab's (pods 10.244.N.0/24 on node-N, DNS 10.96.0.10).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from netplane.api import meta, resources
from netplane.cluster.client import Client
from netplane.lab.paths import LabPaths
from netplane.net.netns import NsType, netns_path, setns
from tests import policycases as pc
from tests.e2e.conftest import Lab, wait_for

pytestmark = pytest.mark.e2e

Target = tuple[str, str, int]  # ip, protocol, port


def _probe(target: Target, out: dict[Target, bool]) -> None:
    ip, proto, port = target
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.connect((ip, port))
        if proto == "UDP":
            s.send(b"hi")
        else:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        out[target] = bool(s.recv(100))
    except OSError:
        out[target] = False
    finally:
        s.close()


def probe_row(netns: str, want: dict[Target, bool], timeout: float) -> dict[Target, bool]:
    """From inside ``netns`` (this thread enters it; the probe threads it
    starts inherit it), every target at once, again until the answers are
    ``want`` or ``timeout`` passes (a policy takes a moment to reach every
    node)."""
    setns(netns_path(netns), NsType.NET)
    deadline = time.monotonic() + timeout
    while True:
        out: dict[Target, bool] = {}
        threads = [threading.Thread(target=_probe, args=(t, out)) for t in want]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if out == want or time.monotonic() > deadline:
            return out
        time.sleep(0.1)

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
        _netns_of[the_lab.name] = pod_netns(the_lab)
        _ips_of[the_lab.name] = pod_ips(the_lab)
        yield the_lab
    finally:
        the_lab.netplane("lab", "down", check=False, timeout=120)


def _pods(lab: Lab) -> dict[str, dict]:
    return {f"{ns}/{meta.name(p)}": p for ns in pc.NAMESPACES for p in json.loads(
        lab.netplane("get", "pods", "-n", ns, "-o", "json").stdout)["items"]}


def pod_ips(lab: Lab) -> dict[str, str]:
    return {key: p["status"]["podIP"] for key, p in _pods(lab).items()}


def pod_netns(lab: Lab) -> dict[str, str]:
    return {key: f"{lab.paths.pod_netns_prefix}{meta.uid(p).replace('-', '')[:12]}"
            for key, p in _pods(lab).items()}


_netns_of: dict[str, dict[str, str]] = {}  # lab name -> pod key -> its netns
_ips_of: dict[str, dict[str, str]] = {}  # lab name -> pod key -> its address


def probe_matrix(lab: Lab, ips: dict[str, str],
                 want: dict[tuple[str, str, str, int], bool],
                 timeout: float) -> dict[tuple[str, str, str, int], bool]:
    """Every source pod probes every target, all sources side by side, each
    until its row is as wanted or ``timeout`` passes."""
    netns = _netns_of[lab.name]
    rows = {s: {(ips[d.key], proto, port): want[(s.key, d.key, proto, port)]
                for d in pc.ALL_PODS for proto, port in pc.PROBES} for s in pc.ALL_PODS}
    # A thread of its own for each source: entering a namespace is per thread.
    with ThreadPoolExecutor(len(pc.ALL_PODS)) as pool:
        futures = {s: pool.submit(probe_row, netns[s.key], rows[s], timeout) for s in rows}
        by_source = {s: f.result() for s, f in futures.items()}
    return {(s.key, d.key, proto, port): by_source[s][(ips[d.key], proto, port)]
            for s in pc.ALL_PODS for d in pc.ALL_PODS for proto, port in pc.PROBES}


def reset(lab: Lab) -> None:
    """No policy, and every label as the matrix starts."""
    async def go(c: Client) -> None:
        for ns in pc.NAMESPACES:
            for pol in (await c.list(resources.NETWORKPOLICY, ns))["items"]:
                await c.delete(resources.NETWORKPOLICY, meta.name(pol), ns)
            await c.update(resources.NAMESPACE, {
                **await c.get(resources.NAMESPACE, ns),
                "metadata": {**(await c.get(resources.NAMESPACE, ns))["metadata"],
                             "labels": pc.namespace_labels(ns)}})
        for p in pc.ALL_PODS:
            await c.patch(resources.POD, p.name,
                          {"metadata": {"labels": {"pod": p.name, "role": None}}}, p.namespace)
    lab.api(go)


def expect(lab: Lab, ips: dict[str, str], truth: pc.Truth, what: str,
           timeout: float = 30.0) -> None:
    want = pc.matrix(truth)
    got = probe_matrix(lab, ips, want, timeout)
    assert got == want, (f"{what}: the probes differ from the truth table "
                         f"(! marks a wrong cell):\n{pc.table(got, want)}")


@pytest.mark.parametrize("case", pc.CASES, ids=[c.name for c in pc.CASES])
def test_probe_matrix(lab: Lab, case: pc.Case) -> None:
    ips = _ips_of[lab.name]
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


DNS_QUERY = r"""
import socket, struct, sys
q = struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[1].split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect(("10.96.0.10", 53))
s.send(q)
r = s.recv(512)
print(".".join(map(str, r[-4:])) if struct.unpack(">H", r[6:8])[0] else "no answer")
"""


def test_default_deny_egress_blocks_dns_and_an_allowed_port_lets_it_through(lab: Lab) -> None:
    reset(lab)

    def resolves() -> bool:
        # One A query to the node-local server, so a denial shows at once
        # (the resolver library would retry every search domain first).
        out = lab.netplane("exec", "a", "-n", "x", "--", "python3", "-c", DNS_QUERY,
                           "kubernetes.default.svc.cluster.local", check=False)
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
        ips = _ips_of[lab.name]
        expect(lab, ips, pc.CASES[2].steps[0].truth, "x/a isolated")
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
