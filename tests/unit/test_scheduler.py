"""Scheduling decisions over plain objects: filters with reasons (node
selectors, required node affinity, taints and tolerations), scores."""

from __future__ import annotations

import dataclasses

import pytest

from netplane.api import meta, scheduling
from netplane.api.meta import Obj
from netplane.cluster.controllers import nodetaints
from netplane.cluster.scheduler import plugins
from netplane.cluster.scheduler.framework import schedule
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo, snapshot
from netplane.cluster.scheduler.profiles import default_profile
from netplane.cluster.scheduler.volumes import VolumeBinding

ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "pods": "110"}


def node(name: str, *, ready: bool = True, labels: dict[str, str] | None = None,
         unschedulable: bool = False) -> Obj:
    """A node with the taints the node lifecycle controller gives it."""
    n: Obj = {"metadata": {"name": name, "labels": labels or {}},
              "spec": {"unschedulable": unschedulable},
              "status": {"allocatable": dict(ALLOCATABLE),
                         "conditions": [{"type": "Ready",
                                         "status": "True" if ready else "False"}]}}
    n["spec"]["taints"] = nodetaints.reconciled(n, "2026-01-01T00:00:00Z") or []
    return n


def with_pods(n: Obj, count: int) -> NodeInfo:
    """The node running ``count`` pods that request nothing."""
    return NodeInfo(n, [PodInfo.of({"metadata": {"name": f"{meta.name(n)}-{i}",
                                                 "namespace": "default", "uid": f"u{i}"},
                                    "spec": {"containers": [{"name": "c"}]}})
                        for i in range(count)])


