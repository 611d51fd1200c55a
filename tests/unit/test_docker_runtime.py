"""The docker runtime's state machine against a fake engine: a pod's
sandbox first, containers labelled with their attempt and joined to it,
states read from the engine (running, exited, OOMKilled, never started),
the previous attempt kept and older ones removed, a new runtime instance
finding running containers, attach's stdin written to the engine's attach
stream, the pod removed whole, and the engine's
errors said as the pod manager expects them (ImageNotRunnable: the image
is missing or the engine refused; ImagePullError: a pull failed)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from netplane.api.meta import Obj
from netplane.node.runtime import dockerruntime
from netplane.node.runtime.dockerruntime import DockerRuntime, argv
from netplane.node.runtime.process import ContainerStatus, ImageNotRunnable, ImagePullError
from tests.unit.dockerfake import FakeEngine, fake_api

POD: Obj = {"metadata": {"name": "web", "namespace": "shop", "uid": "uid-1"},
            "spec": {"containers": []}}


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def runtime(engine: FakeEngine, state: Path, monkeypatch: pytest.MonkeyPatch) -> DockerRuntime:
    rt = DockerRuntime(state_dir=state, api=fake_api(engine))
    monkeypatch.setattr(dockerruntime.DockerRuntime, "_attach",
                        staticmethod(lambda netns, pid: None))
    return rt


@pytest.fixture
def rt(engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DockerRuntime:
    return runtime(engine, tmp_path / "state", monkeypatch)


def start(rt: DockerRuntime, container: Obj) -> int:
    resolv, hosts = rt.write_pod_files("uid-1", nameservers=["10.96.0.10"], searches=[],
                                       options=[], hostname="web", pod_ip="10.244.1.2")
    return rt.start_container(pod_uid="uid-1", pod_name="web", namespace="shop",
                              container=container, netns="np-uid-1", hostname="web",
                              resolv_conf=resolv, hosts=hosts, env={"POD_IP": "10.244.1.2"})


def test_command_and_args_replace_the_images_entrypoint_and_cmd() -> None:
    env = {"WHO": "world"}
    assert argv({"command": ["sh", "-c"], "args": ["echo $(WHO)"]}, env) == \
        (["sh", "-c"], ["echo world"])
    assert argv({"args": ["--port", "9090"]}, env) == (None, ["--port", "9090"])
    assert argv({}, env) == (None, None)  # the image's own entrypoint and cmd


def test_the_sandbox_comes_first_and_containers_join_it(rt: DockerRuntime,
                                                        engine: FakeEngine) -> None:
    with pytest.raises(ImageNotRunnable, match="no sandbox"):
        start(rt, {"name": "web", "image": "netplane/echo"})
    rt.create_sandbox(POD, "np-uid-1")
    (sandbox,) = engine.by_name("POD")
    assert sandbox.host_config["network_mode"] == "none"
    assert sandbox.host_config["ipc_mode"] == "shareable"
    pid = start(rt, {"name": "web", "image": "netplane/echo", "ports": [{"containerPort": 8080}],
                     "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}})
    (web,) = engine.by_name("web")
    assert web.host_config["network_mode"] == f"container:{sandbox.id}"
    assert web.host_config["ipc_mode"] == f"container:{sandbox.id}"
    assert (web.host_config["cpu_quota"], web.host_config["cpu_period"]) == (50_000, 100_000)
    assert web.host_config["mem_limit"] == web.host_config["memswap_limit"] == 64 * 2**20
    assert any(b.endswith(":/etc/resolv.conf") for b in web.host_config["binds"])
    assert "POD_IP=10.244.1.2" in web.env and "NETPLANE_CONTAINER_PORT=8080" in web.env
    assert web.labels["io.kubernetes.pod.uid"] == "uid-1"
    assert web.labels["io.netplane.attempt"] == "0"
    state = rt.container_state("uid-1", "web")
    assert (state.status, state.pid) == (ContainerStatus.RUNNING, pid)
    assert state.container_id == f"docker://{web.id}"
    assert rt.containers("uid-1") == ["web"]
    assert start(rt, {"name": "web", "image": "netplane/echo"}) == pid  # running: kept


def test_exits_restarts_and_oom_kills_read_from_the_engine(rt: DockerRuntime,
                                                           engine: FakeEngine) -> None:
    rt.create_sandbox(POD, "np-uid-1")
    assert rt.container_state("uid-1", "job").status is ContainerStatus.UNKNOWN
    hog = {"name": "job", "image": "busybox", "command": ["sh"]}
    start(rt, hog)
    engine.exit(engine.by_name("job")[0].id, 137, oom=True)
    state = rt.container_state("uid-1", "job")
    assert (state.status, state.exit_code, state.reason) == (ContainerStatus.EXITED, 137,
                                                            "OOMKilled")
    assert state.finished_at is not None and state.started_at is not None
    for _ in (1, 2):
        start(rt, hog)
        assert rt.container_state("uid-1", "job").status is ContainerStatus.RUNNING
        engine.exit(max(engine.by_name("job"), key=lambda c: c.labels["io.netplane.attempt"]
                        ).id, 1)
    # This attempt and the one before it stay (logs --previous); older ones go.
    assert sorted(c.labels["io.netplane.attempt"] for c in engine.by_name("job")) == ["1", "2"]
    state = rt.container_state("uid-1", "job")
    assert (state.exit_code, state.reason) == (1, "")


def test_a_new_instance_finds_the_pods_and_the_pod_goes_whole(
        rt: DockerRuntime, engine: FakeEngine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rt.create_sandbox(POD, "np-uid-1")
    pid = start(rt, {"name": "web", "image": "netplane/echo"})
    again = runtime(engine, tmp_path / "state", monkeypatch)
    assert "uid-1" in again.known_pods()
    assert again.container_state("uid-1", "web").pid == pid
    assert start(again, {"name": "web", "image": "netplane/echo"}) == pid
    again.create_sandbox(POD, "np-uid-1")  # still running: nothing new
    assert len(engine.by_name("POD")) == 1
    again.stop_pod("uid-1", grace=0)
    assert engine.made == {}
    assert not again.pod_dir("uid-1").exists()


def test_engine_errors_are_said_as_the_pod_manager_expects(rt: DockerRuntime,
                                                           engine: FakeEngine) -> None:
    rt.create_sandbox(POD, "np-uid-1")
    with pytest.raises(ImageNotRunnable, match=r"No such image: nginx:1\.27"):
        start(rt, {"name": "nginx", "image": "nginx:1.27"})
    assert not rt.image_present("nginx:1.27") and rt.image_present("busybox")
    with pytest.raises(ImagePullError, match="pull access denied for nginx"):
        rt.pull_image("nginx:1.27")
    engine.pulls["example.com/shop/echo:2.0"] = None
    rt.pull_image("example.com/shop/echo:2.0")
    assert rt.image_present("example.com/shop/echo:2.0")
    assert engine.pulled == ["nginx:1.27", "example.com/shop/echo:2.0"]


def test_a_missing_sandbox_image_is_said(rt: DockerRuntime, engine: FakeEngine) -> None:
    del engine.images["netplane/pause:3.10"]
    with pytest.raises(ImageNotRunnable, match=r"sandbox image netplane/pause:3\.10"):
        rt.create_sandbox(POD, "np-uid-1")


def test_images_as_the_node_lists_them(rt: DockerRuntime) -> None:
    listed: list[dict[str, Any]] = rt.list_images()
    assert [i["names"] for i in listed] == [["netplane/echo:latest"], ["busybox:latest"],
                                            ["netplane/pause:3.10"]]
    assert rt.version() == "20.10.24+dfsg1"


def _received(end: socket.socket, size: int) -> bytes:
    end.settimeout(10)
    data = b""
    while len(data) < size and (chunk := end.recv(size - len(data))):
        data += chunk
    return data


def test_attach_writes_stdin_to_the_engines_attach_stream(rt: DockerRuntime,
                                                          engine: FakeEngine) -> None:
    rt.create_sandbox(POD, "np-uid-1")
    start(rt, {"name": "reader", "image": "busybox", "stdin": True})
    start(rt, {"name": "quiet", "image": "busybox"})
    (reader,) = engine.by_name("reader")
    # Its stdin stays open across attach sessions, as the process runtime's FIFO.
    assert reader.stdin_open and not reader.stdin_once
    assert rt.open_stdin("uid-1", "quiet") is None  # made without stdin: nothing to attach
    assert rt.open_stdin("uid-1", "nope") is None
    fd = rt.open_stdin("uid-1", "reader")
    assert fd is not None
    os.write(fd, b"ping\n")
    os.close(fd)
    (first,) = reader.attached
    assert _received(first, 5) == b"ping\n"
    assert first.recv(1) == b""  # closed: the stream ends, the container runs on
    assert rt.container_state("uid-1", "reader").status is ContainerStatus.RUNNING
    again = rt.open_stdin("uid-1", "reader")  # and can be attached again
    assert again is not None
    os.close(again)
    engine.exit(reader.id, 0)
    assert rt.open_stdin("uid-1", "reader") is None
    for end in reader.attached:
        end.close()
