"""The rules of one service port in iptables mode (pure).

``render_port`` turns a service port and its endpoints into a
``PortRules``: the nat chains the port owns (``NP-SVC/SVL/EXT/FW/SEP``) and
the lines it adds to the shared dispatch chains (nat ``NP-SERVICES`` and
``NP-NODEPORTS``; filter ``NP-SERVICES``, ``NP-EXTERNAL-SERVICES``,
``NP-NODEPORTS``, ``NP-PROXY-FIREWALL``). Keeping the two apart is what
lets a partial sync rewrite one port's chains and touch the shared chains
only where its lines changed. The chain roles are kube-proxy's:

* cluster IP -> the internal chain (SVC, or SVL under internalTrafficPolicy
  Local), which first marks off-cluster sources for masquerade;
* NodePort, LoadBalancer IP, external IP -> EXT (through FW when the
  LoadBalancer has source ranges); EXT masquerades under the Cluster policy,
  and under the Local policy sends pods and the node itself to SVC (they
  are not subject to the policy) and everyone else to SVL, unmasqueraded;
* SEP: hairpin masquerade, affinity bookkeeping, DNAT.

Nothing usable -> REJECT in filter; usable endpoints but none for this
kind of traffic under a Local policy -> DROP in filter (the packet was not
DNATed, so the filter rule on the original destination catches it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.chains import (
    EXTERNAL_SERVICES_CHAIN,
    MARK_MASQ_CHAIN,
    NODEPORTS_CHAIN,
    PROXY_FIREWALL_CHAIN,
    SERVICES_CHAIN,
    endpoint_chain,
    external_chain,
    firewall_chain,
    is_ipv4,
    local_chain,
    probability,
    rule,
    service_chain,
)
from netplane.proxy.model import EndpointInfo, ServicePortInfo


@dataclass
class PortRules:
    """Everything one service port contributes to the rule set."""

    nat_chains: dict[str, list[str]] = field(default_factory=dict)
    nat_shared: list[str] = field(default_factory=list)
    filter_shared: list[str] = field(default_factory=list)
    # The endpoints the rules can send to, for conntrack clean-up and inspection.
    cluster: tuple[EndpointInfo, ...] = ()
    local: tuple[EndpointInfo, ...] = ()

    @property
    def rule_count(self) -> int:
        own = sum(len(r) for r in self.nat_chains.values())
        return own + len(self.nat_shared) + len(self.filter_shared)


class _PortWriter:
    """Builds one PortRules; holds the strings every rule of the port repeats."""

    def __init__(self, info: ServicePortInfo, config: ProxyConfig) -> None:
        self.info = info
        self.config = config
        self.spn = info.key
        self.name = str(self.spn)
        proto = info.protocol.lower()
        self.proto = f"-p {proto} -m {proto}"
        self.dport = f"--dport {info.port}"
        self.out = PortRules()

    def dest(self, ip: str) -> str:
        return f"{self.proto} -d {ip}/32 {self.dport}"

    def chain(self, chain: str) -> list[str]:
        return self.out.nat_chains.setdefault(chain, [])

    def endpoint_jumps(self, chain: str, eps: tuple[EndpointInfo, ...]) -> None:
        rules = self.chain(chain)
        seconds = self.info.affinity_seconds
        if seconds:
            # ClientIP affinity: a source seen recently goes back to its endpoint.
            for ep in eps:
                sep = endpoint_chain(self.spn, ep.address)
                rules.append(rule(chain, f"{self.name} -> {ep.address}",
                                  f"-m recent --name {sep} --rcheck --seconds {seconds} "
                                  f"--reap -j {sep}"))
        n = len(eps)
        for i, ep in enumerate(eps):
            left = n - i
            pick = f"-m statistic --mode random --probability {probability(left)} " \
                if left > 1 else ""
            rules.append(rule(chain, f"{self.name} -> {ep.address}",
                              f"{pick}-j {endpoint_chain(self.spn, ep.address)}"))

    def endpoint_chain(self, ep: EndpointInfo) -> None:
        sep = endpoint_chain(self.spn, ep.address)
        rules = self.chain(sep)
        # Hairpin: a backend reaching its own service must be masqueraded, or
        # it would see a reply from itself and drop it.
        rules.append(rule(sep, self.name, f"-s {ep.ip}/32 -j {MARK_MASQ_CHAIN}"))
        recent = f"-m recent --name {sep} --set " if self.info.affinity_seconds else ""
        rules.append(rule(sep, self.name,
                          f"{self.proto} {recent}-j DNAT --to-destination {ep.address}"))

    def masquerade_off_cluster(self, chain: str) -> None:
        # Traffic from outside the pod network (nodes, hosts) needs SNAT so
        # that replies come back through this node's conntrack entry.
        self.chain(chain).append(rule(
            chain, f"{self.name} cluster IP",
            f"{self.dest(self.info.cluster_ip)} ! -s {self.config.cluster_cidr} "
            f"-j {MARK_MASQ_CHAIN}"))

    def nat_shared(self, chain: str, comment: str, args: str) -> None:
        self.out.nat_shared.append(rule(chain, comment, args))

    def filter_shared(self, chain: str, comment: str, args: str) -> None:
        self.out.filter_shared.append(rule(chain, comment, args))


def _select(info: ServicePortInfo, eps: list[EndpointInfo],
            node_name: str) -> model.Selection:
    return model.select([e for e in eps if is_ipv4(e.ip)], node_name=node_name)


def render_port(info: ServicePortInfo, eps: list[EndpointInfo], *, config: ProxyConfig,
                node_name: str) -> PortRules:
    """All rules of one service port on node ``node_name``."""
    w = _PortWriter(info, config)
    sel = _select(info, eps, node_name)
    w.out.cluster, w.out.local = sel.cluster, sel.local
    spn = info.key
    # Local endpoints are a subset of usable ones, so "any" is the cluster set.
    uses_cluster = not info.internal_policy_local or info.has_external
    uses_local = info.internal_policy_local or (info.has_external and info.external_policy_local)
    svc = service_chain(spn) if uses_cluster and sel.cluster else None
    svl = local_chain(spn) if uses_local and sel.local else None
    internal = svl if info.internal_policy_local else svc
    if svc is not None:
        w.chain(svc)
    if svl is not None:
        w.chain(svl)
    _render_cluster_ip(w, internal, has_any=bool(sel.cluster))
    if info.has_external:
        _render_external(w, svc=svc, svl=svl)
    if svc is not None:
        w.endpoint_jumps(svc, sel.cluster)
    if svl is not None:
        w.endpoint_jumps(svl, sel.local)
    seen: set[str] = set()
    for ep in (sel.cluster if svc else ()) + (sel.local if svl else ()):
        if ep.address not in seen:
            seen.add(ep.address)
            w.endpoint_chain(ep)
    return w.out


def _no_endpoints(w: _PortWriter, *, has_any: bool) -> tuple[str, str]:
    """(comment, target) of the filter rule for traffic nothing here can serve:
    refused when the port has no endpoint at all, dropped when it only lacks
    local ones (kube-proxy's choice: a Local policy never falls back)."""
    if not has_any:
        return f"{w.name} has no endpoints", "REJECT"
    return f"{w.name} has no local endpoints", "DROP"


def _render_cluster_ip(w: _PortWriter, internal: str | None, *, has_any: bool) -> None:
    vip = w.dest(w.info.cluster_ip)
    if internal is None:
        comment, target = _no_endpoints(w, has_any=has_any)
        w.filter_shared(SERVICES_CHAIN, comment, f"{vip} -j {target}")
        return
    w.masquerade_off_cluster(internal)
    w.nat_shared(SERVICES_CHAIN, f"{w.name} cluster IP", f"{vip} -j {internal}")


def _render_external(w: _PortWriter, *, svc: str | None, svl: str | None) -> None:
    info, spn = w.info, w.spn
    has_any = svc is not None
    ext = external_chain(spn)
    if has_any:
        _render_ext_chain(w, ext, svc=svc, svl=svl)
    served = svl is not None if info.external_policy_local else has_any
    comment, target = _no_endpoints(w, has_any=has_any)
    for ip in info.external_ips:
        if has_any:
            w.nat_shared(SERVICES_CHAIN, f"{w.name} external IP", f"{w.dest(ip)} -j {ext}")
        if not served:
            w.filter_shared(EXTERNAL_SERVICES_CHAIN, comment, f"{w.dest(ip)} -j {target}")
    _render_load_balancer(w, ext, has_any=has_any, served=served)
    if info.node_port:
        ports = f"{w.proto} --dport {info.node_port}"
        if has_any:
            w.nat_shared(NODEPORTS_CHAIN, w.name, f"{ports} -j {ext}")
        if not served:
            w.filter_shared(EXTERNAL_SERVICES_CHAIN, comment,
                            f"-m addrtype --dst-type LOCAL {ports} -j {target}")
    if info.health_check_node_port and info.external_policy_local:
        w.filter_shared(NODEPORTS_CHAIN, f"{w.name} health check node port",
                        f"-p tcp -m tcp --dport {info.health_check_node_port} -j ACCEPT")


def _render_ext_chain(w: _PortWriter, ext: str, *, svc: str | None, svl: str | None) -> None:
    rules = w.chain(ext)
    n = w.name
    if not w.info.external_policy_local:
        # The endpoint may be on another node: SNAT so the reply comes back here.
        rules.append(rule(ext, f"masquerade traffic for {n} external destinations",
                          f"-j {MARK_MASQ_CHAIN}"))
        rules.append(rule(ext, f"{n} external destinations", f"-j {svc}"))
        return
    # Pods and the node itself are not subject to the external policy: they
    # reach every endpoint, as if they had gone out to a load balancer and back.
    rules.append(rule(ext, f"pod traffic for {n} external destinations",
                      f"-s {w.config.cluster_cidr} -j {svc}"))
    rules.append(rule(ext, f"masquerade LOCAL traffic for {n} external destinations",
                      f"-m addrtype --src-type LOCAL -j {MARK_MASQ_CHAIN}"))
    rules.append(rule(ext, f"route LOCAL traffic for {n} external destinations",
                      f"-m addrtype --src-type LOCAL -j {svc}"))
    if svl is not None:
        # The client's address is kept: no masquerade on this path.
        rules.append(rule(ext, f"{n} local endpoints", f"-j {svl}"))


def _render_load_balancer(w: _PortWriter, ext: str, *, has_any: bool, served: bool) -> None:
    info = w.info
    ranges = info.load_balancer_source_ranges
    fw = firewall_chain(w.spn)
    if ranges and has_any and info.load_balancer_ips:
        rules = w.chain(fw)
        for cidr in ranges:
            rules.append(rule(fw, f"{w.name} loadbalancer IP", f"-s {cidr} -j {ext}"))
    comment, target = _no_endpoints(w, has_any=has_any)
    for ip in info.load_balancer_ips:
        if has_any:
            w.nat_shared(SERVICES_CHAIN, f"{w.name} loadbalancer IP",
                         f"{w.dest(ip)} -j {fw if ranges else ext}")
        if ranges:
            # What the FW chain let through is DNATed; the rest arrives here intact.
            w.filter_shared(PROXY_FIREWALL_CHAIN, f"{w.name} traffic not accepted by {fw}",
                            f"{w.dest(ip)} -j DROP")
        if not served:
            w.filter_shared(EXTERNAL_SERVICES_CHAIN, comment, f"{w.dest(ip)} -j {target}")
