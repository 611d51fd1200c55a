"""DELETE with a propagation policy, as kube-apiserver takes it, with no
garbage collector running: what the API server writes (the ``orphan`` and
``foregroundDeletion`` finalizers, deletionTimestamp), how it reads
DeleteOptions (query, JSON body, protobuf body, the older
orphanDependents), and how finalizers hold an object until an update
removes the last one. The collector's half is in test_gc.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api import deletion
from netplane.api.deletion import DeleteOptions, Propagation
from tests.unit.test_apiserver import DEPLOYMENTS, JSON_PATCH, MERGE, PODS, call, ok, pod
from tests.unit.test_protobuf import envelope, ld, msg, num

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
HOLD = "example.com/hold"


def deployment(name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def configmap(name: str, *finalizers: str) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if finalizers:
        md["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}}


async def gone(api: TestClient[Any, Any], path: str) -> bool:
    return (await call(api, "GET", path))[0] == 404


# -- the finalizers each policy leaves --

@pytest.mark.parametrize("policy, finalizer", [("Foreground", "foregroundDeletion"),
                                               ("Orphan", "orphan")])
async def test_foreground_and_orphan_keep_the_object_with_their_finalizer(
        api: TestClient[Any, Any], policy: str, finalizer: str) -> None:
    created = await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    out = await ok(api, "DELETE", f"{DEPLOYMENTS}/web", {"propagationPolicy": policy})
    assert out["metadata"]["finalizers"] == [finalizer]
    assert out["metadata"]["deletionTimestamp"]
    assert out["metadata"]["deletionGracePeriodSeconds"] == 0
    assert out["metadata"]["generation"] == created["metadata"]["generation"] + 1
    still = await ok(api, "GET", f"{DEPLOYMENTS}/web")
    assert still["metadata"]["finalizers"] == [finalizer]


@pytest.mark.parametrize("options", [{"propagationPolicy": "Background"}, None])
async def test_background_and_the_default_remove_at_once(
        api: TestClient[Any, Any], options: dict[str, Any] | None) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    await ok(api, "DELETE", f"{DEPLOYMENTS}/web", options)
    assert await gone(api, f"{DEPLOYMENTS}/web")


async def test_the_policy_as_a_query_parameter(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    out = await ok(api, "DELETE", f"{DEPLOYMENTS}/web", params={"propagationPolicy": "Orphan"})
    assert out["metadata"]["finalizers"] == ["orphan"]


async def test_a_body_wins_over_the_query(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    out = await ok(api, "DELETE", f"{DEPLOYMENTS}/web", {"propagationPolicy": "Foreground"},
                   params={"propagationPolicy": "Orphan"})
    assert out["metadata"]["finalizers"] == ["foregroundDeletion"]


async def test_a_protobuf_delete_options_body(api: TestClient[Any, Any]) -> None:
    """client-go's typed clients send DeleteOptions under their own group-version."""
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    body = envelope("apps/v1", "DeleteOptions", ld(4, "Orphan") + ld(5, "All"))
    resp = await api.delete(f"{DEPLOYMENTS}/web", data=body,
                            headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["metadata"]["finalizers"] == ["orphan"]
    # dryRun: All: nothing was written.
    assert "deletionTimestamp" not in (await ok(api, "GET", f"{DEPLOYMENTS}/web"))["metadata"]
    body = envelope("v1", "DeleteOptions", num(3, 1) + msg(2, ld(1, "not-its-uid")))
    resp = await api.delete(f"{DEPLOYMENTS}/web", data=body,
                            headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert resp.status == 409, await resp.text()


async def test_orphan_dependents_is_the_older_spelling(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    out = await ok(api, "DELETE", f"{DEPLOYMENTS}/web", params={"orphanDependents": "true"})
    assert out["metadata"]["finalizers"] == ["orphan"]
    # false takes the orphan finalizer off again; kept by another: 202, as kube answers.
    await ok(api, "POST", CONFIGMAPS, configmap("held", HOLD, "orphan"))
    code, out = await call(api, "DELETE", f"{CONFIGMAPS}/held", {"orphanDependents": False})
    assert code == 202, out
    assert out["metadata"]["finalizers"] == [HOLD]


async def test_a_delete_may_change_the_policy_of_an_object_being_deleted(
        api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    first = await ok(api, "DELETE", f"{DEPLOYMENTS}/web", {"propagationPolicy": "Foreground"})
    same = await ok(api, "DELETE", f"{DEPLOYMENTS}/web", {"propagationPolicy": "Foreground"})
    assert same["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    second = await ok(api, "DELETE", f"{DEPLOYMENTS}/web", {"propagationPolicy": "Orphan"})
    assert second["metadata"]["finalizers"] == ["orphan"]
    assert second["metadata"]["deletionTimestamp"] == first["metadata"]["deletionTimestamp"]
    assert second["metadata"]["generation"] == first["metadata"]["generation"]
    # Background now: no finalizer left, so it goes.
    await ok(api, "DELETE", f"{DEPLOYMENTS}/web", {"propagationPolicy": "Background"})
    assert await gone(api, f"{DEPLOYMENTS}/web")


@pytest.mark.parametrize("options, message", [
    ({"propagationPolicy": "Orphan", "orphanDependents": True},
     'propagationPolicy: Invalid value: "Orphan": orphanDependents and deletionPropagation '
     "cannot be both set"),
    ({"propagationPolicy": "Sideways"},
     'propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", '
     '"Background", "Orphan", "nil"'),
    ({"dryRun": ["Some"]}, 'dryRun: Unsupported value: "Some"'),
])
async def test_invalid_delete_options_are_422(api: TestClient[Any, Any], options: Any,
                                              message: str) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    code, out = await call(api, "DELETE", f"{DEPLOYMENTS}/web", options)
    assert code == 422, out
    assert out["message"].startswith('DeleteOptions.meta.k8s.io "" is invalid: ')
    assert message in out["message"]
    assert not await gone(api, f"{DEPLOYMENTS}/web")


@pytest.mark.parametrize("options", [{"orphanDependents": "yes"}, {"propagationPolicy": 3},
                                     {"preconditions": {"uid": 7}}, ["Orphan"]])
async def test_malformed_delete_options_are_400(api: TestClient[Any, Any], options: Any) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    code, out = await call(api, "DELETE", f"{DEPLOYMENTS}/web", options)
    assert code == 400, out


async def test_preconditions(api: TestClient[Any, Any]) -> None:
    created = await ok(api, "POST", CONFIGMAPS, configmap("c"))
    code, out = await call(api, "DELETE", f"{CONFIGMAPS}/c", {"preconditions": {"uid": "other"}})
    assert code == 409 and "the UID in the precondition (other) does not match" \
        in out["message"], out
    code, out = await call(api, "DELETE", f"{CONFIGMAPS}/c",
                           {"preconditions": {"resourceVersion": "1"}})
    assert code == 409 and "The object might have been modified" in out["message"], out
    md = created["metadata"]
    await ok(api, "DELETE", f"{CONFIGMAPS}/c", {"preconditions": {
        "uid": md["uid"], "resourceVersion": md["resourceVersion"]}})
    assert await gone(api, f"{CONFIGMAPS}/c")


# -- finalizers hold an object --

async def test_finalizers_hold_an_object_until_an_update_removes_the_last(
        api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", CONFIGMAPS, configmap("c", HOLD, "example.com/other"))
    marked = await ok(api, "DELETE", f"{CONFIGMAPS}/c")
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["finalizers"] == [HOLD, "example.com/other"]
    # Data may still change; a finalizer may not be added.
    await ok(api, "PATCH", f"{CONFIGMAPS}/c", {"data": {"k": "w"}}, ctype=MERGE)
    code, out = await call(api, "PATCH", f"{CONFIGMAPS}/c",
                           {"metadata": {"finalizers": [HOLD, "example.com/other", "new.io/x"]}},
                           ctype=MERGE)
    assert code == 422, out
    assert 'metadata.finalizers: Forbidden: no new finalizers can be added if the object is ' \
           'being deleted, found new finalizers []string{"new.io/x"}' in out["message"]
    await ok(api, "PATCH", f"{CONFIGMAPS}/c", [{"op": "remove", "path": "/metadata/finalizers/0"}],
             ctype=JSON_PATCH)
    left = await ok(api, "GET", f"{CONFIGMAPS}/c")
    assert left["metadata"]["finalizers"] == ["example.com/other"]
    left["metadata"]["finalizers"] = []
    await ok(api, "PUT", f"{CONFIGMAPS}/c", left)
    assert await gone(api, f"{CONFIGMAPS}/c")


async def test_a_held_pod_on_a_node_goes_once_stopped_and_released(
        api: TestClient[Any, Any]) -> None:
    body = pod("a", node="node-1")
    body["metadata"]["finalizers"] = [HOLD]
    await ok(api, "POST", PODS, body)
    marked = await ok(api, "DELETE", f"{PODS}/a")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    # Released while its node still stops it: it stays until the node is done.
    await ok(api, "PATCH", f"{PODS}/a", {"metadata": {"finalizers": None}}, ctype=MERGE)
    assert not await gone(api, f"{PODS}/a")
    await ok(api, "DELETE", f"{PODS}/a", params={"gracePeriodSeconds": "0"})
    assert await gone(api, f"{PODS}/a")


async def test_a_stopped_pod_still_held_waits_for_its_finalizer(
        api: TestClient[Any, Any]) -> None:
    body = pod("a", node="node-1")
    body["metadata"]["finalizers"] = [HOLD]
    await ok(api, "POST", PODS, body)
    await ok(api, "DELETE", f"{PODS}/a")
    # A longer grace does not lengthen it; a shorter one (the node's 0) does shorten it.
    out = await ok(api, "DELETE", f"{PODS}/a", params={"gracePeriodSeconds": "60"})
    assert out["metadata"]["deletionGracePeriodSeconds"] == 30
    out = await ok(api, "DELETE", f"{PODS}/a", params={"gracePeriodSeconds": "0"})
    assert out["metadata"]["deletionGracePeriodSeconds"] == 0
    assert out["metadata"]["finalizers"] == [HOLD]
    # Its node deletes it again each time it looks: nothing is written.
    again = await ok(api, "DELETE", f"{PODS}/a", params={"gracePeriodSeconds": "0"})
    assert again["metadata"]["resourceVersion"] == out["metadata"]["resourceVersion"]
    await ok(api, "PATCH", f"{PODS}/a", {"metadata": {"finalizers": None}}, ctype=MERGE)
    assert await gone(api, f"{PODS}/a")


async def test_delete_collection_takes_the_policy(api: TestClient[Any, Any]) -> None:
    for name in ("a", "b"):
        await ok(api, "POST", DEPLOYMENTS, deployment(name))
    out = await ok(api, "DELETE", DEPLOYMENTS, {"propagationPolicy": "Orphan"})
    assert [i["metadata"]["finalizers"] for i in out["items"]] == [["orphan"], ["orphan"]]


async def test_dry_run_marks_nothing(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    out = await ok(api, "DELETE", f"{DEPLOYMENTS}/web",
                   {"propagationPolicy": "Foreground", "dryRun": ["All"]})
    assert out["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert "finalizers" not in (await ok(api, "GET", f"{DEPLOYMENTS}/web"))["metadata"]


async def test_openapi_lists_the_delete_parameters(api: TestClient[Any, Any]) -> None:
    doc = await ok(api, "GET", "/openapi/v2")
    op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["delete"]
    names = {p["name"] for p in op["parameters"]}
    assert {"propagationPolicy", "orphanDependents", "gracePeriodSeconds", "dryRun"} <= names
    assert json.dumps(op).count("DeleteOptions") >= 1


# -- the pure rules --

FG, ORPH = deletion.FOREGROUND_FINALIZER, deletion.ORPHAN_FINALIZER


@pytest.mark.parametrize("kind, existing, opts, expected", [
    # The policy decides...
    (("apps/v1", "Deployment"), [], DeleteOptions(propagation=Propagation.FOREGROUND), [FG]),
    (("apps/v1", "Deployment"), [], DeleteOptions(propagation=Propagation.ORPHAN), [ORPH]),
    (("apps/v1", "Deployment"), ["x/y"], DeleteOptions(propagation=Propagation.BACKGROUND),
     ["x/y"]),
    (("apps/v1", "Deployment"), [ORPH, "x/y"], DeleteOptions(propagation=Propagation.FOREGROUND),
     ["x/y", FG]),
    (("apps/v1", "Deployment"), [], DeleteOptions(orphan_dependents=True), [ORPH]),
    (("apps/v1", "Deployment"), [FG], DeleteOptions(orphan_dependents=False), []),
    # ...else a finalizer already there...
    (("apps/v1", "Deployment"), [FG], DeleteOptions(), [FG]),
    (("apps/v1", "Deployment"), ["x/y", ORPH], DeleteOptions(), ["x/y", ORPH]),
    # ...else the kind's default: batch/v1 Jobs and v1 ReplicationControllers orphan.
    (("apps/v1", "Deployment"), [], DeleteOptions(), []),
    (("batch/v1", "Job"), [], DeleteOptions(), [ORPH]),
    (("batch/v1", "Job"), [], DeleteOptions(propagation=Propagation.BACKGROUND), []),
    (("v1", "ReplicationController"), [], DeleteOptions(), [ORPH]),
])
def test_finalizers_on_delete(kind: tuple[str, str], existing: list[str], opts: DeleteOptions,
                              expected: list[str]) -> None:
    assert deletion.finalizers_on_delete(*kind, existing, opts) == expected


def test_a_job_deleted_without_a_policy_is_warned_about() -> None:
    assert deletion.warnings_on_delete("batch/v1", "Job", DeleteOptions()) == [
        deletion.JOB_ORPHAN_WARNING]
    assert deletion.warnings_on_delete(
        "batch/v1", "Job", DeleteOptions(propagation=Propagation.ORPHAN)) == []
    assert deletion.warnings_on_delete("apps/v1", "Deployment", DeleteOptions()) == []


@pytest.mark.parametrize("query, expected", [
    ({}, DeleteOptions()),
    ({"gracePeriodSeconds": "-5"}, DeleteOptions(grace_period=1)),
    ({"propagationPolicy": "Foreground", "dryRun": "All"},
     DeleteOptions(propagation=Propagation.FOREGROUND, dry_run=True)),
    ({"orphanDependents": "false"}, DeleteOptions(orphan_dependents=False)),
])
def test_options_from_the_query(query: dict[str, str], expected: DeleteOptions) -> None:
    assert deletion.options(None, query) == expected


def test_options_from_a_body_ignore_the_query() -> None:
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 3,
            "preconditions": {"uid": "u"}}
    assert deletion.options(body, {"propagationPolicy": "Orphan"}) == \
        DeleteOptions(grace_period=3, uid="u")
