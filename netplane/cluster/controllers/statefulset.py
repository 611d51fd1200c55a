"""StatefulSet controller, as kube-controller-manager's: pods with stable
names ``NAME-0 … NAME-(N-1)`` (from ``spec.ordinals.start``), each its own
hostname under the governing Service (``subdomain`` = ``serviceName``), so
``web-0.nginx.NS.svc`` names web-0 whatever its address. ``OrderedReady``
makes one pod at a time in ordinal order, each Running and Ready (and
available after ``minReadySeconds``) before the next, and removes them from
the highest ordinal down; ``Parallel`` does not wait. Templates are kept as
ControllerRevisions: ``currentRevision`` is what the pods had,
``updateRevision`` what they get; ``RollingUpdate`` replaces pods from the
highest ordinal down to ``partition``, one at a time (or ``maxUnavailable``
at a time when set), ``OnDelete`` only pods someone deleted. A deleted or
failed pod is made again under the same name.

Each ``volumeClaimTemplates`` entry gives every ordinal a claim of its own,
``TEMPLATE-NAME-ORDINAL``, made before its pod and kept across the pod's
deletion, so the pod made again under the name finds its data;
``persistentVolumeClaimRetentionPolicy`` Delete makes the set (whenDeleted)
or the condemned pod (whenScaled) the claim's owner, for the garbage
collector.

The sync works on a ``Cluster`` (what it reads and writes), so that its steps
are tested without a server."""

from __future__ import annotations

import copy
import re
from typing import Protocol

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client, NotFound
from netplane.cluster.controllers import history
from netplane.cluster.controllers.deployment import scaled_value
from netplane.cluster.controllers.owned import OwnerController
from netplane.cluster.controllers.replicaset import available
from netplane.cluster.controllers.shared import Informers
from netplane.cluster.events import Reason

HASH_LABEL = history.HASH_LABEL  # its value on pods: the revision's name
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


# -- pods and ordinals --

def parent_and_ordinal(pod: Obj) -> tuple[str, int]:
    """kube's getParentNameAndOrdinal: ``web-3`` is ("web", 3); -1 if none."""
    m = _ORDINAL.match(meta.name(pod))
    return (m.group(1), int(m.group(2))) if m else ("", -1)


def ordinal(pod: Obj) -> int:
    return parent_and_ordinal(pod)[1]


def start(sts: Obj) -> int:
    return int((sts["spec"].get("ordinals") or {}).get("start") or 0)


def replicas(sts: Obj) -> int:
    return int(sts["spec"].get("replicas", 1))


def pod_name(sts: Obj, ordinal_: int) -> str:
    return f"{meta.name(sts)}-{ordinal_}"


def revision_of(pod: Obj) -> str:
    return str(meta.labels(pod).get(HASH_LABEL, ""))


def created(pod: Obj) -> bool:
    """kube's isCreated: the server has given the pod a phase."""
    return bool(pod.get("status", {}).get("phase"))


def running_and_ready(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and meta.pod_ready(pod)


def healthy(pod: Obj) -> bool:
    return running_and_ready(pod) and not meta.is_deleting(pod)


def new_pod(sts: Obj, template: Obj, ordinal_: int, revision: str) -> Obj:
    """kube's newStatefulSetPod at a revision: the template under the
    ordinal's name, with its hostname and subdomain (set once, at creation)."""
    md = template.get("metadata") or {}
    name = pod_name(sts, ordinal_)
    labels = {**(md.get("labels") or {}), POD_NAME_LABEL: name,
              POD_INDEX_LABEL: str(ordinal_), HASH_LABEL: revision}
    spec = copy.deepcopy(template.get("spec") or {})
    with_claims(sts, spec, name)
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "generateName": f"{meta.name(sts)}-",
                         "namespace": meta.namespace(sts), "labels": labels,
                         "annotations": dict(md.get("annotations") or {}),
                         "ownerReferences": [meta.owner_ref(sts)]},
            "spec": spec}


def claim_name(template: Obj, pod: str) -> str:
    return f"{(template.get('metadata') or {}).get('name', '')}-{pod}"


def retention(sts: Obj, when: str) -> str:
    policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    return str(policy.get(when) or "Retain")


