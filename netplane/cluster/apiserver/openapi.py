"""The OpenAPI documents: ``/openapi/v3`` (discovery and one document per
group-version) and ``/openapi/v2`` (JSON, or gnostic protobuf: see
:mod:`openapi_pb`), laid out as kube-apiserver lays them out.

kubectl reads them to learn that an operation takes ``fieldValidation``
(then it leaves validation to the server), to compute strategic merge
patches (``x-kubernetes-patch-merge-key``...) and for ``kubectl explain``.
Everything is derived from ``resources.ALL`` and the subresources ``paths``
serves; the schemas are Kubernetes 1.32's. The documents are built once per
process, off the event loop, and served with kube-apiserver's caching
headers: ETag, and for hashed v3 URLs ``Cache-Control: public, immutable``.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

from netplane.api import resources, schema
from netplane.api.customresources import Served as CustomKind
from netplane.api.resources import Resource
from netplane.cluster.apiserver import customresources, fieldvalidation, openapi_pb, paths
from netplane.cluster.apiserver.fieldmanager import APPLY_PATCH
from netplane.cluster.apiserver.patch import JSON_PATCH, MERGE, STRATEGIC

Obj = dict[str, Any]
GVK = tuple[str, str, str]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
PATCH_TYPES = (JSON_PATCH, MERGE, STRATEGIC)
# Custom kinds take no strategic merge patch (no patch strategies to follow):
# kubectl apply, seeing none here, sends a JSON merge patch.
CUSTOM_PATCH_TYPES = (JSON_PATCH, MERGE, APPLY_PATCH)
JSON = "application/json"
WATCH_STREAM = "application/json;stream=watch"
CODES = {200: "OK", 201: "Created", 202: "Accepted"}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" or "path"
    type: str
    description: str
    required: bool = False


def _q(name: str, type_: str, description: str) -> Param:
    return Param(name, "query", type_, description)


PRETTY = _q("pretty", "string", "If 'true', the output is indented.")
NAME = Param("name", "path", "string", "name of the object", required=True)
NAMESPACE = Param("namespace", "path", "string", "namespace of the object", required=True)
LIST_PARAMS = (
    _q("allowWatchBookmarks", "boolean", "Ask for BOOKMARK events on a watch."),
    _q("continue", "string", "The continue token of a previous, limited list."),
    _q("fieldSelector", "string", "Only objects whose fields match, such as spec.nodeName=n1."),
    _q("labelSelector", "string", "Only objects whose labels match, such as app=web."),
    _q("limit", "integer", "At most this many objects in one response."),
    _q("resourceVersion", "string", "List or watch from this resource version."),
    _q("resourceVersionMatch", "string", "How resourceVersion applies to a list."),
    _q("sendInitialEvents", "boolean", "Start a watch with the current objects."),
    _q("timeoutSeconds", "integer", "End the list or watch after this many seconds."),
    _q("watch", "boolean", "Stream added, modified and deleted events instead of a list."),
)
WRITE_PARAMS = (
    _q("dryRun", "string", "'All': check and admit the request, but persist nothing."),
    _q("fieldManager", "string", "The name of the actor making the change."),
    _q("fieldValidation", "string",
       "What to do with unknown or duplicate fields in the body: 'Ignore' them, 'Warn' "
       "in a Warning header (the default), or reject the request when 'Strict'."),
)
DELETE_PARAMS = (
    WRITE_PARAMS[0],
    _q("gracePeriodSeconds", "integer", "Seconds a pod is given to stop; 0 stops it now."),
    _q("orphanDependents", "boolean",
       "Deprecated: use propagationPolicy. true orphans the dependents, false deletes them."),
    _q("propagationPolicy", "string", "Orphan, Background or Foreground deletion of dependents."),
)
LOG_PARAMS = (
    _q("container", "string", "The container whose log to read."),
    _q("follow", "boolean", "Stream the log as it grows."),
    _q("previous", "boolean", "The log of the previous, terminated container."),
    _q("sinceSeconds", "integer", "Only lines newer than this many seconds."),
    _q("tailLines", "integer", "Only this many lines from the end."),
    _q("timestamps", "boolean", "Start each line with its timestamp."),
)


@dataclass(frozen=True)
class Operation:
    """One operation in neutral form, rendered into v2 or v3 later."""

    method: str
    action: str  # x-kubernetes-action
    operation_id: str
    description: str
    gvk: GVK
    params: tuple[Param, ...] = ()
    body: str | None = None  # definition of the request body
    body_types: tuple[str, ...] = ("*/*",)
    response: str | None = None  # definition; None: plain text
    codes: tuple[int, ...] = (200,)
    watch: bool = False  # a list that streams WatchEvents with ?watch=true


@dataclass
class PathItem:
    path: str
    params: tuple[Param, ...]
    operations: list[Operation] = field(default_factory=list)


@dataclass(frozen=True)
class Sub:
    """How a subresource appears: its operations, kind and operationId suffix."""

    methods: tuple[str, ...]
    suffix: str
    gvk: GVK | None = None  # None: the resource's own kind
    text: bool = False  # answers plain text, not an object
    params: tuple[Param, ...] = ()


SUBRESOURCES = {
    "status": Sub(("get", "put", "patch"), "Status"),
    "approval": Sub(("get", "put", "patch"), "Approval"),
    "scale": Sub(("get", "put", "patch"), "Scale", ("autoscaling", "v1", "Scale")),
    "binding": Sub(("post",), "Binding", ("", "v1", "Binding")),
    "log": Sub(("get",), "Log", text=True, params=LOG_PARAMS),
    "exec": Sub(("connectGet", "connectPost"), "Exec", ("", "v1", "PodExecOptions"), True),
    "attach": Sub(("connectGet", "connectPost"), "Attach", ("", "v1", "PodAttachOptions"), True),
    "portforward": Sub(("connectGet", "connectPost"), "Portforward",
                       ("", "v1", "PodPortForwardOptions"), True),
    "eviction": Sub(("post",), "Eviction", ("policy", "v1", "Eviction")),
    "token": Sub(("post",), "Token", ("authentication.k8s.io", "v1", "TokenRequest")),
}


def go_group(group: str) -> str:
    """The group as kube-apiserver spells it in operation ids: ``Core``,
    ``Apps``, ``Discovery``, ``RbacAuthorization``."""
    parts = group.removesuffix(".k8s.io").split(".") if group else ["core"]
    return "".join(p[:1].upper() + p[1:] for p in parts)


def tag(res: Resource) -> str:
    name = go_group(res.group)
    return f"{name[:1].lower()}{name[1:]}_{res.version}"


def _gvk(res: Resource) -> GVK:
    return (res.group, res.version, res.kind)


Defs = Mapping[GVK, str]  # the custom kinds' definitions, beside Kubernetes' own


def _definition(gvk: GVK, defs: Defs | None = None) -> str | None:
    if defs and gvk in defs:
        return defs[gvk]
    return schema.definition_name(*gvk)


def _verb_op(method: str, res: Resource, noun: str, gvk: GVK, kind_def: str | None,
             defs: Defs | None = None) -> Operation:
    """The operation a method performs on an object or collection."""
    ident = f"{go_group(res.group)}{res.version.capitalize()}{noun}"
    kind = gvk[2]
    if method == "list":
        return Operation("get", "list", f"list{ident}", f"list the {kind} objects, or watch "
                         "them with watch=true", gvk, LIST_PARAMS,
                         response=_definition((gvk[0], gvk[1], f"{kind}List"), defs),
                         watch=True)
    if method == "post":
        return Operation("post", "post", f"create{ident}", f"create a {kind}", gvk, WRITE_PARAMS,
                         body=kind_def, response=kind_def, codes=(200, 201, 202))
    if method == "get":
        return Operation("get", "get", f"read{ident}", f"read one {kind}", gvk,
                         response=kind_def)
    if method == "put":
        return Operation("put", "put", f"replace{ident}", f"replace one {kind}", gvk,
                         WRITE_PARAMS, body=kind_def, response=kind_def, codes=(200, 201))
    if method == "patch":
        return Operation("patch", "patch", f"patch{ident}", f"change part of one {kind}", gvk,
                         WRITE_PARAMS, body=META + "Patch",
                         body_types=CUSTOM_PATCH_TYPES if res.custom else PATCH_TYPES,
                         response=kind_def, codes=(200, 201))
    if method == "deletecollection":
        ident = ident.replace(noun, f"Collection{noun}")
        return Operation("delete", "deletecollection", f"delete{ident}", f"delete the {kind} "
                         "objects that the selectors match", gvk, DELETE_PARAMS + LIST_PARAMS,
                         body=META + "DeleteOptions",
                         response=_definition((gvk[0], gvk[1], f"{kind}List"), defs))
    return Operation("delete", "delete", f"delete{ident}", f"delete one {kind}", gvk,
                     DELETE_PARAMS, body=META + "DeleteOptions", response=kind_def,
                     codes=(200, 202))


def _sub_op(method: str, res: Resource, noun: str, sub: Sub,
            defs: Defs | None = None) -> Operation:
    gvk = sub.gvk or _gvk(res)
    if method.startswith("connect"):
        http = method.removeprefix("connect")
        return Operation(http.lower(), "connect", f"connect{go_group(res.group)}"
                         f"{res.version.capitalize()}{http}{noun}", f"connect to {noun}", gvk,
                         sub.params)
    op = _verb_op(method, res, noun, gvk, None if sub.text else _definition(gvk, defs), defs)
    if sub.text:
        op = Operation(op.method, op.action, op.operation_id, op.description, gvk, sub.params)
    return op


# The operations of the collection and of one object, by the discovery verb
# that allows each (kube-apiserver's method names).
COLLECTION_OPS = (("list", "list"), ("create", "post"), ("deletecollection", "deletecollection"))
OBJECT_OPS = (("get", "get"), ("update", "put"), ("patch", "patch"), ("delete", "delete"))


def resource_paths(res: Resource, defs: Defs | None = None,
                   subresources: frozenset[str] | None = None) -> list[PathItem]:
    """Every path of one resource with the operations its verbs allow, as
    kube-apiserver publishes them: the collection, the object, its
    subresources and, for namespaced kinds, the list across all namespaces."""
    base = res.group_version_path
    gvk, kind_def = _gvk(res), _definition(_gvk(res), defs)
    ns_params = (NAMESPACE,) if res.namespaced else ()
    coll = f"{base}/namespaces/{{namespace}}/{res.plural}" if res.namespaced \
        else f"{base}/{res.plural}"
    noun = f"{'Namespaced' if res.namespaced else ''}{res.kind}"

    def ops(table: tuple[tuple[str, str], ...]) -> list[Operation]:
        return [_verb_op(m, res, noun, gvk, kind_def, defs) for verb, m in table
                if verb in res.verbs]

    out = [PathItem(coll, (*ns_params, PRETTY), ops(COLLECTION_OPS))]
    if ops(OBJECT_OPS):
        out.append(PathItem(f"{coll}/{{name}}", (NAME, *ns_params, PRETTY), ops(OBJECT_OPS)))
    subs = subresources if subresources is not None else paths.subresources(res.kind)
    for name in sorted(subs - {""}):
        sub = SUBRESOURCES.get(name)
        if sub is not None:
            sub_ops = [_sub_op(m, res, noun + sub.suffix, sub, defs) for m in sub.methods]
            out.append(PathItem(f"{coll}/{{name}}/{name}", (NAME, *ns_params, PRETTY), sub_ops))
    if res.namespaced and "list" in res.verbs:
        everywhere = _verb_op("list", res, f"{res.kind}ForAllNamespaces", gvk, kind_def, defs)
        out.append(PathItem(f"{base}/{res.plural}", (*LIST_PARAMS, PRETTY),
                            [_without_params(everywhere)]))
    return out


def _without_params(op: Operation) -> Operation:
    """The all-namespaces list carries its parameters on the path item."""
    return Operation(op.method, op.action, op.operation_id, op.description, op.gvk,
                     response=op.response, watch=op.watch)


# -- rendering --

def _ref(name: str, dialect: schema.Dialect) -> Obj:
    return {"$ref": dialect.value + name}


def _param(p: Param, dialect: schema.Dialect) -> Obj:
    out: Obj = {"name": p.name, "in": p.where, "description": p.description}
    if p.required:
        out["required"] = True
    kind = {"type": p.type, "uniqueItems": True}
    if dialect is schema.Dialect.V3:
        out["schema"] = kind
    else:
        out.update(kind)
    return out


def _gvk_ext(gvk: GVK) -> Obj:
    return {"group": gvk[0], "kind": gvk[2], "version": gvk[1]}


def _common(op: Operation, tag_: str, dialect: schema.Dialect) -> Obj:
    out: Obj = {"description": op.description, "operationId": op.operation_id, "tags": [tag_]}
    if op.params:
        out["parameters"] = [_param(p, dialect) for p in op.params]
    out["x-kubernetes-action"] = op.action
    out["x-kubernetes-group-version-kind"] = _gvk_ext(op.gvk)
    return out


def _v3_response_schema(op: Operation) -> dict[str, Obj]:
    dialect = schema.Dialect.V3
    if op.response is None:
        return {"text/plain": {"schema": {"type": "string"}}}
    out = {JSON: {"schema": _ref(op.response, dialect)}}
    if op.watch:
        out[WATCH_STREAM] = {"schema": _ref(META + "WatchEvent", dialect)}
    return out


def v3_operation(op: Operation, tag_: str) -> Obj:
    out = _common(op, tag_, schema.Dialect.V3)
    if op.body is not None:
        body = {"schema": _ref(op.body, schema.Dialect.V3)}
        out["requestBody"] = {"content": dict.fromkeys(op.body_types, body), "required": True}
    content = _v3_response_schema(op)
    out["responses"] = {**{str(c): {"description": CODES[c], "content": content}
                           for c in op.codes}, "401": {"description": "Unauthorized"}}
    return out


def v2_operation(op: Operation, tag_: str) -> Obj:
    dialect = schema.Dialect.V2
    out = _common(op, tag_, dialect)
    if op.body is not None:
        out["consumes"] = list(op.body_types)
        body = {"name": "body", "in": "body", "required": True, "schema": _ref(op.body, dialect)}
        out["parameters"] = [body, *out.get("parameters", [])]
    produces = [JSON] if op.response else ["text/plain"]
    out["produces"] = [*produces, WATCH_STREAM] if op.watch else produces
    returned = _ref(op.response, dialect) if op.response else {"type": "string"}
    out["responses"] = {**{str(c): {"description": CODES[c], "schema": returned}
                           for c in op.codes}, "401": {"description": "Unauthorized"}}
    return out


def _render_paths(items: Iterable[tuple[PathItem, str]], dialect: schema.Dialect) -> Obj:
    render = v3_operation if dialect is schema.Dialect.V3 else v2_operation
    out: Obj = {}
    for item, tag_ in items:
        entry: Obj = {"parameters": [_param(p, dialect) for p in item.params]}
        for op in item.operations:
            entry[op.method] = render(op, tag_)
        out[item.path] = entry
    return out


def _referenced(items: Iterable[PathItem]) -> set[str]:
    names = {META + "Status"}
    for item in items:
        for op in item.operations:
            names.update(n for n in (op.body, op.response) if n)
            if op.watch:
                names.add(META + "WatchEvent")
    return schema.reachable(names)


def _schemas(names: set[str], dialect: schema.Dialect) -> Obj:
    return {n: schema.to_openapi(n, dialect) for n in sorted(names)}


INFO = {"title": "Kubernetes", "version": "v1.32.0"}
BEARER = {"type": "apiKey", "name": "authorization", "in": "header",
          "description": "Bearer token: 'authorization: Bearer <token>'"}


def v3_document(group_version: list[Resource]) -> Obj:
    items = [(p, tag(r)) for r in group_version for p in resource_paths(r)]
    return {"openapi": "3.0.0", "info": INFO,
            "paths": _render_paths(items, schema.Dialect.V3),
            "components": {"schemas": _schemas(_referenced(p for p, _ in items),
                                               schema.Dialect.V3),
                           "securitySchemes": {"BearerToken": BEARER}},
            "security": [{"BearerToken": []}]}


def v2_document() -> Obj:
    items = [(p, tag(r)) for r in resources.ALL for p in resource_paths(r)]
    return {"swagger": "2.0", "info": INFO,
            "paths": _render_paths(items, schema.Dialect.V2),
            "definitions": _schemas(_referenced(p for p, _ in items), schema.Dialect.V2),
            "securityDefinitions": {"BearerToken": BEARER},
            "security": [{"BearerToken": []}]}


def _custom_defs(kinds: Sequence[CustomKind]) -> dict[GVK, str]:
    out: dict[GVK, str] = {}
    for k in kinds:
        r = k.resource
        out[(r.group, r.version, r.kind)] = customresources.definition_name(r)
        out[(r.group, r.version, k.list_kind)] = customresources.definition_name(r, k.list_kind)
    return out


def _custom_paths(kinds: Sequence[CustomKind]) -> list[tuple[PathItem, str]]:
    defs = _custom_defs(kinds)
    return [(p, tag(k.resource)) for k in kinds
            for p in resource_paths(k.resource, defs, frozenset({"", "status"}) if k.status
                                    else frozenset({""}))]


def _custom_schemas(kinds: Sequence[CustomKind], dialect: schema.Dialect) -> Obj:
    out: Obj = {}
    v2 = dialect is schema.Dialect.V2
    for k in kinds:
        out[customresources.definition_name(k.resource)] = customresources.kind_schema(
            k, dialect.value, v2=v2)
        out[customresources.definition_name(k.resource, k.list_kind)] = \
            customresources.list_schema(k, dialect.value)
    return out


def custom_v3_document(kinds: Sequence[CustomKind]) -> Obj:
    """One custom group-version's document, as apiextensions-apiserver publishes it."""
    items = _custom_paths(kinds)
    names = _referenced(p for p, _ in items) | schema.reachable(
        {META + "ObjectMeta", META + "ListMeta"})
    return {"openapi": "3.0.0", "info": INFO,
            "paths": _render_paths(items, schema.Dialect.V3),
            "components": {"schemas": {**_schemas(names, schema.Dialect.V3),
                                       **_custom_schemas(kinds, schema.Dialect.V3)},
                           "securitySchemes": {"BearerToken": BEARER}},
            "security": [{"BearerToken": []}]}


