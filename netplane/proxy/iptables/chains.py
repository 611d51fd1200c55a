"""Vocabulary of iptables mode: tables, chain names, node settings, fixed jumps.

Chains follow kube-proxy's layout with the ``NP-`` prefix. Per service port:
``NP-SVC-`` (all usable endpoints), ``NP-SVL-`` (this node's endpoints),
``NP-EXT-`` (external destinations: NodePort, LoadBalancer, external IPs),
``NP-FW-`` (LoadBalancer source ranges) and one ``NP-SEP-`` per endpoint.
Names are a readable prefix plus a hash of the service port, computed the
way kube-proxy computes its ``portProtoHash``. The fixed jumps from the
built-in chains into ours are data (``PLUMBING``), read by set-up,
clean-up, the drift check and the tracer alike.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass, field

from netplane.proxy.model import ServicePortName
from netplane.proxy.naming import hash16

CHAIN_PREFIX = "NP-"
MAX_CHAIN_LEN = 28  # iptables' limit is 28 characters plus the terminator

# nat
SERVICES_CHAIN = "NP-SERVICES"
NODEPORTS_CHAIN = "NP-NODEPORTS"
POSTROUTING_CHAIN = "NP-POSTROUTING"
MARK_MASQ_CHAIN = "NP-MARK-MASQ"
# filter (NP-SERVICES and NP-NODEPORTS exist there too, as in kube-proxy)
EXTERNAL_SERVICES_CHAIN = "NP-EXTERNAL-SERVICES"
PROXY_FIREWALL_CHAIN = "NP-PROXY-FIREWALL"
FORWARD_CHAIN = "NP-FORWARD"
LOCALNET_CHAIN = "NP-FIREWALL"
# raw
NOTRACK_CHAIN = "NP-NOTRACK"

SVC_PREFIX = "NP-SVC-"
SVL_PREFIX = "NP-SVL-"
EXT_PREFIX = "NP-EXT-"
FW_PREFIX = "NP-FW-"
SEP_PREFIX = "NP-SEP-"


class Table(enum.StrEnum):
    """The netfilter tables we write to, in writing order."""

    RAW = "raw"
    NAT = "nat"
    FILTER = "filter"


# Names asked for one by one (inspection, tracing) are kept; the renderer
# derives its own once per service port it renders (``rules``).
_hash16 = functools.lru_cache(maxsize=1 << 17)(hash16)


def hash_input(spn: ServicePortName) -> str:
    """What a service port's names are hashed from (endpoint names add ``ip:port``)."""
    return str(spn) + spn.protocol.lower()


def port_hash(spn: ServicePortName) -> str:
    """kube-proxy's portProtoHash of one service port."""
    return _hash16(hash_input(spn))


def service_chain(spn: ServicePortName) -> str:
    """``NP-SVC-<hash>``: every usable endpoint of one service port."""
    return SVC_PREFIX + port_hash(spn)


def local_chain(spn: ServicePortName) -> str:
    """``NP-SVL-<hash>``: this node's endpoints of one service port."""
    return SVL_PREFIX + port_hash(spn)


def external_chain(spn: ServicePortName) -> str:
    """``NP-EXT-<hash>``: traffic to a NodePort, LoadBalancer IP or external IP."""
    return EXT_PREFIX + port_hash(spn)


def firewall_chain(spn: ServicePortName) -> str:
    """``NP-FW-<hash>``: LoadBalancer traffic checked against the source ranges."""
    return FW_PREFIX + port_hash(spn)


def endpoint_chain(spn: ServicePortName, endpoint: str) -> str:
    """``NP-SEP-<hash>`` for one endpoint (``ip:port``) of one service port."""
    return SEP_PREFIX + _hash16(hash_input(spn) + endpoint)


@functools.lru_cache(maxsize=1024)
def probability(n: int) -> str:
    """Chance to pick the first of ``n`` remaining endpoints, as kube-proxy spells it."""
    return f"{1.0 / n:.10f}"


