"""``netplane agent``: the node agent. Registers the node, sets up its pod
network, and runs the pod manager, the service proxy, the node-local DNS
server and the host-gw routes, each fed by informers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import uvloop
from cryptography import x509

from netplane.api import meta, resources
from netplane.cluster.client import Client, Connection, Informer
from netplane.net import netns, routes
from netplane.net.ipam import HostLocalIPAM
from netplane.net.podnet import NodeNetwork
from netplane.node import capacity, cgroups, kubeletapi, registration
from netplane.node.cgroups import Hierarchy
from netplane.node.hostports import HostPorts
from netplane.node.localpath import LocalPathProvisioner
from netplane.node.meshnode import NodeMesh
from netplane.node.nodedns import NodeDNS, upstream_list
from netplane.node.pods import NodeContext, PodManager
from netplane.node.runtime.dockerd import DOCKER_DIR, Engine
from netplane.node.runtime.dockerruntime import DockerRuntime
from netplane.node.runtime.process import ProcessRuntime
from netplane.node.services import ServiceDuties
from netplane.node.status import StatusServer
from netplane.proxy import metrics as proxy_metrics
from netplane.proxy import modes
from netplane.proxy.config import ProxyConfig

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    server: str
    token: str | None
    ca_file: str
    node_name: str
    node_ip: str
    state_dir: Path
    netns_prefix: str = "np-"
    proxy_mode: str = "iptables"
    upstream: str = "none"
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    dns_ip: str = "10.96.0.10"
    api_ip: str = "10.96.0.1"
    cluster_domain: str = "cluster.local"
    # The node's cgroups, under the agent's own (the kubelet's --cgroup-root);
    # "" for netplane/<node name>.
    cgroup_root: str = ""
    # The container runtime: process, or docker (the node's own Docker
    # Engine, started by the agent unless docker_host names one).
    runtime: str = "process"
    docker_host: str = ""


class RouteSyncer:
    """host-gw: a route to every other node's pod CIDR via its address."""

    def __init__(self, nodes: Informer, own_name: str) -> None:
        self.nodes, self.own = nodes, own_name
        self.wake = asyncio.Event()
        nodes.add_handler(lambda prev, cur: self.wake.set() if meta.node_changed(prev, cur)
                          else None)

    def wanted(self) -> dict[str, str]:
        out = {}
        for n in self.nodes.items():
            cidr, ip = n.get("spec", {}).get("podCIDR"), meta.node_address(n)
            if meta.name(n) != self.own and cidr and ip:
                out[cidr] = ip
        return out

    async def run(self) -> None:
        last: dict[str, str] | None = None
        while True:
            await self.wake.wait()
            self.wake.clear()
            want = self.wanted()
            if want != last:
                await asyncio.to_thread(routes.sync_routes, want)
                log.info("routes to pod CIDRs: %s", want)
                last = want


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def ensure_local_address(ip: str) -> None:
    """The DNS address lives on ``lo``: this kernel has no dummy interface."""
    netns.run(["ip", "addr", "replace", f"{ip}/32", "dev", "lo"])


