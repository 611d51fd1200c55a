"""The agent's /metrics/cadvisor from cgroup files (v1 and v2 folders
written here), parsed back as Prometheus text with cAdvisor's names."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from netplane.node import cadvisor
from netplane.node.cgroups import Hierarchy, Usage, Version

REL = "kubepods/burstable/poduid-1/web"


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def _v2(tmp_path: Path, *, memory_max: str, cpu_max: str) -> Hierarchy:
    _write(tmp_path / REL, {
        "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\n", "memory.current": "10485760\n",
        "memory.stat": "inactive_file 1048576\n", "memory.max": memory_max,
        "cpu.max": cpu_max, "cpu.weight": "20\n", "cgroup.procs": "10\n11\n",
        "cgroup.threads": "10\n11\n12\n", "memory.events": "oom 1\noom_kill 1\n"})
    return Hierarchy(Version.V2, {c: tmp_path for c in ("cpu", "memory", "pids")}, tmp_path)


def _v1(tmp_path: Path) -> Hierarchy:
    roots = {c: tmp_path / c for c in ("cpu", "cpuacct", "memory", "pids")}
    _write(roots["cpu"] / REL, {"cpu.shares": "512\n", "cpu.cfs_quota_us": "50000\n",
                                "cpu.cfs_period_us": "100000\n", "cgroup.procs": "7\n",
                                "tasks": "7\n8\n"})
    _write(roots["cpuacct"] / REL, {"cpuacct.usage": "1500000000\n"})
    _write(roots["memory"] / REL, {
        "memory.usage_in_bytes": "4194304\n", "memory.stat": "total_inactive_file 0\n",
        "memory.limit_in_bytes": "9223372036854771712\n", "memory.oom_control": "oom_kill 0\n"})
    return Hierarchy(Version.V1, roots)


def test_v2_figures_limits_and_counts(tmp_path: Path) -> None:
    # Weight 20 is what 512 shares become; back as shares it is 500 (the
    # conversion rounds down both ways, in cAdvisor too).
    got = cadvisor.cgroup_stats(_v2(tmp_path, memory_max="67108864\n",
                                    cpu_max="50000 100000\n"), REL)
    assert got == cadvisor.CgroupStats(
        usage=Usage(cpu_seconds=2.5, memory_usage=10485760, memory_working_set=9437184),
        memory_limit=64 << 20, cpu_quota_us=50000, cpu_period_us=100000, cpu_shares=500,
        processes=2, threads=3, oom_kills=1)


def test_v2_without_limits_writes_zero_as_cadvisor_does(tmp_path: Path) -> None:
    got = cadvisor.cgroup_stats(_v2(tmp_path, memory_max="max\n", cpu_max="max 100000\n"), REL)
    assert got is not None and (got.memory_limit, got.cpu_quota_us) == (0, 0)


def test_v1_figures_and_its_no_limit_maximum(tmp_path: Path) -> None:
    got = cadvisor.cgroup_stats(_v1(tmp_path), REL)
    assert got is not None
    assert (got.usage.cpu_seconds, got.usage.memory_working_set, got.memory_limit,
            got.cpu_quota_us, got.cpu_shares, got.processes, got.threads) == \
        (1.5, 4194304, 0, 50000, 512, 1, 2)
    assert cadvisor.cgroup_stats(_v1(tmp_path), "kubepods/gone") is None


def test_rendered_with_cadvisors_names_and_labels(tmp_path: Path) -> None:
    stats = cadvisor.cgroup_stats(_v2(tmp_path, memory_max="67108864\n",
                                      cpu_max="50000 100000\n"), REL)
    assert stats is not None
    text = cadvisor.render([cadvisor.ContainerStats(
        "shop", "web-1", "web", REL, "netplane/echo:1.0", "process://10", stats,
        1_800_000_000.0, started_at=1_799_999_000.0)]).decode()
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    cpu = samples["container_cpu_usage_seconds_total"]
    assert cpu.labels == {"container": "web", "id": "/" + REL, "image": "netplane/echo:1.0",
                          "name": "process://10", "namespace": "shop", "pod": "web-1"}
    assert (cpu.value, cpu.timestamp) == (2.5, 1_800_000_000.0)
    assert samples["container_memory_usage_bytes"].value == 10485760
    assert samples["container_memory_working_set_bytes"].value == 9437184
    assert samples["container_spec_memory_limit_bytes"].value == 64 << 20
    assert samples["container_spec_cpu_quota"].value == 50000
    assert samples["container_processes"].value == 2
    assert samples["container_threads"].value == 3
    assert samples["container_oom_events_total"].value == 1
    assert samples["machine_memory_bytes"].value > 0
