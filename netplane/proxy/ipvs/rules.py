"""IPVS mode, pure part two: ipset and iptables text.

IPVS itself only balances; masquerade, rejection and the source-range
firewall are iptables rules, and their number does not depend on how many
Services exist: every per-service fact is a member of an ipset
(``plan.IPSetName``) that a fixed rule matches. This module renders

* ``ipset restore`` input that fills sets atomically (each changed set is
  built under a temporary name and swapped in), and
* ``iptables-restore --noflush`` input for our chains, plus the fixed
  jumps from the built-in chains (``PLUMBING``), read by set-up and
  clean-up alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.render import NOTRACK_CHAIN, Jump, Table, notrack_rules
from netplane.proxy.ipvs.plan import IPSetName

SERVICES_CHAIN = "NP-SERVICES"
POSTROUTING_CHAIN = "NP-POSTROUTING"
MARK_MASQ_CHAIN = "NP-MARK-MASQ"
NODE_PORT_CHAIN = "NP-NODE-PORT"
LOAD_BALANCER_CHAIN = "NP-LOAD-BALANCER"
FILTER_CHAIN = "NP-IPVS-FILTER"
TEMP_SUFFIX = "-T"
HASH_MAXELEM = 262144

_BITMAP = "bitmap:port range 0-65535"
_HASH_IP_PORT = f"hash:ip,port family inet hashsize 1024 maxelem {HASH_MAXELEM}"

# Set type (with creation options) and what the set holds.
IPSET_TYPES: dict[IPSetName, tuple[str, str]] = {
    IPSetName.CLUSTER_IP: (_HASH_IP_PORT, "service cluster IP + port"),
    IPSetName.LOOP_BACK: (f"hash:ip,port,ip family inet hashsize 1024 maxelem {HASH_MAXELEM}",
                          "endpoint IP + port + its own IP, for hairpin masquerade"),
    IPSetName.EXTERNAL_IP: (_HASH_IP_PORT, "external IP + port, Cluster policy"),
    IPSetName.EXTERNAL_IP_LOCAL: (_HASH_IP_PORT, "external IP + port, Local policy"),
    IPSetName.LOAD_BALANCER: (_HASH_IP_PORT, "load-balancer IP + port"),
    IPSetName.LOAD_BALANCER_LOCAL: (_HASH_IP_PORT, "load-balancer IP + port, Local policy"),
    IPSetName.LOAD_BALANCER_FW: (_HASH_IP_PORT, "load-balancer IP + port with source ranges"),
    IPSetName.LOAD_BALANCER_SOURCE_CIDR: (
        f"hash:ip,port,net family inet hashsize 1024 maxelem {HASH_MAXELEM}",
        "load-balancer IP + port + allowed source range"),
    IPSetName.NODE_PORT_TCP: (_BITMAP, "TCP node ports, Cluster policy"),
    IPSetName.NODE_PORT_LOCAL_TCP: (_BITMAP, "TCP node ports, Local policy"),
    IPSetName.NODE_PORT_UDP: (_BITMAP, "UDP node ports, Cluster policy"),
    IPSetName.NODE_PORT_LOCAL_UDP: (_BITMAP, "UDP node ports, Local policy"),
    IPSetName.NODE_PORT_SCTP: (_HASH_IP_PORT, "SCTP node IP + node port, Cluster policy"),
    IPSetName.NODE_PORT_LOCAL_SCTP: (_HASH_IP_PORT, "SCTP node IP + node port, Local policy"),
    IPSetName.HEALTH_CHECK_NODE_PORT: (_BITMAP, "health check node ports"),
    IPSetName.NO_ENDPOINTS: (_HASH_IP_PORT, "service address + port without endpoints"),
    IPSetName.NO_LOCAL_ENDPOINTS: (_HASH_IP_PORT,
                                   "service address + port, Local policy, none here"),
    IPSetName.IPVS_IPS: (f"hash:ip family inet hashsize 1024 maxelem {HASH_MAXELEM}",
                         "addresses bound for IPVS"),
}


def _create(name: str, set_name: IPSetName) -> str:
    return f"create {name} {IPSET_TYPES[set_name][0]} -exist"


def render_ipset_creation() -> str:
    """Creates every set of ours if missing (for set-up)."""
    return "".join(_create(s, s) + "\n" for s in IPSetName)


def render_ipsets(members: Mapping[IPSetName, Iterable[str]]) -> str:
    """``ipset restore`` input replacing the content of each given set at once.

    Each set is filled under ``<name>-T`` and swapped with the live one, so a
    packet never meets a half-filled set."""
    lines: list[str] = []
    for set_name in sorted(members):
        temp = set_name + TEMP_SUFFIX
        lines += [_create(set_name, set_name), _create(temp, set_name), f"flush {temp}"]
        lines += [f"add {temp} {m}" for m in sorted(members[set_name])]
        lines += [f"swap {temp} {set_name}", f"destroy {temp}"]
    return "".join(line + "\n" for line in lines)


def render_ipset_destruction(existing: Iterable[str]) -> str:
    """Destroys our sets among ``existing`` names (for clean-up): only ours."""
    ours = {s.value for s in IPSetName} | {s.value + TEMP_SUFFIX for s in IPSetName}
    return "".join(f"destroy {n}\n" for n in sorted(set(existing) & ours))


_NEW = ("-m", "conntrack", "--ctstate", "NEW")

PLUMBING: tuple[Jump, ...] = (
    Jump(Table.RAW, "PREROUTING", NOTRACK_CHAIN, "netplane node-local DNS notrack"),
    Jump(Table.RAW, "OUTPUT", NOTRACK_CHAIN, "netplane node-local DNS notrack"),
    Jump(Table.NAT, "PREROUTING", SERVICES_CHAIN, "netplane service portals"),
    Jump(Table.NAT, "OUTPUT", SERVICES_CHAIN, "netplane service portals"),
    Jump(Table.NAT, "POSTROUTING", POSTROUTING_CHAIN, "netplane postrouting rules"),
    # IPVS takes packets at LOCAL_IN after the filter table, so INPUT is where
    # the rejects and the firewall see a service address.
    Jump(Table.FILTER, "INPUT", FILTER_CHAIN, "netplane ipvs service filter", _NEW),
)

CHAINS: dict[Table, tuple[str, ...]] = {
    Table.RAW: (NOTRACK_CHAIN,),
    Table.NAT: (SERVICES_CHAIN, POSTROUTING_CHAIN, MARK_MASQ_CHAIN, NODE_PORT_CHAIN,
                LOAD_BALANCER_CHAIN),
    Table.FILTER: (FILTER_CHAIN,),
}


def _rule(chain: str, comment: str, *args: str) -> str:
    return " ".join(["-A", chain, "-m", "comment", "--comment", f'"{comment}"', *args])


def _match(set_name: IPSetName, flags: str, *, negate: bool = False) -> list[str]:
    return ["-m", "set", *(["!"] if negate else []), "--match-set", set_name, flags]


def _nat_services(config: ProxyConfig) -> list[str]:
    c = "netplane service"
    return [
        _rule(SERVICES_CHAIN, f"{c} load-balancer IP", *_match(IPSetName.LOAD_BALANCER,
                                                               "dst,dst"),
              "-j", LOAD_BALANCER_CHAIN),
        # Off-cluster clients need SNAT so replies come back through this node.
        _rule(SERVICES_CHAIN, f"{c} cluster IP from off-cluster", "!", "-s", config.cluster_cidr,
              *_match(IPSetName.CLUSTER_IP, "dst,dst"), "-j", MARK_MASQ_CHAIN),
        _rule(SERVICES_CHAIN, f"{c} external IP", *_match(IPSetName.EXTERNAL_IP, "dst,dst"),
              "-j", MARK_MASQ_CHAIN),
        _rule(SERVICES_CHAIN, f"{c} node ports", "-m", "addrtype", "--dst-type", "LOCAL",
              "-j", NODE_PORT_CHAIN),
    ]


def _nat_node_ports() -> list[str]:
    c = "netplane node port"
    out: list[str] = []
    for proto, flags in (("tcp", "dst"), ("udp", "dst"), ("sctp", "dst,dst")):
        up = proto.upper()
        local = IPSetName(f"NP-NODE-PORT-LOCAL-{up}" + ("-HASH" if proto == "sctp" else ""))
        cluster = IPSetName(f"NP-NODE-PORT-{up}" + ("-HASH" if proto == "sctp" else ""))
        # Local policy keeps the client address, except from loopback,
        # which cannot leave the node without SNAT.
        out.append(_rule(NODE_PORT_CHAIN, f"{c} {proto} Local from loopback", "-p", proto,
                         "-s", "127.0.0.0/8", *_match(local, flags), "-j", MARK_MASQ_CHAIN))
        out.append(_rule(NODE_PORT_CHAIN, f"{c} {proto}", "-p", proto,
                         *_match(cluster, flags), "-j", MARK_MASQ_CHAIN))
    return out


def _nat_fixed(config: ProxyConfig) -> list[str]:
    mark = config.masquerade_mark
    c = "netplane service traffic requiring SNAT"
    fully = ["--random-fully"] if config.masquerade_random_fully else []
    return [
        _rule(LOAD_BALANCER_CHAIN, "netplane load-balancer Local policy",
              *_match(IPSetName.LOAD_BALANCER_LOCAL, "dst,dst"), "-j", "RETURN"),
        _rule(LOAD_BALANCER_CHAIN, "netplane load-balancer Cluster policy",
              "-j", MARK_MASQ_CHAIN),
        _rule(POSTROUTING_CHAIN, "netplane endpoint reaching itself (hairpin)",
              *_match(IPSetName.LOOP_BACK, "dst,dst,src"), "-j", "MASQUERADE", *fully),
        _rule(POSTROUTING_CHAIN, c, "-m", "mark", "!", "--mark", f"{mark}/{mark}",
              "-j", "RETURN"),
        # Clear the bit so a packet that is re-routed is not masqueraded twice.
        _rule(POSTROUTING_CHAIN, c, "-j", "MARK", "--xor-mark", mark),
        _rule(POSTROUTING_CHAIN, c, "-j", "MASQUERADE", *fully),
        _rule(MARK_MASQ_CHAIN, "netplane mark for masquerade", "-j", "MARK", "--or-mark", mark),
    ]


def _filter() -> list[str]:
    c = "netplane ipvs"
    known = (IPSetName.CLUSTER_IP, IPSetName.LOAD_BALANCER, IPSetName.EXTERNAL_IP,
             IPSetName.EXTERNAL_IP_LOCAL)
    return [
        _rule(FILTER_CHAIN, f"{c} service without endpoints",
              *_match(IPSetName.NO_ENDPOINTS, "dst,dst"), "-j", "REJECT"),
        _rule(FILTER_CHAIN, f"{c} Local policy without local endpoints",
              *_match(IPSetName.NO_LOCAL_ENDPOINTS, "dst,dst"), "-j", "DROP"),
        _rule(FILTER_CHAIN, f"{c} load-balancer source ranges",
              *_match(IPSetName.LOAD_BALANCER_FW, "dst,dst"),
              *_match(IPSetName.LOAD_BALANCER_SOURCE_CIDR, "dst,dst,src", negate=True),
              "-j", "DROP"),
        *(_rule(FILTER_CHAIN, f"{c} service port", *_match(s, "dst,dst"), "-j", "RETURN")
          for s in known),
        _rule(FILTER_CHAIN, f"{c} health check node port",
              *_match(IPSetName.HEALTH_CHECK_NODE_PORT, "dst"), "-j", "ACCEPT"),
        # A bound service address answers on every port otherwise; only
        # service ports may be reached there.
        _rule(FILTER_CHAIN, f"{c} other ports of service addresses",
              *_match(IPSetName.IPVS_IPS, "dst"), "-j", "REJECT"),
    ]


def render_iptables(config: ProxyConfig) -> str:
    """``iptables-restore --noflush`` input for all our chains; constant size."""
    body = {Table.RAW: notrack_rules(config),
            Table.NAT: [*_nat_services(config), *_nat_node_ports(), *_nat_fixed(config)],
            Table.FILTER: _filter()}
    lines: list[str] = []
    for table, chains in CHAINS.items():
        lines += [f"*{table}", *(f":{c} - [0:0]" for c in chains), *body[table], "COMMIT"]
    return "\n".join(lines) + "\n"
