"""The node's share of the mesh: its L7 proxy on :15001, fed from the
cluster's HTTPRoutes, Services, EndpointSlices, ReferenceGrants,
AuthorizationPolicies, pods and nodes, and the capture that hands it the
connections of this node's pods in enrolled namespaces (label
``netplane.io/mesh=enabled``) to Service ports: HTTP ones to the L7 proxy,
the others to the L4 one on :15002, which carries them whole. Every other
connection keeps the kernel path. Requests of enrolled pods to
endpoints on other nodes go through the mutual-TLS tunnel to that node's
proxy (:15008), with the node certificate the mesh controller signed
(renewed at half life); the receiving proxy lets a stream in only for a
workload that runs on the sending node. Every node also
serves every Gateway of the ``netplane`` class, each listener port on the
node-proxy port the mesh controller gave it in the Gateway's Service
(whose LoadBalancer address and NodePorts lead there)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

from cryptography import x509

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cluster.client import Client, Informer
from netplane.mesh import capture, enroll, gateway, tunnel
from netplane.mesh.config import MeshConfig, build
from netplane.mesh.controller import made_here, node_ports_of
from netplane.mesh.kinds import (
    AUTHORIZATIONPOLICY,
    ENROLLED,
    ENROLLED_LABEL,
    GATEWAY,
    GATEWAY_NAME_LABEL,
    GATEWAYCLASS,
    HTTPROUTE,
    REFERENCEGRANT,
)
from netplane.mesh.passthrough import Passthrough
from netplane.mesh.proxy import Listener, Proxy, serve

log = logging.getLogger(__name__)

# Left on the kernel path: DNS (answered on the node itself) and the API.
INFRASTRUCTURE, API = frozenset({"kube-system"}), ("default", "kubernetes")
SYNC_INTERVAL = 0.1  # at most this often: a burst of changes makes one sync
TRACE_VIEW = 1000  # spans in the mesh-traces view


class NodeMesh:
    def __init__(self, client: Client, *, node_name: str, services: Informer, slices: Informer,
                 pods: Informer, nodes: Informer, namespaces: Informer,
                 secrets: Informer, pki: tuple[Path, x509.Certificate] | None = None) -> None:
        self.client = client
        # Where the node's mesh certificate is kept, and the cluster root;
        # None: no tunnels (endpoints on other nodes over plain TCP).
        self.pki = pki
        self.tunnel_server: tunnel.TunnelServer | None = None
        self.renew_now = asyncio.Event()  # set: a new certificate now (netplane mesh rotate)
        self.node_name = node_name
        self.services, self.slices, self.pods = services, slices, pods
        self.nodes, self.namespaces, self.secrets = nodes, namespaces, secrets
        self.classes = Informer(client, GATEWAYCLASS)
        self.gateways = Informer(client, GATEWAY)
        self.routes = Informer(client, HTTPROUTE)
        self.grants = Informer(client, REFERENCEGRANT)
        self.policies = Informer(client, AUTHORIZATIONPOLICY)
        self.proxy = Proxy(node=node_name)
        self.passthrough = Passthrough(self.proxy)
        # What the capture takes: enrolled sources, HTTP and L4 "ip:port" targets.
        self.captured: dict[str, list[str]] = {"sources": [], "http": [], "streams": []}
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
        """Enrolled pods' connections to every Service port: HTTP (a port
        with routes, or named or declared HTTP) to the L7 proxy, others to
        the L4 one; not to the cluster's own (kube-system's, the API's)."""
        enrolled = self.enrolled()
        sources = [ip["ip"] for p in self.pods.items()
                   if (p.get("spec") or {}).get("nodeName") == self.node_name
                   and meta.namespace(p) in enrolled
                   for ip in (p.get("status") or {}).get("podIPs") or ()]
        routed = set(config.producer) | {target for _, target in config.consumer} | config.http
        http: list[tuple[str, int]] = []
        streams: list[tuple[str, int]] = []
        for dst, target in config.vips.items():
            if target.namespace in INFRASTRUCTURE or (target.namespace, target.name) == API:
                continue
            (http if target in routed else streams).append(dst)
        self.captured = {"sources": sorted(sources),
                         "http": sorted(f"{ip}:{p}" for ip, p in http),
                         "streams": sorted(f"{ip}:{p}" for ip, p in streams)}
        return capture.render(sources, http, streams)

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
            if not made_here(svc):
                continue
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

    def describe(self) -> Obj:
        """The ``mesh`` view (``netplane mesh status``): what this node's
        proxy serves, its certificate and its tunnels."""
        config = self.config
        creds = self.tunnel_server.credentials if self.tunnel_server else None
        client = self.proxy.upstreams.tunnels
        routed: dict[str, list[str]] = {}
        if config is not None:
            for target, table in config.producer.items():
                routed[f"{target.namespace}/{target.name}:{target.port}"] = sorted(
                    {f"{r.key.namespace}/{r.key.name}" for r in table.routes})
            for (ns, target), table in config.consumer.items():
                routed[f"{target.namespace}/{target.name}:{target.port} (from {ns})"] = sorted(
                    {f"{r.key.namespace}/{r.key.name}" for r in table.routes})
        return {
            "node": self.node_name,
            "enrolled": sorted(self.enrolled()),
            "capturing": self.applied is not None,
            "captured": self.captured,
            "routed": routed,
            "gateways": {str(port): {"gateway": ln.service, "port": ln.port,
                                     "scheme": ln.scheme}
                         for port, ln in sorted(self.proxy.listeners.items())},
            "certificate": None if creds is None else {
                "identity": str(tunnel.node_identity(self.node_name)),
                "serial": format(creds.issued.cert.serial_number, "x"),
                "notAfter": creds.issued.cert.not_valid_after_utc.isoformat(),
                "renewAfter": creds.issued.renew_after().isoformat()},
            "tunnels": {
                "listening": self.tunnel_server is not None,
                "inbound": len(self.tunnel_server.links) if self.tunnel_server else 0,
                "outbound": sorted(a for a, link in (client.links if client else {}).items()
                                   if not link.dead)},
            "requests": self.proxy.access.last,
        }

    def logs(self) -> list[Obj]:
        """The ``mesh-logs`` view: the access log's last entries, oldest first."""
        return [{**e.to_dict(), "line": e.line()} for e in self.proxy.access.entries()]

    async def rotate(self) -> Obj:
        """The ``mesh-rotate`` action: a new certificate now; tunnels already
        up keep theirs, new ones use the new one."""
        creds = self.tunnel_server.credentials if self.tunnel_server else None
        self.renew_now.set()
        return {"renewing": creds is not None,
                "serial": format(creds.issued.cert.serial_number, "x") if creds else None}

    def traces(self) -> list[Obj]:
        """The ``mesh-traces`` view: the proxy's last spans, oldest first."""
        return [s.to_dict() for s in self.proxy.tracer.spans.recent(TRACE_VIEW)]

    async def tunnels(self) -> None:
        """The node's certificate kept current, and the tunnels on it: the
        server for other nodes' proxies, the client for this one's."""
        if self.pki is None:
            return
        ready: asyncio.Future[tunnel.Credentials] = asyncio.get_running_loop().create_future()
        keeper = asyncio.create_task(enroll.keep(self.client, self.node_name, self.pki[0],
                                                 self.pki[1], ready, wake=self.renew_now))
        server: tunnel.Listening | None = None
        try:
            creds = await asyncio.shield(ready)
            events = self.proxy.metrics.tunnel_event
            self.tunnel_server = tunnel.TunnelServer(
                creds, tunnel.authorizer(lambda: self.config, self.node_name), events=events,
                vouch=tunnel.voucher(lambda: self.config))
            server = await self.tunnel_server.serve("0.0.0.0", tunnel.PORT)
            self.proxy.upstreams.tunnels = tunnel.TunnelClient(creds, events=events)
            await keeper
        finally:
            keeper.cancel()
            if server is not None:
                server.close()
            if self.proxy.upstreams.tunnels is not None:
                self.proxy.upstreams.tunnels.close()

    async def _ip(self, commands: list[list[str]]) -> None:
        for argv in commands:
            proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
            if proc.returncode != 0 and b"File exists" not in err:
                log.debug("%s: %s", " ".join(argv), err.decode().strip())

    async def run(self, stop: asyncio.Event) -> None:
        await self._ip(capture.transparent_routing(False))  # an agent before this one's
        await self._ip(capture.transparent_routing(True))
        server = await serve(self.proxy, "0.0.0.0", capture.PROXY_PORT)
        streams = await self.passthrough.serve("0.0.0.0", capture.STREAM_PORT)
        tunnels = asyncio.create_task(self.tunnels())
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
            tunnels.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tunnels
            server.close()
            streams.close()
            for gw_server, _ in self.gateway_servers.values():
                gw_server.close()
            self.proxy.close()
            with contextlib.suppress(OSError):
                await self._nft(capture.clean_up_script())
            await self._ip(capture.transparent_routing(False))
