"""The demo's scenario as a test: a 2-worker lab, three echo replicas behind
the ``web`` Service, curl by DNS name from a pod on the second worker.

Address plan: underlay 192.168.56.0/24 (control .10, node-N .1N), pod CIDRs
10.244.N.0/24 per node, Services from 10.96.0.0/12, DNS at 10.96.0.10."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest

from netplane.api import meta, resources
from netplane.cluster.client import Client
from netplane.lab import processes
from tests.e2e.conftest import EXAMPLES, Lab, wait_for

pytestmark = pytest.mark.e2e


def _ready_endpoints(lab: Lab) -> int:
    async def get(c: Client) -> int:
        try:
            eps = await c.get(resources.ENDPOINTS, "web", "default")
        except Exception:
            return 0
        return sum(len(s.get("addresses") or []) for s in eps.get("subsets") or [])
    return int(lab.api(get))


def _pods(lab: Lab, selector: str = "") -> list[dict]:
    args = ["get", "pods", "-o", "json"] + (["-l", selector] if selector else [])
    return list(json.loads(lab.netplane(*args).stdout)["items"])


@pytest.fixture(scope="module")
def web(lab: Lab) -> Lab:
    out = lab.netplane("apply", "-f", str(EXAMPLES / "web.yaml"),
                       "-f", str(EXAMPLES / "client.yaml")).stdout
    assert "deployment.apps/web created" in out
    wait_for("3 ready endpoints of web", lambda: _ready_endpoints(lab) >= 3)
    wait_for("client pod ready", lambda: any(
        meta.pod_ready(p) for p in _pods(lab, "app=client")))
    return lab


def test_nodes_are_ready_with_their_pod_cidrs(lab: Lab) -> None:
    nodes = json.loads(lab.netplane("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(meta.name(n) for n in nodes) == ["node-1", "node-2"]
    assert all(meta.node_ready(n) for n in nodes)
    # The lab declares the nodes first: node-N always gets 10.244.N.0/24.
    assert {meta.name(n): n["spec"]["podCIDR"] for n in nodes} == {
        "node-1": "10.244.1.0/24", "node-2": "10.244.2.0/24"}


def test_curl_by_short_name_is_load_balanced(web: Lab) -> None:
    answers = []
    for _ in range(50):
        out = web.curl("client", "http://web")
        assert out.returncode == 0, out.stderr
        answers.append(out.stdout.split()[0])
    pods = Counter(answers)
    assert all(a.startswith("pod=web-") for a in answers)
    assert len(pods) >= 2, f"answers all came from one pod: {pods}"


def test_curl_by_full_name(web: Lab) -> None:
    out = web.curl("client", "http://web.default.svc.cluster.local")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pod=web-")
    assert " node=node-" in out.stdout


def test_pod_sees_its_own_resolv_conf_and_hostname(web: Lab) -> None:
    resolv = web.netplane("exec", "client", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.96.0.10" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv
    assert web.netplane("exec", "client", "--", "hostname").stdout.strip() == "client"


def test_get_wide_shows_ip_and_node(web: Lab) -> None:
    out = web.netplane("get", "pods", "-o", "wide", "-l", "app=web").stdout
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "IP" in header and "NODE" in header
    assert len(rows) == 3 and all("Running" in r and "10.244." in r for r in rows)


def test_deleted_pod_is_replaced_and_service_keeps_answering(web: Lab) -> None:
    before = {meta.name(p) for p in _pods(web, "app=web")}
    victim = sorted(before)[0]
    assert f'pod "{victim}" deleted' in web.netplane("delete", "pod", victim).stdout
    wait_for("the victim to be gone", lambda: victim not in {
        meta.name(p) for p in _pods(web, "app=web")})
    wait_for("a replacement", lambda: len([
        p for p in _pods(web, "app=web") if meta.pod_ready(p)]) == 3)
    after = {meta.name(p) for p in _pods(web, "app=web")}
    assert victim not in after and len(after - before) == 1
    wait_for("3 ready endpoints again", lambda: _ready_endpoints(web) >= 3)
    for _ in range(10):
        out = web.curl("client", "http://web")
        assert out.returncode == 0, out.stderr
        assert victim not in out.stdout


def test_kubectl_lists_pods_services_and_nodes(web: Lab) -> None:
    env = {**os.environ, "KUBECONFIG": str(web.paths.kubeconfig)}

    def kubectl(*args: str) -> str:
        out = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "web-" in kubectl("get", "pods", "-A")
    svcs = kubectl("get", "svc", "-A")
    assert "kubernetes" in svcs and "10.96.0.1" in svcs and "kube-dns" in svcs
    assert "web" in svcs
    nodes = kubectl("get", "nodes")
    assert "node-1" in nodes and "node-2" in nodes and "Ready" in nodes


def test_lab_up_again_changes_nothing(web: Lab) -> None:
    before = sorted(meta.name(p) for p in _pods(web))
    out = web.netplane("lab", "up", "--nodes", "2").stdout
    assert "starting" not in out
    assert sorted(meta.name(p) for p in _pods(web)) == before


def test_agent_restart_keeps_pods_and_their_addresses(web: Lab) -> None:
    before = {meta.name(p): p["status"]["podIP"] for p in _pods(web)
              if p["spec"].get("nodeName") == "node-1"}
    assert before
    pidfile = web.paths.node_dir("node-1") / "agent.pid"
    pid = int(pidfile.read_text().split()[0])
    os.kill(pid, 9)
    wait_for("the agent to die", lambda: processes.alive(pidfile) is None)
    assert "starting the agent on node-1" in web.netplane("lab", "up", "--nodes", "2").stdout
    after = {meta.name(p): p["status"]["podIP"] for p in _pods(web)
             if p["spec"].get("nodeName") == "node-1"}
    assert after == before
    for _ in range(10):
        out = web.curl("client", "http://web")
        assert out.returncode == 0, out.stderr
