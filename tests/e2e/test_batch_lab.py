"""Jobs and CronJobs in a real 2-node lab, driven by the real kubectl and the
Python ``kubernetes`` client: an Indexed Job whose pods each see their own
JOB_COMPLETION_INDEX, a failing Job that ends Failed past its backoffLimit,
a CronJob that runs every minute, ``kubectl create job --from=cronjob``,
and the columns of ``kubectl get jobs,cronjobs``.

The CronJob is created first and checked last, so that its minute passes
while the other tests run. Pods run host commands (the process runtime).

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24, Services 10.96.0.0/12)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Lab, wait_for
from tests.e2e.test_kubectl_lab import KUBECTL, Kubectl, pytestmark  # noqa: F401

INDEXED = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completions: 5
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
        command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"]
"""

FAILING = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: fails
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
        command: ["sh", "-c", "exit 3"]
"""

CRONJOB = """\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: work
            image: busybox
            command: ["sh", "-c", "echo tick"]
"""


@pytest.fixture(scope="module")
def kubectl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    yield Kubectl(lab, tmp_path_factory.mktemp("kubectl-home"))


def columns(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def test_a_cronjob_is_created(kubectl: Kubectl) -> None:
    assert kubectl("apply", "-f", "-", stdin=CRONJOB).stdout.strip() == \
        "cronjob.batch/tick created"
    out = kubectl("get", "cronjob", "tick").stdout
    assert columns(out)[0] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE",
                               "LAST SCHEDULE", "AGE"]
    assert columns(out)[1][:5] == ["tick", "*/1 * * * *", "<none>", "False", "0"]


def test_indexed_job_completes_and_each_pod_sees_its_index(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=INDEXED)
    kubectl("wait", "--for=condition=complete", "job/indexed", "--timeout=120s")
    job = kubectl.json("get", "job", "indexed")
    assert job["status"]["succeeded"] == 5 and job["status"]["completedIndexes"] == "0-4"
    assert [c["type"] for c in job["status"]["conditions"]] == ["SuccessCriteriaMet",
                                                                "Complete"]
    pods = kubectl.json("get", "pods", "-l", "batch.kubernetes.io/job-name=indexed")["items"]
    seen = {}
    for p in pods:
        assert p["status"]["phase"] == "Succeeded"
        assert not p["metadata"].get("finalizers")  # counted, then released
        index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["metadata"]["name"].startswith(f"indexed-{index}-")
        seen[index] = kubectl("logs", p["metadata"]["name"]).stdout.strip()
    assert seen == {str(i): f"index={i} host=indexed-{i}" for i in range(5)}
    described = kubectl("describe", "job", "indexed").stdout
    assert "Completed" in described and "SuccessfulCreate" in described


def test_failing_job_fails_past_its_backoff_limit(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=FAILING)
    kubectl("wait", "--for=condition=failed", "job/fails", "--timeout=120s")
    job = kubectl.json("get", "job", "fails")
    assert job["status"]["failed"] == 2
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == (
        "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=fails").stdout
    assert "BackoffLimitExceeded" in events
    pods = kubectl.json("get", "pods", "-l", "job-name=fails")["items"]
    codes = [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
             for p in pods]
    assert codes == [3, 3]


def test_python_client_creates_and_reads_a_job(lab: Lab) -> None:
    from kubernetes import client, config

    api = client.BatchV1Api(config.new_client_from_config(str(lab.paths.kubeconfig)))
    body = client.V1Job(
        metadata=client.V1ObjectMeta(name="py-job"),
        spec=client.V1JobSpec(backoff_limit=2, template=client.V1PodTemplateSpec(
            spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(
                name="work", image="busybox", command=["true"])]))))
    created = api.create_namespaced_job("default", body)
    assert created.spec.completions == 1 and created.spec.backoff_limit == 2
    assert created.spec.selector.match_labels == {
        "batch.kubernetes.io/controller-uid": created.metadata.uid}

    def complete() -> bool:
        job = api.read_namespaced_job("py-job", "default")
        return any(c.type == "Complete" and c.status == "True"
                   for c in job.status.conditions or [])
    wait_for("py-job complete", complete, timeout=90)
    assert api.read_namespaced_job_status("py-job", "default").status.succeeded == 1


def test_the_cronjob_ran_and_a_job_can_be_made_from_it(kubectl: Kubectl) -> None:
    def scheduled() -> list[str]:
        jobs = kubectl.json("get", "jobs")["items"]
        return [j["metadata"]["name"] for j in jobs
                if (j["metadata"].get("ownerReferences") or [{}])[0].get("name") == "tick"
                and "manual" not in j["metadata"]["name"]]
    names = wait_for("a Job of the CronJob", scheduled, timeout=75)
    kubectl("wait", "--for=condition=complete", f"job/{names[0]}", "--timeout=90s")
    minutes = int(names[0].rsplit("-", 1)[1])
    job = kubectl.json("get", "job", names[0])
    stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert stamp.endswith(":00Z") and minutes > 0
    assert kubectl("create", "job", "manual", "--from=cronjob/tick").stdout.strip() == \
        "job.batch/manual created"
    manual = kubectl.json("get", "job", "manual")
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    kubectl("wait", "--for=condition=complete", "job/manual", "--timeout=90s")
    kubectl("patch", "cronjob", "tick", "-p", '{"spec":{"suspend":true}}')
    out = kubectl("get", "jobs,cronjobs").stdout
    blocks = [columns(b) for b in out.strip().split("\n\n")]
    assert blocks[0][0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    rows = {r[0]: r for r in blocks[0][1:]}
    assert rows["job.batch/indexed"][1:3] == ["Complete", "5/5"]
    assert rows["job.batch/fails"][1:3] == ["Failed", "0/1"]
    assert blocks[1][0] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE",
                            "LAST SCHEDULE", "AGE"]
    tick = blocks[1][1]
    assert tick[:4] == ["cronjob.batch/tick", "*/1 * * * *", "<none>", "True"]
    assert tick[5] != "<none>"
