"""Kubernetes 1.32's object schemas, and the unknown-field check of strict decoding.

The schemas are the OpenAPI definitions that ship, as JSON Schema, in the
``kubernetes-validate`` package: one file, read once per process. The API
server publishes them as its OpenAPI documents and judges request bodies by
them, so that ``fieldValidation=Strict`` rejects exactly the fields that
kube-apiserver's strict decoder rejects, with the same field paths
(``spec.template.spec.containers[0].imagePullPolicyy``).
"""

from __future__ import annotations

import enum
import functools
import importlib.resources
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

Schema = dict[str, Any]

# The schema release the server publishes (it says it is 1.32 in /version).
RELEASE = "v1.32.0-local"
_REF = "#/$defs/"
# kube-apiserver stops collecting strict-decoding errors at this many.
MAX_ERRORS = 100


@functools.cache
def definitions() -> Mapping[str, Schema]:
    """Every definition by its OpenAPI name (``io.k8s.api.apps.v1.Deployment``)."""
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / RELEASE
    doc = json.loads((folder / "_definitions.json").read_bytes())
    return cast(Mapping[str, Schema], doc["$defs"])


def ref_name(schema: Mapping[str, Any]) -> str | None:
    """The definition a ``$ref`` points at, or None when the schema is inline."""
    ref = schema.get("$ref")
    return ref[len(_REF):] if isinstance(ref, str) and ref.startswith(_REF) else None


@functools.cache
def _by_gvk() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            out.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return out


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition of a kind (``""`` is the core group), None if 1.32 has none."""
    return _by_gvk().get((group, version, kind))


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        name = ref_name(node)
        if name is not None:
            yield name
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def reachable(names: Iterable[str]) -> set[str]:
    """The named definitions and all that they reference, transitively."""
    defs = definitions()
    seen: set[str] = set()
    todo = [n for n in names if n in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(r for r in _refs(defs[name]) if r not in seen and r in defs)
    return seen


# -- OpenAPI dialects --

class Dialect(enum.Enum):
    """Where references point and how a ``$ref`` with siblings is written."""

    V2 = "#/definitions/"
    V3 = "#/components/schemas/"


def to_openapi(name: str, dialect: Dialect) -> Schema:
    """One definition rewritten from JSON Schema into OpenAPI v2 or v3 form.

    JSON Schema allows ``type: [string, null]``; OpenAPI wants one type.
    ``kind``/``apiVersion`` enums were added by the JSON Schema conversion
    and are dropped. In v3, as kube-apiserver writes it, a ``$ref`` that
    carries a description is wrapped in ``allOf``; Swagger 2.0 has no
    ``oneOf``, so IntOrString and Quantity become strings there.
    """
    schema: Schema = _convert(definitions()[name], dialect)
    if "x-kubernetes-group-version-kind" in schema:
        for prop in ("apiVersion", "kind"):
            schema.get("properties", {}).get(prop, {}).pop("enum", None)
    if name.endswith("intstr.IntOrString"):
        schema["format"] = "int-or-string"
    return schema


def _convert(node: Any, dialect: Dialect) -> Any:
    if isinstance(node, list):
        return [_convert(v, dialect) for v in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if types:
                out["type"] = types[0]
        elif key == "$ref":
            out["$ref"] = dialect.value + value[len(_REF):]
        elif key == "properties":
            out[key] = {k: _convert(v, dialect) for k, v in value.items()}
        else:
            out[key] = _convert(value, dialect)
    if dialect is Dialect.V3 and "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    if dialect is Dialect.V2 and "oneOf" in out:
        del out["oneOf"]
        out["type"] = "string"
    return out


# -- strict decoding --

class StrictErrorType(enum.Enum):
    UNKNOWN = "unknown field"
    DUPLICATE = "duplicate field"


@dataclass(frozen=True)
class StrictError:
    """One finding of strict decoding, worded as kube-apiserver words it."""

    type: StrictErrorType
    path: str

    def __str__(self) -> str:
        return f"{self.type.value} {json.dumps(self.path)}"


class _Written(dict[str, Any]):
    """A JSON object that remembers its members as written, repeats included."""

    members: list[tuple[str, Any]]


def _keep_members(pairs: list[tuple[str, Any]]) -> _Written:
    obj = _Written(pairs)
    obj.members = pairs
    return obj


def loads_keeping_duplicates(raw: bytes | str) -> Any:
    """``json.loads``, with objects that know their repeated keys (the last
    value wins, as in Go), so that duplicates can be reported."""
    return json.loads(raw, object_pairs_hook=_keep_members)


def _members(obj: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    return obj.members if isinstance(obj, _Written) else obj.items()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    defs = definitions()
    name = ref_name(schema)
    while name is not None and name in defs:
        schema = defs[name]
        name = ref_name(schema)
    return schema


def _opaque(schema: Mapping[str, Any]) -> bool:
    """Anything goes inside: preserve-unknown-fields, or an object with
    neither properties nor a value schema (RawExtension, FieldsV1)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return True
    return "properties" not in schema and "additionalProperties" not in schema \
        and "items" not in schema


