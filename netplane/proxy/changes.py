"""Change tracking for the proxy: the newest objects, and which Services changed.

Watch handlers hand every Service and Endpoints / EndpointSlice event to a
``ChangeTracker``; it keeps the newest objects grouped by Service, drops
updates that change nothing the rules depend on, and remembers the earliest
``endpoints.kubernetes.io/last-change-trigger-time`` of each pending
Service for the network programming latency metric. Nothing here is
specific to iptables; every proxy mode can use it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from netplane.api.meta import Obj, name, namespace
from netplane.proxy import model
from netplane.proxy.model import ServicePortInfo

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


def trigger_time(obj: Obj) -> float | None:
    """The endpoints change trigger time (RFC 3339, fractional seconds allowed)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION)
    if not raw:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _service_of(endpoints: Obj) -> str:
    """``namespace/name`` of the Service an Endpoints or EndpointSlice belongs to."""
    if endpoints.get("kind") == "EndpointSlice":
        labels = (endpoints.get("metadata") or {}).get("labels") or {}
        return f"{namespace(endpoints)}/{labels.get(model.SERVICE_NAME_LABEL, '')}"
    return f"{namespace(endpoints)}/{name(endpoints)}"


def _service_input(svc: Obj) -> object:
    return (svc.get("spec"), (svc.get("status") or {}).get("loadBalancer"))


def _endpoints_input(eps: Obj) -> object:
    if eps.get("kind") == "EndpointSlice":
        return (eps.get("endpoints"), eps.get("ports"), eps.get("addressType"))
    return eps.get("subsets")


@dataclass
class ChangeTracker:
    """The newest Services and endpoints objects, and which Services changed."""

    services: dict[str, Obj] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Obj]] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    triggers: dict[str, float] = field(default_factory=dict)

    def service(self, prev: Obj | None, cur: Obj | None) -> bool:
        """Records one Service event; returns whether its rules may change."""
        obj = cur if cur is not None else prev
        if obj is None:
            return False
        key = f"{namespace(obj)}/{name(obj)}"
        old = self.services.get(key)
        if cur is None:
            if self.services.pop(key, None) is None:
                return False
        else:
            self.services[key] = cur
            if old is not None and _service_input(old) == _service_input(cur):
                return False
        self.pending.add(key)
        return True

    def endpoints_event(self, prev: Obj | None, cur: Obj | None) -> bool:
        """Records one Endpoints/EndpointSlice event; returns whether rules may change."""
        obj = cur if cur is not None else prev
        if obj is None:
            return False
        key, own = _service_of(obj), f"{obj.get('kind', '')}/{namespace(obj)}/{name(obj)}"
        group = self.endpoints.setdefault(key, {})
        old = group.get(own)
        if cur is None:
            group.pop(own, None)
            if not group:
                del self.endpoints[key]
            if old is None:
                return False
        else:
            group[own] = cur
            if old is not None and _endpoints_input(old) == _endpoints_input(cur):
                return False
            stamp = trigger_time(cur)
            if stamp is not None:
                self.triggers[key] = min(stamp, self.triggers.get(key, stamp))
        self.pending.add(key)
        return True

    def take(self) -> tuple[set[str], dict[str, float]]:
        pending, triggers = self.pending, self.triggers
        self.pending, self.triggers = set(), {}
        return pending, triggers

    def give_back(self, pending: set[str], triggers: dict[str, float]) -> None:
        self.pending |= pending
        for k, v in triggers.items():
            self.triggers[k] = min(v, self.triggers.get(k, v))

    def build(self, key: str) -> list[tuple[ServicePortInfo, list[model.EndpointInfo]]]:
        """One Service's ports with their endpoints (``model.build`` for one
        Service, without its sorting: this runs for every changed Service)."""
        svc = self.services.get(key)
        if svc is None:
            return []
        objs = list(self.endpoints.get(key, {}).values())
        slices = [o for o in objs if o.get("kind") == "EndpointSlice"]
        classic = next((o for o in objs if o.get("kind") != "EndpointSlice"), None)
        out = []
        for info in model.service_ports(svc):
            if slices:
                eps = model.slice_endpoints(slices, info.port_name, info.protocol)
            else:
                eps = model.endpoints_for(classic, info.port_name, info.protocol)
            out.append((info, eps))
        return out
