"""Where a pod may run: taints and tolerations, node selectors and required
node affinity, as kube's component-helpers judge them. Pure; the scheduler
filters with these, and the DaemonSet controller decides with them which
nodes get a daemon pod.

``condition_taints`` are the NoSchedule taints the node lifecycle
controller keeps on a node for its conditions (kube's
TaintNodesByCondition); ``node_taints`` adds them to what the node carries
now, for readers that must not wait for the controller's write."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from netplane.api import meta
from netplane.api.meta import Obj

NO_SCHEDULE, NO_EXECUTE, PREFER_NO_SCHEDULE = "NoSchedule", "NoExecute", "PreferNoSchedule"
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
NAME_FIELD = "metadata.name"
# Node conditions that mean a taint when True (kube's TaintNodesByCondition).
PRESSURE = {"MemoryPressure": MEMORY_PRESSURE, "DiskPressure": DISK_PRESSURE,
            "PIDPressure": PID_PRESSURE, "NetworkUnavailable": NETWORK_UNAVAILABLE}


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """kube's Toleration.ToleratesTaint: an empty effect matches every
    effect, an empty key with Exists every key; Exists ignores the value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated(taints: Iterable[Obj], tolerations: Iterable[Obj] | None,
                effects: Iterable[str] = (NO_SCHEDULE, NO_EXECUTE)) -> Obj | None:
    """The first taint of ``effects`` no toleration tolerates, if any."""
    wanted, tols = set(effects), list(tolerations or [])
    for taint in taints:
        if taint.get("effect") in wanted and not any(tolerates(t, taint) for t in tols):
            return taint
    return None


def condition_taints(node: Obj) -> list[Obj]:
    """The taints kube's node lifecycle controller keeps on ``node`` for its
    conditions and cordon; a node that never said Ready is not-ready."""
    out: list[Obj] = []
    ready = meta.condition(node, "Ready")
    if ready is None or ready.get("status") == "False":
        out.append({"key": NOT_READY, "effect": NO_SCHEDULE})
    elif ready.get("status") != "True":
        out.append({"key": UNREACHABLE, "effect": NO_SCHEDULE})
    for cond, key in PRESSURE.items():
        if meta.condition_true(node, cond):
            out.append({"key": key, "effect": NO_SCHEDULE})
    if (node.get("spec") or {}).get("unschedulable"):
        out.append({"key": UNSCHEDULABLE, "effect": NO_SCHEDULE})
    return out


def node_taints(node: Obj) -> list[Obj]:
    """``spec.taints`` and the condition taints it does not already carry."""
    given = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    seen = {(t.get("key"), t.get("effect")) for t in given}
    return given + [t for t in condition_taints(node) if (t["key"], t["effect"]) not in seen]


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def requirement_matches(req: Obj, value: str | None) -> bool:
    """One NodeSelectorRequirement against a label's (or field's) value."""
    op, values = req.get("operator"), [str(v) for v in req.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        have, bound = _number(value), _number(values[0])
        if have is None or bound is None:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def term_matches(term: Obj, node: Obj) -> bool:
    """A NodeSelectorTerm: every expression on the labels and every field
    (only ``metadata.name``, as in kube) holds; an empty term matches nothing."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = meta.labels(node)
    fields_of: dict[str, Callable[[Obj], Any]] = {NAME_FIELD: meta.name}
    for req in exprs:
        if not requirement_matches(req, labels.get(str(req.get("key")))):
            return False
    for req in fields:
        getter = fields_of.get(str(req.get("key")))
        if getter is None or not requirement_matches(req, getter(node)):
            return False
    return True


def required_terms(pod: Obj) -> list[Obj] | None:
    """The pod's requiredDuringSchedulingIgnoredDuringExecution terms; None
    when it has no required node affinity."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not isinstance(required, dict):
        return None
    return [t for t in required.get("nodeSelectorTerms") or [] if isinstance(t, dict)]


def affinity_matches(pod: Obj, node: Obj) -> bool:
    """The required node affinity: any one of its terms (none given: any node)."""
    terms = required_terms(pod)
    return terms is None or any(term_matches(t, node) for t in terms)


def selector_matches(pod: Obj, node: Obj) -> bool:
    labels = meta.labels(node)
    wanted = (pod.get("spec") or {}).get("nodeSelector") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def fits_node(pod: Obj, node: Obj) -> bool:
    """kube's GetRequiredNodeAffinity(pod).Match(node): nodeSelector and
    required node affinity both."""
    return selector_matches(pod, node) and affinity_matches(pod, node)
