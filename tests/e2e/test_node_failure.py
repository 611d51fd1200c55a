"""A node whose agent stops answering (its process frozen with SIGSTOP, as
a hung machine): the node lifecycle controller marks it Unknown after the
grace period and its pods not ready, so a Service's traffic from the other
node goes only to the pods that still answer; ``get nodes`` says NotReady,
new pods go to the other node, and node and pods are Ready again once the
agent runs on.

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from netplane.api import meta, resources
from netplane.lab import processes
from tests.e2e.conftest import Lab, wait_for

pytestmark = pytest.mark.e2e

# node-monitor-grace-period (40 s) and a monitor period (5 s), with room.
NOT_READY_WITHIN = 90.0

# One pod per node (required anti-affinity on the hostname), a Service, and
# a client on node-1.
WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: echo
        image: netplane/echo
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers:
  - {name: shell, image: netplane/toolbox, command: [sleep, infinity]}
"""

PODS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: elsewhere}
spec:
  replicas: 2
  selector: {matchLabels: {app: elsewhere}}
  template:
    metadata: {labels: {app: elsewhere}}
    spec:
      containers: [{name: echo, image: netplane/echo}]
"""


def ready_status(lab: Lab, node: str) -> str:
    got = lab.api(lambda c: c.get(resources.NODE, node))
    return str((meta.condition(got, "Ready") or {}).get("status"))


def web_pods(lab: Lab) -> dict[str, dict[str, bool]]:
    """node -> pod name -> ready, for the web pods."""
    listed = lab.api(lambda c: c.list(resources.POD, "default", label_selector="app=web"))
    out: dict[str, dict[str, bool]] = {}
    for p in listed["items"]:
        node = str(p["spec"].get("nodeName") or "")
        out.setdefault(node, {})[meta.name(p)] = meta.pod_ready(p)
    return out


def ready_endpoints(lab: Lab) -> set[str]:
    got = lab.api(lambda c: c.get(resources.ENDPOINTS, "web", "default"))
    return {a["ip"] for s in got.get("subsets") or [] for a in s.get("addresses") or []}


@pytest.fixture
def serving(lab: Lab) -> Lab:
    """The web pods Ready on both nodes, and the client running."""
    lab.netplane("apply", "-f", "-", stdin=WEB)
    wait_for("a ready web pod on each node", lambda: sorted(
        (n, all(r.values())) for n, r in web_pods(lab).items()) == [
            ("node-1", True), ("node-2", True)], timeout=90)
    wait_for("the client running", lambda: lab.curl("client", "http://web").returncode == 0,
             timeout=60)
    return lab


@pytest.fixture
def frozen(serving: Lab) -> Iterator[int]:
    """node-2's agent, stopped; it always runs on again afterwards."""
    lab = serving
    pid = processes.alive(lab.paths.node_dir("node-2") / "agent.pid")
    assert pid, "node-2's agent is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_silent_node_turns_not_ready_and_back(lab: Lab, frozen: int) -> None:
    assert ready_status(lab, "node-1") == "True"
    wait_for("node-2 Unknown", lambda: ready_status(lab, "node-2") == "Unknown",
             timeout=NOT_READY_WITHIN)
    rows = {r.split()[0]: r.split()[1] for r in
            lab.netplane("get", "nodes").stdout.splitlines()[1:]}
    assert rows == {"node-1": "Ready", "node-2": "NotReady"}
    assert ready_status(lab, "node-1") == "True"  # its agent kept renewing

    # Its pod is marked not ready, its endpoint withdrawn: every answer now
    # comes from node-1's pod, whose node still works.
    wait_for("node-2's web pod not ready", lambda: not any(
        web_pods(lab)["node-2"].values()))
    (survivor,) = web_pods(lab)["node-1"]
    wait_for("one ready endpoint", lambda: len(ready_endpoints(lab)) == 1)
    for _ in range(10):
        out = lab.curl("client", "http://web")
        assert out.returncode == 0, out.stderr
        assert survivor in out.stdout

    lab.netplane("apply", "-f", "-", stdin=PODS)

    def placed() -> list[str]:
        listed = lab.api(lambda c: c.list(resources.POD, "default",
                                          label_selector="app=elsewhere"))
        return [str(p["spec"].get("nodeName") or "") for p in listed["items"]]

    wait_for("both pods placed", lambda: len([n for n in placed() if n]) == 2)
    assert set(placed()) == {"node-1"}

    os.kill(frozen, signal.SIGCONT)
    wait_for("node-2 Ready again", lambda: ready_status(lab, "node-2") == "True",
             timeout=60)
    wait_for("node-2's web pod ready again", lambda: all(web_pods(lab)["node-2"].values()),
             timeout=60)
    wait_for("two ready endpoints", lambda: len(ready_endpoints(lab)) == 2)
