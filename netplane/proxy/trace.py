"""Reads iptables-restore text back and pushes packets through it.

``parse`` turns a document into tables, chains and rules and rejects what
``iptables-restore`` would reject for us (a rule in an undeclared chain, a
jump to a missing chain, an option we do not understand). ``trace_packet``
follows a packet's first packet through raw, nat, filter and nat
POSTROUTING and says where it can end: which endpoint it is DNATed to,
whether it is masqueraded, rejected or kept out of conntrack. Random
load-balancing rules are followed both ways, so every reachable endpoint
shows up. Used by tests and by inspection tools; it models only the
matches and targets our renderers write.
"""

from __future__ import annotations

import enum
import ipaddress
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from netplane.proxy.iptables import Jump

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}
TERMINAL_TARGETS = {"ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE"}
NONTERMINAL_TARGETS = {"MARK", "NOTRACK", "RETURN"}
_IGNORED_WITH_VALUE = {"-m", "--comment", "--mode", "--reject-with"}
_TARGET_OPTIONS = {"--to-destination", "--or-mark", "--xor-mark", "--set-xmark", "--set-mark",
                   "--and-mark", "--reject-with", "--to-source"}
_FLAGS = {"--random-fully", "--random"}
_MATCH_KEYS = {"-s": "src", "--source": "src", "-d": "dst", "--destination": "dst",
               "-p": "proto", "--protocol": "proto", "--dport": "dport", "--sport": "sport",
               "--probability": "probability", "--mark": "mark", "--ctstate": "ctstate"}


class ParseError(ValueError):
    """The document would not load; the message names the line."""


@dataclass(frozen=True)
class Condition:
    key: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class Rule:
    """One ``-A`` line: its matches, target and target options."""

    chain: str
    text: str
    conditions: tuple[Condition, ...]
    target: str
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str:
        return dict(self.options).get(name, "")


@dataclass
class Ruleset:
    """Tables → chains → rules, as the kernel would hold them after a restore."""

    tables: dict[str, dict[str, list[Rule]]] = field(default_factory=dict)

    def chain(self, table: str, chain: str) -> list[Rule]:
        return self.tables.get(table, {}).get(chain, [])

    def dump(self) -> str:
        """Canonical text: tables and chains sorted, rule order kept within a chain."""
        lines: list[str] = []
        for table in sorted(self.tables):
            chains = self.tables[table]
            lines.append(f"*{table}")
            lines += [f":{c}" for c in sorted(chains)]
            lines += [r.text for c in sorted(chains) for r in chains[c]]
            lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def with_jumps(self, jumps: Iterable[Jump]) -> Ruleset:
        """A copy with the fixed jumps put first in their built-in chains."""
        out = Ruleset({t: {c: list(rs) for c, rs in chains.items()}
                       for t, chains in self.tables.items()})
        for j in reversed(list(jumps)):
            args = " ".join(shlex.quote(a) for a in j.rule_args())
            rule = _parse_rule(j.base_chain, f"-A {j.base_chain} {args}", 0)
            out.tables.setdefault(j.table, {}).setdefault(j.base_chain, []).insert(0, rule)
        return out


def _parse_options(tokens: list[str], lineno: int) -> tuple[list[Condition], str,
                                                              list[tuple[str, str]]]:
    conds: list[Condition] = []
    opts: list[tuple[str, str]] = []
    target = ""
    negate = False
    it = iter(tokens)
    for tok in it:
        if tok == "!":
            negate = True
            continue
        if tok in ("-j", "-g"):
            target = next(it)
        elif tok in _MATCH_KEYS:
            conds.append(Condition(_MATCH_KEYS[tok], next(it), negate))
        elif tok in _TARGET_OPTIONS and target:
            opts.append((tok, next(it)))
        elif tok in _FLAGS:
            opts.append((tok, ""))
        elif tok in _IGNORED_WITH_VALUE:
            next(it)
        else:
            raise ParseError(f"line {lineno}: option {tok!r} is not understood")
        negate = False
    return conds, target, opts


