"""EndpointSlice controller: for each Service with a selector, the slices
(``discovery.k8s.io/v1``) of the pods it selects, one per set of resolved
ports, with each endpoint's ready / serving / terminating conditions, its
node, and the time of the change that triggered the update (the
``endpoints.kubernetes.io/last-change-trigger-time`` annotation, from which
proxies and DNS servers measure their programming latency)."""

from __future__ import annotations

import datetime
import hashlib
import time

from netplane.api import meta, resources, selectors
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, Client, NotFound
from netplane.cluster.controllers.endpoints import PortKey, resolved_ports, services_selecting
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, split_key

SERVICE_LABEL = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.netplane.io"
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"


SERVICE_INDEX = "service"


def _owning_service(obj: Obj) -> tuple[str, ...]:
    """``namespace/service`` of a slice this controller manages."""
    labels = meta.labels(obj)
    if labels.get(MANAGED_BY) != CONTROLLER or SERVICE_LABEL not in labels:
        return ()
    return (f"{meta.namespace(obj)}/{labels[SERVICE_LABEL]}",)


def rfc3339_nano(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _endpoint(pod: Obj, svc: Obj) -> Obj:
    spec = pod.get("spec", {})
    terminating = meta.is_deleting(pod)
    serving = meta.pod_ready(pod) or bool(svc["spec"].get("publishNotReadyAddresses"))
    ep: Obj = {"addresses": [pod["status"]["podIP"]],
               "conditions": {"ready": serving and not terminating, "serving": serving,
                              "terminating": terminating},
               "targetRef": {"kind": "Pod", "namespace": meta.namespace(pod),
                             "name": meta.name(pod), "uid": meta.uid(pod)}}
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == meta.name(svc):
        ep["hostname"] = spec["hostname"]
    return ep


def desired_slices(svc: Obj, pods: list[Obj]) -> dict[str, Obj]:
    """Slice name -> slice body (without metadata beyond name and labels)."""
    groups: dict[tuple[PortKey, ...], list[Obj]] = {}
    for pod in pods:
        if not pod.get("status", {}).get("podIP"):
            continue
        groups.setdefault(resolved_ports(svc, pod), []).append(_endpoint(pod, svc))
    if not groups:
        groups[()] = []
    out: dict[str, Obj] = {}
    for ports_key, eps in groups.items():
        digest = hashlib.sha256(repr(ports_key).encode()).hexdigest()[:5]
        name = f"{meta.name(svc)[:56]}-{digest}"
        out[name] = {
            "addressType": "IPv4",
            "endpoints": sorted(eps, key=lambda e: e["addresses"][0]),
            "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports_key],
        }
    return out


def _same(current: Obj, body: Obj) -> bool:
    return all(current.get(k) == body[k] for k in ("addressType", "endpoints", "ports"))


class EndpointSliceController:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client, self.inf, self.slices = client, informers, informers.endpointslices
        self.queue = WorkQueue()
        self.triggered: dict[str, float] = {}
        self.slices.add_index(SERVICE_INDEX, _owning_service)
        informers.services.add_handler(self._on_service)
        informers.pods.add_handler(self._on_pod)

    def _mark(self, key: str) -> None:
        self.triggered.setdefault(key, time.time())
        self.queue.add(key)

    def _on_service(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is not None:
            self._mark(meta.namespaced_name(obj))

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        pod = cur or prev
        if pod is None:
            return
        for svc in services_selecting(self.inf.services.in_namespace(meta.namespace(pod)),
                                      (prev, cur)):
            self._mark(meta.namespaced_name(svc))

    def owned(self, ns: str, name: str) -> dict[str, Obj]:
        return {meta.name(s): s for s in self.slices.by_index(SERVICE_INDEX, f"{ns}/{name}")}

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.inf.services.get(name, ns)
        current = self.owned(ns, name)
        if svc is None or not svc.get("spec", {}).get("selector") \
                or svc["spec"].get("type") == "ExternalName":
            for slice_name in current:
                await self._delete(ns, slice_name)
            self.triggered.pop(key, None)
            return
        matcher = selectors.from_map(svc["spec"]["selector"])
        pods = [p for p in self.inf.pods.in_namespace(ns) if matcher.matches(meta.labels(p))]
        trigger = rfc3339_nano(self.triggered.pop(key, time.time()))
        for slice_name, body in desired_slices(svc, pods).items():
            await self._write(svc, slice_name, body, current.pop(slice_name, None), trigger)
        for slice_name in current:
            await self._delete(ns, slice_name)

    async def _write(self, svc: Obj, name: str, body: Obj, current: Obj | None,
                     trigger: str) -> None:
        if current is not None and _same(current, body) \
                and meta.labels(current).get(SERVICE_LABEL) == meta.name(svc):
            return
        obj: Obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": name, "namespace": meta.namespace(svc),
                                 "labels": {**meta.labels(svc), SERVICE_LABEL: meta.name(svc),
                                            MANAGED_BY: CONTROLLER},
                                 "annotations": {TRIGGER: trigger},
                                 "ownerReferences": [meta.owner_ref(svc)]},
                    **body}
        if current is None:
            try:
                await self.client.create(resources.ENDPOINTSLICE, obj)
            except AlreadyExists:
                self.queue.add(meta.namespaced_name(svc))
            return
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self.client.update(resources.ENDPOINTSLICE, obj)

    async def _delete(self, ns: str, name: str) -> None:
        try:
            await self.client.delete(resources.ENDPOINTSLICE, name, ns)
        except NotFound:
            pass

    async def run(self) -> None:
        await drain("endpointslice", self.queue, self.reconcile)
