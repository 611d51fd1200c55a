"""iptables mode: Services rendered as one ``iptables-restore`` document.

Rendering is pure: ``render(services, endpoints, config)`` returns the whole
text for our chains in the ``nat``, ``filter`` and ``raw`` tables, in
kube-proxy's shape with the ``NP-`` prefix. The fixed jumps from the
built-in chains into ours are data (``PLUMBING``), read by both set-up and
clean-up in ``apply.py``. Applying is someone else's job.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import ipaddress
from dataclasses import dataclass, field

from netplane.api.meta import Obj
from netplane.proxy import model
from netplane.proxy.model import EndpointInfo, ServicePortInfo, ServicePortName

CHAIN_PREFIX = "NP-"
SERVICES_CHAIN = "NP-SERVICES"
POSTROUTING_CHAIN = "NP-POSTROUTING"
MARK_MASQ_CHAIN = "NP-MARK-MASQ"
NOTRACK_CHAIN = "NP-NOTRACK"
SVC_PREFIX = "NP-SVC-"
SEP_PREFIX = "NP-SEP-"
MAX_CHAIN_LEN = 28  # iptables' limit is 28 characters plus the terminator


class Table(enum.StrEnum):
    """The netfilter tables we write to."""

    RAW = "raw"
    NAT = "nat"
    FILTER = "filter"


@dataclass(frozen=True)
class ProxyConfig:
    """Node-wide settings that shape the rules."""

    cluster_cidr: str = "10.244.0.0/16"
    masquerade_bit: int = 14
    notrack_dns_ips: tuple[str, ...] = ()
    # MASQUERADE --random-fully avoids SNAT port races; needs kernel >= 3.13 support.
    masquerade_random_fully: bool = False

    @property
    def masquerade_mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


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

PLUMBING: tuple[Jump, ...] = (
    Jump(Table.RAW, "PREROUTING", NOTRACK_CHAIN, "netplane node-local DNS notrack"),
    Jump(Table.RAW, "OUTPUT", NOTRACK_CHAIN, "netplane node-local DNS notrack"),
    Jump(Table.NAT, "PREROUTING", SERVICES_CHAIN, "netplane service portals"),
    Jump(Table.NAT, "OUTPUT", SERVICES_CHAIN, "netplane service portals"),
    Jump(Table.NAT, "POSTROUTING", POSTROUTING_CHAIN, "netplane postrouting rules"),
    Jump(Table.FILTER, "FORWARD", SERVICES_CHAIN, "netplane service portals", _NEW),
    Jump(Table.FILTER, "OUTPUT", SERVICES_CHAIN, "netplane service portals", _NEW),
)

# Chains declared in every sync even when they hold no rule, so the jumps
# in PLUMBING always have a target.
FIXED_CHAINS: dict[Table, tuple[str, ...]] = {
    Table.RAW: (NOTRACK_CHAIN,),
    Table.NAT: (SERVICES_CHAIN, POSTROUTING_CHAIN, MARK_MASQ_CHAIN),
    Table.FILTER: (SERVICES_CHAIN,),
}


def _hash16(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def service_chain(spn: ServicePortName) -> str:
    """``NP-SVC-<hash>`` for one service port (kube-proxy's portProtoHash)."""
    return SVC_PREFIX + _hash16(str(spn) + spn.protocol.lower())


def endpoint_chain(spn: ServicePortName, endpoint: str) -> str:
    """``NP-SEP-<hash>`` for one endpoint (``ip:port``) of one service port."""
    return SEP_PREFIX + _hash16(str(spn) + spn.protocol.lower() + endpoint)


def probability(n: int) -> str:
    """Chance to pick the first of ``n`` remaining endpoints, as kube-proxy spells it."""
    return f"{1.0 / n:.10f}"


def _quote(comment: str) -> str:
    return '"' + comment.replace('"', "'") + '"'


def _is_ipv4(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False


def _host(ip: str) -> str:
    return f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}"


@dataclass
class _Doc:
    """Chain declarations and rules of one table, in writing order."""

    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    def chain(self, chain_name: str) -> None:
        self.chains.append(chain_name)

    def rule(self, chain_name: str, comment: str, *args: str) -> None:
        self.rules.append(" ".join(["-A", chain_name, "-m", "comment", "--comment",
                                    _quote(comment), *args]))

    def text(self, table: Table) -> list[str]:
        return [f"*{table}", *(f":{c} - [0:0]" for c in self.chains), *self.rules, "COMMIT"]


def _proto_match(info: ServicePortInfo) -> list[str]:
    proto = info.protocol.lower()
    return ["-p", proto, "-m", proto]


def _vip_match(info: ServicePortInfo) -> list[str]:
    return [*_proto_match(info), "-d", _host(info.cluster_ip), "--dport", str(info.port)]


def _render_endpoint(nat: _Doc, info: ServicePortInfo, ep: EndpointInfo) -> None:
    spn = info.key
    chain = endpoint_chain(spn, ep.address)
    nat.chain(chain)
    # Hairpin: a backend reaching its own service must be masqueraded, or
    # it would see a reply from itself and drop it.
    nat.rule(chain, str(spn), "-s", _host(ep.ip), "-j", MARK_MASQ_CHAIN)
    nat.rule(chain, str(spn), *_proto_match(info), "-j", "DNAT",
             "--to-destination", ep.address)


def _render_service_port(nat: _Doc, flt: _Doc, info: ServicePortInfo,
                         endpoints: list[EndpointInfo], config: ProxyConfig) -> None:
    spn = info.key
    ready = [ep for ep in endpoints if ep.ready]
    if not ready:
        flt.rule(SERVICES_CHAIN, f"{spn} has no endpoints", *_vip_match(info), "-j", "REJECT")
        return
    svc = service_chain(spn)
    nat.chain(svc)
    nat.rule(SERVICES_CHAIN, f"{spn} cluster IP", *_vip_match(info), "-j", svc)
    # Traffic from outside the pod network (nodes, hosts) needs SNAT so that
    # replies come back through this node's conntrack entry.
    nat.rule(svc, f"{spn} cluster IP", *_vip_match(info), "!", "-s", config.cluster_cidr,
             "-j", MARK_MASQ_CHAIN)
    for i, ep in enumerate(ready):
        left = len(ready) - i
        pick = ["-m", "statistic", "--mode", "random", "--probability", probability(left)]
        nat.rule(svc, f"{spn} -> {ep.address}", *(pick if left > 1 else []),
                 "-j", endpoint_chain(spn, ep.address))
    for ep in ready:
        _render_endpoint(nat, info, ep)


def _render_fixed_nat(nat: _Doc, config: ProxyConfig) -> None:
    mark = config.masquerade_mark
    comment = "netplane service traffic requiring SNAT"
    nat.rule(POSTROUTING_CHAIN, comment, "-m", "mark", "!", "--mark", f"{mark}/{mark}",
             "-j", "RETURN")
    # Clear the bit so a packet that is re-routed is not masqueraded twice.
    nat.rule(POSTROUTING_CHAIN, comment, "-j", "MARK", "--xor-mark", mark)
    fully = ["--random-fully"] if config.masquerade_random_fully else []
    nat.rule(POSTROUTING_CHAIN, comment, "-j", "MASQUERADE", *fully)
    nat.rule(MARK_MASQ_CHAIN, "netplane mark for masquerade", "-j", "MARK", "--or-mark", mark)


def _render_notrack(raw: _Doc, config: ProxyConfig) -> None:
    for ip in sorted(config.notrack_dns_ips):
        for proto in ("udp", "tcp"):
            base = ["-p", proto, "-m", proto]
            raw.rule(NOTRACK_CHAIN, "netplane node-local DNS", *base, "-d", _host(ip),
                     "--dport", "53", "-j", "NOTRACK")
            raw.rule(NOTRACK_CHAIN, "netplane node-local DNS", *base, "-s", _host(ip),
                     "--sport", "53", "-j", "NOTRACK")


def render(services: list[Obj], endpoints: list[Obj], config: ProxyConfig) -> str:
    """The complete iptables-restore input (``--noflush``) for our chains."""
    return render_map(model.build(services, endpoints), config)


def render_map(service_map: model.ServiceMap, config: ProxyConfig) -> str:
    """Like ``render``, from an already built service map."""
    docs = {t: _Doc() for t in Table}
    for table, chains in FIXED_CHAINS.items():
        for c in chains:
            docs[table].chain(c)
    _render_notrack(docs[Table.RAW], config)
    _render_fixed_nat(docs[Table.NAT], config)
    for spn in sorted(service_map):
        info, eps = service_map[spn]
        if not _is_ipv4(info.cluster_ip):
            continue  # iptables is IPv4 only; IPv6 service IPs belong to ip6tables
        eps = [ep for ep in eps if _is_ipv4(ep.ip)]
        _render_service_port(docs[Table.NAT], docs[Table.FILTER], info, eps, config)
    lines: list[str] = []
    for table in Table:
        lines.extend(docs[table].text(table))
    return "\n".join(lines) + "\n"


def _table(name: str) -> Table | None:
    return Table(name) if name in {t.value for t in Table} else None


def declared_chains(text: str) -> dict[Table, set[str]]:
    """Our chains declared per table in an iptables-save/restore document."""
    out: dict[Table, set[str]] = {t: set() for t in Table}
    table: Table | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = _table(line[1:].strip())
        elif line.startswith(":") and table is not None:
            chain = line[1:].split(" ", 1)[0]
            if chain.startswith(CHAIN_PREFIX):
                out[table].add(chain)
    return out


def with_stale_chains(text: str, stale: dict[Table, set[str]]) -> str:
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
            out.extend(f":{c} - [0:0]" for c in doomed)
    return "\n".join(out) + "\n"


def rule_count(text: str) -> int:
    """Number of rules (``-A`` lines) in a document."""
    return sum(1 for line in text.splitlines() if line.startswith("-A "))
