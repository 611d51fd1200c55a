"""Scheduler plugins: each a tiny class around a pure check."""

from __future__ import annotations

from netplane.api import meta, scheduling
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import MAX_SCORE, Code, NodeInfo, Status


def _tolerations(pod: Obj) -> list[Obj]:
    return list(pod.get("spec", {}).get("tolerations") or [])


class NodeReady:
    """A node that is not Ready carries kube's not-ready (or unreachable)
    NoSchedule taint: only pods that tolerate it go there."""

    name = "NodeReady"

    def filter(self, pod: Obj, info: NodeInfo) -> Status:
        if meta.node_ready(info.node):
            return Status()
        taints = [t for t in scheduling.condition_taints(info.node)
                  if t["key"] in (scheduling.NOT_READY, scheduling.UNREACHABLE)]
        if scheduling.untolerated(taints, _tolerations(pod)) is not None:
            return Status(Code.UNSCHEDULABLE, "node(s) were not ready")
        return Status()


class NodeUnschedulable:
    """A cordoned node takes only pods tolerating the unschedulable taint
    (DaemonSet pods do), as kube's plugin of that name."""

    name = "NodeUnschedulable"

    def filter(self, pod: Obj, info: NodeInfo) -> Status:
        taint = {"key": scheduling.UNSCHEDULABLE, "effect": scheduling.NO_SCHEDULE}
        if info.node.get("spec", {}).get("unschedulable") and \
                scheduling.untolerated([taint], _tolerations(pod)) is not None:
            return Status(Code.UNRESOLVABLE, "node(s) were unschedulable")
        return Status()


class TaintToleration:
    """The node's NoSchedule and NoExecute taints must all be tolerated."""

    name = "TaintToleration"

    def filter(self, pod: Obj, info: NodeInfo) -> Status:
        taints = info.node.get("spec", {}).get("taints") or []
        taint = scheduling.untolerated(taints, _tolerations(pod))
        if taint is not None:
            return Status(Code.UNRESOLVABLE, f"node(s) had untolerated taint "
                                             f"{{{taint.get('key')}: {taint.get('value', '')}}}")
        return Status()


class NodeSelector:
    name = "NodeSelector"

    def filter(self, pod: Obj, info: NodeInfo) -> Status:
        if not scheduling.selector_matches(pod, info.node):
            return Status(Code.UNRESOLVABLE, "node(s) didn't match Pod's node selector")
        return Status()


class NodeAffinity:
    """Required node affinity: one of its terms must match the node's labels
    (``matchExpressions``) and name (``matchFields`` on ``metadata.name``,
    which DaemonSet pods use to name their node)."""

    name = "NodeAffinity"

    def filter(self, pod: Obj, info: NodeInfo) -> Status:
        if not scheduling.affinity_matches(pod, info.node):
            return Status(Code.UNRESOLVABLE, "node(s) didn't match Pod's node affinity/selector")
        return Status()


class FewestPods:
    """Spreads pods: the node running the fewest pods scores highest."""

    name = "FewestPods"

    def __init__(self, capacity: int = 110) -> None:
        self.capacity = capacity

    def score(self, pod: Obj, info: NodeInfo) -> int:
        used = min(info.pods, self.capacity)
        return MAX_SCORE * (self.capacity - used) // self.capacity


DEFAULT_FILTERS = (NodeUnschedulable(), NodeReady(), NodeSelector(), NodeAffinity(),
                   TaintToleration())
DEFAULT_SCORERS = (FewestPods(),)
