"""Identity-based authorization: ``AuthorizationPolicy`` objects
(``security.netplane.io/v1``, the shape of Istio's), judged by the proxy
that handles a request, which knows its source's identity (it captured the
connection from the pod, or the tunnel proved the node that did).

A policy applies to the workloads its ``selector`` picks in its namespace
(all of them without one; in the root namespace, every namespace). Its
``action`` is ALLOW or DENY; each rule matches when all its parts do:
``from`` (source principals and namespaces), ``to`` (methods, paths with
a trailing ``*`` for a prefix, ports). As Istio: a matching DENY denies;
else, when ALLOW policies apply and none matches, the request is denied;
else it is allowed. A policy with no rules: ALLOW allows nothing, DENY
denies nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from netplane.api import meta, selectors
from netplane.api.meta import Obj
from netplane.mesh.identity import Identity

ROOT_NAMESPACE = "netplane-system"  # a policy here applies to every namespace


@dataclass(frozen=True)
class Target:
    """The destination workload of a request, and what the request asks."""
    namespace: str
    labels: dict[str, str]
    method: str = ""
    path: str = ""
    port: int = 0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    policy: str = ""  # "ns/name" of the policy that decided, if one did

    def describe(self) -> str:
        if self.allowed:
            return f"allowed by {self.policy}" if self.policy else "allowed (no policy applies)"
        return f"denied by {self.policy}" if self.policy else "denied: no ALLOW policy matches"


def _glob(patterns: list[str], value: str) -> bool:
    """Istio's string match: exact, ``prefix*``, ``*suffix`` or ``*``."""
    for p in patterns:
        if p == "*" or p == value or (p.endswith("*") and value.startswith(p[:-1])) or \
                (p.startswith("*") and value.endswith(p[1:])):
            return True
    return False


def _part(spec: Obj, values: dict[str, str]) -> bool:
    """One ``from`` source or ``to`` operation: each field given must match,
    each ``not`` field must not."""
    for field, value in values.items():
        want, refuse = spec.get(field), spec.get("not" + field[0].upper() + field[1:])
        if want is not None and not _glob([str(w) for w in want], value):
            return False
        if refuse is not None and _glob([str(r) for r in refuse], value):
            return False
    return True


def _rule_matches(rule: Obj, source: Identity | None, target: Target) -> bool:
    principal = str(source)[len("spiffe://"):] if source else ""
    froms = [f.get("source") or {} for f in rule.get("from") or ()]
    if froms and not any(_part(f, {"principals": principal,
                                   "namespaces": source.namespace if source else ""})
                         for f in froms):
        return False
    tos = [t.get("operation") or {} for t in rule.get("to") or ()]
    return not tos or any(_part(t, {"methods": target.method, "paths": target.path,
                                    "ports": str(target.port)}) for t in tos)


def _applies(policy: Obj, target: Target) -> bool:
    ns = meta.namespace(policy)
    if ns not in (target.namespace, ROOT_NAMESPACE):
        return False
    sel = (policy.get("spec") or {}).get("selector")
    return sel is None or bool(selectors.from_label_selector(sel).matches(target.labels))


def decide(policies: Iterable[Obj], source: Identity | None, target: Target) -> Verdict:
    applying = sorted((p for p in policies if _applies(p, target)), key=meta.namespaced_name)
    for p in applying:
        spec = p.get("spec") or {}
        if spec.get("action", "ALLOW") == "DENY" and any(
                _rule_matches(r, source, target) for r in spec.get("rules") or ()):
            return Verdict(False, meta.namespaced_name(p))
    allows = [p for p in applying if (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"]
    if not allows:
        return Verdict(True)
    for p in allows:
        if any(_rule_matches(r, source, target) for r in (p.get("spec") or {}).get("rules")
               or ()):
            return Verdict(True, meta.namespaced_name(p))
    return Verdict(False)
