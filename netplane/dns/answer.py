"""Answers from the index: a pure function from (index, query) to a reply.

The name is parsed into a typed request first (``parse``), then looked up
level by level. Replies inside the zone are authoritative: a name that exists
without records of the asked type gets NODATA (NOERROR, SOA in authority), an
unknown name NXDOMAIN with the SOA, so that resolvers cache the negative
answer for the zone's TTL. Names outside the zone are refused (no upstream).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnslib import (
    AAAA,
    CLASS,
    NS,
    OPCODE,
    QTYPE,
    RCODE,
    RR,
    SOA,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)

from netplane.dns.index import RecordIndex, ServiceEntry
from netplane.dns.parse import (
    InvalidName,
    Kind,
    Level,
    NotInZone,
    Request,
    parse_labels,
    split_name,
)

DEFAULT_TTL = 5
HEADER_SIZE = 12
CLASS_ANY = 255  # dnslib spells it "*", which cannot be an attribute
# SOA timers other than the TTL: nothing transfers this zone, they are nominal.
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400


@dataclass(frozen=True)
class ZoneConfig:
    """The zone served and how answers from it look.

    ``ns_address`` is the DNS service IP; when given, ``ns.dns.<zone>`` (the
    apex's NS target) resolves to it and NS answers carry it as glue.
    """

    zone: str = "cluster.local"
    ttl: int = DEFAULT_TTL
    ns_address: str | None = None
    labels: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", split_name(self.zone))

    @property
    def origin(self) -> str:
        return ".".join(self.labels) + "."

    @property
    def ns_name(self) -> str:
        return "ns.dns." + self.origin


@dataclass
class _Outcome:
    """The sections of an authoritative answer before they are packed."""

    rcode: int = RCODE.NOERROR
    answers: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)


def answer(index: RecordIndex, query: DNSRecord, *, config: ZoneConfig | None = None) -> DNSRecord:
    """The reply to a parsed query (never raises for any query dnslib can parse)."""
    config = config or ZoneConfig()
    refusal = _check_query(query)
    if refusal is not None:
        return _skeleton(query, rcode=refusal, authoritative=False)
    question = query.q
    labels = _labels(question.qname)
    try:
        request = parse_labels(labels, zone=config.labels)
    except NotInZone:
        return _skeleton(query, rcode=RCODE.REFUSED, authoritative=False)
    except InvalidName:
        outcome = _ns_name(labels, question, config) or _Outcome(RCODE.NXDOMAIN)
    else:
        outcome = _resolve(index, request, question, config)
    return _authoritative(query, outcome, index=index, config=config)


def answer_wire(index: RecordIndex, data: bytes, *,
                config: ZoneConfig | None = None) -> bytes | None:
    """The reply to a query as it came off the wire, or None to drop it.

    Responses are dropped (a reply to a reply could loop); anything with a
    whole header that does not parse gets FORMERR with the query's id.
    """
    if len(data) < HEADER_SIZE or data[2] & 0x80:
        return None
    try:
        query = DNSRecord.parse(data)
    # dnslib raises assorted exception types on malformed input; all mean FORMERR.
    except Exception:
        return formerr(data)
    return bytes(answer(index, query, config=config).pack())


def formerr(data: bytes) -> bytes:
    """A header-only FORMERR reply to the packet whose header starts ``data``."""
    header = DNSHeader(id=int.from_bytes(data[:2], "big"), qr=1, rcode=RCODE.FORMERR)
    header.opcode = (data[2] >> 3) & 0x0F
    return bytes(DNSRecord(header=header).pack())


def _check_query(query: DNSRecord) -> int | None:
    if query.header.opcode != OPCODE.QUERY:
        return int(RCODE.NOTIMP)
    if len(query.questions) != 1:
        return int(RCODE.FORMERR)
    if query.q.qclass not in (CLASS.IN, CLASS_ANY):
        return int(RCODE.REFUSED)
    return None


def _labels(qname: DNSLabel) -> tuple[str, ...]:
    # ASCII-only lower-casing, as DNS compares names; other bytes never match.
    return tuple(bytes(label).lower().decode("ascii", "replace") for label in qname.label)


def _resolve(index: RecordIndex, request: Request, question: DNSQuestion,
             config: ZoneConfig) -> _Outcome:
    qtype, qname = int(question.qtype), question.qname
    if request.level is Level.APEX:
        return _apex(qtype, index=index, config=config)
    if request.level is Level.KIND:
        return _Outcome()  # svc.<zone>, pod.<zone>: empty non-terminals
    if request.level is Level.NAMESPACE:
        exists = index.has_namespace(request.namespace)
        return _Outcome() if exists else _Outcome(RCODE.NXDOMAIN)
    if request.level is Level.NAME and request.kind is Kind.SERVICE:
        entry = index.service(request.namespace, request.name)
        if entry is None:
            return _Outcome(RCODE.NXDOMAIN)
        return _Outcome(answers=_address_records(entry, qname, qtype, config.ttl))
    # Pods, endpoints and SRV names are parsed but not yet answered.
    return _Outcome(RCODE.NXDOMAIN)


def _address_records(entry: ServiceEntry, qname: DNSLabel, qtype: int, ttl: int) -> list[RR]:
    records: list[RR] = []
    if qtype in (QTYPE.A, QTYPE.ANY):
        records += [RR(qname, QTYPE.A, rdata=A(str(ip)), ttl=ttl) for ip in entry.addresses(4)]
    if qtype in (QTYPE.AAAA, QTYPE.ANY):
        records += [RR(qname, QTYPE.AAAA, rdata=AAAA(str(ip)), ttl=ttl)
                    for ip in entry.addresses(6)]
    return records


def _apex(qtype: int, *, index: RecordIndex, config: ZoneConfig) -> _Outcome:
    outcome = _Outcome()
    if qtype in (QTYPE.SOA, QTYPE.ANY):
        outcome.answers.append(_soa(index, config))
    if qtype in (QTYPE.NS, QTYPE.ANY):
        outcome.answers.append(RR(config.origin, QTYPE.NS, rdata=NS(config.ns_name),
                                  ttl=config.ttl))
        outcome.additional += _ns_glue(config)
    return outcome


def _ns_name(labels: tuple[str, ...], question: DNSQuestion,
             config: ZoneConfig) -> _Outcome | None:
    """The answer for the name server's own name, if that is what was asked."""
    if config.ns_address is None or labels != split_name(config.ns_name):
        return None
    if question.qtype not in (QTYPE.A, QTYPE.ANY):
        return _Outcome()
    return _Outcome(answers=[RR(question.qname, QTYPE.A,
                                rdata=A(config.ns_address), ttl=config.ttl)])


def _ns_glue(config: ZoneConfig) -> list[RR]:
    if config.ns_address is None:
        return []
    return [RR(config.ns_name, QTYPE.A, rdata=A(config.ns_address), ttl=config.ttl)]


def _soa(index: RecordIndex, config: ZoneConfig) -> RR:
    # The serial follows the index, so a changed zone shows a new serial.
    times = (index.version & 0xFFFFFFFF, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, config.ttl)
    rdata = SOA(config.ns_name, "hostmaster." + config.origin, times)
    return RR(config.origin, QTYPE.SOA, rdata=rdata, ttl=config.ttl)


def _authoritative(query: DNSRecord, outcome: _Outcome, *, index: RecordIndex,
                   config: ZoneConfig) -> DNSRecord:
    reply = _skeleton(query, rcode=outcome.rcode, authoritative=True)
    for record in outcome.answers:
        reply.add_answer(record)
    if not outcome.answers:
        # NXDOMAIN and NODATA alike carry the SOA: its TTL bounds negative caching.
        reply.add_auth(_soa(index, config))
    for record in outcome.additional:
        reply.add_ar(record)
    return reply


def _skeleton(query: DNSRecord, *, rcode: int, authoritative: bool) -> DNSRecord:
    header = DNSHeader(id=query.header.id, qr=1, aa=int(authoritative), rd=query.header.rd,
                       ra=0, rcode=rcode)
    header.opcode = query.header.opcode
    return DNSRecord(header=header, questions=list(query.questions))
