"""Reads ``nft -j list`` output and evaluates its expressions for one packet.

The half of the nftables tracer that knows nft's JSON: ``load_table`` turns
the listing into rules per chain, base chains per hook and set contents;
the evaluator says what an expression is for a packet (header fields, meta,
conntrack and fib keys, numgen, bit operations, concatenations) and whether
a match or a set or map lookup holds. Lookups use the elements as listed, so
an affinity set answers with the clients the kernel remembers, and ``numgen
random mod N`` yields every value, each with chance 1/N. Only the expression
kinds our layout emits are understood: anything else raises
:class:`NftTraceError` naming it, rather than a guess. Walking rules, chains
and hooks is :mod:`netplane.proxy.nftables.trace`'s job.
"""

from __future__ import annotations

import enum
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from netplane.proxy.nftables.layout import FAMILY, TABLE
from netplane.proxy.trace import Packet

__all__ = ["BaseChain", "End", "Json", "NftTable", "NftTraceError", "PacketState",
           "TraceContext", "Value", "as_int", "holds", "load_table", "lookup", "merge", "set_name",
           "show", "show_value", "split_expr", "unmodelled", "values_of"]

Json = Any  # one node of nft's JSON output
# What an expression evaluates to: an address, protocol or port, a number, a
# set of conntrack flags, or a concatenation of those.
Value: TypeAlias = str | int | frozenset[str] | tuple["Value", ...]

_LOOPBACK = "lo"
_NOT_LO = "\0not lo"  # the input interface of a packet that did not come in on lo
_PORTED = ("tcp", "udp", "sctp")


class NftTraceError(ValueError):
    """The listing holds something the tracer does not model; the message names it."""


class End(enum.Enum):
    """How a rule, a chain or a base chain's policy leaves the packet."""

    NEXT = "next"  # the rule did not decide: on to the next rule
    RETURN = "return"  # back to the calling chain, or the base chain's policy
    ACCEPT = "accept"  # this base chain is done; the hook's next one runs
    DROP = "drop"
    REJECT = "reject"
    JUMP = "jump"
    GOTO = "goto"


@dataclass(frozen=True)
class BaseChain:
    """A chain on a hook: its priority, whether it is a NAT chain, its policy."""

    chain: str
    prio: int
    nat: bool
    policy: End


@dataclass(frozen=True)
class NftTable:
    """Our table as listed: rules per chain, base chains per hook, set contents."""

    rules: Mapping[str, tuple[tuple[Json, ...], ...]]
    hooks: Mapping[str, tuple[BaseChain, ...]]
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
    hooks: dict[str, list[BaseChain]] = {}
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
                policy = End.DROP if body.get("policy") == "drop" else End.ACCEPT
                hooks.setdefault(body["hook"], []).append(
                    BaseChain(body["name"], int(body["prio"]), body.get("type") == "nat", policy))
        elif kind == "rule":
            rules.setdefault(body["chain"], []).append(tuple(body.get("expr") or ()))
        elif kind in ("set", "map"):
            elements[body["name"]] = tuple(body.get("elem") or ())
    if not found:
        raise NftTraceError(f"the listing holds no table {family} {name}")
    return NftTable({c: tuple(r) for c, r in rules.items()},
                    {h: tuple(sorted(b, key=lambda x: x.prio)) for h, b in hooks.items()},
                    elements)


def merge(*tables: NftTable) -> NftTable:
    """Several tables as the kernel runs them: every hook's base chains of
    all tables in priority order. Names must not clash (ours do not)."""
    rules: dict[str, tuple[tuple[Json, ...], ...]] = {}
    hooks: dict[str, list[BaseChain]] = {}
    elements: dict[str, tuple[Json, ...]] = {}
    for t in tables:
        clash = (set(rules) & set(t.rules)) | (set(elements) & set(t.elements))
        if clash:
            raise NftTraceError(f"tables share the names {sorted(clash)}")
        rules.update(t.rules)
        elements.update(t.elements)
        for hook, chains in t.hooks.items():
            hooks.setdefault(hook, []).extend(chains)
    return NftTable(rules, {h: tuple(sorted(b, key=lambda x: x.prio)) for h, b in hooks.items()},
                    elements)


