"""The DNS server: UDP and TCP listeners on one address and port, answering
from pre-built replies (``table``) and forwarding the rest (``forward``).

The hot path for a cluster name is: recognise the common query shape by a
few byte comparisons, look its question up by exact key (or find it under
``svc.<zone>`` naming no Service: NXDOMAIN), patch id/flags/spelling, send;
any other message is parsed whole first. Over UDP the compiled fast path
(``fastpath``), when built, takes those steps for whole batches of
datagrams and hands the rest to ``handle``. UDP replies that do not fit the
client's size (512 bytes, or its EDNS0 size up to our cap) go out truncated
(TC) so the client retries over TCP. TCP connections carry any number of
length-prefixed queries, are closed when idle, and are capped in number (a
new one pushes out the connection idle longest). Nothing a client sends can
stop the server: malformed messages get FORMERR or are dropped, and every
outcome is counted in ``metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from time import perf_counter
from typing import Any

import uvloop

from netplane.dns import fastpath
from netplane.dns.answer import reject
from netplane.dns.forward import DEFAULT_CACHE_ENTRIES, DEFAULT_MAX_IN_FLIGHT, Forwarder
from netplane.dns.index import RecordIndex
from netplane.dns.metrics import DNSMetrics
from netplane.dns.table import AnswerTable
from netplane.dns.wire import (
    DEFAULT_UDP_SIZE,
    HEADER_SIZE,
    NO_EDNS,
    PLAIN_UDP_SIZE,
    FormatError,
    Prebuilt,
    Query,
    Rcode,
    RType,
    error_reply,
    finalize,
    header_reply,
    parse_query,
    simple_question,
    udp_limit,
)
from netplane.dns.zone import DEFAULT_TTL, ZoneConfig

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0
MAX_TCP_CONNECTIONS = 256
MAX_TCP_MESSAGE = 65535
UDP_BATCH = 256
UDP_RECEIVE_BUFFER = 4 << 20  # absorbs bursts; the kernel caps it at net.core.rmem_max
LENGTH_PREFIX = 2
_QTYPE_NAMES = {t.value: t.name for t in RType}
_QTYPE_LABELS = {t.to_bytes(2, "big"): t.name for t in RType}  # by the question's type bytes
_RCODE_NAMES = {r.value: r.name for r in Rcode if r.value < 16}



class Transport(enum.Enum):
    UDP = "udp"
    TCP = "tcp"


# Metric labels by member: an enum's ``value`` is a property, slow per query.
_TRANSPORT_LABELS = {t: t.value for t in Transport}


class DNSServer:
    """Serves the cluster zone from ``index`` on ``address:port`` over UDP and TCP.

    ``upstreams`` (``ip[:port]`` strings) receive names outside the zone; with
    none they are REFUSED. Port 0 picks a free port; ``port`` tells which
    after ``start``. ``render_metrics()`` is the Prometheus text of ``metrics``.
    ``compiled`` lets the compiled fast path answer the common UDP queries,
    when it is built (``fastpath``); ``handle`` is always the Python path.
    """

    def __init__(self, index: RecordIndex, *, address: str, port: int = 53,
                 zone: str = "cluster.local", ttl: int = DEFAULT_TTL,
                 ns_address: str | None = None, config: ZoneConfig | None = None,
                 upstreams: Sequence[str] = (), forward_timeout: float = 2.0,
                 max_forwards: int = DEFAULT_MAX_IN_FLIGHT,
                 cache_entries: int = DEFAULT_CACHE_ENTRIES,
                 max_udp_size: int = DEFAULT_UDP_SIZE,
                 tcp_idle_timeout: float = TCP_IDLE_TIMEOUT,
                 max_tcp_connections: int = MAX_TCP_CONNECTIONS,
                 compiled: bool = True) -> None:
        self.index = index
        self.address, self.port = address, port
        self.config = config or ZoneConfig(zone=zone, ttl=ttl, ns_address=ns_address)
        self.metrics = DNSMetrics()
        self._request_counts = self.metrics.requests.values
        self.forwarder = Forwarder(upstreams, timeout=forward_timeout,
                                   max_in_flight=max_forwards, cache_entries=cache_entries)
        self.table = AnswerTable(index, config=self.config, recursion=self.forwarder.enabled,
                                 on_programmed=self.metrics.programming.observe)
        self.max_udp_size = max_udp_size
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self.compiled = compiled and fastpath.AVAILABLE
        self._udp: _UDPListener | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], float] = {}  # task -> last activity
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_scheduled = False
        index.subscribe(self._index_changed)

    async def start(self) -> None:
        """Bind UDP first (so port 0 picks the port), then TCP on the same port.
        With port 0 the TCP twin of the chosen port may be taken: choose again."""
        wanted = self.port
        for attempt in range(10 if wanted == 0 else 1):
            loop = self._loop = asyncio.get_running_loop()
            self._udp = _UDPListener(self, loop, self.address, wanted)
            self.port = self._udp.port
            try:
                self._tcp = await asyncio.start_server(self._serve_connection,
                                                       host=self.address, port=self.port,
                                                       reuse_address=True)
                break
            except OSError:
                await self.stop()
                if wanted != 0 or attempt == 9:
                    raise
        log.info("dns: serving %s on %s:%d (udp, tcp), upstreams: %s", self.config.zone,
                 self.address, self.port,
                 ", ".join(map(str, self.forwarder.upstreams)) or "none (refused)")

    async def stop(self) -> None:
        """Close both listeners, every open TCP connection and pending forward."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        tasks = [*self._connections, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    def render_metrics(self) -> str:
        """Prometheus text exposition of the server's metrics."""
        return self.metrics.render()

    def handle(self, data: bytes, transport: Transport) -> bytes | Query | None:
        """The reply to one message; a Query when it must go upstream; None to drop it."""
        start = perf_counter()
        try:
            simple = self._simple(data, transport, start)
            if simple is not None:
                return simple
            if len(data) < HEADER_SIZE or data[2] & 0x80:
                # Too short to reply to, or a response (replying could loop).
                self.metrics.dropped.inc("short" if len(data) < HEADER_SIZE else "response")
                return None
            return self._answer(data, transport, start)
        except Exception:
            # A bug must cost one query, not the node's DNS.
            self.metrics.errors.inc()
            log.exception("dns: failed to answer a %s query", transport.value)
            return None

    def _simple(self, data: bytes, transport: Transport, start: float) -> bytes | None:
        """The reply to a query of the common shape whose question the table
        holds or knows to be missing, without parsing it; None for the rest."""
        shape = simple_question(data)
        if shape is None:
            return None
        qend, udp_size = shape
        key = data[HEADER_SIZE:qend - 4].lower() + data[qend - 4:qend]
        form = self.table.get(key) or self.table.negative(key)
        if form is None:
            return None
        reply = form.reply(data, qend, udp_size != NO_EDNS)
        if (len(reply) > PLAIN_UDP_SIZE and transport is Transport.UDP
                and len(reply) > udp_limit(udp_size, cap=self.max_udp_size)):
            return None  # the full path truncates it
        return self._count(reply, transport, _QTYPE_LABELS.get(key[-4:-2], "other"), start)

    def _answer(self, data: bytes, transport: Transport, start: float) -> bytes | Query:
        try:
            query = parse_query(data)
        except FormatError:
            return self._count(header_reply(data, Rcode.FORMERR), transport, "other", start)
        early = reject(query)
        if early is not None:
            return self._count(early, transport, _qtype(query), start)
        built = self.table.lookup(query)
        if built is not None:
            return self.finish(built, query, transport, start)
        if not self.forwarder.enabled:
            return self._count(error_reply(query, Rcode.REFUSED), transport, _qtype(query), start)
        cached = self.forwarder.cached(query)
        if cached is None:
            self.metrics.cache.inc("miss")
            return query
        self.metrics.cache.inc("hit")
        return self.finish(Prebuilt(cached), query, transport, start)

    def finish(self, built: Prebuilt, query: Query, transport: Transport,
               start: float) -> bytes:
        """Patch a reply for the query, truncating for UDP as the client needs."""
        limit = (query.udp_limit(cap=self.max_udp_size) if transport is Transport.UDP
                 else MAX_TCP_MESSAGE)
        reply, truncated = finalize(built, query, limit=limit)
        if truncated:
            self.metrics.truncated.inc()
        return self._count(reply, transport, _qtype(query), start)

    async def forward(self, query: Query, transport: Transport) -> bytes:
        """The reply to a query that needs an upstream (SERVFAIL if none answers)."""
        start = time.perf_counter()
        if self.forwarder.saturated(query):
            self.metrics.forwards.inc("rejected")
            return self._count(error_reply(query, Rcode.SERVFAIL, recursion=True), transport,
                               _qtype(query), start)
        reply = await self.forwarder.forward(query)
        if reply is None:
            self.metrics.forwards.inc("failed")
            return self._count(error_reply(query, Rcode.SERVFAIL, recursion=True), transport,
                               _qtype(query), start)
        self.metrics.forwards.inc("answered")
        return self.finish(Prebuilt(reply), query, transport, start)

    def _count(self, reply: bytes, transport: Transport, qtype: str, start: float) -> bytes:
        labels = (_TRANSPORT_LABELS[transport], qtype, _RCODE_NAMES.get(reply[3] & 0x0F, "other"))
        counts = self._request_counts  # Counter.inc without its call: this runs per query
        counts[labels] = counts.get(labels, 0.0) + 1.0
        self.metrics.latency.observe(perf_counter() - start)
        return reply

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task that ``stop`` cancels."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _index_changed(self) -> None:
        # Rebuild soon after a change rather than on the next query, so that
        # programming latency measures the change and not the traffic.
        if self._loop is None or self._sync_scheduled:
            return
        self._sync_scheduled = True
        self._loop.call_soon(self._sync)

    def _sync(self) -> None:
        self._sync_scheduled = False
        self.table.sync()

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_tcp_connections:
            # Full: push out the connection idle longest, so a flood of silent
            # connections cannot lock real clients out until it times out.
            oldest = min(self._connections, key=self._connections.__getitem__)
            oldest.cancel()
            self.metrics.tcp_connections.inc("evicted")
        self.metrics.tcp_connections.inc("accepted")
        self._connections[task] = time.monotonic()
        try:
            await self._exchange(reader, writer, task)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or fell idle: both end the connection
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        task: asyncio.Task[None]) -> None:
        while True:
            async with asyncio.timeout(self.tcp_idle_timeout):
                prefix = await reader.readexactly(LENGTH_PREFIX)
                message = await reader.readexactly(int.from_bytes(prefix, "big"))
            self._connections[task] = time.monotonic()
            result = self.handle(message, Transport.TCP)
            if isinstance(result, Query):
                result = await self.forward(result, Transport.TCP)
            if result is None:
                continue
            writer.write(len(result).to_bytes(LENGTH_PREFIX, "big") + result)
            await writer.drain()


