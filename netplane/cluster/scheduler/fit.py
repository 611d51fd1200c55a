"""Resource plugins, as kube's noderesources: NodeResourcesFit filters out
nodes whose allocatable, less what the pods on them request, cannot hold
the pod's requests, and ranks the rest (LeastAllocated; MostAllocated to
pack; RequestedToCapacityRatio along a shape of points), each resource
weighted; NodeResourcesBalancedAllocation prefers nodes whose cpu and memory
would be used in like proportion."""

from __future__ import annotations

import enum
import math

from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import MAX_SCORE, OK, SKIP, Code, CycleState, Status
from netplane.cluster.scheduler.nodeinfo import NodeInfo, Resource, pod_requests


def insufficient(pod_request: Resource, info: NodeInfo) -> list[str]:
    """kube's fitsRequest reasons, in its order."""
    reasons = []
    if len(info.pods) + 1 > info.allowed_pods:
        reasons.append("Too many pods")
    free = info.allocatable - info.requested
    for name, want, have in (("cpu", pod_request.milli_cpu, free.milli_cpu),
                             ("memory", pod_request.memory, free.memory),
                             ("ephemeral-storage", pod_request.ephemeral_storage,
                              free.ephemeral_storage)):
        if want > 0 and want > have:
            reasons.append(f"Insufficient {name}")
    return reasons


class Strategy(enum.Enum):
    LEAST_ALLOCATED = "LeastAllocated"
    MOST_ALLOCATED = "MostAllocated"
    REQUESTED_TO_CAPACITY_RATIO = "RequestedToCapacityRatio"


# A RequestedToCapacityRatio shape: (utilization %, score 0..10) points.
Shape = tuple[tuple[int, int], ...]
# kube's default for MostAllocated-like packing with this strategy.
DEFAULT_SHAPE: Shape = ((0, 0), (100, 10))
MAX_CUSTOM_SCORE = 10


def _on_shape(shape: Shape, utilization: int) -> int:
    """kube's buildBrokenLinearFunction, scaled to 0..100."""
    for i, (x, y) in enumerate(shape):
        if utilization <= x:
            if i == 0:
                return y * MAX_SCORE // MAX_CUSTOM_SCORE
            x0, y0 = shape[i - 1]
            y_at = y0 * MAX_SCORE // MAX_CUSTOM_SCORE + \
                (y - y0) * MAX_SCORE // MAX_CUSTOM_SCORE * (utilization - x0) // (x - x0)
            return y_at
    return shape[-1][1] * MAX_SCORE // MAX_CUSTOM_SCORE


def _least(requested: int, capacity: int) -> int:
    return 0 if requested > capacity else (capacity - requested) * MAX_SCORE // capacity


def _most(requested: int, capacity: int) -> int:
    return min(requested, capacity) * MAX_SCORE // capacity


def _pairs(used: Resource, info: NodeInfo) -> list[tuple[int, int]]:
    """(requested, allocatable) of cpu and memory; a resource the node does
    not report is left out, as kube leaves it."""
    return [(u, a) for u, a in ((used.milli_cpu, info.allocatable.milli_cpu),
                                (used.memory, info.allocatable.memory)) if a > 0]


def _weighted(used: Resource, info: NodeInfo, weights: tuple[int, int]) -> list[
        tuple[int, int, int]]:
    """(requested, allocatable, weight) of cpu and memory, as ``_pairs``."""
    return [(u, a, w) for u, a, w in ((used.milli_cpu, info.allocatable.milli_cpu, weights[0]),
                                      (used.memory, info.allocatable.memory, weights[1]))
            if a > 0 and w > 0]


class NodeResourcesFit:
    name = "NodeResourcesFit"
    node_local = True

    def __init__(self, strategy: Strategy = Strategy.LEAST_ALLOCATED, *,
                 weights: tuple[int, int] = (1, 1), shape: Shape = DEFAULT_SHAPE) -> None:
        self.strategy, self.weights, self.shape = strategy, weights, shape

    def pre_filter(self, state: CycleState, pod: Obj, nodes: object) -> Status:
        state[self.name] = (pod_requests(pod), pod_requests(pod, non_zero=True))
        return OK

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        reasons = insufficient(state[self.name][0], info)
        return Status.fail(Code.UNSCHEDULABLE, *reasons) if reasons else OK

    def score(self, state: CycleState, pod: Obj, info: NodeInfo) -> int:
        # Ranked on requests where a container that asks for nothing counts
        # as a little, so best-effort pods still spread.
        want: Resource = state[self.name][1]
        used = info.non_zero_requested + want
        parts = _weighted(used, info, self.weights)
        total = sum(w for _, _, w in parts)
        return sum(self._one(u, a) * w for u, a, w in parts) // total if total else 0

    def _one(self, requested: int, capacity: int) -> int:
        if self.strategy is Strategy.LEAST_ALLOCATED:
            return _least(requested, capacity)
        if self.strategy is Strategy.MOST_ALLOCATED:
            return _most(requested, capacity)
        return _on_shape(self.shape, min(requested, capacity) * 100 // capacity)


class NodeResourcesBalancedAllocation:
    name = "NodeResourcesBalancedAllocation"
    node_local = True

    def pre_score(self, state: CycleState, pod: Obj, feasible: object, nodes: object) -> Status:
        want = state[self.name] = pod_requests(pod)
        # Skipped for best-effort pods, as kube does since issue 129138:
        # otherwise they would all crowd the most balanced node.
        return SKIP if want.milli_cpu == 0 and want.memory == 0 else OK

    def score(self, state: CycleState, pod: Obj, info: NodeInfo) -> int:
        want: Resource = state[self.name]
        used = info.requested + want
        fractions = [min(u / a, 1.0) for u, a in _pairs(used, info)]
        return int((1 - deviation(fractions)) * MAX_SCORE)


def deviation(values: list[float]) -> float:
    """The population standard deviation, in floats: statistics.pstdev
    works in exact fractions, a hundred times slower, on every node."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
