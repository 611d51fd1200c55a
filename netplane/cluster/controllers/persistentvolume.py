"""The PersistentVolume controller (kube's binder): binds each claim to a
volume, both ways (the volume's ``claimRef``, the claim's ``volumeName``),
and keeps their phases: a claim waits for its first pod when its class says
``WaitForFirstConsumer``, takes a fitting volume that is Available, or
waits for its class's provisioner to make one; a volume whose claim is gone
is Released (its provisioner then deletes it when the policy is Delete)."""

from __future__ import annotations

import asyncio
import copy
import logging

from netplane.api import meta, resources, storage
from netplane.api.meta import Obj
from netplane.api.quantity import quantity
from netplane.cluster.client import ApiError, Client, Informer, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import split_key
from netplane.cluster.events import Reason, Recorder, Source

log = logging.getLogger(__name__)
CLAIM_INDEX = "claim"


def _claim_key(pv: Obj) -> tuple[str, ...]:
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    return (f"{ref.get('namespace')}/{ref.get('name')}",) if ref.get("name") else ()


def fits(pv: Obj, pvc: Obj) -> bool:
    """A volume that can hold the claim: same class, the modes it asks for,
    at least the size it requests, and no claim of its own."""
    spec, want = pv.get("spec") or {}, pvc.get("spec") or {}
    if spec.get("claimRef") or pv.get("status", {}).get("phase") not in (None, "Available",
                                                                         "Pending"):
        return False
    if str(spec.get("storageClassName") or "") != storage.claim_class(pvc):
        return False
    if not set(want.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    return quantity(str((spec.get("capacity") or {}).get("storage", "0"))) >= \
        quantity(storage.requested(pvc))


def best_fit(volumes: list[Obj], pvc: Obj) -> Obj | None:
    """The smallest volume that fits, as the binder chooses."""
    candidates = [v for v in volumes if fits(v, pvc)]
    return min(candidates, key=lambda v: (quantity(str(v["spec"]["capacity"]["storage"])),
                                          meta.name(v)), default=None)


class PersistentVolumeController:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.events = Recorder(client, Source("persistentvolume-controller"))
        self.claims = Informer(client, resources.PERSISTENTVOLUMECLAIM)
        self.volumes = Informer(client, resources.PERSISTENTVOLUME)
        self.classes = Informer(client, resources.STORAGECLASS)
        self.volumes.add_index(CLAIM_INDEX, _claim_key)
        self.queue = WorkQueue()
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(self._on_volume)

    def _on_claim(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is not None:
            self.queue.add(f"claim:{meta.namespaced_name(obj)}")
            for pv in self.volumes.by_index(CLAIM_INDEX, meta.namespaced_name(obj)):
                self.queue.add(f"volume:{meta.name(pv)}")

    def _on_volume(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is None:
            return
        self.queue.add(f"volume:{meta.name(obj)}")
        for key in {*_claim_key(prev or {}), *_claim_key(cur or {})}:
            self.queue.add(f"claim:{key}")
        # A volume that became free may be what a waiting claim needs.
        if cur is not None and not (cur.get("spec") or {}).get("claimRef"):
            for pvc in self.claims.items():
                if pvc.get("status", {}).get("phase") == "Pending":
                    self.queue.add(f"claim:{meta.namespaced_name(pvc)}")

    async def reconcile(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "claim":
            ns, claim = split_key(name)
            pvc = self.claims.get(claim, ns)
            if pvc is not None and not meta.is_deleting(pvc):
                await self.sync_claim(pvc)
        else:
            pv = self.volumes.get(name)
            if pv is not None:
                await self.sync_volume(pv)

    async def sync_claim(self, pvc: Obj) -> None:
        spec = pvc.get("spec") or {}
        if pvc.get("status", {}).get("phase") == "Bound" and spec.get("volumeName"):
            return
        if spec.get("volumeName"):
            pv = self.volumes.get(str(spec["volumeName"]))
            if pv is not None and (not pv["spec"].get("claimRef")
                                   or storage.claim_ref_matches(pv, pvc)):
                await self._bind(pv, pvc)
            return
        pre_bound = [v for v in self.volumes.by_index(CLAIM_INDEX, meta.namespaced_name(pvc))
                     if storage.claim_ref_matches(v, pvc)]
        if pre_bound:
            await self._bind(pre_bound[0], pvc)
            return
        cls = self.classes.get(storage.claim_class(pvc)) if storage.claim_class(pvc) else None
        waits = cls is not None and cls.get("volumeBindingMode") == "WaitForFirstConsumer"
        annotations = meta.meta(pvc).get("annotations") or {}
        if waits and storage.SELECTED_NODE not in annotations:
            self.events.normal(pvc, Reason.WAIT_FOR_FIRST_CONSUMER,
                               "waiting for first consumer to be created before binding")
            return
        found = best_fit(self.volumes.items(), pvc)
        if found is not None:
            await self._bind(found, pvc)
            return
        if cls is not None and cls.get("provisioner"):
            provisioner = str(cls["provisioner"])
            if annotations.get(storage.STORAGE_PROVISIONER) != provisioner:
                await self._annotate(pvc, {storage.STORAGE_PROVISIONER: provisioner})
            self.events.normal(pvc, Reason.EXTERNAL_PROVISIONING,
                               "Waiting for a volume to be created either by the external "
                               f"provisioner '{provisioner}' or manually by the system "
                               "administrator. If volume creation is delayed, please verify "
                               "that the provisioner is running and correctly registered.")
            return
        self.events.normal(pvc, Reason.FAILED_BINDING, "no persistent volumes available for "
                           "this claim and no storage class is set")

    async def _annotate(self, pvc: Obj, values: dict[str, str]) -> None:
        try:
            await self.client.patch(resources.PERSISTENTVOLUMECLAIM, meta.name(pvc),
                                    {"metadata": {"annotations": values}}, meta.namespace(pvc))
        except NotFound:
            pass

    async def _bind(self, pv: Obj, pvc: Obj) -> None:
        """Both halves of the binding, then both phases, as kube's binder."""
        pv = copy.deepcopy(pv)
        by_us = not pv["spec"].get("claimRef")
        md = pvc["metadata"]
        pv["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                  "namespace": md["namespace"], "name": md["name"],
                                  "uid": md["uid"], "resourceVersion": md["resourceVersion"]}
        try:
            pv = await self.client.update(resources.PERSISTENTVOLUME, pv)
            pv["status"] = {"phase": "Bound"}
            await self.client.update_status(resources.PERSISTENTVOLUME, pv)
            claim = copy.deepcopy(pvc)
            claim["spec"]["volumeName"] = meta.name(pv)
            notes = meta.meta(claim).setdefault("annotations", {})
            notes[storage.BIND_COMPLETED] = "yes"
            if by_us:
                notes[storage.BOUND_BY_CONTROLLER] = "yes"
            claim = await self.client.update(resources.PERSISTENTVOLUMECLAIM, claim)
            claim["status"] = {"phase": "Bound",
                               "accessModes": list(pv["spec"].get("accessModes") or []),
                               "capacity": dict(pv["spec"].get("capacity") or {})}
            await self.client.update_status(resources.PERSISTENTVOLUMECLAIM, claim)
        except NotFound:
            return
        log.info("bound claim %s to volume %s", meta.namespaced_name(pvc), meta.name(pv))

    async def sync_volume(self, pv: Obj) -> None:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        phase = pv.get("status", {}).get("phase")
        if not ref.get("name"):
            if phase != "Available":
                await self._phase(pv, "Available")
            return
        pvc = self.claims.get(str(ref["name"]), str(ref.get("namespace")))
        if pvc is None or (ref.get("uid") and ref["uid"] != meta.uid(pvc)):
            if phase != "Released" and self.claims.synced.is_set():
                await self._phase(pv, "Released")
            return
        if (pvc.get("spec") or {}).get("volumeName") == meta.name(pv) and phase != "Bound":
            await self._phase(pv, "Bound")

    async def _phase(self, pv: Obj, phase: str) -> None:
        pv = copy.deepcopy(pv)
        pv["status"] = {**(pv.get("status") or {}), "phase": phase}
        try:
            await self.client.update_status(resources.PERSISTENTVOLUME, pv)
        except (NotFound, ApiError) as e:
            log.debug("volume %s: %s", meta.name(pv), e)

    async def run(self) -> None:
        tasks = [asyncio.create_task(i.run()) for i in (self.claims, self.volumes, self.classes)]
        try:
            await asyncio.gather(*(i.synced.wait() for i in (self.claims, self.volumes,
                                                             self.classes)))
            await drain("persistentvolume", self.queue, self.reconcile)
        finally:
            for t in tasks:
                t.cancel()
