"""Each default plugin as a table, after kube-scheduler's plugin tests:
pods and nodes as plain objects, NodeInfos holding the pods already there."""

from __future__ import annotations

from typing import Any

import pytest

from netplane.api.meta import Obj
from netplane.cluster.scheduler import plugins
from netplane.cluster.scheduler.fit import (
    NodeResourcesBalancedAllocation,
    NodeResourcesFit,
    Strategy,
)
from netplane.cluster.scheduler.framework import (
    Code,
    CycleState,
    FilterPlugin,
    NormalizePlugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
)
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo, Resource, pod_requests

MB = 1024 * 1024


def make_node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
              labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
              images: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                       "images": images or [],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def container(cpu: str | None = None, memory: str | None = None, *,
              ports: list[Obj] | None = None, image: str = "busybox", **extra: Any) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": "c", "image": image, "resources": {"requests": requests},
            "ports": ports or [], **extra}


def make_pod(name: str = "p", *, namespace: str = "default",
             labels: dict[str, str] | None = None, containers: list[Obj] | None = None,
             **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "labels": labels or {}},
            "spec": {"containers": containers or [container()], **spec}}


def info(node: Obj, *pods: Obj) -> NodeInfo:
    return NodeInfo(node, [PodInfo.of(p) for p in pods])


def run_filter(plugin: FilterPlugin, pod: Obj, infos: list[NodeInfo]) -> list[str]:
    """Each node's verdict: "" when the pod fits, else the reasons."""
    state: CycleState = {}
    if isinstance(plugin, PreFilterPlugin):
        st = plugin.pre_filter(state, pod, infos)
        if st.code is Code.SKIP:
            return [""] * len(infos)  # nothing to judge
        if not st.ok:
            return [st.reason] * len(infos)
    out = []
    for i in infos:
        st = plugin.filter(state, pod, i)
        out.append("" if st.ok else st.reason)
    return out


def run_score(plugin: ScorePlugin, pod: Obj, infos: list[NodeInfo]) -> list[int]:
    """The plugin's scores over the nodes, normalised."""
    state: CycleState = {}
    if isinstance(plugin, PreFilterPlugin):
        plugin.pre_filter(state, pod, infos)
    if isinstance(plugin, PreScorePlugin) and \
            plugin.pre_score(state, pod, infos, infos).code is Code.SKIP:
        return [0] * len(infos)  # no say in the ranking
    scores = [plugin.score(state, pod, i) for i in infos]
    if isinstance(plugin, NormalizePlugin):
        plugin.normalize(state, scores)
    return scores


def test_node_name() -> None:
    infos = [info(make_node("a")), info(make_node("b"))]
    assert run_filter(plugins.NodeName(), make_pod(), infos) == ["", ""]
    assert run_filter(plugins.NodeName(), make_pod(nodeName="b"), infos) == [
        "node(s) didn't match the requested node name", ""]


def port(host_port: int, protocol: str = "TCP", ip: str = "") -> Obj:
    return {"containerPort": 80, "hostPort": host_port, "protocol": protocol, "hostIP": ip}


CONFLICT = "node(s) didn't have free ports for the requested pod ports"


@pytest.mark.parametrize(("existing", "wanted", "fits"), [
    ([], [port(8080)], True),
    ([port(8080)], [], True),
    ([port(8080, "UDP")], [port(8080, "TCP")], True),  # another protocol
    ([port(8080, ip="127.0.0.1")], [port(8080, ip="127.0.0.2")], True),  # another address
    ([port(8080, ip="127.0.0.1")], [port(8080, ip="127.0.0.1")], False),
    ([port(8080, ip="127.0.0.1")], [port(8080)], False),  # 0.0.0.0 takes every address
    ([port(8080)], [port(8080, ip="127.0.0.1")], False),
    ([port(8080, "UDP"), port(9090)], [port(8080, "UDP")], False),
    ([port(8080)], [port(8081)], True),
])
def test_node_ports(existing: list[Obj], wanted: list[Obj], fits: bool) -> None:
    there = make_pod("there", containers=[container(ports=existing)])
    pod = make_pod(containers=[container(ports=wanted)])
    verdict = run_filter(plugins.NodePorts(), pod, [info(make_node("a"), there)])
    assert verdict == ["" if fits else CONFLICT]


