"""Pushes a connection's first packet through our nftables table as the
kernel lists it (``nft -j list table ip netplane``).

The nftables twin of ``trace``: ``trace_nft`` evaluates the rules the kernel
holds, not the text the renderer meant to load. Base chains run per hook in
priority order (raw, filter before DNAT, nat, filter after DNAT); a packet
routed through the node crosses prerouting, then input (when it is for the
node itself) or forward and postrouting; one the node sends crosses output
and postrouting and, when it is for the node, prerouting and input again on
``lo`` with its NAT settled. Set and map lookups use the elements as listed,
so an affinity set answers with the clients the kernel remembers, and
``numgen random mod N`` is followed to every value, each with chance 1/N.
Only the expression kinds our layout emits are understood: anything else
raises :class:`NftTraceError` naming it, rather than a guess. ``snat``
counts as masquerading (the source is rewritten either way).
"""

from __future__ import annotations

import enum
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from netplane.proxy.nft_layout import FAMILY, TABLE
from netplane.proxy.trace import Flow, Packet, Step, Verdict

__all__ = ["NftTable", "NftTraceError", "load_table", "trace_nft"]

Json = Any  # one node of nft's JSON output
# What an expression evaluates to: an address, protocol or port, a number, a
# set of conntrack flags, or a concatenation of those.
Value: TypeAlias = str | int | frozenset[str] | tuple["Value", ...]

_MAX_DEPTH = 64  # nft refuses loops; this only guards against a broken listing
_LOOPBACK = "lo"
_NOT_LO = "\0not lo"  # the input interface of a packet that did not come in on lo
_PORTED = ("tcp", "udp", "sctp")


class NftTraceError(ValueError):
    """The listing holds something the tracer does not model; the message names it."""


class _End(enum.Enum):
    NEXT = "next"  # the rule did not decide: on to the next rule
    RETURN = "return"  # back to the calling chain, or the base chain's policy
    ACCEPT = "accept"  # this base chain is done; the hook's next one runs
    DROP = "drop"
    REJECT = "reject"
    JUMP = "jump"
    GOTO = "goto"


_FINAL = (_End.DROP, _End.REJECT)


@dataclass(frozen=True)
class _Base:
    chain: str
    prio: int
    nat: bool
    policy: _End


@dataclass(frozen=True)
class NftTable:
    """Our table as listed: rules per chain, base chains per hook, set contents."""

    rules: Mapping[str, tuple[tuple[Json, ...], ...]]
    hooks: Mapping[str, tuple[_Base, ...]]
    elements: Mapping[str, tuple[Json, ...]]


def _objects(listing: Mapping[str, Json] | str) -> list[dict[str, Json]]:
    try:
        doc = json.loads(listing) if isinstance(listing, str) else listing
    except json.JSONDecodeError as e:
        raise NftTraceError(f"not `nft -j` output ({e}); is our table there?") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("nftables"), list):
        raise NftTraceError("not an `nft -j list` listing: no top-level \"nftables\" list")
    return [o for o in doc["nftables"] if isinstance(o, dict)]


def load_table(listing: Mapping[str, Json] | str, *, family: str = FAMILY,
               name: str = TABLE) -> NftTable:
    """Reads one table (ours by default) out of ``nft -j list`` output."""
    rules: dict[str, list[tuple[Json, ...]]] = {}
    hooks: dict[str, list[_Base]] = {}
    elements: dict[str, tuple[Json, ...]] = {}
    found = False
    for obj in _objects(listing):
        kind, body = next(iter(obj.items()))
        if not isinstance(body, dict) or body.get("family") != family:
            continue
        if kind == "table":
            found = found or body.get("name") == name
        elif body.get("table") != name:
            continue
        elif kind == "chain":
            rules.setdefault(body["name"], [])
            if "hook" in body:
                policy = _End.DROP if body.get("policy") == "drop" else _End.ACCEPT
                hooks.setdefault(body["hook"], []).append(
                    _Base(body["name"], int(body["prio"]), body.get("type") == "nat", policy))
        elif kind == "rule":
            rules.setdefault(body["chain"], []).append(tuple(body.get("expr") or ()))
        elif kind in ("set", "map"):
            elements[body["name"]] = tuple(body.get("elem") or ())
    if not found:
        raise NftTraceError(f"the listing holds no table {family} {name}")
    return NftTable({c: tuple(r) for c, r in rules.items()},
                    {h: tuple(sorted(b, key=lambda x: x.prio)) for h, b in hooks.items()},
                    elements)


