"""The node's share of the mesh: its L7 proxy on :15001, fed from the
cluster's HTTPRoutes, Services, EndpointSlices, ReferenceGrants,
AuthorizationPolicies, pods and nodes, and the capture that hands it the
connections of this node's pods in enrolled namespaces (label
``netplane.io/mesh=enabled``) to Service ports that have routes. Every
other connection keeps the kernel path. Endpoints on other nodes are
reached over TCP for now (tunnels are not wired yet)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from netplane.api import meta
from netplane.cluster.client import Client, Informer
from netplane.mesh import capture
from netplane.mesh.config import MeshConfig, build
from netplane.mesh.kinds import AUTHORIZATIONPOLICY, HTTPROUTE, REFERENCEGRANT
from netplane.mesh.proxy import Proxy, serve

log = logging.getLogger(__name__)

ENROLLED_LABEL, ENROLLED = "netplane.io/mesh", "enabled"
SYNC_INTERVAL = 0.1  # at most this often: a burst of changes makes one sync


class NodeMesh:
    def __init__(self, client: Client, *, node_name: str, services: Informer, slices: Informer,
                 pods: Informer, nodes: Informer, namespaces: Informer) -> None:
        self.node_name = node_name
        self.services, self.slices, self.pods = services, slices, pods
        self.nodes, self.namespaces = nodes, namespaces
        self.routes = Informer(client, HTTPROUTE)
        self.grants = Informer(client, REFERENCEGRANT)
        self.policies = Informer(client, AUTHORIZATIONPOLICY)
        self.proxy = Proxy(node=node_name)
        self.config: MeshConfig | None = None
        self.applied: str | None = None
        self.dirty = asyncio.Event()
        for inf in (self.routes, self.grants, self.policies, services, slices, pods, nodes,
                    namespaces):
            inf.add_handler(lambda prev, cur: self.dirty.set())

    def informers(self) -> list[Informer]:
        """The ones the mesh alone needs (the agent runs the shared ones)."""
        return [self.routes, self.grants, self.policies]

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
        return self.capture_text(config)

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
            self.proxy.close()
            with contextlib.suppress(OSError):
                await self._nft(capture.clean_up_script())
