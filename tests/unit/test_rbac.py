"""Service account tokens and RBAC through a real in-process API server:
who a token is, what RBAC lets it do, kube-apiserver's 403 message, and the
review kinds behind ``kubectl auth can-i`` and ``kubectl auth whoami``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api.meta import Obj
from netplane.cluster.apiserver import rbac
from netplane.cluster.apiserver.authn import User
from netplane.cluster.apiserver.registry import Registry
from netplane.cluster.server import build_app
from tests.unit.test_apiserver import TOKEN, AiohttpClient

RBAC_V1 = "/apis/rbac.authorization.k8s.io/v1"
SA = "/api/v1/namespaces/default/serviceaccounts"
Api = TestClient[Any, Any]


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, registry: Registry) -> Api:
    return await aiohttp_client(build_app(registry, frozenset({TOKEN})))


async def call(api: Api, method: str, path: str, body: Any = None, *, token: str = TOKEN,
               params: dict[str, str] | None = None) -> tuple[int, Obj]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    resp = await api.request(method, path, data=json.dumps(body) if body is not None else None,
                             headers=headers, params=params)
    text = await resp.text()
    return resp.status, json.loads(text) if text else {}


async def robot_token(api: Api) -> str:
    code, _ = await call(api, "POST", SA, {"metadata": {"name": "robot"}})
    assert code == 201
    code, out = await call(api, "POST", f"{SA}/robot/token",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"expirationSeconds": 3600}})
    assert code == 201, out
    assert out["status"]["expirationTimestamp"]
    return str(out["status"]["token"])


async def test_a_service_account_without_bindings_is_forbidden(api: Api) -> None:
    token = await robot_token(api)
    code, out = await call(api, "GET", "/api/v1/namespaces/default/pods", token=token)
    assert code == 403
    assert out["reason"] == "Forbidden"
    assert out["message"] == (
        'pods is forbidden: User "system:serviceaccount:default:robot" cannot list resource '
        '"pods" in API group "" in the namespace "default"')
    code, out = await call(api, "GET", "/api/v1/nodes/node-1", token=token)
    assert out["message"] == (
        'nodes "node-1" is forbidden: User "system:serviceaccount:default:robot" cannot get '
        'resource "nodes" in API group "" at the cluster scope')
    # Discovery is open to every authenticated user.
    code, _ = await call(api, "GET", "/api/v1", token=token)
    assert code == 200


async def test_a_role_binding_allows_exactly_what_the_role_says(api: Api) -> None:
    token = await robot_token(api)
    await call(api, "POST", f"{RBAC_V1}/namespaces/default/roles", {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    await call(api, "POST", f"{RBAC_V1}/namespaces/default/rolebindings", {
        "metadata": {"name": "robot-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]})
    code, _ = await call(api, "GET", "/api/v1/namespaces/default/pods", token=token)
    assert code == 200
    code, _ = await call(api, "GET", "/api/v1/namespaces/kube-system/pods", token=token)
    assert code == 403
    code, _ = await call(api, "DELETE", "/api/v1/namespaces/default/pods/x", token=token)
    assert code == 403
    code, _ = await call(api, "GET", "/api/v1/namespaces/default/services", token=token)
    assert code == 403


async def test_tokens_die_with_their_service_account(api: Api) -> None:
    token = await robot_token(api)
    code, _ = await call(api, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                         {}, token=token)
    assert code == 201
    await call(api, "DELETE", f"{SA}/robot")
    code, out = await call(api, "GET", "/api/v1", token=token)
    assert code == 401 and out["reason"] == "Unauthorized"
    code, _ = await call(api, "GET", "/api/v1", token="not-a-token")
    assert code == 401


async def test_access_and_rules_reviews(api: Api) -> None:
    token = await robot_token(api)
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": "list", "resource": "pods",
                                              "namespace": "default"}}}
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    code, out = await call(api, "POST", path, review, token=token)
    assert code == 201 and out["status"]["allowed"] is False
    code, out = await call(api, "POST", path, review)
    assert out["status"]["allowed"] is True  # the admin token
    code, out = await call(api, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                           {}, token=token)
    assert out["status"]["userInfo"]["username"] == "system:serviceaccount:default:robot"
    assert "system:serviceaccounts:default" in out["status"]["userInfo"]["groups"]
    code, out = await call(api, "POST",
                           "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                           {"spec": {"namespace": "default"}}, token=token)
    assert code == 201
    assert any("selfsubjectaccessreviews" in r.get("resources", [])
               for r in out["status"]["resourceRules"])


def test_request_attributes_follow_kube_apiserver() -> None:
    user = User("u")
    attrs = rbac.request_attributes(user, "GET", "/api/v1/namespaces/ns/pods", {"watch": "1"})
    assert (attrs.verb, attrs.resource, attrs.namespace) == ("watch", "pods", "ns")
    attrs = rbac.request_attributes(user, "GET", "/api/v1/namespaces/ns/pods/p/exec", {})
    assert (attrs.verb, attrs.subresource, attrs.name) == ("create", "exec", "p")
    attrs = rbac.request_attributes(user, "DELETE", "/apis/apps/v1/namespaces/ns/deployments",
                                    {})
    assert (attrs.verb, attrs.api_group) == ("deletecollection", "apps")
    attrs = rbac.request_attributes(user, "GET", "/api/v1/nodes/n1/proxy/metrics/cadvisor", {})
    assert (attrs.verb, attrs.resource, attrs.subresource, attrs.name) == \
        ("get", "nodes", "proxy", "n1")
    attrs = rbac.request_attributes(user, "GET", "/openapi/v3", {})
    assert not attrs.resource_request and attrs.path == "/openapi/v3"
    rule = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
    assert rbac.rule_allows(rule, rbac.Attributes(user, "create", "ns", "", "pods", "exec"))
    assert not rbac.rule_allows(rule, rbac.Attributes(user, "create", "ns", "", "pods"))
    named = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
             "resourceNames": ["a"]}
    assert rbac.rule_allows(named, rbac.Attributes(user, "get", "ns", "", "configmaps",
                                                   name="a"))
    assert not rbac.rule_allows(named, rbac.Attributes(user, "get", "ns", "", "configmaps",
                                                       name="b"))
