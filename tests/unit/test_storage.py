"""Storage: the API's defaults and checks for PersistentVolumes, claims and
StorageClasses, the default class, kubectl's columns; the binder against a
real in-process server; the scheduler's VolumeBinding filter; the node's
local-path volumes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from netplane.api import meta, resources, storage
from netplane.api.meta import Obj
from netplane.cluster.client import Client
from netplane.cluster.controllers.persistentvolume import PersistentVolumeController, best_fit
from netplane.cluster.scheduler.framework import Code, CycleState, Status
from netplane.cluster.scheduler.nodeinfo import NodeInfo
from netplane.cluster.scheduler.volumes import VolumeBinding, node_affinity_allows
from netplane.node.localpath import folder_name, local_volume, pinned_to
from tests.unit.test_apiserver import TABLE, call, ok
from tests.unit.test_client import one_controller

Api = TestClient[Any, Any]
PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"
PVS = "/api/v1/persistentvolumes"
HANG = 60.0


def claim(name: str = "data", size: str = "1Gi", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": size}}, **spec}}


def volume(name: str, size: str, cls: str = "manual", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": cls, "hostPath": {"path": f"/srv/{name}"}, **spec}}


async def test_a_claim_without_a_class_gets_the_default_one(api: Api) -> None:
    created = await ok(api, "POST", PVCS, claim())
    assert created["spec"]["storageClassName"] == "local-path"
    assert created["spec"]["volumeMode"] == "Filesystem"
    assert created["status"]["phase"] == "Pending"
    # An explicit "" asks for no class, and keeps it.
    none = await ok(api, "POST", PVCS, claim("static", storageClassName=""))
    assert none["spec"]["storageClassName"] == ""
    pv = await ok(api, "POST", PVS, volume("disk-1", "5Gi"))
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


async def test_claims_and_volumes_are_checked(api: Api) -> None:
    code, out = await call(api, "POST", PVCS, {**claim(), "spec": {"accessModes": ["Sometimes"]}})
    assert code == 422
    assert 'spec.accessModes[0]: Unsupported value: "Sometimes"' in out["message"]
    assert "spec.resources[storage]: Required value" in out["message"]
    bad = volume("disk-2", "1Gi")
    del bad["spec"]["hostPath"]
    code, out = await call(api, "POST", PVS, bad)
    assert code == 422 and "must specify a volume type" in out["message"]


async def test_kubectl_columns(api: Api) -> None:
    await ok(api, "POST", PVCS, claim())
    table = await ok(api, "GET", PVCS, accept=TABLE)
    assert [c["name"] for c in table["columnDefinitions"] if not c["priority"]] == [
        "Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
        "VolumeAttributesClass", "Age"]
    classes = await ok(api, "GET", "/apis/storage.k8s.io/v1/storageclasses",
                       accept=TABLE)
    assert classes["rows"][0]["cells"][:4] == ["local-path (default)", storage.LOCAL_PATH,
                                               "Delete", "WaitForFirstConsumer"]


def _pv(name: str, size: str, cls: str = "manual", **extra: Any) -> Obj:
    body = volume(name, size, cls, **extra)
    body["status"] = {"phase": "Available"}
    return body


def test_the_binder_takes_the_smallest_volume_that_fits() -> None:
    pvc = claim(size="2Gi", storageClassName="manual")
    volumes = [_pv("big", "10Gi"), _pv("small", "1Gi"), _pv("right", "3Gi"),
               _pv("other-class", "2Gi", cls="fast"),
               _pv("taken", "2Gi", claimRef={"name": "x", "namespace": "y"})]
    found = best_fit(volumes, pvc)
    assert found is not None and meta.name(found) == "right"
    assert best_fit(volumes, claim(size="20Gi", storageClassName="manual")) is None
    rwx = claim(size="1Gi", storageClassName="manual", accessModes=["ReadWriteMany"])
    assert best_fit(volumes, rwx) is None


async def _until(check: Any) -> Any:
    async with asyncio.timeout(HANG):
        while not (got := await check()):
            await asyncio.sleep(0.02)
        return got


async def test_the_binder_binds_both_ways_and_releases(tmp_path: Path) -> None:
    async with one_controller(tmp_path, lambda c, _: PersistentVolumeController(c)) as (c, _):
        await c.create(resources.PERSISTENTVOLUME, volume("disk-1", "5Gi"))
        await c.create(resources.PERSISTENTVOLUMECLAIM,
                       claim(size="1Gi", storageClassName="manual"), "default")

        async def bound() -> Obj | None:
            pvc = await c.get(resources.PERSISTENTVOLUMECLAIM, "data", "default")
            return pvc if pvc["status"].get("phase") == "Bound" else None
        pvc = await _until(bound)
        assert pvc["spec"]["volumeName"] == "disk-1"
        assert pvc["status"]["capacity"] == {"storage": "5Gi"}
        assert pvc["metadata"]["annotations"][storage.BOUND_BY_CONTROLLER] == "yes"
        pv = await c.get(resources.PERSISTENTVOLUME, "disk-1")
        assert pv["spec"]["claimRef"]["uid"] == meta.uid(pvc)
        await c.delete(resources.PERSISTENTVOLUMECLAIM, "data", "default")

        async def released() -> bool:
            pv = await c.get(resources.PERSISTENTVOLUME, "disk-1")
            return bool(pv["status"].get("phase") == "Released")
        await _until(released)


async def test_a_claim_of_a_waiting_class_waits_for_its_pod(tmp_path: Path) -> None:
    async with one_controller(tmp_path, lambda c, _: PersistentVolumeController(c)) as (c, _):
        client: Client = c
        await client.create(resources.PERSISTENTVOLUMECLAIM, claim(), "default")

        async def waiting() -> bool:
            events = await client.list(resources.EVENT, "default")
            return any(e["reason"] == "WaitForFirstConsumer" for e in events["items"])
        await _until(waiting)
        pvc = await client.get(resources.PERSISTENTVOLUMECLAIM, "data", "default")
        assert pvc["status"]["phase"] == "Pending" and not pvc["spec"].get("volumeName")


NODE_1: Obj = {"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}}
NODE_2: Obj = {"metadata": {"name": "node-2", "labels": {"kubernetes.io/hostname": "node-2"}}}
WAITING_CLASS: Obj = {"metadata": {"name": "local-path"}, "provisioner": storage.LOCAL_PATH,
                      "volumeBindingMode": "WaitForFirstConsumer"}
NOW_CLASS: Obj = {"metadata": {"name": "now"}, "provisioner": "x", "volumeBindingMode":
                  "Immediate"}


def _pod(*claims: str) -> Obj:
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": {"volumes": [
        {"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]}}


def judge(plugin: VolumeBinding, pod: Obj, info: NodeInfo) -> Status:
    """Pre-filter, then filter, as the framework runs them."""
    state: CycleState = {}
    st = plugin.pre_filter(state, pod, [info])
    if st.code is Code.SKIP:
        return Status()
    return st if not st.ok else plugin.filter(state, pod, info)


def test_volume_binding_filter() -> None:
    pinned = local_volume({"metadata": {"name": "a", "namespace": "default", "uid": "u-a"},
                           "spec": {"accessModes": ["ReadWriteOnce"],
                                    "resources": {"requests": {"storage": "1Gi"}}}},
                          WAITING_CLASS, "node-1", Path("/x"))
    claims = {"bound": {"metadata": {"name": "bound"}, "spec": {"volumeName": "pvc-u-a"}},
              "later": {"metadata": {"name": "later"}, "spec": {"storageClassName": "local-path"}},
              "now": {"metadata": {"name": "now"}, "spec": {"storageClassName": "now"}}}
    plugin = VolumeBinding(lambda ns, n: claims.get(n), {"pvc-u-a": pinned}.get,
                           {"local-path": WAITING_CLASS, "now": NOW_CLASS}.get)
    on = {n: NodeInfo(node) for n, node in (("node-1", NODE_1), ("node-2", NODE_2))}
    assert judge(plugin, _pod("bound"), on["node-1"]).ok
    conflict = judge(plugin, _pod("bound"), on["node-2"])
    assert conflict.code is Code.UNSCHEDULABLE
    assert conflict.reason == "node(s) had volume node affinity conflict"
    assert judge(plugin, _pod("later"), on["node-2"]).ok
    assert [meta.name(p) for p in plugin.to_provision(_pod("later", "bound"))] == ["later"]
    assert judge(plugin, _pod("now"), on["node-1"]).reason == \
        "pod has unbound immediate PersistentVolumeClaims"
    assert judge(plugin, _pod(), on["node-1"]).ok  # no claims: skipped
    assert judge(plugin, _pod("gone"), on["node-1"]).reason == \
        'persistentvolumeclaim "gone" not found'


def test_a_local_volume_is_pinned_to_its_node() -> None:
    pvc = {"metadata": {"name": "www-web-0", "namespace": "shop", "uid": "u-1"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {
               "storage": "2Gi"}}}}
    pv = local_volume(pvc, WAITING_CLASS, "node-2", Path("/var/lib/x") / folder_name(pvc))
    assert meta.name(pv) == "pvc-u-1" and pinned_to(pv) == "node-2"
    assert pv["spec"]["hostPath"]["path"] == "/var/lib/x/pvc-u-1_shop_www-web-0"
    assert pv["spec"]["claimRef"]["uid"] == "u-1"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert node_affinity_allows(pv, NODE_2) and not node_affinity_allows(pv, NODE_1)