@pytest.mark.parametrize(("spec", "want"), [
    ({"containers": [container("1", "1Gi"), container("500m", "512Mi")]},
     Resource(1500, 1536 * MB)),
    # The biggest init container counts when it needs more than the containers.
    ({"containers": [container("1")], "initContainers": [container("3"), container("2")]},
     Resource(3000)),
    ({"containers": [container("2")], "initContainers": [container("1")]}, Resource(2000)),
    # A sidecar runs on beside the containers and under later init containers.
    ({"containers": [container("1")],
      "initContainers": [container("1", restartPolicy="Always"), container("3")]},
     Resource(4000)),
    ({"containers": [container("1")], "overhead": {"cpu": "250m", "memory": "64Mi"}},
     Resource(1250, 64 * MB)),
    # Limits stand in for missing requests, as the API server defaults them.
    ({"containers": [{"name": "c", "resources": {"limits": {"cpu": "2"}}}]}, Resource(2000)),
    ({"containers": [{"name": "c", "resources": {
        "requests": {"ephemeral-storage": "1Gi"}}}]}, Resource(0, 0, 1024 * MB)),
])
def test_pod_requests(spec: Obj, want: Resource) -> None:
    assert pod_requests({"spec": spec}) == want


def test_non_zero_requests_count_a_little_for_what_is_not_asked() -> None:
    assert pod_requests(make_pod(), non_zero=True) == Resource(100, 200 * MB)
    assert pod_requests(make_pod(containers=[container("0", "1Gi")]), non_zero=True) == \
        Resource(0, 1024 * MB)


@pytest.mark.parametrize(("pod", "node", "existing", "reasons"), [
    (make_pod(), make_node("a"), [], ""),
    (make_pod(containers=[container("1", "1Gi")]), make_node("a", cpu="2", memory="2Gi"),
     [make_pod("x", containers=[container("1", "1Gi")])], ""),
    (make_pod(containers=[container("2")]), make_node("a", cpu="2"),
     [make_pod("x", containers=[container("1")])], "Insufficient cpu"),
    (make_pod(containers=[container("1", "2Gi")]), make_node("a", cpu="1", memory="3Gi"),
     [make_pod("x", containers=[container("500m", "2Gi")])],
     "Insufficient cpu, Insufficient memory"),
    (make_pod(containers=[container()], initContainers=[container("3")]),
     make_node("a", cpu="2"), [], "Insufficient cpu"),
    (make_pod(), make_node("a", pods="1"), [make_pod("x")], "Too many pods"),
    (make_pod(containers=[container("8")]), make_node("a", pods="1", cpu="1"),
     [make_pod("x")], "Too many pods, Insufficient cpu"),
    (make_pod(containers=[{"name": "c", "resources": {
        "requests": {"ephemeral-storage": "2Gi"}}}]),
     {**make_node("a"), "status": {"allocatable": {"pods": "110", "cpu": "1",
                                                   "ephemeral-storage": "1Gi"}}},
     [], "Insufficient ephemeral-storage"),
    # A node that reports no allocatable has room for nothing, as in kube.
    (make_pod(), {"metadata": {"name": "bare"}}, [], "Too many pods"),
])
def test_node_resources_fit(pod: Obj, node: Obj, existing: list[Obj], reasons: str) -> None:
    fit = NodeResourcesFit()
    assert run_filter(fit, pod, [info(node, *existing)]) == [reasons]
    if reasons:
        state: CycleState = {}
        fit.pre_filter(state, pod, [])
        assert fit.filter(state, pod, info(node, *existing)).code is Code.UNSCHEDULABLE


