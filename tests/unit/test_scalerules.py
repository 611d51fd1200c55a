"""How far an HPA may move its target, as kube's horizontal_test.go
checks it: the 5-minute downscale stabilization and the double-or-four
limit without a behavior; with one, the scale-up and scale-down windows,
Pods and Percent policies over their periods with Max, Min and Disabled,
and the min/max clamps, each with kube's ScalingLimited reason."""

from __future__ import annotations

from netplane.api import autoscaling
from netplane.api.meta import Obj
from netplane.cluster.controllers.scalerules import (
    History,
    Outcome,
    Recommendation,
    normalize,
    normalize_with_behavior,
    record_scale,
)

T = 1_000_000.0


def limited(out: Outcome) -> tuple[bool, str]:
    c = out.conditions[1]
    assert c.type == "ScalingLimited"
    return c.status, c.reason


def able(out: Outcome) -> str:
    c = out.conditions[0]
    assert c.type == "AbleToScale"
    return c.reason


def behavior(up: Obj | None = None, down: Obj | None = None) -> Obj:
    b: Obj = {"scaleUp": up or autoscaling.default_scale_up(),
              "scaleDown": down or autoscaling.default_scale_down()}
    return b


# -- without a behavior --

def test_scale_down_waits_for_the_highest_recommendation_of_five_minutes() -> None:
    h = History([Recommendation(5, T)])
    out = normalize(h, 5, 2, 1, 10, T + 100)
    assert out.replicas == 5 and able(out) == "ScaleDownStabilized"
    out = normalize(h, 5, 2, 1, 10, T + 301)
    assert out.replicas == 2 and able(out) == "ReadyForNewScale"


def test_scale_up_is_at_most_double_or_four() -> None:
    out = normalize(History(), 1, 10, 1, 20, T)
    assert out.replicas == 4 and limited(out) == (True, "ScaleUpLimit")
    out = normalize(History(), 3, 10, 1, 20, T)
    assert out.replicas == 6
    out = normalize(History(), 3, 10, 1, 5, T)
    assert out.replicas == 5 and limited(out) == (True, "TooManyReplicas")


def test_min_and_within_range() -> None:
    out = normalize(History(), 3, 1, 2, 5, T)
    assert out.replicas == 2 and limited(out) == (True, "TooFewReplicas")
    out = normalize(History(), 3, 4, 2, 5, T)
    assert out.replicas == 4 and limited(out) == (False, "DesiredWithinRange")


# -- with a behavior --

def test_default_scale_up_policies_take_the_larger_of_four_pods_and_double() -> None:
    out = normalize_with_behavior(History(), 2, 20, 1, 50, behavior(), T)
    assert out.replicas == 6 and limited(out) == (True, "ScaleUpLimit")
    out = normalize_with_behavior(History(), 10, 50, 1, 50, behavior(), T)
    assert out.replicas == 20


def test_select_min_and_disabled() -> None:
    up = {**autoscaling.default_scale_up(), "selectPolicy": "Min"}
    assert normalize_with_behavior(History(), 2, 20, 1, 50, behavior(up), T).replicas == 4
    off = {**autoscaling.default_scale_up(), "selectPolicy": "Disabled"}
    out = normalize_with_behavior(History(), 2, 20, 1, 50, behavior(off), T)
    assert out.replicas == 2 and limited(out) == (True, "ScaleUpLimit")


def test_scale_events_spend_the_policy_for_its_period() -> None:
    up = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
          "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}
    b, h = behavior(up), History()
    out = normalize_with_behavior(h, 2, 20, 1, 50, b, T)
    assert out.replicas == 6
    record_scale(h, b, 2, 6, T)
    assert normalize_with_behavior(h, 6, 20, 1, 50, b, T + 10).replicas == 6
    assert normalize_with_behavior(h, 6, 20, 1, 50, b, T + 61).replicas == 10


def test_scale_down_percent_policy_and_min() -> None:
    down = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}
    out = normalize_with_behavior(History(), 10, 1, 1, 20, behavior(down=down), T)
    assert out.replicas == 5 and limited(out) == (True, "ScaleDownLimit")
    out = normalize_with_behavior(History(), 10, 1, 8, 20, behavior(down=down), T)
    assert out.replicas == 8 and limited(out) == (True, "TooFewReplicas")


def test_windows_hold_recommendations_both_ways() -> None:
    down = {**autoscaling.default_scale_down(), "stabilizationWindowSeconds": 60}
    h = History([Recommendation(8, T - 30)])
    out = normalize_with_behavior(h, 8, 4, 1, 20, behavior(down=down), T)
    assert out.replicas == 8 and able(out) == "ScaleDownStabilized"
    up = {**autoscaling.default_scale_up(), "stabilizationWindowSeconds": 60}
    h = History([Recommendation(3, T - 30)])
    out = normalize_with_behavior(h, 3, 6, 1, 20, behavior(up), T)
    assert out.replicas == 3 and able(out) == "ScaleUpStabilized"


def test_an_unset_scale_down_window_is_the_controllers_five_minutes() -> None:
    h = History([Recommendation(8, T - 200)])
    out = normalize_with_behavior(h, 8, 4, 1, 20, behavior(), T)
    assert out.replicas == 8
    assert normalize_with_behavior(h, 8, 4, 1, 20, behavior(), T + 400).replicas == 4
