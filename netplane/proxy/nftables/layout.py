"""nftables mode: the fixed shape of our private table ``ip netplane``.

Everything the proxy programs lives in one table that nobody else writes
to, so set-up is ``add table`` and clean-up is ``delete table``. This
module holds what does not depend on Services: base chains and their hooks,
the dispatch chains, masquerading, rejects, and the declarations of the
global maps and sets that per-service data goes into. Service ports never
get a chain of their own in the common case: their tuples go into the
verdict maps ``service-ips`` / ``service-nodeports``, which jump to a few
chains shared by all service ports with the same shape (e.g. "ClusterIP
with 2 endpoints"); those chains pick an endpoint from the global endpoint
maps (``service-endpoints-tcp``, ``nodeport-endpoints-udp``, ...) keyed by
the packet's own address and port plus ``numgen random mod N``. Base chains
see every packet, NAT ones only a connection's first: each filter base chain
sends a later packet on at its first rule, and the raw ones exist only for
node-local DNS. Pure: text in, text out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from netplane.proxy.config import ProxyConfig

FAMILY = "ip"
TABLE = "netplane"
TABLE_REF = f"{FAMILY} {TABLE}"

# Numeric priorities: named ones (dstnat, srcnat) are not valid in every hook.
PRIORITY_RAW = -300
PRIORITY_DSTNAT = -100
PRIORITY_SRCNAT = 100

TUPLE = "ip daddr . meta l4proto . th dport"
NODEPORT_TUPLE = "meta l4proto . th dport"
LOOPBACK = "127.0.0.0/8"


class Hook(enum.StrEnum):
    PREROUTING = "prerouting"
    INPUT = "input"
    FORWARD = "forward"
    OUTPUT = "output"
    POSTROUTING = "postrouting"


class ChainType(enum.StrEnum):
    FILTER = "filter"
    NAT = "nat"


class Chain(enum.StrEnum):
    """Chains that exist whatever the Services are."""

    RAW_PREROUTING = "raw-prerouting"
    RAW_OUTPUT = "raw-output"
    FILTER_PREROUTING = "filter-prerouting"
    FILTER_INPUT = "filter-input"
    FILTER_FORWARD = "filter-forward"
    FILTER_OUTPUT = "filter-output"
    FILTER_OUTPUT_POST_DNAT = "filter-output-post-dnat"
    NAT_PREROUTING = "nat-prerouting"
    NAT_OUTPUT = "nat-output"
    NAT_POSTROUTING = "nat-postrouting"
    SERVICES = "services"
    MASQUERADING = "masquerading"
    MARK_FOR_MASQUERADE = "mark-for-masquerade"
    REJECT = "reject-chain"
    SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
    NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
    FIREWALL_CHECK = "firewall-check"
    CLUSTER_IPS_CHECK = "cluster-ips-check"


class Map(enum.StrEnum):
    """Global maps and sets that service ports fill with elements."""

    SERVICE_IPS = "service-ips"                  # VIP tuple -> verdict
    SERVICE_NODEPORTS = "service-nodeports"      # proto . port -> verdict
    NO_ENDPOINT_SERVICES = "no-endpoint-services"
    NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
    FIREWALL_IPS = "firewall-ips"                # LB tuples with source ranges
    FIREWALL_ALLOW = "firewall-allow"            # LB tuple . allowed source range
    CLUSTER_IPS = "cluster-ips"
    HAIRPIN = "hairpin"                          # endpoint . itself
    NODEPORT_IPS = "nodeport-ips"                # this node's addresses


class Pool(enum.StrEnum):
    """Endpoint maps: which endpoints a random bucket of a service address
    (or NodePort) leads to, for all traffic or for this node's endpoints."""

    SERVICE = "service-endpoints"                # VIP . port . bucket -> endpoint
    SERVICE_LOCAL = "service-local-endpoints"
    NODEPORT = "nodeport-endpoints"              # nodePort . bucket -> endpoint
    NODEPORT_LOCAL = "nodeport-local-endpoints"

    @property
    def by_nodeport(self) -> bool:
        return self in (Pool.NODEPORT, Pool.NODEPORT_LOCAL)


# One endpoint map per pool and protocol: the port in a map's value makes
# nft add a match on the protocol it was declared with to every rule that
# DNATs from the map (and nft cannot read back a generic ``th dport``).
PROTOCOLS = ("tcp", "udp", "sctp")


def endpoint_map(pool: Pool, proto: str) -> str:
    return f"{pool}-{proto}"


def endpoint_key(pool: Pool, proto: str) -> str:
    """What a packet is looked up by, before its random bucket."""
    return f"{proto} dport" if pool.by_nodeport else f"ip daddr . {proto} dport"


