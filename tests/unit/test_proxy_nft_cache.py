"""nftables mode keeps its rendered state across syncs, full ones too.

A full sync moves the last rendered state to the new service map,
rendering again only the service ports that differ. These tests prove
that this never serves anything stale: a changed service port is rendered
again and an unchanged one reused; other node settings render everything
again; and after any sequence of changes (with failed transactions and a
deleted table among them) the table holds exactly what a cold render of
the same objects gives, which is also what every full sync writes.

The fake table below plays our ``nft -f`` text as the kernel would, and
as strictly: a transaction is all or nothing; deleting a missing element,
adding an element with another value, a rule or verdict that names a
missing chain or set, and deleting a chain or set still in use all fail.

Address plan: see ``proxy_churn``; ``default/web`` and friends as in
``test_proxy_nft``.
"""

from __future__ import annotations

import asyncio
import copy
import random
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.mapproxier import MapProxier, NftablesAdapter
from netplane.proxy.nftables import render as nft_render
from netplane.proxy.nftables.backend import NftablesBackend, SyncKind
from netplane.proxy.nftables.kernel import NftError, TableSummary
from netplane.proxy.nftables.render import full_text, render
from tests.unit.proxy_churn import CONFIGS, NODE, Churn, Event
from tests.unit.test_proxy_nft import CONFIG, NODE_IP, endpoints, services

PREFIX = "ip netplane "
_REFS = re.compile(r"(?:goto|jump) ([\w-]+)")
_SET_REFS = re.compile(r"@([\w-]+)")


@dataclass
class Table:
    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)  # maps too: name -> declaration
    elements: dict[str, dict[str, str]] = field(default_factory=dict)
    exists: bool = False

    def summary(self) -> TableSummary:
        return TableSummary(self.exists, frozenset(self.chains), frozenset(self.sets),
                            {c: len(r) for c, r in self.chains.items()})


def _statements(text: str) -> list[str]:
    out: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        if line.endswith("{"):  # an element block, up to its closing brace
            body = [line]
            for more in lines:
                body.append(more)
                if more == "}":
                    break
            out.append("\n".join(body))
        elif line:
            out.append(line)
    return out


def _elements(block: str) -> list[tuple[str, str]]:
    inner = block.split("{\n\t", 1)[1].rsplit("\n}", 1)[0]
    pairs = []
    for item in inner.split(",\n\t"):
        key, _, value = item.partition(" : ")
        pairs.append((key, value))
    return pairs


