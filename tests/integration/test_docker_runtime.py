"""The docker runtime against a real engine of the test's own: a pod's
sandbox is named into ``ip netns`` for the pod network, its containers share
the sandbox's network and IPC, see the pod's hosts and resolv.conf, sit in
the pod's cgroup with their limits, write their output to the pod's log
files, take stdin from attach sessions (the container's stdin open across
them), restart with the previous instance's log kept, end OOMKilled when
over their memory, are found again by a new runtime instance, and go with
the pod. Nothing is networked: the sandbox has only loopback."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from netplane.api.meta import Obj
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.cgroups import Hierarchy
from netplane.node.runtime.dockerd import Engine
from netplane.node.runtime.dockerruntime import DockerRuntime
from netplane.node.runtime.process import ContainerStatus, ImageNotRunnable
from tests.integration.dockerengine import throwaway_engine
from tests.integration.scratchcgroups import scratch_cgroups

pytestmark = pytest.mark.root
T = TypeVar("T")
ECHO = {"name": "web", "image": "netplane/echo:1.0", "ports": [{"containerPort": 8080}]}


def wait_for(probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with throwaway_engine(tmp_path_factory.mktemp("docker")) as e:
        yield e


@pytest.fixture(scope="module")
def cgroups() -> Iterator[Hierarchy]:
    # One path in every controller: the engine takes one cgroup parent.
    with scratch_cgroups(absolute=True) as found:
        yield found


@dataclass
class Pod:
    runtime: DockerRuntime
    obj: Obj
    netns: str
    resolv: Path
    hosts: Path

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"]["uid"])

    def start(self, container: Obj) -> int:
        return self.runtime.start_container(
            pod_uid=self.uid, pod_name="web", namespace="shop", container=container,
            netns=self.netns, hostname="web", resolv_conf=self.resolv, hosts=self.hosts,
            env={"POD_NAME": "web"}, pod_cgroup=PodCgroup.of(self.obj))

    def exited(self, name: str) -> object:
        st = self.runtime.container_state(self.uid, name)
        return st if st.status is ContainerStatus.EXITED else None


@pytest.fixture
def pod(engine: Engine, cgroups: Hierarchy, tmp_path: Path) -> Iterator[Pod]:
    rt = DockerRuntime(state_dir=tmp_path / "state", engine_url=engine.url, cgroups=cgroups)
    uid = str(uuid.uuid4())
    obj = {"metadata": {"name": "web", "namespace": "shop", "uid": uid},
           "spec": {"containers": [ECHO]}}
    netns = f"npt-dpod-{uid[:8]}"
    try:
        rt.create_sandbox(obj, netns)
        resolv, hosts = rt.write_pod_files(uid, nameservers=["10.96.0.10"],
                                           searches=["shop.svc.cluster.local"], options=[],
                                           hostname="web", pod_ip="127.0.0.1")
        yield Pod(rt, obj, netns, resolv, hosts)
    finally:
        rt.stop_pod(uid, grace=0)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def busybox(name: str, script: str, **extra: object) -> Obj:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


def test_containers_share_the_sandbox_and_see_the_pod_files(pod: Pod) -> None:
    links = subprocess.run(["ip", "-n", pod.netns, "-o", "link"], capture_output=True,
                           text=True, check=True).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    pid = pod.start(ECHO)
    assert pod.runtime.container_state(pod.uid, "web").pid == pid
    probe = ("until wget -qO- http://127.0.0.1:8080/; do sleep 0.1; done; echo; hostname; "
             "cat /etc/resolv.conf; grep web /etc/hosts; readlink /proc/self/ns/ipc; "
             "echo POD_NAME=$POD_NAME")
    pod.start(busybox("probe", probe))
    wait_for(lambda: pod.exited("probe"))
    log = pod.runtime.log_path(pod.uid, "probe")
    out = wait_for(lambda: (text := log.read_text()).endswith("POD_NAME=web\n") and text)
    assert out.startswith("pod=web ")
    assert "\nweb\n" in out and "nameserver 10.96.0.10" in out
    assert "search shop.svc.cluster.local" in out and "127.0.0.1\tweb" in out
    assert "POD_NAME=web" in out
    sandbox_ipc = Path(f"/proc/{pod.runtime._sandbox_pid(pod.uid)}/ns/ipc").readlink()
    assert str(sandbox_ipc) in out
    assert Path(f"/run/netns/{pod.netns}").stat().st_ino == \
        Path(f"/proc/{pid}/ns/net").stat().st_ino


def test_limits_and_the_cgroup_are_the_pods(pod: Pod, cgroups: Hierarchy) -> None:
    pod.start(busybox("spin", "sleep 600",
                      resources={"limits": {"cpu": "500m", "memory": "64Mi"}}))
    rel = pod.runtime.cgroup_path(pod.uid, "spin")
    assert rel is not None and rel.startswith(f"{PodCgroup.of(pod.obj).path}/")
    assert wait_for(lambda: cgroups.usage(rel)) is not None
    if "memory" in cgroups.roots and not (Path("/sys/fs/cgroup") / "cgroup.controllers").exists():
        assert (cgroups.roots["memory"] / rel / "memory.limit_in_bytes").read_text() == \
            f"{64 * 2**20}\n"
        assert (cgroups.roots["cpu"] / rel / "cpu.cfs_quota_us").read_text() == "50000\n"


def test_a_restart_keeps_the_previous_log_and_an_oom_kill_is_said(pod: Pod) -> None:
    hog = busybox("hog", "echo starting; head -c 200m /dev/zero | tail",
                  resources={"limits": {"memory": "64Mi"}})
    pod.start(hog)
    first = wait_for(lambda: pod.exited("hog"))
    assert (first.exit_code, first.reason) == (137, "OOMKilled")  # type: ignore[attr-defined]
    log = pod.runtime.log_path(pod.uid, "hog")
    wait_for(lambda: log.read_text().endswith("Killed\n"))  # the shell saw tail killed
    pod.start(hog)
    assert pod.runtime.previous_log_path(pod.uid, "hog").read_text() == "starting\nKilled\n"
    wait_for(lambda: pod.exited("hog"))
    assert pod.runtime.containers(pod.uid) == ["hog"]


def test_a_new_runtime_finds_the_running_containers(pod: Pod, engine: Engine) -> None:
    pid = pod.start(busybox("long", "echo one; sleep 600"))
    again = DockerRuntime(state_dir=pod.runtime.state_dir, engine_url=engine.url,
                          cgroups=pod.runtime.cgroups)
    state = again.container_state(pod.uid, "long")
    assert (state.status, state.pid) == (ContainerStatus.RUNNING, pid)
    assert pod.uid in again.known_pods()
    assert again.start_container(
        pod_uid=pod.uid, pod_name="web", namespace="shop",
        container=busybox("long", "echo one; sleep 600"), netns=pod.netns, hostname="web",
        resolv_conf=pod.resolv, hosts=pod.hosts, env={},
        pod_cgroup=PodCgroup.of(pod.obj)) == pid
    again.stop_container(pod.uid, "long", grace=1)
    assert again.container_state(pod.uid, "long").status is ContainerStatus.EXITED


def test_a_missing_image_is_an_error_and_the_pod_goes_whole(pod: Pod, engine: Engine) -> None:
    with pytest.raises(ImageNotRunnable, match=r"No such image: nginx:1\.27"):
        pod.start({"name": "nginx", "image": "nginx:1.27"})
    pod.start(busybox("sleeper", "sleep 600"))
    pod.runtime.stop_pod(pod.uid, grace=0)
    with contextlib.closing(engine.client()) as c:
        left = c.containers(all=True, filters={"label": [f"io.kubernetes.pod.uid={pod.uid}"]})
    assert left == []
    assert not pod.runtime.pod_dir(pod.uid).exists()


def test_attach_stdin_reaches_the_container_and_stays_open_after(pod: Pod) -> None:
    pod.start(busybox("reader", 'while read l; do echo "got $l"; done', stdin=True))
    pod.start(busybox("deaf", "sleep 600"))
    assert pod.runtime.open_stdin(pod.uid, "deaf") is None
    log = pod.runtime.log_path(pod.uid, "reader")
    for word in ("ping", "pong"):  # two sessions, one after the other
        fd = pod.runtime.open_stdin(pod.uid, "reader")
        assert fd is not None
        try:
            os.write(fd, f"{word}\n".encode())
            wait_for(lambda answer=f"got {word}\n": answer in log.read_text())
        finally:
            os.close(fd)
    assert log.read_text() == "got ping\ngot pong\n"
    assert pod.runtime.container_state(pod.uid, "reader").status is ContainerStatus.RUNNING


def test_stdin_once_closes_when_the_first_attach_ends(pod: Pod) -> None:
    pod.start(busybox("once", 'while read l; do echo "got $l"; done; echo ended',
                      stdin=True, stdinOnce=True))
    log = pod.runtime.log_path(pod.uid, "once")
    fd = pod.runtime.open_stdin(pod.uid, "once")
    assert fd is not None
    try:
        os.write(fd, b"ping\n")
        wait_for(lambda: "got ping\n" in log.read_text())
    finally:
        os.close(fd)
    # The engine's StdinOnce: the session's end is the end of the input.
    wait_for(lambda: "ended\n" in log.read_text())
    wait_for(lambda: pod.runtime.container_state(pod.uid, "once").status
             is ContainerStatus.EXITED)
