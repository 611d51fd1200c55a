"""How far and how fast an HPA may move its target from the replicas its
metrics recommend (kube's normalizeDesiredReplicas and
normalizeDesiredReplicasWithBehaviors in pkg/controller/podautoscaler
horizontal.go): stabilization windows over past recommendations, the
scale-up and scale-down policies over past scale events, and the min/max
clamps, each with the condition kube sets. Pure: the caller passes ``now``
and keeps one History per HPA."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from netplane.api.meta import Obj

DOWNSCALE_STABILIZATION = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization


@dataclass
class Recommendation:
    replicas: int
    at: float


@dataclass
class ScaleEvent:
    change: int
    at: float
    outdated: bool = False


@dataclass
class History:
    """What the controller remembers of one HPA between syncs."""

    recommendations: list[Recommendation] = field(default_factory=list)
    ups: list[ScaleEvent] = field(default_factory=list)
    downs: list[ScaleEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    replicas: int
    conditions: tuple[Condition, ...]


READY = Condition("AbleToScale", True, "ReadyForNewScale", "recommended size matches current "
                  "size")
WITHIN = ("DesiredWithinRange", "the desired count is within the acceptable range")
TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica "
            "count")
UP_LIMIT = ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum "
            "scale rate")
DOWN_LIMIT = ("ScaleDownLimit", "the desired replica count is decreasing faster than the "
              "maximum scale rate")
UP_STABILIZED = ("ScaleUpStabilized", "recent recommendations were lower than current one, "
                 "applying the lowest recent recommendation")
DOWN_STABILIZED = ("ScaleDownStabilized", "recent recommendations were higher than current one, "
                   "applying the highest recent recommendation")


def _limited(replicas: int, stabilized: int, reason: tuple[str, str]) -> Condition:
    return Condition("ScalingLimited", replicas != stabilized, *reason)


# -- without spec.behavior --

def stabilize(history: History, desired: int, now: float, window: float) -> int:
    """kube's stabilizeRecommendation: the highest recommendation of the
    window, recording this one in place of one that has aged out."""
    highest, old = desired, None
    for i, rec in enumerate(history.recommendations):
        if rec.at < now - window:
            old = i
        elif rec.replicas > highest:
            highest = rec.replicas
    entry = Recommendation(desired, now)
    if old is not None:
        history.recommendations[old] = entry
    else:
        history.recommendations.append(entry)
    return highest


def clamp(current: int, desired: int, least: int, most: int) -> tuple[int, tuple[str, str]]:
    """kube's convertDesiredReplicasWithRules: min, max, and at most double
    (or four) at once."""
    up_limit = max(2 * current, 4)
    ceiling, why = (up_limit, UP_LIMIT) if most > up_limit else (most, TOO_MANY)
    if desired < least:
        return least, TOO_FEW
    if desired > ceiling:
        return ceiling, why
    return desired, WITHIN


def normalize(history: History, current: int, desired: int, least: int, most: int,
              now: float, *, window: float = DOWNSCALE_STABILIZATION) -> Outcome:
    stabilized = stabilize(history, desired, now, window)
    able = READY if stabilized == desired else Condition("AbleToScale", True, *DOWN_STABILIZED)
    replicas, why = clamp(current, stabilized, least, most)
    return Outcome(replicas, (able, _limited(replicas, stabilized, why)))


# -- with spec.behavior --

def _window(rules: Obj, fallback: float) -> float:
    value = rules.get("stabilizationWindowSeconds")
    return fallback if value is None else float(value)


def stabilize_with_behavior(history: History, current: int, desired: int, behavior: Obj,
                            now: float, down_fallback: float) -> tuple[int, tuple[str, str]]:
    """kube's stabilizeRecommendationWithBehaviors: no higher than the
    lowest recommendation of the scale-up window, no lower than the highest
    of the scale-down window."""
    up_cut = now - _window(behavior.get("scaleUp") or {}, 0.0)
    down_cut = now - _window(behavior.get("scaleDown") or {}, down_fallback)
    up, down, old = desired, desired, None
    for i, rec in enumerate(history.recommendations):
        if rec.at > up_cut:
            up = min(up, rec.replicas)
        if rec.at > down_cut:
            down = max(down, rec.replicas)
        if rec.at < up_cut and rec.at < down_cut:
            old = i
    entry = Recommendation(desired, now)
    if old is not None:
        history.recommendations[old] = entry
    else:
        history.recommendations.append(entry)
    recommendation = min(max(current, up), down)
    return recommendation, UP_STABILIZED if desired >= current else DOWN_STABILIZED


def _changed_within(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.at > now - period)


def _period_start(current: int, policy: Obj, history: History, now: float) -> int:
    period = float(policy.get("periodSeconds") or 0)
    return current - _changed_within(period, history.ups, now) + \
        _changed_within(period, history.downs, now)


def scale_up_limit(current: int, history: History, rules: Obj, now: float) -> int:
    """kube's calculateScaleUpLimitWithScalingRules."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for p in rules.get("policies") or []:
        start = _period_start(current, p, history, now)
        value = int(p.get("value") or 0)
        proposals.append(start + value if p.get("type") == "Pods"
                         else math.ceil(start * (1 + value / 100)))
    if not proposals:
        return current
    return min(proposals) if select == "Min" else max(proposals)


