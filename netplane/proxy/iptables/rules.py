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

A port's rules are kept as text, whole lines per chain and per shared part
(``PortRules``), which is what a full document is joined from and what a
partial sync compares; nothing is parsed back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.chains import (
    EXT_PREFIX,
    EXTERNAL_SERVICES_CHAIN,
    FW_PREFIX,
    MARK_MASQ_CHAIN,
    NODEPORTS_CHAIN,
    PROXY_FIREWALL_CHAIN,
    SEP_PREFIX,
    SERVICES_CHAIN,
    SVC_PREFIX,
    SVL_PREFIX,
    Table,
    probability,
)
from netplane.proxy.iptables.document import Part, Slot
from netplane.proxy.model import EndpointInfo, ServicePortInfo, is_ipv4
from netplane.proxy.naming import hash16

# Where a service port's text goes in the full document, and its chains.
PORT_TEXTS: dict[Slot, str] = {(Table.NAT, Part.DECLS): "nat_decls",
                               (Table.NAT, Part.SHARED): "nat_shared",
                               (Table.NAT, Part.OWN): "nat_own",
                               (Table.FILTER, Part.SHARED): "filter_shared"}
PORT_CHAINS: dict[Table, str] = {Table.NAT: "nat_chains"}


@dataclass(slots=True)
class PortRules:
    """Everything one service port contributes to the rule set, as restore text.

    Rules are whole lines, each ending in a newline: a port's rendering is
    a handful of strings, cheap to keep for every port and to join into a
    full document, and split into lines only when a partial sync compares
    a changed port's shared lines."""

    # Own nat chains, in declaration order, each with its rules.
    nat_chains: dict[str, str] = field(default_factory=dict)
    # Its lines in the shared nat chains (NP-SERVICES, NP-NODEPORTS).
    nat_shared: str = ""
    # Its lines in the shared filter chains.
    filter_shared: str = ""
    # The endpoints the rules can send to, for conntrack clean-up and inspection.
    cluster: tuple[EndpointInfo, ...] = ()
    local: tuple[EndpointInfo, ...] = ()
    # Derived from the above, once: what a full document needs of this port.
    nat_decls: str = field(init=False, compare=False, repr=False)
    nat_own: str = field(init=False, compare=False, repr=False)
    rule_count: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.nat_decls = "".join([f":{c} - [0:0]\n" for c in self.nat_chains])  # declaration()
        self.nat_own = "".join(self.nat_chains.values())
        self.rule_count = (self.nat_own.count("\n") + self.nat_shared.count("\n")
                           + self.filter_shared.count("\n"))

    @property
    def nat_chain_text(self) -> str:
        """The port's own nat chains, declared and filled: what a streamed
        full sync writes for it before the shared chains."""
        return self.nat_decls + self.nat_own


