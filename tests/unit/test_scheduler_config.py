"""KubeSchedulerConfiguration profiles: kube's merging of enabled and
disabled plugins per extension point and multiPoint, weights, plugin
arguments, the errors a bad file gets; a packing profile deciding
otherwise than the default; the percentage of nodes scored; and the
explanation ``netplane explain-schedule`` prints."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from netplane.api.meta import Obj
from netplane.cli.schedcmd import render
from netplane.cluster.scheduler import config
from netplane.cluster.scheduler.framework import Trace, nodes_to_find, schedule
from netplane.cluster.scheduler.nodeinfo import NodeInfo, PodInfo

HEAD = """\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
"""


def parse(body: str = "") -> list[config.ProfileSpec]:
    return config.parse(yaml.safe_load(HEAD + textwrap.dedent(body)))


def test_no_profiles_is_the_default_one() -> None:
    (spec,) = parse()
    assert spec == config.ProfileSpec()


def test_score_plugins_disabled_enabled_and_reweighted() -> None:
    (spec,) = parse("""\
        profiles:
        - schedulerName: packer
          plugins:
            score:
              disabled: [{name: NodeResourcesBalancedAllocation}]
              enabled: [{name: NodeResourcesFit, weight: 5}, {name: ImageLocality, weight: 3}]
            filter:
              disabled: [{name: NodePorts}]
          pluginConfig:
          - name: NodeResourcesFit
            args: {scoringStrategy: {type: MostAllocated}}
        """)
    assert spec.name == "packer"
    assert "NodePorts" not in spec.filters and "NodeResourcesFit" in spec.filters
    # Re-enabled defaults keep their place with the new weight.
    assert spec.scores == (("TaintToleration", 3), ("NodeAffinity", 2),
                           ("PodTopologySpread", 2), ("InterPodAffinity", 2),
                           ("NodeResourcesFit", 5), ("ImageLocality", 3))


def test_star_disables_every_default_of_a_point() -> None:
    (spec,) = parse("""\
        profiles:
        - plugins:
            score:
              disabled: [{name: "*"}]
              enabled: [{name: NodeAffinity}]
            multiPoint:
              disabled: [{name: DefaultPreemption}]
        """)
    assert spec.scores == (("NodeAffinity", 2),)  # kube's default weight
    assert spec.post_filters == ()
    assert spec.filters == config.DEFAULT_FILTERS


def test_multi_point_enables_where_the_plugin_fits() -> None:
    (spec,) = parse("""\
        profiles:
        - plugins:
            multiPoint:
              disabled: [{name: "*"}]
              enabled: [{name: NodeResourcesFit, weight: 4}, {name: NodeName}]
        """)
    assert spec.filters == ("NodeResourcesFit", "NodeName")
    assert spec.scores == (("NodeResourcesFit", 4),)


@pytest.mark.parametrize(("body", "said"), [
    ("profiles: [{plugins: {score: {enabled: [{name: NoSuch}]}}}]", '"NoSuch" does not exist'),
    ("profiles: [{plugins: {score: {enabled: [{name: NodePorts}]}}}]",
     'plugin "NodePorts" does not extend score plugin'),
    ("profiles: [{plugins: {bind: {}}}]", "not configurable"),
    ("profiles: [{schedulerName: a}, {schedulerName: a}]", "each schedulerName once"),
    ("percentageOfNodesToScore: 101", "0..100"),
    ("profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: "
     "{type: Random}}}]}]", "scoringStrategy.type 'Random'"),
    ("profiles: [{pluginConfig: [{name: ImageLocality, args: {}}]}]",
     "no arguments for 'ImageLocality'"),
    ("profiles: [{plugins: {score: {enabled: [{name: ImageLocality, weight: 0}]}}}]",
     "must be a positive integer"),
])
def test_bad_files_are_refused(body: str, said: str) -> None:
    with pytest.raises(config.ConfigError, match=said):
        parse(body)


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "sched.yaml"
    path.write_text(HEAD + "profiles: [{schedulerName: one}, {schedulerName: two}]\n")
    assert [s.name for s in config.load(path)] == ["one", "two"]


def node(name: str) -> Obj:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                                   "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, cpu: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}


def cluster() -> list[NodeInfo]:
    return [NodeInfo(node("busy"), [PodInfo.of(pod("a", "2"))]), NodeInfo(node("idle"))]


def test_a_packing_profile_picks_the_fuller_node() -> None:
    (packer,) = parse("""\
        profiles:
        - schedulerName: packer
          pluginConfig:
          - name: NodeResourcesFit
            args: {scoringStrategy: {type: MostAllocated}}
        """)
    default = config.build(config.ProfileSpec(), config.Deps())
    assert schedule(pod("new", "1"), cluster(), default).node == "idle"
    assert schedule(pod("new", "1"), cluster(), config.build(packer, config.Deps())).node \
        == "busy"


def test_requested_to_capacity_ratio_follows_its_shape() -> None:
    (spec,) = parse("""\
        profiles:
        - pluginConfig:
          - name: NodeResourcesFit
            args:
              scoringStrategy:
                type: RequestedToCapacityRatio
                resources: [{name: cpu, weight: 1}]
                requestedToCapacityRatio:
                  shape: [{utilization: 0, score: 10}, {utilization: 100, score: 0}]
        """)
    fit = config.build(spec, config.Deps()).scorers[4].plugin
    state: dict[str, object] = {}
    fit.pre_filter(state, pod("new", "1"), [])  # type: ignore[attr-defined]
    busy, idle = cluster()
    # cpu only: 75% used -> 2.5 of 10; 25% used -> 7.5 of 10.
    assert (fit.score(state, pod("new", "1"), busy), fit.score(state, pod("new", "1"), idle)) \
        == (25, 75)


def test_the_share_of_nodes_looked_at() -> None:
    assert nodes_to_find(None, 50) == 50
    assert nodes_to_find(None, 500) == 230  # 50% - 500/125 = 46%
    assert nodes_to_find(None, 5000) == 500  # 10%
    assert nodes_to_find(None, 100_000) == 5000  # never under 5%
    assert nodes_to_find(1, 1000) == 100  # never under 100 nodes
    infos = [NodeInfo(node(f"n{i:03}")) for i in range(200)]
    d = schedule(pod("new", "1"), infos, config.build(config.ProfileSpec(percentage=50),
                                                       config.Deps()), start=150)
    assert d.processed == 100 and d.node is not None
    assert int(d.node[1:]) >= 150 or int(d.node[1:]) < 50  # from node 150, round


def test_explanation_names_each_verdict_and_score() -> None:
    infos = [*cluster(), NodeInfo(node("full"), [PodInfo.of(pod("b", "4"))])]
    profile = config.build(config.ProfileSpec(), config.Deps())
    trace = Trace()
    d = schedule(pod("new", "1"), infos, profile, trace=trace)
    lines = render(pod("new", "1"), profile, trace, d.node, d.message)
    assert lines[0] == "pod default/new: priority 0, profile default-scheduler"
    text = "\n".join(lines)
    assert "full  rejected by NodeResourcesFit: Insufficient cpu" in text
    assert "idle  fits, total" in text and "<- chosen" in text
    assert "NodeResourcesFit" in text and "x1 =" in text
    assert lines[-1] == "decision: idle (the highest total; a tie goes to the first name)"
    none = Trace()
    d = schedule(pod("huge", "9"), infos, profile, trace=none)
    assert render(pod("huge", "9"), profile, none, d.node, d.message)[-1].startswith(
        "decision: none. 0/3 nodes are available: 3 Insufficient cpu.")


def test_without_default_preemption_the_message_says_nothing_of_it() -> None:
    (spec,) = parse("""\
        profiles:
        - plugins: {postFilter: {disabled: [{name: DefaultPreemption}]}}
        """)
    d = schedule(pod("huge", "9"), cluster(), config.build(spec, config.Deps()))
    assert d.message == "0/2 nodes are available: 2 Insufficient cpu."
