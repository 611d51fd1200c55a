"""InterPodAffinity and PodTopologySpread as tables, after kube's
interpodaffinity and podtopologyspread plugin tests. The address plan:
zone-a holds node-1 and node-2, zone-b holds node-3; node-4 has no zone."""

from __future__ import annotations

import pytest

from netplane.api import selectors
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import OK, SKIP
from netplane.cluster.scheduler.interpod import (
    AFFINITY,
    ANTI_AFFINITY,
    EXISTING_ANTI,
    InterPodAffinity,
)
from netplane.cluster.scheduler.nodeinfo import NodeInfo
from netplane.cluster.scheduler.spread import (
    LABEL_MISSING,
    NOT_MATCH,
    PodTopologySpread,
    default_selector,
)
from tests.unit.test_scheduler_plugins import info, make_node, make_pod, run_filter, run_score

ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"


def zoned(name: str, zone: str | None, **labels: str) -> Obj:
    all_labels = {HOST: name, **labels}
    if zone:
        all_labels[ZONE] = zone
    return make_node(name, labels=all_labels)


NODES = [zoned("node-1", "a"), zoned("node-2", "a"), zoned("node-3", "b"), zoned("node-4", None)]


def term(key: str = ZONE, namespaces: list[str] | None = None,
         namespace_selector: Obj | None = None, **match: str) -> Obj:
    t: Obj = {"labelSelector": {"matchLabels": match}, "topologyKey": key}
    if namespaces is not None:
        t["namespaces"] = namespaces
    if namespace_selector is not None:
        t["namespaceSelector"] = namespace_selector
    return t


def with_affinity(kind: str, *terms: Obj, labels: dict[str, str] | None = None,
                  name: str = "p", namespace: str = "default") -> Obj:
    return make_pod(name, namespace=namespace, labels=labels, affinity={kind: {
        "requiredDuringSchedulingIgnoredDuringExecution": list(terms)}})


def spread(placed: dict[str, list[Obj]]) -> list[NodeInfo]:
    return [info(n, *placed.get(n["metadata"]["name"], [])) for n in NODES]


def app(name: str, value: str = "web", namespace: str = "default") -> Obj:
    return make_pod(name, namespace=namespace, labels={"app": value})


@pytest.mark.parametrize(("pod", "placed", "verdicts"), [
    # Required affinity: a matching pod in the zone.
    (with_affinity("podAffinity", term(app="db")), {"node-3": [app("d", "db")]},
     [AFFINITY, AFFINITY, "", AFFINITY]),
    (with_affinity("podAffinity", term(key=HOST, app="db")), {"node-3": [app("d", "db")]},
     [AFFINITY, AFFINITY, "", AFFINITY]),
    # The first of a group with affinity to itself goes where the key exists.
    (with_affinity("podAffinity", term(app="web"), labels={"app": "web"}), {},
     ["", "", "", AFFINITY]),
    # No match and not matching itself: nowhere.
    (with_affinity("podAffinity", term(app="db")), {}, [AFFINITY] * 4),
    # Another namespace's pod does not count unless the term names it.
    (with_affinity("podAffinity", term(app="db")), {"node-3": [app("d", "db", "other")]},
     [AFFINITY] * 4),
    (with_affinity("podAffinity", term(namespaces=["other"], app="db")),
     {"node-3": [app("d", "db", "other")]}, [AFFINITY, AFFINITY, "", AFFINITY]),
    (with_affinity("podAffinity", term(namespace_selector={}, app="db")),
     {"node-1": [app("d", "db", "other")]}, ["", "", AFFINITY, AFFINITY]),
    # Required anti-affinity: no matching pod in the zone; a node without
    # the key has no zone to share.
    (with_affinity("podAntiAffinity", term(app="web")), {"node-1": [app("w")]},
     [ANTI_AFFINITY, ANTI_AFFINITY, "", ""]),
    (with_affinity("podAntiAffinity", term(key=HOST, app="web")), {"node-1": [app("w")]},
     [ANTI_AFFINITY, "", "", ""]),
    # Existing pods' anti-affinity keeps the pod out of their zone.
    (app("p"), {"node-3": [with_affinity("podAntiAffinity", term(app="web"), name="x")]},
     ["", "", EXISTING_ANTI, ""]),
    (app("p", "api"), {"node-3": [with_affinity("podAntiAffinity", term(app="web"),
                                                name="x")]}, ["", "", "", ""]),
    # Both at once, as replicas of one Deployment: the pod's own terms speak first.
    (with_affinity("podAntiAffinity", term(key=HOST, app="web"), labels={"app": "web"}),
     {"node-1": [with_affinity("podAntiAffinity", term(key=HOST, app="web"),
                               labels={"app": "web"}, name="x")]},
     [ANTI_AFFINITY, "", "", ""]),
])
def test_inter_pod_affinity_filter(pod: Obj, placed: dict[str, list[Obj]],
                                   verdicts: list[str]) -> None:
    assert run_filter(InterPodAffinity(), pod, spread(placed)) == verdicts


