"""Stale UDP conntrack entries after endpoint changes (any proxy mode).

UDP has no connection end, so a client that keeps sending from one port
keeps its conntrack entry, and with it the endpoint it was DNATed to, even
after that endpoint is gone (kubernetes issues #19029, #126130). The same
holds the other way: packets sent while a service had no endpoints leave
entries that bypass the rules added later. As kube-proxy does, after a
sync we delete the entries of removed endpoints (by service address and
DNAT target) and, for a service port that just got its first endpoint, all
entries to it. ``stale_udp_flows`` is pure: it returns ``conntrack -D``
arguments.
"""

from __future__ import annotations

from collections.abc import Iterable

from netplane.proxy import model
from netplane.proxy.model import Protocol, ServiceMap, ServicePortInfo, ServicePortName

Flow = tuple[str, ...]


def _addresses(info: ServicePortInfo) -> list[str]:
    """Every address clients reach this service port on, besides NodePorts."""
    return [info.cluster_ip, *info.external_ips, *info.load_balancer_ips]


def _in_use(entry: tuple[ServicePortInfo, list[model.EndpointInfo]] | None,
            node_name: str) -> set[str]:
    if entry is None:
        return set()
    sel = model.select(entry[1], node_name=node_name)
    return {ep.ip for ep in (*sel.cluster, *sel.local)}


def _removed(info: ServicePortInfo, gone: set[str]) -> list[Flow]:
    flows: list[Flow] = []
    for ip in sorted(gone):
        flows += [("-p", "udp", "--orig-dst", vip, "--dst-nat", ip) for vip in _addresses(info)]
        if info.node_port:
            flows.append(("-p", "udp", "--orig-port-dst", str(info.node_port), "--dst-nat", ip))
    return flows


def _first_endpoints(info: ServicePortInfo) -> list[Flow]:
    flows: list[Flow] = [("-p", "udp", "--orig-dst", vip, "--orig-port-dst", str(info.port))
                         for vip in _addresses(info)]
    if info.node_port:
        flows.append(("-p", "udp", "--orig-port-dst", str(info.node_port)))
    return flows


def stale_udp_flows(prev: ServiceMap, cur: ServiceMap, *, node_name: str,
                    changed: Iterable[ServicePortName] | None = None) -> list[Flow]:
    """``conntrack -D`` arguments for the UDP entries made stale by going from
    ``prev`` to ``cur`` (``changed``, if given, limits the comparison)."""
    if changed is None:
        changed = [k for k in {*prev, *cur} if prev.get(k) != cur.get(k)]
    flows: list[Flow] = []
    for spn in sorted(set(changed)):
        if spn.protocol != Protocol.UDP:
            continue
        before, after = prev.get(spn), cur.get(spn)
        old_ips, new_ips = _in_use(before, node_name), _in_use(after, node_name)
        if before is not None and old_ips - new_ips:
            flows += _removed(before[0], old_ips - new_ips)
        if after is not None and new_ips and not old_ips:
            flows += _first_endpoints(after[0])
    return list(dict.fromkeys(flows))
