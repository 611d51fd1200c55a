"""The mesh's controller, a process of its own that ``netplane server``
starts beside the scheduler (``python -m netplane.mesh.controller``), so
the control plane runs it without importing the mesh. It writes what the
Gateway API asks of a controller, for both of netplane's: the status of
GatewayClasses, Gateways and HTTPRoutes (mesh parents and Gateway parents
side by side). Each Gateway of the ``netplane`` class gets a LoadBalancer
Service, ``NAME-netplane`` (GEP-1762's naming), so its address comes from
the cluster's pool and its ports reach every node's proxy through the
kernel's Service rules: the Service's EndpointSlice lists the nodes, on
the node-proxy port the controller gave each listener port."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client, Connection, Informer, NotFound
from netplane.mesh import config, gateway, signer, status
from netplane.mesh.identity import Authority, IdentityError, utcnow
from netplane.mesh.kinds import (
    GATEWAY,
    GATEWAY_NAME_LABEL,
    GATEWAYCLASS,
    HTTPROUTE,
    REFERENCEGRANT,
)

log = logging.getLogger(__name__)
USER_AGENT = "netplane-mesh-controller"
DEFAULT_CLASS = "netplane"
# Node-proxy ports for Gateway listeners: every node serves every Gateway.
GATEWAY_PORTS = range(15100, 16000)
SERVICE_LABEL = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGER = "gateway-controller.netplane.io"  # a label value: no "/"
MADE_BY = "app.kubernetes.io/managed-by"
RETRY_DELAY = 1.0
SYNC_INTERVAL = 0.1  # at most this often: a burst of changes makes one sync


def made_here(svc: Obj) -> bool:
    """A Gateway's Service that this controller made (not another's: other
    Gateway controllers label theirs with the Gateway's name too)."""
    labels = meta.labels(svc)
    return labels.get(MADE_BY) == MANAGER and GATEWAY_NAME_LABEL in labels


def service_name(gw: Obj) -> str:
    return f"{meta.name(gw)}-{(gw.get('spec') or {}).get('gatewayClassName')}"


def listener_ports(gw: Obj) -> list[int]:
    return sorted({int(ln["port"]) for ln in (gw.get("spec") or {}).get("listeners") or ()
                   if ln.get("protocol") in gateway.SUPPORTED})


def node_ports_of(svc: Obj | None) -> dict[int, int]:
    """Listener port -> node-proxy port, as a Gateway's Service records it."""
    return {int(p["port"]): int(p["targetPort"])
            for p in ((svc or {}).get("spec") or {}).get("ports") or ()
            if isinstance(p.get("targetPort"), int)}


def desired_service(gw: Obj, current: Obj | None, taken: set[int]) -> Obj:
    """The Gateway's Service: one port per listener port, each keeping the
    node-proxy port it had and new ones taking the lowest free."""
    had = node_ports_of(current)
    free = (p for p in GATEWAY_PORTS if p not in taken and p not in had.values())
    ports = [{"name": f"port-{port}", "protocol": "TCP", "port": port,
              "targetPort": had.get(port) or next(free)} for port in listener_ports(gw)]
    spec: Obj = {"type": "LoadBalancer", "ports": ports}
    wanted = [a["value"] for a in (gw.get("spec") or {}).get("addresses") or ()
              if a.get("type", "IPAddress") == "IPAddress" and a.get("value")]
    if wanted:
        spec["loadBalancerIP"] = wanted[0]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service_name(gw), "namespace": meta.namespace(gw),
                         "labels": {GATEWAY_NAME_LABEL: meta.name(gw), MADE_BY: MANAGER},
                         "ownerReferences": [meta.owner_ref(gw)]},
            "spec": spec}


def desired_slice(svc: Obj, nodes: Iterable[Obj]) -> Obj:
    """The Service's endpoints: every node with an address, on the node-proxy ports."""
    endpoints = [{"addresses": [address], "nodeName": meta.name(n),
                  "conditions": {"ready": meta.node_ready(n)}}
                 for n in sorted(nodes, key=meta.name)
                 if (address := meta.node_address(n)) is not None]
    ports = [{"name": p["name"], "protocol": "TCP", "port": p["targetPort"]}
             for p in svc["spec"]["ports"]]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": meta.name(svc), "namespace": meta.namespace(svc),
                         "labels": {SERVICE_LABEL: meta.name(svc), MANAGED_BY: MANAGER,
                                    **meta.labels(svc)},
                         "ownerReferences": [meta.owner_ref(svc)]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}


