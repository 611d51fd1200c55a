"""A Docker Engine of a node's own: ``dockerd`` started inside the node's
network namespace, with its data root, socket and pid file in a folder of
the node's, so that it sees the node's interfaces only and programs none
of its own (no bridge, no iptables, no forwarding or masquerading: netplane
wires pods itself). Its containers' cgroups go under a parent of the
engine's own, so that stopping it leaves nothing behind.

``nsenter --net`` and not ``ip netns exec``: the latter mounts a fresh
/sys for the namespace, where dockerd finds no cgroups ("Devices cgroup
isn't mounted")."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from netplane.node.runtime import images
from netplane.node.runtime.process import proc_stat, unmount_under

DOCKERD = "dockerd"
DOCKER_DIR = "docker"  # the engine's folder in an agent's state folder
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
API_TIMEOUT = 60
# containerd's socket lives under the exec root and a Unix socket's path has
# 108 bytes at most: the exec root is short, under /run, named by a hash.
EXEC_ROOTS = Path("/run/netplane-docker")


class EngineError(RuntimeError):
    pass


def _hash(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]


@dataclass
class Engine:
    """``state`` is the engine's folder (its data root, socket, pid file and
    log); ``netns`` the name of the network namespace it runs in (None: the
    caller's own, as for an agent inside its node's)."""

    state: Path
    netns: str | None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return _hash(self.state)

    @property
    def socket(self) -> Path:
        return self.state / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.state / "docker.pid"

    @property
    def data_root(self) -> Path:
        return self.state / "data"

    @property
    def exec_root(self) -> Path:
        return EXEC_ROOTS / self.key

    @property
    def cgroup_parent(self) -> str:
        """Where its containers' cgroups go, in every hierarchy (cgroupfs)."""
        return f"/netplane-docker-{self.key}"

    @property
    def log(self) -> Path:
        return self.state / "dockerd.log"

    def argv(self) -> list[str]:
        enter = ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []
        return [*enter, DOCKERD,
                "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "--host", self.url, "--pidfile", str(self.pidfile),
                "--bridge=none", "--iptables=false", "--ip6tables=false",
                "--ip-forward=false", "--ip-masq=false",
                "--exec-opt", "native.cgroupdriver=cgroupfs",
                "--cgroup-parent", self.cgroup_parent,
                # Containers keep running while the engine restarts.
                "--live-restore"]

    def client(self, *, timeout: int = API_TIMEOUT) -> docker.APIClient:
        return docker.APIClient(base_url=self.url, timeout=timeout, version="auto")

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        if self.pid() is None:
            return False
        try:
            with contextlib.closing(self.client(timeout=5)) as c:
                return bool(c.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False

    def start(self, *, timeout: float = START_TIMEOUT) -> None:
        """Starts the engine unless it runs already; returns once it answers."""
        if self.running():
            return
        self.state.mkdir(parents=True, exist_ok=True)
        self.exec_root.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            # A session of its own: the agent's signals are not its own.
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.running():
            if self.proc.poll() is not None:
                raise EngineError(f"dockerd exited with {self.proc.returncode}: "
                                  f"{_tail(self.log)}")
            if time.monotonic() > deadline:
                self.stop()
                raise EngineError(f"dockerd did not answer on {self.socket} within "
                                  f"{timeout:.0f} s: {_tail(self.log)}")
            time.sleep(0.05)

    def ensure_images(self, *, bin_dir: Path, cache: Path = images.CACHE) -> list[str]:
        """Imports the node images the engine lacks; returns the names added."""
        added = []
        with contextlib.closing(self.client()) as c:
            have = {t for img in c.images() for t in img.get("RepoTags") or []}
            if have.issuperset(images.NAMES):
                return []
            for built in images.built_images(bin_dir=bin_dir, cache=cache):
                missing = [n for n in built.names if n not in have]
                if not missing:
                    continue
                first, *rest = built.names
                repo, tag = first.rsplit(":", 1)
                c.import_image_from_data(built.tarball.read_bytes(), repository=repo, tag=tag,
                                         changes=list(built.changes))
                for name in rest:
                    r, t = name.rsplit(":", 1)
                    c.tag(first, r, t)
                added += missing
        return added

    def load(self, tarball: Path) -> list[str]:
        """Loads a ``docker save`` tarball; returns the images it named."""
        with contextlib.closing(self.client()) as c, tarball.open("rb") as f:
            out = c.load_image(f)  # type: ignore[no-untyped-call]
        names = []
        for line in out or []:
            text = str(line.get("stream") or "")
            for prefix in ("Loaded image: ", "Loaded image ID: "):
                if text.startswith(prefix):
                    names.append(text[len(prefix):].strip())
        return names

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """Removes every container, stops the engine and removes its state:
        its data, exec root, mounts and cgroups."""
        if self.running():
            with contextlib.suppress(docker.errors.DockerException,
                                     requests.exceptions.RequestException), \
                    contextlib.closing(self.client()) as c:
                for ctr in c.containers(all=True, quiet=True):
                    with contextlib.suppress(docker.errors.NotFound):
                        c.remove_container(ctr["Id"], force=True, v=True)
        pid = self.pid()
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.05)
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        self._reap(wait=True)
        for root in (self.exec_root, self.data_root):
            unmount_under(root.resolve())
            shutil.rmtree(root, ignore_errors=True)
        remove_cgroups(self.cgroup_parent)
        for leftover in (self.socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def _reap(self, *, wait: bool = False) -> None:
        """Collects the exit of a dockerd this process started (no zombie)."""
        if self.proc is None:
            return
        try:
            if wait:
                self.proc.wait(timeout=STOP_TIMEOUT)
            elif self.proc.poll() is None:
                return
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def remove_cgroups(parent: str, *, prune: bool = True) -> None:
    """A cgroup path (absolute, as an engine's cgroup parent names it) in
    every hierarchy the engine writes (each v1 one, or v2), deepest first;
    with ``prune``, its parents too where that leaves them empty."""
    base = Path("/sys/fs/cgroup")
    roots = [base] if (base / "cgroup.controllers").exists() else \
        [p for p in base.iterdir() if p.is_dir() and not p.is_symlink()]
    for root in roots:
        top = root / parent.lstrip("/")
        if not top.is_dir():
            continue
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()),
                             key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
        up = top.parent
        while prune and up != root and up.is_relative_to(root):
            try:
                up.rmdir()
            except OSError:
                break
            up = up.parent
