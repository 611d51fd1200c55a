"""iptables mode: Services rendered as ``iptables-restore --noflush`` documents.

Rendering is pure. ``render(services, endpoints, config)`` returns the whole
text for our chains in the ``raw``, ``nat`` and ``filter`` tables.
``document`` assembles it from the fixed rules here and the kept per-port
``PortRules`` (``rules``), joined per part of each table (``document``
module), so that a full sync re-renders only what changed; ``partial_document``
writes only what changed for some
ports: their own chains are redeclared (which flushes them) and rewritten,
their lines in the shared chains are deleted (``-D``) or inserted only when
they differ, and their chains that are no longer needed are deleted. This
is kube-proxy's MinimizeIPTablesRestore with one more step: the big shared
chains are never rewritten in a partial sync, because rewriting a chain of
10,000 rules costs far more than the one changed line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from netplane.api.meta import Obj
from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.chains import (
    CHAIN_PREFIX,
    FIXED_CHAINS,
    FORWARD_CHAIN,
    INSERT_AT_TOP,
    LOCALNET_CHAIN,
    MARK_MASQ_CHAIN,
    MAX_CHAIN_LEN,
    NODEPORTS_CHAIN,
    NOTRACK_CHAIN,
    PLUMBING,
    POSTROUTING_CHAIN,
    SEP_PREFIX,
    SERVICES_CHAIN,
    SVC_PREFIX,
    Jump,
    Table,
    endpoint_chain,
    external_chain,
    firewall_chain,
    host,
    local_chain,
    probability,
    rule,
    service_chain,
)
from netplane.proxy.iptables.document import Joined, Layout, Listed, Streamed, assemble
from netplane.proxy.iptables.rules import PORT_CHAINS, PORT_TEXTS, PortRules, render_port
from netplane.proxy.model import ServicePortName, is_ipv4, port_order

__all__ = [
    "CHAIN_PREFIX",
    "FIXED_CHAINS",
    "MARK_MASQ_CHAIN",
    "MAX_CHAIN_LEN",
    "NOTRACK_CHAIN",
    "PLUMBING",
    "POSTROUTING_CHAIN",
    "SEP_PREFIX",
    "SERVICES_CHAIN",
    "SVC_PREFIX",
    "Jump",
    "PortRules",
    "ProxyConfig",
    "Table",
    "declared_chains",
    "document",
    "endpoint_chain",
    "external_chain",
    "firewall_chain",
    "fixed_rules",
    "full_document",
    "local_chain",
    "partial_document",
    "probability",
    "render",
    "render_map",
    "render_ports",
    "rule_count",
    "service_chain",
    "streamed_document",
    "with_stale_chains",
]

PortMap = Mapping[ServicePortName, PortRules]
_PORTS: Layout[PortRules] = Layout.of_fields(PORT_TEXTS, PORT_CHAINS)


def _postrouting(config: ProxyConfig) -> list[str]:
    mark = config.masquerade_mark
    comment = "netplane service traffic requiring SNAT"
    fully = " --random-fully" if config.masquerade_random_fully else ""
    return [
        rule(POSTROUTING_CHAIN, comment, f"-m mark ! --mark {mark}/{mark} -j RETURN"),
        # Clear the bit so a packet that is re-routed is not masqueraded twice.
        rule(POSTROUTING_CHAIN, comment, f"-j MARK --xor-mark {mark}"),
        rule(POSTROUTING_CHAIN, comment, f"-j MASQUERADE{fully}"),
        rule(MARK_MASQ_CHAIN, "netplane mark for masquerade", f"-j MARK --or-mark {mark}"),
    ]


def _nodeport_dispatch(config: ProxyConfig) -> list[str]:
    """The last rules of nat NP-SERVICES: what is left and addressed to the
    node goes to the NodePorts."""
    comment = "netplane service nodeports; must stay last in this chain"
    if not config.node_ips:
        return [rule(SERVICES_CHAIN, comment, f"-m addrtype --dst-type LOCAL -j {NODEPORTS_CHAIN}")]
    ips = [host(ip) for ip in config.node_ips if is_ipv4(ip)]
    if config.localhost_nodeports:
        ips.append("127.0.0.0/8")
    return [rule(SERVICES_CHAIN, comment, f"-d {ip} -j {NODEPORTS_CHAIN}") for ip in ips]


def _filter_fixed(config: ProxyConfig) -> list[str]:
    mark = config.masquerade_mark
    return [
        # First: every later packet of a connection ends here. The states are
        # disjoint from INVALID, and both targets accept, so the order of the
        # three rules changes no verdict.
        rule(FORWARD_CHAIN, "netplane forwarding conntrack rule",
             "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        rule(FORWARD_CHAIN, "netplane forwarding conntrack rule",
             "-m conntrack --ctstate INVALID -j DROP"),
        # Masqueraded traffic was DNATed to an endpoint, so the service checks
        # after this chain (which match a service address) could not catch it.
        rule(FORWARD_CHAIN, "netplane forwarding rules", f"-m mark --mark {mark}/{mark} -j ACCEPT"),
        # route_localnet lets 127.0.0.1 NodePorts work; never let other hosts
        # reach the node's loopback services through it (CVE-2020-8558).
        rule(LOCALNET_CHAIN, "netplane block incoming localnet connections",
             "! -s 127.0.0.0/8 -d 127.0.0.0/8 "
             "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"),
    ]


def notrack_rules(config: ProxyConfig) -> list[str]:
    """Node-local DNS bypasses conntrack (and so NAT) in both directions."""
    out: list[str] = []
    for ip in sorted(config.notrack_dns_ips):
        for proto in ("udp", "tcp"):
            base = f"-p {proto} -m {proto}"
            out.append(rule(NOTRACK_CHAIN, "netplane node-local DNS",
                            f"{base} -d {host(ip)} --dport 53 -j NOTRACK"))
            out.append(rule(NOTRACK_CHAIN, "netplane node-local DNS",
                            f"{base} -s {host(ip)} --sport 53 -j NOTRACK"))
    return out


def fixed_rules(config: ProxyConfig) -> dict[Table, list[str]]:
    """Rules of our fixed chains that do not depend on any Service."""
    return {Table.RAW: notrack_rules(config), Table.NAT: _postrouting(config),
            Table.FILTER: _filter_fixed(config)}


def _decl(chain: str) -> str:
    return f":{chain} - [0:0]"


def document(config: ProxyConfig, owners: Sequence[Joined], *,
             stale: Mapping[Table, set[str]] | None = None) -> str:
    """Every chain of ours from scratch: the fixed rules, then each kind of
    owner's kept text (service ports first); ``stale`` chains (ours only)
    are deleted."""
    return assemble(owners, head=fixed_rules(config), tail=_tail(config), stale=stale)


def streamed_document(write: Callable[[str], None], config: ProxyConfig, *,
                      flush: Iterable[str] = ()) -> Streamed:
    """``document``'s rules, written to ``write`` while the service ports'
    nat chains are rendered (see ``Streamed``)."""
    return Streamed(write, Table.NAT, head=fixed_rules(config), tail=_tail(config), flush=flush)


def _tail(config: ProxyConfig) -> dict[Table, list[str]]:
    return {Table.NAT: _nodeport_dispatch(config)}


def full_document(ports: Iterable[PortRules], config: ProxyConfig, *,
                  stale: Mapping[Table, set[str]] | None = None) -> str:
    """Every chain of ours, from scratch, for ``ports`` in the given order;
    ``stale`` chains (ours only) are deleted."""
    return document(config, [Listed(ports, layout=_PORTS)], stale=stale)


def _chain_of(line: str) -> str:
    return line.split(" ", 2)[1]


def _added(line: str, table: Table) -> str:
    chain = _chain_of(line)
    if (table, chain) in INSERT_AT_TOP:
        return f"-I {chain} 1 {line.split(' ', 2)[2]}"
    return line


def _shared_diff(old: list[str], new: list[str], table: Table) -> tuple[list[str], list[str]]:
    """(``-D`` lines for what went, insert lines for what came)."""
    old_set, new_set = set(old), set(new)
    gone = ["-D" + line[2:] for line in old if line not in new_set]
    came = [_added(line, table) for line in new if line not in old_set]
    return gone, came


def partial_document(old: PortMap, new: PortMap, changed: Iterable[ServicePortName]) -> str:
    """Only the changes of the ``changed`` ports, on top of ``old`` in the kernel.

    Empty when nothing differs."""
    decls: list[str] = []
    own: list[str] = []
    nat_gone: list[str] = []
    nat_came: list[str] = []
    flt_gone: list[str] = []
    flt_came: list[str] = []
    doomed: list[str] = []
    empty = PortRules()
    for spn in sorted(set(changed), key=port_order):
        o, n = old.get(spn, empty), new.get(spn, empty)
        if o == n:
            continue
        stale = [c for c in o.nat_chains if c not in n.nat_chains]
        # Only chains whose rules differ are flushed and rewritten.
        rewrite = {c: rs for c, rs in n.nat_chains.items() if o.nat_chains.get(c) != rs}
        decls += [_decl(c) for c in [*rewrite, *stale]]
        own += [r for rs in rewrite.values() for r in rs.splitlines()]
        doomed += [f"-X {c}" for c in stale]
        gone, came = _shared_diff(o.nat_shared.splitlines(), n.nat_shared.splitlines(),
                                  Table.NAT)
        nat_gone += gone
        nat_came += came
        gone, came = _shared_diff(o.filter_shared.splitlines(), n.filter_shared.splitlines(),
                                  Table.FILTER)
        flt_gone += gone
        flt_came += came
    lines: list[str] = []
    # Old jumps go before the chains they point at are deleted; new jumps
    # come after the chains they point at are filled.
    nat = [*decls, *nat_gone, *own, *nat_came, *doomed]
    if nat:
        lines += ["*nat", *nat, "COMMIT"]
    if flt_gone or flt_came:
        lines += ["*filter", *flt_gone, *flt_came, "COMMIT"]
    return "\n".join(lines) + "\n" if lines else ""


def render_ports(service_map: model.ServiceMap, config: ProxyConfig, *,
                 node_name: str = "") -> dict[ServicePortName, PortRules]:
    """Each IPv4 service port's rules, in sorted order."""
    out: dict[ServicePortName, PortRules] = {}
    for spn in sorted(service_map, key=port_order):
        info, eps = service_map[spn]
        if is_ipv4(info.cluster_ip):  # IPv6 service IPs belong to ip6tables
            out[spn] = render_port(info, eps, config=config, node_name=node_name)
    return out


