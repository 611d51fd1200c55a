"""Kubernetes protobuf request bodies, read into the JSON shape of an object.

kubectl's typed commands send ``application/vnd.kubernetes.protobuf``: the
magic ``k8s\\x00``, then a ``runtime.Unknown`` envelope naming apiVersion and
kind around the object's own message. The rest of netplane works on the
JSON form, so this module gives exactly that: what ``json.loads`` of the same
object sent as JSON would return (bar ``creationTimestamp: null`` and other
nulls, which are left out).

The wire format itself is parsed by the ``protobuf`` library from message
classes built at import time out of :mod:`netplane.api.protoschema`; this
module only walks the result. Data this table cannot name is refused
(:class:`UnsupportedField`), never dropped.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, unknown_fields
from google.protobuf.message import DecodeError, Message

from netplane.api import protoschema
from netplane.api.protoschema import SPECIALS, Field

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
_ENVELOPE = "runtime.Unknown"
_PACKAGE = "netplane.wire"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_GROUP_START = 3
# Types whose zero value Go's JSON leaves out under ``omitempty`` (structs are
# always written; IntOrString 0 is left out too: it means "unset" everywhere).
_OMITTED_WHEN_ZERO = frozenset({"s", "b", "bool", "i32", "i64", "f64", "ios"})

_FDP = descriptor_pb2.FieldDescriptorProto
_WIRE_TYPES = {"s": _FDP.TYPE_BYTES, "b": _FDP.TYPE_BYTES, "bool": _FDP.TYPE_BOOL,
               "i32": _FDP.TYPE_INT32, "i64": _FDP.TYPE_INT64, "f64": _FDP.TYPE_DOUBLE}


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf object (a 400)."""


class UnsupportedField(ProtobufError):
    """Well-formed, but it carries data in a field netplane cannot name (a 415)."""


def decode(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object in a protobuf request body."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic "
                            "bytes 'k8s\\x00'")
    parsed = _parse(_ENVELOPE, body[len(MAGIC):])
    envelope = _object(parsed, _ENVELOPE)
    type_meta = envelope.get("typeMeta", {})
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    _check_encoding(envelope)
    message = protoschema.KINDS.get((api_version, kind)) or protoschema.OPTIONS.get(kind)
    if message is None:
        raise ProtobufError(f"the protobuf body holds {api_version or '?'}/{kind or '?'}, "
                            "a kind netplane cannot read from protobuf; send it as JSON")
    obj = _object(_parse(message, parsed.f2), message)  # type: ignore[attr-defined]
    return {"apiVersion": api_version, "kind": kind, **obj}


def _check_encoding(envelope: dict[str, Any]) -> None:
    encoding, ctype = envelope.get("contentEncoding", ""), envelope.get("contentType", "")
    if encoding:
        raise UnsupportedField(f"the protobuf envelope's content encoding {encoding!r} is "
                               "not supported")
    if ctype and ctype != CONTENT_TYPE:
        raise UnsupportedField(f"the protobuf envelope holds {ctype!r}, not {CONTENT_TYPE}")


# -- message classes from the table --

def _proto_name(message: str) -> str:
    return message.replace(".", "_")


def _entry_name(value_type: str) -> str:
    return f"MapEntry_{_proto_name(value_type)}"


def _add_field(msg: descriptor_pb2.DescriptorProto, number: int, ftype: str, *,
               repeated: bool = False, message: str = "") -> None:
    """Declare one field; strings are bytes so that UTF-8 is checked here."""
    label = _FDP.LABEL_REPEATED if repeated else _FDP.LABEL_OPTIONAL
    fd = msg.field.add(name=f"f{number}", number=number, label=label)
    if ftype in _WIRE_TYPES and not message:
        fd.type = _WIRE_TYPES[ftype]
        return
    fd.type = _FDP.TYPE_MESSAGE
    fd.type_name = f".{_PACKAGE}.{message or _proto_name(SPECIALS.get(ftype, ftype))}"


def _file() -> descriptor_pb2.FileDescriptorProto:
    """One proto2 file with every message of the table and one entry message per map type."""
    fp = descriptor_pb2.FileDescriptorProto(name="netplane/wire.proto", package=_PACKAGE,
                                            syntax="proto2")
    entries: set[str] = set()
    for name, fields in protoschema.messages().items():
        msg = fp.message_type.add(name=_proto_name(name))
        for f in fields.values():
            if f.mapped:
                entries.add(f.type)
                _add_field(msg, f.number, f.type, repeated=True, message=_entry_name(f.type))
            else:
                _add_field(msg, f.number, f.type, repeated=f.repeated)
    for value_type in sorted(entries):
        msg = fp.message_type.add(name=_entry_name(value_type))
        _add_field(msg, 1, "s")
        _add_field(msg, 2, value_type)
    return fp