def with_custom_kinds(v2: Obj, kinds: Sequence[CustomKind]) -> Obj:
    """The v2 document with the custom kinds' paths and definitions merged in."""
    out = dict(v2)
    out["paths"] = {**v2["paths"], **_render_paths(_custom_paths(kinds), schema.Dialect.V2)}
    out["definitions"] = {**v2["definitions"], **_custom_schemas(kinds, schema.Dialect.V2)}
    return out


def discovery_key(api_version: str) -> str:
    """``api/v1``, ``apis/apps/v1``: the key of a group-version under /openapi/v3."""
    return f"apis/{api_version}" if "/" in api_version else f"api/{api_version}"


# -- serving --

@dataclass(frozen=True)
class Served:
    """One document as bytes, ready to send, with its validators."""

    body: bytes
    gzipped: bytes
    etag: str  # SHA-512 of the body, upper-case hex, as kube-apiserver computes it
    last_modified: str

    @classmethod
    def of(cls, doc: Obj) -> Served:
        return cls.raw(json.dumps(doc, separators=(",", ":")).encode())

    @classmethod
    def raw(cls, body: bytes) -> Served:
        return cls(body, gzip.compress(body, 6), hashlib.sha512(body).hexdigest().upper(),
                   formatdate(time.time(), usegmt=True))


