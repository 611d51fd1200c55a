"""HTTP handlers: discovery, the resource REST verbs and watch streams."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from netplane.api import deletion, meta, resources, selectors
from netplane.api.meta import Obj
from netplane.cluster.apiserver import (
    agentproxy,
    eviction,
    fieldmanager,
    fieldvalidation,
    metricsapi,
    nodeproxy,
    openapi,
    paths,
    reviews,
    scale,
    status,
    tables,
    views,
)
from netplane.cluster.apiserver.discovery import api_groups, api_versions, resource_list, version
from netplane.cluster.apiserver.fieldmanager import APPLY_PATCH
from netplane.cluster.apiserver.patch import JSON_PATCH, MERGE, STRATEGIC
from netplane.cluster.apiserver.registry import Query, Registry

REGISTRY = web.AppKey("registry", Registry)
WATCH_TIMEOUT = 1800.0
# kube-apiserver's MaxRequestBodyBytes: 3 MiB.
MAX_BODY = 3 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, code: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=code, content_type="application/json")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except status.ApiError as e:
        return _json(e.status(), e.code)
    except selectors.SelectorError as e:
        return _json(status.bad_request(str(e)).status(), 400)
    except web.HTTPRequestEntityTooLarge:
        return _json(status.too_large(MAX_BODY).status(), 413)


# -- discovery --

async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


# -- resources --

async def _body(request: web.Request) -> Any:
    """The request's object, from JSON, YAML or protobuf (the one place bodies are read)."""
    raw = await request.read()
    if not raw:
        raise status.bad_request("the request has no body")
    return _decode(request, raw)


def _decode(request: web.Request, raw: bytes) -> Any:
    from netplane.api import protobuf

    if request.content_type == protobuf.CONTENT_TYPE:
        try:
            return protobuf.decode(raw)
        except protobuf.UnsupportedField as e:
            raise status.ApiError(415, "UnsupportedMediaType", str(e)) from None
        except protobuf.ProtobufError as e:
            raise status.bad_request(str(e)) from None
    try:
        if "yaml" in request.content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise status.bad_request(f"the request body is not valid JSON or YAML: {e}") from None


def _query(request: web.Request, target: paths.Target) -> Query:
    fields = None
    if target.resource.custom:
        about = request.app[REGISTRY].custom.about(target.resource)
        fields = {**selectors.CUSTOM_FIELD_PATHS,
                  **{f: tuple(f.split(".")) for f in about.selectable}}
    return Query(namespace=target.namespace,
                 labels=selectors.parse(request.query.get("labelSelector", "")),
                 fields=selectors.parse_fields(request.query.get("fieldSelector", ""), fields))


