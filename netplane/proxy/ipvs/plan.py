"""IPVS mode, pure part one: the state a node should have, from the service map.

``plan(service_map, ...)`` turns Service ports and their endpoints into the
IPVS virtual servers (one per address, port and protocol: ClusterIP, each
node address x NodePort, load-balancer and external IPs), their real
servers, the addresses to bind on the node's service interface, and the
members of every ipset that the constant iptables rules match against
(``rules``). No kernel is touched here.

Weights: every endpoint chosen by :func:`model.select` (the ready ones, or
the serving terminating ones when none is ready) gets weight 1, so that
the terminating fallback really carries new connections; weight 0 is used
only while a removed real server drains (see ``diff``).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.model import EndpointInfo, Protocol, ServicePortInfo

DEFAULT_SCHEDULER = "rr"
LOCALHOST = "127.0.0.1"
DNS_PORT = 53


@dataclass(frozen=True, order=True)
class VirtualServerKey:
    """What identifies a virtual server in the kernel."""

    address: str
    port: int
    protocol: Protocol

    def __str__(self) -> str:
        return f"{self.protocol} {self.address}:{self.port}"


@dataclass(frozen=True)
class VirtualServer:
    """One IPVS virtual server; ``persistence`` 0 means no session affinity."""

    key: VirtualServerKey
    scheduler: str = DEFAULT_SCHEDULER
    persistence: int = 0
    # Which service port it serves; for people reading ``describe``, not the kernel.
    service: str = field(default="", compare=False)

    def same_kernel_settings(self, other: VirtualServer) -> bool:
        return (self.scheduler, self.persistence) == (other.scheduler, other.persistence)


@dataclass(frozen=True, order=True)
class RealServer:
    """One real server of a virtual server, with the kernel's connection counters."""

    address: str
    port: int
    weight: int = 1
    active_connections: int = field(default=0, compare=False)
    inactive_connections: int = field(default=0, compare=False)

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def connections(self) -> int:
        return self.active_connections + self.inactive_connections


@dataclass(frozen=True)
class DesiredService:
    """A virtual server with the real servers it should have."""

    server: VirtualServer
    real_servers: frozenset[RealServer]


class IPSetName(enum.StrEnum):
    """Our ipsets (kube-proxy's IPVS-mode sets, with our prefix)."""

    CLUSTER_IP = "NP-CLUSTER-IP"
    LOOP_BACK = "NP-LOOP-BACK"
    EXTERNAL_IP = "NP-EXTERNAL-IP"
    EXTERNAL_IP_LOCAL = "NP-EXTERNAL-IP-LOCAL"
    LOAD_BALANCER = "NP-LOAD-BALANCER"
    LOAD_BALANCER_LOCAL = "NP-LOAD-BALANCER-LOCAL"
    LOAD_BALANCER_FW = "NP-LOAD-BALANCER-FW"
    LOAD_BALANCER_SOURCE_CIDR = "NP-LOAD-BALANCER-SOURCE-CIDR"
    NODE_PORT_TCP = "NP-NODE-PORT-TCP"
    NODE_PORT_LOCAL_TCP = "NP-NODE-PORT-LOCAL-TCP"
    NODE_PORT_UDP = "NP-NODE-PORT-UDP"
    NODE_PORT_LOCAL_UDP = "NP-NODE-PORT-LOCAL-UDP"
    NODE_PORT_SCTP = "NP-NODE-PORT-SCTP-HASH"
    NODE_PORT_LOCAL_SCTP = "NP-NODE-PORT-LOCAL-SCTP-HASH"
    HEALTH_CHECK_NODE_PORT = "NP-HEALTH-CHECK-NODE-PORT"
    NO_ENDPOINTS = "NP-NO-ENDPOINTS"
    NO_LOCAL_ENDPOINTS = "NP-NO-LOCAL-ENDPOINTS"
    IPVS_IPS = "NP-IPVS-IPS"


