"""The scheduler's node cache, kept from events: pods counted on their node
while bound and not done, assumptions until the binding is seen, nodes
changed in place (a pass under way sees the change), pods of a node not
seen yet waiting for it."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.cluster.scheduler.nodeinfo import NodeCache, PodInfo


def node(name: str, rv: str = "1", cpu: str = "2") -> Obj:
    return {"metadata": {"name": name, "resourceVersion": rv},
            "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "10"}}}


def pod(name: str, node_name: str = "", phase: str = "Running") -> Obj:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"},
            "spec": {"nodeName": node_name,
                     "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": phase}}


def names(cache: NodeCache, node_name: str) -> list[str]:
    return sorted(p.pod["metadata"]["name"] for p in cache.infos[node_name].pods)


def test_bound_pods_count_until_done_or_gone() -> None:
    cache = NodeCache()
    cache.set_node(node("b"))
    cache.set_node(node("a"))
    assert [i.name for i in cache.snapshot()] == ["a", "b"]
    cache.set_pod(pod("x", "a"))
    cache.set_pod(pod("y", "a"))
    assert names(cache, "a") == ["x", "y"]
    assert cache.infos["a"].requested.milli_cpu == 2000
    cache.set_pod(pod("x", "a", phase="Succeeded"))
    cache.remove_pod("u-y")
    assert names(cache, "a") == []
    assert cache.infos["a"].requested.milli_cpu == 0


def test_an_assumption_is_replaced_by_the_binding_or_forgotten() -> None:
    cache = NodeCache()
    cache.set_node(node("a"))
    cache.set_node(node("b"))
    cache.assume(pod("x"), "a")
    assert names(cache, "a") == ["x"]
    cache.set_pod(pod("x", "b"))  # bound elsewhere after all
    assert (names(cache, "a"), names(cache, "b")) == ([], ["x"])
    cache.assume(pod("z"), "a")
    cache.forget(pod("z"))
    assert names(cache, "a") == []


def test_a_node_update_keeps_its_pods_and_the_same_nodeinfo() -> None:
    cache = NodeCache()
    cache.set_node(node("a"))
    held = cache.snapshot()[0]
    cache.set_pod(pod("x", "a"))
    cache.set_node(node("a", rv="2", cpu="8"))
    assert cache.infos["a"] is held
    assert held.allocatable.milli_cpu == 8000 and names(cache, "a") == ["x"]
    assert held.version[0] == "2"


def test_pods_of_an_unseen_node_wait_for_it() -> None:
    cache = NodeCache()
    cache.set_pod(pod("x", "late"))
    cache.set_node(node("late"))
    assert names(cache, "late") == ["x"]
    cache.remove_node("late")
    assert cache.snapshot() == []
    cache.set_node(node("late", rv="9"))
    assert names(cache, "late") == ["x"]
    info = cache.infos["late"]
    info.add_pod(PodInfo.of(pod("y", "late")))
    assert info.version[1] == 2
