"""A container's environment from its sources, resolved on the node as the
kubelet resolves it: ``envFrom`` (every key of a ConfigMap or Secret, with
an optional prefix) first, then ``env`` in order, each ``valueFrom`` read
from a ConfigMap, a Secret, a field of the pod (the downward API) or a
resource of the container. The result is a container spec whose ``env``
holds plain values only, for the runtime to run."""

from __future__ import annotations

import copy

from netplane.api.meta import Obj
from netplane.node.volumes import (
    NodeFacts,
    Sources,
    VolumeError,
    configmap_data,
    field_value,
    resource_value,
    secret_data,
)


class EnvError(Exception):
    """A referenced object or key is missing (CreateContainerConfigError)."""


def _literal(value: str) -> str:
    # Values read from objects are not $(VAR)-expanded: escape what would be.
    return value.replace("$", "$$")


def _keyed(pod_ns: str, ref: Obj, sources: Sources, kind: str) -> dict[str, bytes] | None:
    name = str(ref.get("name", ""))
    lookup = sources.configmaps if kind == "configmap" else sources.secrets
    obj = lookup(pod_ns, name)
    if obj is None:
        if ref.get("optional"):
            return None
        raise EnvError(f'{kind} "{name}" not found')
    return configmap_data(obj) if kind == "configmap" else secret_data(obj)


def _value_from(pod: Obj, container: Obj, source: Obj, sources: Sources,
                facts: NodeFacts) -> str | None:
    ns = str(pod.get("metadata", {}).get("namespace", "default"))
    for key, kind in (("configMapKeyRef", "configmap"), ("secretKeyRef", "secret")):
        if key in source:
            ref = source[key]
            data = _keyed(ns, ref, sources, kind)
            if data is None:
                return None
            if ref.get("key") not in data:
                if ref.get("optional"):
                    return None
                raise EnvError(f"couldn't find key {ref.get('key')} in {kind.title()} "
                               f"{ns}/{ref.get('name')}")
            return data[str(ref["key"])].decode(errors="replace")
    try:
        if "fieldRef" in source:
            return field_value(pod, str(source["fieldRef"].get("fieldPath", "")),
                               pod_ip=facts.pod_ip, host_ip=facts.host_ip)
        if "resourceFieldRef" in source:
            return resource_value(pod, source["resourceFieldRef"], node_cpus=facts.cpus,
                                  node_memory=facts.memory, container_name=container["name"])
    except VolumeError as e:
        raise EnvError(str(e)) from None
    return None


def resolve(pod: Obj, container: Obj, sources: Sources, facts: NodeFacts) -> Obj:
    """The container with ``envFrom`` and every ``valueFrom`` replaced by values."""
    ns = str(pod.get("metadata", {}).get("namespace", "default"))
    env: list[Obj] = []
    for src in container.get("envFrom") or []:
        for key, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            if key in src:
                data = _keyed(ns, src[key], sources, kind) or {}
                prefix = str(src.get("prefix") or "")
                env += [{"name": prefix + k, "value": _literal(v.decode(errors="replace"))}
                        for k, v in sorted(data.items()) if k and "=" not in k]
    for item in container.get("env") or []:
        if "valueFrom" in item:
            value = _value_from(pod, container, item["valueFrom"] or {}, sources, facts)
            if value is not None:
                env.append({"name": item["name"], "value": _literal(value)})
        else:
            env.append(item)
    out = copy.copy(container)
    out["env"] = env
    out.pop("envFrom", None)
    return out
