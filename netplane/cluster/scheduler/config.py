"""Scheduler profiles from a KubeSchedulerConfiguration
(``kubescheduler.config.k8s.io/v1``), as kube-scheduler reads one: each
profile a ``schedulerName`` with its plugins per extension point (the
defaults, less what ``disabled`` names, ``*`` for all of them, plus what
``enabled`` adds or re-weights; ``multiPoint`` applies to every point a
plugin extends), plugin arguments in ``pluginConfig``, and
``percentageOfNodesToScore``. No file: kube's single default profile."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from netplane.api.meta import Obj
from netplane.cluster.scheduler import plugins
from netplane.cluster.scheduler.fit import (
    DEFAULT_SHAPE,
    NodeResourcesBalancedAllocation,
    NodeResourcesFit,
    Shape,
    Strategy,
)
from netplane.cluster.scheduler.framework import FilterPlugin, Profile, Weighted
from netplane.cluster.scheduler.interpod import InterPodAffinity, NamespaceLabels
from netplane.cluster.scheduler.preemption import Budgets, DefaultPreemption
from netplane.cluster.scheduler.spread import DefaultSelector, PodTopologySpread

API_VERSION = "kubescheduler.config.k8s.io/v1"
KIND = "KubeSchedulerConfiguration"
DEFAULT_SCHEDULER = "default-scheduler"
# kube-scheduler 1.32's default plugins, in its order, with its score weights.
DEFAULT_FILTERS = ("NodeUnschedulable", "NodeName", "TaintToleration",
                   "NodeAffinity", "NodePorts", "NodeResourcesFit", "VolumeBinding",
                   "PodTopologySpread", "InterPodAffinity")
DEFAULT_SCORES = (("TaintToleration", 3), ("NodeAffinity", 2), ("PodTopologySpread", 2),
                  ("InterPodAffinity", 2), ("NodeResourcesFit", 1),
                  ("NodeResourcesBalancedAllocation", 1), ("ImageLocality", 1))
DEFAULT_POST_FILTERS = ("DefaultPreemption",)
FILTERS = frozenset(DEFAULT_FILTERS)
SCORES = frozenset(n for n, _ in DEFAULT_SCORES)
POST_FILTERS = frozenset(DEFAULT_POST_FILTERS)
POINTS = {"filter": FILTERS, "score": SCORES, "postFilter": POST_FILTERS}
# Points kube has whose plugins are part of the ones above here (pre-filter
# and pre-score run with their filter and score) or that netplane's single
# binder does not let one change.
FIXED_POINTS = ("preEnqueue", "queueSort", "preFilter", "preScore", "reserve", "permit",
                "preBind", "bind", "postBind")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Deps:
    """What the plugins read of the cluster, from the scheduler's caches."""

    volume_binding: FilterPlugin | None = None
    namespace_labels: NamespaceLabels = lambda ns: {}
    default_selector: DefaultSelector = lambda pod: None
    budgets: Budgets = lambda: ()


@dataclass(frozen=True)
class ProfileSpec:
    name: str = DEFAULT_SCHEDULER
    filters: tuple[str, ...] = DEFAULT_FILTERS
    scores: tuple[tuple[str, int], ...] = DEFAULT_SCORES
    post_filters: tuple[str, ...] = DEFAULT_POST_FILTERS
    args: Mapping[str, Obj] = field(default_factory=dict)
    percentage: int | None = None


def _entries(section: Obj, key: str, where: str) -> list[Obj]:
    got = section.get(key) or []
    if not isinstance(got, list) or not all(isinstance(e, dict) and e.get("name")
                                            for e in got):
        raise ConfigError(f"{where}.{key}: a list of {{name: ...}} entries")
    return got


def _merge(current: list[tuple[str, int]], section: Any, point: str, where: str, *,
           strict: bool) -> list[tuple[str, int]]:
    """kube's mergePluginSet for one point: ``strict`` for the point's own
    section (a plugin that does not extend it is an error), not for
    multiPoint (it goes where the plugin fits)."""
    if section is None:
        return current
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: an object with enabled and disabled")
    disabled = {e["name"] for e in _entries(section, "disabled", where)}
    out = [] if "*" in disabled else [e for e in current if e[0] not in disabled]
    for e in _entries(section, "enabled", where):
        name = str(e["name"])
        if name not in PLUGINS:
            raise ConfigError(f'{where}.enabled: "{name}" does not exist')
        if name not in POINTS[point]:
            if strict:
                raise ConfigError(f'{where}.enabled: plugin "{name}" does not extend '
                                  f"{point} plugin")
            continue
        weight = e.get("weight")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int)
                                   or weight <= 0):
            raise ConfigError(f"{where}.enabled: the weight of {name} must be a positive "
                              f"integer, not {weight!r}")
        names = [n for n, _ in out]
        if name in names:
            i = names.index(name)
            out[i] = (name, int(weight or out[i][1] or 1))
        else:
            default = dict(DEFAULT_SCORES).get(name, 1) if point == "score" else 0
            out.append((name, int(weight or default)))
    return out


