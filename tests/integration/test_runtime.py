"""The process runtime in the kernel: containers as processes inside a pod's
netns, with the pod's resolv.conf, hosts and hostname; stop and adoption.
Every test runs once with each launcher, the Python module and the C one
(built from the source), which hands a container that needs a root of its
own to the Python one.

Address plan (namespaces made by this test):

    node  np0  10.244.1.1/24   (the client side for curl)
    pod   eth0 10.244.1.2/24   containers of pod "web-0" run here
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from netplane.api.meta import Obj
from netplane.net import netns as nsutil
from netplane.net.podnet import NodeNetwork
from netplane.node.runtime import podfiles
from netplane.node.runtime.command import package_root
from netplane.node.runtime.launcher import DEFAULT_PATH, exec_env, parse_args
from netplane.node.runtime.process import (
    PYTHON_ENV,
    ContainerState,
    ContainerStatus,
    Mount,
    ProcessRuntime,
)

pytestmark = pytest.mark.root

POD_IP = "10.244.1.2"
POD_NAME = "web-0"
T = TypeVar("T")

UID = "6f1c2d3e-0000-4000-8000-000000000001"


@dataclass
class Pod:
    node_ns: str
    netns: str
    runtime: ProcessRuntime
    resolv: Path
    hosts: Path
    launcher: list[str]

    def start(self, container: Obj, *, runtime: ProcessRuntime | None = None,
              mounts: tuple[Mount, ...] = (), ipc: Path | None = None,
              pid_ns: str | None = None) -> int:
        return (runtime or self.runtime).start_container(
            pod_uid=UID, pod_name=POD_NAME, namespace="shop", container=container,
            netns=self.netns, hostname=POD_NAME, resolv_conf=self.resolv, hosts=self.hosts,
            env={"POD_NAME": POD_NAME, "POD_IP": POD_IP, "NODE_NAME": "node-1"},
            mounts=mounts, ipc=ipc, pid_ns=pid_ns)

    def wait_exit(self, name: str, timeout: float = 10) -> ContainerState:
        return wait_for(lambda: _exited(self.runtime.container_state(UID, name)), timeout)

    def log(self, name: str) -> str:
        return self.runtime.log_path(UID, name).read_text()


def _exited(state: ContainerState) -> ContainerState | None:
    return state if state.status is ContainerStatus.EXITED else None


def wait_for(probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def curl(netns: str, url: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "--max-time", "2", url],
                          capture_output=True, text=True, timeout=10, check=False)
    return proc.stdout if proc.returncode == 0 else None


@pytest.fixture
def pod(make_netns: Callable[[str], str], tmp_path: Path,
        launcher: list[str]) -> Iterator[Pod]:
    node_ns, pod_ns = make_netns("node"), make_netns("pod")
    net = NodeNetwork(pod_cidr="10.244.1.0/24", netns=node_ns)
    net.set_up()
    net.attach_pod(netns=pod_ns, ip=POD_IP, prefixlen=24, gateway=net.gateway)
    rt = ProcessRuntime(state_dir=tmp_path / "state", launcher=launcher)
    resolv, hosts = rt.write_pod_files(
        UID, nameservers=["10.96.0.10"], searches=podfiles.cluster_searches("shop"),
        options=["ndots:5"], hostname=POD_NAME, pod_ip=POD_IP)
    try:
        yield Pod(node_ns, pod_ns, rt, resolv, hosts, launcher)
    finally:
        for uid in rt.known_pods():
            rt.stop_pod(uid, grace=0)


RESERVED_SIGNALS = (1 << 31) | (1 << 32)  # signals 32 and 33, as SigIgn's bits
ECHO = {"name": "web", "image": "netplane/echo:1.0", "ports": [{"containerPort": 8080}]}


def test_echo_container_answers_on_its_pod_ip(pod: Pod) -> None:
    pid = pod.start(ECHO)
    body = wait_for(lambda: curl(pod.node_ns, f"http://{POD_IP}:8080/"), 10)
    # Asked from the node: its address on the pod's subnet is the source.
    assert body.startswith(f"pod={POD_NAME} ip={POD_IP} node=node-1 client=")
    assert pid in nsutil.pids(pod.netns)
    assert pod.runtime.container_state(UID, "web") == ContainerState(
        ContainerStatus.RUNNING, pid=pid)
    # Starting a running container again is a no-op.
    assert pod.start(ECHO) == pid


def test_a_start_returns_once_the_container_runs_its_command(pod: Pod, tmp_path: Path) -> None:
    """What a postStart hook or an exec probe joins right after the start is
    the container (its environment and namespaces), never the launcher."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        # The last needs a root of its own (/data is not on the node): the C
        # launcher hands it to the Python one, which must not count as started.
        mounts = ((data, "/data", False),) if i == 5 else ()
        pid = pod.start({"name": f"c{i}", "image": "busybox", "command": ["sleep", "600"],
                         "env": [{"name": "MARK", "value": str(i)}]}, mounts=mounts)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"MARK={i}".encode() in environ
        assert f"HOSTNAME={POD_NAME}".encode() in environ
        assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")


