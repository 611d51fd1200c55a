"""DNS messages at the byte level: the hot path's question parser and reply patcher.

Only what the server needs on every query lives here: read the header and the
one question without building objects per label, find an EDNS0 OPT record,
and turn a pre-built reply into the reply for one query by patching its id,
flags and question spelling. Building replies from records is ``encode``'s
job; nothing here follows a compression pointer, so no packet can make the
parser loop.

``simple_question`` recognises, by a few byte comparisons, the shape nearly
every stub resolver sends (one question, at most a bare OPT record), so that
the server can answer those by exact key without building a ``Query``.
"""

from __future__ import annotations

import enum
import functools

HEADER_SIZE = 12
MAX_NAME_LENGTH = 255  # RFC 1035 3.1, counting length octets
MAX_LABEL_LENGTH = 63
CLASS_IN = 1
CLASS_ANY = 255
PLAIN_UDP_SIZE = 512  # RFC 1035 4.2.1: the limit without EDNS0
DEFAULT_UDP_SIZE = 1232  # what we advertise and the most we send: fits any common MTU

_QR, _TC, _RD, _AA = 0x80, 0x02, 0x01, 0x04
_CD, _RA = 0x10, 0x80
_OPCODE_SHIFT, _OPCODE_MASK = 3, 0x0F
_POINTER = 0xC0


class RType(enum.IntEnum):
    """Record types the server knows by name (others are answered by number)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    ANY = 255


class Rcode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16  # extended: lives partly in the OPT record


class FormatError(ValueError):
    """The message cannot be read: reply FORMERR (or drop it)."""


class Query:
    """One parsed query: where its question ends, its lookup key and EDNS0 state.

    ``key`` is the lower-cased question name in wire form followed by the raw
    type and class, so it can index pre-built replies without decoding.
    """

    __slots__ = ("data", "edns", "edns_version", "key", "name_end", "qclass", "qend",
                 "qtype", "udp_size")

    def __init__(self, data: bytes, name_end: int) -> None:
        self.data = data
        self.name_end = name_end
        self.qend = name_end + 4
        self.qtype = int.from_bytes(data[name_end:name_end + 2], "big")
        self.qclass = int.from_bytes(data[name_end + 2:self.qend], "big")
        self.key = data[HEADER_SIZE:name_end].lower() + data[name_end:self.qend]
        self.edns = False
        self.edns_version = 0
        self.udp_size = PLAIN_UDP_SIZE

    @property
    def opcode(self) -> int:
        return (self.data[2] >> _OPCODE_SHIFT) & _OPCODE_MASK

    @property
    def name_wire(self) -> bytes:
        """The question name as sent (original case)."""
        return self.data[HEADER_SIZE:self.name_end]

    def labels(self) -> tuple[str, ...]:
        """Lower-cased labels of the question name (latin-1, so any byte decodes)."""
        return labels_of(self.data[HEADER_SIZE:self.name_end].lower())

    def udp_limit(self, *, cap: int = DEFAULT_UDP_SIZE) -> int:
        """The largest UDP reply this client takes (RFC 6891 6.2.5: never below 512)."""
        return udp_limit(self.udp_size if self.edns else NO_EDNS, cap=cap)


_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # counts: one question, nothing else
_WITH_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # one question and one additional record
_BARE_OPT_START = b"\x00\x00\x29"  # the question's last byte, then OPT's root owner and type
_BARE_OPT_SIZE = 11
NO_EDNS = -1


def simple_question(data: bytes) -> tuple[int, int] | None:
    """Where the question ends and the client's EDNS0 UDP size (``NO_EDNS``
    without OPT), for a standard query with one question and either nothing
    after it or only an OPT record of version 0 without options; None for
    anything else (``parse_query`` reads those).

    The name is not read: a caller that finds ``data[12:qend]`` by exact
    (lower-cased) key among valid names, or checks it, knows the message
    has exactly this layout, since a name's end is fixed by its labels.
    """
    if len(data) < HEADER_SIZE + 5 or data[2] & 0xF8:
        return None  # short, a response or another opcode
    counts = data[4:HEADER_SIZE]
    if counts == _ONE_QUESTION:
        return len(data), NO_EDNS
    if (counts == _WITH_OPT and len(data) >= HEADER_SIZE + 5 + _BARE_OPT_SIZE
            and data[-11:-8] == _BARE_OPT_START and data[-5] == 0 and data[-2:] == b"\x00\x00"):
        return len(data) - _BARE_OPT_SIZE, (data[-8] << 8) | data[-7]
    return None


def udp_limit(udp_size: int, *, cap: int = DEFAULT_UDP_SIZE) -> int:
    """The largest UDP reply for a client's EDNS0 size (RFC 6891 6.2.5: never below 512)."""
    if udp_size == NO_EDNS:
        return PLAIN_UDP_SIZE
    return max(PLAIN_UDP_SIZE, min(udp_size, cap))


