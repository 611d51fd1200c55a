"""A worker fails as a machine would (``lab stop``: its agent and pods
frozen, its link down) and comes back (``lab start``), in a lab with short
timings (``--node-grace 10 --toleration-seconds 20``) grown from two
workers to three by a second ``lab up``. While node-2 is gone: its
endpoints are withdrawn, so Service traffic from a client on node-1 keeps
succeeding; it is NotReady with the unreachable NoExecute taint; its pods
are evicted by the taint eviction controller when their default toleration
runs out and replaced on the other nodes, the Deployment ready again. Once
back: Ready, untainted, no duplicate pods, the old pods' processes gone.

Address plan: the lab's defaults (underlay 192.168.56.0/24, node-N pods
10.244.N.0/24)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from netplane.api import meta, resources
from netplane.lab import failure
from netplane.net import netns
from netplane.node.pods import pod_netns_name
from tests.e2e.conftest import Lab, started_lab, wait_for

pytestmark = pytest.mark.e2e

GRACE, TOLERATION = 10, 20
UNREACHABLE = "node.kubernetes.io/unreachable"

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
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


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with started_lab(2, "--node-grace", str(GRACE),
                     "--toleration-seconds", str(TOLERATION)) as the_lab:
        # Grown to three workers by another ``up`` on the running lab.
        the_lab.netplane("lab", "up", "--nodes", "3", timeout=120)
        yield the_lab


def web_pods(lab: Lab) -> list[dict[str, object]]:
    listed = lab.api(lambda c: c.list(resources.POD, "default", label_selector="app=web"))
    return list(listed["items"])


def ready_web_pods(lab: Lab) -> list[str]:
    return [meta.name(p) for p in web_pods(lab)
            if meta.pod_ready(p) and not meta.is_deleting(p)]


def endpoint_ips(lab: Lab) -> set[str]:
    got = lab.api(lambda c: c.get(resources.ENDPOINTS, "web", "default"))
    return {a["ip"] for s in got.get("subsets") or [] for a in s.get("addresses") or []}


def node_row(lab: Lab, node: str) -> str:
    rows = {r.split()[0]: r.split()[1] for r in
            lab.netplane("get", "nodes").stdout.splitlines()[1:]}
    return rows[node]


def taints(lab: Lab, node: str) -> list[dict[str, str]]:
    out = lab.netplane("get", "node", node, "-o", "json").stdout
    return list(json.loads(out)["spec"].get("taints") or [])


def deployment_ready(lab: Lab) -> int:
    got = lab.api(lambda c: c.get(resources.DEPLOYMENT, "web", "default"))
    return int((got.get("status") or {}).get("readyReplicas") or 0)


def eviction_events(lab: Lab) -> set[str]:
    listed = lab.api(lambda c: c.list(resources.EVENT, "default"))
    return {e["message"] for e in listed["items"] if e["reason"] == "TaintManagerEviction"}


def test_a_stopped_node_s_pods_are_replaced_and_it_comes_back_clean(lab: Lab) -> None:
    lab.netplane("apply", "-f", "-", stdin=WEB)
    wait_for("four ready web pods", lambda: len(ready_web_pods(lab)) == 4, timeout=90)
    wait_for("the client answered", lambda: lab.curl("client", "http://web").returncode == 0,
             timeout=60)
    on_node_2 = {meta.name(p): meta.uid(p) for p in web_pods(lab)
                 if p["spec"]["nodeName"] == "node-2"}
    assert on_node_2, "the scheduler spread no web pod onto node-2"
    node_2_ips = {p["status"]["podIP"] for p in web_pods(lab)
                  if p["spec"]["nodeName"] == "node-2"}

    lab.netplane("lab", "stop", "node-2")
    try:
        wait_for("node-2 NotReady", lambda: node_row(lab, "node-2") == "NotReady",
                 timeout=GRACE + 30)
        unreachable = [t for t in taints(lab, "node-2") if t["key"] == UNREACHABLE]
        assert {t["effect"] for t in unreachable} == {"NoExecute", "NoSchedule"}
        assert all(t.get("timeAdded") for t in unreachable)
        assert node_row(lab, "node-1") == node_row(lab, "node-3") == "Ready"

        # Its endpoints withdrawn, every request is answered by the others.
        wait_for("node-2's endpoints withdrawn", lambda: not endpoint_ips(lab) & node_2_ips)
        for _ in range(5):
            out = lab.curl("client", "http://web")
            assert out.returncode == 0, out.stderr
            assert not any(name in out.stdout for name in on_node_2)

        # After their toleration, evicted and replaced elsewhere.
        wait_for("node-2's pods evicted", lambda: all(
            meta.is_deleting(p) for p in web_pods(lab) if meta.name(p) in on_node_2),
            timeout=TOLERATION + 30)
        evicted = [p for p in web_pods(lab) if meta.name(p) in on_node_2]
        for p in evicted:
            target = meta.condition(p, "DisruptionTarget") or {}
            assert (target.get("status"), target.get("reason")) == \
                ("True", "DeletionByTaintManager")
        assert {f"Marking for deletion Pod default/{n}" for n in on_node_2} <= \
            eviction_events(lab)
        wait_for("the Deployment ready again", lambda: deployment_ready(lab) == 4, timeout=60)
        assert {p["spec"]["nodeName"] for p in web_pods(lab) if not meta.is_deleting(p)} <= \
            {"node-1", "node-3"}
        for _ in range(5):
            assert lab.curl("client", "http://web").returncode == 0
    finally:
        lab.netplane("lab", "start", "node-2", timeout=120)

    assert node_row(lab, "node-2") == "Ready"
    wait_for("node-2's taints gone", lambda: not taints(lab, "node-2"))
    wait_for("the old pods gone", lambda: not {meta.name(p) for p in web_pods(lab)} & set(
        on_node_2), timeout=60)
    assert len(web_pods(lab)) == 4 and len(ready_web_pods(lab)) == 4
    for uid in on_node_2.values():
        ns = pod_netns_name(lab.paths.prefix, uid)
        assert not netns.exists(ns) or not netns.pids(ns)
    assert failure.stopped(lab.paths, "node-2") is None


def test_a_killed_node_back_in_time_keeps_its_pods(lab: Lab) -> None:
    """``lab stop --kill``: agent and containers killed. Started again before
    the pods' toleration runs out, the new agent takes the node's pods
    back (their containers started again) and the pending evictions are
    cancelled: the same four pods, none twice."""
    wait_for("four ready web pods", lambda: len(ready_web_pods(lab)) == 4, timeout=90)
    counts: dict[str, int] = {}
    for p in web_pods(lab):
        counts[p["spec"]["nodeName"]] = counts.get(p["spec"]["nodeName"], 0) + 1
    node = max(sorted(n for n in counts if n != "node-1"), key=lambda n: counts[n])
    before = {meta.name(p): meta.uid(p) for p in web_pods(lab)}
    kept = sorted(meta.name(p) for p in web_pods(lab) if p["spec"]["nodeName"] == node)

    lab.netplane("lab", "stop", node, "--kill")
    try:
        assert failure.stopped(lab.paths, node) is failure.StopMode.KILL
        wait_for(f"{node} NotReady", lambda: node_row(lab, node) == "NotReady",
                 timeout=GRACE + 30)
    finally:
        lab.netplane("lab", "start", node, timeout=120)

    assert node_row(lab, node) == "Ready"
    wait_for(f"{node}'s pods ready again", lambda: len(ready_web_pods(lab)) == 4, timeout=60)
    assert {meta.name(p): meta.uid(p) for p in web_pods(lab)} == before
    wait_for(f"{node}'s taints gone", lambda: not taints(lab, node))
    assert {f"Cancelling deletion of Pod default/{n}" for n in kept} <= eviction_events(lab)
