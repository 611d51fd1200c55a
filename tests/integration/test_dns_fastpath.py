"""The compiled fast path over real loopback sockets, IPv4 and IPv6: two
in-process servers on one index, one with the fast path and one without,
get the same datagrams in bursts and must send the same bytes and count
the same metrics; the datagrams the fast path leaves to Python (other
shapes, truncation, FORMERR, REFUSED) come back through it.

Address plan (root namespace, loopback only):

    127.0.0.1 / ::1, free ports:  the two servers, each on UDP and TCP
    127.0.0.1 / ::1, free port:   the client socket
    objects: those of tests/unit/test_dns_fastpath (web.default, many.default ...)
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from dnslib import DNSRecord

from netplane.dns import fastpath
from netplane.dns.index import RecordIndex
from netplane.dns.server import DNSServer, Transport
from netplane.dns.wire import Query
from tests.unit.test_dns_answer import CONFIG, service
from tests.unit.test_dns_fastpath import KNOWN, MISSING, OTHER, build, query, spell

pytestmark = pytest.mark.skipif(
    not fastpath.AVAILABLE,
    reason="netplane/dns/_fastpath.c is not built (scripts/setup.sh builds it)")

BURST = 50  # datagrams in flight: far below what the socket buffers hold


def workload(seed: int) -> Iterator[bytes]:
    """Queries of every kind, each with its own id (the index in the list)."""
    rng = random.Random(seed)
    crafted = [bytes.fromhex("0000 0100 0001 0000 0000 0000 ff"),  # FORMERR
               bytes.fromhex("0000 8100 0001 0000 0000 0000") + b"\x00\x00\x01\x00\x01",
               bytes.fromhex("0000 01")]  # a response and a short message: dropped
    for _ in range(6):
        for name in KNOWN + MISSING + OTHER:
            for qtype in ("A", "AAAA", "SRV", "PTR", "MX"):
                edns = rng.choice([None, 512, 1232])
                yield query(spell(name, rng), qtype, rng, edns=edns, rd=rng.random() < 0.5,
                            cd=rng.random() < 0.2)
        yield from crafted


@pytest.fixture(params=["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
async def servers(request: pytest.FixtureRequest) -> AsyncIterator[tuple[DNSServer, DNSServer]]:
    index = build()
    pair = (DNSServer(index, address=request.param, port=0, config=CONFIG),
            DNSServer(index, address=request.param, port=0, config=CONFIG, compiled=False))
    assert pair[0].compiled and not pair[1].compiled
    for server in pair:
        await server.start()
    try:
        yield pair
    finally:
        for server in pair:
            await server.stop()


async def exchange(server: DNSServer, messages: list[bytes]) -> dict[int, bytes]:
    """Sends the messages in bursts; the replies by message number."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server.address else socket.AF_INET
    replies: dict[int, bytes] = {}
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((server.address, 0))
        for start in range(0, len(messages), BURST):
            burst = messages[start:start + BURST]
            for number, data in enumerate(burst, start):
                await loop.sock_sendto(sock, number.to_bytes(2, "big") + data[2:],
                                       (server.address, server.port))
            expected = sum(1 for data in messages[:start + BURST] if _answerable(data))
            async with asyncio.timeout(5):
                while len(replies) < expected:
                    reply = await loop.sock_recv(sock, 65535)
                    replies[int.from_bytes(reply[:2], "big")] = reply
    return replies


def _answerable(data: bytes) -> bool:
    """Whether the server replies (it drops short messages and responses)."""
    return len(data) >= 12 and not data[2] & 0x80


async def test_both_paths_send_the_same_bytes_and_count_the_same(
        servers: tuple[DNSServer, DNSServer]) -> None:
    fast, python = servers
    handled = 0
    handle = fast.handle

    def counting(data: bytes, transport: Transport) -> bytes | Query | None:
        nonlocal handled
        handled += 1
        return handle(data, transport)

    fast.handle = counting  # type: ignore[method-assign]
    messages = list(workload(seed=1))
    assert await exchange(fast, messages) == await exchange(python, messages)
    assert 0 < handled < len(messages) / 2  # most answered in C, the rest handed back
    fast_metrics, python_metrics = fast.metrics, python.metrics
    assert fast_metrics.requests.values == python_metrics.requests.values
    assert fast_metrics.dropped.values == python_metrics.dropped.values
    assert fast_metrics.truncated.values == python_metrics.truncated.values
    assert fast_metrics.latency.count == python_metrics.latency.count > 600
    assert sum(fast_metrics.latency.counts) == fast_metrics.latency.count
    assert fast_metrics.errors.total() == 0


async def test_an_index_change_reaches_the_very_next_query(
        servers: tuple[DNSServer, DNSServer]) -> None:
    fast, _ = servers
    index: RecordIndex = fast.index
    fast._sync_scheduled = True  # no sync after the change: only the fast path's own check
    data = query("fresh.default.svc.cluster.local", "A", random.Random(2))
    before = DNSRecord.parse((await exchange(fast, [data]))[0])
    index.on_service(None, service("fresh", clusterIP="10.96.0.77"))
    after = DNSRecord.parse((await exchange(fast, [data]))[0])
    assert before.header.rcode == 3
    assert after.header.rcode == 0 and [str(rr.rdata) for rr in after.rr] == ["10.96.0.77"]
