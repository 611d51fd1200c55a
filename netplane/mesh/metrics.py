"""What the node proxy tells of each request: Prometheus metrics with the
golden signals per source workload, destination Service, route and
response code (Istio's standard metrics, under netplane's names). The
``Record`` of a request is also what its access log entry (``accesslog``)
and its trace span (``tracing``) are made of."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from netplane.mesh.routes import BackendRef, Rule
from netplane.mesh.tracing import Hop

UNKNOWN = "unknown"
LABELS = ("source_workload", "source_namespace", "destination_service", "route",
          "response_code")
# Request latency buckets in seconds, as Istio's (0.5 ms to 30 s).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(slots=True)
class Record:
    """One request as the proxy saw it through."""
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0  # when it was answered; 0: not yet
    source: str = UNKNOWN  # the client's workload identity
    source_namespace: str = UNKNOWN
    client: str = ""  # the client's IP
    service: str = UNKNOWN  # "name.namespace" of the destination Service
    route: str = ""  # "ns/name rule" of the rule that took it
    rule: Rule | None = None
    backend: BackendRef | None = None  # the Service the last try went to
    backends: list[str] = field(default_factory=list)  # each try's endpoint
    destination: str = ""  # the workload identity at the last endpoint, if known
    method: str = ""
    path: str = ""
    authority: str = ""  # the Host header as it came
    status: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    timed_out: bool = False
    detail: str = ""  # why the proxy answered itself; "": the upstream answered
    trace: Hop | None = None

    @property
    def retries(self) -> int:
        return max(len(self.backends) - 1, 0)

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


class MeshMetrics:
    def __init__(self) -> None:
        self._children: dict[tuple[str, ...], tuple[Any, Any, Any, Any]] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("netplane_mesh_requests", "Requests the node proxy answered.",
                                LABELS, registry=r)
        self.duration = Histogram("netplane_mesh_request_duration_seconds",
                                  "Time from a request's arrival to its answer.", LABELS,
                                  buckets=BUCKETS, registry=r)
        self.request_bytes = Counter("netplane_mesh_request_bytes", "Request body bytes.",
                                     LABELS, registry=r)
        self.response_bytes = Counter("netplane_mesh_response_bytes", "Response body bytes.",
                                      LABELS, registry=r)
        self.retries = Counter("netplane_mesh_retries", "Tries after the first.",
                               ("destination_service", "route"), registry=r)
        self.timeouts = Counter("netplane_mesh_timeouts", "Requests cut by a route timeout.",
                                ("destination_service", "route"), registry=r)
        self.tunnels = Counter("netplane_mesh_tunnel_connections",
                               "Mutual-TLS connections between node proxies, by direction and "
                               "outcome (connected, handshake_failed, refused: the peer's "
                               "identity was not the one expected).", ("direction", "outcome"),
                               registry=r)
        self.ejections = Counter("netplane_mesh_ejections",
                                 "Endpoints ejected for consecutive failures (outlier "
                                 "detection).", ("backend",), registry=r)
        self.overflows = Counter("netplane_mesh_overflows",
                                 "Tries refused because the backend had its limit of requests "
                                 "in flight (circuit breaking).", ("backend",), registry=r)

    def _series(self, labels: tuple[str, ...]) -> tuple[Any, Any, Any, Any]:
        """The four series of one label set, found once: the client library's
        labels() takes a lock and checks its arguments on every call."""
        got = self._children.get(labels)
        if got is None:
            got = self._children[labels] = (
                self.requests.labels(*labels), self.duration.labels(*labels),
                self.request_bytes.labels(*labels), self.response_bytes.labels(*labels))
        return got

    def observe(self, rec: Record) -> None:
        requests, duration, request_bytes, response_bytes = self._series(
            (rec.source, rec.source_namespace, rec.service, rec.route, str(rec.status)))
        requests.inc()
        duration.observe(rec.seconds)
        request_bytes.inc(rec.request_bytes)
        response_bytes.inc(rec.response_bytes)
        if rec.retries:
            self.retries.labels(rec.service, rec.route).inc(rec.retries)
        if rec.timed_out:
            self.timeouts.labels(rec.service, rec.route).inc()

    def tunnel_event(self, direction: str, outcome: str) -> None:
        self.tunnels.labels(direction, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
