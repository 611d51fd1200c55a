"""Replies on the wire: records packed into a DNS message, and the whole
answer to one query built afresh (the slow path; the table keeps its results).

Packing happens when the index changes, never per query for names the table
holds, so it may use dnslib's general encoder (with name compression).
Negative answers, which clients ask for many distinct names (search lists),
come from ``negative``'s forms, the same bytes without packing.
"""

from __future__ import annotations

from collections.abc import Callable

from dnslib import (
    AAAA,
    CNAME,
    NS,
    PTR,
    RR,
    SOA,
    SRV,
    TXT,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)

from netplane.dns.index import RecordIndex
from netplane.dns.negative import form_for
from netplane.dns.records import Outcome, Record, resolve
from netplane.dns.wire import (
    CLASS_ANY,
    CLASS_IN,
    HEADER_SIZE,
    FormatError,
    Prebuilt,
    Query,
    Rcode,
    RType,
    error_reply,
    finalize,
    header_reply,
    is_response,
    parse_query,
)
from netplane.dns.zone import ZoneConfig

_RDATA: dict[RType, Callable[[Record], object]] = {
    RType.A: lambda r: A(str(r.rdata[0])),
    RType.AAAA: lambda r: AAAA(str(r.rdata[0])),
    RType.CNAME: lambda r: CNAME(str(r.rdata[0])),
    RType.PTR: lambda r: PTR(str(r.rdata[0])),
    RType.NS: lambda r: NS(str(r.rdata[0])),
    RType.TXT: lambda r: TXT([str(p) for p in r.rdata]),
    RType.SRV: lambda r: SRV(int(r.rdata[0]), int(r.rdata[1]), int(r.rdata[2]), str(r.rdata[3])),
    RType.SOA: lambda r: SOA(str(r.rdata[0]), str(r.rdata[1]), tuple(int(v) for v in r.rdata[2:])),
}


def encode(name_wire: bytes, qtype: int, qclass: int, outcome: Outcome, *,
           recursion: bool) -> bytes:
    """The reply message (id 0, RD clear) for a question and an outcome."""
    header = DNSHeader(id=0, qr=1, rd=0, aa=int(outcome.authoritative), ra=int(recursion),
                       rcode=int(outcome.rcode))
    question = DNSQuestion(DNSLabel(_wire_labels(name_wire)), qtype, qclass)
    reply = DNSRecord(header=header, questions=[question])
    for record in outcome.answer:
        reply.add_answer(_rr(record))
    for record in outcome.authority:
        reply.add_auth(_rr(record))
    for record in outcome.additional:
        reply.add_ar(_rr(record))
    return bytes(reply.pack())


def _rr(record: Record) -> RR:
    return RR(record.name, int(record.rtype), ttl=record.ttl, rdata=_RDATA[record.rtype](record))


def _wire_labels(name_wire: bytes) -> list[bytes]:
    labels: list[bytes] = []
    pos = 0
    while name_wire[pos]:
        labels.append(name_wire[pos + 1:pos + 1 + name_wire[pos]])
        pos += name_wire[pos] + 1
    return labels


def build(index: RecordIndex, query: Query, *, config: ZoneConfig,
          recursion: bool = False) -> Prebuilt | None:
    """The reply for a query's (name, type, class), or None if the name is
    outside our zones (forward it, or refuse)."""
    name_wire = query.key[:-4]
    if query.qclass not in (CLASS_IN, CLASS_ANY):
        refused = Outcome(Rcode.REFUSED, authoritative=False)
        return Prebuilt(encode(name_wire, query.qtype, query.qclass, refused,
                               recursion=recursion))
    labels = query.labels()
    outcome = resolve(index, labels, query.qtype, config=config)
    if outcome.forward:
        return None
    form = form_for(outcome, recursion=recursion)
    if form is not None and form.covers(labels):
        return Prebuilt(form.plain(name_wire, query.qtype, query.qclass))
    return Prebuilt(encode(name_wire, query.qtype, query.qclass, outcome, recursion=recursion))


def answer_wire(index: RecordIndex, data: bytes, *, config: ZoneConfig | None = None,
                limit: int = 65535) -> bytes | None:
    """The whole reply to one message built afresh, with no upstream (outside
    names are REFUSED); None when the message must be dropped."""
    config = config or ZoneConfig()
    if len(data) < HEADER_SIZE or is_response(data):
        return None
    try:
        query = parse_query(data)
    except FormatError:
        return header_reply(data, Rcode.FORMERR)
    early = reject(query)
    if early is not None:
        return early
    built = build(index, query, config=config)
    if built is None:
        return error_reply(query, Rcode.REFUSED)
    return finalize(built, query, limit=limit)[0]


def reject(query: Query) -> bytes | None:
    """The reply for queries no name lookup can answer (opcode, EDNS version)."""
    if query.opcode != 0:
        return header_reply(query.data, Rcode.NOTIMP)
    if query.edns and query.edns_version != 0:
        return error_reply(query, Rcode.BADVERS)
    return None