class _PortWriter:
    """Builds one PortRules; holds the strings every rule of the port repeats."""

    def __init__(self, info: ServicePortInfo, config: ProxyConfig) -> None:
        self.info = info
        self.config = config
        self.spn = info.key
        self.name = str(self.spn)
        # Comments are quoted as ``chains.quote`` does; the parts added to
        # the name (addresses, chain names, fixed words) hold no quote.
        self.qname = self.name.replace('"', "'")
        proto = info.protocol.lower()
        self._hash_input = self.name + proto  # ``chains.hash_input``, from what is at hand
        self._port_hash = ""
        self._sep: dict[str, str] = {}
        self.proto = f"-p {proto} -m {proto}"
        self.dport = f"--dport {info.port}"
        self.chains: dict[str, list[str]] = {}
        self.nat: list[str] = []
        self.filter: list[str] = []

    def port_chain(self, prefix: str) -> str:
        """``prefix`` + the port's hash (SVC, SVL, EXT, FW), hashed once per port."""
        if not self._port_hash:
            self._port_hash = hash16(self._hash_input)
        return prefix + self._port_hash

    def sep(self, address: str) -> str:
        """The endpoint chain of ``ip:port``, hashed once per port."""
        name = self._sep.get(address)
        if name is None:
            name = self._sep[address] = SEP_PREFIX + hash16(self._hash_input + address)
        return name

    def rule(self, chain: str, comment: str, args: str) -> str:
        """One ``-A`` line; ``comment`` follows the port's name (may be "")."""
        return f'-A {chain} -m comment --comment "{self.qname}{comment}" {args}\n'

    def dest(self, ip: str) -> str:
        return f"{self.proto} -d {ip}/32 {self.dport}"

    def chain(self, chain: str) -> list[str]:
        found = self.chains.get(chain)
        if found is None:
            found = self.chains[chain] = []
        return found

    def endpoint_jumps(self, chain: str, eps: tuple[EndpointInfo, ...]) -> None:
        rules = self.chain(chain)
        seconds = self.info.affinity_seconds
        if seconds:
            # ClientIP affinity: a source seen recently goes back to its endpoint.
            for ep in eps:
                address = ep.address
                sep = self.sep(address)
                rules.append(self.rule(chain, f" -> {address}",
                                       f"-m recent --name {sep} --rcheck --seconds {seconds} "
                                       f"--reap -j {sep}"))
        n = len(eps)
        for i, ep in enumerate(eps):
            left = n - i
            pick = f"-m statistic --mode random --probability {probability(left)} " \
                if left > 1 else ""
            address = ep.address
            rules.append(self.rule(chain, f" -> {address}", f"{pick}-j {self.sep(address)}"))

    def endpoint_chain(self, ep: EndpointInfo, sep: str) -> None:
        recent = f"-m recent --name {sep} --set " if self.info.affinity_seconds else ""
        # Hairpin: a backend reaching its own service must be masqueraded, or
        # it would see a reply from itself and drop it.
        self.chains[sep] = [
            self.rule(sep, "", f"-s {ep.ip}/32 -j {MARK_MASQ_CHAIN}"),
            self.rule(sep, "", f"{self.proto} {recent}-j DNAT --to-destination {ep.ip}:{ep.port}"),
        ]

    def masquerade_off_cluster(self, chain: str) -> None:
        # Traffic from outside the pod network (nodes, hosts) needs SNAT so
        # that replies come back through this node's conntrack entry.
        self.chain(chain).append(self.rule(
            chain, " cluster IP",
            f"{self.dest(self.info.cluster_ip)} ! -s {self.config.cluster_cidr} "
            f"-j {MARK_MASQ_CHAIN}"))

    def nat_shared(self, chain: str, comment: str, args: str) -> None:
        self.nat.append(self.rule(chain, comment, args))

    def filter_shared(self, chain: str, comment: str, args: str) -> None:
        self.filter.append(self.rule(chain, comment, args))

    def done(self, sel: model.Selection) -> PortRules:
        return PortRules({c: "".join(rules) for c, rules in self.chains.items()},
                         "".join(self.nat), "".join(self.filter), sel.cluster, sel.local)


def render_port(info: ServicePortInfo, eps: list[EndpointInfo], *, config: ProxyConfig,
                node_name: str) -> PortRules:
    """All rules of one service port on node ``node_name``."""
    w = _PortWriter(info, config)
    sel = model.select([e for e in eps if is_ipv4(e.ip)], node_name=node_name)
    # Local endpoints are a subset of usable ones, so "any" is the cluster set.
    has_external = info.has_external
    uses_cluster = not info.internal_policy_local or has_external
    uses_local = info.internal_policy_local or (has_external and info.external_policy_local)
    svc = w.port_chain(SVC_PREFIX) if uses_cluster and sel.cluster else None
    svl = w.port_chain(SVL_PREFIX) if uses_local and sel.local else None
    internal = svl if info.internal_policy_local else svc
    if svc is not None:
        w.chain(svc)
    if svl is not None:
        w.chain(svl)
    _render_cluster_ip(w, internal, has_any=bool(sel.cluster))
    if has_external:
        _render_external(w, svc=svc, svl=svl)
    if svc is not None:
        w.endpoint_jumps(svc, sel.cluster)
    if svl is not None:
        w.endpoint_jumps(svl, sel.local)
    for ep in (sel.cluster if svc else ()) + (sel.local if svl else ()):
        sep = w.sep(ep.address)
        if sep not in w.chains:
            w.endpoint_chain(ep, sep)
    return w.done(sel)


def _no_endpoints(*, has_any: bool) -> tuple[str, str]:
    """(comment after the name, target) of the filter rule for traffic
    nothing here can serve: refused when the port has no endpoint at all,
    dropped when it only lacks local ones (kube-proxy's choice: a Local
    policy never falls back)."""
    if not has_any:
        return " has no endpoints", "REJECT"
    return " has no local endpoints", "DROP"


