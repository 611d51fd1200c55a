"""The scheduler in a three-node lab, driven with the real kubectl: taints
keep pods off nodes and a toleration lets one on; required anti-affinity
spreads replicas one per node and leaves the rest Pending with
kube-scheduler's words; a pod asking for more CPU than any node has free
waits until a pod holding CPU goes; a host port is taken once per node and
answers on the node's address.

Address plan: the lab's defaults (underlay 192.168.56.0/24, node-N at
192.168.56.1N, pods 10.244.N.0/24)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from netplane.api import quantity
from tests.e2e.conftest import Lab, started_lab, wait_for
from tests.e2e.test_kubectl_lab import Kubectl

pytestmark = pytest.mark.e2e

NODES = ("node-1", "node-2", "node-3")
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
# kube appends the preemption sentence, ended already, with one more full stop.


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with started_lab(nodes=3) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def kubectl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    yield Kubectl(lab, tmp_path_factory.mktemp("kubectl-home"))


@pytest.fixture
def applied(kubectl: Kubectl) -> Iterator[list[str]]:
    """Manifests a test applies; all deleted (and waited for) afterwards."""
    manifests: list[str] = []
    yield manifests
    for text in reversed(manifests):
        kubectl("delete", "--wait=true", "--ignore-not-found", "-f", "-", stdin=text,
                check=False)


def apply(kubectl: Kubectl, applied: list[str], text: str) -> None:
    text = textwrap.dedent(text)
    applied.append(text)
    kubectl("apply", "-f", "-", stdin=text)


def pods(kubectl: Kubectl, selector: str) -> list[Any]:
    return list(kubectl.json("get", "pods", "-l", selector)["items"])


def placed(kubectl: Kubectl, selector: str) -> list[str]:
    return sorted(str(p["spec"].get("nodeName") or "") for p in pods(kubectl, selector))


def unschedulable(kubectl: Kubectl, name: str) -> str:
    """The PodScheduled=False message of pod ``name``, or "" while it has none."""
    pod = kubectl.json("get", "pod", name)
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond["type"] == "PodScheduled" and cond["status"] == "False":
            assert cond["reason"] == "Unschedulable"
            return str(cond["message"])
    return ""


def pending_pod(kubectl: Kubectl, selector: str) -> str:
    unbound = [p["metadata"]["name"] for p in pods(kubectl, selector)
               if not p["spec"].get("nodeName")]
    return unbound[0] if len(unbound) == 1 else ""


def fit_message(kubectl: Kubectl, name: str, message: str) -> None:
    try:
        wait_for(f"{name} unschedulable", lambda: unschedulable(kubectl, name) == message,
                 timeout=60)
    except AssertionError:
        assert unschedulable(kubectl, name) == message  # shows what it says instead
    events = kubectl("get", "events", "--field-selector",
                     f"involvedObject.name={name},reason=FailedScheduling",
                     "-o", "jsonpath={.items[*].message}").stdout
    assert message in events


def test_taints_keep_pods_off_and_a_toleration_lets_one_on(
        kubectl: Kubectl, applied: list[str]) -> None:
    kubectl("taint", "nodes", "node-1", "node-2", "dedicated=infra:NoSchedule")
    try:
        apply(kubectl, applied, """\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: plain}
            spec:
              replicas: 2
              selector: {matchLabels: {app: plain}}
              template:
                metadata: {labels: {app: plain}}
                spec: {containers: [{name: echo, image: netplane/echo}]}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: tolerant, labels: {app: tolerant}}
            spec:
              nodeSelector: {kubernetes.io/hostname: node-1}
              tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]
              containers: [{name: echo, image: netplane/echo}]
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: picky, labels: {app: picky}}
            spec:
              nodeSelector: {kubernetes.io/hostname: node-1}
              containers: [{name: echo, image: netplane/echo}]
            """)
        wait_for("both plain pods placed", lambda: "" not in placed(kubectl, "app=plain")
                 and len(placed(kubectl, "app=plain")) == 2)
        assert placed(kubectl, "app=plain") == ["node-3", "node-3"]
        wait_for("the tolerant pod running", lambda: kubectl.json("get", "pod", "tolerant")[
            "status"].get("phase") == "Running", timeout=60)
        assert placed(kubectl, "app=tolerant") == ["node-1"]
        fit_message(kubectl, "picky", "0/3 nodes are available: 1 node(s) didn't match "
                    "Pod's node affinity/selector, 2 node(s) had untolerated taint "
                    f"{{dedicated: infra}}. preemption: 0/3 nodes are available: 3 {NOT_HELPFUL}..")
    finally:
        kubectl("taint", "nodes", "node-1", "node-2", "dedicated-", check=False)
    # The taint gone, the waiting pod goes where its selector says.
    wait_for("picky placed", lambda: placed(kubectl, "app=picky") == ["node-1"], timeout=60)


def test_required_anti_affinity_spreads_and_leaves_the_fourth_pending(
        kubectl: Kubectl, applied: list[str]) -> None:
    apply(kubectl, applied, """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: spread}
        spec:
          replicas: 4
          selector: {matchLabels: {app: spread}}
          template:
            metadata: {labels: {app: spread}}
            spec:
              affinity:
                podAntiAffinity:
                  requiredDuringSchedulingIgnoredDuringExecution:
                  - labelSelector: {matchLabels: {app: spread}}
                    topologyKey: kubernetes.io/hostname
              containers: [{name: echo, image: netplane/echo}]
        """)
    wait_for("three placed", lambda: len([n for n in placed(kubectl, "app=spread") if n]) == 3)
    assert sorted(n for n in placed(kubectl, "app=spread") if n) == list(NODES)
    name = wait_for("one pending", lambda: pending_pod(kubectl, "app=spread"))
    fit_message(kubectl, name, "0/3 nodes are available: 3 node(s) didn't match pod "
                f"anti-affinity rules. preemption: 0/3 nodes are available: 3 {NO_VICTIMS}..")


def test_insufficient_cpu_waits_until_a_pod_holding_cpu_goes(
        kubectl: Kubectl, applied: list[str]) -> None:
    # All lab nodes report the machine's CPUs: leave half a CPU free on each.
    free = min(quantity.quantity(kubectl.json("get", "node", n)["status"]["allocatable"]["cpu"])
               for n in NODES)
    hog = int(free * 1000) - 500
    apply(kubectl, applied, f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: hog}}
        spec:
          replicas: 3
          selector: {{matchLabels: {{app: hog}}}}
          template:
            metadata: {{labels: {{app: hog}}}}
            spec:
              containers:
              - {{name: echo, image: netplane/echo, resources: {{requests: {{cpu: {hog}m}}}}}}
        """)
    wait_for("a hog on each node", lambda: placed(kubectl, "app=hog") == list(NODES))
    apply(kubectl, applied, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: big, labels: {app: big}}
        spec:
          containers:
          - {name: echo, image: netplane/echo, resources: {requests: {cpu: "1"}}}
        """)
    fit_message(kubectl, "big", "0/3 nodes are available: 3 Insufficient cpu. "
                f"preemption: 0/3 nodes are available: 3 {NO_VICTIMS}..")
    kubectl("scale", "deployment", "hog", "--replicas=2")
    wait_for("two hogs", lambda: len(placed(kubectl, "app=hog")) == 2, timeout=90)
    (freed,) = set(NODES) - set(placed(kubectl, "app=hog"))
    wait_for("big placed", lambda: placed(kubectl, "app=big") == [freed], timeout=60)


def test_a_host_port_is_taken_once_per_node_and_answers_on_the_node(
        lab: Lab, kubectl: Kubectl, applied: list[str]) -> None:
    pod = """\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, labels: {{app: {name}}}}}
        spec:
          {where}
          containers:
          - name: echo
            image: netplane/echo
            ports: [{{containerPort: 8080, hostPort: 18080}}]
        """
    on_node_1 = "nodeSelector: {kubernetes.io/hostname: node-1}"
    apply(kubectl, applied, pod.format(name="hp-a", where=on_node_1))
    wait_for("hp-a running", lambda: kubectl.json("get", "pod", "hp-a")["status"].get(
        "phase") == "Running", timeout=60)
    apply(kubectl, applied, pod.format(name="hp-b", where=on_node_1))
    fit_message(kubectl, "hp-b", "0/3 nodes are available: 1 node(s) didn't have free ports "
                "for the requested pod ports, 2 node(s) didn't match Pod's node "
                f"affinity/selector. preemption: 0/3 nodes are available: 1 {NO_VICTIMS}, "
                f"2 {NOT_HELPFUL}..")
    # Free to go anywhere, the same port lands on another node.
    apply(kubectl, applied, pod.format(name="hp-c", where="schedulerName: default-scheduler"))
    wait_for("hp-c placed", lambda: placed(kubectl, "app=hp-c") != [""])
    assert placed(kubectl, "app=hp-c") != ["node-1"]

    apply(kubectl, applied, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: client}
        spec:
          nodeName: node-2
          containers:
          - {name: shell, image: netplane/toolbox, command: [sleep, infinity]}
        """)
    node_1 = lab.paths.node_ip("node-1")
    answered = wait_for("hp-a answering on node-1's address", lambda: (
        out := lab.curl("client", f"http://{node_1}:18080")).returncode == 0 and out.stdout,
        timeout=60)
    assert "hp-a" in answered


