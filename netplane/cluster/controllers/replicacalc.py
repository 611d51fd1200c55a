"""The HPA's replica calculator (kube's pkg/controller/podautoscaler
replica_calculator.go): from the pods a target selects, their requests and
their resource metrics, how many replicas would bring the average
utilization to the target. Pods still starting, missing metrics or unready
count as kube counts them. Pure: the caller passes the clock's ``now``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from netplane.api import meta, quantity
from netplane.api.meta import Obj

TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
CPU_INITIALIZATION_PERIOD = 300.0  # --horizontal-pod-autoscaler-cpu-initialization-period
INITIAL_READINESS_DELAY = 30.0  # --horizontal-pod-autoscaler-initial-readiness-delay


class MetricError(Exception):
    """Why no replica count could be computed for a metric."""


@dataclass(frozen=True)
class PodMetric:
    value: int  # milli-units, as kube's metrics client reads usage.MilliValue()
    timestamp: float
    window: float


@dataclass(frozen=True)
class Settings:
    tolerance: float = TOLERANCE
    cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD
    initial_readiness_delay: float = INITIAL_READINESS_DELAY


@dataclass(frozen=True)
class Proposal:
    replicas: int
    utilization: int  # percent of request, or the average milli-value for raw targets
    raw: int  # the average usage per pod, milli-units
    timestamp: float


@dataclass
class Groups:
    ready: int = 0
    unready: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)


def _time(value: object) -> float | None:
    try:
        return meta.parse_time(str(value)).timestamp() if value else None
    except ValueError:
        return None


def _unready_cpu(pod: Obj, metric: PodMetric, now: float, s: Settings) -> bool:
    """kube's groupPods for CPU: a pod in its initialization period counts
    only once ready for a whole metric window; after it, a pod that never
    became ready does not count."""
    cond = meta.condition(pod, "Ready")
    start = _time((pod.get("status") or {}).get("startTime"))
    if cond is None or start is None:
        return True
    changed = _time(cond.get("lastTransitionTime")) or start
    if start + s.cpu_initialization_period > now:
        return cond.get("status") == "False" or metric.timestamp < changed + metric.window
    return cond.get("status") == "False" and start + s.initial_readiness_delay > changed


def group_pods(pods: Sequence[Obj], metrics: Mapping[str, PodMetric], resource: str,
               now: float, s: Settings) -> Groups:
    g = Groups()
    for pod in pods:
        name, phase = meta.name(pod), (pod.get("status") or {}).get("phase")
        if meta.is_deleting(pod) or phase == "Failed":
            g.ignored.add(name)
        elif phase in (None, "", "Pending"):
            g.unready.add(name)
        elif name not in metrics:
            g.missing.add(name)
        elif resource == "cpu" and _unready_cpu(pod, metrics[name], now, s):
            g.unready.add(name)
        else:
            g.ready += 1
    return g


def pod_requests(pods: Sequence[Obj], resource: str, container: str = "") -> dict[str, int]:
    """kube's calculatePodRequests: milli-units per pod, sidecars included."""
    out: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or []) + [
            c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        total = 0
        for c in containers:
            if container and c.get("name") != container:
                continue
            req = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            milli = round(quantity.quantity(str(req)) * 1000) if req is not None else 0
            if milli == 0:
                raise MetricError(f"missing request for {resource} in container "
                                  f"{c.get('name')} of Pod {meta.name(pod)}")
            total += milli
        out[meta.name(pod)] = total
    return out


def utilization_ratio(metrics: Mapping[str, int], requests: Mapping[str, int],
                      target: int) -> tuple[float, int, int]:
    """kube's GetResourceUtilizationRatio: (usage/target, percent, raw average)."""
    used = sum(v for name, v in metrics.items() if name in requests)
    asked = sum(requests[name] for name in metrics if name in requests)
    if asked == 0:
        raise MetricError("no metrics returned matched known pods")
    percent = used * 100 // asked
    return percent / target, percent, used // len(metrics)


def _counted(pods: Sequence[Obj], metrics: Mapping[str, PodMetric], resource: str,
             now: float, s: Settings) -> tuple[Groups, dict[str, int], float]:
    """What both calculations start from: the pods grouped, the usage of
    those that count, the newest sample's time."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    g = group_pods(pods, metrics, resource, now, s)
    usage = {n: m.value for n, m in metrics.items() if n not in g.ignored | g.unready}
    if not usage:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    return g, usage, max(m.timestamp for m in metrics.values())


def resource_replicas(current: int, target: int, pods: Sequence[Obj],
                      metrics: Mapping[str, PodMetric], resource: str, now: float, *,
                      container: str = "", settings: Settings | None = None) -> Proposal:
    """kube's GetResourceReplicas: a utilization target (percent of request)."""
    s = settings or Settings()
    g, usage, stamp = _counted(pods, metrics, resource, now, s)
    requests = pod_requests(pods, resource, container)
    ratio, percent, raw = utilization_ratio(usage, requests, target)
    up_with_unready = bool(g.unready) and ratio > 1.0
    if not up_with_unready and not g.missing:
        if abs(1.0 - ratio) <= s.tolerance:
            return Proposal(current, percent, raw, stamp)
        return Proposal(math.ceil(ratio * g.ready), percent, raw, stamp)
    if g.missing:
        if ratio < 1.0:  # scaling down: the missing use all they asked (or the target)
            fallback = max(100, target)
            usage.update({n: requests[n] * fallback // 100 for n in g.missing})
        elif ratio > 1.0:  # scaling up: they use nothing
            usage.update({n: 0 for n in g.missing})
    if up_with_unready:
        usage.update({n: 0 for n in g.unready})
    new_ratio = utilization_ratio(usage, requests, target)[0]
    if abs(1.0 - new_ratio) <= s.tolerance or (ratio < 1.0 < new_ratio) or \
            (ratio > 1.0 > new_ratio):
        return Proposal(current, percent, raw, stamp)
    replicas = math.ceil(new_ratio * len(usage))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return Proposal(current, percent, raw, stamp)
    return Proposal(replicas, percent, raw, stamp)


def raw_resource_replicas(current: int, target_milli: int, pods: Sequence[Obj],
                          metrics: Mapping[str, PodMetric], resource: str, now: float, *,
                          settings: Settings | None = None) -> Proposal:
    """kube's GetRawResourceReplicas (calcPlainMetricReplicas): an average
    value target, in milli-units."""
    s = settings or Settings()
    g, usage, stamp = _counted(pods, metrics, resource, now, s)

    def ratio_of(values: Mapping[str, int]) -> tuple[float, float]:
        average = sum(values.values()) / len(values)
        return average / target_milli, average

    ratio, average = ratio_of(usage)
    up_with_unready = bool(g.unready) and ratio > 1.0
    if not up_with_unready and not g.missing:
        if abs(1.0 - ratio) <= s.tolerance:
            return Proposal(current, int(average), int(average), stamp)
        return Proposal(math.ceil(ratio * g.ready), int(average), int(average), stamp)
    if g.missing:
        usage.update({n: target_milli if ratio < 1.0 else 0 for n in g.missing})
    if up_with_unready:
        usage.update({n: 0 for n in g.unready})
    new_ratio = ratio_of(usage)[0]
    if abs(1.0 - new_ratio) <= s.tolerance or (ratio < 1.0 < new_ratio) or \
            (ratio > 1.0 > new_ratio):
        return Proposal(current, int(average), int(average), stamp)
    return Proposal(math.ceil(new_ratio * len(usage)), int(average), int(average), stamp)


def pod_metrics(items: Sequence[Obj], resource: str, container: str = "") -> dict[str, PodMetric]:
    """A PodMetricsList's items as the calculator reads them (kube's
    resource metrics client): the containers' usage summed per pod; a pod
    whose containers do not all report the resource is left out."""
    out: dict[str, PodMetric] = {}
    for item in items:
        total, complete = 0, True
        containers = [c for c in item.get("containers") or []
                      if not container or c.get("name") == container]
        for c in containers:
            value = (c.get("usage") or {}).get(resource)
            if value is None:
                complete = False
                break
            total += round(quantity.quantity(str(value)) * 1000)
        if complete and containers:
            out[meta.name(item)] = PodMetric(total, _time(item.get("timestamp")) or 0.0,
                                             duration(item.get("window")))
    return out


def duration(value: object) -> float:
    """A Go duration in seconds, as metrics-server writes a window and kube
    takes its flags (``30s``, ``1m0s``, ``1.5h``, ``500ms``)."""
    text, total, number = str(value or ""), 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
        elif text.startswith("ms", i):
            total += float(number or 0) / 1000
            number, i = "", i + 1
        elif ch in units:
            total += float(number or 0) * units[ch]
            number = ""
        i += 1
    return total
