"""Server-side apply and managedFields through a real in-process API server:
PATCH with ``application/apply-patch+yaml``, ``fieldManager`` and ``force``,
as kube-apiserver answers them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from netplane.api.meta import Obj
from netplane.cluster.apiserver import fieldmanager
from tests.unit.test_apiserver import (
    DEPLOYMENTS,
    MERGE,
    STRATEGIC,
    call,
    deployment,
    ok,
)

Api = TestClient[Any, Any]
APPLY = "application/apply-patch+yaml"
WEB = f"{DEPLOYMENTS}/web"


async def apply(api: Api, body: Obj, manager: str = "ci", path: str = WEB,
                **params: str) -> tuple[int, Obj]:
    return await call(api, "PATCH", path, body, ctype=APPLY,
                      params={"fieldManager": manager, **params})


def managers(obj: Obj) -> list[tuple[str, str, str]]:
    return [(e["manager"], e["operation"], e.get("subresource", ""))
            for e in obj["metadata"].get("managedFields", [])]


def fields(obj: Obj, manager: str) -> Any:
    return next(e["fieldsV1"] for e in obj["metadata"]["managedFields"]
                if e["manager"] == manager)


async def test_apply_creates_then_updates(api: Api) -> None:
    body = deployment("web", 3)
    body["metadata"]["labels"] = {"team": "a"}
    code, created = await apply(api, body)
    assert code == 201
    assert created["metadata"]["uid"] and created["spec"]["replicas"] == 3
    assert managers(created) == [("ci", "Apply", "")]
    entry = created["metadata"]["managedFields"][0]
    assert (entry["apiVersion"], entry["fieldsType"]) == ("apps/v1", "FieldsV1")
    assert fields(created, "ci")["f:metadata"] == {"f:labels": {"f:team": {}}}
    del body["metadata"]["labels"]
    body["spec"]["replicas"] = 4
    code, updated = await apply(api, body)
    assert code == 200
    assert updated["spec"]["replicas"] == 4 and "labels" not in updated["metadata"]
    assert "f:metadata" not in fields(updated, "ci")


async def test_apply_accepts_yaml(api: Api) -> None:
    resp = await api.patch(WEB, data=yaml.safe_dump(deployment("web", 2)),
                           params={"fieldManager": "ci"}, headers={"Content-Type": APPLY})
    assert resp.status == 201, await resp.text()


async def test_conflict_then_force(api: Api) -> None:
    await apply(api, deployment("web", 3))
    await ok(api, "PATCH", f"{WEB}/scale", {"spec": {"replicas": 5}}, ctype=MERGE,
             params={"fieldManager": "scaler"})
    code, st = await apply(api, deployment("web", 3))
    assert code == 409
    assert st == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": 'Apply failed with 1 conflict: conflict with "scaler" with '
                             'subresource "scale" using apps/v1: .spec.replicas',
                  "reason": "Conflict", "code": 409,
                  "details": {"causes": [{
                      "reason": "FieldManagerConflict", "field": ".spec.replicas",
                      "message": 'conflict with "scaler" with subresource "scale" using apps/v1'}]}}
    code, forced = await apply(api, deployment("web", 3), force="true")
    assert code == 200 and forced["spec"]["replicas"] == 3
    assert managers(forced) == [("ci", "Apply", "")]


async def test_same_value_is_shared(api: Api) -> None:
    await apply(api, deployment("web", 3))
    code, out = await apply(api, {"apiVersion": "apps/v1", "kind": "Deployment",
                                  "metadata": {"name": "web"}, "spec": {"replicas": 3}}, "other")
    assert code == 200
    assert fields(out, "other") == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" in fields(out, "ci")["f:spec"]


async def test_two_managers_share_a_list_map(api: Api) -> None:
    await apply(api, deployment("web", 2))
    side = deployment("web", 2)
    del side["spec"]["replicas"]
    side["spec"]["template"]["spec"]["containers"] = [{"name": "side", "image": "busybox"}]
    code, out = await apply(api, side, "sidecar")
    assert code == 200
    names = [c["name"] for c in out["spec"]["template"]["spec"]["containers"]]
    assert names == ["web", "side"]
    sidecar = fields(out, "sidecar")["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert list(sidecar) == ['k:{"name":"side"}']
    # Re-applying its own manifest, the first manager leaves the sidecar alone.
    code, out = await apply(api, deployment("web", 2))
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["web", "side"]


async def test_apply_dry_run_stores_nothing(api: Api) -> None:
    code, out = await apply(api, deployment("web", 3), dryRun="All")
    assert code == 201 and managers(out) == [("ci", "Apply", "")]
    code, _ = await call(api, "GET", WEB)
    assert code == 404


async def test_apply_rejects_what_kube_rejects(api: Api) -> None:
    code, st = await apply(api, {**deployment("web"), "kind": "ReplicaSet"})
    assert (code, st["message"]) == (400, "invalid object type: apps/v1, Kind=ReplicaSet")
    code, st = await apply(api, deployment("other"))
    assert code == 400 and "does not match the name on the URL (web)" in st["message"]
    code, st = await call(api, "PATCH", WEB, deployment("web"), ctype=APPLY)
    assert (code, st["message"]) == (422, 'PatchOptions.meta.k8s.io "" is invalid: '
                                          "fieldManager: Required value: is required for "
                                          "apply patch")
    with_fields = deployment("web")
    with_fields["metadata"]["managedFields"] = []
    code, st = await apply(api, with_fields)
    assert (code, st["message"]) == (400, "metadata.managedFields must be nil")
    unknown = deployment("web")
    unknown["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    code, st = await apply(api, unknown)
    assert (code, st["message"]) == (500, "failed to create typed patch object (/web; "
                                          "apps/v1, Kind=Deployment): .spec.template.spec."
                                          'containers[name="web"].imagePullPolicyy: field not '
                                          "declared in schema")
    await apply(api, deployment("web"))
    code, st = await call(api, "PATCH", WEB, {"spec": {"replicas": 1}}, ctype=MERGE,
                          params={"force": "true"})
    assert code == 422 and "force: Forbidden: may not be specified for non-apply patch" \
        in st["message"]


async def test_updates_record_their_manager(api: Api) -> None:
    created = await ok(api, "POST", DEPLOYMENTS, deployment("web", 1),
                       params={"fieldManager": "kubectl-create"})
    assert managers(created) == [("kubectl-create", "Update", "")]
    assert fields(created, "kubectl-create")["f:spec"]["f:template"]["f:spec"][
        "f:containers"]['k:{"name":"web"}']["."] == {}
    patched = await ok(api, "PATCH", WEB, {"spec": {"replicas": 2}}, ctype=STRATEGIC,
                       params={"fieldManager": "kubectl-edit"})
    assert managers(patched)[1:] == [("kubectl-edit", "Update", "")]
    assert fields(patched, "kubectl-edit") == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in fields(patched, "kubectl-create")["f:spec"]
    # No fieldManager: the user agent's first word names the manager.
    resp = await api.patch(WEB, data='{"spec": {"replicas": 3}}',
                           headers={"Content-Type": MERGE,
                                    "User-Agent": "OpenAPI-Generator/37.0.2/python"})
    assert ("OpenAPI-Generator", "Update", "") in managers(await resp.json())
    # A PUT without managedFields keeps them.
    current = await ok(api, "GET", WEB)
    del current["metadata"]["managedFields"]
    current["spec"]["replicas"] = 4
    put = await ok(api, "PUT", WEB, current, params={"fieldManager": "replacer"})
    # The replicas moved on, so the managers that only had them are gone.
    assert managers(put) == [("kubectl-create", "Update", ""), ("replacer", "Update", "")]


async def test_status_writes_are_their_own_entry(api: Api) -> None:
    created = await ok(api, "POST", DEPLOYMENTS, deployment("web", 1),
                       params={"fieldManager": "me"})
    created["status"] = {"replicas": 1}
    out = await ok(api, "PUT", f"{WEB}/status", created, params={"fieldManager": "controller"})
    assert ("controller", "Update", "status") in managers(out)
    assert fields(out, "controller") == {"f:status": {"f:replicas": {}}}


async def test_apply_through_subresources(api: Api) -> None:
    await apply(api, deployment("web", 2))
    code, scaled = await apply(api, {"apiVersion": "autoscaling/v1", "kind": "Scale",
                                     "metadata": {"name": "web"}, "spec": {"replicas": 4}},
                               "autoscaler", f"{WEB}/scale", force="true")
    assert (code, scaled["kind"], scaled["spec"]["replicas"]) == (200, "Scale", 4)
    live = await ok(api, "GET", WEB)
    assert live["spec"]["replicas"] == 4
    assert ("autoscaler", "Apply", "scale") in managers(live)
    assert fields(live, "autoscaler") == {"f:spec": {"f:replicas": {}}}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "status": {"observedGeneration": 9}}
    code, out = await apply(api, body, "reporter", f"{WEB}/status")
    assert code == 200 and out["status"]["observedGeneration"] == 9
    assert ("reporter", "Apply", "status") in managers(out)


@pytest.mark.parametrize(("agent", "manager"), [
    ("kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9", "kubectl"),
    ("OpenAPI-Generator/37.0.2/python", "OpenAPI-Generator"),
    ("kube-controller-manager/v1.32.0 (linux/amd64)", "kube-controller-manager"),
    ("tab\there/1", "tabhere"),
    ("x" * 200, "x" * 128),
])
def test_manager_from_user_agent(agent: str, manager: str) -> None:
    assert fieldmanager.from_user_agent(agent) == manager


async def test_field_manager_is_validated(api: Api) -> None:
    code, st = await call(api, "POST", DEPLOYMENTS, deployment("web"),
                          params={"fieldManager": "m" * 129})
    assert (code, st["message"]) == (422, 'CreateOptions.meta.k8s.io "" is invalid: '
                                          "fieldManager: Too long: may not be more than "
                                          "128 bytes")