async def serve(cfg: AgentConfig, stop: asyncio.Event) -> None:
    client = Client(Connection(url=cfg.server, token=cfg.token, ca_file=cfg.ca_file),
                    user_agent="kubelet")
    machine = capacity.read(cfg.state_dir)
    node = await registration.register(client, cfg.node_name, cfg.node_ip, machine=machine)
    pod_cidr = node["spec"]["podCIDR"]
    log.info("node %s registered with pod CIDR %s", cfg.node_name, pod_cidr)
    network = NodeNetwork(pod_cidr=pod_cidr, cluster_cidr=cfg.cluster_cidr)
    await asyncio.to_thread(network.set_up)
    await asyncio.to_thread(ensure_local_address, cfg.dns_ip)

    proxier = modes.make(cfg.proxy_mode, node_name=cfg.node_name, node_ips=(cfg.node_ip,),
                         config=ProxyConfig(cluster_cidr=cfg.cluster_cidr,
                                            notrack_dns_ips=(cfg.dns_ip,)))
    await asyncio.to_thread(proxier.set_up)
    policy = modes.make_policy(cfg.proxy_mode, node_name=cfg.node_name)
    await asyncio.to_thread(policy.set_up)
    dns = NodeDNS(dns_ip=cfg.dns_ip, node_ip=cfg.node_ip, zone=cfg.cluster_domain,
                  service_cidr=cfg.service_cidr, cluster_cidr=cfg.cluster_cidr,
                  upstreams=upstream_list(cfg.upstream))
    await dns.start()
    await NodeDNS.publish_endpoint(client, node, cfg.node_ip)

    services = Informer(client, resources.SERVICE)
    endpoints = Informer(client, resources.ENDPOINTS)
    nodes = Informer(client, resources.NODE)
    slices = Informer(client, resources.ENDPOINTSLICE)
    all_pods = Informer(client, resources.POD)
    # What pods' volumes and env read (the kubelet watches the ones in use).
    configmaps = Informer(client, resources.CONFIGMAP)
    secrets = Informer(client, resources.SECRET)
    claims = Informer(client, resources.PERSISTENTVOLUMECLAIM)
    persistent_volumes = Informer(client, resources.PERSISTENTVOLUME)
    storage_classes = Informer(client, resources.STORAGECLASS)
    policies = Informer(client, resources.NETWORKPOLICY)
    namespaces = Informer(client, resources.NAMESPACE)
    policies.add_handler(policy.on_policy)
    namespaces.add_handler(policy.on_namespace)
    all_pods.add_handler(policy.on_pod)
    services.add_handler(proxier.on_service)
    # Slices win where a Service has any; v1 Endpoints serve selector-less
    # Services whose endpoints someone wrote by hand (no mirroring here).
    slices.add_handler(proxier.on_endpoints)
    endpoints.add_handler(proxier.on_endpoints)
    dns.watch(services=services, slices=slices, endpoints=endpoints, pods=all_pods)
    # As Istio's default: the proxy keeps its access log for `netplane mesh
    # logs` to read, and the agent's own log does not get a line per request.
    logging.getLogger("netplane.mesh.access").setLevel(logging.WARNING)
    mesh = NodeMesh(client, node_name=cfg.node_name, services=services, slices=slices,
                    pods=all_pods, nodes=nodes, namespaces=namespaces, secrets=secrets,
                    pki=(cfg.state_dir / "mesh",
                         x509.load_pem_x509_certificate(Path(cfg.ca_file).read_bytes())))

    ctx = NodeContext(node_name=cfg.node_name, node_ip=cfg.node_ip,
                      netns_prefix=cfg.netns_prefix, dns_ip=cfg.dns_ip,
                      cluster_domain=cfg.cluster_domain, api_ip=cfg.api_ip,
                      node_resolv_conf=read_text(Path("/etc/resolv.conf")),
                      ca_cert=read_text(Path(cfg.ca_file)))
    runtime = await make_runtime(cfg)
    pods = PodManager(client=client, pods=all_pods,
                      runtime=runtime,
                      network=network, ipam=HostLocalIPAM(pod_cidr, cfg.state_dir / "ipam"),
                      ctx=ctx, slices=slices, configmaps=configmaps, secrets=secrets,
                      claims=claims, persistent_volumes=persistent_volumes)
    provisioner = LocalPathProvisioner(client, node_name=cfg.node_name,
                                       base=cfg.state_dir / "storage", claims=claims,
                                       volumes=persistent_volumes, classes=storage_classes)
    host_ports = HostPorts(node_name=cfg.node_name, pods=all_pods)
    duties = ServiceDuties(node_name=cfg.node_name, node_ip=cfg.node_ip, services=services,
                           slices=slices, nodes=nodes)
    tasks = [asyncio.create_task(c) for c in (
        services.run(), endpoints.run(), nodes.run(), slices.run(), all_pods.run(),
        configmaps.run(), secrets.run(), claims.run(), persistent_volumes.run(),
        storage_classes.run(), provisioner.run(),
        proxier.run(stop), policies.run(), namespaces.run(), policy.run(stop),
        *(inf.run() for inf in mesh.informers()), mesh.run(stop),
        pods.run(), duties.run(), host_ports.run(),
        RouteSyncer(nodes, cfg.node_name).run(),
        registration.heartbeat(client, cfg.node_name, cfg.node_ip, machine=machine,
                               pressure=lambda: capacity.readings(cfg.state_dir).pressure(),
                               runtime=runtime_info(runtime)),
        registration.renew_lease(client, node))]
    status = StatusServer(socket_path=cfg.state_dir / "agent.sock", address=cfg.node_ip)
    status.add_metrics(lambda: proxy_metrics.render(proxier))
    status.add_metrics(lambda: proxy_metrics.render_policy(policy))
    status.add_metrics(dns.render_metrics)
    status.add_metrics(lambda: mesh.proxy.metrics.render().decode())
    status.add_view("proxy", lambda: proxier.describe(check_kernel=True))
    status.add_view("policy", lambda: policy.describe(check_kernel=True))
    status.add_view("mesh", mesh.describe)
    status.add_view("mesh-logs", mesh.logs)
    status.add_view("mesh-traces", mesh.traces)
    status.add_action("mesh-rotate", mesh.rotate)
    await status.start()
    agent_api = kubeletapi.KubeletApi(pods=all_pods, runtime=runtime, node_name=cfg.node_name)
    cert, key = kubeletapi.serving_certificate(cfg.state_dir / "pki", cfg.node_ip)
    await agent_api.start(address=cfg.node_ip, port=kubeletapi.KUBELET_PORT,
                          tls=kubeletapi.server_tls(cert=cert, key=key, ca_file=cfg.ca_file))
    log.info("agent %s running", cfg.node_name)
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await agent_api.stop()
        await status.stop()
        await dns.stop()
        await client.close()