def pod(selector: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeSelector": selector or {}, "containers": [{"name": "c"}]}}


def decide(p: Obj, infos: list[NodeInfo]) -> tuple[str | None, str]:
    d = schedule(p, infos, default_profile())
    return d.node, d.message


def test_the_least_allocated_node_wins() -> None:
    # Pods that request nothing still count (100m, 200Mi) when ranking.
    infos = [with_pods(node("node-1"), 3), with_pods(node("node-2"), 1),
             with_pods(node("node-3"), 2)]
    assert decide(pod(), infos)[0] == "node-2"


def test_ties_go_to_the_first_name() -> None:
    assert decide(pod(), [NodeInfo(node("node-2")), NodeInfo(node("node-1"))])[0] \
        == "node-1"


def test_not_ready_and_unschedulable_nodes_are_filtered_with_reasons() -> None:
    infos = [NodeInfo(node("a", ready=False)), NodeInfo(node("b", unschedulable=True))]
    name, message = decide(pod(), infos)
    assert name is None
    assert message == ("0/2 nodes are available: 1 node(s) had untolerated taint "
                       "{node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable. "
                       "preemption: 0/2 nodes are available: "
                       "2 Preemption is not helpful for scheduling..")


def test_node_selector() -> None:
    infos = [NodeInfo(node("a")), with_pods(node("b", labels={"disk": "ssd"}), 5)]
    assert decide(pod({"disk": "ssd"}), infos)[0] == "b"
    assert decide(pod({"disk": "nvme"}), infos)[0] is None


def test_no_nodes() -> None:
    assert decide(pod(), []) == (None, "no nodes available to schedule pods")


def with_affinity(p: Obj, *terms: Obj) -> Obj:
    p["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}
    return p


def test_match_fields_on_the_node_name_pins_a_pod_as_daemon_pods_are_pinned() -> None:
    infos = [NodeInfo(node("node-1")), with_pods(node("node-2"), 9)]
    pinned = with_affinity(pod(), {"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["node-2"]}]})
    assert decide(pinned, infos)[0] == "node-2"
    gone = with_affinity(pod(), {"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["node-9"]}]})
    assert decide(gone, infos) == (None, "0/2 nodes are available: 2 node(s) didn't match "
                                         "Pod's node affinity/selector. preemption: 0/2 nodes "
                                         "are available: 2 Preemption is not helpful for "
                                         "scheduling..")
    not_one = with_affinity(pod(), {"matchFields": [
        {"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]})
    assert decide(not_one, infos)[0] == "node-2"


@pytest.mark.parametrize(("term", "fits"), [
    ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
     ["n-a", "n-b"]),
    ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]},
     ["n-b", "n-none"]),
    ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, ["n-a", "n-b"]),
    ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, ["n-none"]),
    ({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}, ["n-b"]),
    ({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}, ["n-a"]),
    # Expressions and fields of one term must all hold.
    ({"matchExpressions": [{"key": "zone", "operator": "Exists"}],
      "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n-b"]}]}, ["n-b"]),
    ({}, []),  # an empty term matches no node
    ({"matchFields": [{"key": "spec.podCIDR", "operator": "In", "values": ["x"]}]}, []),
])
def test_required_node_affinity_terms(term: Obj, fits: list[str]) -> None:
    nodes = [node("n-a", labels={"zone": "a", "cores": "2"}),
             node("n-b", labels={"zone": "b", "cores": "8"}), node("n-none")]
    p = with_affinity(pod(), term)
    assert [meta.name(n) for n in nodes if plugins.NodeAffinity().filter(
        {}, p, NodeInfo(n)).ok] == fits


def test_any_term_may_match_and_node_selector_still_applies() -> None:
    infos = [NodeInfo(node("a", labels={"zone": "a"})),
             NodeInfo(node("b", labels={"zone": "b", "disk": "ssd"}))]
    p = with_affinity(pod({"disk": "ssd"}),
                      {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                      {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]})
    assert decide(p, infos)[0] == "b"


def tainted(name: str, *taints: Obj) -> Obj:
    n = node(name)
    n["spec"]["taints"] = list(taints)
    return n


def test_taints_keep_off_pods_that_do_not_tolerate_them() -> None:
    gpu = {"key": "gpu", "value": "yes", "effect": "NoSchedule"}
    infos = [NodeInfo(tainted("a", gpu)),
             with_pods(tainted("b", {"key": "x", "effect": "PreferNoSchedule"}), 5)]
    assert decide(pod(), infos)[0] == "b"  # PreferNoSchedule does not filter
    p = pod()
    p["spec"]["tolerations"] = [{"key": "gpu", "operator": "Equal", "value": "yes"}]
    assert decide(p, infos)[0] == "a"
    only = [NodeInfo(tainted("a", gpu))]
    assert decide(pod(), only) == (None, "0/1 nodes are available: 1 node(s) had untolerated "
                                         "taint {gpu: yes}. preemption: 0/1 nodes are "
                                         "available: 1 Preemption is not helpful for "
                                         "scheduling..")


def test_cordoned_and_not_ready_nodes_take_pods_that_tolerate_their_taints() -> None:
    daemon = pod()
    daemon["spec"]["tolerations"] = [
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
         "effect": "NoSchedule"}]
    assert decide(daemon, [NodeInfo(node("a", unschedulable=True))])[0] == "a"
    # DaemonSet pods tolerate not-ready only for NoExecute: not scheduled there.
    daemon["spec"]["tolerations"].append(
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"})
    assert decide(daemon, [NodeInfo(node("b", ready=False))])[0] is None
    daemon["spec"]["tolerations"].append({"operator": "Exists"})  # tolerates everything
    assert decide(daemon, [NodeInfo(node("b", ready=False))])[0] == "b"


@pytest.mark.parametrize(("toleration", "taint", "tolerated"), [
    ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
     {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
    ({"key": "k", "value": "v"}, {"key": "k", "value": "w", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "w", "effect": "NoSchedule"},
     True),
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"},
     {"key": "k", "effect": "NoSchedule"}, False),
    ({"operator": "Exists"}, {"key": "any", "effect": "NoExecute"}, True),
    ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, False),
])
def test_tolerates(toleration: Obj, taint: Obj, tolerated: bool) -> None:
    assert scheduling.tolerates(toleration, taint) is tolerated


def test_condition_taints_stand_in_for_the_node_lifecycle_controller() -> None:
    def keys(n: Obj) -> list[str]:
        return [t["key"] for t in scheduling.condition_taints(n)]
    assert keys(node("a")) == []
    assert keys(node("a", ready=False)) == ["node.kubernetes.io/not-ready"]
    assert keys({"metadata": {"name": "new"}}) == ["node.kubernetes.io/not-ready"]
    unknown = node("a")
    unknown["status"]["conditions"][0]["status"] = "Unknown"
    assert keys(unknown) == ["node.kubernetes.io/unreachable"]
    pressed = node("a", unschedulable=True)
    pressed["status"]["conditions"].append({"type": "MemoryPressure", "status": "True"})
    assert keys(pressed) == ["node.kubernetes.io/memory-pressure",
                             "node.kubernetes.io/unschedulable"]
    already = tainted("a", {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    already["spec"]["unschedulable"] = True
    assert [t["key"] for t in scheduling.node_taints(already)] == [
        "node.kubernetes.io/unschedulable"]


def hungry(cpu: str) -> Obj:
    p = pod()
    p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu}}
    return p


