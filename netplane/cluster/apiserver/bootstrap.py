"""Objects every cluster has from its first start: the namespaces, the
``kubernetes`` Service pointing at the API server, and the ``kube-dns``
Service on the well-known DNS address."""

from __future__ import annotations

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import status
from netplane.cluster.apiserver.registry import Registry

NAMESPACES = ("default", "kube-system", "kube-public")


def _ensure(registry: Registry, res: resources.Resource, obj: Obj) -> None:
    try:
        registry.create(res, obj["metadata"].get("namespace"), obj)
    except status.ApiError as e:
        if e.code != 409:
            raise


def _upsert_endpoints(registry: Registry, obj: Obj) -> None:
    try:
        current = registry.get(resources.ENDPOINTS, "default", "kubernetes")
    except status.ApiError:
        registry.create(resources.ENDPOINTS, "default", obj)
        return
    if current.get("subsets") != obj["subsets"]:
        current["subsets"] = obj["subsets"]
        registry.update(resources.ENDPOINTS, "default", "kubernetes", current)


def ensure(registry: Registry, *, advertise_address: str, port: int, api_ip: str,
           dns_ip: str) -> None:
    for ns in NAMESPACES:
        _ensure(registry, resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": ns}})
    _ensure(registry, resources.SERVICE, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": api_ip, "ports": [{"name": "https", "port": 443,
                                                 "targetPort": port, "protocol": "TCP"}]}})
    _upsert_endpoints(registry, {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": advertise_address}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]})
    _ensure(registry, resources.SERVICE, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        # No selector: each node's agent publishes its own DNS server as an
        # EndpointSlice of this Service.
        "spec": {"clusterIP": dns_ip,
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}})
