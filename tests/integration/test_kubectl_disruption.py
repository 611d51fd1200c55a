"""policy/v1 PodDisruptionBudgets and the Eviction API through a real
``netplane server`` with its controllers: kubectl's create (a protobuf
body) and table, the disruption controller's status, evictions refused
with 429 while the budget is at its floor and let through when it has room
(the Python client's ``create_namespaced_pod_eviction``, as kubectl drain
calls it), and cordon/uncordon. No agents: the pods are bound and made
ready by the test, as their node would. Loopback only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.loopback import (
    HAVE_KUBECTL,
    Cluster,
    api_server,
    scratch_namespace,
    wait_for,
)

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed (looked "
                                                         "on PATH and in /usr/bin/kubectl)")
kubernetes = pytest.importorskip("kubernetes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("pdb")) as running:
        yield running


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster, "pdb") as name:
        yield name


@pytest.fixture(scope="module")
def core(cluster: Cluster) -> Any:
    return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
        str(cluster.kubeconfig)))



def budget_status(cluster: Cluster, ns: str, name: str) -> Any:
    return json.loads(cluster.kubectl("get", "pdb", name, "-n", ns, "-o", "json").stdout
                      ).get("status") or {}


def running_pod(core: Any, ns: str, name: str, node: str) -> None:
    """A pod on ``node``, Running and Ready as its agent would say."""
    client = kubernetes.client
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "web"}),
        spec=client.V1PodSpec(node_name=node, containers=[
            client.V1Container(name="c", image="netplane/echo")])))
    pod = core.read_namespaced_pod(name, ns)
    pod.status.phase = "Running"
    pod.status.conditions = [client.V1PodCondition(type="Ready", status="True")]
    core.replace_namespaced_pod_status(name, ns, pod)


def add_node(cluster: Cluster, name: str) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Node\nmetadata:\n"
                                              f"  name: {name}\n")


def evict(core: Any, ns: str, name: str) -> Any:
    client = kubernetes.client
    return core.create_namespaced_pod_eviction(name, ns, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=name, namespace=ns)))


def test_a_budget_at_its_floor_refuses_evictions_until_it_has_room(
        cluster: Cluster, ns: str, core: Any) -> None:
    node = f"{ns}-node"
    add_node(cluster, node)
    try:
        for name in ("web-0", "web-1"):
            running_pod(core, ns, name, node)
        cluster.kubectl("create", "pdb", "web", "-n", ns, "--selector=app=web",
                        "--min-available=2")
        st = wait_for("the budget's status", lambda: (
            s := budget_status(cluster, ns, "web")).get("currentHealthy") == 2 and s)
        assert (st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"]) == \
            (2, 2, 0)
        cond = st["conditions"][0]
        assert (cond["type"], cond["status"], cond["reason"]) == \
            ("DisruptionAllowed", "False", "InsufficientPods")
        table = cluster.kubectl("get", "pdb", "-n", ns).stdout.splitlines()
        assert table[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE",
                                    "ALLOWED", "DISRUPTIONS", "AGE"]
        assert table[1].split()[:4] == ["web", "2", "N/A", "0"]

        with pytest.raises(kubernetes.client.ApiException) as refused:
            evict(core, ns, "web-0")
        assert refused.value.status == 429
        body = json.loads(refused.value.body)
        assert body["message"] == ("Cannot evict pod as it would violate the pod's "
                                   "disruption budget.")
        assert body["details"]["causes"] == [{
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]

        cluster.kubectl("patch", "pdb", "web", "-n", ns, "--type=merge",
                        "-p", '{"spec": {"minAvailable": 1}}')
        wait_for("room for one disruption",
                 lambda: budget_status(cluster, ns, "web").get("disruptionsAllowed") == 1)
        evict(core, ns, "web-0")
        gone = core.read_namespaced_pod("web-0", ns)
        assert gone.metadata.deletion_timestamp is not None
        target = [c for c in gone.status.conditions if c.type == "DisruptionTarget"]
        assert (target[0].status, target[0].reason) == ("True", "EvictionByEvictionAPI")
        # The controller sees web-0 going: one healthy pod, none to spare.
        st = wait_for("the budget after the eviction", lambda: (
            s := budget_status(cluster, ns, "web")).get("currentHealthy") == 1 and s)
        assert st["disruptionsAllowed"] == 0 and not st.get("disruptedPods")
        with pytest.raises(kubernetes.client.ApiException) as again:
            evict(core, ns, "web-1")
        assert again.value.status == 429
    finally:
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def test_a_pod_no_budget_covers_is_simply_deleted(cluster: Cluster, ns: str,
                                                  core: Any) -> None:
    running_pod(core, ns, "free", f"{ns}-node")
    evict(core, ns, "free")
    assert core.read_namespaced_pod("free", ns).metadata.deletion_timestamp is not None


def test_eviction_options_kube_refuses_are_a_422(cluster: Cluster, ns: str,
                                                 core: Any) -> None:
    client = kubernetes.client
    running_pod(core, ns, "kept", f"{ns}-node")
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.create_namespaced_pod_eviction("kept", ns, client.V1Eviction(
            metadata=client.V1ObjectMeta(name="kept", namespace=ns),
            delete_options=client.V1DeleteOptions(propagation_policy="Sideways")))
    assert refused.value.status == 422
    assert 'Unsupported value: "Sideways"' in json.loads(refused.value.body)["message"]
    assert core.read_namespaced_pod("kept", ns).metadata.deletion_timestamp is None


def test_max_unavailable_counts_the_deployments_replicas(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "deployment", "api", "-n", ns, "--image=netplane/echo",
                    "--replicas=3")
    cluster.kubectl("create", "pdb", "api", "-n", ns, "--selector=app=api",
                    "--max-unavailable=34%")
    st = wait_for("the budget's expected pods", lambda: (
        s := budget_status(cluster, ns, "api")).get("expectedPods") == 3 and s)
    # 34% of 3 rounds up to 2 that may be unavailable: one must stay healthy.
    assert (st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (1, 0, 0)


def test_kubectl_refuses_a_budget_that_says_both(cluster: Cluster, ns: str) -> None:
    bad = cluster.kubectl("apply", "-n", ns, "-f", "-", check=False, stdin="""\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: both}
spec: {minAvailable: 1, maxUnavailable: 1, selector: {matchLabels: {app: x}}}
""")
    assert "minAvailable and maxUnavailable cannot be both set" in bad.stderr


def test_cordon_and_uncordon(cluster: Cluster, ns: str) -> None:
    node = f"{ns}-cordon"
    add_node(cluster, node)
    try:
        assert cluster.kubectl("cordon", node).stdout.strip() == f"node/{node} cordoned"
        shown = json.loads(cluster.kubectl("get", "node", node, "-o", "json").stdout)
        assert shown["spec"]["unschedulable"] is True
        assert cluster.kubectl("uncordon", node).stdout.strip() == f"node/{node} uncordoned"
        shown = json.loads(cluster.kubectl("get", "node", node, "-o", "json").stdout)
        assert not shown["spec"].get("unschedulable")
    finally:
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)
