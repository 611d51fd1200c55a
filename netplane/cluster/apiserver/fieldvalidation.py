"""Server-side field validation: the ``fieldValidation`` query parameter of
create, update and patch, as kube-apiserver implements it.

``Strict`` rejects a body with unknown or duplicate fields (400 for create
and update, 422 for patch, with kube-apiserver's wording); ``Warn`` (the
default when the parameter is absent) accepts it and says what was wrong
in ``Warning: 299`` headers, which kubectl prints; ``Ignore`` says nothing.
Fields are judged by Kubernetes 1.32's schema of the kind (``api.schema``).
A patch is judged by its result: repeated keys in the patch body, then
fields the patch adds that the schema does not know.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import yaml
from aiohttp import web

from netplane.api import decoding, schema
from netplane.api.validation import FieldError
from netplane.cluster.apiserver import customresources, paths, status
from netplane.cluster.apiserver.patch import (
    JSON_PATCH,
    STRATEGIC,
    JSONPatchError,
    json_patch,
    merge_patch,
)
from netplane.cluster.apiserver.registry import Registry

# The Warning headers of the response to this request.
WARNINGS = web.RequestKey("warnings", list[str])
OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}
# The kind a subresource's body has, when it is not the resource's own.
SUBRESOURCE_KIND = {"scale": ("autoscaling", "v1", "Scale"), "binding": ("", "v1", "Binding"),
                    "eviction": ("policy", "v1", "Eviction"),
                    "token": ("authentication.k8s.io", "v1", "TokenRequest")}
# kube-apiserver's limits on Warning headers (filters/warning.go), and ours on their number.
TRUNCATE_AT_TOTAL, TRUNCATE_ITEM, MAX_WARNINGS = 4 * 1024, 256, 50
# A JSON patch is a list of operations with these fields (RFC 6902).
JSON_PATCH_OPS = {"type": "array", "items": {"type": "object", "properties": {
    "op": {"type": "string"}, "path": {"type": "string"}, "from": {"type": "string"},
    "value": {"x-kubernetes-preserve-unknown-fields": True}}}}


class Directive(enum.Enum):
    STRICT = "Strict"
    WARN = "Warn"
    IGNORE = "Ignore"


def directive(request: web.Request) -> Directive:
    """The query's ``fieldValidation``; Warn when absent, as in kube-apiserver."""
    value = request.query.get("fieldValidation", "")
    if not value:
        return Directive.WARN
    try:
        return Directive(value)
    except ValueError:
        supported = '"", "Ignore", "Strict", "Warn"'
        raise status.invalid(f"{OPTIONS_KIND.get(request.method, 'CreateOptions')}.meta.k8s.io",
                             "", [FieldError("fieldValidation", f'Unsupported value: '
                                             f'{json.dumps(value)}: supported values: '
                                             f'{supported}', "FieldValueNotSupported")]) from None


def definition(target: paths.Target) -> str | None:
    """The schema a request body of this path must follow (None: not judged)."""
    res, sub = target.resource, target.subresource
    if sub in ("", "status", "approval"):
        return schema.definition_name(res.group, res.version, res.kind)
    gvk = SUBRESOURCE_KIND.get(sub)
    return schema.definition_name(*gvk) if gvk else None


_UNDECODABLE = object()


def _decode(raw: bytes, content_type: str) -> Any:
    """The body as written (JSON keeps its repeated keys); _UNDECODABLE when
    it does not decode, which the handler itself reports."""
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw)
        return schema.loads_keeping_duplicates(raw)
    except (ValueError, yaml.YAMLError):
        return _UNDECODABLE


async def check(request: web.Request, registry: Registry, target: paths.Target) -> None:
    """Judge a create, update or patch body; raise for Strict, note warnings for Warn."""
    if request.method not in OPTIONS_KIND:
        return
    wanted = directive(request)
    name: str | Mapping[str, Any] | None = definition(target)
    if target.resource.custom:
        name = customresources.kind_schema(registry.custom.about(target.resource),
                                           "#/$defs/")
    if name is None or "protobuf" in request.content_type:
        return  # protobuf bodies cannot carry unknown fields or wrong types
    if request.method == "POST" and target.name and not target.subresource:
        return  # not a create: the handler answers 405
    raw = await request.read()
    body = _decode(raw, request.content_type)
    if body is _UNDECODABLE or not raw.strip():
        return  # the handler says what is wrong with it
    # A custom object decodes whatever its fields hold but the envelope
    # (apiVersion, kind, metadata): the rest is for its schema's 422s.
    _check_types(request, registry, target, body,
                 customresources.ENVELOPE if target.resource.custom else name)
    if wanted is Directive.IGNORE:
        return
    if request.method == "PATCH":
        errors, shown = _patch_errors(registry, target, body, request.content_type, name)
    elif isinstance(body, dict):
        errors, shown = [str(e) for e in schema.strict_errors(body, name)], ""
    else:
        return
    if not errors:
        return
    if wanted is Directive.WARN:
        request.setdefault(WARNINGS, []).extend(errors)
        return
    raise _rejection(request, target, body, errors, shown)


def _kind(target: paths.Target) -> str:
    gvk = SUBRESOURCE_KIND.get(target.subresource)
    return gvk[2] if gvk else target.resource.kind


