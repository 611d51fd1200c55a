"""DefaultPreemption over plain objects, as kube's default_preemption_test
tables: which node, which victims (the fewest, least important; budgets
spared where possible), what it says when preemption cannot help, and the
pods nominated to a node keeping their room."""

from __future__ import annotations

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import schedule
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo
from netplane.cluster.scheduler.preemption import (
    Candidate,
    DefaultPreemption,
    pick_one,
    split_by_budget,
)
from netplane.cluster.scheduler.profiles import default_profile


def node(name: str, cpu: str = "2") -> Obj:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, cpu: str, prio: int = 0, *, started: str = "2026-01-01T00:00:00Z",
        labels: dict[str, str] | None = None, policy: str | None = None) -> Obj:
    spec: Obj = {"priority": prio, "containers": [
        {"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
    if policy:
        spec["preemptionPolicy"] = policy
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "labels": labels or {}},
            "spec": spec, "status": {"startTime": started}}


def on(n: Obj, *pods: Obj) -> NodeInfo:
    return NodeInfo(n, [PodInfo.of(p) for p in pods])


def budget(name: str, allowed: int, **labels: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": labels}},
            "status": {"disruptionsAllowed": allowed}}


def names(pods: tuple[Obj, ...]) -> list[str]:
    return [meta.name(p) for p in pods]


def test_the_fewest_least_important_victims_on_the_cheapest_node() -> None:
    nodes = [on(node("n1"), pod("a", "1", 5), pod("b", "1", 5)),
             on(node("n2"), pod("c", "1", 1), pod("d", "500m", 9))]
    d = schedule(pod("big", "1", 10), nodes, default_profile())
    assert d.node is None
    # n2: only c must go (d has room beside the preemptor), and c is the
    # least important victim anywhere.
    assert (d.preempted.nominated, names(d.preempted.victims)) == ("n2", ["c"])
    assert d.message == "0/2 nodes are available: 2 Insufficient cpu."


def test_victims_are_put_back_most_important_first() -> None:
    n = on(node("n1", cpu="3"), pod("low", "1", 1), pod("mid", "1", 2), pod("high", "1", 3))
    d = schedule(pod("new", "1", 10), [n], default_profile())
    assert names(d.preempted.victims) == ["low"]
    d = schedule(pod("bigger", "2", 10), [n], default_profile())
    assert names(d.preempted.victims) == ["mid", "low"]  # most important first


def test_equal_or_higher_priority_pods_are_never_victims() -> None:
    n = on(node("n1"), pod("same", "2", 10))
    d = schedule(pod("new", "1", 10), [n], default_profile())
    assert d.preempted.victims == () and d.preempted.nominated == ""
    assert d.message == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes "
                         "are available: 1 No preemption victims found for incoming pod..")


def test_a_node_where_evicting_everything_is_not_enough_says_why() -> None:
    n = on(node("n1", cpu="1"), pod("low", "500m", 0))
    d = schedule(pod("huge", "2", 10), [n], default_profile())
    assert d.message == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes "
                         "are available: 1 Insufficient cpu..")


def test_unresolvable_nodes_are_not_helpful_and_never_is_never() -> None:
    cordoned = node("n1")
    cordoned["spec"]["unschedulable"] = True
    d = schedule(pod("new", "1", 10), [on(cordoned, pod("low", "1"))], default_profile())
    assert d.message.endswith("preemption: 0/1 nodes are available: 1 Preemption is not "
                              "helpful for scheduling..")
    d = schedule(pod("meek", "2", 10, policy="Never"), [on(node("n1"), pod("low", "2"))],
                 default_profile())
    assert d.preempted.victims == ()
    assert d.message == ("0/1 nodes are available: 1 Insufficient cpu. preemption: not "
                         "eligible due to preemptionPolicy=Never..")