def new_claims(sts: Obj, pod: str) -> list[Obj]:
    """kube's getPersistentVolumeClaims: one claim per template for the pod,
    labelled with the template's labels and the set's selector."""
    out = []
    match = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
    for t in sts["spec"].get("volumeClaimTemplates") or []:
        md = t.get("metadata") or {}
        claim: Obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "metadata": {"name": claim_name(t, pod), "namespace": meta.namespace(sts),
                                   "labels": {**(md.get("labels") or {}), **match}},
                      "spec": copy.deepcopy(t.get("spec") or {})}
        if md.get("annotations"):
            claim["metadata"]["annotations"] = dict(md["annotations"])
        if retention(sts, "whenDeleted") == "Delete":
            claim["metadata"]["ownerReferences"] = [meta.owner_ref(sts, controller=False)]
        out.append(claim)
    return out


def with_claims(sts: Obj, spec: Obj, pod: str) -> None:
    """kube's updateStorage: the templates' claims as the pod's volumes,
    in place of template volumes of the same names."""
    templates = sts["spec"].get("volumeClaimTemplates") or []
    if not templates:
        return
    names = {(t.get("metadata") or {}).get("name") for t in templates}
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in names]
    volumes += [{"name": (t.get("metadata") or {}).get("name"),
                 "persistentVolumeClaim": {"claimName": claim_name(t, pod)}}
                for t in templates]
    spec["volumes"] = volumes


def identity_labels(sts: Obj, pod: Obj) -> dict[str, str]:
    """The identity labels a pod lacks (kube's identityMatches/updateIdentity)."""
    want = {POD_NAME_LABEL: meta.name(pod), POD_INDEX_LABEL: str(ordinal(pod))}
    labels = meta.labels(pod)
    return {k: v for k, v in want.items() if labels.get(k) != v}


def max_unavailable(sts: Obj) -> int | None:
    """``rollingUpdate.maxUnavailable`` against the replicas, rounded down,
    at least 1; None when not set (one pod at a time, in order)."""
    value = ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get(
        "maxUnavailable")
    if value is None:
        return None
    return max(1, scaled_value(value, replicas(sts), False))


# -- what a sync acts on --

class Cluster(history.History, Protocol):
    def now(self) -> float: ...
    async def create_pod(self, pod: Obj) -> Obj: ...  # raises AlreadyExists
    async def delete_pod(self, pod: Obj) -> Obj | None: ...  # None: removed at once
    async def patch_pod_labels(self, pod: Obj, labels: dict[str, str]) -> Obj: ...
    async def ensure_claim(self, claim: Obj) -> None: ...  # made unless it exists
    async def own_claim(self, namespace: str, name: str, owner: Obj) -> None: ...
    async def update_status(self, sts: Obj) -> Obj: ...
    def event(self, sts: Obj, reason: Reason, message: str, *, warning: bool = False) -> None: ...
    def requeue_after(self, sts: Obj, seconds: float) -> None: ...


