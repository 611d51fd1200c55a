"""ConfigMap, Secret, ServiceAccount, Event and RBAC kinds, the scale
subresource, collection deletes and discovery, through a real in-process
API server."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.test_apiserver import (
    DEPLOYMENTS,
    JSON_PATCH,
    MERGE,
    TABLE,
    call,
    deployment,
    ok,
)

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
EVENTS = "/api/v1/namespaces/default/events"
ROLEBINDINGS = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings"
Api = TestClient[Any, Any]


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_secret_string_data_is_stored_as_base64_data(api: Api) -> None:
    created = await ok(api, "POST", SECRETS, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"password": "hunter2"}, "data": {"user": "YWRh"}})
    assert "stringData" not in created
    assert created["type"] == "Opaque"
    assert base64.b64decode(created["data"]["password"]) == b"hunter2"
    assert created["data"]["user"] == "YWRh"


async def test_secret_data_must_be_base64(api: Api) -> None:
    code, out = await call(api, "POST", SECRETS, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
        "data": {"k": "not base64!"}})
    assert code == 422
    assert out["details"]["causes"][0]["field"] == "data[k]"


async def test_configmap_keys_are_checked_and_immutable_data_stays(api: Api) -> None:
    code, out = await call(api, "POST", CONFIGMAPS, configmap("c", **{"bad key": "x"}))
    assert code == 422 and "data[bad key]" in out["message"]
    cm = configmap("frozen", a="1")
    cm["immutable"] = True
    await ok(api, "POST", CONFIGMAPS, cm)
    code, out = await call(api, "PATCH", f"{CONFIGMAPS}/frozen", {"data": {"a": "2"}},
                           ctype=MERGE)
    assert code == 422
    assert "field is immutable when `immutable` is set" in out["message"]


async def test_rolebinding_role_ref_cannot_change(api: Api) -> None:
    body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]}
    await ok(api, "POST", ROLEBINDINGS, body)
    code, out = await call(api, "PATCH", f"{ROLEBINDINGS}/rb", {"roleRef": {"name": "b"}},
                           ctype=MERGE)
    assert code == 422 and "cannot change roleRef" in out["message"]


async def test_scale_subresource_reads_and_writes_replicas(api: Api) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web", replicas=2))
    scale = await ok(api, "GET", f"{DEPLOYMENTS}/web/scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 5
    out = await ok(api, "PUT", f"{DEPLOYMENTS}/web/scale", scale)
    assert out["spec"]["replicas"] == 5
    assert (await ok(api, "GET", f"{DEPLOYMENTS}/web"))["spec"]["replicas"] == 5
    out = await ok(api, "PATCH", f"{DEPLOYMENTS}/web/scale", {"spec": {"replicas": 1}},
                   ctype=MERGE)
    assert out["spec"]["replicas"] == 1
    out = await ok(api, "PATCH", f"{DEPLOYMENTS}/web/scale",
                   [{"op": "replace", "path": "/spec/replicas", "value": 4}], ctype=JSON_PATCH)
    assert out["spec"]["replicas"] == 4
    # A stale resourceVersion is a conflict, as on the object itself.
    scale["spec"]["replicas"] = 9
    code, _ = await call(api, "PUT", f"{DEPLOYMENTS}/web/scale", scale)
    assert code == 409
    code, out = await call(api, "PATCH", f"{DEPLOYMENTS}/web/scale",
                           {"spec": {"replicas": -1}}, ctype=MERGE)
    assert code == 422 and out["details"]["causes"][0]["field"] == "spec.replicas"
    code, _ = await call(api, "GET", f"{DEPLOYMENTS}/nope/scale")
    assert code == 404


async def test_delete_collection_honours_the_selector(api: Api) -> None:
    for name, team in (("a", "x"), ("b", "x"), ("c", "y")):
        cm = configmap(name)
        cm["metadata"]["labels"] = {"team": team}
        await ok(api, "POST", CONFIGMAPS, cm)
    gone = await ok(api, "DELETE", CONFIGMAPS, params={"labelSelector": "team=x"})
    assert sorted(i["metadata"]["name"] for i in gone["items"]) == ["a", "b"]
    left = await ok(api, "GET", CONFIGMAPS)
    assert [i["metadata"]["name"] for i in left["items"]] == ["c"]


async def test_events_are_found_by_involved_object(api: Api) -> None:
    for name, pod in (("e1", "web-1"), ("e2", "web-2")):
        await ok(api, "POST", EVENTS, {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": "default"},
            "reason": "Scheduled", "message": f"assigned {pod}",
            "lastTimestamp": "2026-01-01T00:00:00Z"})
    found = await ok(api, "GET", EVENTS, params={
        "fieldSelector": "involvedObject.name=web-2,involvedObject.kind=Pod"})
    assert [i["metadata"]["name"] for i in found["items"]] == ["e2"]
    table = await ok(api, "GET", EVENTS, accept=TABLE, params={"includeObject": "Object"})
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert table["rows"][0]["cells"][1:4] == ["Normal", "Scheduled", "pod/web-1"]
    assert table["rows"][0]["object"]["reason"] == "Scheduled"


async def test_discovery_lists_kinds_with_verbs_categories_and_subresources(api: Api) -> None:
    core = {r["name"]: r for r in (await ok(api, "GET", "/api/v1"))["resources"]}
    assert core["configmaps"]["shortNames"] == ["cm"]
    assert "deletecollection" in core["secrets"]["verbs"]
    assert core["pods"]["categories"] == ["all"]
    assert "categories" not in core["endpoints"]
    apps = {r["name"]: r for r in (await ok(api, "GET", "/apis/apps/v1"))["resources"]}
    assert apps["deployments/scale"]["kind"] == "Scale"
    assert apps["deployments/scale"]["group"] == "autoscaling"
    groups = {g["name"] for g in (await ok(api, "GET", "/apis"))["groups"]}
    assert "rbac.authorization.k8s.io" in groups


async def test_events_k8s_io_is_the_same_event_under_other_names(api: Api) -> None:
    v1 = "/apis/events.k8s.io/v1/namespaces/default/events"
    created = await ok(api, "POST", v1, {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "n1"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Started",
        "regarding": {"kind": "Pod", "name": "web-1", "namespace": "default"},
        "note": "Started container c", "type": "Normal", "action": "Start",
        "reportingController": "kubelet", "reportingInstance": "node-1"})
    assert created["apiVersion"] == "events.k8s.io/v1" and created["note"] == \
        "Started container c"
    core = await ok(api, "GET", f"{EVENTS}/n1")
    assert core["involvedObject"]["name"] == "web-1"
    assert core["message"] == "Started container c"
    assert core["reportingComponent"] == "kubelet"
    patched = await ok(api, "PATCH", f"{v1}/n1", {"note": "changed"}, ctype=MERGE)
    assert patched["note"] == "changed"
    assert (await ok(api, "GET", f"{EVENTS}/n1"))["message"] == "changed"
    found = await ok(api, "GET", v1, params={"fieldSelector": "regarding.name=web-1"})
    assert [i["metadata"]["name"] for i in found["items"]] == ["n1"]
    table = await ok(api, "GET", v1, accept=TABLE)
    assert table["rows"][0]["cells"][2:4] == ["Started", "pod/web-1"]
    await ok(api, "DELETE", f"{v1}/n1")
    code, _ = await call(api, "GET", f"{EVENTS}/n1")
    assert code == 404
