"""The ``process`` runtime: each container is a process in its pod's network
namespace, with private mount and UTS namespaces set up by the launcher:
its C build (``launcher.c``) where ``scripts/setup.sh`` built it beside the
interpreter, else the Python module.

State lives on disk under ``<state_dir>/pods/<pod_uid>/`` (pod files, and per
container ``<name>.pid``, ``<name>.log``, ``<name>.exit``) so that a new agent
instance adopts containers started by an old one. Containers run in their own
session: the agent's signals don't reach them and they outlive its restart.
A process that is not our child is judged alive through /proc, with the start
time recorded in the pid file guarding against PID reuse.

Given the node's cgroups, each container runs in its own cgroup under its
pod's (``kubepods/<qos>/pod<uid>/<container>``, limits from ``resources``),
made afresh at each start so that its counters are the instance's; a
failed exit while its cgroup counted an OOM kill is ``OOMKilled`` (137).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from netplane.api.meta import Obj
from netplane.net import netns
from netplane.node.cgrouplimits import PodCgroup, container_limits
from netplane.node.cgroups import Hierarchy
from netplane.node.runtime import command as cmd
from netplane.node.runtime import podfiles

# Re-exported: callers of the runtime import them from here too.
from netplane.node.runtime.base import ContainerState as ContainerState
from netplane.node.runtime.base import ContainerStatus as ContainerStatus
from netplane.node.runtime.base import ImageNotRunnable as ImageNotRunnable
from netplane.node.runtime.base import ImagePullError as ImagePullError
from netplane.node.runtime.base import Mount as Mount
from netplane.node.runtime.launcher import DEFAULT_PATH

LAUNCHER_MODULE = "netplane.node.runtime.launcher"
LAUNCHER_BINARY = "netplane-launcher"  # built from launcher.c by scripts/build-c.sh
# The interpreter the C launcher hands a container that needs a root of its
# own to (the Python launcher does that part).
PYTHON_ENV = "NETPLANE_PYTHON"
PID_HOLDER = "pidns.holder"  # the shared PID namespace's holder (not *.pid)
# What the holder runs: processes orphaned in the namespace become its
# children, and a shell waiting on a job reaps every child that ends, as
# the pause container does; no zombie is left.
REAPER = "while :; do sleep 3600 & wait; done"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_POLL = 0.05
# The longest a start waits for the launcher to become the command.
EXEC_TIMEOUT = 10.0
OOM_KILLED = "OOMKilled"
SIGKILL_EXIT = 128 + signal.SIGKILL
POD_CGROUP = "cgroup"  # the pod's cgroup, relative to the node's root


@dataclass(frozen=True)
class PidRecord:
    """A process identity that survives PID reuse: pid plus its start time."""

    pid: int
    start_time: int

    def dump(self) -> str:
        return f"{self.pid} {self.start_time}\n"

    @classmethod
    def load(cls, text: str) -> PidRecord:
        pid, start = text.split()
        return cls(int(pid), int(start))


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses; fields follow the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def is_alive(rec: PidRecord) -> bool:
    stat = proc_stat(rec.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == rec.start_time


def exit_code(returncode: int) -> int:
    """Popen's negative "killed by signal N" as a shell/Kubernetes 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def python_launcher(python: str) -> list[str]:
    """The argv that starts the Python launcher. -S: no site-packages scan
    (a third of its start-up); PYTHONPATH finds netplane."""
    return [python, "-S", "-m", LAUNCHER_MODULE]


def default_launcher(python: str) -> list[str]:
    """The C launcher beside ``python`` when it is built, else the Python one."""
    binary = cmd.built_binary(LAUNCHER_BINARY, python=python)
    return [str(binary)] if binary is not None else python_launcher(python)


def _check_name(kind: str, value: str) -> str:
    if not _SAFE_NAME.match(value):
        raise ValueError(f"invalid {kind} {value!r}: letters, digits, '.', '_', '-' only")
    return value


