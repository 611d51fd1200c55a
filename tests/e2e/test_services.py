"""Every Service type observed with real traffic in a lab, in iptables and
in nftables mode. The echo pods answer with who they are and the source
address they saw, so each answer shows where a connection landed and
whether the proxy masqueraded it.

Address plan: underlay 192.168.56.0/24 (control .10 stands in for a host
outside the cluster), node-N .1N, LoadBalancer pool .200-.250, pods
10.244.0.0/16, NodePort 30080 for web-np."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from netplane.api import meta
from netplane.lab.paths import LabPaths
from tests.e2e.conftest import EXAMPLES, Lab, wait_for

pytestmark = pytest.mark.e2e
MANIFESTS = Path(__file__).parent / "manifests"
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40123))
s.settimeout(1.0)
for _ in range(int(sys.argv[3])):
    s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recv(2048).decode().split()[0], flush=True)
    except socket.timeout:
        print("timeout", flush=True)
"""


def answers(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split())


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates network namespaces")
    the_lab = Lab(LabPaths(f"svc{uuid.uuid4().hex[:8]}"))
    try:
        the_lab.netplane("lab", "up", "--nodes", "2", "--proxy-mode", request.param,
                         timeout=120)
        the_lab.netplane("apply", "-f", str(EXAMPLES / "web.yaml"),
                         "-f", str(EXAMPLES / "client.yaml"),
                         "-f", str(MANIFESTS / "services.yaml"))

        def ready() -> bool:
            pods = json.loads(the_lab.netplane("get", "pods", "-o", "json").stdout)["items"]
            return len(pods) == 4 and all(meta.pod_ready(p) for p in pods)
        wait_for("pods ready", ready)
        wait_for("LoadBalancer addresses", lambda: all(
            _svc(the_lab, n)["status"].get("loadBalancer", {}).get("ingress")
            for n in ("web-lb", "web-fenced", "client-lb")))
        wait_for("every node's proxy to program every Service", lambda: programmed(the_lab))
        yield the_lab
    finally:
        the_lab.netplane("lab", "down", check=False, timeout=120)


SERVED = ("web-np", "web-lb", "web-fenced", "web-sticky", "web-local", "web-udp", "client-lb")
LOAD_BALANCERS = ("web-lb", "web-fenced", "client-lb")


def programmed(lab: Lab) -> bool:
    """Whether each worker's proxy has synced every Service of the manifests,
    with its endpoints and LoadBalancer address (``netplane routes`` shows
    what a node applied, not what it was sent)."""
    wanted = {n: lb_ip(lab, n) for n in LOAD_BALANCERS}
    for node in ("node-1", "node-2"):
        blocks: dict[str, list[str]] = {}
        for line in lab.netplane("routes", "--node", node).stdout.splitlines():
            if line.startswith("  default/"):
                name = line.split()[0].split("/", 1)[1].split(":", 1)[0]
                blocks.setdefault(name, [])
                current = blocks[name]
            elif line.startswith("      ") and blocks:
                current.append(line.strip())
        for name in SERVED:
            lines = blocks.get(name)
            if not lines or any(ln.startswith("-> no endpoints") for ln in lines):
                return False
            if name in wanted and not any(ln.startswith(f"LoadBalancer {wanted[name]}:")
                                          for ln in lines):
                return False
    return True


def _svc(lab: Lab, name: str) -> dict:
    return dict(json.loads(lab.netplane("get", "svc", name, "-o", "json").stdout))


def _pods(lab: Lab) -> dict[str, dict]:
    items = json.loads(lab.netplane("get", "pods", "-o", "json").stdout)["items"]
    return {meta.name(p): p for p in items}


def curl_from_node(lab: Lab, node: str, url: str, timeout: int = 3) -> tuple[int, str]:
    out = lab.netplane("lab", "exec", node, "--", "curl", "-sS", "--max-time", str(timeout),
                       url, check=False)
    return out.returncode, out.stdout


