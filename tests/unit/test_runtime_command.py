"""Container spec → argv and environment for the process runtime, with
Kubernetes command/args semantics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netplane.node.runtime.command import (
    ECHO_BINARY,
    ECHO_MODULE,
    ImageNotRunnable,
    container_argv,
    container_env,
    expand,
    image_repository,
    is_echo_image,
    package_root,
)

PY = "/opt/py/bin/python"


@pytest.mark.parametrize(("image", "repo"), [
    ("netplane/echo", "netplane/echo"),
    ("netplane/echo:1.2", "netplane/echo"),
    ("registry.local:5000/netplane/echo:v1", "registry.local:5000/netplane/echo"),
    ("netplane/echo@sha256:abcd", "netplane/echo"),
])
def test_image_repository_drops_tag_and_digest(image: str, repo: str) -> None:
    assert image_repository(image) == repo


def test_echo_image_any_tag_runs_the_echo_module() -> None:
    for image in ("netplane/echo", "netplane/echo:latest", "docker.io/netplane/echo:2"):
        assert is_echo_image(image)
        assert container_argv({"name": "c", "image": image}, python=PY, env={}) == [
            PY, "-m", ECHO_MODULE]


def test_echo_image_runs_the_c_server_where_it_is_built(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    binary = python.with_name(ECHO_BINARY)
    c = {"name": "c", "image": "netplane/echo", "args": ["--verbose"]}
    module = [str(python), "-m", ECHO_MODULE, "--verbose"]
    assert container_argv(c, python=str(python), env={}) == module
    binary.write_bytes(b"")  # there, but not executable: not built
    assert container_argv(c, python=str(python), env={}) == module
    binary.chmod(0o755)
    assert container_argv(c, python=str(python), env={}) == [str(binary), "--verbose"]


def test_command_replaces_entrypoint_and_args_are_appended() -> None:
    c = {"name": "c", "image": "netplane/echo", "command": ["sh", "-c"], "args": ["echo hi"]}
    assert container_argv(c, python=PY, env={}) == ["sh", "-c", "echo hi"]


def test_command_runs_for_any_image() -> None:
    c = {"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}
    assert container_argv(c, python=PY, env={}) == ["sleep", "3600"]


def test_args_without_command_follow_the_entrypoint() -> None:
    c = {"name": "c", "image": "netplane/echo", "args": ["--verbose"]}
    assert container_argv(c, python=PY, env={}) == [PY, "-m", ECHO_MODULE, "--verbose"]


@pytest.mark.parametrize("container", [
    {"name": "c", "image": "nginx:1.25"},
    {"name": "c", "image": "nginx:1.25", "args": ["-g", "daemon off;"]},
    {"name": "c"},
])
def test_unknown_image_without_command_is_not_runnable(container: dict[str, object]) -> None:
    with pytest.raises(ImageNotRunnable, match="give the container a 'command'"):
        container_argv(container, python=PY, env={})


def test_variable_references_expand_from_the_environment() -> None:
    c = {"name": "c", "image": "x", "command": ["echo", "$(GREETING) $(MISSING) $$(ESCAPED)"]}
    assert container_argv(c, python=PY, env={"GREETING": "hi"}) == [
        "echo", "hi $(MISSING) $(ESCAPED)"]
    assert expand("$(A)$(A)", {"A": "x"}) == "xx"


def test_env_merges_agent_port_and_container_entries_in_order() -> None:
    c = {
        "name": "c", "image": "busybox", "command": ["env"],
        "ports": [{"containerPort": 9000}, {"containerPort": 9001}],
        "env": [
            {"name": "POD_NAME", "value": "overridden"},
            {"name": "URL", "value": "http://$(POD_IP):$(NETPLANE_CONTAINER_PORT)/"},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
    }
    env = container_env(c, base={"POD_NAME": "web-0", "POD_IP": "10.244.1.2"},
                        fields={"metadata.namespace": "default"})
    assert env["POD_NAME"] == "overridden"
    assert env["NETPLANE_CONTAINER_PORT"] == "9000"
    assert env["URL"] == "http://10.244.1.2:9000/"
    assert env["NS"] == "default"
    assert env["SECRET"] == ""
    assert "PYTHONPATH" not in env


def test_echo_image_env_can_import_the_package(tmp_path: Path) -> None:
    env = container_env({"name": "c", "image": "netplane/echo"}, base={}, fields={})
    # A child with no site-packages (-S) and an empty working directory finds
    # the echo module through that environment alone, as a container does.
    argv = [sys.executable, "-S", "-c", f"import {ECHO_MODULE} as m; print(m.__file__)"]
    found = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                           check=False)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(package_root())
    # Without it the same child cannot: the variable is what does the work.
    bare = subprocess.run(argv, env={}, cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert bare.returncode != 0 and "ModuleNotFoundError" in bare.stderr
