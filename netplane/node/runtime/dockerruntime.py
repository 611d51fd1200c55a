"""The ``docker`` runtime: a pod's containers are Docker containers of the
node's own engine (``dockerd``), made and inspected through the Docker SDK,
as dockershim ran them for the kubelet:

- a sandbox per pod: a ``netplane/pause`` container with no network of
  Docker's (``network_mode=none``) and a shareable IPC namespace; its
  network namespace is named into ``ip netns`` (``ip netns attach``), so
  that the pod network is wired into it as on the process runtime, and
  exec, probes and port-forward enter it the same way;
- app containers join it (``network_mode`` and ``ipc_mode``
  ``container:<sandbox>``, ``pid_mode`` too with shareProcessNamespace), with
  the pod's resolv.conf, hosts, service-account and volume folders bound in;
- each instance is a new container labelled with the pod's uid, the
  container's name and its attempt, so a new agent finds them again; the
  older attempts but the previous one are removed;
- limits are the engine's (CPU quota and shares, memory and swap), the
  cgroups go under the pod's (``kubepods/<qos>/pod<uid>/<container id>``,
  the kubelet's cgroupfs layout), and an OOM kill is the engine's word;
- output is copied from the engine into the same log files the process
  runtime writes, so ``kubectl logs`` (and ``--previous``) read them alike;
  attach reads them too, and writes stdin to the engine's attach stream.

Files of the pod (resolv.conf, hosts, volumes, logs) stay where the process
runtime keeps them: this class inherits that part."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from netplane.api.meta import Obj
from netplane.node.cgrouplimits import PodCgroup, container_limits
from netplane.node.cgroups import MOUNTINFO, Hierarchy, parse_mountinfo
from netplane.node.runtime import command as cmd
from netplane.node.runtime.dockerd import remove_cgroups
from netplane.node.runtime.images import PAUSE_IMAGE
from netplane.node.runtime.process import (
    OOM_KILLED,
    ContainerState,
    ContainerStatus,
    ImageNotRunnable,
    ImagePullError,
    Mount,
    ProcessRuntime,
    unmount_under,
)

log = logging.getLogger(__name__)
# dockershim's labels, and the attempt this runtime counts itself.
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
ATTEMPT = "io.netplane.attempt"
SANDBOX = "POD"  # dockershim's container name for the sandbox
CGROUP_PARENT = "cgroup-parent"  # in the pod's folder: its cgroup as the engine names it
API_TIMEOUT = 60
_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


def _time(text: str | None) -> float | None:
    """Docker's RFC 3339 times (nanoseconds; the zero time for never)."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float(f"0.{frac[:6]}") if frac else 0.0)


