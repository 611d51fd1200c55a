"""Node-side duties for Services that are neither rules nor DNS:

* the health-check node port of ``externalTrafficPolicy: Local`` load
  balancers, answering 200 when this node has a ready endpoint of the
  Service and 503 when not (kube-proxy's healthcheck server), so an external
  load balancer sends traffic only to nodes that can serve it;
* announcing LoadBalancer addresses on the underlay, the way MetalLB's L2
  mode does: one node per address holds it (on ``lo``, so the kernel answers
  ARP for it), chosen the same way by every node, among the nodes with a
  local endpoint when the policy is Local."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from aiohttp import web

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.client import Informer
from netplane.net import netns

log = logging.getLogger(__name__)
LB_LABEL = "lo:nplb"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def local_ready_endpoints(slices: list[Obj], namespace: str, name: str, node: str) -> int:
    count = 0
    for sl in slices:
        if meta.namespace(sl) != namespace or meta.labels(sl).get(SERVICE_NAME_LABEL) != name:
            continue
        for ep in sl.get("endpoints") or []:
            if ep.get("nodeName") == node and (ep.get("conditions") or {}).get("ready") \
                    is not False:
                count += 1
    return count


def lb_ips(svc: Obj) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i["ip"]) for i in ingress if i.get("ip")]


def announcer(ip: str, candidates: list[str]) -> str | None:
    """The node that holds ``ip``: the same answer on every node."""
    if not candidates:
        return None
    ordered = sorted(candidates)
    return ordered[int(hashlib.sha256(ip.encode()).hexdigest(), 16) % len(ordered)]


class ServiceDuties:
    def __init__(self, *, node_name: str, node_ip: str, services: Informer,
                 slices: Informer, nodes: Informer) -> None:
        self.node, self.node_ip = node_name, node_ip
        self.services, self.slices, self.nodes = services, slices, nodes
        self.wake = asyncio.Event()
        for inf in (services, slices):
            inf.add_handler(lambda prev, cur: self.wake.set())
        nodes.add_handler(self._on_node)
        self.health_ports: dict[int, tuple[str, str]] = {}
        # What the last sync left on lo; None until the first one has looked.
        self.announced: dict[str, str] | None = None
        self.runners: dict[int, web.AppRunner] = {}

    def _on_node(self, prev: Obj | None, cur: Obj | None) -> None:
        if meta.node_changed(prev, cur):
            self.wake.set()

    # -- LoadBalancer addresses --

    def wanted_addresses(self) -> dict[str, str]:
        ready_nodes = [meta.name(n) for n in self.nodes.items() if meta.node_ready(n)]
        out = {}
        for svc in self.services.items():
            if svc.get("spec", {}).get("type") != "LoadBalancer":
                continue
            ns, name = meta.namespace(svc), meta.name(svc)
            candidates = ready_nodes
            if svc["spec"].get("externalTrafficPolicy") == "Local":
                candidates = [n for n in ready_nodes if local_ready_endpoints(
                    self.slices.items(), ns, name, n)]
            for ip in lb_ips(svc):
                if announcer(ip, candidates) == self.node:
                    out[ip] = f"{ns}/{name}"
        return out

    @staticmethod
    def held_addresses() -> set[str]:
        out = netns.run(["ip", "-o", "-4", "addr", "show", "dev", "lo", "label", LB_LABEL],
                        check=False)
        return {line.split()[3].split("/")[0] for line in out.splitlines() if line.strip()}

    def sync_addresses(self) -> None:
        want = self.wanted_addresses()
        if want == self.announced:
            return  # most changes (any Service, any slice) leave the addresses as they are
        held = self.held_addresses()
        for ip in sorted(set(want) - held):
            netns.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo", "label", LB_LABEL])
            log.info("announcing %s for %s", ip, want[ip])
        for ip in sorted(held - set(want)):
            netns.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], check=False)
            log.info("no longer announcing %s", ip)
        self.announced = want

    # -- health-check node ports --

    def wanted_health_ports(self) -> dict[int, tuple[str, str]]:
        out = {}
        for svc in self.services.items():
            port = svc.get("spec", {}).get("healthCheckNodePort")
            if port:
                out[int(port)] = (meta.namespace(svc), meta.name(svc))
        return out

    def health(self, port: int) -> tuple[int, Obj]:
        ns, name = self.health_ports[port]
        n = local_ready_endpoints(self.slices.items(), ns, name, self.node)
        body = {"service": {"namespace": ns, "name": name}, "localEndpoints": n,
                "serviceProxyHealthy": True}
        return (200 if n else 503), body

    async def _serve_health(self, port: int) -> None:
        async def handle(request: web.Request) -> web.Response:
            code, body = self.health(port)
            return web.Response(status=code, text=json.dumps(body),
                                content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port).start()
        self.runners[port] = runner

    async def sync_health_ports(self) -> None:
        self.health_ports = self.wanted_health_ports()
        for port in sorted(set(self.health_ports) - set(self.runners)):
            try:
                await self._serve_health(port)
            except OSError as e:
                log.warning("health-check port %d: %s", port, e)
        for port in sorted(set(self.runners) - set(self.health_ports)):
            await self.runners.pop(port).cleanup()

    async def run(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                await asyncio.to_thread(self.sync_addresses)
                await self.sync_health_ports()
                await asyncio.sleep(0.05)
        finally:
            for runner in self.runners.values():
                await runner.cleanup()
