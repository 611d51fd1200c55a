"""The node proxy's access log, one entry per request, as Envoy's and
Istio's: written to the ``netplane.mesh.access`` logger (formatted only
when that logger takes INFO) and kept, the last ``ENTRIES``, for
``netplane mesh logs`` to read, from a sequence number on, by the client's
namespace or by Service.

A line reads, space separated, "-" for what is not known::

    [START] "METHOD PATH" CODE DETAIL BYTES_IN BYTES_OUT DURATION_MS RETRIES
    "AUTHORITY" SOURCE ROUTE#RULE BACKEND ENDPOINT TRACE_ID

SOURCE is the client's workload identity (SPIFFE) when the proxy knows
it, else its IP; ROUTE the HTTPRoute ("ns/name") and RULE the index of its
rule that took the request ("-": no route applied, the request went to the
Service it was sent to); BACKEND the Service port the last try went to
and ENDPOINT its address; DETAIL why the proxy answered itself ("-": the
upstream answered)."""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from typing import Any, NamedTuple

from netplane.mesh.metrics import UNKNOWN, Record
from netplane.mesh.tracing import rfc3339

log = logging.getLogger("netplane.mesh.access")

ENTRIES = 1000


class Detail(enum.StrEnum):
    """Why the proxy answered a request itself (Envoy's response code
    details, in its words where it has some)."""
    ROUTE_NOT_FOUND = "route_not_found"  # no listener here, or no rule matches
    SERVICE_NOT_FOUND = "service_not_found"  # a captured connection to no known Service
    ROUTE_ERROR = "route_error"  # a rule the proxy cannot follow
    REDIRECT = "redirect"  # a RequestRedirect filter
    NO_BACKEND = "no_backend"  # every weight is 0
    BACKEND_NOT_FOUND = "backend_not_found"  # a backendRef that is no usable Service port
    NO_HEALTHY_UPSTREAM = "no_healthy_upstream"  # the Service has no ready endpoint
    RBAC_DENIED = "rbac_access_denied"  # an AuthorizationPolicy; "[ns/name]" of the one
    UPSTREAM_TIMEOUT = "upstream_response_timeout"  # the rule's timeout, or the try's
    UPSTREAM_OVERFLOW = "upstream_overflow"  # the backend's circuit is open (max requests)
    UPSTREAM_CONNECT_ERROR = "upstream_connect_error"
    UPSTREAM_RESET = "upstream_reset"


class Entry(NamedTuple):  # a tuple: cheap to make once per request, and immutable
    seq: int  # 1, 2, ... in the order requests were answered
    start: float  # seconds since the epoch, when the request came in
    source: str  # SPIFFE id of the client's workload, else its IP
    source_namespace: str  # "": not known
    method: str
    path: str
    authority: str
    route: str  # "ns/name" of the HTTPRoute; "": none applied
    rule: int | None
    service: str  # the destination as the listener names it (a Service's FQDN)
    backend: str  # "ns/name:port" of the Service the last try went to
    endpoint: str  # "ip:port"
    destination: str  # SPIFFE id of the endpoint's workload, if known
    code: int
    detail: str  # why the proxy answered itself; "": the upstream answered
    duration_ms: float
    bytes_in: int
    bytes_out: int
    retries: int
    trace_id: str

    def line(self) -> str:
        route = f"{self.route}#{self.rule}" if self.route else "-"
        return (f'[{rfc3339(self.start)}] "{self.method} {_quote(self.path)}" {self.code} '
                f'{self.detail or "-"} {self.bytes_in} {self.bytes_out} '
                f'{self.duration_ms:.1f} {self.retries} "{_quote(self.authority) or "-"}" '
                f'{self.source or "-"} {route} {self.backend or "-"} {self.endpoint or "-"} '
                f'{self.trace_id or "-"}')

    def __str__(self) -> str:
        return self.line()

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "start_time": rfc3339(self.start), "source": self.source,
                "source_namespace": self.source_namespace, "method": self.method,
                "path": self.path, "authority": self.authority, "route": self.route,
                "rule": self.rule, "service": self.service, "backend": self.backend,
                "endpoint": self.endpoint, "destination": self.destination,
                "code": self.code, "detail": self.detail,
                "duration_ms": round(self.duration_ms, 3), "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "retries": self.retries,
                "trace_id": self.trace_id}

    def span_attributes(self) -> dict[str, str | int]:
        """What the request's trace span tells of the proxy's decision."""
        attrs: dict[str, str | int] = {
            "route": f"{self.route}#{self.rule}" if self.route else "-",
            "backend": self.backend, "endpoint": self.endpoint, "retries": self.retries,
            "status": self.code, "source": self.source, "destination": self.destination}
        if self.detail:
            attrs["detail"] = self.detail
        return attrs


