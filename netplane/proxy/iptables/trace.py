"""Pushes a connection's first packet through parsed iptables rules.

``trace_packet`` follows the kernel's order: raw, then nat PREROUTING (or
OUTPUT for a packet the node sends), the routing decision (to the node
itself -> filter INPUT, else filter FORWARD; a packet the node sends also
crosses filter OUTPUT), then nat POSTROUTING for what leaves. It says every
way the packet can end: which endpoint it is DNATed to, whether it is
masqueraded, accepted, dropped or rejected, kept out of conntrack, or
delivered to the node itself. Random load-balancing rules are followed
both ways, so every reachable endpoint shows up. ``-m recent`` is answered
from the source's known affinity lists (``recent``); ``-m addrtype`` from
the node's addresses (``local_ips``, plus 127.0.0.0/8). The parser lives
in ``parse``. ``trace_established`` follows a later packet of a known
connection instead, listing every rule it is matched against: nat is not
consulted for it (conntrack applies the NAT its first packet chose), raw
and filter are.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from netplane.proxy.iptables.parse import (
    BUILTIN_CHAINS,
    NONTERMINAL_TARGETS,
    TERMINAL_TARGETS,
    Condition,
    ParseError,
    Rule,
    Ruleset,
    parse,
)
from netplane.proxy.trace import Crossing, Flow, Packet, Step, Verdict

__all__ = ["BUILTIN_CHAINS", "NONTERMINAL_TARGETS", "TERMINAL_TARGETS", "Condition", "Crossing",
           "ParseError", "Rule", "Ruleset", "parse", "trace_established", "trace_packet",
           "trace_steps"]


@dataclass(frozen=True)
class _State:
    mark: int = 0
    notrack: bool = False
    dnat: str | None = None
    end: str | None = None  # the terminal target hit, None when the chain fell through
    path: tuple[str, ...] = ()  # "table/chain -> TARGET" for each rule that sent it on
    chance: float = 1.0  # product of the random matches taken or passed


@dataclass(frozen=True)
class _Ctx:
    pkt: Packet
    local_ips: frozenset[str] = field(default_factory=frozenset)
    recent: frozenset[str] = field(default_factory=frozenset)
    established: bool = False  # a later packet of a connection conntrack knows
    seen: list[str] | None = None  # when given, every rule matched against, in order
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)  # ipset name -> networks

    def is_local(self, ip: str) -> bool:
        return ip in self.local_ips or ip.startswith("127.")


def _in(addr: str, cidr: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(cidr, strict=False)


def _mark_match(value: str, mark: int) -> bool:
    v, _, m = value.partition("/")
    mask = int(m, 0) if m else 0xFFFFFFFF
    return mark & mask == int(v, 0)


def _ctstates(ctx: _Ctx, st: _State) -> set[str]:
    if st.notrack:
        return {"UNTRACKED"}
    if ctx.established:
        return {"ESTABLISHED"}
    return {"NEW", "DNAT"} if st.dnat else {"NEW"}


def _port_in(port: int, value: str) -> bool:
    first, _, last = value.partition(":")
    return int(first) <= port <= int(last or first)


def _in_set(ctx: _Ctx, value: str) -> bool:
    name, _, direction = value.partition(" ")
    addr = ctx.pkt.src if direction == "src" else ctx.pkt.dst
    return any(_in(addr, n) for n in ctx.sets.get(name, ()))


def _addrtype(value: str, is_local: bool) -> bool:
    return (value == "LOCAL") == is_local


def _checks(c: Condition, ctx: _Ctx, st: _State) -> dict[str, Callable[[], bool]]:
    pkt = ctx.pkt
    return {
        "src": lambda: _in(pkt.src, c.value),
        "dst": lambda: _in(pkt.dst, c.value),
        "proto": lambda: pkt.protocol.lower() == c.value.lower(),
        "dport": lambda: _port_in(pkt.dport, c.value),
        "sport": lambda: pkt.sport == int(c.value),
        "mark": lambda: _mark_match(c.value, st.mark),
        "ctstate": lambda: bool(_ctstates(ctx, st) & set(c.value.split(","))),
        "dsttype": lambda: _addrtype(c.value, ctx.is_local(pkt.dst)),
        "srctype": lambda: _addrtype(c.value, ctx.is_local(pkt.src)),
        "recent": lambda: c.value in ctx.recent,
        "set": lambda: _in_set(ctx, c.value),
    }


def _cond_holds(c: Condition, ctx: _Ctx, st: _State) -> bool:
    return _checks(c, ctx, st)[c.key]() != c.negated


def _matches(rule: Rule, ctx: _Ctx, st: _State) -> tuple[bool, bool, float]:
    """(may match, may also not match, chance of matching): random rules can
    go either way."""
    chance = 1.0
    for c in rule.conditions:
        if c.key == "probability":
            chance = float(c.value)
        elif not _cond_holds(c, ctx, st):
            return False, True, 0.0
    return True, chance < 1.0, chance


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


def _target(rs: Ruleset, table: str, chain: str, rule: Rule, ctx: _Ctx,
            st: _State) -> list[_State]:
    """States after the rule's target; ``end`` set means the table is done."""
    t = rule.target
    if t not in ("MARK", "RETURN"):
        st = replace(st, path=(*st.path, f"{table}/{chain} -> {t}"))
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
            for s in _walk(rs, table, t, ctx, st)]