def is_response(data: bytes) -> bool:
    return len(data) > 2 and bool(data[2] & _QR)


def parse_query(data: bytes) -> Query:
    """Parse a query with one question; raises FormatError on anything unreadable.

    The caller drops messages shorter than a header and responses before this.
    """
    if type(data) is not bytes:
        data = bytes(data)  # keys and slices must be hashable bytes
    if int.from_bytes(data[4:6], "big") != 1:
        raise FormatError("a query must carry exactly one question")
    name_end = _name_end(data, HEADER_SIZE, allow_pointer=False)
    if name_end + 4 > len(data):
        raise FormatError("question ends early")
    query = Query(data, name_end)
    counts = [int.from_bytes(data[i:i + 2], "big") for i in (6, 8, 10)]
    if counts[0] or counts[1] or counts[2]:
        _read_opt(query, counts)
    return query


def _read_opt(query: Query, counts: list[int]) -> None:
    data, pos = query.data, query.qend
    for section, count in enumerate(counts):
        for _ in range(count):
            rr = read_record(data, pos)
            if section == 2 and rr.rtype == RType.OPT:
                if query.edns or data[pos] != 0:
                    raise FormatError("more than one OPT record, or one not at the root")
                query.edns = True
                query.udp_size = rr.rclass
                query.edns_version = (rr.ttl >> 16) & 0xFF
            pos = rr.end


class RecordSpan:
    """Where one resource record lies in a message, and its fixed fields."""

    __slots__ = ("end", "rclass", "rtype", "start", "ttl", "ttl_offset")

    def __init__(self, start: int, fixed: int, data: bytes) -> None:
        self.start = start
        self.rtype = int.from_bytes(data[fixed:fixed + 2], "big")
        self.rclass = int.from_bytes(data[fixed + 2:fixed + 4], "big")
        self.ttl_offset = fixed + 4
        self.ttl = int.from_bytes(data[fixed + 4:fixed + 8], "big")
        self.end = fixed + 10 + int.from_bytes(data[fixed + 8:fixed + 10], "big")


def read_record(data: bytes, pos: int) -> RecordSpan:
    """The record starting at ``pos``; raises FormatError if it runs past the end."""
    fixed = _name_end(data, pos, allow_pointer=True)
    if fixed + 10 > len(data):
        raise FormatError("record header ends early")
    span = RecordSpan(pos, fixed, data)
    if span.end > len(data):
        raise FormatError("record data ends early")
    return span


def skip_question(data: bytes) -> int:
    """The offset just past the (single) question of a message."""
    return _name_end(data, HEADER_SIZE, allow_pointer=True) + 4


def _name_end(data: bytes, pos: int, *, allow_pointer: bool) -> int:
    start, size = pos, len(data)
    while True:
        if pos >= size:
            raise FormatError("name runs past the end")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length & _POINTER == _POINTER and allow_pointer:
            if pos + 2 > size:
                raise FormatError("pointer runs past the end")
            return pos + 2  # the name goes on elsewhere; skipping needs no more
        if length > MAX_LABEL_LENGTH:
            raise FormatError("bad label length or compression pointer")
        pos += length + 1
    if pos - start > MAX_NAME_LENGTH:
        raise FormatError("name longer than 255 octets")
    return pos


def labels_of(name: bytes) -> tuple[str, ...]:
    """Labels of an uncompressed wire-format name (without pointers)."""
    labels: list[str] = []
    pos = 0
    while pos < len(name) and name[pos]:
        length = name[pos]
        labels.append(name[pos + 1:pos + 1 + length].decode("latin-1"))
        pos += length + 1
    return tuple(labels)


def name_to_wire(labels: tuple[str, ...]) -> bytes:
    """Wire form of a name given as labels (latin-1 round-trips any byte)."""
    out = bytearray()
    for label in labels:
        raw = label.encode("latin-1")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def with_opt(reply: bytes, *, udp_size: int = DEFAULT_UDP_SIZE) -> bytes:
    """The reply with our OPT record appended to its additional section."""
    arcount = int.from_bytes(reply[10:12], "big") + 1
    return reply[:10] + arcount.to_bytes(2, "big") + reply[12:] + opt_record(udp_size=udp_size)


def opt_record(*, udp_size: int = DEFAULT_UDP_SIZE, extended_rcode: int = 0) -> bytes:
    """Our OPT record: root owner, our UDP size, version 0, no options."""
    ttl = (extended_rcode >> 4) << 24
    return (b"\x00" + RType.OPT.to_bytes(2, "big") + udp_size.to_bytes(2, "big")
            + ttl.to_bytes(4, "big") + b"\x00\x00")


