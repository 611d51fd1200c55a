"""The node's L7 proxy, HTTP/1.1: each request parsed once (httptools),
routed by its listener's compiled table, filtered, sent to a backend chosen
by weight and an endpoint chosen by the balancer, over pooled keep-alive
connections, with the rule's timeouts and retries; the answer filtered and
written back in request order (pipelining stays ordered). Each request is
told by metrics, an access log entry and a span of its trace (W3C Trace
Context, passed upstream with the proxy's span as the parent).

Bodies are read whole before they are sent on, both ways: a retry must be
able to send the request again, and the proxy answers with a length it
knows. (Streaming large bodies is left for later: the mesh's traffic here
is API-sized.)"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol, cast

import httptools

from netplane.mesh import filters, resilience, tracing
from netplane.mesh.accesslog import AccessLog, Detail
from netplane.mesh.capture import original_destination
from netplane.mesh.config import MeshConfig
from netplane.mesh.identity import Identity
from netplane.mesh.inbox import Inbox
from netplane.mesh.metrics import MeshMetrics, Record
from netplane.mesh.resilience import (
    Balancer,
    Endpoint,
    Outcome,
    RetryPolicy,
    Timeouts,
    Try,
    exchange,
)
from netplane.mesh.routes import (
    BackendKey,
    BackendRef,
    Decision,
    Request,
    RouteError,
    RouteTable,
)
from netplane.mesh.tunnel import PORT as TUNNEL_PORT
from netplane.mesh.tunnel import Stream, TunnelClient, TunnelError, node_identity

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]
# Per connection, not forwarded (RFC 9110 7.6.1), besides those Connection names.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "expect"})  # expect: answered here
IDLE_PER_ENDPOINT = 64


@dataclass
class Listener:
    """What one listening socket serves: its route table; the scheme and
    port a redirect falls back on."""
    table: RouteTable
    port: int
    scheme: str = "http"
    service: str = ""  # what metrics call the destination (a Service's FQDN, a Gateway)


@dataclass
class Answer:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    reason: str | None = None
    detail: str = ""  # why the proxy answered itself (a Detail); "": the upstream did


def _plain(status: int, text: str, detail: str = "") -> Answer:
    return Answer(status, [("content-type", "text/plain")], text.encode() + b"\n",
                  detail=detail)


class _Parsed:
    """httptools' callbacks for one message, requests and responses alike.
    Keep-alive is read once the headers are in: after the message the
    parser has reset and no longer tells."""

    def __init__(self, parser: Any = None) -> None:
        self.parser = parser
        self.keep_alive = False
        self.url = b""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.headers_done = False
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if self.parser is not None:
            self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


@dataclass
class _Incoming:
    method: str
    target: str
    headers: Headers
    body: bytes
    keep_alive: bool


class Conn(Protocol):
    """A connection to an endpoint that carries one request at a time."""

    async def request(self, data: bytes, *, head_only: bool) -> tuple[Answer, bool]:
        """The answer to ``data``, and whether the connection can carry
        another request."""
    def usable(self) -> bool: ...
    def close(self) -> None: ...


def _answer(got: _Parsed, parser: Any) -> Answer:
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in got.headers]
    return Answer(parser.get_status_code(), headers, bytes(got.body),
                  got.reason.decode("latin-1"))


def _no_body(got: _Parsed, parser: Any, head_only: bool) -> bool:
    """The head is in and no body follows, whatever the headers say."""
    if not got.headers_done:
        return False
    status = parser.get_status_code()
    return head_only or status in (204, 304) or status < 200


class _TCPConn(asyncio.Protocol):
    """A TCP connection to a pod of this node, parsed as bytes arrive (no
    stream reader, no task between the socket and the answer)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.got: _Parsed | None = None
        self.parser: Any = None
        self.head_only = False
        self.answered: asyncio.Future[tuple[Answer, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    async def request(self, data: bytes, *, head_only: bool) -> tuple[Answer, bool]:
        assert self.transport is not None and self.answered is None
        self.got = _Parsed()
        self.parser = self.got.parser = httptools.HttpResponseParser(self.got)
        self.head_only = head_only
        self.answered = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(data)
            return await self.answered
        finally:
            self.answered = self.got = None

    def data_received(self, data: bytes) -> None:
        got, answered = self.got, self.answered
        if got is None or answered is None or answered.done():
            self.close()  # bytes nobody asked for: the connection is not reusable
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            answered.set_exception(e)
            return
        if got.done or _no_body(got, self.parser, self.head_only):
            answered.set_result((_answer(got, self.parser), got.keep_alive))

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        self.closed = True
        got, answered = self.got, self.answered
        if got is None or answered is None or answered.done():
            return
        if exc is None and got.headers_done and not _has_length(got):
            answered.set_result((_answer(got, self.parser), False))  # ended by the close
        else:
            answered.set_exception(ConnectionResetError(
                "the backend closed the connection mid-answer"))

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and \
            not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _TunnelConn:
    """A CONNECT stream through the tunnel to the endpoint's node."""

    def __init__(self, stream: Stream) -> None:
        self.stream, self.eof = stream, False

    async def request(self, data: bytes, *, head_only: bool) -> tuple[Answer, bool]:
        await self.stream.write(data)
        got = _Parsed()
        parser = got.parser = httptools.HttpResponseParser(got)
        while not got.done:
            chunk = await self.stream.read()
            if not chunk:
                self.eof = True
                if got.headers_done and not _has_length(got):
                    return _answer(got, parser), False  # ended by the stream's end
                raise ConnectionResetError("the backend closed the connection mid-answer")
            parser.feed_data(chunk)
            if _no_body(got, parser, head_only):
                break
        return _answer(got, parser), got.keep_alive

    def usable(self) -> bool:
        return not self.eof and not self.stream.closed and not self.stream.link.dead

    def close(self) -> None:
        self.stream.end()


@dataclass(frozen=True)
class Via:
    """How to reach an endpoint on another node: its tunnel and who speaks."""
    tunnel: str  # "ip:port" of the node's tunnel server
    node: Identity
    source: Identity
    source_ip: str | None = None  # the client pod's, for the far node to connect from


class Upstreams:
    """Keep-alive connections to endpoints, reused request after request:
    TCP to the node's own pods, tunnel streams to other nodes' (a stream
    carries one source identity and address, so those are kept per source)."""

    def __init__(self, tunnels: TunnelClient | None = None) -> None:
        self.tunnels = tunnels
        self._idle: dict[str, list[Conn]] = {}

    async def send(self, address: str, head: bytes, body: bytes, *, head_only: bool,
                   via: Via | None = None) -> Answer:
        key = address if via is None else f"{address} {via.source} {via.source_ip}"
        conn = self._idle_one(key) or await self._open(address, via)
        try:
            answer, reusable = await conn.request(head + body, head_only=head_only)
        except BaseException:
            conn.close()
            raise
        if reusable and len(self._idle.setdefault(key, [])) < IDLE_PER_ENDPOINT:
            self._idle[key].append(conn)
        else:
            conn.close()
        return answer

    def _idle_one(self, key: str) -> Conn | None:
        idle = self._idle.get(key) or []
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def _open(self, address: str, via: Via | None) -> Conn:
        if via is not None and self.tunnels is not None:
            return _TunnelConn(await self.tunnels.open(via.tunnel, via.node, address,
                                                       via.source, via.source_ip))
        host, _, port = address.rpartition(":")
        _, conn = await asyncio.get_running_loop().create_connection(_TCPConn, host, int(port))
        return conn

    def idle(self, address: str) -> list[Conn]:
        """The kept-alive connections to ``address`` waiting for a request."""
        return self._idle.get(address, [])

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _has_length(got: _Parsed) -> bool:
    return any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in got.headers)


class Proxy:
    """Routes and forwards. A connection the node captured (it has an
    original destination) is routed by ``mesh``; any other by the listener
    of the port it came in on. ``backends`` by the Service port a route
    names."""

    def __init__(self, *, listeners: dict[int, Listener] | None = None,
                 backends: dict[BackendKey, Balancer] | None = None,
                 mesh: MeshConfig | None = None, rng: random.Random | None = None,
                 node: str = "", tunnels: TunnelClient | None = None,
                 tunnel_port: int = TUNNEL_PORT) -> None:
        self.listeners = listeners or {}
        self.backends = backends or {}
        self.mesh = mesh
        self.node = node  # this proxy's node: endpoints elsewhere go through tunnels
        self.tunnel_port = tunnel_port
        self.upstreams = Upstreams(tunnels)
        self.rng = rng or random.Random()
        self.on_answer: Callable[[Decision | None, int], None] | None = None
        self.metrics = MeshMetrics()
        self.access = AccessLog()
        self.tracer = tracing.Tracer()

    def apply(self, mesh: MeshConfig) -> None:
        """A new configuration: what the balancers know of endpoints that
        stay is kept."""
        self.mesh = mesh
        backends = {}
        for key, addresses in mesh.backends.items():
            balancer = self.backends.get(key) or Balancer(rng=self.rng)
            balancer.update(addresses)
            balancer.max_requests = mesh.max_requests.get(key)
            backends[key] = balancer
        self.backends = backends

    def _listener(self, port: int, client: str, destination: tuple[str, int] | None
                  ) -> Listener | None:
        if destination is None:
            return self.listeners.get(port)
        routing = None if self.mesh is None else self.mesh.routing(client, destination)
        if routing is None:
            return None
        target, table = routing
        return Listener(table, target.port,
                        service=f"{target.name}.{target.namespace}.svc.cluster.local")

    async def handle(self, port: int, req: _Incoming, *, client: str = "",
                     destination: tuple[str, int] | None = None) -> Answer:
        routed = Request.of(req.method, req.target, req.headers)
        rec = Record(method=req.method, path=req.target.partition("?")[0],
                     request_bytes=len(req.body), client=client,
                     authority=routed.headers.get("host", ""))
        rec.trace = self.tracer.begin(routed.headers.get(tracing.HEADER), rec.started)
        who = self.mesh.identity_of.get(client) if self.mesh is not None else None
        if who is not None:
            rec.source, rec.source_namespace = str(who), who.namespace
        listener = self._listener(port, client, destination)
        decision = None
        if listener is None:
            answer = _plain(404, "no routes here" if destination is None else
                            f"no Service at {destination[0]}:{destination[1]}",
                            Detail.ROUTE_NOT_FOUND if destination is None else
                            Detail.SERVICE_NOT_FOUND)
        else:
            rec.service = listener.service or rec.service
            decision = listener.table.decide(routed)
            if decision is None:
                answer = _plain(404, "no route matches", Detail.ROUTE_NOT_FOUND)
            else:
                rule = rec.rule = decision.rule
                rec.route = f"{rule.route} {rule.name or f'rule {rule.index}'}"
                try:
                    answer = await self._follow(listener, decision, routed, req, client, rec)
                except RouteError as e:
                    answer = _plain(500, f"route {decision.rule.route}: {e}", Detail.ROUTE_ERROR)
        rec.status, rec.response_bytes, rec.detail = answer.status, len(answer.body), answer.detail
        self._observe(rec)
        if self.on_answer is not None:
            self.on_answer(decision, answer.status)
        return answer

    def _observe(self, rec: Record) -> None:
        """An answered request's metrics, access log entry and trace span."""
        rec.ended = time.monotonic()
        if self.mesh is not None and rec.backends:
            there = self.mesh.identity_of.get(rec.backends[-1].rpartition(":")[0])
            rec.destination = str(there) if there is not None else ""
        self.metrics.observe(rec)
        entry = self.access.record(rec)
        if rec.trace is not None:
            self.tracer.finish(rec.trace, name=rec.route or "no route", start=entry.start,
                               duration=rec.seconds, attributes=entry.span_attributes())

    async def _follow(self, listener: Listener, decision: Decision, routed: Request,
                      req: _Incoming, client: str, rec: Record) -> Answer:
        rule = decision.rule
        headers, path, query = list(req.headers), routed.path, req.target.partition("?")[2]
        host = next((v for k, v in headers if k.lower() == "host"), "")
        response_filters = []
        for f in rule.filters:
            kind = f.get("type")
            if kind == "RequestHeaderModifier":
                headers = filters.modify_headers(headers, f.get("requestHeaderModifier") or {})
            elif kind == "ResponseHeaderModifier":
                response_filters.append(f.get("responseHeaderModifier") or {})
            elif kind == "URLRewrite":
                rewrite = f.get("urlRewrite") or {}
                if rewrite.get("path"):
                    path = filters.modify_path(path, rewrite["path"], decision.match)
                if rewrite.get("hostname"):
                    headers = [(k, v) for k, v in headers if k.lower() != "host"]
                    headers.append(("Host", rewrite["hostname"]))
            elif kind == "RequestRedirect":
                to = filters.redirect(f.get("requestRedirect") or {}, scheme=listener.scheme,
                                      host=routed.host or host, path=path, query=query,
                                      listener_port=listener.port, match=decision.match)
                return Answer(to.code, [("location", to.location), ("content-length", "0")],
                              detail=Detail.REDIRECT)
            else:
                raise RouteError("UnsupportedValue", f"filter {kind!r} is not supported")
        target = path + (f"?{query}" if query else "")
        answer = await self._forward(rule.backends, RetryPolicy.of(rule.retry),
                                     Timeouts.of(rule.timeouts), req.method, target, headers,
                                     req.body, client, rec)
        for spec in response_filters:
            answer.headers = filters.modify_headers(answer.headers, spec)
        return answer

    async def _forward(self, backends: tuple[BackendRef, ...], retry: RetryPolicy | None,
                       timeouts: Timeouts, method: str, target: str, headers: Headers,
                       body: bytes, client: str = "", rec: Record | None = None) -> Answer:
        hop = rec.trace if rec is not None else None
        if hop is not None:
            headers = hop.outgoing(headers)
        head = _request_head(method, target, headers, body)
        last: list[Answer | None] = []  # each try's answer; None when it got none

        async def attempt(limit: float | None) -> Try:
            ref = filters.pick(backends, self.rng)
            if ref is None:
                last.append(_plain(500, "no backend takes this rule's traffic", Detail.NO_BACKEND))
                return Try(code=500)
            if rec is not None:
                rec.backend = ref
            balancer = None if ref.problem else self.backends.get(ref.key)
            if balancer is None:
                last.append(_plain(500, ref.problem or f"backend {ref.namespace}/{ref.name} "
                                                       f"is not a known Service port",
                                   Detail.BACKEND_NOT_FOUND))
                return Try(code=500)
            if balancer.full():
                self.metrics.overflows.labels(f"{ref.namespace}/{ref.name}:{ref.port}").inc()
                last.append(_plain(503, f"{ref.namespace}/{ref.name} has {balancer.max_requests}"
                                        f" requests in flight, its limit",
                                   Detail.UPSTREAM_OVERFLOW))
                return Try(code=503)
            endpoint = balancer.choose()
            if endpoint is None:
                last.append(_plain(503, f"no ready endpoints for {ref.namespace}/{ref.name}",
                                   Detail.NO_HEALTHY_UPSTREAM))
                return Try(code=503)
            if rec is not None:
                rec.backends.append(endpoint.address)
            if self.mesh is not None and self.mesh.policies:
                verdict = self.mesh.authorize(self.mesh.identity_of.get(client),
                                              endpoint.address, method, target.partition("?")[0])
                if not verdict.allowed:  # Istio's words; a denial is not retried
                    last.append(_plain(403, f"RBAC: access denied ({verdict.describe()})",
                                       f"{Detail.RBAC_DENIED}[{verdict.policy}]"
                                       if verdict.policy else Detail.RBAC_DENIED))
                    return Try(code=403)
            began = time.monotonic()
            got = await self._try(endpoint, head, body, method == "HEAD", limit, last,
                                  self.via(endpoint.address, client))
            if hop is not None:
                hop.tried(began, time.monotonic(), _try_attributes(ref, endpoint, got))
            ejections = endpoint.ejections
            balancer.report(endpoint, got)
            if endpoint.ejections > ejections:
                self.metrics.ejections.labels(f"{ref.namespace}/{ref.name}:{ref.port}").inc()
            return got

        if retry is None and timeouts.request is None and timeouts.backend_request is None:
            outcome = Outcome([await attempt(None)])  # one try, no clock: exchange's case
        else:
            outcome = await exchange(attempt, retry, timeouts)
        if rec is not None:  # the route's timeout, or the last try's own, cut it
            rec.timed_out = outcome.timed_out or bool(
                outcome.tries and outcome.tries[-1].error == "timeout")
        final = last[-1] if last and not outcome.timed_out else None
        if final is None:
            status = outcome.status()
            return _plain(status, f"upstream: {_phrase(status).lower()}", _failure(outcome))
        return final

    def via(self, address: str, client: str) -> Via | None:
        """The tunnel to an endpoint on another node, for a client whose
        workload identity is known; None: straight over TCP."""
        if self.mesh is None or self.upstreams.tunnels is None:
            return None
        node = self.mesh.endpoint_nodes.get(address)
        ip = self.mesh.node_ips.get(node or "")
        source = self.mesh.identity_of.get(client)
        if not node or node == self.node or ip is None or source is None:
            return None
        return Via(f"{ip}:{self.tunnel_port}", node_identity(node), source, client or None)

    async def _try(self, endpoint: Endpoint, head: bytes, body: bytes, head_only: bool,
                   limit: float | None, last: list[Answer | None], via: Via | None = None
                   ) -> Try:
        endpoint.in_flight += 1
        last.append(None)
        try:
            send = self.upstreams.send(endpoint.address, head, body, head_only=head_only,
                                       via=via)
            answer = await (send if limit is None else asyncio.wait_for(send, limit))
        except TimeoutError:
            return Try(error="timeout")
        except (ConnectionRefusedError, TunnelError, ssl.SSLError):
            return Try(error="connect")
        except (OSError, httptools.HttpParserError):
            return Try(error="reset")
        finally:
            endpoint.in_flight -= 1
        last[-1] = answer
        return Try(code=answer.status)

    def close(self) -> None:
        self.upstreams.close()


def _try_attributes(ref: BackendRef, endpoint: Endpoint, got: Try) -> dict[str, str | int]:
    """What a try's span tells: where it went, and its status or error."""
    ended: dict[str, str | int] = {"status": got.code} if got.code is not None else \
        {"error": got.error or ""}
    return {"backend": f"{ref.namespace}/{ref.name}:{ref.port}", "endpoint": endpoint.address,
            **ended}


_TRY_ERRORS = {"connect": Detail.UPSTREAM_CONNECT_ERROR, "reset": Detail.UPSTREAM_RESET}


def _failure(outcome: resilience.Outcome) -> Detail:
    """Why no try got an answer to pass on: a timeout (the request's or
    the last try's own), else how the last try failed."""
    last = outcome.tries[-1] if outcome.tries else None
    if outcome.timed_out or last is None or last.error == "timeout":
        return Detail.UPSTREAM_TIMEOUT
    return _TRY_ERRORS.get(last.error or "", Detail.UPSTREAM_RESET)


_DROPPED = HOP_BY_HOP | {"content-length"}


def _end_to_end(headers: Headers) -> Headers:
    """The headers that go on: not hop-by-hop, not named by Connection, and
    not Content-Length (the proxy writes its own, for the whole body)."""
    out = []
    named: set[str] | None = None
    for k, v in headers:
        low = k.lower()
        if low in _DROPPED:
            if low == "connection":
                named = (named or set()) | {n.strip().lower() for n in v.split(",")}
            continue
        out.append((k, v, low))
    if named:
        return [(k, v) for k, v, low in out if low not in named]
    return [(k, v) for k, v, _ in out]


def _request_head(method: str, target: str, headers: Headers, body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in _end_to_end(headers)]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _response_bytes(answer: Answer, *, keep_alive: bool, head_only: bool) -> bytes:
    reason = answer.reason if answer.reason is not None else _phrase(answer.status)
    lines = [f"HTTP/1.1 {answer.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in _end_to_end(answer.headers)]
    if answer.status not in (204, 304) and answer.status >= 200:
        length = next((v for k, v in answer.headers if k.lower() == "content-length"), None)
        lines.append(f"Content-Length: {length if head_only and length else len(answer.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + answer.body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class _ClientConnection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered one
    after another in their order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy, self.port = proxy, 0
        self.client = ""
        self.destination: tuple[str, int] | None = None  # captured: where it was sent
        self.transport: asyncio.Transport | None = None
        # Requests parsed, not answered yet; None: the connection has ended.
        self.queue: Inbox[_Incoming | None] = Inbox()
        self.parsed = _Parsed()
        self.parser = httptools.HttpRequestParser(self)
        self.worker: asyncio.Task[None] | None = None

    # -- asyncio --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.port = int(transport.get_extra_info("sockname")[1])
        self.client = str(transport.get_extra_info("peername")[0])
        sock = transport.get_extra_info("socket")
        # Captured connections carry where they were sent; a listener's port
        # (a Gateway's, reached through a Service's DNAT) is served by its own.
        self.destination = original_destination(sock) \
            if self.proxy.mesh is not None and self.port not in self.proxy.listeners else None
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(501, "protocol upgrades are not proxied yet")
        except httptools.HttpParserError:
            self._fail(400, "bad request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put(None)

    # -- httptools --

    def on_message_begin(self) -> None:
        self.parsed = _Parsed(self.parser)

    def on_url(self, url: bytes) -> None:
        self.parsed.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.parsed.on_header(name, value)

    def on_headers_complete(self) -> None:
        self.parsed.on_headers_complete()
        # The body is read whole before it goes on, so the proxy itself says
        # "go on" (a client waits for it, curl a second, before a large body).
        if any(n.lower() == b"expect" and v.lower() == b"100-continue"
               for n, v in self.parsed.headers) and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.parsed.on_body(body)

    def on_message_complete(self) -> None:
        p = self.parsed
        self.queue.put(_Incoming(
            method=self.parser.get_method().decode("latin-1"),
            target=p.url.decode("latin-1"),
            headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in p.headers],
            body=bytes(p.body), keep_alive=p.keep_alive))

    # -- answers --

    def _fail(self, status: int, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_response_bytes(_plain(status, text), keep_alive=False,
                                                 head_only=False))
            self.transport.close()

    async def _serve(self) -> None:
        while (req := await self.queue.get()) is not None:
            try:
                answer = await self.proxy.handle(self.port, req, client=self.client,
                                                 destination=self.destination)
            except Exception:  # a bug must cost one answer, not the connection's others
                log.exception("proxying %s %s failed", req.method, req.target)
                answer = _plain(500, "proxy error")
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(_response_bytes(answer, keep_alive=req.keep_alive,
                                                 head_only=req.method == "HEAD"))
            if not req.keep_alive:
                self.transport.close()
                return


async def serve(proxy: Proxy, host: str, port: int, *, tls: ssl.SSLContext | None = None
                ) -> asyncio.Server:
    """A listening socket for ``proxy`` (TLS terminated with ``tls``): a
    connection is served by the listener of the port it came in on."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _ClientConnection(proxy), host, port, ssl=tls)