_NODE_PORT_SETS: dict[tuple[Protocol, bool], IPSetName] = {
    (Protocol.TCP, False): IPSetName.NODE_PORT_TCP,
    (Protocol.TCP, True): IPSetName.NODE_PORT_LOCAL_TCP,
    (Protocol.UDP, False): IPSetName.NODE_PORT_UDP,
    (Protocol.UDP, True): IPSetName.NODE_PORT_LOCAL_UDP,
    (Protocol.SCTP, False): IPSetName.NODE_PORT_SCTP,
    (Protocol.SCTP, True): IPSetName.NODE_PORT_LOCAL_SCTP,
}


@dataclass
class IPVSPlan:
    """Everything one sync should make true in the kernel."""

    services: dict[VirtualServerKey, DesiredService] = field(default_factory=dict)
    bound_addresses: set[str] = field(default_factory=set)
    ipsets: dict[IPSetName, set[str]] = field(
        default_factory=lambda: {s: set() for s in IPSetName})

    def add(self, name: IPSetName, entry: str) -> None:
        self.ipsets[name].add(entry)


def ip_port(ip: str, protocol: Protocol, port: int) -> str:
    """An ``hash:ip,port`` member, e.g. ``10.96.0.1,tcp:443``."""
    return f"{ip},{protocol.lower()}:{port}"


