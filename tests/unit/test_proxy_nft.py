"""nftables rendering: golden text, map contents per feature, partial deltas,
UDP conntrack clean-up and the backend's sync decisions (with fakes).

Address plan:
    pod network (cluster CIDR)   10.244.0.0/16
    this node                    node-1, node IP 192.168.56.11
    pods                         10.244.1.2 (node-1), 10.244.2.3 (node-2),
                                 10.244.2.9 (node-2, not ready)
    default/web                  10.96.0.50  http 80/TCP -> 8080, echo 9000/UDP -> 5353
    default/np                   10.96.0.51  NodePort 30080
    default/lb                   10.96.0.52  LB 192.168.56.200 (from 192.168.56.0/28),
                                 external IP 192.168.56.201, externalTrafficPolicy Local
    default/sticky               10.96.0.53  ClientIP affinity 60 s, NodePort 30082
    default/lonely               10.96.0.54  no endpoints, NodePort 30083
    default/inside               10.96.0.55  internalTrafficPolicy Local, remote endpoint only
    default/headless, default/ext  nothing rendered
    node-local DNS               10.96.0.10
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netplane.api.meta import Obj
from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.model import Protocol, ServiceMap, ServicePortName
from netplane.proxy.nftables.backend import NftablesBackend, SyncKind, health_check_counts
from netplane.proxy.nftables.conntrack import stale_udp_flows
from netplane.proxy.nftables.kernel import NftError, TableSummary
from netplane.proxy.nftables.layout import ALL_MAPS
from netplane.proxy.nftables.render import (
    Rendered,
    full_text,
    render,
    stale_text,
    update,
    wanted_objects,
)
from netplane.proxy.nftables.service import shape_chain

GOLDEN = Path(__file__).parent / "golden" / "proxy_nft.txt"
CONFIG = ProxyConfig(notrack_dns_ips=("10.96.0.10",))
NODE, NODE_IP = "node-1", "192.168.56.11"
WEB_HTTP = ServicePortName("default", "web", "http", Protocol.TCP)
WEB_ECHO = ServicePortName("default", "web", "echo", Protocol.UDP)


def _svc(name: str, ip: str, ports: list[Obj], **spec: object) -> Obj:
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip, "ports": ports, **spec}}


def _port(port: int = 80, node_port: int = 0, name: str = "http") -> Obj:
    return {"name": name, "port": port, "protocol": "TCP", "nodePort": node_port}


def services() -> list[Obj]:
    lb = _svc("lb", "10.96.0.52", [_port(node_port=30081)], type="LoadBalancer",
              externalTrafficPolicy="Local", externalIPs=["192.168.56.201"],
              loadBalancerSourceRanges=["192.168.56.0/28"], healthCheckNodePort=32000)
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}]}}
    return [
        _svc("web", "10.96.0.50", [_port(), {"name": "echo", "port": 9000, "protocol": "UDP"}]),
        _svc("np", "10.96.0.51", [_port(node_port=30080)], type="NodePort"),
        lb,
        _svc("sticky", "10.96.0.53", [_port(node_port=30082)], type="NodePort",
             sessionAffinity="ClientIP",
             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
        _svc("lonely", "10.96.0.54", [_port(node_port=30083)], type="NodePort"),
        _svc("inside", "10.96.0.55", [_port()], internalTrafficPolicy="Local"),
        _svc("headless", "None", [_port()]),
        _svc("ext", "", [], type="ExternalName", externalName="example.org"),
    ]


def _eps(name: str, *pods: tuple[str, str]) -> Obj:
    return {"metadata": {"namespace": "default", "name": name}, "subsets": [{
        "addresses": [{"ip": ip, "nodeName": node} for ip, node in pods],
        "notReadyAddresses": [{"ip": "10.244.2.9", "nodeName": "node-2"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "echo", "port": 5353, "protocol": "UDP"}]}]}


A, B = ("10.244.1.2", "node-1"), ("10.244.2.3", "node-2")


def endpoints() -> list[Obj]:
    return [_eps("web", A, B), _eps("np", A, B), _eps("lb", A, B), _eps("sticky", A, B),
            _eps("inside", B), _eps("headless", A)]


def service_map() -> ServiceMap:
    return model.build(services(), endpoints())


@pytest.fixture
def rendered() -> Rendered:
    return render(service_map(), CONFIG, node_name=NODE, node_ips=[NODE_IP])


def test_full_text_matches_golden(rendered: Rendered) -> None:
    text = full_text(rendered)
    if os.environ.get("NETPLANE_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_cluster_ip_endpoints_are_buckets_of_the_service_address(rendered: Rendered) -> None:
    assert rendered.elements("service-ips")["10.96.0.50 . tcp . 80"] == "goto cluster-tcp-2"
    assert rendered.elements("service-ips")["10.96.0.50 . udp . 9000"] == "goto cluster-udp-2"
    tcp = rendered.elements("service-endpoints-tcp")
    assert {k: v for k, v in tcp.items() if k.startswith("10.96.0.50 ")} == {
        "10.96.0.50 . 80 . 0": "10.244.1.2 . 8080", "10.96.0.50 . 80 . 1": "10.244.2.3 . 8080"}
    assert rendered.elements("service-endpoints-udp") == {
        "10.96.0.50 . 9000 . 0": "10.244.1.2 . 5353", "10.96.0.50 . 9000 . 1": "10.244.2.3 . 5353"}
    assert "10.244.2.9" not in full_text(rendered)  # not ready


def test_shared_chains_masquerade_only_where_needed(rendered: Rendered) -> None:
    chains = rendered.chains()
    # Off-cluster sources only, for ClusterIPs; always for external traffic.
    assert chains["cluster-tcp-2"][0] == "ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    assert chains["nodeport-tcp-2"][0] == "jump mark-for-masquerade"
    assert chains["cluster-tcp-2"][1].endswith("numgen random mod 2 map @service-endpoints-tcp")
    assert rendered.elements("hairpin") == {"10.244.1.2 . 10.244.1.2": "",
                                            "10.244.2.3 . 10.244.2.3": ""}


def test_no_endpoints_reject_and_internal_local_without_local_endpoints_drops(
        rendered: Rendered) -> None:
    no_eps = rendered.elements("no-endpoint-services")
    assert no_eps["10.96.0.54 . tcp . 80"] == "goto reject-chain"
    assert rendered.elements("no-endpoint-nodeports") == {"tcp . 30083": "goto reject-chain"}
    assert no_eps["10.96.0.55 . tcp . 80"] == "drop"
    assert "10.96.0.54 . tcp . 80" not in rendered.elements("service-ips")


def test_external_local_policy_keeps_both_pools(rendered: Rendered) -> None:
    assert rendered.elements("service-ips")["192.168.56.200 . tcp . 80"] \
        == "goto external-local-tcp-2-1"
    assert rendered.elements("service-nodeports")["tcp . 30081"] == "goto nodeport-local-tcp-2-1"
    assert rendered.elements("service-local-endpoints-tcp") == {
        "192.168.56.200 . 80 . 0": "10.244.1.2 . 8080",
        "192.168.56.201 . 80 . 0": "10.244.1.2 . 8080"}
    assert rendered.elements("nodeport-local-endpoints-tcp") == {
        "30081 . 0": "10.244.1.2 . 8080"}
    rules = rendered.chains()["nodeport-local-tcp-2-1"]
    assert rules[0].startswith("ip saddr 10.244.0.0/16 dnat")  # pods: any endpoint, no SNAT
    assert rules[-1].endswith("mod 1 map @nodeport-local-endpoints-tcp")  # no masquerade
    assert shape_chain("nodeport-local-tcp-2-0", CONFIG).endswith("\ndrop")


def test_source_ranges_fill_the_firewall_sets(rendered: Rendered) -> None:
    assert rendered.elements("firewall-ips") == {"192.168.56.200 . tcp . 80": ""}
    assert rendered.elements("firewall-allow") == {
        "192.168.56.200 . tcp . 80 . 192.168.56.0/28": ""}


def test_affinity_gets_its_own_chains_and_timeout_sets(rendered: Rendered) -> None:
    verdict = rendered.elements("service-ips")["10.96.0.53 . tcp . 80"]
    chains = rendered.chains()
    service = chains[verdict.removeprefix("goto ")]
    pool = chains[service[-1].removeprefix("goto ")]
    assert pool[0].startswith("ip saddr @affinity-") and "numgen random mod 2 vmap" in pool[-1]
    assert all("timeout 60s" in spec for spec in rendered.set_specs().values())
    assert len(rendered.set_specs()) == 2


def test_headless_and_external_name_render_nothing(rendered: Rendered) -> None:
    keys = {spn.name for spn in rendered.fragments if rendered.fragments[spn]}
    assert keys == {"web", "np", "lb", "sticky", "lonely", "inside"}


def test_update_touches_only_the_changed_service(rendered: Rendered) -> None:
    eps = endpoints()
    eps[0] = _eps("web", B)
    delta = update(rendered, model.build(services(), eps))
    assert "10.96.0.51" not in delta and "flush map" not in delta
    assert "add chain ip netplane cluster-tcp-1" in delta
    assert "flush chain ip netplane cluster-tcp-2" not in delta  # still used by others
    assert "\t10.96.0.50 . 80 . 0 : 10.244.2.3 . 8080" in delta
    assert rendered.elements("service-ips")["10.96.0.50 . tcp . 80"] == "goto cluster-tcp-1"
    assert update(rendered, rendered.services) == ""


def test_update_equals_a_fresh_render(rendered: Rendered) -> None:
    svcs = services()[:2]
    update(rendered, model.build(svcs, endpoints()))
    fresh = render(model.build(svcs, endpoints()), CONFIG, node_name=NODE, node_ips=[NODE_IP])
    assert rendered.chains() == fresh.chains()
    assert rendered.set_specs() == fresh.set_specs()
    assert all(rendered.elements(m) == fresh.elements(m) for m in ALL_MAPS)


def test_last_owner_leaving_deletes_shared_objects(rendered: Rendered) -> None:
    delta = update(rendered, {})
    assert "delete chain ip netplane cluster-tcp-2" in delta
    assert "delete set ip netplane affinity-" in delta
    # Chains are emptied before elements and chains that point at them go.
    assert delta.index("flush chain ip netplane cluster-tcp-2") \
        < delta.index("delete element ip netplane service-ips") \
        < delta.index("delete chain ip netplane cluster-tcp-2")


def test_conflicting_claims_keep_the_first_owner() -> None:
    svcs = [_svc("a", "10.96.0.60", [_port()], externalIPs=["192.168.56.201"]),
            _svc("b", "10.96.0.61", [_port()], externalIPs=["192.168.56.201"])]
    eps = [_eps("a", A, B), _eps("b", A)]
    r = render(model.build(svcs, eps), CONFIG, node_name=NODE)
    assert r.elements("service-ips")["192.168.56.201 . tcp . 80"] == "goto external-tcp-2"
    delta = update(r, model.build(svcs[1:], eps))
    assert "\t192.168.56.201 . tcp . 80 : goto external-tcp-1" in delta


def test_stale_text_deletes_only_what_is_not_wanted(rendered: Rendered) -> None:
    text = stale_text(rendered, chains={"cluster-tcp-2", "cluster-tcp-9"},
                      sets={"service-ips", "affinity-OLD"})
    assert text == ("flush chain ip netplane cluster-tcp-9\n"
                    "delete set ip netplane affinity-OLD\n"
                    "delete chain ip netplane cluster-tcp-9\n")


def test_udp_conntrack_flows_for_removed_and_first_endpoints() -> None:
    before = service_map()
    eps = endpoints()
    eps[0] = _eps("web", B)
    after = model.build(services(), eps)
    assert stale_udp_flows(before, after, node_name=NODE) == [
        ("-p", "udp", "--orig-dst", "10.96.0.50", "--dst-nat", "10.244.1.2")]
    empty = model.build(services(), eps[1:])
    assert stale_udp_flows(empty, after, node_name=NODE) == [
        ("-p", "udp", "--orig-dst", "10.96.0.50", "--orig-port-dst", "9000")]
    assert stale_udp_flows(before, before, node_name=NODE) == []


def test_health_check_counts_local_endpoints() -> None:
    assert health_check_counts(service_map(), node_name=NODE) == {32000: 1}
    assert health_check_counts(service_map(), node_name="node-3") == {32000: 0}


class FakeLoader:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.fail_next = False

    def load(self, text: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise NftError("no such element")
        self.loaded.append(text)

    def close(self) -> None:
        pass


class FakeReader:
    def __init__(self) -> None:
        self.table = TableSummary(False, frozenset(), frozenset(), {})

    def summary(self) -> TableSummary:
        return self.table

    def close(self) -> None:
        pass


def _backend() -> tuple[NftablesBackend, FakeLoader, FakeReader]:
    loader, reader = FakeLoader(), FakeReader()
    backend = NftablesBackend(loader=loader, reader=reader, runner=lambda argv: (0, ""))
    return backend, loader, reader


def _summary(r: Rendered) -> TableSummary:
    chains, sets = wanted_objects(r)
    return TableSummary(True, frozenset(chains), frozenset(sets),
                        {c: len(rules) for c, rules in r.chains().items()})


def test_backend_goes_partial_after_a_full_sync_and_full_after_a_failure() -> None:
    backend, loader, _ = _backend()
    sm = service_map()
    assert backend.sync(sm, CONFIG, node_name=NODE).kind == SyncKind.FULL
    eps = endpoints()
    eps[0] = _eps("web", B)
    changed = model.build(services(), eps)
    assert backend.sync(changed, CONFIG, node_name=NODE).kind == SyncKind.PARTIAL
    assert backend.sync(changed, CONFIG, node_name=NODE).kind == SyncKind.NONE
    loader.fail_next = True
    assert backend.sync(sm, CONFIG, node_name=NODE).kind == SyncKind.FULL
    assert loader.loaded[-1].startswith("add table ip netplane\n")


def test_kernel_matches_counts_rules_chains_and_sets() -> None:
    backend, _, reader = _backend()
    backend.sync(service_map(), CONFIG, node_name=NODE)
    want = render(service_map(), CONFIG, node_name=NODE)
    reader.table = _summary(want)
    assert backend.kernel_matches()
    flushed = {c: 0 for c in reader.table.rules}
    reader.table = TableSummary(True, reader.table.chains, reader.table.sets, flushed)
    assert not backend.kernel_matches()
    reader.table = TableSummary(False, frozenset(), frozenset(), {})
    assert not backend.kernel_matches()
