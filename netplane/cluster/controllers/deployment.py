"""Deployment controller, as kube-controller-manager's: one ReplicaSet per
pod template (named by the template's hash), numbered by the
``deployment.kubernetes.io/revision`` annotation that ``kubectl rollout
history`` and ``undo`` read; ``RollingUpdate`` within ``maxSurge`` and
``maxUnavailable`` (scale the new ReplicaSet up, then the old ones down, one
step per sync, counting only available pods), ``Recreate`` (old pods gone
before new ones start), proportional scaling of every active ReplicaSet when
the Deployment is resized mid-rollout, ``paused``, the ``Progressing`` and
``Available`` conditions with ``progressDeadlineSeconds``, and the cleanup of
old ReplicaSets beyond ``revisionHistoryLimit``.

The sync works on a ``Cluster`` (what it reads and writes), so that its steps
are tested without a server."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, owned_by, split_key
from netplane.cluster.events import Reason, Recorder, Source

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Annotations of a Deployment that its ReplicaSets do not inherit (kube's annotationsToSkip).
NOT_COPIED = frozenset({"kubectl.kubernetes.io/last-applied-configuration", REVISION,
                        REVISION_HISTORY, DESIRED, MAX_REPLICAS,
                        "deprecated.deployment.rollback.to"})
MAX_REVISION_HISTORY_CHARS = 2000
NO_DEADLINE = 2**31 - 1

# Progressing condition reasons (kube's deployment util).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"


class StaleStatus(Exception):
    """A ReplicaSet's status counts more available pods than its spec asks
    for: the status has not caught up with a scale-down, and acting on it
    would scale up an old ReplicaSet (kube refuses the sync, as here)."""


# -- numbers --

def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """An int-or-percent against ``total``: percentages round up or down."""
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    fraction = int(text[:-1]) * total / 100
    return math.ceil(fraction) if round_up else math.floor(fraction)


def replicas(obj: Obj | None) -> int:
    return int(((obj or {}).get("spec") or {}).get("replicas", 1)) if obj else 0


def _status(obj: Obj | None, key: str) -> int:
    return int(((obj or {}).get("status") or {}).get(key, 0))


def rolling(d: Obj) -> bool:
    return bool((d["spec"].get("strategy") or {}).get("type", "RollingUpdate")
                == "RollingUpdate")


def fenceposts(d: Obj) -> tuple[int, int]:
    """maxSurge and maxUnavailable resolved against the desired replicas; if
    both come to 0, one pod may be unavailable (as kube resolves them)."""
    rolling_update = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(rolling_update.get("maxSurge", 0), desired, True)
    unavailable = scaled_value(rolling_update.get("maxUnavailable", 0), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return fenceposts(d)[0] if rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not rolling(d) or replicas(d) == 0:
        return 0
    return min(fenceposts(d)[1], replicas(d))


def total(rss: list[Obj]) -> int:
    return sum(replicas(rs) for rs in rss)


def available(rss: list[Obj]) -> int:
    return sum(_status(rs, "availableReplicas") for rs in rss)


def active(rss: Sequence[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def revision(rs: Obj) -> int:
    try:
        return int(meta.meta(rs).get("annotations", {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _created(rs: Obj) -> tuple[str, str]:
    return rs["metadata"].get("creationTimestamp", ""), meta.name(rs)


def template_hash(template: Obj, collisions: int = 0) -> str:
    text = json.dumps(template, sort_keys=True) + (f"/{collisions}" if collisions else "")
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode().lower()[:10]


def without_hash(template: Obj) -> Obj:
    out = copy.deepcopy(template)
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return out


def _semantic(value: Any) -> Any:
    """A value as Go's semantic equality sees it: an empty map, list or
    struct is the same as none (``resources: {}`` that kubectl sends back)."""
    if isinstance(value, dict):
        out = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def same_template(a: Obj, b: Obj) -> bool:
    """Equal but for the pod-template-hash label (kube's EqualIgnoreHash)."""
    return bool(_semantic(without_hash(a)) == _semantic(without_hash(b)))


def new_rs_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """How big the new ReplicaSet may be now (kube's NewRSNewReplicas)."""
    if not rolling(d):
        return replicas(d)
    surge = scaled_value(((d["spec"].get("strategy") or {}).get("rollingUpdate") or {})
                         .get("maxSurge", 0), replicas(d), True)
    most = replicas(d) + surge
    current = total(all_rss)
    if current >= most:
        return replicas(new_rs)
    return replicas(new_rs) + min(most - current, replicas(d) - replicas(new_rs))


def complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return bool(status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want
                and status.get("availableReplicas", 0) == want
                and status.get("observedGeneration", 0) >= d["metadata"].get("generation", 1))


def has_deadline(d: Obj) -> bool:
    value = d["spec"].get("progressDeadlineSeconds")
    return value is not None and int(value) != NO_DEADLINE


def _seconds(stamp: str | None) -> float:
    return meta.parse_time(stamp).timestamp() if stamp else 0.0


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def condition(status: Obj, kind: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def set_condition(status: Obj, kind: str, value: str, reason: str, message: str,
                  now: float) -> None:
    """kube's SetDeploymentCondition: the same status and reason change nothing;
    the same status keeps its lastTransitionTime."""
    conds: list[Obj] = status.setdefault("conditions", [])
    cur = condition(status, kind)
    if cur is not None and cur.get("status") == value and cur.get("reason") == reason:
        return
    new = {"type": kind, "status": value, "lastUpdateTime": _stamp(now),
           "lastTransitionTime": _stamp(now), "reason": reason, "message": message}
    if cur is not None and cur.get("status") == value:
        new["lastTransitionTime"] = cur.get("lastTransitionTime", new["lastTransitionTime"])
    status["conditions"] = [c for c in conds if c.get("type") != kind] + [new]


def remove_condition(status: Obj, kind: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    if not status["conditions"]:
        del status["conditions"]


# -- what a sync acts on --

class Cluster(Protocol):
    def now(self) -> float: ...
    async def create_rs(self, rs: Obj) -> Obj: ...  # raises AlreadyExists
    async def update_rs(self, rs: Obj) -> Obj: ...
    async def delete_rs(self, rs: Obj) -> None: ...
    # The Deployment's status and annotations (kube writes both through /status).
    async def update_deployment(self, d: Obj) -> Obj: ...
    def event(self, d: Obj, reason: Reason, message: str, *, warning: bool = False) -> None: ...
    def requeue_after(self, d: Obj, seconds: float) -> None: ...


class Sync:
    """One sync of one Deployment (kube's syncDeployment) over its
    ReplicaSets and their pods (by ReplicaSet uid)."""

    def __init__(self, cluster: Cluster, d: Obj, rss: list[Obj],
                 pods: dict[str, list[Obj]]) -> None:
        self.c, self.d = cluster, copy.deepcopy(d)
        self.d.setdefault("status", {})
        self.rss = sorted((copy.deepcopy(rs) for rs in rss), key=_created)
        self.pods = pods

    async def run(self) -> None:
        d = self.d
        if meta.is_deleting(d):
            await self._replica_sets(create=False)
            await self._sync_status()
            return
        await self._paused_conditions()
        if d["spec"].get("paused") or await self._scaling_event():
            await self._sync()
            return
        if rolling(d):
            await self._rolling()
        else:
            await self._recreate()

    # -- ReplicaSets and revisions --

    def _split(self) -> tuple[Obj | None, list[Obj]]:
        template = self.d["spec"]["template"]
        new = next((rs for rs in self.rss if same_template(rs["spec"]["template"], template)),
                   None)
        return new, [rs for rs in self.rss if rs is not new]

    async def _replica_sets(self, *, create: bool) -> tuple[Obj | None, list[Obj]]:
        """The new ReplicaSet (made when ``create``) and the old ones, with
        revisions in step (kube's getAllReplicaSetsAndSyncRevision)."""
        new, olds = self._split()
        next_revision = max((revision(rs) for rs in olds), default=0) + 1
        d = self.d
        if new is not None:
            changed = self._annotate(new, next_revision, exists=True)
            ready_seconds = d["spec"].get("minReadySeconds", 0)
            if changed or new["spec"].get("minReadySeconds", 0) != ready_seconds:
                new["spec"]["minReadySeconds"] = ready_seconds
                new = self._replace(await self.c.update_rs(new))
            needs = self._set_revision(meta.meta(new).get("annotations", {}).get(REVISION, ""))
            if has_deadline(d) and condition(d["status"], "Progressing") is None:
                set_condition(d["status"], "Progressing", "True", FOUND_NEW_RS,
                              f'Found new replica set "{meta.name(new)}"', self.c.now())
                needs = True
            if needs:
                await self._write()
            return new, olds
        if not create:
            return None, olds
        new = await self._create(olds, next_revision)
        return new, olds

    async def _create(self, olds: list[Obj], next_revision: int) -> Obj:
        d = self.d
        collisions = int(d["status"].get("collisionCount", 0))
        h = template_hash(d["spec"]["template"], collisions)
        template = copy.deepcopy(d["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta.name(d)}-{h}", "namespace": meta.namespace(d),
                         "labels": dict(template["metadata"]["labels"]),
                         "ownerReferences": [meta.owner_ref(d)]},
            "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": template}}
        rs["spec"]["replicas"] = new_rs_replicas(d, [*olds, rs], rs)
        self._annotate(rs, next_revision, exists=False)
        try:
            created = await self.c.create_rs(rs)
        except AlreadyExists:
            same = next((x for x in self.rss if meta.name(x) == meta.name(rs)), None)
            if same is not None and owned_by(same, d) and \
                    same_template(same["spec"]["template"], d["spec"]["template"]):
                return same
            d["status"]["collisionCount"] = collisions + 1  # a hash collision: try another
            await self._write()
            raise
        self.rss.append(created)
        if replicas(created):
            self.c.event(d, Reason.SCALING_REPLICA_SET,
                         f"Scaled up replica set {meta.name(created)} from 0 to "
                         f"{replicas(created)}")
        self._set_revision(str(next_revision))
        if has_deadline(d):
            set_condition(d["status"], "Progressing", "True", NEW_RS_CREATED,
                          f'Created new replica set "{meta.name(created)}"', self.c.now())
        await self._write()
        return created

    def _annotate(self, rs: Obj, next_revision: int, *, exists: bool) -> bool:
        """kube's SetNewReplicaSetAnnotations: the Deployment's annotations,
        the revision (with the revisions it had before, on a rollback), and on
        creation the replica annotations."""
        d = self.d
        notes: dict[str, str] = meta.meta(rs).setdefault("annotations", {})
        changed = False
        for k, v in (meta.meta(d).get("annotations") or {}).items():
            if k not in NOT_COPIED and notes.get(k) != v:
                notes[k], changed = v, True
        had = notes.get(REVISION)
        try:
            old = int(had) if had else 0
        except ValueError:
            return changed
        if old < next_revision:
            notes[REVISION] = str(next_revision)
            changed = True
            if had:
                history = [r for r in notes.get(REVISION_HISTORY, "").split(",") if r]
                history.append(had)
                while len(",".join(history)) > MAX_REVISION_HISTORY_CHARS and len(history) > 1:
                    history.pop(0)
                notes[REVISION_HISTORY] = ",".join(history)
        if not exists and self._set_replica_notes(rs):
            changed = True
        return changed

    def _set_replica_notes(self, rs: Obj) -> bool:
        notes: dict[str, str] = meta.meta(rs).setdefault("annotations", {})
        want = {DESIRED: str(replicas(self.d)),
                MAX_REPLICAS: str(replicas(self.d) + max_surge(self.d))}
        if all(notes.get(k) == v for k, v in want.items()):
            return False
        notes.update(want)
        return True

    def _set_revision(self, value: str) -> bool:
        notes = meta.meta(self.d).setdefault("annotations", {})
        if not value or notes.get(REVISION) == value:
            return False
        notes[REVISION] = value
        return True

    def _replace(self, rs: Obj) -> Obj:
        self.rss = [rs if meta.name(x) == meta.name(rs) else x for x in self.rss]
        return rs

    async def _write(self) -> None:
        self.d = await self.c.update_deployment(self.d)
        self.d.setdefault("status", {})

    # -- scaling --

    async def _scale(self, rs: Obj, to: int, way: str = "") -> tuple[bool, Obj]:
        """kube's scaleReplicaSet: size and replica annotations; an event
        when the size changed."""
        was = replicas(rs)
        resize = was != to
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = to
        if not self._set_replica_notes(updated) and not resize:
            return False, rs
        rs = self._replace(await self.c.update_rs(updated))
        if resize:
            way = way or ("up" if to > was else "down")
            self.c.event(self.d, Reason.SCALING_REPLICA_SET,
                         f"Scaled {way} replica set {meta.name(rs)} from {was} to {to}")
        return resize, rs

    async def _scale_to(self, rs: Obj, to: int) -> tuple[bool, Obj]:
        if replicas(rs) == to:
            return False, rs
        return await self._scale(rs, to)

    async def _scaling_event(self) -> bool:
        new, olds = await self._replica_sets(create=False)
        for rs in active([new, *olds]):
            desired = (meta.meta(rs).get("annotations") or {}).get(DESIRED)
            if desired is not None and desired.isdigit() and int(desired) != replicas(self.d):
                return True
        return False

    async def _sync(self) -> None:
        """Scale (proportionally) without rolling: paused or resized."""
        new, olds = await self._replica_sets(create=False)
        await self._proportional(new, olds)
        if self.d["spec"].get("paused"):
            await self._cleanup(self._split()[1])
        await self._sync_status()

    async def _proportional(self, new: Obj | None, olds: list[Obj]) -> None:
        d = self.d
        only = self._active_or_latest(new, olds)
        if only is not None:
            if replicas(only) != replicas(d):
                await self._scale_to(only, replicas(d))
            return
        if new is not None and self._saturated(new):
            for rs in active(olds):
                await self._scale_to(rs, 0)
            return
        if not rolling(d):
            return
        every = active([*olds, new])
        allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
        to_add = allowed - total(every)
        way = "up" if to_add > 0 else "down" if to_add < 0 else ""
        # Larger first; among equals, newer first when growing, older first when shrinking.
        every.sort(key=_created, reverse=to_add > 0)
        every.sort(key=replicas, reverse=True)
        added = 0
        sizes: dict[str, int] = {}
        for rs in every:
            part = self._proportion(rs, to_add, added) if to_add else 0
            sizes[meta.name(rs)] = replicas(rs) + part
            added += part
        for i, rs in enumerate(every):
            if i == 0 and to_add:
                sizes[meta.name(rs)] = max(0, sizes[meta.name(rs)] + to_add - added)
            await self._scale(rs, sizes[meta.name(rs)], way)

    def _proportion(self, rs: Obj, to_add: int, added: int) -> int:
        d = self.d
        if replicas(rs) == 0 or to_add == 0 or to_add == added:
            return 0
        if replicas(d) == 0:
            fraction = -replicas(rs)
        else:
            most = replicas(d) + max_surge(d)
            note = (meta.meta(rs).get("annotations") or {}).get(MAX_REPLICAS, "")
            annotated = int(note) if note.isdigit() else _status(d, "replicas")
            fraction = math.floor(replicas(rs) * most / annotated + 0.5) - replicas(rs) \
                if annotated else 0
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    def _active_or_latest(self, new: Obj | None, olds: list[Obj]) -> Obj | None:
        if new is None and not olds:
            return None
        newest_first = sorted(olds, key=_created, reverse=True)
        live = active([*newest_first, new])
        if not live:
            return new if new is not None else newest_first[0]
        return live[0] if len(live) == 1 else None

    def _saturated(self, rs: Obj) -> bool:
        desired = (meta.meta(rs).get("annotations") or {}).get(DESIRED, "")
        want = replicas(self.d)
        return replicas(rs) == want and desired == str(want) and \
            _status(rs, "availableReplicas") == want

    # -- strategies --

    async def _rolling(self) -> None:
        new, olds = await self._replica_sets(create=True)
        if new is None:
            return
        # Scale up if it can; else down if it can; else, when done, clean up.
        if not await self._reconcile_new([*olds, new], new) and \
                not await self._reconcile_olds([*olds, new], active(olds), new) and \
                complete(self.d, self.d["status"]):
            await self._cleanup(olds)
        await self._sync_rollout()

    async def _reconcile_new(self, every: list[Obj], new: Obj) -> bool:
        want = replicas(self.d)
        if replicas(new) == want:
            return False
        if replicas(new) > want:
            return (await self._scale_to(new, want))[0]
        return (await self._scale_to(new, new_rs_replicas(self.d, every, new)))[0]

    async def _reconcile_olds(self, every: list[Obj], olds: list[Obj], new: Obj) -> bool:
        """kube's reconcileOldReplicaSets: never below the available minimum,
        counting the new ReplicaSet's unavailable pods; unhealthy old pods
        go first."""
        if total(olds) == 0:
            return False
        d = self.d
        min_available = replicas(d) - max_unavailable(d)
        new_unavailable = replicas(new) - _status(new, "availableReplicas")
        most_down = total(every) - min_available - new_unavailable
        if most_down <= 0:
            return False
        olds, cleaned = await self._cleanup_unhealthy(olds, most_down)
        scaled = await self._scale_down_olds([*olds, new], olds)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, olds: list[Obj], most: int) -> tuple[list[Obj], int]:
        out, done = [], 0
        for rs in sorted(olds, key=_created):
            if done >= most or replicas(rs) == 0 or \
                    replicas(rs) == _status(rs, "availableReplicas"):
                out.append(rs)
                continue
            down = min(most - done, replicas(rs) - _status(rs, "availableReplicas"))
            if down < 0:
                raise StaleStatus(f"{meta.name(rs)}: {replicas(rs)} replicas but "
                                  f"{_status(rs, 'availableReplicas')} available")
            _, rs = await self._scale_to(rs, replicas(rs) - down)
            done += down
            out.append(rs)
        return out, done

    async def _scale_down_olds(self, every: list[Obj], olds: list[Obj]) -> int:
        min_available = replicas(self.d) - max_unavailable(self.d)
        can = available(every) - min_available
        if can <= 0:
            return 0
        done = 0
        for rs in sorted(olds, key=_created):
            if done >= can:
                break
            if replicas(rs) == 0:
                continue
            down = min(replicas(rs), can - done)
            await self._scale_to(rs, replicas(rs) - down)
            done += down
        return done

    async def _recreate(self) -> None:
        new, olds = await self._replica_sets(create=False)
        scaled = False
        for rs in active(olds):
            scaled = (await self._scale_to(rs, 0))[0] or scaled
        # New pods only once the old ones are gone.
        if not scaled and not self._old_pods_running(new, olds):
            if new is None:
                new, olds = await self._replica_sets(create=True)
            if new is not None:
                await self._scale_to(new, replicas(self.d))
            if complete(self.d, self.d["status"]):
                await self._cleanup(olds)
        await self._sync_rollout()

    def _old_pods_running(self, new: Obj | None, olds: list[Obj]) -> bool:
        if sum(_status(rs, "replicas") for rs in olds) > 0:
            return True
        for uid, pods in self.pods.items():
            if new is not None and uid == meta.uid(new):
                continue
            if any((p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                   for p in pods):
                return True
        return False

    async def _cleanup(self, olds: list[Obj]) -> None:
        """Old ReplicaSets beyond revisionHistoryLimit, oldest revision
        first, if they are scaled to 0 and settled."""
        limit = self.d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in olds if not meta.is_deleting(rs)]
        extra = len(alive) - int(limit)
        if extra <= 0:
            return
        for rs in sorted(alive, key=lambda r: (revision(r), _created(r)))[:extra]:
            if _status(rs, "replicas") or replicas(rs) or \
                    rs["metadata"].get("generation", 1) > _status(rs, "observedGeneration"):
                continue
            await self.c.delete_rs(rs)
            self.rss = [x for x in self.rss if meta.name(x) != meta.name(rs)]

    # -- status --

    def _calculate(self) -> Obj:
        """kube's calculateStatus, over the ReplicaSets as they are now."""
        d = self.d
        new, olds = self._split()
        every = [*olds, *([new] if new else [])]
        avail = available(every)
        status: Obj = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": sum(_status(rs, "replicas") for rs in every),
            "updatedReplicas": _status(new, "replicas"),
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in every),
            "availableReplicas": avail,
            "unavailableReplicas": max(0, total(every) - avail),
        }
        if "collisionCount" in d["status"]:
            status["collisionCount"] = d["status"]["collisionCount"]
        status["conditions"] = copy.deepcopy(d["status"].get("conditions") or [])
        if avail >= replicas(d) - max_unavailable(d):
            set_condition(status, "Available", "True", "MinimumReplicasAvailable",
                          "Deployment has minimum availability.", self.c.now())
        else:
            set_condition(status, "Available", "False", "MinimumReplicasUnavailable",
                          "Deployment does not have minimum availability.", self.c.now())
        return {k: v for k, v in status.items() if v or k in ("observedGeneration",
                                                               "conditions")}

    async def _sync_status(self) -> None:
        status = self._calculate()
        if status != self.d["status"]:
            self.d["status"] = status
            await self._write()

    async def _sync_rollout(self) -> None:
        """kube's syncRolloutStatus: the Progressing condition against the
        deadline, and a requeue for when it would pass."""
        d, now = self.d, self.c.now()
        new = self._split()[0]
        status = self._calculate()
        if not has_deadline(d):
            remove_condition(status, "Progressing")
            status.setdefault("conditions", [])
        cur = condition(d["status"], "Progressing")
        finished = status.get("replicas", 0) == status.get("updatedReplicas", 0) and \
            cur is not None and cur.get("reason") == NEW_RS_AVAILABLE
        name = f'ReplicaSet "{meta.name(new)}"' if new else f'Deployment "{meta.name(d)}"'
        if has_deadline(d) and not finished:
            if complete(d, status):
                set_condition(status, "Progressing", "True", NEW_RS_AVAILABLE,
                              f"{name} has successfully progressed.", now)
            elif self._progressing(status):
                fresh = {"type": "Progressing", "status": "True", "lastUpdateTime": _stamp(now),
                         "lastTransitionTime": _stamp(now), "reason": RS_UPDATED,
                         "message": f"{name} is progressing."}
                if cur is not None and cur.get("status") == "True":
                    fresh["lastTransitionTime"] = cur.get("lastTransitionTime",
                                                          fresh["lastTransitionTime"])
                remove_condition(status, "Progressing")
                status.setdefault("conditions", []).append(fresh)
            elif self._timed_out(status, now):
                set_condition(status, "Progressing", "False", TIMED_OUT,
                              f"{name} has timed out progressing.", now)
        if status != d["status"]:
            self.d["status"] = status
            await self._write()
        self._requeue_stuck(status, now)

    def _progressing(self, status: Obj) -> bool:
        old = self.d["status"]

        def olds(s: Obj) -> int:
            return int(s.get("replicas", 0)) - int(s.get("updatedReplicas", 0))
        return (status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
                or olds(status) < olds(old)
                or status.get("readyReplicas", 0) > old.get("readyReplicas", 0)
                or status.get("availableReplicas", 0) > old.get("availableReplicas", 0))

    def _timed_out(self, status: Obj, now: float) -> bool:
        cond = condition(status, "Progressing")
        if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
            return False
        if cond.get("reason") == TIMED_OUT:
            return True
        deadline = int(self.d["spec"]["progressDeadlineSeconds"])
        return _seconds(cond.get("lastUpdateTime")) + deadline < now

    def _requeue_stuck(self, status: Obj, now: float) -> None:
        cond = condition(status, "Progressing")
        if cond is None or not has_deadline(self.d) or complete(self.d, status) or \
                cond.get("reason") == TIMED_OUT:
            return
        deadline = int(self.d["spec"]["progressDeadlineSeconds"])
        after = _seconds(cond.get("lastUpdateTime")) + deadline - now
        self.c.requeue_after(self.d, max(after, 0.0) + 1.0)

    async def _paused_conditions(self) -> None:
        d = self.d
        if not has_deadline(d):
            return
        cond = condition(d["status"], "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused = cond is not None and cond.get("reason") == PAUSED
        if d["spec"].get("paused") and not paused:
            set_condition(d["status"], "Progressing", "Unknown", PAUSED, "Deployment is paused",
                          self.c.now())
        elif not d["spec"].get("paused") and paused:
            set_condition(d["status"], "Progressing", "Unknown", RESUMED,
                          "Deployment is resumed", self.c.now())
        else:
            return
        await self._write()


# -- the controller --

class _ApiCluster:
    """The Cluster of a sync, through the API server."""

    def __init__(self, controller: DeploymentController) -> None:
        self.ctl = controller

    def now(self) -> float:
        return time.time()

    async def create_rs(self, rs: Obj) -> Obj:
        return await self.ctl.client.create(resources.REPLICASET, rs)

    async def update_rs(self, rs: Obj) -> Obj:
        return await self.ctl.client.update(resources.REPLICASET, rs)

    async def delete_rs(self, rs: Obj) -> None:
        try:
            await self.ctl.client.delete(resources.REPLICASET, meta.name(rs), meta.namespace(rs))
        except NotFound:
            pass

    async def update_deployment(self, d: Obj) -> Obj:
        client, ns = self.ctl.client, meta.namespace(d)
        cached = self.ctl.inf.deployments.get(meta.name(d), ns) or {}
        notes = meta.meta(d).get("annotations") or {}
        if notes != (meta.meta(cached).get("annotations") or {}):
            # kube writes these with the status; here /status keeps metadata.
            patched = await client.patch(resources.DEPLOYMENT, meta.name(d),
                                         {"metadata": {"annotations": notes}}, ns)
            d = {**d, "metadata": patched["metadata"]}
        return await client.update_status(resources.DEPLOYMENT, d)

    def event(self, d: Obj, reason: Reason, message: str, *, warning: bool = False) -> None:
        (self.ctl.events.warning if warning else self.ctl.events.normal)(d, reason, message)

    def requeue_after(self, d: Obj, seconds: float) -> None:
        self.ctl.queue.add_after(meta.namespaced_name(d), seconds)


class DeploymentController:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client, self.inf = client, informers
        self.events = Recorder(client, Source("deployment-controller"))
        self.queue = WorkQueue()
        informers.deployments.add_handler(self._on_deploy)
        informers.replicasets.add_handler(self._on_rs)
        informers.pods.add_handler(self._on_pod)

    def _on_deploy(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is not None:
            self.queue.add(meta.namespaced_name(obj))

    def _owner_key(self, obj: Obj | None, kind: str) -> str | None:
        ref = meta.controller_of(obj) if obj else None
        if obj is None or ref is None or ref.get("kind") != kind:
            return None
        return f"{meta.namespace(obj)}/{ref['name']}"

    def _on_rs(self, prev: Obj | None, cur: Obj | None) -> None:
        key = self._owner_key(cur or prev, "Deployment")
        if key:
            self.queue.add(key)

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        # Recreate waits for the old pods to be gone.
        if cur is not None:
            return
        rs_key = self._owner_key(prev, "ReplicaSet")
        if rs_key is None:
            return
        ns, name = split_key(rs_key)
        key = self._owner_key(self.inf.replicasets.get(name, ns), "Deployment")
        if key:
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        d = self.inf.deployments.get(name, ns)
        if d is None:
            return
        rss = [rs for rs in self.inf.replicasets.in_namespace(ns) if owned_by(rs, d)]
        uids = {meta.uid(rs) for rs in rss}
        pods: dict[str, list[Obj]] = {}
        for pod in self.inf.pods.in_namespace(ns):
            ref = meta.controller_of(pod)
            if ref is not None and ref.get("uid") in uids:
                pods.setdefault(str(ref["uid"]), []).append(pod)
        try:
            await Sync(_ApiCluster(self), d, rss, pods).run()
        except StaleStatus:
            self.queue.add_after(key, 0.1)  # the ReplicaSet's next status write requeues it too
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self.queue.add_after(key, 0.1)  # a stale cache: again once it has caught up

    async def run(self) -> None:
        await drain("deployment", self.queue, self.reconcile)

