"""The agent's ``/metrics/resource``: CPU and memory of the node, its pods
and their containers in the Prometheus text format, the names, labels and
help of the kubelet's resource metrics collector, each sample stamped with
the time it was read. metrics-server (here the API server's
metrics.k8s.io) scrapes it and turns two scrapes into rates.

Containers and pods are read from their cgroups. So is the node: the
node's cgroup root, the sum of its pods. The kubelet reads the node from
the root cgroup, which is the machine; here the nodes of a lab share one
kernel, and /proc/stat would give each node the whole machine's load
(another node's pods, and anything else the machine runs). Without
cgroups the node falls back to /proc/stat and /proc/meminfo.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.node.cgroups import Usage
from netplane.node.runtime.process import ContainerStatus, ProcessRuntime

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what the kubelet answers with
CONTAINER_LABELS = ["container", "namespace", "pod"]
POD_LABELS = ["namespace", "pod"]


@dataclass(frozen=True)
class Sample:
    """One cgroup read at ``timestamp`` (seconds since the epoch)."""

    usage: Usage
    timestamp: float


@dataclass(frozen=True)
class ContainerSample:
    namespace: str
    pod: str
    container: str
    sample: Sample
    started_at: float | None


@dataclass(frozen=True)
class PodSample:
    namespace: str
    pod: str
    sample: Sample


@dataclass(frozen=True)
class Snapshot:
    node: Sample | None
    pods: list[PodSample]
    containers: list[ContainerSample]
    error: bool = False


def proc_node_usage(stat: str, meminfo: str) -> Usage:
    """The machine's CPU time busy (all but idle and iowait) and memory in
    use (total less available) from /proc/stat and /proc/meminfo text."""
    fields = next(line for line in stat.splitlines() if line.startswith("cpu ")).split()[1:]
    ticks = [int(f) for f in fields[:8]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    mem = {k: int(v.split()[0]) * 1024 for k, _, v in
           (line.partition(":") for line in meminfo.splitlines()) if v.strip()}
    used = mem.get("MemTotal", 0) - mem.get("MemAvailable", 0)
    return Usage(cpu_seconds=busy / os.sysconf("SC_CLK_TCK"), memory_usage=used,
                 memory_working_set=used)


def _read(usage: Usage | None) -> Sample | None:
    return Sample(usage, time.time()) if usage is not None else None


def snapshot(pods: Iterable[Obj], runtime: ProcessRuntime) -> Snapshot:
    """What the node's cgroups say now of ``pods`` (those on the node)."""
    cgroups = runtime.cgroups
    if cgroups is None:
        node = _read(proc_node_usage(Path("/proc/stat").read_text(),
                                     Path("/proc/meminfo").read_text()))
        return Snapshot(node=node, pods=[], containers=[])
    node = _read(cgroups.usage("kubepods"))
    pod_samples, container_samples, error = [], [], False
    for pod in pods:
        uid, ns, name = meta.uid(pod), meta.namespace(pod), meta.name(pod)
        rel = runtime.cgroup_path(uid)
        if rel is None:
            continue
        if (sample := _read(cgroups.usage(rel))) is not None:
            pod_samples.append(PodSample(ns, name, sample))
        spec = pod.get("spec") or {}
        # Every running container, as the kubelet reports them: sidecars too.
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            state = runtime.container_state(uid, c["name"])
            if state.status is not ContainerStatus.RUNNING:
                continue
            # The runtime names the folder (the container's name, or docker's id).
            crel = runtime.cgroup_path(uid, c["name"]) or f"{rel}/{c['name']}"
            sample = _read(cgroups.usage(crel))
            if sample is None:
                error = True
                continue
            container_samples.append(ContainerSample(ns, name, c["name"], sample,
                                                     state.started_at))
    return Snapshot(node=node, pods=pod_samples, containers=container_samples, error=error)


def _families(snap: Snapshot) -> Iterator[Metric]:
    node_cpu = CounterMetricFamily(
        "node_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds")
    node_memory = GaugeMetricFamily(
        "node_memory_working_set_bytes", "[STABLE] Current working set of the node in bytes")
    if snap.node is not None:
        node_cpu.add_metric([], snap.node.usage.cpu_seconds, timestamp=snap.node.timestamp)
        node_memory.add_metric([], snap.node.usage.memory_working_set,
                               timestamp=snap.node.timestamp)
    container_cpu = CounterMetricFamily(
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        labels=CONTAINER_LABELS)
    container_memory = GaugeMetricFamily(
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes", labels=CONTAINER_LABELS)
    start_time = GaugeMetricFamily(
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        labels=CONTAINER_LABELS)
    for c in snap.containers:
        labels, at = [c.container, c.namespace, c.pod], c.sample.timestamp
        container_cpu.add_metric(labels, c.sample.usage.cpu_seconds, timestamp=at)
        container_memory.add_metric(labels, c.sample.usage.memory_working_set, timestamp=at)
        if c.started_at is not None:
            start_time.add_metric(labels, c.started_at, timestamp=c.started_at)
    pod_cpu = CounterMetricFamily(
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds", labels=POD_LABELS)
    pod_memory = GaugeMetricFamily(
        "pod_memory_working_set_bytes", "[STABLE] Current working set of the pod in bytes",
        labels=POD_LABELS)
    for p in snap.pods:
        labels, at = [p.namespace, p.pod], p.sample.timestamp
        pod_cpu.add_metric(labels, p.sample.usage.cpu_seconds, timestamp=at)
        pod_memory.add_metric(labels, p.sample.usage.memory_working_set, timestamp=at)
    scrape_error = GaugeMetricFamily(
        "resource_scrape_error",
        "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise")
    scrape_error.add_metric([], 1 if snap.error else 0)
    yield from (container_cpu, container_memory, start_time, node_cpu, node_memory,
                pod_cpu, pod_memory, scrape_error)


class _Collector:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        return _families(self.snap)


def render(snap: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snap))
    return generate_latest(registry)
