"""A node's own Docker Engine, for real: it runs inside the node's network
namespace and programs no network there, the node images (made on the
machine, no registry) run, a pause sandbox and two app containers share one
network and IPC namespace as a pod's containers do, resource limits land in
the container's cgroup, an OOM kill is reported as such, and stopping the
engine leaves no process, mount, cgroup or file behind."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from netplane.node.runtime.dockerd import EXEC_ROOTS, Engine
from netplane.node.runtime.images import PAUSE_IMAGE
from tests.integration.dockerengine import throwaway_engine

pytestmark = pytest.mark.root
CGROUPS = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with throwaway_engine(tmp_path_factory.mktemp("docker")) as e:
        yield e


@pytest.fixture
def api(engine: Engine) -> Iterator[docker.APIClient]:
    with contextlib.closing(engine.client()) as c:
        made: list[str] = []
        c.made = made  # type: ignore[attr-defined]
        yield c
        for ctr in made:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove_container(ctr, force=True)


def run(api: docker.APIClient, image: str, command: list[str] | None = None,
        **host: Any) -> str:
    env = host.pop("environment", None)
    ctr = api.create_container(image, command=command, environment=env,
                               host_config=api.create_host_config(**host))["Id"]
    api.made.append(ctr)  # type: ignore[attr-defined]
    api.start(ctr)
    return str(ctr)


def finished(api: docker.APIClient, ctr: str) -> tuple[int, str]:
    code = api.wait(ctr, timeout=60)["StatusCode"]
    return int(code), api.logs(ctr).decode()


def test_the_engine_lives_in_its_namespace_and_programs_no_network(engine: Engine) -> None:
    links = subprocess.run(["ip", "-n", engine.netns, "-o", "link"], capture_output=True,
                           text=True, check=True).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    rules = subprocess.run(["ip", "netns", "exec", engine.netns, "iptables-save"],
                           capture_output=True, text=True, check=True).stdout
    assert "DOCKER" not in rules
    pid = engine.pid()
    assert pid is not None
    ours = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True,
                          text=True, check=True).stdout.split()
    assert ours == [engine.netns]


def test_the_node_images_run(engine: Engine, api: docker.APIClient) -> None:
    tags = {t for img in api.images() for t in img.get("RepoTags") or []}
    assert {"busybox:latest", "netplane/echo:latest", "netplane/echo:1.0",
            PAUSE_IMAGE} <= tags
    assert finished(api, run(api, "busybox", ["sh", "-c", "echo hello from $(hostname -s)"],
                             network_mode="none"))[0] == 0
    assert engine.ensure_images(bin_dir=Path("/nonexistent")) == []  # all there: none made


def test_a_sandbox_and_two_containers_share_one_network_and_ipc(api: docker.APIClient) -> None:
    sandbox = run(api, PAUSE_IMAGE, network_mode="none", ipc_mode="shareable")
    joined = {"network_mode": f"container:{sandbox}", "ipc_mode": f"container:{sandbox}"}
    run(api, "netplane/echo:1.0", environment={"NETPLANE_CONTAINER_PORT": "8080"}, **joined)
    probe = ("for i in $(seq 100); do wget -qO- http://127.0.0.1:8080/ && break; "
             "sleep 0.1; done; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc")
    code, out = finished(api, run(api, "busybox", ["sh", "-c", probe], **joined))
    assert code == 0 and "pod=" in out
    pid = api.inspect_container(sandbox)["State"]["Pid"]
    assert out.splitlines()[-2:] == [str(Path(f"/proc/{pid}/ns/net").readlink()),
                                     str(Path(f"/proc/{pid}/ns/ipc").readlink())]


def _cgroup(engine: Engine, controller: str, ctr: str) -> Path:
    return CGROUPS / controller / engine.cgroup_parent.lstrip("/") / ctr


def test_limits_land_in_the_containers_cgroup(engine: Engine, api: docker.APIClient) -> None:
    if (CGROUPS / "cgroup.controllers").exists():
        pytest.skip("reads cgroup v1 files; this machine mounts cgroup v2")
    ctr = run(api, "busybox", ["sleep", "600"], network_mode="none", mem_limit=64 * 2**20,
              memswap_limit=64 * 2**20, cpu_period=100_000, cpu_quota=50_000, cpu_shares=512,
              pids_limit=100)
    assert (_cgroup(engine, "memory", ctr) / "memory.limit_in_bytes").read_text() == \
        f"{64 * 2**20}\n"
    cpu = _cgroup(engine, "cpu", ctr)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (cpu / "cpu.shares").read_text() == "512\n"
    assert (_cgroup(engine, "pids", ctr) / "pids.max").read_text() == "100\n"


def test_an_oom_kill_is_reported_by_the_engine(api: docker.APIClient) -> None:
    ctr = run(api, "busybox", ["sh", "-c", "head -c 200m /dev/zero | tail"],
              network_mode="none", mem_limit=64 * 2**20, memswap_limit=64 * 2**20)
    code, _ = finished(api, ctr)
    state = api.inspect_container(ctr)["State"]
    assert (code, state["ExitCode"], state["OOMKilled"]) == (137, 137, True)


def test_stopping_the_engine_leaves_nothing(tmp_path: Path) -> None:
    with throwaway_engine(tmp_path, images=False) as engine:
        with contextlib.closing(engine.client()) as c:
            c.import_image_from_data(subprocess.run(
                ["tar", "-C", "/", "-cf", "-", "bin/busybox"], capture_output=True,
                check=True).stdout, repository="scratchbox", tag="1")
            ctr = c.create_container("scratchbox:1", command=["/bin/busybox", "sleep", "600"],
                                     host_config=c.create_host_config(network_mode="none"))
            c.start(ctr)
        pid = engine.pid()
        assert pid is not None
        state = (engine.data_root, engine.exec_root, engine.cgroup_parent)
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    data_root, exec_root, parent = state
    assert not data_root.exists() and not exec_root.exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(data_root) not in mounts and str(exec_root) not in mounts
    assert not [p for p in CGROUPS.glob(f"*/{parent.lstrip('/')}")]
    deadline = time.monotonic() + 5
    while any(EXEC_ROOTS.glob(f"{engine.key}*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(EXEC_ROOTS.glob(f"{engine.key}*"))


def test_the_toolbox_has_curl_and_dig_that_run(api: docker.APIClient) -> None:
    code, out = finished(api, run(api, "netplane/toolbox", [
        "sh", "-c", "curl --version | head -1; dig -v 2>&1; wget --help 2>&1 | head -1"],
        network_mode="none"))
    assert code == 0, out
    assert out.startswith("curl ") and "DiG " in out and "BusyBox" in out
