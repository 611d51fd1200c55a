"""A fake of the Docker SDK's APIClient, as far as the docker runtime uses
it: containers with labels, states and logs held in memory, images by
name, and the engine's errors (NotFound, ImageNotFound, APIError) where
the real one raises them. Pure logic; the real engine is tested in
tests/integration."""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass, field
from typing import Any

import docker.errors

_ids = itertools.count(1)
_pids = itertools.count(4000)


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str
    labels: dict[str, str]
    host_config: dict[str, Any]
    entrypoint: list[str] | None
    command: list[str] | None
    env: list[str]
    running: bool = False
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    output: bytes = b""
    stdin_open: bool = False
    stdin_once: bool = False
    # The engine's ends of attach streams, in the order they were made.
    attached: list[socket.socket] = field(default_factory=list)


@dataclass
class FakeEngine:
    images: dict[str, int] = field(default_factory=lambda: {
        "netplane/pause:3.10": 686_901, "busybox:latest": 1_984_241,
        "netplane/echo:latest": 2_847_481})
    made: dict[str, FakeContainer] = field(default_factory=dict)
    # What a pull of each image says: None for success.
    pulls: dict[str, str | None] = field(default_factory=dict)
    pulled: list[str] = field(default_factory=list)

    # -- what the runtime calls ------------------------------------------------

    def version(self) -> dict[str, str]:
        return {"Version": "20.10.24+dfsg1"}

    def _image(self, name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    def inspect_image(self, name: str) -> dict[str, Any]:
        if self._image(name) not in self.images:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return {"Id": f"sha256:{abs(hash(self._image(name))):064x}"[:71]}

    def images_list(self) -> list[dict[str, Any]]:
        return [{"RepoTags": [n], "Size": s} for n, s in self.images.items()]

    def pull(self, repo: str, tag: str = "latest") -> str:
        name = f"{repo}:{tag}"
        self.pulled.append(name)
        error = self.pulls.get(name, f"pull access denied for {repo}, repository does not "
                                     "exist or may require 'docker login'")
        if error is not None:
            raise docker.errors.APIError("500", explanation=error)
        self.images[name] = 1000
        return ""

    def create_host_config(self, **kw: Any) -> dict[str, Any]:
        return kw

    def create_container(self, image: str, *, name: str, labels: dict[str, str],
                         host_config: dict[str, Any], entrypoint: list[str] | None = None,
                         command: list[str] | None = None, environment: list[str] | None = None,
                         stdin_open: bool = False, detach: bool = False,
                         **_: Any) -> dict[str, str]:
        if self._image(image) not in self.images:
            raise docker.errors.ImageNotFound(f"No such image: {image}")
        if any(c.name == name for c in self.made.values()):
            raise docker.errors.APIError("409", explanation=f'Conflict. The container name '
                                         f'"/{name}" is already in use')
        cid = f"{next(_ids):064x}"
        self.made[cid] = FakeContainer(cid, name, self._image(image), dict(labels),
                                       host_config, entrypoint, command, environment or [],
                                       stdin_open=stdin_open,
                                       # The SDK's rule: attached at creation, once.
                                       stdin_once=stdin_open and not detach)
        return {"Id": cid}

    def _get(self, cid: str) -> FakeContainer:
        if cid not in self.made:
            raise docker.errors.NotFound(f"No such container: {cid}")
        return self.made[cid]

    def start(self, cid: str) -> None:
        c = self._get(cid)
        c.running, c.pid, c.started_at = True, next(_pids), "2026-12-03T10:00:00.123456789Z"

    def stop(self, cid: str, timeout: int = 10) -> None:
        self.exit(cid, 143)

    def wait(self, cid: str, timeout: int = 60) -> dict[str, int]:
        return {"StatusCode": self._get(cid).exit_code}

    def remove_container(self, cid: str, force: bool = False, v: bool = False) -> None:
        c = self._get(cid)
        if c.running and not force:
            raise docker.errors.APIError("409", explanation="container is running")
        del self.made[cid]

    def attach_socket(self, cid: str, params: dict[str, int] | None = None) -> socket.socket:
        """The client's end of a socket pair; the engine's end is kept."""
        c = self._get(cid)
        if not c.running:
            raise docker.errors.APIError("409", explanation=f"container {cid} is not running")
        ours, theirs = socket.socketpair()
        c.attached.append(ours)
        return theirs

    def logs(self, cid: str, **_: Any) -> Any:
        return iter([self._get(cid).output])

    def containers(self, all: bool = False,  # the SDK's name
                   filters: dict[str, list[str]] | None = None,
                   quiet: bool = False) -> list[dict[str, Any]]:
        wanted = (filters or {}).get("label", [])
        out = []
        for c in self.made.values():
            if not all and not c.running:
                continue
            if not [w for w in wanted if not self._has(c, w)]:
                out.append({"Id": c.id, "Labels": dict(c.labels),
                            "State": "running" if c.running else "exited"})
        return out

    @staticmethod
    def _has(c: FakeContainer, wanted: str) -> bool:
        key, eq, value = wanted.partition("=")
        return key in c.labels and (not eq or c.labels[key] == value)

    def inspect_container(self, cid: str) -> dict[str, Any]:
        c = self._get(cid)
        return {"Id": c.id, "Image": f"sha256:{abs(hash(c.image)):064x}"[:71],
                "Config": {"Labels": dict(c.labels), "OpenStdin": c.stdin_open,
                           "StdinOnce": c.stdin_once},
                "State": {"Running": c.running, "Pid": c.pid if c.running else 0,
                          "ExitCode": c.exit_code, "OOMKilled": c.oom_killed,
                          "StartedAt": c.started_at, "FinishedAt": c.finished_at}}

    # -- what a test does to containers ---------------------------------------

    def exit(self, cid: str, code: int, *, oom: bool = False) -> None:
        c = self._get(cid)
        c.running, c.exit_code, c.oom_killed = False, code, oom
        c.finished_at = "2026-12-03T10:00:05Z"

    def by_name(self, name: str) -> list[FakeContainer]:
        return [c for c in self.made.values()
                if c.labels.get("io.kubernetes.container.name") == name]


def fake_api(engine: FakeEngine) -> Any:
    """The engine under the names APIClient uses (``images`` is a method there)."""

    class Api:
        def __getattr__(self, name: str) -> Any:
            if name == "images":
                return engine.images_list
            return getattr(engine, name)
    return Api()
