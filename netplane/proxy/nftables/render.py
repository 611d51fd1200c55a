"""nftables mode: the whole table as ``nft -f`` text, in full or as a delta.

``render`` turns a service map into a :class:`Rendered` state: the items of
every service port (``service``) and, per map element / chain / set,
which service ports want it. ``full_text`` writes the complete table for
one ``nft -f`` transaction; ``update`` re-renders only the service ports
that changed and returns the element adds/deletes and chain rewrites that
take the kernel from the old state to the new one. Items several service
ports share (a ``cluster-2`` chain, a ClusterIP in ``cluster-ips``, a
hairpin pair) stay until their last owner goes; when two service ports
claim the same key with different values (two Services with one external
IP and port) the first in service port order wins, however the state got
there, so that a state moved by ``update`` and a fresh ``render`` of the
same map are the same table. No kernel access here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from netplane.proxy.config import ProxyConfig
from netplane.proxy.model import ServiceMap, ServicePortName, port_order
from netplane.proxy.nftables.layout import (
    ALL_MAPS,
    TABLE_REF,
    Map,
    chain_declaration,
    fixed_chains,
    map_declaration,
    map_kind,
)
from netplane.proxy.nftables.service import CHAINS, SETS, Item, service_items

Owners = dict[str, dict[str, dict[ServicePortName, str]]]


@dataclass
class Rendered:
    """The table we want, with enough bookkeeping for cheap partial updates."""

    config: ProxyConfig
    node_name: str
    node_ips: tuple[str, ...]
    services: ServiceMap = field(default_factory=dict)
    fragments: dict[ServicePortName, tuple[Item, ...]] = field(default_factory=dict)
    owners: Owners = field(default_factory=dict)
    # Items whose owners have claimed different values; the owners of every
    # other item agree (a shared chain: thousands of owners, one value).
    contested: set[tuple[str, str]] = field(default_factory=set)

    def same_setup(self, config: ProxyConfig, node_name: str,
                   node_ips: tuple[str, ...]) -> bool:
        return (self.config, self.node_name, self.node_ips) == (config, node_name, node_ips)

    def _winner(self, container: str, key: str, wanted: dict[ServicePortName, str]) -> str:
        """The value of the first owner in order."""
        if (container, key) in self.contested:
            return wanted[min(wanted, key=port_order)]
        return next(iter(wanted.values()))

    def value(self, container: str, key: str) -> str | None:
        """The winning value of one item, or None when nobody wants it."""
        wanted = self.owners.get(container, {}).get(key)
        return self._winner(container, key, wanted) if wanted else None

    def chains(self) -> dict[str, tuple[str, ...]]:
        """Every chain of the table with its rules, fixed ones first."""
        out = dict(fixed_chains(self.config))
        for name, wanted in self.owners.get(CHAINS, {}).items():
            out[name] = tuple(self._winner(CHAINS, name, wanted).split("\n"))
        return out

    def set_specs(self) -> dict[str, str]:
        """Sets owned by service ports (affinity sets), with their declarations."""
        return self.elements(SETS)

    def elements(self, m: str) -> dict[str, str]:
        return {k: self._winner(m, k, v) for k, v in self.owners.get(m, {}).items()}

    def rule_count(self) -> int:
        return sum(len(rules) for rules in self.chains().values())

    def element_count(self) -> int:
        return sum(len(self.owners.get(m, {})) for m in ALL_MAPS) + len(self.node_ips)

    def own(self, spn: ServicePortName, items: Iterable[Item]) -> None:
        for container, key, value in items:
            keys = self.owners.get(container)
            if keys is None:
                keys = self.owners[container] = {}
            wanted = keys.get(key)
            if wanted is None:
                keys[key] = {spn: value}
            else:
                if value != next(iter(wanted.values())):
                    self.contested.add((container, key))
                wanted[spn] = value

    def disown(self, spn: ServicePortName, items: Iterable[Item]) -> None:
        for container, key, _ in items:
            keys = self.owners.get(container, {})
            wanted = keys.get(key)
            if wanted is None:
                continue  # a port may claim an item twice (an external IP that is its LB IP)
            wanted.pop(spn, None)
            if not wanted:
                del keys[key]
                self.contested.discard((container, key))


def render(service_map: ServiceMap, config: ProxyConfig, *, node_name: str,
           node_ips: Iterable[str] = ()) -> Rendered:
    """The desired table for ``service_map`` on one node."""
    r = Rendered(config, node_name, tuple(sorted(node_ips)), services=service_map)
    for spn in sorted(service_map, key=port_order):
        info, eps = service_map[spn]
        items = service_items(info, eps, config=config, node_name=node_name)
        r.fragments[spn] = items
        r.own(spn, items)
    return r


def _rules(name: str, rules: Iterable[str]) -> list[str]:
    return [f"add rule {TABLE_REF} {name} {rule}" for rule in rules]


def _element(key: str, value: str) -> str:
    return f"{key} : {value}" if value else key


def _elements(verb: str, m: str, pairs: Iterable[tuple[str, str]]) -> list[str]:
    body = ",\n\t".join(_element(k, v) for k, v in pairs)
    return [f"{verb} element {TABLE_REF} {m} {{\n\t{body}\n}}"] if body else []


def _set_declaration(name: str, spec: str) -> str:
    return f"add set {TABLE_REF} {name} {{ {spec} ; }}"


def full_text(r: Rendered) -> str:
    """One transaction that makes our table exactly ``r`` (stale objects aside).

    Chains and maps are declared, flushed and refilled; affinity sets are
    declared but not flushed, so clients keep their endpoints across syncs."""
    chains = r.chains()
    lines = [f"add table {TABLE_REF}"]
    lines += [chain_declaration(c) for c in chains]
    lines += [f"flush chain {TABLE_REF} {c}" for c in chains]
    lines += [map_declaration(m) for m in ALL_MAPS]
    lines += [f"flush {map_kind(m)} {TABLE_REF} {m}" for m in ALL_MAPS]
    lines += [_set_declaration(s, v) for s, v in r.set_specs().items()]
    for name, rules in chains.items():
        lines += _rules(name, rules)
    lines += _elements("add", Map.NODEPORT_IPS, ((ip, "") for ip in r.node_ips))
    for m in ALL_MAPS:
        lines += _elements("add", m, r.elements(m).items())
    return "\n".join(lines) + "\n"


def wanted_objects(r: Rendered) -> tuple[set[str], set[str]]:
    """Names of the chains and of the sets/maps the table should hold."""
    return set(r.chains()), {*ALL_MAPS, *r.set_specs()}


def stale_text(r: Rendered, *, chains: Iterable[str], sets: Iterable[str]) -> str:
    """Deletes what the kernel holds in our table that ``r`` does not want
    (to append to ``full_text``): chains are emptied first, so that no rule
    of a doomed chain still points at another when it goes."""
    want_chains, want_sets = wanted_objects(r)
    doomed = sorted(set(chains) - want_chains)
    doomed_sets = sorted(set(sets) - want_sets)
    lines = [f"flush chain {TABLE_REF} {c}" for c in doomed]
    lines += [f"delete set {TABLE_REF} {s}" for s in doomed_sets]
    lines += [f"delete chain {TABLE_REF} {c}" for c in doomed]
    return "".join(line + "\n" for line in lines)


def clean_text() -> str:
    """Removes our table (it is created first so the delete cannot fail)."""
    return f"add table {TABLE_REF}\ndelete table {TABLE_REF}\n"


# (container, key, old value, new value) of one item that changed.
Change = tuple[str, str, str | None, str | None]


def _delta_text(changes: list[Change]) -> str:
    new_chains = [k for c, k, old, new in changes if c == CHAINS and old is None]
    rewritten = [(k, new) for c, k, _, new in changes if c == CHAINS and new is not None]
    gone_chains = [k for c, k, _, new in changes if c == CHAINS and new is None]
    lines = [_set_declaration(k, new) for c, k, old, new in changes
             if c == SETS and old is None and new is not None]
    lines += [f"add chain {TABLE_REF} {k}" for k in new_chains]
    for name, body in rewritten:
        lines.append(f"flush chain {TABLE_REF} {name}")
        lines += _rules(name, body.split("\n"))
    lines += [f"flush chain {TABLE_REF} {k}" for k in gone_chains]
    for m in ALL_MAPS:
        lines += _elements("delete", m, ((k, "") for c, k, old, _ in changes
                                         if c == m and old is not None))
    for m in ALL_MAPS:
        lines += _elements("add", m, ((k, new) for c, k, _, new in changes
                                      if c == m and new is not None))
    lines += [f"delete chain {TABLE_REF} {k}" for k in gone_chains]
    lines += [f"delete set {TABLE_REF} {k}" for c, k, old, new in changes
              if c == SETS and new is None]
    return "".join(line + "\n" for line in lines)


def update(r: Rendered, service_map: ServiceMap, *,
           changed: Iterable[ServicePortName] | None = None) -> str:
    """Moves ``r`` to ``service_map`` and returns the ``nft -f`` delta ("" if
    nothing changed). ``changed`` may name the service ports that changed
    (from a change tracker) to skip comparing every one of them."""
    return _delta_text(move(r, service_map, changed=changed))


def move(r: Rendered, service_map: ServiceMap, *,
         changed: Iterable[ServicePortName] | None = None) -> list[Change]:
    """Moves ``r`` to ``service_map``, rendering again only the service ports
    that changed; returns what changed, item by item."""
    if changed is None:
        old = r.services
        changed = [spn for spn in {*old, *service_map} if old.get(spn) != service_map.get(spn)]
    todo = sorted(set(changed), key=port_order)
    new_items: dict[ServicePortName, tuple[Item, ...]] = {}
    for spn in todo:
        entry = service_map.get(spn)
        new_items[spn] = () if entry is None else service_items(
            entry[0], entry[1], config=r.config, node_name=r.node_name)
    touched = {(c, k) for spn in todo
               for c, k, _ in (*r.fragments.get(spn, ()), *new_items[spn])}
    before = {ck: r.value(*ck) for ck in touched}
    for spn in todo:
        r.disown(spn, r.fragments.pop(spn, ()))
        if spn in service_map:
            r.fragments[spn] = new_items[spn]
            r.own(spn, new_items[spn])
    r.services = service_map
    changes: list[Change] = []
    for (c, k), old_value in sorted(before.items(), key=lambda kv: kv[0]):
        new_value = r.value(c, k)
        if new_value != old_value:
            changes.append((c, k, old_value, new_value))
    return changes