@dataclass(frozen=True)
class Documents:
    v2: Served
    v3: dict[str, Served]  # by discovery key
    discovery: Served


def v3_url(key: str, etag: str) -> str:
    return f"/openapi/v3/{key}?hash={etag}"


def build() -> Documents:
    """All documents, from the served resources (tens of milliseconds)."""
    v3 = {discovery_key(gv): Served.of(v3_document(rs))
          for gv, rs in resources.group_versions().items()}
    disco = {"paths": {k: {"serverRelativeURL": v3_url(k, s.etag)} for k, s in v3.items()}}
    return Documents(Served.of(_v2_base()), v3, Served.of(disco))


_LOCK = threading.Lock()


@functools.cache
def _built() -> Documents:
    return build()


@functools.cache
def _v2_base() -> Obj:
    return v2_document()


# The documents with the custom kinds of late, by what those kinds are.
_WITH_CUSTOM: dict[str, tuple[Documents, Served | None]] = {}
_WITH_CUSTOM_MAX = 4


def _fingerprint(kinds: Sequence[CustomKind]) -> str:
    return json.dumps([(k.resource.api_version, k.resource.plural, k.resource.namespaced,
                        k.schema, k.status, k.list_kind) for k in kinds], sort_keys=True)


def _build_custom(kinds: Sequence[CustomKind]) -> Documents:
    base = _built()
    by_gv: dict[str, list[CustomKind]] = {}
    for k in kinds:
        by_gv.setdefault(k.resource.api_version, []).append(k)
    v3 = dict(base.v3)
    for gv, ks in by_gv.items():
        v3[discovery_key(gv)] = Served.of(custom_v3_document(ks))
    disco = {"paths": {k: {"serverRelativeURL": v3_url(k, s.etag)} for k, s in v3.items()}}
    return Documents(Served.of(with_custom_kinds(_v2_base(), kinds)), v3, Served.of(disco))


