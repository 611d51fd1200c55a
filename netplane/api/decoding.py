"""What kube-apiserver's decoder refuses in a JSON body whatever
``fieldValidation`` says: values of the wrong JSON type (a string where the
kind has an integer, a list where it has an object), integers out of range
of their Go type, and numbers JSON cannot carry (NaN, infinities).

Judged by Kubernetes 1.32's schema of the kind (``api.schema``); ``null``
is accepted anywhere, as Go decodes it to the zero value. Unknown fields
are ``schema``'s business (strict decoding, pruning).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netplane.api import schema as schemas

# Python types of each JSON Schema type (bool is an int in Python: told apart below).
_PYTHON = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
           "array": (list,), "object": (Mapping,)}
_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class TypeMismatch:
    """A value Go's JSON decoder cannot put in its field, worded as it words it."""

    path: str  # "" for the object itself
    found: str  # the JSON type written: string, number, bool, array, object
    wanted: str  # the field's type: string, int32, int64, number, bool, array, object...
    kind: str

    def __str__(self) -> str:
        if self.found == "out of range":
            return (f"json: cannot unmarshal number into Go struct field {self.kind}."
                    f"{self.path} of type {self.wanted}: value out of range")
        if not self.path:
            return f"json: cannot unmarshal {self.found} into Go value of type {self.kind}"
        return (f"json: cannot unmarshal {self.found} into Go struct field {self.kind}."
                f"{self.path} of type {self.wanted}")


def json_type(value: Any) -> str:
    """The JSON type of a decoded value, in Go's words."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object" if isinstance(value, Mapping) else type(value).__name__


def type_errors(obj: Any, definition: str | Mapping[str, Any], kind: str) -> list[TypeMismatch]:
    """Values of ``obj`` the kind's schema (by name, or a schema) has no room
    for, in document order, at most MAX_ERRORS (an empty list: Go would decode it)."""
    if not isinstance(obj, Mapping):  # null too: a body must be an object
        return [TypeMismatch("", json_type(obj), "object", kind)]
    out: list[TypeMismatch] = []
    _check(obj, schemas.definitions()[definition] if isinstance(definition, str)
           else definition, "", kind, out)
    return out[:schemas.MAX_ERRORS]


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str) and t != "null"]
    return ["object"] if "properties" in schema or "additionalProperties" in schema else []


def _fits(value: Any, types: list[str]) -> bool:
    if not types:
        return True
    for t in types:
        if isinstance(value, bool) != (t == "boolean"):
            continue
        if isinstance(value, _PYTHON.get(t, (object,))):
            return not isinstance(value, float) or math.isfinite(value)
    return False


def _check(value: Any, schema: Mapping[str, Any], path: str, kind: str,
           out: list[TypeMismatch]) -> None:
    schema = schemas._resolve(schema)
    if value is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if isinstance(alternatives, list):
        kinds = [t for alt in alternatives for t in _types(schemas._resolve(alt))]
        if not _fits(value, kinds):
            out.append(TypeMismatch(path, json_type(value), " or ".join(kinds), kind))
        return
    types = _types(schema)
    if not _fits(value, types):
        wanted = str(schema.get("format") or types[0]) if types else "value"
        out.append(TypeMismatch(path, json_type(value), wanted.replace("boolean", "bool"),
                                kind))
        return
    limits = _RANGES.get(str(schema.get("format")))
    if limits and isinstance(value, int) and not limits[0] <= value <= limits[1]:
        out.append(TypeMismatch(path, "out of range", str(schema["format"]), kind))
    elif isinstance(value, Mapping):
        _check_members(value, schema, path, kind, out)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", kind, out)


def _check_members(obj: Mapping[str, Any], schema: Mapping[str, Any], path: str, kind: str,
                   out: list[TypeMismatch]) -> None:
    props = schema.get("properties")
    values = schema.get("additionalProperties")
    for key, item in obj.items():
        sub = props.get(key) if isinstance(props, Mapping) else None
        if sub is None and isinstance(values, Mapping):
            sub = values
        if sub is not None:
            _check(item, sub, f"{path}.{key}" if path else str(key), kind, out)


def without_nulls(value: Any) -> Any:
    """A copy of decoded JSON without its null members: Go decodes a null
    field to its zero value, which the object then does not carry (items of
    a list are kept as they are)."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
