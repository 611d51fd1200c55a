"""Negative answers without packing: NXDOMAIN and NODATA replies, whose only
record is the zone's SOA in authority, differ from one name of the zone to
another only in the question and in where the SOA's names point into it.

A ``NegativeForm`` is such a reply for one zone, response code and
recursion flag with the question left out. ``reply`` splices a client's
question in and points the SOA's owner and the zone's name inside its
MNAME and RNAME at the zone's name within that question: the very bytes
dnslib packs for the same outcome (the tests compare them), for a few byte
operations instead of a packing. A form exists only where that holds.
"""

from __future__ import annotations

import functools

from netplane.dns.parse import split_name
from netplane.dns.records import Outcome, Record
from netplane.dns.wire import (
    CLASS_IN,
    HEADER_SIZE,
    Rcode,
    RType,
    copied_bits,
    header_variants,
    name_to_wire,
    opt_record,
)

_QR, _AA, _RA = 0x80, 0x04, 0x80
_POINTER = 0xC000  # offsets of names in a reply under 512 bytes always fit its 14 bits


class NegativeForm:
    """The reply to any name at or under ``zone`` with no records but the SOA.

    ``avoid`` holds labels that must not sit right under the zone in the
    question: there the packer would compress the SOA's MNAME or RNAME
    against the question itself, and the form's bytes would differ.
    """

    __slots__ = ("_edns_heads", "_heads", "_parts", "_tails", "avoid", "rcode", "zone_depth",
                 "zone_size")

    def __init__(self, zone: tuple[str, ...], parts: tuple[bytes, bytes, bytes, bytes],
                 avoid: frozenset[str], *, rcode: Rcode, recursion: bool) -> None:
        self.zone_depth, self.zone_size = len(zone), len(name_to_wire(zone))
        self.avoid, self.rcode = avoid, rcode
        self._parts = parts
        self._tails: dict[int, tuple[bytes, bytes]] = {}
        flags = bytes((_QR | _AA, (_RA if recursion else 0) | int(rcode)))
        self._heads = header_variants(flags + b"\x00\x01\x00\x00\x00\x01\x00\x00")
        self._edns_heads = header_variants(flags + b"\x00\x01\x00\x00\x00\x01\x00\x01")

    def covers(self, labels: tuple[str, ...]) -> bool:
        """Whether the form is exact for a name (lower-cased labels) under its zone."""
        under = len(labels) - self.zone_depth - 1  # the label right under the zone
        return under < 0 or labels[under] not in self.avoid

    def reply(self, data: bytes, qend: int, edns: bool) -> bytes:
        """The reply to a query whose question ``data[12:qend]`` names something
        under the form's zone (case aside; the caller knows it does)."""
        tails = self._tails.get(qend)
        if tails is None:
            tails = self._tails[qend] = self._tails_at(qend - 4 - self.zone_size)
        heads = self._edns_heads if edns else self._heads
        return data[:2] + heads[copied_bits(data)] + data[HEADER_SIZE:qend] + tails[edns]

    def plain(self, name_wire: bytes, qtype: int, qclass: int = CLASS_IN) -> bytes:
        """The reply as ``encode`` makes it (id 0, RD and CD clear) for a lower-cased name."""
        question = name_wire + qtype.to_bytes(2, "big") + qclass.to_bytes(2, "big")
        return self.reply(bytes(HEADER_SIZE) + question, HEADER_SIZE + len(question), False)

    def layout(self) -> tuple[tuple[bytes, ...], tuple[bytes, ...], int,
                              tuple[bytes, bytes, bytes], bytes]:
        """What ``reply`` puts together, for the compiled fast path: the heads
        without and with EDNS0 (by ``copied_bits``), the zone's wire size,
        and the tail as three segments, each after a pointer to the zone's
        name in the question, then the OPT record sent with EDNS0."""
        owner_fields, mname, rname, numbers = self._parts
        return (self._heads, self._edns_heads, self.zone_size,
                (owner_fields + mname, rname, numbers), opt_record())

    def _tails_at(self, zone_at: int) -> tuple[bytes, bytes]:
        pointer = (_POINTER | zone_at).to_bytes(2, "big")
        owner_fields, mname, rname, numbers = self._parts
        tail = pointer + owner_fields + mname + pointer + rname + pointer + numbers
        return tail, tail + opt_record()


def form_for(outcome: Outcome, *, recursion: bool) -> NegativeForm | None:
    """The form of a negative outcome (no records but one SOA), if it has one."""
    if outcome.answer or outcome.additional or len(outcome.authority) != 1:
        return None
    soa = outcome.authority[0]
    if soa.rtype is not RType.SOA or not outcome.authoritative:
        return None
    return negative_form(soa, rcode=outcome.rcode, recursion=recursion)


@functools.lru_cache(maxsize=64)
def negative_form(soa: Record, *, rcode: Rcode, recursion: bool) -> NegativeForm | None:
    """The form for negative answers carrying ``soa`` (one per zone and flags);
    None when its names are not all under the zone as the packer would write them."""
    zone = split_name(soa.name)
    mname, rname = (split_name(str(name)) for name in soa.rdata[:2])
    inner_m, inner_r = _under(mname, zone), _under(rname, zone)
    if inner_m is None or inner_r is None or (inner_m and inner_r and inner_m[-1] == inner_r[-1]):
        return None  # written whole, or RNAME compressed against MNAME: not this shape
    numbers = b"".join(int(v).to_bytes(4, "big") for v in soa.rdata[2:7])
    mname_labels, rname_labels = name_to_wire(inner_m)[:-1], name_to_wire(inner_r)[:-1]
    rdata_size = len(mname_labels) + 2 + len(rname_labels) + 2 + len(numbers)
    owner_fields = (RType.SOA.to_bytes(2, "big") + CLASS_IN.to_bytes(2, "big")
                    + soa.ttl.to_bytes(4, "big") + rdata_size.to_bytes(2, "big"))
    avoid = frozenset(inner[-1] for inner in (inner_m, inner_r) if inner)
    return NegativeForm(zone, (owner_fields, mname_labels, rname_labels, numbers), avoid,
                        rcode=rcode, recursion=recursion)


def _under(name: tuple[str, ...], zone: tuple[str, ...]) -> tuple[str, ...] | None:
    """The labels of ``name`` above ``zone``, or None when it is not at or under it."""
    if len(name) < len(zone) or name[len(name) - len(zone):] != zone:
        return None
    return name[:len(name) - len(zone)]
