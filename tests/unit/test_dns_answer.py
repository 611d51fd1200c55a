"""Answers from the index, as tables of cases with records in zone-file text.

Index used by the table (zone cluster.local, TTL 5):

    web.default.svc   A 10.96.0.20
    db.data.svc       A 10.96.0.30, AAAA fd00::30   (dual-stack)
    peers.default.svc headless: not answered yet
    ext.default.svc   ExternalName: not answered yet
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from dnslib import OPCODE, QTYPE, RCODE, RR, DNSQuestion, DNSRecord

from netplane.api.meta import Obj
from netplane.dns.answer import ZoneConfig, answer, answer_wire
from netplane.dns.index import RecordIndex


def service(name: str, namespace: str, **spec: object) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def build_index() -> RecordIndex:
    index = RecordIndex()
    index.set_service(service("web", "default", clusterIP="10.96.0.20"))
    index.set_service(service("db", "data", clusterIP="10.96.0.30",
                              clusterIPs=["10.96.0.30", "fd00::30"]))
    index.set_service(service("peers", "default", clusterIP="None"))
    index.set_service(service("ext", "default", type="ExternalName", externalName="a.example"))
    return index


SERIAL = 2  # two services above have cluster IPs: two changes
SOA = (f"cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
       f"{SERIAL} 7200 1800 86400 5")


@dataclass
class Case:
    qname: str
    qtype: str
    rcode: str
    answer: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)


CASES = [
    # Services by name: the answer echoes the question's spelling.
    Case("web.default.svc.cluster.local.", "A", "NOERROR",
         ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]),
    Case("WEB.Default.Svc.CLUSTER.local.", "A", "NOERROR",
         ["WEB.Default.Svc.CLUSTER.local. 5 IN A 10.96.0.20"]),
    Case("db.data.svc.cluster.local.", "AAAA", "NOERROR",
         ["db.data.svc.cluster.local. 5 IN AAAA fd00::30"]),
    Case("db.data.svc.cluster.local.", "ANY", "NOERROR",
         ["db.data.svc.cluster.local. 5 IN A 10.96.0.30",
          "db.data.svc.cluster.local. 5 IN AAAA fd00::30"]),
    # The name exists without records of that type: NODATA, not NXDOMAIN.
    Case("web.default.svc.cluster.local.", "AAAA", "NOERROR", authority=[SOA]),
    Case("web.default.svc.cluster.local.", "MX", "NOERROR", authority=[SOA]),
    Case("web.default.svc.cluster.local.", "TXT", "NOERROR", authority=[SOA]),
    # Empty non-terminals exist.
    Case("default.svc.cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("svc.cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("pod.cluster.local.", "A", "NOERROR", authority=[SOA]),
    # The apex.
    Case("cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("cluster.local.", "SOA", "NOERROR", [SOA]),
    Case("Cluster.Local.", "NS", "NOERROR", ["cluster.local. 5 IN NS ns.dns.cluster.local."]),
    # Unknown names inside the zone.
    Case("missing.default.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("missing.default.svc.cluster.local.", "AAAA", "NXDOMAIN", authority=[SOA]),
    Case("web.nosuchns.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("nosuchns.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("foo.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("a.b.c.web.default.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("ns.dns.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    # Not answered yet: headless, ExternalName, pods.
    Case("peers.default.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("ext.default.svc.cluster.local.", "CNAME", "NXDOMAIN", authority=[SOA]),
    Case("10-244-1-5.default.pod.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    # Outside the zone with no upstream.
    Case("example.com.", "A", "REFUSED"),
    Case("cluster.local.example.com.", "A", "REFUSED"),
    Case("local.", "SOA", "REFUSED"),
]


def zone_text(records: list[RR]) -> list[str]:
    return sorted(str(rr) for rr in records)


def parsed(lines: list[str]) -> list[str]:
    return sorted(str(RR.fromZone(line)[0]) for line in lines)


def ask(qname: str, qtype: str, *, config: ZoneConfig | None = None,
        index: RecordIndex | None = None) -> DNSRecord:
    query = DNSRecord.question(qname, qtype)
    # Through the wire form, as the server sees it.
    data = answer_wire(index or build_index(), bytes(query.pack()), config=config)
    assert data is not None
    return DNSRecord.parse(data)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qtype}-{c.qname}")
def test_answers(case: Case) -> None:
    reply = ask(case.qname, case.qtype)
    assert RCODE[reply.header.rcode] == case.rcode
    assert zone_text(reply.rr) == parsed(case.answer)
    assert zone_text(reply.auth) == parsed(case.authority)
    assert zone_text(reply.ar) == parsed(case.additional)
    # Only answers from our own zone are authoritative; we never recurse.
    assert reply.header.aa == (case.rcode != "REFUSED")
    assert reply.header.ra == 0
    assert [str(q.qname) for q in reply.questions] == [case.qname]


def test_ttl_and_zone_are_configurable() -> None:
    index = RecordIndex()
    index.set_service(service("web", "default", clusterIP="10.96.0.20"))
    config = ZoneConfig(zone="corp.internal", ttl=30)
    reply = ask("web.default.svc.corp.internal.", "A", config=config, index=index)
    assert zone_text(reply.rr) == parsed(["web.default.svc.corp.internal. 30 IN A 10.96.0.20"])
    nx = ask("web.default.svc.cluster.local.", "A", config=config, index=index)
    assert RCODE[nx.header.rcode] == "REFUSED"


def test_name_server_address_gives_glue_and_its_own_name() -> None:
    config = ZoneConfig(ns_address="10.96.0.10")
    ns = ask("cluster.local.", "NS", config=config)
    assert zone_text(ns.ar) == parsed(["ns.dns.cluster.local. 5 IN A 10.96.0.10"])
    own = ask("ns.dns.cluster.local.", "A", config=config)
    assert zone_text(own.rr) == parsed(["ns.dns.cluster.local. 5 IN A 10.96.0.10"])


def test_deleted_service_is_nxdomain_and_serial_moves() -> None:
    index = build_index()
    index.delete_service("default", "web")
    reply = ask("web.default.svc.cluster.local.", "A", index=index)
    assert RCODE[reply.header.rcode] == "NXDOMAIN"
    assert reply.auth[0].rdata.times[0] == SERIAL + 1


def test_reply_echoes_id_and_recursion_desired() -> None:
    query = DNSRecord.question("web.default.svc.cluster.local.")
    query.header.id, query.header.rd = 4242, 0
    reply = answer(build_index(), query)
    assert (reply.header.id, reply.header.rd, reply.header.qr) == (4242, 0, 1)


def test_other_opcodes_are_not_implemented() -> None:
    query = DNSRecord.question("cluster.local.", "SOA")
    query.header.opcode = OPCODE.NOTIFY
    assert RCODE[answer(build_index(), query).header.rcode] == "NOTIMP"


def test_several_questions_are_a_format_error() -> None:
    query = DNSRecord.question("web.default.svc.cluster.local.")
    query.add_question(DNSQuestion("db.data.svc.cluster.local.", QTYPE.A))
    assert RCODE[answer(build_index(), query).header.rcode] == "FORMERR"


def test_other_classes_are_refused() -> None:
    query = DNSRecord.question("web.default.svc.cluster.local.", "TXT", "CH")
    assert RCODE[answer(build_index(), query).header.rcode] == "REFUSED"


def test_garbage_after_a_header_gets_formerr_with_its_id() -> None:
    # One question whose name is a compression pointer past the end.
    data = bytes.fromhex("abcd 0100 0001 0000 0000 0000 ffff ff")
    reply = answer_wire(build_index(), data)
    assert reply is not None
    record = DNSRecord.parse(reply)
    assert (record.header.id, RCODE[record.header.rcode]) == (0xABCD, "FORMERR")


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\x01\x02",  # shorter than a header: nothing to reply to
    bytes(DNSRecord.question("web.default.svc.cluster.local.").reply().pack()),  # a response
])
def test_packets_without_a_query_header_are_dropped(data: bytes) -> None:
    assert answer_wire(build_index(), data) is None


def test_random_bytes_never_raise_and_replies_keep_the_id() -> None:
    rng = random.Random(1234)
    index = build_index()
    for _ in range(2000):
        data = bytearray(rng.randbytes(rng.randrange(12, 80)))
        data[2] &= 0x7F  # a query, so that it must be answered
        reply = answer_wire(index, bytes(data))
        assert reply is not None
        assert reply[:2] == data[:2]
