"""The resource kinds netplane serves, with their REST names and spellings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """One kind as the API serves it (Kubernetes' APIResource)."""

    kind: str
    plural: str
    singular: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"{self.group_version_path}/namespaces/{namespace}/{self.plural}"
        return f"{self.group_version_path}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(namespace)}/{name}"

    def spellings(self) -> set[str]:
        return {self.kind.lower(), self.plural, self.singular, *self.short_names}


NAMESPACE = Resource("Namespace", "namespaces", "namespace", "", "v1", False, ("ns",))
NODE = Resource("Node", "nodes", "node", "", "v1", False, ("no",))
POD = Resource("Pod", "pods", "pod", "", "v1", True, ("po",))
SERVICE = Resource("Service", "services", "service", "", "v1", True, ("svc",))
ENDPOINTS = Resource("Endpoints", "endpoints", "endpoints", "", "v1", True, ("ep",))
REPLICASET = Resource("ReplicaSet", "replicasets", "replicaset", "apps", "v1", True, ("rs",))
DEPLOYMENT = Resource("Deployment", "deployments", "deployment", "apps", "v1", True, ("deploy",))
ENDPOINTSLICE = Resource("EndpointSlice", "endpointslices", "endpointslice", "discovery.k8s.io",
                         "v1", True)

ALL: tuple[Resource, ...] = (NAMESPACE, NODE, POD, SERVICE, ENDPOINTS, REPLICASET, DEPLOYMENT,
                             ENDPOINTSLICE)

_BY_KIND = {(r.api_version, r.kind): r for r in ALL}
_BY_SPELLING = {s: r for r in ALL for s in r.spellings()}


class UnknownKind(LookupError):
    pass


def by_kind(api_version: str, kind: str) -> Resource:
    """The resource for a manifest's ``apiVersion`` and ``kind``."""
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        known = ", ".join(sorted(f"{r.api_version}/{r.kind}" for r in ALL))
        raise UnknownKind(f"unknown kind {api_version}/{kind} (known: {known})") from None


def by_name(spelling: str) -> Resource:
    """The resource for a kubectl-style spelling: ``pods``, ``po``, ``svc``..."""
    name = spelling.lower().split(".", 1)[0]
    try:
        return _BY_SPELLING[name]
    except KeyError:
        known = ", ".join(r.plural for r in ALL)
        raise UnknownKind(f'unknown resource type "{spelling}" (known: {known})') from None


def group_versions() -> dict[str, list[Resource]]:
    """Resources grouped by ``apiVersion``, for discovery."""
    out: dict[str, list[Resource]] = {}
    for r in ALL:
        out.setdefault(r.api_version, []).append(r)
    return out
