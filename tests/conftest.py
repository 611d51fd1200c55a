"""Test-wide guards: the root network namespace must come out of every test
session exactly as it went in, and namespaces made by tests are removed.
And the two container launchers, for the tests that both must pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netplane.node.runtime.process import python_launcher
from tests.cprograms import build_c


def _capture(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    # Counters change with traffic; the rules themselves must not.
    return "\n".join(line for line in out.splitlines()
                     if not line.startswith("#") and not line.startswith(":"))


def root_netns_state() -> dict[str, str]:
    return {
        "routes": _capture(["ip", "route", "show", "table", "all"]),
        "addresses": _capture(["ip", "-o", "addr", "show"]),
        "iptables": _capture(["iptables-save"]),
        "iptables-legacy": _capture(["iptables-legacy-save"]),
        "nftables": _capture(["nft", "list", "ruleset"]),
    }


@pytest.fixture(scope="session", autouse=True)
def root_netns_unchanged() -> Iterator[None]:
    """Fails the session if anything changed routes, addresses or netfilter
    rules in the machine's own network namespace."""
    if os.geteuid() != 0:
        yield
        return
    before = root_netns_state()
    yield
    after = root_netns_state()
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"root network namespace changed: {changed}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates network namespaces")
    for item in items:
        if "integration" in str(item.path) or "e2e" in str(item.path):
            item.add_marker(skip)


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    """Creates uniquely named network namespaces and deletes them afterwards,
    with every process still inside them, whether the test passed or not."""
    made: list[str] = []

    def make(role: str) -> str:
        name = f"npt-{role}-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        made.append(name)
        return name

    yield make
    for name in reversed(made):
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="session")
def c_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """echo.c (the netplane/echo server), built from the source as it is."""
    return build_c("echo", tmp_path_factory.mktemp("echo"))


@pytest.fixture(scope="session")
def c_launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """launcher.c, built from the source as it is."""
    return build_c("launcher", tmp_path_factory.mktemp("launcher"))


@pytest.fixture(params=["python", "c"])
def launcher(request: pytest.FixtureRequest) -> list[str]:
    """The argv that starts one or the other launcher, as the runtime does."""
    if request.param == "python":
        return python_launcher(sys.executable)
    return [str(request.getfixturevalue("c_launcher"))]
