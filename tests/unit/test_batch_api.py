"""batch/v1 Jobs and CronJobs through a real in-process API server: the
defaults kube-apiserver sets, validation with kube's wording, immutable
fields, discovery, Table columns, and what ``kubectl create job --from``
sends."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api import batch, cron
from netplane.api.meta import Obj
from netplane.cluster.apiserver import bootstrap, tables
from tests.unit.test_apiserver import MERGE, TABLE, call, ok

JOBS = "/apis/batch/v1/namespaces/default/jobs"
CRONJOBS = "/apis/batch/v1/namespaces/default/cronjobs"
Api = TestClient[Any, Any]


def job(name: str = "pi", **spec: Any) -> Obj:
    body: Obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                 "spec": {"template": {"spec": {
                     "restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}}
    body["spec"].update(spec)
    return body


def cronjob(name: str = "tick", schedule: str = "*/1 * * * *", **spec: Any) -> Obj:
    body: Obj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
                 "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                     "restartPolicy": "OnFailure",
                     "containers": [{"name": "c", "image": "busybox"}]}}}}}}
    body["spec"].update(spec)
    return body


async def invalid(api: Api, path: str, body: Obj) -> str:
    code, out = await call(api, "POST", path, body)
    assert code == 422, out
    return str(out["message"])


# -- defaults --

async def test_job_defaults_and_generated_selector(api: Api) -> None:
    created = await ok(api, "POST", JOBS, job())
    spec, uid = created["spec"], created["metadata"]["uid"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed" and spec["suspend"] is False
    assert spec["manualSelector"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {batch.CONTROLLER_UID: uid}}
    want = {batch.CONTROLLER_UID: uid, batch.JOB_NAME: "pi", "controller-uid": uid,
            "job-name": "pi"}
    assert spec["template"]["metadata"]["labels"] == want
    assert created["metadata"]["labels"] == want  # from the template, as kube copies them
    assert created["metadata"]["generation"] == 1
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


async def test_job_parallelism_alone_leaves_completions_unset(api: Api) -> None:
    created = await ok(api, "POST", JOBS, job("work-queue", parallelism=3))
    assert "completions" not in created["spec"] and created["spec"]["parallelism"] == 3
    failing = job("pff", podFailurePolicy={"rules": [{
        "action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]})
    created = await ok(api, "POST", JOBS, failing)
    assert created["spec"]["podReplacementPolicy"] == "Failed"
    pattern = created["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]
    assert pattern == {"type": "DisruptionTarget", "status": "True"}


async def test_cronjob_defaults(api: Api) -> None:
    created = await ok(api, "POST", CRONJOBS, cronjob())
    spec = created["spec"]
    assert spec["concurrencyPolicy"] == "Allow" and spec["suspend"] is False
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    # The Job template's own defaults come when a Job is made of it.
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


# -- validation --

async def test_job_restart_policy_must_be_never_or_on_failure(api: Api) -> None:
    body = job()
    del body["spec"]["template"]["spec"]["restartPolicy"]
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always": supported ' \
        'values: "OnFailure", "Never"' in await invalid(api, JOBS, body)


@pytest.mark.parametrize(("spec", "message"), [
    ({"completionMode": "Indexed", "parallelism": 2},
     "spec.completions: Required value: when completion mode is Indexed"),
    ({"completionMode": "Sometimes"},
     'spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", '
     '"Indexed"'),
    ({"backoffLimit": -1}, "spec.backoffLimit: Invalid value: -1: must be greater than or "
                           "equal to 0"),
    ({"selector": {"matchLabels": {"app": "x"}}, "manualSelector": True},
     "spec.template.metadata.labels: Invalid value: `selector` does not match template "
     "`labels`"),
    ({"podFailurePolicy": {"rules": [{"action": "FailJob"}]}},
     "spec.podFailurePolicy.rules[0]: Invalid value: specifying one of OnExitCodes and "
     "OnPodConditions is required"),
    ({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
        "operator": "In", "values": [0, 3]}}]}},
     "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 "
     "for the In operator"),
    ({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
        "containerName": "nope", "operator": "NotIn", "values": [1]}}]}},
     'onExitCodes.containerName: Invalid value: "nope": must be one of the container or '
     "initContainer names in the pod template"),
    ({"podFailurePolicy": {"rules": [{"action": "Explode", "onExitCodes": {
        "operator": "In", "values": [1]}}]}},
     'spec.podFailurePolicy.rules[0].action: Unsupported value: "Explode"'),
])
async def test_job_spec_errors(api: Api, spec: Obj, message: str) -> None:
    body = job()
    body["spec"].update({k: v for k, v in spec.items() if v is not None})
    assert message in await invalid(api, JOBS, body)


async def test_pod_failure_policy_needs_restart_policy_never(api: Api) -> None:
    body = job(podFailurePolicy={"rules": [{"action": "Ignore", "onExitCodes": {
        "operator": "In", "values": [42]}}]})
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert 'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is ' \
        "supported when podFailurePolicy is specified" in await invalid(api, JOBS, body)


@pytest.mark.parametrize(("schedule", "message"), [
    ("61 * * * *", 'spec.schedule: Invalid value: "61 * * * *": end of range (61) above '
                   "maximum (59): 61"),
    ("* * * *", 'spec.schedule: Invalid value: "* * * *": expected exactly 5 fields, found 4: '
                "[* * * *]"),
    ("0 0 * * 7", "end of range (7) above maximum (6): 7"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("CRON_TZ=UTC * * * * *", 'spec.schedule: Invalid value: "CRON_TZ=UTC * * * * *": cannot '
                              "use TZ or CRON_TZ in schedule, use timeZone field instead"),
])
async def test_invalid_schedules_are_refused_with_kubes_words(
        api: Api, schedule: str, message: str) -> None:
    text = await invalid(api, CRONJOBS, cronjob(schedule=schedule))
    assert text.startswith('CronJob.batch "tick" is invalid: ') and message in text


async def test_cronjob_time_zone_name_and_policy_are_checked(api: Api) -> None:
    assert 'spec.timeZone: Invalid value: "Europe/Pariss": unknown time zone Europe/Pariss' in \
        await invalid(api, CRONJOBS, cronjob(timeZone="Europe/Pariss"))
    assert "timeZone must be an explicit time zone" in \
        await invalid(api, CRONJOBS, cronjob(timeZone="Local"))
    assert 'spec.concurrencyPolicy: Unsupported value: "Sometimes"' in \
        await invalid(api, CRONJOBS, cronjob(concurrencyPolicy="Sometimes"))
    body = cronjob()
    body["spec"]["jobTemplate"]["spec"]["selector"] = {"matchLabels": {"a": "b"}}
    assert "spec.jobTemplate.spec.selector: Invalid value: `selector` will be auto-generated" \
        in await invalid(api, CRONJOBS, body)
    assert "must be no more than 52 characters" in \
        await invalid(api, CRONJOBS, cronjob(name="n" * 53))
    await ok(api, "POST", CRONJOBS, cronjob("nightly", "@daily", timeZone="America/New_York"))


async def test_job_template_and_completions_are_immutable(api: Api) -> None:
    await ok(api, "POST", JOBS, job())
    code, out = await call(api, "PATCH", f"{JOBS}/pi", {"spec": {"completions": 3}},
                           ctype=MERGE)
    assert code == 422 and "spec.completions: Invalid value: 3: field is immutable" in \
        out["message"]
    code, out = await call(api, "PATCH", f"{JOBS}/pi", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "other"}]}}}}, ctype=MERGE)
    assert code == 422 and "spec.template" in out["message"]
    patched = await ok(api, "PATCH", f"{JOBS}/pi", {"spec": {"parallelism": 2, "suspend": True}},
                       ctype=MERGE)
    assert patched["spec"]["suspend"] is True and patched["metadata"]["generation"] == 2
    # An Indexed Job may change completions together with parallelism (elastic).
    await ok(api, "POST", JOBS, job("ix", completionMode="Indexed", completions=2,
                                    parallelism=2))
    await ok(api, "PATCH", f"{JOBS}/ix", {"spec": {"completions": 4, "parallelism": 4}},
             ctype=MERGE)


async def test_status_is_written_through_its_subresource(api: Api) -> None:
    created = await ok(api, "POST", JOBS, job())
    created["status"] = {"active": 1}
    updated = await ok(api, "PUT", f"{JOBS}/pi", created)
    assert "active" not in updated.get("status", {})
    updated["status"] = {"active": 1, "ready": 0}
    assert (await ok(api, "PUT", f"{JOBS}/pi/status", updated))["status"]["active"] == 1


async def test_kubectl_create_job_from_cronjob_is_accepted(api: Api) -> None:
    """What kubectl 1.32 sends for ``create job manual --from=cronjob/tick``."""
    cj = await ok(api, "POST", CRONJOBS, cronjob())
    template = copy.deepcopy(cj["spec"]["jobTemplate"])
    body = {"kind": "Job", "apiVersion": "batch/v1",
            "metadata": {"name": "manual", "creationTimestamp": None,
                         "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                              "name": "tick", "uid": cj["metadata"]["uid"],
                                              "controller": True}]},
            "spec": {**template["spec"],
                     "template": {**template["spec"]["template"],
                                  "metadata": {"creationTimestamp": None}}},
            "status": {}}
    created = await ok(api, "POST", JOBS, body)
    assert created["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert created["spec"]["selector"]["matchLabels"] == {
        batch.CONTROLLER_UID: created["metadata"]["uid"]}


# -- discovery, tables, RBAC --

async def test_discovery_lists_batch(api: Api) -> None:
    found = {r["name"]: r for r in (await ok(api, "GET", "/apis/batch/v1"))["resources"]}
    assert found["cronjobs"]["shortNames"] == ["cj"]
    assert found["jobs"]["categories"] == ["all"] and found["cronjobs"]["categories"] == ["all"]
    assert {"jobs/status", "cronjobs/status"} <= set(found)
    groups = {g["name"] for g in (await ok(api, "GET", "/apis"))["groups"]}
    assert "batch" in groups
    doc = await ok(api, "GET", "/openapi/v3/apis/batch/v1")
    assert "io.k8s.api.batch.v1.CronJob" in doc["components"]["schemas"]


async def test_job_and_cronjob_tables(api: Api) -> None:
    await ok(api, "POST", JOBS, job())
    await ok(api, "POST", CRONJOBS, cronjob(timeZone="Etc/UTC"))
    table = await ok(api, "GET", JOBS, accept=TABLE)
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Name", "Status", "Completions", "Duration", "Age"]
    assert table["rows"][0]["cells"][:4] == ["pi", "Running", "0/1", ""]
    table = await ok(api, "GET", CRONJOBS, accept=TABLE)
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule",
                       "Age"]
    assert table["rows"][0]["cells"][:6] == ["tick", "*/1 * * * *", "Etc/UTC", "False", 0,
                                             "<none>"]


@pytest.mark.parametrize(("status", "spec", "want"), [
    ({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 5},
     {"completions": 5}, ("Complete", "5/5")),
    ({"conditions": [{"type": "FailureTarget", "status": "True"}]}, {"completions": 1},
     ("FailureTarget", "0/1")),
    ({"conditions": [{"type": "Suspended", "status": "True"}]}, {"parallelism": 3},
     ("Suspended", "0/1 of 3")),
    ({"conditions": [{"type": "Failed", "status": "True"}], "succeeded": 1},
     {"parallelism": 1}, ("Failed", "1/1")),
])
def test_job_status_and_completions_cells(status: Obj, spec: Obj, want: tuple[str, str]) -> None:
    obj = {"metadata": {"name": "j"}, "spec": spec, "status": status}
    cols = {name: cell for name, _, cell, _ in tables.columns("Job")}
    assert (cols["Status"](obj), cols["Completions"](obj)) == want


def test_job_duration_is_start_to_completion() -> None:
    obj = {"status": {"startTime": "2026-01-01T00:00:00Z",
                      "completionTime": "2026-01-01T00:03:20Z"}}
    cols = {name: cell for name, _, cell, _ in tables.columns("Job")}
    assert cols["Duration"](obj) == "3m20s"


def test_view_edit_and_admin_roles_cover_batch() -> None:
    def batch_verbs(role: str) -> set[str]:
        return {v for rule in bootstrap.CLUSTER_ROLES[role] if "batch" in rule.get(
            "apiGroups", []) and "jobs" in rule["resources"] for v in rule["verbs"]}
    assert batch_verbs("view") == {"get", "list", "watch"}
    assert {"create", "delete", "patch"} <= batch_verbs("edit") == batch_verbs("admin")


def test_schedule_parse_keeps_descriptors_and_every() -> None:
    assert cron.parse("@hourly").expr == "0 * * * *"
    assert cron.parse("@every 1h30m").every == 5400.0
    assert cron.parse("@every 10ms").every == 1.0  # robfig rounds up to a second


# -- pods held by the Job tracking finalizer --

PODS = "/api/v1/namespaces/default/pods"
STRATEGIC = "application/strategic-merge-patch+json"
DROP_FINALIZER = {"metadata": {"$deleteFromPrimitiveList/finalizers": [
    batch.TRACKING_FINALIZER]}}


def tracked_pod(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "finalizers": [batch.TRACKING_FINALIZER]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def test_a_running_pod_held_by_a_finalizer_goes_once_stopped_and_released(
        api: Api) -> None:
    await ok(api, "POST", PODS, tracked_pod("p"))
    await ok(api, "POST", f"{PODS}/p/binding", {"apiVersion": "v1", "kind": "Binding",
                                               "metadata": {"name": "p"},
                                               "target": {"kind": "Node", "name": "n1"}})
    deleting = await ok(api, "DELETE", f"{PODS}/p")
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == 30
    await ok(api, "PATCH", f"{PODS}/p/status", {"status": {"phase": "Running"}}, ctype=MERGE)
    # The node agent has stopped it: the grace period shortens to 0, the pod stays.
    stopped = await ok(api, "DELETE", f"{PODS}/p", params={"gracePeriodSeconds": "0"})
    assert stopped["metadata"]["deletionGracePeriodSeconds"] == 0
    await ok(api, "GET", f"{PODS}/p")
    await ok(api, "PATCH", f"{PODS}/p", DROP_FINALIZER, ctype=STRATEGIC)
    code, _ = await call(api, "GET", f"{PODS}/p")
    assert code == 404


async def test_a_released_pod_still_stopping_waits_for_its_agent(api: Api) -> None:
    await ok(api, "POST", PODS, tracked_pod("q"))
    await ok(api, "POST", f"{PODS}/q/binding", {"apiVersion": "v1", "kind": "Binding",
                                               "metadata": {"name": "q"},
                                               "target": {"kind": "Node", "name": "n1"}})
    await ok(api, "DELETE", f"{PODS}/q")
    await ok(api, "PATCH", f"{PODS}/q", DROP_FINALIZER, ctype=STRATEGIC)
    assert (await ok(api, "GET", f"{PODS}/q"))["metadata"]["deletionTimestamp"]
    await ok(api, "DELETE", f"{PODS}/q", params={"gracePeriodSeconds": "0"})
    code, _ = await call(api, "GET", f"{PODS}/q")
    assert code == 404


async def test_an_unscheduled_pod_held_by_a_finalizer_goes_when_released(api: Api) -> None:
    await ok(api, "POST", PODS, tracked_pod("r"))
    deleting = await ok(api, "DELETE", f"{PODS}/r")
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == 0
    await ok(api, "PATCH", f"{PODS}/r", DROP_FINALIZER, ctype=STRATEGIC)
    code, _ = await call(api, "GET", f"{PODS}/r")
    assert code == 404
