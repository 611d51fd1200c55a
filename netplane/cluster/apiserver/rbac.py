"""Authorization: what a user may do, decided by RBAC (Roles, ClusterRoles
and their bindings) as kube-apiserver's RBAC authorizer decides it. Members
of ``system:masters`` may do everything without consulting RBAC."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import paths, status
from netplane.cluster.apiserver.authn import MASTERS, SA_PREFIX, User
from netplane.cluster.apiserver.registry import Query, Registry

RBAC_GROUP = "rbac.authorization.k8s.io"
# Subresources that open a stream into a pod: "create", whatever the method
# (a WebSocket upgrade is a GET), as kube-apiserver authorizes them.
_STREAMS = {"exec", "attach", "portforward"}


@dataclass(frozen=True)
class Attributes:
    """One request as the authorizer sees it (kube's authorizer.Attributes)."""

    user: User
    verb: str
    namespace: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""  # for non-resource requests: /healthz, /openapi/v3, ...

    @property
    def resource_request(self) -> bool:
        return bool(self.resource)


def request_attributes(user: User, method: str, path: str, query: Mapping[str, str],
                       custom: paths.CustomKinds | None = None) -> Attributes:
    method = method.upper()
    try:
        target = paths.parse(path, custom)
    except status.ApiError:
        return Attributes(user, method.lower() if method != "HEAD" else "get", path=path)
    res, sub = target.resource, target.subresource
    if sub in _STREAMS:
        verb = "create"
    elif method == "GET":
        watching = query.get("watch") in ("1", "true")
        verb = "watch" if watching else ("get" if target.name else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if target.name else "deletecollection"}.get(method, "")
    return Attributes(user, verb, target.namespace or "", res.group, res.plural, sub,
                      target.name or "", path)


def _matches(values: list[str] | None, wanted: str) -> bool:
    return values is not None and ("*" in values or wanted in values)


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    if not _matches(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        urls = rule.get("nonResourceURLs") or []
        return any(u == attrs.path or (u.endswith("*") and attrs.path.startswith(u[:-1]))
                   for u in urls)
    if not _matches(rule.get("apiGroups"), attrs.api_group):
        return False
    full = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    res_rules = rule.get("resources") or []
    if not any(r in ("*", full) or (attrs.subresource and r == f"*/{attrs.subresource}")
               for r in res_rules):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def subject_matches(subject: Obj, user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return user.name == f"{SA_PREFIX}{ns}:{name}"
    return False


class RBAC:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._seen: tuple[int, ...] | None = None
        self._objects: dict[str, list[Obj]] = {}

    def _snapshot(self) -> dict[str, list[Obj]]:
        """Roles and bindings, read again when one of them was written since
        (any write at all would mean every request of a busy cluster)."""
        kinds = (resources.ROLE, resources.CLUSTERROLE, resources.ROLEBINDING,
                 resources.CLUSTERROLEBINDING)
        seen = tuple(self.registry.writes[r.kind] for r in kinds)
        if self._seen != seen:
            self._objects = {r.kind: self.registry.list(r, Query())[0] for r in kinds}
            self._seen = seen
        return self._objects

    def rules_for(self, user: User, namespace: str) -> Iterator[Obj]:
        """Every rule that applies to ``user`` in ``namespace`` ("" = cluster-wide only)."""
        snap = self._snapshot()
        roles = {(meta.namespace(r), meta.name(r)): r for r in snap["Role"]}
        cluster_roles = {meta.name(r): r for r in snap["ClusterRole"]}
        for crb in snap["ClusterRoleBinding"]:
            if any(subject_matches(s, user, "") for s in crb.get("subjects") or []):
                yield from (cluster_roles.get(crb["roleRef"]["name"]) or {}).get("rules") or []
        if not namespace:
            return
        for rb in snap["RoleBinding"]:
            if meta.namespace(rb) != namespace:
                continue
            if not any(subject_matches(s, user, namespace) for s in rb.get("subjects") or []):
                continue
            ref = rb["roleRef"]
            role = roles.get((namespace, ref["name"])) if ref.get("kind") == "Role" \
                else cluster_roles.get(ref["name"])
            yield from (role or {}).get("rules") or []

    def allowed(self, attrs: Attributes) -> bool:
        if MASTERS in attrs.user.groups:
            return True
        return any(rule_allows(rule, attrs)
                   for rule in self.rules_for(attrs.user, attrs.namespace))


def forbidden(attrs: Attributes) -> status.ApiError:
    """kube-apiserver's 403, word for word."""
    who = f'User "{attrs.user.name}"'
    if not attrs.resource_request:
        return status.ApiError(403, "Forbidden",
                               f'forbidden: {who} cannot {attrs.verb} path "{attrs.path}"')
    full = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    what = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f'{what} "{attrs.name}"' if attrs.name else what
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return status.ApiError(
        403, "Forbidden", f'{subject} is forbidden: {who} cannot {attrs.verb} resource '
        f'"{full}" in API group "{attrs.api_group}" {where}',
        details={"name": attrs.name, "group": attrs.api_group, "kind": attrs.resource})