def _is_ipv4(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False


@dataclass(frozen=True)
class _Context:
    """Per-sync inputs that do not change from one service port to the next."""

    config: ProxyConfig
    node_name: str
    node_ips: tuple[str, ...]
    scheduler: str


def _real_servers(eps: Iterable[EndpointInfo]) -> frozenset[RealServer]:
    return frozenset(RealServer(ep.ip, ep.port, 1) for ep in eps if _is_ipv4(ep.ip))


def _add_service(plan: IPVSPlan, ctx: _Context, info: ServicePortInfo, key: VirtualServerKey,
                 real_servers: frozenset[RealServer]) -> None:
    # Two Services claiming one address and port: the first (sorted) keeps it.
    if key in plan.services:
        return
    server = VirtualServer(key, ctx.scheduler, info.affinity_seconds, str(info.key))
    plan.services[key] = DesiredService(server, real_servers)


def _mark_unusable(plan: IPVSPlan, entries: Iterable[str], *, has_any: bool) -> None:
    # No endpoint at all: refuse at once. Endpoints only elsewhere under a
    # Local policy: drop, as kube-proxy does, so clients retry another node.
    target = IPSetName.NO_LOCAL_ENDPOINTS if has_any else IPSetName.NO_ENDPOINTS
    for entry in entries:
        plan.add(target, entry)


def _plan_cluster_ip(plan: IPVSPlan, ctx: _Context, info: ServicePortInfo,
                     sel: model.Selection) -> None:
    ip, proto = info.cluster_ip, info.protocol
    if ip in ctx.config.notrack_dns_ips and info.port == DNS_PORT:
        return  # answered by the node-local DNS server bound on that address
    chosen = sel.local if info.internal_policy_local else sel.cluster
    key = VirtualServerKey(ip, info.port, proto)
    _add_service(plan, ctx, info, key, _real_servers(chosen))
    plan.bound_addresses.add(ip)
    plan.add(IPSetName.CLUSTER_IP, ip_port(ip, proto, info.port))
    if not chosen:
        _mark_unusable(plan, [ip_port(ip, proto, info.port)], has_any=bool(sel.cluster))


def _plan_node_port(plan: IPVSPlan, ctx: _Context, info: ServicePortInfo,
                    real_servers: frozenset[RealServer]) -> list[str]:
    proto, local = info.protocol, info.external_policy_local
    entries: list[str] = []
    for ip in (*ctx.node_ips, LOCALHOST):
        _add_service(plan, ctx, info, VirtualServerKey(ip, info.node_port, proto), real_servers)
        entries.append(ip_port(ip, proto, info.node_port))
        if proto == Protocol.SCTP:
            plan.add(_NODE_PORT_SETS[(proto, local)], entries[-1])
    if proto != Protocol.SCTP:
        plan.add(_NODE_PORT_SETS[(proto, local)], str(info.node_port))
    return entries


def _plan_addresses(plan: IPVSPlan, ctx: _Context, info: ServicePortInfo, ips: Iterable[str],
                    sets: tuple[IPSetName, IPSetName],
                    real_servers: frozenset[RealServer]) -> list[str]:
    """External or load-balancer IPs: bound locally, each a virtual server."""
    proto, local = info.protocol, info.external_policy_local
    entries: list[str] = []
    for ip in ips:
        if not _is_ipv4(ip):
            continue
        _add_service(plan, ctx, info, VirtualServerKey(ip, info.port, proto), real_servers)
        plan.bound_addresses.add(ip)
        entries.append(ip_port(ip, proto, info.port))
        plan.add(sets[1] if local else sets[0], entries[-1])
    return entries


def _plan_firewall(plan: IPVSPlan, info: ServicePortInfo, lb_entries: list[str]) -> None:
    if not info.load_balancer_source_ranges:
        return
    for entry in lb_entries:
        plan.add(IPSetName.LOAD_BALANCER_FW, entry)
        for cidr in info.load_balancer_source_ranges:
            plan.add(IPSetName.LOAD_BALANCER_SOURCE_CIDR, f"{entry},{cidr}")


def _plan_external(plan: IPVSPlan, ctx: _Context, info: ServicePortInfo,
                   sel: model.Selection) -> None:
    chosen = sel.local if info.external_policy_local else sel.cluster
    rs = _real_servers(chosen)
    entries = _plan_addresses(plan, ctx, info, info.external_ips,
                              (IPSetName.EXTERNAL_IP, IPSetName.EXTERNAL_IP_LOCAL), rs)
    lb = _plan_addresses(plan, ctx, info, info.load_balancer_ips,
                         (IPSetName.LOAD_BALANCER, IPSetName.LOAD_BALANCER_LOCAL), rs)
    _plan_firewall(plan, info, lb)
    entries += lb
    if info.node_port:
        entries += _plan_node_port(plan, ctx, info, rs)
    if info.external_policy_local and info.health_check_node_port:
        plan.add(IPSetName.HEALTH_CHECK_NODE_PORT, str(info.health_check_node_port))
    if not chosen:
        _mark_unusable(plan, entries, has_any=bool(sel.cluster))


def _plan_loop_back(plan: IPVSPlan, ctx: _Context, info: ServicePortInfo,
                    sel: model.Selection) -> None:
    # Hairpin only happens for endpoints on this node (unknown node: assume it).
    for ep in set(sel.cluster) | set(sel.local):
        if _is_ipv4(ep.ip) and ep.node_name in ("", ctx.node_name):
            plan.add(IPSetName.LOOP_BACK, f"{ip_port(ep.ip, info.protocol, ep.port)},{ep.ip}")


def plan(service_map: model.ServiceMap, config: ProxyConfig, *, node_name: str,
         node_ips: Iterable[str], scheduler: str = DEFAULT_SCHEDULER) -> IPVSPlan:
    """The IPVS state, bound addresses and ipset members for this node."""
    ctx = _Context(config, node_name, tuple(sorted(ip for ip in node_ips if _is_ipv4(ip))),
                   scheduler)
    out = IPVSPlan()
    for spn in sorted(service_map):
        info, eps = service_map[spn]
        if not _is_ipv4(info.cluster_ip):
            continue  # IPv4 only, like the iptables mode
        sel = model.select(eps, node_name=node_name)
        _plan_cluster_ip(out, ctx, info, sel)
        _plan_external(out, ctx, info, sel)
        _plan_loop_back(out, ctx, info, sel)
    dns_only = set(config.notrack_dns_ips)
    for ip in out.bound_addresses - dns_only:
        out.add(IPSetName.IPVS_IPS, ip)
    return out
