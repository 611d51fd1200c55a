"""Real ``kubectl`` against ``netplane server``: TLS with the server's own CA,
a bearer token, discovery, server-side Table printing, create from a
manifest. Everything stays on loopback (127.0.0.1, a free port)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.loopback import KUBECTL, Cluster, api_server

pytestmark = pytest.mark.skipif(not os.access(KUBECTL, os.X_OK),
                                reason="kubectl is not installed (looked on PATH and in "
                                       "/usr/bin/kubectl)")

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
      - name: hello
        image: busybox
        command: [sleep, "3600"]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("kubectl")) as running:
        yield running


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_get_namespaces(cluster: Cluster) -> None:
    out = rows(cluster.kubectl("get", "ns").stdout)
    assert out[0] == ["NAME", "STATUS", "AGE"]
    assert {r[0]: r[1] for r in out[1:]} == {
        "default": "Active", "kube-node-lease": "Active", "kube-public": "Active",
        "kube-system": "Active"}


def test_get_services_in_all_namespaces(cluster: Cluster) -> None:
    out = rows(cluster.kubectl("get", "svc", "-A").stdout)
    assert out[0][:5] == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP"]
    by_name = {r[1]: r for r in out[1:]}
    assert by_name["kubernetes"][:6] == ["default", "kubernetes", "ClusterIP", "10.96.0.1",
                                         "<none>", "443/TCP"]
    assert by_name["kube-dns"][:6] == ["kube-system", "kube-dns", "ClusterIP", "10.96.0.10",
                                       "<none>", "53/UDP,53/TCP"]


def test_get_pods_and_nodes_when_there_are_none(cluster: Cluster) -> None:
    pods = cluster.kubectl("get", "pods", "-A", "-l", "app=nothing")
    assert "No resources found" in pods.stderr
    nodes = cluster.kubectl("get", "nodes")
    assert "No resources found" in nodes.stderr


def test_create_deployment_and_get_it(cluster: Cluster) -> None:
    manifest = cluster.home / "hello.yaml"
    manifest.write_text(DEPLOYMENT)
    created = cluster.kubectl("create", "-f", str(manifest), "--validate=false")
    assert created.stdout.strip() == "deployment.apps/hello created"
    out = rows(cluster.kubectl("get", "deploy").stdout)
    assert out[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert [r[0] for r in out[1:]] == ["hello"]
    again = cluster.kubectl("create", "-f", str(manifest), "--validate=false", check=False)
    assert again.returncode != 0
    assert 'deployments.apps "hello" already exists' in again.stderr
    as_json = json.loads(cluster.kubectl("get", "deploy", "hello", "-o", "json").stdout)
    assert as_json["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "3600"]
    # The controllers make its pod; with no nodes it stays Pending.
    deadline = time.monotonic() + 15
    while True:
        pods = rows(cluster.kubectl("get", "pods", "-A", "-l", "app=hello").stdout)
        if len(pods) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert pods[0][:4] == ["NAMESPACE", "NAME", "READY", "STATUS"]
    assert pods[1][0] == "default" and pods[1][1].startswith("hello-")
    assert pods[1][2:4] == ["0/1", "Pending"]


def test_get_pods_json_parses(cluster: Cluster) -> None:
    body = json.loads(cluster.kubectl("get", "pods", "-A", "-o", "json").stdout)
    assert body["kind"] == "List" and isinstance(body["items"], list)
    for pod in body["items"]:
        assert pod["kind"] == "Pod" and pod["metadata"]["resourceVersion"]


def test_errors_reach_kubectl(cluster: Cluster) -> None:
    missing = cluster.kubectl("get", "pod", "nope", check=False)
    assert missing.returncode != 0
    assert 'pods "nope" not found' in missing.stderr
    bad = cluster.kubectl("get", "pods", "-l", "app in nothing", check=False)
    assert bad.returncode != 0


def test_wrong_token_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "wrong"
    other = tmp_path / "kubeconfig"
    other.write_text(json.dumps(config))
    out = Cluster(cluster.home, other).kubectl("get", "ns", check=False)
    assert out.returncode != 0
    assert "Unauthorized" in out.stderr or "must be logged in" in out.stderr
