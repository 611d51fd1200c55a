"""Deployment controller: one ReplicaSet per pod template (named by the
template's hash); the current one is scaled to ``spec.replicas`` and older
ones are scaled down as the new pods become ready."""

from __future__ import annotations

import base64
import copy
import hashlib
import json

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, owned_by, split_key
from netplane.cluster.events import Reason, Recorder, Source

HASH_LABEL = "pod-template-hash"


def template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:10]


def new_replicaset(deploy: Obj, h: str, replicas: int) -> Obj:
    template = copy.deepcopy(deploy["spec"]["template"])
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
    selector = copy.deepcopy(deploy["spec"]["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = h
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{meta.name(deploy)}-{h}", "namespace": meta.namespace(deploy),
                     "labels": {**template["metadata"]["labels"]},
                     "ownerReferences": [meta.owner_ref(deploy)]},
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    }


class DeploymentController:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client, self.inf = client, informers
        self.events = Recorder(client, Source("deployment-controller"))
        self.queue = WorkQueue()
        informers.deployments.add_handler(self._on_deploy)
        informers.replicasets.add_handler(self._on_rs)

    def _on_deploy(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is not None:
            self.queue.add(meta.namespaced_name(obj))

    def _on_rs(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        ref = meta.controller_of(obj) if obj else None
        if obj and ref and ref.get("kind") == "Deployment":
            self.queue.add(f"{meta.namespace(obj)}/{ref['name']}")

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        deploy = self.inf.deployments.get(name, ns)
        if deploy is None or meta.is_deleting(deploy):
            return
        owned = [rs for rs in self.inf.replicasets.in_namespace(ns) if owned_by(rs, deploy)]
        h = template_hash(deploy["spec"]["template"])
        want = int(deploy["spec"].get("replicas", 1))
        current = next((rs for rs in owned if rs["metadata"].get("labels", {}).get(HASH_LABEL)
                        == h), None)
        old = [rs for rs in owned if rs is not current]
        if current is None:
            try:
                current = await self.client.create(resources.REPLICASET,
                                                   new_replicaset(deploy, h, want))
            except AlreadyExists:
                return  # the cache will show it; the event brings us back
            if want:
                self._scaled(deploy, current, 0, want)
        else:
            await self._scale(deploy, current, want)
        ready_new = int(current.get("status", {}).get("readyReplicas", 0))
        budget = max(0, want - ready_new)
        for rs in sorted(old, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            keep = min(int(rs["spec"].get("replicas", 0)), budget)
            budget -= keep
            await self._scale(deploy, rs, keep)
        await self._status(deploy, current, old)

    async def _scale(self, deploy: Obj, rs: Obj, replicas: int) -> None:
        was = int(rs["spec"].get("replicas", 0))
        if was == replicas:
            return
        await self.client.patch(resources.REPLICASET, meta.name(rs),
                                {"spec": {"replicas": replicas}}, meta.namespace(rs))
        self._scaled(deploy, rs, was, replicas)

    def _scaled(self, deploy: Obj, rs: Obj, was: int, now: int) -> None:
        way = "up" if now > was else "down"
        self.events.normal(deploy, Reason.SCALING_REPLICA_SET,
                           f"Scaled {way} replica set {meta.name(rs)} from {was} to {now}")

    async def _status(self, deploy: Obj, current: Obj, old: list[Obj]) -> None:
        every = [current, *old]
        ready = sum(int(rs.get("status", {}).get("readyReplicas", 0)) for rs in every)
        st = {"replicas": sum(int(rs.get("status", {}).get("replicas", 0)) for rs in every),
              "updatedReplicas": int(current.get("status", {}).get("replicas", 0)),
              "readyReplicas": ready, "availableReplicas": ready,
              "unavailableReplicas": max(0, int(deploy["spec"].get("replicas", 1)) - ready),
              "observedGeneration": deploy["metadata"].get("generation", 1)}
        if all(deploy.get("status", {}).get(k) == v for k, v in st.items()):
            return
        deploy = copy.deepcopy(deploy)
        deploy["status"] = {**deploy.get("status", {}), **st}
        available = ready >= int(deploy["spec"].get("replicas", 1))
        meta.set_condition(deploy, "Available", available,
                           "MinimumReplicasAvailable" if available else
                           "MinimumReplicasUnavailable")
        try:
            await self.client.update_status(resources.DEPLOYMENT, deploy)
        except ApiError as e:
            if e.code != 404:
                raise

    async def run(self) -> None:
        await drain("deployment", self.queue, self.reconcile)
