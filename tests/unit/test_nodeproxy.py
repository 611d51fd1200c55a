"""The API server's side of pods/log, exec, attach and portforward: which
container, which agent URL, and the kube-apiserver errors given before any
agent is called (through a real in-process server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import agentproxy, discovery, nodeproxy, paths, pki, status
from netplane.cluster.apiserver.registry import Registry
from netplane.cluster.server import build_app
from tests.unit.test_apiserver import AiohttpClient

TOKEN = "test-token-nodeproxy"
PODS = "/api/v1/namespaces/default/pods"


def _pod(name: str, containers: list[str], *, node: str = "",
         default: str | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "uid": "u-1"}
    if default:
        meta["annotations"] = {nodeproxy.DEFAULT_CONTAINER: default}
    spec: Obj = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def test_default_container_is_the_annotated_one_else_the_first() -> None:
    assert nodeproxy.container_name(_pod("p", ["a", "b"]), None) == "a"
    assert nodeproxy.container_name(_pod("p", ["a", "b"], default="b"), None) == "b"
    assert nodeproxy.container_name(_pod("p", ["a", "b"], default="gone"), None) == "a"
    assert nodeproxy.container_name(_pod("p", ["a", "b"]), "b") == "b"
    with pytest.raises(Exception, match="container nope is not valid for pod p"):
        nodeproxy.container_name(_pod("p", ["a"]), "nope")


def test_agent_urls_carry_the_query_but_not_the_container() -> None:
    pod = _pod("web-1", ["web"])
    assert nodeproxy.agent_url("192.168.56.11", "log", pod, "web",
                               [("container", "web"), ("follow", "true")]) == \
        "https://192.168.56.11:10250/containerLogs/default/web-1/web?follow=true"
    assert nodeproxy.agent_url("10.0.0.1", "exec", pod, "web",
                               [("command", "sh"), ("command", "-c"),
                                ("command", "exit 3")]) == \
        "https://10.0.0.1:10250/exec/default/web-1/web?command=sh&command=-c&command=exit+3"
    assert nodeproxy.agent_url("10.0.0.1", "portforward", pod, None, [("ports", "80")]) == \
        "https://10.0.0.1:10250/portForward/default/web-1?ports=80"


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, registry: Registry,
              tmp_path: Path) -> TestClient[Any, Any]:
    app = build_app(registry, frozenset({TOKEN}))
    creds = pki.ensure(tmp_path, addresses=[])
    app[nodeproxy.KUBELET_TLS] = nodeproxy.client_tls(creds.kubelet_client_cert,
                                                      creds.kubelet_client_key)
    registry.create(resources.POD, "default", _pod("lonely", ["web"]))
    registry.create(resources.POD, "default", _pod("placed", ["web"], node="node-9"))
    return await aiohttp_client(app, headers={"Authorization": f"Bearer {TOKEN}"})


async def _status(api: TestClient[Any, Any], path: str) -> tuple[int, str]:
    async with api.get(path) as resp:
        return resp.status, (await resp.json())["message"]


async def test_errors_before_any_agent_is_called(api: TestClient[Any, Any]) -> None:
    assert await _status(api, f"{PODS}/ghost/log") == (404, 'pods "ghost" not found')
    assert await _status(api, f"{PODS}/lonely/exec?command=true") == \
        (400, "pod lonely does not have a host assigned")
    assert await _status(api, f"{PODS}/lonely/log?container=nope") == \
        (400, "container nope is not valid for pod lonely")
    code, message = await _status(api, f"{PODS}/placed/portforward")
    assert code == 400 and "node-9" in message


def test_the_kubelet_client_certificate_is_signed_and_named(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    creds = pki.ensure(tmp_path, addresses=[])
    cert = x509.load_pem_x509_certificate(creds.kubelet_client_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(creds.ca_cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        pki.KUBELET_CLIENT_NAME
    cert.verify_directly_issued_by(ca)
    # Kept across starts.
    assert pki.ensure(tmp_path, addresses=[]).kubelet_client_cert.read_bytes() == \
        creds.kubelet_client_cert.read_bytes()


def test_node_proxy_paths_keep_the_agent_path() -> None:
    target = paths.parse("/api/v1/nodes/node-1/proxy/metrics/cadvisor")
    assert (target.resource, target.name, target.subresource, target.proxy_path) == \
        (resources.NODE, "node-1", "proxy", "/metrics/cadvisor")
    assert paths.parse("/api/v1/nodes/node-1/proxy").proxy_path == "/"
    assert paths.parse("/api/v1/nodes/node-1/proxy/top/ns/p/c/").proxy_path == "/top/ns/p/c/"
    with pytest.raises(status.ApiError):
        paths.parse("/api/v1/nodes/node-1/status/extra")
    entries = {e["name"]: e for e in discovery.resource_entries(resources.NODE)}
    assert entries["nodes/proxy"]["kind"] == "NodeProxyOptions"
    assert agentproxy.agent_url("127.0.0.1:10250", "/top/a b", [("x", "1")]) == \
        "https://127.0.0.1:10250/top/a%20b?x=1"


async def test_node_proxy_errors_before_any_agent_is_called(
        api: TestClient[Any, Any], registry: Registry) -> None:
    assert await _status(api, "/api/v1/nodes/ghost/proxy/metrics/cadvisor") == \
        (404, 'nodes "ghost" not found')
    registry.create(resources.NODE, None, {"apiVersion": "v1", "kind": "Node",
                                           "metadata": {"name": "bare"}})
    assert await _status(api, "/api/v1/nodes/bare/proxy/healthz") == \
        (503, "node bare has no InternalIP address")
