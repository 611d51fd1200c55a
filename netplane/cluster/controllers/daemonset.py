"""DaemonSet controller, as kube-controller-manager's: one pod on every node
that should run it (node selector, required node affinity, taints against
the pod's tolerations and those every daemon pod gets), none elsewhere.
Pods are pinned to their node by a required node affinity on
``metadata.name`` and bound by the scheduler, as kube has done since 1.12.
Templates are kept as ControllerRevisions (``kubectl rollout history`` and
``undo``); pods carry the revision's hash and the template generation.
``RollingUpdate`` replaces old pods within ``maxUnavailable`` (deleting
first) or ``maxSurge`` (a new pod beside the old until it is available),
counting availability after ``minReadySeconds``; ``OnDelete`` leaves old
pods until someone deletes them.

The sync works on a ``Cluster`` (what it reads and writes), so that its steps
are tested without a server."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Protocol

from netplane.api import meta, resources, scheduling
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, Client, NotFound
from netplane.cluster.controllers import history
from netplane.cluster.controllers.deployment import scaled_value
from netplane.cluster.controllers.owned import OwnerController
from netplane.cluster.controllers.replicaset import available
from netplane.cluster.controllers.shared import Informers
from netplane.cluster.events import Reason

HASH_LABEL = history.HASH_LABEL
GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
# What every daemon pod tolerates (kube's AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS = (
    (scheduling.NOT_READY, scheduling.NO_EXECUTE),
    (scheduling.UNREACHABLE, scheduling.NO_EXECUTE),
    (scheduling.DISK_PRESSURE, scheduling.NO_SCHEDULE),
    (scheduling.MEMORY_PRESSURE, scheduling.NO_SCHEDULE),
    (scheduling.PID_PRESSURE, scheduling.NO_SCHEDULE),
    (scheduling.UNSCHEDULABLE, scheduling.NO_SCHEDULE),
)


# -- pods of a daemon set --

def with_daemon_tolerations(spec: Obj) -> None:
    tolerations: list[Obj] = spec.setdefault("tolerations", [])
    wanted = list(DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append((scheduling.NETWORK_UNAVAILABLE, scheduling.NO_SCHEDULE))
    for key, effect in wanted:
        new = {"key": key, "operator": "Exists", "effect": effect}
        # kube's AddOrUpdateTolerationInPodSpec: added unless the pod has it already.
        if not any({k: t.get(k) for k in new} == new for t in tolerations):
            tolerations.append(new)


def template_generation(ds: Obj) -> str | None:
    value = (meta.meta(ds).get("annotations") or {}).get(TEMPLATE_GENERATION)
    return str(value) if value is not None and str(value).isdigit() else None


def pod_template(ds: Obj, hash_: str) -> Obj:
    """kube's CreatePodTemplate: the template with the daemon tolerations,
    the template generation and the revision hash."""
    template: Obj = copy.deepcopy(ds["spec"]["template"])
    with_daemon_tolerations(template.setdefault("spec", {}))
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    generation = template_generation(ds)
    if generation is not None:
        labels[GENERATION_LABEL] = generation
    if hash_:
        labels[HASH_LABEL] = hash_
    return template


def pin(spec: Obj, node: str) -> None:
    """kube's ReplaceDaemonSetPodNodeNameNodeAffinity: the required node
    affinity becomes one term naming the node."""
    term = {"matchFields": [{"key": scheduling.NAME_FIELD, "operator": "In", "values": [node]}]}
    affinity = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    required = affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    required["nodeSelectorTerms"] = [term]


def new_pod(ds: Obj, template: Obj, node: str) -> Obj:
    md = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    pin(spec, node)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{meta.name(ds)}-", "namespace": meta.namespace(ds),
                         "labels": dict(md.get("labels") or {}),
                         "annotations": dict(md.get("annotations") or {}),
                         "ownerReferences": [meta.owner_ref(ds)]},
            "spec": spec}


def target_node(pod: Obj) -> str | None:
    """kube's GetTargetNodeName: where the pod runs, or the node its
    affinity names while it is not bound yet."""
    if pod.get("spec", {}).get("nodeName"):
        return str(pod["spec"]["nodeName"])
    for term in scheduling.required_terms(pod) or []:
        for req in term.get("matchFields") or []:
            values = req.get("values") or []
            if req.get("key") == scheduling.NAME_FIELD and req.get("operator") == "In" and \
                    len(values) == 1:
                return str(values[0])
    return None


def should_run(node: Obj, ds: Obj) -> tuple[bool, bool]:
    """kube's NodeShouldRunDaemonPod: (should run, should continue running).
    A pod that tolerates a node's NoExecute taints may stay where it could
    not be placed now."""
    spec = ds["spec"]["template"].get("spec") or {}
    if spec.get("nodeName") and spec["nodeName"] != meta.name(node):
        return False, False
    pod = {"spec": copy.deepcopy(spec)}
    with_daemon_tolerations(pod["spec"])
    if not scheduling.fits_node(pod, node):
        return False, False
    taints = scheduling.node_taints(node)
    tolerations = pod["spec"]["tolerations"]
    if scheduling.untolerated(taints, tolerations) is None:
        return True, True
    return False, scheduling.untolerated(taints, tolerations, (scheduling.NO_EXECUTE,)) is None


def is_updated(pod: Obj, hash_: str, generation: str | None) -> bool:
    """kube's IsPodUpdated: the pod has the revision's hash or template generation."""
    labels = meta.labels(pod)
    return bool((hash_ and labels.get(HASH_LABEL) == hash_) or
                (generation is not None and labels.get(GENERATION_LABEL) == generation))


def rolling(ds: Obj) -> bool:
    return bool((ds["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
                == "RollingUpdate")


def _rolling_update(ds: Obj) -> Obj:
    return dict((ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {})


def surge_count(ds: Obj, desired: int) -> int:
    if not rolling(ds):
        return 0
    return scaled_value(_rolling_update(ds).get("maxSurge", 0), desired, True)


def unavailable_count(ds: Obj, desired: int) -> int:
    if not rolling(ds):
        return 0
    return scaled_value(_rolling_update(ds).get("maxUnavailable", 1), desired, True)


def _oldest_first(pod: Obj) -> tuple[int, str, str]:
    """kube's podByCreationTimestampAndPhase: scheduled pods, then the oldest."""
    scheduled = 0 if pod.get("spec", {}).get("nodeName") else 1
    return scheduled, pod["metadata"].get("creationTimestamp", ""), meta.name(pod)


