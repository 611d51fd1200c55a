"""Scheduler plugins that judge a node by itself: each a tiny class around
a pure check (kube's nodename, nodeunschedulable, tainttoleration,
nodeaffinity, nodeports and imagelocality plugins)."""

from __future__ import annotations

from collections.abc import Sequence

from netplane.api import scheduling
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import (
    MAX_SCORE,
    OK,
    SKIP,
    Code,
    CycleState,
    Status,
    default_normalize,
)
from netplane.cluster.scheduler.nodeinfo import NodeInfo, Snapshot, host_ports, ports_conflict


def _tolerations(pod: Obj) -> list[Obj]:
    return list(pod.get("spec", {}).get("tolerations") or [])


class NodeName:
    """A pod that names its node fits only there."""

    name = "NodeName"
    node_local = True

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted and wanted != info.name:
            return Status.fail(Code.UNRESOLVABLE, "node(s) didn't match the requested node name")
        return OK


class NodeUnschedulable:
    """A cordoned node takes only pods tolerating the unschedulable taint
    (DaemonSet pods do), as kube's plugin of that name."""

    name = "NodeUnschedulable"
    node_local = True

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        taint = {"key": scheduling.UNSCHEDULABLE, "effect": scheduling.NO_SCHEDULE}
        if info.node.get("spec", {}).get("unschedulable") and \
                scheduling.untolerated([taint], _tolerations(pod)) is not None:
            return Status.fail(Code.UNRESOLVABLE, "node(s) were unschedulable")
        return OK


def _taints(info: NodeInfo) -> list[Obj]:
    return list(info.node.get("spec", {}).get("taints") or [])


class TaintToleration:
    """Filter: the node's NoSchedule and NoExecute taints must all be
    tolerated. Score: fewer untolerated PreferNoSchedule taints is better."""

    name = "TaintToleration"
    node_local = True

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        taint = scheduling.untolerated(_taints(info), _tolerations(pod))
        if taint is not None:
            shown = f"{{{taint.get('key')}: {taint.get('value', '')}}}"
            return Status.fail(Code.UNRESOLVABLE, f"node(s) had untolerated taint {shown}")
        return OK

    def score(self, state: CycleState, pod: Obj, info: NodeInfo) -> int:
        # Only tolerations that could tolerate PreferNoSchedule count, as in kube.
        tols = [t for t in _tolerations(pod)
                if t.get("effect") in (None, "", scheduling.PREFER_NO_SCHEDULE)]
        return sum(1 for t in _taints(info)
                   if t.get("effect") == scheduling.PREFER_NO_SCHEDULE
                   and not any(scheduling.tolerates(tol, t) for tol in tols))

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        default_normalize(scores, reverse=True)


class NodeAffinity:
    """Filter: the pod's ``nodeSelector`` and one of the required terms must
    match the node's labels (``matchExpressions``) and name (``matchFields`` on ``metadata.name``,
    which DaemonSet pods use to name their node). Score: the weights of the
    preferred terms the node matches."""

    name = "NodeAffinity"
    node_local = True

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        if not (scheduling.selector_matches(pod, info.node)
                and scheduling.affinity_matches(pod, info.node)):
            return Status.fail(Code.UNRESOLVABLE,
                               "node(s) didn't match Pod's node affinity/selector")
        return OK

    def score(self, state: CycleState, pod: Obj, info: NodeInfo) -> int:
        affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
        terms = affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        return sum(int(t.get("weight") or 0) for t in terms
                   if scheduling.term_matches(t.get("preference") or {}, info.node))

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        default_normalize(scores)


class NodePorts:
    """The pod's host ports must be free on the node, per protocol and host IP."""

    name = "NodePorts"
    node_local = True

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        if any(ports_conflict(info.used_ports, p) for p in host_ports(pod)):
            return Status.fail(Code.UNSCHEDULABLE,
                               "node(s) didn't have free ports for the requested pod ports")
        return OK


MB = 1024 * 1024
MIN_IMAGE_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def normalized_image(name: str) -> str:
    """kube's normalizedImageName: an untagged image means ``:latest``."""
    if "@" not in name and name.rfind(":") <= name.rfind("/"):
        return name + ":latest"
    return name


class ImageLocality:
    """Nodes that already hold the pod's images score higher, by image size
    scaled by how many nodes have it (so that one node does not draw every
    pod of a widely cached image), as kube's plugin."""

    name = "ImageLocality"

    @staticmethod
    def _holders(nodes: Sequence[NodeInfo]) -> dict[str, int]:
        """How many nodes hold each image: counted once per snapshot, which
        one scheduling pass decides many pods over."""
        memo = nodes.memo if isinstance(nodes, Snapshot) else {}
        counts: dict[str, int] | None = memo.get("image-holders")
        if counts is None:
            counts = memo["image-holders"] = {}
            for info in nodes:
                for name in info.images:
                    counts[name] = counts.get(name, 0) + 1
        return counts

    def pre_score(self, state: CycleState, pod: Obj, feasible: Sequence[NodeInfo],
                  nodes: Sequence[NodeInfo]) -> Status:
        spec = pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        wanted = {normalized_image(str(c.get("image") or "")) for c in containers}
        holders = self._holders(nodes)
        spread = {name: holders.get(name, 0) for name in wanted}
        state[self.name] = (containers, spread, len(nodes))
        return OK if any(spread.values()) else SKIP  # no node has any: all score 0

    def score(self, state: CycleState, pod: Obj, info: NodeInfo) -> int:
        containers: list[Obj]
        spread: dict[str, int]
        containers, spread, total = state[self.name]
        images = info.images
        total_size = 0
        for c in containers:
            name = normalized_image(str(c.get("image") or ""))
            if name in images:
                total_size += images[name] * spread[name] // max(total, 1)
        top = MAX_CONTAINER_THRESHOLD * max(len(containers), 1)
        clamped = min(max(total_size, MIN_IMAGE_THRESHOLD), top)
        return MAX_SCORE * (clamped - MIN_IMAGE_THRESHOLD) // (top - MIN_IMAGE_THRESHOLD)