def strict_errors(obj: Any, definition: str | Mapping[str, Any]) -> list[StrictError]:
    """Unknown and repeated fields of ``obj`` judged against a definition (by
    name, or a schema), in document order, each once, at most MAX_ERRORS."""
    out: list[StrictError] = []
    _walk(obj, definitions()[definition] if isinstance(definition, str) else definition, "", out)
    return list(dict.fromkeys(out))[:MAX_ERRORS]


def _walk(value: Any, schema: Mapping[str, Any], path: str, out: list[StrictError]) -> None:
    schema = _resolve(schema)
    if _opaque(schema):
        return
    if isinstance(value, Mapping):
        _walk_object(value, schema, path, out)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _walk(item, schema["items"], f"{path}[{i}]", out)


def _walk_object(obj: Mapping[str, Any], schema: Mapping[str, Any], path: str,
                 out: list[StrictError]) -> None:
    """A struct (``properties``) knows its fields; a map
    (``additionalProperties``) takes any key and judges the values."""
    props = schema.get("properties")
    values = schema.get("additionalProperties")
    seen: set[str] = set()
    for key, item in _members(obj):
        if key in seen:
            out.append(StrictError(StrictErrorType.DUPLICATE, _join(path, key)))
        seen.add(key)
        sub = props.get(key) if isinstance(props, Mapping) else None
        if sub is None and isinstance(values, Mapping):
            sub = values
        if sub is not None:
            _walk(item, sub, _join(path, key), out)
        elif props is not None:
            out.append(StrictError(StrictErrorType.UNKNOWN, _join(path, key)))


def duplicate_fields(value: Any, path: str = "") -> list[StrictError]:
    """Repeated keys anywhere in a document, without a schema (a patch body
    decoded into a plain map can only fail this way)."""
    out: list[StrictError] = []
    if isinstance(value, Mapping):
        seen: set[str] = set()
        for key, item in _members(value):
            if key in seen:
                out.append(StrictError(StrictErrorType.DUPLICATE, _join(path, key)))
            seen.add(key)
            out.extend(duplicate_fields(item, _join(path, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(duplicate_fields(item, f"{path}[{i}]"))
    return list(dict.fromkeys(out))


def prune(obj: Any, definition: str) -> None:
    """Drops, in place, the fields the schema does not know, as kube-apiserver
    does when it decodes an object under fieldValidation Warn or Ignore (fields
    it knows but netplane does not act on are kept)."""
    defs = definitions()
    if definition in defs:
        _prune(obj, defs[definition])


def _prune(value: Any, schema: Mapping[str, Any]) -> None:
    schema = _resolve(schema)
    if _opaque(schema):
        return
    if isinstance(value, dict):
        props, values = schema.get("properties"), schema.get("additionalProperties")
        for key in list(value):
            sub = props.get(key) if isinstance(props, Mapping) else None
            if sub is None and isinstance(values, Mapping):
                sub = values
            if sub is not None:
                _prune(value[key], sub)
            elif props is not None and key not in ("apiVersion", "kind"):
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _prune(item, schema["items"])
