"""Answers from an index built from API objects, as tables of cases with
records in zone-file text; then the same names through the pre-built table,
which must give byte-identical replies.

Index used by the table (zone cluster.local, TTL 5, DNS IP 10.96.0.10,
service CIDR 10.96.0.0/12, pod CIDR 10.244.0.0/16):

    web.default      ClusterIP 10.96.0.20; ports http/80/TCP, dns/53/UDP, (unnamed)/8080
    db.data          ClusterIP 10.96.0.30 + fd00::30; port pg/5432/TCP
    peers.default    headless; slice: 10.244.1.5 hostname peer-0 (ready),
                     10.244.1.6 pod peer-1 (ready; the pod has hostname p1, subdomain peers),
                     10.244.1.7 (not ready); port http/8080/TCP.
                     Pod solo (hostname solo, subdomain peers) 10.244.1.50, not an endpoint
    lonely.default   headless; only a not-ready endpoint 10.244.2.9
    eager.default    headless, publishNotReadyAddresses; not-ready endpoint 10.244.2.10
    v6.default       headless; IPv6 slice fd00:10:244::5
    old.legacy       headless; v1 Endpoints only: 10.244.3.3 hostname old-0, port http/80
    mixed.default    headless; Endpoints 10.244.4.4 and a slice 10.244.4.5 (slices win)
    ext.default      ExternalName example.com
    alias.default    ExternalName web.default.svc.cluster.local
    dangling.default ExternalName missing.default.svc.cluster.local
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, DNSRecord

from netplane.api.meta import Obj
from netplane.dns.answer import answer_wire
from netplane.dns.index import RecordIndex
from netplane.dns.server import DNSServer, Transport
from netplane.dns.wire import HEADER_SIZE
from netplane.dns.zone import ZoneConfig

CONFIG = ZoneConfig(ns_address="10.96.0.10")


def service(name: str, namespace: str = "default", **spec: object) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": spec}


def headless(name: str, namespace: str = "default", **spec: object) -> Obj:
    return service(name, namespace, clusterIP="None", **spec)


def endpoint(ip: str, *, ready: bool = True, hostname: str = "", pod: str = "") -> Obj:
    ep: Obj = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        ep["hostname"] = hostname
    if pod:
        ep["targetRef"] = {"kind": "Pod", "name": pod}
    return ep


def endpoint_slice(svc: str, name: str, endpoints: list[Obj], *, namespace: str = "default",
                   ports: list[Obj] | None = None, address_type: str = "IPv4") -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": address_type, "endpoints": endpoints, "ports": ports or []}


def pod(name: str, ip: str, *, hostname: str, subdomain: str, ready: bool = True,
        namespace: str = "default") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"hostname": hostname, "subdomain": subdomain},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": str(ready)}]}}


HTTP = {"name": "http", "port": 8080, "protocol": "TCP"}


def build_index() -> RecordIndex:
    index = RecordIndex()
    for svc in (
        service("web", clusterIP="10.96.0.20", ports=[
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"port": 8080, "protocol": "TCP"}]),
        service("db", "data", clusterIP="10.96.0.30", clusterIPs=["10.96.0.30", "fd00::30"],
                ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        headless("peers"), headless("lonely"), headless("eager", publishNotReadyAddresses=True),
        headless("v6"), headless("old", "legacy"), headless("mixed"),
        service("ext", type="ExternalName", externalName="example.com"),
        service("alias", type="ExternalName", externalName="web.default.svc.cluster.local."),
        service("dangling", type="ExternalName", externalName="missing.default.svc.cluster.local"),
    ):
        index.on_service(None, svc)
    for slc in (
        endpoint_slice("peers", "peers-a", [
            endpoint("10.244.1.5", hostname="peer-0"), endpoint("10.244.1.6", pod="peer-1"),
            endpoint("10.244.1.7", ready=False)], ports=[HTTP]),
        endpoint_slice("lonely", "lonely-a", [endpoint("10.244.2.9", ready=False)]),
        endpoint_slice("eager", "eager-a", [endpoint("10.244.2.10", ready=False)]),
        endpoint_slice("v6", "v6-a", [endpoint("fd00:10:244::5")], address_type="IPv6"),
        endpoint_slice("mixed", "mixed-a", [endpoint("10.244.4.5")]),
    ):
        index.on_endpointslice(None, slc)
    index.on_endpoints(None, endpoints_object("old", "legacy", "10.244.3.3", hostname="old-0"))
    index.on_endpoints(None, endpoints_object("mixed", "default", "10.244.4.4"))
    index.on_pod(None, pod("peer-1", "10.244.1.6", hostname="p1", subdomain="peers"))
    index.on_pod(None, pod("standalone", "10.244.1.50", hostname="solo", subdomain="peers"))
    return index


def endpoints_object(name: str, namespace: str, ip: str, *, hostname: str = "") -> Obj:
    address: Obj = {"ip": ip, **({"hostname": hostname} if hostname else {})}
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace},
            "subsets": [{"addresses": [address],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]}


SOA = ("cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
       "1 7200 1800 86400 5")
REV_SOA = ("10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
           "1 7200 1800 86400 5")
Z = ".svc.cluster.local."


@dataclass
class Case:
    qname: str
    qtype: str
    rcode: str
    answer: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)


def a(name: str, ip: str, rtype: str = "A") -> str:
    return f"{name} 5 IN {rtype} {ip}"


CASES = [
    # The zone itself, its name server and schema version.
    Case("cluster.local.", "SOA", "NOERROR", [SOA]),
    # Names that compress onto the question carry its spelling (DNS ignores case).
    Case("Cluster.Local.", "NS", "NOERROR", ["Cluster.Local. 5 IN NS ns.dns.Cluster.Local."],
         additional=[a("ns.dns.Cluster.Local.", "10.96.0.10")]),
    Case("cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("ns.dns.cluster.local.", "A", "NOERROR", [a("ns.dns.cluster.local.", "10.96.0.10")]),
    Case("dns-version.cluster.local.", "TXT", "NOERROR",
         ['dns-version.cluster.local. 5 IN TXT "1.1.0"']),
    Case("dns-version.cluster.local.", "A", "NOERROR", authority=[SOA]),
    # ClusterIP services: A, AAAA where the cluster IP is IPv6, else NODATA.
    Case("web.default.svc.cluster.local.", "A", "NOERROR", [a(f"web.default{Z}", "10.96.0.20")]),
    Case("WEB.Default.SVC.cluster.LOCAL.", "A", "NOERROR",
         [a("WEB.Default.SVC.cluster.LOCAL.", "10.96.0.20")]),
    Case("web.default.svc.cluster.local.", "AAAA", "NOERROR", authority=[SOA]),
    Case("web.default.svc.cluster.local.", "MX", "NOERROR", authority=[SOA]),
    Case("web.default.svc.cluster.local.", "SRV", "NOERROR", authority=[SOA]),
    Case("db.data.svc.cluster.local.", "AAAA", "NOERROR", [a(f"db.data{Z}", "fd00::30", "AAAA")]),
    Case("db.data.svc.cluster.local.", "ANY", "NOERROR",
         [a(f"db.data{Z}", "10.96.0.30"), a(f"db.data{Z}", "fd00::30", "AAAA")]),
    # SRV for named ports only, the target's addresses as additional records.
    Case("_http._tcp.web.default.svc.cluster.local.", "SRV", "NOERROR",
         [f"_http._tcp.web.default{Z} 5 IN SRV 0 100 80 web.default{Z}"],
         additional=[a(f"web.default{Z}", "10.96.0.20")]),
    Case("_dns._udp.web.default.svc.cluster.local.", "SRV", "NOERROR",
         [f"_dns._udp.web.default{Z} 5 IN SRV 0 100 53 web.default{Z}"],
         additional=[a(f"web.default{Z}", "10.96.0.20")]),
    Case("_pg._tcp.db.data.svc.cluster.local.", "SRV", "NOERROR",
         [f"_pg._tcp.db.data{Z} 5 IN SRV 0 100 5432 db.data{Z}"],
         additional=[a(f"db.data{Z}", "10.96.0.30"), a(f"db.data{Z}", "fd00::30", "AAAA")]),
    Case("_http._tcp.web.default.svc.cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("_dns._tcp.web.default.svc.cluster.local.", "SRV", "NXDOMAIN", authority=[SOA]),
    Case("_8080._tcp.web.default.svc.cluster.local.", "SRV", "NXDOMAIN", authority=[SOA]),
    Case("_tcp.web.default.svc.cluster.local.", "SRV", "NOERROR", authority=[SOA]),
    Case("_sctp.web.default.svc.cluster.local.", "SRV", "NXDOMAIN", authority=[SOA]),
    # Headless: one A per ready endpoint, names per endpoint, SRV per endpoint and port.
    Case("peers.default.svc.cluster.local.", "A", "NOERROR",
         [a(f"peers.default{Z}", "10.244.1.5"), a(f"peers.default{Z}", "10.244.1.6")]),
    Case("peers.default.svc.cluster.local.", "AAAA", "NOERROR", authority=[SOA]),
    Case("peer-0.peers.default.svc.cluster.local.", "A", "NOERROR",
         [a(f"peer-0.peers.default{Z}", "10.244.1.5")]),
    Case("p1.peers.default.svc.cluster.local.", "A", "NOERROR",  # hostname from the pod
         [a(f"p1.peers.default{Z}", "10.244.1.6")]),
    Case("solo.peers.default.svc.cluster.local.", "A", "NOERROR",  # pod hostname + subdomain
         [a(f"solo.peers.default{Z}", "10.244.1.50")]),
    Case("10-244-1-7.peers.default.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("nobody.peers.default.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("_http._tcp.peers.default.svc.cluster.local.", "SRV", "NOERROR",
         [f"_http._tcp.peers.default{Z} 5 IN SRV 0 50 8080 peer-0.peers.default{Z}",
          f"_http._tcp.peers.default{Z} 5 IN SRV 0 50 8080 p1.peers.default{Z}"],
         additional=[a(f"peer-0.peers.default{Z}", "10.244.1.5"),
                     a(f"p1.peers.default{Z}", "10.244.1.6")]),
    Case("lonely.default.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("eager.default.svc.cluster.local.", "A", "NOERROR",
         [a(f"eager.default{Z}", "10.244.2.10")]),
    Case("10-244-2-10.eager.default.svc.cluster.local.", "A", "NOERROR",
         [a(f"10-244-2-10.eager.default{Z}", "10.244.2.10")]),
    Case("v6.default.svc.cluster.local.", "AAAA", "NOERROR",
         [a(f"v6.default{Z}", "fd00:10:244::5", "AAAA")]),
    Case("v6.default.svc.cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("fd00-10-244--5.v6.default.svc.cluster.local.", "AAAA", "NOERROR",
         [a(f"fd00-10-244--5.v6.default{Z}", "fd00:10:244::5", "AAAA")]),
    # v1 Endpoints when a service has no slices; slices win when both exist.
    Case("old.legacy.svc.cluster.local.", "A", "NOERROR", [a(f"old.legacy{Z}", "10.244.3.3")]),
    Case("old-0.old.legacy.svc.cluster.local.", "A", "NOERROR",
         [a(f"old-0.old.legacy{Z}", "10.244.3.3")]),
    Case("_http._tcp.old.legacy.svc.cluster.local.", "SRV", "NOERROR",
         [f"_http._tcp.old.legacy{Z} 5 IN SRV 0 100 80 old-0.old.legacy{Z}"],
         additional=[a(f"old-0.old.legacy{Z}", "10.244.3.3")]),
    Case("mixed.default.svc.cluster.local.", "A", "NOERROR",
         [a(f"mixed.default{Z}", "10.244.4.5")]),
    # ExternalName: a CNAME, followed when the target is in the cluster zone.
    Case("ext.default.svc.cluster.local.", "A", "NOERROR",
         [f"ext.default{Z} 5 IN CNAME example.com."]),
    Case("ext.default.svc.cluster.local.", "CNAME", "NOERROR",
         [f"ext.default{Z} 5 IN CNAME example.com."]),
    Case("alias.default.svc.cluster.local.", "A", "NOERROR",
         [f"alias.default{Z} 5 IN CNAME web.default{Z}", a(f"web.default{Z}", "10.96.0.20")]),
    Case("alias.default.svc.cluster.local.", "AAAA", "NOERROR",
         [f"alias.default{Z} 5 IN CNAME web.default{Z}"], authority=[SOA]),
    Case("dangling.default.svc.cluster.local.", "A", "NXDOMAIN",
         [f"dangling.default{Z} 5 IN CNAME missing.default{Z}"], authority=[SOA]),
    Case("_http._tcp.ext.default.svc.cluster.local.", "SRV", "NXDOMAIN", authority=[SOA]),
    # Pod records: any well-formed dashed address (pods insecure).
    Case("10-244-1-9.default.pod.cluster.local.", "A", "NOERROR",
         [a("10-244-1-9.default.pod.cluster.local.", "10.244.1.9")]),
    Case("10-244-1-9.default.pod.cluster.local.", "AAAA", "NOERROR", authority=[SOA]),
    Case("fd00--9.default.pod.cluster.local.", "AAAA", "NOERROR",
         [a("fd00--9.default.pod.cluster.local.", "fd00::9", "AAAA")]),
    Case("10-244-1-999.default.pod.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("web.default.pod.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    # Empty non-terminals exist; unknown and meaningless names do not.
    Case("svc.cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("pod.cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("default.svc.cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("legacy.svc.cluster.local.", "A", "NOERROR", authority=[SOA]),
    Case("nosuchns.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("missing.default.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("missing.default.svc.cluster.local.", "AAAA", "NXDOMAIN", authority=[SOA]),
    Case("foo.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    Case("a.b.c.web.default.svc.cluster.local.", "A", "NXDOMAIN", authority=[SOA]),
    # Reverse zones of the service and pod CIDRs.
    Case("20.0.96.10.in-addr.arpa.", "PTR", "NOERROR",
         [f"20.0.96.10.in-addr.arpa. 5 IN PTR web.default{Z}"]),
    Case("30.0.96.10.in-addr.arpa.", "PTR", "NOERROR",
         [f"30.0.96.10.in-addr.arpa. 5 IN PTR db.data{Z}"]),
    Case("5.1.244.10.in-addr.arpa.", "PTR", "NOERROR",
         [f"5.1.244.10.in-addr.arpa. 5 IN PTR peer-0.peers.default{Z}"]),
    Case("6.1.244.10.in-addr.arpa.", "PTR", "NOERROR",
         [f"6.1.244.10.in-addr.arpa. 5 IN PTR p1.peers.default{Z}"]),
    Case("50.1.244.10.in-addr.arpa.", "PTR", "NOERROR",
         [f"50.1.244.10.in-addr.arpa. 5 IN PTR solo.peers.default{Z}"]),
    Case("3.3.244.10.in-addr.arpa.", "PTR", "NOERROR",
         [f"3.3.244.10.in-addr.arpa. 5 IN PTR old-0.old.legacy{Z}"]),
    Case("20.0.96.10.in-addr.arpa.", "A", "NOERROR", authority=[REV_SOA]),
    Case("7.1.244.10.in-addr.arpa.", "PTR", "NXDOMAIN", authority=[REV_SOA]),  # no hostname
    Case("99.0.96.10.in-addr.arpa.", "PTR", "NXDOMAIN", authority=[REV_SOA]),
    Case("96.10.in-addr.arpa.", "PTR", "NOERROR", authority=[REV_SOA]),
    Case("10.in-addr.arpa.", "SOA", "NOERROR", [REV_SOA]),
    Case("x.0.96.10.in-addr.arpa.", "PTR", "NXDOMAIN", authority=[REV_SOA]),
    # Outside our zones, with no upstream: refused, not authoritative, no SOA.
    Case("example.com.", "A", "REFUSED"),
    Case("5.1.1.10.in-addr.arpa.", "PTR", "REFUSED"),
    Case("1.0.0.127.in-addr.arpa.", "PTR", "REFUSED"),
]


def sections(reply: DNSRecord) -> tuple[list[str], list[str], list[str]]:
    def text(rrs: list[RR]) -> list[str]:
        return sorted(" ".join(str(rr).split()) for rr in rrs if rr.rtype != QTYPE.OPT)
    return text(reply.rr), text(reply.auth), text(reply.ar)


@pytest.fixture(scope="module")
def server() -> DNSServer:
    return DNSServer(build_index(), address="127.0.0.1", config=CONFIG)


def ask(server: DNSServer, qname: str, qtype: str, *, transport: Transport = Transport.UDP,
        edns: int | None = None) -> DNSRecord:
    query = DNSRecord.question(qname, qtype)
    if edns is not None:
        query.add_ar(EDNS0(udp_len=edns))
    reply = server.handle(bytes(query.pack()), transport)
    assert isinstance(reply, bytes)
    return DNSRecord.parse(reply)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qname}{c.qtype}")
def test_answers(server: DNSServer, case: Case) -> None:
    reply = ask(server, case.qname, case.qtype, transport=Transport.TCP)
    assert RCODE[reply.header.rcode] == case.rcode
    assert sections(reply) == (sorted(case.answer), sorted(case.authority),
                               sorted(case.additional))
    assert reply.header.aa == (case.rcode != "REFUSED")
    assert str(reply.q.qname) == case.qname  # the question comes back as asked


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qname}{c.qtype}")
def test_served_replies_equal_freshly_built_ones(server: DNSServer, case: Case) -> None:
    for spelling in (case.qname, _random_case(case.qname)):
        query = DNSRecord.question(spelling, case.qtype)
        query.header.id = random.randrange(65536)
        data = bytes(query.pack())
        fresh = answer_wire(server.index, data, config=CONFIG, limit=512)
        assert server.handle(data, Transport.TCP) == answer_wire(server.index, data,
                                                                 config=CONFIG)
        # Over UDP twice: the same reply, the second from what the first left built.
        assert server.handle(data, Transport.UDP) == server.handle(data, Transport.UDP) == fresh


def test_every_prebuilt_reply_equals_a_fresh_one(server: DNSServer) -> None:
    keys = list(server.table.keys())
    assert len(keys) > 30  # service, endpoint, SRV and PTR names
    for key in keys:
        data = bytes.fromhex("1234 0100 0001 0000 0000 0000") + key
        assert server.handle(data, Transport.TCP) == answer_wire(server.index, data,
                                                                 config=CONFIG)


def _random_case(name: str) -> str:
    rng = random.Random(name)
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def test_replies_keep_id_and_recursion_desired(server: DNSServer) -> None:
    query = DNSRecord.question("web.default.svc.cluster.local", "A")
    query.header.id, query.header.rd = 4242, 0
    reply = DNSRecord.parse(server.handle(bytes(query.pack()), Transport.UDP))  # type: ignore[arg-type]
    assert (reply.header.id, reply.header.rd, reply.header.ra) == (4242, 0, 0)


def test_ipv6_reverse_zone_when_an_ipv6_service_cidr_is_configured() -> None:
    config = ZoneConfig(service_cidrs=("10.96.0.0/12", "fd00::/108"))
    server = DNSServer(build_index(), address="127.0.0.1", config=config)
    name = "0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
    reply = ask(server, name, "PTR")
    assert sections(reply)[0] == [f"{name} 5 IN PTR db.data{Z}"]
    unknown = ask(server, "1" + name[1:], "PTR")
    assert RCODE[unknown.header.rcode] == "NXDOMAIN"


def test_changes_rebuild_the_affected_answers() -> None:
    index = build_index()
    server = DNSServer(index, address="127.0.0.1", config=CONFIG)
    before = len(server.table)
    for _ in range(2):  # the second time from what the first left built
        assert sections(ask(server, "web.default.svc.cluster.local", "A"))[0] == [
            a(f"web.default{Z}", "10.96.0.20")]
    index.on_service(None, service("web", clusterIP="10.96.0.21"))
    reply = ask(server, "web.default.svc.cluster.local", "A")
    assert sections(reply)[0] == [a(f"web.default{Z}", "10.96.0.21")]
    assert sections(ask(server, "21.0.96.10.in-addr.arpa", "PTR"))[0] == [
        f"21.0.96.10.in-addr.arpa. 5 IN PTR web.default{Z}"]
    assert RCODE[ask(server, "20.0.96.10.in-addr.arpa", "PTR").header.rcode] == "NXDOMAIN"
    # The alias follows its target: its answer was not pre-built, so it cannot be stale.
    assert sections(ask(server, "alias.default.svc.cluster.local", "A"))[0][1] == a(
        f"web.default{Z}", "10.96.0.21")
    index.on_endpointslice(None, endpoint_slice("lonely", "lonely-b", [endpoint("10.244.2.8")]))
    assert sections(ask(server, "lonely.default.svc.cluster.local", "A"))[0] == [
        a(f"lonely.default{Z}", "10.244.2.8")]
    index.on_service(service("peers", clusterIP="None"), None)
    assert RCODE[ask(server, "peer-0.peers.default.svc.cluster.local", "A").header.rcode] \
        == "NXDOMAIN"
    assert RCODE[ask(server, "5.1.244.10.in-addr.arpa", "PTR").header.rcode] == "NXDOMAIN"
    assert len(server.table) < before


def _edns_query(name: str, qtype: str, *, size: int | None, version: int = 0) -> bytes:
    query = DNSRecord.question(name, qtype)
    if size is not None:
        query.add_ar(EDNS0(udp_len=size, version=version))
    return bytes(query.pack())


@pytest.fixture(scope="module")
def big_server() -> DNSServer:
    """A headless service with 150 endpoints: about 2.4 kB of A records."""
    index = RecordIndex()
    index.on_service(None, headless("big"))
    ips = [f"10.244.9.{i}" for i in range(1, 151)]
    index.on_endpointslice(None, endpoint_slice("big", "big-a", [endpoint(ip) for ip in ips]))
    return DNSServer(index, address="127.0.0.1", max_udp_size=4096)


BIG = "big.default.svc.cluster.local"


@pytest.mark.parametrize(("size", "transport", "truncated"), [
    (None, Transport.UDP, True),  # 512 without EDNS0
    (1232, Transport.UDP, True),
    (4096, Transport.UDP, False),
    (None, Transport.TCP, False),
])
def test_large_answers_fit_the_clients_size_or_are_truncated(
        big_server: DNSServer, size: int | None, transport: Transport, truncated: bool) -> None:
    raw = big_server.handle(_edns_query(BIG, "A", size=size), transport)
    assert isinstance(raw, bytes)
    reply = DNSRecord.parse(raw)
    assert reply.header.tc == int(truncated)
    assert len(reply.rr) == (0 if truncated else 150)
    assert len(raw) <= (size or 512) if transport is Transport.UDP else True
    opts = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) == (1 if size is not None else 0)  # OPT only to clients that sent one


def test_udp_size_is_capped_by_the_server(server: DNSServer) -> None:
    index = RecordIndex()
    index.on_service(None, headless("big"))
    ips = [f"10.244.9.{i}" for i in range(1, 151)]
    index.on_endpointslice(None, endpoint_slice("big", "big-a", [endpoint(ip) for ip in ips]))
    capped = DNSServer(index, address="127.0.0.1")  # default cap 1232
    raw = capped.handle(_edns_query(BIG, "A", size=65000), Transport.UDP)
    assert isinstance(raw, bytes) and DNSRecord.parse(raw).header.tc == 1
    assert capped.metrics.truncated.total() == 1


def test_edns_reply_advertises_our_size_and_unknown_versions_get_badvers(
        server: DNSServer) -> None:
    raw = server.handle(_edns_query("web.default.svc.cluster.local", "A", size=4096),
                        Transport.UDP)
    assert isinstance(raw, bytes)
    opt = [rr for rr in DNSRecord.parse(raw).ar if rr.rtype == QTYPE.OPT]
    assert [o.rclass for o in opt] == [1232]
    raw = server.handle(_edns_query("web.default.svc.cluster.local", "A", size=4096, version=1),
                        Transport.UDP)
    assert isinstance(raw, bytes)
    reply = DNSRecord.parse(raw)
    opt = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert reply.header.rcode == 0 and (opt[0].ttl >> 24) == 1  # extended rcode 16: BADVERS
    assert not reply.rr


@pytest.mark.parametrize(("hexdata", "expected"), [
    ("beef 0100 0001 0000 0000 0000 ffff ff", "FORMERR"),  # question runs past the end
    ("beef 0100 0000 0000 0000 0000", "FORMERR"),  # no question
    ("beef 0100 0002 0000 0000 0000 0000 0100 01 0000 0100 01", "FORMERR"),  # two
    ("beef 0100 0001 0000 0000 0000 c00c 0001 0001", "FORMERR"),  # pointer in the question
    ("beef 0100 0001 0000 0000 0001 0000 0100 01 00 0029", "FORMERR"),  # OPT cut short
    ("beef 1000 0001 0000 0000 0000 0000 0100 01", "NOTIMP"),  # opcode 2 (status)
    ("beef 0100 0001 0000 0000 0000 0000 0100 03", "REFUSED"),  # class CH
])
def test_malformed_or_unsupported_queries(server: DNSServer, hexdata: str,
                                          expected: str) -> None:
    raw = server.handle(bytes.fromhex(hexdata), Transport.UDP)
    assert isinstance(raw, bytes)
    assert raw[:2] == b"\xbe\xef"
    assert RCODE[raw[3] & 0x0F] == expected


def test_oversized_names_are_formerr(server: DNSServer) -> None:
    name = b"".join(bytes([63]) + b"a" * 63 for _ in range(5)) + b"\x00"  # 321 octets
    raw = server.handle(bytes.fromhex("0001 0100 0001 0000 0000 0000") + name + b"\x00\x01\x00\x01",
                        Transport.UDP)
    assert isinstance(raw, bytes) and raw[3] & 0x0F == 1


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 11, bytes.fromhex("beef 8100 0001 0000 0000 0000"),
], ids=["empty", "short", "a-response"])
def test_short_messages_and_responses_are_dropped(server: DNSServer, data: bytes) -> None:
    assert server.handle(data, Transport.UDP) is None


def test_random_bytes_never_break_the_handler() -> None:
    server = DNSServer(build_index(), address="127.0.0.1", config=CONFIG)
    rng = random.Random(7)
    good = bytes(DNSRecord.question("web.default.svc.cluster.local", "A").pack())
    for i in range(5000):
        if i % 2:
            data = bytearray(good)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            packet = bytes(data[:rng.randrange(len(data) + 1)])
        else:
            packet = rng.randbytes(rng.randrange(64))
        server.handle(packet, Transport.UDP)
    assert server.metrics.errors.total() == 0
    assert sections(ask(server, "web.default.svc.cluster.local", "A"))[0] == [
        a(f"web.default{Z}", "10.96.0.20")]
    assert HEADER_SIZE == 12
