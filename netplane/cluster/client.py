"""The async API client and the informer (list + watch -> cache -> handlers).

Every component other than the API server talks to the cluster through this
module: over the server's Unix socket, or over TLS with a bearer token."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from netplane import __version__
from netplane.api import meta
from netplane.api.meta import Obj
from netplane.api.resources import Resource

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A ``Status`` returned by the server."""

    def __init__(self, code: int, reason: str, message: str, body: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.body = code, reason, message, body or {}

    @property
    def causes(self) -> list[Obj]:
        return list((self.body.get("details") or {}).get("causes") or [])


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    pass


def _error(code: int, body: Obj) -> ApiError:
    cls = {404: NotFound, 409: Conflict, 410: Gone}.get(code, ApiError)
    if code == 409 and body.get("reason") == "AlreadyExists":
        cls = AlreadyExists
    return cls(code, str(body.get("reason", "")), str(body.get("message", f"HTTP {code}")), body)


class AlreadyExists(Conflict):
    pass


@dataclass(frozen=True)
class Connection:
    """Where the API is: a Unix socket, or an https URL with CA and token."""

    socket: str | None = None
    url: str | None = None
    token: str | None = None
    ca_file: str | None = None

    def base(self) -> str:
        return "http://localhost" if self.socket else (self.url or "").rstrip("/")


# TCP keepalive on the client's connections: one cut off from the server
# (a node whose link went down) fails within about 25 s of silence, so its
# watches start again at once when the link is back, instead of waiting for
# the server's retransmissions, which back off for up to minutes.
KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}


def keepalive_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    family, kind, proto = addr_info[:3]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE.items():
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    return sock


# What a request raises when the API cannot be reached or the connection
# breaks, besides the API's own errors (ApiError).
UNREACHABLE: tuple[type[Exception], ...] = (aiohttp.ClientError, OSError, TimeoutError)