def test_container_sees_the_pods_files_and_hostname(pod: Pod) -> None:
    node_resolv = Path("/etc/resolv.conf").read_bytes()
    node_hostname = socket.gethostname()
    pod.start({"name": "resolv", "image": "busybox", "command": ["cat", "/etc/resolv.conf"]})
    pod.start({"name": "hosts", "image": "busybox", "command": ["cat", "/etc/hosts"]})
    pod.start({"name": "name", "image": "busybox", "command": ["hostname"]})
    for name in ("resolv", "hosts", "name"):
        assert pod.wait_exit(name).exit_code == 0, pod.log(name)
    assert pod.log("resolv") == pod.resolv.read_text()
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local" in pod.log("resolv")
    assert f"{POD_IP}\t{POD_NAME}" in pod.log("hosts")
    assert pod.log("name") == f"{POD_NAME}\n"
    assert Path("/etc/resolv.conf").read_bytes() == node_resolv
    assert socket.gethostname() == node_hostname


def test_container_env_and_exit_codes(pod: Pod) -> None:
    pod.start({"name": "env", "image": "busybox", "command": ["sh", "-c"],
               "args": ["echo $GREETING $POD_IP; exit 3"],
               "env": [{"name": "GREETING", "value": "hello"}]})
    pod.start({"name": "missing", "image": "busybox", "command": ["no-such-command-xyz"]})
    assert pod.wait_exit("env").exit_code == 3
    assert pod.log("env") == f"hello {POD_IP}\n"
    assert pod.wait_exit("missing").exit_code == 127
    assert "no-such-command-xyz: command not found" in pod.log("missing")


def test_the_command_gets_exactly_the_environment_it_is_given(pod: Pod) -> None:
    """PATH and HOME by default, HOSTNAME, then the pairs in order (a later
    one replaces an earlier one's value in its place); nothing of the
    launcher's own environment."""
    argv = ["--netns", pod.netns, "--hostname", POD_NAME, "--env", "A=1",
            "--env", "PATH=/usr/bin:/bin", "--env", "B=x=y", "--env", "A=2",
            "--env", "HOSTNAME=other", "--env", "EMPTY=", "--", "env"]
    out = subprocess.run([*pod.launcher, *argv], capture_output=True, text=True, timeout=30,
                         env={"PATH": DEFAULT_PATH, "PYTHONPATH": package_root(),
                              PYTHON_ENV: sys.executable}, check=False)
    assert (out.returncode, out.stderr) == (0, "")
    expected = exec_env(parse_args(argv))
    assert out.stdout.splitlines() == [f"{k}={v}" for k, v in expected.items()]
    assert list(expected) == ["PATH", "HOME", "HOSTNAME", "A", "B", "EMPTY"]


