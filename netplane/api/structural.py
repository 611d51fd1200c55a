"""Structural schemas: a CustomResourceDefinition version's openAPIV3Schema
applied to custom objects as apiextensions-apiserver applies it: unknown
fields pruned, defaults filled in, then the value validated (types, enums,
patterns, bounds, lengths, list types), with kube's field paths and messages.

CEL rules (``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from netplane.api.validation import Errors, FieldError

Schema = Mapping[str, Any]
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
EMBEDDED = "x-kubernetes-embedded-resource"
# What every object keeps at its root (and an embedded resource at its own).
_OBJECT_ROOT = ("apiVersion", "kind", "metadata")
_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


# -- pruning --

def prune(obj: Any, schema: Schema) -> None:
    """Drops, in place, the fields ``schema`` does not specify (``obj`` is a
    whole custom object: its apiVersion, kind and metadata stay)."""
    _prune(obj, schema, root=True)


def _prune(value: Any, schema: Schema, *, root: bool = False) -> None:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep_unknown = bool(schema.get(PRESERVE)) or extra is True
        keeps_root = root or bool(schema.get(EMBEDDED))
        for key in list(value):
            if keeps_root and key in _OBJECT_ROOT:
                if key == "metadata" and key in props and not root:
                    _prune(value[key], props[key])
                continue
            sub = props.get(key)
            if sub is None and isinstance(extra, Mapping):
                sub = extra
            if sub is not None and value[key] is None and not sub.get("nullable"):
                del value[key]  # a null where none may be is dropped, then defaulted
            elif sub is not None:
                _prune(value[key], sub)
            elif not keep_unknown:
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _prune(item, schema["items"])


# -- defaulting --

def default(obj: Any, schema: Schema) -> None:
    """Fills in, in place, the defaults of fields that are absent (or null
    where the schema is not nullable), deepest last, as kube's structural
    defaulting does on decoding, create and update."""
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if not isinstance(sub, Mapping) or "default" not in sub:
                continue
            if key not in obj or (obj[key] is None and not sub.get("nullable")):
                obj[key] = _json_copy(sub["default"])
        for key, value in obj.items():
            sub = props.get(key)
            extra = schema.get("additionalProperties")
            if sub is None and isinstance(extra, Mapping):
                sub = extra
            if isinstance(sub, Mapping):
                default(value, sub)
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for item in obj:
            default(item, schema["items"])


# -- validation --

def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is(value: Any, wanted: str) -> bool:
    got = _type_name(value)
    return got == wanted or (wanted == "number" and got == "integer") or \
        (wanted == "integer" and got == "number" and float(value).is_integer())


def _go(value: Any) -> str:
    """A value as kube quotes it in an Invalid value: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


def _invalid(path: str, value: Any, why: str) -> FieldError:
    return FieldError(path, f"Invalid value: {_go(value)}: {why}")


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt == "date-time":
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif fmt == "date":
            datetime.date.fromisoformat(value)
        elif fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
        elif fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
        elif fmt == "uuid":
            uuid.UUID(value)
        elif fmt == "byte":
            base64.b64decode(value, validate=True)
        elif fmt == "hostname":
            return len(value) <= 253 and _HOSTNAME.match(value) is not None
    except (ValueError, binascii.Error):
        return False
    return True  # formats not checked here pass, as unknown formats do in kube


