"""The node's share of cluster DNS: the record index fed by informers, the
server on the DNS service address (node-local, reached without NAT) and on
the node's own address, and this node's entry in the ``kube-dns`` Service's
endpoints, so that the Service also works where the node-local path is
absent (as with Kubernetes' NodeLocal DNSCache)."""

from __future__ import annotations

import logging

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client, Informer
from netplane.dns.index import RecordIndex
from netplane.dns.server import DNSServer
from netplane.dns.zone import ZoneConfig

log = logging.getLogger(__name__)
MANAGED_BY = "netplane-agent"


def upstream_list(text: str) -> tuple[str, ...]:
    """``none`` (the lab default) or comma-separated ``ip[:port]`` servers."""
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(s.strip() for s in text.split(",") if s.strip())


def dns_slice(node: Obj, node_ip: str) -> Obj:
    name = meta.name(node)
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"kube-dns-{name}", "namespace": "kube-system",
                     "labels": {"kubernetes.io/service-name": "kube-dns",
                                "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                     "ownerReferences": [meta.owner_ref(node, controller=False)]},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [node_ip], "nodeName": name,
                       "conditions": {"ready": True, "serving": True, "terminating": False}}],
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
    }


class NodeDNS:
    def __init__(self, *, dns_ip: str, node_ip: str, zone: str, service_cidr: str,
                 cluster_cidr: str, upstreams: tuple[str, ...]) -> None:
        self.index = RecordIndex()
        config = ZoneConfig(zone=zone, ns_address=dns_ip, service_cidrs=(service_cidr,),
                            pod_cidrs=(cluster_cidr,))
        self.servers = [DNSServer(self.index, address=addr, port=53, config=config,
                                  upstreams=upstreams) for addr in (dns_ip, node_ip)]

    def watch(self, *, services: Informer, slices: Informer, endpoints: Informer,
              pods: Informer) -> None:
        services.add_handler(self.index.on_service)
        slices.add_handler(self.index.on_endpointslice)
        endpoints.add_handler(self.index.on_endpoints)
        pods.add_handler(self.index.on_pod)

    async def start(self) -> None:
        for server in self.servers:
            await server.start()

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()

    def render_metrics(self) -> str:
        # The node-local address carries the traffic; the other is the fallback.
        return self.servers[0].render_metrics()

    @staticmethod
    async def publish_endpoint(client: Client, node: Obj, node_ip: str) -> None:
        body = dns_slice(node, node_ip)
        try:
            await client.create(resources.ENDPOINTSLICE, body)
        except AlreadyExists:
            current = await client.get(resources.ENDPOINTSLICE, body["metadata"]["name"],
                                       "kube-system")
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await client.update(resources.ENDPOINTSLICE, body)
        except ApiError as e:
            log.warning("could not publish this node's kube-dns endpoint: %s", e)