@functools.lru_cache(maxsize=4096)
def header_variants(header: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """A reply's header after the id (flags and counts) with the query's RD
    and CD copied in, indexed by ``copied_bits``. Replies share few headers,
    so these are computed once for all of them."""
    first, second, rest = header[0], header[1], header[2:]
    plain, rd = bytes((first, second)) + rest, bytes((first | _RD, second)) + rest
    cd, both = bytes((first, second | _CD)) + rest, bytes((first | _RD, second | _CD)) + rest
    return plain, rd, cd, both


def copied_bits(data: bytes) -> int:
    """The query's RD and CD bits as an index into ``header_variants``."""
    return (data[2] & _RD) | (2 if data[3] & _CD else 0)


class Prebuilt:
    """A reply ready to be patched for any query of the same (name, type, class).

    The question section inside is the lower-cased one; ``reply`` splices
    in the client's own spelling, which name compression then carries into
    every record owned by the question name. A reply is the query's id, one
    of ``heads`` (``edns_heads`` with EDNS0) by ``copied_bits``, the query's
    question, then ``tail`` (``edns_tail``): the compiled fast path reads
    these four as they are.
    """

    __slots__ = ("edns_heads", "edns_tail", "heads", "plain", "qend", "tail", "udp_size")

    def __init__(self, plain: bytes, *, udp_size: int = DEFAULT_UDP_SIZE) -> None:
        self.plain = plain
        self.udp_size = udp_size
        self.qend = skip_question(plain)
        self.tail = plain[self.qend:]
        self.edns_tail = self.tail + opt_record(udp_size=udp_size)
        self.heads = header_variants(plain[2:HEADER_SIZE])
        self.edns_heads = header_variants(with_opt(plain[:HEADER_SIZE])[2:HEADER_SIZE])

    @property
    def edns(self) -> bytes:
        """The reply with our OPT record, as sent to clients that speak EDNS0."""
        return with_opt(self.plain, udp_size=self.udp_size)

    def rcode(self) -> int:
        return self.plain[3] & 0x0F

    def reply(self, data: bytes, qend: int, edns: bool) -> bytes:
        """The whole reply, untruncated, to a query whose question is
        ``data[12:qend]`` and of this reply's (name, type, class)."""
        bits = (data[2] & 0x01) | ((data[3] >> 3) & 0x02)  # copied_bits, inline: per query
        if edns:
            return data[:2] + self.edns_heads[bits] + data[HEADER_SIZE:qend] + self.edns_tail
        return data[:2] + self.heads[bits] + data[HEADER_SIZE:qend] + self.tail


def finalize(built: Prebuilt, query: Query, *, limit: int) -> tuple[bytes, bool]:
    """The reply to ``query`` from a pre-built one, and whether it was truncated.

    Patches the id, copies RD and CD, puts back the question's spelling, adds
    OPT when the client spoke EDNS0, and truncates (TC, no records) when the
    reply exceeds ``limit``.
    """
    reply = built.reply(query.data, query.qend, query.edns)
    if len(reply) <= limit:
        return reply, False
    body = truncate(built.edns if query.edns else built.plain, built.qend, edns=query.edns)
    data = query.data
    return (data[:2] + header_variants(body[2:HEADER_SIZE])[copied_bits(data)]
            + data[HEADER_SIZE:query.qend] + body[built.qend:]), True


def truncate(reply: bytes, qend: int, *, edns: bool) -> bytes:
    """Header and question only, TC set (RFC 2181 9), OPT kept when EDNS0 is on."""
    counts = b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if edns else b"\x00\x00")
    tail = opt_record() if edns else b""
    return reply[:2] + bytes((reply[2] | _TC, reply[3])) + counts + reply[HEADER_SIZE:qend] + tail


def header_reply(data: bytes, rcode: Rcode) -> bytes:
    """A header-only reply (FORMERR, NOTIMP) keeping the query's id and opcode."""
    opcode_bits = data[2] & (_OPCODE_MASK << _OPCODE_SHIFT) if len(data) > 2 else 0
    rd = data[2] & _RD if len(data) > 2 else 0
    flags = bytes((_QR | opcode_bits | rd, int(rcode) & 0x0F))
    return data[:2].ljust(2, b"\x00") + flags + bytes(8)


def error_reply(query: Query, rcode: Rcode, *, recursion: bool = False) -> bytes:
    """A reply with the question and no records (REFUSED, SERVFAIL, BADVERS)."""
    data = query.data
    flags = bytes((_QR | (data[2] & (_OPCODE_MASK << _OPCODE_SHIFT)) | (data[2] & _RD),
                   (_RA if recursion else 0) | (int(rcode) & 0x0F)))
    arcount = b"\x00\x01" if query.edns else b"\x00\x00"
    tail = opt_record(extended_rcode=int(rcode)) if query.edns else b""
    return (data[:2] + flags + b"\x00\x01\x00\x00\x00\x00" + arcount
            + data[HEADER_SIZE:query.qend] + tail)

