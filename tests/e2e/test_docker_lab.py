"""A lab on the docker runtime (``lab up --runtime docker``: a Docker Engine
per node, in the node's namespace), driven by the real kubectl: the
walking skeleton (echo replicas behind a Service, curled by name from a
pod on the other node), exec, logs, a liveness restart, an OOM kill, a
missing image in ErrImagePull then ImagePullBackOff, images in the node's
status, the isolation experiment (a 500m-limited stressor's CPU from
its cgroup, a serving neighbour), volumes (an emptyDir two containers
share, a ConfigMap and a Secret as files), port-forward, and stdin through
attach and ``kubectl run -i``: the process runtime's tests, on docker.

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24 on node-N, Services 10.96.0.0/12, cluster DNS 10.96.0.10)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netplane.api import meta
from netplane.node.runtime.dockerd import DOCKER_DIR, Engine
from tests.e2e.conftest import EXAMPLES, Lab, started_lab, wait_for
from tests.e2e.test_kubectl_lab import KUBECTL, Kubectl
from tests.e2e.test_pod_streams import READER, answers, curl, forwarded, run_interactive
from tests.e2e.test_pod_volumes_lab import POD as SHARING
from tests.e2e.test_pod_volumes_lab import sh

pytestmark = pytest.mark.e2e
if not os.access(KUBECTL, os.X_OK) or shutil.which("dockerd") is None:
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason="needs kubectl and dockerd")]

LIVENESS = """\
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  containers:
  - name: web
    image: netplane/echo
    ports: [{containerPort: 8080}]
    livenessProbe:
      httpGet: {path: /, port: 9999}  # nothing listens there
      periodSeconds: 1
      failureThreshold: 2
"""

HOG = """\
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: busybox
    command: ["sh", "-c", "head -c 200m /dev/zero | tail"]
    resources: {limits: {memory: 64Mi}}
"""

NOISY = """\
apiVersion: v1
kind: Pod
metadata: {name: noisy}
spec:
  nodeName: node-1
  containers:
  - name: stress
    image: busybox
    command: ["sh", "-c", "while :; do :; done"]
    resources: {limits: {cpu: 500m}}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with started_lab(2, "--runtime", "docker") as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def kubectl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    yield Kubectl(lab, tmp_path_factory.mktemp("kubectl-home"))


@pytest.fixture(scope="module")
def web(kubectl: Kubectl) -> Kubectl:
    kubectl("apply", "-f", str(EXAMPLES / "web.yaml"), "-f", str(EXAMPLES / "client.yaml"))
    kubectl("rollout", "status", "deploy/web", "--timeout=120s")
    wait_for("the client pod", lambda: meta.pod_ready(kubectl.json("get", "pod", "client")),
             timeout=120)
    return kubectl


def pod(kubectl: Kubectl, name: str) -> Any:
    return kubectl.json("get", "pod", name)


