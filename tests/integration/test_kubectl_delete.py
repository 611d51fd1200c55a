"""Cascading deletion through the real ``kubectl delete --cascade=...`` and
the Python ``kubernetes`` client, against ``netplane server`` with its
controllers (Deployment, ReplicaSet, garbage collector). No node joins, so
the pods stay Pending; one is held by a finalizer where a test must see the
owner wait. Everything stays on loopback."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests.integration.loopback import KUBECTL, Cluster, api_server

pytestmark = pytest.mark.skipif(not os.access(KUBECTL, os.X_OK),
                                reason=f"kubectl is not installed (looked for {KUBECTL})")

HANG = 60.0  # only a guard against a hung test
HOLD = "example.com/hold"
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("kubectl-delete")) as running:
        yield running


def until(what: str, probe: Callable[[], T | None]) -> T:
    """``probe()`` once it is no longer None (or False)."""
    deadline = time.monotonic() + HANG
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def items(cluster: Cluster, kind: str, app: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", kind, "-l", f"app={app}", "-o", "json")
    return list(json.loads(out.stdout)["items"])


def get(cluster: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", kind, name, "-o", "json", check=False)
    if out.returncode != 0:
        assert "NotFound" in out.stderr or "not found" in out.stderr, out.stderr
        return None
    return dict(json.loads(out.stdout))


def deployment(cluster: Cluster, name: str, replicas: int = 2) -> list[dict[str, Any]]:
    """A Deployment, once its ReplicaSet has made all its pods."""
    cluster.kubectl("create", "deployment", name, "--image=busybox", f"--replicas={replicas}",
                    "--", "sleep", "3600")
    return until(f"the pods of {name}",
                 lambda: (pods := items(cluster, "pods", name)) and len(pods) == replicas
                 and pods)


def all_gone(cluster: Cluster, app: str) -> bool:
    return not items(cluster, "deploy", app) and not items(cluster, "rs", app) \
        and not items(cluster, "pods", app)


def test_cascade_orphan_leaves_the_replicaset_and_its_pods(cluster: Cluster) -> None:
    pods = deployment(cluster, "orphaned")
    out = cluster.kubectl("delete", "deploy", "orphaned", "--cascade=orphan")
    assert out.stdout.strip() == 'deployment.apps "orphaned" deleted'
    assert get(cluster, "deploy", "orphaned") is None  # kubectl waited for it to go
    [rs] = items(cluster, "rs", "orphaned")
    assert not rs["metadata"].get("ownerReferences")
    assert not rs["metadata"].get("deletionTimestamp")
    left = items(cluster, "pods", "orphaned")
    assert {p["metadata"]["uid"] for p in left} == {p["metadata"]["uid"] for p in pods}
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
               for p in left)
    cluster.kubectl("delete", "rs", rs["metadata"]["name"])
    until("the orphans' removal", lambda: all_gone(cluster, "orphaned"))


def test_cascade_foreground_keeps_the_deployment_until_its_pods_are_gone(
        cluster: Cluster) -> None:
    held, free = deployment(cluster, "fg")
    cluster.kubectl("patch", "pod", held["metadata"]["name"], "--type=merge",
                    "-p", json.dumps({"metadata": {"finalizers": [HOLD]}}))
    cluster.kubectl("delete", "deploy", "fg", "--cascade=foreground", "--wait=false")
    until("the free pod's removal", lambda: get(cluster, "pod", free["metadata"]["name"]) is None)
    waiting = get(cluster, "deploy", "fg")
    assert waiting is not None
    assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert waiting["metadata"]["deletionTimestamp"]
    listed = cluster.kubectl("get", "deploy", "fg").stdout.split()
    assert listed[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and listed[5] == "fg"
    [rs] = items(cluster, "rs", "fg")
    assert rs["metadata"]["finalizers"] == ["foregroundDeletion"]
    cluster.kubectl("patch", "pod", held["metadata"]["name"], "--type=json",
                    "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    cluster.kubectl("wait", "--for=delete", "deploy/fg", "--timeout=60s")
    until("the rest of fg to go", lambda: all_gone(cluster, "fg"))


def test_the_default_cascade_deletes_everything(cluster: Cluster) -> None:
    deployment(cluster, "bg")
    cluster.kubectl("delete", "deploy", "bg")
    until("the ReplicaSet and pods of bg to go", lambda: all_gone(cluster, "bg"))


def test_the_python_client_deletes_in_the_foreground(cluster: Cluster) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api_client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    apps = kubernetes.client.AppsV1Api(api_client)
    deployment(cluster, "py")
    resp = apps.delete_namespaced_deployment(
        "py", "default", body=kubernetes.client.V1DeleteOptions(propagation_policy="Foreground"),
        _preload_content=False)
    marked = json.loads(resp.data)
    assert marked["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert marked["metadata"]["deletionTimestamp"]
    until("the deployment py and its dependents to go", lambda: all_gone(cluster, "py"))
    api_client.close()