def test_set_up_failures_and_commands_that_cannot_run(pod: Pod, tmp_path: Path) -> None:
    """125 when the container cannot be set up, 126 when its command cannot
    be executed, 127 when there is no such command (also behind the PID
    namespace's unshare, which would say it in its own words)."""
    unexecutable = tmp_path / "unexecutable"
    unexecutable.write_text("#!/bin/sh\necho ran\n")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01 no program")
    garbage.chmod(0o755)
    cases = {
        "no-cwd": ({"workingDir": "/no/such/folder", "command": ["true"]}, None, (), 125,
                   "container set-up failed: [Errno 2] No such file or directory: "
                   "'/no/such/folder'"),
        "no-volume": ({"command": ["true"]}, None,
                      ((tmp_path / "gone", str(tmp_path), False),), 125,
                      f"container set-up failed: bind source {tmp_path / 'gone'} "
                      "does not exist"),
        "no-pid-ns": ({"command": ["true"]}, "/no/such/ns", (), 125,
                      "container set-up failed: [Errno 2] No such file or directory: "
                      "'/no/such/ns'"),
        "not-executable": ({"command": [str(unexecutable)]}, None, (), 126,
                           f"{unexecutable}: permission denied"),
        "no-program": ({"command": [str(garbage)]}, None, (), 126,
                       f"{garbage}: cannot execute: Exec format error"),
        "missing": ({"command": ["no-such-command-xyz"]}, None, (), 127,
                    "no-such-command-xyz: command not found"),
        "missing-in-pid-ns": ({"command": ["no-such-command-xyz"]}, "own", (), 127,
                              "no-such-command-xyz: command not found"),
    }
    for name, (spec, pid_ns, mounts, _, _) in cases.items():
        pod.start({"name": name, "image": "busybox", **spec}, pid_ns=pid_ns, mounts=mounts)
    for name, (_, _, _, code, message) in cases.items():
        assert pod.wait_exit(name).exit_code == code, pod.log(name)
        assert pod.log(name) == f"netplane-launcher: {message}\n"


def test_read_only_and_writable_binds_over_node_folders(pod: Pod, tmp_path: Path) -> None:
    """Targets the node has: the container's own mounts over them, the
    read-only one refusing writes; the node's folders stay as they were."""
    ro_src, rw_src, ro_dst, rw_dst = (tmp_path / n for n in ("ro-src", "rw-src",
                                                             "ro-dst", "rw-dst"))
    for folder in (ro_src, rw_src, ro_dst, rw_dst):
        folder.mkdir()
    (ro_src / "file").write_text("kept\n")
    mounts = ((ro_src, str(ro_dst), True), (rw_src, str(rw_dst), False))
    pod.start({"name": "binds", "image": "busybox", "command": [
        "sh", "-c", f"cat {ro_dst}/file && "
        f"(touch {ro_dst}/x 2>/dev/null && echo writable || echo read-only) && "
        f"echo made > {rw_dst}/new"]}, mounts=mounts)
    assert pod.wait_exit("binds").exit_code == 0, pod.log("binds")
    assert pod.log("binds") == "kept\nread-only\n"
    assert (rw_src / "new").read_text() == "made\n"
    assert [p.name for p in ro_src.iterdir()] == ["file"]
    assert not any(ro_dst.iterdir()) and not any(rw_dst.iterdir())
    assert not _mounts_under(tmp_path)


def test_binds_under_run_get_the_container_a_private_run(pod: Pod, tmp_path: Path) -> None:
    """The service account folder goes under /var/run (that is, /run): the
    container gets a /run of its own, a tmpfs with just its mount points,
    and nothing is made in the node's."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("secret\n")
    conf = tmp_path / "app.conf"
    conf.write_text("x=1\n")
    account_at = "/var/run/secrets/kubernetes.io/serviceaccount"
    secrets_on_node = Path("/run/secrets").exists()
    mounts = ((account, account_at, True), (conf, "/run/np-test/app.conf", False))
    pod.start({"name": "run", "image": "busybox", "command": [
        "sh", "-c", f"cat {account_at}/token /run/np-test/app.conf && ls /run && "
        f"(touch {account_at}/x 2>/dev/null && echo writable || echo read-only)"]},
        mounts=mounts)
    assert pod.wait_exit("run").exit_code == 0, pod.log("run")
    assert pod.log("run") == "secret\nx=1\nnp-test\nsecrets\nread-only\n"
    assert not Path("/run/np-test").exists()
    assert Path("/run/secrets").exists() == secrets_on_node
    assert [p.name for p in account.iterdir()] == ["token"]


def test_the_command_starts_with_no_signal_ignored(pod: Pod) -> None:
    """Not the interpreter's SIGPIPE and SIGXFSZ, nor what the agent's parent
    ignored: a pipeline's writer dies of its reader's end as anywhere else.
    The C library's reserved signals 32 and 33 cannot be changed through it,
    so an ignore of theirs inherited from the test's parent may stay."""
    pod.start({"name": "signals", "image": "busybox",
               "command": ["grep", "^SigIgn:", "/proc/self/status"]})
    assert pod.wait_exit("signals").exit_code == 0, pod.log("signals")
    ignored = int(pod.log("signals").split()[1], 16)
    assert ignored & ~RESERVED_SIGNALS == 0, f"{ignored:#x}"