@dataclass(frozen=True)
class _State:
    pkt: Packet  # as it is now: DNAT changes its destination
    mark: int = 0
    notrack: bool = False
    dnat: str | None = None
    masquerade: bool = False
    settled: bool = False  # conntrack entry confirmed: no more NAT or notrack
    loopback: bool = False  # came in on lo
    path: tuple[str, ...] = ()
    chance: float = 1.0


@dataclass(frozen=True)
class _Branch:
    """One way through one rule so far."""

    st: _State
    words: tuple[str, ...] = ()  # the conditions that held, then "-> " statements
    p: float = 1.0  # chance of the random choices made inside the rule
    acted: bool = False  # a statement ran: the rule earns a path entry


_Done = tuple[_Branch, _End, str | None]  # the rule's outcome, with a jump's target


@dataclass(frozen=True)
class _Ctx:
    table: NftTable
    local_ips: frozenset[str]

    def is_local(self, ip: str) -> bool:
        return ip in self.local_ips or ip.startswith("127.")


# -- expressions ---------------------------------------------------------------------------


def _only(e: Json) -> tuple[str, Json]:
    if isinstance(e, dict) and len(e) == 1:
        return next(iter(e.items()))
    raise NftTraceError(f"unexpected expression shape: {json.dumps(e)}")


def _unknown(what: str, e: Json) -> NftTraceError:
    return NftTraceError(f"the tracer does not model {what}: {json.dumps(e)}")