def test_namespace_selector_reads_the_namespaces_labels() -> None:
    labels = {"team-a": {"team": "a"}, "team-b": {"team": "b"}}
    plugin = InterPodAffinity(lambda ns: labels.get(ns, {}))
    pod = with_affinity("podAffinity", term(namespace_selector={"matchLabels": {"team": "a"}},
                                            app="db"))
    placed = {"node-1": [app("x", "db", "team-b")], "node-3": [app("y", "db", "team-a")]}
    assert run_filter(plugin, pod, spread(placed)) == [AFFINITY, AFFINITY, "", AFFINITY]


def preferred(kind: str, weight: int, t: Obj) -> Obj:
    return make_pod(affinity={kind: {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": weight, "podAffinityTerm": t}]}}, labels={"app": "web"})


def test_inter_pod_affinity_score() -> None:
    placed = {"node-3": [app("d", "db")]}
    near = preferred("podAffinity", 5, term(app="db"))
    assert run_score(InterPodAffinity(), near, spread(placed)) == [0, 0, 100, 0]
    far = preferred("podAntiAffinity", 5, term(app="db"))
    assert run_score(InterPodAffinity(), far, spread(placed)) == [100, 100, 0, 100]
    # Nothing preferred and no pod with terms: all zero.
    assert run_score(InterPodAffinity(), app("p"), spread(placed)) == [0, 0, 0, 0]
    # An existing pod's required affinity draws a pod it matches (weight 1).
    drawn = {"node-1": [with_affinity("podAffinity", term(app="web"), name="x")]}
    assert run_score(InterPodAffinity(), app("p"), spread(drawn)) == [100, 100, 0, 0]


def constraint(max_skew: int = 1, key: str = ZONE, when: str = "DoNotSchedule",
               **extra: object) -> Obj:
    return {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}, **extra}


def spreading(*constraints: Obj, **spec: object) -> Obj:
    return make_pod(labels={"app": "web"}, topologySpreadConstraints=list(constraints), **spec)


@pytest.mark.parametrize(("pod", "placed", "verdicts"), [
    # zone-a 1, zone-b 0: only zone-b keeps the skew at 1... and zone-a too
    # (2 - 0 > 1 fails). node-4 lacks the key.
    (spreading(constraint()), {"node-1": [app("w")]},
     [NOT_MATCH, NOT_MATCH, "", LABEL_MISSING]),
    (spreading(constraint(max_skew=2)), {"node-1": [app("w")]}, ["", "", "", LABEL_MISSING]),
    # Pods the selector does not pick, or of another namespace, do not count.
    (spreading(constraint()), {"node-1": [app("w", "db"), app("o", namespace="other")]},
     ["", "", "", LABEL_MISSING]),
    (spreading(constraint(key=HOST)), {"node-1": [app("w")], "node-2": [app("v")]},
     [NOT_MATCH, NOT_MATCH, "", ""]),
    # minDomains: with fewer zones than asked the minimum counts as 0.
    (spreading(constraint(minDomains=3)), {"node-3": [app("w")]},
     ["", "", NOT_MATCH, LABEL_MISSING]),
    (spreading(constraint(max_skew=1, minDomains=3)), {"node-1": [app("w")],
                                                       "node-3": [app("v")]},
     [NOT_MATCH, NOT_MATCH, NOT_MATCH, LABEL_MISSING]),
    # ScheduleAnyway constraints do not filter.
    (spreading(constraint(when="ScheduleAnyway")), {"node-1": [app("w"), app("v")]},
     ["", "", "", ""]),
])
def test_pod_topology_spread_filter(pod: Obj, placed: dict[str, list[Obj]],
                                    verdicts: list[str]) -> None:
    assert run_filter(PodTopologySpread(), pod, spread(placed)) == verdicts


def test_node_inclusion_policies() -> None:
    tainted = make_node("node-5", labels={HOST: "node-5", ZONE: "c"},
                        taints=[{"key": "k", "effect": "NoSchedule"}])
    infos = [*spread({"node-1": [app("w")], "node-3": [app("v")]}), info(tainted)]
    # Zone c's node is tainted: ignored by default, so zone c (0) is not the minimum.
    honored = spreading(constraint(nodeTaintsPolicy="Honor"))
    ignored = spreading(constraint())
    assert run_filter(PodTopologySpread(), honored, infos)[:3] == ["", "", ""]
    assert run_filter(PodTopologySpread(), ignored, infos)[:3] == [NOT_MATCH] * 3
    # nodeSelector honoured: zone c's node is not a candidate, so it is no domain.
    selected = spreading(constraint(), nodeSelector={"pool": "main"})
    for i in infos[:4]:
        i.node["metadata"]["labels"]["pool"] = "main"
    assert run_filter(PodTopologySpread(), selected, infos)[:3] == ["", "", ""]
    anyway = spreading(constraint(nodeAffinityPolicy="Ignore"), nodeSelector={"pool": "main"})
    assert run_filter(PodTopologySpread(), anyway, infos)[:3] == [NOT_MATCH] * 3


def test_pod_topology_spread_score() -> None:
    pod = spreading(constraint(key=HOST, when="ScheduleAnyway"))
    placed = {"node-1": [app("a"), app("b")], "node-2": [app("c")]}
    # Fewer matching pods score higher; node-4 has the key and no pods.
    scores = run_score(PodTopologySpread(), pod, spread(placed))
    assert scores[2] == scores[3] == 100 and scores[0] < scores[1] < 100
    zones = spreading(constraint(when="ScheduleAnyway"))
    scores = run_score(PodTopologySpread(), zones, spread(placed))
    assert scores[3] == 0  # no zone: ignored
    assert scores[2] == 100 and scores[0] == scores[1] < 100
    assert run_score(PodTopologySpread(), app("p"), spread(placed)) == [0, 0, 0, 0]


def test_default_selector_merges_the_services_and_the_owner_that_select_the_pod() -> None:
    pod = make_pod(labels={"app": "web", "tier": "front", "pod-template-hash": "h"})
    services = [{"spec": {"selector": {"app": "web"}}}, {"spec": {"selector": {"tier": "front"}}},
                {"spec": {"selector": {"app": "db"}}}, {"spec": {}}]
    rs = {"spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": "h"}}}}
    sel = default_selector(pod, services, rs)
    assert sel is not None
    assert sel.matches({"app": "web", "tier": "front", "pod-template-hash": "h"})
    assert not sel.matches({"app": "web", "tier": "front", "pod-template-hash": "other"})
    assert not sel.matches({"app": "web", "pod-template-hash": "h"})
    assert default_selector(pod, [], None) is None
    assert default_selector(pod, services[2:], None) is None


