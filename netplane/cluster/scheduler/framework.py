"""The scheduling framework: filter plugins say whether a pod fits a node
(with a reason when it does not), score plugins rank the nodes that fit."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from netplane.api import meta
from netplane.api.meta import Obj


class Code(enum.Enum):
    SUCCESS = "Success"
    UNSCHEDULABLE = "Unschedulable"
    UNRESOLVABLE = "UnschedulableAndUnresolvable"
    ERROR = "Error"


@dataclass(frozen=True)
class Status:
    code: Code = Code.SUCCESS
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS


@dataclass(frozen=True)
class NodeInfo:
    node: Obj
    pods: int


class FilterPlugin(Protocol):
    name: str

    def filter(self, pod: Obj, info: NodeInfo) -> Status: ...


class ScorePlugin(Protocol):
    name: str

    def score(self, pod: Obj, info: NodeInfo) -> int: ...


MAX_SCORE = 100


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str


def schedule(pod: Obj, nodes: Sequence[NodeInfo], filters: Sequence[FilterPlugin],
             scorers: Sequence[ScorePlugin]) -> Decision:
    feasible: list[NodeInfo] = []
    reasons: dict[str, int] = {}
    for info in nodes:
        failed = next((st for f in filters if not (st := f.filter(pod, info)).ok), None)
        if failed is None:
            feasible.append(info)
        else:
            reasons[failed.reason] = reasons.get(failed.reason, 0) + 1
    if not feasible:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        return Decision(None, f"0/{len(nodes)} nodes are available"
                              + (f": {detail}." if detail else "."))
    best = max(feasible, key=lambda i: (sum(s.score(pod, i) for s in scorers),
                                        # Ties go to the first name, for stable tests.
                                        [-ord(c) for c in meta.name(i.node)]))
    return Decision(meta.name(best.node), "")
