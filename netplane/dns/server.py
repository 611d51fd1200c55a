"""The DNS server: UDP and TCP listeners on one address and port, answering
from a record index through the pure ``answer`` module.

UDP replies over 512 bytes go out truncated (TC) so the client retries over
TCP. TCP connections carry any number of length-prefixed queries and are
closed when idle. Nothing a client sends can stop the server: malformed
packets get FORMERR or are dropped, and each is counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
from collections.abc import Callable
from typing import cast

from dnslib import RCODE, DNSRecord

from netplane.dns.answer import DEFAULT_TTL, ZoneConfig, answer_wire
from netplane.dns.index import RecordIndex

log = logging.getLogger(__name__)

UDP_PAYLOAD_LIMIT = 512  # without EDNS0 (RFC 1035 4.2.1)
TCP_IDLE_TIMEOUT = 10.0
LENGTH_PREFIX = 2


class Transport(enum.Enum):
    UDP = "udp"
    TCP = "tcp"


class DNSServer:
    """Serves one zone from ``index`` on ``address:port`` over UDP and TCP.

    Counters (plain attributes, read them for metrics): ``responses`` by rcode
    name, ``queries`` by transport, ``tcp_connections`` accepted, ``dropped``
    packets, ``truncated`` replies, ``errors`` (bugs caught so that one query
    cannot take the server down).
    Port 0 picks a free port; ``port`` tells which after ``start``.
    """

    def __init__(self, index: RecordIndex, *, address: str, port: int = 53,
                 zone: str = "cluster.local", ttl: int = DEFAULT_TTL,
                 ns_address: str | None = None,
                 tcp_idle_timeout: float = TCP_IDLE_TIMEOUT) -> None:
        self.index = index
        self.address = address
        self.port = port
        self.config = ZoneConfig(zone=zone, ttl=ttl, ns_address=ns_address)
        self.tcp_idle_timeout = tcp_idle_timeout
        self.responses: collections.Counter[str] = collections.Counter()
        self.queries: collections.Counter[str] = collections.Counter()
        self.tcp_connections = 0
        self.dropped = 0
        self.truncated = 0
        self.errors = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind UDP first (so port 0 picks the port), then TCP on the same port."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UDPProtocol(self), local_addr=(self.address, self.port))
        self._udp = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        try:
            self._tcp = await asyncio.start_server(self._serve_connection, host=self.address,
                                                   port=self.port, reuse_address=True)
        except OSError:
            await self.stop()
            raise
        log.info("dns: serving %s on %s:%d (udp, tcp)", self.config.zone, self.address, self.port)

    async def stop(self) -> None:
        """Close both listeners and every open TCP connection."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    def handle(self, data: bytes, transport: Transport) -> bytes | None:
        """The reply to one message, counted; None when it is dropped."""
        self.queries[transport.value] += 1
        try:
            reply = answer_wire(self.index, data, config=self.config)
        except Exception:
            # A bug must cost one query, not the node's DNS.
            self.errors += 1
            log.exception("dns: failed to answer a %s query", transport.value)
            return None
        if reply is None:
            self.dropped += 1
            return None
        self.responses[_rcode_name(reply)] += 1
        return reply

    def udp_reply(self, data: bytes) -> bytes | None:
        reply = self.handle(data, Transport.UDP)
        if reply is not None and len(reply) > UDP_PAYLOAD_LIMIT:
            self.truncated += 1
            reply = bytes(DNSRecord.parse(reply).truncate().pack())
        return reply

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        self.tcp_connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or fell idle: both end the connection
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        while True:
            async with asyncio.timeout(self.tcp_idle_timeout):
                prefix = await reader.readexactly(LENGTH_PREFIX)
                message = await reader.readexactly(int.from_bytes(prefix, "big"))
            reply = self.handle(message, Transport.TCP)
            if reply is None:
                continue
            writer.write(len(reply).to_bytes(LENGTH_PREFIX, "big") + reply)
            await writer.drain()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Selector datagram transports do not all subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self._server.udp_reply(data)
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from earlier sends (client port closed): nothing to do.
        log.debug("dns: udp error: %s", exc)


async def serve_forever(index: RecordIndex, *, address: str, port: int = 53,
                        zone: str = "cluster.local", ttl: int = DEFAULT_TTL,
                        ns_address: str | None = None,
                        ready: Callable[[DNSServer], None] | None = None) -> None:
    """Run a server until cancelled; ``ready`` is called once it listens."""
    server = DNSServer(index, address=address, port=port, zone=zone, ttl=ttl,
                       ns_address=ns_address)
    await server.start()
    try:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()
    finally:
        await server.stop()


def _rcode_name(reply: bytes) -> str:
    code = reply[3] & 0x0F
    return str(RCODE.get(code, f"RCODE{code}"))
