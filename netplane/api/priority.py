"""Pod priority (scheduling.k8s.io/v1 PriorityClass), as kube's
pkg/apis/scheduling and its Priority admission plugin judge it: the two
built-in classes, what a user class may be, and the priority and preemption
policy a new pod gets from its class. Pure; the API server asks the store."""

from __future__ import annotations

from collections.abc import Iterable

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.api.validation import Errors, FieldError

SYSTEM_PREFIX = "system-"
HIGHEST_USER_DEFINABLE = 1_000_000_000
SYSTEM_CRITICAL = 2 * HIGHEST_USER_DEFINABLE
PREEMPT_LOWER, PREEMPT_NEVER = "PreemptLowerPriority", "Never"
POLICIES = (PREEMPT_LOWER, PREEMPT_NEVER)

SYSTEM_CLASSES: dict[str, tuple[int, str]] = {
    "system-node-critical": (SYSTEM_CRITICAL + 1000, "Used for system critical pods that must "
                             "not be moved from their current node."),
    "system-cluster-critical": (SYSTEM_CRITICAL, "Used for system critical pods that must run "
                                "in the cluster, but can be moved to another node if "
                                "necessary."),
}


def system_class(name: str) -> Obj:
    value, description = SYSTEM_CLASSES[name]
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description,
            "preemptionPolicy": PREEMPT_LOWER}


def _known_system_class(pc: Obj) -> str:
    """Why ``pc`` is not one of the built-in classes ('' when it is)."""
    name = meta.name(pc)
    if name not in SYSTEM_CLASSES:
        return f"{name} is not a known system priority class"
    value = SYSTEM_CLASSES[name][0]
    if pc.get("value") != value:
        return f"value of {name} PriorityClass must be {value}"
    if pc.get("globalDefault"):
        return f"globalDefault of {name} PriorityClass must be false"
    return ""


def validate_class(pc: Obj, errs: Errors) -> None:
    """kube's ValidatePriorityClass."""
    value = pc.get("value")
    if isinstance(value, bool) or not isinstance(value, int):
        errs.append(FieldError("value", "Required value", "FieldValueRequired"))
        return
    if meta.name(pc).startswith(SYSTEM_PREFIX):
        why = _known_system_class(pc)
        if why:
            errs.append(FieldError("metadata.name", "Forbidden: priority class names with "
                                   f"'{SYSTEM_PREFIX}' prefix are reserved for system use "
                                   f"only. error: {why}", "FieldValueForbidden"))
    elif value > HIGHEST_USER_DEFINABLE:
        errs.append(FieldError("value", "Forbidden: maximum allowed value of a user defined "
                               f"priority is {HIGHEST_USER_DEFINABLE}", "FieldValueForbidden"))
    policy = pc.get("preemptionPolicy")
    if policy is not None and policy not in POLICIES:
        errs.append(FieldError("preemptionPolicy", f'Unsupported value: "{policy}": supported '
                               'values: "Never", "PreemptLowerPriority"',
                               "FieldValueNotSupported"))


def update_errors(old: Obj, new: Obj) -> Errors:
    """kube's ValidatePriorityClassUpdate: the value and policy stay."""
    return [FieldError(f, f"Invalid value: {new.get(f)!r}: field is immutable")
            for f in ("value", "preemptionPolicy") if old.get(f) != new.get(f)]


def default_class(classes: Iterable[Obj]) -> Obj | None:
    """The global default class; of several, the one of lowest value (kube's
    getDefaultPriorityClass)."""
    found = [pc for pc in classes if pc.get("globalDefault")]
    return min(found, key=lambda pc: int(pc.get("value") or 0), default=None)


class Refused(Exception):
    """The Priority admission plugin says no (a 403 Forbidden)."""


def admit_pod(pod: Obj, classes: dict[str, Obj]) -> None:
    """kube's Priority admission of a new pod: its class (or the global
    default) decides spec.priority and spec.preemptionPolicy; a pod that
    gives other values than its class would is refused."""
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName") or ""
    if name:
        pc = classes.get(name)
        if pc is None:
            raise Refused(f"no PriorityClass with name {name} was found")
    else:
        pc = default_class(classes.values())
        if pc is not None:
            spec["priorityClassName"] = meta.name(pc)
    value = int(pc.get("value") or 0) if pc is not None else 0
    policy = (pc.get("preemptionPolicy") if pc is not None else None) or PREEMPT_LOWER
    given = spec.get("priority")
    if given is not None and given != value:
        raise Refused(f"the integer value of priority ({given}) must not be provided in pod "
                      f"spec; priority admission controller computed {value} from the given "
                      "PriorityClass name")
    spec["priority"] = value
    if spec.get("preemptionPolicy") not in (None, policy):
        raise Refused(f"the string value of PreemptionPolicy ({spec['preemptionPolicy']}) must "
                      f"not be provided in pod spec; priority admission controller computed "
                      f"{policy} from the given PriorityClass name")
    spec["preemptionPolicy"] = policy


def keep_on_update(old: Obj, new: Obj) -> None:
    """Admission set these at create; an update that leaves them out keeps them."""
    old_spec, spec = old.get("spec") or {}, new.setdefault("spec", {})
    for f in ("priority", "preemptionPolicy"):
        if spec.get(f) is None and old_spec.get(f) is not None:
            spec[f] = old_spec[f]


def of(pod: Obj) -> int:
    """kube's PodPriority: 0 when the pod has none."""
    value = (pod.get("spec") or {}).get("priority")
    return value if isinstance(value, int) else 0


def start_time(pod: Obj) -> str:
    """When the pod started, for ordering: status.startTime, else its creation."""
    return str((pod.get("status") or {}).get("startTime")
               or meta.meta(pod).get("creationTimestamp") or "")


def started(pod: Obj) -> float:
    """``start_time`` in seconds since the epoch (0 when unknown)."""
    stamp = start_time(pod)
    try:
        return meta.parse_time(stamp).timestamp()
    except ValueError:
        return 0.0