def render(services: list[Obj], endpoints: list[Obj], config: ProxyConfig, *,
           node_name: str = "") -> str:
    """The complete iptables-restore input (``--noflush``) for our chains."""
    return render_map(model.build(services, endpoints), config, node_name=node_name)


def render_map(service_map: model.ServiceMap, config: ProxyConfig, *,
               node_name: str = "") -> str:
    """Like ``render``, from an already built service map."""
    return full_document(render_ports(service_map, config, node_name=node_name).values(),
                         config)


def _table(name: str) -> Table | None:
    return Table(name) if name in {t.value for t in Table} else None


_TABLE_LINE = re.compile(r"^\*(.*)$", re.M)
_OUR_DECLARATION = re.compile(rf"^:({re.escape(CHAIN_PREFIX)}[^ \n]*)", re.M)


def declared_chains(text: str) -> dict[Table, set[str]]:
    """Our chains declared per table in an iptables-save/restore document.

    Read with regular expressions, table by table: at start and after drift
    this runs over an ``iptables-save`` of every rule of ours."""
    out: dict[Table, set[str]] = {t: set() for t in Table}
    tables = list(_TABLE_LINE.finditer(text))
    for i, found in enumerate(tables):
        table = _table(found[1].strip())
        if table is not None:
            end = tables[i + 1].start() if i + 1 < len(tables) else len(text)
            out[table].update(_OUR_DECLARATION.findall(text, found.end(), end))
    return out


