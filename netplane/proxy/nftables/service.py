"""nftables mode: what one service port puts into the table.

A service port contributes *items*: elements of the global maps (see
``layout``), chains, and sets. Most service ports contribute only map
elements plus a reference to a chain shared by every service port of the
same shape (``cluster-2``: "ClusterIP with two endpoints"); only
``sessionAffinity: ClientIP`` gets chains and sets of its own, since it has
to remember per client which endpoint it chose. Pure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.model import EndpointInfo, ServicePortInfo, ServicePortName, is_ipv4
from netplane.proxy.naming import hash16
from netplane.proxy.nftables.layout import Chain, Map, Pool, endpoint_key, endpoint_map

# Pseudo containers for items that are objects rather than map elements.
CHAINS = "@chain"
SETS = "@set"

# (container, key, value): an element ``key : value`` of map ``container``
# (value "" for sets), a chain ``key`` whose rules are ``value`` (one per
# line), or a set ``key`` declared as ``value``.
Item = tuple[str, str, str]

_MASQ = f"jump {Chain.MARK_FOR_MASQUERADE}"
_REJECT = f"goto {Chain.REJECT}"


def port_hash(spn: ServicePortName) -> str:
    """Stable name part for one service port (kube-proxy's portProtoHash)."""
    return hash16(f"{spn}{spn.protocol.lower()}")


def _pick(pool: Pool, proto: str, n: int) -> str:
    return (f"dnat ip to {endpoint_key(pool, proto)} . numgen random mod {n} "
            f"map @{endpoint_map(pool, proto)}")


def _local_policy(cidr: str, to_cluster: str, to_local: str) -> str:
    """Rules for external traffic under ``externalTrafficPolicy: Local``.

    Pods and the node itself are not "external": like kube-proxy, they go to
    any endpoint (the node's own traffic masqueraded so replies return)."""
    return "\n".join((f"ip saddr {cidr} {to_cluster}",
                      f"fib saddr type local {_MASQ}",
                      f"fib saddr type local {to_cluster}",
                      to_local))


_SHAPE = re.compile(r"^(cluster|external|nodeport|external-local|nodeport-local)"
                    r"-(tcp|udp|sctp)-(\d+)(?:-(\d+))?$")


@functools.lru_cache(maxsize=4096)
def shape_chain(name: str, config: ProxyConfig) -> str:
    """Rules of a shared chain, from its name alone (``cluster-tcp-2``,
    ``nodeport-local-udp-3-1``: kind, protocol, endpoint counts), so every
    service port that uses it renders it identically."""
    found = _SHAPE.match(name)
    if found is None:
        raise ValueError(f"not a shared chain name: {name}")
    kind, proto, n, m = found[1], found[2], int(found[3]), int(found[4] or 0)
    cidr = config.cluster_cidr
    if kind == "cluster":
        return f"ip saddr != {cidr} {_MASQ}\n" + _pick(Pool.SERVICE, proto, n)
    if kind in ("external", "nodeport"):
        pool = Pool.SERVICE if kind == "external" else Pool.NODEPORT
        return f"{_MASQ}\n" + _pick(pool, proto, n)
    cluster, local = ((Pool.SERVICE, Pool.SERVICE_LOCAL) if kind == "external-local"
                      else (Pool.NODEPORT, Pool.NODEPORT_LOCAL))
    return _local_policy(cidr, _pick(cluster, proto, n),
                         _pick(local, proto, m) if m else "drop")


def _bucket_items(pool: Pool, proto: str, key: str,
                  eps: Sequence[EndpointInfo]) -> list[Item]:
    m = endpoint_map(pool, proto)
    return [(m, f"{key} . {i}", f"{ep.ip} . {ep.port}") for i, ep in enumerate(eps)]


class _Builder:
    """Collects the items of one service port."""

    def __init__(self, info: ServicePortInfo, sel: model.Selection,
                 config: ProxyConfig) -> None:
        self.info = info
        self.config = config
        self.cluster = sel.cluster
        self.local = sel.local
        proto = info.protocol.lower()
        self.proto = proto
        self.vip = f"{info.cluster_ip} . {proto} . {info.port}"
        ext_ips = [ip for ip in (*info.external_ips, *info.load_balancer_ips) if is_ipv4(ip)]
        self.externals = [f"{ip} . {proto} . {info.port}" for ip in ext_ips]
        # Endpoint maps are per protocol, so their keys leave it out.
        self.external_keys = [f"{ip} . {info.port}" for ip in ext_ips]
        self.nodeport = f"{proto} . {info.node_port}" if info.node_port else ""
        self.items: list[Item] = [(Map.CLUSTER_IPS, info.cluster_ip, "")]

    @property
    def internal(self) -> Sequence[EndpointInfo]:
        return self.local if self.info.internal_policy_local else self.cluster

    def shared(self, name: str) -> str:
        self.items.append((CHAINS, name, shape_chain(name, self.config)))
        return f"goto {name}"

    def firewall(self) -> None:
        info = self.info
        if not info.load_balancer_source_ranges:
            return
        for ip in info.load_balancer_ips:
            if not is_ipv4(ip):
                continue
            tup = f"{ip} . {self.proto} . {info.port}"
            self.items.append((Map.FIREWALL_IPS, tup, ""))
            self.items += [(Map.FIREWALL_ALLOW, f"{tup} . {r}", "")
                           for r in info.load_balancer_source_ranges]

    def no_endpoints(self) -> None:
        self.items += [(Map.NO_ENDPOINT_SERVICES, t, _REJECT) for t in (self.vip, *self.externals)]
        if self.nodeport:
            self.items.append((Map.NO_ENDPOINT_NODEPORTS, self.nodeport, _REJECT))

    def hairpin(self) -> None:
        ips = sorted({ep.ip for ep in (*self.cluster, *self.local)})
        self.items += [(Map.HAIRPIN, f"{ip} . {ip}", "") for ip in ips]

    def by_maps(self) -> None:
        """The common case: shared chains pick from the global endpoint maps."""
        info, proto, internal = self.info, self.proto, self.internal
        if internal:
            self.items.append((Map.SERVICE_IPS, self.vip,
                               self.shared(f"cluster-{proto}-{len(internal)}")))
            self.items += _bucket_items(Pool.SERVICE, proto, f"{info.cluster_ip} . {info.port}",
                                        internal)
        else:
            self.items.append((Map.NO_ENDPOINT_SERVICES, self.vip, "drop"))
        n, m = len(self.cluster), len(self.local)
        local = info.external_policy_local
        shape = f"{proto}-{n}-{m}" if local else f"{proto}-{n}"
        if self.externals:
            verdict = self.shared(f"external-local-{shape}" if local else f"external-{shape}")
            for t, key in zip(self.externals, self.external_keys, strict=True):
                self.items.append((Map.SERVICE_IPS, t, verdict))
                self.items += _bucket_items(Pool.SERVICE, proto, key, self.cluster)
                if local:
                    self.items += _bucket_items(Pool.SERVICE_LOCAL, proto, key, self.local)
        if self.nodeport:
            verdict = self.shared(f"nodeport-local-{shape}" if local else f"nodeport-{shape}")
            self.items.append((Map.SERVICE_NODEPORTS, self.nodeport, verdict))
            key = str(info.node_port)
            self.items += _bucket_items(Pool.NODEPORT, proto, key, self.cluster)
            if local:
                self.items += _bucket_items(Pool.NODEPORT_LOCAL, proto, key, self.local)


def affinity_set(spn: ServicePortName, ep: EndpointInfo, seconds: int) -> str:
    """Name of the set of clients stuck to one endpoint (timeout in the name,
    so a changed timeout is a new set rather than a clash)."""
    return "affinity-" + hash16(f"{spn}{spn.protocol.lower()}{ep.address}/{seconds}")


def endpoint_chain(spn: ServicePortName, ep: EndpointInfo) -> str:
    return "endpoint-" + hash16(f"{spn}{spn.protocol.lower()}{ep.address}")


def _affinity_pool(b: _Builder, name: str, eps: Sequence[EndpointInfo]) -> str:
    """A chain that sends known clients to their endpoint, others at random."""
    spn, seconds = b.info.key, b.info.affinity_seconds
    rules: list[str] = []
    targets: list[str] = []
    for ep in eps:
        chain, aff = endpoint_chain(spn, ep), affinity_set(spn, ep, seconds)
        targets.append(chain)
        rules.append(f"ip saddr @{aff} goto {chain}")
        b.items.append((SETS, aff, f"type ipv4_addr ; flags dynamic,timeout ; "
                                   f"timeout {seconds}s"))
        b.items.append((CHAINS, chain, f"update @{aff} {{ ip saddr }}\n"
                                       f"meta l4proto {b.proto} dnat ip to {ep.ip}:{ep.port}"))
    if len(targets) == 1:
        rules.append(f"goto {targets[0]}")
    else:
        # Anonymous maps are slow to load in bulk; affinity services are few.
        vmap = ", ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
        rules.append(f"numgen random mod {len(targets)} vmap {{ {vmap} }}")
    b.items.append((CHAINS, name, "\n".join(rules)))
    return f"goto {name}"


def _by_affinity(b: _Builder) -> None:
    """``sessionAffinity: ClientIP``: chains of this service port's own."""
    h = port_hash(b.info.key)
    cidr = b.config.cluster_cidr
    to_cluster = _affinity_pool(b, f"pool-{h}-cluster", b.cluster)
    uses_local = b.info.internal_policy_local or b.info.external_policy_local
    to_local = (_affinity_pool(b, f"pool-{h}-local", b.local) if uses_local and b.local
                else "drop")
    internal = to_local if b.info.internal_policy_local else to_cluster
    if b.internal:
        svc = f"service-{h}"
        b.items.append((CHAINS, svc, f"ip saddr != {cidr} {_MASQ}\n{internal}"))
        b.items.append((Map.SERVICE_IPS, b.vip, f"goto {svc}"))
    else:
        b.items.append((Map.NO_ENDPOINT_SERVICES, b.vip, "drop"))
    if not (b.externals or b.nodeport):
        return
    ext = f"external-{h}"
    body = (_local_policy(cidr, to_cluster, to_local) if b.info.external_policy_local
            else f"{_MASQ}\n{to_cluster}")
    b.items.append((CHAINS, ext, body))
    b.items += [(Map.SERVICE_IPS, t, f"goto {ext}") for t in b.externals]
    if b.nodeport:
        b.items.append((Map.SERVICE_NODEPORTS, b.nodeport, f"goto {ext}"))


def service_items(info: ServicePortInfo, eps: list[EndpointInfo], *, config: ProxyConfig,
                  node_name: str) -> tuple[Item, ...]:
    """Everything one service port puts in the table; empty unless IPv4."""
    if not is_ipv4(info.cluster_ip):
        return ()
    sel = model.select([ep for ep in eps if is_ipv4(ep.ip)], node_name=node_name)
    b = _Builder(info, sel, config)
    b.firewall()
    if not b.cluster:
        b.no_endpoints()
        return tuple(b.items)
    b.hairpin()
    if info.affinity_seconds:
        _by_affinity(b)
    else:
        b.by_maps()
    return tuple(b.items)
