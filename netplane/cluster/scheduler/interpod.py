"""The InterPodAffinity plugin, as kube's interpodaffinity: a pod's
required affinity needs a matching pod in the node's topology domain, its
required anti-affinity needs none there, and the pods already placed keep
out a pod their own anti-affinity matches. The preferred terms (and the
placed pods' required affinity, at weight 1) rank the nodes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from netplane.api import meta, selectors
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import MAX_SCORE, OK, SKIP, Code, CycleState, Status
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo, with_affinity_pods

NamespaceLabels = Callable[[str], dict[str, str]]
Pair = tuple[str, str]
HARD_AFFINITY_WEIGHT = 1
EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
AFFINITY = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"


@dataclass(frozen=True)
class AffinityTerm:
    """A PodAffinityTerm read for matching. No label selector, or no
    namespace selector, selects nothing; neither namespaces nor a namespace
    selector means the owning pod's own namespace."""

    namespaces: frozenset[str]
    selector: selectors.Selector | None
    namespace_selector: selectors.Selector | None
    topology_key: str

    @classmethod
    def of(cls, term: Obj, owner_namespace: str) -> AffinityTerm:
        namespaces = frozenset(str(n) for n in term.get("namespaces") or [])
        ns_sel = term.get("namespaceSelector")
        if not namespaces and ns_sel is None:
            namespaces = frozenset({owner_namespace})
        sel = term.get("labelSelector")
        return cls(namespaces, None if sel is None else selectors.from_label_selector(sel),
                   None if ns_sel is None else selectors.from_label_selector(ns_sel),
                   str(term.get("topologyKey") or ""))

    def matches(self, pod: Obj, namespace_labels: NamespaceLabels) -> bool:
        ns = meta.namespace(pod)
        if ns not in self.namespaces and not (
                self.namespace_selector is not None
                and self.namespace_selector.matches(namespace_labels(ns))):
            return False
        return self.selector is not None and self.selector.matches(meta.labels(pod))


def terms(raw: Iterable[Obj], owner: Obj) -> list[AffinityTerm]:
    return [AffinityTerm.of(t, meta.namespace(owner)) for t in raw]


def weighted(raw: Iterable[Obj], owner: Obj) -> list[tuple[AffinityTerm, int]]:
    return [(AffinityTerm.of(t.get("podAffinityTerm") or {}, meta.namespace(owner)),
             int(t.get("weight") or 0)) for t in raw]


@dataclass
class FilterState:
    affinity: list[AffinityTerm]
    anti_affinity: list[AffinityTerm]
    affinity_counts: Counter[Pair]
    anti_counts: Counter[Pair]
    existing_anti: Counter[Pair]


def _pair(info: NodeInfo, key: str) -> Pair | None:
    value = meta.labels(info.node).get(key)
    return None if value is None else (key, value)


