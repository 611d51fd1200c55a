"""Real ``kubectl`` against ``netplane server`` where it reads /openapi/v2 as
gnostic protobuf: client-side validation of a ``kind: List`` file (its items
get no server-side field validation) and ``kubectl explain
--output=plaintext-openapiv2``. Everything stays on loopback (127.0.0.1, a
free port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.loopback import KUBECTL, Cluster, api_server

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("kubectl-openapi-v2")) as running:
        yield running


def pod_and_service(name: str, *, containers_key: str = "containers") -> dict[str, Any]:
    """A v1 List of a Pod and a Service, as ``kubectl get -o json`` writes lists."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {containers_key: [{"name": "c", "image": "busybox"}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}
    return {"apiVersion": "v1", "kind": "List", "items": [pod, service]}


def manifest(cluster: Cluster, name: str, doc: dict[str, Any]) -> str:
    path = cluster.home / name
    path.write_text(json.dumps(doc, indent=2))
    return str(path)


def test_apply_of_a_list_with_default_validation(cluster: Cluster) -> None:
    path = manifest(cluster, "list.json", pod_and_service("listed"))
    out = cluster.kubectl("apply", "-f", path)
    assert out.stdout.splitlines() == ["pod/listed created", "service/listed created"]
    assert "validating" not in out.stderr
    got = cluster.kubectl("get", "pod,svc", "listed", "-o", "name")
    assert got.stdout.split() == ["pod/listed", "service/listed"]
    again = cluster.kubectl("apply", "-f", path)
    assert again.stdout.splitlines() == ["pod/listed unchanged", "service/listed unchanged"]


def test_a_typo_in_a_list_fails_on_the_client(cluster: Cluster) -> None:
    path = manifest(cluster, "list-with-typo.json",
                    pod_and_service("typo", containers_key="containerz"))
    out = cluster.kubectl("create", "-f", path, check=False)
    assert out.returncode != 0
    assert 'error validating "' in out.stderr and "error validating data:" in out.stderr
    assert ('ValidationError(Pod.spec): unknown field "containerz" in '
            "io.k8s.api.core.v1.PodSpec") in out.stderr
    assert 'missing required field "containers"' in out.stderr
    assert "turn validation off with --validate=false" in out.stderr
    # Refused before anything was sent: not even the valid Service exists.
    assert cluster.kubectl("get", "svc", "typo", check=False).returncode != 0


def test_explain_with_plaintext_openapiv2(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "pods.spec", "--output=plaintext-openapiv2").stdout
    assert "KIND:     Pod" in out and "VERSION:  v1" in out
    assert "RESOURCE: spec <Object>" in out
    assert "PodSpec is a description of a pod." in out
    assert "containers\t<[]Object> -required-" in out
    assert "List of containers belonging to the pod." in out


def test_explain_openapiv2_of_a_field_and_a_missing_one(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "deployment.spec.strategy",
                          "--output=plaintext-openapiv2").stdout
    assert "KIND:     Deployment" in out and "VERSION:  apps/v1" in out
    assert "rollingUpdate\t<Object>" in out
    missing = cluster.kubectl("explain", "pods.spec.nope", "--output=plaintext-openapiv2",
                              check=False)
    assert missing.returncode != 0 and 'field "nope" does not exist' in missing.stderr
