"""iptables mode keeps every service port's rendered text across syncs.

A full sync re-renders only the Services that changed and joins the kept
text of the others; these tests prove that nothing stale is ever served:
a changed Service or endpoint is rendered again, an unchanged one is
reused as it was, and after any sequence of changes (with failed syncs
among them) the kernel holds exactly what a cold render of the same
objects gives, and a full sync writes exactly that text (also after the
nat table was flushed behind the proxier's back).

Address plan: see ``proxy_churn`` (random Services ``a/svc-0`` ..
``a/svc-7`` on 10.96.0.1 .. 10.96.0.8, pods in 10.244.1.0/24 on node-1 and
10.244.2.0/24 on node-2); ``default/web`` on 10.96.0.50 as in
``test_proxy_proxier``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import pytest

from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables import proxier as proxier_module
from netplane.proxy.iptables.chains import Table
from netplane.proxy.iptables.document import Layout, Part, Pieces
from netplane.proxy.iptables.proxier import Proxier
from netplane.proxy.iptables.render import render
from netplane.proxy.iptables.rules import PortRules
from netplane.proxy.iptables.trace import parse
from tests.unit.proxy_churn import CONFIGS, NODE, Churn, Event
from tests.unit.test_proxy_iptables_partial import canonical
from tests.unit.test_proxy_proxier import WEB, FakeKernel, endpoints


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@dataclass(frozen=True)
class Text:
    """A piece with fixed text, for the generic ``Pieces``."""

    shared: str
    own: str = ""
    chains: tuple[str, ...] = ()


LAYOUT: Layout[Text] = Layout.of_fields({(Table.NAT, Part.SHARED): "shared",
                                         (Table.NAT, Part.OWN): "own"}, {Table.NAT: "chains"})


def pieces(**items: Text) -> Pieces[str, Text]:
    return Pieces(items, layout=LAYOUT, order=str)


def test_pieces_join_in_owner_order_and_only_their_slots() -> None:
    p = pieces(b=Text("b1\n", "B\n"), a=Text("a1\na2\n"))
    assert p.ordered() == ["a", "b"]
    assert p.joined(Table.NAT, Part.SHARED) == "a1\na2\nb1\n"
    assert p.joined(Table.NAT, Part.OWN) == "B\n"
    assert p.joined(Table.NAT, Part.DECLS) == ""
    assert p.joined(Table.FILTER, Part.SHARED) == ""


def test_pieces_keep_the_joined_text_of_slots_no_change_touched() -> None:
    p = pieces(a=Text("a\n", "A\n"), b=Text("b\n", "B\n"))
    shared, own = p.joined(Table.NAT, Part.SHARED), p.joined(Table.NAT, Part.OWN)
    q = p.with_changes({"b": Text("b\n", "B2\n")})
    assert q.joined(Table.NAT, Part.SHARED) is shared  # reused, not joined again
    assert q.joined(Table.NAT, Part.OWN) == "A\nB2\n"
    # The old version is left as it was: it is what the kernel still holds.
    assert p.joined(Table.NAT, Part.OWN) is own and p["b"].own == "B\n"


def test_pieces_added_and_removed_owners_take_their_place() -> None:
    p = pieces(b=Text("b\n"), d=Text("d\n"))
    p.joined(Table.NAT, Part.SHARED)
    q = p.with_changes({"c": Text("c\n"), "a": Text("a\n"), "d": None})
    assert q.ordered() == ["a", "b", "c"]
    assert q.joined(Table.NAT, Part.SHARED) == "a\nb\nc\n"
    r = q.with_changes({"a": None, "zz": None})
    assert r.ordered() == ["b", "c"] and r.joined(Table.NAT, Part.SHARED) == "b\nc\n"
    assert "a" not in r and len(r) == 2 and r.chains(Table.NAT) == set()
    s = r.with_changes({"b": Text("b\n", chains=("NP-B",))})
    assert s.chains(Table.NAT) == {"NP-B"} and list(s.owned("b", Table.NAT)) == ["NP-B"]
    assert s.owned("c", Table.FILTER) == () and s.owned("zz", Table.NAT) == ()


def test_port_rules_compare_by_content() -> None:
    a = PortRules({"NP-SVC-X": "-A NP-SVC-X -j NP-SEP-Y\n"}, "-A NP-SERVICES -j NP-SVC-X\n")
    b = PortRules({"NP-SVC-X": "-A NP-SVC-X -j NP-SEP-Y\n"}, "-A NP-SERVICES -j NP-SVC-X\n")
    assert a == b and a.rule_count == 2 and a.nat_decls == ":NP-SVC-X - [0:0]\n"
    assert a != PortRules({"NP-SVC-X": "-A NP-SVC-X -j NP-SEP-Z\n"}, a.nat_shared)


class Counting:
    """Counts render_port calls per service port while delegating."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = proxier_module.render_port

        def counted(info: Any, *args: Any, **kw: Any) -> PortRules:
            self.calls.append(info.service_name)
            return real(info, *args, **kw)

        monkeypatch.setattr(proxier_module, "render_port", counted)