def test_resource_scores() -> None:
    # kube's least_allocated_test arithmetic: 3000m of 4000m, 5000 of 10000.
    pod = make_pod(containers=[container("3", "5000")])
    infos = [info(make_node("a", cpu="4", memory="10000"))]
    assert run_score(NodeResourcesFit(), pod, infos) == [(25 + 50) // 2]
    assert run_score(NodeResourcesFit(Strategy.MOST_ALLOCATED), pod, infos) == [(75 + 50) // 2]
    assert run_score(NodeResourcesBalancedAllocation(), pod, infos) == [87]  # 1 - |.75-.5|/2


def test_least_allocated_ranks_on_what_pods_on_the_node_request() -> None:
    pod = make_pod(containers=[container("1", "1Gi")])
    busy = info(make_node("busy"), make_pod("x", containers=[container("2", "4Gi")]))
    idle = info(make_node("idle"))
    least = run_score(NodeResourcesFit(), pod, [busy, idle])
    most = run_score(NodeResourcesFit(Strategy.MOST_ALLOCATED), pod, [busy, idle])
    assert least[1] > least[0] and most[0] > most[1]


def test_balanced_allocation_skips_best_effort_pods() -> None:
    infos = [info(make_node("a")), info(make_node("b"), make_pod("x",
                                                                  containers=[container("3")]))]
    assert run_score(NodeResourcesBalancedAllocation(), make_pod(), infos) == [0, 0]


def prefer_no_schedule(key: str) -> Obj:
    return {"key": key, "value": "v", "effect": "PreferNoSchedule"}


def test_taint_toleration_score_prefers_fewer_untolerated_soft_taints() -> None:
    infos = [info(make_node("none")), info(make_node("one", taints=[prefer_no_schedule("a")])),
             info(make_node("two", taints=[prefer_no_schedule("a"), prefer_no_schedule("b")]))]
    assert run_score(plugins.TaintToleration(), make_pod(), infos) == [100, 50, 0]
    tolerant = make_pod(tolerations=[{"key": "a", "operator": "Exists",
                                      "effect": "PreferNoSchedule"}])
    assert run_score(plugins.TaintToleration(), tolerant, infos) == [100, 100, 0]
    # A NoSchedule toleration does not count against PreferNoSchedule taints.
    hard = make_pod(tolerations=[{"key": "a", "operator": "Exists", "effect": "NoSchedule"}])
    assert run_score(plugins.TaintToleration(), hard, infos) == [100, 50, 0]
    assert run_score(plugins.TaintToleration(), make_pod(), infos[:1]) == [100]


def test_node_affinity_score_sums_matching_preferred_weights() -> None:
    def pref(weight: int, key: str) -> Obj:
        return {"weight": weight, "preference": {"matchExpressions": [
            {"key": key, "operator": "Exists"}]}}
    pod = make_pod(affinity={"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [pref(2, "ssd"), pref(4, "gpu")]}})
    infos = [info(make_node("ssd", labels={"ssd": ""})), info(make_node("plain")),
             info(make_node("both", labels={"ssd": "", "gpu": ""}))]
    assert run_score(plugins.NodeAffinity(), pod, infos) == [33, 0, 100]
    assert run_score(plugins.NodeAffinity(), make_pod(), infos) == [0, 0, 0]


def image(name: str, size: int) -> Obj:
    return {"names": [name], "sizeBytes": size}


def test_image_locality() -> None:
    pod = make_pod(containers=[container(image="nginx")])
    infos = [info(make_node("has", images=[image("nginx:latest", 250 * MB)])),
             info(make_node("lacks")), info(make_node("small", images=[
                 image("nginx:latest", 10 * MB)]))]
    # 250 MB spread over 2 of 3 nodes: 166 MB, between the 23 MB floor and
    # the 1000 MB ceiling of one container.
    assert run_score(plugins.ImageLocality(), pod, infos) == [
        100 * (250 * MB * 2 // 3 - 23 * MB) // (1000 * MB - 23 * MB), 0, 0]
    assert run_score(plugins.ImageLocality(), pod, [info(make_node("none"))]) == [0]
    tagged = make_pod(containers=[container(image="nginx:1.27")])
    assert run_score(plugins.ImageLocality(), tagged, infos) == [0, 0, 0]


def test_image_names_are_normalized_as_kube_does() -> None:
    assert plugins.normalized_image("nginx") == "nginx:latest"
    assert plugins.normalized_image("registry:5000/app") == "registry:5000/app:latest"
    assert plugins.normalized_image("app:1.0") == "app:1.0"
    assert plugins.normalized_image("app@sha256:abc") == "app@sha256:abc"