def _endpoint_declaration(pool: Pool, proto: str) -> str:
    # typeof lets numgen's plain integer be part of the key.
    return (f"typeof {endpoint_key(pool, proto)} . numgen random mod 1 : "
            f"ip daddr . {proto} dport")


MAP_DECLARATIONS: dict[str, str] = {
    Map.SERVICE_IPS: "type ipv4_addr . inet_proto . inet_service : verdict",
    Map.SERVICE_NODEPORTS: "type inet_proto . inet_service : verdict",
    Map.NO_ENDPOINT_SERVICES: "type ipv4_addr . inet_proto . inet_service : verdict",
    Map.NO_ENDPOINT_NODEPORTS: "type inet_proto . inet_service : verdict",
    Map.FIREWALL_IPS: "type ipv4_addr . inet_proto . inet_service",
    Map.FIREWALL_ALLOW: "type ipv4_addr . inet_proto . inet_service . ipv4_addr ; "
                        "flags interval",
    Map.CLUSTER_IPS: "type ipv4_addr",
    Map.HAIRPIN: "type ipv4_addr . ipv4_addr",
    Map.NODEPORT_IPS: "type ipv4_addr",
    **{endpoint_map(pool, proto): _endpoint_declaration(pool, proto)
       for pool in Pool for proto in PROTOCOLS},
}
ALL_MAPS: tuple[str, ...] = tuple(MAP_DECLARATIONS)


@dataclass(frozen=True)
class BaseChain:
    """A chain hooked into the kernel's packet path."""

    chain: Chain
    type: ChainType
    hook: Hook
    priority: int

    def spec(self) -> str:
        return (f"{{ type {self.type} hook {self.hook} priority {self.priority} ; "
                f"policy accept ; }}")


BASE_CHAINS: tuple[BaseChain, ...] = (
    BaseChain(Chain.RAW_PREROUTING, ChainType.FILTER, Hook.PREROUTING, PRIORITY_RAW),
    BaseChain(Chain.RAW_OUTPUT, ChainType.FILTER, Hook.OUTPUT, PRIORITY_RAW),
    # Filter chains just before DNAT see the address the client asked for.
    BaseChain(Chain.FILTER_PREROUTING, ChainType.FILTER, Hook.PREROUTING, PRIORITY_DSTNAT - 10),
    BaseChain(Chain.FILTER_INPUT, ChainType.FILTER, Hook.INPUT, PRIORITY_DSTNAT - 10),
    BaseChain(Chain.FILTER_FORWARD, ChainType.FILTER, Hook.FORWARD, PRIORITY_DSTNAT - 10),
    BaseChain(Chain.FILTER_OUTPUT, ChainType.FILTER, Hook.OUTPUT, PRIORITY_DSTNAT - 10),
    BaseChain(Chain.FILTER_OUTPUT_POST_DNAT, ChainType.FILTER, Hook.OUTPUT,
              PRIORITY_DSTNAT + 10),
    BaseChain(Chain.NAT_PREROUTING, ChainType.NAT, Hook.PREROUTING, PRIORITY_DSTNAT),
    BaseChain(Chain.NAT_OUTPUT, ChainType.NAT, Hook.OUTPUT, PRIORITY_DSTNAT),
    BaseChain(Chain.NAT_POSTROUTING, ChainType.NAT, Hook.POSTROUTING, PRIORITY_SRCNAT),
)

_NEW = "ct state new"
# Filter base chains see every packet; their checks are for a connection's
# first one. One test at the top sends every later packet on its way, where
# a "ct state new" on each rule would be one test per rule.
_ONLY_NEW = "ct state != new return"
_DNS = "meta l4proto { tcp, udp }"


def _notrack_rules(config: ProxyConfig) -> tuple[str, ...]:
    # The address first: every other packet is done after one comparison.
    rules: list[str] = []
    for ip in sorted(config.notrack_dns_ips):
        rules += [f"ip daddr {ip} {_DNS} th dport 53 notrack",
                  f"ip saddr {ip} {_DNS} th sport 53 notrack"]
    return tuple(rules)


def _masquerading_rules(config: ProxyConfig) -> tuple[str, ...]:
    mark = config.masquerade_mark
    fully = " fully-random" if config.masquerade_random_fully else ""
    return (
        f"meta mark & {mark} == 0 return",
        # Clear the bit so a packet that is re-routed is not masqueraded twice.
        f"meta mark set meta mark ^ {mark}",
        f"masquerade{fully}",
    )


