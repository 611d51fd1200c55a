"""The compiled fast path must reply, byte for byte, what the Python path
replies, leave to it everything else, see every change of the index at the
very next query, and count what it answers as the Python path does.

Index: that of test_dns_answer (web.default, db.data, peers.default, ...),
plus ``many.default``, headless with 40 ready endpoints (a reply too large
for 512 bytes), and ``fresh.default`` added and removed by the tests.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from dnslib import EDNS0, DNSRecord, EDNSOption

from netplane.dns import fastpath
from netplane.dns.fastpath import FastPath
from netplane.dns.index import RecordIndex
from netplane.dns.server import DNSServer, Transport
from netplane.dns.wire import Prebuilt
from tests.unit.test_dns_answer import (
    CONFIG,
    build_index,
    endpoint,
    endpoint_slice,
    headless,
    service,
)

pytestmark = pytest.mark.skipif(
    not fastpath.AVAILABLE,
    reason="netplane/dns/_fastpath.c is not built (scripts/setup.sh builds it)")

# Names of each pre-built kind, names the negative rule covers, and names
# only the full path answers (outside the zone, pods, reverse zones).
KNOWN = ["web.default.svc.cluster.local", "db.data.svc.cluster.local",
         "_http._tcp.web.default.svc.cluster.local", "_pg._tcp.db.data.svc.cluster.local",
         "peers.default.svc.cluster.local", "peer-0.peers.default.svc.cluster.local",
         "ext.default.svc.cluster.local", "20.0.96.10.in-addr.arpa",
         "many.default.svc.cluster.local"]
MISSING = ["missing.default.svc.cluster.local", "x.y.missing.nowhere.svc.cluster.local",
           "_http._tcp.gone.default.svc.cluster.local", "a.b.c.d.e.svc.cluster.local"]
OTHER = ["10-244-1-9.default.pod.cluster.local", "google.com.cluster.local", "cluster.local",
         "svc.cluster.local", "default.svc.cluster.local", "example.com",
         "alias.default.svc.cluster.local", "9.3.244.10.in-addr.arpa"]
QTYPES = ["A", "AAAA", "SRV", "PTR", "CNAME", "MX", "TXT", "ANY", "NS", "SOA"]


def test_the_module_is_built_from_the_current_source() -> None:
    from netplane.dns import _fastpath

    source = Path(fastpath.__file__).with_name("_fastpath.c")
    assert Path(_fastpath.__file__).stat().st_mtime >= source.stat().st_mtime, (
        "the compiled fast path is older than _fastpath.c: run scripts/setup.sh")


def build() -> RecordIndex:
    index = build_index()
    index.on_service(None, headless("many"))
    index.on_endpointslice(None, endpoint_slice(
        "many", "many-a", [endpoint(f"10.244.5.{i}") for i in range(1, 41)]))
    return index


def server_and_fast(index: RecordIndex | None = None, *,
                    max_udp_size: int = 1232) -> tuple[DNSServer, FastPath]:
    server = DNSServer(index or build(), address="127.0.0.1", config=CONFIG,
                       max_udp_size=max_udp_size)
    return server, FastPath(server.table, server.metrics, max_udp_size=server.max_udp_size)


def spell(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def query(qname: str, qtype: str, rng: random.Random, *, edns: int | None = None,
          rd: bool = True, cd: bool = False) -> bytes:
    message = DNSRecord.question(qname, qtype)
    message.header.id = rng.randrange(65536)
    message.header.rd, message.header.cd = int(rd), int(cd)
    if edns is not None:
        message.add_ar(EDNS0(udp_len=edns))
    return bytes(message.pack())


def python_reply(server: DNSServer, data: bytes) -> bytes | None:
    """What the Python path's common-shape step answers (None: parsed whole)."""
    return server._simple(data, Transport.UDP, 0.0)


@pytest.mark.parametrize("edns", [None, 100, 512, 1232, 4096, 65535])
def test_replies_are_the_python_paths_bytes(edns: int | None) -> None:
    server, fast = server_and_fast()
    rng = random.Random(f"fast{edns}")
    answered = 0
    for name in KNOWN + MISSING + OTHER:
        for qtype in QTYPES:
            for _ in range(3):  # fresh case mixes and header bits every time
                data = query(spell(name, rng), qtype, rng, edns=edns,
                             rd=rng.random() < 0.5, cd=rng.random() < 0.5)
                expected = python_reply(server, data)
                assert fast.reply(data) == expected, (name, qtype)
                answered += expected is not None
                full = server.handle(data, Transport.UDP)  # may fill the lazy cache
                assert expected is None or expected == full
    assert answered > 400  # the comparison is not vacuous


def test_names_the_fast_path_knows_are_answered_there() -> None:
    _, fast = server_and_fast()
    rng = random.Random(1)
    for name in KNOWN[:-1] + MISSING:
        qtype = "SRV" if name.startswith("_") else "PTR" if name.endswith("arpa") else "A"
        assert fast.reply(query(spell(name, rng), qtype, rng)) is not None, name
        assert fast.reply(query(spell(name, rng), qtype, rng, edns=1232)) is not None, name