def _held(kernel: FakeKernel) -> str:
    """What the (fake) kernel holds, whatever order the restore wrote it in."""
    return canonical(kernel.rules.dump())


def _svc(name: str, ip: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}


def _eps(name: str, *ips: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 8080}]}]}


async def test_full_sync_renders_only_what_changed(kernel: FakeKernel,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(monkeypatch)
    proxier = Proxier(node_name="node-1", applier=kernel)
    for name, ip in (("web", "10.96.0.50"), ("api", "10.96.0.51"), ("db", "10.96.0.52")):
        proxier.on_service(None, _svc(name, ip))
        proxier.on_endpoints(None, _eps(name, "10.244.1.2"))
    assert await proxier.sync(full=True)
    assert sorted(counting.calls) == ["api", "db", "web"]
    kept = proxier.describe()["ports"]
    counting.calls.clear()
    assert await proxier.sync(full=True)  # a resync: nothing changed, nothing rendered
    assert counting.calls == []
    assert _held(kernel) == canonical(parse(proxier.render()).dump())
    proxier.on_endpoints(_eps("api", "10.244.1.2"), _eps("api", "10.244.1.9"))
    assert await proxier.sync(full=True)
    assert counting.calls == ["api"]
    assert "-X NP-SEP-" in kernel.restores[-1]  # the old endpoint's chain goes
    assert await proxier.sync(full=True)
    assert counting.calls == ["api"]
    assert _held(kernel) == canonical(parse(proxier.render()).dump())
    assert kernel.backends("10.96.0.51") == {"10.244.1.9:8080"}
    assert kernel.backends("10.96.0.50") == {"10.244.1.2:8080"}
    assert proxier.describe()["ports"] != kept


async def test_unchanged_ports_are_the_very_objects_kept(kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel)
    proxier.on_service(None, _svc("web", "10.96.0.50"))
    proxier.on_service(None, _svc("api", "10.96.0.51"))
    assert await proxier.sync(full=True)
    before = {spn.name: proxier._applied[spn] for spn in proxier._applied}
    proxier.on_endpoints(None, _eps("api", "10.244.1.2"))
    assert await proxier.sync(full=True)
    after = {spn.name: proxier._applied[spn] for spn in proxier._applied}
    assert after["web"] is before["web"]
    assert after["api"] is not before["api"] and after["api"] != before["api"]


async def test_a_service_deleted_during_a_failed_sync_goes_on_the_retry(
        kernel: FakeKernel) -> None:
    proxier = Proxier(node_name="node-1", applier=kernel)
    proxier.set_up()
    proxier.on_service(None, WEB)
    proxier.on_endpoints(None, endpoints("10.244.1.2"))
    assert await proxier.sync()
    proxier.on_service(WEB, None)
    kernel.fail = True
    assert not await proxier.sync()
    kernel.fail = False
    assert await proxier.sync()
    assert kernel.backends() == {None}
    assert await proxier.sync(full=True)
    assert "10.96.0.50" not in kernel.restores[-1]


def _apply(proxier: Proxier, events: list[Event]) -> None:
    for kind, prev, cur in events:
        if kind == "service":
            proxier.on_service(prev, cur)
        else:
            proxier.on_endpoints(prev, cur)


def _cold(churn: Churn, config: ProxyConfig) -> str:
    return render(*churn.objects(), config, node_name=NODE)


@pytest.mark.parametrize("seed", range(40))
def test_any_sequence_of_changes_ends_as_a_cold_render(seed: int) -> None:
    rng = random.Random(seed)
    config = CONFIGS[seed % len(CONFIGS)]
    churn = Churn(rng)
    kernel = FakeKernel()
    proxier = Proxier(node_name=NODE, applier=kernel, config=config)
    proxier.set_up()
    _apply(proxier, churn.populate(rng.randrange(9)))
    for _ in range(30):
        for _ in range(rng.randrange(4)):
            _apply(proxier, churn.step())
        if rng.random() < 0.05:
            kernel.flush()  # someone flushed nat: the drift check sees it
            assert not asyncio.run(proxier.check())
        kernel.fail = rng.random() < 0.1
        ok = asyncio.run(proxier.sync(full=rng.random() < 0.3))
        if ok:
            want = parse(_cold(churn, config)).dump()
            assert canonical(kernel.rules.dump()) == canonical(want)
    kernel.fail = False
    assert asyncio.run(proxier.sync(full=True))
    assert asyncio.run(proxier.sync(full=True))  # nothing stale is left to delete
    assert _held(kernel) == canonical(parse(_cold(churn, config)).dump())
    assert "-X " not in kernel.restores[-1]