RAW_CHAINS = (Chain.RAW_PREROUTING, Chain.RAW_OUTPUT)


def fixed_chains(config: ProxyConfig) -> dict[str, tuple[str, ...]]:
    """Rules of every chain that exists whatever the Services are. The raw
    chains only with node-local DNS to keep out of conntrack: a hooked
    chain costs every packet something even when it is empty."""
    notrack = _notrack_rules(config)
    raw: dict[str, tuple[str, ...]] = {c: notrack for c in RAW_CHAINS} if notrack else {}
    return {
        **raw,
        Chain.FILTER_PREROUTING: (
            _ONLY_NEW,
            f"jump {Chain.FIREWALL_CHECK}",
            # route_localnet would let other hosts reach 127.0.0.1 services
            # (CVE-2020-8558); only the node itself may use loopback NodePorts.
            f'iifname != "lo" ip daddr {LOOPBACK} drop',
        ),
        Chain.FILTER_INPUT: (_ONLY_NEW, f"jump {Chain.NODEPORT_ENDPOINTS_CHECK}",
                             f"jump {Chain.SERVICE_ENDPOINTS_CHECK}"),
        Chain.FILTER_FORWARD: (_ONLY_NEW, f"jump {Chain.SERVICE_ENDPOINTS_CHECK}",
                               f"jump {Chain.CLUSTER_IPS_CHECK}"),
        Chain.FILTER_OUTPUT: (_ONLY_NEW, f"jump {Chain.SERVICE_ENDPOINTS_CHECK}",
                              f"jump {Chain.FIREWALL_CHECK}"),
        Chain.FILTER_OUTPUT_POST_DNAT: (f"{_NEW} jump {Chain.CLUSTER_IPS_CHECK}",),
        Chain.NAT_PREROUTING: (f"jump {Chain.SERVICES}",),
        Chain.NAT_OUTPUT: (
            f"jump {Chain.SERVICES}",
            # Loopback NodePorts only for the node's own traffic (see above).
            f"ip daddr {LOOPBACK} {NODEPORT_TUPLE} vmap @{Map.SERVICE_NODEPORTS}",
        ),
        Chain.NAT_POSTROUTING: (
            # Hairpin: an endpoint reaching itself through its service would
            # otherwise get a reply from its own address and drop it.
            f"ct status dnat ip saddr . ip daddr @{Map.HAIRPIN} masquerade",
            f"jump {Chain.MASQUERADING}",
        ),
        Chain.SERVICES: (
            f"{TUPLE} vmap @{Map.SERVICE_IPS}",
            f"ip daddr @{Map.NODEPORT_IPS} {NODEPORT_TUPLE} vmap @{Map.SERVICE_NODEPORTS}",
        ),
        Chain.MASQUERADING: _masquerading_rules(config),
        Chain.MARK_FOR_MASQUERADE: (
            f"meta mark set meta mark | {config.masquerade_mark}",),
        Chain.REJECT: ("meta l4proto tcp reject with tcp reset", "reject"),
        Chain.SERVICE_ENDPOINTS_CHECK: (f"{TUPLE} vmap @{Map.NO_ENDPOINT_SERVICES}",),
        Chain.NODEPORT_ENDPOINTS_CHECK: (
            f"ip daddr @{Map.NODEPORT_IPS} {NODEPORT_TUPLE} vmap @{Map.NO_ENDPOINT_NODEPORTS}",
            f"ip daddr {LOOPBACK} {NODEPORT_TUPLE} vmap @{Map.NO_ENDPOINT_NODEPORTS}",
        ),
        Chain.FIREWALL_CHECK: (
            f"{TUPLE} @{Map.FIREWALL_IPS} {TUPLE} . ip saddr != @{Map.FIREWALL_ALLOW} drop",),
        Chain.CLUSTER_IPS_CHECK: (
            # A ClusterIP answers only on its service ports; say so at once.
            f"ip daddr @{Map.CLUSTER_IPS} goto {Chain.REJECT}",),
    }


def chain_declaration(name: str) -> str:
    """``add chain`` for one of our chains, with its hook if it is a base chain."""
    for base in BASE_CHAINS:
        if base.chain == name:
            return f"add chain {TABLE_REF} {name} {base.spec()}"
    return f"add chain {TABLE_REF} {name}"


def map_kind(m: str) -> str:
    """``map`` when elements carry a value, else ``set``."""
    return "map" if ":" in MAP_DECLARATIONS[m] else "set"


def map_declaration(m: str) -> str:
    return f"add {map_kind(m)} {TABLE_REF} {m} {{ {MAP_DECLARATIONS[m]} ; }}"