@dataclass(frozen=True)
class PacketState:
    """The packet on one way through the table, and what happened to it so far."""

    pkt: Packet  # as it is now: DNAT changes its destination
    mark: int = 0
    notrack: bool = False
    dnat: str | None = None
    masquerade: bool = False
    settled: bool = False  # conntrack entry confirmed: no more NAT or notrack
    established: bool = False  # a later packet of the connection, not its first
    loopback: bool = False  # came in on lo
    path: tuple[str, ...] = ()
    chance: float = 1.0


@dataclass(frozen=True)
class TraceContext:
    """What every expression may consult: the table and the node's own addresses."""

    table: NftTable
    local_ips: frozenset[str]
    seen: list[str] | None = None  # when given, every rule evaluated, as chain#index

    def is_local(self, ip: str) -> bool:
        return ip in self.local_ips or ip.startswith("127.")


# -- expressions ---------------------------------------------------------------------------


def split_expr(e: Json) -> tuple[str, Json]:
    """(kind, arguments) of a one-key JSON node such as ``{"match": {...}}``."""
    if isinstance(e, dict) and len(e) == 1:
        return next(iter(e.items()))
    raise NftTraceError(f"unexpected expression shape: {json.dumps(e)}")


def unmodelled(what: str, e: Json) -> NftTraceError:
    """The error for an expression the tracer has no model of."""
    return NftTraceError(f"the tracer does not model {what}: {json.dumps(e)}")


