"""One metric of an HPA turned into a replica proposal and the status entry
kube writes for it (computeReplicasForMetric and computeStatusFor* in kube's
horizontal.go), with kube's reasons and messages when it cannot be had.
Resource and ContainerResource metrics come from the metrics source; no
custom or external metrics API is served, so Pods, Object and External
metrics fail as they do in kube without one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netplane.api import quantity
from netplane.api.meta import Obj
from netplane.cluster.controllers import replicacalc
from netplane.cluster.controllers.podmetrics import MetricsSource
from netplane.cluster.controllers.replicacalc import MetricError, Settings
from netplane.cluster.events import Reason

NO_CUSTOM = "unable to fetch metrics from custom metrics API: no custom metrics API " \
            "(custom.metrics.k8s.io) registered"
NO_EXTERNAL = "unable to fetch metrics from external metrics API: no external metrics API " \
              "(external.metrics.k8s.io) registered"


class Failure(Exception):
    """A metric that gave no proposal: ``reason`` and ``detail`` go to the
    event and the ScalingActive condition, ``str()`` to the sync's error."""

    def __init__(self, reason: Reason, detail: str, wrapped: str) -> None:
        super().__init__(wrapped)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Computed:
    replicas: int
    name: str  # what SuccessfulRescale names: "cpu resource utilization (...)"
    timestamp: float
    status: Obj  # the MetricStatus entry


@dataclass(frozen=True)
class Inputs:
    namespace: str
    selector: str
    pods: Sequence[Obj]
    spec_replicas: int
    now: float
    settings: Settings


def milli(value: int) -> str:
    """resource.NewMilliQuantity(value, DecimalSI).String(): the largest
    decimal suffix that keeps the number whole (``150m``, ``2``, ``3M``)."""
    if value == 0:
        return "0"
    suffix, scale = "m", 1
    for unit in ("", "k", "M", "G", "T", "P", "E"):
        if value % (scale * 1000):
            break
        suffix, scale = unit, scale * 1000
    return f"{value // scale}{suffix}"


async def compute(metric: Obj, source: MetricsSource, given: Inputs) -> Computed:
    kind = metric.get("type")
    if kind == "Resource":
        return await _resource(metric.get("resource") or {}, source, given, container="")
    if kind == "ContainerResource":
        src = metric.get("containerResource") or {}
        return await _resource(src, source, given, container=str(src.get("container") or ""))
    name = str(((metric.get("pods") or metric.get("object") or metric.get("external") or {})
                .get("metric") or {}).get("name") or "")
    if kind == "Pods":
        detail = f"unable to get metric {name}: {NO_CUSTOM}"
        raise Failure(Reason.FAILED_GET_PODS_METRIC, detail,
                      f"failed to get pods metric value: {detail}")
    if kind == "Object":
        ref = (metric.get("object") or {}).get("describedObject") or {}
        detail = (f"unable to get metric {name}: {ref.get('kind')} on {given.namespace} "
                  f"{ref.get('name')}/{NO_CUSTOM}")
        raise Failure(Reason.FAILED_GET_OBJECT_METRIC, detail,
                      f"failed to get object metric value: {detail}")
    if kind == "External":
        detail = f"unable to get external metric {given.namespace}/{name}: {NO_EXTERNAL}"
        raise Failure(Reason.FAILED_GET_EXTERNAL_METRIC, detail,
                      f"failed to get {name} external metric: {detail}")
    raise Failure(Reason.FAILED_GET_RESOURCE_METRIC, f"unknown metric source type {kind!r}",
                  f"unknown metric source type {kind!r}")


async def _resource(src: Obj, source: MetricsSource, given: Inputs, *,
                    container: str) -> Computed:
    """kube's computeStatusForResourceMetricGeneric."""
    resource = str(src.get("name") or "")
    target = src.get("target") or {}
    reason = Reason.FAILED_GET_CONTAINER_RESOURCE_METRIC if container \
        else Reason.FAILED_GET_RESOURCE_METRIC
    outer = f"failed to get {resource} container metric value" if container \
        else f"failed to get {resource} resource metric value"
    what = f"{resource} container resource" if container else f"{resource} resource"
    raw = target.get("averageValue") is not None
    try:
        items = await _items(source, given, resource)
        metrics = replicacalc.pod_metrics(items, resource, container)
        if raw:
            wanted = round(quantity.quantity(str(target["averageValue"])) * 1000)
            p = replicacalc.raw_resource_replicas(given.spec_replicas, wanted, given.pods,
                                                  metrics, resource, given.now,
                                                  settings=given.settings)
        else:
            p = replicacalc.resource_replicas(
                given.spec_replicas, int(target.get("averageUtilization") or 0), given.pods,
                metrics, resource, given.now, container=container, settings=given.settings)
    except MetricError as e:
        detail = f"failed to get {resource} {'usage' if raw else 'utilization'}: {e}"
        raise Failure(reason, detail, f"{outer}: {detail}") from None
    current: Obj = {"averageValue": milli(p.raw)}
    if not raw:
        current["averageUtilization"] = p.utilization
    field = "containerResource" if container else "resource"
    entry: Obj = {"name": resource, "current": current}
    if container:
        entry["container"] = container
    name = what if raw else f"{what} utilization (percentage of request)"
    return Computed(p.replicas, name, p.timestamp,
                    {"type": "ContainerResource" if container else "Resource", field: entry})


async def _items(source: MetricsSource, given: Inputs, resource: str) -> list[Obj]:
    try:
        return await source.pod_metrics(given.namespace, given.selector)
    except MetricError as e:
        raise MetricError(f"unable to get metrics for resource {resource}: {e}") from None