def test_failed_scheduling_reads_as_kube_scheduler_writes_it() -> None:
    control = tainted("control", {"key": "node-role", "value": "control",
                                  "effect": "NoSchedule"})
    infos = [NodeInfo(control), NodeInfo(node("node-1")), NodeInfo(node("node-2"))]
    assert decide(hungry("8"), infos) == (None, (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role: control}, "
        "2 Insufficient cpu. preemption: 0/3 nodes are available: "
        "1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod.."))
    never = hungry("8")
    never["spec"]["preemptionPolicy"] = "Never"
    assert decide(never, infos)[1].endswith(
        "2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never..")


def test_reasons_are_counted_per_node_and_sorted_as_strings() -> None:
    # A node short of two things counts under both; "12 ..." sorts before "2 ...".
    infos = [NodeInfo(node(f"n{i:02}")) for i in range(12)]
    for i in infos[:2]:
        i.allocatable = dataclasses.replace(i.allocatable, memory=1)
    p = hungry("8")
    p["spec"]["containers"][0]["resources"]["requests"]["memory"] = "1Gi"
    message = decide(p, infos)[1]
    assert message == ("0/12 nodes are available: 12 Insufficient cpu, "
                              "2 Insufficient memory. preemption: 0/12 nodes are available: "
                              "12 No preemption victims found for incoming pod..")


def test_assumed_pods_count_for_the_next_decision_of_the_pass() -> None:
    infos = [NodeInfo(node("node-1")), NodeInfo(node("node-2"))]
    placed = []
    for i in range(4):
        p = hungry("1500m")
        p["metadata"].update(name=f"p{i}", uid=f"u{i}")
        name = decide(p, infos)[0]
        placed.append(name)
        for info in infos:
            if info.name == name:
                info.add_pod(PodInfo.of(p))
    # 4 cpus a node: two such pods each, spread, then nothing left.
    assert sorted(placed) == ["node-1", "node-1", "node-2", "node-2"]
    assert infos[0].requested.milli_cpu == 3000
    assert decide(hungry("1500m"), infos)[0] is None
    infos[0].remove_pod("u0")
    assert infos[0].requested.milli_cpu == 1500 and len(infos[0].pods) == 1
    assert decide(hungry("1500m"), infos)[0] == infos[0].name


def test_snapshot_counts_bound_and_assumed_pods_but_not_finished_ones() -> None:
    nodes = [node("node-1"), node("node-2")]

    def placed(name: str, where: str | None, phase: str = "Running") -> Obj:
        p = hungry("1")
        p["metadata"].update(name=name, uid=name)
        p["spec"]["nodeName"] = where
        p["status"] = {"phase": phase}
        return p
    pods = [placed("a", "node-1"), placed("b", None), placed("c", "node-2", "Succeeded"),
            placed("d", "node-9")]
    infos = {i.name: i for i in snapshot(nodes, pods, {"b": "node-2"})}
    assert [meta.name(p.pod) for p in infos["node-1"].pods] == ["a"]
    assert [meta.name(p.pod) for p in infos["node-2"].pods] == ["b"]
    assert infos["node-2"].requested.milli_cpu == 1000


def test_weights_and_normalisation_decide_between_plugins() -> None:
    profile = default_profile()
    assert {w.plugin.name: w.weight for w in profile.scorers} == {
        "TaintToleration": 3, "NodeAffinity": 2, "PodTopologySpread": 2,
        "InterPodAffinity": 2, "NodeResourcesFit": 1, "NodeResourcesBalancedAllocation": 1,
        "ImageLocality": 1}
    # A soft taint (3 x 100 lost) outweighs a preferred label (2 x 100).
    soft = tainted("soft", {"key": "k", "effect": "PreferNoSchedule"})
    soft["metadata"]["labels"] = {"ssd": ""}
    p = pod()
    p["spec"]["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "ssd",
                                                           "operator": "Exists"}]}}]}}
    assert decide(p, [NodeInfo(soft), NodeInfo(node("plain"))])[0] == "plain"
    # Normalised: weight 1 or 100 on the preference makes no difference.
    p["spec"]["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] = 100
    assert decide(p, [NodeInfo(soft), NodeInfo(node("plain"))])[0] == "plain"
    soft["spec"]["taints"] = []
    assert decide(p, [NodeInfo(soft), NodeInfo(node("plain"))])[0] == "soft"


def test_a_pre_filter_rejection_is_said_once_not_counted_per_node() -> None:
    claims = VolumeBinding(lambda ns, n: None, lambda n: None, lambda n: None)
    p = pod()
    p["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    d = schedule(p, [NodeInfo(node("a")), NodeInfo(node("b"))],
                 default_profile(volume_binding=claims))
    assert (d.node, d.message) == (None, (
        '0/2 nodes are available: persistentvolumeclaim "data" not found. preemption: '
        "0/2 nodes are available: 2 Preemption is not helpful for scheduling.."))
    assert d.rejectors == {"VolumeBinding"}