def _include_object(request: web.Request) -> str:
    value = request.query.get("includeObject", "Metadata")
    if value not in ("None", "Metadata", "Object"):
        raise status.bad_request(f"includeObject must be None, Metadata or Object, not {value!r}")
    return value


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _list_body(res: resources.Resource, items: list[Obj], rev: int,
               registry: Registry | None = None) -> Obj:
    kind = registry.custom.about(res).list_kind if res.custom and registry else f"{res.kind}List"
    return {"kind": kind, "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(rev)}, "items": items}


async def resource(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    target = paths.parse(request.path, registry.custom)
    res, ns, name, sub = target.resource, target.namespace, target.name, target.subresource
    if res.read_only:
        return await metricsapi.handle(request, registry, target, _query(request, target))
    if sub == "proxy":
        return await agentproxy.handle(request, registry, target)
    registry = views.for_resource(registry, res)
    method = request.method
    if not fieldmanager.is_apply(request):  # apply judges its body itself
        await fieldvalidation.check(request, registry, target)
    if res.create_only or sub == "token":
        if method != "POST" or (res.create_only and name is not None):
            raise status.ApiError(405, "MethodNotAllowed",
                                  f"only POST is allowed on {res.plural}{'/' + sub if sub else ''}")
        body = await _body(request)
        if sub == "token":
            return reviews.token(request, registry, target, body)
        return reviews.handle(request, target, body)
    if sub == "scale" and name is not None:
        return await _scale(request, registry, target)
    if sub in ("log", "exec", "attach", "portforward"):
        return await nodeproxy.handle(request, registry, target)
    if name is None:
        if method == "DELETE":
            return await _delete(request, registry, target)
        if method == "GET":
            if request.query.get("watch") in ("1", "true"):
                return await _watch(request, registry, target)
            items, rev = registry.list(res, _query(request, target))
            if _wants_table(request):
                return _json(tables.table(res.kind, items, str(rev),
                                          include_object=_include_object(request),
                                          cols=_columns(registry, res)))
            return _json(_list_body(res, items, rev, registry))
        if method == "POST":
            return _json(registry.create(res, ns, await _body(request),
                                         dry_run=_dry_run(request),
                                         manager=fieldmanager.manager(request)), 201)
        raise status.ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {res.plural}")
    if method == "GET":
        obj = registry.get(res, ns, name)
        if _wants_table(request):
            return _json(tables.table(res.kind, [obj], obj["metadata"]["resourceVersion"],
                                      include_object=_include_object(request),
                                      cols=_columns(registry, res)))
        return _json(obj)
    if method == "PUT":
        return _json(registry.update(res, ns, name, await _body(request), subresource=sub,
                                     dry_run=_dry_run(request),
                                     manager=fieldmanager.manager(request)))
    if method == "PATCH":
        ctype = _patch_type(request)
        if ctype == APPLY_PATCH:
            return await _apply(request, registry, target)
        return _json(registry.patch(res, ns, name, await _body(request), ctype, subresource=sub,
                                    dry_run=_dry_run(request),
                                    manager=fieldmanager.manager(request)))
    if method == "POST" and sub == "binding" and ns:
        registry.bind(ns, name, await _body(request))
        return _json(status.success(201), 201)  # as kube's BindingREST: not the pod
    if method == "POST" and sub == "eviction" and ns:
        return _json(eviction.evict(registry, ns, name, await _body(request),
                                    dry_run=_dry_run(request)), 201)
    if method == "DELETE":
        return await _delete(request, registry, target)
    raise status.ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")


def _columns(registry: Registry, res: resources.Resource) -> list[tables.Column] | None:
    """A custom kind's printer columns; None: the kind's compiled-in ones."""
    return tables.printer_columns(registry.custom.about(res).columns) if res.custom else None


def _patch_type(request: web.Request) -> str:
    ctype = request.content_type
    if ctype not in (MERGE, STRATEGIC, JSON_PATCH, APPLY_PATCH):
        raise status.ApiError(415, "UnsupportedMediaType",
                              f"the patch content type {ctype!r} is not supported")
    return ctype


async def _scale(request: web.Request, registry: Registry,
                 target: paths.Target) -> web.Response:
    res, ns, name = target.resource, target.namespace, str(target.name)
    if request.method == "GET":
        return _json(scale.get(registry, res, ns, name))
    if request.method == "PUT":
        return _json(scale.update(registry, res, ns, name, await _body(request),
                                  dry_run=_dry_run(request),
                                  manager=fieldmanager.manager(request)))
    if request.method == "PATCH":
        ctype = _patch_type(request)
        if ctype == APPLY_PATCH:
            return await _apply(request, registry, target)
        return _json(scale.patch(registry, res, ns, name, await _body(request), ctype,
                                 dry_run=_dry_run(request),
                                 manager=fieldmanager.manager(request)))
    raise status.ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on scale")


async def _apply(request: web.Request, registry: Registry,
                 target: paths.Target) -> web.Response:
    """Server-side apply (``kubectl apply --server-side``): 201 when it created."""
    res, ns, name, sub = target.resource, target.namespace, str(target.name), target.subresource
    body, manager = await _body(request), fieldmanager.manager(request)
    force, dry_run = fieldmanager.force(request), _dry_run(request)
    if sub == "scale":
        return _json(scale.apply(registry, res, ns, name, body, manager=manager, force=force,
                                 dry_run=dry_run))
    obj, created = registry.apply(res, ns, name, body, manager=manager, force=force,
                                  subresource=sub, dry_run=dry_run)
    return _json(obj, 201 if created else 200)


def _dry_run(request: web.Request) -> bool:
    return request.query.get("dryRun") == "All"


def _whole_number(request: web.Request, key: str) -> int:
    """A numeric query parameter; a 400 (not a broken stream) when it is not one."""
    value = request.query[key]
    if not value.isdigit():
        raise status.bad_request(f"{key} must be a whole number, not {value!r}")
    return int(value)


async def _delete_options(request: web.Request) -> deletion.DeleteOptions:
    """DeleteOptions from the body (JSON or protobuf, as kubectl and client-go
    send them) or, when there is none, from the query parameters."""
    raw = await request.read() if request.can_read_body else b""
    try:
        opts = deletion.options(_decode(request, raw) if raw else None, request.query)
    except deletion.BadOptions as e:
        raise status.bad_request(str(e)) from None
    except deletion.InvalidOptions as e:
        raise status.invalid("DeleteOptions.meta.k8s.io", "", e.errors) from None
    if _dry_run(request) and not opts.dry_run:
        opts = dataclasses.replace(opts, dry_run=True)
    return opts


async def _delete(request: web.Request, registry: Registry,
                  target: paths.Target) -> web.Response:
    res, ns, name = target.resource, target.namespace, target.name
    opts = await _delete_options(request)
    if name is None:
        items = registry.delete_collection(res, _query(request, target), options=opts)
        out = _json(_list_body(res, items, registry.store.revision, registry))
    else:
        obj = registry.delete(res, ns, name, options=opts)
        # 202 when the object stays and the (older) orphanDependents=false asked for a
        # cascade, as kube-apiserver answers; 200 otherwise.
        kept = opts.orphan_dependents is False and _still_there(registry, res, obj)
        out = _json(obj, 202 if kept else 200)
    for text in deletion.warnings_on_delete(res.api_version, res.kind, opts):
        out.headers.add("Warning", f'299 - "{text}"')
    return out


def _still_there(registry: Registry, res: resources.Resource, obj: Obj) -> bool:
    try:
        return meta.uid(registry.get(res, meta.namespace(obj) or None, meta.name(obj))) \
            == meta.uid(obj)
    except status.ApiError:
        return False


# Objects' JSON by identity, each entry holding its object (so an id is not
# reused while cached): the watches that get one event share one object, and
# the first of them encodes it for all.
_ENCODED: collections.OrderedDict[int, tuple[Obj, bytes]] = collections.OrderedDict()
_ENCODED_MAX = 512


def _encoded(obj: Obj) -> bytes:
    hit = _ENCODED.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    data = json.dumps(obj, separators=(",", ":")).encode()
    _ENCODED[id(obj)] = (obj, data)
    if len(_ENCODED) > _ENCODED_MAX:
        _ENCODED.popitem(last=False)
    return data


async def _watch(request: web.Request, registry: Registry,
                 target: paths.Target) -> web.StreamResponse:
    query = _query(request, target)
    rv = str(_whole_number(request, "resourceVersion")) \
        if request.query.get("resourceVersion") else None
    timeout = float(_whole_number(request, "timeoutSeconds")) \
        if "timeoutSeconds" in request.query else WATCH_TIMEOUT
    table = _wants_table(request)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    events = registry.watch(target.resource, query, rv)
    try:
        async with asyncio.timeout(timeout):
            async for kind, obj in events:
                if table:
                    out = tables.table(obj["kind"], [obj], obj["metadata"]["resourceVersion"],
                                       include_object=_include_object(request),
                                       cols=_columns(registry, target.resource))
                    await resp.write(json.dumps({"type": kind, "object": out}).encode() + b"\n")
                else:
                    await resp.write(b'{"type":"' + kind.encode() + b'","object":'
                                     + _encoded(obj) + b"}\n")
    except TimeoutError:
        pass
    except status.ApiError as e:
        await resp.write(json.dumps({"type": "ERROR", "object": e.status()}).encode() + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        return resp
    finally:
        await events.aclose()
    return resp


def routes(app: web.Application) -> None:
    app.router.add_get("/version", version)
    for p in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(p, healthz)
    app.router.add_get("/api", api_versions)
    app.router.add_get("/apis", api_groups)
    app.router.add_get("/api/{version}", resource_list)
    app.router.add_get("/apis/{group}/{version}", resource_list)
    openapi.routes(app)
    app.router.add_route("*", "/api/{version}/{tail:.+}", resource)
    app.router.add_route("*", "/apis/{group}/{version}/{tail:.+}", resource)
