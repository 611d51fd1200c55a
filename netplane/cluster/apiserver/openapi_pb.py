"""The OpenAPI v2 document as protobuf: gnostic's ``openapi.v2.Document``.

kubectl asks for ``/openapi/v2`` only as protobuf, and needs it where it
validates on the client (a ``kind: List`` file, whose items have no
server-side field validation to lean on) and for ``kubectl explain
--output=plaintext-openapiv2``. kube-apiserver turns its Swagger 2.0 JSON
into that message with gnostic; :func:`encode` does the same for the
document netplane serves, and :func:`decode` turns the bytes back into JSON
(the tests check the round trip).

The network is closed at run time, so gnostic's message and field numbers
(package ``openapi.v2``) live here as a table, in the form of
:mod:`netplane.api.protoschema`: ``Message: field; field; ...`` (indented
lines continue an entry), a field ``NUMBER name[:type]``. The name is the
Swagger JSON member the field holds, or one of: ``x-`` the vendor extensions,
``*`` every other member (a map of names), ``=`` the whole JSON value, ``~``
the whole value, one item or a list of them. Types: none for a string,
``bool``, ``i64``, ``f64``, a message, ``[T]`` a list, ``{T}`` named entries
(gnostic's ``NamedT``: 1 name, 2 value). ``A-B run`` numbers a shared run of
fields from A to B. A ``oneof`` message holds one of its fields, picked by
:data:`_CHOICE` from the JSON value. The classes are built from the table by
the ``protobuf`` library, so the wire format is the library's.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError, Message

from netplane.api import protobuf, protoschema

# What kube-apiserver answers (kubectl asks with an ``@`` before ``v1.0``).
CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
ACCEPTED = frozenset({CONTENT_TYPE,
                      "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
_PACKAGE = "openapi.v2"

# Runs of fields that several messages share, in order.
RUNS = {
    "primitive": "type; format; items:PrimitivesItems; collectionFormat; default:Any; "
                 "maximum:f64; exclusiveMaximum:bool; minimum:f64; exclusiveMinimum:bool; "
                 "maxLength:i64; minLength:i64; pattern; maxItems:i64; minItems:i64; "
                 "uniqueItems:bool; enum:[Any]; multipleOf:f64",
}

SCHEMA = """\
Document: 1 swagger; 2 info:Info; 3 host; 4 basePath; 5 schemes:[s]; 6 consumes:[s];
    7 produces:[s]; 8 paths:Paths; 9 definitions:Definitions;
    10 parameters:ParameterDefinitions; 11 responses:ResponseDefinitions;
    12 security:[SecurityRequirement]; 13 securityDefinitions:SecurityDefinitions;
    14 tags:[Tag]; 15 externalDocs:ExternalDocs; 16 x-:{Any}
Info: 1 title; 2 version; 3 description; 4 termsOfService; 5 contact:Contact;
    6 license:License; 7 x-:{Any}
Contact: 1 name; 2 url; 3 email; 4 x-:{Any}
License: 1 name; 2 url; 3 x-:{Any}
ExternalDocs: 1 description; 2 url; 3 x-:{Any}
Tag: 1 name; 2 description; 3 externalDocs:ExternalDocs; 4 x-:{Any}
Any: 2 yaml
Definitions: 1 *:{Schema}
Properties: 1 *:{Schema}
Schema: 1 $ref; 2 format; 3 title; 4 description; 5 default:Any; 6 multipleOf:f64;
    7 maximum:f64; 8 exclusiveMaximum:bool; 9 minimum:f64; 10 exclusiveMinimum:bool;
    11 maxLength:i64; 12 minLength:i64; 13 pattern; 14 maxItems:i64; 15 minItems:i64;
    16 uniqueItems:bool; 17 maxProperties:i64; 18 minProperties:i64; 19 required:[s];
    20 enum:[Any]; 21 additionalProperties:AdditionalPropertiesItem; 22 type:TypeItem;
    23 items:ItemsItem; 24 allOf:[Schema]; 25 properties:Properties; 26 discriminator;
    27 readOnly:bool; 28 xml:Xml; 29 externalDocs:ExternalDocs; 30 example:Any;
    31 x-:{Any}