def documents(kinds: Sequence[CustomKind] = ()) -> Documents:
    """The documents of this process, built by the first caller; with custom
    kinds, built again when those change."""
    with _LOCK:
        if not kinds:
            return _built()
        key = _fingerprint(kinds)
        if key not in _WITH_CUSTOM:
            if len(_WITH_CUSTOM) >= _WITH_CUSTOM_MAX:
                _WITH_CUSTOM.pop(next(iter(_WITH_CUSTOM)))
            _WITH_CUSTOM[key] = (_build_custom(kinds), None)
        return _WITH_CUSTOM[key][0]


_PB_LOCK = threading.Lock()


@functools.cache
def _v2_encoded() -> Served:
    return Served.raw(openapi_pb.encode(json.loads(documents().v2.body)))


def v2_protobuf(kinds: Sequence[CustomKind] = ()) -> Served:
    """The served v2 document as gnostic protobuf, encoded by the first caller
    (kubectl's client-side validation and plaintext-openapiv2 explain read it).
    Its ETag is its own bytes' hash: kube-apiserver reuses the JSON one, but
    one tag for two representations would let a cache answer one with the other."""
    if not kinds:
        with _PB_LOCK:
            return _v2_encoded()
    docs = documents(kinds)
    key = _fingerprint(kinds)
    with _LOCK:
        cached = _WITH_CUSTOM.get(key)
        if cached is not None and cached[1] is not None:
            return cached[1]
    encoded = Served.raw(openapi_pb.encode(json.loads(docs.v2.body)))
    with _LOCK:
        if key in _WITH_CUSTOM:
            _WITH_CUSTOM[key] = (_WITH_CUSTOM[key][0], encoded)
    return encoded


