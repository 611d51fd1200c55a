"""The record index: a narrow, read-only view of Services for answering queries.

Fed one object at a time (by the node agent's informer, through
:func:`apply_service_event`); read by the pure answer function. Keys are
lower-cased so that lookups are case-insensitive. Every entry remembers the
object it came from, so that an answer can be explained.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from netplane.api import meta
from netplane.api.meta import Obj

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EventType(enum.Enum):
    """Watch event types, as the API streams them."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


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
    """A named port of a Service, kept for SRV answers."""

    name: str
    port: int
    protocol: str


@dataclass(frozen=True)
class ServiceEntry:
    """What DNS knows of one Service."""

    namespace: str
    name: str
    cluster_ips: tuple[IPAddress, ...]
    ports: tuple[ServicePort, ...]
    source: SourceRef

    def addresses(self, version: int) -> tuple[IPAddress, ...]:
        """The cluster IPs of one IP family (4 or 6)."""
        return tuple(ip for ip in self.cluster_ips if ip.version == version)


class RecordIndex:
    """Services by (namespace, name), lower-cased, with a change counter.

    ``version`` grows by one on every change that alters an answer (no-op
    updates, such as a status-only write, leave it alone); ``updated_at`` is
    the clock reading of the last change, for programming-latency metrics.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._services: dict[tuple[str, str], ServiceEntry] = {}
        self._namespaces: dict[str, int] = {}  # namespace -> number of services
        self.version = 0
        self.updated_at = clock()

    def set_service(self, svc: Obj) -> None:
        """Add, replace or (if it no longer has a cluster IP) remove a Service."""
        entry = service_entry(svc)
        key = _key(meta.namespace(svc), meta.name(svc))
        if entry is None:
            self._remove(key)
            return
        old = self._services.get(key)
        if old is not None and _same_answers(old, entry):
            # Keep the newer source reference without counting a change.
            self._services[key] = entry
            return
        if old is None:
            self._namespaces[key[0]] = self._namespaces.get(key[0], 0) + 1
        self._services[key] = entry
        self._changed()

    def delete_service(self, namespace: str, name: str) -> None:
        self._remove(_key(namespace, name))

    def service(self, namespace: str, name: str) -> ServiceEntry | None:
        """The entry for a Service, matched case-insensitively."""
        return self._services.get(_key(namespace, name))

    def has_namespace(self, namespace: str) -> bool:
        """Whether any indexed Service lives in the namespace."""
        return namespace.lower() in self._namespaces

    def services(self) -> Iterator[ServiceEntry]:
        return iter(list(self._services.values()))

    def __len__(self) -> int:
        return len(self._services)

    def _remove(self, key: tuple[str, str]) -> None:
        if self._services.pop(key, None) is None:
            return
        left = self._namespaces[key[0]] - 1
        if left:
            self._namespaces[key[0]] = left
        else:
            del self._namespaces[key[0]]
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        self.updated_at = self._clock()


def apply_service_event(index: RecordIndex, event_type: str | EventType, obj: Obj) -> None:
    """Feed one watch event of a Service into the index."""
    kind = EventType(event_type)
    if kind is EventType.DELETED:
        index.delete_service(meta.namespace(obj), meta.name(obj))
    elif kind in (EventType.ADDED, EventType.MODIFIED):
        index.set_service(obj)
    # BOOKMARK only moves the watch's resourceVersion; nothing to index.


def service_entry(svc: Obj) -> ServiceEntry | None:
    """The DNS view of a Service, or None if it gets no address records yet.

    Headless (clusterIP "None") and ExternalName services get records from
    other sources (endpoints, CNAME) and are not indexed here.
    """
    spec = svc.get("spec") or {}
    ips = _cluster_ips(spec)
    if not ips:
        return None
    ns, name = meta.namespace(svc), meta.name(svc)
    ports = tuple(
        ServicePort(str(p.get("name", "")), int(p.get("port", 0)), str(p.get("protocol", "TCP")))
        for p in spec.get("ports") or []
    )
    source = SourceRef(str(svc.get("kind", "Service")), ns, name, meta.resource_version(svc))
    return ServiceEntry(ns.lower(), name.lower(), ips, ports, source)


def _cluster_ips(spec: Obj) -> tuple[IPAddress, ...]:
    if spec.get("type") == "ExternalName":
        return ()
    # clusterIPs (dual-stack) wins over clusterIP; both may be present and agree.
    raw = spec.get("clusterIPs") or [spec.get("clusterIP")]
    ips: list[IPAddress] = []
    for value in raw:
        if not value or value == "None":
            continue
        try:
            ips.append(ipaddress.ip_address(str(value)))
        except ValueError:
            continue  # validation should have refused it; never crash DNS over it
    return tuple(ips)


def _key(namespace: str, name: str) -> tuple[str, str]:
    return namespace.lower(), name.lower()


def _same_answers(a: ServiceEntry, b: ServiceEntry) -> bool:
    return a.cluster_ips == b.cluster_ips and a.ports == b.ports
