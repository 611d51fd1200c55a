"""Forwarding names outside the cluster zone, against a fake upstream this
test starts on 127.0.0.1 (nothing leaves the machine).

Address plan: fake upstream 127.0.0.1:<free port> (UDP, and TCP for the
truncation case); it answers every name with A 192.0.2.1 (TTL 60), or
NXDOMAIN for names starting with "nx".
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, SOA, A, DNSRecord

from netplane.dns.forward import Forwarder, Upstream, normalize, parse_upstream
from netplane.dns.index import RecordIndex
from netplane.dns.server import DNSServer, Transport
from netplane.dns.wire import Query, parse_query


class FakeUpstream(asyncio.DatagramProtocol):
    """A resolver that knows everything; counts the questions it gets."""

    def __init__(self, *, delay: float = 0.0, truncate: bool = False) -> None:
        self.delay, self.truncate = delay, truncate
        self.questions: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.Server | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        asyncio.get_running_loop().create_task(self._reply(data, addr))

    def answer(self, data: bytes, *, tcp: bool) -> bytes:
        query = DNSRecord.parse(data)
        self.questions.append(str(query.q.qname))
        reply = query.reply()
        if str(query.q.qname).startswith("nx"):
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(RR("example.", QTYPE.SOA, ttl=30,
                              rdata=SOA("ns.example.", "h.example.", (1, 2, 3, 4, 30))))
        elif self.truncate and not tcp:
            reply.header.tc = 1
        else:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
        reply.add_ar(EDNS0(udp_len=1232))
        return bytes(reply.pack())

    async def _reply(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        await asyncio.sleep(self.delay)
        if self.transport is not None:
            self.transport.sendto(self.answer(data, tcp=False), addr)

    async def serve_tcp(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(2), "big")
        reply = self.answer(await reader.readexactly(size), tcp=True)
        writer.write(len(reply).to_bytes(2, "big") + reply)
        await writer.drain()
        writer.close()


async def start_upstream(**options: Any) -> FakeUpstream:
    """UDP and TCP on one free port; the UDP port's TCP twin may be taken by
    someone else's connection, so pick again until both are ours."""
    loop = asyncio.get_running_loop()
    for _ in range(20):
        upstream = FakeUpstream(**options)
        await loop.create_datagram_endpoint(lambda u=upstream: u,
                                            local_addr=("127.0.0.1", 0))
        assert upstream.transport is not None
        upstream.port = upstream.transport.get_extra_info("sockname")[1]
        try:
            upstream.tcp = await asyncio.start_server(upstream.serve_tcp, "127.0.0.1",
                                                      upstream.port)
        except OSError:
            upstream.transport.close()
            continue
        return upstream
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


async def stop_upstream(upstream: FakeUpstream) -> None:
    if upstream.transport is not None:
        upstream.transport.close()
    if upstream.tcp is not None:
        upstream.tcp.close()
        await upstream.tcp.wait_closed()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await start_upstream()
    yield fake
    await stop_upstream(fake)


