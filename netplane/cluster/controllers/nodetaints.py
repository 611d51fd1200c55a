"""The taints the node lifecycle controller keeps on a node, as kube's
pkg/controller/nodelifecycle does. Pure: from a node, the ``spec.taints`` it
should carry.

- NoExecute, from the Ready condition: False is
  ``node.kubernetes.io/not-ready``, Unknown ``node.kubernetes.io/unreachable``;
  the two never stand together (one is swapped for the other) and both go
  once the node is Ready. The taint eviction controller acts on these.
- NoSchedule (kube's TaintNodesByCondition): the same two keys, the pressure
  and network-unavailable conditions, and ``node.kubernetes.io/unschedulable``
  for a cordoned node; the scheduler keeps pods off them.

Taints others put on the node are never touched, and a taint that stays
keeps its ``timeAdded``: the eviction controller counts tolerations from it."""

from __future__ import annotations

from netplane.api import meta, scheduling
from netplane.api.meta import Obj

TaintKey = tuple[str, str]  # (key, effect)

NO_EXECUTE_KEYS = frozenset({scheduling.NOT_READY, scheduling.UNREACHABLE})
NO_SCHEDULE_KEYS = frozenset({scheduling.NOT_READY, scheduling.UNREACHABLE,
                              scheduling.UNSCHEDULABLE, *scheduling.PRESSURE.values()})


def managed(taint: Obj) -> bool:
    """Whether the controller owns ``taint`` (adds and removes it)."""
    key, effect = taint.get("key"), taint.get("effect")
    return (effect == scheduling.NO_EXECUTE and key in NO_EXECUTE_KEYS) or \
        (effect == scheduling.NO_SCHEDULE and key in NO_SCHEDULE_KEYS)


def no_execute_key(node: Obj) -> str | None:
    """The NoExecute taint the Ready condition calls for, if any; a node
    that never said Ready is left alone (kube waits for a status)."""
    ready = meta.condition(node, "Ready")
    status = (ready or {}).get("status")
    if status == "False":
        return scheduling.NOT_READY
    if status == "Unknown":
        return scheduling.UNREACHABLE
    return None


def wanted(node: Obj) -> list[TaintKey]:
    """Every managed taint ``node`` should carry, NoExecute first."""
    out: list[TaintKey] = []
    key = no_execute_key(node)
    if key is not None:
        out.append((key, scheduling.NO_EXECUTE))
    out += [(t["key"], t["effect"]) for t in scheduling.condition_taints(node)]
    return out


def reconciled(node: Obj, now: str) -> list[Obj] | None:
    """The node's new ``spec.taints`` (added taints stamped ``now``), or
    None when they are right already."""
    current = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    want = wanted(node)
    kept = [t for t in current if not managed(t) or (t.get("key"), t.get("effect")) in want]
    have = {(t.get("key"), t.get("effect")) for t in kept}
    added = [{"key": key, "effect": effect, "timeAdded": now}
             for key, effect in want if (key, effect) not in have]
    if not added and len(kept) == len(current):
        return None
    return kept + added