def test_system_default_spreading_ranks_pods_their_owners_select() -> None:
    selector = selectors.from_map({"app": "web"})
    plugin = PodTopologySpread(lambda pod: selector)
    placed = {"node-1": [app("a"), app("b")], "node-2": [app("c")]}
    scores = run_score(plugin, app("p"), spread(placed))
    # Fewest selected pods first. node-4, without a zone, is still ranked,
    # and best: the zone constraint adds nothing to it (kube does the same).
    assert scores == [14, 28, 71, 100]
    # A pod with constraints of its own gets no defaults.
    own = spreading(constraint(key=HOST, when="DoNotSchedule"))
    assert run_score(plugin, own, spread(placed)) == [0, 0, 0, 0]
    assert run_score(PodTopologySpread(), app("p"), spread(placed)) == [0, 0, 0, 0]


def test_plugins_with_nothing_to_judge_are_skipped() -> None:
    state: dict[str, object] = {}
    plain = spread({"node-1": [app("w")]})
    assert InterPodAffinity().pre_filter(state, app("p"), plain) == SKIP
    guarded = spread({"node-1": [with_affinity("podAntiAffinity", term(app="web"), name="x")]})
    assert InterPodAffinity().pre_filter(state, app("p"), guarded) == OK
    assert PodTopologySpread().pre_filter(state, app("p"), plain) == SKIP
    assert PodTopologySpread().pre_filter(state, spreading(constraint()), plain) == OK
