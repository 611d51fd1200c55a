"""Cgroup limits as the kubelet converts ``resources`` (tables after its
``TestMilliCPUToShares``, ``TestMilliCPUToQuota`` and the QoS cases), and
the files either cgroup version gets, written into a folder that stands in
for /sys/fs/cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.api.meta import Obj
from netplane.node.cgrouplimits import (
    Limits,
    PodCgroup,
    QOSClass,
    container_limits,
    milli_cpu_to_quota,
    milli_cpu_to_shares,
    pod_limits,
    qos_class,
)
from netplane.node.cgroups import (
    Hierarchy,
    Version,
    parse_mountinfo,
    parse_self_cgroup,
    procs_files_of,
    record,
    recorded,
    remove_recorded,
)

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = "8:pids:/\n4:memory:/sandbox/a1\n2:cpuacct:/\n1:cpu:/\n0::/\n"


def container(cpu_request: str | None = None, cpu_limit: str | None = None,
              memory_request: str | None = None, memory_limit: str | None = None) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu_request), ("memory", memory_request)) if v}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v}
    return {"name": "c", "resources": {"requests": requests, "limits": limits}}


def pod(*containers: Obj) -> Obj:
    return {"metadata": {"uid": "u1"}, "spec": {"containers": list(containers)}}


@pytest.mark.parametrize(("milli", "shares"), [
    (0, 2), (1, 2), (2, 2), (100, 102), (250, 256), (1000, 1024), (1500, 1536),
    (300_000, 262144),
])
def test_milli_cpu_to_shares(milli: int, shares: int) -> None:
    assert milli_cpu_to_shares(milli) == shares


@pytest.mark.parametrize(("milli", "quota"), [
    (0, None), (5, 1000), (9, 1000), (10, 1000), (100, 10000), (200, 20000), (1500, 150000),
])
def test_milli_cpu_to_quota(milli: int, quota: int | None) -> None:
    assert milli_cpu_to_quota(milli) == quota


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (102, 4), (262144, 10000)])
def test_cpu_weight_of_shares(shares: int, weight: int) -> None:
    assert Limits(shares=shares).weight == weight


@pytest.mark.parametrize(("spec", "limits"), [
    (container(), Limits()),
    (container(cpu_request="250m"), Limits(shares=256)),
    (container(cpu_limit="100m"), Limits(shares=102, quota_us=10000)),
    (container(cpu_request="0.5", cpu_limit="1", memory_limit="64Mi"),
     Limits(shares=512, quota_us=100000, memory=64 * 2**20)),
    (container(memory_limit="1G"), Limits(memory=10**9)),
])
def test_container_limits(spec: Obj, limits: Limits) -> None:
    assert container_limits(spec) == limits


@pytest.mark.parametrize(("spec", "qos"), [
    (pod(container()), QOSClass.BEST_EFFORT),
    (pod(container(cpu_request="100m")), QOSClass.BURSTABLE),
    (pod(container(cpu_limit="1", memory_limit="1Gi")), QOSClass.GUARANTEED),
    (pod(container(cpu_request="1", cpu_limit="1", memory_request="1Gi",
                   memory_limit="1Gi")), QOSClass.GUARANTEED),
    (pod(container(cpu_request="500m", cpu_limit="1", memory_limit="1Gi")), QOSClass.BURSTABLE),
    (pod(container(cpu_limit="1", memory_limit="1Gi"), container()), QOSClass.BURSTABLE),
])
def test_qos_class(spec: Obj, qos: QOSClass) -> None:
    assert qos_class(spec) == qos


def test_pod_limits_sum_its_containers_and_limit_only_when_all_do() -> None:
    both = pod(container(cpu_limit="100m", memory_limit="32Mi"),
               container(cpu_request="200m", cpu_limit="300m", memory_limit="16Mi"))
    assert pod_limits(both) == Limits(shares=307, quota_us=40000, memory=48 * 2**20)
    one = pod(container(cpu_limit="100m"), container(cpu_request="200m"))
    assert pod_limits(one) == Limits(shares=307)
    assert pod_limits(pod(container())) == Limits()


@pytest.mark.parametrize(("spec", "path"), [
    (pod(container()), "kubepods/besteffort/podu1"),
    (pod(container(cpu_request="1m")), "kubepods/burstable/podu1"),
    (pod(container(cpu_limit="1", memory_limit="1Gi")), "kubepods/podu1"),
])
def test_pod_cgroup_path(spec: Obj, path: str) -> None:
    assert PodCgroup.of(spec).path == path


def test_detect_prefers_v1_controllers_on_a_hybrid_host() -> None:
    h = Hierarchy.detect("netplane/node-1", mountinfo=HYBRID_MOUNTINFO, self_cgroup=HYBRID_SELF)
    assert h is not None and h.version is Version.V1
    assert h.roots == {"cpu": Path("/sys/fs/cgroup/cpu/netplane/node-1"),
                       "cpuacct": Path("/sys/fs/cgroup/cpuacct/netplane/node-1"),
                       "memory": Path("/sys/fs/cgroup/memory/sandbox/a1/netplane/node-1"),
                       "pids": Path("/sys/fs/cgroup/pids/netplane/node-1")}


def test_parsers() -> None:
    assert parse_self_cgroup("2:cpu,cpuacct:/a\n0::/b\n") == {"cpu": "/a", "cpuacct": "/a",
                                                               "": "/b"}
    mount = parse_mountinfo("32 31 0:29 /x /sys/fs/cgroup/cpu\\040y rw - cgroup cgroup rw,cpu\n")
    assert mount[0].point == Path("/sys/fs/cgroup/cpu y") and mount[0].root == "/x"


@pytest.fixture
def v2(tmp_path: Path) -> Hierarchy:
    """A v2 hierarchy in a folder: the agent's cgroup /agent offers cpu,
    memory and pids but holds processes, so the node goes at the top."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "agent").mkdir()
    mountinfo = f"41 31 0:38 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    h = Hierarchy.detect("netplane/node-1", mountinfo=mountinfo, self_cgroup="0::/agent\n")
    assert h is not None and h.version is Version.V2
    return h


