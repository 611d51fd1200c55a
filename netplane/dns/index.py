"""The record index: a narrow, read-only view of Services, their endpoints and
named Pods, for answering queries.

Informers feed it (previous, current) pairs through ``on_service``,
``on_endpointslice``, ``on_endpoints`` and ``on_pod``. Every change is folded
into a per-Service ``ServiceView`` (what the Service's names answer); a
change that leaves a view equal is a no-op and does not count. Changes that
do count are queued (which Services, which addresses' PTR records, when the
change was made in the API) for the answer table to rebuild just those
entries. Keys are lower-cased: lookups are case-insensitive.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.dns.sources import (
    Endpoint,
    IPAddress,
    PodEntry,
    ServiceEntry,
    ServicePort,
    ServiceType,
    SourceRef,
    dashed,
    endpoints_endpoints,
    pod_entry,
    service_entry,
    slice_endpoints,
    slice_service,
    trigger_time,
)

__all__ = ["Backend", "Changes", "EventType", "PtrTarget", "RecordIndex", "ServiceEntry",
           "ServicePort", "ServiceType", "ServiceView", "SourceRef", "apply_service_event",
           "service_entry"]

Key = tuple[str, str]  # (namespace, name), lower-cased
MAX_PENDING_TRIGGERS = 4096  # bounds memory when nothing drains the changes


class EventType(enum.Enum):
    """Watch event types, as the API streams them."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


@dataclass(frozen=True)
class Backend:
    """One address a headless Service's names lead to.

    ``hostname`` is the label under the Service name: the endpoint's (or its
    Pod's) hostname when it has one (``named``), else the dashed address.
    ``in_service`` is False for a named Pod outside the endpoints: it gets its
    own name but is not one of the Service's addresses.
    """

    address: IPAddress
    hostname: str
    named: bool
    ports: tuple[ServicePort, ...]
    source: SourceRef = field(compare=False)
    in_service: bool = True


@dataclass(frozen=True)
class ServiceView:
    """Everything the names of one Service answer, with where it came from."""

    entry: ServiceEntry
    backends: tuple[Backend, ...] = ()
    endpoint_count: int = 0  # all known endpoints, counted or not (for explanations)


@dataclass(frozen=True)
class PtrTarget:
    """A name an address points back to, relative to the cluster zone."""

    labels: tuple[str, ...]
    source: SourceRef = field(compare=False)


@dataclass
class Changes:
    """What changed since the last drain: Services to rebuild, addresses whose
    PTR answers changed, and API-side times of the changes (for latency)."""

    services: set[Key] = field(default_factory=set)
    addresses: set[IPAddress] = field(default_factory=set)
    triggers: list[float] = field(default_factory=list)


