"""Helpers over the JSON-shaped objects: metadata, keys, conditions, time."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

Obj = dict[str, Any]


def meta(obj: Obj) -> Obj:
    m: Obj = obj.setdefault("metadata", {})
    return m


def name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def namespace(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("namespace", ""))


def uid(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("uid", ""))


def labels(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def resource_version(obj: Obj) -> int:
    rv = obj.get("metadata", {}).get("resourceVersion") or "0"
    return int(rv)


def namespaced_name(obj: Obj) -> str:
    ns = namespace(obj)
    return f"{ns}/{name(obj)}" if ns else name(obj)


def is_deleting(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def new_uid() -> str:
    return str(uuid.uuid4())


def now() -> str:
    """RFC 3339 in UTC at second precision, as Kubernetes writes timestamps."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(at: datetime.datetime | None = None) -> str:
    """A MicroTime as Kubernetes writes it (RFC 3339, microseconds, UTC)."""
    at = at or datetime.datetime.now(datetime.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


TIME_FORMS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")  # Time, MicroTime


def parse_time(value: str) -> datetime.datetime:
    """A Time or MicroTime (RFC 3339, UTC); ValueError if it is neither."""
    for form in TIME_FORMS:
        try:
            return datetime.datetime.strptime(value, form).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    raise ValueError(f"time {value!r} is not RFC 3339 in UTC")


def timestamp(value: object) -> float | None:
    """A Time or MicroTime as seconds since the epoch; None when absent or
    malformed (a field written by someone else must not break a reader)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value).timestamp()
    except ValueError:
        return None


def owner_ref(owner: Obj, *, controller: bool = True) -> Obj:
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": name(owner),
        "uid": uid(owner),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def condition(obj: Obj, cond_type: str) -> Obj | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == cond_type:
            return dict(c)
    return None


def condition_true(obj: Obj, cond_type: str) -> bool:
    c = condition(obj, cond_type)
    return c is not None and c.get("status") == "True"


def set_condition(obj: Obj, cond_type: str, status: bool, reason: str = "",
                  message: str = "") -> bool:
    """Set a status condition; returns whether anything other than time changed."""
    conds: list[Obj] = obj.setdefault("status", {}).setdefault("conditions", [])
    value = "True" if status else "False"
    for c in conds:
        if c.get("type") == cond_type:
            changed = c.get("status") != value or c.get("reason", "") != reason
            if changed:
                c["lastTransitionTime"] = now()
            c.update(status=value, reason=reason, message=message)
            return changed
    conds.append({"type": cond_type, "status": value, "reason": reason, "message": message,
                  "lastTransitionTime": now()})
    return True


def pod_ready(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and condition_true(pod, "Ready")


def node_ready(node: Obj) -> bool:
    return condition_true(node, "Ready")


def node_address(node: Obj, kind: str = "InternalIP") -> str | None:
    """The node's address of ``kind`` (InternalIP, ExternalIP, Hostname)."""
    for a in node.get("status", {}).get("addresses") or []:
        if a.get("type") == kind:
            return str(a.get("address"))
    return None


def node_changed(prev: Obj | None, cur: Obj | None) -> bool:
    """Whether a Node event changes what the data plane uses (existence,
    readiness, pod CIDR, addresses): not every heartbeat does."""
    if prev is None or cur is None:
        return True
    return (node_ready(prev) != node_ready(cur)
            or prev.get("spec", {}).get("podCIDR") != cur.get("spec", {}).get("podCIDR")
            or prev.get("status", {}).get("addresses") != cur.get("status", {}).get("addresses"))