class Client:
    def __init__(self, conn: Connection, *, user_agent: str = "netplane") -> None:
        self.conn = conn
        # The API server names a write's field manager after it, as kube does.
        self.user_agent = f"{user_agent}/{__version__}"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.conn.socket:
                connector = aiohttp.UnixConnector(path=self.conn.socket)
            else:
                ctx = ssl.create_default_context(cafile=self.conn.ca_file)
                connector = aiohttp.TCPConnector(ssl=ctx, socket_factory=keepalive_socket)
            headers = {"User-Agent": self.user_agent}
            if self.conn.token:
                headers["Authorization"] = f"Bearer {self.conn.token}"
            self._session = aiohttp.ClientSession(
                connector=connector, headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, body: Any = None,
                      content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> Obj:
        url = self.conn.base() + path
        if params:
            url += "?" + urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        async with self._sess().request(method, url, data=data,
                                        headers={"Content-Type": content_type},
                                        timeout=aiohttp.ClientTimeout(total=60)) as resp:
            text = await resp.text()
            try:
                out: Obj = json.loads(text) if text else {}
            except ValueError:
                out = {"message": text}
            if resp.status >= 400:
                raise _error(resp.status, out)
            return out

    # -- verbs --

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj:
        return await self.request("GET", res.object_path(name, namespace))

    async def list(self, res: Resource, namespace: str | None = None, *,
                   label_selector: str = "", field_selector: str = "") -> Obj:
        params = {k: v for k, v in (("labelSelector", label_selector),
                                    ("fieldSelector", field_selector)) if v}
        return await self.request("GET", res.collection_path(namespace), params=params)

    async def create(self, res: Resource, obj: Obj, namespace: str | None = None, *,
                     dry_run: bool = False) -> Obj:
        ns = namespace or (meta.namespace(obj) if res.namespaced else None) or \
            ("default" if res.namespaced else None)
        return await self.request("POST", res.collection_path(ns), body=obj,
                                  params={"dryRun": "All"} if dry_run else None)

    async def update(self, res: Resource, obj: Obj, *, subresource: str = "",
                     dry_run: bool = False) -> Obj:
        path = res.object_path(meta.name(obj), meta.namespace(obj) or None)
        return await self.request("PUT", path + (f"/{subresource}" if subresource else ""),
                                  body=obj, params={"dryRun": "All"} if dry_run else None)

    async def table(self, res: Resource, namespace: str | None = None, *, name: str = "",
                    label_selector: str = "") -> Obj:
        """Server-side printing, as kubectl asks for it."""
        path = res.object_path(name, namespace) if name else res.collection_path(namespace)
        params = {"labelSelector": label_selector} if label_selector and not name else {}
        url = self.conn.base() + path + ("?" + urlencode(params) if params else "")
        accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        async with self._sess().get(url, headers={"Accept": accept}) as resp:
            out: Obj = json.loads(await resp.text() or "{}")
            if resp.status >= 400:
                raise _error(resp.status, out)
            return out

    async def update_status(self, res: Resource, obj: Obj) -> Obj:
        return await self.update(res, obj, subresource="status")

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None,
                    *, subresource: str = "",
                    content_type: str = "application/merge-patch+json") -> Obj:
        path = res.object_path(name, namespace) + (f"/{subresource}" if subresource else "")
        return await self.request("PATCH", path, body=patch, content_type=content_type)

    async def delete(self, res: Resource, name: str, namespace: str | None = None, *,
                     grace_period: int | None = None, propagation_policy: str | None = None,
                     preconditions: dict[str, str] | None = None) -> Obj:
        """DELETE; with a propagation policy (Orphan, Background, Foreground) or
        preconditions (uid, resourceVersion) the options go as a DeleteOptions body."""
        path = res.object_path(name, namespace)
        if propagation_policy is None and not preconditions:
            params = {"gracePeriodSeconds": str(grace_period)} \
                if grace_period is not None else None
            return await self.request("DELETE", path, params=params)
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if propagation_policy is not None:
            body["propagationPolicy"] = propagation_policy
        if preconditions:
            body["preconditions"] = preconditions
        return await self.request("DELETE", path, body=body)

    async def bind(self, pod: Obj, node_name: str) -> Obj:
        """The pods/binding subresource; the server answers a Status, not the pod."""
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": meta.name(pod), "namespace": meta.namespace(pod)},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        path = f"/api/v1/namespaces/{meta.namespace(pod)}/pods/{meta.name(pod)}/binding"
        return await self.request("POST", path, body=body)

    async def watch(self, res: Resource, namespace: str | None = None, *,
                    resource_version: str = "", label_selector: str = "",
                    field_selector: str = "",
                    timeout_seconds: int = 300) -> AsyncIterator[tuple[str, Obj]]:
        params = {"watch": "1", "timeoutSeconds": str(timeout_seconds)}
        for k, v in (("resourceVersion", resource_version), ("labelSelector", label_selector),
                     ("fieldSelector", field_selector)):
            if v:
                params[k] = v
        url = self.conn.base() + res.collection_path(namespace) + "?" + urlencode(params)
        async with self._sess().get(url) as resp:
            if resp.status >= 400:
                raise _error(resp.status, json.loads(await resp.text() or "{}"))
            async for line in resp.content:
                if not line.strip():
                    continue
                ev = json.loads(line)
                if ev.get("type") == "ERROR":
                    st = ev.get("object") or {}
                    raise _error(int(st.get("code", 500)), st)
                yield ev["type"], ev["object"]


Handler = Callable[[Obj | None, Obj | None], Awaitable[None] | None]


IndexFunc = Callable[[Obj], Iterable[str]]
NAMESPACE_INDEX = "namespace"