_BITS: dict[str, Callable[[int, int], int]] = {
    "&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b}


def show(e: Json) -> str:
    """An expression as nft writes it."""
    if isinstance(e, (str, int)):
        return str(e)
    if isinstance(e, list):
        return "{ " + ", ".join(show(x) for x in e) + " }"
    kind, a = split_expr(e)
    if kind in _BITS:
        return f"{show(a[0])} {kind} {_hex(a[1])}"
    shown: dict[str, Callable[[], str]] = {
        "payload": lambda: f"{a['protocol']} {a['field']}",
        "meta": lambda: f"meta {a['key']}",
        "ct": lambda: f"ct {a['key']}",
        "fib": lambda: f"fib {' . '.join(a['flags'])} {a['result']}",
        "numgen": lambda: f"numgen {a['mode']} mod {a['mod']}",
        "concat": lambda: " . ".join(show(x) for x in a),
        "prefix": lambda: f"{a['addr']}/{a['len']}",
        "range": lambda: f"{a[0]}-{a[1]}",
        "set": lambda: show(list(a)),
        "elem": lambda: show(a["val"]),
    }
    if kind not in shown:
        raise unmodelled(f"the {kind!r} expression", e)
    return shown[kind]()


def _hex(e: Json) -> str:
    return hex(e) if isinstance(e, int) else show(e)


def show_value(v: Value) -> str:
    """A value as a path entry shows it."""
    if isinstance(v, tuple):
        return " . ".join(show_value(x) for x in v)
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
    raise unmodelled("this header field", {"payload": a})


def _meta(st: PacketState, a: Json) -> Value:
    key = a.get("key")
    if key == "l4proto":
        return st.pkt.protocol
    if key == "mark":
        return st.mark
    if key == "nfproto":
        return "ipv4"
    if key == "iifname":
        return _LOOPBACK if st.loopback else _NOT_LO
    raise unmodelled("this meta key", {"meta": a})


def _ct(st: PacketState, a: Json) -> Value:
    key = a.get("key")
    if key == "state":
        state = "untracked" if st.notrack else "established" if st.established else "new"
        return frozenset({state})
    if key == "status":
        return frozenset({"dnat"} if st.dnat and not st.notrack else ())
    raise unmodelled("this conntrack key", {"ct": a})


def _fib(ctx: TraceContext, st: PacketState, a: Json) -> Value:
    flags = set(a.get("flags") or ())
    if a.get("result") != "type" or flags not in ({"saddr"}, {"daddr"}):
        raise unmodelled("this fib lookup", {"fib": a})
    addr = st.pkt.src if "saddr" in flags else st.pkt.dst
    return "local" if ctx.is_local(addr) else "unicast"


def values_of(ctx: TraceContext, st: PacketState, e: Json) -> list[tuple[Value, float]]:
    """What ``e`` is for this packet, each value with its chance (several
    only for numgen); empty when a header it reads is absent."""
    if isinstance(e, (str, int)):
        return [(e, 1.0)]
    kind, a = split_expr(e)
    if kind == "concat":
        out: list[tuple[Value, float]] = [((), 1.0)]
        for part in a:
            out = [((*v, x), p * q) for v, p in out if isinstance(v, tuple)
                   for x, q in values_of(ctx, st, part)]
        return out
    if kind == "numgen":
        if a.get("mode") != "random":
            raise unmodelled("numgen other than random", e)
        n, offset = int(a["mod"]), int(a.get("offset", 0))
        return [(offset + i, 1.0 / n) for i in range(n)]
    if kind in _BITS:
        return [(_BITS[kind](as_int(x), as_int(y)), p * q) for x, p in values_of(ctx, st, a[0])
                for y, q in values_of(ctx, st, a[1])]
    fields: dict[str, Callable[[], Value | None]] = {
        "payload": lambda: _payload(st.pkt, a), "meta": lambda: _meta(st, a),
        "ct": lambda: _ct(st, a), "fib": lambda: _fib(ctx, st, a)}
    if kind not in fields:
        raise unmodelled(f"the {kind!r} expression", e)
    v = fields[kind]()
    return [] if v is None else [(v, 1.0)]


def as_int(v: Value) -> int:
    """A value that must be a number (a port, a mark)."""
    if isinstance(v, int):
        return v
    raise NftTraceError(f"expected a number, got {show_value(v)}")


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
    kind, a = split_expr(pattern)
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
    raise unmodelled(f"the {kind!r} element", pattern)


def _elements(ctx: TraceContext, ref: Json) -> tuple[Json, ...]:
    if isinstance(ref, str) and ref.startswith("@"):
        if ref[1:] not in ctx.table.elements:
            raise NftTraceError(f"a rule uses {ref}, which the listing does not declare")
        return ctx.table.elements[ref[1:]]
    kind, a = split_expr(ref)
    if kind != "set":
        raise unmodelled("this set reference", ref)
    return tuple(a)


def lookup(ctx: TraceContext, ref: Json, v: Value) -> tuple[bool, Json]:
    """(found, the map's value for it) of a lookup in a set or map."""
    for el in _elements(ctx, ref):
        key, data = (el[0], el[1]) if isinstance(el, list) else (el, None)
        if _covers(key, v):
            return True, data
    return False, None


def set_name(ref: Json) -> str:
    """A named set as a rule writes it (``@name``); an anonymous one elided."""
    return ref if isinstance(ref, str) else "{…}"


def _flags(op: str, right: Json, v: frozenset[str]) -> bool:
    want = {right} if isinstance(right, str) else set(right)
    if op == "in":
        return bool(want & v)
    return (want == v) == (op == "==")


def holds(ctx: TraceContext, op: str, right: Json, v: Value) -> tuple[bool, str | None]:
    """(whether the match holds, its text when a lookup is worth showing)."""
    if op not in ("==", "!=", "in"):
        raise unmodelled(f"the {op!r} comparison", right)
    if isinstance(right, str) and right.startswith("@"):
        found, _ = lookup(ctx, right, v)
        verb = "not in" if op == "!=" else "in"
        return found == (op != "!="), f"{show_value(v)} {verb} {right}"
    if isinstance(v, frozenset):
        return _flags(op, right, v), None
    return _covers(right, v) == (op != "!="), None