def test_v2_limits_and_usage(v2: Hierarchy, tmp_path: Path) -> None:
    v2.create("kubepods/burstable/podu1/web")
    folder = tmp_path / "netplane/node-1/kubepods/burstable/podu1/web"
    assert folder.is_dir()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids\n"
    (folder / "pids.max").write_text("max\n")
    v2.set_limits("kubepods/burstable/podu1/web",
                  Limits(shares=102, quota_us=10000, memory=64 * 2**20, pids=100))
    assert {f: (folder / f).read_text() for f in ("cpu.weight", "cpu.max", "memory.max",
                                                   "pids.max")} == {
        "cpu.weight": "4\n", "cpu.max": "10000 100000\n", "memory.max": "67108864\n",
        "pids.max": "100\n"}
    (folder / "memory.oom.group").write_text("0\n")
    v2.kill_together_on_oom("kubepods/burstable/podu1/web")
    assert (folder / "memory.oom.group").read_text() == "1\n"
    v2.set_limits("kubepods/burstable/podu1/web", Limits())
    assert (folder / "cpu.max").read_text() == "max 100000\n"
    assert (folder / "memory.max").read_text() == "max\n"
    (folder / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (folder / "memory.current").write_text("10000\n")
    (folder / "memory.stat").write_text("anon 6000\ninactive_file 3000\n")
    (folder / "memory.events").write_text("low 0\noom 1\noom_kill 1\n")
    usage = v2.usage("kubepods/burstable/podu1/web")
    assert usage is not None
    assert (usage.cpu_seconds, usage.memory_usage, usage.memory_working_set) == (2.5, 10000, 7000)
    assert v2.oom_kills("kubepods/burstable/podu1/web") == 1
    assert v2.usage("kubepods/none") is None


def test_v1_limits(tmp_path: Path) -> None:
    roots = {c: tmp_path / c / "node" for c in ("cpu", "cpuacct", "memory", "pids")}
    h = Hierarchy(Version.V1, roots)
    h.create("kubepods/podu1", Limits(shares=1024, quota_us=100000, memory=2**30))
    h.create("kubepods/besteffort/podu2", Limits())
    pod1 = "kubepods/podu1"
    assert (roots["cpu"] / pod1 / "cpu.shares").read_text() == "1024\n"
    assert (roots["cpu"] / pod1 / "cpu.cfs_quota_us").read_text() == "100000\n"
    assert (roots["cpu"] / pod1 / "cpu.cfs_period_us").read_text() == "100000\n"
    assert (roots["memory"] / pod1 / "memory.limit_in_bytes").read_text() == "1073741824\n"
    pod2 = "kubepods/besteffort/podu2"
    assert (roots["cpu"] / pod2 / "cpu.cfs_quota_us").read_text() == "-1\n"
    assert (roots["memory"] / pod2 / "memory.limit_in_bytes").read_text() == "-1\n"
    assert (roots["pids"] / pod2 / "pids.max").read_text() == "max\n"
    assert h.procs_files(pod1)[0] == roots["cpu"] / pod1 / "cgroup.procs"


def test_recorded_cgroups_are_removed_with_their_empty_parents(tmp_path: Path) -> None:
    roots = {c: tmp_path / c / "netplane/lab-a/node-1" for c in ("cpu", "memory")}
    h = Hierarchy(Version.V1, roots, name="netplane/lab-a/node-1")
    h.create("kubepods/besteffort/podu1/web")
    (tmp_path / "memory/netplane/lab-b").mkdir()  # another lab's
    record(h, tmp_path / "cgroups")
    again = recorded(tmp_path / "cgroups")
    assert again is not None and (again.roots, again.name) == (h.roots, h.name)
    assert remove_recorded(tmp_path / "cgroups")
    assert recorded(tmp_path / "cgroups") is None  # gone from the kernel
    assert not (tmp_path / "cpu/netplane").exists()
    assert sorted(p.name for p in (tmp_path / "memory/netplane").iterdir()) == ["lab-b"]


def test_an_exec_joins_the_cgroups_its_container_is_in_that_are_not_ours() -> None:
    theirs = ("8:pids:/n/kubepods/podu1/web\n4:memory:/sandbox/a1/n/kubepods/podu1/web\n"
              "2:cpuacct:/n/kubepods/podu1/web\n1:cpu:/n/kubepods/podu1/web\n0::/\n")
    found = procs_files_of(1, mountinfo=HYBRID_MOUNTINFO, own=HYBRID_SELF, theirs=theirs)
    assert found == [Path(f"/sys/fs/cgroup/{c}/n/kubepods/podu1/web/cgroup.procs")
                     for c in ("cpu", "cpuacct")] + [
        Path("/sys/fs/cgroup/memory/sandbox/a1/n/kubepods/podu1/web/cgroup.procs"),
        Path("/sys/fs/cgroup/pids/n/kubepods/podu1/web/cgroup.procs")]
    assert procs_files_of(1, mountinfo=HYBRID_MOUNTINFO, own=HYBRID_SELF,
                          theirs=HYBRID_SELF) == []
