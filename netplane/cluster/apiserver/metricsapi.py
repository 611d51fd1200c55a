"""``metrics.k8s.io/v1beta1``, served as metrics-server serves it:
NodeMetrics (``nodes``) and PodMetrics (``pods``), get and list, what
``kubectl top`` reads. A loop scrapes every node's agent
(``https://InternalIP:10250/metrics/resource``, with the API server's
kubelet-client certificate, as the log proxy calls it) each ``RESOLUTION``
seconds into :class:`~netplane.cluster.apiserver.metricsstore.MetricsStore`;
requests read the nodes and pods from the registry (selectors and
namespaces as for any list) and the figures from the store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import paths, status, tables
from netplane.cluster.apiserver.metricsstore import MetricsStore, list_body, parse
from netplane.cluster.apiserver.registry import Query, Registry

log = logging.getLogger(__name__)

KUBELET_PORT = 10250
RESOLUTION = 10.0  # metrics-server's shortest --metric-resolution
SCRAPE_TIMEOUT = 5.0
METRICS = web.AppKey("metrics", MetricsStore)
GROUP = "metrics.k8s.io"


def kubelet_endpoint(node: Obj) -> str | None:
    """host:port of the node's agent API: its InternalIP and the port it
    reports (``daemonEndpoints``), 10250 by default, as metrics-server finds it."""
    address = meta.node_address(node)
    if not address:
        return None
    endpoint = ((node.get("status") or {}).get("daemonEndpoints") or {}).get(
        "kubeletEndpoint") or {}
    return f"{address}:{int(endpoint.get('Port') or KUBELET_PORT)}"


async def scrape_node(session: aiohttp.ClientSession, endpoint: str) -> str:
    url = f"https://{endpoint}/metrics/resource"
    async with session.get(url) as resp:
        if resp.status != 200:
            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        return await resp.text()


async def scrape_all(store: MetricsStore, registry: Registry,
                     session: aiohttp.ClientSession) -> None:
    """One round over every node with an InternalIP, at the same time."""
    nodes, _ = registry.list(resources.NODE, Query())
    targets = {meta.name(n): e for n in nodes if (e := kubelet_endpoint(n))}
    texts = await asyncio.gather(*(scrape_node(session, a) for a in targets.values()),
                                 return_exceptions=True)
    for name, text in zip(targets, texts, strict=True):
        if isinstance(text, BaseException):
            log.info("metrics: scraping node %s failed: %s", name, text or type(text).__name__)
            continue
        store.record(name, parse(text))
    store.forget_except(targets)


async def scrape_loop(store: MetricsStore, registry: Registry, tls: ssl.SSLContext,
                      resolution: float = RESOLUTION) -> None:
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls),
                                     timeout=timeout) as session:
        while True:
            await scrape_all(store, registry, session)
            await asyncio.sleep(resolution)


def scraping(registry: Registry, tls: ssl.SSLContext, resolution: float = RESOLUTION
             ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context: the scrape loop runs while the app does."""
    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(scrape_loop(app[METRICS], registry, tls, resolution))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return context


def _json(body: Obj) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/json")


async def handle(request: web.Request, registry: Registry, target: paths.Target,
                 query: Query) -> web.Response:
    if request.method != "GET" or request.query.get("watch") in ("1", "true"):
        verb = "watch" if request.method == "GET" else request.method
        raise status.ApiError(405, "MethodNotAllowed",
                              f"{verb} is not supported on {target.resource.plural}.{GROUP}")
    store = request.app.get(METRICS) or MetricsStore()
    kind = target.resource.kind
    source = resources.NODE if kind == "NodeMetrics" else resources.POD
    of = store.node_metrics if kind == "NodeMetrics" else store.pod_metrics
    if target.name is not None:
        try:
            obj = registry.get(source, target.namespace, target.name)
        except status.ApiError:
            obj = None
        found = of(obj) if obj is not None else None
        if found is None:
            raise status.not_found(target.resource.plural, target.name, group=GROUP)
        return _json(tables.table(kind, [found], "") if _wants_table(request) else found)
    items, _ = registry.list(source, query)
    out = [m for obj in items if (m := of(obj)) is not None]
    out.sort(key=lambda m: (m["metadata"].get("namespace", ""), m["metadata"]["name"]))
    return _json(tables.table(kind, out, "") if _wants_table(request) else list_body(kind, out))


def _wants_table(request: web.Request) -> bool:
    """``kubectl get podmetrics``: metrics-server's Name, CPU, Memory, Window."""
    return "as=Table" in request.headers.get("Accept", "")
