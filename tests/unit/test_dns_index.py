"""The record index: what Service objects become, and how changes count."""

from __future__ import annotations

import ipaddress

import pytest

from netplane.api.meta import Obj
from netplane.dns.index import RecordIndex, ServicePort, SourceRef, apply_service_event


def service(name: str, namespace: str = "default", *, cluster_ip: str | None = "10.96.0.20",
            rv: int = 1, **spec: object) -> Obj:
    body: Obj = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(rv)},
            "spec": body}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cluster_ip_service_is_indexed_with_its_source() -> None:
    index = RecordIndex()
    index.set_service(service("Web", "Default", rv=7))
    entry = index.service("web", "WEB")  # wrong argument order finds nothing
    assert entry is None
    entry = index.service("DEFAULT", "WEB")
    assert entry is not None
    assert entry.cluster_ips == (ipaddress.ip_address("10.96.0.20"),)
    assert entry.ports == (ServicePort("http", 80, "TCP"),)
    assert entry.source == SourceRef("Service", "Default", "Web", 7)
    assert str(entry.source) == "Service Default/Web"
    assert index.has_namespace("default")


def test_dual_stack_cluster_ips_are_split_by_family() -> None:
    index = RecordIndex()
    index.set_service(service("db", clusterIPs=["10.96.0.30", "fd00::30"]))
    entry = index.service("default", "db")
    assert entry is not None
    assert [str(ip) for ip in entry.addresses(4)] == ["10.96.0.30"]
    assert [str(ip) for ip in entry.addresses(6)] == ["fd00::30"]


@pytest.mark.parametrize("svc", [
    service("peers", cluster_ip="None"),
    service("pending", cluster_ip=None),
    service("ext", cluster_ip=None, type="ExternalName", externalName="example.com"),
    service("bad", cluster_ip="not-an-ip"),
])
def test_services_without_a_cluster_ip_get_no_entry(svc: Obj) -> None:
    index = RecordIndex()
    index.set_service(svc)
    assert len(index) == 0
    assert index.version == 0


def test_version_counts_only_changes_that_alter_answers() -> None:
    clock = FakeClock()
    index = RecordIndex(clock=clock)
    clock.now = 101.0
    index.set_service(service("web", rv=1))
    assert (index.version, index.updated_at) == (1, 101.0)
    clock.now = 102.0
    index.set_service(service("web", rv=2))  # same addresses and ports
    assert (index.version, index.updated_at) == (1, 101.0)
    entry = index.service("default", "web")
    assert entry is not None and entry.source.resource_version == 2
    index.set_service(service("web", cluster_ip="10.96.0.21", rv=3))
    assert (index.version, index.updated_at) == (2, 102.0)


def test_turning_headless_removes_the_entry() -> None:
    index = RecordIndex()
    index.set_service(service("web"))
    index.set_service(service("web", cluster_ip="None"))
    assert index.service("default", "web") is None
    assert not index.has_namespace("default")


def test_namespace_exists_while_any_service_lives_in_it() -> None:
    index = RecordIndex()
    index.set_service(service("a"))
    index.set_service(service("b"))
    index.delete_service("default", "a")
    assert index.has_namespace("default")
    index.delete_service("Default", "B")
    assert not index.has_namespace("default")
    index.delete_service("default", "b")  # deleting twice is harmless
    assert index.version == 4


def test_watch_events_feed_the_index() -> None:
    index = RecordIndex()
    apply_service_event(index, "ADDED", service("web"))
    apply_service_event(index, "MODIFIED", service("web", cluster_ip="10.96.0.99"))
    entry = index.service("default", "web")
    assert entry is not None and str(entry.cluster_ips[0]) == "10.96.0.99"
    apply_service_event(index, "BOOKMARK", {"metadata": {"resourceVersion": "9"}})
    apply_service_event(index, "DELETED", service("web"))
    assert index.service("default", "web") is None
    with pytest.raises(ValueError):
        apply_service_event(index, "EXPLODED", service("web"))
