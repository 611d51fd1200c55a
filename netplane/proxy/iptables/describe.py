"""What iptables mode programmed, per service port, for ``netplane routes`` (pure).

``describe_port`` turns a port's info and rendered rules into a JSON-shaped
dict: its addresses (cluster IP, NodePort, LoadBalancer and external IPs),
its endpoints with the chance each one is picked by cluster-internal and by
external traffic, affinity, traffic policies and the chains that carry it.
``kernel_mismatches`` compares an ``iptables-save`` of the kernel with the
document last applied, chain by chain (rule counts, not rule text: the
kernel prints rules in its own canonical spelling).
"""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.proxy.iptables.chains import (
    external_chain,
    firewall_chain,
    local_chain,
    service_chain,
)
from netplane.proxy.iptables.render import chain_rule_counts
from netplane.proxy.iptables.rules import PortRules
from netplane.proxy.model import EndpointInfo, Selection, ServicePortInfo


def _chance(ep: EndpointInfo, group: tuple[EndpointInfo, ...], used: bool) -> float:
    return round(1.0 / len(group), 6) if used and ep in group else 0.0


def _policy(local: bool) -> str:
    return "Local" if local else "Cluster"


def _endpoints(info: ServicePortInfo, rules: PortRules | Selection) -> list[Obj]:
    internal = rules.local if info.internal_policy_local else rules.cluster
    external = rules.local if info.external_policy_local else rules.cluster
    local_ips = {ep.address for ep in rules.local}
    out: list[Obj] = []
    for ep in sorted(set(rules.cluster) | set(rules.local)):
        out.append({
            "address": ep.address, "nodeName": ep.node_name, "ready": ep.ready,
            "serving": ep.serving, "terminating": ep.terminating,
            "local": ep.address in local_ips,
            "probability": _chance(ep, internal, True),
            "externalProbability": _chance(ep, external, info.has_external),
        })
    return out


def describe_port(info: ServicePortInfo, rules: PortRules) -> Obj:
    """One service port as programmed."""
    spn = info.key
    chains = {"service": service_chain(spn), "local": local_chain(spn),
              "external": external_chain(spn), "firewall": firewall_chain(spn)}
    out = describe_selection(info, rules)
    out["chains"] = {k: c for k, c in chains.items() if c in rules.nat_chains}
    out["rules"] = rules.rule_count
    return out


def describe_selection(info: ServicePortInfo, chosen: PortRules | Selection) -> Obj:
    """A service port's addresses, policies and endpoints with their chances,
    for any mode (``chosen`` holds the cluster and local endpoint choices)."""
    return {
        "service": f"{info.namespace}/{info.service_name}",
        "portName": info.port_name,
        "protocol": str(info.protocol),
        "type": str(info.service_type),
        "clusterIP": info.cluster_ip,
        "port": info.port,
        "nodePort": info.node_port or None,
        "externalIPs": list(info.external_ips),
        "loadBalancerIPs": list(info.load_balancer_ips),
        "loadBalancerSourceRanges": list(info.load_balancer_source_ranges),
        "sessionAffinitySeconds": info.affinity_seconds or None,
        "externalTrafficPolicy": _policy(info.external_policy_local),
        "internalTrafficPolicy": _policy(info.internal_policy_local),
        "healthCheckNodePort": info.health_check_node_port or None,
        "endpoints": _endpoints(info, chosen),
    }


def kernel_mismatches(saved: str, applied: str) -> list[str]:
    """Our chains whose rule count in the kernel differs from the applied
    document, as ``table/chain: kernel N, applied M``."""
    have = chain_rule_counts(saved)
    want = chain_rule_counts(applied)
    out: list[str] = []
    for key in sorted(set(have) | set(want)):
        if have.get(key) != want.get(key):
            table, chain = key
            out.append(f"{table}/{chain}: kernel {_count(have.get(key))}, "
                       f"applied {_count(want.get(key))}")
    return out


def _count(n: int | None) -> str:
    return "missing" if n is None else str(n)