class InterPodAffinity:
    name = "InterPodAffinity"

    def __init__(self, namespace_labels: NamespaceLabels = lambda ns: {}) -> None:
        self.namespace_labels = namespace_labels

    def _matches(self, term: AffinityTerm, pod: Obj) -> bool:
        return term.matches(pod, self.namespace_labels)

    def pre_filter(self, state: CycleState, pod: Obj, nodes: Sequence[NodeInfo]) -> Status:
        me = PodInfo.of(pod)
        st = FilterState(terms(me.required_affinity, pod), terms(me.required_anti_affinity, pod),
                         Counter(), Counter(), Counter())
        # Without terms of its own, only nodes with pods that have terms matter.
        walked = nodes if st.affinity or st.anti_affinity else with_affinity_pods(nodes)
        for info in walked:
            for other in info.pods_with_affinity:
                for term in terms(other.required_anti_affinity, other.pod):
                    pair = _pair(info, term.topology_key)
                    if pair and self._matches(term, pod):
                        st.existing_anti[pair] += 1
            if not (st.affinity or st.anti_affinity):
                continue
            for other in info.pods:
                # Affinity counts a pod that matches every term, anti-affinity
                # each term a pod matches, as kube counts them.
                if st.affinity and all(self._matches(t, other.pod) for t in st.affinity):
                    for t in st.affinity:
                        if pair := _pair(info, t.topology_key):
                            st.affinity_counts[pair] += 1
                for t in st.anti_affinity:
                    if (pair := _pair(info, t.topology_key)) and self._matches(t, other.pod):
                        st.anti_counts[pair] += 1
        state[self.name] = st
        return OK if st.affinity or st.anti_affinity or st.existing_anti else SKIP

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        st: FilterState = state[self.name]
        # kube's order: the pod's own terms, then the existing pods' ones.
        if not self._affinity_satisfied(st, pod, info):
            return Status.fail(Code.UNRESOLVABLE, AFFINITY)
        for t in st.anti_affinity:
            if (pair := _pair(info, t.topology_key)) and st.anti_counts.get(pair):
                return Status.fail(Code.UNSCHEDULABLE, ANTI_AFFINITY)
        if any(st.existing_anti.get(p) for p in meta.labels(info.node).items()):
            return Status.fail(Code.UNSCHEDULABLE, EXISTING_ANTI)
        return OK

    def _affinity_satisfied(self, st: FilterState, pod: Obj, info: NodeInfo) -> bool:
        found = True
        for t in st.affinity:
            pair = _pair(info, t.topology_key)
            if pair is None:
                return False  # the node must carry every topology key
            if not st.affinity_counts.get(pair):
                found = False
        # The first pod of a group with affinity to itself: no pod matches
        # anywhere yet, so it may go where the topology keys exist.
        return found or (not st.affinity_counts
                         and all(self._matches(t, pod) for t in st.affinity))

    def pre_score(self, state: CycleState, pod: Obj, feasible: Sequence[NodeInfo],
                  nodes: Sequence[NodeInfo]) -> Status:
        me = PodInfo.of(pod)
        pref = weighted(me.preferred_affinity, pod)
        anti = [(t, -w) for t, w in weighted(me.preferred_anti_affinity, pod)]
        scores: Counter[Pair] = Counter()
        # Without terms of its own, only pods with terms can score it.
        walked = nodes if pref or anti else with_affinity_pods(nodes)
        for info in walked:
            if not meta.labels(info.node):
                continue
            for other in (info.pods if pref or anti else info.pods_with_affinity):
                self._score_existing(scores, pod, [*pref, *anti], other, info)
        state[self.name + "/score"] = scores
        return OK if scores else SKIP

    def _score_existing(self, scores: Counter[Pair], pod: Obj,
                        mine: list[tuple[AffinityTerm, int]], other: PodInfo,
                        info: NodeInfo) -> None:
        for term, w in mine:
            if (pair := _pair(info, term.topology_key)) and self._matches(term, other.pod):
                scores[pair] += w
        theirs = [*((t, HARD_AFFINITY_WEIGHT) for t in terms(other.required_affinity, other.pod)),
                  *weighted(other.preferred_affinity, other.pod),
                  *((t, -w) for t, w in weighted(other.preferred_anti_affinity, other.pod))]
        for term, w in theirs:
            if (pair := _pair(info, term.topology_key)) and self._matches(term, pod):
                scores[pair] += w

    def score(self, state: CycleState, pod: Obj, info: NodeInfo) -> int:
        scores: Counter[Pair] = state[self.name + "/score"]
        if not scores:
            return 0
        return sum(scores.get(p, 0) for p in meta.labels(info.node).items())

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        """Scaled between the lowest (0) and the highest (100); all equal: 0."""
        if not state[self.name + "/score"] or not scores:
            return
        low, high = min(scores), max(scores)
        for i, s in enumerate(scores):
            scores[i] = MAX_SCORE * (s - low) // (high - low) if high > low else 0
