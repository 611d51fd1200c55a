"""Real ``kubectl apply`` against ``netplane server``: client-side apply (the
last-applied annotation and a three-way strategic merge patch) and
server-side apply (managedFields, conflicts, ``--force-conflicts``), on
loopback only."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.integration.loopback import KUBECTL, Cluster, api_server

pytestmark = pytest.mark.skipif(not os.access(KUBECTL, os.X_OK),
                                reason=f"kubectl is not installed (looked for {KUBECTL})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("kubectl-apply")) as running:
        yield running


def manifest(name: str, *, replicas: int = 2, image: str = "nginx:1.26",
             extra: bool = True) -> str:
    """A Deployment; ``extra`` adds a label, minReadySeconds and a second env var."""
    labels = {"app": name, "tier": "front"} if extra else {"app": name}
    env = [{"name": "A", "value": "1"}] + ([{"name": "B", "value": "2"}] if extra else [])
    spec: dict[str, Any] = {
        "replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
            {"name": "web", "image": image, "env": env, "ports": [{"containerPort": 80}]}]}}}
    if extra:
        spec["minReadySeconds"] = 5
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": name, "labels": labels}, "spec": spec})


def write(cluster: Cluster, text: str) -> str:
    path = cluster.home / "deploy.yaml"
    path.write_text(text)
    return str(path)


def get(cluster: Cluster, name: str) -> Any:
    """The object as ``kubectl get -o json --show-managed-fields`` prints it."""
    return json.loads(cluster.kubectl("get", "deploy", name, "-o", "json",
                                      "--show-managed-fields").stdout)


def test_client_side_apply_create_change_and_remove(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "-f", write(cluster, manifest("csa")))
    assert out.stdout.strip() == "deployment.apps/csa created"
    d = get(cluster, "csa")
    assert "kubectl.kubernetes.io/last-applied-configuration" in d["metadata"]["annotations"]
    out = cluster.kubectl("apply", "-f", write(cluster, manifest("csa", image="nginx:1.27")))
    assert out.stdout.strip() == "deployment.apps/csa configured"
    assert get(cluster, "csa")["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "nginx:1.27"
    out = cluster.kubectl("apply", "-f", write(cluster, manifest("csa", image="nginx:1.27")))
    assert out.stdout.strip() == "deployment.apps/csa unchanged"
    # Fields left out of the manifest go: kubectl sends them as null / $patch: delete.
    out = cluster.kubectl("apply", "-f", write(cluster, manifest("csa", image="nginx:1.27",
                                                                 extra=False)))
    assert out.stdout.strip() == "deployment.apps/csa configured"
    d = get(cluster, "csa")
    assert d["metadata"]["labels"] == {"app": "csa"}
    assert "minReadySeconds" not in d["spec"]
    assert d["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    entries = {(e["manager"], e["operation"]) for e in d["metadata"]["managedFields"]}
    assert ("kubectl-client-side-apply", "Update") in entries


def test_server_side_apply_conflict_and_force(cluster: Cluster) -> None:
    path = write(cluster, manifest("ssa", replicas=3))
    out = cluster.kubectl("apply", "--server-side", "-f", path)
    assert out.stdout.strip() == "deployment.apps/ssa serverside-applied"
    assert cluster.kubectl("scale", "deploy/ssa", "--replicas=5").stdout.strip() == \
        "deployment.apps/ssa scaled"
    shown = yaml.safe_load(cluster.kubectl("get", "deploy", "ssa", "-o", "yaml",
                                           "--show-managed-fields").stdout)
    entries = {(e["manager"], e["operation"], e.get("subresource", ""))
               for e in shown["metadata"]["managedFields"]}
    assert {("kubectl", "Apply", ""), ("kubectl", "Update", "scale")} <= entries
    failed = cluster.kubectl("apply", "--server-side", "-f", path, check=False)
    assert failed.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" ' \
           "using apps/v1: .spec.replicas" in failed.stderr
    assert "--force-conflicts" in failed.stderr  # kubectl's advice
    assert get(cluster, "ssa")["spec"]["replicas"] == 5
    out = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", path)
    assert out.stdout.strip() == "deployment.apps/ssa serverside-applied"
    d = get(cluster, "ssa")
    assert d["spec"]["replicas"] == 3
    assert [(e["manager"], e["operation"]) for e in d["metadata"]["managedFields"]
            if e.get("subresource", "") == "scale"] == []


def test_server_side_apply_removes_what_it_no_longer_applies(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", write(cluster, manifest("prune")))
    cluster.kubectl("apply", "--server-side", "-f", write(cluster, manifest("prune",
                                                                            extra=False)))
    d = get(cluster, "prune")
    assert d["metadata"]["labels"] == {"app": "prune"}
    assert "minReadySeconds" not in d["spec"]
    assert d["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_two_field_managers_show(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--field-manager=team-a",
                    "-f", write(cluster, manifest("shared", replicas=2)))
    labels = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "shared", "labels": {"owner": "team-b"}}}
    cluster.kubectl("apply", "--server-side", "--field-manager=team-b",
                    "-f", write(cluster, yaml.safe_dump(labels)))
    out = cluster.kubectl("get", "deploy", "shared", "-o", "yaml", "--show-managed-fields")
    shown = yaml.safe_load(out.stdout)
    by_manager = {e["manager"]: e for e in shown["metadata"]["managedFields"]}
    assert {"team-a", "team-b"} <= set(by_manager)
    assert by_manager["team-b"]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:owner": {}}}}
    assert shown["metadata"]["labels"] == {"app": "shared", "tier": "front", "owner": "team-b"}
    hidden = yaml.safe_load(cluster.kubectl("get", "deploy", "shared", "-o", "yaml").stdout)
    assert "managedFields" not in hidden["metadata"]


def test_moving_from_client_side_to_server_side_apply(cluster: Cluster) -> None:
    """kube's upgrade path: ``kubectl apply --server-side`` may change what
    ``kubectl apply`` set before (its annotation vouches for the values),
    and keeps that annotation in step."""
    cluster.kubectl("apply", "-f", write(cluster, manifest("move", replicas=2)))
    out = cluster.kubectl("apply", "--server-side", "-f",
                          write(cluster, manifest("move", replicas=4)))
    assert out.stdout.strip() == "deployment.apps/move serverside-applied"
    d = get(cluster, "move")
    assert d["spec"]["replicas"] == 4
    annotation = json.loads(d["metadata"]["annotations"][
        "kubectl.kubernetes.io/last-applied-configuration"])
    assert annotation["spec"]["replicas"] == 4