class RecordIndex:
    """Services, endpoints and named Pods by (namespace, name), with a change counter.

    ``version`` grows by one on every change that alters an answer;
    ``updated_at`` is the clock reading of the last such change.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._services: dict[Key, ServiceEntry] = {}
        self._slices: dict[Key, dict[str, tuple[Endpoint, ...]]] = {}
        self._endpoints: dict[Key, tuple[Endpoint, ...]] = {}
        self._pods: dict[Key, dict[str, PodEntry]] = {}  # (ns, subdomain) -> pod name -> entry
        self._views: dict[Key, ServiceView] = {}  # changed in place only: ``views`` gives it out
        self._ptr: dict[IPAddress, dict[Key, tuple[PtrTarget, ...]]] = {}
        self._ptr_of: dict[Key, dict[IPAddress, tuple[PtrTarget, ...]]] = {}
        self._namespaces: dict[str, int] = {}  # namespace -> number of services
        self._pending = Changes()
        self._listeners: list[Callable[[], None]] = []
        self.version = 0
        self.updated_at = clock()

    # Feeding: informer handlers get (previous, current); None means absent.

    def on_service(self, prev: Obj | None, cur: Obj | None) -> None:
        if cur is None:
            if prev is not None:
                self.delete_service(meta.namespace(prev), meta.name(prev))
            return
        self.set_service(cur)

    def on_endpointslice(self, prev: Obj | None, cur: Obj | None) -> None:
        trigger = trigger_time(cur) or trigger_time(prev)
        keys: set[Key] = set()
        if prev is not None:
            key = _key(meta.namespace(prev), slice_service(prev))
            self._slices.get(key, {}).pop(meta.name(prev), None)
            if not self._slices.get(key, True):
                del self._slices[key]
            keys.add(key)
        if cur is not None:
            key = _key(meta.namespace(cur), slice_service(cur))
            self._slices.setdefault(key, {})[meta.name(cur)] = slice_endpoints(cur)
            keys.add(key)
        self._refresh(keys, trigger=trigger)

    def on_endpoints(self, prev: Obj | None, cur: Obj | None) -> None:
        """v1 Endpoints: used for a Service only while it has no EndpointSlices."""
        obj = cur if cur is not None else prev
        if obj is None:
            return
        key = _key(meta.namespace(obj), meta.name(obj))
        if cur is None:
            self._endpoints.pop(key, None)
        else:
            self._endpoints[key] = endpoints_endpoints(cur)
        self._refresh({key}, trigger=trigger_time(cur) or trigger_time(prev))

    def on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        old = pod_entry(prev) if prev is not None else None
        new = pod_entry(cur) if cur is not None else None
        keys: set[Key] = set()
        if old is not None:
            key = (old.namespace, old.subdomain)
            self._pods.get(key, {}).pop(old.name, None)
            if not self._pods.get(key, True):
                del self._pods[key]
            keys.add(key)
        if new is not None:
            key = (new.namespace, new.subdomain)
            self._pods.setdefault(key, {})[new.name] = new
            keys.add(key)
        self._refresh(keys, trigger=None)

    def set_service(self, svc: Obj) -> None:
        """Add, replace or (if it no longer gets records) remove a Service."""
        entry = service_entry(svc)
        key = _key(meta.namespace(svc), meta.name(svc))
        if entry is None:
            self._drop_service(key)
        else:
            if key not in self._services:
                self._namespaces[key[0]] = self._namespaces.get(key[0], 0) + 1
            self._services[key] = entry
        self._refresh({key}, trigger=None)

    def delete_service(self, namespace: str, name: str) -> None:
        key = _key(namespace, name)
        self._drop_service(key)
        self._refresh({key}, trigger=None)

    # Reading: what the answer function may ask.

    def service(self, namespace: str, name: str) -> ServiceEntry | None:
        """The entry for a Service, matched case-insensitively."""
        return self._services.get(_key(namespace, name))

    def view(self, namespace: str, name: str) -> ServiceView | None:
        return self._views.get(_key(namespace, name))

    def views(self) -> Mapping[Key, ServiceView]:
        """Every Service's view by lower-cased (namespace, name): the live
        mapping itself, never replaced, so a reader holding it sees each change."""
        return self._views

    def ptr(self, address: IPAddress) -> tuple[PtrTarget, ...]:
        """Names the address points back to, in a stable order."""
        by_service = self._ptr.get(address, {})
        return tuple(t for key in sorted(by_service) for t in by_service[key])

    def has_namespace(self, namespace: str) -> bool:
        """Whether any indexed Service lives in the namespace."""
        return namespace.lower() in self._namespaces

    def services(self) -> Iterator[ServiceEntry]:
        return iter(list(self._services.values()))

    def addresses(self) -> Iterator[IPAddress]:
        """Every address that has PTR records."""
        return iter(list(self._ptr))

    def __len__(self) -> int:
        return len(self._services)

    # Change tracking, for the answer table.

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (without arguments) after every counted change."""
        self._listeners.append(listener)

    def take_changes(self) -> Changes:
        """What changed since the last call; the queue starts empty again."""
        changes, self._pending = self._pending, Changes()
        return changes

    def _drop_service(self, key: Key) -> None:
        if self._services.pop(key, None) is None:
            return
        left = self._namespaces[key[0]] - 1
        if left:
            self._namespaces[key[0]] = left
        else:
            del self._namespaces[key[0]]

    def _refresh(self, keys: set[Key], *, trigger: float | None) -> None:
        changed = False
        for key in keys:
            view = self._build_view(key)
            old = self._views.get(key)
            if view is None:
                self._views.pop(key, None)
            else:
                self._views[key] = view  # fresh sources even when answers are equal
            self._update_ptr(key, view)
            if view != old:
                self._pending.services.add(key)
                changed = True
        if changed:
            self._count_change(trigger)

    def _count_change(self, trigger: float | None) -> None:
        self.version += 1
        self.updated_at = self._clock()
        triggers = self._pending.triggers
        triggers.append(trigger if trigger is not None else self.updated_at)
        if len(triggers) > MAX_PENDING_TRIGGERS:
            del triggers[0]
        for listener in self._listeners:
            listener()

    def _build_view(self, key: Key) -> ServiceView | None:
        entry = self._services.get(key)
        if entry is None:
            return None
        if entry.type is not ServiceType.HEADLESS:
            return ServiceView(entry)
        endpoints = self._endpoint_list(key)
        pods = self._pods.get(key, {})
        backends = _backends(entry, endpoints, pods)
        return ServiceView(entry, backends, len(endpoints))

    def _endpoint_list(self, key: Key) -> tuple[Endpoint, ...]:
        slices = self._slices.get(key)
        if slices:
            return tuple(ep for name in sorted(slices) for ep in slices[name])
        return self._endpoints.get(key, ())

    def _update_ptr(self, key: Key, view: ServiceView | None) -> None:
        old = self._ptr_of.pop(key, {})
        new = _ptr_targets(view) if view is not None else {}
        if new:
            self._ptr_of[key] = new
        for address in old.keys() | new.keys():
            if old.get(address) != new.get(address):
                self._pending.addresses.add(address)
            by_service = self._ptr.setdefault(address, {})
            if address in new:
                by_service[key] = new[address]
            else:
                by_service.pop(key, None)
            if not by_service:
                del self._ptr[address]


