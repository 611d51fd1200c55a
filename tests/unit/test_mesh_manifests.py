"""The Gateway API CustomResourceDefinitions the lab installs: well formed,
named as the API server requires, each with a schema that keeps what the
mesh reads."""

from __future__ import annotations

from netplane.mesh.manifests import gateway_api_crds


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