def container_status(kubectl: Kubectl, name: str) -> Any:
    statuses = (pod(kubectl, name).get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def test_nodes_run_docker_and_list_their_images(kubectl: Kubectl) -> None:
    nodes = kubectl.json("get", "nodes")["items"]
    assert all(n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
               for n in nodes)
    names = {name for n in nodes for image in n["status"].get("images") or []
             for name in image["names"]}
    assert {"busybox:latest", "netplane/echo:latest", "netplane/toolbox:latest"} <= names
    wide = kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    assert "CONTAINER-RUNTIME" in wide[0] and "docker://" in wide[1]


def test_a_service_answers_by_name_from_the_other_node(web: Kubectl) -> None:
    client = pod(web, "client")
    backends = {p["spec"]["nodeName"] for p in web.json("get", "pods", "-l", "app=web")["items"]}
    assert backends == {"node-1", "node-2"}
    answered = set()
    for _ in range(30):
        out = web("exec", "client", "--", "curl", "-sS", "--max-time", "5",
                  "http://web.default.svc.cluster.local").stdout
        assert out.startswith("pod=web-")
        answered.add(out.split(" node=")[1].split()[0])
    assert len(answered) == 2, answered
    assert client["status"]["containerStatuses"][0]["containerID"].startswith("docker://")


def test_exec_and_logs_reach_the_container(web: Kubectl) -> None:
    assert "nameserver 10.96.0.10" in web("exec", "client", "--", "cat",
                                          "/etc/resolv.conf").stdout
    assert web("exec", "client", "--", "hostname").stdout.strip() == "client"
    # The image's own filesystem: busybox's, not the node's.
    assert "BusyBox" in web("exec", "client", "--", "sh", "-c", "ls --help 2>&1").stdout
    logs = web("logs", "deploy/web").stdout
    assert "listening on 0.0.0.0:8080" in logs


def test_a_failing_liveness_probe_restarts_the_container(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=LIVENESS)
    st = wait_for("a restart", lambda: (s := container_status(kubectl, "flaky")).get(
        "restartCount", 0) >= 1 and s, timeout=120)
    assert "finishedAt" in st["lastState"]["terminated"]  # stopped, then started again
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=flaky",
                     "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "Unhealthy" in events and "Killing" in events


def test_a_pod_over_its_memory_limit_is_oom_killed(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=HOG)
    st = wait_for("the hog's end", lambda: (s := container_status(kubectl, "hog")).get(
        "state", {}).get("terminated") and s, timeout=120)
    assert (st["state"]["terminated"]["exitCode"], st["state"]["terminated"]["reason"]) == \
        (137, "OOMKilled")
    assert pod(kubectl, "hog")["status"]["phase"] == "Failed"


def test_a_missing_image_is_err_image_pull_then_back_off(kubectl: Kubectl) -> None:
    kubectl("run", "nginx", "--image=nginx:1.27", "--restart=Never")
    reasons = set()

    def waiting() -> Any:
        reason = container_status(kubectl, "nginx").get("state", {}).get(
            "waiting", {}).get("reason")
        if reason:
            reasons.add(reason)
        return "ImagePullBackOff" in reasons and reason
    wait_for("ImagePullBackOff", waiting, timeout=120)
    assert reasons <= {"ContainerCreating", "ErrImagePull", "ImagePullBackOff"}
    said = [(e["reason"], e["message"]) for e in kubectl.json(
        "get", "events", "--field-selector", "involvedObject.name=nginx")["items"]]
    assert ("Pulling", 'Pulling image "nginx:1.27"') in said
    assert any(r == "Failed" and m.startswith('Failed to pull image "nginx:1.27": ')
               for r, m in said)
    assert ("Failed", "Error: ErrImagePull") in said
    assert ("BackOff", 'Back-off pulling image "nginx:1.27"') in said
    assert ("Failed", "Error: ImagePullBackOff") in said


def test_a_cpu_limit_holds_a_busy_loop_to_half_a_cpu(kubectl: Kubectl, lab: Lab) -> None:
    kubectl("apply", "-f", "-", stdin=NOISY)
    wait_for("the stressor", lambda: container_status(kubectl, "noisy").get(
        "state", {}).get("running"), timeout=120)
    path = "/api/v1/nodes/node-1/proxy/metrics/cadvisor"

    def cpu() -> tuple[float, float]:
        text = kubectl("get", "--raw", path).stdout
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "container_cpu_usage_seconds_total" and \
                        sample.labels.get("pod") == "noisy" and \
                        sample.labels.get("container") == "stress":
                    return float(sample.value), time.monotonic()
        raise AssertionError(f"no CPU figure of the stressor in {path}")
    first = cpu()
    # Six seconds at its limit: the figures' own lag is small beside them.
    last = wait_for("3 s of its CPU", lambda: (c := cpu())[0] - first[0] >= 3.0 and c,
                    timeout=120)
    share = (last[0] - first[0]) / (last[1] - first[1])
    assert share <= 0.55, share


def test_an_imported_image_runs_on_every_node(kubectl: Kubectl, lab: Lab,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    # A `docker save` tarball of an image no node has: the echo image renamed.
    engine = Engine(state=lab.paths.node_dir("node-1") / DOCKER_DIR, netns=None)
    tarball = tmp_path_factory.mktemp("images") / "shop-echo.tar"
    with contextlib.closing(engine.client()) as c:
        c.tag("netplane/echo:1.0", "example.com/shop/echo", "2.0")
        tarball.write_bytes(b"".join(c.get_image("example.com/shop/echo:2.0")))
        c.remove_image("example.com/shop/echo:2.0")
    out = lab.netplane("image", "import", "--all", str(tarball)).stdout.splitlines()
    assert out == [f"node-{n}: Loaded image: example.com/shop/echo:2.0" for n in (1, 2)]
    kubectl("run", "imported", "--image=example.com/shop/echo:2.0", "--restart=Never",
            "--overrides", '{"spec": {"nodeName": "node-2"}}')
    wait_for("the imported image running", lambda: container_status(kubectl, "imported").get(
        "state", {}).get("running"), timeout=120)


@pytest.fixture(scope="module")
def sharing(kubectl: Kubectl) -> Kubectl:
    """The process runtime's pod of shared volumes, with a Secret mounted
    too; its writer makes no shared memory segment (the busybox image has
    no ipcmk)."""
    kubectl("create", "configmap", "game", "--from-literal=level=1", "--from-literal=mode=easy")
    kubectl("create", "secret", "generic", "db", "--from-literal=password=s3cret")
    manifest = copy.deepcopy(SHARING)
    manifest["spec"]["volumes"].append({"name": "creds", "secret": {"secretName": "db"}})
    writer, reader = manifest["spec"]["containers"]
    writer["command"] = ["sh", "-c", "echo hi > /data/greeting && while :; do sleep 1; done"]
    reader["volumeMounts"].append({"name": "creds", "mountPath": "/etc/creds"})
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    kubectl("wait", "--for=condition=Ready", "pod/sharing", "--timeout=80s")
    return kubectl


def test_volumes_an_empty_dir_shared_a_configmap_and_a_secret(sharing: Kubectl) -> None:
    assert wait_for("the greeting", lambda: sh(sharing, "reader", "cat /shared/greeting "
                                               "2>/dev/null || true") == "hi\n", timeout=30)
    assert sh(sharing, "writer", "echo back > /data/reply; cat /data/greeting") == "hi\n"
    assert sh(sharing, "reader", "cat /shared/reply") == "back\n"
    assert sh(sharing, "reader", "cat /etc/game/level /etc/game/mode") == "1easy"
    assert sh(sharing, "reader", "cat /etc/creds/password") == "s3cret"
    assert sh(sharing, "writer", "df -k /fast | tail -1").split()[:2] == ["tmpfs", "8192"]
    denied = sharing("exec", "sharing", "-c", "reader", "--", "touch", "/etc/creds/x",
                     check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr


def test_port_forward_to_a_docker_pod(web: Kubectl) -> None:
    with forwarded(web.env, "deploy/web", 8080) as address:
        for path in ("/", "/again"):
            assert curl(address, path).startswith("pod=web-")


def test_attach_sends_stdin_to_a_docker_container(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps(READER))
    kubectl("wait", "--for=condition=Ready", "pod/reader", "--timeout=80s")
    answers(kubectl.env, "attach", "-i", "reader", line="ping", answer="got ping")
    # Its stdin stays open for the next session (the container runs on).
    answers(kubectl.env, "attach", "-i", "reader", line="pong", answer="got pong")


def test_run_interactive_on_docker(kubectl: Kubectl) -> None:
    try:
        # stdinOnce (the engine's StdinOnce): the input's end ends it all.
        assert "answer from asker" in run_interactive(
            kubectl.env, "asker", "echo answer from $(hostname)\n")
    finally:
        kubectl("delete", "pod", "asker", "--ignore-not-found", "--wait=false")