class ProcessRuntime:
    """Starts, inspects and stops pods' containers as processes."""

    def __init__(self, *, state_dir: Path, python: str = sys.executable,
                 launcher: Sequence[str] | None = None,
                 cgroups: Hierarchy | None = None) -> None:
        """``launcher``: the argv that starts the launcher of each container;
        by default :func:`default_launcher`, looked up at each start.
        ``cgroups``: the node's, when containers get cgroups and limits."""
        self.state_dir = state_dir
        self.cgroups = cgroups
        self._python = python
        self._launcher = list(launcher) if launcher is not None else None
        self._children: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        # The writer end that keeps a stdinOnce container's stdin open until
        # the first attach takes it (and closes it when that session ends).
        self._once: dict[tuple[str, str], int] = {}
        # OOM kills a container's cgroup had already counted at its start.
        self._oom_base: dict[tuple[str, str], int] = {}

    def pod_dir(self, pod_uid: str) -> Path:
        return self.state_dir / "pods" / _check_name("pod uid", pod_uid)

    def log_path(self, pod_uid: str, container_name: str) -> Path:
        return self.pod_dir(pod_uid) / f"{_check_name('container name', container_name)}.log"

    def previous_log_path(self, pod_uid: str, container_name: str) -> Path:
        """The output of the container's previous instance (``logs --previous``)."""
        return self.pod_dir(pod_uid) / f"{_check_name('container name', container_name)}" \
            ".previous.log"

    def stdin_path(self, pod_uid: str, container_name: str) -> Path:
        """The FIFO a container with ``stdin: true`` reads (attach writes to it)."""
        return self.pod_dir(pod_uid) / f"{_check_name('container name', container_name)}.stdin"

    def write_service_account(self, pod_uid: str, *, token: str, ca_cert: str,
                              namespace: str) -> Path:
        """The folder mounted at /var/run/secrets/kubernetes.io/serviceaccount.
        Each file is replaced by a rename, so a refreshed token shows up in
        running containers (the folder, not the files, is bind-mounted)."""
        folder = self.pod_dir(pod_uid) / "serviceaccount"
        folder.mkdir(parents=True, exist_ok=True, mode=0o755)
        for name, text in (("token", token), ("ca.crt", ca_cert), ("namespace", namespace)):
            _write_atomic(folder / name, text)
        return folder

    def write_pod_files(self, pod_uid: str, *, nameservers: list[str], searches: list[str],
                        options: list[str], hostname: str, pod_ip: str) -> tuple[Path, Path]:
        """Writes the pod's resolv.conf and hosts; returns their paths."""
        pod_dir = self.pod_dir(pod_uid)
        pod_dir.mkdir(parents=True, exist_ok=True)
        resolv_path, hosts_path = pod_dir / "resolv.conf", pod_dir / "hosts"
        _write_atomic(resolv_path, podfiles.resolv_conf(
            nameservers=nameservers, searches=searches, options=options))
        _write_atomic(hosts_path, podfiles.hosts(hostname=hostname, pod_ip=pod_ip))
        return resolv_path, hosts_path

    def image_present(self, image: str) -> bool:
        """Whether the node has ``image``: this runtime runs the node's own
        programs, so every image is there (one it cannot run says so at start)."""
        return True

    def pull_image(self, image: str) -> None:
        """Fetches ``image`` (ImagePullError with the reason when it cannot)."""

    def create_sandbox(self, pod: Obj, netns_name: str) -> None:
        """The pod's network namespace, named ``netns_name``: a new one here
        (its lo comes up with the pod's network)."""
        netns.add(netns_name, loopback=False)

    def ipc_namespace(self, pod_uid: str) -> Path:
        """The pod's IPC namespace, made on first use and kept by a bind of
        its namespace file (as the pause container keeps it in Kubernetes)."""
        path = self.pod_dir(pod_uid) / "ipc"
        if path.exists() and _is_mount_point(path):
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        subprocess.run(["unshare", f"--ipc={path}", "true"], check=True, capture_output=True)
        return path

    def pid_namespace(self, pod_uid: str) -> str:
        """The pod's shared PID namespace (shareProcessNamespace): a holder
        process is its PID 1, as the pause container is in Kubernetes; the
        path of its namespace file is what containers join."""
        holder = self.pod_dir(pod_uid) / PID_HOLDER
        record = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            record = PidRecord.load(holder.read_text())
        if record is None or not is_alive(record):
            holder.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc",
                                     "sh", "-c", REAPER], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            stat = proc_stat(proc.pid)
            record = PidRecord(proc.pid, stat[1] if stat else 0)
            _write_atomic(holder, record.dump())
        deadline = time.monotonic() + 5.0
        while (init := init_pid(record.pid)) == record.pid and time.monotonic() < deadline:
            time.sleep(_POLL)  # the forked PID 1 is not there yet
        return f"/proc/{init}/ns/pid"

    def _stop_pid_holder(self, pod_uid: str) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            record = PidRecord.load((self.pod_dir(pod_uid) / PID_HOLDER).read_text())
            if not is_alive(record):
                return
            init = init_pid(record.pid, wait=0)
            stat = proc_stat(init)
            held = [record, PidRecord(init, stat[1] if stat else 0)]
            _signal_group(record.pid, signal.SIGKILL)
            # A kill is delivered, not done: wait until the namespace's PID 1
            # has exited, so that a stopped pod has no process left.
            deadline = time.monotonic() + 5.0
            while any(map(is_alive, held)) and time.monotonic() < deadline:
                time.sleep(_POLL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(record.pid, os.WNOHANG)

    def volumes_dir(self, pod_uid: str) -> Path:
        return self.pod_dir(pod_uid) / "volumes"

    def start_container(self, *, pod_uid: str, pod_name: str, namespace: str, container: Obj,
                        netns: str, hostname: str, resolv_conf: Path, hosts: Path,
                        env: dict[str, str], mounts: tuple[Mount, ...] = (),
                        ipc: Path | None = None, pid_ns: str | None = None,
                        pod_cgroup: PodCgroup | None = None) -> int:
        """Starts a container (or returns the pid of its running process).
        ``mounts`` are (node path, container path, read-only); ``pod_cgroup``
        places it (with the node's cgroups)."""
        name = _check_name("container name", str(container.get("name", "")))
        current = self.container_state(pod_uid, name)
        if current.status is ContainerStatus.RUNNING and current.pid is not None:
            return current.pid
        fields = {"metadata.name": pod_name, "metadata.namespace": namespace,
                  "metadata.uid": pod_uid}
        full_env = cmd.container_env(container, base={"HOSTNAME": hostname, **env},
                                     fields=fields)
        argv = cmd.container_argv(container, python=self._python, env=full_env)
        root = self.pod_dir(pod_uid) / f"{name}.root"
        root.mkdir(parents=True, exist_ok=True)
        args = self._launcher_args(
            netns=netns, hostname=hostname, ipc=ipc, pid_ns=pid_ns, root=root,
            binds=[(resolv_conf, "/etc/resolv.conf", False), (hosts, "/etc/hosts", False),
                   *mounts],
            env=full_env, cwd=container.get("workingDir"), argv=argv)
        launcher = [*(self._launcher or default_launcher(self._python)), *args]
        procs = self._container_cgroup(pod_uid, name, container, pod_cgroup)
        pid = self._spawn(pod_uid, name, launcher, stdin=bool(container.get("stdin")),
                          stdin_once=bool(container.get("stdinOnce")), cgroup_procs=procs)
        # The C launcher hands a container needing a root of its own to the
        # Python one: that is not the command yet either.
        handover = [*python_launcher(self._python), *args]
        wait_for_exec(self._children[(pod_uid, name)], [launcher, handover])
        return pid

    def _container_cgroup(self, pod_uid: str, name: str, container: Obj,
                          pod_cgroup: PodCgroup | None) -> list[Path]:
        """Makes the container's cgroup (its pod's first) with its limits;
        the files its process joins it through (none without cgroups)."""
        if self.cgroups is None or pod_cgroup is None:
            return []
        self.cgroups.create_qos()
        self.cgroups.create(pod_cgroup.path, pod_cgroup.limits)
        _write_atomic(self.pod_dir(pod_uid) / POD_CGROUP, pod_cgroup.path + "\n")
        rel = f"{pod_cgroup.path}/{name}"
        self.cgroups.remove(rel, wait=0)  # the last instance's: fresh counters
        self.cgroups.create(rel, container_limits(container))
        self.cgroups.kill_together_on_oom(rel)
        self._oom_base[(pod_uid, name)] = self.cgroups.oom_kills(rel)
        return self.cgroups.procs_files(rel)

    def cgroup_path(self, pod_uid: str, container_name: str | None = None) -> str | None:
        """The pod's (or one container's) cgroup relative to the node's
        root, None when the pod has none."""
        try:
            pod = (self.pod_dir(pod_uid) / POD_CGROUP).read_text().strip()
        except FileNotFoundError:
            return None
        return pod if container_name is None else f"{pod}/{container_name}"

    def container_state(self, pod_uid: str, container_name: str) -> ContainerState:
        proc = self._children.get((pod_uid, container_name))
        if proc is not None:
            code = proc.poll()
            if code is None:
                return ContainerState(ContainerStatus.RUNNING, pid=proc.pid,
                                      started_at=self._mtime(pod_uid, container_name, "pid"))
            self._record_exit(pod_uid, container_name, exit_code(code))
        return self._state_from_disk(pod_uid, container_name)

    def _mtime(self, pod_uid: str, name: str, suffix: str) -> float | None:
        try:
            return (self.pod_dir(pod_uid) / f"{name}.{suffix}").stat().st_mtime
        except FileNotFoundError:
            return None

    def stop_container(self, pod_uid: str, container_name: str, grace: float) -> None:
        """SIGTERM the container's main process (PID 1 of its namespace, as a
        container runtime signals it), SIGKILL its whole process group after
        ``grace`` seconds; its exit is recorded as any other. Blocks up to
        ``grace``."""
        pid = self._live_pid(pod_uid, container_name)
        if pid is None:
            return
        _terminate(pid)
        if self._wait_gone(pod_uid, {container_name: pid}, grace):
            _signal_group(pid, signal.SIGKILL)
            self._wait_gone(pod_uid, {container_name: pid}, 5.0)
        self.container_state(pod_uid, container_name)  # records the exit code

    def containers(self, pod_uid: str) -> list[str]:
        """Names of the containers started in the pod (from state)."""
        pod_dir = self.pod_dir(pod_uid)
        return sorted(p.stem for p in pod_dir.glob("*.pid")) if pod_dir.is_dir() else []

    def known_pods(self) -> set[str]:
        """Every pod with state on disk, running or not."""
        pods = self.state_dir / "pods"
        return {p.name for p in pods.iterdir() if p.is_dir()} if pods.is_dir() else set()

    def running_pods(self) -> set[str]:
        """Pods with at least one live container: what a restarted agent adopts."""
        return {uid for uid in self.known_pods()
                if any(self.container_state(uid, c).status is ContainerStatus.RUNNING
                       for c in self.containers(uid))}

    def stop_pod(self, pod_uid: str, grace: float) -> None:
        """SIGTERM every container's process group, SIGKILL what is left after
        ``grace`` seconds, then forget the pod. Blocks for up to ``grace``."""
        live = {c: pid for c in self.containers(pod_uid)
                if (pid := self._live_pid(pod_uid, c)) is not None}
        for pid in live.values():
            _terminate(pid)
        left = self._wait_gone(pod_uid, live, grace)
        for pid in left.values():
            _signal_group(pid, signal.SIGKILL)
        self._wait_gone(pod_uid, left, 5.0)
        self._stop_pid_holder(pod_uid)
        if self.cgroups is not None and (rel := self.cgroup_path(pod_uid)) is not None:
            self.cgroups.remove(rel)
        for c in list(self._children):
            if c[0] == pod_uid:
                del self._children[c]
        for c in [c for c in self._once if c[0] == pod_uid]:
            os.close(self._once.pop(c))
        # Memory-backed volumes and the IPC namespace's bind go first.
        unmount_under(self.pod_dir(pod_uid))
        shutil.rmtree(self.pod_dir(pod_uid), ignore_errors=True)

    def _launcher_args(self, *, netns: str, hostname: str, binds: list[Mount],
                       env: dict[str, str], cwd: str | None, argv: list[str],
                       ipc: Path | None = None, pid_ns: str | None = None,
                       root: Path | None = None) -> list[str]:
        """What either launcher is given, after its own command."""
        out = ["--netns", netns, "--hostname", hostname]
        if ipc is not None:
            out += ["--ipc", str(ipc)]
        if pid_ns is not None:
            out += ["--pid", pid_ns]
        if root is not None:
            out += ["--root", str(root)]
        for src, dst, readonly in binds:
            out += ["--bind", f"{src}:{dst}{':ro' if readonly else ''}"]
        for key, value in env.items():
            out += ["--env", f"{key}={value}"]
        if cwd:
            out += ["--cwd", str(cwd)]
        return [*out, "--", *argv]

    def open_stdin(self, pod_uid: str, container_name: str) -> int | None:
        """The write end of the container's stdin FIFO. Closing it leaves the
        container's stdin open (its own descriptor is a writer too), unless
        the container has ``stdinOnce``: the first attach then gets the one
        writer left, and the container reads end-of-file when it is closed;
        later ones get nothing, as the kubelet's."""
        key = (pod_uid, container_name)
        if key in self._once:
            return self._once.pop(key)
        if self._once_marker(pod_uid, container_name).exists():
            return None
        try:
            return os.open(self.stdin_path(pod_uid, container_name),
                           os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # none (no stdin), or no reader left (ENXIO)
            return None

    def _once_marker(self, pod_uid: str, name: str) -> Path:
        """There while the container has stdinOnce (an agent restarted
        later must not hand out a writer the container would never lose)."""
        return self.pod_dir(pod_uid) / f"{_check_name('container name', name)}.stdin-once"

    def _stdin(self, pod_uid: str, name: str, once: bool) -> int:
        """The container's stdin FIFO, opened read-write: the container never
        sees end-of-file while no one is attached. With ``once``, read-only,
        beside a writer kept for the first attach."""
        fifo = self.stdin_path(pod_uid, name)
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)
        marker = self._once_marker(pod_uid, name)
        old = self._once.pop((pod_uid, name), None)
        if old is not None:
            os.close(old)
        if not once:
            marker.unlink(missing_ok=True)
            return os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        marker.touch()
        self._once[(pod_uid, name)] = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        return os.open(fifo, os.O_RDONLY | os.O_CLOEXEC)  # a writer exists: no wait

    def _spawn(self, pod_uid: str, name: str, launcher: list[str], *,
               stdin: bool = False, stdin_once: bool = False,
               cgroup_procs: Sequence[Path] = ()) -> int:
        pod_dir = self.pod_dir(pod_uid)
        pod_dir.mkdir(parents=True, exist_ok=True)
        (pod_dir / f"{name}.exit").unlink(missing_ok=True)
        log_path = pod_dir / f"{name}.log"
        if log_path.exists():
            # A restart: the last instance's output is kept for --previous.
            os.replace(log_path, self.previous_log_path(pod_uid, name))
        stdin_fd = self._stdin(pod_uid, name, stdin_once) if stdin else subprocess.DEVNULL
        try:
            with open(pod_dir / f"{name}.log", "ab") as log:
                proc = subprocess.Popen(
                    launcher, stdin=stdin_fd, stdout=log, stderr=subprocess.STDOUT,
                    cwd="/", start_new_session=True,
                    env={"PATH": DEFAULT_PATH, "PYTHONPATH": cmd.package_root(),
                         PYTHON_ENV: self._python},
                    preexec_fn=_joiner(cgroup_procs) if cgroup_procs else None)
        finally:
            if stdin_fd != subprocess.DEVNULL:
                os.close(stdin_fd)
        self._children[(pod_uid, name)] = proc
        stat = proc_stat(proc.pid)
        record = PidRecord(proc.pid, stat[1] if stat else 0)
        _write_atomic(pod_dir / f"{name}.pid", record.dump())
        return proc.pid

    def _record_exit(self, pod_uid: str, name: str, code: int) -> None:
        del self._children[(pod_uid, name)]
        pod_dir = self.pod_dir(pod_uid)
        if pod_dir.is_dir():
            reason = ""
            if self._oom_killed(pod_uid, name, code):
                # As a runtime reports it: the kernel's SIGKILL. (util-linux's
                # unshare, the parent of a command in a PID namespace of its
                # own, exits 1 when its child is killed by SIGKILL.)
                code, reason = SIGKILL_EXIT, OOM_KILLED
            _write_atomic(pod_dir / f"{name}.exit", f"{code}\n{reason}\n")

    def _oom_killed(self, pod_uid: str, name: str, code: int) -> bool:
        """A failed exit while the container's cgroup counted an OOM kill,
        as containerd judges it (whichever of its processes was killed)."""
        base = self._oom_base.pop((pod_uid, name), 0)
        rel = self.cgroup_path(pod_uid, name)
        if code == 0 or self.cgroups is None or rel is None:
            return False
        return self.cgroups.oom_kills(rel) > base

    def _state_from_disk(self, pod_uid: str, name: str) -> ContainerState:
        pod_dir = self.pod_dir(pod_uid)
        started = self._mtime(pod_uid, name, "pid")
        record = self._pid_record(pod_uid, name)
        try:
            code_text, _, reason = (pod_dir / f"{name}.exit").read_text().partition("\n")
            return ContainerState(ContainerStatus.EXITED, pid=record.pid if record else None,
                                  exit_code=int(code_text), reason=reason.strip(),
                                  started_at=started,
                                  finished_at=self._mtime(pod_uid, name, "exit"))
        except (FileNotFoundError, ValueError):
            pass
        if record is None:
            return ContainerState(ContainerStatus.UNKNOWN)
        if is_alive(record):
            return ContainerState(ContainerStatus.RUNNING, pid=record.pid, started_at=started)
        # Died while not our child (e.g. across an agent restart): code unknown.
        return ContainerState(ContainerStatus.EXITED, pid=record.pid, started_at=started)

    def _pid_record(self, pod_uid: str, name: str) -> PidRecord | None:
        try:
            return PidRecord.load((self.pod_dir(pod_uid) / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _live_pid(self, pod_uid: str, name: str) -> int | None:
        state = self.container_state(pod_uid, name)
        return state.pid if state.status is ContainerStatus.RUNNING else None

    def _wait_gone(self, pod_uid: str, pids: dict[str, int], timeout: float) -> dict[str, int]:
        """Waits until the containers exit; returns those still running."""
        deadline = time.monotonic() + timeout
        left = dict(pids)
        while left:
            left = {c: p for c, p in left.items() if self._live_pid(pod_uid, c) == p}
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        return left


def _joiner(procs: Sequence[Path]) -> Callable[[], None]:
    """What the forked child runs before it execs the launcher: it writes
    itself into the container's cgroups, so that it and every process it
    starts are in them from the first instruction (moving it after the fork
    would race its own forks). Only system calls: the child of a threaded
    parent must take no lock."""
    paths = [bytes(p) for p in procs]

    def join() -> None:
        for path in paths:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
    return join


def mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces and the like as octal escapes.
        points.append(line.split()[4].encode().decode("unicode_escape"))
    return points


def _is_mount_point(path: Path) -> bool:
    return str(path) in mount_points()


def unmount_under(folder: Path) -> None:
    """Detaches every mount at or under ``folder``, the deepest first: a
    pod's IPC namespace bind and memory-backed volumes (``lab down`` too,
    for the pods still running when it runs)."""
    prefix = str(folder)
    inside = [p for p in mount_points() if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(set(inside), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def wait_for_exec(proc: subprocess.Popen[bytes], launchers: list[list[str]],
                  timeout: float = EXEC_TIMEOUT) -> None:
    """Until the launcher (any of ``launchers``' command lines) has set the
    container up and become its command (or has ended), as a runtime's start
    returns only then: a postStart hook or an exec probe run earlier would
    join the launcher's namespaces and environment, not the container's. An
    empty command line is an exec under way (the kernel sets the new one
    last), not yet the container."""
    before = {"\0".join(argv).encode() + b"\0" for argv in launchers}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            now = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return
        if now and now not in before:
            return
        time.sleep(0.001)


def init_pid(pid: int, wait: float = 1.0) -> int:
    """The container's main process: the child that ``unshare --fork`` made
    PID 1 of the container's namespace (waited for up to ``wait`` seconds
    right after a start), or ``pid`` itself."""
    deadline = time.monotonic() + wait
    while True:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            return pid
        if comm != "unshare":
            return pid
        if children:
            return int(children[0])
        if time.monotonic() >= deadline:
            return pid
        time.sleep(0.01)


def _terminate(pid: int) -> None:
    """SIGTERM to the main process only: in its own PID namespace it is PID 1,
    which takes only the signals it has a handler for (SIGKILL comes later)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(init_pid(pid), signal.SIGTERM)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signals the container's process group (its session leader is ``pid``)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
