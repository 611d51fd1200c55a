"""What DNS takes from API objects: Services, EndpointSlices, Endpoints, Pods.

Each function reads one JSON-shaped object into a small frozen entry that
keeps only the fields answers depend on, plus a reference to the object for
explanations. Nothing here raises on odd input: a field that does not parse
is left out, because bad data in one object must not stop the node's DNS.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from netplane.api import meta
from netplane.api.meta import Obj

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


class ServiceType(enum.Enum):
    """How a Service shows up in DNS."""

    CLUSTER_IP = "ClusterIP"  # A/AAAA of its cluster IPs
    HEADLESS = "Headless"  # A/AAAA of its ready endpoints
    EXTERNAL_NAME = "ExternalName"  # a CNAME


@dataclass(frozen=True)
class SourceRef:
    """The API object a record was made from."""

    kind: str
    namespace: str
    name: str
    resource_version: int = 0

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    """A port of a Service or of an endpoint set; only named ones get SRV records."""

    name: str
    port: int
    protocol: str


@dataclass(frozen=True)
class ServiceEntry:
    """What DNS knows of one Service. Equality ignores ``source``: a write that
    changes only the resource version does not change an answer."""

    namespace: str
    name: str
    cluster_ips: tuple[IPAddress, ...]
    ports: tuple[ServicePort, ...]
    source: SourceRef = field(compare=False)
    type: ServiceType = ServiceType.CLUSTER_IP
    external_name: str = ""
    publish_not_ready: bool = False

    def addresses(self, version: int) -> tuple[IPAddress, ...]:
        """The cluster IPs of one IP family (4 or 6)."""
        return tuple(ip for ip in self.cluster_ips if ip.version == version)


@dataclass(frozen=True)
class Endpoint:
    """One address behind a Service, from an EndpointSlice or an Endpoints object."""

    address: IPAddress
    ready: bool
    hostname: str
    pod: str  # name of the Pod in targetRef, "" if none
    ports: tuple[ServicePort, ...]
    source: SourceRef = field(compare=False)


@dataclass(frozen=True)
class PodEntry:
    """A Pod that asks for a DNS name of its own (spec.hostname + spec.subdomain)."""

    namespace: str
    name: str
    hostname: str
    subdomain: str
    addresses: tuple[IPAddress, ...]
    ready: bool
    source: SourceRef = field(compare=False)


def source_of(obj: Obj, kind: str) -> SourceRef:
    try:
        version = meta.resource_version(obj)
    except ValueError:
        version = 0
    return SourceRef(str(obj.get("kind") or kind), meta.namespace(obj), meta.name(obj), version)


def service_entry(svc: Obj) -> ServiceEntry | None:
    """The DNS view of a Service, or None if it has no records (yet).

    A ClusterIP Service without a parseable cluster IP (not allocated yet) and
    an ExternalName Service without a name get nothing.
    """
    spec = svc.get("spec") or {}
    base = ServiceEntry(meta.namespace(svc).lower(), meta.name(svc).lower(), (),
                        _service_ports(spec), source_of(svc, "Service"))
    if spec.get("type") == "ExternalName":
        target = str(spec.get("externalName") or "").rstrip(".").lower()
        if not target:
            return None
        return replace(base, type=ServiceType.EXTERNAL_NAME, external_name=target + ".")
    if spec.get("clusterIP") == "None":
        return replace(base, type=ServiceType.HEADLESS,
                       publish_not_ready=bool(spec.get("publishNotReadyAddresses")))
    ips = _addresses(spec.get("clusterIPs") or [spec.get("clusterIP")])
    return replace(base, cluster_ips=ips) if ips else None


def _service_ports(spec: Obj) -> tuple[ServicePort, ...]:
    return tuple(_port(p) for p in spec.get("ports") or [] if isinstance(p, dict))


def _port(raw: Obj) -> ServicePort:
    try:
        number = int(raw.get("port") or 0)
    except (TypeError, ValueError):
        number = 0
    return ServicePort(str(raw.get("name") or ""), number, str(raw.get("protocol") or "TCP"))


def _addresses(values: Iterable[object]) -> tuple[IPAddress, ...]:
    ips: list[IPAddress] = []
    for value in values:
        if not value or value == "None":
            continue
        try:
            ips.append(ipaddress.ip_address(str(value)))
        except ValueError:
            continue  # validation should have refused it; never crash DNS over it
    return tuple(ips)


def slice_service(slice_obj: Obj) -> str:
    """The Service an EndpointSlice belongs to (its service-name label), or ""."""
    return meta.labels(slice_obj).get(SERVICE_NAME_LABEL, "")


def slice_endpoints(slice_obj: Obj) -> tuple[Endpoint, ...]:
    """The endpoints of a discovery.k8s.io/v1 EndpointSlice (FQDN slices have none)."""
    if slice_obj.get("addressType") not in ("IPv4", "IPv6"):
        return ()
    ports = _service_ports(slice_obj)
    source = source_of(slice_obj, "EndpointSlice")
    found: list[Endpoint] = []
    for raw in slice_obj.get("endpoints") or []:
        conditions = raw.get("conditions") or {}
        # The API says an unknown (absent) ready condition means ready.
        ready = conditions.get("ready") is not False
        for address in _addresses(raw.get("addresses") or []):
            found.append(Endpoint(address, ready, str(raw.get("hostname") or "").lower(),
                                  _pod_ref(raw), ports, source))
    return tuple(found)


def endpoints_endpoints(ep_obj: Obj) -> tuple[Endpoint, ...]:
    """The endpoints of a v1 Endpoints object, ready and not ready."""
    source = source_of(ep_obj, "Endpoints")
    found: list[Endpoint] = []
    for subset in ep_obj.get("subsets") or []:
        ports = _service_ports(subset)
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for raw in subset.get(key) or []:
                for address in _addresses([raw.get("ip")]):
                    found.append(Endpoint(address, ready, str(raw.get("hostname") or "").lower(),
                                          _pod_ref(raw), ports, source))
    return tuple(found)


def _pod_ref(raw: Obj) -> str:
    ref = raw.get("targetRef") or {}
    return str(ref.get("name") or "") if ref.get("kind", "Pod") == "Pod" else ""


def pod_entry(pod: Obj) -> PodEntry | None:
    """The DNS view of a Pod with both hostname and subdomain and an address."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    hostname = str(spec.get("hostname") or "").lower()
    subdomain = str(spec.get("subdomain") or "").lower()
    raw_ips = [p.get("ip") for p in status.get("podIPs") or [] if isinstance(p, dict)]
    addresses = _addresses(raw_ips or [status.get("podIP")])
    if not hostname or not subdomain or not addresses:
        return None
    return PodEntry(meta.namespace(pod).lower(), meta.name(pod), hostname, subdomain, addresses,
                    meta.pod_ready(pod), source_of(pod, "Pod"))


def trigger_time(obj: Obj | None) -> float | None:
    """When the change an endpoints object reflects happened in the API, if it says."""
    if obj is None:
        return None
    annotations = obj.get("metadata", {}).get("annotations") or {}
    value = annotations.get(TRIGGER_TIME_ANNOTATION)
    if not value:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def dashed(address: IPAddress) -> str:
    """The address as one DNS label: 10-244-1-5, fd00--5."""
    return str(address).replace(".", "-").replace(":", "-")
