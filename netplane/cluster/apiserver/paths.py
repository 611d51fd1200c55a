"""Parsing Kubernetes REST paths into (resource, namespace, name, subresource)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from netplane.api import resources
from netplane.api.customresources import Served
from netplane.api.resources import Resource
from netplane.cluster.apiserver import status


@dataclass(frozen=True)
class Target:
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str = ""
    # nodes/NAME/proxy/PATH: the PATH asked of the node's agent.
    proxy_path: str = ""


_BY_GV_PLURAL = {(r.api_version, r.plural): r for r in resources.SERVED}

# Subresources served, by kind ("*": every kind).
SUBRESOURCES: dict[str, frozenset[str]] = {
    "*": frozenset({""}),
    "Pod": frozenset({"status", "binding", "eviction", "log", "exec", "attach", "portforward"}),
    "PodDisruptionBudget": frozenset({"status"}),
    "HorizontalPodAutoscaler": frozenset({"status"}),
    "Node": frozenset({"status", "proxy"}),
    "Service": frozenset({"status"}),
    "Namespace": frozenset({"status"}),
    "ServiceAccount": frozenset({"token"}),
    "Deployment": frozenset({"status", "scale"}),
    "ReplicaSet": frozenset({"status", "scale"}),
    "Job": frozenset({"status"}),
    "PersistentVolume": frozenset({"status"}),
    "PersistentVolumeClaim": frozenset({"status"}),
    "CronJob": frozenset({"status"}),
    "DaemonSet": frozenset({"status"}),
    "StatefulSet": frozenset({"status", "scale"}),
    "CertificateSigningRequest": frozenset({"status", "approval"}),
}


class CustomKinds(Protocol):
    """The custom kinds served (a Catalog)."""

    def lookup(self, api_version: str, plural: str) -> Resource | None: ...

    def subresources(self, res: Resource) -> frozenset[str]: ...

    def served(self) -> list[Resource]: ...

    def about(self, res: Resource) -> Served: ...


# The app's custom kinds (its registry's Catalog), for the handlers that parse paths.
CUSTOM_KINDS: web.AppKey[CustomKinds] = web.AppKey("custom_kinds")


def subresources(kind: str) -> frozenset[str]:
    return SUBRESOURCES["*"] | SUBRESOURCES.get(kind, frozenset())


def parse(path: str, custom: CustomKinds | None = None) -> Target:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        gv, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise status.not_found("path", path)
    if not rest:
        raise status.not_found("path", path)
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    res = _BY_GV_PLURAL.get((gv, rest[0]))
    if res is None and custom is not None:
        res = custom.lookup(gv, rest[0])
    if res is None:
        raise status.ApiError(404, "NotFound", f"the server could not find the requested "
                              f"resource {rest[0]!r} in {gv}")
    if namespace is not None and not res.namespaced:
        raise status.not_found("path", path)
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    if sub == "proxy" and sub in subresources(res.kind):
        tail = "/".join(rest[3:]) + ("/" if path.endswith("/") and len(rest) > 3 else "")
        return Target(res, namespace, name, sub, proxy_path="/" + tail)
    subs = custom.subresources(res) if res.custom and custom else subresources(res.kind)
    if len(rest) > 3 or sub not in subs:
        raise status.not_found("path", path)
    return Target(res, namespace, name, sub)
