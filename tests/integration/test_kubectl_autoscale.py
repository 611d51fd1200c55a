"""autoscaling/v2 HorizontalPodAutoscalers through a real ``netplane
server`` with its controllers: ``kubectl autoscale`` and kubectl's table,
kube's validation as kubectl shows it, the Python client's AutoscalingV2Api
(defaults filled in) and AutoscalingV1Api reading the same object, and the
controller's status while no metrics API is served. No agents. Loopback
only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.loopback import (
    HAVE_KUBECTL,
    Cluster,
    api_server,
    scratch_namespace,
    wait_for,
)

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed (looked "
                                                         "on PATH and in /usr/bin/kubectl)")
kubernetes = pytest.importorskip("kubernetes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("hpa")) as running:
        yield running


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster, "hpa") as name:
        yield name


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Any:
    return kubernetes.config.new_client_from_config(str(cluster.kubeconfig))



def hpa_json(cluster: Cluster, ns: str, name: str) -> Any:
    return json.loads(cluster.kubectl("get", "hpa", name, "-n", ns, "-o", "json").stdout)


def condition(hpa: Any, kind: str) -> Any:
    for c in (hpa.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c
    return None


def test_kubectl_autoscale_and_table(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "deployment", "web", "--image=netplane/echo", "-n", ns)
    out = cluster.kubectl("autoscale", "deployment", "web", "--cpu-percent=50", "--min=1",
                          "--max=5", "-n", ns).stdout
    assert "horizontalpodautoscaler.autoscaling/web autoscaled" in out
    table = cluster.kubectl("get", "hpa", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS",
                                "REPLICAS", "AGE"]
    assert table[1].split()[:7] == ["web", "Deployment/web", "cpu:", "<unknown>/50%", "1",
                                    "5", table[1].split()[6]]
    hpa = hpa_json(cluster, ns, "web")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
    # Both versions, the short name and the category reach it.
    v1 = json.loads(cluster.kubectl("get", "horizontalpodautoscalers.v1.autoscaling", "web",
                                    "-n", ns, "-o", "json").stdout)
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert "horizontalpodautoscaler.autoscaling/web" in cluster.kubectl(
        "get", "all", "-n", ns).stdout


def test_no_metrics_api_says_so(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "deployment", "web", "--image=netplane/echo", "-n", ns)
    cluster.kubectl("autoscale", "deployment", "web", "--max=3", "-n", ns)

    def inactive() -> Any:
        c = condition(hpa_json(cluster, ns, "web"), "ScalingActive")
        return c if c and c["status"] == "False" else None
    active = wait_for("ScalingActive=False", inactive)
    assert active["reason"] == "FailedGetResourceMetric"
    assert active["message"].startswith("the HPA was unable to compute the replica count: "
                                        "failed to get cpu utilization: ")
    able = condition(hpa_json(cluster, ns, "web"), "AbleToScale")
    assert (able["status"], able["reason"]) == ("True", "SucceededGetScale")
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.kind=HorizontalPodAutoscaler").stdout
    assert "FailedGetResourceMetric" in events
    assert "cpu: <unknown>/80%" in cluster.kubectl("get", "hpa", "web", "-n", ns).stdout


def test_validation_as_kubectl_shows_it(cluster: Cluster, ns: str) -> None:
    manifest = json.dumps({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad", "namespace": ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "web"}, "minReplicas": 4, "maxReplicas": 2,
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 4000,
                                            "policies": [{"type": "Pods", "value": 1,
                                                          "periodSeconds": 60}]}}}})
    out = cluster.kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert out.returncode != 0
    assert 'The HorizontalPodAutoscaler "bad" is invalid' in out.stderr
    assert "spec.maxReplicas: Invalid value: 2: must be greater than or equal to " \
           "`minReplicas`" in out.stderr
    assert "spec.behavior.scaleDown.stabilizationWindowSeconds: Invalid value: 4000: must be " \
           "less than or equal to 3600" in out.stderr


def test_python_client_v2_and_v1(api: Any, cluster: Cluster, ns: str) -> None:
    v2 = kubernetes.client.AutoscalingV2Api(api)
    body = kubernetes.client.V2HorizontalPodAutoscaler(
        metadata=kubernetes.client.V1ObjectMeta(name="api"),
        spec=kubernetes.client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=kubernetes.client.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name="web"),
            max_replicas=4,
            behavior=kubernetes.client.V2HorizontalPodAutoscalerBehavior(
                scale_down=kubernetes.client.V2HPAScalingRules(
                    stabilization_window_seconds=60, policies=[
                        kubernetes.client.V2HPAScalingPolicy(type="Pods", value=1,
                                                             period_seconds=30)]))))
    v2.create_namespaced_horizontal_pod_autoscaler(ns, body)
    got = v2.read_namespaced_horizontal_pod_autoscaler("api", ns)
    assert got.spec.min_replicas == 1
    assert got.spec.metrics[0].resource.name == "cpu"
    assert got.spec.metrics[0].resource.target.average_utilization == 80
    up = got.spec.behavior.scale_up
    assert (up.stabilization_window_seconds, up.select_policy) == (0, "Max")
    assert [(p.type, p.value, p.period_seconds) for p in up.policies] == [
        ("Pods", 4, 15), ("Percent", 100, 15)]
    assert got.spec.behavior.scale_down.select_policy == "Max"
    old = kubernetes.client.AutoscalingV1Api(api).read_namespaced_horizontal_pod_autoscaler(
        "api", ns)
    assert old.spec.target_cpu_utilization_percentage == 80
    assert old.spec.max_replicas == 4
    names = [h.metadata.name for h in v2.list_namespaced_horizontal_pod_autoscaler(ns).items]
    assert names == ["api"]
