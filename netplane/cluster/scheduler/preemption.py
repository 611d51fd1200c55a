"""DefaultPreemption, kube-scheduler's post-filter: when a pod fits nowhere,
find nodes where evicting pods of lower priority would let it fit, the
fewest and least important victims on each (those whose eviction would
break a PodDisruptionBudget spared first), and pick one node by kube's
order: fewest budget violations, lowest highest-priority victim, lowest
sum of priorities, fewest victims, latest start of the most important
victims. Pure: the loop evicts the victims and nominates the node."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from netplane.api import meta, priority, selectors
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import (
    Code,
    CycleState,
    Nominated,
    PostFilterResult,
    Profile,
    Status,
    fit_error,
    pre_filter,
    run_filters_with_nominated,
)
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo

NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."
PREEMPTION_BY_SCHEDULER = "PreemptionByScheduler"
# kube's DefaultPreemptionArgs: candidates sought on at least 10% of the
# nodes where preemption might help, and at least 100 of them.
MIN_CANDIDATE_PERCENT, MIN_CANDIDATE_NODES = 10, 100

Budgets = Callable[[], Sequence[Obj]]


@dataclass(frozen=True)
class Candidate:
    node: str
    victims: tuple[Obj, ...]  # most important first
    pdb_violations: int


def terminating_by_preemption(pod: Obj) -> bool:
    """Being deleted because a scheduler preempted it (kube's podTerminatingByPreemption)."""
    if not meta.is_deleting(pod):
        return False
    cond = meta.condition(pod, "DisruptionTarget")
    return cond is not None and cond.get("status") == "True" and \
        cond.get("reason") == PREEMPTION_BY_SCHEDULER


def _budget_selector(budget: Obj) -> selectors.Selector | None:
    """None for a budget that selects nothing: no selector, or a broken one."""
    sel = (budget.get("spec") or {}).get("selector")
    if not sel:
        return None
    try:
        return selectors.from_label_selector(sel)
    except selectors.SelectorError:
        return None


def split_by_budget(victims: Sequence[PodInfo], budgets: Sequence[Obj]
                    ) -> tuple[list[PodInfo], list[PodInfo]]:
    """kube's filterPodsWithPDBViolation: (violating, not), each in the
    given order; a pod already counted as disrupted by a budget takes none
    of its allowance."""
    allowed = [int((b.get("status") or {}).get("disruptionsAllowed") or 0) for b in budgets]
    chosen = [_budget_selector(b) for b in budgets]
    violating: list[PodInfo] = []
    fine: list[PodInfo] = []
    for info in victims:
        labels = meta.labels(info.pod)
        broken = False
        for i, b in enumerate(budgets):
            sel = chosen[i]
            if not labels or meta.namespace(b) != meta.namespace(info.pod) or sel is None \
                    or sel.empty or not sel.matches(labels):
                continue
            if meta.name(info.pod) in ((b.get("status") or {}).get("disruptedPods") or {}):
                continue
            allowed[i] -= 1
            broken = broken or allowed[i] < 0
        (violating if broken else fine).append(info)
    return violating, fine


def _importance(info: PodInfo) -> tuple[int, float]:
    """A sort key putting the more important pod first (kube's MoreImportantPod:
    higher priority, then the one that started first)."""
    return -priority.of(info.pod), priority.started(info.pod)


class DefaultPreemption:
    name = "DefaultPreemption"

    def __init__(self, budgets: Budgets = lambda: (), *, percent: int = MIN_CANDIDATE_PERCENT,
                 absolute: int = MIN_CANDIDATE_NODES) -> None:
        self.budgets, self.percent, self.absolute = budgets, percent, absolute

    def eligible(self, pod: Obj, nodes: Sequence[NodeInfo],
                 statuses: Mapping[str, Status]) -> str:
        """Why ``pod`` may not preempt now ('' when it may): its policy says
        never, or victims it chose before are still going."""
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if spec.get("preemptionPolicy") == priority.PREEMPT_NEVER:
            return NEVER
        nominated = status.get("nominatedNodeName")
        if not nominated:
            return ""
        st = statuses.get(nominated)
        if st is not None and st.code is Code.UNRESOLVABLE:
            return ""
        prio = priority.of(pod)
        for info in nodes:
            if info.name == nominated and any(
                    priority.of(p.pod) < prio and terminating_by_preemption(p.pod)
                    for p in info.pods):
                return TERMINATING
        return ""

    def fits(self, pod: Obj, info: NodeInfo, nodes: Sequence[NodeInfo], profile: Profile,
             nominated: Nominated) -> Status:
        """Whether ``pod`` fits ``info`` as it is now, the pre-filters run
        again over the nodes with ``info`` in its place (kube updates their
        state through PreFilter extensions instead)."""
        state: CycleState = {}
        others = [info if n.name == info.name else n for n in nodes]
        st, _, filters = pre_filter(state, pod, others, profile)
        if not st.ok:
            return st
        return run_filters_with_nominated(state, pod, info, filters, nominated)[0]

    def select_victims(self, pod: Obj, info: NodeInfo, nodes: Sequence[NodeInfo],
                       profile: Profile, nominated: Nominated,
                       budgets: Sequence[Obj]) -> tuple[Candidate | None, Status]:
        """kube's SelectVictimsOnNode on a copy of ``info``: every pod of
        lower priority out; if the pod then fits, each is put back, the most
        important first (those a budget protects before the others), unless
        the pod would no longer fit."""
        info = info.clone()
        prio = priority.of(pod)
        potential = [p for p in info.pods if priority.of(p.pod) < prio]
        if not potential:
            return None, Status.fail(Code.UNRESOLVABLE, NO_VICTIMS)
        for p in potential:
            info.remove_pod(meta.uid(p.pod))
        st = self.fits(pod, info, nodes, profile, nominated)
        if not st.ok:
            return None, st
        potential.sort(key=_importance)
        violating, fine = split_by_budget(potential, budgets)
        victims: list[PodInfo] = []
        violations = 0
        for group, counted in ((violating, True), (fine, False)):
            for p in group:
                info.add_pod(p)
                if not self.fits(pod, info, nodes, profile, nominated).ok:
                    info.remove_pod(meta.uid(p.pod))
                    victims.append(p)
                    violations += counted
        if violating and fine:
            victims.sort(key=_importance)
        if not victims:
            return None, Status.fail(Code.ERROR, f"expected at least one victim pod on node "
                                                 f'"{info.name}"')
        return Candidate(info.name, tuple(v.pod for v in victims), violations), st

    def candidates(self, pod: Obj, potential: Sequence[NodeInfo], nodes: Sequence[NodeInfo],
                   profile: Profile, nominated: Nominated
                   ) -> tuple[list[Candidate], dict[str, Status]]:
        """kube's DryRunPreemption, from the first node in name order (kube
        starts at a random one): it stops once enough candidates that break
        no budget are found."""
        wanted = max(len(potential) * self.percent // 100, self.absolute)
        wanted = min(wanted, len(potential))
        budgets = list(self.budgets())
        clean: list[Candidate] = []
        breaking: list[Candidate] = []
        statuses: dict[str, Status] = {}
        for info in sorted(potential, key=lambda n: n.name):
            found, st = self.select_victims(pod, info, nodes, profile, nominated, budgets)
            if found is None:
                statuses[info.name] = st
                continue
            (breaking if found.pdb_violations else clean).append(found)
            if len(clean) >= wanted:
                break
        return [*clean, *breaking][:max(wanted, 1)], statuses

    def post_filter(self, pod: Obj, nodes: Sequence[NodeInfo], statuses: Mapping[str, Status],
                    profile: Profile, nominated: Nominated) -> PostFilterResult:
        why = self.eligible(pod, nodes, statuses)
        if why:
            return PostFilterResult(message=f"preemption: {why}")
        potential = [n for n in nodes if (st := statuses.get(n.name)) is not None
                     and st.code is Code.UNSCHEDULABLE]
        found, said = self.candidates(pod, potential, nodes, profile, nominated) \
            if potential else ([], {})
        if not found:
            # Nodes not tried, or where removing pods cannot help, say so.
            not_helpful = Status.fail(Code.UNRESOLVABLE, NOT_HELPFUL)
            reasons = [said.get(n.name, not_helpful) for n in nodes]
            return PostFilterResult(nominated="", message="preemption: " + fit_error(
                len(nodes), reasons))
        best = pick_one(found)
        return PostFilterResult(nominated=best.node, victims=best.victims)


def _earliest_start_of_most_important(c: Candidate) -> float:
    top = priority.of(c.victims[0])
    return min(priority.started(v) for v in c.victims if priority.of(v) == top)


def pick_one(candidates: Sequence[Candidate]) -> Candidate:
    """kube's pickOneNodeForPreemption: each rule keeps the best candidates
    by its score, the next breaks their tie; the first of what remains wins."""
    rules: list[Callable[[Candidate], float]] = [
        lambda c: -c.pdb_violations,
        lambda c: -priority.of(c.victims[0]),
        # kube shifts every priority by 2^31 so that negative ones add up right.
        lambda c: -sum(priority.of(v) + 2**31 for v in c.victims),
        lambda c: -len(c.victims),
        _earliest_start_of_most_important,
    ]
    left = list(candidates)
    for rule in rules:
        if len(left) == 1:
            break
        scores = [rule(c) for c in left]
        top = max(scores)
        left = [c for c, s in zip(left, scores, strict=True) if s == top]
    return left[0]
