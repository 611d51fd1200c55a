"""Negative answers from forms, and the table's judgement of missing Service
names: the forms' bytes must be dnslib's for the same outcome, and a name
judged missing must be exactly what ``resolve`` calls NXDOMAIN, never
outliving the record that makes it exist.

Index: that of test_dns_answer (web.default, db.data, peers.default, ...).
"""

from __future__ import annotations

import pytest

from netplane.dns.answer import answer_wire, encode
from netplane.dns.index import RecordIndex
from netplane.dns.negative import form_for
from netplane.dns.parse import split_name
from netplane.dns.records import resolve
from netplane.dns.table import AnswerTable
from netplane.dns.wire import CLASS_IN, RType, name_to_wire
from netplane.dns.zone import ZoneConfig
from tests.unit.test_dns_answer import CONFIG, build_index, service

NEGATIVE_NAMES = [
    ("cluster.local.", RType.MX),  # NODATA at the apex
    ("svc.cluster.local.", RType.A),  # empty non-terminal
    ("default.svc.cluster.local.", RType.A),
    ("missing.default.svc.cluster.local.", RType.A),
    ("missing.default.svc.cluster.local.", RType.SRV),
    ("x.missing.default.svc.cluster.local.", RType.AAAA),
    ("_http._tcp.missing.nowhere.svc.cluster.local.", RType.SRV),
    ("a.b.c.d.e.web.default.svc.cluster.local.", RType.A),
    ("web.default.svc.cluster.local.", RType.MX),  # NODATA of a Service name
    ("google.com.cluster.local.", RType.A),
    ("x.pod.cluster.local.", RType.A),
    ("dns-version.cluster.local.", RType.A),
]


@pytest.mark.parametrize("recursion", [False, True])
@pytest.mark.parametrize(("qname", "qtype"), NEGATIVE_NAMES)
def test_forms_pack_as_dnslib_does(qname: str, qtype: RType, recursion: bool) -> None:
    index = build_index()
    labels = split_name(qname)
    outcome = resolve(index, labels, qtype, config=CONFIG)
    form = form_for(outcome, recursion=recursion)
    assert form is not None and form.covers(labels)
    wire = name_to_wire(labels)
    assert form.plain(wire, qtype) == encode(wire, qtype, CLASS_IN, outcome, recursion=recursion)


@pytest.mark.parametrize("qname", ["x.dns.cluster.local.", "a.hostmaster.cluster.local."])
def test_forms_step_aside_where_the_packer_compresses_against_the_question(qname: str) -> None:
    labels = split_name(qname)
    form = form_for(resolve(RecordIndex(), labels, RType.A, config=CONFIG), recursion=False)
    assert form is not None and not form.covers(labels)


def test_reverse_zone_negatives_have_no_form() -> None:
    # The SOA's names lie outside the reverse zone: written whole, not this shape.
    labels = split_name("9.9.96.10.in-addr.arpa.")
    assert form_for(resolve(RecordIndex(), labels, RType.PTR, config=CONFIG),
                    recursion=False) is None


def key(qname: str, qtype: int = RType.A, qclass: int = CLASS_IN) -> bytes:
    return name_to_wire(split_name(qname)) + qtype.to_bytes(2, "big") + qclass.to_bytes(2, "big")


MISSING = [
    "missing.default.svc.cluster.local",
    "missing.nowhere.svc.cluster.local",
    "peer-0.missing.default.svc.cluster.local",
    "_http._tcp.missing.default.svc.cluster.local",
    "a.b.c.missing.default.svc.cluster.local",
    "web.data.svc.cluster.local",  # a Service name, in another namespace
]
NOT_JUDGED = [
    "web.default.svc.cluster.local",  # exists
    "nope.web.default.svc.cluster.local",  # below an existing Service: resolve decides
    "default.svc.cluster.local",  # a namespace: one label under svc
    "svc.cluster.local",
    "x.default.pod.cluster.local",
    "missing.default.svc.cluster.local.example.com",
    "web.default.svc.other.local",
]


@pytest.mark.parametrize("qname", MISSING)
def test_missing_service_names_are_nxdomain_like_resolve_says(qname: str) -> None:
    index = build_index()
    table = AnswerTable(index, config=CONFIG)
    form = table.negative(key(qname))
    assert form is not None
    query = bytes.fromhex("abcd 0100 0001 0000 0000 0000") + key(qname)
    assert form.reply(query, len(query), False) == answer_wire(index, query, config=CONFIG)
    assert resolve(index, split_name(qname), RType.A, config=CONFIG).rcode.name == "NXDOMAIN"


@pytest.mark.parametrize("qname", NOT_JUDGED)
def test_other_names_are_left_to_resolve(qname: str) -> None:
    assert AnswerTable(build_index(), config=CONFIG).negative(key(qname)) is None


@pytest.mark.parametrize("wire", [
    b"\x07missing\x07default\x03svc\x07cluster\x05local\x00",  # sound, for contrast
    b"\x08missing\x07default\x03svc\x07cluster\x05local\x00",  # a label runs into the next
    b"\x07missing\x00default\x03svc\x07cluster\x05local\x00",  # an empty label inside
    b"\x07missing\xc0\x0c\x03svc\x07cluster\x05local\x00",  # a pointer
    b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 57
    + b"\x07default\x03svc\x07cluster\x05local\x00",  # over 255 octets
])
def test_malformed_names_are_not_judged(wire: bytes) -> None:
    table = AnswerTable(build_index(), config=CONFIG)
    sound = wire.startswith(b"\x07missing\x07")
    assert (table.negative(wire + b"\x00\x01\x00\x01") is not None) is sound


def test_other_classes_are_not_judged() -> None:
    table = AnswerTable(build_index(), config=CONFIG)
    assert table.negative(key("missing.default.svc.cluster.local", qclass=3)) is None


def test_a_record_change_ends_the_judgement_at_once() -> None:
    index = build_index()
    table = AnswerTable(index, config=CONFIG)
    name = "new.default.svc.cluster.local"
    assert table.negative(key(name)) is not None
    index.on_service(None, service("new", clusterIP="10.96.0.40"))
    assert table.negative(key(name)) is None
    assert table.negative(key("peer-0.new.default.svc.cluster.local")) is None
    assert table.get(key(name)) is not None
    index.on_service(service("new", clusterIP="10.96.0.40"), None)
    assert table.get(key(name)) is None
    assert table.negative(key(name)) is not None


def test_a_reverse_zone_over_the_cluster_zone_turns_the_judgement_off() -> None:
    # A cluster zone inside in-addr.arpa would put svc.<zone> in a reverse zone.
    config = ZoneConfig(zone="10.in-addr.arpa", service_cidrs=("10.0.0.0/8",))
    table = AnswerTable(RecordIndex(), config=config)
    assert table.negative(key("missing.default.svc.10.in-addr.arpa")) is None