def addresses_of(svc: Obj | None) -> list[str]:
    ingress = (((svc or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i["ip"]) for i in ingress if i.get("ip")]


def class_conditions(gc: Obj) -> list[Obj]:
    generation = int(gc["metadata"].get("generation", 1))
    return [config.condition("Accepted", True, "Accepted", "", generation),
            config.condition("SupportedVersion", True, "SupportedVersion", "", generation)]


def _with_condition(csr: Obj, kind: str, reason: str, message: str) -> Obj:
    status = csr.get("status") or {}
    stamp = meta.now()
    added = {"type": kind, "status": "True", "reason": reason, "message": message,
             "lastUpdateTime": stamp, "lastTransitionTime": stamp}
    return {**csr, "status": {**status, "conditions": [*(status.get("conditions") or []),
                                                       added]}}


class Controller:
    def __init__(self, client: Client, authority: Authority | None = None) -> None:
        self.client = client
        self.authority = authority  # None: no certificates signed here
        self.csrs = Informer(client, resources.CERTIFICATESIGNINGREQUEST)
        self.classes = Informer(client, GATEWAYCLASS)
        self.gateways = Informer(client, GATEWAY)
        self.routes = Informer(client, HTTPROUTE)
        self.grants = Informer(client, REFERENCEGRANT)
        self.services = Informer(client, resources.SERVICE)
        self.slices = Informer(client, resources.ENDPOINTSLICE,
                               label_selector=f"{MANAGED_BY}={MANAGER}")
        self.namespaces = Informer(client, resources.NAMESPACE)
        self.secrets = Informer(client, resources.SECRET)
        self.nodes = Informer(client, resources.NODE)
        self.dirty = asyncio.Event()
        for inf in self.informers():
            inf.add_handler(lambda prev, cur: self.dirty.set())

    def informers(self) -> list[Informer]:
        return [self.classes, self.gateways, self.routes, self.grants, self.services,
                self.slices, self.namespaces, self.secrets, self.nodes, self.csrs]

    def ours(self) -> list[Obj]:
        names = {meta.name(c) for c in self.classes.items()
                 if (c.get("spec") or {}).get("controllerName") == gateway.CONTROLLER}
        return [g for g in self.gateways.items()
                if (g.get("spec") or {}).get("gatewayClassName") in names]

    async def _patch(self, res: resources.Resource, obj: Obj, patch: Obj | None,
                     subresource: str = "status") -> None:
        if patch is not None:
            await self.client.patch(res, meta.name(obj), patch, meta.namespace(obj) or None,
                                    subresource=subresource)

    async def sign(self, now: datetime.datetime | None = None) -> None:
        """Each node proxy's request decided, the approved ones issued, the
        old ones removed."""
        if self.authority is None:
            return
        now = now or utcnow()
        nodes = {meta.name(n) for n in self.nodes.items()}
        for csr in self.csrs.items():
            if (csr.get("spec") or {}).get("signerName") != signer.SIGNER:
                continue
            got = signer.state(csr)
            if signer.expired(csr, now):
                try:
                    await self.client.delete(resources.CERTIFICATESIGNINGREQUEST, meta.name(csr))
                except NotFound:
                    pass
            elif got == "Pending":
                verdict = signer.decide(csr, nodes)
                await self.client.update(resources.CERTIFICATESIGNINGREQUEST, _with_condition(
                    csr, "Approved" if verdict.approve else "Denied", verdict.reason,
                    verdict.message), subresource="approval")
            elif got == "Approved":
                try:
                    certificate = signer.sign(csr, self.authority, clock=now)
                except (ValueError, IdentityError) as e:
                    body = _with_condition(csr, "Failed", "SignerValidationFailure", str(e))
                else:
                    body = {**csr, "status": {**(csr.get("status") or {}),
                                              "certificate": certificate}}
                await self.client.update(resources.CERTIFICATESIGNINGREQUEST, body,
                                         subresource="status")

    async def ensure_class(self) -> None:
        """The ``netplane`` GatewayClass, made when missing (as Istio makes
        its own), so that a Gateway needs nothing else."""
        if self.classes.get(DEFAULT_CLASS) is not None:
            return
        with contextlib.suppress(AlreadyExists):
            await self.client.create(GATEWAYCLASS, {
                "apiVersion": GATEWAYCLASS.api_version, "kind": "GatewayClass",
                "metadata": {"name": DEFAULT_CLASS},
                "spec": {"controllerName": gateway.CONTROLLER,
                         "description": "Gateways served by every node's mesh proxy"}})

    async def sync(self) -> None:
        await self.sign()
        await self.ensure_class()
        for gc in self.classes.items():
            if (gc.get("spec") or {}).get("controllerName") == gateway.CONTROLLER:
                await self._patch(GATEWAYCLASS, gc,
                                  status.conditions_patch(gc, class_conditions(gc)))
        gateways = self.ours()
        addresses = await self._gateway_services(gateways)
        routes, services, grants = self.routes.items(), self.services.items(), self.grants.items()
        north = gateway.build(self.classes.items(), gateways, routes,
                              namespaces=self.namespaces.items(), secrets=self.secrets.items(),
                              services=services, grants=grants, addresses=addresses)
        east = config.build(routes, services, (), grants=grants)
        for route in routes:
            key = meta.namespaced_name(route)
            parents = (route.get("status") or {}).get("parents") or []
            merged = status.merged_parents(parents, east.statuses.get(key, []), config.CONTROLLER)
            merged = status.merged_parents(merged, north.route_status.get(key, []),
                                           gateway.CONTROLLER)
            if merged != parents:
                await self._patch(HTTPROUTE, route, {"status": {"parents": merged}})
        for gw in gateways:
            desired = north.gateway_status.get(meta.namespaced_name(gw))
            if desired is not None:
                await self._patch(GATEWAY, gw, status.gateway_patch(gw, desired))

    async def _gateway_services(self, gateways: list[Obj]) -> dict[str, list[str]]:
        """Each Gateway's Service and EndpointSlice made as they should be;
        those of Gateways that are gone removed. Returns the addresses."""
        mine = {meta.namespaced_name(s): s for s in self.services.items() if made_here(s)}
        taken = {p for s in mine.values() for p in node_ports_of(s).values()}
        wanted: set[str] = set()
        addresses: dict[str, list[str]] = {}
        nodes = self.nodes.items()
        for gw in gateways:
            key = f"{meta.namespace(gw)}/{service_name(gw)}"
            wanted.add(key)
            current = mine.get(key)
            svc = desired_service(gw, current, taken - set(node_ports_of(current).values()))
            taken |= set(node_ports_of(svc).values())
            svc = await self._ensure_service(svc, current)
            await self._ensure_slice(desired_slice(svc, nodes))
            addresses[meta.namespaced_name(gw)] = addresses_of(svc)
        for key, svc in mine.items():
            if key not in wanted:
                try:
                    await self.client.delete(resources.SERVICE, meta.name(svc),
                                             meta.namespace(svc))
                except NotFound:
                    pass
        return addresses

    async def _ensure_service(self, svc: Obj, current: Obj | None) -> Obj:
        if current is None:
            try:
                return await self.client.create(resources.SERVICE, svc)
            except AlreadyExists:
                # A Service of that name that is not a Gateway's: left alone.
                log.warning("Service %s exists and is not the Gateway's",
                            meta.namespaced_name(svc))
                return svc
        spec = current.get("spec") or {}
        want = svc["spec"]
        same_ports = [{k: p.get(k) for k in ("name", "port", "targetPort")}
                      for p in spec.get("ports") or ()] == \
            [{k: p[k] for k in ("name", "port", "targetPort")} for p in want["ports"]]
        if same_ports and spec.get("type") == want["type"] and \
                spec.get("loadBalancerIP") == want.get("loadBalancerIP"):
            return current
        # The ports that stay keep their NodePorts.
        node_ports = {p.get("port"): p.get("nodePort") for p in spec.get("ports") or ()}
        ports = [{**p, "nodePort": node_ports[p["port"]]} if node_ports.get(p["port"]) else p
                 for p in want["ports"]]
        patch = {"spec": {**want, "ports": ports, "loadBalancerIP": want.get("loadBalancerIP")}}
        return await self.client.patch(resources.SERVICE, meta.name(current), patch,
                                       meta.namespace(current))

    async def _ensure_slice(self, body: Obj) -> None:
        current = self.slices.get(meta.name(body), meta.namespace(body))
        if current is None:
            try:
                await self.client.create(resources.ENDPOINTSLICE, body)
            except AlreadyExists:
                self.dirty.set()  # the informer has not seen it yet
            return
        if all(current.get(k) == body[k] for k in ("endpoints", "ports")):
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self.client.update(resources.ENDPOINTSLICE, body)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(inf.run()) for inf in self.informers()]
        try:
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers()))
            while not stop.is_set():
                waiter = asyncio.create_task(self.dirty.wait())
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopping.cancel()
                if stop.is_set():
                    break
                self.dirty.clear()
                try:
                    await self.sync()
                except ApiError as e:
                    # A write raced another (a Conflict) or an object went away:
                    # the informers will have news; sync again shortly.
                    log.info("mesh sync: %s; again", e)
                    await asyncio.sleep(RETRY_DELAY)
                    self.dirty.set()
                await asyncio.sleep(SYNC_INTERVAL)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def command(socket: Path, pki: Path) -> list[str]:
    return [sys.executable, "-m", __name__, "--socket-path", str(socket), "--pki-dir", str(pki)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="netplane mesh-controller", description=__doc__)
    ap.add_argument("--socket-path", default="/run/netplane/api.sock")
    ap.add_argument("--pki-dir", help="the cluster CA's folder (ca.crt, ca.key), where the "
                    "mesh CA is kept; without it no certificates are signed")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        authority = signer.load_authority(Path(args.pki_dir)) if args.pki_dir else None
        async with Client(Connection(socket=args.socket_path), user_agent=USER_AGENT) as client:
            await Controller(client, authority).run(stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
