"""The equivalence cache: pods of one shape reuse the node-local verdicts
and scores judged on nodes that have not changed since, and judge again
the nodes that have (a pod added, the node updated)."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.cluster.scheduler.config import Deps, ProfileSpec, build
from netplane.cluster.scheduler.framework import Equivalence, Trace, schedule, shape
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo, Snapshot
from netplane.cluster.scheduler.profiles import default_profile


def node(name: str, rv: str = "1") -> Obj:
    return {"metadata": {"name": name, "resourceVersion": rv,
                         "labels": {"kubernetes.io/hostname": name}},
            "spec": {}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                                   "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, cpu: str = "1500m") -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}


def test_replicas_see_the_nodes_their_siblings_filled() -> None:
    cache, profile = Equivalence(), default_profile()
    infos = Snapshot([NodeInfo(node("n1")), NodeInfo(node("n2"))])
    placed = []
    for name in ("a", "b", "c"):
        d = schedule(pod(name), infos, profile, cache=cache)
        placed.append(d.node)
        for info in infos:
            if info.name == d.node:
                info.add_pod(PodInfo.of(pod(name)))
    assert placed == ["n1", "n2", None]
    assert len(cache.memos) == 1  # one shape


def test_a_changed_node_is_judged_again() -> None:
    cache, profile = Equivalence(), default_profile()
    first = Snapshot([NodeInfo(node("n1"))])
    assert schedule(pod("a"), first, profile, cache=cache).node == "n1"
    tainted = node("n1", rv="2")
    tainted["spec"]["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    d = schedule(pod("b"), Snapshot([NodeInfo(tainted)]), profile, cache=cache)
    assert d.node is None and "untolerated taint" in d.message


def test_the_shape_is_what_node_local_plugins_read() -> None:
    a, b = pod("a"), pod("b")
    b["metadata"]["labels"] = {"app": "other"}
    assert shape(a) == shape(b)  # names and labels do not matter
    assert shape(a) != shape(pod("c", cpu="1"))


def test_profiles_do_not_share_memos() -> None:
    # The same plugin name, configured otherwise: each profile ranks by its own.
    deps = Deps(None, lambda ns: {}, lambda pod: None, lambda: ())
    most = build(ProfileSpec("packer", args={"NodeResourcesFit": {
        "scoringStrategy": {"type": "MostAllocated"}}}), deps)
    least = default_profile()
    busy = NodeInfo(node("busy"))
    busy.add_pod(PodInfo.of(pod("there", cpu="1")))
    infos = Snapshot([busy, NodeInfo(node("idle"))])
    cache = Equivalence()
    assert schedule(pod("a", cpu="100m"), infos, least, cache=cache).node == "idle"
    assert schedule(pod("b", cpu="100m"), infos, most, cache=cache).node == "busy"


def test_memoised_ranking_is_the_traced_one() -> None:
    # The memo's shortcuts (sums kept per node, plugins that score every node
    # alike left out) pick what the full computation a trace shows picks.
    cache, profile = Equivalence(), default_profile()
    infos = Snapshot([NodeInfo(node(f"n{i}")) for i in range(6)])
    soft = infos[3].node
    soft["spec"]["taints"] = [{"key": "k", "effect": "PreferNoSchedule"}]
    infos[3] = NodeInfo(soft)
    for i, name in enumerate("abcdefghij"):
        p = pod(name, cpu=f"{100 + 50 * (i % 3)}m")
        trace = Trace()
        traced = schedule(p, infos, profile, trace=trace).node
        assert schedule(p, infos, profile, cache=cache).node == traced
        assert traced == max(trace.totals, key=lambda n: (trace.totals[n], [-ord(c) for c in n]))
        for info in infos:
            if info.name == traced:
                info.add_pod(PodInfo.of(p))