def _terminal(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


# -- what a sync acts on --

class Cluster(history.History, Protocol):
    def now(self) -> float: ...
    async def create_pod(self, pod: Obj) -> Obj: ...
    async def delete_pod(self, pod: Obj) -> Obj | None: ...  # None: removed at once
    async def patch_pod_labels(self, pod: Obj, labels: dict[str, str]) -> Obj: ...
    async def update_status(self, ds: Obj) -> Obj: ...
    def event(self, ds: Obj, reason: Reason, message: str, *, warning: bool = False) -> None: ...
    def requeue_after(self, ds: Obj, seconds: float) -> None: ...


@dataclass
class Plan:
    """What one step decided: nodes to get a new pod, pods to delete."""

    create: list[str] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


class Sync:
    """One sync of one DaemonSet (kube's syncDaemonSet) over the nodes, its
    pods and its revisions."""

    def __init__(self, cluster: Cluster, ds: Obj, nodes: list[Obj], pods: list[Obj],
                 revisions: list[Obj]) -> None:
        self.c, self.ds = cluster, copy.deepcopy(ds)
        self.ds.setdefault("status", {})
        self.nodes = sorted(nodes, key=meta.name)
        self.pods = {meta.name(p): p for p in pods}
        self.revisions = history.sort_revisions(revisions)

    async def run(self) -> None:
        if meta.is_deleting(self.ds):
            return  # its revisions may be going: nothing to count on
        cur, olds = await self._history()
        hash_ = str(meta.labels(cur).get(HASH_LABEL, ""))
        acted = await self._apply(self._manage(hash_), hash_)
        # As kube's expectations do: the update waits for the pods just made or removed.
        if not acted and rolling(self.ds):
            await self._apply(self._rolling_update(hash_), hash_)
        await self._cleanup_history(olds)
        await self._status(hash_)

    # -- pods by node --

    def by_node(self) -> dict[str, list[Obj]]:
        """kube's getNodesToDaemonPods: pods by the node they run on or are
        meant for; finished pods being deleted are done with."""
        out: dict[str, list[Obj]] = {}
        for pod in self.pods.values():
            if _terminal(pod) and meta.is_deleting(pod):
                continue
            node = target_node(pod)
            if node is not None:
                out.setdefault(node, []).append(pod)
        return out

    def _manage(self, hash_: str) -> Plan:
        plan = Plan()
        pods = self.by_node()
        for node in self.nodes:
            self._on_node(node, pods.get(meta.name(node)), hash_, plan)
        names = {meta.name(n) for n in self.nodes}
        # Unbound pods meant for nodes that are gone: nothing else removes them.
        plan.delete += [p for node, ps in sorted(pods.items()) if node not in names
                        for p in ps if not p["spec"].get("nodeName")]
        return plan

    def _on_node(self, node: Obj, pods: list[Obj] | None, hash_: str, plan: Plan) -> None:
        """kube's podsShouldBeOnNode."""
        run, keep = should_run(node, self.ds)
        if run and not pods:
            plan.create.append(meta.name(node))
            return
        if not pods:
            return
        if not keep:
            plan.delete += [p for p in pods if not meta.is_deleting(p)]
            return
        running = []
        for pod in pods:
            if meta.is_deleting(pod):
                continue
            phase = pod.get("status", {}).get("phase")
            if phase in ("Failed", "Succeeded"):
                failed = phase == "Failed"
                self.c.event(self.ds, Reason.FAILED_DAEMON_POD if failed
                             else Reason.SUCCEEDED_DAEMON_POD,
                             f"Found {'failed' if failed else 'succeeded'} daemon pod "
                             f"{meta.namespaced_name(pod)} on node {meta.name(node)}, will try "
                             f"to {'kill' if failed else 'delete'} it", warning=failed)
                plan.delete.append(pod)
            else:
                running.append(pod)
        running.sort(key=_oldest_first)
        if surge_count(self.ds, 1) <= 0:
            plan.delete += running[1:]  # one pod per node: the oldest stays
            return
        if not running:
            if run:
                plan.create.append(meta.name(node))
            return
        self._surged_node(running, hash_, plan)

    def _surged_node(self, running: list[Obj], hash_: str, plan: Plan) -> None:
        """With surge, an old and a new pod may share a node until the new
        one is available (or the old one is not ready); nothing else may."""
        oldest_new = oldest_old = None
        generation = template_generation(self.ds)
        for pod in running:
            if is_updated(pod, hash_, generation) and oldest_new is None:
                oldest_new = pod
            elif not is_updated(pod, hash_, generation) and oldest_old is None:
                oldest_old = pod
            else:
                plan.delete.append(pod)
        if oldest_new is not None and oldest_old is not None and (
                not meta.pod_ready(oldest_old) or self._available(oldest_new)):
            plan.delete.append(oldest_old)

    def _available(self, pod: Obj) -> bool:
        return available(pod, int(self.ds["spec"].get("minReadySeconds") or 0), self.c.now())

    async def _apply(self, plan: Plan, hash_: str) -> bool:
        """kube's syncNodes: create the pods, then delete."""
        template = pod_template(self.ds, hash_) if plan.create else {}
        for node in plan.create:
            pod = await self.c.create_pod(new_pod(self.ds, template, node))
            self.pods[meta.name(pod)] = pod
            self.c.event(self.ds, Reason.SUCCESSFUL_CREATE, f"Created pod: {meta.name(pod)}")
        for pod in plan.delete:
            try:
                after = await self.c.delete_pod(pod)
            except NotFound:
                after = None
            if after is None:
                self.pods.pop(meta.name(pod), None)
            else:
                self.pods[meta.name(pod)] = after
            self.c.event(self.ds, Reason.SUCCESSFUL_DELETE, f"Deleted pod: {meta.name(pod)}")
        return bool(plan.create or plan.delete)

    # -- rolling update --

    def _desired(self, pods: dict[str, list[Obj]]) -> tuple[int, int, dict[str, list[Obj]]]:
        """kube's updatedDesiredNodeCounts: maxSurge and maxUnavailable over
        the nodes that should run a pod, and every such node in the map."""
        want = {meta.name(n) for n in self.nodes if should_run(n, self.ds)[0]}
        nodes = {name: pods.get(name, []) for name in sorted(set(pods) | want)}
        surge = surge_count(self.ds, len(want))
        unavailable = unavailable_count(self.ds, len(want))
        if want and surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable, nodes

    def _split(self, pods: list[Obj], hash_: str) -> tuple[Obj | None, Obj | None, bool]:
        """kube's findUpdatedPodsOnNode: the new and the old pod of a node,
        or False when there are more (the manage step prunes them)."""
        new = old = None
        generation = template_generation(self.ds)
        for pod in pods:
            if meta.is_deleting(pod):
                continue
            if is_updated(pod, hash_, generation):
                if new is not None:
                    return None, None, False
                new = pod
            else:
                if old is not None:
                    return None, None, False
                old = pod
        return new, old, True

    def _rolling_update(self, hash_: str) -> Plan:
        surge, most_unavailable, nodes = self._desired(self.by_node())
        if surge == 0:
            return self._replace_within_unavailable(nodes, hash_, most_unavailable)
        return self._replace_with_surge(nodes, hash_, surge)

    def _replace_within_unavailable(self, nodes: dict[str, list[Obj]], hash_: str,
                                    most: int) -> Plan:
        """Delete old pods (the manage step makes their new ones) while no
        more than ``most`` nodes are without an available pod."""
        unavailable, replace, candidates = 0, [], []
        for pods in nodes.values():
            new, old, ok = self._split(pods, hash_)
            if not ok or (new is None) == (old is None):
                unavailable += 1  # nothing yet, both, or too many: unavailable for now
            elif new is not None:
                unavailable += 0 if self._available(new) else 1
            elif old is not None and not self._available(old):
                replace.append(old)  # an unavailable old pod goes at once
            elif old is not None and unavailable < most:
                candidates.append(old)
        room = max(0, min(most - unavailable, len(candidates)))
        return Plan(delete=replace + candidates[:room])

    def _replace_with_surge(self, nodes: dict[str, list[Obj]], hash_: str, surge: int) -> Plan:
        """Start new pods beside old ones, up to ``surge`` at a time; an old
        pod goes once the new pod on its node is available."""
        surged, plan, allowed, candidates = 0, Plan(), [], []
        for name, pods in nodes.items():
            new, old, ok = self._split(pods, hash_)
            if not ok:
                surged += 1
            elif old is None:
                continue
            elif new is None:
                if not self._available(old):
                    allowed.append(name)
                elif surged < surge:
                    candidates.append(name)
            elif not self._available(new):
                surged += 1
            else:
                plan.delete.append(old)
        room = max(0, min(surge - surged, len(candidates)))
        plan.create = allowed + candidates[:room]
        return plan

    # -- history --

    async def _history(self) -> tuple[Obj, list[Obj]]:
        """kube's constructHistory: the revision of the current template
        (made, or renumbered to be the newest) and the older ones."""
        data = history.template_patch(self.ds["spec"]["template"])
        probe = {"data": data}
        current = [r for r in self.revisions if history.same_data(r, probe)]
        olds = [r for r in self.revisions if not history.same_data(r, probe)]
        want = history.next_number(olds)
        if not current:
            return await self._snapshot(data, want), olds
        cur = await self._dedup(current)
        if history.number(cur) < want:
            cur = copy.deepcopy(cur)
            cur["revision"] = want
            cur = await self.c.update_revision(cur)
        return cur, olds

    async def _snapshot(self, data: Obj, number: int) -> Obj:
        collisions = int(self.ds["status"].get("collisionCount", 0))
        hash_ = history.hash_of(self.ds["spec"]["template"], collisions)
        labels = {**(self.ds["spec"]["template"].get("metadata") or {}).get("labels", {}),
                  HASH_LABEL: hash_}
        rev = history.new_revision(self.ds, data=data, number_=number, labels=labels,
                                   name=history.revision_name(meta.name(self.ds), hash_))
        try:
            return await self.c.create_revision(rev)
        except AlreadyExists:
            there = await self.c.get_revision(meta.namespace(self.ds), meta.name(rev))
            if history.same_data(there, rev):
                return there
            # Another template has this hash: count a collision, try again later.
            self.ds["status"]["collisionCount"] = collisions + 1
            self.ds = await self.c.update_status(self.ds)
            raise

    async def _dedup(self, current: list[Obj]) -> Obj:
        """Several revisions of the same template: the newest stays, pods
        of the others take its hash, the others go."""
        keep = max(current, key=history.number)
        hash_ = meta.labels(keep).get(HASH_LABEL, "")
        for rev in current:
            if rev is keep:
                continue
            for pod in list(self.pods.values()):
                if meta.labels(pod).get(HASH_LABEL) != hash_:
                    self.pods[meta.name(pod)] = await self.c.patch_pod_labels(
                        pod, {HASH_LABEL: hash_})
            await self.c.delete_revision(rev)
        return keep

    async def _cleanup_history(self, olds: list[Obj]) -> None:
        """Old revisions beyond revisionHistoryLimit, oldest first, unless
        a pod still has their hash."""
        extra = len(olds) - int(self.ds["spec"].get("revisionHistoryLimit", 10))
        if extra <= 0:
            return
        live = {meta.labels(p).get(HASH_LABEL) for p in self.pods.values()}
        for rev in history.sort_revisions(olds):
            if extra <= 0:
                break
            if meta.labels(rev).get(HASH_LABEL) in live:
                continue
            await self.c.delete_revision(rev)
            extra -= 1

    # -- status --

    def count(self, hash_: str) -> Obj:
        """kube's updateDaemonSetStatus, over the oldest pod of each node."""
        pods = self.by_node()
        desired = current = misscheduled = ready = updated = avail = 0
        generation = template_generation(self.ds)
        for node in self.nodes:
            run, _ = should_run(node, self.ds)
            on_node = sorted(pods.get(meta.name(node), []), key=_oldest_first)
            if not run:
                misscheduled += 1 if on_node else 0
                continue
            desired += 1
            if not on_node:
                continue
            current += 1
            pod = on_node[0]
            if meta.pod_ready(pod):
                ready += 1
                avail += 1 if self._available(pod) else 0
            updated += 1 if is_updated(pod, hash_, generation) else 0
        return {"desiredNumberScheduled": desired, "currentNumberScheduled": current,
                "numberMisscheduled": misscheduled, "numberReady": ready,
                "updatedNumberScheduled": updated, "numberAvailable": avail,
                "numberUnavailable": desired - avail,
                "observedGeneration": self.ds["metadata"].get("generation", 1)}

    async def _status(self, hash_: str) -> None:
        counts = self.count(hash_)
        status = self.ds["status"]
        if any(status.get(k, 0) != v for k, v in counts.items()):
            self.ds["status"] = {**status, **counts}
            self.ds = await self.c.update_status(self.ds)
        ready_seconds = int(self.ds["spec"].get("minReadySeconds") or 0)
        if ready_seconds and counts["numberReady"] != counts["numberAvailable"]:
            self.c.requeue_after(self.ds, ready_seconds)


# -- the controller --

def _node_placement(node: Obj) -> tuple[object, ...]:
    """What of a node decides whether daemon pods run there."""
    return (meta.labels(node), (node.get("spec") or {}).get("taints"),
            (node.get("spec") or {}).get("unschedulable"),
            [t["key"] for t in scheduling.condition_taints(node)])


class DaemonSetController(OwnerController):
    name = "daemonset"

    def __init__(self, client: Client, informers: Informers) -> None:
        super().__init__(client, informers, resources.DAEMONSET, informers.daemonsets)
        informers.nodes.add_handler(self._on_node)

    def _on_node(self, prev: Obj | None, cur: Obj | None) -> None:
        if prev is not None and cur is not None and _node_placement(prev) == _node_placement(cur):
            return
        for ds in self.inf.daemonsets.items():
            self.queue.add(meta.namespaced_name(ds))

    async def sync(self, owner: Obj, pods: list[Obj], revisions: list[Obj]) -> None:
        await Sync(self.cluster, owner, self.inf.nodes.items(), pods, revisions).run()
