"""``netplane server``: the API server with its store, and the scheduler (a
process of its own) and controllers, which reach it through its Unix socket
like any other client."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from netplane.cluster import children, gcpolicy
from netplane.cluster.apiserver import (
    access,
    bootstrap,
    durability,
    handlers,
    metricsapi,
    nodeproxy,
    paths,
    pki,
)
from netplane.cluster.apiserver.admission import Allocators
from netplane.cluster.apiserver.allocators import ClusterIPAllocator, PodCIDRAllocator
from netplane.cluster.apiserver.authn import (
    AUTHENTICATED,
    MASTERS,
    NODES,
    Authenticator,
    User,
    load_signing_key,
)
from netplane.cluster.apiserver.metricsstore import MetricsStore
from netplane.cluster.apiserver.rbac import RBAC
from netplane.cluster.apiserver.registry import Registry
from netplane.cluster.apiserver.tolerations import DEFAULT_SECONDS, DefaultTolerationSeconds
from netplane.cluster.client import Client, Connection
from netplane.cluster.controllers import manager
from netplane.cluster.controllers.loadbalancer import parse_pool
from netplane.cluster.controllers.nodelifecycle import (
    GRACE_SECONDS,
    PERIOD_SECONDS,
    STARTUP_GRACE_SECONDS,
)
from netplane.cluster.scheduler import process as scheduler_process
from netplane.cluster.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    data_dir: Path
    socket: Path
    bind_address: str = "0.0.0.0"
    port: int = 6443
    advertise_address: str = "127.0.0.1"
    listen_fds: list[int] = field(default_factory=list)
    service_cidr: str = "10.96.0.0/12"
    cluster_cidr: str = "10.244.0.0/16"
    controllers: bool = True
    # The mesh and Gateway controller (a child process, with the controllers).
    mesh: bool = True
    load_balancer_pool: str = ""
    # A KubeSchedulerConfiguration (kube-scheduler's --config); None: the default profile.
    scheduler_config: Path | None = None
    default_not_ready_toleration_seconds: int = DEFAULT_SECONDS
    default_unreachable_toleration_seconds: int = DEFAULT_SECONDS
    node_monitor_grace_period: float = GRACE_SECONDS
    node_monitor_period: float = PERIOD_SECONDS
    node_startup_grace_period: float = STARTUP_GRACE_SECONDS
    # kube-controller-manager's --horizontal-pod-autoscaler-* flags, in seconds.
    hpa_sync_period: float = 15.0
    hpa_downscale_stabilization: float = 300.0


def service_ip(cidr: str, offset: int) -> str:
    return str(ipaddress.ip_network(cidr).network_address + offset)


def build_app(registry: Registry, tokens: frozenset[str], *,
              join_tokens: frozenset[str] = frozenset(),
              signing_key: ec.EllipticCurvePrivateKey | None = None) -> web.Application:
    """The API app. ``tokens`` belong to administrators (system:masters),
    ``join_tokens`` to node agents (system:nodes)."""
    app = web.Application(middlewares=[durability.acknowledge_when_durable, handlers.errors,
                                       access.authenticate, access.authorize],
                          client_max_size=handlers.MAX_BODY)
    app[handlers.REGISTRY] = registry
    app[paths.CUSTOM_KINDS] = registry.custom
    app[metricsapi.METRICS] = MetricsStore()
    app[durability.STORE] = registry.store
    static = {t: User("admin", (MASTERS, AUTHENTICATED)) for t in tokens}
    static.update({t: User("system:node-agent", (NODES, AUTHENTICATED)) for t in join_tokens})
    app[access.AUTHENTICATOR] = Authenticator(
        registry, static=static, signing_key=signing_key or ec.generate_private_key(
            ec.SECP256R1()))
    app[access.AUTHORIZER] = RBAC(registry)
    handlers.routes(app)
    return app


def open_registry(cfg: ServerConfig) -> Registry:
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SQLiteStore(cfg.data_dir / "store.db")
    api_ip, dns_ip = service_ip(cfg.service_cidr, 1), service_ip(cfg.service_cidr, 10)
    allocators = Allocators(ClusterIPAllocator(cfg.service_cidr, reserved=(api_ip, dns_ip)),
                            PodCIDRAllocator(cfg.cluster_cidr))
    seconds = DefaultTolerationSeconds(not_ready=cfg.default_not_ready_toleration_seconds,
                                       unreachable=cfg.default_unreachable_toleration_seconds)
    registry = Registry(store, allocators, toleration_seconds=seconds)
    bootstrap.ensure(registry, advertise_address=cfg.advertise_address, port=cfg.port,
                     api_ip=api_ip, dns_ip=dns_ip)
    return registry


def _tcp_listener(cfg: ServerConfig) -> socket.socket:
    """The TLS listener, bound before anything else so that ``port 0`` (any
    free port) is known when the ``kubernetes`` Endpoints are written."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.bind_address, cfg.port))
    sock.listen(128)
    cfg.port = int(sock.getsockname()[1])
    return sock