def _render_cluster_ip(w: _PortWriter, internal: str | None, *, has_any: bool) -> None:
    vip = w.dest(w.info.cluster_ip)
    if internal is None:
        comment, target = _no_endpoints(has_any=has_any)
        w.filter_shared(SERVICES_CHAIN, comment, f"{vip} -j {target}")
        return
    w.masquerade_off_cluster(internal)
    w.nat_shared(SERVICES_CHAIN, " cluster IP", f"{vip} -j {internal}")


def _render_external(w: _PortWriter, *, svc: str | None, svl: str | None) -> None:
    info = w.info
    has_any = svc is not None
    ext = w.port_chain(EXT_PREFIX)
    if has_any:
        _render_ext_chain(w, ext, svc=svc, svl=svl)
    served = svl is not None if info.external_policy_local else has_any
    comment, target = _no_endpoints(has_any=has_any)
    for ip in info.external_ips:
        if has_any:
            w.nat_shared(SERVICES_CHAIN, " external IP", f"{w.dest(ip)} -j {ext}")
        if not served:
            w.filter_shared(EXTERNAL_SERVICES_CHAIN, comment, f"{w.dest(ip)} -j {target}")
    _render_load_balancer(w, ext, has_any=has_any, served=served)
    if info.node_port:
        ports = f"{w.proto} --dport {info.node_port}"
        if has_any:
            w.nat_shared(NODEPORTS_CHAIN, "", f"{ports} -j {ext}")
        if not served:
            w.filter_shared(EXTERNAL_SERVICES_CHAIN, comment,
                            f"-m addrtype --dst-type LOCAL {ports} -j {target}")
    if info.health_check_node_port and info.external_policy_local:
        w.filter_shared(NODEPORTS_CHAIN, " health check node port",
                        f"-p tcp -m tcp --dport {info.health_check_node_port} -j ACCEPT")


def _render_ext_chain(w: _PortWriter, ext: str, *, svc: str | None, svl: str | None) -> None:
    rules = w.chain(ext)
    n = w.qname
    if not w.info.external_policy_local:
        # The endpoint may be on another node: SNAT so the reply comes back here.
        rules.append(_ext_rule(ext, f"masquerade traffic for {n} external destinations",
                               f"-j {MARK_MASQ_CHAIN}"))
        rules.append(w.rule(ext, " external destinations", f"-j {svc}"))
        return
    # Pods and the node itself are not subject to the external policy: they
    # reach every endpoint, as if they had gone out to a load balancer and back.
    rules.append(_ext_rule(ext, f"pod traffic for {n} external destinations",
                           f"-s {w.config.cluster_cidr} -j {svc}"))
    rules.append(_ext_rule(ext, f"masquerade LOCAL traffic for {n} external destinations",
                           f"-m addrtype --src-type LOCAL -j {MARK_MASQ_CHAIN}"))
    rules.append(_ext_rule(ext, f"route LOCAL traffic for {n} external destinations",
                           f"-m addrtype --src-type LOCAL -j {svc}"))
    if svl is not None:
        # The client's address is kept: no masquerade on this path.
        rules.append(w.rule(ext, " local endpoints", f"-j {svl}"))


def _ext_rule(chain: str, comment: str, args: str) -> str:
    """A rule whose comment does not start with the port's name (already quoted)."""
    return f'-A {chain} -m comment --comment "{comment}" {args}\n'


def _render_load_balancer(w: _PortWriter, ext: str, *, has_any: bool, served: bool) -> None:
    info = w.info
    ranges = info.load_balancer_source_ranges
    fw = w.port_chain(FW_PREFIX)
    if ranges and has_any and info.load_balancer_ips:
        rules = w.chain(fw)
        for cidr in ranges:
            rules.append(w.rule(fw, " loadbalancer IP", f"-s {cidr} -j {ext}"))
    comment, target = _no_endpoints(has_any=has_any)
    for ip in info.load_balancer_ips:
        if has_any:
            w.nat_shared(SERVICES_CHAIN, " loadbalancer IP",
                         f"{w.dest(ip)} -j {fw if ranges else ext}")
        if ranges:
            # What the FW chain let through is DNATed; the rest arrives here intact.
            w.filter_shared(PROXY_FIREWALL_CHAIN, f" traffic not accepted by {fw}",
                            f"{w.dest(ip)} -j DROP")
        if not served:
            w.filter_shared(EXTERNAL_SERVICES_CHAIN, comment, f"{w.dest(ip)} -j {target}")
