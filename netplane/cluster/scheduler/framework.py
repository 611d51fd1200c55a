"""The scheduling framework, as kube-scheduler's: pre-filter plugins look
at the pod once per cycle, filter plugins say whether it fits a node (with
reasons when it does not), score plugins rank the nodes that fit, each
normalised to 0..100 and weighted. A pod that fits nowhere gets the
FitError message kube-scheduler writes."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from netplane.api.meta import Obj
from netplane.cluster.scheduler.nodeinfo import NodeInfo

MAX_SCORE = 100
NO_NODES = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


class Code(enum.Enum):
    SUCCESS = "Success"
    UNSCHEDULABLE = "Unschedulable"
    UNRESOLVABLE = "UnschedulableAndUnresolvable"
    ERROR = "Error"
    # From a pre-filter or pre-score: the pod gives the plugin nothing to
    # judge, so its filter or score is not run this cycle.
    SKIP = "Skip"


@dataclass(frozen=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()

    @classmethod
    def fail(cls, code: Code, *reasons: str) -> Status:
        return cls(code, reasons)

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def reason(self) -> str:
        return ", ".join(self.reasons)


OK = Status()
SKIP = Status(Code.SKIP)
# What plugins keep about the pod for one cycle, by plugin name (kube's CycleState).
CycleState = dict[str, Any]


class FilterPlugin(Protocol):
    name: str

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status: ...


@runtime_checkable
class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(self, state: CycleState, pod: Obj, nodes: Sequence[NodeInfo]) -> Status:
        """OK, SKIP, or a rejection that holds for every node."""


class ScorePlugin(Protocol):
    name: str

    def score(self, state: CycleState, pod: Obj, info: NodeInfo) -> int: ...


@runtime_checkable
class PreScorePlugin(Protocol):
    def pre_score(self, state: CycleState, pod: Obj, feasible: Sequence[NodeInfo],
                  nodes: Sequence[NodeInfo]) -> Status: ...


@runtime_checkable
class NormalizePlugin(Protocol):
    def normalize(self, state: CycleState, scores: list[int]) -> None: ...


@dataclass(frozen=True)
class Weighted:
    plugin: ScorePlugin
    weight: int


@dataclass(frozen=True)
class Profile:
    filters: Sequence[FilterPlugin]
    scorers: Sequence[Weighted] = ()
    pre_filters: Sequence[PreFilterPlugin] = field(init=False)

    def __post_init__(self) -> None:
        # A plugin that both filters and scores prepares once.
        unique = {id(p): p for p in (*self.filters, *(w.plugin for w in self.scorers))}
        object.__setattr__(self, "pre_filters", [
            p for p in unique.values() if isinstance(p, PreFilterPlugin)])


def default_normalize(scores: list[int], *, reverse: bool = False) -> None:
    """kube's DefaultNormalizeScore: scaled so the highest is 100 (reversed:
    the lowest is); all zero stays zero (reversed: all 100)."""
    top = max(scores, default=0)
    for i, s in enumerate(scores):
        s = MAX_SCORE * s // top if top else 0
        scores[i] = MAX_SCORE - s if reverse else s


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str
    # The filters that rejected some node: the queue retries the pod on
    # events that could change their minds.
    rejectors: frozenset[str] = frozenset()


def fit_error(total: int, statuses: Sequence[Status]) -> str:
    """kube's FitError.Error() without its preemption sentence: each reason
    counted over the nodes it rejected, the "N reason" strings sorted."""
    counts: dict[str, int] = {}
    for st in statuses:
        for r in st.reasons:
            counts[r] = counts.get(r, 0) + 1
    head = f"0/{total} nodes are available:"
    detail = ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))
    return f"{head} {detail}." if detail else head


def preemption_message(pod: Obj, total: int, statuses: Sequence[Status]) -> str:
    """What kube's DefaultPreemption says when it finds no candidate. No
    PriorityClass exists yet, so every pod has the same priority and a node
    rejected for a reason that removing pods could cure has no victims."""
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return "preemption: not eligible due to preemptionPolicy=Never."
    said = [Status.fail(st.code, NOT_HELPFUL if st.code is Code.UNRESOLVABLE else NO_VICTIMS)
            for st in statuses]
    return "preemption: " + fit_error(total, said)


def _rejected_by_pre_filter(pod: Obj, total: int, st: Status, by: str) -> Decision:
    """kube's FitError with a PreFilterMsg: the reason once, not counted."""
    message = f"0/{total} nodes are available: {st.reason}. " \
              f"{preemption_message(pod, total, [st] * total)}."
    return Decision(None, message, frozenset({by}))


def run_filters(state: CycleState, pod: Obj, info: NodeInfo,
                filters: Sequence[FilterPlugin]) -> tuple[Status, str]:
    """The first rejection and the plugin's name; the rest are not asked."""
    for f in filters:
        st = f.filter(state, pod, info)
        if not st.ok:
            return st, f.name
    return OK, ""


def run_scores(state: CycleState, pod: Obj, feasible: Sequence[NodeInfo],
               nodes: Sequence[NodeInfo], scorers: Sequence[Weighted]) -> list[int]:
    """Each plugin's scores over the feasible nodes, normalised, weighted, summed."""
    totals = [0] * len(feasible)
    for w in scorers:
        if isinstance(w.plugin, PreScorePlugin) and \
                w.plugin.pre_score(state, pod, feasible, nodes).code is Code.SKIP:
            continue  # the same for every node: no say in the ranking
        scores = [w.plugin.score(state, pod, info) for info in feasible]
        if isinstance(w.plugin, NormalizePlugin):
            w.plugin.normalize(state, scores)
        for i, s in enumerate(scores):
            totals[i] += s * w.weight
    return totals


def schedule(pod: Obj, nodes: Sequence[NodeInfo], profile: Profile) -> Decision:
    if not nodes:
        return Decision(None, NO_NODES)
    state: CycleState = {}
    skipped = set()
    for p in profile.pre_filters:
        st = p.pre_filter(state, pod, nodes)
        if st.code is Code.SKIP:
            skipped.add(p.name)
        elif not st.ok:
            return _rejected_by_pre_filter(pod, len(nodes), st, p.name)
    filters = [f for f in profile.filters if f.name not in skipped]
    feasible: list[NodeInfo] = []
    failed: list[Status] = []
    rejectors: set[str] = set()
    for info in nodes:
        st, by = run_filters(state, pod, info, filters)
        if st.ok:
            feasible.append(info)
        else:
            failed.append(st)
            rejectors.add(by)
    if not feasible:
        # kube appends what preemption said as one more sentence, though it
        # ends in a full stop already: the message ends in "..".
        message = f"{fit_error(len(nodes), failed)} " \
                  f"{preemption_message(pod, len(nodes), failed)}."
        return Decision(None, message, frozenset(rejectors))
    if len(feasible) == 1:
        return Decision(feasible[0].name, "")
    totals = run_scores(state, pod, feasible, nodes, profile.scorers)
    # Ties go to the first name, for stable tests (kube picks one at random).
    best = min(range(len(feasible)), key=lambda i: (-totals[i], feasible[i].name))
    return Decision(feasible[best].name, "")
