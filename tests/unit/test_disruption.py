"""PodDisruptionBudget arithmetic as kube's disruption controller does it:
expected and desired counts by minAvailable or maxUnavailable (ints and
percentages), healthy pods, and the eviction marks that time out."""

from __future__ import annotations

from typing import Any

from netplane.api import disruption, meta
from netplane.api.meta import Obj
from netplane.api.validation import Errors

NOW = meta.parse_time("2026-01-01T00:10:00Z").timestamp()


def pdb(**spec: Any) -> Obj:
    return {"metadata": {"name": "b", "namespace": "ns", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def pod(name: str, *, ready: bool = True, deleting: bool = False) -> Obj:
    md: Obj = {"name": name, "namespace": "ns", "labels": {"app": "web"}}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:09:00Z"
    return {"metadata": md, "status": {"conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_counts_by_each_kind_of_budget() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    assert disruption.counts(pdb(minAvailable=2), pods, 0) == disruption.Counts(3, 2)
    assert disruption.counts(pdb(minAvailable="50%"), pods, 4) == disruption.Counts(4, 2)
    assert disruption.counts(pdb(minAvailable="51%"), pods, 4) == disruption.Counts(4, 3)
    assert disruption.counts(pdb(maxUnavailable=1), pods, 5) == disruption.Counts(5, 4)
    # maxUnavailable's percentage rounds up too: 34% of 3 is 2 that may go.
    assert disruption.counts(pdb(maxUnavailable="34%"), pods, 3) == disruption.Counts(3, 1)
    assert disruption.counts(pdb(maxUnavailable=9), pods, 3) == disruption.Counts(3, 0)
    assert disruption.needs_scale(pdb(maxUnavailable=1))
    assert disruption.needs_scale(pdb(minAvailable="10%"))
    assert not disruption.needs_scale(pdb(minAvailable=1))


def test_status_counts_ready_pods_not_going_nor_marked() -> None:
    budget = pdb(minAvailable=1)
    budget["status"] = {"disruptedPods": {"b": "2026-01-01T00:09:30Z",
                                          "c": "2026-01-01T00:05:00Z"}}
    pods = [pod("a"), pod("b"), pod("c"), pod("d", ready=False), pod("e", deleting=True)]
    status, recheck = disruption.status_of(budget, pods, 0, NOW)
    # b's mark holds (30 s old); c's is older than two minutes and goes.
    assert status["disruptedPods"] == {"b": "2026-01-01T00:09:30Z"}
    assert recheck == meta.parse_time("2026-01-01T00:11:30Z").timestamp()
    assert (status["currentHealthy"], status["desiredHealthy"], status["expectedPods"],
            status["disruptionsAllowed"], status["observedGeneration"]) == (2, 1, 5, 1, 3)
    cond = status["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == \
        ("DisruptionAllowed", "True", "SufficientPods")


def test_no_pods_expected_allows_nothing() -> None:
    status, _ = disruption.status_of(pdb(maxUnavailable=1), [], 0, NOW)
    assert status["disruptionsAllowed"] == 0
    assert status["conditions"][0]["reason"] == "InsufficientPods"


def test_selection_is_by_namespace_and_selector() -> None:
    assert disruption.selects(pdb(), pod("a"))
    other = pod("a")
    other["metadata"]["namespace"] = "elsewhere"
    assert not disruption.selects(pdb(), other)
    everything = pdb()
    everything["spec"]["selector"] = {}
    assert disruption.selects(everything, {"metadata": {"namespace": "ns"}})
    del everything["spec"]["selector"]
    assert not disruption.selects(everything, pod("a"))


def test_validation() -> None:
    errs: Errors = []
    disruption.validate(pdb(minAvailable=1, maxUnavailable="200%",
                            unhealthyPodEvictionPolicy="Sometimes"), errs)
    assert [e.path for e in errs] == ["spec", "spec.maxUnavailable",
                                      "spec.unhealthyPodEvictionPolicy"]
    assert "must not be greater than 100%" in errs[1].message
