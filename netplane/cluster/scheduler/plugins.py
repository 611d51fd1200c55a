"""Scheduler plugins: each a tiny class around a pure check."""

from __future__ import annotations

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import MAX_SCORE, Code, NodeInfo, Status


class NodeReady:
    name = "NodeReady"

    def filter(self, pod: Obj, info: NodeInfo) -> Status:
        if not meta.node_ready(info.node):
            return Status(Code.UNSCHEDULABLE, "node(s) were not ready")
        return Status()


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def filter(self, pod: Obj, info: NodeInfo) -> Status:
        if info.node.get("spec", {}).get("unschedulable"):
            return Status(Code.UNRESOLVABLE, "node(s) were unschedulable")
        return Status()


def selector_fits(pod: Obj, node: Obj) -> bool:
    labels = meta.labels(node)
    wanted = pod.get("spec", {}).get("nodeSelector") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


class NodeSelector:
    name = "NodeSelector"

    def filter(self, pod: Obj, info: NodeInfo) -> Status:
        if not selector_fits(pod, info.node):
            return Status(Code.UNRESOLVABLE, "node(s) didn't match Pod's node selector")
        return Status()


class FewestPods:
    """Spreads pods: the node running the fewest pods scores highest."""

    name = "FewestPods"

    def __init__(self, capacity: int = 110) -> None:
        self.capacity = capacity

    def score(self, pod: Obj, info: NodeInfo) -> int:
        used = min(info.pods, self.capacity)
        return MAX_SCORE * (self.capacity - used) // self.capacity


DEFAULT_FILTERS = (NodeUnschedulable(), NodeReady(), NodeSelector())
DEFAULT_SCORERS = (FewestPods(),)
