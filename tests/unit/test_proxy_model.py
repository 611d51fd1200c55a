"""Services and Endpoints objects become typed service ports with endpoints."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.proxy import model
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.render import render
from netplane.proxy.iptables.trace import parse
from netplane.proxy.model import EndpointInfo, Protocol, ServicePortName, build


def svc(name: str, cluster_ip: str, ports: list[Obj], **spec: object) -> Obj:
    return {"kind": "Service", "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}}


def eps(name: str, subsets: list[Obj]) -> Obj:
    return {"kind": "Endpoints", "metadata": {"namespace": "default", "name": name},
            "subsets": subsets}


def test_ports_match_endpoint_ports_by_name_and_protocol() -> None:
    service = svc("web", "10.96.0.50", [{"name": "http", "port": 80},
                                        {"name": "dns", "port": 53, "protocol": "UDP"}])
    endpoints = eps("web", [{
        "addresses": [{"ip": "10.244.1.3", "nodeName": "node-1"}, {"ip": "10.244.1.2"}],
        "notReadyAddresses": [{"ip": "10.244.2.9"}],
        "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"},
                  {"name": "http", "port": 8080}],
    }])
    got = build([service], [endpoints])
    http = ServicePortName("default", "web", "http", Protocol.TCP)
    dns = ServicePortName("default", "web", "dns", Protocol.UDP)
    assert list(got) == [dns, http]  # sorted
    info, http_eps = got[http]
    assert (info.cluster_ip, info.port, info.protocol) == ("10.96.0.50", 80, Protocol.TCP)
    assert http_eps == [EndpointInfo("10.244.1.2", 8080, True, ""),
                        EndpointInfo("10.244.1.3", 8080, True, "node-1"),
                        EndpointInfo("10.244.2.9", 8080, False, "")]
    assert [e.port for e in got[dns][1]] == [5353, 5353, 5353]


def test_port_name_mismatch_or_protocol_mismatch_gives_no_endpoints() -> None:
    service = svc("web", "10.96.0.50", [{"name": "http", "port": 80}])
    endpoints = eps("web", [{"addresses": [{"ip": "10.244.1.2"}],
                             "ports": [{"name": "other", "port": 8080},
                                       {"name": "http", "port": 8080, "protocol": "UDP"}]}])
    [(_, found)] = build([service], [endpoints]).values()
    assert found == []


def test_unnamed_single_port_matches_unnamed_endpoint_port() -> None:
    got = build([svc("a", "10.96.0.9", [{"port": 80}])],
                [eps("a", [{"addresses": [{"ip": "10.244.1.2"}], "ports": [{"port": 80}]}])])
    [(spn, (_, found))] = got.items()
    assert str(spn) == "default/a"
    assert [e.address for e in found] == ["10.244.1.2:80"]


def test_ready_duplicate_wins_over_not_ready_across_subsets() -> None:
    port = [{"port": 80}]
    got = build([svc("a", "10.96.0.9", port)], [eps("a", [
        {"notReadyAddresses": [{"ip": "10.244.1.2"}], "ports": port},
        {"addresses": [{"ip": "10.244.1.2"}], "ports": port},
    ])])
    [(_, found)] = got.values()
    assert found == [EndpointInfo("10.244.1.2", 80, True, "")]


def test_headless_and_external_name_services_are_skipped() -> None:
    headless = svc("h", "None", [{"port": 80}])
    empty = svc("e", "", [{"port": 80}])
    external = svc("x", "10.96.0.7", [{"port": 80}], type="ExternalName",
                   externalName="example.org")
    node_port = svc("np", "10.96.0.8", [{"port": 80, "nodePort": 30080}], type="NodePort")
    got = build([headless, empty, external, node_port], [])
    assert [str(k) for k in got] == ["default/np"]


def test_addresses_of_the_other_family_are_left_out_as_kube_proxy_does() -> None:
    svc = {"metadata": {"namespace": "default", "name": "dual"},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9",
                    "externalIPs": ["192.0.2.10", "2001:db8::10"],
                    "loadBalancerSourceRanges": [" 198.51.100.0/24", "2001:db8:1::/48"],
                    "ports": [{"port": 80, "nodePort": 30080}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"},
                                                   {"ip": "2001:db8::20"}]}}}
    (info,) = model.service_ports(svc)
    assert info.external_ips == ("192.0.2.10",)
    assert info.load_balancer_ips == ("192.0.2.20",)
    assert info.load_balancer_source_ranges == ("198.51.100.0/24",)
    # The rules of such a Service restore: no IPv6 address in an IPv4 document.
    text = render([svc], [], ProxyConfig())
    assert "2001:db8" not in text
    parse(text)


def test_a_zero_source_range_allows_every_source() -> None:
    svc = {"metadata": {"namespace": "default", "name": "open"},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9",
                    "loadBalancerSourceRanges": ["198.51.100.0/24", "0.0.0.0/0"],
                    "ports": [{"port": 80, "nodePort": 30080}]}}
    (info,) = model.service_ports(svc)
    assert info.load_balancer_source_ranges == ()
