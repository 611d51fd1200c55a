"""Scheduling decisions over plain objects: filters with reasons, scores."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.cluster.scheduler import plugins
from netplane.cluster.scheduler.framework import NodeInfo, schedule


def node(name: str, *, ready: bool = True, labels: dict[str, str] | None = None,
         unschedulable: bool = False) -> Obj:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready",
                                       "status": "True" if ready else "False"}]}}


def pod(selector: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeSelector": selector or {}, "containers": [{"name": "c"}]}}


def decide(p: Obj, infos: list[NodeInfo]) -> tuple[str | None, str]:
    d = schedule(p, infos, plugins.DEFAULT_FILTERS, plugins.DEFAULT_SCORERS)
    return d.node, d.message


def test_fewest_pods_wins() -> None:
    infos = [NodeInfo(node("node-1"), 3), NodeInfo(node("node-2"), 1),
             NodeInfo(node("node-3"), 2)]
    assert decide(pod(), infos)[0] == "node-2"


def test_ties_go_to_the_first_name() -> None:
    assert decide(pod(), [NodeInfo(node("node-2"), 0), NodeInfo(node("node-1"), 0)])[0] \
        == "node-1"


def test_not_ready_and_unschedulable_nodes_are_filtered_with_reasons() -> None:
    infos = [NodeInfo(node("a", ready=False), 0), NodeInfo(node("b", unschedulable=True), 0)]
    name, message = decide(pod(), infos)
    assert name is None
    assert message == ("0/2 nodes are available: 1 node(s) were not ready, "
                       "1 node(s) were unschedulable.")


def test_node_selector() -> None:
    infos = [NodeInfo(node("a"), 0), NodeInfo(node("b", labels={"disk": "ssd"}), 5)]
    assert decide(pod({"disk": "ssd"}), infos)[0] == "b"
    assert decide(pod({"disk": "nvme"}), infos)[0] is None


def test_no_nodes() -> None:
    assert decide(pod(), []) == (None, "0/0 nodes are available.")