oneof AdditionalPropertiesItem: 1 schema:Schema; 2 boolean:bool
TypeItem: 1 ~:[s]
ItemsItem: 1 ~:[Schema]
Xml: 1 name; 2 namespace; 3 prefix; 4 attribute:bool; 5 wrapped:bool; 6 x-:{Any}
FileSchema: 1 format; 2 title; 3 description; 4 default:Any; 5 required:[s]; 6 type;
    7 readOnly:bool; 8 externalDocs:ExternalDocs; 9 example:Any; 10 x-:{Any}
Paths: 1 x-:{Any}; 2 *:{PathItem}
PathItem: 1 $ref; 2 get:Operation; 3 put:Operation; 4 post:Operation; 5 delete:Operation;
    6 options:Operation; 7 head:Operation; 8 patch:Operation;
    9 parameters:[ParametersItem]; 10 x-:{Any}
Operation: 1 tags:[s]; 2 summary; 3 description; 4 externalDocs:ExternalDocs;
    5 operationId; 6 produces:[s]; 7 consumes:[s]; 8 parameters:[ParametersItem];
    9 responses:Responses; 10 schemes:[s]; 11 deprecated:bool;
    12 security:[SecurityRequirement]; 13 x-:{Any}
oneof ParametersItem: 1 parameter:Parameter; 2 reference:JsonReference
JsonReference: 1 $ref; 2 description
oneof Parameter: 1 body:BodyParameter; 2 other:NonBodyParameter
BodyParameter: 1 description; 2 name; 3 in; 4 required:bool; 5 schema:Schema; 6 x-:{Any}
oneof NonBodyParameter: 1 header:HeaderParameterSubSchema;
    2 formData:FormDataParameterSubSchema; 3 query:QueryParameterSubSchema;
    4 path:PathParameterSubSchema
HeaderParameterSubSchema: 1 required:bool; 2 in; 3 description; 4 name; 5-21 primitive;
    22 x-:{Any}
PathParameterSubSchema: 1 required:bool; 2 in; 3 description; 4 name; 5-21 primitive;
    22 x-:{Any}
QueryParameterSubSchema: 1 required:bool; 2 in; 3 description; 4 name;
    5 allowEmptyValue:bool; 6-22 primitive; 23 x-:{Any}
FormDataParameterSubSchema: 1 required:bool; 2 in; 3 description; 4 name;
    5 allowEmptyValue:bool; 6-22 primitive; 23 x-:{Any}
PrimitivesItems: 1-17 primitive; 18 x-:{Any}
Responses: 1 *:{ResponseValue}; 2 x-:{Any}
oneof ResponseValue: 1 response:Response; 2 reference:JsonReference
Response: 1 description; 2 schema:SchemaItem; 3 headers:Headers; 4 examples:Examples;
    5 x-:{Any}
oneof SchemaItem: 1 schema:Schema; 2 file:FileSchema
Headers: 1 *:{Header}
Header: 1-17 primitive; 18 description; 19 x-:{Any}
Examples: 1 *:{Any}
ParameterDefinitions: 1 *:{Parameter}
ResponseDefinitions: 1 *:{Response}
SecurityRequirement: 1 *:{StringArray}
StringArray: 1 =:[s]
SecurityDefinitions: 1 *:{SecurityDefinitionsItem}
oneof SecurityDefinitionsItem: 1 basic:BasicAuthenticationSecurity;
    2 apiKey:ApiKeySecurity; 3 oauth2.implicit:Oauth2ImplicitSecurity;
    4 oauth2.password:Oauth2PasswordSecurity; 5 oauth2.application:Oauth2ApplicationSecurity;
    6 oauth2.accessCode:Oauth2AccessCodeSecurity
BasicAuthenticationSecurity: 1 type; 2 description; 3 x-:{Any}
ApiKeySecurity: 1 type; 2 name; 3 in; 4 description; 5 x-:{Any}
Oauth2ImplicitSecurity: 1 type; 2 flow; 3 scopes:Oauth2Scopes; 4 authorizationUrl;
    5 description; 6 x-:{Any}
Oauth2PasswordSecurity: 1 type; 2 flow; 3 scopes:Oauth2Scopes; 4 tokenUrl; 5 description;
    6 x-:{Any}
