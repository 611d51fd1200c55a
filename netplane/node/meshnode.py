"""The node's share of the mesh: its L7 proxy on :15001, fed from the
cluster's HTTPRoutes, Services, EndpointSlices, ReferenceGrants,
AuthorizationPolicies, pods and nodes, and the capture that hands it the
connections of this node's pods in enrolled namespaces (label
``netplane.io/mesh=enabled``) to Service ports that have routes. Every
other connection keeps the kernel path. Endpoints on other nodes are
reached over TCP for now (tunnels are not wired yet). Every node also
serves every Gateway of the ``netplane`` class, each listener port on the
node-proxy port the mesh controller gave it in the Gateway's Service
(whose LoadBalancer address and NodePorts lead there)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from netplane.api import meta
from netplane.cluster.client import Client, Informer
from netplane.mesh import capture, gateway
from netplane.mesh.config import MeshConfig, build
from netplane.mesh.controller import node_ports_of
from netplane.mesh.kinds import (
    AUTHORIZATIONPOLICY,
    GATEWAY,
    GATEWAY_NAME_LABEL,
    GATEWAYCLASS,
    HTTPROUTE,
    REFERENCEGRANT,
)
from netplane.mesh.proxy import Listener, Proxy, serve

log = logging.getLogger(__name__)

ENROLLED_LABEL, ENROLLED = "netplane.io/mesh", "enabled"
SYNC_INTERVAL = 0.1  # at most this often: a burst of changes makes one sync


class NodeMesh:
    def __init__(self, client: Client, *, node_name: str, services: Informer, slices: Informer,
                 pods: Informer, nodes: Informer, namespaces: Informer,
                 secrets: Informer) -> None:
        self.node_name = node_name
        self.services, self.slices, self.pods = services, slices, pods
        self.nodes, self.namespaces, self.secrets = nodes, namespaces, secrets
        self.classes = Informer(client, GATEWAYCLASS)
        self.gateways = Informer(client, GATEWAY)
        self.routes = Informer(client, HTTPROUTE)
        self.grants = Informer(client, REFERENCEGRANT)
        self.policies = Informer(client, AUTHORIZATIONPOLICY)
        self.proxy = Proxy(node=node_name)
        self.config: MeshConfig | None = None
        self.applied: str | None = None
        # Gateway listeners: node-proxy port -> (its server, what its TLS was made of).
        self.gateway_servers: dict[int, tuple[asyncio.Server, list[gateway.Certificate]]] = {}
        self.gateway_ports: dict[int, list[gateway.Certificate]] = {}
        self.dirty = asyncio.Event()
        for inf in (self.routes, self.grants, self.policies, self.classes, self.gateways,
                    services, slices, pods, nodes, namespaces, secrets):
            inf.add_handler(lambda prev, cur: self.dirty.set())

    def informers(self) -> list[Informer]:
        """The ones the mesh alone needs (the agent runs the shared ones)."""
        return [self.routes, self.grants, self.policies, self.classes, self.gateways]

    def enrolled(self) -> set[str]:
        return {meta.name(n) for n in self.namespaces.items()
                if meta.labels(n).get(ENROLLED_LABEL) == ENROLLED}

    def capture_text(self, config: MeshConfig) -> str:
        enrolled = self.enrolled()
        sources = [ip["ip"] for p in self.pods.items()
                   if (p.get("spec") or {}).get("nodeName") == self.node_name
                   and meta.namespace(p) in enrolled
                   for ip in (p.get("status") or {}).get("podIPs") or ()]
        routed = set(config.producer) | {target for _, target in config.consumer}
        targets = [dst for dst, target in config.vips.items() if target in routed]
        return capture.render(sources, targets)

    def sync(self) -> str:
        """The proxy's configuration from the caches; the capture text."""
        config = build(self.routes.items(), self.services.items(), self.slices.items(),
                       grants=self.grants.items(), pods=self.pods.items(),
                       nodes=self.nodes.items(), policies=self.policies.items())
        self.proxy.apply(config)
        self.config = config
        self.gateway_ports = self.gateway_listeners()
        return self.capture_text(config)

    def gateway_listeners(self) -> dict[int, list[gateway.Certificate]]:
        """The proxy's listeners for the Gateways' ports; the certificates
        of each node-proxy port that terminates TLS (none for plain HTTP)."""
        services = self.services.items()
        north = gateway.build(self.classes.items(), self.gateways.items(), self.routes.items(),
                              namespaces=self.namespaces.items(), secrets=self.secrets.items(),
                              services=services, grants=self.grants.items())
        listeners: dict[int, Listener] = {}
        tls: dict[int, list[gateway.Certificate]] = {}
        for svc in services:
            name = meta.labels(svc).get(GATEWAY_NAME_LABEL)
            ports = north.ports.get((meta.namespace(svc), name or ""))
            if ports is None:
                continue
            for port, local in node_ports_of(svc).items():
                if (pc := ports.get(port)) is not None:
                    listeners[local] = Listener(pc.table, port, scheme=pc.scheme,
                                                service=f"{name}.{meta.namespace(svc)}")
                    tls[local] = pc.certificates
        self.proxy.listeners = listeners
        return tls

    async def serve_gateways(self) -> None:
        """A listening socket per Gateway node-proxy port; one whose
        certificates changed opened again with them (connections already
        made keep theirs)."""
        wanted = self.gateway_ports
        for local in [p for p in self.gateway_servers if p not in wanted]:
            self.gateway_servers.pop(local)[0].close()
        for local, certs in wanted.items():
            running = self.gateway_servers.get(local)
            if running is not None and running[1] == certs:
                continue
            if running is not None:
                running[0].close()
                del self.gateway_servers[local]
            try:
                tls = gateway.tls_context(certs) if certs else None
                server = await serve(self.proxy, "0.0.0.0", local, tls=tls)
            except (OSError, ssl.SSLError, ValueError) as e:
                log.warning("gateway port %d not served: %s", local, e)
                continue
            self.gateway_servers[local] = (server, certs)

    async def _nft(self, script: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "nft", "-f", "-", stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate(script.encode())
        if proc.returncode != 0:
            raise OSError(f"nft: {err.decode().strip()}")

    async def run(self, stop: asyncio.Event) -> None:
        server = await serve(self.proxy, "0.0.0.0", capture.PROXY_PORT)
        try:
            while not stop.is_set():
                await self.dirty.wait()
                self.dirty.clear()
                script = self.sync()
                await self.serve_gateways()
                if script != self.applied:
                    try:
                        await self._nft(script)
                        self.applied = script
                    except OSError as e:
                        log.warning("mesh capture not applied: %s", e)
                        self.dirty.set()
                await asyncio.sleep(SYNC_INTERVAL)
        finally:
            server.close()
            for gw_server, _ in self.gateway_servers.values():
                gw_server.close()
            self.proxy.close()
            with contextlib.suppress(OSError):
                await self._nft(capture.clean_up_script())