def validate(obj: Any, schema: Schema) -> Errors:
    """Every problem of a whole custom object (its metadata judged elsewhere)."""
    errs: Errors = []
    props = schema.get("properties") or {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _OBJECT_ROOT:
                continue
            sub = props.get(key)
            if sub is not None:
                _validate(value, sub, key, errs)
        for key in schema.get("required") or ():
            if key not in obj and key not in _OBJECT_ROOT:
                errs.append(FieldError(key, "Required value", "FieldValueRequired"))
    return errs


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _validate(value: Any, schema: Schema, path: str, errs: Errors) -> None:
    if value is None:
        if not schema.get("nullable") and "type" in schema:
            errs.append(FieldError(path, f'Invalid value: "null": {path} in body must be of '
                                   f'type {schema["type"]}: "null"', "FieldValueTypeInvalid"))
        return
    wanted = schema.get("type")
    if schema.get(INT_OR_STRING):
        if _type_name(value) not in ("integer", "string"):
            errs.append(FieldError(path, f'Invalid value: "{_type_name(value)}": {path} in '
                                   f'body must be of type integer,string: {_go(value)}',
                                   "FieldValueTypeInvalid"))
            return
    elif wanted and not _is(value, wanted):
        errs.append(FieldError(path, f'Invalid value: "{_type_name(value)}": {path} in body '
                               f'must be of type {wanted}: "{_type_name(value)}"',
                               "FieldValueTypeInvalid"))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(_go(v) for v in schema["enum"])
        errs.append(FieldError(path, f"Unsupported value: {_go(value)}: supported values: "
                               f"{allowed}", "FieldValueNotSupported"))
    _combinations(value, schema, path, errs)
    if isinstance(value, str):
        _string(value, schema, path, errs)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _number(value, schema, path, errs)
    elif isinstance(value, list):
        _array(value, schema, path, errs)
    elif isinstance(value, dict):
        _object(value, schema, path, errs)


def _tried(value: Any, schemas: Any, path: str) -> list[Errors]:
    """The errors of ``value`` against each schema of a list, one list each."""
    out = []
    for sub in schemas if isinstance(schemas, list) else ():
        found: Errors = []
        if isinstance(sub, Mapping):
            _validate(value, sub, path, found)
        out.append(found)
    return out


def _nearest(tried: list[Errors]) -> Errors:
    """The alternative missed by the fewest errors (the first of equals)."""
    return min(tried, key=lambda found: len(found))


def _composite(path: str, why: str) -> FieldError:
    return FieldError(path, f'Invalid value: "": "{path}" {why}')


def _combinations(value: Any, schema: Schema, path: str, errs: Errors) -> None:
    """allOf, anyOf, oneOf and not, as the value validations of a structural
    schema: each says what it wants, and the nearest miss says why."""
    if "allOf" in schema:
        failed = [e for found in _tried(value, schema["allOf"], path) for e in found]
        if failed:
            errs.append(_composite(path, "must validate all the schemas (allOf)"))
            errs.extend(failed)
    if "anyOf" in schema:
        tried = _tried(value, schema["anyOf"], path)
        if tried and all(tried):
            errs.append(_composite(path, "must validate at least one schema (anyOf)"))
            errs.extend(_nearest(tried))
    if "oneOf" in schema:
        tried = _tried(value, schema["oneOf"], path)
        valid = sum(1 for found in tried if not found)
        if tried and valid != 1:
            found_text = "Found none valid" if not valid else f"Found {valid} valid alternatives"
            errs.append(_composite(path, "must validate one and only one schema (oneOf). "
                                   + found_text))
            if not valid:
                errs.extend(_nearest(tried))
    if isinstance(schema.get("not"), Mapping) and not _tried(value, [schema["not"]], path)[0]:
        errs.append(_composite(path, "must not validate the schema (not)"))


def _string(value: str, schema: Schema, path: str, errs: Errors) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errs.append(FieldError(path, f"Too long: may not be more than {schema['maxLength']} "
                               "bytes", "FieldValueTooLong"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errs.append(_invalid(path, value, f"{path} in body should be at least "
                             f"{schema['minLength']} chars long"))
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and re.search(pattern, value) is None:
        errs.append(_invalid(path, value, f"{path} in body should match '{pattern}'"))
    fmt = schema.get("format")
    if isinstance(fmt, str) and not schema.get(INT_OR_STRING) and not _format_ok(fmt, value):
        errs.append(_invalid(path, value, f"{path} in body must be of type {fmt}: "
                             f"{_go(value)}"))


def _number(value: float, schema: Schema, path: str, errs: Errors) -> None:
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") and value == low):
            than = "greater than" if schema.get("exclusiveMinimum") else \
                "greater than or equal to"
            errs.append(_invalid(path, value, f"{path} in body should be {than} {_go(low)}"))
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or (schema.get("exclusiveMaximum") and value == high):
            than = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            errs.append(_invalid(path, value, f"{path} in body should be {than} {_go(high)}"))
    step = schema.get("multipleOf")
    if step and (value / step) != int(value / step):
        errs.append(_invalid(path, value, f"{path} in body should be a multiple of {step}"))


def _array(value: list[Any], schema: Schema, path: str, errs: Errors) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errs.append(FieldError(path, f"Too many: {len(value)}: must have at most "
                               f"{schema['maxItems']} items", "FieldValueTooMany"))
    if "minItems" in schema and len(value) < schema["minItems"]:
        errs.append(_invalid(path, value, f"{path} in body should have at least "
                             f"{schema['minItems']} items"))
    items = schema.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", errs)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                errs.append(FieldError(f"{path}[{i}]", f"Duplicate value: {_go(item)}",
                                       "FieldValueDuplicate"))
            else:
                seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or ()
        found: list[dict[str, Any]] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = {k: item.get(k) for k in keys if k in item}
            if key in found:
                errs.append(FieldError(f"{path}[{i}]", f"Duplicate value: {_go(key)}",
                                       "FieldValueDuplicate"))
            else:
                found.append(key)


def _object(value: dict[str, Any], schema: Schema, path: str, errs: Errors) -> None:
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, sub_value in value.items():
        sub, where = props.get(key), _join(path, key)
        if sub is None and isinstance(extra, Mapping):
            sub, where = extra, f"{path}[{key}]"
        if isinstance(sub, Mapping):
            _validate(sub_value, sub, where, errs)
    for key in schema.get("required") or ():
        if key not in value:
            errs.append(FieldError(_join(path, key), "Required value", "FieldValueRequired"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errs.append(FieldError(path, f"Too many: {len(value)}: must have at most "
                               f"{schema['maxProperties']} items", "FieldValueTooMany"))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errs.append(_invalid(path, value, f"{path} in body should have at least "
                             f"{schema['minProperties']} properties"))
    if schema.get(EMBEDDED):
        for key in ("apiVersion", "kind"):
            if not value.get(key):
                errs.append(FieldError(_join(path, key), "Required value",
                                       "FieldValueRequired"))


# -- the schema itself --

def structural_errors(schema: Any, path: str) -> Errors:
    """Why a version's openAPIV3Schema is not structural (the checks that
    matter: a type at every specified node, an object root, properties and
    additionalProperties not both)."""
    errs: Errors = []
    if not isinstance(schema, Mapping):
        errs.append(FieldError(path, "Required value: schemas are required",
                               "FieldValueRequired"))
        return errs
    if schema.get("type") != "object":
        if not schema.get("type"):
            errs.append(FieldError(f"{path}.type", "Required value: must not be empty at the "
                                   "root", "FieldValueRequired"))
        else:
            errs.append(FieldError(f"{path}.type", f"Invalid value: {_go(schema['type'])}: "
                                   "must be object at the root"))
    _structural(schema, path, errs, root=True)
    return errs


def _structural(schema: Mapping[str, Any], path: str, errs: Errors, *, root: bool) -> None:
    if not root and not schema.get("type") and not schema.get(INT_OR_STRING) \
            and not schema.get(PRESERVE):
        errs.append(FieldError(f"{path}.type", "Required value: must not be empty for "
                               "specified object fields", "FieldValueRequired"))
    if schema.get("properties") and isinstance(schema.get("additionalProperties"), Mapping):
        errs.append(FieldError(f"{path}.additionalProperties", "Forbidden: additionalProperties "
                               "and properties are mutual exclusive", "FieldValueForbidden"))
    if "default" in schema and schema["default"] is not None:
        # A default must be a value the schema takes, pruned and defaulted
        # as objects are.
        found: Errors = []
        value = _json_copy(schema["default"])
        _prune(value, schema)
        default(value, schema)
        _validate(value, schema, f"{path}.default", found)
        errs.extend(found)
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as e:
            errs.append(FieldError(f"{path}.pattern", f"Invalid value: {_go(pattern)}: must be "
                                   f"a valid regular expression, but isn't: {e}"))
    props = schema.get("properties")
    for key, sub in (props.items() if isinstance(props, Mapping) else ()):
        if isinstance(sub, Mapping):
            _structural(sub, f"{path}.properties[{key}]", errs, root=False)
    if isinstance(schema.get("items"), Mapping):
        _structural(schema["items"], f"{path}.items", errs, root=False)
    if isinstance(schema.get("additionalProperties"), Mapping):
        _structural(schema["additionalProperties"], f"{path}.additionalProperties", errs,
                    root=False)
