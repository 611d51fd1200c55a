"""Endpoints controller: for each Service with a selector, the IPs of the
pods it selects, ready ones in ``addresses`` and the rest in
``notReadyAddresses``, with named target ports resolved per pod."""

from __future__ import annotations

from typing import Any

from netplane.api import meta, resources, selectors
from netplane.api.meta import Obj
from netplane.cluster.client import Client, NotFound
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, split_key

PortKey = tuple[str, int, str]  # name, port, protocol


def resolve_port(pod: Obj, target: Any, protocol: str) -> int | None:
    """A Service's targetPort for one pod: a number, or a container port name."""
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in pod.get("spec", {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    return None


def _address(pod: Obj, svc: Obj) -> Obj:
    addr: Obj = {"ip": pod["status"]["podIP"],
                 "targetRef": {"kind": "Pod", "namespace": meta.namespace(pod),
                               "name": meta.name(pod), "uid": meta.uid(pod)}}
    if pod.get("spec", {}).get("nodeName"):
        addr["nodeName"] = pod["spec"]["nodeName"]
    spec = pod.get("spec", {})
    if spec.get("hostname") and spec.get("subdomain") == meta.name(svc):
        addr["hostname"] = spec["hostname"]
    return addr


def resolved_ports(svc: Obj, pod: Obj) -> tuple[PortKey, ...]:
    """The Service's ports as this pod serves them, sorted."""
    ports: list[PortKey] = []
    for sp in svc["spec"].get("ports") or []:
        proto = sp.get("protocol", "TCP")
        port = resolve_port(pod, sp.get("targetPort", sp.get("port")), proto)
        if port is not None:
            ports.append((sp.get("name", ""), port, proto))
    return tuple(sorted(ports))


def services_selecting(services: list[Obj], pods: tuple[Obj | None, ...]) -> list[Obj]:
    """The Services whose selector picks any of ``pods`` (before or after a change)."""
    out = []
    for svc in services:
        sel = svc.get("spec", {}).get("selector")
        if not sel:
            continue
        matcher = selectors.from_map(sel)
        if any(p and meta.namespace(p) == meta.namespace(svc)
               and matcher.matches(meta.labels(p)) for p in pods):
            out.append(svc)
    return out


def build_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """Pods grouped by the ports they resolve to, sorted for stable output."""
    publish_all = bool(svc.get("spec", {}).get("publishNotReadyAddresses"))
    groups: dict[tuple[PortKey, ...], dict[str, list[Obj]]] = {}
    for pod in pods:
        if not pod.get("status", {}).get("podIP"):
            continue
        ports = resolved_ports(svc, pod)
        if not ports:
            continue
        ready = (meta.pod_ready(pod) or publish_all) and not meta.is_deleting(pod)
        bucket = groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        bucket["addresses" if ready else "notReadyAddresses"].append(_address(pod, svc))
    subsets = []
    for ports_key, bucket in sorted(groups.items()):
        subset: Obj = {k: sorted(v, key=lambda a: a["ip"]) for k, v in bucket.items() if v}
        subset["ports"] = [{"name": n, "port": p, "protocol": pr} if n else
                           {"port": p, "protocol": pr} for n, p, pr in ports_key]
        subsets.append(subset)
    return subsets


class EndpointsController:
    def __init__(self, client: Client, informers: Informers) -> None:
        self.client, self.inf = client, informers
        self.queue = WorkQueue()
        informers.services.add_handler(self._on_service)
        informers.pods.add_handler(self._on_pod)

    def _on_service(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is not None:
            self.queue.add(meta.namespaced_name(obj))

    def _on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        pod = cur or prev
        if pod is None:
            return
        for svc in services_selecting(self.inf.services.in_namespace(meta.namespace(pod)),
                                      (prev, cur)):
            self.queue.add(meta.namespaced_name(svc))

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.inf.services.get(name, ns)
        existing = self.inf.endpoints.get(name, ns)
        if svc is None:
            if existing is not None:
                try:
                    await self.client.delete(resources.ENDPOINTS, name, ns)
                except NotFound:
                    pass
            return
        sel = svc.get("spec", {}).get("selector")
        if not sel or svc["spec"].get("type") == "ExternalName":
            return  # endpoints of selector-less services belong to their owner
        matcher = selectors.from_map(sel)
        pods = [p for p in self.inf.pods.in_namespace(ns) if matcher.matches(meta.labels(p))]
        subsets = build_subsets(svc, pods)
        body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": name, "namespace": ns,
                                  "labels": meta.labels(svc)},
                     "subsets": subsets}
        if existing is None:
            await self.client.create(resources.ENDPOINTS, body)
        elif existing.get("subsets", []) != subsets or meta.labels(existing) != meta.labels(svc):
            body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            await self.client.update(resources.ENDPOINTS, body)

    async def run(self) -> None:
        await drain("endpoints", self.queue, self.reconcile)
