"""Forwarding names outside our zones to upstream servers, with a cache.

Upstreams are tried in order (UDP, then TCP when the reply is truncated).
Replies are kept, OPT removed and RD cleared, for the smallest TTL among
their records (capped), and served from the cache with their TTLs aged.
Concurrent identical questions share one upstream exchange, and the number
of exchanges in flight is bounded: beyond it the caller answers SERVFAIL at
once instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netplane.dns.wire import (
    HEADER_SIZE,
    FormatError,
    Query,
    Rcode,
    RType,
    opt_record,
    read_record,
    skip_question,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_IN_FLIGHT = 256
DEFAULT_CACHE_ENTRIES = 10_000
DEFAULT_MAX_TTL = 3600
_CACHEABLE = (Rcode.NOERROR, Rcode.NXDOMAIN)


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int = 53

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """``ip``, ``ip:port``, ``[v6]:port`` or a bare IPv6 address."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    ipaddress.ip_address(host)  # upstreams are addresses: no resolving to find a resolver
    return Upstream(host, int(port) if port else 53)


class CachedReply:
    """A reply as stored: its bytes and where its TTLs are, to age them."""

    __slots__ = ("expires", "reply", "stored", "ttls")

    def __init__(self, reply: bytes, ttls: list[tuple[int, int]], stored: float,
                 lifetime: float) -> None:
        self.reply, self.ttls, self.stored = reply, ttls, stored
        self.expires = stored + lifetime

    def aged(self, now: float) -> bytes:
        age = int(now - self.stored)
        if age <= 0:
            return self.reply
        out = bytearray(self.reply)
        for offset, ttl in self.ttls:
            out[offset:offset + 4] = max(ttl - age, 0).to_bytes(4, "big")
        return bytes(out)


class Forwarder:
    """Sends queries upstream; ``enabled`` is False when there is no upstream."""

    def __init__(self, upstreams: Sequence[str | Upstream], *, timeout: float = DEFAULT_TIMEOUT,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 cache_entries: int = DEFAULT_CACHE_ENTRIES, max_ttl: int = DEFAULT_MAX_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.upstreams = tuple(u if isinstance(u, Upstream) else parse_upstream(u)
                               for u in upstreams)
        self.timeout, self.max_in_flight = timeout, max_in_flight
        self.cache_entries, self.max_ttl = cache_entries, max_ttl
        self._clock = clock
        self._cache: dict[bytes, CachedReply] = {}
        self._pending: dict[bytes, asyncio.Future[bytes | None]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.upstreams)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def saturated(self, query: Query) -> bool:
        """Whether a new exchange for this query would exceed the bound."""
        return query.key not in self._pending and len(self._pending) >= self.max_in_flight

    def cached(self, query: Query) -> bytes | None:
        """The cached reply (TTLs aged), or None."""
        entry = self._cache.get(query.key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.expires:
            del self._cache[query.key]
            return None
        return entry.aged(now)

    async def forward(self, query: Query) -> bytes | None:
        """The upstream's reply (RD clear, no OPT), or None if no upstream answered."""
        pending = self._pending.get(query.key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._pending[query.key] = future
        try:
            reply = await self._ask_upstreams(query)
            future.set_result(reply)
        except BaseException:
            future.set_result(None)
            raise
        finally:
            del self._pending[query.key]
        return reply

    async def _ask_upstreams(self, query: Query) -> bytes | None:
        message_id = secrets.randbits(16)
        question = query.data[HEADER_SIZE:query.qend]
        message = (message_id.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
                   + question + opt_record())
        for upstream in self.upstreams:
            try:
                raw = await exchange(upstream, message, timeout=self.timeout)
                reply, ttls, lifetime = normalize(raw, message)
            except (OSError, TimeoutError, FormatError, asyncio.IncompleteReadError) as err:
                log.debug("dns: upstream %s failed: %s", upstream, err)
                continue
            self._store(query.key, reply, ttls, lifetime)
            return reply
        return None

    def _store(self, key: bytes, reply: bytes, ttls: list[tuple[int, int]],
               lifetime: int) -> None:
        if lifetime <= 0 or (reply[3] & 0x0F) not in _CACHEABLE:
            return
        if len(self._cache) >= self.cache_entries:
            del self._cache[next(iter(self._cache))]  # oldest first
        self._cache[key] = CachedReply(reply, ttls, self._clock(), min(lifetime, self.max_ttl))


def normalize(raw: bytes, message: bytes) -> tuple[bytes, list[tuple[int, int]], int]:
    """Check a reply against our message; return it without OPT, RD and AA, the
    (offset, ttl) of its records and the smallest TTL (0 if none)."""
    qend = skip_question(message)
    if (len(raw) < qend or raw[:2] != message[:2] or not raw[2] & 0x80
            or raw[4:6] != b"\x00\x01" or raw[HEADER_SIZE:qend].lower()
            != message[HEADER_SIZE:qend].lower()):
        raise FormatError("reply does not match the query")
    counts = [int.from_bytes(raw[i:i + 2], "big") for i in (6, 8, 10)]
    pos, ttls, end, opt_at = qend, [], qend, -1
    for section, count in enumerate(counts):
        for _ in range(count):
            span = read_record(raw, pos)
            if section == 2 and span.rtype == RType.OPT:
                opt_at = span.start
            else:
                if opt_at >= 0:
                    raise FormatError("OPT is not the last record")
                ttls.append((span.ttl_offset, span.ttl))
            pos = end = span.end
    arcount = counts[2] - (1 if opt_at >= 0 else 0)
    body = raw[:opt_at] if opt_at >= 0 else raw[:end]
    # Ours is a recursive answer: not authoritative, recursion available; RD
    # comes from each client's own query.
    flags = bytes((body[2] & ~0x05 & 0xFF, body[3] | 0x80))
    reply = body[:2] + flags + body[4:10] + arcount.to_bytes(2, "big") + body[HEADER_SIZE:]
    lifetime = min((ttl for _, ttl in ttls), default=0)
    return reply, ttls, lifetime


async def exchange(upstream: Upstream, message: bytes, *, timeout: float) -> bytes:
    """One query to one upstream: UDP, then TCP if the reply was truncated."""
    reply = await _udp_exchange(upstream, message, timeout=timeout)
    if reply[2] & 0x02:  # TC
        reply = await _tcp_exchange(upstream, message, timeout=timeout)
    return reply


class _ReplyProtocol(asyncio.DatagramProtocol):
    def __init__(self, future: asyncio.Future[bytes], message_id: bytes) -> None:
        self.future, self.message_id = future, message_id

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # The socket is connected: only the upstream can reach it. A stray or
        # spoofed reply with another id is ignored.
        if data[:2] == self.message_id and not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


async def _udp_exchange(upstream: Upstream, message: bytes, *, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _ReplyProtocol(future, message[:2]), remote_addr=(upstream.host, upstream.port))
    try:
        transport.sendto(message)
        async with asyncio.timeout(timeout):
            return await future
    finally:
        transport.close()


async def _tcp_exchange(upstream: Upstream, message: bytes, *, timeout: float) -> bytes:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
        try:
            writer.write(len(message).to_bytes(2, "big") + message)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(size)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
