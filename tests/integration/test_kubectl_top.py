"""``kubectl top`` and the Python client's CustomObjectsApi against a real
``netplane server``, whose metrics scraper reads a real agent API: a node
registered at 127.0.0.1 whose agent API (a free port, reported in the
node's ``daemonEndpoints``) serves the cgroups of a pod's containers run
by the process runtime, one of them loading the other with ``/burn``.

Address plan: loopback only. The server and the agent API listen on
127.0.0.1 of the test's namespace; the pod's netns has only ``lo``, where
its echo container listens on 8080."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client, Connection
from netplane.node import kubeletapi, registration
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.cgroups import Hierarchy
from netplane.node.runtime.process import ProcessRuntime
from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server
from tests.integration.scratchcgroups import scratch_cgroups

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed")]

NODE, NS = "top-node", "default"
BURN = "while :; do curl -s -o /dev/null 'http://127.0.0.1:8080/burn?ms=100'; done"
POD: Obj = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "busy", "labels": {"app": "busy"}},
    "spec": {"nodeName": NODE, "containers": [
        {"name": "web", "image": "netplane/echo", "ports": [{"containerPort": 8080}]},
        {"name": "load", "image": "busybox", "command": ["sh", "-c", BURN]}]}}


@dataclass
class Pods:
    pods: list[Obj]

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return next((p for p in self.pods if p["metadata"]["name"] == name), None)

    def items(self) -> list[Obj]:
        return self.pods


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("top")) as running:
        yield running


@pytest.fixture
def cgroups() -> Iterator[Hierarchy]:
    with scratch_cgroups() as found:
        yield found


async def _node_and_pod(cluster: Cluster, port: int) -> Obj:
    async with Client(Connection(socket=str(cluster.home.parent / "api.sock"))) as c:
        await c.create(resources.NODE, registration.node_object(NODE, "127.0.0.1"))
        status = registration.node_status(NODE, "127.0.0.1")
        status["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = port
        await c.patch(resources.NODE, NODE, status, subresource="status")
        return await c.create(resources.POD, POD, NS)


@pytest.fixture
async def agent(cluster: Cluster, cgroups: Hierarchy, make_netns: Any,
                tmp_path: Path) -> AsyncIterator[None]:
    assert cluster.data is not None
    pods = Pods([])
    rt = ProcessRuntime(state_dir=tmp_path / "state", cgroups=cgroups)
    api = kubeletapi.KubeletApi(pods=pods, runtime=rt, node_name=NODE)
    cert, key = kubeletapi.serving_certificate(tmp_path / "agent-pki", "127.0.0.1")
    await api.start(address="127.0.0.1", port=0, tls=kubeletapi.server_tls(
        cert=cert, key=key, ca_file=str(cluster.data / "pki" / "ca.crt")))
    pod = await _node_and_pod(cluster, api.port)
    pods.pods.append(pod)
    uid, netns = pod["metadata"]["uid"], make_netns("top")
    resolv, hosts = rt.write_pod_files(uid, nameservers=["10.96.0.10"], searches=[],
                                       options=[], hostname="busy", pod_ip="127.0.0.1")
    for c in pod["spec"]["containers"]:
        rt.start_container(pod_uid=uid, pod_name="busy", namespace=NS, container=c,
                           netns=netns, hostname="busy", resolv_conf=resolv, hosts=hosts,
                           env={}, pod_cgroup=PodCgroup.of(pod))
    try:
        yield
    finally:
        await api.stop()
        await asyncio.to_thread(rt.stop_pod, uid, 0)
        cluster.kubectl("delete", "pod", "busy", "--wait=false", check=False)
        cluster.kubectl("delete", "node", NODE, check=False)


async def kubectl(cluster: Cluster, *args: str) -> list[list[str]] | None:
    """The rows kubectl prints (header first), None when it fails; in a
    thread: the agent API answers the server's scrapes on this loop."""
    out = await asyncio.to_thread(cluster.kubectl, *args, check=False)
    return [line.split() for line in out.stdout.splitlines()] if out.returncode == 0 else None


async def wait_rows(cluster: Cluster, *args: str) -> list[list[str]]:
    """Until kubectl prints rows with figures: the scraper needs two rounds."""
    for _ in range(300):
        rows = await kubectl(cluster, *args)
        if rows and len(rows) > 1 and "<unknown>" not in rows[1]:
            return rows
        await asyncio.sleep(0.2)
    raise AssertionError(f"kubectl {' '.join(args)} printed no metrics")


def millicores(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


async def test_kubectl_top_and_the_python_client(cluster: Cluster, agent: None) -> None:
    pods = await wait_rows(cluster, "top", "pods", "-l", "app=busy")
    assert pods[0] == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert pods[1][0] == "busy" and millicores(pods[1][1]) > 0
    containers = await wait_rows(cluster, "top", "pods", "busy", "--containers")
    assert containers[0] == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert sorted(r[1] for r in containers[1:]) == ["load", "web"]
    nodes = await wait_rows(cluster, "top", "nodes", NODE)
    assert nodes[0][:2] == ["NAME", "CPU(cores)"] and nodes[1][0] == NODE
    nobody = await asyncio.to_thread(cluster.kubectl, "top", "pods", "-l", "app=nobody")
    assert nobody.stderr.strip() == "No resources found in default namespace."
    missing = await asyncio.to_thread(cluster.kubectl, "top", "pods", "ghost", check=False)
    assert missing.returncode != 0
    assert 'pods.metrics.k8s.io "ghost" not found' in missing.stderr

    def read() -> tuple[Any, Any]:
        api = kubernetes.client.CustomObjectsApi(
            kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
        return (api.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", NS, "pods"),
                api.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", NODE))

    listed, node = await asyncio.to_thread(read)
    assert listed["kind"] == "PodMetricsList"
    busy = next(p for p in listed["items"] if p["metadata"]["name"] == "busy")
    assert {c["name"] for c in busy["containers"]} == {"web", "load"}
    assert busy["metadata"]["labels"] == {"app": "busy"}
    assert node["kind"] == "NodeMetrics" and node["window"].endswith("s")
