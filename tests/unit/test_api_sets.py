"""DaemonSets, StatefulSets and ControllerRevisions through a real
in-process API server: the defaults kube-apiserver sets, validation errors
at their field paths, what an update may not change, the Table columns
kubectl shows, the StatefulSet scale subresource and discovery."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api.meta import Obj
from tests.unit.test_apiserver import MERGE, TABLE, call, causes, ok

APPS = "/apis/apps/v1/namespaces/default"
DAEMONSETS, STATEFULSETS = f"{APPS}/daemonsets", f"{APPS}/statefulsets"
REVISIONS = f"{APPS}/controllerrevisions"
Api = TestClient[Any, Any]


def template(app: str = "agent", image: str = "netplane/echo") -> Obj:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def daemon_set(name: str = "agent", **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template(),
                     **spec}}


def stateful_set(name: str = "web", **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                     "template": template("web"), **spec}}


async def test_daemon_set_defaults_as_kube_apiserver_sets_them(api: Api) -> None:
    ds = await ok(api, "POST", DAEMONSETS, daemon_set())
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10
    assert ds["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert ds["metadata"]["generation"] == 1
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    assert ds["status"] == {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                            "desiredNumberScheduled": 0, "numberReady": 0}
    on_delete = await ok(api, "POST", DAEMONSETS, daemon_set(
        "od", updateStrategy={"type": "OnDelete"}))
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}


async def test_stateful_set_defaults_as_kube_apiserver_sets_them(api: Api) -> None:
    sts = await ok(api, "POST", STATEFULSETS, stateful_set())
    spec = sts["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                            "whenScaled": "Retain"}
    assert sts["status"] == {"replicas": 0, "availableReplicas": 0}
    # A type given without rollingUpdate gets no partition, as in kube.
    given = await ok(api, "POST", STATEFULSETS, stateful_set(
        "given", updateStrategy={"type": "RollingUpdate"}))
    assert given["spec"]["updateStrategy"] == {"type": "RollingUpdate"}


async def test_template_changes_count_in_the_template_generation(api: Api) -> None:
    await ok(api, "POST", DAEMONSETS, daemon_set())
    ds = await ok(api, "PATCH", f"{DAEMONSETS}/agent", {"spec": {"minReadySeconds": 5}},
                  ctype=MERGE)
    notes = ds["metadata"]["annotations"]
    assert ds["metadata"]["generation"] == 2
    assert notes["deprecated.daemonset.template.generation"] == "1"
    ds = await ok(api, "PATCH", f"{DAEMONSETS}/agent", {"spec": {"template": {
        "metadata": {"labels": {"app": "agent", "v": "2"}}}}}, ctype=MERGE)
    assert ds["metadata"]["generation"] == 3
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"
    # Writing status does not reset what the server keeps.
    ds["status"] = {"currentNumberScheduled": 1, "numberMisscheduled": 0,
                    "desiredNumberScheduled": 1, "numberReady": 1, "observedGeneration": 3}
    out = await ok(api, "PUT", f"{DAEMONSETS}/agent/status", ds)
    assert out["status"]["numberReady"] == 1 and out["metadata"]["generation"] == 3


@pytest.mark.parametrize(("body", "field", "words"), [
    (daemon_set(selector={}), "spec.selector", "empty selector is invalid for daemonset"),
    (daemon_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": 0, "maxSurge": 0}}),
     "spec.updateStrategy.rollingUpdate.maxUnavailable", "cannot be 0 when maxSurge is 0"),
    (daemon_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": 1, "maxSurge": "10%"}}),
     "spec.updateStrategy.rollingUpdate.maxSurge", "may not be set when maxUnavailable"),
    (daemon_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": "120%"}}),
     "spec.updateStrategy.rollingUpdate.maxUnavailable", "must not be greater than 100%"),
    (daemon_set(updateStrategy={"type": "Sometimes"}), "spec.updateStrategy.type",
     'supported values: "OnDelete", "RollingUpdate"'),
    (daemon_set(minReadySeconds=-1), "spec.minReadySeconds", "greater than or equal to 0"),
    (daemon_set(template={**template(), "metadata": {"labels": {"app": "other"}}}),
     "spec.template.metadata.labels", "`selector` does not match template `labels`"),
    (daemon_set(template={**template(), "spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}),
     "spec.template.spec.restartPolicy", 'supported values: "Always"'),
    (stateful_set(podManagementPolicy="Burst"), "spec.podManagementPolicy",
     "must be 'OrderedReady' or 'Parallel'"),
    (stateful_set(replicas=-2), "spec.replicas", "greater than or equal to 0"),
    (stateful_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": -1}}),
     "spec.updateStrategy.rollingUpdate.partition", "greater than or equal to 0"),
    (stateful_set(updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}}),
     "spec.updateStrategy.rollingUpdate", "only allowed for updateStrategy 'RollingUpdate'"),
    (stateful_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": 0}}),
     "spec.updateStrategy.rollingUpdate.maxUnavailable", "must be greater than 0"),
    (stateful_set(selector={"matchLabels": {}}), "spec.selector",
     "empty selector is not valid for statefulset."),
    (stateful_set(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Keep"}),
     "spec.persistentVolumeClaimRetentionPolicy.whenDeleted", '"Retain", "Delete"'),
])
async def test_invalid_sets_are_rejected_at_the_field(api: Api, body: Obj, field: str,
                                                      words: str) -> None:
    path = DAEMONSETS if body["kind"] == "DaemonSet" else STATEFULSETS
    code, out = await call(api, "POST", path, body)
    assert code == 422, out
    assert causes(out) == [field]
    assert words in out["message"]


async def test_what_an_update_may_not_change(api: Api) -> None:
    await ok(api, "POST", STATEFULSETS, stateful_set())
    for allowed in ({"replicas": 3}, {"minReadySeconds": 2},
                    {"updateStrategy": {"rollingUpdate": {"partition": 1}}}):
        await ok(api, "PATCH", f"{STATEFULSETS}/web", {"spec": allowed}, ctype=MERGE)
    code, out = await call(api, "PATCH", f"{STATEFULSETS}/web",
                           {"spec": {"serviceName": "other"}}, ctype=MERGE)
    assert code == 422 and "updates to statefulset spec for fields other than" in out["message"]
    await ok(api, "POST", DAEMONSETS, daemon_set())
    code, out = await call(api, "PATCH", f"{DAEMONSETS}/agent", {"spec": {"selector": {
        "matchLabels": {"app": "agent", "x": "y"}}, "template": {"metadata": {"labels": {
            "app": "agent", "x": "y"}}}}}, ctype=MERGE)
    assert code == 422 and "field is immutable" in out["message"]
    assert causes(out) == ["spec.selector"]


async def test_controller_revision_data_is_mandatory_and_immutable(api: Api) -> None:
    body = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "agent-abc"}, "revision": 1}
    code, out = await call(api, "POST", REVISIONS, body)
    assert code == 422 and causes(out) == ["data"]
    body["data"] = {"spec": {"template": {"$patch": "replace"}}}
    await ok(api, "POST", REVISIONS, body)
    bumped = await ok(api, "PATCH", f"{REVISIONS}/agent-abc", {"revision": 3}, ctype=MERGE)
    assert bumped["revision"] == 3
    code, out = await call(api, "PATCH", f"{REVISIONS}/agent-abc", {"data": {"x": 1}},
                           ctype=MERGE)
    assert code == 422 and causes(out) == ["data"]


def _columns(table: Obj) -> list[tuple[str, int]]:
    return [(c["name"], c["priority"]) for c in table["columnDefinitions"]]


async def test_tables_have_kubectls_columns(api: Api) -> None:
    ds = daemon_set()
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    await ok(api, "POST", DAEMONSETS, ds)
    table = await ok(api, "GET", DAEMONSETS, accept=TABLE)
    assert _columns(table) == [
        ("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Up-to-date", 0),
        ("Available", 0), ("Node Selector", 0), ("Age", 0), ("Containers", 1),
        ("Images", 1), ("Selector", 1)]
    cells = table["rows"][0]["cells"]
    assert cells[:7] == ["agent", 0, 0, 0, 0, 0, "disk=ssd"]
    assert cells[8:] == ["c", "netplane/echo", "app=agent"]

    await ok(api, "POST", STATEFULSETS, stateful_set(replicas=3))
    table = await ok(api, "GET", STATEFULSETS, accept=TABLE)
    assert _columns(table) == [("Name", 0), ("Ready", 0), ("Age", 0), ("Containers", 1),
                               ("Images", 1)]
    assert table["rows"][0]["cells"][:2] == ["web", "0/3"]

    await ok(api, "POST", REVISIONS, {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "web-1234", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u1",
            "controller": True}]},
        "data": {}, "revision": 2})
    table = await ok(api, "GET", REVISIONS, accept=TABLE)
    assert _columns(table) == [("Name", 0), ("Controller", 0), ("Revision", 0), ("Age", 0)]
    assert table["rows"][0]["cells"][:3] == ["web-1234", "statefulset.apps/web", 2]


async def test_stateful_set_scale_subresource(api: Api) -> None:
    await ok(api, "POST", STATEFULSETS, stateful_set(replicas=3))
    scale = await ok(api, "GET", f"{STATEFULSETS}/web/scale")
    assert scale["spec"] == {"replicas": 3} and scale["status"]["selector"] == "app=web"
    out = await ok(api, "PATCH", f"{STATEFULSETS}/web/scale", {"spec": {"replicas": 1}},
                   ctype=MERGE)
    assert out["spec"]["replicas"] == 1
    assert (await ok(api, "GET", f"{STATEFULSETS}/web"))["spec"]["replicas"] == 1
    code, _ = await call(api, "GET", f"{DAEMONSETS}/agent/scale")
    assert code == 404  # DaemonSets have no scale


async def test_discovery_names_the_kinds_and_their_subresources(api: Api) -> None:
    apps = {r["name"]: r for r in (await ok(api, "GET", "/apis/apps/v1"))["resources"]}
    assert apps["daemonsets"]["shortNames"] == ["ds"]
    assert apps["statefulsets"]["shortNames"] == ["sts"]
    assert apps["daemonsets"]["categories"] == ["all"]
    assert "categories" not in apps["controllerrevisions"]
    assert {"daemonsets/status", "statefulsets/status", "statefulsets/scale"} <= set(apps)
    assert "daemonsets/scale" not in apps and "controllerrevisions/status" not in apps
    roles = await ok(api, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit")
    granted = {r for rule in roles["rules"] for r in rule["resources"]}
    assert {"daemonsets", "statefulsets", "statefulsets/scale", "controllerrevisions"} <= granted
