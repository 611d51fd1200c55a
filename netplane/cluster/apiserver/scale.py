"""The ``scale`` subresource (``autoscaling/v1`` Scale) of Deployments,
ReplicaSets and StatefulSets: what ``kubectl scale`` and autoscalers read and
write instead of the whole object."""

from __future__ import annotations

import copy
from typing import Any

from netplane.api import meta, selectors, validation
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cluster.apiserver import fieldmanager, status
from netplane.cluster.apiserver.patch import JSONPatchError, apply_patch
from netplane.cluster.apiserver.registry import Registry


def to_scale(obj: Obj) -> Obj:
    md = obj["metadata"]
    sel = (obj.get("spec") or {}).get("selector")
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                        "creationTimestamp") if k in md},
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 0))},
        "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)),
                   "selector": selectors.to_string(selectors.from_label_selector(sel))
                   if sel else ""},
    }


def get(registry: Registry, res: Resource, namespace: str | None, name: str) -> Obj:
    return to_scale(registry.get(res, namespace, name))


def _replicas(scale: Any, name: str) -> int:
    replicas = ((scale or {}).get("spec") or {}).get("replicas") \
        if isinstance(scale, dict) else None
    if replicas is None:
        replicas = 0  # an absent spec.replicas is 0 in a Scale, as in kube-apiserver
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise status.invalid("Scale", name, [validation.FieldError(
            "spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal "
            "to 0")])
    return replicas


def update(registry: Registry, res: Resource, namespace: str | None, name: str, body: Any, *,
           dry_run: bool = False, manager: str = "") -> Obj:
    if not isinstance(body, dict):
        raise status.bad_request("the body must be an autoscaling/v1 Scale object")
    if body.get("kind") not in (None, "Scale"):
        raise status.bad_request(f"the body is a {body.get('kind')}, not a Scale")
    if (body.get("metadata") or {}).get("name") not in (None, name):
        raise status.bad_request(f"the name of the object ({body['metadata']['name']}) does "
                                 f"not match the name on the URL ({name})")
    replicas = _replicas(body, name)
    obj = registry.get(res, namespace, name)
    wanted = meta.resource_version(body)
    if wanted and wanted != meta.resource_version(obj):
        raise status.conflict(f"{res.plural}.{res.group}" if res.group else res.plural, name)
    obj = copy.deepcopy(obj)
    obj.setdefault("spec", {})["replicas"] = replicas
    return to_scale(registry.update(res, namespace, name, obj, dry_run=dry_run,
                                    subresource="scale", manager=manager))


def patch(registry: Registry, res: Resource, namespace: str | None, name: str, body: Any,
          content_type: str, *, dry_run: bool = False, manager: str = "") -> Obj:
    current = get(registry, res, namespace, name)
    try:
        patched = apply_patch(current, body, content_type)
    except JSONPatchError as e:
        raise status.ApiError(422, "Invalid", str(e)) from None
    return update(registry, res, namespace, name, patched, dry_run=dry_run, manager=manager)


def apply(registry: Registry, res: Resource, namespace: str | None, name: str, body: Any, *,
          manager: str, force: bool = False, dry_run: bool = False) -> Obj:
    """Server-side apply of a Scale: an apply of the parent's
    ``spec.replicas`` through the scale subresource."""
    if not isinstance(body, dict):
        raise status.bad_request("error decoding YAML: the body must be a Scale object")
    version, kind = str(body.get("apiVersion") or ""), str(body.get("kind") or "")
    if (version, kind) != ("autoscaling/v1", "Scale"):
        raise status.bad_request(f"invalid object type: {fieldmanager.gvk_string(version, kind)}")
    config: Obj = {"apiVersion": res.api_version, "kind": res.kind, "metadata": {"name": name}}
    if "replicas" in (body.get("spec") or {}):
        config["spec"] = {"replicas": _replicas(body, name)}
    obj, _ = registry.apply(res, namespace, name, config, manager=manager, force=force,
                            subresource="scale", dry_run=dry_run)
    return to_scale(obj)