def _check_types(request: web.Request, registry: Registry, target: paths.Target, body: Any,
                 name: str | Mapping[str, Any]) -> None:
    """Values of the wrong type are refused whatever ``fieldValidation`` says,
    as Go's decoder refuses them: 400 for a body, 422 for a patch's result."""
    kind = _kind(target)
    if request.method != "PATCH":
        wrong = decoding.type_errors(body, name, kind)
        if wrong:
            written = body.get("kind") if isinstance(body, dict) else None
            raise status.bad_request(f'{written or kind} in version "{target.resource.version}" '
                                     f"cannot be handled as a {kind}: {wrong[0]}")
        return
    patched = _patched(registry, target, body, request.content_type)
    wrong = decoding.type_errors(patched, name, kind) if patched is not None else []
    if wrong:
        raise status.invalid("", "", [FieldError(
            "patch", f"Invalid value: {json.dumps(wrong[0].path)}: {wrong[0]}")])


def _rejection(request: web.Request, target: paths.Target, body: Any,
               errors: list[str], shown: str) -> status.ApiError:
    """kube-apiserver's words: a decoding failure for create and update, an
    invalid ``patch`` for patch."""
    found = "strict decoding error: " + ", ".join(errors)
    if request.method == "PATCH":
        return status.invalid("", "", [FieldError(
            "patch", f"Invalid value: {json.dumps(shown)}: {found}")])
    gvk = SUBRESOURCE_KIND.get(target.subresource)
    kind = gvk[2] if gvk else target.resource.kind
    written = body.get("kind") or kind
    version = str(body.get("apiVersion") or target.resource.version).rsplit("/", 1)[-1]
    return status.bad_request(f'{written} in version "{version}" cannot be handled as a '
                              f"{kind}: {found}")


def _patch_errors(registry: Registry, target: paths.Target, patch: Any, content_type: str,
                  name: str | Mapping[str, Any]) -> tuple[list[str], str]:
    """Repeated keys of the patch, then unknown fields the patch brings into
    the object (those already stored are not the patch's doing)."""
    if content_type == JSON_PATCH:
        repeated = [f"json patch {e}" for e in schema.strict_errors(patch, JSON_PATCH_OPS)]
    else:
        repeated = [str(e) for e in schema.duplicate_fields(patch)]
    patched = _patched(registry, target, patch, content_type)
    if not isinstance(patched, dict):
        return repeated, ""
    old = registry.get(target.resource, target.namespace, str(target.name))
    before = set(schema.strict_errors(old, name))
    added = [str(e) for e in schema.strict_errors(patched, name) if e not in before]
    errors = [*repeated, *added]
    shown = go_map(patch) if content_type == STRATEGIC else json.dumps(patched,
                                                                       separators=(",", ":"))
    return errors[:schema.MAX_ERRORS], shown


def _patched(registry: Registry, target: paths.Target, patch: Any, content_type: str) -> Any:
    """The object as the patch would leave it; None when the patch does not
    apply (the handler reports that) or the path is not of an object."""
    if target.subresource not in ("", "status", "approval") or target.name is None:
        return None
    old = registry.get(target.resource, target.namespace, target.name)
    try:
        if content_type == JSON_PATCH:
            return json_patch(old, patch)
        return merge_patch(old, _without_directives(patch), strategic=content_type == STRATEGIC)
    except (JSONPatchError, TypeError, AttributeError):
        return None


def _without_directives(patch: Any) -> Any:
    """A strategic merge patch without the ``$setElementOrder/...``,
    ``$retainKeys``... keys, which tell how to merge and are not fields
    (``$patch`` stays: the merge itself reads it)."""
    if isinstance(patch, dict):
        return {k: _without_directives(v) for k, v in patch.items()
                if not k.startswith("$") or k == "$patch"}
    if isinstance(patch, list):
        return [_without_directives(v) for v in patch]
    return patch


def go_map(value: Any) -> str:
    """A value printed as Go prints a decoded JSON map (``%+v``), which is how
    kube-apiserver shows a strategic merge patch in its error."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_map(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_map(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def recorded(texts: list[str]) -> list[str]:
    """The warnings a response carries, as kube-apiserver's warning recorder
    keeps them: each text once; past 4096 characters in all, every warning is
    cut to 256 and no more are added once the total is reached. Beyond that,
    at most MAX_WARNINGS, so that clients that read at most 100 headers
    (Python's http.client) can still read the response."""
    out: list[str] = []
    written, truncating = 0, False
    unique = list(dict.fromkeys(t for t in texts if t))
    for i, text in enumerate(unique):
        if truncating and written >= TRUNCATE_AT_TOTAL:
            break
        text = text[:TRUNCATE_ITEM] if truncating else text
        if written + len(text) <= TRUNCATE_AT_TOTAL or truncating:
            written += len(text)
            out.append(text)
            continue
        truncating = True
        out = [t[:TRUNCATE_ITEM] for t in unique[:i + 1]]
        written = sum(len(t) for t in out)
    return out[:MAX_WARNINGS]


async def _write_warnings(request: web.Request, response: web.StreamResponse) -> None:
    for text in recorded(request.get(WARNINGS, [])):
        response.headers.add("Warning", f"299 - {_quoted(text)}")


def install(app: web.Application) -> None:
    """Warnings noted while handling a request go out as its Warning headers."""
    app.on_response_prepare.append(_write_warnings)