def lb_ip(lab: Lab, name: str) -> str:
    return str(_svc(lab, name)["status"]["loadBalancer"]["ingress"][0]["ip"])


def test_cluster_ip_keeps_the_pod_source_and_balances(lab: Lab) -> None:
    client_ip = _pods(lab)["client"]["status"]["podIP"]
    seen = Counter()
    for _ in range(30):
        out = lab.curl("client", "http://web")
        assert out.returncode == 0, out.stderr
        a = answers(out.stdout)
        assert a["client"] == client_ip
        seen[a["pod"]] += 1
    assert len(seen) >= 2


def _pod_gateways(lab: Lab) -> dict[str, str]:
    """Node name -> the address a node's pod bridge has (first of its podCIDR)."""
    nodes = json.loads(lab.netplane("get", "nodes", "-o", "json").stdout)["items"]
    return {meta.name(n): str(ipaddress.ip_network(n["spec"]["podCIDR"])[1])
            for n in nodes if n["spec"].get("podCIDR")}


def test_node_port_from_outside_every_node_and_loopback(lab: Lab) -> None:
    gateways = _pod_gateways(lab)
    for node, node_ip in (("node-1", "192.168.56.11"), ("node-2", "192.168.56.12")):
        # Cluster policy: masqueraded to the address of the node the request
        # entered by, its underlay address toward a pod on the other node or
        # its pod bridge's toward its own pods; never the client's .10.
        seen: set[str] = set()
        for _ in range(10):
            code, body = curl_from_node(lab, "control", f"http://{node_ip}:30080")
            assert code == 0 and body.startswith("pod=web-"), body
            seen.add(answers(body)["client"])
        assert seen <= {node_ip, gateways[node]}, (node, seen)
    code, body = curl_from_node(lab, "node-1", "http://127.0.0.1:30080")
    assert code == 0 and body.startswith("pod=web-")
    code, body = curl_from_node(lab, "node-2", "http://192.168.56.11:30080")
    assert code == 0 and body.startswith("pod=web-")


def test_load_balancer_local_policy_keeps_the_client_address(lab: Lab) -> None:
    ip = lb_ip(lab, "web-lb")
    nodes = set()
    for _ in range(10):
        code, body = curl_from_node(lab, "control", f"http://{ip}")
        assert code == 0, body
        a = answers(body)
        assert a["client"] == "192.168.56.10"
        nodes.add(a["node"])
    assert len(nodes) == 1  # only the announcing node's own endpoints


def test_load_balancer_source_ranges(lab: Lab) -> None:
    ip = lb_ip(lab, "web-fenced")  # loadBalancerSourceRanges: [10.0.0.0/8]
    # A source inside the range (a pod, 10.244.x) reaches the fenced address.
    out = lab.curl("client", f"http://{ip}")
    assert out.returncode == 0 and out.stdout.startswith("pod=web-"), out.stderr
    # One outside it (the control node, 192.168.56.10) is dropped, not refused:
    # curl gives up waiting (28) instead of being turned away (7).
    code, _ = curl_from_node(lab, "control", f"http://{ip}", timeout=2)
    assert code == 28, code
    out = lab.curl("client", "http://web-fenced")  # the ClusterIP is not fenced
    assert out.returncode == 0


def test_session_affinity_sticks(lab: Lab) -> None:
    pods = {answers(lab.curl("client", "http://web-sticky").stdout)["pod"] for _ in range(15)}
    assert len(pods) == 1


def test_internal_traffic_policy_local(lab: Lab) -> None:
    nodes = {answers(lab.curl("client", "http://web-local").stdout)["node"] for _ in range(10)}
    assert nodes == {"node-2"}  # the client's node


def test_hairpin_a_pod_reaches_itself_through_its_service(lab: Lab) -> None:
    pod = next(n for n in _pods(lab) if n.startswith("web-"))
    selves = 0
    for _ in range(40):  # (2/3)^40: never all elsewhere by chance
        out = lab.netplane("exec", pod, "--", "curl", "-sS", "--max-time", "3",
                           "http://web", check=False)
        assert out.returncode == 0, out.stderr
        selves += answers(out.stdout)["pod"] == pod
    assert selves >= 1


