"""``kubectl top`` in a real two-node lab: a pod whose load container
loops ``/burn`` requests to its echo container (held to half a CPU by its
limit) shows clearly more CPU than an idle pod, with and without
``--containers``, ``-A`` and a label selector; ``kubectl top nodes`` lists
every node; the Python client reads the same objects from metrics.k8s.io;
a container over its memory limit is OOMKilled and restarted.

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24); the load container curls its own pod on 127.0.0.1:8080."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.e2e.conftest import Lab, started_lab, wait_for

pytestmark = pytest.mark.e2e
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
if not os.access(KUBECTL, os.X_OK):
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason="kubectl is not installed")]

NS = "top"
PODS = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: busy, namespace: {NS}, labels: {{app: busy}}}}
spec:
  containers:
  - name: web
    image: netplane/echo
    ports: [{{containerPort: 8080}}]
    resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}
  - name: load
    image: busybox
    command: [sh, -c, "while :; do curl -s -o /dev/null 'http://127.0.0.1:8080/burn?ms=200'; done"]
---
apiVersion: v1
kind: Pod
metadata: {{name: idle, namespace: {NS}, labels: {{app: idle}}}}
spec:
  containers:
  - name: web
    image: netplane/echo
    ports: [{{containerPort: 8080}}]
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with started_lab(nodes=2) as the_lab:
        yield the_lab


def kubectl(lab: Lab, home: Path, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "KUBECONFIG": str(lab.paths.kubeconfig)}
    out = subprocess.run([KUBECTL, "--request-timeout=30s", *args], capture_output=True,
                         text=True, env=env, timeout=90, input=stdin, check=False)
    if check:
        assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def millicores(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def top_pods(lab: Lab, home: Path, *args: str) -> dict[str, list[str]] | None:
    """``kubectl top pods`` rows by their first column(s), None until it has data."""
    out = kubectl(lab, home, "top", "pods", *args, check=False)
    if out.returncode != 0:
        return None
    rows = table(out.stdout)
    return {" ".join(r[:-2]): r[-2:] for r in rows[1:]} or None


@pytest.fixture(scope="module")
def home(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("kubectl-home")
    kubectl(lab, home, "apply", "-f", "-", stdin=PODS)
    kubectl(lab, home, "wait", "-n", NS, "--for=condition=Ready", "pod/busy", "pod/idle",
            "--timeout=90s")
    return home


def test_top_pods_shows_the_busy_pod_busier(lab: Lab, home: Path) -> None:
    # Metrics come from two scrapes: the busy pod is busy by the second.
    def busy_enough() -> dict[str, list[str]] | None:
        rows = top_pods(lab, home, "-n", NS)
        return rows if rows and "busy" in rows and "idle" in rows and \
            millicores(rows["busy"][0]) >= 200 else None

    rows = wait_for("the busy pod's CPU in kubectl top", busy_enough, timeout=120)
    header = table(kubectl(lab, home, "top", "pods", "-n", NS).stdout)[0]
    assert header == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert millicores(rows["idle"][0]) < 50
    # Its limit holds the echo container to half a CPU, give or take a scrape.
    assert millicores(rows["busy"][0]) < 1000
    assert rows["busy"][1].endswith("Mi")
    per_container = top_pods(lab, home, "-n", NS, "--containers")
    assert per_container is not None
    assert {"busy web", "busy load", "idle web"} <= set(per_container)
    assert millicores(per_container["busy web"][0]) > millicores(per_container["idle web"][0])
    selected = top_pods(lab, home, "-n", NS, "-l", "app=busy")
    assert selected is not None and set(selected) == {"busy"}
    everywhere = top_pods(lab, home, "-A")
    assert everywhere is not None and {f"{NS} busy", f"{NS} idle"} <= set(everywhere)


def test_kubectl_exec_runs_in_the_containers_cgroup(lab: Lab, home: Path) -> None:
    uid = kubectl(lab, home, "get", "pod", "-n", NS, "busy", "-o",
                  "jsonpath={.metadata.uid}").stdout
    out = kubectl(lab, home, "exec", "-n", NS, "busy", "-c", "web", "--",
                  "cat", "/proc/self/cgroup").stdout
    memory = next(line for line in out.splitlines() if ":memory:" in line)
    assert memory.endswith(f"/kubepods/burstable/pod{uid}/web")


def test_top_nodes_lists_every_node(lab: Lab, home: Path) -> None:
    def all_nodes() -> list[list[str]] | None:
        out = kubectl(lab, home, "top", "nodes", check=False)
        rows = table(out.stdout)[1:] if out.returncode == 0 else []
        return rows if len(rows) == 2 and all("<unknown>" not in r for r in rows) else None

    rows = wait_for("both nodes in kubectl top nodes", all_nodes, timeout=90)
    assert sorted(r[0] for r in rows) == ["node-1", "node-2"]
    header = table(kubectl(lab, home, "top", "nodes").stdout)[0]
    assert header == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    busy_node = kubectl(lab, home, "get", "pod", "-n", NS, "busy",
                        "-o", "jsonpath={.spec.nodeName}").stdout
    by_name = {r[0]: r for r in rows}
    assert millicores(by_name[busy_node][1]) >= 100


HOG = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: hog, namespace: {NS}}}
spec:
  containers:
  - name: hog
    image: python
    command: [python3, -c, "import time; x = 'x' * (256 * 2**20); time.sleep(600)"]
    resources: {{limits: {{memory: 64Mi}}}}
"""


