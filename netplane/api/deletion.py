"""Deletion as Kubernetes defines it: DeleteOptions, the propagation
policies and the two finalizers through which the API server hands a
cascading delete to the garbage collector.

- ``Background``: the object goes at once; the collector then deletes its
  dependents.
- ``Foreground``: the object stays, with ``deletionTimestamp`` and the
  ``foregroundDeletion`` finalizer, until the collector has deleted the
  dependents whose ownerReference says ``blockOwnerDeletion``.
- ``Orphan``: the object stays with the ``orphan`` finalizer until the
  collector has removed its ownerReference from every dependent.

Pure: the API server and the collector both read it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netplane.api.validation import FieldError

ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
GC_FINALIZERS = (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)


class Propagation(enum.StrEnum):
    ORPHAN = "Orphan"
    BACKGROUND = "Background"
    FOREGROUND = "Foreground"


# Kinds whose dependents are orphaned when a delete names no policy, as the
# kinds' strategies in kube-apiserver 1.32 say (DefaultGarbageCollectionPolicy):
# batch/v1 Jobs (kept for compatibility; kube warns) and v1
# ReplicationControllers. Every other kind collects its dependents.
ORPHAN_BY_DEFAULT = frozenset({("batch/v1", "Job"), ("v1", "ReplicationController")})
JOB_ORPHAN_WARNING = ("child pods are preserved by default when jobs are deleted; set "
                      "propagationPolicy=Background to remove them or set "
                      "propagationPolicy=Orphan to suppress this warning")


class BadOptions(ValueError):
    """DeleteOptions that cannot be read (a 400)."""


class InvalidOptions(ValueError):
    """DeleteOptions that are read but not allowed (a 422), with field errors."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class DeleteOptions:
    grace_period: int | None = None
    propagation: Propagation | None = None
    orphan_dependents: bool | None = None  # the older spelling of Orphan / not Orphan
    uid: str | None = None  # preconditions
    resource_version: str | None = None
    dry_run: bool = False

    @property
    def names_a_policy(self) -> bool:
        return self.propagation is not None or self.orphan_dependents is not None


def options(body: Any, query: Mapping[str, str]) -> DeleteOptions:
    """The options of a DELETE: its body when it has one, else its query
    parameters, as kube-apiserver reads them (never both)."""
    if body is not None:
        if not isinstance(body, dict):
            raise BadOptions("the body of a DELETE must be a DeleteOptions object")
        return _from_body(body)
    return _from_query(query)


def _from_body(body: dict[str, Any]) -> DeleteOptions:
    grace = body.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
        raise BadOptions(f"gracePeriodSeconds must be a whole number, not {grace!r}")
    orphan = body.get("orphanDependents")
    if orphan is not None and not isinstance(orphan, bool):
        raise BadOptions(f"orphanDependents must be true or false, not {orphan!r}")
    policy = body.get("propagationPolicy")
    if policy is not None and not isinstance(policy, str):
        raise BadOptions(f"propagationPolicy must be a string, not {policy!r}")
    pre = body.get("preconditions") or {}
    if not isinstance(pre, dict) or not all(
            isinstance(pre.get(k), str | None) for k in ("uid", "resourceVersion")):
        raise BadOptions("preconditions must be an object with string uid and resourceVersion")
    dry = body.get("dryRun") or []
    if not isinstance(dry, list):
        raise BadOptions(f"dryRun must be a list, not {dry!r}")
    return _options(grace, policy, orphan, pre.get("uid"), pre.get("resourceVersion"), dry)


def _from_query(query: Mapping[str, str]) -> DeleteOptions:
    grace: int | None = None
    if "gracePeriodSeconds" in query:
        value = query["gracePeriodSeconds"]
        if not value.lstrip("-").isdigit():
            raise BadOptions(f"gracePeriodSeconds must be a whole number, not {value!r}")
        grace = int(value)
    orphan: bool | None = None
    if "orphanDependents" in query:
        value = query["orphanDependents"].lower()
        if value not in ("true", "false", "1", "0"):
            raise BadOptions(f"orphanDependents must be true or false, not {value!r}")
        orphan = value in ("true", "1")
    dry = [query["dryRun"]] if query.get("dryRun") else []
    return _options(grace, query.get("propagationPolicy"), orphan, None, None, dry)


def _options(grace: int | None, policy: str | None, orphan: bool | None, uid: str | None,
             resource_version: str | None, dry: list[Any]) -> DeleteOptions:
    errors = []
    if policy is not None and orphan is not None:
        errors.append(FieldError("propagationPolicy", f'Invalid value: "{policy}": '
                                 "orphanDependents and deletionPropagation cannot be both set"))
    if policy is not None and policy not in set(Propagation):
        errors.append(FieldError("propagationPolicy", f'Unsupported value: "{policy}": '
                                 'supported values: "Foreground", "Background", "Orphan", '
                                 '"nil"', "FieldValueNotSupported"))
    for value in dry:
        if value != "All":
            errors.append(FieldError("dryRun", f'Unsupported value: "{value}": supported '
                                     'values: "All"', "FieldValueNotSupported"))
    if errors:
        raise InvalidOptions(errors)
    # A negative grace period counts as one second, as kube's BeforeDelete has it.
    if grace is not None and grace < 0:
        grace = 1
    return DeleteOptions(grace_period=grace,
                         propagation=Propagation(policy) if policy else None,
                         orphan_dependents=orphan, uid=uid or None,
                         resource_version=resource_version or None, dry_run=bool(dry))


def default_policy(api_version: str, kind: str) -> Propagation:
    """What a delete that names no policy does to the dependents of ``kind``."""
    if (api_version, kind) in ORPHAN_BY_DEFAULT:
        return Propagation.ORPHAN
    return Propagation.BACKGROUND


def _orphans(api_version: str, kind: str, finalizers: list[str], opts: DeleteOptions) -> bool:
    if opts.orphan_dependents is not None:
        return opts.orphan_dependents
    if opts.propagation is not None:
        return opts.propagation is Propagation.ORPHAN
    for f in finalizers:  # a finalizer already there decides, then the kind's default
        if f in GC_FINALIZERS:
            return f == ORPHAN_FINALIZER
    return default_policy(api_version, kind) is Propagation.ORPHAN


def _in_foreground(finalizers: list[str], opts: DeleteOptions) -> bool:
    if opts.orphan_dependents is not None:
        return False
    if opts.propagation is not None:
        return opts.propagation is Propagation.FOREGROUND
    for f in finalizers:
        if f in GC_FINALIZERS:
            return f == FOREGROUND_FINALIZER
    return False


def finalizers_on_delete(api_version: str, kind: str, finalizers: list[str],
                         opts: DeleteOptions) -> list[str]:
    """The object's finalizers once a delete with ``opts`` has been taken:
    the others kept in order, then ``orphan`` or ``foregroundDeletion`` as
    the policy (or the finalizer already there, or the kind's default) says
    (kube's deletionFinalizersForGarbageCollection)."""
    out = [f for f in finalizers if f not in GC_FINALIZERS]
    if _orphans(api_version, kind, finalizers, opts):
        out.append(ORPHAN_FINALIZER)
    if _in_foreground(finalizers, opts):
        out.append(FOREGROUND_FINALIZER)
    if sorted(out) == sorted(finalizers):
        return list(finalizers)
    return out


def warnings_on_delete(api_version: str, kind: str, opts: DeleteOptions) -> list[str]:
    """What kube-apiserver warns about a delete (a ``Warning: 299`` header)."""
    if (api_version, kind) == ("batch/v1", "Job") and not opts.names_a_policy:
        return [JOB_ORPHAN_WARNING]
    return []
