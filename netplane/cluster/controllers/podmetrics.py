"""Where the HPA controller reads pod metrics: a narrow interface, served in
production by the API server's ``metrics.k8s.io/v1beta1`` PodMetrics (as
metrics-server serves them), so that tests can hand the controller metrics
of their own."""

from __future__ import annotations

from typing import Protocol

import aiohttp

from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client
from netplane.cluster.controllers.replicacalc import MetricError

PATH = "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"


class MetricsSource(Protocol):
    async def pod_metrics(self, namespace: str, selector: str) -> list[Obj]:
        """The PodMetrics items of the pods ``selector`` matches; raises
        MetricError when there are none to be had."""
        ...


class ResourceMetricsApi:
    """The resource metrics API, as kube's resource metrics client reads it."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def pod_metrics(self, namespace: str, selector: str) -> list[Obj]:
        try:
            out = await self.client.request("GET", PATH.format(namespace=namespace),
                                            params={"labelSelector": selector})
        except ApiError as e:
            why = "the server could not find the requested resource (get pods.metrics.k8s.io)" \
                if e.code == 404 else e.message
            raise MetricError(f"unable to fetch metrics from resource metrics API: {why}") \
                from None
        except (OSError, TimeoutError, aiohttp.ClientError) as e:
            raise MetricError(f"unable to fetch metrics from resource metrics API: {e}") \
                from None
        items = list(out.get("items") or [])
        if not items:
            raise MetricError("no metrics returned from resource metrics API")
        return items
