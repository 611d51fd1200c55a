"""SPDY/3.1 framing, as much of it as Kubernetes' port-forward uses: the
server side's frame reader and writer over a byte stream. Pure.

A control frame is ``1 | version(15) | type(16) | flags(8) | length(24)`` then
its payload; a data frame is ``0 | stream id(31) | flags(8) | length(24)``
then data. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are name/value
pairs with 32-bit lengths, compressed by one zlib stream per direction for
the whole connection, primed with the protocol's fixed dictionary.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    CANCEL = 5
    INTERNAL_ERROR = 6


FLAG_FIN = 0x01
_HEADER = struct.Struct("!II")

# The header-compression dictionary of SPDY/3: length-prefixed words, then
# a run of common header values.
_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
    "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
    "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
    "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server",
    "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status",
)
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
    "charset=iso-8859-1,utf-,*,enq=0."
)


def _dictionary() -> bytes:
    words = [*_WORDS, "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
             "keep-alive", "origin"]
    return b"".join(struct.pack("!I", len(w)) + w.encode() for w in words) + _TAIL.encode()


DICTIONARY = _dictionary()


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False
    associated_to: int = 0
    priority: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class Headers:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    values: dict[int, int]


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


Frame = (SynStream | SynReply | Headers | RstStream | Settings | Ping | GoAway | WindowUpdate
         | Data)


class ProtocolError(Exception):
    pass


def encode_header_block(headers: dict[str, str]) -> bytes:
    out = [struct.pack("!I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out += [struct.pack("!I", len(n)), n, struct.pack("!I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, str]:
    """Name/value pairs; several values of one name (NUL-separated) are kept
    joined by NUL, as they came."""
    try:
        (count,), pos = struct.unpack_from("!I", block), 4
        out: dict[str, str] = {}
        for _ in range(count):
            (nlen,) = struct.unpack_from("!I", block, pos)
            name = block[pos + 4:pos + 4 + nlen].decode()
            pos += 4 + nlen
            (vlen,) = struct.unpack_from("!I", block, pos)
            out[name] = block[pos + 4:pos + 4 + vlen].decode()
            pos += 4 + vlen
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"bad header block: {e}") from None
    return out


class Reader:
    """Bytes in, frames out; keeps the inbound header decompressor."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            first, second = _HEADER.unpack_from(self._buf)
            length = second & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = second >> 24
            if first & 0x80000000:
                frame = self._control((first >> 16) & 0x7FFF, first & 0xFFFF, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(Data(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN)))
        return frames

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            return decode_header_block(self._inflate.decompress(block))
        except zlib.error as e:
            raise ProtocolError(f"header block does not decompress: {e}") from None

    def _control(self, version: int, kind: int, flags: int, p: bytes) -> Frame | None:
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version}, not {VERSION}")
        fin = bool(flags & FLAG_FIN)
        try:
            if kind == FrameType.SYN_STREAM:
                sid, assoc = struct.unpack_from("!II", p)
                return SynStream(sid & 0x7FFFFFFF, self._headers(p[10:]), fin,
                                 assoc & 0x7FFFFFFF, p[8] >> 5)
            if kind in (FrameType.SYN_REPLY, FrameType.HEADERS):
                (sid,) = struct.unpack_from("!I", p)
                cls = SynReply if kind == FrameType.SYN_REPLY else Headers
                return cls(sid & 0x7FFFFFFF, self._headers(p[4:]), fin)
            if kind == FrameType.RST_STREAM:
                sid, status = struct.unpack_from("!II", p)
                return RstStream(sid & 0x7FFFFFFF, status)
            if kind == FrameType.SETTINGS:
                (count,) = struct.unpack_from("!I", p)
                pairs = [struct.unpack_from("!II", p, 4 + 8 * i) for i in range(count)]
                return Settings({fid & 0xFFFFFF: value for fid, value in pairs})
            if kind == FrameType.PING:
                return Ping(struct.unpack_from("!I", p)[0])
            if kind == FrameType.GOAWAY:
                last, status = struct.unpack_from("!II", p)
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == FrameType.WINDOW_UPDATE:
                sid, delta = struct.unpack_from("!II", p)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as e:
            raise ProtocolError(f"short control frame of type {kind}: {e}") from None
        return None  # unknown control frames are ignored, as the protocol says


class Writer:
    """Frames in, bytes out; keeps the outbound header compressor."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    def _block(self, headers: dict[str, str]) -> bytes:
        raw = encode_header_block(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: FrameType, flags: int, payload: bytes) -> bytes:
        return _HEADER.pack(0x80000000 | VERSION << 16 | kind,
                            flags << 24 | len(payload)) + payload

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Data):
            return _HEADER.pack(frame.stream_id & 0x7FFFFFFF,
                                (FLAG_FIN if frame.fin else 0) << 24 | len(frame.data)) \
                + frame.data
        if isinstance(frame, SynStream):
            payload = struct.pack("!IIBB", frame.stream_id, frame.associated_to,
                                  frame.priority << 5, 0) + self._block(frame.headers)
            return self._control(FrameType.SYN_STREAM, FLAG_FIN if frame.fin else 0, payload)
        if isinstance(frame, SynReply | Headers):
            kind = FrameType.SYN_REPLY if isinstance(frame, SynReply) else FrameType.HEADERS
            payload = struct.pack("!I", frame.stream_id) + self._block(frame.headers)
            return self._control(kind, FLAG_FIN if frame.fin else 0, payload)
        if isinstance(frame, RstStream):
            return self._control(FrameType.RST_STREAM, 0,
                                 struct.pack("!II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = b"".join(struct.pack("!II", k, v) for k, v in frame.values.items())
            return self._control(FrameType.SETTINGS, 0,
                                 struct.pack("!I", len(frame.values)) + body)
        if isinstance(frame, Ping):
            return self._control(FrameType.PING, 0, struct.pack("!I", frame.ping_id))
        if isinstance(frame, GoAway):
            return self._control(FrameType.GOAWAY, 0,
                                 struct.pack("!II", frame.last_good_stream_id, frame.status))
        return self._control(FrameType.WINDOW_UPDATE, 0,
                             struct.pack("!II", frame.stream_id, frame.delta))
