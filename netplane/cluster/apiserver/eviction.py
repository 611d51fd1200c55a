"""The pods/eviction subresource (policy/v1 Eviction), as kube-apiserver's
EvictionREST: a pod is deleted unless that would take its
PodDisruptionBudget below what it must keep healthy, which is a 429 the
caller retries (``kubectl drain`` does, every 5 s). A pod that is done,
pending or already going needs no budget; an unready pod is let go while
the budget is met anyway. Each eviction spends one disruption and marks
the pod in the budget's status, so that two evictions racing cannot both
spend the last one."""

from __future__ import annotations

import dataclasses
from typing import Any

from netplane.api import deletion, disruption, meta, resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import status
from netplane.cluster.apiserver.registry import Query, Registry

EVICTED_REASON = "EvictionByEvictionAPI"
ATTEMPTS = 5  # conflicts on the budget tried again, as kube's EvictionsRetry


def _too_many(message_of_cause: str) -> status.ApiError:
    return status.ApiError(429, "TooManyRequests", disruption.TOO_MANY, details={
        "causes": [{"reason": "DisruptionBudget", "message": message_of_cause}]})


def _ignores_budgets(pod: Obj) -> bool:
    """kube's canIgnorePDB: the pod disrupts nothing more by going."""
    phase = (pod.get("status") or {}).get("phase", "Pending")
    return phase in ("Succeeded", "Failed", "Pending") or meta.is_deleting(pod)


def _delete(registry: Registry, pod: Obj, opts: deletion.DeleteOptions) -> None:
    """kube's addConditionAndDeletePod: DisruptionTarget first, then the delete."""
    if not opts.dry_run and not meta.is_deleting(pod):
        marked = dict(pod, status=dict(pod.get("status") or {}))
        marked["status"]["conditions"] = [dict(c) for c in marked["status"].get(
            "conditions") or []]
        meta.set_condition(marked, "DisruptionTarget", True, EVICTED_REASON,
                           "Eviction API: evicting")
        try:
            registry.update(resources.POD, meta.namespace(pod), meta.name(pod), marked,
                            subresource="status")
        except status.ApiError as e:
            if e.code != 409:
                raise
    registry.delete(resources.POD, meta.namespace(pod), meta.name(pod), options=opts)


def _spend(registry: Registry, pdb: Obj, pod: Obj, *, dry_run: bool) -> None:
    """kube's checkAndDecrement: one disruption less, the pod marked; a 429
    when none is left or the budget is not computed for its latest spec."""
    st = pdb.get("status") or {}
    name = meta.name(pdb)
    if int(st.get("observedGeneration") or 0) < int(meta.meta(pdb).get("generation") or 0):
        raise _too_many(f"The disruption budget {name} is still being processed by the "
                        "server.")
    allowed = int(st.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise status.forbidden("poddisruptionbudget", name, "pdb disruptions allowed is "
                               "negative", group="policy")
    if allowed == 0:
        raise _too_many(f"The disruption budget {name} needs "
                        f"{int(st.get('desiredHealthy') or 0)} healthy pods and has "
                        f"{int(st.get('currentHealthy') or 0)} currently")
    if dry_run:
        return
    st = {**st, "disruptionsAllowed": allowed - 1,
          "disruptedPods": {**(st.get("disruptedPods") or {}), meta.name(pod): meta.now()},
          "conditions": [dict(c) for c in st.get("conditions") or []]}
    if allowed - 1 == 0:
        disruption.allowed_condition(st, int(st.get("observedGeneration") or 0))
    registry.update(resources.PODDISRUPTIONBUDGET, meta.namespace(pdb), name,
                    dict(pdb, status=st), subresource="status")


def evict(registry: Registry, namespace: str, name: str, body: Any, *,
          dry_run: bool = False) -> Obj:
    if not isinstance(body, dict):
        raise status.bad_request("the body of an eviction must be an Eviction object")
    if (body.get("metadata") or {}).get("name") not in (None, "", name):
        raise status.bad_request("name in URL does not match name in Eviction object")
    try:
        opts = deletion.options(body.get("deleteOptions") or {}, {})
    except deletion.BadOptions as e:
        raise status.bad_request(str(e)) from None
    except deletion.InvalidOptions as e:  # read, not allowed: a 422 as for a DELETE
        raise status.invalid("DeleteOptions.meta.k8s.io", "", e.errors) from None
    if dry_run:
        opts = dataclasses.replace(opts, dry_run=True)
    for _ in range(ATTEMPTS):
        pod = registry.get(resources.POD, namespace, name)
        if opts.uid is not None and opts.uid != meta.uid(pod):
            raise status.conflict("pods", name)
        if _ignores_budgets(pod):
            if not meta.is_deleting(pod):
                _delete(registry, pod, opts)
            return status.success(201)
        pdbs = disruption.budgets_of(pod, registry.list(resources.PODDISRUPTIONBUDGET,
                                                        Query(namespace=namespace))[0])
        if len(pdbs) > 1:
            raise status.ApiError(500, "InternalError", "Internal error occurred: This pod "
                                  "has more than one PodDisruptionBudget, which the eviction "
                                  "subresource does not support.")
        if pdbs and not _unhealthy_may_go(pod, pdbs[0]):
            try:
                _spend(registry, pdbs[0], pod, dry_run=opts.dry_run)
            except status.ApiError as e:
                if e.code == 409:
                    continue  # the budget changed under us: judge again
                raise
        _delete(registry, pod, opts)
        return status.success(201)
    raise status.conflict("poddisruptionbudgets", name, group="policy")


def _unhealthy_may_go(pod: Obj, pdb: Obj) -> bool:
    """An unready pod counts for nothing in the budget: it may go when the
    budget is met without it, or always with AlwaysAllow."""
    if meta.condition_true(pod, "Ready"):
        return False
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    st = pdb.get("status") or {}
    desired = int(st.get("desiredHealthy") or 0)
    return int(st.get("currentHealthy") or 0) >= desired > 0

