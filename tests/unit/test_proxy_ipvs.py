"""IPVS mode against an in-memory IPVS and a fake command runner.

Address plan:
    pod network (cluster CIDR)   10.244.0.0/16
    node-1 (this node)           underlay 192.168.56.11, pods 10.244.1.0/24
    node-2                       pods 10.244.2.0/24
    default/web  ClusterIP 10.96.0.50  http 80/TCP -> 8080, dns 53/UDP -> 5353
                 endpoints 10.244.1.2 (node-1), 10.244.2.3 (node-2)
    default/np   NodePort 10.96.0.60:80 -> 30080, same endpoints
    default/lb   LoadBalancer 10.96.0.70:443, ingress 203.0.113.7, externalIP 198.51.100.9,
                 sourceRange 192.168.56.0/24, node port 30443
    node-local DNS               10.96.0.10 (port 53 is not an IPVS service)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netplane.api.meta import Obj
from netplane.proxy import model
from netplane.proxy.command import CommandResult
from netplane.proxy.config import ProxyConfig
from netplane.proxy.ipvs.backend import IPVSBackend, available
from netplane.proxy.ipvs.diff import OpKind
from netplane.proxy.ipvs.kernel import MemoryIPVS
from netplane.proxy.ipvs.plan import IPSetName, RealServer, VirtualServer, VirtualServerKey, plan
from netplane.proxy.model import EndpointInfo, Protocol, ServicePortInfo, ServiceType

CONFIG = ProxyConfig(notrack_dns_ips=("10.96.0.10",))
NODE_IPS = ("192.168.56.11",)
TCP, UDP = Protocol.TCP, Protocol.UDP
A = EndpointInfo("10.244.1.2", 8080, node_name="node-1")
B = EndpointInfo("10.244.2.3", 8080, node_name="node-2")


def port(name: str, ip: str, p: int, proto: Protocol = TCP, **kw: Any) -> ServicePortInfo:
    return ServicePortInfo(namespace="default", service_name=name, port_name="", cluster_ip=ip,
                           port=p, protocol=proto, **kw)


def smap(*items: tuple[ServicePortInfo, list[EndpointInfo]]) -> model.ServiceMap:
    return {info.key: (info, eps) for info, eps in items}


def vs(ip: str, p: int, proto: Protocol = TCP) -> VirtualServerKey:
    return VirtualServerKey(ip, p, proto)


def rs(*eps: EndpointInfo, weight: int = 1) -> frozenset[RealServer]:
    return frozenset(RealServer(e.ip, e.port, weight) for e in eps)


def real(ipvs: MemoryIPVS, key: VirtualServerKey) -> set[tuple[str, int, int]]:
    return {(r.address, r.port, r.weight) for r in ipvs.list_dests(key)}


class FakeRunner:
    """Records commands; answers like a node with nf_tables iptables and no dummy driver."""

    def __init__(self, *, dummy: bool = False) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.dummy = dummy

    def __call__(self, argv: list[str], stdin: str | None) -> CommandResult:
        self.calls.append((argv, stdin))
        if argv[:2] == ["iptables", "--version"]:
            return CommandResult(0, "iptables v1.8.9 (nf_tables)\n", "")
        if "dummy" in argv and not self.dummy:
            return CommandResult(2, "", "Error: Unknown device type.\n")
        if argv[-3:] == ["show", "dev", "np-ipvs0"] and not self.dummy:
            return CommandResult(1, "", 'Device "np-ipvs0" does not exist.\n')
        return CommandResult(0, "", "")

    def commands(self, word: str) -> list[list[str]]:
        return [argv for argv, _ in self.calls if word in argv]

    def stdin_of(self, word: str) -> list[str]:
        return [stdin or "" for argv, stdin in self.calls if word in argv]


def backend(**kw: Any) -> tuple[IPVSBackend, MemoryIPVS, FakeRunner]:
    ipvs, runner = MemoryIPVS(), FakeRunner()
    return IPVSBackend(handle=ipvs, runner=runner, **kw), ipvs, runner


def sync(b: IPVSBackend, m: model.ServiceMap, *, full: bool = False) -> list[str]:
    return [str(op) for op in b.sync(m, CONFIG, "node-1", NODE_IPS, full=full).ops]


# -- what gets programmed, per feature -------------------------------------------------


def test_cluster_ip_multi_port_tcp_and_udp() -> None:
    b, ipvs, _ = backend()
    sync(b, smap((port("web", "10.96.0.50", 80), [A, B]),
                 (port("web-dns", "10.96.0.50", 53, UDP), [EndpointInfo("10.244.1.2", 5353)])))
    assert sorted(ipvs.services) == [vs("10.96.0.50", 53, UDP), vs("10.96.0.50", 80)]
    assert real(ipvs, vs("10.96.0.50", 80)) == {("10.244.1.2", 8080, 1), ("10.244.2.3", 8080, 1)}
    assert real(ipvs, vs("10.96.0.50", 53, UDP)) == {("10.244.1.2", 5353, 1)}
    assert all(s.scheduler == "rr" and s.persistence == 0 for s in ipvs.services.values())


def test_node_port_on_every_node_ip_and_localhost() -> None:
    b, ipvs, _ = backend()
    sync(b, smap((port("np", "10.96.0.60", 80, service_type=ServiceType.NODE_PORT,
                       node_port=30080), [A, B])))
    assert sorted(ipvs.services) == [vs("10.96.0.60", 80), vs("127.0.0.1", 30080),
                                     vs("192.168.56.11", 30080)]
    assert real(ipvs, vs("192.168.56.11", 30080)) == real(ipvs, vs("10.96.0.60", 80))


def lb_port(**kw: Any) -> ServicePortInfo:
    return port("lb", "10.96.0.70", 443, service_type=ServiceType.LOAD_BALANCER,
                node_port=30443, load_balancer_ips=("203.0.113.7",),
                external_ips=("198.51.100.9",),
                load_balancer_source_ranges=("192.168.56.0/24",), **kw)


def test_load_balancer_and_external_ips_are_bound_and_balanced() -> None:
    desired = plan(smap((lb_port(), [A, B])), CONFIG, node_name="node-1", node_ips=NODE_IPS)
    assert set(desired.services) == {vs("10.96.0.70", 443), vs("203.0.113.7", 443),
                                     vs("198.51.100.9", 443), vs("192.168.56.11", 30443),
                                     vs("127.0.0.1", 30443)}
    assert all(d.real_servers == rs(A, B) for d in desired.services.values())
    assert desired.bound_addresses == {"10.96.0.70", "203.0.113.7", "198.51.100.9"}
    sets = desired.ipsets
    assert sets[IPSetName.LOAD_BALANCER] == {"203.0.113.7,tcp:443"}
    assert sets[IPSetName.EXTERNAL_IP] == {"198.51.100.9,tcp:443"}
    assert sets[IPSetName.LOAD_BALANCER_FW] == {"203.0.113.7,tcp:443"}
    assert sets[IPSetName.LOAD_BALANCER_SOURCE_CIDR] == {"203.0.113.7,tcp:443,192.168.56.0/24"}
    assert sets[IPSetName.NODE_PORT_TCP] == {"30443"}


def test_session_affinity_is_persistence() -> None:
    b, ipvs, _ = backend(scheduler="wrr")
    sync(b, smap((port("web", "10.96.0.50", 80, affinity_seconds=600), [A, B])))
    server = ipvs.services[vs("10.96.0.50", 80)]
    assert (server.scheduler, server.persistence) == ("wrr", 600)


def test_external_local_policy_keeps_only_local_real_servers_and_is_not_masqueraded() -> None:
    info = lb_port(external_policy_local=True, health_check_node_port=32000)
    desired = plan(smap((info, [A, B])), CONFIG, node_name="node-1", node_ips=NODE_IPS)
    assert desired.services[vs("10.96.0.70", 443)].real_servers == rs(A, B)
    for key in (vs("203.0.113.7", 443), vs("198.51.100.9", 443), vs("192.168.56.11", 30443)):
        assert desired.services[key].real_servers == rs(A)
    sets = desired.ipsets
    assert sets[IPSetName.LOAD_BALANCER_LOCAL] == {"203.0.113.7,tcp:443"}
    assert sets[IPSetName.EXTERNAL_IP_LOCAL] == {"198.51.100.9,tcp:443"}
    assert sets[IPSetName.EXTERNAL_IP] == set()
    assert sets[IPSetName.NODE_PORT_LOCAL_TCP] == {"30443"} and not sets[IPSetName.NODE_PORT_TCP]
    assert sets[IPSetName.HEALTH_CHECK_NODE_PORT] == {"32000"}


def test_internal_local_policy_without_local_endpoint_drops() -> None:
    info = port("web", "10.96.0.50", 80, internal_policy_local=True)
    desired = plan(smap((info, [B])), CONFIG, node_name="node-1", node_ips=NODE_IPS)
    assert desired.services[vs("10.96.0.50", 80)].real_servers == frozenset()
    assert desired.ipsets[IPSetName.NO_LOCAL_ENDPOINTS] == {"10.96.0.50,tcp:80"}
    assert desired.ipsets[IPSetName.NO_ENDPOINTS] == set()


def test_terminating_endpoints_carry_traffic_when_none_is_ready() -> None:
    old = EndpointInfo("10.244.1.2", 8080, ready=False, serving=True, terminating=True,
                       node_name="node-1")
    gone = EndpointInfo("10.244.1.9", 8080, ready=False, serving=False, terminating=True)
    desired = plan(smap((port("web", "10.96.0.50", 80), [old, gone])), CONFIG,
                   node_name="node-1", node_ips=NODE_IPS)
    assert desired.services[vs("10.96.0.50", 80)].real_servers == rs(old, weight=1)
    # With a ready endpoint, the terminating one takes no new connections at all.
    desired = plan(smap((port("web", "10.96.0.50", 80), [old, B])), CONFIG,
                   node_name="node-1", node_ips=NODE_IPS)
    assert desired.services[vs("10.96.0.50", 80)].real_servers == rs(B)


def test_no_endpoints_gives_a_server_without_real_servers_and_a_reject_entry() -> None:
    b, ipvs, _ = backend()
    sync(b, smap((port("np", "10.96.0.60", 80, service_type=ServiceType.NODE_PORT,
                       node_port=30080), [])))
    assert all(not ipvs.list_dests(k) for k in ipvs.services)
    desired = plan(smap((port("np", "10.96.0.60", 80, service_type=ServiceType.NODE_PORT,
                              node_port=30080), [])), CONFIG, node_name="node-1",
                   node_ips=NODE_IPS)
    assert desired.ipsets[IPSetName.NO_ENDPOINTS] == {
        "10.96.0.60,tcp:80", "192.168.56.11,tcp:30080", "127.0.0.1,tcp:30080"}


def test_headless_and_external_name_services_program_nothing() -> None:
    services: list[Obj] = [
        {"metadata": {"namespace": "default", "name": "h"},
         "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
        {"metadata": {"namespace": "default", "name": "e"},
         "spec": {"type": "ExternalName", "externalName": "example.org"}}]
    b, ipvs, _ = backend()
    sync(b, model.build(services, []))
    assert ipvs.services == {} and ipvs.requests == []


def test_node_local_dns_port_is_left_to_the_local_server() -> None:
    desired = plan(smap((port("dns", "10.96.0.10", 53, UDP), [A]),
                        (port("dns-metrics", "10.96.0.10", 9153), [A])), CONFIG,
                   node_name="node-1", node_ips=NODE_IPS)
    assert set(desired.services) == {vs("10.96.0.10", 9153)}
    assert "10.96.0.10" not in desired.ipsets[IPSetName.IPVS_IPS]


# -- minimal changes ------------------------------------------------------------------------


def test_second_sync_issues_only_the_changed_operations() -> None:
    b, ipvs, _ = backend()
    web, other = port("web", "10.96.0.50", 80), port("other", "10.96.0.51", 80)
    sync(b, smap((web, [A]), (other, [A])))
    ipvs.requests.clear()
    assert sync(b, smap((web, [A, B]), (other, [A]))) == [
        "add-dest TCP 10.96.0.50:80 -> 10.244.2.3:8080 w1"]
    assert sync(b, smap((web, [B]), (other, [A]))) == [
        "del-dest TCP 10.96.0.50:80 -> 10.244.1.2:8080 w1"]
    sticky = port("web", "10.96.0.50", 80, affinity_seconds=30)
    assert sync(b, smap((sticky, [B]), (other, [A]))) == ["update-service TCP 10.96.0.50:80"]
    assert sync(b, smap((sticky, [B]))) == ["del-service TCP 10.96.0.51:80"]
    assert sync(b, smap((sticky, [B]))) == []
    assert len(ipvs.requests) == 4
    ipvs.del_service(vs("10.96.0.50", 80))  # drift, then a change to that service
    assert sync(b, smap((sticky, [A]))) == ["add-service TCP 10.96.0.50:80",
                                            "add-dest TCP 10.96.0.50:80 -> 10.244.1.2:8080 w1"]


def test_partial_sync_writes_only_changed_ipsets() -> None:
    b, _, runner = backend()
    sync(b, smap((port("web", "10.96.0.50", 80), [A])))
    runner.calls.clear()
    report = b.sync(smap((port("web", "10.96.0.50", 80), [A]),
                         (port("x", "10.96.0.52", 81), [A])), CONFIG, "node-1", NODE_IPS)
    assert report.ipsets_written == [IPSetName.CLUSTER_IP, IPSetName.IPVS_IPS]
    assert not runner.commands("iptables-nft-restore") + runner.commands("iptables-restore")
    assert runner.stdin_of("-batch") == ["addr add 10.96.0.52/32 dev lo label lo:np-ipvs\n"]


def test_removed_real_server_with_connections_drains_at_weight_zero() -> None:
    b, ipvs, _ = backend()
    web = port("web", "10.96.0.50", 80)
    sync(b, smap((web, [A, B])))
    ipvs.set_connections(vs("10.96.0.50", 80), ("10.244.1.2", 8080), active=3)
    assert sync(b, smap((web, [B]))) == ["update-dest TCP 10.96.0.50:80 -> 10.244.1.2:8080 w0"]
    assert sync(b, smap((web, [B]))) == []  # still busy: kept at weight 0
    ipvs.set_connections(vs("10.96.0.50", 80), ("10.244.1.2", 8080), active=0)
    assert sync(b, smap((web, [B]))) == ["del-dest TCP 10.96.0.50:80 -> 10.244.1.2:8080 w0"]
    assert real(ipvs, vs("10.96.0.50", 80)) == {("10.244.2.3", 8080, 1)}


def test_udp_endpoint_changes_clear_conntrack() -> None:
    b, _, runner = backend()
    dns = port("dns", "10.96.0.53", 53, UDP)
    c = EndpointInfo("10.244.1.5", 5353)
    sync(b, smap((dns, [])))
    report = b.sync(smap((dns, [c])), CONFIG, "node-1", NODE_IPS)
    assert report.conntrack_cleared == [["conntrack", "-D", "-p", "udp", "--orig-dst",
                                         "10.96.0.53", "--orig-port-dst", "53"]]
    report = b.sync(smap((dns, [EndpointInfo("10.244.1.6", 5353)])), CONFIG, "node-1",
                    NODE_IPS)
    assert report.conntrack_cleared == [["conntrack", "-D", "-p", "udp", "--orig-dst",
                                         "10.96.0.53", "--dst-nat", "10.244.1.5"]]
    assert runner.commands("conntrack")[-1][-1] == "10.244.1.5"


def test_iptables_rule_count_is_the_same_for_1_and_1000_services() -> None:
    def rules_written(n: int) -> tuple[int, int]:
        b, _, runner = backend()
        sync(b, smap(*((port(f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}", 80,
                             service_type=ServiceType.NODE_PORT, node_port=30000 + i), [A])
                       for i in range(n))))
        texts = runner.stdin_of("iptables-nft-restore") + runner.stdin_of("iptables-restore")
        return b.rule_count, sum(t.count("\n-A ") for t in texts)

    # 26 service rules and 4 that keep node-local DNS out of conntrack.
    assert rules_written(1) == rules_written(1000) == (30, 30)


# -- plumbing, drift, inspection --------------------------------------------------------------


def test_without_dummy_driver_addresses_go_on_lo_with_our_label() -> None:
    b, _, runner = backend()
    sync(b, smap((port("web", "10.96.0.50", 80), [A])))
    assert b.interface == "lo" and "dummy" in b.interface_note
    assert runner.stdin_of("-batch") == ["addr add 10.96.0.50/32 dev lo label lo:np-ipvs\n"]
    assert ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"] in runner.commands("sysctl")


def test_dummy_interface_is_used_when_the_kernel_has_it() -> None:
    ipvs, runner = MemoryIPVS(), FakeRunner(dummy=True)
    b = IPVSBackend(handle=ipvs, runner=runner)
    sync(b, smap((port("web", "10.96.0.50", 80), [A])))
    assert b.interface == "np-ipvs0"
    assert runner.stdin_of("-batch") == ["addr add 10.96.0.50/32 dev np-ipvs0\n"]


def test_deleted_virtual_server_is_drift_and_a_full_sync_restores_it() -> None:
    b, ipvs, _ = backend()
    m = smap((port("web", "10.96.0.50", 80), [A, B]))
    sync(b, m)
    ipvs.del_service(vs("10.96.0.50", 80))
    assert not b.kernel_matches()
    sync(b, m, full=True)
    assert real(ipvs, vs("10.96.0.50", 80)) == {("10.244.1.2", 8080, 1), ("10.244.2.3", 8080, 1)}


def test_full_sync_removes_only_our_stale_virtual_servers() -> None:
    b, ipvs, _ = backend()
    foreign = VirtualServer(vs("10.0.0.1", 22))
    ipvs.add_service(foreign)
    ipvs.add_service(VirtualServer(vs("192.168.56.11", 30999)))  # a node port of ours
    sync(b, smap((port("web", "10.96.0.50", 80), [A])))
    assert sorted(ipvs.services) == [vs("10.0.0.1", 22), vs("10.96.0.50", 80)]


def test_describe_lists_servers_real_servers_and_weights() -> None:
    b, _, _ = backend()
    sync(b, smap((port("web", "10.96.0.50", 80, affinity_seconds=60), [A])))
    assert b.describe() == ("TCP 10.96.0.50:80 rr persistent 60  # default/web\n"
                            "  -> 10.244.1.2:8080 weight 1 active 0 inactive 0\n")


def test_available_explains_a_kernel_without_ipvs(tmp_path: Path) -> None:
    missing = tmp_path / "ip_vs"
    tried: list[list[str]] = []

    def runner(argv: list[str], stdin: str | None) -> CommandResult:
        tried.append(argv)
        return CommandResult(1, "", "modprobe: FATAL: Module ip_vs not found\n")

    # pyroute2 and ipset present whatever this machine has: the kernel check is reached.
    ok, why = available(runner=runner, proc=missing, has_module=lambda _: True,
                        which=lambda cmd: f"/usr/sbin/{cmd}")
    assert not ok and tried == [["modprobe", "ip_vs"]]
    assert why.startswith("kernel has no IPVS") and "Module ip_vs not found" in why


def test_available_names_each_missing_piece(tmp_path: Path) -> None:
    present = tmp_path / "ip_vs"
    present.write_text("")
    ok, why = available(proc=present, has_module=lambda _: False, which=lambda _: "/x")
    assert not ok and why.startswith("pyroute2 is not installed")
    ok, why = available(proc=present, has_module=lambda _: True, which=lambda _: None)
    assert not ok and why == "the ipset command is not installed"
    assert available(proc=present, has_module=lambda _: True, which=lambda _: "/x") == (
        True, "IPVS is available")


def test_pyroute2_messages_become_virtual_and_real_servers() -> None:
    pytest.importorskip("pyroute2")
    import socket

    from pyroute2.ipvs import IPVSDest, IPVSService  # type: ignore[import-untyped]
    from pyroute2.netlink.generic import ipvs as genl  # type: ignore[import-untyped]

    from netplane.proxy.ipvs.kernel import _attrs, real_server_from_attrs, server_from_attrs
    msg = genl.ipvsmsg()
    msg["cmd"], msg["version"] = genl.IPVS_CMD_NEW_SERVICE, 1
    msg["attrs"] = [
        ("IPVS_CMD_ATTR_SERVICE", IPVSService(
            addr="10.96.0.50", port=80, protocol=socket.IPPROTO_TCP, sched_name="rr",
            flags={"flags": 1, "mask": 0xFFFFFFFF}, timeout=600).dump_nla()),
        ("IPVS_CMD_ATTR_DEST", IPVSDest(addr="10.244.1.2", port=8080, weight=1,
                                        fwd_method=0).dump_nla())]
    msg.encode()
    back = genl.ipvsmsg(msg.data)
    back.decode()
    server = server_from_attrs(_attrs(back, "IPVS_CMD_ATTR_SERVICE"))
    assert server is not None and server.key == vs("10.96.0.50", 80)
    assert (server.scheduler, server.persistence) == ("rr", 600)
    assert real_server_from_attrs(_attrs(back, "IPVS_CMD_ATTR_DEST")) == RealServer(
        "10.244.1.2", 8080, 1)


def test_one_change_among_ten_thousand_services_is_one_operation() -> None:
    # How long this takes is measured in bench/proxy_ipvs.py, not asserted here.
    m = smap(*((port(f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}", 80),
                [EndpointInfo(f"10.244.{i // 250}.{i % 250 + 1}", 8080)])
               for i in range(10_000)))
    desired = plan(m, CONFIG, node_name="node-1", node_ips=NODE_IPS)
    assert len(desired.services) == 10_000
    b, ipvs, _ = backend()
    sync(b, m)
    ipvs.requests.clear()
    one = dict(m)
    first = next(iter(one))
    one[first] = (one[first][0], [])
    sync(b, one)
    assert [op.kind for op in ipvs.requests] == [OpKind.DEL_DEST]
