"""What a Kubernetes Container spec means to the ``process`` runtime: the argv
to run and its environment.

Kubernetes semantics: ``command`` replaces the image's entrypoint, ``args``
are appended to it (or to the entrypoint when there is no ``command``), and
``$(VAR)`` in either expands from the container's environment (``$$`` keeps
a literal ``$``). The only image with a built-in entrypoint is
``netplane/echo``: its C server where ``scripts/setup.sh`` built it (beside
the interpreter the runtime uses), else the same server in Python.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import netplane
from netplane.api.meta import Obj

ECHO_IMAGE = "netplane/echo"
ECHO_MODULE = "netplane.node.runtime.echo"
ECHO_BINARY = "netplane-echo"  # built from echo.c by scripts/build-c.sh
PORT_ENV = "NETPLANE_CONTAINER_PORT"

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ImageNotRunnable(RuntimeError):
    """The image has no entrypoint this runtime knows and no command was given."""


def image_repository(image: str) -> str:
    """``registry/name:tag@digest`` without tag and digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def is_echo_image(image: str) -> bool:
    repo = image_repository(image)
    return repo == ECHO_IMAGE or repo.endswith("/" + ECHO_IMAGE)


def package_root() -> str:
    """The directory holding the ``netplane`` package, for child PYTHONPATH."""
    return str(Path(netplane.__file__).resolve().parent.parent)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; unknown references stay as written."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, text)


def built_binary(name: str, *, python: str) -> Path | None:
    """A C program of the runtime beside ``python``, when
    ``scripts/setup.sh`` built it there."""
    path = Path(python).parent / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def echo_binary(*, python: str) -> Path | None:
    """The echo image's C server beside ``python``, when it is built."""
    return built_binary(ECHO_BINARY, python=python)


def entrypoint(image: str, *, python: str) -> list[str]:
    if is_echo_image(image):
        binary = echo_binary(python=python)
        return [str(binary)] if binary is not None else [python, "-m", ECHO_MODULE]
    raise ImageNotRunnable(
        f"image {image!r} cannot be run by the process runtime: it only knows "
        f"{ECHO_IMAGE!r}; give the container a 'command' or use the docker runtime")


def container_argv(container: Obj, *, python: str, env: Mapping[str, str]) -> list[str]:
    """The argv of a container, ``$(VAR)`` expanded from ``env``."""
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if not command:
        command = entrypoint(str(container.get("image", "")), python=python)
    return [expand(word, env) for word in [*command, *args]]


def container_env(container: Obj, *, base: Mapping[str, str],
                  fields: Mapping[str, str]) -> dict[str, str]:
    """``base`` (from the agent), then the first containerPort, then the
    container's ``env`` in order; ``valueFrom.fieldRef`` reads ``fields``
    (field path → value); other ``valueFrom`` sources resolve to empty."""
    env = dict(base)
    ports = container.get("ports") or []
    if ports and "containerPort" in ports[0]:
        env[PORT_ENV] = str(ports[0]["containerPort"])
    if is_echo_image(str(container.get("image", ""))) and not container.get("command"):
        env.setdefault("PYTHONPATH", package_root())
    for item in container.get("env") or []:
        env[str(item["name"])] = _env_value(item, env, fields)
    return env


def _env_value(item: Obj, env: Mapping[str, str], fields: Mapping[str, str]) -> str:
    if "value" in item:
        return expand(str(item["value"]), env)
    field_ref = (item.get("valueFrom") or {}).get("fieldRef") or {}
    return fields.get(str(field_ref.get("fieldPath", "")), "")