def with_stale_chains(text: str, stale: Mapping[Table, set[str]]) -> str:
    """Adds the deletion of ``stale`` chains (ours only) to a rendered document.

    Each stale chain is declared (which flushes it) and then deleted after
    the new rules, so that jumps into it are already gone in the same
    transaction."""
    out: list[str] = []
    doomed: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            table = _table(line[1:].strip())
            ours = stale.get(table, set()) if table is not None else set()
            doomed = sorted(c for c in ours if c.startswith(CHAIN_PREFIX))
        if line == "COMMIT":
            out.extend(f"-X {c}" for c in doomed)
        out.append(line)
        if line.startswith("*"):
            out.extend(_decl(c) for c in doomed)
    return "\n".join(out) + "\n"


def rule_count(text: str) -> int:
    """Number of rules (``-A`` lines) in a document."""
    return sum(1 for line in text.splitlines() if line.startswith("-A "))


def chain_rule_counts(text: str) -> dict[tuple[Table, str], int]:
    """Rules per chain of ours in an iptables-save document (for drift reports)."""
    out: dict[tuple[Table, str], int] = {}
    table: Table | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = _table(line[1:].strip())
        elif table is None:
            continue
        elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIX):
            out.setdefault((table, line[1:].split(" ", 1)[0]), 0)
        elif line.startswith("-A ") and _chain_of(line).startswith(CHAIN_PREFIX):
            key = (table, _chain_of(line))
            out[key] = out.get(key, 0) + 1
    return out
