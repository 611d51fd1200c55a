"""The server's path for queries of the common shape (answered by exact key
without parsing) must give the very replies of the full path, and no
answer kept by the table may outlive a record change.

Index: that of test_dns_answer (web.default, db.data, peers.default, ...).
"""

from __future__ import annotations

import random

import pytest
from dnslib import EDNS0, DNSRecord, EDNSOption

from netplane.dns.answer import answer_wire
from netplane.dns.server import DNSServer, Transport
from netplane.dns.table import AnswerTable
from netplane.dns.wire import NO_EDNS, simple_question
from tests.unit.test_dns_answer import (
    CONFIG,
    a,
    build_index,
    endpoint,
    endpoint_slice,
    headless,
    sections,
    service,
)

Z = ".svc.cluster.local."


def query(qname: str, qtype: str = "A", *, edns: int | None = None, version: int = 0,
          options: list[EDNSOption] | None = None) -> bytes:
    message = DNSRecord.question(qname, qtype)
    message.header.id = random.randrange(65536)
    if edns is not None:
        message.add_ar(EDNS0(udp_len=edns, version=version, opts=options or []))
    return bytes(message.pack())


def test_the_common_shapes_are_recognised() -> None:
    plain = query("web.default.svc.cluster.local")
    assert simple_question(plain) == (len(plain), NO_EDNS)
    edns = query("web.default.svc.cluster.local", edns=1232)
    assert simple_question(edns) == (len(edns) - 11, 1232)


@pytest.mark.parametrize("message", [
    query("web.default.svc.cluster.local", edns=1232, version=1),  # BADVERS: parsed whole
    query("web.default.svc.cluster.local", edns=1232, options=[EDNSOption(10, b"12345678")]),
    bytes.fromhex("0001 8100 0001 0000 0000 0000") + b"\x00\x00\x01\x00\x01",  # a response
    bytes.fromhex("0001 2800 0001 0000 0000 0000") + b"\x00\x00\x01\x00\x01",  # opcode 5
    bytes.fromhex("0001 0100 0002 0000 0000 0000") + b"\x00\x00\x01\x00\x01" * 2,
    bytes.fromhex("0001 0100 0001 0001 0000 0000") + b"\x00\x00\x01\x00\x01",
    bytes.fromhex("0001 0100 0001 0000 0000"),  # short
], ids=["edns-version", "edns-option", "response", "opcode", "two-questions", "answer",
        "short"])
def test_other_shapes_are_left_to_the_parser(message: bytes) -> None:
    assert simple_question(message) is None


def _spell(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


NAMES = ["web.default.svc.cluster.local", "peer-0.peers.default.svc.cluster.local",
         "_http._tcp.web.default.svc.cluster.local", "20.0.96.10.in-addr.arpa",
         "missing.default.svc.cluster.local", "x.y.missing.nowhere.svc.cluster.local",
         "10-244-1-9.default.pod.cluster.local", "google.com.cluster.local", "cluster.local"]


@pytest.mark.parametrize("edns", [None, 512, 1232, 4096])
@pytest.mark.parametrize("qtype", ["A", "AAAA", "SRV", "PTR", "MX"])
def test_first_seen_queries_get_the_full_paths_replies(qtype: str, edns: int | None) -> None:
    server = DNSServer(build_index(), address="127.0.0.1", config=CONFIG)
    rng = random.Random(f"{qtype}{edns}")
    for name in NAMES:
        for _ in range(3):  # fresh spellings: nothing seen before
            data = query(_spell(name, rng), qtype, edns=edns)
            limit = 512 if edns is None else max(512, min(edns, 1232))
            assert server.handle(data, Transport.UDP) == answer_wire(
                server.index, data, config=CONFIG, limit=limit)
            assert server.handle(data, Transport.TCP) == answer_wire(
                server.index, data, config=CONFIG)


def test_replies_too_large_for_udp_are_still_truncated() -> None:
    index = build_index()
    index.on_service(None, headless("many"))
    index.on_endpointslice(None, endpoint_slice(
        "many", "many-a", [endpoint(f"10.244.5.{i}") for i in range(1, 41)]))
    server = DNSServer(index, address="127.0.0.1", config=CONFIG)
    plain = DNSRecord.parse(server.handle(query("many.default.svc.cluster.local"),  # type: ignore[arg-type]
                                          Transport.UDP))
    assert plain.header.tc == 1 and not plain.rr
    edns = DNSRecord.parse(server.handle(query("many.default.svc.cluster.local", edns=1232),  # type: ignore[arg-type]
                                         Transport.UDP))
    assert edns.header.tc == 0 and len(edns.rr) == 40


def test_answers_built_on_first_use_never_outlive_a_change() -> None:
    index = build_index()
    server = DNSServer(index, address="127.0.0.1", config=CONFIG)
    alias = query("alias.default.svc.cluster.local")  # follows web: built on first use
    before = sections(DNSRecord.parse(server.handle(alias, Transport.UDP)))[0]  # type: ignore[arg-type]
    assert a(f"web.default{Z}", "10.96.0.20") in before
    assert server.table.get(alias[12:-4].lower() + alias[-4:]) is not None  # kept
    index.on_service(None, service("web", clusterIP="10.96.0.21"))
    after = sections(DNSRecord.parse(server.handle(alias, Transport.UDP)))[0]  # type: ignore[arg-type]
    assert a(f"web.default{Z}", "10.96.0.21") in after
    assert a(f"web.default{Z}", "10.96.0.20") not in after


def test_answers_built_on_first_use_are_bounded_oldest_first() -> None:
    index = build_index()
    table = AnswerTable(index, config=CONFIG, lazy_entries=3)
    server = DNSServer(index, address="127.0.0.1", config=CONFIG)
    server.table = table
    keys = []
    for i in range(5):
        data = query(f"10-244-1-{i}.default.pod.cluster.local")
        server.handle(data, Transport.UDP)
        keys.append(data[12:-4].lower() + data[-4:])
    assert [table.get(k) is not None for k in keys] == [False, False, True, True, True]
