"""DaemonSets and StatefulSets in a real lab, driven by the real kubectl and
the Python ``kubernetes`` client: one daemon pod per node, also on a node
that joins when the lab grows; a DaemonSet rollout; a StatefulSet ``web``
behind the headless Service ``nginx`` that starts in order, whose pods are
named by DNS (``web-0.nginx.default.svc.cluster.local``) and come back
under their name, and that scales down from the highest ordinal.

Orders are read from the API's own history: a watch replayed from the
resourceVersion taken before the action lists every change in the order
the store made it.

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24 on node-N, Services 10.96.0.0/12, cluster DNS 10.96.0.10)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from netplane.api import meta
from tests.e2e.conftest import EXAMPLES, Lab, wait_for
from tests.e2e.test_kubectl_lab import KUBECTL, Kubectl

pytestmark = pytest.mark.e2e
if not os.access(KUBECTL, os.X_OK):
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason="kubectl is not installed")]

DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: echo
        image: netplane/echo
        ports: [{containerPort: 8080}]
"""

STATEFULSET = """\
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: echo
        image: netplane/echo
        ports: [{containerPort: 8080}]
"""
WEB_0 = "web-0.nginx.default.svc.cluster.local"


@pytest.fixture(scope="module")
def kubectl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    yield Kubectl(lab, tmp_path_factory.mktemp("kubectl-home"))


def pods(kubectl: Kubectl, app: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "pods", "-l", f"app={app}")["items"])


def nodes_of(kubectl: Kubectl, app: str) -> list[str]:
    return sorted(p["spec"].get("nodeName", "") for p in pods(kubectl, app)
                  if not p["metadata"].get("deletionTimestamp"))


def resource_version(kubectl: Kubectl) -> str:
    """The store's revision now (kubectl get -o json would print its own List)."""
    listing = json.loads(kubectl("get", "--raw", "/api/v1/namespaces/default/pods").stdout)
    rv = str(listing["metadata"]["resourceVersion"])
    assert rv.isdigit()
    return rv


def history_since(kubectl: Kubectl, rv: str) -> list[tuple[str, dict[str, Any]]]:
    """The web pods' changes since ``rv``, in the store's order."""
    path = ("/api/v1/namespaces/default/pods?watch=1&labelSelector=app%3Dweb"
            f"&resourceVersion={rv}&timeoutSeconds=1")
    out = kubectl("get", "--raw", path).stdout
    return [(ev["type"], ev["object"]) for ev in map(json.loads, out.splitlines()) if ev]


def dig(kubectl: Kubectl, name: str) -> list[str]:
    out = kubectl("exec", "client", "--", "dig", "+short", "+time=2", "+tries=2", name,
                  check=False).stdout
    return [line for line in out.splitlines() if line and not line.startswith(";")]


def pod_ip(kubectl: Kubectl, name: str) -> str:
    return str(kubectl.json("get", "pod", name)["status"].get("podIP", ""))


def test_a_daemon_set_runs_one_pod_per_node_also_on_a_node_that_joins(
        lab: Lab, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=DAEMONSET)
    wait_for("a ready daemon pod on both nodes", lambda: kubectl.json(
        "get", "ds", "agent")["status"].get("numberReady") == 2, timeout=90)
    assert nodes_of(kubectl, "agent") == ["node-1", "node-2"]
    header, row = kubectl("get", "ds", "agent").stdout.splitlines()
    assert header.split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE",
                              "AVAILABLE", "NODE", "SELECTOR", "AGE"]
    assert row.split()[:7] == ["agent", "2", "2", "2", "2", "2", "<none>"]

    lab.netplane("lab", "up", "--nodes", "3", timeout=120)
    wait_for("a ready daemon pod on node-3", lambda: kubectl.json(
        "get", "ds", "agent")["status"].get("numberReady") == 3, timeout=90)
    assert nodes_of(kubectl, "agent") == ["node-1", "node-2", "node-3"]
    (pod,) = [p for p in pods(kubectl, "agent") if p["spec"]["nodeName"] == "node-3"]
    assert pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-3"]}]}]