def test_replies_needing_truncation_are_left_to_python() -> None:
    server, fast = server_and_fast()
    rng = random.Random(2)
    for edns in (None, 100, 512):  # 40 A records do not fit 512 bytes
        data = query("many.default.svc.cluster.local", "A", rng, edns=edns)
        assert fast.reply(data) is None
        truncated = DNSRecord.parse(server.handle(data, Transport.UDP))  # type: ignore[arg-type]
        assert truncated.header.tc == 1
    assert fast.reply(query("many.default.svc.cluster.local", "A", rng, edns=1232)) is not None


def test_a_lower_udp_cap_is_respected() -> None:
    server, fast = server_and_fast(max_udp_size=512)
    rng = random.Random(3)
    data = query("many.default.svc.cluster.local", "A", rng, edns=4096)
    assert fast.reply(data) is None and python_reply(server, data) is None


@pytest.mark.parametrize("message", [
    query("web.default.svc.cluster.local", "A", random.Random(4), edns=1232)[:-11]
    + bytes.fromhex("00 0029 04d0 00 01 0000 0000"),  # EDNS version 1: BADVERS
    b"",
    bytes.fromhex("0001 8100 0001 0000 0000 0000") + b"\x03web\x07default\x03svc\x07cluster"
    b"\x05local\x00\x00\x01\x00\x01",  # a response
    bytes.fromhex("0001 2800 0001 0000 0000 0000") + b"\x00\x00\x01\x00\x01",  # opcode 5
    bytes.fromhex("0001 0100 0002 0000 0000 0000") + b"\x00\x00\x01\x00\x01" * 2,
    bytes.fromhex("0001 0100 0001 0000 0000"),  # short
    bytes.fromhex("0001 0100 0001 0000 0000 0000") + b"\x07missing\x07default\x03svc\x07cluster"
    b"\x05local\x00\x00\x01\x00\x02",  # class CH
    bytes.fromhex("0001 0100 0001 0000 0000 0000")
    + b"".join(bytes([60]) + b"a" * 60 for _ in range(4))
    + b"\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01",  # a name over 255 octets
    bytes.fromhex("0001 0100 0001 0000 0000 0000") + b"\x04m\xe9ta\x07d\xc9fault\x03svc"
    b"\x07cluster\x05local\x00\x00\x01\x00\x01",  # not ASCII: the index lower-cases str
], ids=["edns-version", "empty", "response", "opcode", "two-questions", "short", "class-ch",
        "too-long", "latin-1"])
def test_other_messages_are_left_to_python(message: bytes) -> None:
    _, fast = server_and_fast()
    assert fast.reply(message) is None


def test_edns_options_are_left_to_python() -> None:
    _, fast = server_and_fast()
    message = DNSRecord.question("web.default.svc.cluster.local")
    message.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(10, b"12345678")]))
    assert fast.reply(bytes(message.pack())) is None


def test_answers_built_on_first_use_are_served_from_the_same_cache() -> None:
    server, fast = server_and_fast()
    rng = random.Random(5)
    data = query("alias.default.svc.cluster.local", "A", rng)  # built on first use
    assert fast.reply(data) is None
    first = server.handle(data, Transport.UDP)
    again = query("ALIAS.default.svc.cluster.local", "A", rng)
    assert fast.reply(again) == python_reply(server, again) is not None
    assert fast.reply(again) != first  # its own id and spelling


def test_a_change_of_the_index_is_seen_by_the_next_query() -> None:
    index = build()
    server, fast = server_and_fast(index)
    rng = random.Random(6)
    fresh = query("fresh.default.svc.cluster.local", "A", rng)
    assert DNSRecord.parse(fast.reply(fresh)).header.rcode == 3  # type: ignore[arg-type]
    index.on_service(None, service("fresh", clusterIP="10.96.0.77"))
    added = DNSRecord.parse(fast.reply(fresh))  # type: ignore[arg-type]
    assert added.header.rcode == 0 and str(added.rr[0].rdata) == "10.96.0.77"
    index.on_service(None, service("fresh", clusterIP="10.96.0.78"))
    assert str(DNSRecord.parse(fast.reply(fresh)).rr[0].rdata) == "10.96.0.78"  # type: ignore[arg-type]
    index.delete_service("default", "fresh")
    assert DNSRecord.parse(fast.reply(fresh)).header.rcode == 3  # type: ignore[arg-type]
    alias = query("alias.default.svc.cluster.local", "A", rng)
    server.handle(alias, Transport.UDP)
    assert fast.reply(alias) is not None
    index.on_service(None, service("web", clusterIP="10.96.0.21"))  # empties the lazy cache
    assert fast.reply(alias) is None


def test_a_subclass_of_prebuilt_is_left_to_python() -> None:
    class Other(Prebuilt):
        __slots__ = ()

    server, fast = server_and_fast()
    shared = server.table.shared().prebuilt
    assert isinstance(shared, dict)
    key = next(k for k in shared if k.startswith(b"\x03web\x07default"))
    shared[key] = Other(shared[key].plain)
    data = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + key
    assert fast.reply(data) is None


def test_nothing_answered_counts_nothing() -> None:
    server, fast = server_and_fast()
    fast.reply(query("web.default.svc.cluster.local", "A", random.Random(7)))
    fast.count()
    assert server.metrics.requests.values == {} and server.metrics.latency.count == 0