def test_a_container_over_its_memory_limit_is_oom_killed_and_restarted(
        lab: Lab, home: Path) -> None:
    kubectl(lab, home, "apply", "-f", "-", stdin=HOG)
    path = "jsonpath={.status.containerStatuses[0].lastState.terminated.reason}" \
        " {.status.containerStatuses[0].lastState.terminated.exitCode}" \
        " {.status.containerStatuses[0].restartCount}"

    def restarted() -> list[str] | None:
        out = kubectl(lab, home, "get", "pod", "-n", NS, "hog", "-o", path).stdout.split()
        return out if len(out) == 3 and int(out[2]) >= 1 else None

    reason, code, _ = wait_for("the hog restarted", restarted, timeout=90)
    assert (reason, code) == ("OOMKilled", "137")
    qos = kubectl(lab, home, "get", "pod", "-n", NS, "hog", "-o",
                  "jsonpath={.status.qosClass}").stdout
    assert qos == "Burstable"


def test_the_python_client_reads_metrics_k8s_io(lab: Lab, home: Path) -> None:
    api = kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=str(lab.paths.kubeconfig)))
    pods = wait_for("pod metrics", lambda: api.list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", NS, "pods", label_selector="app=busy")["items"],
        timeout=90)
    assert [p["metadata"]["name"] for p in pods] == ["busy"]
    assert {c["name"] for c in pods[0]["containers"]} == {"web", "load"}
    assert pods[0]["window"].endswith("s") and pods[0]["timestamp"].endswith("Z")
    node = api.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", "node-1")
    assert node["kind"] == "NodeMetrics" and set(node["usage"]) == {"cpu", "memory"}


AUTOSCALED = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: burner, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burner}}}}
  template:
    metadata: {{labels: {{app: burner}}}}
    spec:
      containers:
      - name: web
        image: netplane/echo
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 100m}}, limits: {{cpu: 500m}}}}
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: burner, namespace: {NS}}}
spec:
  selector: {{app: burner}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: burner, namespace: {NS}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: burner}}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 0
      policies: [{{type: Percent, value: 100, periodSeconds: 15}}]
"""
LOADER = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: loader, namespace: {NS}}}
spec:
  containers:
  - name: load
    image: busybox
    command: [sh, -c, "while :; do curl -s -o /dev/null 'http://burner/burn?ms=100'; done"]
"""


def replicas(lab: Lab, home: Path) -> int:
    out = kubectl(lab, home, "get", "deployment", "-n", NS, "burner", "-o",
                  "jsonpath={.spec.replicas}").stdout
    return int(out or 0)


def test_an_hpa_scales_up_under_cpu_load_and_back_down(lab: Lab, home: Path) -> None:
    kubectl(lab, home, "apply", "-f", "-", stdin=AUTOSCALED)
    try:
        kubectl(lab, home, "wait", "-n", NS, "--for=condition=Available", "deployment/burner",
                "--timeout=90s")
        kubectl(lab, home, "apply", "-f", "-", stdin=LOADER)
        # Two scrapes for metrics, then an HPA sync every 15 s.
        wait_for("the HPA scaling burner up to 3", lambda: replicas(lab, home) >= 3,
                 timeout=240)
        row = table(kubectl(lab, home, "get", "hpa", "-n", NS, "burner").stdout)
        assert row[0] == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS",
                          "AGE"]
        assert row[1][:2] == ["burner", "Deployment/burner"]
        assert row[1][2] == "cpu:" and row[1][3].endswith("%/50%") and row[1][3] != \
            "<unknown>/50%"
        events = kubectl(lab, home, "get", "events", "-n", NS, "--field-selector",
                         "involvedObject.name=burner,reason=SuccessfulRescale",
                         "-o", "jsonpath={.items[*].message}").stdout
        assert "New size: 3; reason: cpu resource utilization (percentage of request) above " \
               "target" in events
        kubectl(lab, home, "delete", "pod", "-n", NS, "loader", "--wait=false")
        wait_for("the HPA scaling burner back to 1", lambda: replicas(lab, home) == 1,
                 timeout=240)
    finally:
        kubectl(lab, home, "delete", "-n", NS, "--ignore-not-found", "--wait=false",
                "pod/loader", "hpa/burner", "deployment/burner", "service/burner", check=False)
