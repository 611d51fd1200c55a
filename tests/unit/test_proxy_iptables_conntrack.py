"""Which UDP conntrack entries go stale after a change, and metrics histograms.

Address plan: default/dns ClusterIP 10.96.0.53:53/UDP, NodePort 30053,
external IP 192.168.56.241; endpoints 10.244.1.2 and 10.244.1.3 (:5353).
"""

from __future__ import annotations

from dataclasses import replace

from netplane.proxy.command import CommandResult
from netplane.proxy.conntrack import Conntrack, Entry, PortView, stale_entries
from netplane.proxy.metrics import Histogram
from netplane.proxy.model import Protocol, ServicePortInfo, ServicePortName

UDP = ServicePortInfo("default", "dns", "dns", "10.96.0.53", 53, Protocol.UDP,
                      node_port=30053, external_ips=("192.168.56.241",))
SPN = UDP.key


def view(info: ServicePortInfo, *ips: str) -> dict[ServicePortName, PortView]:
    return {info.key: PortView(info, frozenset(f"{ip}:5353" for ip in ips))}


def test_first_endpoints_clear_every_address_and_the_node_port() -> None:
    got = stale_entries(view(UDP), view(UDP, "10.244.1.2"), [SPN])
    assert got == sorted([Entry(orig_port_dst=30053), Entry("10.96.0.53", 53),
                          Entry("192.168.56.241", 53)])


def test_removed_endpoint_clears_flows_dnated_to_it() -> None:
    old = view(UDP, "10.244.1.2", "10.244.1.3")
    got = stale_entries(old, view(UDP, "10.244.1.3"), [SPN])
    assert got == sorted([Entry("10.96.0.53", dst_nat="10.244.1.2"),
                          Entry("192.168.56.241", dst_nat="10.244.1.2"),
                          Entry(orig_port_dst=30053, dst_nat="10.244.1.2")])


def test_deleted_service_clears_its_endpoints_and_tcp_never() -> None:
    old = view(UDP, "10.244.1.2")
    assert stale_entries(old, {}, [SPN]) == sorted([
        Entry("10.96.0.53", dst_nat="10.244.1.2"),
        Entry("192.168.56.241", dst_nat="10.244.1.2"),
        Entry(orig_port_dst=30053, dst_nat="10.244.1.2")])
    tcp = replace(UDP, protocol=Protocol.TCP)
    assert stale_entries(view(tcp, "10.244.1.2"), view(tcp), [tcp.key]) == []


def test_unchanged_or_added_endpoints_clear_nothing() -> None:
    old = view(UDP, "10.244.1.2")
    assert stale_entries(old, old, [SPN]) == []
    assert stale_entries(old, view(UDP, "10.244.1.2", "10.244.1.3"), [SPN]) == []


def test_conntrack_runs_in_the_namespace_and_tolerates_no_match() -> None:
    calls: list[list[str]] = []

    def runner(argv: list[str], stdin: str | None) -> CommandResult:
        calls.append(argv)
        return CommandResult(1, "", "0 flow entries have been deleted.")

    assert Conntrack(netns="npt-node", runner=runner).delete([Entry("10.96.0.53", 53)]) == 0
    assert calls == [["ip", "netns", "exec", "npt-node", "conntrack", "-D", "-p", "udp",
                      "--orig-dst", "10.96.0.53", "--orig-port-dst", "53"]]


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.5, 0.7, 3.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 1), ("1", 3), ("+Inf", 4)]
    assert h.count == 4 and h.total == 4.25