async def serve(cfg: ServerConfig, stop: asyncio.Event) -> None:
    tcp = _tcp_listener(cfg)
    registry = open_registry(cfg)
    creds = pki.ensure(cfg.data_dir, addresses=[cfg.advertise_address,
                                                service_ip(cfg.service_cidr, 1)])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(creds.server_cert, creds.server_key)
    # Handler cancellation ends a watch whose client went away; otherwise it
    # would wait, holding its store watcher, until the next matching event.
    app = build_app(registry, frozenset({creds.admin_token}),
                    join_tokens=frozenset({creds.join_token}),
                    signing_key=load_signing_key(cfg.data_dir / "pki" / "sa.key"))
    app[nodeproxy.KUBELET_TLS] = nodeproxy.client_tls(creds.kubelet_client_cert,
                                                      creds.kubelet_client_key)
    app.cleanup_ctx.append(metricsapi.scraping(registry, app[nodeproxy.KUBELET_TLS]))
    runner = web.AppRunner(app,
                           access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    gcpolicy.settle()  # the schemas, the RBAC rules, the routes
    cfg.socket.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        cfg.socket.unlink()
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(cfg.socket))
    os.chmod(cfg.socket, 0o600)
    sites: list[web.BaseSite] = [web.SockSite(runner, unix)]
    sites.append(web.SockSite(runner, tcp, ssl_context=tls))
    for fd in cfg.listen_fds:
        sites.append(web.SockSite(runner, socket.socket(fileno=fd), ssl_context=tls))
    for site in sites:
        await site.start()
    # Written once serving, for whoever started the server with port 0.
    (cfg.data_dir / "apiserver.port").write_text(f"{cfg.port}\n")
    log.info("API server listening on %s and %s:%d", cfg.socket, cfg.bind_address, cfg.port)
    tasks: list[asyncio.Task[None]] = []
    client = Client(Connection(socket=str(cfg.socket)), user_agent="kube-controller-manager")
    if cfg.controllers:
        tasks.append(asyncio.create_task(children.supervise(
            scheduler_process.command(cfg.socket, cfg.scheduler_config), "scheduler")))
        if cfg.mesh:
            # By module name: the control plane runs the mesh's controller
            # without importing the mesh.
            tasks.append(asyncio.create_task(children.supervise(
                [sys.executable, "-m", "netplane.mesh.controller",
                 "--socket-path", str(cfg.socket), "--pki-dir", str(cfg.data_dir / "pki")],
                "mesh controller")))
        pool = parse_pool(cfg.load_balancer_pool) if cfg.load_balancer_pool else []
        tasks.append(asyncio.create_task(manager.run(
            client, lb_pool=pool, node_grace=cfg.node_monitor_grace_period,
            node_period=cfg.node_monitor_period,
            node_startup_grace=cfg.node_startup_grace_period,
            hpa_sync_period=cfg.hpa_sync_period,
            hpa_downscale_stabilization=cfg.hpa_downscale_stabilization,
            on_synced=gcpolicy.settle)))
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        await runner.cleanup()
        registry.store.close()


def run(cfg: ServerConfig) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    gcpolicy.configure()
    # uvloop: cheaper per request than asyncio's own loop, as for the agent.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
