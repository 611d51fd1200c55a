"""What metrics-server keeps and serves, without the network: each node's
last two scrapes of the agent's ``/metrics/resource``, and the
NodeMetrics and PodMetrics objects made from them, CPU as the rate between
the two (cumulative seconds over elapsed seconds), memory as the last
working set, ``window`` the time between them. A container whose counter
went back or whose start time changed (a restart) between two scrapes has
no rate yet, and its pod no metrics, as in metrics-server's storage."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from netplane.api import meta
from netplane.api.meta import Obj

GROUP_VERSION = "metrics.k8s.io/v1beta1"
_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20),
           ("Ki", 2**10))


@dataclass(frozen=True)
class Point:
    """One cgroup's figures at ``timestamp`` (seconds since the epoch)."""

    cpu_seconds: float
    memory: float
    timestamp: float
    started_at: float | None = None


ContainerKey = tuple[str, str, str]  # namespace, pod, container


@dataclass
class Scrape:
    node: Point | None = None
    containers: dict[ContainerKey, Point] = field(default_factory=dict)


def parse(text: str) -> Scrape:
    """The figures of one ``/metrics/resource`` answer."""
    cpu: dict[ContainerKey, tuple[float, float]] = {}
    memory: dict[ContainerKey, float] = {}
    started: dict[ContainerKey, float] = {}
    node_cpu: tuple[float, float] | None = None
    node_memory: float | None = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            at = float(s.timestamp) if s.timestamp is not None else 0.0
            key = (s.labels.get("namespace", ""), s.labels.get("pod", ""),
                   s.labels.get("container", ""))
            if s.name == "node_cpu_usage_seconds_total":
                node_cpu = (s.value, at)
            elif s.name == "node_memory_working_set_bytes":
                node_memory = s.value
            elif s.name == "container_cpu_usage_seconds_total":
                cpu[key] = (s.value, at)
            elif s.name == "container_memory_working_set_bytes":
                memory[key] = s.value
            elif s.name == "container_start_time_seconds":
                started[key] = s.value
    out = Scrape()
    if node_cpu is not None and node_memory is not None:
        out.node = Point(node_cpu[0], node_memory, node_cpu[1])
    for key, (seconds, at) in cpu.items():
        if key in memory:
            out.containers[key] = Point(seconds, memory[key], at, started.get(key))
    return out


def cpu_quantity(cores: float) -> str:
    """CPU cores as metrics-server writes them: nanocores, in the largest
    unit that keeps the number whole (``12m``, ``137146875n``, ``2``)."""
    nanos = max(round(cores * 1e9), 0)
    for suffix, unit in (("", 10**9), ("m", 10**6), ("u", 10**3)):
        if nanos % unit == 0:
            return f"{nanos // unit}{suffix}"
    return f"{nanos}n"


def memory_quantity(value: float) -> str:
    """Bytes as a binary-SI quantity (``3412Ki``, ``64Mi``, ``1000``)."""
    count = max(round(value), 0)
    for suffix, unit in _BINARY:
        if count and count % unit == 0:
            return f"{count // unit}{suffix}"
    return str(count)


def go_duration(seconds: float) -> str:
    """A window as Go prints a time.Duration (``10.012s``, ``1m0.5s``)."""
    millis = round(seconds * 1000)
    minutes, millis = divmod(millis, 60_000)
    secs = f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _stamp(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rate(prev: Point, last: Point) -> float | None:
    elapsed = last.timestamp - prev.timestamp
    if elapsed <= 0 or last.cpu_seconds < prev.cpu_seconds or \
            prev.started_at != last.started_at:
        return None
    return (last.cpu_seconds - prev.cpu_seconds) / elapsed


def _usage(cores: float, memory: float) -> Obj:
    return {"cpu": cpu_quantity(cores), "memory": memory_quantity(memory)}


class MetricsStore:
    """Each node's previous and last scrape."""

    def __init__(self) -> None:
        self._scrapes: dict[str, tuple[Scrape | None, Scrape]] = {}

    def record(self, node: str, scrape: Scrape) -> None:
        previous = self._scrapes.get(node)
        self._scrapes[node] = (previous[1] if previous else None, scrape)

    def forget_except(self, nodes: Iterable[str]) -> None:
        keep = set(nodes)
        for name in [n for n in self._scrapes if n not in keep]:
            del self._scrapes[name]

    def node_metrics(self, node: Obj) -> Obj | None:
        pair = self._scrapes.get(meta.name(node))
        if pair is None or pair[0] is None or pair[0].node is None or pair[1].node is None:
            return None
        prev, last = pair[0].node, pair[1].node
        cores = _rate(prev, last)
        if cores is None:
            return None
        return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
                "metadata": _metadata(node), "timestamp": _stamp(last.timestamp),
                "window": go_duration(last.timestamp - prev.timestamp),
                "usage": _usage(cores, last.memory)}

    def pod_metrics(self, pod: Obj) -> Obj | None:
        """Metrics of every container of the pod, or None while one lacks them."""
        node = (pod.get("spec") or {}).get("nodeName")
        pair = self._scrapes.get(node) if node else None
        if pair is None or pair[0] is None:
            return None
        prev, last = pair[0], pair[1]
        ns, name = meta.namespace(pod), meta.name(pod)
        containers, stamps, windows = [], [], []
        spec = pod.get("spec") or {}
        sidecars = [c for c in spec.get("initContainers") or []
                    if c.get("restartPolicy") == "Always"]
        for c in [*sidecars, *(spec.get("containers") or [])]:
            key = (ns, name, c["name"])
            before, now = prev.containers.get(key), last.containers.get(key)
            cores = _rate(before, now) if before and now else None
            if cores is None or now is None or before is None:
                if c in sidecars:
                    continue  # not started yet, or restarting: the pod goes on
                return None
            containers.append({"name": c["name"], "usage": _usage(cores, now.memory)})
            stamps.append(now.timestamp)
            windows.append(now.timestamp - before.timestamp)
        if not containers:
            return None
        return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
                "metadata": _metadata(pod), "timestamp": _stamp(max(stamps)),
                "window": go_duration(max(windows)), "containers": containers}


def _metadata(obj: Obj) -> Obj:
    """The object's name, namespace and labels, made now, as metrics-server
    writes a metrics object's metadata."""
    out: Obj = {"name": meta.name(obj), "creationTimestamp": meta.now()}
    if meta.namespace(obj):
        out["namespace"] = meta.namespace(obj)
    labels = (obj.get("metadata") or {}).get("labels")
    if labels:
        out["labels"] = dict(labels)
    return out


def list_body(kind: str, items: list[Obj]) -> Obj:
    return {"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}
