"""scheduling.k8s.io/v1 PriorityClass through a real ``netplane server``:
the built-in classes, kubectl's create (a protobuf body) and table, the
Priority admission plugin giving pods their priority, and its refusals, as
kubectl and the Python client see them. Loopback only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server, scratch_namespace

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed (looked "
                                                         "on PATH and in /usr/bin/kubectl)")

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  {extra}
  containers: [{{name: c, image: netplane/echo}}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("priority")) as running:
        yield running


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster, "pc") as name:
        yield name


def _pod(cluster: Cluster, ns: str, name: str) -> Any:
    return json.loads(cluster.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)


def test_the_system_classes_are_there_and_cannot_go(cluster: Cluster) -> None:
    table = cluster.kubectl("get", "priorityclasses").stdout.splitlines()
    assert table[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["system-node-critical"][1:3] == ["2000001000", "false"]
    assert rows["system-cluster-critical"][1:3] == ["2000000000", "false"]
    assert rows["system-cluster-critical"][-1] == "PreemptLowerPriority"
    gone = cluster.kubectl("delete", "pc", "system-node-critical", check=False)
    assert gone.returncode != 0
    assert "this is a system priority class and cannot be deleted" in gone.stderr


def test_kubectl_creates_a_class_and_a_pod_takes_its_priority(cluster: Cluster,
                                                              ns: str) -> None:
    cluster.kubectl("create", "priorityclass", f"{ns}-high", "--value=1000",
                    "--description=batch that matters", "--preemption-policy=Never")
    try:
        shown = json.loads(cluster.kubectl("get", "pc", f"{ns}-high", "-o", "json").stdout)
        assert (shown["value"], shown["preemptionPolicy"]) == (1000, "Never")
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=POD.format(
            name="high", extra=f"priorityClassName: {ns}-high"))
        spec = _pod(cluster, ns, "high")["spec"]
        assert (spec["priority"], spec["preemptionPolicy"]) == (1000, "Never")
        # An apply that says nothing of priority keeps what admission set.
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=POD.format(
            name="high", extra=f"priorityClassName: {ns}-high"))
        assert _pod(cluster, ns, "high")["spec"]["priority"] == 1000
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=POD.format(name="plain", extra=""))
        spec = _pod(cluster, ns, "plain")["spec"]
        assert (spec["priority"], spec["preemptionPolicy"]) == (0, "PreemptLowerPriority")
        assert "priorityClassName" not in spec
    finally:
        cluster.kubectl("delete", "pc", f"{ns}-high")


def test_admission_refuses_what_kube_refuses(cluster: Cluster, ns: str) -> None:
    missing = cluster.kubectl("apply", "-n", ns, "-f", "-", check=False, stdin=POD.format(
        name="lost", extra="priorityClassName: no-such-class"))
    assert 'pods "lost" is forbidden: no PriorityClass with name no-such-class was found' \
        in missing.stderr
    given = cluster.kubectl("apply", "-n", ns, "-f", "-", check=False, stdin=POD.format(
        name="given", extra="priority: 7"))
    assert "the integer value of priority (7) must not be provided in pod spec; priority " \
        "admission controller computed 0 from the given PriorityClass name" in given.stderr
    reserved = cluster.kubectl("create", "priorityclass", "system-mine", "--value=5",
                               check=False)
    assert "priority class names with 'system-' prefix are reserved for system use only" \
        in reserved.stderr
    too_high = cluster.kubectl("create", "priorityclass", f"{ns}-huge",
                               "--value=1000000001", check=False)
    assert "maximum allowed value of a user defined priority is 1000000000" in too_high.stderr


def test_one_global_default_which_new_pods_take(cluster: Cluster, ns: str) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    client: Any = kubernetes.client
    api_client = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
    scheduling = client.SchedulingV1Api(api_client)
    scheduling.create_priority_class(client.V1PriorityClass(
        metadata=client.V1ObjectMeta(name=f"{ns}-default"), value=50, global_default=True))
    try:
        with pytest.raises(client.ApiException) as second:
            scheduling.create_priority_class(client.V1PriorityClass(
                metadata=client.V1ObjectMeta(name=f"{ns}-other"), value=60,
                global_default=True))
        assert second.value.status == 403
        assert f"PriorityClass {ns}-default is already marked as default" in \
            json.loads(second.value.body)["message"]
        pc = scheduling.read_priority_class(f"{ns}-default")
        pc.value = 51
        with pytest.raises(client.ApiException) as immutable:
            scheduling.replace_priority_class(f"{ns}-default", pc)
        assert immutable.value.status == 422
        core = client.CoreV1Api(api_client)
        pod = core.create_namespaced_pod(ns, client.V1Pod(
            metadata=client.V1ObjectMeta(name="defaulted"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c",
                                                                 image="netplane/echo")])))
        assert (pod.spec.priority_class_name, pod.spec.priority) == (f"{ns}-default", 50)
    finally:
        scheduling.delete_priority_class(f"{ns}-default")
