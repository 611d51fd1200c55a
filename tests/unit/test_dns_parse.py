"""Query names to typed requests: every shape of a Kubernetes DNS name."""

from __future__ import annotations

import pytest

from netplane.dns.parse import InvalidName, Kind, Level, NotInZone, Request, parse

ZONE = "cluster.local"


@pytest.mark.parametrize(("qname", "expected"), [
    ("cluster.local.", Request(Level.APEX)),
    ("svc.cluster.local.", Request(Level.KIND, Kind.SERVICE)),
    ("pod.cluster.local", Request(Level.KIND, Kind.POD)),
    ("default.svc.cluster.local.", Request(Level.NAMESPACE, Kind.SERVICE, "default")),
    ("web.default.svc.cluster.local.", Request(Level.NAME, Kind.SERVICE, "default", "web")),
    ("WEB.Default.SVC.Cluster.LOCAL.", Request(Level.NAME, Kind.SERVICE, "default", "web")),
    ("10-244-1-5.default.pod.cluster.local.",
     Request(Level.NAME, Kind.POD, "default", "10-244-1-5")),
    ("web-0.web.default.svc.cluster.local.",
     Request(Level.ENDPOINT, Kind.SERVICE, "default", "web", endpoint="web-0")),
    ("_http._tcp.web.default.svc.cluster.local.",
     Request(Level.PORT, Kind.SERVICE, "default", "web", port="http", protocol="tcp")),
    ("_DNS._UDP.kube-dns.kube-system.svc.cluster.local.",
     Request(Level.PORT, Kind.SERVICE, "kube-system", "kube-dns", port="dns", protocol="udp")),
])
def test_names_in_the_zone_parse_to_requests(qname: str, expected: Request) -> None:
    assert parse(qname, zone=ZONE) == expected


@pytest.mark.parametrize("qname", [
    "example.com.",
    "local.",
    ".",
    "cluster.local.example.com.",
    "notcluster.local.",
])
def test_names_outside_the_zone_are_not_in_zone(qname: str) -> None:
    with pytest.raises(NotInZone):
        parse(qname, zone=ZONE)


@pytest.mark.parametrize("qname", [
    "foo.cluster.local.",  # neither svc nor pod
    "web.default.services.cluster.local.",
    "a.b.c.web.default.svc.cluster.local.",  # too deep
    "x.10-244-1-5.default.pod.cluster.local.",  # nothing lives below a pod address
])
def test_meaningless_names_in_the_zone_are_invalid(qname: str) -> None:
    with pytest.raises(InvalidName):
        parse(qname, zone=ZONE)


def test_zone_spelling_does_not_matter() -> None:
    request = parse("web.default.svc.example.internal", zone="Example.Internal.")
    assert request == Request(Level.NAME, Kind.SERVICE, "default", "web")
