"""AuthorizationPolicy verdicts as a table: DENY first, then ALLOW policies
that must match when any applies, selectors, the root namespace, sources by
principal and namespace, operations by method, path and port."""

from __future__ import annotations

from typing import Any

import pytest

from netplane.api.meta import Obj
from netplane.mesh.authz import ROOT_NAMESPACE, Target, decide
from netplane.mesh.identity import Identity

WEB = Identity("cluster.local", "shop", "web")
ADMIN = Identity("cluster.local", "ops", "admin")
STRANGER = Identity("cluster.local", "other", "bot")
API = Target("shop", {"app": "api"}, method="GET", path="/items/3", port=8080)


def policy(name: str, action: str, rules: list[Obj] | None, *, ns: str = "shop",
           selector: Obj | None = None) -> Obj:
    spec: dict[str, Any] = {"action": action}
    if rules is not None:
        spec["rules"] = rules
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "security.netplane.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


ALLOW_WEB_GET = policy("web-reads", "ALLOW", [{
    "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}],
    "to": [{"operation": {"methods": ["GET"], "paths": ["/items/*"]}}]}],
    selector={"matchLabels": {"app": "api"}})
DENY_OTHER_NS = policy("no-strangers", "DENY", [{
    "from": [{"source": {"notNamespaces": ["shop", "ops"]}}]}], ns=ROOT_NAMESPACE)
ALLOW_OPS = policy("ops-all", "ALLOW", [{"from": [{"source": {"namespaces": ["ops"]}}]}])


@pytest.mark.parametrize(("policies", "source", "target", "allowed", "by"), [
    ([], STRANGER, API, True, ""),  # no policy: allowed
    ([ALLOW_WEB_GET], WEB, API, True, "shop/web-reads"),
    ([ALLOW_WEB_GET], WEB, Target("shop", {"app": "api"}, "POST", "/items/3", 8080), False, ""),
    ([ALLOW_WEB_GET], WEB, Target("shop", {"app": "api"}, "GET", "/admin", 8080), False, ""),
    ([ALLOW_WEB_GET], ADMIN, API, False, ""),  # an ALLOW applies and does not match
    ([ALLOW_WEB_GET], ADMIN, Target("shop", {"app": "db"}), True, ""),  # not selected
    ([ALLOW_WEB_GET, ALLOW_OPS], ADMIN, API, True, "shop/ops-all"),
    ([ALLOW_WEB_GET, DENY_OTHER_NS], STRANGER, API, False, f"{ROOT_NAMESPACE}/no-strangers"),
    ([DENY_OTHER_NS], STRANGER, Target("anywhere", {}), False,
     f"{ROOT_NAMESPACE}/no-strangers"),  # the root namespace's policy applies everywhere
    ([DENY_OTHER_NS], WEB, API, True, ""),
    ([policy("none", "ALLOW", None)], WEB, API, False, ""),  # ALLOW without rules: nothing
    ([policy("none", "DENY", None)], WEB, API, True, ""),  # DENY without rules: nothing
    ([policy("all", "ALLOW", [{}])], STRANGER, API, True, "shop/all"),  # an empty rule: all
    ([policy("port", "DENY", [{"to": [{"operation": {"ports": ["8080"]}}]}])], WEB, API,
     False, "shop/port"),
    ([ALLOW_WEB_GET], None, API, False, ""),  # an unknown source matches no principal
])
def test_verdicts(policies: list[Obj], source: Identity | None, target: Target, allowed: bool,
                  by: str) -> None:
    verdict = decide(policies, source, target)
    assert (verdict.allowed, verdict.policy) == (allowed, by)


def test_a_verdict_says_why() -> None:
    assert decide([ALLOW_WEB_GET], ADMIN, API).describe() == "denied: no ALLOW policy matches"
    assert decide([ALLOW_WEB_GET], WEB, API).describe() == "allowed by shop/web-reads"
