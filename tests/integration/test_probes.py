"""Readiness probes against real servers on loopback, and what a failing
probe does to a Service: the pod's Ready condition goes False and the
endpoints controller moves it to notReadyAddresses, so the proxy stops
sending it traffic.

Address plan: the probed servers listen on 127.0.0.1 (ports chosen by the
kernel). In the chain test the pod reports 10.244.1.2 as its IP (what the
endpoints list) while its probe reaches the loopback server that stands in
for its container; nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client
from netplane.cluster.controllers.endpoints import EndpointsController
from netplane.cluster.controllers.shared import Informers
from netplane.node import podstatus
from netplane.node.probes import ContainerProbes, ProbeKind, ProbeState, check, probe
from netplane.node.runtime.process import ContainerState, ContainerStatus
from tests.unit.test_client import one_controller

HANG = 60.0  # only a guard against a hung test
LOOPBACK = "127.0.0.1"
POD_IP = "10.244.1.2"
# Generous: a probe's own timeout is not what these tests measure.
SLOW_MACHINE = 30


@dataclass
class Health:
    """An HTTP server whose /healthz answers with ``status``; counts requests."""

    status: int = 200
    port: int = 0
    paths: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return web.Response(status=self.status if request.path == "/healthz" else 404)


@pytest.fixture
async def health() -> AsyncIterator[Health]:
    h = Health()
    app = web.Application()
    app.router.add_get("/{tail:.*}", h.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    h.port = runner.addresses[0][1]
    try:
        yield h
    finally:
        await runner.cleanup()


@pytest.fixture
async def silent() -> AsyncIterator[int]:
    """A TCP port that accepts and never says anything."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def container(probe_spec: Obj, *, port: int = 8080) -> Obj:
    return {"name": "web", "image": "netplane/echo",
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "readinessProbe": {"periodSeconds": 0, "timeoutSeconds": SLOW_MACHINE,
                               "failureThreshold": 1, **probe_spec}}


async def test_http_probe_follows_the_status_code(health: Health) -> None:
    c = container({"httpGet": {"path": "/healthz", "port": "http"}}, port=health.port)
    state = ProbeState()
    assert await state.update(c, LOOPBACK)
    health.status = 503
    assert not await state.update(c, LOOPBACK) and not state.result
    health.status = 302  # redirects count as success, as the kubelet counts them
    assert await state.update(c, LOOPBACK)
    assert health.paths == ["/healthz"] * 3


async def test_http_probe_to_a_wrong_path_port_or_a_silent_server_fails(
        health: Health, silent: int) -> None:
    assert not await probe(container({"httpGet": {"path": "/nope", "port": health.port}}),
                           LOOPBACK)
    assert not await probe(container({"httpGet": {"path": "/healthz",
                                                  "port": closed_port()}}), LOOPBACK)
    assert not await probe(container({"httpGet": {"path": "/healthz", "port": "grpc"}}),
                           LOOPBACK)  # a named port the container does not have
    # No answer within timeoutSeconds: a failure, not a hang.
    hung = container({"httpGet": {"path": "/healthz", "port": silent},
                      "timeoutSeconds": 0.2})
    assert not await probe(hung, LOOPBACK)


async def test_tcp_probe(health: Health) -> None:
    assert await probe(container({"tcpSocket": {"port": health.port}}), LOOPBACK)
    assert not await probe(container({"tcpSocket": {"port": closed_port()}}), LOOPBACK)


async def test_success_threshold_and_initial_delay(health: Health) -> None:
    c = container({"httpGet": {"path": "/healthz", "port": health.port},
                   "successThreshold": 2})
    state = ProbeState()
    assert not await state.update(c, LOOPBACK)  # one success is not yet enough
    assert await state.update(c, LOOPBACK)
    health.status = 500
    assert not await state.update(c, LOOPBACK)
    health.status = 200
    assert not await state.update(c, LOOPBACK)  # counting starts again after a failure
    delayed = ProbeState()
    later = container({"httpGet": {"path": "/healthz", "port": health.port},
                       "initialDelaySeconds": 3600})
    assert not await delayed.update(later, LOOPBACK)
    assert len(health.paths) == 4  # the delayed container was not probed at all


async def test_failure_threshold(health: Health) -> None:
    c = container({"httpGet": {"path": "/healthz", "port": health.port}})
    del c["readinessProbe"]["failureThreshold"]  # the kubelet's default: 3 in a row
    state = ProbeState()
    assert await state.update(c, LOOPBACK)
    health.status = 500
    assert await state.update(c, LOOPBACK)
    assert await state.update(c, LOOPBACK)  # two failures: still ready
    assert not await state.update(c, LOOPBACK)
    health.status = 200
    assert await state.update(c, LOOPBACK)  # one success is enough to come back


async def test_container_without_a_probe_is_ready_once_running() -> None:
    assert await ProbeState().update({"name": "c", "image": "busybox"}, LOOPBACK)


async def test_liveness_failure_asks_for_a_restart_after_the_threshold(health: Health) -> None:
    c = {"name": "web", "livenessProbe": {"httpGet": {"path": "/healthz", "port": health.port},
                                          "periodSeconds": 0, "failureThreshold": 2,
                                          "timeoutSeconds": SLOW_MACHINE}}
    probes = ContainerProbes()
    assert await probes.update(c, LOOPBACK, None) is None and probes.ready
    health.status = 500
    assert await probes.update(c, LOOPBACK, None) is None  # one failure is not enough
    assert [p.kind for p in probes.failed_now()] == [ProbeKind.LIVENESS]
    fatal = await probes.update(c, LOOPBACK, None)
    assert fatal is not None and fatal.kind is ProbeKind.LIVENESS
    assert fatal.message == "HTTP probe failed with statuscode: 500"


