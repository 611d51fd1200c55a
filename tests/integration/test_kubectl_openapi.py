"""Real ``kubectl`` (and the Python client) against ``netplane server`` with
the OpenAPI documents served: ``apply`` with kubectl's default (strict)
validation, server-side field validation errors and warnings, and
``kubectl explain``. Everything stays on loopback (127.0.0.1, a free port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.loopback import KUBECTL, Cluster, api_server
from tests.integration.test_kubectl import DEPLOYMENT

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("kubectl-openapi")) as running:
        yield running


def manifest(cluster: Cluster, name: str, text: str) -> str:
    path = cluster.home / name
    path.write_text(text)
    return str(path)


def test_apply_with_default_validation(cluster: Cluster) -> None:
    path = manifest(cluster, "web.yaml", DEPLOYMENT.replace("hello", "web"))
    out = cluster.kubectl("apply", "-f", path)
    assert out.stdout.strip() == "deployment.apps/web created"
    assert "openapi" not in out.stderr
    changed = manifest(cluster, "web2.yaml", DEPLOYMENT.replace("hello", "web")
                       .replace("replicas: 1", "replicas: 2")
                       .replace("image: busybox", "image: busybox:1.36"))
    out = cluster.kubectl("apply", "-f", changed)
    assert out.stdout.strip() == "deployment.apps/web configured"
    got = cluster.kubectl("get", "deploy", "web", "-o",
                          "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}")
    assert got.stdout == "2 busybox:1.36"
    again = cluster.kubectl("apply", "-f", changed)
    assert again.stdout.strip() == "deployment.apps/web unchanged"


def test_apply_with_an_unknown_field_fails(cluster: Cluster) -> None:
    bad = DEPLOYMENT.replace("hello", "typo").replace("replicas: 1", "replica: 2")
    out = cluster.kubectl("apply", "-f", manifest(cluster, "typo.yaml", bad), check=False)
    assert out.returncode != 0
    assert 'strict decoding error: unknown field "spec.replica"' in out.stderr
    assert "cannot be handled as a Deployment" in out.stderr
    missing = cluster.kubectl("get", "deploy", "typo", check=False)
    assert missing.returncode != 0


def test_apply_of_an_unknown_field_to_an_existing_object_fails(cluster: Cluster) -> None:
    path = manifest(cluster, "edit.yaml", DEPLOYMENT.replace("hello", "edit"))
    cluster.kubectl("apply", "-f", path)
    bad = DEPLOYMENT.replace("hello", "edit").replace(
        "image: busybox", "image: busybox\n        imagePullPolicyy: Always")
    out = cluster.kubectl("apply", "-f", manifest(cluster, "edit2.yaml", bad), check=False)
    assert out.returncode != 0
    assert ('strict decoding error: unknown field '
            '"spec.template.spec.containers[0].imagePullPolicyy"') in out.stderr


def test_create_with_validate_warn_prints_the_warning(cluster: Cluster) -> None:
    bad = DEPLOYMENT.replace("hello", "warned").replace("replicas: 1", "replica: 2")
    out = cluster.kubectl("create", "-f", manifest(cluster, "warned.yaml", bad),
                          "--validate=warn")
    assert out.stdout.strip() == "deployment.apps/warned created"
    assert 'Warning: unknown field "spec.replica"' in out.stderr


def test_create_with_validate_false_says_nothing(cluster: Cluster) -> None:
    bad = DEPLOYMENT.replace("hello", "quiet").replace("replicas: 1", "replica: 2")
    out = cluster.kubectl("create", "-f", manifest(cluster, "quiet.yaml", bad),
                          "--validate=false")
    assert out.stdout.strip() == "deployment.apps/quiet created"
    assert "Warning" not in out.stderr


def test_explain_deployment_strategy(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "deployment.spec.strategy").stdout
    assert "KIND:       Deployment" in out
    assert "FIELD: strategy <DeploymentStrategy>" in out
    assert "rollingUpdate\t<RollingUpdateDeployment>" in out
    assert "type\t<string>" in out


def test_explain_container_image(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "pods.spec.containers.image").stdout
    assert "KIND:       Pod" in out and "FIELD: image <string>" in out
    assert "Container image name." in out
    missing = cluster.kubectl("explain", "pods.spec.nope", check=False)
    assert missing.returncode != 0 and 'field "nope" does not exist' in missing.stderr


def test_python_client_creates_a_deployment(cluster: Cluster) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    client: Any = kubernetes.client
    api = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
    apps = client.AppsV1Api(api)
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="pyclient"),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels={"app": "py"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c",
                                                                     image="busybox")]))))
    created = apps.create_namespaced_deployment("default", body, field_validation="Strict")
    assert created.metadata.name == "pyclient" and created.metadata.uid
    patched = apps.patch_namespaced_deployment("pyclient", "default", {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3
    with pytest.raises(client.ApiException) as bad:
        apps.patch_namespaced_deployment("pyclient", "default", {"spec": {"replicaz": 3}},
                                         field_validation="Strict")
    assert bad.value.status == 422 and 'unknown field \\"spec.replicaz\\"' in bad.value.body
    api.close()
