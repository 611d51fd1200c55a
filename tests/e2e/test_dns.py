"""Cluster DNS seen from a pod, with the tools a user has: dig over UDP and
TCP, dig +search, getent. Address plan as in test_walking_skeleton."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netplane.api import meta
from tests.e2e.conftest import EXAMPLES, Lab, wait_for

pytestmark = pytest.mark.e2e
MANIFESTS = Path(__file__).parent / "manifests"


def dig(lab: Lab, *args: str) -> list[str]:
    out = lab.netplane("exec", "client", "--", "dig", "+short", "+time=2", "+tries=2", *args)
    return [line for line in out.stdout.splitlines() if line and not line.startswith(";")]


def status(lab: Lab, *args: str) -> str:
    out = lab.netplane("exec", "client", "--", "dig", "+time=2", "+tries=2", *args).stdout
    return out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else out


def _service(lab: Lab, name: str) -> dict:
    return dict(json.loads(lab.netplane("get", "svc", name, "-o", "json").stdout))


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Lab:
    lab.netplane("apply", "-f", str(EXAMPLES / "web.yaml"), "-f", str(EXAMPLES / "client.yaml"),
                 "-f", str(MANIFESTS / "dns.yaml"))

    def ready() -> bool:
        pods = json.loads(lab.netplane("get", "pods", "-o", "json").stdout)["items"]
        return len(pods) == 7 and all(meta.pod_ready(p) for p in pods)
    wait_for("all pods ready", ready)
    wait_for("db endpoints", lambda: len(dig(lab, "db.default.svc.cluster.local")) == 2)
    return lab


def test_service_a_record_over_udp_and_tcp(cluster: Lab) -> None:
    ip = _service(cluster, "web")["spec"]["clusterIP"]
    assert dig(cluster, "web.default.svc.cluster.local") == [ip]
    assert dig(cluster, "+tcp", "WEB.Default.svc.cluster.local") == [ip]


def test_search_path_short_names(cluster: Lab) -> None:
    ip = _service(cluster, "web")["spec"]["clusterIP"]
    for name in ("web", "web.default", "web.default.svc"):
        assert dig(cluster, "+search", name) == [ip], name
    getent = cluster.netplane("exec", "client", "--", "getent", "hosts", "web").stdout
    assert getent.split()[0] == ip


def test_nodata_and_nxdomain(cluster: Lab) -> None:
    assert status(cluster, "web.default.svc.cluster.local", "AAAA") == "NOERROR"
    assert dig(cluster, "web.default.svc.cluster.local", "AAAA") == []
    assert status(cluster, "nope.default.svc.cluster.local") == "NXDOMAIN"
    assert status(cluster, "example.org") == "REFUSED"  # no upstream in the lab


def test_srv_for_named_ports(cluster: Lab) -> None:
    srv = dig(cluster, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert srv == ["0 100 80 web.default.svc.cluster.local."]


def test_headless_service_and_pod_hostnames(cluster: Lab) -> None:
    pods = {meta.name(p): p["status"]["podIP"] for p in json.loads(
        cluster.netplane("get", "pods", "-l", "app=db", "-o", "json").stdout)["items"]}
    assert sorted(dig(cluster, "db.default.svc.cluster.local")) == sorted(pods.values())
    assert dig(cluster, "db-0.db.default.svc.cluster.local") == [pods["db-0"]]
    srv = sorted(dig(cluster, "_pg._tcp.db.default.svc.cluster.local", "SRV"))
    assert srv == ["0 50 5432 db-0.db.default.svc.cluster.local.",
                   "0 50 5432 db-1.db.default.svc.cluster.local."]
    assert dig(cluster, "-x", pods["db-1"]) == ["db-1.db.default.svc.cluster.local."]


def test_ptr_for_cluster_ip_and_pod_records(cluster: Lab) -> None:
    ip = _service(cluster, "web")["spec"]["clusterIP"]
    assert dig(cluster, "-x", ip) == ["web.default.svc.cluster.local."]
    pod_ip = json.loads(cluster.netplane("get", "pod", "client", "-o", "json").stdout)[
        "status"]["podIP"]
    dashed = pod_ip.replace(".", "-")
    assert dig(cluster, f"{dashed}.default.pod.cluster.local") == [pod_ip]


def test_external_name_then_cluster_ip(cluster: Lab) -> None:
    web_ip = _service(cluster, "web")["spec"]["clusterIP"]
    assert dig(cluster, "alias.default.svc.cluster.local") == [
        "web.default.svc.cluster.local.", web_ip]
    cluster.netplane("apply", "-f", "-", stdin="""
apiVersion: v1
kind: Service
metadata: {name: alias}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
""")
    new_ip = _service(cluster, "alias")["spec"]["clusterIP"]
    wait_for("alias to become a ClusterIP",
             lambda: dig(cluster, "alias.default.svc.cluster.local") == [new_ip], timeout=10)
    out = cluster.curl("client", "http://alias")
    assert out.returncode == 0 and out.stdout.startswith("pod=web-")


def test_new_services_answer_on_every_node(cluster: Lab) -> None:
    """Each new Service's name gives its own ClusterIP on every node's DNS.
    (How fast that happens is measured in bench/dns_latency.py, not here.)"""
    for i in range(5):
        name = f"lat{i}"
        cluster.netplane("apply", "-f", "-", stdin=f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}
""")
        ip = _service(cluster, name)["spec"]["clusterIP"]
        for node in ("node-1", "node-2"):
            wait_for(f"{name} -> {ip} on {node}",
                     lambda node=node, name=name, ip=ip: cluster.netplane(
                         "lab", "exec", node, "--", "dig", "+short", "@10.96.0.10",
                         f"{name}.default.svc.cluster.local").stdout.split() == [ip])


def test_dns_command_explains_and_asks_from_the_pod(cluster: Lab) -> None:
    web_ip = _service(cluster, "web")["spec"]["clusterIP"]
    out = cluster.netplane("dns", "web", "--from", "client").stdout
    explained, _, real = out.partition("; asked for real from pod client:\n")
    # The explanation: the pod's search path expands the short name, and the
    # answer names the Service that produced it.
    assert explained.splitlines()[0] == "web.default.svc.cluster.local. A: NOERROR"
    assert f"IN A {web_ip}  ; from Service default/web" in explained
    # The real query from inside the pod, through its resolver: the same address.
    assert "status: NOERROR" in real
    records = [line.split() for line in real.splitlines()
               if line and not line.startswith(";")]
    assert [(r[0], r[-2], r[-1]) for r in records] == [
        ("web.default.svc.cluster.local.", "A", web_ip)]
    missing = cluster.netplane("dns", "nope.default.svc.cluster.local").stdout
    assert missing.splitlines()[:2] == ["nope.default.svc.cluster.local. A: NXDOMAIN",
                                        "  why: no service 'nope' in namespace 'default'"]


def test_dns_policy_none_takes_the_pods_dns_config(cluster: Lab) -> None:
    resolv = cluster.netplane("exec", "custom-dns", "--", "cat", "/etc/resolv.conf").stdout
    assert resolv.splitlines() == ["nameserver 10.96.0.10", "search default.svc.cluster.local",
                                   "options ndots:2"]
    out = cluster.netplane("exec", "custom-dns", "--", "getent", "hosts", "web").stdout
    assert out.split()[0] == _service(cluster, "web")["spec"]["clusterIP"]
