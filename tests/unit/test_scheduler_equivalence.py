"""The equivalence cache: pods of one shape reuse the node-local verdicts
and scores judged on nodes that have not changed since, and judge again
the nodes that have (a pod added, the node updated)."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import Equivalence, schedule, shape
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