def _walk(rs: Ruleset, table: str, chain: str, ctx: _Ctx, st: _State) -> list[_State]:
    done: list[_State] = []
    live = [st]
    for rule in rs.chain(table, chain):
        nxt: list[_State] = []
        for s in live:
            if ctx.seen is not None:
                ctx.seen.append(f"{table}/{chain}: {rule.spec}")
            may, may_not, chance = _matches(rule, ctx, s)
            if may_not:
                nxt.append(replace(s, chance=s.chance * (1 - chance)) if may else s)
            if may:
                taken = replace(s, chance=s.chance * chance)
                for out in (_target(rs, table, chain, rule, ctx, taken)
                            if rule.target else [taken]):
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


def _after_nat(rs: Ruleset, ctx: _Ctx, s: _State, *, local: bool) -> list[Step]:
    after = replace(ctx, pkt=_redirected(ctx.pkt, s.dnat))
    to_node = after.is_local(after.pkt.dst)
    if local:
        hooks = ["OUTPUT", "INPUT"] if to_node else ["OUTPUT"]
    else:
        hooks = ["INPUT"] if to_node else ["FORWARD"]
    leaves = local or not to_node
    steps: list[Step] = []
    for v, filtered in sorted(_filter_states(rs, hooks, after, s).items()):
        post = [] if s.notrack or not leaves else _walk(rs, "nat", "POSTROUTING", after, s)
        masq = [p for p in post if p.end == "MASQUERADE"]
        path = filtered.path + (masq[0].path[len(s.path):] if masq and
                                v == Verdict.ACCEPT else ())
        steps.append(Step(Flow(v, s.dnat, bool(masq) and v == Verdict.ACCEPT, s.notrack,
                               to_node), path, s.chance))
    return steps


def _filter_states(rs: Ruleset, hooks: Iterable[str], ctx: _Ctx,
                   st: _State) -> dict[Verdict, _State]:
    """Verdicts of the first filter hook that does not simply accept, each
    with the state (and so the path) that led to it."""
    for hook in hooks:
        got: dict[Verdict, _State] = {}
        for x in _walk(rs, "filter", hook, ctx, st):
            got.setdefault(_verdict(x.end), x)
        if set(got) != {Verdict.ACCEPT}:
            return got
    return {Verdict.ACCEPT: st}


def trace_packet(rs: Ruleset, pkt: Packet, *, local: bool = False,
                 local_ips: Iterable[str] = (), recent: Iterable[str] = (),
                 sets: Mapping[str, frozenset[str]] | None = None) -> list[Flow]:
    """Every way the packet can end: routed through this node, or sent by it (``local``).

    ``local_ips``: the node's own addresses; ``recent``: names of the
    ``-m recent`` lists that already hold the packet's source; ``sets``:
    the ipsets' contents."""
    flows = {step.flow for step in trace_steps(rs, pkt, local=local, local_ips=local_ips,
                                               recent=recent, sets=sets)}
    return sorted(flows, key=lambda f: (f.verdict, f.dnat or "", f.masquerade, f.notrack))


def trace_steps(rs: Ruleset, pkt: Packet, *, local: bool = False,
                local_ips: Iterable[str] = (), recent: Iterable[str] = (),
                sets: Mapping[str, frozenset[str]] | None = None) -> list[Step]:
    """Like ``trace_packet``, but every way with its rule path and chance
    (``netplane trace`` prints these)."""
    ctx = _Ctx(pkt, frozenset(local_ips), frozenset(recent), sets=dict(sets or {}))
    hook = "OUTPUT" if local else "PREROUTING"
    steps: list[Step] = []
    for st in _walk(rs, "raw", hook, ctx, _State()):
        st = replace(st, end=None)
        nat = [st] if st.notrack else _walk(rs, "nat", hook, ctx, st)
        for s in nat:
            steps.extend(_after_nat(rs, ctx, replace(s, end=None), local=local))
    return steps


def _filter_hooks(ctx: _Ctx, *, local: bool) -> list[str]:
    to_node = ctx.is_local(ctx.pkt.dst)
    if local:
        return ["OUTPUT", "INPUT"] if to_node else ["OUTPUT"]
    return ["INPUT"] if to_node else ["FORWARD"]


def trace_established(rs: Ruleset, pkt: Packet, *, local: bool = False,
                      local_ips: Iterable[str] = ()) -> list[Crossing]:
    """The raw and filter chains a later packet of a known connection crosses
    (either direction; ``pkt`` as filter sees it, after the connection's
    destination NAT), each with the rules it is matched against, until one
    drops or rejects it. nat chains never see such a packet."""
    hooks = [("raw", "OUTPUT" if local else "PREROUTING")]
    ctx = _Ctx(pkt, frozenset(local_ips), established=True)
    hooks += [("filter", hook) for hook in _filter_hooks(ctx, local=local)]
    out: list[Crossing] = []
    st = _State()
    for table, hook in hooks:
        seen: list[str] = []
        # Raw and filter rules are not random: a later packet takes one way.
        done = _walk(rs, table, hook, replace(ctx, seen=seen), st)[0]
        verdict = _verdict(done.end)
        st = replace(done, end=None)
        out.append(Crossing(hook.lower(), f"{table}/{hook}", verdict, tuple(seen)))
        if verdict != Verdict.ACCEPT:
            break
    return out
