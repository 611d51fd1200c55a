"""Typed view of Services and Endpoints for the proxy.

Pure conversion from API objects (JSON-shaped dicts) into the service ports
and endpoints that rule renderers consume. Services that the proxy does not
handle (headless, ExternalName) produce nothing here, so every renderer
skips them the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from netplane.api.meta import Obj, name, namespace


class Protocol(enum.StrEnum):
    """Transport protocols a Service port may use."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class ServiceType(enum.StrEnum):
    """``spec.type`` values; every type but ExternalName has a ClusterIP part."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


@dataclass(frozen=True, order=True)
class ServicePortName:
    """Identity of one port of one Service (kube-proxy's ServicePortName)."""

    namespace: str
    name: str
    port: str
    protocol: Protocol

    def __str__(self) -> str:
        # Same spelling as kube-proxy: the port part only when it is named.
        suffix = f":{self.port}" if self.port else ""
        return f"{self.namespace}/{self.name}{suffix}"


@dataclass(frozen=True)
class ServicePortInfo:
    """What the data plane needs to know about one Service port."""

    namespace: str
    service_name: str
    port_name: str
    cluster_ip: str
    port: int
    protocol: Protocol

    @property
    def key(self) -> ServicePortName:
        return ServicePortName(self.namespace, self.service_name, self.port_name, self.protocol)


@dataclass(frozen=True, order=True)
class EndpointInfo:
    """One backend address for one Service port."""

    ip: str
    port: int
    ready: bool = True
    node_name: str = ""

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


ServiceMap = dict[ServicePortName, tuple[ServicePortInfo, list[EndpointInfo]]]


def _protocol(raw: object) -> Protocol:
    return Protocol(str(raw or "TCP").upper())


def is_proxied(service: Obj) -> bool:
    """Whether the proxy renders anything for this Service (not headless, not ExternalName)."""
    spec = service.get("spec") or {}
    if spec.get("type", ServiceType.CLUSTER_IP) == ServiceType.EXTERNAL_NAME:
        return False
    cluster_ip = str(spec.get("clusterIP") or "")
    return cluster_ip not in ("", "None")


def service_ports(service: Obj) -> list[ServicePortInfo]:
    """The proxied ports of a Service; empty for headless or ExternalName Services."""
    if not is_proxied(service):
        return []
    spec = service["spec"]
    return [
        ServicePortInfo(
            namespace=namespace(service),
            service_name=name(service),
            port_name=str(p.get("name") or ""),
            cluster_ip=str(spec["clusterIP"]),
            port=int(p["port"]),
            protocol=_protocol(p.get("protocol")),
        )
        for p in spec.get("ports") or []
    ]


def _subset_endpoints(subset: Obj, port_name: str, protocol: Protocol) -> list[EndpointInfo]:
    out: list[EndpointInfo] = []
    for p in subset.get("ports") or []:
        if str(p.get("name") or "") != port_name or _protocol(p.get("protocol")) != protocol:
            continue
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in subset.get(key) or []:
                out.append(EndpointInfo(ip=str(a["ip"]), port=int(p["port"]), ready=ready,
                                        node_name=str(a.get("nodeName") or "")))
    return out


def endpoints_for(endpoints: Obj | None, port_name: str, protocol: Protocol) -> list[EndpointInfo]:
    """Endpoints of one Service port, matched by port name, deduplicated and sorted."""
    if endpoints is None:
        return []
    found: dict[tuple[str, int], EndpointInfo] = {}
    for subset in endpoints.get("subsets") or []:
        for ep in _subset_endpoints(subset, port_name, protocol):
            # A ready entry wins over a not-ready duplicate of the same address.
            prev = found.get((ep.ip, ep.port))
            if prev is None or (ep.ready and not prev.ready):
                found[(ep.ip, ep.port)] = ep
    return sorted(found.values())


def build(services: list[Obj], endpoints: list[Obj]) -> ServiceMap:
    """Every proxied Service port with its endpoints (ready and not ready)."""
    by_key = {(namespace(e), name(e)): e for e in endpoints}
    out: ServiceMap = {}
    for svc in services:
        eps = by_key.get((namespace(svc), name(svc)))
        for info in service_ports(svc):
            out[info.key] = (info, endpoints_for(eps, info.port_name, info.protocol))
    return dict(sorted(out.items()))
