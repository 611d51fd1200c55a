"""Typed view of Services and their endpoints for the proxy.

Pure conversion from API objects (JSON-shaped dicts) into the service ports
and endpoints that rule renderers consume. Endpoints come from
``discovery.k8s.io/v1`` EndpointSlices (with ready / serving / terminating
conditions) or, for a Service that has no slices, from classic v1
Endpoints. Services that the proxy does not handle (headless, ExternalName)
produce nothing here, so every renderer skips them the same way; the choice
of which endpoints carry traffic (:func:`select`) is shared by every mode.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


# Sort key giving ServicePortName's own order as a plain tuple, compared in
# C: sorting 10,000 ports with the dataclass's __lt__ takes ten times longer.
port_order: Callable[[ServicePortName], tuple[str, str, str, str]] = operator.attrgetter(
    "namespace", "name", "port", "protocol")

DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True)
class ServicePortInfo:
    """What the data plane needs to know about one Service port."""

    namespace: str
    service_name: str
    port_name: str
    cluster_ip: str
    port: int
    protocol: Protocol
    service_type: ServiceType = ServiceType.CLUSTER_IP
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    # 0 means no session affinity; else ClientIP affinity for that many seconds.
    affinity_seconds: int = 0
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    # Made once with the port: every sync asks for it several times per port.
    key: ServicePortName = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", ServicePortName(
            self.namespace, self.service_name, self.port_name, self.protocol))

    @property
    def has_external(self) -> bool:
        """Reachable from outside the cluster (NodePort, LB or external IPs)."""
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)


@dataclass(frozen=True, order=True)
class EndpointInfo:
    """One backend address for one Service port, with its EndpointSlice
    conditions: ``ready`` (take new traffic), ``serving`` (answers, even while
    terminating), ``terminating``."""

    ip: str
    port: int
    ready: bool = True
    node_name: str = ""
    serving: bool = True
    terminating: bool = False

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


ServiceMap = dict[ServicePortName, tuple[ServicePortInfo, list[EndpointInfo]]]

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}")


def is_ipv4(ip: str) -> bool:
    """Dotted-quad IPv4, as ``ipaddress`` reads it (a regex: this runs for
    every endpoint and address of every service port)."""
    return _IPV4.fullmatch(ip) is not None


# The spellings met in practice, looked up before the general conversion
# (an enum call costs more than the rest of a port's parsing).
_PROTOCOLS: dict[object, Protocol] = {None: Protocol.TCP, "": Protocol.TCP,
                                      **{p.value: p for p in Protocol}}
_SERVICE_TYPES: dict[object, ServiceType] = {None: ServiceType.CLUSTER_IP,
                                             "": ServiceType.CLUSTER_IP,
                                             **{t.value: t for t in ServiceType}}


def _protocol(raw: object) -> Protocol:
    try:
        return _PROTOCOLS[raw]
    except (KeyError, TypeError):
        return Protocol(str(raw or "TCP").upper())


def _service_type(raw: Any) -> ServiceType:
    try:
        return _SERVICE_TYPES[raw]
    except (KeyError, TypeError):
        return ServiceType(raw or ServiceType.CLUSTER_IP)


# EndpointInfo's own order as a plain tuple (see ``port_order``).
_endpoint_order = operator.attrgetter("ip", "port", "ready", "node_name", "serving",
                                      "terminating")


def is_proxied(service: Obj) -> bool:
    """Whether the proxy renders anything for this Service (not headless, not ExternalName)."""
    spec = service.get("spec") or {}
    if spec.get("type", ServiceType.CLUSTER_IP) == ServiceType.EXTERNAL_NAME:
        return False
    cluster_ip = str(spec.get("clusterIP") or "")
    return cluster_ip not in ("", "None")


def _affinity_seconds(spec: Obj) -> int:
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
    return int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)


def _lb_ips(service: Obj) -> tuple[str, ...]:
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return tuple(str(i["ip"]) for i in ingress if i.get("ip"))


def _source_ranges(spec: Obj) -> tuple[str, ...]:
    """The IPv4 ``loadBalancerSourceRanges`` (validation lets whitespace
    through); none when one of them is a /0, which allows any source."""
    ranges = [r.strip() for r in map(str, spec.get("loadBalancerSourceRanges") or [])]
    ours = tuple(r for r in ranges if is_ipv4(r.partition("/")[0]))
    return () if any(r.endswith("/0") for r in ours) else ours


def service_ports(service: Obj) -> list[ServicePortInfo]:
    """The proxied ports of a Service; empty for headless or ExternalName Services."""
    if not is_proxied(service):
        return []
    spec = service["spec"]
    stype = _service_type(spec.get("type"))
    external = stype in (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER)
    lb = stype == ServiceType.LOAD_BALANCER
    # What every port of the Service shares, read once.
    ns, svc_name, cluster_ip = namespace(service), name(service), str(spec["clusterIP"])
    # The rules are IPv4 only: addresses of the other family are left out,
    # as kube-proxy leaves them to the proxier of their own family.
    external_ips = tuple(ip for ip in map(str, spec.get("externalIPs") or []) if is_ipv4(ip))
    lb_ips = tuple(ip for ip in _lb_ips(service) if is_ipv4(ip)) if lb else ()
    ranges = _source_ranges(spec) if lb else ()
    affinity = _affinity_seconds(spec)
    external_local = spec.get("externalTrafficPolicy") == "Local"
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    health = int(spec.get("healthCheckNodePort") or 0) if lb else 0
    return [
        ServicePortInfo(
            namespace=ns,
            service_name=svc_name,
            port_name=str(p.get("name") or ""),
            cluster_ip=cluster_ip,
            port=int(p["port"]),
            protocol=_protocol(p.get("protocol")),
            service_type=stype,
            node_port=int(p.get("nodePort") or 0) if external else 0,
            external_ips=external_ips,
            load_balancer_ips=lb_ips,
            load_balancer_source_ranges=ranges,
            affinity_seconds=affinity,
            external_policy_local=external_local,
            internal_policy_local=internal_local,
            health_check_node_port=health,
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
    return sorted(found.values(), key=_endpoint_order)


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def slice_endpoints(slices: list[Obj], port_name: str,
                    protocol: Protocol) -> list[EndpointInfo]:
    """Endpoints of one Service port from its IPv4 EndpointSlices."""
    found: dict[tuple[str, int], EndpointInfo] = {}
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        ports = [p for p in sl.get("ports") or []
                 if str(p.get("name") or "") == port_name and _protocol(p.get("protocol"))
                 == protocol and p.get("port")]
        for p in ports:
            for ep in sl.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                # Unset conditions mean ready / serving, as the API documents.
                ready = cond.get("ready") is not False
                terminating = cond.get("terminating") is True
                serving = cond.get("serving", ready) is not False
                for ip in (ep.get("addresses") or [])[:1]:
                    info = EndpointInfo(ip=str(ip), port=int(p["port"]), ready=ready,
                                        node_name=str(ep.get("nodeName") or ""),
                                        serving=serving, terminating=terminating)
                    prev = found.get((info.ip, info.port))
                    if prev is None or (info.ready and not prev.ready):
                        found[(info.ip, info.port)] = info
    return sorted(found.values(), key=_endpoint_order)


def build(services: list[Obj], endpoints: list[Obj]) -> ServiceMap:
    """Every proxied Service port with its endpoints (ready and not ready).

    ``endpoints`` holds EndpointSlices and/or v1 Endpoints; a Service with any
    slice takes its endpoints from its slices only."""
    slices: dict[tuple[str, str], list[Obj]] = {}
    classic: dict[tuple[str, str], Obj] = {}
    for e in endpoints:
        if e.get("kind") == "EndpointSlice":
            svc_name = ((e.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if svc_name:
                slices.setdefault((namespace(e), str(svc_name)), []).append(e)
        else:
            classic[(namespace(e), name(e))] = e
    out: ServiceMap = {}
    for svc in services:
        key = (namespace(svc), name(svc))
        for info in service_ports(svc):
            if key in slices:
                eps = slice_endpoints(slices[key], info.port_name, info.protocol)
            else:
                eps = endpoints_for(classic.get(key), info.port_name, info.protocol)
            out[info.key] = (info, eps)
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Selection:
    """Which endpoints carry a service port's traffic on one node.

    ``cluster``: for traffic under the Cluster policy; ``local``: this node's
    own endpoints, for Local policies. Each holds the ready endpoints, or
    when there are none, the serving terminating ones (KEP-1669), so that
    connections drain instead of failing during a rollout."""

    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]


def _usable(eps: list[EndpointInfo]) -> tuple[EndpointInfo, ...]:
    ready = tuple([e for e in eps if e.ready])
    if ready:
        return ready
    return tuple([e for e in eps if e.serving and e.terminating])


def select(eps: list[EndpointInfo], *, node_name: str) -> Selection:
    return Selection(cluster=_usable(eps),
                     local=_usable([e for e in eps if e.node_name == node_name]))