def test_stop_pod_kills_even_a_container_that_ignores_sigterm(pod: Pod) -> None:
    web = pod.start(ECHO)
    stubborn = pod.start({"name": "stubborn", "image": "busybox", "command": [
        "sh", "-c", "trap '' TERM; echo trapped; while true; do sleep 0.1; done"]})
    wait_for(lambda: curl(pod.node_ns, f"http://{POD_IP}:8080/"), 10)
    # SIGTERM before the trap is set would end it at once: wait for the trap.
    wait_for(lambda: pod.log("stubborn") == "trapped\n" or None, 10)
    started = time.monotonic()
    pod.runtime.stop_pod(UID, grace=1.0)
    # The grace period was given (load only makes it longer); no upper bound:
    # that the stubborn one is gone below is what SIGKILL proves.
    assert time.monotonic() - started >= 0.9
    for pid in (web, stubborn):
        assert not Path(f"/proc/{pid}").exists()
    assert not pod.runtime.pod_dir(UID).exists()
    assert curl(pod.node_ns, f"http://{POD_IP}:8080/") is None
    assert pod.runtime.running_pods() == set()


def test_a_new_runtime_instance_adopts_running_containers(pod: Pod) -> None:
    pid = pod.start(ECHO)
    wait_for(lambda: curl(pod.node_ns, f"http://{POD_IP}:8080/"), 10)
    restarted = ProcessRuntime(state_dir=pod.runtime.state_dir)
    assert restarted.running_pods() == {UID}
    assert restarted.container_state(UID, "web") == ContainerState(
        ContainerStatus.RUNNING, pid=pid)
    assert pod.start(ECHO, runtime=restarted) == pid
    # The container is in its own session: an agent's process-group signal misses it.
    assert os.getsid(pid) == pid != os.getsid(0)
    restarted.stop_pod(UID, grace=2.0)
    assert curl(pod.node_ns, f"http://{POD_IP}:8080/") is None
    assert restarted.running_pods() == set()
    # The first instance is still the parent and reaps the process.
    pod.runtime.container_state(UID, "web")
    assert not Path(f"/proc/{pid}").exists()


def _mounts_under(folder: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(folder))]


def test_volumes_mount_where_the_node_has_no_such_folder(pod: Pod, tmp_path: Path) -> None:
    """/data and /etc/podinfo exist nowhere on the node: the container gets a
    root of its own (and an overlay over /etc) instead of folders made on
    the node."""
    shared = tmp_path / "shared"
    shared.mkdir()
    info = tmp_path / "info"
    info.mkdir()
    (info / "name").write_text(f"{POD_NAME}\n")
    mounts = ((shared, "/data", False), (info, "/etc/podinfo", True))
    pod.start({"name": "writer", "image": "busybox", "command": [
        "sh", "-c", "echo hello > /data/greeting && cat /etc/podinfo/name && "
        "(touch /etc/podinfo/x 2>/dev/null && echo writable || echo read-only) && "
        "head -1 /etc/passwd && cat /etc/resolv.conf | head -1"]}, mounts=mounts)
    assert pod.wait_exit("writer").exit_code == 0, pod.log("writer")
    assert pod.log("writer").splitlines()[:3] == [POD_NAME, "read-only",
                                                  "root:x:0:0:root:/root:/bin/bash"]
    assert "nameserver 10.96.0.10" in pod.log("writer")  # the pod's files still bound
    assert (shared / "greeting").read_text() == "hello\n"
    assert not Path("/data").exists() or (shared / "greeting").exists()
    assert not Path("/etc/podinfo").exists()
    assert not _mounts_under(tmp_path)  # nothing of the container's leaked to the node


