"""Real ``kubectl create <kind> ...`` against ``netplane server``: these
typed generators send protobuf bodies (application/vnd.kubernetes.protobuf),
which the server must read like the JSON equivalent. Kinds the server does
not serve yet are skipped, saying so. Everything stays on loopback."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.loopback import KUBECTL, Cluster, api_server

pytestmark = pytest.mark.skipif(not os.access(KUBECTL, os.X_OK),
                                reason=f"kubectl is not installed (looked for {KUBECTL})")

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("kubectl-create")) as running:
        yield running


@pytest.fixture(scope="module")
def served(cluster: Cluster) -> frozenset[str]:
    """Resource names as ``kubectl api-resources -o name`` spells them (``roles.rbac...``)."""
    return frozenset(cluster.kubectl("api-resources", "-o", "name").stdout.split())


def need(served: frozenset[str], *names: str) -> None:
    missing = [n for n in names if n not in served]
    if missing:
        pytest.skip(f"the server does not serve {', '.join(missing)} yet")


def get(cluster: Cluster, *what: str) -> Any:
    return json.loads(cluster.kubectl("get", *what, "-o", "json").stdout)


def create(cluster: Cluster, *args: str) -> str:
    return cluster.kubectl("create", *args).stdout.strip()


def test_create_deployment(cluster: Cluster) -> None:
    out = create(cluster, "deployment", "web", "--image=netplane/echo", "--replicas=2",
                 "--port=8080")
    assert out == "deployment.apps/web created"
    d = get(cluster, "deployment", "web")
    assert d["metadata"]["labels"] == {"app": "web"}
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    template = d["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "web"}
    [c] = template["spec"]["containers"]
    assert (c["name"], c["image"]) == ("echo", "netplane/echo")
    assert [p["containerPort"] for p in c["ports"]] == [8080]


def test_create_deployment_with_zero_replicas_and_a_command(cluster: Cluster) -> None:
    create(cluster, "deployment", "idle", "--image=busybox", "--replicas=0", "--",
           "sleep", "3600")
    d = get(cluster, "deployment", "idle")
    assert d["spec"]["replicas"] == 0
    assert d["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "3600"]


def test_create_service_clusterip(cluster: Cluster) -> None:
    assert create(cluster, "service", "clusterip", "web", "--tcp=80:8080") == "service/web created"
    s = get(cluster, "service", "web")
    assert s["spec"]["type"] == "ClusterIP"
    assert s["spec"]["selector"] == {"app": "web"}
    assert ipaddress.ip_address(s["spec"]["clusterIP"]) in SERVICE_CIDR
    [port] = s["spec"]["ports"]
    assert {k: port[k] for k in ("name", "protocol", "port", "targetPort")} == {
        "name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}


def test_create_service_nodeport(cluster: Cluster) -> None:
    assert create(cluster, "service", "nodeport", "np", "--tcp=80:8080") == "service/np created"
    s = get(cluster, "service", "np")
    assert s["spec"]["type"] == "NodePort"
    assert s["spec"]["selector"] == {"app": "np"}
    [port] = s["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, 8080)
    assert 30000 <= port["nodePort"] <= 32767


def test_create_headless_service(cluster: Cluster) -> None:
    create(cluster, "service", "clusterip", "headless", "--clusterip=None")
    assert get(cluster, "service", "headless")["spec"]["clusterIP"] == "None"


def test_create_namespace(cluster: Cluster) -> None:
    assert create(cluster, "namespace", "team-a") == "namespace/team-a created"
    ns = get(cluster, "namespace", "team-a")
    assert ns["metadata"]["name"] == "team-a"
    create(cluster, "deployment", "api", "--image=nginx:1.27", "--namespace=team-a")
    assert get(cluster, "deployment", "api", "-n", "team-a")["metadata"]["namespace"] == "team-a"


def test_create_configmap(cluster: Cluster, served: frozenset[str]) -> None:
    need(served, "configmaps")
    create(cluster, "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=two")
    assert get(cluster, "configmap", "cfg")["data"] == {"a": "1", "b": "two"}


def test_create_secret_generic(cluster: Cluster, served: frozenset[str]) -> None:
    need(served, "secrets")
    create(cluster, "secret", "generic", "s", "--from-literal=password=hunter2")
    data = get(cluster, "secret", "s")["data"]
    assert base64.b64decode(data["password"]) == b"hunter2"


def test_create_serviceaccount(cluster: Cluster, served: frozenset[str]) -> None:
    need(served, "serviceaccounts")
    assert create(cluster, "serviceaccount", "robot") == "serviceaccount/robot created"
    assert get(cluster, "serviceaccount", "robot")["metadata"]["name"] == "robot"


def test_create_role_and_rolebinding(cluster: Cluster, served: frozenset[str]) -> None:
    need(served, "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io")
    create(cluster, "role", "r", "--verb=get,list", "--resource=pods")
    assert get(cluster, "role", "r")["rules"] == [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]
    create(cluster, "rolebinding", "rb", "--role=r", "--serviceaccount=default:robot")
    rb = get(cluster, "rolebinding", "rb")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "r"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "robot",
                               "namespace": "default"}]


def test_create_clusterrole_and_clusterrolebinding(cluster: Cluster,
                                                   served: frozenset[str]) -> None:
    need(served, "clusterroles.rbac.authorization.k8s.io",
         "clusterrolebindings.rbac.authorization.k8s.io")
    create(cluster, "clusterrole", "node-reader", "--verb=get,list,watch", "--resource=nodes")
    assert get(cluster, "clusterrole", "node-reader")["rules"] == [
        {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["nodes"]}]
    create(cluster, "clusterrolebinding", "read-nodes", "--clusterrole=node-reader",
           "--user=alice")
    crb = get(cluster, "clusterrolebinding", "read-nodes")
    assert crb["roleRef"]["name"] == "node-reader"
    assert crb["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                                "name": "alice"}]


def test_create_job_and_cronjob(cluster: Cluster, served: frozenset[str]) -> None:
    need(served, "jobs.batch", "cronjobs.batch")
    create(cluster, "job", "once", "--image=busybox", "--", "echo", "hi")
    job = get(cluster, "job", "once")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    create(cluster, "cronjob", "hourly", "--image=busybox", "--schedule=@hourly", "--",
           "echo", "hi")
    assert get(cluster, "cronjob", "hourly")["spec"]["schedule"] == "@hourly"


def test_auth_can_i_and_whoami(cluster: Cluster, served: frozenset[str]) -> None:
    """SelfSubjectAccessReview, SelfSubjectRulesReview and SelfSubjectReview, in protobuf."""
    need(served, "selfsubjectaccessreviews.authorization.k8s.io",
         "selfsubjectrulesreviews.authorization.k8s.io",
         "selfsubjectreviews.authentication.k8s.io")
    assert cluster.kubectl("auth", "can-i", "get", "pods").stdout.strip() == "yes"
    assert "Resources" in cluster.kubectl("auth", "can-i", "--list").stdout
    assert "admin" in cluster.kubectl("auth", "whoami").stdout


def test_create_token(cluster: Cluster) -> None:
    """TokenRequest, the serviceaccounts/token subresource."""
    discovery = json.loads(cluster.kubectl("get", "--raw", "/api/v1").stdout)
    if "serviceaccounts/token" not in {r["name"] for r in discovery["resources"]}:
        pytest.skip("the server does not serve serviceaccounts/token yet")
    token = cluster.kubectl("create", "token", "default", "--duration=10m").stdout.strip()
    assert token.count(".") == 2  # a JWT: header.claims.signature


# -- what a bad protobuf body gets back --


def post(cluster: Cluster, path: str, body: bytes) -> tuple[int, Any]:
    """POST a protobuf body straight to the API with the kubeconfig's CA and token."""
    config = json.loads(cluster.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context(cafile=str(Path(server["certificate-authority"])))
    request = urllib.request.Request(server["server"] + path, data=body, method="POST", headers={
        "Content-Type": "application/vnd.kubernetes.protobuf", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ld(field: int, data: bytes) -> bytes:
    assert len(data) < 128
    return bytes([field << 3 | 2, len(data)]) + data


def test_malformed_protobuf_is_400(cluster: Cluster) -> None:
    code, body = post(cluster, "/api/v1/namespaces", b"k8s\x00\x0a\x7f\x0a")
    assert code == 400
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert "malformed" in body["message"]


def test_unknown_protobuf_field_is_415(cluster: Cluster) -> None:
    namespace = ld(1, ld(1, b"odd")) + ld(15, b"data")  # Namespace has no field 15
    body = b"k8s\x00" + ld(1, ld(1, b"v1") + ld(2, b"Namespace")) + ld(2, namespace)
    code, status = post(cluster, "/api/v1/namespaces", body)
    assert code == 415
    assert status["reason"] == "UnsupportedMediaType"
    assert "field 15 of Namespace (core/v1)" in status["message"]