Oauth2ApplicationSecurity: 1 type; 2 flow; 3 scopes:Oauth2Scopes; 4 tokenUrl;
    5 description; 6 x-:{Any}
Oauth2AccessCodeSecurity: 1 type; 2 flow; 3 scopes:Oauth2Scopes; 4 authorizationUrl;
    5 tokenUrl; 6 description; 7 x-:{Any}
Oauth2Scopes: 1 *:{s}
"""


def _member(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _security(value: Any) -> str:
    kind = _member(value, "type")
    return f"oauth2.{_member(value, 'flow')}" if kind == "oauth2" else str(kind)


# Which field of a oneof message a JSON value goes to, as gnostic decides it.
_CHOICE: dict[str, Callable[[Any], str]] = {
    "AdditionalPropertiesItem": lambda v: "boolean" if isinstance(v, bool) else "schema",
    "ParametersItem": lambda v: "reference" if _member(v, "$ref") else "parameter",
    "Parameter": lambda v: "body" if _member(v, "in") == "body" else "other",
    "NonBodyParameter": lambda v: str(_member(v, "in")),
    "ResponseValue": lambda v: "reference" if _member(v, "$ref") else "response",
    "SchemaItem": lambda v: "file" if _member(v, "type") == "file" else "schema",
    "SecurityDefinitionsItem": _security,
}

SCALARS = frozenset({"s", "bool", "i64", "f64"})
EXTENSIONS, MEMBERS, WHOLE, ONE_OR_MANY = "x-", "*", "=", "~"
_FIELD = re.compile(r"(\d+) ([\w$.*=~-]+)(?::(\[|\{)?(\w+)[\]}]?)?")
_RUN = re.compile(r"(\d+)-(\d+) (\w+)")


class Unencodable(ValueError):
    """A part of the document that gnostic's messages have no place for."""


@dataclass(frozen=True)
class Field:
    """One numbered field: the JSON member it holds and its wire shape."""

    number: int
    json: str
    type: str  # a scalar or a message name
    repeated: bool = False
    named: bool = False  # entries {1 name, 2 value}: gnostic's NamedT

    @property
    def attr(self) -> str:
        return f"f{self.number}"


@dataclass(frozen=True)
class MessageType:
    name: str
    fields: dict[int, Field]
    oneof: bool = False

    @functools.cached_property
    def by_json(self) -> dict[str, Field]:
        return {f.json: f for f in self.fields.values()}


# -- reading the table --

def _parse_field(text: str, where: str) -> Field:
    m = _FIELD.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"openapi_pb: cannot read field {text!r} of {where}")
    number, name, shape, ftype = m.groups()
    return Field(int(number), name, ftype or "s", repeated=shape in ("[", "{"),
                 named=shape == "{")


def _expand(text: str, where: str) -> list[str]:
    """One field, or a run numbered from A to B (its length is checked)."""
    m = _RUN.fullmatch(text.strip())
    if m is None:
        return [text]
    first, last, run = int(m[1]), int(m[2]), RUNS[m[3]].split(";")
    if last - first + 1 != len(run):
        raise ValueError(f"openapi_pb: run {m[3]} of {where} has {len(run)} fields")
    return [f"{first + i} {f.strip()}" for i, f in enumerate(run)]


@functools.cache
def messages() -> dict[str, MessageType]:
    """Every message of the table, checked: each type it names exists."""
    out: dict[str, MessageType] = {}
    for entry in protoschema.entries(SCHEMA):
        head, _, body = entry.partition(":")
        oneof, name = head.startswith("oneof "), head.removeprefix("oneof ")
        texts = [t for part in body.split(";") if part.strip() for t in _expand(part, name)]
        fields = [_parse_field(t, name) for t in texts]
        if len({f.number for f in fields}) != len(fields) or \
                len({f.json for f in fields}) != len(fields):
            raise ValueError(f"openapi_pb: {name} repeats a field number or name")
        out[name] = MessageType(name, {f.number: f for f in fields}, oneof)
    for msg in out.values():
        for f in msg.fields.values():
            if f.type not in SCALARS and f.type not in out:
                raise ValueError(f"openapi_pb: {msg.name} field {f.number} names {f.type}")
    return out


# -- message classes from the table --