def message_classes(fp: descriptor_pb2.FileDescriptorProto) -> dict[str, type[Message]]:
    """The message classes of a file built from a table, by message name."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fp)
    return {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"{fp.package}.{m.name}")) for m in fp.message_type}


@functools.cache
def _classes() -> dict[str, type[Message]]:
    return message_classes(_file())


def _parse(message: str, data: bytes) -> Message:
    msg = _classes()[_proto_name(message)]()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise ProtobufError(f"the protobuf body is malformed in "
                            f"{protoschema.display(message)}: {e}") from None
    return msg


# -- walking a parsed message into JSON --

def _object(msg: Message, message: str) -> dict[str, Any]:
    """A message's JSON object: zero values left out unless they are data."""
    table = protoschema.messages()[message]
    _check_unknown(msg, message, table)
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        field = table[fd.number]
        if field.inline:
            out.update(_object(value, field.type))
        elif field.mapped:
            out[field.json] = _map(value, field, message)
        elif field.repeated:
            out[field.json] = [_element(field.type, v, message) for v in value]
        elif (converted := _single(field, value, message)) is not None:
            out[field.json] = converted
    return out


def _single(field: Field, value: Any, message: str) -> Any:
    """One non-list value, or None when Go's JSON would leave it out."""
    converted = _element(field.type, value, message)
    if field.keep_zero or field.is_message or field.type not in _OMITTED_WHEN_ZERO:
        return converted
    return converted if converted not in ("", 0, False) else None


def _element(ftype: str, value: Any, where: str) -> Any:
    if ftype == "s":
        return _text(value, where)
    if ftype == "b":
        return base64.b64encode(value).decode()
    if ftype in SPECIALS:
        return _special(ftype, value)
    if isinstance(value, Message):
        return _object(value, ftype)
    return value


def _map(entries: Any, field: Field, message: str) -> dict[str, Any]:
    """A Go map: entries {1 key, 2 value}; the last of a repeated key wins."""
    out: dict[str, Any] = {}
    where = f"{message}.{field.json}"
    table = {1: Field(1, "key", "s"), 2: Field(2, "value", field.type)}
    for entry in entries:
        _check_unknown(entry, where, table)
        out[_text(entry.f1, where)] = _element(field.type, entry.f2, where)
    return out


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise ProtobufError(f"a string in {protoschema.display(where)} is not valid "
                            "UTF-8") from None


# -- the special types --

def _special(ftype: str, msg: Any) -> Any:
    message = SPECIALS[ftype]
    _check_unknown(msg, message, protoschema.messages()[message])
    if ftype == "ios":
        return _text(msg.f3, message) if msg.f1 == 1 else msg.f2
    if ftype == "qty":
        return _text(msg.f1, message) or "0"
    if ftype == "dur":
        return go_duration(msg.f1)
    if ftype == "strs":
        return [_text(item, message) for item in msg.f1]
    if ftype in ("time", "mtime"):
        return _time(msg, micro=ftype == "mtime") if msg.ListFields() else None
    return _embedded(msg.f1)


def _time(msg: Any, *, micro: bool) -> str:
    """RFC 3339 in UTC, as metav1.Time (seconds) and MicroTime (microseconds) write it."""
    try:
        when = _EPOCH + dt.timedelta(seconds=msg.f1, microseconds=msg.f2 // 1000)
    except OverflowError:
        raise ProtobufError(f"the time {msg.f1}s since 1970 is out of range") from None
    if not 1 <= when.year <= 9999:
        raise ProtobufError(f"the time {msg.f1}s since 1970 is out of range")
    spec = "microseconds" if micro else "seconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")


def _embedded(raw: bytes) -> Any:
    """A RawExtension or FieldsV1 holds JSON bytes; absent is JSON null."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ProtobufError(f"an embedded object is not valid JSON: {e}") from None


def go_duration(ns: int) -> str:
    """Nanoseconds as Go's ``time.Duration.String`` writes them (``1h2m3.5s``)."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 1000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_decimal(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_decimal(u, 6)}ms"
    minutes, rest = divmod(u, 60_000_000_000)
    hours, minutes = divmod(minutes, 60)
    text = f"{_decimal(rest, 9)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _decimal(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10 ** digits)
    fraction = f"{frac:0{digits}d}".rstrip("0")
    return f"{whole}.{fraction}" if fraction else str(whole)


# -- fields the table does not know --

def _check_unknown(msg: Message, message: str, table: dict[int, Field]) -> None:
    """Refuse data in unknown fields; a known number with the wrong wire type is malformed."""
    unknowns = unknown_fields.UnknownFieldSet(msg)
    for i in range(len(unknowns)):
        unknown = unknowns[i]
        number, wire_type = unknown.field_number, unknown.wire_type
        where = protoschema.display(message)
        if number in table or wire_type == _GROUP_START:
            raise ProtobufError(f"the protobuf body is malformed: field {number} of {where} "
                                f"has wire type {wire_type}, which Kubernetes does not send "
                                "there")
        if unknown.data in (0, b""):
            continue
        raise UnsupportedField(f"the protobuf body sets field {number} of {where}, which "
                               "netplane does not know; send the object as JSON instead "
                               "(kubectl create ... --dry-run=client -o yaml | kubectl "
                               "create -f -)")