def cluster_index() -> RecordIndex:
    index = RecordIndex()
    index.on_service(None, {"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                            "spec": {"clusterIP": "10.96.0.20"}})
    return index


def server_for(upstream: FakeUpstream, **options: Any) -> DNSServer:
    return DNSServer(cluster_index(), address="127.0.0.1",
                     upstreams=[f"127.0.0.1:{upstream.port}"], **options)


def query(name: str, qtype: str = "A", *, edns: bool = False) -> bytes:
    record = DNSRecord.question(name, qtype)
    if edns:
        record.add_ar(EDNS0(udp_len=1232))
    return bytes(record.pack())


async def resolve(server: DNSServer, data: bytes) -> DNSRecord:
    result = server.handle(data, Transport.UDP)
    if isinstance(result, Query):
        result = await server.forward(result, Transport.UDP)
    assert isinstance(result, bytes)
    return DNSRecord.parse(result)


async def test_outside_names_are_forwarded_then_served_from_the_cache(
        upstream: FakeUpstream) -> None:
    server = server_for(upstream)
    first = await resolve(server, query("Example.COM"))
    assert [str(rr.rdata) for rr in first.rr] == ["192.0.2.1"]
    assert (first.header.ra, first.header.rd, first.header.aa) == (1, 1, 0)
    second_data = query("example.com", edns=True)
    cached = server.handle(second_data, Transport.UDP)
    assert isinstance(cached, bytes)  # answered at once, from the cache
    second = DNSRecord.parse(cached)
    assert second.header.id == DNSRecord.parse(second_data).header.id
    assert str(second.q.qname) == "example.com."
    assert [str(rr.rdata) for rr in second.rr] == ["192.0.2.1"]
    assert [rr.rtype for rr in second.ar] == [QTYPE.OPT]  # one OPT, ours
    assert upstream.questions == ["Example.COM."]
    assert server.metrics.cache.get("hit") == 1 and server.metrics.cache.get("miss") == 1


async def test_negative_answers_are_cached_too(upstream: FakeUpstream) -> None:
    server = server_for(upstream)
    for _ in range(3):
        reply = await resolve(server, query("nx.example"))
        assert RCODE[reply.header.rcode] == "NXDOMAIN" and len(reply.auth) == 1
    assert upstream.questions == ["nx.example."]


async def test_cluster_names_are_never_forwarded(upstream: FakeUpstream) -> None:
    server = server_for(upstream)
    for name in ("web.default.svc.cluster.local", "missing.default.svc.cluster.local"):
        assert isinstance(server.handle(query(name), Transport.UDP), bytes)
    assert upstream.questions == []


def test_without_an_upstream_outside_names_are_refused_at_once() -> None:
    server = DNSServer(cluster_index(), address="127.0.0.1")
    reply = server.handle(query("example.com"), Transport.UDP)
    assert isinstance(reply, bytes)
    assert RCODE[DNSRecord.parse(reply).header.rcode] == "REFUSED"


async def test_concurrent_forwards_are_bounded() -> None:
    slow = await start_upstream(delay=0.3)
    try:
        server = server_for(slow, max_forwards=2)
        names = [f"host{i}.example" for i in range(3)]
        queries = [server.handle(query(n), Transport.UDP) for n in names]
        assert all(isinstance(q, Query) for q in queries)
        tasks = [asyncio.create_task(server.forward(q, Transport.UDP))  # type: ignore[arg-type]
                 for q in queries[:2]]
        await asyncio.sleep(0.05)
        rejected = await server.forward(queries[2], Transport.UDP)  # type: ignore[arg-type]
        assert RCODE[DNSRecord.parse(rejected).header.rcode] == "SERVFAIL"
        answered = [DNSRecord.parse(r) for r in await asyncio.gather(*tasks)]
        assert [RCODE[r.header.rcode] for r in answered] == ["NOERROR", "NOERROR"]
        assert server.metrics.forwards.get("rejected") == 1
    finally:
        await stop_upstream(slow)


async def test_identical_questions_share_one_exchange() -> None:
    slow = await start_upstream(delay=0.1)
    try:
        server = server_for(slow, max_forwards=1)
        pending = [server.handle(query("same.example"), Transport.UDP) for _ in range(5)]
        replies = await asyncio.gather(*(server.forward(q, Transport.UDP)  # type: ignore[arg-type]
                                         for q in pending))
        assert {RCODE[DNSRecord.parse(r).header.rcode] for r in replies} == {"NOERROR"}
        assert slow.questions == ["same.example."]
    finally:
        await stop_upstream(slow)


async def test_truncated_upstream_replies_are_fetched_over_tcp() -> None:
    fake = await start_upstream(truncate=True)
    try:
        reply = await resolve(server_for(fake), query("big.example"))
        assert reply.header.tc == 0 and [str(rr.rdata) for rr in reply.rr] == ["192.0.2.1"]
        assert fake.questions == ["big.example.", "big.example."]  # UDP, then TCP
    finally:
        await stop_upstream(fake)


async def test_a_dead_upstream_gives_servfail() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but never read: no answer comes
        server = DNSServer(cluster_index(), address="127.0.0.1",
                           upstreams=[f"127.0.0.1:{port}"], forward_timeout=0.2)
        reply = await resolve(server, query("example.com"))
    assert RCODE[reply.header.rcode] == "SERVFAIL"
    assert server.metrics.forwards.get("failed") == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cached_ttls_age_and_expire(upstream: FakeUpstream) -> None:
    clock = Clock()
    forwarder = Forwarder([f"127.0.0.1:{upstream.port}"], clock=clock, max_ttl=3600)
    q = parse_query(query("example.com"))
    assert await forwarder.forward(q) is not None
    clock.now += 45
    aged = forwarder.cached(q)
    assert aged is not None and DNSRecord.parse(aged).rr[0].ttl == 15
    clock.now += 15
    assert forwarder.cached(q) is None


async def test_cache_is_bounded(upstream: FakeUpstream) -> None:
    forwarder = Forwarder([f"127.0.0.1:{upstream.port}"], cache_entries=2)
    names = ["a.example", "b.example", "c.example"]
    for name in names:
        await forwarder.forward(parse_query(query(name)))
    assert [forwarder.cached(parse_query(query(n))) is not None for n in names] == [
        False, True, True]


def test_normalize_refuses_replies_to_other_questions() -> None:
    message = query("a.example")
    other = DNSRecord.parse(query("b.example")).reply()
    other.header.id = DNSRecord.parse(message).header.id
    with pytest.raises(ValueError):
        normalize(bytes(other.pack()), message)


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.53", Upstream("192.0.2.53", 53)),
    ("127.0.0.2:5353", Upstream("127.0.0.2", 5353)),
    ("[fd00::53]:5353", Upstream("fd00::53", 5353)),
    ("fd00::53", Upstream("fd00::53", 53)),
])
def test_upstream_addresses(text: str, expected: Upstream) -> None:
    assert parse_upstream(text) == expected


def test_upstreams_must_be_addresses() -> None:
    with pytest.raises(ValueError):
        parse_upstream("dns.example:53")