async def make_runtime(cfg: AgentConfig) -> ProcessRuntime:
    """The process runtime, or the docker one over the node's engine (started
    here, with the node images, unless ``docker_host`` names one)."""
    state = cfg.state_dir / "runtime"
    if cfg.runtime != "docker":
        return ProcessRuntime(state_dir=state, cgroups=node_cgroups(cfg))
    url = cfg.docker_host
    if not url:
        engine = Engine(state=cfg.state_dir / DOCKER_DIR, netns=None)
        await asyncio.to_thread(engine.start)
        added = await asyncio.to_thread(engine.ensure_images, bin_dir=Path(sys.executable).parent)
        log.info("docker engine %s up%s", engine.url, f", images {added} added" if added else "")
        url = engine.url
    # The engine gives one cgroup parent for every controller.
    return DockerRuntime(state_dir=state, engine_url=url,
                         cgroups=node_cgroups(cfg, absolute=True))


def runtime_info(runtime: ProcessRuntime) -> registration.RuntimeInfo:
    if isinstance(runtime, DockerRuntime):
        return registration.RuntimeInfo(f"docker://{runtime.version()}", runtime.list_images)
    return registration.RuntimeInfo(registration.PROCESS_RUNTIME_VERSION, None)


def node_cgroups(cfg: AgentConfig, *, absolute: bool = False) -> Hierarchy | None:
    """The node's cgroups, ``netplane/<node>`` by default (nodes of a lab
    share one kernel: each keeps its pods apart); None where the agent may
    not make them (not root, no usable hierarchy)."""
    if os.geteuid() != 0:
        return None
    name, file = cfg.cgroup_root or f"netplane/{cfg.node_name}", cfg.state_dir / cgroups.RECORD_FILE
    try:
        found = cgroups.recorded(file)
        if absolute:  # the same folders every time: nothing to keep
            found = Hierarchy.detect(name, absolute=True)
        elif found is None or found.name != name:
            found = Hierarchy.detect(name)
        if found is not None:
            cgroups.record(found, file)
    except OSError as e:
        log.warning("no cgroups for containers: %s", e)
        return None
    if found is None:
        log.warning("no cgroups for containers: neither v1 cpu and memory nor v2 offers them")
    return found


def run(cfg: AgentConfig) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    # The node's DNS server shares this loop: uvloop's per-datagram cost is
    # what the DNS figures are measured on.
    with contextlib.suppress(KeyboardInterrupt), \
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
