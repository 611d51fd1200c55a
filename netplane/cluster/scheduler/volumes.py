"""The VolumeBinding plugin: a pod's claims must exist; a bound claim's
volume must be reachable from the node (a local volume's node affinity); an
unbound claim is fine on any node when its class waits for the first
consumer (the scheduler then names the node on the claim, and that node's
provisioner makes the volume there), and keeps the pod pending otherwise."""

from __future__ import annotations

from collections.abc import Callable

from netplane.api import meta, selectors, storage
from netplane.api.meta import Obj
from netplane.cluster.scheduler.framework import OK, SKIP, Code, CycleState, Status
from netplane.cluster.scheduler.nodeinfo import NodeInfo

Lookup = Callable[[str, str], Obj | None]


def node_affinity_allows(pv: Obj, node: Obj) -> bool:
    """The volume's required node affinity (ORed terms of ANDed expressions)."""
    terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
        "nodeSelectorTerms") or []
    if not terms:
        return True
    labels = meta.labels(node)
    return any(selectors.from_label_selector({"matchExpressions": t.get("matchExpressions") or []})
               .matches(labels) for t in terms)


class VolumeBinding:
    name = "VolumeBinding"

    def __init__(self, claims: Lookup, volumes: Callable[[str], Obj | None],
                 classes: Callable[[str], Obj | None]) -> None:
        self.claims, self.volumes, self.classes = claims, volumes, classes

    def pre_filter(self, state: CycleState, pod: Obj, nodes: object) -> Status:
        """The claims must exist, not be going, and be bound or wait for
        their first consumer: what holds for every node, checked once."""
        ns, bound = meta.namespace(pod), []
        claims = storage.pod_claims(pod)
        if not claims:
            return SKIP
        for name in claims:
            pvc = self.claims(ns, name)
            if pvc is None:
                return Status.fail(Code.UNRESOLVABLE, f'persistentvolumeclaim "{name}" not found')
            if meta.is_deleting(pvc):
                return Status.fail(Code.UNRESOLVABLE,
                                   f'persistentvolumeclaim "{name}" is being deleted')
            volume = (pvc.get("spec") or {}).get("volumeName")
            if volume:
                bound.append(self.volumes(str(volume)))
                continue
            cls = self.classes(storage.claim_class(pvc))
            if cls is None or cls.get("volumeBindingMode") != "WaitForFirstConsumer":
                return Status.fail(Code.UNRESOLVABLE,
                                   "pod has unbound immediate PersistentVolumeClaims")
        state[self.name] = bound
        return OK

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status:
        """A bound claim's volume must be reachable from the node."""
        for pv in state[self.name]:
            if pv is None or not node_affinity_allows(pv, info.node):
                return Status.fail(Code.UNSCHEDULABLE,
                                   "node(s) had volume node affinity conflict")
        return OK

    def to_provision(self, pod: Obj) -> list[Obj]:
        """The pod's claims that wait for it: the node chosen is to be named
        on them before the pod is bound."""
        out = []
        for name in storage.pod_claims(pod):
            pvc = self.claims(meta.namespace(pod), name)
            if pvc is not None and not (pvc.get("spec") or {}).get("volumeName") and \
                    storage.SELECTED_NODE not in (meta.meta(pvc).get("annotations") or {}):
                out.append(pvc)
        return out
