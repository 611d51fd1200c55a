"""The HPA replica calculator, by the cases of kube's
replica_calculator_test.go: plain scale up and down, the tolerance, pods
missing metrics (100% on a scale-down, 0% on a scale-up), unready and
starting pods (0% on a scale-up, left out otherwise), raw value targets,
and what is an error."""

from __future__ import annotations

import datetime

import pytest

from netplane.api.meta import Obj
from netplane.cluster.controllers.hpametrics import milli
from netplane.cluster.controllers.replicacalc import (
    MetricError,
    PodMetric,
    pod_metrics,
    raw_resource_replicas,
    resource_replicas,
)

NOW = 1_800_000_000.0
WINDOW = 30.0


def stamp(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, request: str = "1", *, phase: str = "Running", ready: str = "True",
        started: float = NOW - 3600, ready_since: float = NOW - 3000) -> Obj:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": request}}}]},
            "status": {"phase": phase, "startTime": stamp(started),
                       "conditions": [{"type": "Ready", "status": ready,
                                       "lastTransitionTime": stamp(ready_since)}]}}


def usage(**milli: int) -> dict[str, PodMetric]:
    return {name: PodMetric(v, NOW - 5, WINDOW) for name, v in milli.items()}


def test_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    p = resource_replicas(3, 30, pods, usage(a=300, b=500, c=700), "cpu", NOW)
    assert (p.replicas, p.utilization, p.raw) == (5, 50, 500)


def test_scale_down() -> None:
    pods = [pod(n) for n in "abcde"]
    p = resource_replicas(5, 50, pods, usage(a=100, b=300, c=500, d=250, e=250), "cpu", NOW)
    assert (p.replicas, p.utilization) == (3, 28)


def test_within_tolerance_keeps_the_current_count() -> None:
    pods = [pod("a", "0.9"), pod("b", "1.0"), pod("c", "1.1")]
    p = resource_replicas(3, 100, pods, usage(a=1010, b=1090, c=1070), "cpu", NOW)
    assert (p.replicas, p.utilization) == (3, 105)


def never_ready(name: str) -> Obj:
    """Unready since it started (not a pod that was ready once)."""
    return pod(name, ready="False", started=NOW - 3600, ready_since=NOW - 3600 + 5)


def test_unready_pods_count_zero_on_a_scale_up() -> None:
    pods = [never_ready("a"), pod("b"), pod("c")]
    p = resource_replicas(3, 30, pods, usage(a=300, b=500, c=700), "cpu", NOW)
    # 60% over the two ready pods; with the unready one at 0%, 40% over three.
    assert (p.replicas, p.utilization) == (4, 60)


def test_unready_pods_are_left_out_of_a_scale_down() -> None:
    pods = [never_ready("a"), pod("b"), pod("c")]
    p = resource_replicas(3, 50, pods, usage(a=900, b=100, c=100), "cpu", NOW)
    assert (p.replicas, p.utilization) == (1, 10)


def test_pending_pods_are_unready() -> None:
    pods = [pod("a", phase="Pending"), pod("b"), pod("c")]
    p = resource_replicas(3, 30, pods, usage(b=500, c=700), "cpu", NOW)
    assert p.replicas == 4


def test_missing_metrics_count_full_request_on_a_scale_down() -> None:
    pods = [pod(n) for n in "abcd"]
    p = resource_replicas(4, 50, pods, usage(a=100, b=100, c=100), "cpu", NOW)
    # 10% of the three with metrics; with the fourth at 100%: 32.5% -> ceil(0.64 * 4).
    assert (p.replicas, p.utilization) == (3, 10)


def test_missing_metrics_count_zero_on_a_scale_up() -> None:
    pods = [pod(n) for n in "abcd"]
    p = resource_replicas(4, 50, pods, usage(a=900, b=900, c=900), "cpu", NOW)
    assert (p.replicas, p.utilization) == (6, 90)


def test_missing_metrics_that_would_turn_the_direction_keep_the_count() -> None:
    pods = [pod(n) for n in "ab"]
    p = resource_replicas(2, 100, pods, usage(a=1000), "cpu", NOW)
    assert p.replicas == 2


def test_a_pod_in_its_initialization_period_counts_once_ready_for_a_window() -> None:
    fresh = pod("a", started=NOW - 60, ready_since=NOW - 10)  # ready 10 s, window 30 s
    pods = [fresh, pod("b"), pod("c")]
    p = resource_replicas(3, 30, pods, usage(a=1000, b=500, c=700), "cpu", NOW)
    assert p.utilization == 60  # a's sample is not counted


def test_a_pod_that_never_became_ready_is_ignored_after_the_initialization_period() -> None:
    never = never_ready("a")
    once = pod("b", ready="False", started=NOW - 3600, ready_since=NOW - 60)
    p = resource_replicas(2, 50, [never, once], usage(a=1000, b=100), "cpu", NOW)
    assert p.utilization == 10  # only b, which was ready once, counts


def test_memory_ignores_readiness() -> None:
    pods = [pod("a", ready="False"), pod("b")]
    for p in pods:
        p["spec"]["containers"][0]["resources"]["requests"] = {"memory": "100Mi"}
    mi = 1024 * 1024 * 1000
    p = resource_replicas(2, 50, pods, usage(a=100 * mi, b=100 * mi), "memory", NOW)
    assert (p.replicas, p.utilization) == (4, 100)


def test_errors() -> None:
    with pytest.raises(MetricError, match="no pods returned by selector"):
        resource_replicas(1, 50, [], usage(a=1), "cpu", NOW)
    with pytest.raises(MetricError, match="did not receive metrics for targeted pods"):
        resource_replicas(1, 50, [pod("a", phase="Pending")], usage(), "cpu", NOW)
    bare = pod("a")
    bare["spec"]["containers"][0]["resources"] = {}
    with pytest.raises(MetricError, match="missing request for cpu in container c of Pod a"):
        resource_replicas(1, 50, [bare], usage(a=100), "cpu", NOW)


def test_raw_average_value_target() -> None:
    pods = [pod(n) for n in "abc"]
    p = raw_resource_replicas(3, 200, pods, usage(a=300, b=500, c=700), "cpu", NOW)
    assert (p.replicas, p.utilization) == (8, 500)
    same = raw_resource_replicas(3, 480, pods, usage(a=300, b=500, c=700), "cpu", NOW)
    assert same.replicas == 3


def test_pod_metrics_list_read_as_metrics_server_serves_it() -> None:
    items = [{"metadata": {"name": "a"}, "timestamp": stamp(NOW - 10), "window": "30s",
              "containers": [{"name": "c", "usage": {"cpu": "250m", "memory": "10Mi"}},
                             {"name": "s", "usage": {"cpu": "50m", "memory": "1Mi"}}]},
             {"metadata": {"name": "b"}, "timestamp": stamp(NOW - 10), "window": "1m0s",
              "containers": [{"name": "c", "usage": {"memory": "1Mi"}}]}]
    got = pod_metrics(items, "cpu")
    assert got == {"a": PodMetric(300, NOW - 10, 30.0)}
    assert pod_metrics(items, "cpu", "s")["a"].value == 50
    assert pod_metrics(items, "memory")["b"].window == 60.0


def test_status_values_are_written_as_kube_writes_milli_quantities() -> None:
    assert [milli(v) for v in (0, 150, 1000, 1500, 2_000_000_000, 95_779_498_666)] == [
        "0", "150m", "1", "1500m", "2M", "95779498666m"]