def test_a_pod_waiting_for_its_victims_does_not_preempt_again() -> None:
    going = pod("low", "2", 0)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:05Z"
    going["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                      "reason": "PreemptionByScheduler"}]
    waiting = pod("new", "1", 10)
    waiting["status"]["nominatedNodeName"] = "n1"
    d = schedule(waiting, [on(node("n1"), going), on(node("n2"), pod("other", "2"))],
                 default_profile())
    assert d.preempted.victims == ()
    assert d.message.endswith("preemption: not eligible due to a terminating pod on the "
                              "nominated node..")


def test_budgets_are_spared_where_another_victim_will_do() -> None:
    guarded = pod("guarded", "1", 1, labels={"app": "db"})
    spare = pod("spare", "1", 2, labels={"app": "web"})
    n = on(node("n1"), guarded, spare)
    profile = default_profile(budgets=lambda: [budget("db", 0, app="db")])
    d = schedule(pod("new", "1", 10), [n], profile)
    # guarded is the less important, but evicting it would break its budget.
    assert names(d.preempted.victims) == ["spare"]


def test_a_node_breaking_no_budget_is_preferred() -> None:
    n1 = on(node("n1"), pod("db", "2", 0, labels={"app": "db"}))
    n2 = on(node("n2"), pod("web", "2", 5, labels={"app": "web"}))
    profile = default_profile(budgets=lambda: [budget("db", 0, app="db")])
    d = schedule(pod("new", "1", 10), [n1, n2], profile)
    assert d.preempted.nominated == "n2"


def test_split_by_budget_counts_each_budget_down() -> None:
    pods = [PodInfo.of(pod(f"p{i}", "1", labels={"app": "db"})) for i in range(3)]
    bad, good = split_by_budget(pods, [budget("db", 2, app="db")])
    assert [meta.name(p.pod) for p in good] == ["p0", "p1"]
    assert [meta.name(p.pod) for p in bad] == ["p2"]
    # A pod the budget already counts as disrupted costs nothing.
    counted = budget("db", 0, app="db")
    counted["status"]["disruptedPods"] = {"p0": "2026-01-01T00:00:00Z"}
    bad, good = split_by_budget(pods[:1], [counted])
    assert (bad, [meta.name(p.pod) for p in good]) == ([], ["p0"])


def test_pick_one_follows_kubes_order() -> None:
    def cand(node_name: str, *victims: Obj, broken: int = 0) -> Candidate:
        return Candidate(node_name, victims, broken)

    low, mid = pod("low", "1", 1), pod("mid", "1", 5)
    assert pick_one([cand("a", low, broken=1), cand("b", mid)]).node == "b"
    assert pick_one([cand("a", mid), cand("b", low)]).node == "b"
    assert pick_one([cand("a", low, pod("x", "1", 1)), cand("b", low)]).node == "b"
    early = pod("early", "1", 1, started="2026-01-01T00:00:00Z")
    late = pod("late", "1", 1, started="2026-01-02T00:00:00Z")
    assert pick_one([cand("a", early), cand("b", late)]).node == "b"
    assert pick_one([cand("a", late), cand("b", pod("same", "1", 1,
                                                    started="2026-01-02T00:00:00Z"))]).node \
        == "a"


def test_a_nominated_pod_keeps_its_room_from_lower_priority_pods() -> None:
    waiting = pod("preemptor", "2", 10)
    nominated = {"n1": [PodInfo.of(waiting)]}
    nodes = [on(node("n1")), on(node("n2", cpu="1"))]
    low = schedule(pod("low", "1", 0), nodes, default_profile(), nominated)
    assert low.node == "n2"
    # Of equal or higher priority, the room is not kept.
    high = schedule(pod("high", "1", 20), nodes, default_profile(), nominated)
    assert high.node == "n1"


def test_eligibility_ignores_an_unresolvable_nominated_node() -> None:
    waiting = pod("new", "1", 10)
    waiting["status"]["nominatedNodeName"] = "gone"
    assert DefaultPreemption().eligible(waiting, [], {}) == ""
