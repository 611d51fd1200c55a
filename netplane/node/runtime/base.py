"""What the pod manager asks of a container runtime, and the types every
runtime (``process``, ``docker``) answers with: the seam the CRI is to the
kubelet, kept as a typing protocol so that either runtime (or a test's
fake) can stand behind the pod manager."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from netplane.api.meta import Obj
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.runtime.command import ImageNotRunnable

__all__ = ["ContainerState", "ContainerStatus", "ImageNotRunnable", "ImagePullError", "Mount",
           "Runtime"]

Mount = tuple[Path, str, bool]  # node path, container path, read-only


class ImagePullError(RuntimeError):
    """An image could not be fetched; the text is the engine's."""


class ContainerStatus(enum.Enum):
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ContainerState:
    status: ContainerStatus
    pid: int | None = None
    exit_code: int | None = None
    # Why it ended when the runtime knows better than its exit code (OOMKilled).
    reason: str = field(default="", compare=False)
    # Seconds since the epoch, when known.
    started_at: float | None = field(default=None, compare=False)
    finished_at: float | None = field(default=None, compare=False)
    # The runtime's own names (docker://ID, docker://sha256:...); "" where
    # the pid says it (process://PID).
    container_id: str = field(default="", compare=False)
    image_id: str = field(default="", compare=False)


class Runtime(Protocol):
    """The calls the pod manager makes of a runtime."""

    # The pod's files: resolv.conf, hosts, service account, volumes, logs.
    def pod_dir(self, pod_uid: str) -> Path: ...
    def log_path(self, pod_uid: str, container_name: str) -> Path: ...
    def previous_log_path(self, pod_uid: str, container_name: str) -> Path: ...
    def volumes_dir(self, pod_uid: str) -> Path: ...
    def write_service_account(self, pod_uid: str, *, token: str, ca_cert: str,
                              namespace: str) -> Path: ...
    def write_pod_files(self, pod_uid: str, *, nameservers: list[str], searches: list[str],
                        options: list[str], hostname: str, pod_ip: str) -> tuple[Path, Path]: ...

    # The sandbox: the pod's network (named ``netns_name``), IPC and PID namespaces.
    def create_sandbox(self, pod: Obj, netns_name: str) -> None: ...
    def ipc_namespace(self, pod_uid: str) -> Path: ...
    def pid_namespace(self, pod_uid: str) -> str: ...

    # Images.
    def image_present(self, image: str) -> bool: ...
    def pull_image(self, image: str) -> None:
        """Fetches ``image``; ImagePullError with the engine's reason when it cannot."""

    # Containers, and the pods found on the node (after an agent restart too).
    def start_container(self, *, pod_uid: str, pod_name: str, namespace: str, container: Obj,
                        netns: str, hostname: str, resolv_conf: Path, hosts: Path,
                        env: dict[str, str], mounts: tuple[Mount, ...] = (),
                        ipc: Path | None = None, pid_ns: str | None = None,
                        pod_cgroup: PodCgroup | None = None) -> int: ...
    def container_state(self, pod_uid: str, container_name: str) -> ContainerState: ...
    def stop_container(self, pod_uid: str, container_name: str, grace: float) -> None: ...
    def open_stdin(self, pod_uid: str, container_name: str) -> int | None:
        """A descriptor writing to a running container's stdin, for one
        attach session (the caller closes it); None when it keeps no stdin."""
    def containers(self, pod_uid: str) -> list[str]: ...
    def cgroup_path(self, pod_uid: str, container_name: str | None = None) -> str | None: ...
    def known_pods(self) -> set[str]: ...
    def stop_pod(self, pod_uid: str, grace: float) -> None: ...