def test_kubectl_drain_waits_on_a_budget_then_moves_the_pod(
        kubectl: Kubectl, applied: list[str]) -> None:
    apply(kubectl, applied, """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: guarded}
        spec:
          replicas: 2
          selector: {matchLabels: {app: guarded}}
          template:
            metadata: {labels: {app: guarded}}
            spec:
              affinity:
                podAntiAffinity:
                  requiredDuringSchedulingIgnoredDuringExecution:
                  - labelSelector: {matchLabels: {app: guarded}}
                    topologyKey: kubernetes.io/hostname
              containers:
              - name: echo
                image: netplane/echo
                readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
        ---
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: everywhere}
        spec:
          selector: {matchLabels: {app: everywhere}}
          template:
            metadata: {labels: {app: everywhere}}
            spec: {containers: [{name: echo, image: netplane/echo}]}
        ---
        apiVersion: policy/v1
        kind: PodDisruptionBudget
        metadata: {name: guarded}
        spec:
          minAvailable: 2
          selector: {matchLabels: {app: guarded}}
        """)
    wait_for("the budget counting two healthy pods", lambda: kubectl.json(
        "get", "pdb", "guarded").get("status", {}).get("currentHealthy") == 2, timeout=90)
    node = placed(kubectl, "app=guarded")[0]
    try:
        blocked = kubectl("drain", node, "--ignore-daemonsets", "--timeout=12s", check=False)
        assert blocked.returncode != 0
        assert "Cannot evict pod as it would violate the pod's disruption budget." in \
            blocked.stderr
        assert node in placed(kubectl, "app=guarded")  # still there
        kubectl("patch", "pdb", "guarded", "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
        wait_for("room in the budget", lambda: kubectl.json("get", "pdb", "guarded").get(
            "status", {}).get("disruptionsAllowed") == 1, timeout=60)
        wait_for("a daemon pod on every node", lambda: placed(kubectl, "app=everywhere")
                 == list(NODES), timeout=90)
        without = kubectl("drain", node, "--timeout=30s", check=False)
        assert without.returncode != 0 and "cannot delete DaemonSet-managed Pods" in \
            without.stderr
        drained = kubectl("drain", node, "--ignore-daemonsets", "--timeout=90s")
        assert f"node/{node} drained" in drained.stdout
        assert "ignoring DaemonSet-managed Pods" in drained.stderr
        assert node in placed(kubectl, "app=everywhere")  # daemons stay
        wait_for("the pod replaced on the node left", lambda: len(
            [n for n in placed(kubectl, "app=guarded") if n]) == 2 and node not in placed(
            kubectl, "app=guarded"), timeout=90)
    finally:
        kubectl("uncordon", node, check=False)


def test_a_high_priority_pod_preempts_a_low_one(kubectl: Kubectl,
                                                applied: list[str]) -> None:
    free = min(quantity.quantity(kubectl.json("get", "node", n)["status"]["allocatable"]["cpu"])
               for n in NODES)
    filler = int(free * 1000) - 500
    apply(kubectl, applied, f"""\
        apiVersion: scheduling.k8s.io/v1
        kind: PriorityClass
        metadata: {{name: e2e-urgent}}
        value: 1000
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: filler}}
        spec:
          replicas: 3
          selector: {{matchLabels: {{app: filler}}}}
          template:
            metadata: {{labels: {{app: filler}}}}
            spec:
              terminationGracePeriodSeconds: 2
              containers:
              - {{name: echo, image: netplane/echo, resources: {{requests: {{cpu: {filler}m}}}}}}
        """)
    wait_for("a filler on each node", lambda: placed(kubectl, "app=filler") == list(NODES))
    before = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods(kubectl, "app=filler")}
    apply(kubectl, applied, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: urgent, labels: {app: urgent}}
        spec:
          priorityClassName: e2e-urgent
          containers:
          - {name: echo, image: netplane/echo, resources: {requests: {cpu: "1"}}}
        """)
    running = wait_for("urgent running", lambda: (p := kubectl.json("get", "pod", "urgent"))[
        "status"].get("phase") == "Running" and p, timeout=90)
    assert running["spec"]["priority"] == 1000
    node = running["spec"]["nodeName"]
    assert running["status"]["nominatedNodeName"] == node
    wide = kubectl("get", "pod", "urgent", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-5:] == ["NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    assert wide[1].split()[-3:] == [node, node, "<none>"]
    (victim,) = [name for name, n in before.items() if n == node]
    events = kubectl("get", "events", "--field-selector",
                     f"involvedObject.name={victim},reason=Preempted",
                     "-o", "jsonpath={.items[*].message}").stdout
    assert f"Preempted by pod {running['metadata']['uid']} on node {node}" in events
    # Its replacement, of no higher priority than the others, waits.
    replacement = wait_for("the replacement pending", lambda: pending_pod(kubectl, "app=filler"))
    fit_message(kubectl, replacement, "0/3 nodes are available: 3 Insufficient cpu. "
                f"preemption: 0/3 nodes are available: 3 {NO_VICTIMS}..")


def test_explain_schedule_shows_each_nodes_verdict_and_scores(
        lab: Lab, kubectl: Kubectl, applied: list[str]) -> None:
    kubectl("taint", "nodes", "node-1", "e2e=why:NoSchedule")
    try:
        apply(kubectl, applied, """\
            apiVersion: v1
            kind: Pod
            metadata: {name: why, labels: {app: why}}
            spec:
              containers:
              - {name: echo, image: netplane/echo, resources: {requests: {cpu: 100m}}}
            """)
        wait_for("why placed", lambda: placed(kubectl, "app=why") != [""])
        (node,) = placed(kubectl, "app=why")
        out = lab.netplane("explain-schedule", "why").stdout.splitlines()
        assert out[0] == f"pod default/why: priority 0, profile default-scheduler, bound to " \
                         f"{node} (judged again as if pending now)"
        text = "\n".join(out)
        assert "node-1  rejected by TaintToleration: node(s) had untolerated taint " \
               "{e2e: why}" in text
        assert f"{node}  fits, total" in text and "<- chosen" in text
        assert "NodeResourcesFit" in text
        assert out[-1].startswith(f"decision: {node} (")
    finally:
        kubectl("taint", "nodes", "node-1", "e2e-", check=False)


PACKER = """\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  pluginConfig:
  - name: NodeResourcesFit
    args: {scoringStrategy: {type: MostAllocated}}
  plugins:
    score:
      disabled: [{name: NodeResourcesBalancedAllocation}, {name: PodTopologySpread}]
"""


def test_a_second_profile_from_lab_up_scheduler_config_packs_pods(
        lab: Lab, kubectl: Kubectl, applied: list[str], tmp_path: Any) -> None:
    config = tmp_path / "scheduler.yaml"
    config.write_text(PACKER)
    lab.netplane("lab", "up", "--nodes", "3", "--scheduler-config", str(config), timeout=120)
    for name in ("pack-a", "pack-b"):
        apply(kubectl, applied, f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: {name}, labels: {{app: packed}}}}
            spec:
              schedulerName: packer
              containers:
              - {{name: echo, image: netplane/echo, resources: {{requests: {{cpu: 200m}}}}}}
            """)
        wait_for(f"{name} placed", lambda: "" not in placed(kubectl, "app=packed"))
    where = placed(kubectl, "app=packed")
    assert len(set(where)) == 1  # MostAllocated puts the second beside the first
    events = kubectl("get", "events", "--field-selector",
                     "involvedObject.name=pack-b,reason=Scheduled",
                     "-o", "jsonpath={.items[*].source.component}").stdout
    assert events.split() == ["packer"]