def _backends(entry: ServiceEntry, endpoints: tuple[Endpoint, ...],
              pods: dict[str, PodEntry]) -> tuple[Backend, ...]:
    by_address = {address: pod for pod in pods.values() for address in pod.addresses}
    found: dict[IPAddress, Backend] = {}
    for ep in endpoints:
        if not (ep.ready or entry.publish_not_ready) or ep.address in found:
            continue
        pod = pods.get(ep.pod) or by_address.get(ep.address)
        hostname = ep.hostname or (pod.hostname if pod is not None else "")
        found[ep.address] = Backend(ep.address, hostname or dashed(ep.address), bool(hostname),
                                    ep.ports, ep.source)
    # Pods naming this Service as their subdomain get a name even outside its endpoints.
    for pod in pods.values():
        if not (pod.ready or entry.publish_not_ready):
            continue
        for address in pod.addresses:
            if address not in found:
                found[address] = Backend(address, pod.hostname, True, (), pod.source,
                                         in_service=False)
    return tuple(sorted(found.values(), key=lambda b: (b.address.version, b.address)))


def _ptr_targets(view: ServiceView) -> dict[IPAddress, tuple[PtrTarget, ...]]:
    entry = view.entry
    service_labels = (entry.name, entry.namespace, "svc")
    if entry.type is ServiceType.CLUSTER_IP:
        return {ip: (PtrTarget(service_labels, entry.source),) for ip in entry.cluster_ips}
    targets: dict[IPAddress, list[PtrTarget]] = {}
    for backend in view.backends:
        if backend.named:
            target = PtrTarget((backend.hostname, *service_labels), backend.source)
            targets.setdefault(backend.address, []).append(target)
    return {address: tuple(found) for address, found in targets.items()}


def apply_service_event(index: RecordIndex, event_type: str | EventType, obj: Obj) -> None:
    """Feed one watch event of a Service into the index."""
    kind = EventType(event_type)
    if kind is EventType.DELETED:
        index.delete_service(meta.namespace(obj), meta.name(obj))
    elif kind in (EventType.ADDED, EventType.MODIFIED):
        index.set_service(obj)
    # BOOKMARK only moves the watch's resourceVersion; nothing to index.


def _key(namespace: str, name: str) -> Key:
    return namespace.lower(), name.lower()