def scale_down_limit(current: int, history: History, rules: Obj, now: float) -> int:
    """kube's calculateScaleDownLimitWithBehaviors."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for p in rules.get("policies") or []:
        start = _period_start(current, p, history, now)
        value = int(p.get("value") or 0)
        proposals.append(start - value if p.get("type") == "Pods"
                         else int(start * (1 - value / 100)))
    if not proposals:
        return current
    return max(proposals) if select == "Min" else min(proposals)


def rate_limit(history: History, current: int, desired: int, least: int, most: int,
               behavior: Obj, now: float) -> tuple[int, tuple[str, str]]:
    """kube's convertDesiredReplicasWithBehaviorRate."""
    if desired > current:
        limit = max(scale_up_limit(current, history, behavior.get("scaleUp") or {}, now),
                    current)
        ceiling, why = (limit, UP_LIMIT) if most > limit else (most, TOO_MANY)
        if desired > ceiling:
            return ceiling, why
    elif desired < current:
        limit = min(scale_down_limit(current, history, behavior.get("scaleDown") or {}, now),
                    current)
        floor, why = (limit, DOWN_LIMIT) if least < limit else (least, TOO_FEW)
        if desired < floor:
            return floor, why
    return desired, WITHIN


def normalize_with_behavior(history: History, current: int, desired: int, least: int,
                            most: int, behavior: Obj, now: float, *,
                            window: float = DOWNSCALE_STABILIZATION) -> Outcome:
    stabilized, reason = stabilize_with_behavior(history, current, desired, behavior, now,
                                                 window)
    able = READY if stabilized == desired else Condition("AbleToScale", True, *reason)
    replicas, why = rate_limit(history, current, stabilized, least, most, behavior, now)
    return Outcome(replicas, (able, _limited(replicas, stabilized, why)))


def _longest_period(rules: Obj) -> float:
    return max((float(p.get("periodSeconds") or 0) for p in rules.get("policies") or []),
               default=0.0)


def record_scale(history: History, behavior: Obj | None, before: int, after: int,
                 now: float) -> None:
    """kube's storeScaleEvent: only HPAs with a behavior keep scale events."""
    if behavior is None or after == before:
        return
    up = after > before
    events = history.ups if up else history.downs
    longest = _longest_period(behavior.get("scaleUp" if up else "scaleDown") or {})
    for e in events:
        if e.at < now - longest:
            e.outdated = True
    entry = ScaleEvent(abs(after - before), now)
    for i, e in enumerate(events):
        if e.outdated:
            events[i] = entry
            return
    events.append(entry)