def test_no_endpoints_is_refused_at_once(lab: Lab) -> None:
    # "At once" is the kind of failure: refused (7) rather than a timeout (28).
    out = lab.curl("client", "http://nobody")
    assert out.returncode == 7, (out.returncode, out.stderr)  # connection refused


def test_udp_service_and_conntrack_cleanup(lab: Lab) -> None:
    ip = _svc(lab, "web-udp")["spec"]["clusterIP"]

    def ask(n: int) -> list[str]:
        out = lab.netplane("exec", "client", "--", "python3", "-c", UDP_CLIENT, ip, "9000",
                           str(n))
        return out.stdout.split()

    first = ask(3)
    assert first and all(a.startswith("pod=web-") for a in first)
    assert len(set(first)) == 1  # one source port: one conntrack entry, one backend
    victim = first[0].split("=", 1)[1]
    lab.netplane("delete", "pod", victim)
    wait_for("the pod to go", lambda: victim not in _pods(lab))
    wait_for("the same client moved to a live pod", lambda: (
        (got := ask(2)) and all(a.startswith("pod=web-") and victim not in a for a in got)),
        timeout=20)
    wait_for("the replacement", lambda: sum(
        meta.pod_ready(p) for n, p in _pods(lab).items() if n.startswith("web-")) == 3)


def test_flushed_rules_come_back(lab: Lab) -> None:
    routes = lab.netplane("routes", "web", "--node", "node-2").stdout
    mode = routes.split("mode ", 1)[1].split(",", 1)[0]
    if mode == "iptables":
        lab.netplane("lab", "exec", "node-2", "--", "iptables", "-t", "nat", "-F")
    else:
        lab.netplane("lab", "exec", "node-2", "--", "nft", "flush", "table", "ip", "netplane")
    wait_for("rules restored", lambda: lab.curl("client", "http://web").returncode == 0,
             timeout=15)
    wait_for("kernel state to match", lambda: "kernel matches: yes" in lab.netplane(
        "routes", "web", "--node", "node-2").stdout, timeout=10)


def test_routes_and_metrics(lab: Lab) -> None:
    routes = lab.netplane("routes", "web-lb").stdout
    assert "LoadBalancer 192.168.56.2" in routes and "externalTrafficPolicy Local" in routes
    assert "p=" in routes
    code, body = curl_from_node(lab, "control", "http://192.168.56.11:10249/metrics")
    assert code == 0
    assert "netplane_proxy_sync_proxy_rules_duration_seconds_bucket" in body
    assert "netplane_proxy_network_programming_duration_seconds_count" in body
    assert "netplane_dns_" in body


def test_health_check_node_port_answers_by_local_endpoints(lab: Lab) -> None:
    port = _svc(lab, "client-lb")["spec"]["healthCheckNodePort"]
    codes = {}
    for node, ip in (("node-1", "192.168.56.11"), ("node-2", "192.168.56.12")):
        out = lab.netplane("lab", "exec", "control", "--", "curl", "-s", "-o", "/dev/null",
                           "-w", "%{http_code}", "--max-time", "3", f"http://{ip}:{port}/healthz")
        codes[node] = out.stdout
    assert codes == {"node-1": "503", "node-2": "200"}


def test_trace_walks_the_kernel_rules(lab: Lab) -> None:
    out = lab.netplane("trace", "--from", "client", "web").stdout
    assert "1. DNS (in the pod, cluster DNS): web -> web.default.svc.cluster.local" in out
    dnats = [line for line in out.splitlines() if "DNAT to 10.244." in line]
    assert len(dnats) == 3 and all("p=0.333" in line for line in dnats)
    assert all("source address kept" in line for line in dnats)
    assert "behind veth veth" in out
    refused = lab.netplane("trace", "--from", "client", "nobody").stdout
    assert "REJECT: the connection fails here" in refused