class FakeTable:
    """Our table as the kernel would hold it after each transaction."""

    def __init__(self) -> None:
        self.table = Table()
        self.fail_next = False
        self.loads: list[str] = []

    def load(self, text: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise NftError("Could not process rule: Device or resource busy")
        t = copy.deepcopy(self.table)
        for st in _statements(text):
            self._play(t, st)
        self.table = t
        self.loads.append(text)

    def close(self) -> None:
        pass

    def summary(self) -> TableSummary:
        return self.table.summary()

    @staticmethod
    def _need(ok: bool, what: str) -> None:
        if not ok:
            raise NftError(f"Could not process rule: {what}")

    def _check_refs(self, t: Table, text: str) -> None:
        for chain in _REFS.findall(text):
            self._need(chain in t.chains, f"no such chain {chain}")
        for s in _SET_REFS.findall(text):
            self._need(s in t.sets, f"no such set {s}")

    def _used(self, t: Table, name: str, pattern: str) -> bool:
        texts = [r for rules in t.chains.values() for r in rules]
        texts += [v for els in t.elements.values() for v in els.values()]
        return any(re.search(pattern.format(re.escape(name)), x) for x in texts)

    def _play(self, t: Table, st: str) -> None:
        verb, _, rest = st.partition(" ")
        kind, _, rest = rest.partition(" ")
        if kind == "table":
            if verb == "add":
                t.exists = True
            else:
                t.__init__()  # type: ignore[misc]
            return
        self._need(t.exists and rest.startswith(PREFIX), "no such table")
        rest = rest[len(PREFIX):]
        name, _, arg = rest.partition(" ")
        if kind == "chain":
            self._chain(t, verb, name)
        elif kind in ("map", "set"):
            self._set(t, verb, name, arg)
        elif kind == "rule":
            self._need(name in t.chains, f"no such chain {name}")
            self._check_refs(t, arg)
            t.chains[name].append(arg)
        elif kind == "element":
            self._element(t, verb, name, st)
        else:
            raise AssertionError(f"statement not modelled: {st}")

    def _chain(self, t: Table, verb: str, name: str) -> None:
        if verb == "add":
            t.chains.setdefault(name, [])
            return
        self._need(name in t.chains, f"no such chain {name}")
        if verb == "flush":
            t.chains[name] = []
        else:
            self._need(not t.chains[name], f"chain {name} is not empty")
            self._need(not self._used(t, name, r"(?:goto|jump) {}\b"), f"{name} in use")
            del t.chains[name]

    def _set(self, t: Table, verb: str, name: str, arg: str) -> None:
        if verb == "add":
            self._need(t.sets.get(name, arg) == arg, f"{name} exists with another type")
            t.sets[name] = arg
            t.elements.setdefault(name, {})
            return
        self._need(name in t.sets, f"no such set {name}")
        if verb == "flush":
            t.elements[name] = {}
        else:
            self._need(not self._used(t, name, r"@{}\b"), f"set {name} in use")
            del t.sets[name], t.elements[name]

    def _element(self, t: Table, verb: str, name: str, st: str) -> None:
        self._need(name in t.sets, f"no such set {name}")
        els = t.elements[name]
        for key, value in _elements(st):
            if verb == "add":
                self._need(els.get(key, value) == value, f"{key} exists in {name}")
                self._check_refs(t, value)
                els[key] = value
            else:
                self._need(key in els, f"no such element {key} in {name}")
                del els[key]


def cold_table(text: str) -> Table:
    fake = FakeTable()
    fake.load(text)
    return fake.table


def _backend(fake: FakeTable) -> NftablesBackend:
    return NftablesBackend(loader=fake, reader=fake, runner=lambda argv: (0, ""))


def test_a_full_sync_renders_only_the_changed_service_ports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = nft_render.service_items

    def counted(info: model.ServicePortInfo, *args: Any, **kw: Any) -> Any:
        calls.append(f"{info.service_name}:{info.port_name}")
        return real(info, *args, **kw)

    monkeypatch.setattr(nft_render, "service_items", counted)
    fake = FakeTable()
    backend = _backend(fake)
    sm = model.build(services(), endpoints())
    assert backend.sync(sm, CONFIG, node_name=NODE, node_ips=[NODE_IP], full=True).kind \
        == SyncKind.FULL
    assert len(calls) == len(sm)
    calls.clear()
    assert backend.sync(sm, CONFIG, node_name=NODE, node_ips=[NODE_IP], full=True).kind \
        == SyncKind.FULL
    assert calls == []  # a resync: everything reused
    eps = endpoints()
    eps[1] = {**eps[1], "subsets": [{**eps[1]["subsets"][0], "addresses": []}]}  # np empty
    changed = model.build(services(), eps)
    backend.sync(changed, CONFIG, node_name=NODE, node_ips=[NODE_IP], full=True)
    assert calls == ["np:http"]
    assert fake.table == cold_table(full_text(render(changed, CONFIG, node_name=NODE,
                                                     node_ips=[NODE_IP])))
    calls.clear()
    other = ProxyConfig(cluster_cidr="10.128.0.0/9")
    backend.sync(changed, other, node_name=NODE, node_ips=[NODE_IP], full=True)
    assert len(calls) == len(changed)  # other node settings: everything again
    assert fake.table == cold_table(full_text(render(changed, other, node_name=NODE,
                                                     node_ips=[NODE_IP])))


def test_conflicting_claims_go_to_the_first_owner_however_the_state_got_there() -> None:
    def svc(name: str, ip: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "default", "name": name},
                "spec": {"clusterIP": ip, "externalIPs": ["192.168.56.201"],
                         "ports": [{"port": 80}]}}

    def eps(name: str, *ips: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "default", "name": name}, "subsets": [{
            "addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 8080}]}]}

    one = model.build([svc("a", "10.96.0.60"), svc("b", "10.96.0.61")],
                      [eps("a", "10.244.1.2"), eps("b", "10.244.1.3", "10.244.2.3")])
    two = model.build([svc("a", "10.96.0.60"), svc("b", "10.96.0.61")],
                      [eps("a", "10.244.1.4"), eps("b", "10.244.1.3", "10.244.2.3")])
    fake = FakeTable()
    backend = _backend(fake)
    backend.sync(one, CONFIG, node_name=NODE, full=True)
    backend.sync(two, CONFIG, node_name=NODE)  # a's claim is rendered again, after b's
    verdicts = fake.table.elements["service-ips"]
    assert verdicts["192.168.56.201 . tcp . 80"] == "goto external-tcp-1"  # still a's
    assert fake.table == cold_table(full_text(render(two, CONFIG, node_name=NODE)))


def _apply(proxier: MapProxier, events: list[Event]) -> None:
    for kind, prev, cur in events:
        if kind == "service":
            proxier.on_service(prev, cur)
        else:
            proxier.on_endpoints(prev, cur)


@pytest.mark.parametrize("seed", range(40))
def test_any_sequence_of_changes_ends_as_a_cold_render(seed: int) -> None:
    rng = random.Random(seed)
    config = CONFIGS[seed % len(CONFIGS)]
    churn = Churn(rng)
    fake = FakeTable()
    backend = _backend(fake)
    proxier = MapProxier(mode="nftables", backend=NftablesAdapter(backend), node_name=NODE,
                         config=config)
    proxier.set_up()
    _apply(proxier, churn.populate(rng.randrange(9)))

    def cold() -> Table:
        sm = model.build(*churn.objects())
        return cold_table(full_text(render(sm, proxier.config, node_name=NODE,
                                           node_ips=proxier.node_ips)))

    for _ in range(30):
        for _ in range(rng.randrange(4)):
            _apply(proxier, churn.step())
        if rng.random() < 0.05:
            fake.table = Table()  # someone deleted our table: the check sees it
            assert not asyncio.run(proxier.check())
        fake.fail_next = rng.random() < 0.1
        if asyncio.run(proxier.sync(full=rng.random() < 0.3)):
            assert fake.table == cold()
        fake.fail_next = False
    assert asyncio.run(proxier.sync(full=True))
    assert fake.table == cold()
    assert fake.loads[-1] == full_text(backend._rendered)  # type: ignore[arg-type]


def test_a_port_claiming_one_address_twice_can_change_and_go() -> None:
    lb = {"metadata": {"namespace": "default", "name": "lb"},
          "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.52",
                   "externalIPs": ["192.168.56.200"], "ports": [{"port": 80, "nodePort": 30081}]},
          "status": {"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}]}}}

    def eps(*ips: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "default", "name": "lb"}, "subsets": [{
            "addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 8080}]}]}

    fake = FakeTable()
    backend = _backend(fake)
    backend.sync(model.build([lb], [eps("10.244.1.2")]), CONFIG, node_name=NODE, full=True)
    after = model.build([lb], [eps("10.244.1.3")])
    assert backend.sync(after, CONFIG, node_name=NODE).kind == SyncKind.PARTIAL
    assert fake.table == cold_table(full_text(render(after, CONFIG, node_name=NODE)))
    assert backend.sync({}, CONFIG, node_name=NODE).kind == SyncKind.PARTIAL
    assert fake.table == cold_table(full_text(render({}, CONFIG, node_name=NODE)))