_FDP = descriptor_pb2.FieldDescriptorProto
_WIRE = {"s": _FDP.TYPE_STRING, "bool": _FDP.TYPE_BOOL, "i64": _FDP.TYPE_INT64,
         "f64": _FDP.TYPE_DOUBLE}


def entry_name(value_type: str) -> str:
    """gnostic's name for a named entry: NamedSchema, NamedString..."""
    return "NamedString" if value_type == "s" else f"Named{value_type}"


def _add_field(msg: descriptor_pb2.DescriptorProto, number: int, ftype: str, *,
               repeated: bool = False, oneof: bool = False) -> None:
    label = _FDP.LABEL_REPEATED if repeated else _FDP.LABEL_OPTIONAL
    fd = msg.field.add(name=f"f{number}", number=number, label=label)
    if oneof:
        fd.oneof_index = 0
    if ftype in _WIRE:
        fd.type = _WIRE[ftype]
    else:
        fd.type, fd.type_name = _FDP.TYPE_MESSAGE, f".{_PACKAGE}.{ftype}"


def _file() -> descriptor_pb2.FileDescriptorProto:
    """One proto3 file, as gnostic's: every message of the table and its named entries."""
    fp = descriptor_pb2.FileDescriptorProto(name="netplane/openapiv2.proto",
                                            package=_PACKAGE, syntax="proto3")
    entries: set[str] = set()
    for m in messages().values():
        msg = fp.message_type.add(name=m.name)
        if m.oneof:
            msg.oneof_decl.add(name="oneof")
        for f in m.fields.values():
            if f.named:
                entries.add(f.type)
            _add_field(msg, f.number, entry_name(f.type) if f.named else f.type,
                       repeated=f.repeated, oneof=m.oneof)
    for value_type in sorted(entries):
        msg = fp.message_type.add(name=entry_name(value_type))
        _add_field(msg, 1, "s")
        _add_field(msg, 2, value_type)
    return fp


@functools.cache
def classes() -> dict[str, type[Message]]:
    """The message classes by gnostic's message names."""
    return protobuf.message_classes(_file())


# -- JSON into messages --

def encode(doc: Mapping[str, Any]) -> bytes:
    """A Swagger 2.0 document (its JSON form) as ``openapi.v2.Document`` bytes."""
    msg = classes()["Document"]()
    _fill(msg, messages()["Document"], doc, "")
    return msg.SerializeToString()


def _fill(msg: Message, mtype: MessageType, value: Any, where: str) -> None:
    """Fill one message from its JSON value: one field of a oneof, a wrapper
    around the whole value, or a struct member by member."""
    if mtype.oneof:
        _fill_oneof(msg, mtype, value, where)
    elif WHOLE in mtype.by_json:
        _put(msg, mtype.by_json[WHOLE], value, where)
    elif ONE_OR_MANY in mtype.by_json:
        items = value if isinstance(value, list) else [value]
        _put(msg, mtype.by_json[ONE_OR_MANY], items, where)
    elif isinstance(value, Mapping):
        _fill_struct(msg, mtype, value, where)
    else:
        raise Unencodable(f"{where or '/'}: a {mtype.name} must be a JSON object")


def _fill_oneof(msg: Message, mtype: MessageType, value: Any, where: str) -> None:
    label = _CHOICE[mtype.name](value)
    if label not in mtype.by_json:
        raise Unencodable(f"{where or '/'}: gnostic has no {mtype.name} for {label!r}")
    _put(msg, mtype.by_json[label], value, where)


def _fill_struct(msg: Message, mtype: MessageType, value: Mapping[str, Any],
                 where: str) -> None:
    """Members the table names go to their fields; ``x-...`` members to the
    extensions, the rest to the named members, if the message has them."""
    extensions: list[tuple[str, Any]] = []
    members: list[tuple[str, Any]] = []
    for key, item in value.items():
        field = mtype.by_json.get(key)
        if field is not None and key not in (EXTENSIONS, MEMBERS):
            _put(msg, field, item, f"{where}/{key}")
        elif key.startswith(EXTENSIONS) and EXTENSIONS in mtype.by_json:
            extensions.append((key, item))
        elif MEMBERS in mtype.by_json:
            members.append((key, item))
        else:
            raise Unencodable(f"{where}/{key}: gnostic's {mtype.name} has no {key!r}")
    for name, pairs in ((EXTENSIONS, extensions), (MEMBERS, members)):
        if pairs:
            _put(msg, mtype.by_json[name], pairs, where)


