"""What a DELETE does to a stored object, decided before anything is
written (kube-apiserver's BeforeDelete and the generic store's Delete):
remove it now, keep it unchanged, or keep it marked with
``deletionTimestamp`` (and the finalizers the propagation policy asks for)
until its finalizers are gone and, for a pod, its node has stopped it."""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass

from netplane.api import deletion, meta
from netplane.api.deletion import DeleteOptions
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.apiserver import status

DEFAULT_POD_GRACE = 30


class Step(enum.Enum):
    REMOVE = "remove"  # gone from the store now
    KEEP = "keep"  # stays as it is: a graceful deletion is already under way
    MARK = "mark"  # stays, written as ``Outcome.obj``


@dataclass(frozen=True)
class Outcome:
    step: Step
    obj: Obj


def check_preconditions(res: Resource, obj: Obj, opts: DeleteOptions) -> None:
    """A 409 when the object is not the one the caller means to delete."""
    name = f"{res.plural}.{res.group}" if res.group else res.plural
    if opts.uid is not None and opts.uid != meta.uid(obj):
        raise status.ApiError(409, "Conflict", f'Operation cannot be fulfilled on {name} '
                              f'"{meta.name(obj)}": the UID in the precondition ({opts.uid}) '
                              f"does not match the UID in record ({meta.uid(obj)}). The object "
                              "might have been deleted and then recreated",
                              details={"name": meta.name(obj), "kind": res.plural})
    stored = str(meta.meta(obj).get("resourceVersion", ""))
    if opts.resource_version is not None and opts.resource_version != stored:
        raise status.ApiError(409, "Conflict", f'Operation cannot be fulfilled on {name} '
                              f'"{meta.name(obj)}": the ResourceVersion in the precondition '
                              f"({opts.resource_version}) does not match the ResourceVersion in "
                              f"record ({stored}). The object might have been modified",
                              details={"name": meta.name(obj), "kind": res.plural})


def pod_grace(pod: Obj, requested: int | None) -> int:
    """Seconds a deleted pod is given to stop: none when no node runs it."""
    if not pod.get("spec", {}).get("nodeName"):
        return 0
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    if requested is not None:
        return requested
    return int(pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_POD_GRACE))


def plan(res: Resource, stored: Obj, opts: DeleteOptions) -> Outcome:
    obj = copy.deepcopy(stored)
    md = meta.meta(obj)
    graceful, pending = _graceful(res, obj, opts)
    if pending:
        return Outcome(Step.KEEP, stored)
    finalizers = list(md.get("finalizers") or [])
    wanted = deletion.finalizers_on_delete(res.api_version, res.kind, finalizers, opts)
    if wanted:
        md["finalizers"] = wanted
    else:
        md.pop("finalizers", None)
    if graceful:
        if not wanted and not md.get("deletionGracePeriodSeconds"):
            return Outcome(Step.REMOVE, stored)
    elif not wanted:
        return Outcome(Step.REMOVE, stored)
    else:
        _mark_as_deleting(md)
    # A delete that changes nothing writes nothing (so no event wakes anyone).
    return Outcome(Step.KEEP, stored) if obj == stored else Outcome(Step.MARK, obj)


def _graceful(res: Resource, obj: Obj, opts: DeleteOptions) -> tuple[bool, bool]:
    """(graceful, pending) as kube's BeforeDelete: pods are deleted
    gracefully; once under way, a delete may only shorten the grace."""
    md = meta.meta(obj)
    if res.kind != "Pod":
        return False, False
    if md.get("deletionTimestamp"):
        current = int(md.get("deletionGracePeriodSeconds") or 0)
        if current == 0:
            return False, False
        if opts.grace_period is None or opts.grace_period >= current:
            return False, True
        md["deletionGracePeriodSeconds"] = opts.grace_period
        return True, False
    md["deletionTimestamp"] = meta.now()
    md["deletionGracePeriodSeconds"] = pod_grace(obj, opts.grace_period)
    return True, False


def _mark_as_deleting(md: Obj) -> None:
    """An object without graceful deletion held by finalizers."""
    if not md.get("deletionTimestamp"):
        if int(md.get("generation") or 0) > 0:
            md["generation"] = int(md["generation"]) + 1
        md["deletionTimestamp"] = meta.now()
    md["deletionGracePeriodSeconds"] = 0


def removed_by_update(new: Obj) -> bool:
    """An update that takes the last finalizer off an object being deleted
    deletes it, unless a graceful deletion still runs (kube's
    ShouldDeleteDuringUpdate)."""
    md = meta.meta(new)
    return bool(md.get("deletionTimestamp")) and not md.get("finalizers") \
        and not md.get("deletionGracePeriodSeconds")


def new_finalizers_error(old: Obj, new: Obj) -> str | None:
    """Finalizers cannot be added to an object being deleted."""
    if not meta.is_deleting(old):
        return None
    before = set(meta.meta(old).get("finalizers") or [])
    added = [f for f in meta.meta(new).get("finalizers") or [] if f not in before]
    if not added:
        return None
    listed = ", ".join(f'"{f}"' for f in added)
    return ("no new finalizers can be added if the object is being deleted, found new "
            f"finalizers []string{{{listed}}}")