def _accepts(request: web.Request, content_type: str) -> bool:
    """Whether the Accept header takes ``content_type`` (no header: anything)."""
    accept = request.headers.get("Accept", "*/*") or "*/*"
    major = content_type.split("/")[0]
    for clause in accept.split(","):
        wanted = clause.split(";")[0].strip().lower()
        if wanted in (content_type, f"{major}/*", "*/*"):
            return True
    return False


def _send(request: web.Request, doc: Served, *, immutable: bool = False,
          content_type: str = JSON) -> web.Response:
    headers = {"ETag": f'"{doc.etag}"', "Last-Modified": doc.last_modified, "Vary": "Accept"}
    if immutable:
        headers["Cache-Control"] = "public, immutable"
        headers["Expires"] = formatdate(time.time() + 365 * 86400, usegmt=True)
    sent = request.headers.get("If-None-Match", "")
    known = {tag_.strip().removeprefix("W/") for tag_ in sent.split(",")}
    if known & {f'"{doc.etag}"', "*"}:
        return web.Response(status=304, headers=headers)
    body = doc.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"], body = "gzip", doc.gzipped
        headers["Vary"] = "Accept, Accept-Encoding"
    return web.Response(body=body, headers=headers, content_type=content_type)


def _not_acceptable(request: web.Request, served: str = JSON) -> web.Response:
    """kube-apiserver also speaks protobuf for v3; netplane only JSON."""
    accept = request.headers.get("Accept", "")
    return web.Response(status=406, text=f"only {served} is served here, not {accept}\n",
                        headers={"Vary": "Accept"})


