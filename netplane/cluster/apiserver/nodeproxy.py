"""The pod subresources served by the pod's node: ``log``, ``exec``,
``attach`` and ``portforward``. The API server finds the pod's node and its
InternalIP, then proxies to the agent's API there (``https://IP:10250``) with
its kubelet-client certificate: logs stream through chunk by chunk; the
streaming verbs are WebSocket upgrades relayed message by message in both
directions, with the subprotocol the client and the agent agree on, until
either side closes."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import WSMsgType, web

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import paths, status
from netplane.cluster.apiserver.registry import Registry

KUBELET_PORT = 10250
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
KUBELET_TLS = web.AppKey("kubelet_tls", ssl.SSLContext)
_AGENT_PATHS = {"log": "containerLogs", "exec": "exec", "attach": "attach",
                "portforward": "portForward"}


def client_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """How the API server calls agents: its client certificate; the agents'
    self-signed serving certificates are not verified (as kube-apiserver
    does not by default)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert, key)
    return ctx


def container_name(pod: Obj, wanted: str | None) -> str:
    """The container asked for, or the pod's default one."""
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if not wanted:
        annotated = (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER)
        wanted = annotated if annotated in names else (names[0] if names else "")
    if not wanted or wanted not in names:
        raise status.bad_request(f"container {wanted} is not valid for pod {meta.name(pod)}")
    return wanted


def node_address(registry: Registry, pod: Obj) -> str:
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise status.bad_request(f"pod {meta.name(pod)} does not have a host assigned")
    try:
        node = registry.get(resources.NODE, None, node_name)
    except status.ApiError:
        raise status.bad_request(f"pod {meta.name(pod)} is on node {node_name}, "
                                 "which is not registered") from None
    address = meta.node_address(node)
    if not address:
        raise status.bad_request(f"node {node_name} has no InternalIP address")
    return address


def agent_url(address: str, sub: str, pod: Obj, container: str | None,
              query: list[tuple[str, str]]) -> str:
    parts = [_AGENT_PATHS[sub], meta.namespace(pod), meta.name(pod)]
    if container is not None:
        parts.append(container)
    path = "/".join(quote(p, safe="") for p in parts)
    rest = [(k, v) for k, v in query if k != "container"]
    return f"https://{address}:{KUBELET_PORT}/{path}" + (f"?{urlencode(rest)}" if rest else "")


async def handle(request: web.Request, registry: Registry,
                 target: paths.Target) -> web.StreamResponse:
    if target.name is None or target.namespace is None:
        raise status.ApiError(405, "MethodNotAllowed", "pods have no collection subresources")
    pod = registry.get(target.resource, target.namespace, target.name)
    sub = target.subresource
    container = None if sub == "portforward" else \
        container_name(pod, request.query.get("container"))
    url = agent_url(node_address(registry, pod), sub, pod, container,
                    list(request.query.items()))
    tls = request.app.get(KUBELET_TLS)
    if tls is None:
        raise status.ApiError(503, "ServiceUnavailable",
                              "the API server has no client certificate for node agents")
    if sub == "log":
        if request.method != "GET":
            raise status.ApiError(405, "MethodNotAllowed", f"{request.method} on pods/log")
        return await _logs(request, url, tls)
    return await _upgrade(request, url, tls)


def _session(tls: ssl.SSLContext) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))


def _agent_failure(code: int, text: str) -> status.ApiError:
    message = text.strip() or f"the node agent answered {code}"
    if code == 404:
        return status.ApiError(404, "NotFound", message)
    if code < 500:
        return status.bad_request(message)
    return status.ApiError(500, "InternalError", message)


def _unreachable(url: str, e: Exception) -> status.ApiError:
    return status.ApiError(502, "BadGateway", f"cannot reach the node agent at {url}: {e}")


async def _logs(request: web.Request, url: str, tls: ssl.SSLContext) -> web.StreamResponse:
    async with _session(tls) as session:
        try:
            upstream = await session.get(url)
        except (aiohttp.ClientError, OSError) as e:
            raise _unreachable(url.split("?")[0], e) from None
        async with upstream:
            if upstream.status != 200:
                raise _agent_failure(upstream.status, await upstream.text())
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            return resp


async def _why_not(request: web.Request, url: str, tls: ssl.SSLContext) -> status.ApiError:
    """The error for a request that is not a WebSocket upgrade (SPDY: kubectl
    falls back to it when a WebSocket upgrade fails): the agent's own reason
    when it has one (container not running...), else that WebSocket is needed."""
    async with _session(tls) as session:
        try:
            async with session.get(url) as plain:
                text = await plain.text()
                if plain.status >= 400 and not text.startswith("Upgrade request required"):
                    return _agent_failure(plain.status, text)
        except (aiohttp.ClientError, OSError) as e:
            return _unreachable(url.split("?")[0], e)
    upgrade = request.headers.get("Upgrade", "")
    return status.bad_request(f"Upgrade request required: this server streams over "
                              f"WebSocket only (the request asked for {upgrade or 'none'})")


def _offered(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


async def _upgrade(request: web.Request, url: str, tls: ssl.SSLContext) -> web.StreamResponse:
    probe = web.WebSocketResponse(protocols=tuple(_offered(request)))
    if not probe.can_prepare(request).ok:
        raise await _why_not(request, url, tls)
    async with _session(tls) as session:
        try:
            upstream = await session.ws_connect(url, protocols=_offered(request),
                                                max_msg_size=0, autoping=True)
        except aiohttp.WSServerHandshakeError as e:
            # The agent refused before upgrading: ask again plainly for its reason.
            async with session.get(url) as plain:
                raise _agent_failure(e.status, await plain.text()) from None
        except (aiohttp.ClientError, OSError) as e:
            raise _unreachable(url.split("?")[0], e) from None
        protocols = (upstream.protocol,) if upstream.protocol else ()
        downstream = web.WebSocketResponse(protocols=protocols, max_msg_size=0)
        await downstream.prepare(request)
        await _relay(downstream, upstream)
        return downstream


async def _copy(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for msg in src:
        if msg.type is WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type is WSMsgType.TEXT:
            await dst.send_str(msg.data)


async def _relay(client: web.WebSocketResponse,
                 agent: aiohttp.ClientWebSocketResponse) -> None:
    tasks = {asyncio.create_task(_copy(client, agent)), asyncio.create_task(_copy(agent, client))}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except (ConnectionError, aiohttp.ClientError):
        pass
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await agent.close()
        await client.close()
