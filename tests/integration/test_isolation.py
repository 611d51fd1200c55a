"""The isolation experiment of Docker tutorials, on the process runtime:
co-located pods, one noisy. A CPU stressor (stress-ng) under
``limits.cpu: 500m`` gets no more than half a CPU, read from its cgroup's
counters, while an unlimited neighbour keeps answering; a pod under
``limits.memory: 64Mi`` that allocates 200 MiB is OOMKilled (137) and the
neighbour still answers. Each pod has a netns of its own with only
loopback; the neighbour's echo server is asked there."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from netplane.api.meta import Obj
from netplane.node import podstatus
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.cgroups import Hierarchy
from netplane.node.runtime.process import ContainerStatus, ProcessRuntime
from tests.integration.scratchcgroups import scratch_cgroups

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("stress-ng") is None,
                                 reason="stress-ng is not installed (scripts/setup.sh does)")]

T = TypeVar("T")
ECHO = {"name": "web", "image": "netplane/echo:1.0", "ports": [{"containerPort": 8080}]}
CPU_LIMIT = 0.5
# Under CFS a cgroup gets its quota per 100 ms period: over a window of
# seconds the share can pass the limit only by part of one period.
CPU_BOUND = 0.55


def wait_for(probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """What ``probe`` returns once it is true; the timeout guards a hung test."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@dataclass
class Node:
    runtime: ProcessRuntime
    cgroups: Hierarchy
    make_netns: Callable[[str], str]
    netns: dict[str, str]

    def run(self, name: str, *containers: Obj) -> PodCgroup:
        uid = f"15015000-0000-4000-8000-{len(self.netns):012d}"
        pod = {"metadata": {"uid": uid, "name": name}, "spec": {"containers": list(containers)}}
        cgroup = PodCgroup.of(pod)
        netns = self.netns[uid] = self.make_netns(name)
        resolv, hosts = self.runtime.write_pod_files(
            uid, nameservers=["10.96.0.10"], searches=[], options=[], hostname=name,
            pod_ip="127.0.0.1")
        for c in containers:
            self.runtime.start_container(
                pod_uid=uid, pod_name=name, namespace="default", container=c, netns=netns,
                hostname=name, resolv_conf=resolv, hosts=hosts, env={}, pod_cgroup=cgroup)
        return cgroup

    def answers(self, cgroup: PodCgroup) -> bool:
        out = subprocess.run(["ip", "netns", "exec", self.netns[cgroup.uid], "curl", "-s",
                              "-m", "10", "http://127.0.0.1:8080/"],
                             capture_output=True, text=True, check=False)
        return out.returncode == 0 and bool(out.stdout)


@pytest.fixture
def node(make_netns: Callable[[str], str], tmp_path: Path) -> Iterator[Node]:
    with scratch_cgroups() as cgroups:
        rt = ProcessRuntime(state_dir=tmp_path / "state", cgroups=cgroups)
        try:
            yield Node(rt, cgroups, make_netns, {})
        finally:
            for uid in rt.known_pods():
                rt.stop_pod(uid, grace=0)


def test_a_cpu_stressor_limited_to_500m_gets_half_a_cpu_beside_a_serving_neighbour(
        node: Node) -> None:
    neighbour = node.run("neighbour", ECHO)
    wait_for(lambda: node.answers(neighbour))
    noisy = node.run("noisy", {"name": "stress", "image": "busybox",
                               "command": ["stress-ng", "--cpu", "2", "--timeout", "600"],
                               "resources": {"limits": {"cpu": "500m"}}})
    rel = f"{noisy.path}/stress"
    first = wait_for(lambda: node.cgroups.usage(rel))
    began = time.monotonic()
    # Until the stressor has used 1.5 s of CPU: three seconds at its limit.
    last = wait_for(lambda: u if (u := node.cgroups.usage(rel)) and
                    u.cpu_seconds - first.cpu_seconds >= 3 * CPU_LIMIT else None)
    share = (last.cpu_seconds - first.cpu_seconds) / (time.monotonic() - began)
    print(f"stress-ng --cpu 2 under limits.cpu 500m: {share:.3f} CPU")
    assert share <= CPU_BOUND
    assert node.answers(neighbour)
    assert node.runtime.container_state(noisy.uid, "stress").status is ContainerStatus.RUNNING


def test_a_pod_over_its_64mi_is_oom_killed_and_its_neighbour_serves_on(node: Node) -> None:
    neighbour = node.run("neighbour", ECHO)
    wait_for(lambda: node.answers(neighbour))
    # tail keeps a line until its end, and /dev/zero has none: 200 MiB held.
    # (stress-ng's --vm parent outlives its killed worker and exits 0 under
    # cgroup v1, so it would not show the kill.)
    hog = node.run("hog", {"name": "hog", "image": "busybox",
                           "command": ["sh", "-c", "head -c 200m /dev/zero | tail"],
                           "resources": {"limits": {"memory": "64Mi"}}})
    state = wait_for(lambda: s if (s := node.runtime.container_state(hog.uid, "hog")).status
                     is ContainerStatus.EXITED else None)
    assert (state.exit_code, state.reason) == (137, "OOMKilled")
    assert podstatus.terminated(state)["reason"] == "OOMKilled"
    assert node.answers(neighbour)
