"""NetworkPolicy in nftables mode: a private table ``ip netplane-policy``.

The same plan as iptables mode (see ``netplane.proxy.iptables.policy``):
base chains on the forward and input hooks, just before other filter
chains, send the first packet of each connection (ct state new or
untracked) to ``dispatch``, which looks the source up in the verdict map
``pod-egress`` and the destination in ``pod-ingress``; each element jumps
to the pod's chain. A policy change is an update of chains, map elements or
set elements in one ``nft -f`` transaction; a full sync replaces the table
in one. Its own table, so that the Service proxy's table and this one
never rewrite each other. Pure rendering here; ``NftPolicyApplier`` loads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from netplane.proxy.command import CommandResult, Runner, run_command, run_in
from netplane.proxy.policy import Direction, Plan, PodChain, PolicyChain, PortRange

FAMILY = "ip"
TABLE = "netplane-policy"
TABLE_REF = f"{FAMILY} {TABLE}"
FILTER_CHAIN = "dispatch"
PRIORITY = -5  # before the filter priority (0) that other tables use
MAPS = {Direction.EGRESS: ("pod-egress", "ip saddr"),
        Direction.INGRESS: ("pod-ingress", "ip daddr")}
ALLOW_MARK = 0x10000
REJECT = "reject with icmp type admin-prohibited"
DROPPED = "dropped"  # a named counter that every denial counts in
Chain = TypeVar("Chain", PolicyChain, PodChain)


def _comment(text: str) -> str:
    return json.dumps(text[:128])  # nft's limit on a comment's length


def _ports(ports: tuple[PortRange, ...] | None) -> list[str]:
    if ports is None:
        return [""]
    out = []
    for r in ports:
        proto = r.protocol.lower()
        if (r.first, r.last) == (0, 65535):
            out.append(f"meta l4proto {proto} ")
        elif r.first == r.last:
            out.append(f"{proto} dport {r.first} ")
        else:
            out.append(f"{proto} dport {r.first}-{r.last} ")
    return out


def policy_chain_rules(chain: PolicyChain) -> list[str]:
    peer, target = (("ip saddr", "ip daddr") if chain.direction is Direction.INGRESS
                    else ("ip daddr", "ip saddr"))
    lines = []
    for e in chain.entries:
        match = ""
        if e.peer_set is not None:
            match += f"{peer} @{e.peer_set} "
        if e.target_set is not None:
            match += f"{target} @{e.target_set} "
        for ports in _ports(e.ports):
            lines.append(f"{match}{ports}meta mark set meta mark | {ALLOW_MARK:#x} "
                         f"comment {_comment(e.comment)}")
    return lines


def pod_chain_rules(chain: PodChain) -> list[str]:
    self_match = "ip saddr" if chain.direction is Direction.INGRESS else "ip daddr"
    lines = [f"{self_match} {chain.ip} return comment {_comment(chain.pod + ' to itself')}"]
    lines += [f"jump {target} comment {_comment(key)}" for key, target in chain.policies]
    lines.append(f"meta mark & {ALLOW_MARK:#x} == 0 counter name {DROPPED} {REJECT} "
                 f"comment {_comment(chain.comment)}")
    lines.append(f"meta mark set meta mark & {~ALLOW_MARK & 0xffffffff:#x}")
    return lines


@dataclass
class Rendered:
    chains: dict[str, list[str]]
    maps: dict[str, dict[str, str]]  # map -> pod IP -> its chain
    sets: dict[str, frozenset[str]]
    # The sets holding networks: interval sets. The others hold host
    # addresses, in plain sets: an element update of an interval set makes
    # nft 1.0 read every interval set of the table first (a quarter of a
    # second at 25,000 elements), one of a plain set does not.
    networks: frozenset[str] = frozenset()


class Renderer:
    """``render`` that keeps each chain's rules, keyed by the chain (a
    value), and renders only the chains that are new or changed since the
    last call. The lists it returns are shared: read them only."""

    def __init__(self) -> None:
        self._memo: dict[PolicyChain | PodChain, list[str]] = {}

    def _rules(self, chain: Chain, render: Callable[[Chain], list[str]]) -> list[str]:
        hit = self._memo.get(chain)
        return render(chain) if hit is None else hit

    def render(self, plan: Plan) -> Rendered:
        chains: dict[str, list[str]] = {}
        memo: dict[PolicyChain | PodChain, list[str]] = {}
        for c in plan.policy_chains.values():
            chains[c.name] = memo[c] = self._rules(c, policy_chain_rules)
        for p in plan.pod_chains.values():
            chains[p.name] = memo[p] = self._rules(p, pod_chain_rules)
        self._memo = memo
        maps: dict[str, dict[str, str]] = {m: {} for m, _ in MAPS.values()}
        for p in plan.pod_chains.values():
            maps[MAPS[p.direction][0]][p.ip] = p.name
        return Rendered(chains, maps, dict(plan.sets), frozenset(plan.networks))


def render(plan: Plan) -> Rendered:
    return Renderer().render(plan)


def _elements(items: list[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _set_elements(r: Rendered, name: str, elements: frozenset[str]) -> str:
    if name in r.networks:
        return _elements(sorted(elements))
    return _elements(sorted(e.removesuffix("/32") for e in elements))


def _declare_set(r: Rendered, name: str) -> str:
    flags = " flags interval;" if name in r.networks else ""
    return f"add set {TABLE_REF} {name} {{ type ipv4_addr;{flags} }}"


def _fixed() -> list[str]:
    lines = [f"add chain {TABLE_REF} {FILTER_CHAIN}"]
    for hook in ("forward", "input"):
        lines.append(f"add chain {TABLE_REF} {hook} {{ type filter hook {hook} priority "
                     f"{PRIORITY}; policy accept; }}")
        lines.append(f"add rule {TABLE_REF} {hook} ct state new,untracked jump {FILTER_CHAIN}")
    for direction in (Direction.EGRESS, Direction.INGRESS):
        name, key = MAPS[direction]
        lines.append(f"add map {TABLE_REF} {name} {{ type ipv4_addr : verdict; }}")
        lines.append(f"add rule {TABLE_REF} {FILTER_CHAIN} {key} vmap @{name}")
    return lines


def full_script(r: Rendered) -> str:
    """Replaces the whole table in one transaction."""
    lines = [f"add table {TABLE_REF}", f"delete table {TABLE_REF}", f"add table {TABLE_REF}",
             f"add counter {TABLE_REF} {DROPPED}"]
    for name in sorted(r.sets):
        lines.append(_declare_set(r, name))
        if r.sets[name]:
            lines.append(f"add element {TABLE_REF} {name} {_set_elements(r, name, r.sets[name])}")
    lines.extend(f"add chain {TABLE_REF} {c}" for c in sorted(r.chains))
    for c in sorted(r.chains):
        lines.extend(f"add rule {TABLE_REF} {c} {rule}" for rule in r.chains[c])
    lines += _fixed()
    for m, elements in sorted(r.maps.items()):
        if elements:
            items = [f"{ip} : jump {chain}" for ip, chain in sorted(elements.items())]
            lines.append(f"add element {TABLE_REF} {m} {_elements(items)}")
    return "\n".join(lines) + "\n"


def update_script(new: Rendered, old: Rendered) -> str | None:
    """Only what changed, in an order the transaction accepts: new sets and
    chains first, then rules and elements, then what went away."""
    lines: list[str] = []
    for name in sorted(set(new.sets) - set(old.sets)):
        lines.append(_declare_set(new, name))
    for name in sorted(new.sets):
        before, after = old.sets.get(name, frozenset()), new.sets[name]
        if before is after:
            continue  # the same set as last time: nothing to compare
        if before - after:
            lines.append(f"delete element {TABLE_REF} {name} "
                         f"{_set_elements(new, name, before - after)}")
        if after - before:
            lines.append(f"add element {TABLE_REF} {name} "
                         f"{_set_elements(new, name, after - before)}")
    lines.extend(f"add chain {TABLE_REF} {c}" for c in sorted(set(new.chains) - set(old.chains)))
    for c in sorted(new.chains):
        if old.chains.get(c) is new.chains[c] or old.chains.get(c) == new.chains[c]:
            continue
        if c in old.chains:
            lines.append(f"flush chain {TABLE_REF} {c}")
        lines.extend(f"add rule {TABLE_REF} {c} {rule}" for rule in new.chains[c])
    for m in sorted(new.maps):
        was, now = old.maps.get(m, {}), new.maps[m]
        gone = [ip for ip in sorted(was) if was[ip] != now.get(ip)]
        if gone:
            lines.append(f"delete element {TABLE_REF} {m} {_elements(gone)}")
        added = [f"{ip} : jump {now[ip]}" for ip in sorted(now) if was.get(ip) != now[ip]]
        if added:
            lines.append(f"add element {TABLE_REF} {m} {_elements(added)}")
    for c in sorted(set(old.chains) - set(new.chains)):
        lines.append(f"flush chain {TABLE_REF} {c}")
    lines.extend(f"delete chain {TABLE_REF} {c}" for c in sorted(set(old.chains) - set(new.chains)))
    lines.extend(f"delete set {TABLE_REF} {s}" for s in sorted(set(old.sets) - set(new.sets)))
    return "\n".join(lines) + "\n" if lines else None


class NftPolicyApplier:
    """Loads a policy plan into ``ip netplane-policy`` of one netns."""

    def __init__(self, *, netns: str | None = None, runner: Runner = run_command) -> None:
        self._netns = netns
        self._runner = runner
        self.applied: Rendered | None = None
        self._renderer = Renderer()

    def _run(self, argv: list[str], stdin: str | None = None, *,
             check: bool = True) -> CommandResult:
        return run_in(self._runner, self._netns, argv, stdin, check=check)

    def ensure_jumps(self) -> None:
        """The base chains come with every full load; nothing to do here."""

    def render(self, plan: Plan) -> Rendered:
        return self._renderer.render(plan)

    @staticmethod
    def rule_count(rendered: Rendered) -> int:
        return sum(map(len, rendered.chains.values()))

    def dropped_packets(self) -> int:
        out = self._run(["nft", "list", "counter", FAMILY, TABLE, DROPPED], check=False).stdout
        m = re.search(r"packets (\d+)", out)
        return int(m.group(1)) if m else 0

    def intact(self) -> bool:
        """Both base chains there (small listings, never the sets)."""
        return all(self._run(["nft", "list", "chain", FAMILY, TABLE, hook],
                             check=False).returncode == 0 for hook in ("forward", "input"))

    def apply(self, plan: Plan, rendered: Rendered, *, full: bool) -> None:
        if full or self.applied is None:
            script: str | None = full_script(rendered)
        else:
            script = update_script(rendered, self.applied)
        if script is not None:
            self._run(["nft", "-f", "-"], script)
        self.applied = rendered

    def clean_up(self) -> None:
        self._run(["nft", "delete", "table", FAMILY, TABLE], check=False)
        self.applied = None