def _percentage(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ConfigError(f"{where}: percentageOfNodesToScore must be 0..100, not {value!r}")
    return value or None


def _profile(doc: Obj, where: str, percentage: int | None) -> ProfileSpec:
    name = doc.get("schedulerName") or DEFAULT_SCHEDULER
    cfg = doc.get("plugins") or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}.plugins: an object of extension points")
    for point in cfg:
        if point in FIXED_POINTS:
            raise ConfigError(f"{where}.plugins.{point}: not configurable in netplane (its "
                              "plugins run with their filter or score, or are fixed)")
        if point not in POINTS and point != "multiPoint":
            raise ConfigError(f"{where}.plugins.{point}: no such extension point")
    lists: dict[str, list[tuple[str, int]]] = {
        "filter": [(n, 0) for n in DEFAULT_FILTERS], "score": list(DEFAULT_SCORES),
        "postFilter": [(n, 0) for n in DEFAULT_POST_FILTERS]}
    for point in lists:
        lists[point] = _merge(lists[point], cfg.get("multiPoint"), point,
                              f"{where}.plugins.multiPoint", strict=False)
        lists[point] = _merge(lists[point], cfg.get(point), point,
                              f"{where}.plugins.{point}", strict=True)
    args: dict[str, Obj] = {}
    for i, pc in enumerate(doc.get("pluginConfig") or []):
        plugin = pc.get("name") if isinstance(pc, dict) else None
        if plugin not in ARGS:
            raise ConfigError(f"{where}.pluginConfig[{i}]: no arguments for {plugin!r} here "
                              f"(netplane takes them for {', '.join(sorted(ARGS))})")
        args[str(plugin)] = dict(pc.get("args") or {})
    return ProfileSpec(str(name), tuple(n for n, _ in lists["filter"]),
                       tuple(lists["score"]), tuple(n for n, _ in lists["postFilter"]),
                       args, _percentage(doc.get("percentageOfNodesToScore"), where)
                       or percentage)


def parse(doc: Any) -> list[ProfileSpec]:
    if not isinstance(doc, dict) or doc.get("kind") != KIND or \
            doc.get("apiVersion") != API_VERSION:
        raise ConfigError(f"expected apiVersion {API_VERSION} and kind {KIND}")
    percentage = _percentage(doc.get("percentageOfNodesToScore"), "config")
    specs = [_profile(p, f"profiles[{i}]", percentage)
             for i, p in enumerate(doc.get("profiles") or [{}])]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError("profiles: each schedulerName once")
    for spec in specs:
        # Each argument checked now, so that a bad file fails at start.
        build(spec, Deps())
    return specs


def load(path: Path) -> list[ProfileSpec]:
    try:
        return parse(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {e}") from None


def _fit(args: Obj) -> NodeResourcesFit:
    strategy = args.get("scoringStrategy") or {}
    try:
        kind = Strategy(strategy.get("type", Strategy.LEAST_ALLOCATED.value))
    except ValueError:
        raise ConfigError(f"NodeResourcesFit: scoringStrategy.type {strategy.get('type')!r}: "
                          "LeastAllocated, MostAllocated or RequestedToCapacityRatio") from None
    weights = {"cpu": 1, "memory": 1}
    if strategy.get("resources") is not None:
        weights = {"cpu": 0, "memory": 0}
        for r in strategy["resources"]:
            if r.get("name") not in weights:
                raise ConfigError(f"NodeResourcesFit: resource {r.get('name')!r}: only cpu and "
                                  "memory are scored here")
            weights[r["name"]] = int(r.get("weight", 1))
    shape: Shape = DEFAULT_SHAPE
    points = (strategy.get("requestedToCapacityRatio") or {}).get("shape")
    if points:
        shape = tuple((int(p["utilization"]), int(p["score"])) for p in points)
        if any(not 0 <= u <= 100 or not 0 <= s <= 10 for u, s in shape) or \
                any(a[0] >= b[0] for a, b in itertools.pairwise(shape)):
            raise ConfigError("NodeResourcesFit: the shape's utilizations rise within 0..100, "
                              "its scores within 0..10")
    return NodeResourcesFit(kind, weights=(weights["cpu"], weights["memory"]), shape=shape)


def _preemption(args: Obj, deps: Deps) -> DefaultPreemption:
    percent = int(args.get("minCandidateNodesPercentage", 10))
    absolute = int(args.get("minCandidateNodesAbsolute", 100))
    if not 0 <= percent <= 100 or absolute < 0:
        raise ConfigError("DefaultPreemption: minCandidateNodesPercentage 0..100, "
                          "minCandidateNodesAbsolute at least 0")
    return DefaultPreemption(deps.budgets, percent=percent, absolute=absolute)


# Plugins by name: how to make one from its arguments and the cluster's views.
PLUGINS: dict[str, Callable[[Obj, Deps], Any]] = {
    "NodeUnschedulable": lambda a, d: plugins.NodeUnschedulable(),
    "NodeName": lambda a, d: plugins.NodeName(),
    "TaintToleration": lambda a, d: plugins.TaintToleration(),
    "NodeAffinity": lambda a, d: plugins.NodeAffinity(),
    "NodePorts": lambda a, d: plugins.NodePorts(),
    "NodeResourcesFit": lambda a, d: _fit(a),
    "VolumeBinding": lambda a, d: d.volume_binding,
    "PodTopologySpread": lambda a, d: PodTopologySpread(d.default_selector),
    "InterPodAffinity": lambda a, d: InterPodAffinity(d.namespace_labels),
    "NodeResourcesBalancedAllocation": lambda a, d: NodeResourcesBalancedAllocation(),
    "ImageLocality": lambda a, d: plugins.ImageLocality(),
    "DefaultPreemption": _preemption,
}
ARGS = frozenset({"NodeResourcesFit", "DefaultPreemption"})


def build(spec: ProfileSpec, deps: Deps) -> Profile:
    """The profile's plugins, one instance of each for every point it serves."""
    made: dict[str, Any] = {}

    def plugin(name: str) -> Any:
        if name not in made:
            made[name] = PLUGINS[name](spec.args.get(name) or {}, deps)
        return made[name]

    filters = [p for n in spec.filters if (p := plugin(n)) is not None]
    post = [plugin(n) for n in spec.post_filters]
    return Profile(filters=filters, scorers=[Weighted(plugin(n), w) for n, w in spec.scores],
                   post_filter=post[0] if post else None, name=spec.name,
                   percentage=spec.percentage)