def _parse_rule(chain: str, line: str, lineno: int) -> Rule:
    try:
        tokens = shlex.split(line)[2:]
        conds, target, opts = _parse_options(tokens, lineno)
    except (StopIteration, ValueError) as e:
        raise ParseError(f"line {lineno}: cannot parse {line!r}: {e}") from None
    return Rule(chain, line, tuple(conds), target, tuple(opts))


@dataclass
class _TableBuilder:
    name: str
    chains: dict[str, list[Rule]]
    deleted: list[str] = field(default_factory=list)

    def check(self, lineno: int) -> None:
        for c in self.deleted:
            self.chains.pop(c, None)
        for rules in self.chains.values():
            for r in rules:
                if r.target and r.target not in TERMINAL_TARGETS | NONTERMINAL_TARGETS \
                        and r.target not in self.chains:
                    raise ParseError(f"table {self.name} (COMMIT at line {lineno}): "
                                     f"{r.chain} jumps to missing chain {r.target}")


def _table_line(cur: _TableBuilder, line: str, lineno: int) -> None:
    if line.startswith(":"):
        cur.chains.setdefault(line[1:].split()[0], [])
    elif line.startswith("-A "):
        chain = line.split()[1]
        if chain not in cur.chains:
            raise ParseError(f"line {lineno}: rule in undeclared chain {chain}")
        cur.chains[chain].append(_parse_rule(chain, line, lineno))
    elif line.startswith("-X "):
        chain = line.split()[1]
        if chain not in cur.chains:
            raise ParseError(f"line {lineno}: deleting undeclared chain {chain}")
        cur.deleted.append(chain)
    else:
        raise ParseError(f"line {lineno}: unexpected {line!r}")


def parse(text: str) -> Ruleset:
    """Parses iptables-restore input; raises ParseError where the kernel would refuse."""
    out = Ruleset()
    cur: _TableBuilder | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            name = line[1:]
            cur = _TableBuilder(name, {c: [] for c in BUILTIN_CHAINS.get(name, ())})
        elif cur is None:
            raise ParseError(f"line {lineno}: {line!r} outside a table")
        elif line == "COMMIT":
            cur.check(lineno)
            out.tables[cur.name] = {c: rs for c, rs in cur.chains.items()
                                    if c not in BUILTIN_CHAINS.get(cur.name, ()) or rs}
            cur = None
        else:
            _table_line(cur, line, lineno)
    if cur is not None:
        raise ParseError(f"table {cur.name} has no COMMIT")
    return out


