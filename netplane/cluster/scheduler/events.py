"""Which cluster events could let an unschedulable pod fit, and through
which plugins (kube's cluster events and queueing hints, coarsely): an
event wakes only pods that one of the plugins it could cure rejected."""

from __future__ import annotations

from netplane.api import meta
from netplane.api.meta import Obj

FIT, PORTS = "NodeResourcesFit", "NodePorts"
INTER_POD, SPREAD, VOLUMES = "InterPodAffinity", "PodTopologySpread", "VolumeBinding"
# A pod leaving a node frees its requests and ports and changes the counts
# that affinity and spreading look at; one arriving changes only the counts.
POD_GONE_CURES = frozenset({FIT, PORTS, INTER_POD, SPREAD})
POD_ARRIVED_CURES = frozenset({INTER_POD, SPREAD})
NAMESPACE_CURES = frozenset({INTER_POD})
STORAGE_CURES = frozenset({VOLUMES})
VOLATILE = ("resourceVersion", "managedFields", "generation")


def _bound(pod: Obj | None) -> bool:
    return pod is not None and bool((pod.get("spec") or {}).get("nodeName"))


def _holds_node(pod: Obj | None) -> bool:
    """Bound and still counted on its node: a terminating pod holds its
    share until it is gone, as in the snapshot."""
    return _bound(pod) and pod is not None and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def pod_event_cures(prev: Obj | None, cur: Obj | None) -> frozenset[str]:
    if _holds_node(prev) and not _holds_node(cur):
        return POD_GONE_CURES
    if _holds_node(cur) and not _holds_node(prev):
        return POD_ARRIVED_CURES
    if _holds_node(cur) and prev is not None and cur is not None \
            and meta.labels(prev) != meta.labels(cur):
        return POD_ARRIVED_CURES
    return frozenset()


def _without_status(pod: Obj) -> Obj:
    md = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in VOLATILE}
    return {**{k: v for k, v in pod.items() if k != "status"}, "metadata": md}


def pod_spec_changed(prev: Obj, cur: Obj) -> bool:
    """Not a status write (the scheduler's own PodScheduled condition among
    them), which kube ignores too, or a pod would wake itself."""
    return _without_status(prev) != _without_status(cur)


def _conditions(node: Obj) -> set[tuple[str, str]]:
    return {(str(c.get("type")), str(c.get("status")))
            for c in (node.get("status") or {}).get("conditions") or []}


def node_event_matters(prev: Obj | None, cur: Obj | None) -> bool:
    """A node added, or changed in what filters read; not a heartbeat, and
    not a deletion, which makes no pod fit."""
    if cur is None:
        return False
    if prev is None:
        return True
    ps, cs = prev.get("status") or {}, cur.get("status") or {}
    return (meta.labels(prev) != meta.labels(cur) or prev.get("spec") != cur.get("spec")
            or ps.get("allocatable") != cs.get("allocatable")
            or ps.get("images") != cs.get("images") or _conditions(prev) != _conditions(cur))