def quote(comment: str) -> str:
    return '"' + comment.replace('"', "'") + '"'


def host(ip: str) -> str:
    return f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}"



def rule(chain: str, comment: str, args: str) -> str:
    """One ``-A`` line with its comment; ``args`` already joined."""
    return f"-A {chain} -m comment --comment {quote(comment)} {args}"


@dataclass(frozen=True)
class Jump:
    """One fixed rule in a built-in chain that sends traffic into one of ours."""

    table: Table
    base_chain: str
    chain: str
    comment: str
    matches: tuple[str, ...] = field(default=())

    def rule_args(self) -> list[str]:
        """Arguments after ``-A/-C/-I/-D BASE`` for this jump."""
        return [*self.matches, "-m", "comment", "--comment", self.comment, "-j", self.chain]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
_PORTALS = "netplane service portals"

# In the order they stand in their built-in chains (set-up keeps it).
# Nat chains see only a connection's first packet; raw and filter see every
# packet, so forwarded traffic meets NP-FORWARD first, whose first rule
# accepts established connections: a later packet walks two rules, not six.
PLUMBING: tuple[Jump, ...] = (
    Jump(Table.RAW, "PREROUTING", NOTRACK_CHAIN, "netplane node-local DNS notrack"),
    Jump(Table.RAW, "OUTPUT", NOTRACK_CHAIN, "netplane node-local DNS notrack"),
    Jump(Table.NAT, "PREROUTING", SERVICES_CHAIN, _PORTALS),
    Jump(Table.NAT, "OUTPUT", SERVICES_CHAIN, _PORTALS),
    Jump(Table.NAT, "POSTROUTING", POSTROUTING_CHAIN, "netplane postrouting rules"),
    Jump(Table.FILTER, "INPUT", PROXY_FIREWALL_CHAIN, "netplane load balancer firewall", _NEW),
    Jump(Table.FILTER, "INPUT", EXTERNAL_SERVICES_CHAIN, "netplane external services", _NEW),
    Jump(Table.FILTER, "INPUT", NODEPORTS_CHAIN, "netplane health check node ports"),
    Jump(Table.FILTER, "INPUT", LOCALNET_CHAIN, "netplane localnet guard"),
    Jump(Table.FILTER, "FORWARD", FORWARD_CHAIN, "netplane forwarding rules"),
    Jump(Table.FILTER, "FORWARD", PROXY_FIREWALL_CHAIN, "netplane load balancer firewall", _NEW),
    Jump(Table.FILTER, "FORWARD", EXTERNAL_SERVICES_CHAIN, "netplane external services", _NEW),
    Jump(Table.FILTER, "FORWARD", SERVICES_CHAIN, _PORTALS, _NEW),
    Jump(Table.FILTER, "OUTPUT", PROXY_FIREWALL_CHAIN, "netplane load balancer firewall", _NEW),
    Jump(Table.FILTER, "OUTPUT", SERVICES_CHAIN, _PORTALS, _NEW),
    Jump(Table.FILTER, "OUTPUT", LOCALNET_CHAIN, "netplane localnet guard"),
)

# Chains declared in every full sync even when they hold no rule, so the
# jumps in PLUMBING always have a target.
FIXED_CHAINS: dict[Table, tuple[str, ...]] = {
    Table.RAW: (NOTRACK_CHAIN,),
    Table.NAT: (SERVICES_CHAIN, NODEPORTS_CHAIN, POSTROUTING_CHAIN, MARK_MASQ_CHAIN),
    Table.FILTER: (SERVICES_CHAIN, EXTERNAL_SERVICES_CHAIN, NODEPORTS_CHAIN,
                   PROXY_FIREWALL_CHAIN, FORWARD_CHAIN, LOCALNET_CHAIN),
}

# Service ports' lines in these shared chains are order-free, except in nat
# NP-SERVICES where they must stay above the final NodePort catch-all.
INSERT_AT_TOP: frozenset[tuple[Table, str]] = frozenset({(Table.NAT, SERVICES_CHAIN)})
