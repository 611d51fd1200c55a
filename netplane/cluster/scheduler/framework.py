"""The scheduling framework, as kube-scheduler's: pre-filter plugins look
at the pod once per cycle, filter plugins say whether it fits a node (with
reasons when it does not), score plugins rank the nodes that fit, each
normalised to 0..100 and weighted. A pod that fits nowhere goes to the
post-filter (preemption), and gets the FitError message kube-scheduler
writes. Pods nominated to a node (preemptors waiting for their victims to
go) count there for every pod of no higher priority."""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from netplane.api import meta, priority
from netplane.api.meta import Obj
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo, Snapshot
from netplane.cluster.scheduler.ranking import Ranking, Verdict

MAX_SCORE = 100
NO_NODES = "no nodes available to schedule pods"


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
_SUCCESS = Code.SUCCESS  # hot loops test st.code, not the property
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
class PostFilterResult:
    """What the post-filter did: the node the pod is nominated to (None:
    leave the pod's nomination as it is; "": clear it), the pods to evict
    for it, and what it says for the FitError ("" when it helped)."""

    nominated: str | None = None
    victims: tuple[Obj, ...] = ()
    message: str = ""


# Pods nominated to each node, as the scheduler's nominator keeps them.
Nominated = Mapping[str, Sequence[PodInfo]]


class PostFilterPlugin(Protocol):
    name: str

    def post_filter(self, pod: Obj, nodes: Sequence[NodeInfo], statuses: Mapping[str, Status],
                    profile: Profile, nominated: Nominated) -> PostFilterResult: ...


@dataclass(frozen=True)
class Weighted:
    plugin: ScorePlugin
    weight: int
    # Which optional steps the plugin has, found once (a runtime check of a
    # Protocol costs more than the step itself).
    pre_scores: bool = field(init=False)
    normalizes: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pre_scores", isinstance(self.plugin, PreScorePlugin))
        object.__setattr__(self, "normalizes", isinstance(self.plugin, NormalizePlugin))


@dataclass(frozen=True)
class Profile:
    filters: Sequence[FilterPlugin]
    scorers: Sequence[Weighted] = ()
    post_filter: PostFilterPlugin | None = None
    name: str = "default-scheduler"
    # kube's percentageOfNodesToScore: None (or 0) adapts to the cluster's size.
    percentage: int | None = None
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
    # What the post-filter did when the pod fit nowhere.
    preempted: PostFilterResult = PostFilterResult()
    # How many nodes the filters looked at (kube starts the next pod after them).
    processed: int = 0


@dataclass
class Trace:
    """Everything one decision looked at, for explaining it: each node's
    verdict (the rejecting plugin and why, or None when it fit), and each
    score plugin's raw and normalised scores by node (None: it had no say)."""

    pre_filter: tuple[str, Status] | None = None
    verdicts: dict[str, tuple[str, Status] | None] = field(default_factory=dict)
    scores: dict[str, dict[str, tuple[int, int]] | None] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)


MIN_FEASIBLE_NODES, MIN_FEASIBLE_PERCENT = 100, 5


def node_local(plugin: object) -> bool:
    """A plugin whose verdict and score on a node depend only on the pod and
    that node (not on other nodes, nor on other pods' labels elsewhere)."""
    return bool(getattr(plugin, "node_local", False))


def shape(pod: Obj) -> str:
    """What node-local plugins read of a pod: pods of one shape (the replicas
    of one template) get the same verdict and score on an unchanged node."""
    spec = pod.get("spec") or {}
    containers = [(c.get("resources"), c.get("ports"), c.get("restartPolicy"), c.get("image"))
                  for c in (*(spec.get("initContainers") or []), *(spec.get("containers") or []))]
    return json.dumps((containers, spec.get("overhead"), spec.get("nodeSelector"),
                       (spec.get("affinity") or {}).get("nodeAffinity"),
                       spec.get("tolerations"), spec.get("nodeName")),
                      sort_keys=True, default=str)


# One node's memo for one shape: the node's version then, its filter
# verdict (status, plugin), and the raw scores by plugin name.
Memo = dict[str, tuple[tuple[object, int, int], tuple[Status, str], dict[str, int]]]


