"""The PodTopologySpread plugin, as kube's podtopologyspread: for each
DoNotSchedule constraint, placing the pod in a node's domain must not
raise that domain's matching pods more than maxSkew above the emptiest
domain (taken as 0 while fewer than minDomains domains exist); the
ScheduleAnyway constraints rank the nodes, fewer matching pods first.
Domains are counted over the nodes the inclusion policies admit
(nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore by default). A pod
with no constraints of its own that a Service, ReplicaSet or StatefulSet
selects is spread softly by kube's system defaults: over hostnames
(maxSkew 3) and zones (maxSkew 5), among the pods those select."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from netplane.api import meta, scheduling, selectors
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import MAX_SCORE, OK, SKIP, Code, CycleState, Status
from netplane.cluster.scheduler.nodeinfo import NodeInfo

HOSTNAME, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"
DefaultSelector = Callable[[Obj], "selectors.Selector | None"]
DO_NOT_SCHEDULE, SCHEDULE_ANYWAY = "DoNotSchedule", "ScheduleAnyway"
NOT_MATCH = "node(s) didn't match pod topology spread constraints"
LABEL_MISSING = NOT_MATCH + " (missing required label)"


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: selectors.Selector | None  # None (no labelSelector) selects nothing
    min_domains: int
    honor_affinity: bool
    honor_taints: bool

    @classmethod
    def of(cls, raw: Obj, pod: Obj) -> Constraint:
        sel: selectors.Selector | None = None
        if raw.get("labelSelector") is not None:
            # matchLabelKeys: the pod's own values of those keys join the selector.
            own = meta.labels(pod)
            extra = tuple(selectors.Requirement(k, "in", (own[k],))
                          for k in raw.get("matchLabelKeys") or [] if k in own)
            given = selectors.from_label_selector(raw["labelSelector"])
            sel = selectors.Selector(given.requirements + extra)
        return cls(int(raw.get("maxSkew") or 1), str(raw.get("topologyKey") or ""),
                   sel, int(raw.get("minDomains") or 1),
                   (raw.get("nodeAffinityPolicy") or "Honor") == "Honor",
                   (raw.get("nodeTaintsPolicy") or "Ignore") == "Honor")

    def selects(self, pod: Obj) -> bool:
        return self.selector is not None and self.selector.matches(meta.labels(pod))

    def admits(self, pod: Obj, node: Obj) -> bool:
        """The node inclusion policies."""
        if self.honor_affinity and not scheduling.fits_node(pod, node):
            return False
        return not (self.honor_taints and scheduling.untolerated(
            (node.get("spec") or {}).get("taints") or [],
            (pod.get("spec") or {}).get("tolerations")) is not None)


def constraints(pod: Obj, when: str) -> list[Constraint]:
    return [Constraint.of(c, pod) for c in (pod.get("spec") or {}).get(
        "topologySpreadConstraints") or [] if c.get("whenUnsatisfiable") == when]


def default_selector(pod: Obj, services: Iterable[Obj],
                     owner: Obj | None) -> selectors.Selector | None:
    """kube's DefaultSelector: the selectors of the Services that select the
    pod, merged, and that of its ReplicaSet or StatefulSet; None if none."""
    labels, merged = meta.labels(pod), dict[str, str]()
    for svc in services:
        sel = (svc.get("spec") or {}).get("selector") or {}
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            merged.update(sel)
    reqs = selectors.from_map(merged).requirements
    if owner is not None:
        reqs += selectors.from_label_selector((owner.get("spec") or {}).get(
            "selector") or {"matchLabels": {}}).requirements
    return selectors.Selector(reqs) if reqs else None


def system_defaults(selector: selectors.Selector) -> list[Constraint]:
    return [Constraint(3, HOSTNAME, selector, 1, True, False),
            Constraint(5, ZONE, selector, 1, True, False)]


def matching(info: NodeInfo, c: Constraint, namespace: str) -> int:
    """Pods on the node that the constraint counts: same namespace, not
    being deleted, selected."""
    return sum(1 for p in info.pods if meta.namespace(p.pod) == namespace
               and not meta.is_deleting(p.pod) and c.selects(p.pod))


def _has_keys(node: Obj, cs: Sequence[Constraint]) -> bool:
    labels = meta.labels(node)
    return all(c.topology_key in labels for c in cs)


class PodTopologySpread:
    name = "PodTopologySpread"

    def __init__(self, defaults: DefaultSelector = lambda pod: None) -> None:
        self.defaults = defaults

    def _soft(self, pod: Obj) -> tuple[list[Constraint], bool]:
        """The ScheduleAnyway constraints, and whether a node must have all
        their keys to be ranked (not so for the system defaults)."""
        if (pod.get("spec") or {}).get("topologySpreadConstraints"):
            return constraints(pod, SCHEDULE_ANYWAY), True
        sel = self.defaults(pod)
        return (system_defaults(sel), False) if sel is not None else ([], True)

    def pre_filter(self, state: CycleState, pod: Obj, nodes: Sequence[NodeInfo]) -> Status:
        cs = constraints(pod, DO_NOT_SCHEDULE)
        if not cs:
            return SKIP
        counts: list[Counter[str]] = [Counter() for _ in cs]
        for info in nodes:
            if not _has_keys(info.node, cs):
                continue
            for i, c in enumerate(cs):
                if c.admits(pod, info.node):
                    value = meta.labels(info.node)[c.topology_key]
                    counts[i][value] += matching(info, c, meta.namespace(pod))
        state[self.name] = (cs, counts)
        return OK

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        cs, counts = state[self.name]
        labels = meta.labels(info.node)
        for c, count in zip(cs, counts, strict=True):
            value = labels.get(c.topology_key)
            if value is None:
                return Status.fail(Code.UNRESOLVABLE, LABEL_MISSING)
            # Too few domains: the missing ones count as empty.
            least = min(count.values(), default=0) if len(count) >= c.min_domains else 0
            me = 1 if c.selects(pod) else 0
            if count.get(value, 0) + me - least > c.max_skew:
                return Status.fail(Code.UNSCHEDULABLE, NOT_MATCH)
        return OK

    def pre_score(self, state: CycleState, pod: Obj, feasible: Sequence[NodeInfo],
                  nodes: Sequence[NodeInfo]) -> Status:
        cs, require_all = self._soft(pod)
        if not cs:
            return SKIP
        ignored = {f.name for f in feasible if require_all and not _has_keys(f.node, cs)}
        domains: list[Counter[str]] = [Counter() for _ in cs]
        for i, c in enumerate(cs):
            for f in feasible:
                value = meta.labels(f.node).get(c.topology_key)
                if f.name not in ignored and c.topology_key != HOSTNAME and value is not None:
                    domains[i][value] = 0
        # Each constraint weighs by the log of its domain count, so that a
        # key with many domains (hostname) does not drown one with few (zone).
        sizes = [len(feasible) - len(ignored) if c.topology_key == HOSTNAME else len(d)
                 for c, d in zip(cs, domains, strict=True)]
        weights = [math.log(s + 2) for s in sizes]
        for info in nodes if cs else ():
            if require_all and not _has_keys(info.node, cs):
                continue
            for i, c in enumerate(cs):
                value = meta.labels(info.node).get(c.topology_key)
                if c.topology_key != HOSTNAME and value is not None \
                        and value in domains[i] and c.admits(pod, info.node):
                    domains[i][value] += matching(info, c, meta.namespace(pod))
        state[self.name + "/score"] = (cs, domains, weights, ignored)
        state[self.name + "/order"] = [f.name for f in feasible]
        return OK

    def score(self, state: CycleState, pod: Obj, info: NodeInfo) -> int:
        cs, domains, weights, ignored = state[self.name + "/score"]
        if not cs or info.name in ignored:
            return 0
        total = 0.0
        for c, d, w in zip(cs, domains, weights, strict=True):
            value = meta.labels(info.node).get(c.topology_key)
            if value is None:
                continue  # only the system defaults rank such a node
            count = matching(info, c, meta.namespace(pod)) if c.topology_key == HOSTNAME \
                else d[value]
            total += count * w + (c.max_skew - 1)
        return round(total)

    def normalize(self, state: CycleState, scores: list[int]) -> None:
        """Fewer matching pods scores higher; ignored nodes score 0."""
        cs, _, _, ignored = state[self.name + "/score"]
        if not cs:
            return
        names: list[str] = state[self.name + "/order"]  # scores come in this order
        valid = [s for s, n in zip(scores, names, strict=True) if n not in ignored]
        low, high = min(valid, default=0), max(valid, default=0)
        for i, s in enumerate(scores):
            if names[i] in ignored:
                scores[i] = 0
            elif high == 0:
                scores[i] = MAX_SCORE
            else:
                scores[i] = MAX_SCORE * (high + low - s) // high
