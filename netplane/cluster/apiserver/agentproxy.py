"""``nodes/NAME/proxy/PATH``, kube-apiserver's node proxy: the request is
passed on to the node's agent API (its InternalIP and the port it reports,
``https://IP:10250/PATH``) with the API server's kubelet-client
certificate, and the agent's answer comes back as it is. ``netplane
stats`` reads the agents' ``/metrics/cadvisor`` this way, and
``kubectl get --raw /api/v1/nodes/NAME/proxy/metrics/cadvisor`` works as
on a kubeadm cluster."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web

from netplane.api import resources
from netplane.cluster.apiserver import metricsapi, nodeproxy, paths, status
from netplane.cluster.apiserver.registry import Registry

# Hop-by-hop and framing headers are the proxy's own to set.
_DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                      "content-encoding", "upgrade", "host", "authorization"})


def agent_url(endpoint: str, path: str, query: list[tuple[str, str]]) -> str:
    return (f"https://{endpoint}{quote(path, safe='/')}"
            + (f"?{urlencode(query)}" if query else ""))


async def handle(request: web.Request, registry: Registry,
                 target: paths.Target) -> web.StreamResponse:
    if target.resource is not resources.NODE or target.name is None:
        raise status.not_found("path", request.path)
    node = registry.get(resources.NODE, None, target.name)
    endpoint = metricsapi.kubelet_endpoint(node)
    if endpoint is None:
        raise status.ApiError(503, "ServiceUnavailable",
                              f"node {target.name} has no InternalIP address")
    tls = request.app.get(nodeproxy.KUBELET_TLS)
    if tls is None:
        raise status.ApiError(503, "ServiceUnavailable",
                              "the API server has no client certificate for node agents")
    url = agent_url(endpoint, target.proxy_path, list(request.query.items()))
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
    body = await request.read() if request.can_read_body else None
    timeout = aiohttp.ClientTimeout(total=60, sock_connect=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls),
                                     timeout=timeout) as session:
        try:
            async with session.request(request.method, url, headers=headers,
                                       data=body) as upstream:
                data = await upstream.read()
                out = {k: v for k, v in upstream.headers.items()
                       if k.lower() not in _DROPPED}
                return web.Response(status=upstream.status, body=data, headers=out)
        except (aiohttp.ClientError, OSError) as e:
            raise status.ApiError(503, "ServiceUnavailable",
                                  f"error trying to reach the node agent at {endpoint}: {e}"
                                  ) from None
