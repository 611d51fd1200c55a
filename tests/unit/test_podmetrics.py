"""The HPA's production metrics source against a fake resource metrics API
(an in-process aiohttp app serving what metrics-server serves): the
selector passed on, the items read, and kube's words when the API is not
there or has nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from netplane.cluster.client import Client, Connection
from netplane.cluster.controllers.podmetrics import ResourceMetricsApi
from netplane.cluster.controllers.replicacalc import MetricError

PATH = "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"
ITEM = {"metadata": {"name": "web-a", "namespace": "shop"},
        "timestamp": "2026-01-01T00:00:00Z", "window": "30s",
        "containers": [{"name": "c", "usage": {"cpu": "150m", "memory": "10Mi"}}]}


async def serve(aiohttp_server: Any, items: list[Any] | None) -> tuple[Client, list[str]]:
    asked: list[str] = []

    async def pods(request: web.Request) -> web.Response:
        asked.append(request.query.get("labelSelector", ""))
        return web.json_response({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                                  "metadata": {}, "items": items})

    app = web.Application()
    if items is not None:
        app.router.add_get(PATH.format(ns="{ns}"), pods)
    server = await aiohttp_server(app)
    return Client(Connection(url=str(server.make_url("")))), asked


async def test_reads_the_pods_the_selector_matches(aiohttp_server: Any) -> None:
    client, asked = await serve(aiohttp_server, [ITEM])
    async with client:
        assert await ResourceMetricsApi(client).pod_metrics("shop", "app=web") == [ITEM]
    assert asked == ["app=web"]


async def test_no_metrics_api_reads_as_kube_says_it(aiohttp_server: Any) -> None:
    client, _ = await serve(aiohttp_server, None)
    async with client:
        with pytest.raises(MetricError) as e:
            await ResourceMetricsApi(client).pod_metrics("shop", "app=web")
    assert str(e.value) == ("unable to fetch metrics from resource metrics API: the server "
                            "could not find the requested resource (get pods.metrics.k8s.io)")


async def test_no_items_is_an_error(aiohttp_server: Any) -> None:
    client, _ = await serve(aiohttp_server, [])
    async with client:
        with pytest.raises(MetricError, match="no metrics returned from resource metrics API"):
            await ResourceMetricsApi(client).pod_metrics("shop", "app=web")