def _put(msg: Message, field: Field, value: Any, where: str) -> None:
    """Set one field: a scalar, a message, a list of them or named entries."""
    if field.named:
        entries = getattr(msg, field.attr)
        for key, item in value:
            entry = entries.add()
            entry.f1 = key
            _put(entry, Field(2, "value", field.type), item, f"{where}/{key}")
    elif field.repeated:
        if not isinstance(value, list):
            raise Unencodable(f"{where}: a list was expected")
        items = getattr(msg, field.attr)
        for i, item in enumerate(value):
            if field.type in SCALARS:
                items.append(_scalar(field.type, item, f"{where}/{i}"))
            else:
                _message(items.add(), field.type, item, f"{where}/{i}")
    elif field.type in SCALARS:
        setattr(msg, field.attr, _scalar(field.type, value, where))
    else:
        sub = getattr(msg, field.attr)
        sub.SetInParent()  # present even when empty: ``properties: {}`` is data
        _message(sub, field.type, value, where)


def _message(msg: Message, name: str, value: Any, where: str) -> None:
    if name == "Any":
        msg.f2 = yaml_text(value)  # type: ignore[attr-defined]
    else:
        _fill(msg, messages()[name], value, where)


def _scalar(ftype: str, value: Any, where: str) -> Any:
    ok = {"s": isinstance(value, str), "bool": isinstance(value, bool),
          "i64": isinstance(value, int) and not isinstance(value, bool),
          "f64": isinstance(value, int | float) and not isinstance(value, bool)}[ftype]
    if not ok:
        raise Unencodable(f"{where}: {value!r} is not a {ftype}")
    return float(value) if ftype == "f64" else value


_SURROGATES = re.compile(r"\\ud([89ab][0-9a-f]{2})\\ud([c-f][0-9a-f]{2})")


def yaml_text(value: Any) -> str:
    """A value as gnostic's ``Any.yaml`` holds it. JSON is YAML, so it is
    written as JSON, ASCII only (raw U+2028 and such would be line breaks
    to YAML); characters beyond U+FFFF are ``\\U`` escapes, since YAML has
    no surrogate pairs."""
    text = json.dumps(value, separators=(",", ":"))
    return _SURROGATES.sub(_astral, text)


def _astral(m: re.Match[str]) -> str:
    high, low = int("d" + m[1], 16), int("d" + m[2], 16)
    return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"


# -- messages back into JSON --

def decode(data: bytes) -> dict[str, Any]:
    """``openapi.v2.Document`` bytes as the JSON document they hold. Zero
    scalars outside a oneof are absent on the wire (proto3), so they are
    absent here too."""
    msg = classes()["Document"]()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise ValueError(f"not an openapi.v2.Document: {e}") from None
    out: dict[str, Any] = _json(msg, "Document")
    return out


def _json(msg: Message, name: str) -> Any:
    """One message as JSON: what :func:`_fill` made of a JSON value."""
    if name == "Any":
        return yaml.safe_load(msg.f2)  # type: ignore[attr-defined]
    mtype = messages()[name]
    if mtype.oneof:
        chosen = msg.WhichOneof("oneof")
        return _value(mtype.fields[int(chosen[1:])], getattr(msg, chosen)) if chosen else None
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        field = mtype.fields[fd.number]
        if field.json == ONE_OR_MANY:
            items = _value(field, value)
            return items[0] if len(items) == 1 else items
        if field.json == WHOLE:
            return _value(field, value)
        if field.named:
            out.update((e.f1, _value(Field(2, "value", field.type), e.f2)) for e in value)
        else:
            out[field.json] = _value(field, value)
    return [] if mtype.by_json.keys() & {WHOLE, ONE_OR_MANY} else out


def _value(field: Field, value: Any) -> Any:
    if field.type in SCALARS:
        return list(value) if field.repeated else value
    if field.repeated:
        return [_json(v, field.type) for v in value]
    return _json(value, field.type)