async def test_startup_probe_holds_back_liveness_and_readiness(health: Health) -> None:
    c = {"name": "web",
         "startupProbe": {"httpGet": {"path": "/healthz", "port": health.port},
                          "periodSeconds": 0, "failureThreshold": 2,
                          "timeoutSeconds": SLOW_MACHINE},
         "livenessProbe": {"httpGet": {"path": "/live", "port": health.port},
                           "periodSeconds": 0, "timeoutSeconds": SLOW_MACHINE},
         "readinessProbe": {"httpGet": {"path": "/ready", "port": health.port},
                            "periodSeconds": 0, "timeoutSeconds": SLOW_MACHINE}}
    health.status = 503
    probes = ContainerProbes()
    assert await probes.update(c, LOOPBACK, None) is None
    assert not probes.started and not probes.ready
    assert health.paths == ["/healthz"]  # neither liveness nor readiness ran
    fatal = await probes.update(c, LOOPBACK, None)
    assert fatal is not None and fatal.kind is ProbeKind.STARTUP
    # A new instance whose startup succeeds: the other two run from then on.
    health.status, health.paths[:] = 200, []
    probes = ContainerProbes()
    await probes.update(c, LOOPBACK, None)
    assert probes.started and health.paths == ["/healthz", "/live", "/ready"]


async def test_exec_probe_runs_in_the_container(tmp_path: Path) -> None:
    import os
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("nsenter needs root")
    proc = subprocess.Popen(["sleep", "600"])
    try:
        flag = tmp_path / "healthy"
        spec = {"exec": {"command": ["test", "-e", str(flag)]}, "timeoutSeconds": SLOW_MACHINE}
        c = {"name": "web", "readinessProbe": spec}
        assert not await probe(c, LOOPBACK, pid=proc.pid)
        flag.touch()
        assert await probe(c, LOOPBACK, pid=proc.pid)
    finally:
        proc.kill()
        proc.wait()


async def test_grpc_probe_asks_the_standard_health_service() -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()
    try:
        spec = {"grpc": {"port": port}, "timeoutSeconds": SLOW_MACHINE}
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert (await check(spec, {}, LOOPBACK)).ok
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        result = await check(spec, {}, LOOPBACK)
        assert not result.ok and result.message == \
            'service unhealthy (responded with "NOT_SERVING")'
        unknown = await check({"grpc": {"port": port, "service": "cart"},
                               "timeoutSeconds": SLOW_MACHINE}, {}, LOOPBACK)
        assert not unknown.ok and "NotFound" in unknown.message
    finally:
        await server.stop(None)
    refused = await check({"grpc": {"port": closed_port()}, "timeoutSeconds": SLOW_MACHINE},
                          {}, LOOPBACK)
    assert not refused.ok


# -- a failing probe takes the pod out of its Service ------------------------------------


@dataclass
class ControlPlane:
    client: Client
    informers: Informers

    async def endpoints(self, cond: Callable[[Obj], bool]) -> Obj:
        async with asyncio.timeout(HANG):
            while True:
                ep = self.informers.endpoints.get("web", "default")
                if ep is not None and cond(ep):
                    return ep
                await asyncio.sleep(0.02)


@pytest.fixture
async def control_plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    async with one_controller(tmp_path, EndpointsController) as (client, informers):
        yield ControlPlane(client, informers)


def addresses(ep: Obj, kind: str) -> list[str]:
    return [a["ip"] for s in ep.get("subsets") or [] for a in s.get(kind) or []]


async def report(c: Client, pod: Obj, state: ProbeState) -> Obj:
    """What the agent does each round: probe, build the status, patch it."""
    spec = pod["spec"]["containers"][0]
    ready = await state.update(spec, LOOPBACK)
    view = podstatus.ContainerView(spec, ContainerState(ContainerStatus.RUNNING, pid=1),
                                   ready, 0)
    status = podstatus.build(pod, [view], pod_ip=POD_IP, host_ip="192.168.56.11",
                             started_at="2026-01-01T00:00:00Z")
    return await c.patch(resources.POD, meta.name(pod), {"status": status}, "default",
                         subresource="status")


async def test_a_pod_whose_probe_fails_leaves_the_service_endpoints(
        control_plane: ControlPlane, health: Health) -> None:
    c = control_plane.client
    await c.create(resources.SERVICE, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}, "default")
    spec = container({"httpGet": {"path": "/healthz", "port": health.port}}, port=health.port)
    pod = await c.create(resources.POD, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"containers": [spec]}}, "default")
    await c.bind(pod, "node-1")
    pod = await c.get(resources.POD, "web-0", "default")
    state = ProbeState()
    pod = await report(c, pod, state)
    assert meta.condition_true(pod, "Ready")
    ep = await control_plane.endpoints(lambda e: addresses(e, "addresses") == [POD_IP])
    assert addresses(ep, "notReadyAddresses") == []
    health.status = 503  # the container starts failing its probe
    pod = await report(c, pod, state)
    ready = meta.condition(pod, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == (
        "False", "ContainersNotReady")
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    ep = await control_plane.endpoints(lambda e: addresses(e, "notReadyAddresses") == [POD_IP])
    assert addresses(ep, "addresses") == []
    health.status = 200  # and recovers
    await report(c, pod, state)
    await control_plane.endpoints(lambda e: addresses(e, "addresses") == [POD_IP])
