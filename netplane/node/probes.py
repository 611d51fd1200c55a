"""Container probes as the kubelet runs them, from the node to the pod:
startup (holds the other two back until it succeeds; failing it restarts
the container), liveness (failing it restarts the container) and readiness
(failing it takes the pod out of its Services), each with ``exec``,
``httpGet``, ``tcpSocket`` or ``grpc`` and the kubelet's timing fields."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from netplane.api.meta import Obj
from netplane.node import actions
from netplane.node.actions import Result


class ProbeKind(enum.StrEnum):
    STARTUP = "startupProbe"
    LIVENESS = "livenessProbe"
    READINESS = "readinessProbe"

    @property
    def label(self) -> str:
        """As the kubelet names it in events: ``Liveness probe failed: ...``."""
        return self.removesuffix("Probe").capitalize()


async def check(spec: Obj, container: Obj, ip: str, pid: int | None = None) -> Result:
    """One run of a probe's handler."""
    timeout = float(spec.get("timeoutSeconds", 1))
    if "httpGet" in spec:
        return await actions.http_get(spec["httpGet"], container, ip, timeout)
    if "tcpSocket" in spec:
        return await actions.tcp_socket(spec["tcpSocket"], container, ip, timeout)
    if "exec" in spec:
        return await actions.exec_command(spec["exec"], pid, timeout)
    if "grpc" in spec:
        return await grpc_health(spec["grpc"], ip, timeout)
    return Result(True)


async def probe(container: Obj, ip: str, *, kind: ProbeKind = ProbeKind.READINESS,
                pid: int | None = None) -> bool:
    return (await check(container.get(kind) or {}, container, ip, pid)).ok


async def grpc_health(spec: Obj, ip: str, timeout: float) -> Result:
    """The gRPC health checking protocol (grpc.health.v1.Health/Check):
    success is SERVING for the named service ("" is the whole server)."""
    # Imported here: the agent pays for gRPC only once a pod asks for it.
    import grpc
    from grpc_health.v1 import health_pb2

    target = f"{ip}:{int(spec.get('port', 0))}"
    service = str(spec.get("service") or "")
    async with grpc.aio.insecure_channel(target) as channel:
        check_rpc = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        try:
            reply = await check_rpc(health_pb2.HealthCheckRequest(service=service),
                                    timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return Result(False, f'timeout: failed to connect service "{target}" within '
                              f"{timeout:g}s: context deadline exceeded")
            return Result(False, f"rpc error: code = {e.code().name.title().replace('_', '')} "
                          f"desc = {e.details()}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if status == "SERVING":
        return Result(True)
    return Result(False, f'service unhealthy (responded with "{status}")')


@dataclass
class ProbeState:
    """One probe of one container instance: when it may next run, the
    results in a row, and the verdict the kubelet acts on."""

    kind: ProbeKind = ProbeKind.READINESS
    started: float = field(default_factory=time.monotonic)
    # Readiness and startup start failed, liveness succeeded, as in the kubelet.
    result: bool | None = None
    last: float = 0.0
    successes: int = 0
    failures: int = 0
    message: str = ""
    ran: bool = False  # the last update ran the handler

    def __post_init__(self) -> None:
        if self.result is None:
            self.result = self.kind is ProbeKind.LIVENESS

    def due(self, container: Obj, now: float) -> float:
        """When the probe next runs (monotonic time); ``now`` if overdue."""
        spec = container.get(self.kind) or {}
        first = self.started + float(spec.get("initialDelaySeconds", 0))
        if not self.last:
            return max(first, now)
        return max(self.last + float(spec.get("periodSeconds", 10)), now)

    async def update(self, container: Obj, ip: str, pid: int | None = None) -> bool:
        """Runs the probe if it is due; the verdict after it."""
        spec = container.get(self.kind)
        self.ran = False
        if not spec:
            self.result = True
            return True
        now = time.monotonic()
        if self.due(container, now) > now:
            return bool(self.result)
        self.last, self.ran = now, True
        outcome = await check(spec, container, ip, pid)
        self.message = outcome.message
        self.successes, self.failures = (self.successes + 1, 0) if outcome.ok else \
            (0, self.failures + 1)
        # Thresholds: successThreshold successes in a row to pass, failureThreshold
        # failures in a row (default 3) to fail.
        if outcome.ok and self.successes >= int(spec.get("successThreshold", 1)):
            self.result = True
        elif not outcome.ok and self.failures >= int(spec.get("failureThreshold", 3)):
            self.result = False
        return bool(self.result)


@dataclass
class ContainerProbes:
    """The three probes of one running container instance."""

    startup: ProbeState = field(default_factory=lambda: ProbeState(ProbeKind.STARTUP))
    liveness: ProbeState = field(default_factory=lambda: ProbeState(ProbeKind.LIVENESS))
    readiness: ProbeState = field(default_factory=lambda: ProbeState(ProbeKind.READINESS))
    started: bool = False

    def due(self, container: Obj, now: float) -> float:
        states = [self.startup] if not self.started else [self.liveness, self.readiness]
        times = [s.due(container, now) for s in states if container.get(s.kind)]
        return min(times, default=now + 3600.0)

    async def update(self, container: Obj, ip: str, pid: int | None) -> ProbeState | None:
        """Runs what is due; the probe whose failure means a restart, if any."""
        if not self.started:
            if container.get(ProbeKind.STARTUP) and \
                    not await self.startup.update(container, ip, pid):
                return self.startup if self.startup.failures >= _threshold(
                    container, ProbeKind.STARTUP) else None
            self.started = True
        if not await self.liveness.update(container, ip, pid):
            return self.liveness
        await self.readiness.update(container, ip, pid)
        return None

    @property
    def ready(self) -> bool:
        return self.started and bool(self.readiness.result)

    def failed_now(self) -> list[ProbeState]:
        """The probes that ran in the last update and failed."""
        return [s for s in (self.startup, self.liveness, self.readiness)
                if s.ran and s.failures]


def _threshold(container: Obj, kind: ProbeKind) -> int:
    return int((container.get(kind) or {}).get("failureThreshold", 3))
