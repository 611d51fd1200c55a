"""The default profile: kube-scheduler 1.32's default plugins, in its
order, with its score weights. A node that is not Ready, under pressure or
cordoned carries the node lifecycle controller's taints, so TaintToleration
keeps pods off it, as in kube."""

from __future__ import annotations

from netplane.cluster.scheduler import plugins
from netplane.cluster.scheduler.fit import (
    NodeResourcesBalancedAllocation,
    NodeResourcesFit,
    Strategy,
)
from netplane.cluster.scheduler.framework import FilterPlugin, Profile, Weighted
from netplane.cluster.scheduler.interpod import InterPodAffinity, NamespaceLabels
from netplane.cluster.scheduler.spread import DefaultSelector, PodTopologySpread


def default_profile(*, volume_binding: FilterPlugin | None = None,
                    namespace_labels: NamespaceLabels = lambda ns: {},
                    default_selector: DefaultSelector = lambda pod: None,
                    strategy: Strategy = Strategy.LEAST_ALLOCATED) -> Profile:
    taints, affinity, fit = plugins.TaintToleration(), plugins.NodeAffinity(), \
        NodeResourcesFit(strategy)
    spread, inter = PodTopologySpread(default_selector), InterPodAffinity(namespace_labels)
    volumes = (volume_binding,) if volume_binding is not None else ()
    return Profile(
        filters=(plugins.NodeUnschedulable(), plugins.NodeName(), taints,
                 affinity, plugins.NodePorts(), fit, *volumes, spread,
                 inter),
        scorers=(Weighted(taints, 3), Weighted(affinity, 2), Weighted(spread, 2),
                 Weighted(inter, 2), Weighted(fit, 1),
                 Weighted(NodeResourcesBalancedAllocation(), 1),
                 Weighted(plugins.ImageLocality(), 1)))
