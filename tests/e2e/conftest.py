"""A real multi-node lab for the end-to-end tests, uniquely named so that it
cannot clash with a user's lab or a leftover of an interrupted run, and
removed afterwards whatever happened."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netplane.cluster.client import Client, Connection
from netplane.lab.paths import LabPaths

NETPLANE = str(Path(sys.executable).with_name("netplane"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Lab:
    paths: LabPaths

    @property
    def name(self) -> str:
        return self.paths.name

    def netplane(self, *args: str, check: bool = True, timeout: float = 60,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([NETPLANE, "--lab", self.name, *args], capture_output=True,
                             text=True, timeout=timeout, input=stdin)
        if check and out.returncode != 0:
            raise AssertionError(f"netplane {' '.join(args)} failed ({out.returncode}): "
                                 f"{out.stdout}\n{out.stderr}")
        return out

    def api(self, fn: Callable[[Client], Any]) -> Any:
        async def go() -> Any:
            async with Client(Connection(socket=str(self.paths.socket))) as c:
                return await fn(c)
        return asyncio.run(go())

    def curl(self, pod: str, url: str) -> subprocess.CompletedProcess[str]:
        return self.netplane("exec", pod, "--", "curl", "-sS", "--max-time", "5", url,
                             check=False)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextmanager
def started_lab(nodes: int = 2, *options: str) -> Iterator[Lab]:
    """A lab of ``nodes`` workers (``options`` go to ``lab up``), removed when
    the block ends however it ends."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates network namespaces")
    the_lab = Lab(LabPaths(f"e2e{uuid.uuid4().hex[:8]}"))
    try:
        the_lab.netplane("lab", "up", "--nodes", str(nodes), *options, timeout=120)
        yield the_lab
    finally:
        logs = the_lab.paths.state_dir / "logs"
        if logs.is_dir() and os.environ.get("NETPLANE_KEEP_LOGS"):
            subprocess.run(["cp", "-r", str(logs), os.environ["NETPLANE_KEEP_LOGS"]],
                           check=False)
        the_lab.netplane("lab", "down", check=False, timeout=120)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with started_lab() as the_lab:
        yield the_lab