def test_a_daemon_set_rolls_out_and_back(kubectl: Kubectl) -> None:
    kubectl("set", "env", "ds/agent", "COLOUR=blue")
    status = kubectl("rollout", "status", "ds/agent", "--timeout=120s").stdout
    assert 'daemon set "agent" successfully rolled out' in status
    running = [p for p in pods(kubectl, "agent") if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 3
    assert all({"name": "COLOUR", "value": "blue"} in p["spec"]["containers"][0]["env"]
               for p in running)
    rows = [line.split()[0] for line in
            kubectl("rollout", "history", "ds/agent").stdout.splitlines()[2:] if line.strip()]
    assert rows == ["1", "2"]
    assert kubectl("rollout", "undo", "ds/agent").stdout.strip() == \
        "daemonset.apps/agent rolled back"
    kubectl("rollout", "status", "ds/agent", "--timeout=120s")
    container = kubectl.json("get", "ds", "agent")["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in container
    revisions = kubectl.json("get", "controllerrevisions", "-l", "app=agent")["items"]
    assert sorted(r["revision"] for r in revisions) == [2, 3]  # revision 1 came back as 3


def test_a_stateful_set_starts_in_order_with_names_in_dns(lab: Lab, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(EXAMPLES / "client.yaml"))
    before = resource_version(kubectl)
    kubectl("apply", "-f", "-", stdin=STATEFULSET)
    status = kubectl("rollout", "status", "sts/web", "--timeout=120s").stdout
    assert "partitioned roll out complete: 3 new pods have been updated..." in status
    header, row = kubectl("get", "sts", "web").stdout.splitlines()
    assert header.split() == ["NAME", "READY", "AGE"] and row.split()[:2] == ["web", "3/3"]

    # Each pod is made only once the one before it is Running and Ready.
    events = history_since(kubectl, before)
    made = {meta.name(o): i for i, (kind, o) in reversed(list(enumerate(events)))
            if kind == "ADDED"}
    ready = {meta.name(o): i for i, (kind, o) in reversed(list(enumerate(events)))
             if o.get("status", {}).get("phase") == "Running" and meta.pod_ready(o)}
    assert sorted(made, key=made.__getitem__) == ["web-0", "web-1", "web-2"]
    assert ready["web-0"] < made["web-1"] and ready["web-1"] < made["web-2"]

    web0 = kubectl.json("get", "pod", "web-0")
    assert web0["spec"]["hostname"] == "web-0" and web0["spec"]["subdomain"] == "nginx"
    assert kubectl("exec", "web-0", "--", "hostname").stdout.strip() == "web-0"
    wait_for("the client pod", lambda: meta.pod_ready(kubectl.json("get", "pod", "client")),
             timeout=60)
    assert wait_for("web-0's name", lambda: dig(kubectl, WEB_0), timeout=30) == \
        [pod_ip(kubectl, "web-0")]
    served = kubectl("exec", "client", "--", "curl", "-sS", "--max-time", "5",
                     "http://web-0.nginx:8080/").stdout
    assert served.startswith("pod=web-0 ")


def test_a_deleted_stateful_pod_comes_back_under_its_name(kubectl: Kubectl) -> None:
    old = kubectl.json("get", "pod", "web-0")
    kubectl("delete", "pod", "web-0")

    def back() -> bool:
        pod = kubectl.json("get", "pod", "web-0") if kubectl(
            "get", "pod", "web-0", check=False).returncode == 0 else {}
        return bool(pod) and meta.uid(pod) != meta.uid(old) and meta.pod_ready(pod)
    wait_for("web-0 again", back, timeout=90)
    new_ip = pod_ip(kubectl, "web-0")
    assert new_ip != old["status"]["podIP"]
    wait_for("web-0's name to follow it", lambda: dig(kubectl, WEB_0) == [new_ip], timeout=30)


def test_scaling_down_removes_the_highest_ordinal_first(kubectl: Kubectl) -> None:
    before = resource_version(kubectl)
    assert kubectl("scale", "sts", "web", "--replicas=1").stdout.strip() == \
        "statefulset.apps/web scaled"
    wait_for("only web-0", lambda: [meta.name(p) for p in pods(kubectl, "web")] == ["web-0"],
             timeout=90)
    events = history_since(kubectl, before)
    deleted = [meta.name(o) for kind, o in events if kind == "DELETED"]
    assert deleted == ["web-2", "web-1"]
    gone_2 = next(i for i, (kind, o) in enumerate(events)
                  if kind == "DELETED" and meta.name(o) == "web-2")
    asked_1 = next(i for i, (_, o) in enumerate(events)
                   if meta.name(o) == "web-1" and o["metadata"].get("deletionTimestamp"))
    assert gone_2 < asked_1  # web-1 was asked to go only once web-2 had gone


def test_the_python_client_reads_and_scales_the_sets(lab: Lab) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(str(lab.paths.kubeconfig))
    apps = client.AppsV1Api(api)
    ds = apps.read_namespaced_daemon_set("agent", "default")
    assert ds.status.desired_number_scheduled == 3
    assert ds.spec.update_strategy.rolling_update.max_unavailable == 1
    assert apps.patch_namespaced_stateful_set_scale(
        "web", "default", {"spec": {"replicas": 2}}).spec.replicas == 2
    wait_for("two ready web pods", lambda: apps.read_namespaced_stateful_set_status(
        "web", "default").status.ready_replicas == 2, timeout=90)
    sts = apps.read_namespaced_stateful_set("web", "default")
    assert sts.spec.pod_management_policy == "OrderedReady"
    assert sts.status.current_revision == sts.status.update_revision
    owners = {r.metadata.owner_references[0].kind for r in
              apps.list_namespaced_controller_revision("default").items}
    assert owners == {"DaemonSet", "StatefulSet"}


KEEPERS = {
    "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "keep"},
    "spec": {"replicas": 2, "serviceName": "keep", "selector": {"matchLabels": {"app": "keep"}},
             "template": {"metadata": {"labels": {"app": "keep"}}, "spec": {"containers": [{
                 "name": "c", "image": "busybox",
                 "command": ["sh", "-c", "hostname >> /data/log; trap 'exit 0' TERM; "
                             "while :; do sleep 1; done"],
                 "volumeMounts": [{"name": "www", "mountPath": "/data"}]}]}},
             "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                 "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}]}}