class Equivalence:
    """Node-local verdicts and raw scores by profile and pod shape, kept
    while the node is unchanged (kube once had such an equivalence cache):
    the replicas of a Deployment after the first are judged on the nodes
    that changed only. Profiles do not share memos: one may configure a
    plugin of the same name otherwise. A few hundred shapes at most, the
    oldest forgotten first."""

    def __init__(self, size: int = 256, rankings: int = 32) -> None:
        self.size = size
        self.memos: OrderedDict[str, Memo] = OrderedDict()
        # Trees over every node (kilobytes per node each): fewer of them.
        self.rankings_size = rankings
        self.rankings: OrderedDict[str, Ranking[NodeInfo]] = OrderedDict()

    def ranking(self, key: str, nodes: Snapshot, normalizing: int) -> Ranking[NodeInfo]:
        """The shape's ranking over ``nodes``: kept while no node came or went."""
        ranking = self.rankings.get(key)
        if ranking is None or ranking.epoch != nodes.epoch:
            ranking = self.rankings[key] = Ranking(nodes, nodes.epoch, normalizing)
            if len(self.rankings) > self.rankings_size:
                self.rankings.popitem(last=False)
        self.rankings.move_to_end(key)
        return ranking

    @staticmethod
    def key(pod: Obj, profile: str = "") -> str:
        """What the memo and the rankings of ``pod``'s shape are kept by."""
        return f"{profile}\0{shape(pod)}"

    def memo(self, pod: Obj, profile: str = "", *, key: str | None = None) -> Memo:
        key = key if key is not None else self.key(pod, profile)
        memo = self.memos.get(key)
        if memo is None:
            memo = self.memos[key] = {}
            if len(self.memos) > self.size:
                self.memos.popitem(last=False)
        else:
            self.memos.move_to_end(key)
        return memo