def argv(container: Obj, env: dict[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """Kubernetes' command and args over the image's entrypoint and cmd:
    ``command`` replaces the entrypoint (and drops the image's cmd), ``args``
    replace the cmd; ``$(VAR)`` expands from the container's environment."""
    command = [cmd.expand(str(w), env) for w in container.get("command") or []]
    args = [cmd.expand(str(w), env) for w in container.get("args") or []]
    if command:
        return command, args
    return None, args or None


class DockerRuntime(ProcessRuntime):
    """Pods' containers in the node's Docker Engine at ``engine_url``."""

    def __init__(self, *, state_dir: Path, engine_url: str = "",
                 cgroups: Hierarchy | None = None, python: str = sys.executable,
                 api: Any = None) -> None:
        """``api``: the engine's client (by default the SDK's, at ``engine_url``)."""
        super().__init__(state_dir=state_dir, python=python, cgroups=cgroups)
        self._url = engine_url
        self.api = api if api is not None else docker.APIClient(
            base_url=engine_url, version="auto", timeout=API_TIMEOUT)
        self._copiers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # -- finding containers ------------------------------------------------

    def _all(self, pod_uid: str, name: str | None = None) -> list[Obj]:
        labels = [f"{POD_UID}={pod_uid}"] + ([f"{CONTAINER_NAME}={name}"] if name else [])
        found = self.api.containers(all=True, filters={"label": labels})
        return sorted(found, key=lambda c: int((c.get("Labels") or {}).get(ATTEMPT, "0")),
                      reverse=True)

    def _latest(self, pod_uid: str, name: str) -> Obj | None:
        found = self._all(pod_uid, name)
        return self.api.inspect_container(found[0]["Id"]) if found else None

    def container_id(self, pod_uid: str, name: str) -> str | None:
        found = self._all(pod_uid, name)
        return str(found[0]["Id"]) if found else None

    # -- the sandbox ---------------------------------------------------------

    def _pod_cgroup_parent(self, pod_cgroup: PodCgroup | None) -> str | None:
        """The pod's cgroup as the engine names it (absolute in each
        hierarchy), made with the pod's limits; None without node cgroups."""
        if self.cgroups is None or pod_cgroup is None:
            return None
        self.cgroups.create(pod_cgroup.path, pod_cgroup.limits)
        (self.pod_dir(pod_cgroup.uid)).mkdir(parents=True, exist_ok=True)
        (self.pod_dir(pod_cgroup.uid) / "cgroup").write_text(pod_cgroup.path)
        folder = next(iter(self.cgroups.folders(pod_cgroup.path)))
        mount = _mount_point(folder)
        parent = "/" + str(folder.relative_to(mount))
        (self.pod_dir(pod_cgroup.uid) / CGROUP_PARENT).write_text(parent)
        return parent

    def create_sandbox(self, pod: Obj, netns: str) -> None:
        meta_ = pod.get("metadata") or {}
        uid = str(meta_.get("uid"))
        found = self._latest(uid, SANDBOX)
        if found is not None and found["State"]["Running"]:
            self._attach(netns, int(found["State"]["Pid"]))
            return
        spec = pod.get("spec") or {}
        if not self._has_image(PAUSE_IMAGE):
            raise ImageNotRunnable(f"the sandbox image {PAUSE_IMAGE} is not on this node")
        parent = self._pod_cgroup_parent(PodCgroup.of(pod))
        attempt = int(found["Config"]["Labels"].get(ATTEMPT, "0")) + 1 if found else 0
        host = self.api.create_host_config(
            network_mode="none", ipc_mode="shareable", cgroup_parent=parent,
            init=False, dns=None)
        ctr = self.api.create_container(
            PAUSE_IMAGE, name=f"k8s_POD_{meta_.get('name')}_{meta_.get('namespace')}_"
            f"{uid}_{attempt}", hostname=str(spec.get("hostname") or meta_.get("name"))[:63],
            labels={POD_UID: uid, POD_NAME: str(meta_.get("name")),
                    POD_NAMESPACE: str(meta_.get("namespace")), CONTAINER_NAME: SANDBOX,
                    ATTEMPT: str(attempt)},
            host_config=host)["Id"]
        self.api.start(ctr)
        pid = int(self.api.inspect_container(ctr)["State"]["Pid"])
        self._attach(netns, pid)
        if found is not None:
            with contextlib.suppress(*_ERRORS):
                self.api.remove_container(found["Id"], force=True)

    @staticmethod
    def _attach(netns: str, pid: int) -> None:
        """Names the sandbox's network namespace ``netns`` (a bind of its
        namespace file, as ``ip netns add`` makes one)."""
        path = Path("/run/netns") / netns
        if path.exists():
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == os.stat(f"/proc/{pid}/ns/net").st_ino:
                    return
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "attach", netns, str(pid)], capture_output=True,
                       check=True)

    def _sandbox_id(self, pod_uid: str) -> str:
        found = self._all(pod_uid, SANDBOX)
        if not found:
            raise ImageNotRunnable(f"pod {pod_uid} has no sandbox")
        return str(found[0]["Id"])

    def ipc_namespace(self, pod_uid: str) -> Path:
        return Path("/proc") / str(self._sandbox_pid(pod_uid)) / "ns" / "ipc"

    def pid_namespace(self, pod_uid: str) -> str:
        return f"/proc/{self._sandbox_pid(pod_uid)}/ns/pid"

    def _sandbox_pid(self, pod_uid: str) -> int:
        return int(self.api.inspect_container(self._sandbox_id(pod_uid))["State"]["Pid"])

    # -- images --------------------------------------------------------------

    def version(self) -> str:
        return str(self.api.version().get("Version", ""))

    def _has_image(self, image: str) -> bool:
        try:
            self.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def image_present(self, image: str) -> bool:
        try:
            return self._has_image(image)
        except _ERRORS:
            return False

    def pull_image(self, image: str) -> None:
        name, _, digest = image.partition("@")
        slash, colon = name.rfind("/"), name.rfind(":")
        repo, tag = (name[:colon], name[colon + 1:]) if colon > slash else (name, "latest")
        try:
            self.api.pull(repo, tag=digest or tag)
        except docker.errors.APIError as e:
            raise ImagePullError(str(e.explanation or e)) from None
        except _ERRORS as e:
            raise ImagePullError(str(e)) from None

    def list_images(self) -> list[Obj]:
        """The engine's images as node.status.images lists them, largest first."""
        out = []
        for img in self.api.images():
            names = [*(img.get("RepoTags") or []), *(img.get("RepoDigests") or [])]
            names = [n for n in names if n != "<none>:<none>"]
            if names:
                out.append({"names": names, "sizeBytes": int(img.get("Size") or 0)})
        return sorted(out, key=lambda i: -int(i["sizeBytes"]))

    # -- containers ----------------------------------------------------------

    def start_container(self, *, pod_uid: str, pod_name: str, namespace: str, container: Obj,
                        netns: str, hostname: str, resolv_conf: Path, hosts: Path,
                        env: dict[str, str], mounts: tuple[Mount, ...] = (),
                        ipc: Path | None = None, pid_ns: str | None = None,
                        pod_cgroup: PodCgroup | None = None) -> int:
        name = str(container.get("name", ""))
        found = self._latest(pod_uid, name)
        if found is not None and found["State"]["Running"]:
            self._copy_logs(pod_uid, name, found)
            return int(found["State"]["Pid"])
        image = str(container.get("image", ""))
        if not self._has_image(image):
            raise ImageNotRunnable(f'Error response from daemon: No such image: {image}')
        sandbox = self._sandbox_id(pod_uid)
        fields = {"metadata.name": pod_name, "metadata.namespace": namespace,
                  "metadata.uid": pod_uid}
        full_env = cmd.container_env(container, base={"HOSTNAME": hostname, **env},
                                     fields=fields)
        full_env.pop("PYTHONPATH", None)  # the process runtime's echo fallback only
        entrypoint, args = argv(container, full_env)
        limits = container_limits(container)
        binds = [f"{resolv_conf}:/etc/resolv.conf", f"{hosts}:/etc/hosts",
                 *(f"{src}:{dst}:{'ro' if ro else 'rw'}" for src, dst, ro in mounts)]
        host: dict[str, Any] = {
            "network_mode": f"container:{sandbox}", "ipc_mode": f"container:{sandbox}",
            "binds": binds, "cgroup_parent": self._pod_cgroup_parent(pod_cgroup)}
        if pid_ns and pid_ns != "own":
            host["pid_mode"] = f"container:{sandbox}"
        host["cpu_shares"] = limits.shares
        if limits.quota_us is not None:
            host["cpu_quota"], host["cpu_period"] = limits.quota_us, limits.period_us
        if limits.memory is not None:
            host["mem_limit"] = host["memswap_limit"] = limits.memory
        if limits.pids is not None:
            host["pids_limit"] = limits.pids
        attempt = int(found["Config"]["Labels"].get(ATTEMPT, "0")) + 1 if found else 0
        try:
            ctr = self.api.create_container(
                image, name=f"k8s_{name}_{pod_name}_{namespace}_{pod_uid}_{attempt}",
                entrypoint=entrypoint, command=args,
                environment=[f"{k}={v}" for k, v in full_env.items()],
                working_dir=container.get("workingDir"),
                stdin_open=bool(container.get("stdin")), tty=bool(container.get("tty")),
                # The SDK makes a container it does not detach StdinOnce: its
                # stdin closes when the first attach ends, as stdinOnce asks.
                detach=not container.get("stdinOnce"),
                labels={POD_UID: pod_uid, POD_NAME: pod_name, POD_NAMESPACE: namespace,
                        CONTAINER_NAME: name, ATTEMPT: str(attempt)},
                host_config=self.api.create_host_config(**host))["Id"]
            self._rotate_logs(pod_uid, name, found)
            self.api.start(ctr)
        except docker.errors.APIError as e:
            raise ImageNotRunnable(str(e.explanation or e)) from e
        info = self.api.inspect_container(ctr)
        self._copy_logs(pod_uid, name, info)
        for old in self._all(pod_uid, name)[2:]:  # this attempt and the previous one stay
            with contextlib.suppress(*_ERRORS):
                self.api.remove_container(old["Id"], force=True)
        return int(info["State"]["Pid"])

    def _rotate_logs(self, pod_uid: str, name: str, previous: Obj | None) -> None:
        log_path = self.log_path(pod_uid, name)
        if previous is not None:
            copier = self._copiers.pop(previous["Id"], None)
            if copier is not None:
                copier.join(timeout=5)
        if log_path.exists():
            os.replace(log_path, self.previous_log_path(pod_uid, name))

    def _copy_logs(self, pod_uid: str, name: str, info: Obj) -> None:
        """Follows the container's output into its log file, in a thread,
        unless one does already (a new runtime instance picks up from the
        file's last write)."""
        ctr = str(info["Id"])
        with self._lock:
            if ctr in self._copiers and self._copiers[ctr].is_alive():
                return
            path = self.log_path(pod_uid, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            since = int(path.stat().st_mtime) if path.exists() and path.stat().st_size else None
            path.touch()
            thread = threading.Thread(target=self._copy, args=(ctr, path, since), daemon=True,
                                      name=f"logs-{ctr[:12]}")
            self._copiers[ctr] = thread
            thread.start()

    def _stream_client(self) -> Any:
        """A client of its own, with no read timeout, for a stream that holds
        its connection long (a followed log, an attach): a quiet container
        sends nothing for long, and the shared client's pool is small. The
        shared one where there is no engine address (a test's fake)."""
        if not self._url:
            return self.api
        return docker.APIClient(base_url=self._url, version="auto",
                                timeout=None)  # type: ignore[arg-type]

    def _copy(self, ctr: str, path: Path, since: int | None) -> None:
        api = self._stream_client()
        try:
            stream = api.logs(ctr, stream=True, follow=True, since=since)
            with path.open("ab") as out:
                for chunk in stream:
                    out.write(chunk)
                    out.flush()
        except _ERRORS as e:
            log.debug("copying the output of %s ended: %s", ctr[:12], e)
        finally:
            if api is not self.api:
                api.close()

    def open_stdin(self, pod_uid: str, container_name: str) -> int | None:
        """The engine's attach stream of the container, stdin only (its output
        reaches the log file already): a descriptor of the hijacked
        connection, which the engine copies to the container's stdin until
        it is closed. The container's stdin stays open after, unless it has
        ``stdinOnce`` (the engine's StdinOnce closes it then)."""
        try:
            info = self._latest(pod_uid, container_name)
        except _ERRORS:
            return None
        if info is None or not info["State"]["Running"] or \
                not (info.get("Config") or {}).get("OpenStdin"):
            return None
        api = self._stream_client()
        try:
            sock = api.attach_socket(info["Id"], params={"stdin": 1, "stream": 1})
            # A descriptor of our own: closing the SDK's objects then drops
            # their references only (no shutdown), the connection stays up.
            fd = os.dup(sock.fileno())
            response = getattr(sock, "_response", None)
            if response is not None:
                response.close()
            sock.close()
            return fd
        except _ERRORS as e:
            log.debug("attaching to %s failed: %s", info["Id"][:12], e)
            return None
        finally:
            if api is not self.api:
                api.close()

    def container_state(self, pod_uid: str, container_name: str) -> ContainerState:
        try:
            info = self._latest(pod_uid, container_name)
        except _ERRORS:
            return ContainerState(ContainerStatus.UNKNOWN)
        if info is None:
            return ContainerState(ContainerStatus.UNKNOWN)
        st = info["State"]
        started, finished = _time(st.get("StartedAt")), _time(st.get("FinishedAt"))
        cid, iid = f"docker://{info['Id']}", f"docker://{info['Image']}"
        if st.get("Running"):
            return ContainerState(ContainerStatus.RUNNING, pid=int(st["Pid"]), started_at=started,
                                  container_id=cid, image_id=iid)
        if started is None:  # made, never started
            return ContainerState(ContainerStatus.UNKNOWN)
        code = int(st.get("ExitCode") or 0)
        return ContainerState(ContainerStatus.EXITED, exit_code=code,
                              reason=OOM_KILLED if st.get("OOMKilled") else "",
                              started_at=started, finished_at=finished, container_id=cid,
                              image_id=iid)

    def cgroup_path(self, pod_uid: str, container_name: str | None = None) -> str | None:
        pod = super().cgroup_path(pod_uid)
        if pod is None or container_name is None:
            return pod
        ctr = self.container_id(pod_uid, container_name)
        return f"{pod}/{ctr}" if ctr else None

    def stop_container(self, pod_uid: str, container_name: str, grace: float) -> None:
        found = self._all(pod_uid, container_name)
        if found and found[0].get("State") == "running":
            with contextlib.suppress(docker.errors.NotFound):
                self.api.stop(found[0]["Id"], timeout=max(int(grace + 0.999), 0))
            self.api.wait(found[0]["Id"], timeout=API_TIMEOUT)

    def containers(self, pod_uid: str) -> list[str]:
        names = {(c.get("Labels") or {}).get(CONTAINER_NAME) for c in self._all(pod_uid)}
        return sorted(n for n in names if n and n != SANDBOX)

    def known_pods(self) -> set[str]:
        labelled = {(c.get("Labels") or {}).get(POD_UID) for c in self.api.containers(
            all=True, filters={"label": [POD_UID]})}
        return super().known_pods() | {u for u in labelled if u}

    def stop_pod(self, pod_uid: str, grace: float) -> None:
        apps = [c for c in self._all(pod_uid)
                if (c.get("Labels") or {}).get(CONTAINER_NAME) != SANDBOX]
        for c in apps:
            if c.get("State") == "running":
                with contextlib.suppress(*_ERRORS):
                    self.api.stop(c["Id"], timeout=max(int(grace + 0.999), 0))
        for c in self._all(pod_uid):
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_container(c["Id"], force=True)
            copier = self._copiers.pop(c["Id"], None)
            if copier is not None:
                copier.join(timeout=5)
        if self.cgroups is not None and (rel := super().cgroup_path(pod_uid)) is not None:
            self.cgroups.remove(rel)
        with contextlib.suppress(FileNotFoundError):
            # The engine made the pod's cgroup in hierarchies the node does
            # not manage (blkio, devices, freezer...) too.
            remove_cgroups((self.pod_dir(pod_uid) / CGROUP_PARENT).read_text(), prune=False)
        unmount_under(self.pod_dir(pod_uid))
        shutil.rmtree(self.pod_dir(pod_uid), ignore_errors=True)


def _mount_point(folder: Path) -> Path:
    """The cgroup hierarchy's mount point above ``folder``."""
    points = [m.point for m in parse_mountinfo(MOUNTINFO.read_text())
              if m.fstype in ("cgroup", "cgroup2") and folder.is_relative_to(m.point)]
    return max(points, key=lambda p: len(p.parts), default=Path("/"))