def _v2_format(request: web.Request) -> str | None:
    """What the first Accept clause that /openapi/v2 can answer asks for:
    JSON (also for wildcards, as kube-openapi), gnostic protobuf under either
    spelling of its type (kubectl's, with ``@``, or kube's), or None."""
    for clause in (request.headers.get("Accept", "*/*") or "*/*").split(","):
        wanted = clause.split(";")[0].strip().lower()
        if wanted in (JSON, "application/*", "*/*"):
            return JSON
        if wanted in openapi_pb.ACCEPTED:
            return openapi_pb.CONTENT_TYPE
    return None


async def v2(request: web.Request) -> web.Response:
    wanted = _v2_format(request)
    if wanted is None:
        return _not_acceptable(request, f"{JSON} or {openapi_pb.CONTENT_TYPE}")
    kinds = _custom_kinds(request)
    if wanted == JSON:
        return _send(request, (await asyncio.to_thread(documents, kinds)).v2)
    return _send(request, await asyncio.to_thread(v2_protobuf, kinds), content_type=wanted)


def _custom_kinds(request: web.Request) -> list[CustomKind]:
    custom = request.app.get(paths.CUSTOM_KINDS)
    if custom is None:
        return []
    return sorted((custom.about(r) for r in custom.served()),
                  key=lambda k: (k.resource.api_version, k.resource.plural))


async def v3_discovery(request: web.Request) -> web.Response:
    kinds = _custom_kinds(request)
    return _send(request, (await asyncio.to_thread(documents, kinds)).discovery)


async def v3_group_version(request: web.Request) -> web.Response:
    key = request.match_info["gv"].strip("/")
    kinds = _custom_kinds(request)
    doc = (await asyncio.to_thread(documents, kinds)).v3.get(key)
    if doc is None:
        return web.Response(status=404, text=f"no OpenAPI document for {key}\n")
    if not _accepts(request, JSON):
        return _not_acceptable(request)
    wanted = request.query.get("hash")
    if wanted and wanted != doc.etag:
        # An old hash: point the client at the current document.
        raise web.HTTPMovedPermanently(v3_url(key, doc.etag))
    return _send(request, doc, immutable=bool(wanted))


def routes(app: web.Application) -> None:
    """The OpenAPI routes, and the Warning headers of field validation that
    they announce (the documents are what make kubectl ask for it)."""
    app.router.add_get("/openapi/v2", v2)
    app.router.add_get("/openapi/v3", v3_discovery)
    app.router.add_get("/openapi/v3/{gv:.+}", v3_group_version)
    fieldvalidation.install(app)