def nodes_to_find(percentage: int | None, total: int) -> int:
    """kube's numFeasibleNodesToFind: in a large cluster, filtering stops
    once this many nodes fit (50%, less 1% per 125 nodes, at least 5%),
    and only those are scored; small clusters are looked at whole."""
    if total < MIN_FEASIBLE_NODES:
        return total
    if not percentage:
        percentage = max(50 - total // 125, MIN_FEASIBLE_PERCENT)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES)


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


def run_filters(state: CycleState, pod: Obj, info: NodeInfo,
                filters: Sequence[FilterPlugin]) -> tuple[Status, str]:
    """The first rejection and the plugin's name; the rest are not asked."""
    for f in filters:
        st = f.filter(state, pod, info)
        if not st.ok:
            return st, f.name
    return OK, ""


def with_nominated(pod: Obj, info: NodeInfo, nominated: Nominated) -> NodeInfo | None:
    """``info`` with the pods nominated to it that ``pod`` must leave room
    for (no lower priority than its own, not itself); None when there are none."""
    prio, uid = priority.of(pod), meta.uid(pod)
    extra = [p for p in nominated.get(info.name, ())
             if priority.of(p.pod) >= prio and meta.uid(p.pod) != uid]
    if not extra:
        return None
    out = info.clone()
    for p in extra:
        out.add_pod(p)
    return out


def run_filters_with_nominated(state: CycleState, pod: Obj, info: NodeInfo,
                               filters: Sequence[FilterPlugin],
                               nominated: Nominated) -> tuple[Status, str]:
    """kube's RunFilterPluginsWithNominatedPods: the pod must fit beside the
    nominated pods, and without them too (for affinity to them)."""
    crowded = with_nominated(pod, info, nominated)
    if crowded is not None:
        st, by = run_filters(state, pod, crowded, filters)
        if not st.ok:
            return st, by
    return run_filters(state, pod, info, filters)


def _scores(state: CycleState, pod: Obj, plugin: ScorePlugin, name: str,
            feasible: Sequence[NodeInfo], memos: Sequence[dict[str, int]] | None) -> list[int]:
    """The plugin's raw scores, from each node's memo (of its version now)
    where the plugin is node-local."""
    if memos is None or not node_local(plugin):
        return [plugin.score(state, pod, info) for info in feasible]
    out = [m.get(name) for m in memos]
    if None in out:
        for i, raw in enumerate(out):
            if raw is None:
                out[i] = memos[i][name] = plugin.score(state, pod, feasible[i])
    return out  # type: ignore[return-value]


def _local_totals(state: CycleState, pod: Obj, feasible: Sequence[NodeInfo],
                  memos: Sequence[dict[str, int]], local: Sequence[tuple[str, Weighted]],
                  totals: list[int]) -> None:
    """Adds the weighted sum of the node-local scorers that need no
    normalising, kept in each node's memo, so that a node unchanged since an
    earlier pod of the shape costs one lookup, whatever the plugins."""
    key = "\0" + ",".join(f"{name}*{w.weight}" for name, w in local)
    for i, m in enumerate(memos):
        t = m.get(key)
        if t is None:
            t = 0
            for name, w in local:
                raw = m.get(name)
                if raw is None:
                    raw = m[name] = w.plugin.score(state, pod, feasible[i])
                t += raw * w.weight
            m[key] = t
        totals[i] += t


def run_scores(state: CycleState, pod: Obj, feasible: Sequence[NodeInfo],
               nodes: Sequence[NodeInfo], scorers: Sequence[Weighted],
               trace: Trace | None = None,
               memos: Sequence[dict[str, int]] | None = None) -> list[int]:
    """Each plugin's scores over the feasible nodes, normalised, weighted,
    summed. Without a trace, only the ranking counts: a node-local plugin
    that scores every node alike (so normalised alike) adds nothing to it
    and is left out."""
    totals = [0] * len(feasible)
    fast = memos is not None and trace is None
    local: list[tuple[str, Weighted]] = []
    for w in scorers:
        name = str(getattr(w.plugin, "name", type(w.plugin).__name__))
        if trace is not None:
            trace.weights[name] = w.weight
        if w.pre_scores and w.plugin.pre_score(  # type: ignore[attr-defined]
                state, pod, feasible, nodes).code is Code.SKIP:
            if trace is not None:
                trace.scores[name] = None
            continue  # the same for every node: no say in the ranking
        if fast and not w.normalizes and node_local(w.plugin):
            local.append((name, w))
            continue
        scores = _scores(state, pod, w.plugin, name, feasible, memos)
        if fast and node_local(w.plugin) and min(scores) == max(scores):
            continue
        raw = list(scores) if trace is not None else scores
        if w.normalizes:
            w.plugin.normalize(state, scores)  # type: ignore[attr-defined]
        if trace is not None:
            trace.scores[name] = {info.name: (raw[i], scores[i])
                                  for i, info in enumerate(feasible)}
        weight = w.weight
        for i, s in enumerate(scores):
            totals[i] += s * weight
    if local:
        assert memos is not None
        _local_totals(state, pod, feasible, memos, local, totals)
    return totals


def _ranked(state: CycleState, pod: Obj, nodes: Snapshot, profile: Profile,
            filters: Sequence[FilterPlugin], cache: Equivalence, shape_key: str,
            start: int, to_find: int) -> Decision | None:
    """The decision from the shape's ranking, kept across pods (see
    ranking.py); None when it does not apply: a scorer that is not
    node-local has a say, a normalising one ranks the nodes apart, or no
    node fits (the slow path then writes why)."""
    local: list[tuple[str, Weighted]] = []
    normalizing: list[Weighted] = []
    for w in profile.scorers:
        # Skip verdicts read the pod and the cluster, not which nodes fit.
        if w.pre_scores and w.plugin.pre_score(  # type: ignore[attr-defined]
                state, pod, (), nodes).code is Code.SKIP:
            continue
        if not node_local(w.plugin):
            return None
        if w.normalizes:
            normalizing.append(w)
        else:
            local.append((str(getattr(w.plugin, "name", "")), w))
    key = "\0".join((shape_key, ",".join(f.name for f in filters),
                     ",".join(f"{n}*{w.weight}" for n, w in local),
                     ",".join(str(getattr(w.plugin, "name", "")) for w in normalizing)))

    def judge(info: NodeInfo) -> Verdict:
        if run_filters(state, pod, info, filters)[0].code is not _SUCCESS:
            return None
        return (sum(w.plugin.score(state, pod, info) * w.weight for _, w in local),
                tuple(w.plugin.score(state, pod, info) for w in normalizing))
    assert nodes.feed is not None
    ranking = cache.ranking(key, nodes, len(normalizing))
    ranking.sync(nodes.feed, judge)
    if not ranking.feasible or not ranking.uniform():
        return None
    best, processed = ranking.pick(start, to_find)
    return Decision(nodes[best].name, "", processed=processed)


def pre_filter(state: CycleState, pod: Obj, nodes: Sequence[NodeInfo],
               profile: Profile) -> tuple[Status, str, list[FilterPlugin]]:
    """The pre-filters over ``nodes``: a rejection for every node and its
    plugin, or OK and the filters left to run."""
    skipped = set()
    for p in profile.pre_filters:
        st = p.pre_filter(state, pod, nodes)
        if st.code is Code.SKIP:
            skipped.add(p.name)
        elif not st.ok:
            return st, p.name, []
    return OK, "", [f for f in profile.filters if f.name not in skipped]


def _unschedulable(pod: Obj, nodes: Sequence[NodeInfo], statuses: dict[str, Status],
                   profile: Profile, nominated: Nominated, rejectors: frozenset[str],
                   reason: str) -> Decision:
    """The post-filter's turn, then kube's FitError message: ``reason`` and,
    unless preemption found a way, what preemption said, as one more
    sentence though it ends in a full stop already (the message ends in "..").
    A profile without a post-filter says nothing more, as kube's."""
    done = PostFilterResult()
    if profile.post_filter is not None:
        done = profile.post_filter.post_filter(pod, nodes, statuses, profile, nominated)
    message = f"{reason} {done.message}." if done.message else reason
    return Decision(None, message, rejectors, done)


def schedule(pod: Obj, nodes: Sequence[NodeInfo], profile: Profile,
             nominated: Nominated | None = None, *, start: int = 0,
             trace: Trace | None = None, cache: Equivalence | None = None) -> Decision:
    """One scheduling cycle. Filtering starts at node ``start`` (kube goes
    round the nodes from one pod to the next) and, in a large cluster,
    stops once enough nodes fit; a ``trace`` looks at every node. With a
    ``cache``, node-local work done for an earlier pod of the same shape on
    a node unchanged since is not done again."""
    if not nodes:
        return Decision(None, NO_NODES)
    nominated = nominated or {}
    state: CycleState = {}
    st, by, filters = pre_filter(state, pod, nodes, profile)
    if not st.ok:
        if trace is not None:
            trace.pre_filter = (by, st)
        # kube's FitError with a PreFilterMsg: the reason once, not counted.
        return _unschedulable(pod, nodes, {n.name: st for n in nodes}, profile, nominated,
                              frozenset({by}), f"0/{len(nodes)} nodes are available: "
                              f"{st.reason}.")
    # kube's evaluateNominatedNode: a pod that preempted goes where it
    # made room, if it fits there.
    wanted = (pod.get("status") or {}).get("nominatedNodeName")
    if wanted and trace is None:
        for info in nodes:
            if info.name == wanted and run_filters_with_nominated(
                    state, pod, info, filters, nominated)[0].ok:
                return Decision(info.name, "", processed=0)
    to_find = len(nodes) if trace is not None else nodes_to_find(profile.percentage,
                                                                   len(nodes))
    start %= len(nodes)
    shape_key, memo = "", None
    if cache is not None and trace is None:
        shape_key = Equivalence.key(pod, profile.name)
        memo = cache.memo(pod, key=shape_key)
    # The filters' verdicts are memoised only when every filter left is node-local.
    filter_memo = memo if memo is not None and all(node_local(f) for f in filters) else None
    crowded = bool(nominated)  # any pod nominated anywhere (rare): checked per node
    if filter_memo is not None and not crowded and isinstance(nodes, Snapshot) \
            and nodes.feed is not None and nodes.epoch == nodes.feed.epoch:
        assert cache is not None
        ranked = _ranked(state, pod, nodes, profile, filters, cache, shape_key, start,
                         to_find)
        if ranked is not None:
            return ranked
    feasible: list[NodeInfo] = []
    # The score memo of each feasible node, when filters were memoised.
    memos: list[dict[str, int]] | None = [] if filter_memo is not None else None
    failed: dict[str, Status] = {}
    rejectors: set[str] = set()
    processed = 0
    total = len(nodes)
    for k in range(total):
        if len(feasible) >= to_find:
            break
        info = nodes[(start + k) % total]
        processed = k + 1
        name = info.name
        # A node with nominated pods is judged afresh: they are not in its version.
        alone = not crowded or not nominated.get(name)
        entry = filter_memo.get(name) if filter_memo is not None else None
        if entry is not None and alone and entry[0] == info.version:
            (st, by), scores = entry[1], entry[2]
        else:
            st, by = run_filters_with_nominated(state, pod, info, filters, nominated)
            scores = {}
            if filter_memo is not None and alone:
                filter_memo[name] = (info.version, (st, by), scores)
        if st.code is _SUCCESS:
            feasible.append(info)
            if memos is not None:
                memos.append(scores)
            if trace is not None:
                trace.verdicts[name] = None
        else:
            failed[name] = st
            rejectors.add(by)
            if trace is not None:
                trace.verdicts[name] = (by, st)
    if not feasible:
        return _unschedulable(pod, nodes, failed, profile, nominated, frozenset(rejectors),
                              fit_error(len(nodes), list(failed.values())))
    if len(feasible) == 1 and trace is None:
        return Decision(feasible[0].name, "", processed=processed)
    totals = run_scores(state, pod, feasible, nodes, profile.scorers, trace, memos)
    if trace is not None:
        trace.totals = {info.name: totals[i] for i, info in enumerate(feasible)}
    # Ties go to the first name, for stable tests (kube picks one at random).
    top = max(totals)
    best = min(feasible[i].name for i, t in enumerate(totals) if t == top)
    return Decision(best, "", processed=processed)