def test_each_ordinal_keeps_its_data_in_its_claim_across_deletion(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps(KEEPERS))
    kubectl("rollout", "status", "sts/keep", "--timeout=120s")
    claims = kubectl.json("get", "pvc", "-l", "app=keep")["items"]
    assert sorted(meta.name(c) for c in claims) == ["www-keep-0", "www-keep-1"]
    assert all(c["status"]["phase"] == "Bound" for c in claims)
    volume = next(c for c in claims if meta.name(c) == "www-keep-0")["spec"]["volumeName"]
    uid = kubectl.json("get", "pod", "keep-0")["metadata"]["uid"]
    kubectl("delete", "pod", "keep-0")
    wait_for("keep-0 made again", lambda: kubectl("get", "pod", "keep-0", check=False)
             .returncode == 0 and kubectl.json("get", "pod", "keep-0")["metadata"]["uid"] != uid
             and meta.condition_true(kubectl.json("get", "pod", "keep-0"), "Ready"), timeout=90)
    log = kubectl("exec", "keep-0", "--", "cat", "/data/log").stdout
    assert log == "keep-0\nkeep-0\n"  # the first pod's line is still there
    assert kubectl.json("get", "pvc", "www-keep-0")["spec"]["volumeName"] == volume
    assert kubectl("exec", "keep-1", "--", "cat", "/data/log").stdout == "keep-1\n"
