"""The agent's ``/metrics/cadvisor``: each container's CPU, memory, limits
and process counts in the Prometheus text format, with the metric names,
help and labels of cAdvisor as the kubelet serves it. ``netplane stats``
reads it (through the API server's ``nodes/NAME/proxy``) as ``docker
stats`` reads the engine's stats.

Read from each container's cgroup (and each pod's, with ``container=""``,
as cAdvisor lists every cgroup), v1 or v2. Labels: ``container``, ``pod``,
``namespace``, ``id`` (the cgroup below the node's root), ``image`` and
``name`` (the runtime's container id). An unlimited memory limit is 0, as
cAdvisor writes it; ``machine_memory_bytes`` is what the node has, which
``docker stats`` shows as the limit of an unlimited container.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.node import podstatus
from netplane.node.cgroups import Hierarchy, Usage, Version
from netplane.node.resourcemetrics import CONTENT_TYPE
from netplane.node.runtime.process import ContainerStatus, ProcessRuntime

__all__ = ["CONTENT_TYPE", "CgroupStats", "ContainerStats", "render", "snapshot"]

LABELS = ["container", "id", "image", "name", "namespace", "pod"]
# cAdvisor writes limits above 2^62 (v1's "no limit" page-rounded maximum) as 0.
_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class CgroupStats:
    usage: Usage
    memory_limit: int  # 0: none
    cpu_quota_us: int  # 0: none
    cpu_period_us: int
    cpu_shares: int
    processes: int
    threads: int
    oom_kills: int


@dataclass(frozen=True)
class ContainerStats:
    namespace: str
    pod: str
    container: str  # "" for the pod's own cgroup
    cgroup: str
    image: str
    container_id: str
    stats: CgroupStats
    timestamp: float
    started_at: float | None = None


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().split()
    except (FileNotFoundError, OSError):
        return None
    if not text:
        return None
    if text[0] == "max":
        return 0
    with contextlib.suppress(ValueError):
        return int(text[0])
    return None


def _lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except (FileNotFoundError, OSError):
        return 0


def cgroup_stats(cgroups: Hierarchy, rel: str) -> CgroupStats | None:
    """What the cgroup ``rel`` holds and may use; None when it is gone."""
    usage = cgroups.usage(rel)
    if usage is None:
        return None
    mem, cpu = cgroups.roots["memory"] / rel, cgroups.roots["cpu"] / rel
    if cgroups.version is Version.V2:
        limit = _number(mem / "memory.max") or 0
        quota, period = 0, 100_000
        with contextlib.suppress(FileNotFoundError, ValueError):
            q, p = (cpu / "cpu.max").read_text().split()
            quota, period = (0 if q == "max" else int(q)), int(p)
        # cAdvisor turns the v2 weight back into v1 shares.
        weight = _number(cpu / "cpu.weight") or 100
        shares = 2 + ((weight - 1) * 262142) // 9999
        threads = _lines(cpu / "cgroup.threads")
    else:
        limit = _number(mem / "memory.limit_in_bytes") or 0
        quota = max(_number(cpu / "cpu.cfs_quota_us") or 0, 0)
        period = _number(cpu / "cpu.cfs_period_us") or 100_000
        shares = _number(cpu / "cpu.shares") or 1024
        threads = _lines(cpu / "tasks")
    return CgroupStats(usage=usage, memory_limit=0 if limit >= _UNLIMITED else limit,
                       cpu_quota_us=quota, cpu_period_us=period, cpu_shares=shares,
                       processes=_lines(cpu / "cgroup.procs"), threads=threads,
                       oom_kills=cgroups.oom_kills(rel))


def snapshot(pods: Iterable[Obj], runtime: ProcessRuntime) -> list[ContainerStats]:
    """Each pod of ``pods`` (those on the node) and its running containers."""
    cgroups = runtime.cgroups
    if cgroups is None:
        return []
    out: list[ContainerStats] = []
    for pod in pods:
        uid, ns, name = meta.uid(pod), meta.namespace(pod), meta.name(pod)
        rel = runtime.cgroup_path(uid)
        if rel is None:
            continue
        if (stats := cgroup_stats(cgroups, rel)) is not None:
            out.append(ContainerStats(ns, name, "", rel, "", "", stats, time.time()))
        spec = pod.get("spec") or {}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            state = runtime.container_state(uid, c["name"])
            if state.status is not ContainerStatus.RUNNING:
                continue
            # The runtime names the folder (the container's name, or docker's id).
            crel = runtime.cgroup_path(uid, c["name"]) or f"{rel}/{c['name']}"
            if (stats := cgroup_stats(cgroups, crel)) is not None:
                out.append(ContainerStats(ns, name, c["name"], crel, c.get("image", ""),
                                          podstatus.container_id(state), stats, time.time(),
                                          state.started_at))
    return out


def _machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _families(containers: list[ContainerStats]) -> Iterator[Metric]:
    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=LABELS)

    cpu = CounterMetricFamily("container_cpu_usage_seconds_total",
                              "Cumulative cpu time consumed in seconds.", labels=LABELS)
    oom = CounterMetricFamily("container_oom_events_total",
                              "Count of out of memory events observed for the container",
                              labels=LABELS)
    usage = gauge("container_memory_usage_bytes",
                  "Current memory usage in bytes, including all memory regardless of when "
                  "it was accessed")
    working = gauge("container_memory_working_set_bytes", "Current working set in bytes.")
    limit = gauge("container_spec_memory_limit_bytes", "Memory limit for the container.")
    quota = gauge("container_spec_cpu_quota", "CPU quota of the container.")
    period = gauge("container_spec_cpu_period", "CPU period of the container.")
    shares = gauge("container_spec_cpu_shares", "CPU share of the container.")
    procs = gauge("container_processes", "Number of processes running inside the container.")
    threads = gauge("container_threads", "Number of threads running inside the container")
    start = gauge("container_start_time_seconds",
                  "Start time of the container since unix epoch in seconds.")
    stamp = gauge("container_last_seen", "Last time a container was seen by the exporter")
    for c in containers:
        labels = [c.container, "/" + c.cgroup, c.image, c.container_id, c.namespace, c.pod]
        s, at = c.stats, c.timestamp
        cpu.add_metric(labels, s.usage.cpu_seconds, timestamp=at)
        oom.add_metric(labels, s.oom_kills, timestamp=at)
        usage.add_metric(labels, s.usage.memory_usage, timestamp=at)
        working.add_metric(labels, s.usage.memory_working_set, timestamp=at)
        limit.add_metric(labels, s.memory_limit, timestamp=at)
        if s.cpu_quota_us:
            quota.add_metric(labels, s.cpu_quota_us, timestamp=at)
        period.add_metric(labels, s.cpu_period_us, timestamp=at)
        shares.add_metric(labels, s.cpu_shares, timestamp=at)
        procs.add_metric(labels, s.processes, timestamp=at)
        threads.add_metric(labels, s.threads, timestamp=at)
        if c.started_at is not None:
            start.add_metric(labels, c.started_at, timestamp=at)
        stamp.add_metric(labels, at, timestamp=at)
    machine = GaugeMetricFamily("machine_memory_bytes", "Amount of memory installed on the "
                                "machine.")
    machine.add_metric([], _machine_memory())
    cores = GaugeMetricFamily("machine_cpu_cores", "Number of logical CPU cores.")
    cores.add_metric([], os.cpu_count() or 1)
    yield from (cpu, oom, usage, working, limit, quota, period, shares, procs, threads,
                start, stamp, machine, cores)


class _Collector:
    def __init__(self, containers: list[ContainerStats]) -> None:
        self.containers = containers

    def collect(self) -> Iterator[Metric]:
        return _families(self.containers)


def render(containers: list[ContainerStats]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(containers))
    return generate_latest(registry)
