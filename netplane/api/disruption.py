"""PodDisruptionBudgets (policy/v1), as kube judges them: what a budget may
say, which pods it covers, and its status (how many pods must stay healthy,
how many are, how many may go now), as the disruption controller computes
it and the Eviction API spends it. Pure."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from netplane.api import meta, selectors
from netplane.api.meta import Obj
from netplane.api.validation import Errors, FieldError, int_or_percent, label_selector

ALLOWED = "DisruptionAllowed"
SUFFICIENT, INSUFFICIENT, SYNC_FAILED = "SufficientPods", "InsufficientPods", "SyncFailed"
POLICIES = ("IfHealthyBudget", "AlwaysAllow")
# How long an eviction's mark on a pod holds before the controller decides
# the pod was not deleted after all (kube's DeletionTimeout).
DELETION_TIMEOUT = 120.0
TOO_MANY = "Cannot evict pod as it would violate the pod's disruption budget."


def validate(pdb: Obj, errs: Errors) -> None:
    """kube's ValidatePodDisruptionBudgetSpec."""
    spec = pdb.get("spec") or {}
    least, most = spec.get("minAvailable"), spec.get("maxUnavailable")
    if least is not None and most is not None:
        errs.append(FieldError("spec", "Invalid value: minAvailable and maxUnavailable cannot "
                                       "be both set"))
    for key, value in (("minAvailable", least), ("maxUnavailable", most)):
        if value is not None:
            int_or_percent(value, f"spec.{key}", errs)
    if spec.get("selector") is not None:
        label_selector(spec["selector"], "spec.selector", errs)
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in POLICIES:
        errs.append(FieldError("spec.unhealthyPodEvictionPolicy", f'Unsupported value: '
                               f'"{policy}": supported values: "AlwaysAllow", '
                               '"IfHealthyBudget"', "FieldValueNotSupported"))


def selects(pdb: Obj, pod: Obj) -> bool:
    """policy/v1: a budget covers the pods of its namespace that its selector
    matches; an empty selector matches them all, a missing one none."""
    if meta.namespace(pdb) != meta.namespace(pod):
        return False
    sel = (pdb.get("spec") or {}).get("selector")
    if sel is None:
        return False
    try:
        return selectors.from_label_selector(sel).matches(meta.labels(pod))
    except selectors.SelectorError:
        return False


def budgets_of(pod: Obj, pdbs: Iterable[Obj]) -> list[Obj]:
    return [b for b in pdbs if selects(b, pod)]


def scaled(value: Any, total: int) -> int:
    """kube's GetScaledValueFromIntOrPercent, rounding up."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def needs_scale(pdb: Obj) -> bool:
    """Whether the budget counts pods by their controllers' replicas (a
    maxUnavailable, or a percentage) rather than by the pods there are."""
    spec = pdb.get("spec") or {}
    if spec.get("maxUnavailable") is not None:
        return True
    least = spec.get("minAvailable")
    return isinstance(least, str)


@dataclass(frozen=True)
class Counts:
    expected: int
    desired_healthy: int


def counts(pdb: Obj, pods: Sequence[Obj], scale: int) -> Counts:
    """kube's getExpectedPodCount: ``scale`` is the replicas the pods'
    controllers want, used when ``needs_scale``."""
    spec = pdb.get("spec") or {}
    if spec.get("maxUnavailable") is not None:
        return Counts(scale, max(scale - scaled(spec["maxUnavailable"], scale), 0))
    least = spec.get("minAvailable")
    if isinstance(least, str):
        return Counts(scale, scaled(least, scale))
    if least is not None:
        return Counts(len(pods), int(least))
    return Counts(0, 0)


def disrupted_pods(pdb: Obj, pods: Sequence[Obj], now: float) -> tuple[Obj, float | None]:
    """The budget's marks of evicted pods still to be deleted (kube's
    buildDisruptedPodMap): a mark goes when its pod is being deleted or has
    waited past the timeout. Also when the next mark times out."""
    marks = (pdb.get("status") or {}).get("disruptedPods") or {}
    kept: Obj = {}
    recheck: float | None = None
    for pod in pods:
        stamp = marks.get(meta.name(pod))
        if meta.is_deleting(pod) or not isinstance(stamp, str):
            continue
        try:
            due = meta.parse_time(stamp).timestamp() + DELETION_TIMEOUT
        except ValueError:
            continue
        if due < now:
            continue
        kept[meta.name(pod)] = stamp
        recheck = due if recheck is None else min(recheck, due)
    return kept, recheck


def healthy(pods: Sequence[Obj], disrupted: Obj) -> int:
    """kube's countHealthyPods: ready, not going, not marked as evicted."""
    return sum(1 for p in pods if not meta.is_deleting(p) and meta.name(p) not in disrupted
               and meta.condition_true(p, "Ready"))


def allowed_condition(status: Obj, generation: int) -> None:
    """kube's UpdateDisruptionAllowedCondition."""
    ok = int(status.get("disruptionsAllowed") or 0) > 0
    _set(status, "True" if ok else "False", SUFFICIENT if ok else INSUFFICIENT, "",
         generation)


def _set(status: Obj, value: str, reason: str, message: str, generation: int) -> None:
    conds: list[Obj] = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == ALLOWED:
            if c.get("status") != value:
                c["lastTransitionTime"] = meta.now()
            c.update(status=value, reason=reason, message=message,
                     observedGeneration=generation)
            return
    conds.append({"type": ALLOWED, "status": value, "reason": reason, "message": message,
                  "observedGeneration": generation, "lastTransitionTime": meta.now()})


def status_of(pdb: Obj, pods: Sequence[Obj], scale: int, now: float) -> tuple[Obj, float | None]:
    """The budget's status now (kube's trySync and updatePdbStatus), and
    when to look again for a mark that will time out."""
    disrupted, recheck = disrupted_pods(pdb, pods, now)
    c = counts(pdb, pods, scale)
    current = healthy(pods, disrupted)
    allowed = current - c.desired_healthy
    if c.expected <= 0 or allowed <= 0:
        allowed = 0
    generation = int(meta.meta(pdb).get("generation") or 0)
    status: Obj = {**(pdb.get("status") or {}), "observedGeneration": generation,
                   "currentHealthy": current, "desiredHealthy": c.desired_healthy,
                   "expectedPods": c.expected, "disruptionsAllowed": allowed,
                   "disruptedPods": disrupted}
    status["conditions"] = [dict(x) for x in status.get("conditions") or []]
    if not disrupted:
        status.pop("disruptedPods")
    allowed_condition(status, generation)
    return status, recheck


def failed_status(pdb: Obj, why: str) -> Obj:
    """kube's failSafe: nothing may go while the budget cannot be computed."""
    generation = int(meta.meta(pdb).get("generation") or 0)
    status: Obj = {**(pdb.get("status") or {}), "disruptionsAllowed": 0,
                   "observedGeneration": generation}
    status["conditions"] = [dict(x) for x in status.get("conditions") or []]
    _set(status, "False", SYNC_FAILED, why, generation)
    return status