class Verdict(enum.StrEnum):
    ACCEPT = "ACCEPT"
    DROP = "DROP"
    REJECT = "REJECT"


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection."""

    src: str
    protocol: str
    dst: str
    dport: int
    sport: int = 40000


@dataclass(frozen=True)
class Flow:
    """One way a packet can end, with what happened to it on the way."""

    verdict: Verdict
    dnat: str | None = None
    masquerade: bool = False
    notrack: bool = False


@dataclass(frozen=True)
class _State:
    mark: int = 0
    notrack: bool = False
    dnat: str | None = None
    end: str | None = None  # the terminal target hit, None when the chain fell through


def _in(addr: str, cidr: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(cidr, strict=False)


def _mark_match(value: str, mark: int) -> bool:
    v, _, m = value.partition("/")
    mask = int(m, 0) if m else 0xFFFFFFFF
    return mark & mask == int(v, 0)


def _cond_holds(c: Condition, pkt: Packet, st: _State) -> bool:
    checks = {
        "src": lambda: _in(pkt.src, c.value),
        "dst": lambda: _in(pkt.dst, c.value),
        "proto": lambda: pkt.protocol.lower() == c.value.lower(),
        "dport": lambda: pkt.dport == int(c.value),
        "sport": lambda: pkt.sport == int(c.value),
        "mark": lambda: _mark_match(c.value, st.mark),
        "ctstate": lambda: ("UNTRACKED" if st.notrack else "NEW") in c.value.split(","),
    }
    return checks[c.key]() != c.negated


def _matches(rule: Rule, pkt: Packet, st: _State) -> tuple[bool, bool]:
    """(may match, may also not match): random rules can go either way."""
    random = False
    for c in rule.conditions:
        if c.key == "probability":
            random = float(c.value) < 1.0
        elif not _cond_holds(c, pkt, st):
            return False, True
    return True, random


def _set_mark(rule: Rule, mark: int) -> int:
    if rule.option("--or-mark"):
        return mark | int(rule.option("--or-mark"), 0)
    if rule.option("--xor-mark"):
        return mark ^ int(rule.option("--xor-mark"), 0)
    if rule.option("--and-mark"):
        return mark & int(rule.option("--and-mark"), 0)
    value = rule.option("--set-xmark") or rule.option("--set-mark")
    v, _, m = value.partition("/")
    mask = int(m, 0) if m else 0xFFFFFFFF
    xor = rule.option("--set-xmark") != ""
    return ((mark & ~mask) ^ int(v, 0)) if xor else ((mark & ~mask) | int(v, 0))


def _target(rs: Ruleset, table: str, rule: Rule, pkt: Packet, st: _State) -> list[_State]:
    """States after the rule's target; ``end`` set means the table is done."""
    t = rule.target
    if t == "MARK":
        return [replace(st, mark=_set_mark(rule, st.mark))]
    if t == "NOTRACK":
        return [replace(st, notrack=True)]
    if t == "RETURN":
        return [replace(st, end="RETURN")]
    if t == "DNAT":
        return [replace(st, dnat=rule.option("--to-destination"), end=t)]
    if t in TERMINAL_TARGETS:
        return [replace(st, end=t)]
    # A user chain: what falls through or RETURNs comes back here.
    return [replace(s, end=None) if s.end == "RETURN" else s
            for s in _walk(rs, table, t, pkt, st)]


def _walk(rs: Ruleset, table: str, chain: str, pkt: Packet, st: _State) -> list[_State]:
    done: list[_State] = []
    live = [st]
    for rule in rs.chain(table, chain):
        nxt: list[_State] = []
        for s in live:
            may, may_not = _matches(rule, pkt, s)
            if may_not:
                nxt.append(s)
            if may:
                for out in (_target(rs, table, rule, pkt, s) if rule.target else [s]):
                    (done if out.end else nxt).append(out)
        live = nxt
    return done + live


def _verdict(end: str | None) -> Verdict:
    # Falling off a built-in chain, or leaving it, means its policy: ACCEPT here.
    return Verdict(end) if end in ("DROP", "REJECT") else Verdict.ACCEPT


def _redirected(pkt: Packet, dnat: str | None) -> Packet:
    if dnat is None:
        return pkt
    ip, _, port = dnat.rpartition(":")
    return replace(pkt, dst=ip, dport=int(port))


def _flows_after_raw(rs: Ruleset, pkt: Packet, st: _State, *, local: bool) -> list[Flow]:
    hook = "OUTPUT" if local else "PREROUTING"
    nat = [st] if st.notrack else _walk(rs, "nat", hook, pkt, st)
    flows: list[Flow] = []
    for s in nat:
        s = replace(s, end=None)
        after = _redirected(pkt, s.dnat)
        verdicts = {_verdict(x.end) for x in _walk(rs, "filter", "OUTPUT" if local else "FORWARD",
                                                   after, s)}
        for v in sorted(verdicts):
            post = [] if s.notrack else _walk(rs, "nat", "POSTROUTING", after, s)
            masq = any(p.end == "MASQUERADE" for p in post)
            flows.append(Flow(v, s.dnat, masq and v == Verdict.ACCEPT, s.notrack))
    return flows


def trace_packet(rs: Ruleset, pkt: Packet, *, local: bool = False) -> list[Flow]:
    """Every way the packet can end: routed through this node, or sent by it (``local``)."""
    raw = _walk(rs, "raw", "OUTPUT" if local else "PREROUTING", pkt, _State())
    flows: set[Flow] = set()
    for st in raw:
        flows.update(_flows_after_raw(rs, pkt, replace(st, end=None), local=local))
    return sorted(flows, key=lambda f: (f.verdict, f.dnat or "", f.masquerade, f.notrack))