class Informer:
    """Keeps a cache of one resource in sync by list + watch and calls every
    handler with (previous, current): (None, obj) for an add, (obj, None) for
    a delete. After a broken watch or an expired revision it lists again and
    reports only what differs from the cache. Indexes (client-go's
    Indexers; by namespace always) find objects without a scan."""

    def __init__(self, client: Client, res: Resource, *, namespace: str | None = None,
                 label_selector: str = "", field_selector: str = "",
                 transform: Callable[[Obj], Obj] | None = None) -> None:
        self.client, self.res = client, res
        # What is kept of each object (client-go's SetTransform): all of it by default.
        self.transform = transform
        self.namespace = namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.cache: dict[str, Obj] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._index_funcs: dict[str, IndexFunc] = {
            NAMESPACE_INDEX: lambda o: (meta.namespace(o),)}
        self._indexes: dict[str, dict[str, dict[str, Obj]]] = {NAMESPACE_INDEX: {}}

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def add_index(self, name: str, func: IndexFunc) -> None:
        """Objects by the values ``func`` gives for them (several or none)."""
        self._index_funcs[name] = func
        self._indexes[name] = {}
        for key, obj in self.cache.items():
            self._index(name, key, obj)

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.cache.get(f"{namespace}/{name}" if namespace else name)

    def items(self) -> list[Obj]:
        return list(self.cache.values())

    def by_index(self, name: str, value: str) -> list[Obj]:
        return list(self._indexes[name].get(value, {}).values())

    def in_namespace(self, namespace: str) -> list[Obj]:
        return self.by_index(NAMESPACE_INDEX, namespace)

    def _index(self, name: str, key: str, obj: Obj) -> None:
        for value in self._index_funcs[name](obj):
            self._indexes[name].setdefault(value, {})[key] = obj

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self._index_funcs.items():
            index = self._indexes[name]
            for value in func(obj):
                bucket = index.get(value)
                if bucket is not None:
                    bucket.pop(key, None)
                    if not bucket:
                        del index[value]

    def _put(self, key: str, obj: Obj) -> None:
        prev = self.cache.get(key)
        if prev is not None:
            self._unindex(key, prev)
        self.cache[key] = obj
        for name in self._index_funcs:
            self._index(name, key, obj)

    def _drop(self, key: str) -> None:
        prev = self.cache.pop(key, None)
        if prev is not None:
            self._unindex(key, prev)

    async def _emit(self, prev: Obj | None, cur: Obj | None) -> None:
        for h in self.handlers:
            try:
                result = h(prev, cur)
                if result is not None:
                    await result
            except Exception:
                log.exception("handler for %s failed", self.res.plural)

    async def _relist(self) -> None:
        body = await self.client.list(self.res, self.namespace,
                                      label_selector=self.label_selector,
                                      field_selector=self.field_selector)
        items = body.get("items", [])
        if self.transform is not None:
            items = [self.transform(o) for o in items]
        fresh = {meta.namespaced_name(o): o for o in items}
        old = self.cache
        self.cache = {}
        for index in self._indexes.values():
            index.clear()
        for key, obj in fresh.items():
            self._put(key, obj)
        self.resource_version = body.get("metadata", {}).get("resourceVersion", "")
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None or meta.resource_version(prev) != meta.resource_version(obj):
                await self._emit(prev, obj)
        for key, prev in old.items():
            if key not in fresh:
                await self._emit(prev, None)
        self.synced.set()

    async def _follow(self) -> None:
        async for kind, obj in self.client.watch(
                self.res, self.namespace, resource_version=self.resource_version,
                label_selector=self.label_selector, field_selector=self.field_selector):
            if self.transform is not None:
                obj = self.transform(obj)
            key = meta.namespaced_name(obj)
            self.resource_version = obj.get("metadata", {}).get("resourceVersion", "")
            prev = self.cache.get(key)
            if kind == "DELETED":
                self._drop(key)
                await self._emit(prev, None)
            else:
                self._put(key, obj)
                await self._emit(prev, obj)

    async def run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._follow()
                backoff = 0.2
            except Gone:
                need_list = True
            except (aiohttp.ClientError, OSError, ApiError, ValueError) as e:
                log.debug("watch of %s broke (%s); retrying", self.res.plural, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                need_list = True


def load_connection(path: Path | None = None, *, socket: str | None = None) -> Connection:
    """A connection from a kubeconfig file (https URL + token + CA), or a socket."""
    if socket:
        return Connection(socket=socket)
    assert path is not None
    import yaml

    cfg = yaml.safe_load(path.read_text())
    ctx_name = cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    return Connection(url=cluster["server"], token=user.get("token"),
                      ca_file=cluster.get("certificate-authority"))
