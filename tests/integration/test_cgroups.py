"""Containers of the process runtime in cgroups of their own, in the
kernel: a memory limit ends a memory hog as OOMKilled, a CPU limit holds a
busy loop down, the usage counters read back, and the cgroups go with the
pod. The node's root is a folder of its own (``netplane-test/<id>``),
removed afterwards. The pod's netns has only loopback: nothing here is
networked."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from netplane.api.meta import Obj
from netplane.node import execsession, podstatus
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.cgroups import Hierarchy, Version
from netplane.node.runtime.process import ContainerState, ContainerStatus, ProcessRuntime
from tests.integration.scratchcgroups import scratch_cgroups

pytestmark = pytest.mark.root

T = TypeVar("T")
UID = "7a2b3c4d-0000-4000-8000-000000000002"


def wait_for(probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@dataclass
class Pod:
    runtime: ProcessRuntime
    cgroups: Hierarchy
    netns: str
    resolv: Path
    hosts: Path
    pid_ns: str | None = None

    def start(self, *containers: Obj) -> PodCgroup:
        spec = {"metadata": {"uid": UID}, "spec": {"containers": list(containers)}}
        cgroup = PodCgroup.of(spec)
        for c in containers:
            self.runtime.start_container(
                pod_uid=UID, pod_name="hog", namespace="default", container=c,
                netns=self.netns, hostname="hog", resolv_conf=self.resolv, hosts=self.hosts,
                env={}, pod_cgroup=cgroup, pid_ns=self.pid_ns)
        return cgroup


@pytest.fixture
def cgroups() -> Iterator[Hierarchy]:
    with scratch_cgroups() as found:
        yield found


@pytest.fixture
def pod(cgroups: Hierarchy, make_netns: Callable[[str], str], tmp_path: Path) -> Iterator[Pod]:
    rt = ProcessRuntime(state_dir=tmp_path / "state", cgroups=cgroups)
    resolv, hosts = rt.write_pod_files(UID, nameservers=["10.96.0.10"], searches=[],
                                       options=[], hostname="hog", pod_ip="127.0.0.1")
    try:
        yield Pod(rt, cgroups, make_netns("pod"), resolv, hosts)
    finally:
        for uid in rt.known_pods():
            rt.stop_pod(uid, grace=0)


def python(code: str, **resources: dict[str, str]) -> Obj:
    return {"name": "main", "image": "python", "command": [sys.executable, "-c", code],
            "resources": resources}


def exited(state: ContainerState) -> ContainerState | None:
    return state if state.status is ContainerStatus.EXITED else None


def test_a_memory_hog_over_its_limit_is_oom_killed(pod: Pod) -> None:
    hog = python("import time; x = 'x' * (256 * 2**20); time.sleep(60)",
                 limits={"memory": "64Mi"})
    pod.start(hog)
    state = wait_for(lambda: exited(pod.runtime.container_state(UID, "main")), 30)
    assert (state.exit_code, state.reason) == (137, "OOMKilled")
    assert podstatus.terminated(state)["reason"] == "OOMKilled"
    # Read back from disk as a restarted agent would.
    fresh = ProcessRuntime(state_dir=pod.runtime.state_dir, cgroups=pod.cgroups)
    assert fresh.container_state(UID, "main").reason == "OOMKilled"


def test_an_oom_kill_in_a_pid_namespace_of_its_own_is_oom_killed_too(pod: Pod) -> None:
    """Its command's parent is unshare, which does not pass a SIGKILL on."""
    pod.pid_ns = "own"
    pod.start(python("import time; x = 'x' * (256 * 2**20); time.sleep(60)",
                     limits={"memory": "64Mi"}))
    state = wait_for(lambda: exited(pod.runtime.container_state(UID, "main")), 30)
    assert (state.exit_code, state.reason) == (137, "OOMKilled")


def test_a_kill_that_is_no_oom_is_an_error(pod: Pod) -> None:
    pod.start(python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
                     limits={"memory": "64Mi"}))
    state = wait_for(lambda: exited(pod.runtime.container_state(UID, "main")), 30)
    assert (state.exit_code, state.reason) == (137, "")
    assert podstatus.terminated(state)["reason"] == "Error"


def test_a_cpu_limit_of_100m_holds_a_busy_loop_to_a_tenth_of_a_cpu(pod: Pod) -> None:
    cgroup = pod.start(python("while True: pass", limits={"cpu": "100m"}))
    rel = f"{cgroup.path}/main"
    first = wait_for(lambda: pod.cgroups.usage(rel), 10)
    began = time.monotonic()
    # Until the loop has used 0.3 s of CPU: three seconds at a tenth of one.
    last = wait_for(lambda: u if (u := pod.cgroups.usage(rel)) and
                    u.cpu_seconds - first.cpu_seconds >= 0.3 else None, 60)
    rate = (last.cpu_seconds - first.cpu_seconds) / (time.monotonic() - began)
    print(f"busy loop under a 100m limit: {rate:.3f} CPU")
    assert rate < 0.5
    assert last.memory_working_set > 0


def test_an_exec_runs_in_the_containers_cgroups(pod: Pod) -> None:
    cgroup = pod.start(python("import time; time.sleep(60)", limits={"memory": "64Mi"}))
    pid = pod.runtime.container_state(UID, "main").pid
    assert pid is not None
    out = subprocess.run(execsession.exec_argv(pid, ["cat", "/proc/self/cgroup"]),
                         capture_output=True, text=True, timeout=10, check=True).stdout
    memory = next(line for line in out.splitlines() if ":memory:" in line)
    assert memory.endswith(f"/{cgroup.path}/main")


def test_limits_are_written_and_the_cgroups_go_with_the_pod(pod: Pod) -> None:
    cgroup = pod.start(python("import time; time.sleep(60)",
                              requests={"cpu": "250m"}, limits={"memory": "128Mi"}))
    assert cgroup.path == f"kubepods/burstable/pod{UID}"
    folder = pod.cgroups.roots["cpu"] / cgroup.path / "main"
    pid = pod.runtime.container_state(UID, "main").pid
    assert pid is not None
    procs = (folder / "cgroup.procs").read_text().split()
    assert str(pid) in procs
    if pod.cgroups.version is Version.V1:
        assert (folder / "cpu.shares").read_text() == "256\n"
        assert (folder / "cpu.cfs_quota_us").read_text() == "-1\n"
        memory = pod.cgroups.roots["memory"] / cgroup.path / "main"
        assert (memory / "memory.limit_in_bytes").read_text() == f"{128 * 2**20}\n"
    else:
        assert (folder / "cpu.weight").read_text() == "10\n"
        assert (folder / "memory.max").read_text() == f"{128 * 2**20}\n"
    usage = wait_for(lambda: u if (u := pod.cgroups.usage(cgroup.path)) and u.cpu_seconds > 0
                     else None, 10)
    assert usage.memory_usage > 0
    pod.runtime.stop_pod(UID, grace=0)
    assert not any(f.exists() for f in pod.cgroups.folders(cgroup.path))