def test_containers_of_a_pod_share_its_ipc_namespace(pod: Pod) -> None:
    ipc = pod.runtime.ipc_namespace(UID)
    assert ipc == pod.runtime.ipc_namespace(UID)  # made once
    keys = "ipcs -m | awk '$1 ~ /^0x/ {print $1}'"
    pod.start({"name": "maker", "image": "busybox", "command": [
        "sh", "-c", f"ipcmk -M 4096 >/dev/null && {keys} && sleep 600"]}, ipc=ipc)
    key = wait_for(lambda: pod.log("maker").strip() or None, 10)
    pod.start({"name": "reader", "image": "busybox", "command": ["sh", "-c", keys]}, ipc=ipc)
    assert pod.wait_exit("reader").exit_code == 0, pod.log("reader")
    assert pod.log("reader").split() == [key]
    # The node's own IPC namespace does not have the segment.
    host = subprocess.run(["sh", "-c", keys], capture_output=True, text=True, check=True)
    assert key not in host.stdout.split()
    pod.runtime.stop_pod(UID, grace=0)
    assert not _mounts_under(pod.runtime.pod_dir(UID))


def test_each_container_is_pid_1_of_its_own_pid_namespace(pod: Pod) -> None:
    pod.start({"name": "alone", "image": "busybox",
               "command": ["sh", "-c", "echo $$$$; ps -o pid= | wc -l"]}, pid_ns="own")
    assert pod.wait_exit("alone").exit_code == 0, pod.log("alone")
    me, count = pod.log("alone").split()
    assert me == "1" and int(count) <= 3  # sh, ps and wc: nothing of the node's


def test_share_process_namespace_puts_the_containers_in_one(pod: Pod) -> None:
    shared = pod.runtime.pid_namespace(UID)
    assert shared == pod.runtime.pid_namespace(UID)  # one holder per pod
    pod.start({"name": "server", "image": "busybox",
               "command": ["sh", "-c", "exec sleep 600"]}, pid_ns=shared)
    pod.start({"name": "peek", "image": "busybox", "command": [
        "sh", "-c", "until ps -o args= | grep -q '^sleep 600'; do sleep 0.05; done; "
        "ps -o args= | grep -c '^sleep 600'"]}, pid_ns=shared)
    assert pod.wait_exit("peek", timeout=30).exit_code == 0, pod.log("peek")
    assert pod.log("peek") == "1\n"
    holder = Path(shared).parent.parent.name
    pod.runtime.stop_pod(UID, grace=0)
    assert not Path(f"/proc/{holder}").exists() or \
        "sleep" not in Path(f"/proc/{holder}/cmdline").read_text(errors="replace")


def test_the_shared_pid_namespace_reaps_orphans(pod: Pod) -> None:
    """A process orphaned in the pod's namespace is reaped by its PID 1 once
    it ends: the container below waits until no zombie is left (it would
    wait for ever under a PID 1 that does not reap)."""
    shared = pod.runtime.pid_namespace(UID)
    pod.start({"name": "orphans", "image": "busybox", "command": [
        "sh", "-c", "sh -c 'sleep 0.1 &'; "
        "until ! ps -o args= | grep -q '^sleep 0.1' && ! ps -o stat= | grep -q Z; do "
        "sleep 0.05; done; echo reaped"]}, pid_ns=shared)
    assert pod.wait_exit("orphans", timeout=30).exit_code == 0, pod.log("orphans")
    assert pod.log("orphans") == "reaped\n"


def test_sigterm_reaches_pid_1_and_its_exit_code_is_kept(pod: Pod) -> None:
    pod.start({"name": "polite", "image": "busybox", "command": [
        "sh", "-c", "trap 'exit 7' TERM; echo trapped; while :; do sleep 0.1; done"]},
        pid_ns="own")
    wait_for(lambda: pod.log("polite") == "trapped\n" or None, 10)
    pod.runtime.stop_container(UID, "polite", grace=30)
    assert pod.runtime.container_state(UID, "polite").exit_code == 7