class _UDPListener:
    """The UDP socket, read straight from the event loop's reader callback.

    Each wake-up drains up to ``UDP_BATCH`` datagrams and answers them in
    place: one loop callback per batch instead of one per datagram (what an
    asyncio datagram transport costs), which more than doubles throughput.
    With the compiled fast path, that path takes the batch and hands back
    what it leaves to ``handle``. A reply the kernel cannot take at once is
    dropped, as UDP allows; the client retries.
    """

    def __init__(self, server: DNSServer, loop: asyncio.AbstractEventLoop, address: str,
                 port: int) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            self._sock.bind((address, port))
        except OSError:
            self._sock.close()
            raise
        self.port = int(self._sock.getsockname()[1])
        self._server, self._loop = server, loop
        self._fast: fastpath.FastPath | None = None
        loop.add_reader(self._sock.fileno(), self._ready)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def _ready(self) -> None:
        fast = self._fast_path()
        if fast is None:
            self._receive()
            return
        try:
            rest = fast.serve(self._sock.fileno(), UDP_BATCH)
        except Exception:
            # As in ``handle``: a bug must not stop the node's DNS.
            self._server.metrics.errors.inc()
            log.exception("dns: the compiled fast path failed; serving in Python")
            self._receive()
            return
        finally:
            fast.count()
        for data, addr in rest:
            self._answer(data, addr)

    def _fast_path(self) -> fastpath.FastPath | None:
        server, fast = self._server, self._fast
        if not server.compiled:
            return None
        if (fast is None or fast.table is not server.table
                or fast.max_udp_size != server.max_udp_size):
            # Made again when the table or the size cap is replaced: it holds them.
            fast = self._fast = fastpath.FastPath(server.table, server.metrics,
                                                  max_udp_size=server.max_udp_size)
        return fast

    def _receive(self) -> None:
        sock = self._sock
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_TCP_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # ICMP errors from earlier sends: nothing to do
                log.debug("dns: udp error: %s", err)
                continue
            self._answer(data, addr)

    def _answer(self, data: bytes, addr: Any) -> None:
        result = self._server.handle(data, Transport.UDP)
        if result is None:
            return
        if isinstance(result, Query):
            self._server.spawn(self._forward(result, addr))
            return
        self.send(result, addr)

    def send(self, reply: bytes, addr: Any) -> None:
        try:
            self._sock.sendto(reply, addr)
        except OSError as err:
            log.debug("dns: udp reply to %s dropped: %s", addr, err)

    async def _forward(self, query: Query, addr: Any) -> None:
        reply = await self._server.forward(query, Transport.UDP)
        if self._sock.fileno() >= 0:
            self.send(reply, addr)


def _qtype(query: Query) -> str:
    return _QTYPE_NAMES.get(query.qtype, "other")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop: cheaper per socket callback than asyncio's own."""
    return uvloop.new_event_loop


async def serve_forever(index: RecordIndex, *, address: str, port: int = 53,
                        ready: Callable[[DNSServer], None] | None = None,
                        **options: Any) -> None:
    """Run a server until cancelled; ``ready`` is called once it listens.
    ``options`` are DNSServer's keyword arguments."""
    server = DNSServer(index, address=address, port=port, **options)
    await server.start()
    try:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()
    finally:
        await server.stop()


def run(index: RecordIndex, *, address: str, port: int = 53,
        ready: Callable[[DNSServer], None] | None = None, **options: Any) -> None:
    """Serve in a fresh uvloop event loop until interrupted."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve_forever(index, address=address, port=port, ready=ready, **options))
