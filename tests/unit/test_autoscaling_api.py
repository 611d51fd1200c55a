"""autoscaling/v2 HorizontalPodAutoscalers as objects: kube's validation
messages and field paths, the defaults (minReplicas 1, a CPU target of 80%,
a given behavior filled in), the autoscaling/v1 view both ways, and
kubectl's TARGETS column (printers.go formatHPAMetrics)."""

from __future__ import annotations

from netplane.api import autoscaling, defaults, resources, validation
from netplane.api.meta import Obj
from netplane.cli.autoscaler import lines as describe_lines
from netplane.cluster.apiserver.tables import hpa_targets

REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


def hpa(**spec: object) -> Obj:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": REF, "maxReplicas": 5, **spec}}


def errors(obj: Obj) -> list[str]:
    return [str(e) for e in validation.validate(obj, resources.HORIZONTALPODAUTOSCALER)]


def test_defaults() -> None:
    obj = hpa()
    defaults.apply(obj)
    assert obj["spec"]["minReplicas"] == 1
    assert obj["spec"]["metrics"] == [autoscaling.cpu_metric(80)]
    assert "behavior" not in obj["spec"]
    obj = hpa(behavior={"scaleDown": {"policies": [{"type": "Pods", "value": 1,
                                                     "periodSeconds": 60}]}})
    defaults.apply(obj)
    b = obj["spec"]["behavior"]
    assert b["scaleUp"] == autoscaling.default_scale_up()
    assert b["scaleDown"] == {"selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 1, "periodSeconds": 60}]}
    assert errors(obj) == []


def test_replica_bounds_and_reference() -> None:
    assert errors(hpa(minReplicas=0, maxReplicas=0, scaleTargetRef={})) == [
        "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
        "spec.maxReplicas: Invalid value: 0: must be greater than 0",
        "spec.scaleTargetRef.kind: Required value",
        "spec.scaleTargetRef.name: Required value"]
    assert errors(hpa(minReplicas=6)) == [
        "spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`"]


def test_metrics() -> None:
    assert errors(hpa(metrics=[{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization"}}}])) == [
        "spec.metrics[0].resource.target.averageUtilization: Required value: must set either "
        "a target raw value or a target utilization"]
    assert errors(hpa(metrics=[{"type": "Pods", "resource": autoscaling.cpu_metric(50)[
        "resource"]}])) == [
        "spec.metrics[0].pods: Required value: must populate information for the given "
        "metric source"]
    assert errors(hpa(metrics=[{"type": "Memory"}])) == [
        'spec.metrics[0].type: Unsupported value: "Memory": supported values: '
        '"ContainerResource", "External", "Object", "Pods", "Resource"']
    assert errors(hpa(metrics=[{"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "0"}}}])) == [
        'spec.metrics[0].resource.target.averageValue: Invalid value: "0": must be positive']
    assert errors(hpa(metrics=[{"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
        "type": "AverageValue", "averageValue": "10"}}}])) == []


def test_behavior() -> None:
    bad = {"stabilizationWindowSeconds": -1, "selectPolicy": "Most",
           "policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}
    assert errors(hpa(behavior={"scaleUp": bad, "scaleDown": {"policies": []}})) == [
        "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: -1: must be greater "
        "than or equal to zero",
        'spec.behavior.scaleUp.selectPolicy: Unsupported value: "Most": supported values: '
        '"Disabled", "Max", "Min"',
        "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 1801: must be less "
        "than or equal to 1800",
        "spec.behavior.scaleDown.policies: Required value: must specify at least one Policy"]


def test_v1_view_both_ways() -> None:
    stored = hpa(minReplicas=2, metrics=[autoscaling.cpu_metric(50), {
        "type": "Resource", "resource": {"name": "memory", "target": {
            "type": "AverageValue", "averageValue": "100Mi"}}}],
        behavior={"scaleUp": autoscaling.default_scale_up()})
    stored["status"] = {"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": 70, "averageValue": "70m"}}}]}
    v1 = autoscaling.to_v1(stored)
    assert v1["spec"] == {"scaleTargetRef": REF, "minReplicas": 2, "maxReplicas": 5,
                          "targetCPUUtilizationPercentage": 50}
    assert v1["status"] == {"currentReplicas": 2, "desiredReplicas": 3,
                            "currentCPUUtilizationPercentage": 70}
    v1["spec"]["targetCPUUtilizationPercentage"] = 60
    back = autoscaling.from_v1(v1, stored)
    assert back["spec"]["metrics"] == [autoscaling.cpu_metric(60), stored["spec"]["metrics"][1]]
    assert back["spec"]["behavior"] == stored["spec"]["behavior"]


def test_targets_column() -> None:
    obj = hpa(metrics=[autoscaling.cpu_metric(50)])
    assert hpa_targets(obj) == "cpu: <unknown>/50%"
    obj["status"] = {"currentMetrics": [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": 45, "averageValue": "45m"}}}]}
    assert hpa_targets(obj) == "cpu: 45%/50%"
    obj = hpa(metrics=[
        {"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "AverageValue", "averageValue": "100Mi"}}},
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
            "type": "AverageValue", "averageValue": "10"}}},
        {"type": "External", "external": {"metric": {"name": "queue"}, "target": {
            "type": "Value", "value": "30"}}}])
    assert hpa_targets(obj) == "memory: <unknown>/100Mi, <unknown>/10 + 1 more..."
    assert hpa_targets(hpa()) == "<none>"


def test_describe_lays_out_as_kubectl() -> None:
    obj = hpa(minReplicas=1, metrics=[autoscaling.cpu_metric(50), {
        "type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
            "type": "AverageValue", "averageValue": "10"}}}],
        behavior={"scaleUp": autoscaling.default_scale_up(),
                  "scaleDown": {"selectPolicy": "Max", "policies": [
                      {"type": "Percent", "value": 100, "periodSeconds": 15}]}})
    obj["status"] = {"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": 250, "averageValue": "501m"}}}, {"type": ""}],
        "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale",
                        "message": "the HPA controller was able to update the target scale "
                                   "to 3"}]}
    assert describe_lines(obj) == [
        "Reference:                                             Deployment/web",
        "Metrics:                                               ( current / target )",
        "  resource cpu on pods  (as a percentage of request):  250% (501m) / 50%",
        '  "qps" on pods:                                       <unknown> / 10',
        "Min replicas:                                          1",
        "Max replicas:                                          5",
        "Behavior:",
        "  Scale Up:",
        "    Stabilization Window: 0 seconds",
        "    Select Policy: Max",
        "    Policies:",
        "      - Type: Pods     Value: 4    Period: 15 seconds",
        "      - Type: Percent  Value: 100  Period: 15 seconds",
        "  Scale Down:",
        "    Select Policy: Max",
        "    Policies:",
        "      - Type: Percent  Value: 100  Period: 15 seconds",
        # One tabwriter block with the policies, as kubectl prints it.
        "Deployment pods:       2 current / 3 desired",
        "Conditions:",
        "  Type         Status  Reason            Message",
        "  ----         ------  ------            -------",
        "  AbleToScale  True    SucceededRescale  the HPA controller was able to update the "
        "target scale to 3"]
