"""Pushes a connection's first packet through our nftables table as the
kernel lists it (``nft -j list table ip netplane``).

The nftables twin of ``trace``: ``trace_nft`` evaluates the rules the kernel
holds, not the text the renderer meant to load. Base chains run per hook in
priority order (raw, filter before DNAT, nat, filter after DNAT); a packet
routed through the node crosses prerouting, then input (when it is for the
node itself) or forward and postrouting; one the node sends crosses output
and postrouting and, when it is for the node, prerouting and input again on
``lo`` with its NAT settled. This module walks hooks, chains and rules and
carries out statements (verdicts, vmaps, NAT, marks, notrack, reject);
reading the listing and evaluating expressions and lookups is
:mod:`netplane.proxy.nftables.eval`'s. ``snat`` counts as masquerading (the
source is rewritten either way). ``trace_nft_established`` follows a later
packet of a known connection instead, listing every rule each base chain
evaluates for it: NAT chains never see such a packet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from netplane.proxy.nftables.eval import (
    End,
    Json,
    NftTable,
    NftTraceError,
    PacketState,
    TraceContext,
    Value,
    as_int,
    holds,
    load_table,
    lookup,
    set_name,
    show,
    show_value,
    split_expr,
    unmodelled,
    values_of,
)
from netplane.proxy.nftables.layout import FAMILY
from netplane.proxy.trace import Crossing, Flow, Packet, Step, Verdict

__all__ = ["Crossing", "NftTable", "NftTraceError", "load_table", "trace_nft",
           "trace_nft_established"]

_MAX_DEPTH = 64  # nft refuses loops; this only guards against a broken listing
_FINAL = (End.DROP, End.REJECT)


@dataclass(frozen=True)
class _Branch:
    """One way through one rule so far."""

    st: PacketState
    words: tuple[str, ...] = ()  # the conditions that held, then "-> " statements
    p: float = 1.0  # chance of the random choices made inside the rule
    acted: bool = False  # a statement ran: the rule earns a path entry


_Done = tuple[_Branch, End, str | None]  # the rule's outcome, with a jump's target
_Exit = tuple[PacketState, End]  # how the packet leaves a chain, a hook or the table


# -- matches -------------------------------------------------------------------------------


def _match(ctx: TraceContext, b: _Branch, a: Json) -> tuple[list[_Branch], list[_Done]]:
    op, left, right = a["op"], a["left"], a["right"]
    text = f"{show(left)} {'' if op in ('==', 'in') else op + ' '}{show(right)}"
    held: list[_Branch] = []
    missed: list[_Done] = []
    values = values_of(ctx, b.st, left)
    if not values:
        missed.append((b, End.NEXT, None))
    for v, p in values:
        ok, shown = holds(ctx, op, right, v)
        if ok:
            held.append(replace(b, words=(*b.words, shown or text), p=b.p * p))
        else:
            missed.append((replace(b, p=b.p * p), End.NEXT, None))
    return held, missed


# -- statements ----------------------------------------------------------------------------


_PLAIN_VERDICTS = {"accept": End.ACCEPT, "drop": End.DROP, "return": End.RETURN,
                   "continue": End.NEXT}


def _said(b: _Branch, text: str, **changes: Any) -> _Branch:
    st = replace(b.st, **changes) if changes else b.st
    return replace(b, st=st, words=(*b.words, f"-> {text}"), acted=True)


def _verdict(b: _Branch, v: Json) -> _Done:
    kind, a = split_expr(v)
    if kind in ("jump", "goto"):
        return _said(b, f"{kind} {a['target']}"), End[kind.upper()], a["target"]
    if kind not in _PLAIN_VERDICTS:
        raise unmodelled("this verdict", v)
    return _said(b, kind), _PLAIN_VERDICTS[kind], None


def _vmap(ctx: TraceContext, b: _Branch, a: Json) -> list[_Done]:
    out: list[_Done] = []
    for key, p in values_of(ctx, b.st, a["key"]):
        found, data = lookup(ctx, a["data"], key)
        nb = replace(b, p=b.p * p)
        if not found:
            out.append((nb, End.NEXT, None))  # no element: the rule does not match
            continue
        nb = replace(nb, words=(*nb.words, f"vmap {set_name(a['data'])}[{show_value(key)}]"))
        out.append(_verdict(nb, data))
    return out


def _nat_targets(ctx: TraceContext, st: PacketState,
                 a: Json) -> list[tuple[Value | None, float, str]]:
    """(address or address . port, chance, how it was chosen) of a dnat/snat;
    None where a map has no element for the key."""
    addr = a.get("addr")
    if isinstance(addr, dict) and "map" in addr:
        m = addr["map"]
        out: list[tuple[Value | None, float, str]] = []
        for key, p in values_of(ctx, st, m["key"]):
            found, data = lookup(ctx, m["data"], key)
            value = values_of(ctx, st, data)[0][0] if found else None
            out.append((value, p, f"via map {set_name(m['data'])}[{show_value(key)}]"))
        return out
    return [(v, p, "to") for v, p in values_of(ctx, st, addr)]


def _nat(ctx: TraceContext, b: _Branch, kind: str, a: Json) -> list[_Done]:
    if set(a) - {"family", "addr", "port"} or a.get("family", FAMILY) != FAMILY:
        raise unmodelled(f"this {kind}", {kind: a})
    out: list[_Done] = []
    for target, p, how in _nat_targets(ctx, b.st, a):
        nb = replace(b, p=b.p * p)
        if target is None:
            out.append((nb, End.NEXT, None))  # no element: the rule does not match
            continue
        ip, port = target if isinstance(target, tuple) else (target, a.get("port"))
        if kind == "snat":
            out.append((_said(nb, f"snat {how} {ip}", masquerade=True), End.ACCEPT, None))
            continue
        dport = b.st.pkt.dport if port is None else as_int(port)
        to = f"{ip}:{dport}"
        pkt = replace(b.st.pkt, dst=str(ip), dport=dport)
        arrow = f"dnat {how} -> {to}" if how != "to" else f"dnat to {to}"
        out.append((_said(nb, arrow, pkt=pkt, dnat=to), End.ACCEPT, None))
    return out


def _reject(b: _Branch, a: Json) -> list[_Done]:
    a = a or {}
    how = " ".join(str(x) for x in (a.get("type"), a.get("expr")) if x)
    if a.get("type") == "tcp reset" and b.st.pkt.protocol != "tcp":
        return [(b, End.NEXT, None)]  # nft's hidden "meta l4proto tcp" in front
    return [(_said(b, f"reject with {how}" if how else "reject"), End.REJECT, None)]


def _mangle(ctx: TraceContext, b: _Branch, a: Json) -> list[_Branch]:
    if a.get("key") != {"meta": {"key": "mark"}}:
        raise unmodelled("this mangle", {"mangle": a})
    out: list[_Branch] = []
    for v, p in values_of(ctx, b.st, a["value"]):
        mark = as_int(v)
        text = f"meta mark set {show(a['value'])} (mark {mark:#x})"
        out.append(replace(_said(b, text, mark=mark), p=b.p * p))
    return out


def _statement(ctx: TraceContext, b: _Branch, kind: str,
               a: Json) -> tuple[list[_Branch], list[_Done]] | None:
    """Statements that change the packet or its fate (None: not one)."""
    if kind == "counter":
        return [b], []
    if kind == "notrack":
        # Once a packet has its conntrack entry, notrack no longer changes it.
        return [_said(b, "notrack", notrack=b.st.notrack or not b.st.settled)], []
    if kind == "mangle":
        return _mangle(ctx, b, a), []
    if kind == "set" and a.get("op") in ("add", "update"):
        # Only the first packet is traced: what it adds to the set changes nothing here.
        return [_said(b, f"{a['op']} {a['set']} {{ {show(a['elem'])} }}")], []
    if kind == "masquerade":
        if a and set(a) - {"flags"}:
            raise unmodelled("this masquerade", {kind: a})
        return [], [(_said(b, "masquerade", masquerade=True), End.ACCEPT, None)]
    if kind in ("dnat", "snat"):
        return [], _nat(ctx, b, kind, a)
    if kind == "reject":
        return [], _reject(b, a)
    return None


def _expression(ctx: TraceContext, b: _Branch, e: Json) -> tuple[list[_Branch], list[_Done]]:
    kind, a = split_expr(e)
    if kind == "match":
        return _match(ctx, b, a)
    if kind in _PLAIN_VERDICTS or kind in ("jump", "goto"):
        return [], [_verdict(b, e)]
    done = ([], _vmap(ctx, b, a)) if kind == "vmap" else _statement(ctx, b, kind, a)
    if done is None:
        raise unmodelled(f"the {kind!r} statement", e)
    # Nothing to act on (a header the packet lacks): the kernel breaks off the rule.
    return done if done != ([], []) else ([], [(b, End.NEXT, None)])


# -- rules, chains, hooks ------------------------------------------------------------------


def _entry(chain: str, b: _Branch) -> str:
    text = ", ".join(b.words).replace(", -> ", " -> ").removeprefix("-> ")
    return f"{chain}: {text}" + (f" (p={b.p:.3g})" if b.p < 1.0 else "")


def _rule(ctx: TraceContext, chain: str, exprs: tuple[Json, ...],
          st: PacketState) -> list[tuple[PacketState, End, str | None]]:
    """Every way through one rule, the path entry added where it did something."""
    live, done = [_Branch(st)], []
    for e in exprs:
        nxt: list[_Branch] = []
        for b in live:
            held, ended = _expression(ctx, b, e)
            nxt += held
            done += ended
        live = nxt
    out = []
    for b, end, target in [*done, *((b, End.NEXT, None) for b in live)]:
        worth = b.acted and end is not End.RETURN
        path = (*b.st.path, _entry(chain, b)) if worth else b.st.path
        out.append((replace(b.st, path=path, chance=b.st.chance * b.p), end, target))
    return out


def _walk(ctx: TraceContext, chain: str, st: PacketState, depth: int = 0) -> list[_Exit]:
    """Ways the packet leaves ``chain``: RETURN (returned or fell off the end)
    or the verdict that ends its base chain."""
    if depth > _MAX_DEPTH:
        raise NftTraceError(f"chains nest deeper than {_MAX_DEPTH} at {chain}")
    if chain not in ctx.table.rules:
        raise NftTraceError(f"a rule jumps to {chain}, which the listing does not hold")
    out: list[_Exit] = []
    live = [st]
    for i, exprs in enumerate(ctx.table.rules[chain]):
        nxt: list[PacketState] = []
        for s in live:
            if ctx.seen is not None:
                ctx.seen.append(f"{chain}#{i}")
            for s2, end, target in _rule(ctx, chain, exprs, s):
                if end is End.NEXT:
                    nxt.append(s2)
                elif target is not None:
                    for s3, e3 in _walk(ctx, target, s2, depth + 1):
                        # What a jumped-to chain returns comes back here; a goto's, to our caller.
                        (nxt.append(s3) if e3 is End.RETURN and end is End.JUMP
                         else out.append((s3, e3)))
                else:
                    out.append((s2, end))
        live = nxt
    return out + [(s, End.RETURN) for s in live]


def _changed(before: PacketState, after: PacketState) -> bool:
    return (before.dnat, before.masquerade, before.notrack) != \
        (after.dnat, after.masquerade, after.notrack)


def _hook(ctx: TraceContext, hook: str, states: Iterable[PacketState]) -> list[_Exit]:
    """Every base chain of ``hook`` by priority; a chain's path entries are
    kept only where it changed the packet or ended it."""
    out: list[_Exit] = []
    live = list(states)
    for base in ctx.table.hooks.get(hook, ()):
        nxt: list[PacketState] = []
        for s in live:
            if base.nat and (s.notrack or s.settled):
                nxt.append(s)  # NAT is decided once, on a tracked connection's first packet
                continue
            for s2, end in _walk(ctx, base.chain, s):
                end = base.policy if end is End.RETURN else end
                if end not in _FINAL and not _changed(s, s2):
                    s2 = replace(s2, path=s.path)
                (out.append((s2, end)) if end in _FINAL else nxt.append(s2))
        live = nxt
    return out + [(s, End.ACCEPT) for s in live]


def _hooks(ctx: TraceContext, hooks: Iterable[str], states: Iterable[PacketState]) -> list[_Exit]:
    out: list[_Exit] = []
    live = list(states)
    for hook in hooks:
        ended = _hook(ctx, hook, live)
        out += [(s, e) for s, e in ended if e in _FINAL]
        live = [s for s, e in ended if e not in _FINAL]
    return out + [(s, End.ACCEPT) for s in live]


def _after_routing(ctx: TraceContext, st: PacketState, *, local: bool) -> list[_Exit]:
    to_node = ctx.is_local(st.pkt.dst)
    if not local:
        return _hooks(ctx, ["input"] if to_node else ["forward", "postrouting"], [st])
    sent = _hooks(ctx, ["postrouting"], [st])
    if not to_node:
        return sent
    # The node's packet to itself comes back in on lo, its conntrack entry confirmed.
    back = [replace(s, settled=True, loopback=True) for s, e in sent if e not in _FINAL]
    return [(s, e) for s, e in sent if e in _FINAL] + _hooks(ctx, ["prerouting", "input"], back)


def _verdict_of(end: End) -> Verdict:
    return {End.DROP: Verdict.DROP, End.REJECT: Verdict.REJECT}.get(end, Verdict.ACCEPT)


def _step(ctx: TraceContext, st: PacketState, end: End) -> Step:
    flow = Flow(_verdict_of(end), st.dnat, st.masquerade, st.notrack, ctx.is_local(st.pkt.dst))
    return Step(flow, st.path, st.chance)


def trace_nft(table_json: Mapping[str, Json] | str | NftTable, pkt: Packet, *,
              local_ips: Iterable[str] = (), local: bool = False) -> list[Step]:
    """Every way ``pkt`` (a connection's first packet) can end in our table:
    routed through the node, or sent by it (``local``). ``table_json`` is
    ``nft -j list table ip netplane`` output (text or parsed) or a loaded
    table; ``local_ips`` are the node's own addresses (127.0.0.0/8 always is)."""
    table = table_json if isinstance(table_json, NftTable) else load_table(table_json)
    ctx = TraceContext(table, frozenset(local_ips))
    start = PacketState(replace(pkt, protocol=pkt.protocol.lower()))
    steps: list[Step] = []
    for st, end in _hook(ctx, "output" if local else "prerouting", [start]):
        ways = [(st, end)] if end in _FINAL else _after_routing(ctx, st, local=local)
        steps += [_step(ctx, s, e) for s, e in ways]
    return steps


def _hooks_crossed(ctx: TraceContext, pkt: Packet, *, local: bool) -> list[str]:
    to_node = ctx.is_local(pkt.dst)
    if local:
        return ["output", "postrouting", *(("prerouting", "input") if to_node else ())]
    return ["prerouting", *(("input",) if to_node else ("forward", "postrouting"))]


def trace_nft_established(table_json: Mapping[str, Json] | str | NftTable, pkt: Packet, *,
                          local_ips: Iterable[str] = (), local: bool = False) -> list[Crossing]:
    """The base chains a later packet of a known connection runs through
    (either direction; ``pkt`` as the filter chains see it, after the
    connection's destination NAT), each with the rules it evaluates, until
    one drops or rejects it. NAT base chains are not run for it: conntrack
    applies what the first packet chose."""
    table = table_json if isinstance(table_json, NftTable) else load_table(table_json)
    st = PacketState(replace(pkt, protocol=pkt.protocol.lower()), settled=True,
                     established=True)
    out: list[Crossing] = []
    for hook in _hooks_crossed(TraceContext(table, frozenset(local_ips)), pkt, local=local):
        for base in table.hooks.get(hook, ()):
            if base.nat:
                continue
            seen: list[str] = []
            ctx = TraceContext(table, frozenset(local_ips), seen)
            # Filter rules pick no random way: a later packet takes one.
            st, end = _walk(ctx, base.chain, st)[0]
            end = base.policy if end is End.RETURN else end
            out.append(Crossing(hook, base.chain, _verdict_of(end), tuple(seen)))
            if end in _FINAL:
                return out
    return out
