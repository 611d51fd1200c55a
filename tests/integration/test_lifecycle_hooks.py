"""Lifecycle hook handlers against real processes and servers on loopback:
``exec`` runs inside the container's namespaces with its environment,
``httpGet`` asks the pod's address, ``sleep`` waits, each bounded by what is
left of the grace period."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from netplane.node import actions

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="nsenter needs root")
LOOPBACK = "127.0.0.1"


@pytest.fixture
def container_pid() -> Iterator[int]:
    """A stand-in container: a process with an environment of its own."""
    proc = subprocess.Popen(["sleep", "600"], env={"PATH": "/usr/bin:/bin",
                                                   "GREETING": "from-the-container"})
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[int, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("X-Why", "")))
        return web.Response(status=500 if request.path == "/broken" else 200)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    try:
        yield runner.addresses[0][1], seen
    finally:
        await runner.cleanup()


async def test_exec_hook_runs_with_the_containers_environment(
        container_pid: int, tmp_path: Path) -> None:
    out = tmp_path / "hook"
    hook = {"exec": {"command": ["sh", "-c", f'echo "$GREETING" > {out}']}}
    result = await actions.run_hook(hook, {}, pod_ip=LOOPBACK, pid=container_pid, timeout=30)
    assert result.ok, result.message
    assert out.read_text() == "from-the-container\n"


async def test_exec_hook_failure_and_timeout_are_reported(container_pid: int) -> None:
    failed = await actions.run_hook({"exec": {"command": ["sh", "-c", "echo no; exit 4"]}}, {},
                                    pod_ip=LOOPBACK, pid=container_pid, timeout=30)
    assert not failed.ok and "exited with 4: no" in failed.message
    hung = await actions.run_hook({"exec": {"command": ["sleep", "600"]}}, {},
                                  pod_ip=LOOPBACK, pid=container_pid, timeout=0.2)
    assert not hung.ok and "timed out" in hung.message
    gone = await actions.run_hook({"exec": {"command": ["true"]}}, {}, pod_ip=LOOPBACK,
                                  pid=None, timeout=30)
    assert not gone.ok


async def test_http_get_hook_asks_the_pod_by_named_port_with_headers(
        recorder: tuple[int, list[tuple[str, str]]]) -> None:
    port, seen = recorder
    container = {"ports": [{"name": "admin", "containerPort": port}]}
    hook = {"httpGet": {"path": "/drain", "port": "admin",
                        "httpHeaders": [{"name": "X-Why", "value": "shutdown"}]}}
    assert (await actions.run_hook(hook, container, pod_ip=LOOPBACK, pid=None,
                                   timeout=30)).ok
    broken = await actions.run_hook({"httpGet": {"path": "/broken", "port": port}}, container,
                                    pod_ip=LOOPBACK, pid=None, timeout=30)
    assert not broken.ok and "statuscode: 500" in broken.message
    assert seen == [("/drain", "shutdown"), ("/broken", "")]


async def test_sleep_hook_waits_but_not_past_the_grace_period() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await actions.run_hook({"sleep": {"seconds": 600}}, {}, pod_ip=LOOPBACK,
                                   pid=None, timeout=0.1)).ok
    # Bounded by the timeout (the grace left), not the 600 s asked for.
    assert loop.time() - start < 600


async def test_a_cancelled_exec_hook_leaves_no_process_behind(
        container_pid: int, tmp_path: Path) -> None:
    """A pod deleted during its postStart hook cuts the hook short."""
    marker = tmp_path / "hook-pid"
    task = asyncio.create_task(actions.run_hook(
        {"exec": {"command": ["sh", "-c", f"echo $$ > {marker}; exec sleep 600"]}}, {},
        pod_ip=LOOPBACK, pid=container_pid, timeout=600))
    async with asyncio.timeout(30):
        while not marker.exists() or not marker.read_text().strip():
            await asyncio.sleep(0.02)
    hook_pid = int(marker.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not Path(f"/proc/{hook_pid}").exists() or \
        Path(f"/proc/{hook_pid}/stat").read_text().split()[2] == "Z"
