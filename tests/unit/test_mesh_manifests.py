"""The Gateway API CustomResourceDefinitions the lab installs: well formed,
named as the API server requires, each with a schema that keeps what the
mesh reads."""

from __future__ import annotations

from typing import Any

from netplane.mesh.manifests import gateway_api_crds, mesh_crds
from netplane.mesh.routes import Request, compile_routes
from tests.unit.test_apiserver import call, ok

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes"


def test_the_crds_are_named_plural_dot_group_with_one_storage_version() -> None:
    crds = gateway_api_crds()
    assert [c["spec"]["names"]["kind"] for c in crds] == ["GatewayClass", "Gateway",
                                                          "HTTPRoute", "ReferenceGrant"]
    for crd in crds:
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
        assert sum(v["storage"] for v in spec["versions"]) == 1
        for version in spec["versions"]:
            assert version["schema"]["openAPIV3Schema"]["type"] == "object"


def test_httproute_defaults_a_rule_to_a_prefix_match_on_slash() -> None:
    httproute = next(c for c in gateway_api_crds() if c["spec"]["names"]["kind"] == "HTTPRoute")
    spec = httproute["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rule = spec["properties"]["rules"]["items"]["properties"]
    assert rule["matches"]["default"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    backend = rule["backendRefs"]["items"]["properties"]
    assert backend["weight"]["default"] == 1 and backend["kind"]["default"] == "Service"
    assert rule["retry"]["properties"]["codes"]["items"] == {"type": "integer",
                                                             "minimum": 400, "maximum": 599}


async def test_the_crds_serve_gateway_api_objects_with_their_defaults(api: Any) -> None:
    for crd in gateway_api_crds():
        await ok(api, "POST", CRDS, crd)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "canary"},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web"}],
                      "rules": [{"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                                 "backendRefs": [{"name": "web-v2", "port": 80}]},
                                {"backendRefs": [{"name": "web-v1", "port": 80}]}]}}
    made = await ok(api, "POST", ROUTES, route)
    rules = made["spec"]["rules"]
    assert rules[0]["matches"][0]["path"] == {"type": "PathPrefix", "value": "/"}
    assert rules[0]["matches"][0]["headers"][0]["type"] == "Exact"
    assert rules[1]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rules[1]["backendRefs"][0] == {"name": "web-v1", "port": 80, "weight": 1,
                                              "group": "", "kind": "Service"}
    # what the mesh compiles from the stored object: the same table as from the manifest
    table, errors = compile_routes([made], use_hostnames=False)
    decision = table.decide(Request.of("GET", "/", [("x-canary", "1")]))
    assert errors == {} and decision is not None and decision.rule.backends[0].name == "web-v2"
    bad = {**route, "metadata": {"name": "bad"}, "spec": {"rules": [{"matches": [
        {"path": {"type": "Glob", "value": "/*"}}]}]}}
    code, st = await call(api, "POST", ROUTES, bad)
    assert code == 422 and 'Unsupported value: "Glob"' in st["message"]
    gw = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
          "metadata": {"name": "main"},
          "spec": {"gatewayClassName": "netplane",
                   "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}
    made = await ok(api, "POST", "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways",
                    gw)
    assert made["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}


async def test_authorization_policies_are_served_with_their_default_action(api: Any) -> None:
    for crd in mesh_crds():
        await ok(api, "POST", CRDS, crd)
    made = await ok(api, "POST", "/apis/security.netplane.io/v1/namespaces/default/"
                                 "authorizationpolicies",
                    {"apiVersion": "security.netplane.io/v1", "kind": "AuthorizationPolicy",
                     "metadata": {"name": "admins"},
                     "spec": {"rules": [{"from": [{"source": {"namespaces": ["ops"]}}]}]}})
    assert made["spec"]["action"] == "ALLOW"
