"""Partial syncs: a partial document played onto the old rules gives the new rules.

Uses the Services of ``test_proxy_iptables_cases``; each case changes one or two
of them and checks the partial document against a full render of the
result, with the restore model that also refuses deleting a missing rule.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from netplane.api.meta import Obj
from netplane.proxy import model
from netplane.proxy.iptables.render import full_document, partial_document, render_ports
from netplane.proxy.iptables.rules import PortRules
from netplane.proxy.iptables.trace import parse
from netplane.proxy.model import ServicePortName
from tests.unit.test_proxy_iptables_cases import (
    CONFIG,
    LOCAL_A,
    LOCAL_B,
    NODE,
    REMOTE,
    ep,
    eslice,
    services,
    svc,
)
from tests.unit.test_proxy_iptables_cases import endpoints as all_endpoints

GOLDEN = Path(__file__).parent / "golden" / "proxy_iptables_partial.txt"
Ports = dict[ServicePortName, PortRules]
Objects = tuple[list[Obj], list[Obj]]


SHARED = ("NP-SERVICES", "NP-NODEPORTS", "NP-EXTERNAL-SERVICES", "NP-PROXY-FIREWALL")


def canonical(dump: str) -> list[str]:
    """The dump with the order-free shared chains sorted; the NodePort
    catch-all must still be the last rule of nat NP-SERVICES."""
    def key(line: str) -> tuple[int, str]:
        chain = line.split(" ", 2)[1] if line.startswith("-A ") else ""
        last = "must stay last" in line
        return (1 if last else 0, line) if chain in SHARED else (0, "")
    out: list[str] = []
    block: list[str] = []
    for line in dump.splitlines():
        if line.startswith("-A ") and block and line.split()[1] == block[-1].split()[1]:
            block.append(line)
            continue
        out += sorted(block, key=key) if block and block[0].split()[1] in SHARED else block
        block = [line] if line.startswith("-A ") else []
        if not line.startswith("-A "):
            out.append(line)
    return out


def ports(objs: Objects) -> Ports:
    return render_ports(model.build(*objs), CONFIG, node_name=NODE)


def replaced(items: list[Obj], name: str, new: Obj | None) -> list[Obj]:
    def key(o: Obj) -> str:
        labels = o["metadata"].get("labels") or {}
        return str(labels.get("kubernetes.io/service-name") or o["metadata"]["name"])
    out = [o for o in items if key(o) != name]
    return out + ([new] if new is not None else [])


def change_endpoints(name: str, *eps: Obj) -> Callable[[Objects], Objects]:
    return lambda o: (o[0], replaced(o[1], name, eslice(name, *eps) if eps else None))


def change_service(name: str, new: Obj | None) -> Callable[[Objects], Objects]:
    return lambda o: (replaced(o[0], name, new), o[1])


CASES: dict[str, Callable[[Objects], Objects]] = {
    "endpoint added": change_endpoints("np", ep(LOCAL_A, NODE), ep(LOCAL_B, NODE),
                                       ep(REMOTE, "node-2")),
    "endpoint removed": change_endpoints("np", ep(REMOTE, "node-2")),
    "last endpoint removed": change_endpoints("lb"),
    "first endpoints": change_endpoints("none", ep(LOCAL_A, NODE)),
    "local endpoint appears": change_endpoints("local-none", ep(LOCAL_A, NODE)),
    "service added": change_service("new", svc("new", "10.96.0.70", externalIPs=["1.2.3.4"])),
    "service deleted": change_service("local", None),
    "type changed": change_service("np", svc("np", "10.96.0.60")),
    "source ranges dropped": change_service("lb", svc("lb", "10.96.0.61", type="LoadBalancer",
                                                      node_port=30081)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_partial_on_top_of_old_equals_full_new(case: str) -> None:
    before: Objects = (services(), all_endpoints())
    after = CASES[case](before)
    old, new = ports(before), ports(after)
    changed = {s for s in set(old) | set(new) if old.get(s) != new.get(s)}
    assert changed, "the case must change something"
    text = partial_document(old, new, changed)
    kernel = parse(full_document(old.values(), CONFIG)).restore(text)
    want = parse(full_document(new.values(), CONFIG)).dump()
    assert canonical(kernel.dump()) == canonical(want)


def test_partial_writes_only_the_changed_service() -> None:
    before: Objects = (services(), all_endpoints())
    old, new = ports(before), ports(CASES["endpoint removed"](before))
    changed = {s for s in new if old.get(s) != new.get(s)}
    text = partial_document(old, new, changed)
    assert text == GOLDEN.read_text()
    assert {line.split('"')[1].split(" ")[0] for line in text.splitlines()
            if "--comment" in line} == {"default/np:http"}
    # An endpoint change leaves the shared chains alone.
    assert "NP-SERVICES" not in text and "NP-NODEPORTS" not in text


def test_unchanged_ports_give_an_empty_document() -> None:
    old = ports((services(), all_endpoints()))
    assert partial_document(old, old, set(old)) == ""


def test_new_dispatch_lines_stay_above_the_node_port_catch_all() -> None:
    before: Objects = (services(), all_endpoints())
    after = change_endpoints("new", ep(LOCAL_A, NODE))(CASES["service added"](before))
    old, new = ports(before), ports(after)
    text = partial_document(old, new, set(new) - set(old))
    assert "-I NP-SERVICES 1 " in text and "-A NP-SERVICES" not in text
