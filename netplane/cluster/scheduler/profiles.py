"""The default profile: kube-scheduler 1.32's default plugins, in its
order, with its score weights (see ``config`` for the lists and for
profiles read from a KubeSchedulerConfiguration). A node that is not
Ready, under pressure or cordoned carries the node lifecycle controller's
taints, so TaintToleration keeps pods off it, as in kube."""

from __future__ import annotations

from netplane.cluster.scheduler.config import Deps, ProfileSpec, build
from netplane.cluster.scheduler.fit import Strategy
from netplane.cluster.scheduler.framework import FilterPlugin, Profile
from netplane.cluster.scheduler.interpod import NamespaceLabels
from netplane.cluster.scheduler.preemption import Budgets
from netplane.cluster.scheduler.spread import DefaultSelector


def default_profile(*, volume_binding: FilterPlugin | None = None,
                    namespace_labels: NamespaceLabels = lambda ns: {},
                    default_selector: DefaultSelector = lambda pod: None,
                    budgets: Budgets = lambda: (),
                    strategy: Strategy = Strategy.LEAST_ALLOCATED) -> Profile:
    spec = ProfileSpec(args={"NodeResourcesFit": {"scoringStrategy": {"type": strategy.value}}})
    return build(spec, Deps(volume_binding, namespace_labels, default_selector, budgets))
