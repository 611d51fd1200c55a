"""LoadBalancer controller: gives each ``type: LoadBalancer`` Service an
address from a configured pool in ``status.loadBalancer.ingress``, as k3s
ServiceLB or MetalLB do in a lab; every node's proxy then answers it.
``spec.loadBalancerIP`` is honoured when it is in the pool and free."""

from __future__ import annotations

import copy
import ipaddress
import logging

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.shared import Informers, split_key

log = logging.getLogger(__name__)


def parse_pool(text: str) -> list[str]:
    """``A-B`` ranges or CIDRs, comma-separated, as a list of addresses."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "-" in part:
            first, last = (ipaddress.ip_address(x.strip()) for x in part.split("-", 1))
            out += [str(ipaddress.ip_address(i)) for i in range(int(first), int(last) + 1)]
        else:
            out += [str(h) for h in ipaddress.ip_network(part, strict=False).hosts()]
    return out


def ingress_ip(svc: Obj) -> str | None:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return str(ingress[0]["ip"]) if ingress and ingress[0].get("ip") else None


class LoadBalancerController:
    def __init__(self, client: Client, informers: Informers, pool: list[str]) -> None:
        self.client, self.inf, self.pool = client, informers, pool
        self.queue = WorkQueue()
        informers.services.add_handler(self._on_service)

    def _on_service(self, prev: Obj | None, cur: Obj | None) -> None:
        obj = cur or prev
        if obj is not None:
            self.queue.add(meta.namespaced_name(obj))

    def in_use(self, except_key: str) -> set[str]:
        return {ip for s in self.inf.services.items()
                if meta.namespaced_name(s) != except_key
                and s.get("spec", {}).get("type") == "LoadBalancer"
                and (ip := ingress_ip(s)) is not None}

    def choose(self, svc: Obj) -> str | None:
        used = self.in_use(meta.namespaced_name(svc))
        wanted = svc["spec"].get("loadBalancerIP")
        if wanted:
            return str(wanted) if wanted in self.pool and wanted not in used else None
        return next((ip for ip in self.pool if ip not in used), None)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.inf.services.get(name, ns)
        if svc is None:
            return
        current = ingress_ip(svc)
        is_lb = svc.get("spec", {}).get("type") == "LoadBalancer"
        if is_lb and current and current not in self.in_use(key):
            return
        ip = self.choose(svc) if is_lb else None
        if ip == current:
            return
        if is_lb and ip is None:
            log.warning("no address left in the load-balancer pool for %s", key)
        svc = copy.deepcopy(svc)
        svc.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip}]} if ip else {}
        try:
            await self.client.update_status(resources.SERVICE, svc)
        except ApiError as e:
            if e.code != 404:
                raise

    async def run(self) -> None:
        await drain("loadbalancer", self.queue, self.reconcile)
