"""The node's local-path provisioner (k3s's local-path-provisioner, run by
each node for itself): a claim of a ``netplane.io/local-path`` class whose
first pod the scheduler put on this node (``volume.kubernetes.io/
selected-node``) gets a folder here and a PersistentVolume for it, pinned
to this node by node affinity and bound ahead to the claim (the
controller completes the binding); a Released volume of ours whose policy
is Delete loses its folder and its object."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from netplane.api import meta, resources, storage
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client, Informer, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.events import Reason, Recorder, Source

log = logging.getLogger(__name__)


def volume_name(pvc: Obj) -> str:
    return f"pvc-{meta.uid(pvc)}"


def folder_name(pvc: Obj) -> str:
    """As local-path-provisioner names it: pvc-<uid>_<namespace>_<name>."""
    return f"{volume_name(pvc)}_{meta.namespace(pvc)}_{meta.name(pvc)}"


def local_volume(pvc: Obj, cls: Obj, node: str, path: Path) -> Obj:
    md = pvc["metadata"]
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name(pvc),
                     "annotations": {storage.PROVISIONED_BY: storage.LOCAL_PATH,
                                     "local.path.provisioner/selected-node": node}},
        "spec": {
            "capacity": {"storage": storage.requested(pvc)},
            "accessModes": list(pvc["spec"].get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy", "Delete"),
            "storageClassName": meta.name(cls),
            "volumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                         "namespace": md["namespace"], "name": md["name"], "uid": md["uid"]},
        },
    }


def pinned_to(pv: Obj) -> str:
    """The node a local volume lives on ('' when it is not pinned to one)."""
    for term in (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
            "nodeSelectorTerms") or []:
        for e in term.get("matchExpressions") or []:
            if e.get("key") == "kubernetes.io/hostname" and e.get("operator") == "In" \
                    and len(e.get("values") or []) == 1:
                return str(e["values"][0])
    return ""


class LocalPathProvisioner:
    def __init__(self, client: Client, *, node_name: str, base: Path, claims: Informer,
                 volumes: Informer, classes: Informer) -> None:
        self.client, self.node, self.base = client, node_name, base
        self.claims, self.volumes, self.classes = claims, volumes, classes
        self.events = Recorder(client, Source(storage.LOCAL_PATH, host=node_name))
        self.queue = WorkQueue()
        claims.add_handler(lambda p, c: self._key("claim", c or p))
        volumes.add_handler(lambda p, c: self._key("volume", c or p))

    def _key(self, kind: str, obj: Obj | None) -> None:
        if obj is not None:
            self.queue.add(f"{kind}:{meta.namespaced_name(obj)}")

    def _ours(self, pvc: Obj) -> Obj | None:
        """The claim's class when this node is to provision it."""
        notes = meta.meta(pvc).get("annotations") or {}
        if notes.get(storage.SELECTED_NODE) != self.node or pvc["spec"].get("volumeName"):
            return None
        cls = self.classes.get(storage.claim_class(pvc))
        return cls if cls is not None and cls.get("provisioner") == storage.LOCAL_PATH else None

    async def reconcile(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "claim":
            ns, _, claim = name.partition("/")
            pvc = self.claims.get(claim, ns)
            if pvc is not None and not meta.is_deleting(pvc) and \
                    (cls := self._ours(pvc)) is not None:
                await self.provision(pvc, cls)
        else:
            pv = self.volumes.get(name)
            if pv is not None:
                await self.reclaim(pv)

    async def provision(self, pvc: Obj, cls: Obj) -> None:
        if self.volumes.get(volume_name(pvc)) is not None:
            return
        path = self.base / folder_name(pvc)
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True, mode=0o777)
        try:
            await self.client.create(resources.PERSISTENTVOLUME,
                                     local_volume(pvc, cls, self.node, path))
        except AlreadyExists:
            return
        self.events.normal(pvc, Reason.PROVISIONING_SUCCEEDED,
                           f"Successfully provisioned volume {volume_name(pvc)}")
        log.info("provisioned %s at %s", volume_name(pvc), path)

    async def reclaim(self, pv: Obj) -> None:
        notes = meta.meta(pv).get("annotations") or {}
        spec = pv.get("spec") or {}
        if notes.get(storage.PROVISIONED_BY) != storage.LOCAL_PATH or pinned_to(pv) != self.node \
                or pv.get("status", {}).get("phase") != "Released" \
                or spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = Path(str((spec.get("hostPath") or {}).get("path", "")))
        if path.parent == self.base:  # never anything outside our folder
            await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
        try:
            await self.client.delete(resources.PERSISTENTVOLUME, meta.name(pv))
        except NotFound:
            pass
        except ApiError as e:
            log.warning("deleting volume %s: %s", meta.name(pv), e)
        log.info("deleted volume %s and its folder", meta.name(pv))

    async def run(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in (self.claims, self.volumes,
                                                         self.classes)))
        await drain("local-path", self.queue, self.reconcile)