class Sync:
    """One sync of one StatefulSet (kube's UpdateStatefulSet) over its pods
    and its revisions."""

    def __init__(self, cluster: Cluster, sts: Obj, pods: list[Obj],
                 revisions: list[Obj]) -> None:
        self.c, self.sts = cluster, copy.deepcopy(sts)
        self.sts.setdefault("status", {})
        self.pods = [p for p in pods if parent_and_ordinal(p)[0] == meta.name(sts)]
        self.revisions = history.sort_revisions(revisions)
        self.monotonic = sts["spec"].get("podManagementPolicy") != "Parallel"
        self.min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        self.current: Obj = {}
        self.update: Obj = {}
        self.collisions = int(self.sts["status"].get("collisionCount", 0))
        self.slots: list[Obj] = []  # the pods of the ordinals in range, made or to make
        self.condemned: list[Obj] = []  # pods beyond the range, highest ordinal first

    async def run(self) -> None:
        self.current, self.update = await self._revisions()
        await self._update()
        await self._write_status()
        await self._truncate_history()
        if self.min_ready and self._counts()["availableReplicas"] != replicas(self.sts):
            self.c.requeue_after(self.sts, self.min_ready)

    def _available(self, pod: Obj) -> bool:
        return running_and_ready(pod) and available(pod, self.min_ready, self.c.now())

    # -- revisions --

    async def _revisions(self) -> tuple[Obj, Obj]:
        """kube's getStatefulSetRevisions: the update revision is the
        template's (the newest one already, one brought back and renumbered,
        or a new one); the current revision is the status's, or the update
        revision for a new set."""
        template = self.sts["spec"]["template"]
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        wanted = history.new_revision(self.sts, data=history.template_patch(template),
                                      number_=history.next_number(self.revisions),
                                      labels=labels, name="")
        equal = [r for r in self.revisions if history.same_data(r, wanted)]
        if equal and equal[-1] is self.revisions[-1]:
            update = equal[-1]
        elif equal:
            update = copy.deepcopy(equal[-1])
            update["revision"] = wanted["revision"]
            update = await self.c.update_revision(update)
        else:
            update, self.collisions = await history.create_revision(
                self.c, self.sts, wanted, self.collisions)
        name = self.sts["status"].get("currentRevision")
        current = next((r for r in self.revisions if meta.name(r) == name), update)
        return current, update

    def _versioned(self, ordinal_: int) -> Obj:
        """kube's newVersionedStatefulSetPod: below the partition (or, with
        no rollingUpdate, below the current replicas) a replaced pod keeps
        the current revision; others get the update revision."""
        strategy = self.sts["spec"].get("updateStrategy") or {}
        rolling = strategy.get("rollingUpdate")
        keep = strategy.get("type", "RollingUpdate") == "RollingUpdate" and (
            ordinal_ < start(self.sts) + int(self.sts["status"].get("currentReplicas", 0))
            if rolling is None else ordinal_ < int(rolling.get("partition") or 0))
        rev = self.current if keep else self.update
        return new_pod(self.sts, history.template_of(rev), ordinal_, meta.name(rev))

    async def _truncate_history(self) -> None:
        """Revisions no pod and neither status revision use, oldest first,
        beyond revisionHistoryLimit."""
        live = {meta.name(self.current), meta.name(self.update),
                *(revision_of(p) for p in self.pods)}
        past = [r for r in self.revisions if meta.name(r) not in live]
        extra = len(past) - int(self.sts["spec"].get("revisionHistoryLimit", 10))
        for rev in past[:max(extra, 0)]:
            await self.c.delete_revision(rev)

    # -- pods --

    def _place(self) -> None:
        first, count = start(self.sts), replicas(self.sts)
        slots: list[Obj | None] = [None] * count
        for pod in self.pods:
            ord_ = ordinal(pod)
            if first <= ord_ < first + count:
                slots[ord_ - first] = pod
            elif ord_ >= 0:
                self.condemned.append(pod)
        self.slots = [p if p is not None else self._versioned(first + i)
                      for i, p in enumerate(slots)]
        self.condemned.sort(key=ordinal, reverse=True)

    def _first_unhealthy(self) -> Obj | None:
        return next((p for p in [*self.slots, *reversed(self.condemned)] if not healthy(p)),
                    None)

    async def _update(self) -> None:
        """kube's updateStatefulSet: make and mend the pods in range, remove
        the ones beyond it, then roll the update."""
        self._place()
        if meta.is_deleting(self.sts):
            return
        first_unhealthy = self._first_unhealthy()
        for i in range(len(self.slots)):
            if await self._replica(i) and self.monotonic:
                return
        for i in range(len(self.condemned)):
            if await self._condemned(i, first_unhealthy) and self.monotonic:
                return
        strategy = self.sts["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "OnDelete":
            return
        if max_unavailable(self.sts) is not None:
            await self._roll_within(int(max_unavailable(self.sts) or 1))
        else:
            await self._roll_one()

    async def _replica(self, i: int) -> bool:
        """kube's processReplica; True: wait (in OrderedReady) before the next."""
        pod = self.slots[i]
        phase = pod.get("status", {}).get("phase")
        if phase in ("Failed", "Succeeded") and not meta.is_deleting(pod):
            failed = phase == "Failed"
            self.c.event(self.sts, Reason.RECREATING_FAILED_POD if failed else
                         Reason.RECREATING_TERMINATED_POD,
                         f"StatefulSet {meta.namespaced_name(self.sts)} is recreating "
                         f"{'failed' if failed else 'terminated'} Pod {meta.name(pod)}",
                         warning=failed)
            if await self._delete(pod, "") is not None:
                return True  # still terminating: made again once it is gone
            pod = self.slots[i] = self._versioned(ordinal(pod))
        if not created(pod):
            self.slots[i] = await self._create(pod)
            return True
        if self.monotonic and (meta.is_deleting(pod) or not self._available(pod)):
            return True  # ready (and available) in order, each before the next
        missing = identity_labels(self.sts, pod)
        if missing:
            self.slots[i] = await self.c.patch_pod_labels(pod, missing)
        return False

    async def _condemned(self, i: int, first_unhealthy: Obj | None) -> bool:
        """kube's processCondemned: in OrderedReady, one at a time, highest
        first, and only while the others are healthy."""
        pod = self.condemned[i]
        if meta.is_deleting(pod):
            return True
        if self.monotonic and not self._available(pod) and pod is not first_unhealthy:
            return True
        if retention(self.sts, "whenScaled") == "Delete":
            # Scaled away: the claim goes with its pod.
            for t in self.sts["spec"].get("volumeClaimTemplates") or []:
                await self.c.own_claim(meta.namespace(pod), claim_name(t, meta.name(pod)), pod)
        await self._delete(pod, "condemned")
        return True

    async def _roll_one(self) -> None:
        """Replace the highest ordinal not at the update revision, down to
        the partition, once every pod above it is healthy again."""
        rolling = (self.sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        partition = int(rolling.get("partition") or 0)
        for i in reversed(range(len(self.slots))):
            pod = self.slots[i]
            if ordinal(pod) < partition:
                break
            if revision_of(pod) != meta.name(self.update) and not meta.is_deleting(pod):
                await self._delete(pod, "slot")
                return
            if not healthy(pod):
                return

    async def _roll_within(self, most: int) -> None:
        """With maxUnavailable (kube's updateStatefulSetAfterInvariantEstablished):
        as many old pods go, highest first, as leaves at most ``most`` unhealthy."""
        rolling = (self.sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        partition = int(rolling.get("partition") or 0)
        room = most - sum(1 for p in self.slots if not healthy(p))
        for pod in reversed(self.slots):
            if room <= 0 or ordinal(pod) < partition:
                break
            if revision_of(pod) != meta.name(self.update) and not meta.is_deleting(pod):
                await self._delete(pod, "slot")
                room -= 1

    async def _create(self, pod: Obj) -> Obj:
        for claim in new_claims(self.sts, meta.name(pod)):
            await self.c.ensure_claim(claim)
        out = await self.c.create_pod(pod)
        self.c.event(self.sts, Reason.SUCCESSFUL_CREATE,
                     f"create Pod {meta.name(pod)} in StatefulSet {meta.name(self.sts)} "
                     "successful")
        return out

    async def _delete(self, pod: Obj, where: str) -> Obj | None:
        """Delete a pod; what is left of it (terminating), kept in its list."""
        try:
            after = await self.c.delete_pod(pod)
        except NotFound:
            after = None
        self.c.event(self.sts, Reason.SUCCESSFUL_DELETE,
                     f"delete Pod {meta.name(pod)} in StatefulSet {meta.name(self.sts)} "
                     "successful")
        if where == "slot":
            i = next(i for i, p in enumerate(self.slots) if meta.name(p) == meta.name(pod))
            self.slots[i] = after if after is not None else self._versioned(ordinal(pod))
        elif where == "condemned":
            i = next(i for i, p in enumerate(self.condemned) if meta.name(p) == meta.name(pod))
            if after is None:
                del self.condemned[i]
            else:
                self.condemned[i] = after
        return after

    # -- status --

    def _counts(self) -> Obj:
        """kube's computeReplicaStatus over the pods as the sync left them."""
        counts = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0,
                  "currentReplicas": 0, "updatedReplicas": 0}
        for pod in [*self.slots, *self.condemned]:
            if created(pod):
                counts["replicas"] += 1
            if running_and_ready(pod):
                counts["readyReplicas"] += 1
                counts["availableReplicas"] += 1 if self._available(pod) else 0
            if created(pod) and not meta.is_deleting(pod):
                counts["currentReplicas"] += revision_of(pod) == meta.name(self.current)
                counts["updatedReplicas"] += revision_of(pod) == meta.name(self.update)
        return counts

    async def _write_status(self) -> None:
        status: Obj = {"observedGeneration": self.sts["metadata"].get("generation", 1),
                       **self._counts(), "currentRevision": meta.name(self.current),
                       "updateRevision": meta.name(self.update),
                       "collisionCount": self.collisions}
        strategy = self.sts["spec"].get("updateStrategy") or {}
        # kube's completeRollingUpdate: every pod updated and ready.
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and \
                status["updatedReplicas"] == status["replicas"] == status["readyReplicas"]:
            status["currentReplicas"] = status["updatedReplicas"]
            status["currentRevision"] = status["updateRevision"]
        old = self.sts["status"]
        if any(old.get(k) != v for k, v in status.items()):
            self.sts["status"] = {**old, **status}
            self.sts = await self.c.update_status(self.sts)


# -- the controller --

class StatefulSetController(OwnerController):
    name = "statefulset"

    def __init__(self, client: Client, informers: Informers) -> None:
        super().__init__(client, informers, resources.STATEFULSET, informers.statefulsets)

    async def sync(self, owner: Obj, pods: list[Obj], revisions: list[Obj]) -> None:
        await Sync(self.cluster, owner, pods, revisions).run()