_BITS: dict[str, Callable[[int, int], int]] = {
    "&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b}


def _show(e: Json) -> str:
    """An expression as nft writes it."""
    if isinstance(e, (str, int)):
        return str(e)
    if isinstance(e, list):
        return "{ " + ", ".join(_show(x) for x in e) + " }"
    kind, a = _only(e)
    if kind in _BITS:
        return f"{_show(a[0])} {kind} {_hex(a[1])}"
    shown: dict[str, Callable[[], str]] = {
        "payload": lambda: f"{a['protocol']} {a['field']}",
        "meta": lambda: f"meta {a['key']}",
        "ct": lambda: f"ct {a['key']}",
        "fib": lambda: f"fib {' . '.join(a['flags'])} {a['result']}",
        "numgen": lambda: f"numgen {a['mode']} mod {a['mod']}",
        "concat": lambda: " . ".join(_show(x) for x in a),
        "prefix": lambda: f"{a['addr']}/{a['len']}",
        "range": lambda: f"{a[0]}-{a[1]}",
        "set": lambda: _show(list(a)),
        "elem": lambda: _show(a["val"]),
    }
    if kind not in shown:
        raise _unknown(f"the {kind!r} expression", e)
    return shown[kind]()


def _hex(e: Json) -> str:
    return hex(e) if isinstance(e, int) else _show(e)


def _show_value(v: Value) -> str:
    if isinstance(v, tuple):
        return " . ".join(_show_value(x) for x in v)
    if isinstance(v, frozenset):
        return ",".join(sorted(v)) or "none"
    return str(v)


def _payload(pkt: Packet, a: Json) -> Value | None:
    proto, name = a.get("protocol"), a.get("field")
    if proto == "ip" and name in ("saddr", "daddr"):
        return pkt.src if name == "saddr" else pkt.dst
    if proto in (*_PORTED, "th") and name in ("sport", "dport"):
        # nft adds a hidden protocol check to "tcp dport": no match for UDP.
        if proto != "th" and proto != pkt.protocol:
            return None
        return pkt.sport if name == "sport" else pkt.dport
    raise _unknown("this header field", {"payload": a})


def _meta(st: _State, a: Json) -> Value:
    key = a.get("key")
    if key == "l4proto":
        return st.pkt.protocol
    if key == "mark":
        return st.mark
    if key == "nfproto":
        return "ipv4"
    if key == "iifname":
        return _LOOPBACK if st.loopback else _NOT_LO
    raise _unknown("this meta key", {"meta": a})


def _ct(st: _State, a: Json) -> Value:
    key = a.get("key")
    if key == "state":
        return frozenset({"untracked" if st.notrack else "new"})
    if key == "status":
        return frozenset({"dnat"} if st.dnat and not st.notrack else ())
    raise _unknown("this conntrack key", {"ct": a})


def _fib(ctx: _Ctx, st: _State, a: Json) -> Value:
    flags = set(a.get("flags") or ())
    if a.get("result") != "type" or flags not in ({"saddr"}, {"daddr"}):
        raise _unknown("this fib lookup", {"fib": a})
    addr = st.pkt.src if "saddr" in flags else st.pkt.dst
    return "local" if ctx.is_local(addr) else "unicast"


def _values(ctx: _Ctx, st: _State, e: Json) -> list[tuple[Value, float]]:
    """What ``e`` is for this packet, each value with its chance (several
    only for numgen); empty when a header it reads is absent."""
    if isinstance(e, (str, int)):
        return [(e, 1.0)]
    kind, a = _only(e)
    if kind == "concat":
        out: list[tuple[Value, float]] = [((), 1.0)]
        for part in a:
            out = [((*v, x), p * q) for v, p in out if isinstance(v, tuple)
                   for x, q in _values(ctx, st, part)]
        return out
    if kind == "numgen":
        if a.get("mode") != "random":
            raise _unknown("numgen other than random", e)
        n, offset = int(a["mod"]), int(a.get("offset", 0))
        return [(offset + i, 1.0 / n) for i in range(n)]
    if kind in _BITS:
        return [(_BITS[kind](_int(x), _int(y)), p * q) for x, p in _values(ctx, st, a[0])
                for y, q in _values(ctx, st, a[1])]
    fields: dict[str, Callable[[], Value | None]] = {
        "payload": lambda: _payload(st.pkt, a), "meta": lambda: _meta(st, a),
        "ct": lambda: _ct(st, a), "fib": lambda: _fib(ctx, st, a)}
    if kind not in fields:
        raise _unknown(f"the {kind!r} expression", e)
    v = fields[kind]()
    return [] if v is None else [(v, 1.0)]


def _int(v: Value) -> int:
    if isinstance(v, int):
        return v
    raise NftTraceError(f"expected a number, got {_show_value(v)}")


# -- set membership ------------------------------------------------------------------------


def _order(v: Json) -> int:
    return int(ipaddress.ip_address(v)) if isinstance(v, str) and "." in v else int(v)


def _same(pattern: Json, v: Value) -> bool:
    if v == _NOT_LO:
        if pattern != _LOOPBACK:
            raise NftTraceError(f"meta iifname compared with {pattern!r}: the tracer knows "
                                "only whether a packet came in on lo")
        return False
    return str(pattern).lower() == str(v).lower()


def _covers(pattern: Json, v: Value) -> bool:
    """Whether a set element or a rule's right-hand side holds ``v``."""
    if not isinstance(pattern, dict):
        return _same(pattern, v)
    kind, a = _only(pattern)
    if kind == "elem":
        return _covers(a["val"], v)
    if kind == "concat":
        return isinstance(v, tuple) and len(v) == len(a) and all(
            _covers(p, x) for p, x in zip(a, v, strict=True))
    if kind == "prefix":
        net = ipaddress.ip_network(f"{a['addr']}/{a['len']}", strict=False)
        return isinstance(v, str) and ipaddress.ip_address(v) in net
    if kind == "range":
        return _order(a[0]) <= _order(v) <= _order(a[1])
    if kind == "set":
        return any(_covers(x, v) for x in a)
    raise _unknown(f"the {kind!r} element", pattern)


def _elements(ctx: _Ctx, ref: Json) -> tuple[Json, ...]:
    if isinstance(ref, str) and ref.startswith("@"):
        if ref[1:] not in ctx.table.elements:
            raise NftTraceError(f"a rule uses {ref}, which the listing does not declare")
        return ctx.table.elements[ref[1:]]
    kind, a = _only(ref)
    if kind != "set":
        raise _unknown("this set reference", ref)
    return tuple(a)


def _find(ctx: _Ctx, ref: Json, v: Value) -> tuple[bool, Json]:
    """(found, the map's value for it) of a lookup in a set or map."""
    for el in _elements(ctx, ref):
        key, data = (el[0], el[1]) if isinstance(el, list) else (el, None)
        if _covers(key, v):
            return True, data
    return False, None


def _ref(ref: Json) -> str:
    return ref if isinstance(ref, str) else "{…}"


def _flags(op: str, right: Json, v: frozenset[str]) -> bool:
    want = {right} if isinstance(right, str) else set(right)
    if op == "in":
        return bool(want & v)
    return (want == v) == (op == "==")


def _holds(ctx: _Ctx, op: str, right: Json, v: Value) -> tuple[bool, str | None]:
    """(whether the match holds, its text when a lookup is worth showing)."""
    if op not in ("==", "!=", "in"):
        raise _unknown(f"the {op!r} comparison", right)
    if isinstance(right, str) and right.startswith("@"):
        found, _ = _find(ctx, right, v)
        verb = "not in" if op == "!=" else "in"
        return found == (op != "!="), f"{_show_value(v)} {verb} {right}"
    if isinstance(v, frozenset):
        return _flags(op, right, v), None
    return _covers(right, v) == (op != "!="), None


def _match(ctx: _Ctx, b: _Branch, a: Json) -> tuple[list[_Branch], list[_Done]]:
    op, left, right = a["op"], a["left"], a["right"]
    text = f"{_show(left)} {'' if op in ('==', 'in') else op + ' '}{_show(right)}"
    held: list[_Branch] = []
    missed: list[_Done] = []
    values = _values(ctx, b.st, left)
    if not values:
        missed.append((b, _End.NEXT, None))
    for v, p in values:
        ok, shown = _holds(ctx, op, right, v)
        if ok:
            held.append(replace(b, words=(*b.words, shown or text), p=b.p * p))
        else:
            missed.append((replace(b, p=b.p * p), _End.NEXT, None))
    return held, missed


# -- statements ----------------------------------------------------------------------------


_PLAIN_VERDICTS = {"accept": _End.ACCEPT, "drop": _End.DROP, "return": _End.RETURN,
                   "continue": _End.NEXT}


def _said(b: _Branch, text: str, **changes: Any) -> _Branch:
    st = replace(b.st, **changes) if changes else b.st
    return replace(b, st=st, words=(*b.words, f"-> {text}"), acted=True)


def _verdict(b: _Branch, v: Json) -> _Done:
    kind, a = _only(v)
    if kind in ("jump", "goto"):
        return _said(b, f"{kind} {a['target']}"), _End[kind.upper()], a["target"]
    if kind not in _PLAIN_VERDICTS:
        raise _unknown("this verdict", v)
    return _said(b, kind), _PLAIN_VERDICTS[kind], None


def _vmap(ctx: _Ctx, b: _Branch, a: Json) -> list[_Done]:
    out: list[_Done] = []
    for key, p in _values(ctx, b.st, a["key"]):
        found, data = _find(ctx, a["data"], key)
        nb = replace(b, p=b.p * p)
        if not found:
            out.append((nb, _End.NEXT, None))  # no element: the rule does not match
            continue
        nb = replace(nb, words=(*nb.words, f"vmap {_ref(a['data'])}[{_show_value(key)}]"))
        out.append(_verdict(nb, data))
    return out


def _nat_targets(ctx: _Ctx, st: _State, a: Json) -> list[tuple[Value | None, float, str]]:
    """(address or address . port, chance, how it was chosen) of a dnat/snat;
    None where a map has no element for the key."""
    addr = a.get("addr")
    if isinstance(addr, dict) and "map" in addr:
        m = addr["map"]
        out: list[tuple[Value | None, float, str]] = []
        for key, p in _values(ctx, st, m["key"]):
            found, data = _find(ctx, m["data"], key)
            value = _values(ctx, st, data)[0][0] if found else None
            out.append((value, p, f"via map {_ref(m['data'])}[{_show_value(key)}]"))
        return out
    return [(v, p, "to") for v, p in _values(ctx, st, addr)]


def _nat(ctx: _Ctx, b: _Branch, kind: str, a: Json) -> list[_Done]:
    if set(a) - {"family", "addr", "port"} or a.get("family", FAMILY) != FAMILY:
        raise _unknown(f"this {kind}", {kind: a})
    out: list[_Done] = []
    for target, p, how in _nat_targets(ctx, b.st, a):
        nb = replace(b, p=b.p * p)
        if target is None:
            out.append((nb, _End.NEXT, None))  # no element: the rule does not match
            continue
        ip, port = target if isinstance(target, tuple) else (target, a.get("port"))
        if kind == "snat":
            out.append((_said(nb, f"snat {how} {ip}", masquerade=True), _End.ACCEPT, None))
            continue
        dport = b.st.pkt.dport if port is None else _int(port)
        to = f"{ip}:{dport}"
        pkt = replace(b.st.pkt, dst=str(ip), dport=dport)
        arrow = f"dnat {how} -> {to}" if how != "to" else f"dnat to {to}"
        out.append((_said(nb, arrow, pkt=pkt, dnat=to), _End.ACCEPT, None))
    return out


def _reject(b: _Branch, a: Json) -> list[_Done]:
    a = a or {}
    how = " ".join(str(x) for x in (a.get("type"), a.get("expr")) if x)
    if a.get("type") == "tcp reset" and b.st.pkt.protocol != "tcp":
        return [(b, _End.NEXT, None)]  # nft's hidden "meta l4proto tcp" in front
    return [(_said(b, f"reject with {how}" if how else "reject"), _End.REJECT, None)]


def _mangle(ctx: _Ctx, b: _Branch, a: Json) -> list[_Branch]:
    if a.get("key") != {"meta": {"key": "mark"}}:
        raise _unknown("this mangle", {"mangle": a})
    out: list[_Branch] = []
    for v, p in _values(ctx, b.st, a["value"]):
        mark = _int(v)
        text = f"meta mark set {_show(a['value'])} (mark {mark:#x})"
        out.append(replace(_said(b, text, mark=mark), p=b.p * p))
    return out


def _statement(ctx: _Ctx, b: _Branch, kind: str,
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
        return [_said(b, f"{a['op']} {a['set']} {{ {_show(a['elem'])} }}")], []
    if kind == "masquerade":
        if a and set(a) - {"flags"}:
            raise _unknown("this masquerade", {kind: a})
        return [], [(_said(b, "masquerade", masquerade=True), _End.ACCEPT, None)]
    if kind in ("dnat", "snat"):
        return [], _nat(ctx, b, kind, a)
    if kind == "reject":
        return [], _reject(b, a)
    return None


def _expression(ctx: _Ctx, b: _Branch, e: Json) -> tuple[list[_Branch], list[_Done]]:
    kind, a = _only(e)
    if kind == "match":
        return _match(ctx, b, a)
    if kind in _PLAIN_VERDICTS or kind in ("jump", "goto"):
        return [], [_verdict(b, e)]
    done = ([], _vmap(ctx, b, a)) if kind == "vmap" else _statement(ctx, b, kind, a)
    if done is None:
        raise _unknown(f"the {kind!r} statement", e)
    # Nothing to act on (a header the packet lacks): the kernel breaks off the rule.
    return done if done != ([], []) else ([], [(b, _End.NEXT, None)])


# -- rules, chains, hooks ------------------------------------------------------------------


def _entry(chain: str, b: _Branch) -> str:
    text = ", ".join(b.words).replace(", -> ", " -> ").removeprefix("-> ")
    return f"{chain}: {text}" + (f" (p={b.p:.3g})" if b.p < 1.0 else "")


def _rule(ctx: _Ctx, chain: str, exprs: tuple[Json, ...],
          st: _State) -> list[tuple[_State, _End, str | None]]:
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
    for b, end, target in [*done, *((b, _End.NEXT, None) for b in live)]:
        worth = b.acted and end is not _End.RETURN
        path = (*b.st.path, _entry(chain, b)) if worth else b.st.path
        out.append((replace(b.st, path=path, chance=b.st.chance * b.p), end, target))
    return out


def _walk(ctx: _Ctx, chain: str, st: _State, depth: int = 0) -> list[tuple[_State, _End]]:
    """Ways the packet leaves ``chain``: RETURN (returned or fell off the end)
    or the verdict that ends its base chain."""
    if depth > _MAX_DEPTH:
        raise NftTraceError(f"chains nest deeper than {_MAX_DEPTH} at {chain}")
    if chain not in ctx.table.rules:
        raise NftTraceError(f"a rule jumps to {chain}, which the listing does not hold")
    out: list[tuple[_State, _End]] = []
    live = [st]
    for exprs in ctx.table.rules[chain]:
        nxt: list[_State] = []
        for s in live:
            for s2, end, target in _rule(ctx, chain, exprs, s):
                if end is _End.NEXT:
                    nxt.append(s2)
                elif target is not None:
                    for s3, e3 in _walk(ctx, target, s2, depth + 1):
                        # What a jumped-to chain returns comes back here; a goto's, to our caller.
                        (nxt.append(s3) if e3 is _End.RETURN and end is _End.JUMP
                         else out.append((s3, e3)))
                else:
                    out.append((s2, end))
        live = nxt
    return out + [(s, _End.RETURN) for s in live]


def _changed(before: _State, after: _State) -> bool:
    return (before.dnat, before.masquerade, before.notrack) != \
        (after.dnat, after.masquerade, after.notrack)


def _hook(ctx: _Ctx, hook: str, states: Iterable[_State]) -> list[tuple[_State, _End]]:
    """Every base chain of ``hook`` by priority; a chain's path entries are
    kept only where it changed the packet or ended it."""
    out: list[tuple[_State, _End]] = []
    live = list(states)
    for base in ctx.table.hooks.get(hook, ()):
        nxt: list[_State] = []
        for s in live:
            if base.nat and (s.notrack or s.settled):
                nxt.append(s)  # NAT is decided once, on a tracked connection's first packet
                continue
            for s2, end in _walk(ctx, base.chain, s):
                end = base.policy if end is _End.RETURN else end
                if end not in _FINAL and not _changed(s, s2):
                    s2 = replace(s2, path=s.path)
                (out.append((s2, end)) if end in _FINAL else nxt.append(s2))
        live = nxt
    return out + [(s, _End.ACCEPT) for s in live]


def _hooks(ctx: _Ctx, hooks: Iterable[str], states: Iterable[_State]) -> list[tuple[_State, _End]]:
    out: list[tuple[_State, _End]] = []
    live = list(states)
    for hook in hooks:
        ended = _hook(ctx, hook, live)
        out += [(s, e) for s, e in ended if e in _FINAL]
        live = [s for s, e in ended if e not in _FINAL]
    return out + [(s, _End.ACCEPT) for s in live]


def _after_routing(ctx: _Ctx, st: _State, *, local: bool) -> list[tuple[_State, _End]]:
    to_node = ctx.is_local(st.pkt.dst)
    if not local:
        return _hooks(ctx, ["input"] if to_node else ["forward", "postrouting"], [st])
    sent = _hooks(ctx, ["postrouting"], [st])
    if not to_node:
        return sent
    # The node's packet to itself comes back in on lo, its conntrack entry confirmed.
    back = [replace(s, settled=True, loopback=True) for s, e in sent if e not in _FINAL]
    return [(s, e) for s, e in sent if e in _FINAL] + _hooks(ctx, ["prerouting", "input"], back)


def _step(ctx: _Ctx, st: _State, end: _End) -> Step:
    verdict = {_End.DROP: Verdict.DROP, _End.REJECT: Verdict.REJECT}.get(end, Verdict.ACCEPT)
    flow = Flow(verdict, st.dnat, st.masquerade, st.notrack, ctx.is_local(st.pkt.dst))
    return Step(flow, st.path, st.chance)


def trace_nft(table_json: Mapping[str, Json] | str | NftTable, pkt: Packet, *,
              local_ips: Iterable[str] = (), local: bool = False) -> list[Step]:
    """Every way ``pkt`` (a connection's first packet) can end in our table:
    routed through the node, or sent by it (``local``). ``table_json`` is
    ``nft -j list table ip netplane`` output (text or parsed) or a loaded
    table; ``local_ips`` are the node's own addresses (127.0.0.0/8 always is)."""
    table = table_json if isinstance(table_json, NftTable) else load_table(table_json)
    ctx = _Ctx(table, frozenset(local_ips))
    start = _State(replace(pkt, protocol=pkt.protocol.lower()))
    steps: list[Step] = []
    for st, end in _hook(ctx, "output" if local else "prerouting", [start]):
        ways = [(st, end)] if end in _FINAL else _after_routing(ctx, st, local=local)
        steps += [_step(ctx, s, e) for s, e in ways]
    return steps
