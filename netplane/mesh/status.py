"""Writing route statuses as the Gateway API expects of a controller: its
own entries in ``status.parents`` (by parentRef and controllerName) are
replaced, other controllers' are kept; a condition keeps its
lastTransitionTime while its status stays the same."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from netplane.api.meta import Obj


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(parent: Obj) -> tuple[str, ...]:
    ref = parent.get("parentRef") or {}
    return (str(parent.get("controllerName", "")), str(ref.get("group", "")),
            str(ref.get("kind", "")), str(ref.get("namespace", "")), str(ref.get("name", "")),
            str(ref.get("sectionName", "")), str(ref.get("port", "")))


def _conditions(old: list[Obj], new: list[Obj], now: str) -> list[Obj]:
    before = {c.get("type"): c for c in old}
    out = []
    for c in new:
        was = before.get(c["type"])
        kept = was.get("lastTransitionTime") if was and was.get("status") == c["status"] \
            else None
        out.append({**c, "lastTransitionTime": kept or now})
    return out


def merged_parents(current: list[Obj], ours: list[Obj], controller: str, *,
                   now: Callable[[], str] = _now) -> list[Obj]:
    """``status.parents`` after this controller writes ``ours``."""
    stamp = now()
    previous = {_key(p): p for p in current}
    kept = [p for p in current if p.get("controllerName") != controller]
    mine = [{**p, "conditions": _conditions(previous.get(_key(p), {}).get("conditions") or [],
                                            p.get("conditions") or [], stamp)}
            for p in ours]
    return kept + mine


def status_patch(obj: Obj, ours: list[Obj], controller: str, *,
                 now: Callable[[], str] = _now) -> Obj | None:
    """The merge patch of the route's status, or None when nothing changes."""
    current = (obj.get("status") or {}).get("parents") or []
    merged = merged_parents(current, ours, controller, now=now)
    return None if merged == current else {"status": {"parents": merged}}


def conditions_patch(obj: Obj, desired: list[Obj], *, now: Callable[[], str] = _now
                     ) -> Obj | None:
    """The merge patch of a GatewayClass's status conditions, or None."""
    current = (obj.get("status") or {}).get("conditions") or []
    merged = _conditions(current, desired, now())
    return None if merged == current else {"status": {"conditions": merged}}


def gateway_patch(obj: Obj, desired: Obj, *, now: Callable[[], str] = _now) -> Obj | None:
    """The merge patch of a Gateway's status (addresses, conditions, one
    entry per listener), or None when nothing changes."""
    current = obj.get("status") or {}
    stamp = now()
    before = {ln.get("name"): ln for ln in current.get("listeners") or ()}
    status = {
        "addresses": desired.get("addresses") or [],
        "conditions": _conditions(current.get("conditions") or [],
                                  desired.get("conditions") or [], stamp),
        "listeners": [{**ln, "conditions": _conditions(
            (before.get(ln["name"]) or {}).get("conditions") or [],
            ln.get("conditions") or [], stamp)} for ln in desired.get("listeners") or ()]}
    same = all(status[k] == (current.get(k) or []) for k in status)
    return None if same else {"status": status}