def _quote(text: str) -> str:
    return text.replace('"', '\\"')


def service_key(text: str) -> tuple[str | None, str]:
    """(namespace, name) of a Service as ``ns/name[:port]``,
    ``name.ns[.svc.cluster.local]`` or ``name`` (any namespace: None) names it."""
    if "/" in text:
        ns, _, rest = text.partition("/")
        return ns, rest.partition(":")[0]
    name, _, rest = text.partition(":")[0].partition(".")
    return rest.partition(".")[0] or None, name


def _to_service(entry: Entry, want: tuple[str | None, str]) -> bool:
    """Whether ``entry`` was sent to the Service ``want``, or routed to it."""
    for got in (entry.service, entry.backend):
        ns, name = service_key(got) if got else (None, "")
        if name and name == want[1] and want[0] in (None, ns):
            return True
    return False


class AccessLog:
    """Entries made of each request's ``Record``: logged, and the last
    ``capacity`` kept. Reads copy the ring in one step, so they are safe
    from another thread (the agent's views run in threads)."""

    def __init__(self, *, capacity: int = ENTRIES, logger: logging.Logger = log) -> None:
        self.logger = logger
        self._ring: deque[Entry] = deque(maxlen=capacity)
        self._seq = 0

    @property
    def last(self) -> int:
        """The sequence number of the newest entry (0: none yet)."""
        return self._seq

    def record(self, rec: Record) -> Entry:
        seconds, ref = rec.seconds, rec.backend
        rule = rec.rule if rec.rule is not None and not rec.rule.implicit else None
        self._seq += 1
        entry = Entry(
            seq=self._seq, start=time.time() - seconds,
            source=rec.client if rec.source == UNKNOWN else rec.source,
            source_namespace="" if rec.source_namespace == UNKNOWN else rec.source_namespace,
            method=rec.method, path=rec.path, authority=rec.authority,
            route=str(rule.route) if rule else "", rule=rule.index if rule else None,
            service="" if rec.service == UNKNOWN else rec.service,
            backend=f"{ref.namespace}/{ref.name}:{ref.port}" if ref else "",
            endpoint=rec.backends[-1] if rec.backends else "", destination=rec.destination,
            code=rec.status, detail=rec.detail, duration_ms=seconds * 1000,
            bytes_in=rec.request_bytes, bytes_out=rec.response_bytes, retries=rec.retries,
            trace_id=rec.trace.trace_id if rec.trace else "")
        self._ring.append(entry)
        self.logger.info("%s", entry)  # the line is made only if a handler takes it
        return entry

    def entries(self, *, since: int = 0, namespace: str | None = None,
                service: str | None = None, limit: int | None = None) -> list[Entry]:
        """The kept entries after sequence number ``since``, oldest first:
        of clients in ``namespace``; to ``service`` (as the client sent it
        or as the route chose it, named ``ns/name``, ``name.ns`` or by its
        FQDN); the last ``limit`` of them."""
        want = service_key(service) if service else None
        got = [e for e in list(self._ring) if e.seq > since
               and (namespace is None or e.source_namespace == namespace)
               and (want is None or _to_service(e, want))]
        if limit is not None:
            got = got[-limit:] if limit > 0 else []
        return got
