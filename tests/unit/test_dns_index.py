"""The record index: what Service objects become, and how changes count."""

from __future__ import annotations

import ipaddress

import pytest

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.dns.index import (
    RecordIndex,
    ServicePort,
    ServiceType,
    SourceRef,
    apply_service_event,
)


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
    service("pending", cluster_ip=None),
    service("bad", cluster_ip="not-an-ip"),
    service("ext", cluster_ip=None, type="ExternalName"),  # no externalName
])
def test_services_that_get_no_records_get_no_entry(svc: Obj) -> None:
    index = RecordIndex()
    index.set_service(svc)
    assert len(index) == 0
    assert index.version == 0


@pytest.mark.parametrize(("svc", "kind"), [
    (service("peers", cluster_ip="None"), ServiceType.HEADLESS),
    (service("ext", cluster_ip=None, type="ExternalName", externalName="Example.COM."),
     ServiceType.EXTERNAL_NAME),
])
def test_headless_and_external_name_services_are_indexed(svc: Obj, kind: ServiceType) -> None:
    index = RecordIndex()
    index.set_service(svc)
    entry = index.service("default", meta.name(svc))
    assert entry is not None and entry.type is kind and entry.cluster_ips == ()
    if kind is ServiceType.EXTERNAL_NAME:
        assert entry.external_name == "example.com."


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


def test_turning_headless_changes_the_entry() -> None:
    index = RecordIndex()
    index.set_service(service("web"))
    index.set_service(service("web", cluster_ip="None"))
    entry = index.service("default", "web")
    assert entry is not None and entry.type is ServiceType.HEADLESS
    assert index.version == 2
    assert index.ptr(ipaddress.ip_address("10.96.0.20")) == ()


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


# Endpoints, EndpointSlices and Pods: (previous, current) pairs from informers.

def headless(name: str, **spec: object) -> Obj:
    return service(name, cluster_ip="None", **spec)


def endpoint_slice(svc: str, name: str, ips: list[str], *, ready: bool = True,
                   trigger: str | None = None) -> Obj:
    annotations = {"endpoints.kubernetes.io/last-change-trigger-time": trigger} if trigger else {}
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations,
                         "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def endpoints(name: str, ips: list[str]) -> Obj:
    return {"kind": "Endpoints", "metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips]}]}


def addresses(index: RecordIndex, name: str) -> list[str]:
    view = index.view("default", name)
    assert view is not None
    return [str(b.address) for b in view.backends if b.in_service]


def test_slices_merge_and_follow_updates_and_deletes() -> None:
    index = RecordIndex()
    index.on_service(None, headless("peers"))
    a1 = endpoint_slice("peers", "peers-a", ["10.244.1.5"])
    index.on_endpointslice(None, a1)
    index.on_endpointslice(None, endpoint_slice("peers", "peers-b", ["10.244.2.5", "10.244.1.5"]))
    assert addresses(index, "peers") == ["10.244.1.5", "10.244.2.5"]  # deduplicated, sorted
    a2 = endpoint_slice("peers", "peers-a", ["10.244.1.6"])
    index.on_endpointslice(a1, a2)
    assert addresses(index, "peers") == ["10.244.1.5", "10.244.1.6", "10.244.2.5"]
    index.on_endpointslice(endpoint_slice("peers", "peers-b", []), None)
    assert addresses(index, "peers") == ["10.244.1.6"]


def test_endpoints_are_the_fallback_while_a_service_has_no_slices() -> None:
    index = RecordIndex()
    index.on_service(None, headless("old"))
    index.on_endpoints(None, endpoints("old", ["10.244.3.3"]))
    assert addresses(index, "old") == ["10.244.3.3"]
    slc = endpoint_slice("old", "old-a", ["10.244.3.4"])
    index.on_endpointslice(None, slc)
    assert addresses(index, "old") == ["10.244.3.4"]
    index.on_endpointslice(slc, None)
    assert addresses(index, "old") == ["10.244.3.3"]
    index.on_endpoints(endpoints("old", ["10.244.3.3"]), None)
    assert addresses(index, "old") == []


def test_not_ready_endpoints_count_only_when_published() -> None:
    index = RecordIndex()
    index.on_service(None, headless("peers"))
    index.on_endpointslice(None, endpoint_slice("peers", "peers-a", ["10.244.1.5"], ready=False))
    assert addresses(index, "peers") == []
    view = index.view("default", "peers")
    assert view is not None and view.endpoint_count == 1
    index.on_service(None, headless("peers", publishNotReadyAddresses=True))
    assert addresses(index, "peers") == ["10.244.1.5"]


def pod(name: str, ip: str, *, hostname: str = "h", subdomain: str = "peers",
        ready: bool = True) -> Obj:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"hostname": hostname, "subdomain": subdomain},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": str(ready)}]}}


def test_pods_lend_their_hostname_and_get_names_under_their_subdomain() -> None:
    index = RecordIndex()
    index.on_service(None, headless("peers"))
    index.on_endpointslice(None, endpoint_slice("peers", "peers-a", ["10.244.1.5"]))
    index.on_pod(None, pod("p-0", "10.244.1.5", hostname="zero"))
    index.on_pod(None, pod("p-9", "10.244.1.9", hostname="nine"))
    view = index.view("default", "peers")
    assert view is not None
    assert [(b.hostname, str(b.address), b.in_service) for b in view.backends] == [
        ("zero", "10.244.1.5", True), ("nine", "10.244.1.9", False)]
    [target] = index.ptr(ipaddress.ip_address("10.244.1.9"))
    assert target.labels == ("nine", "peers", "default", "svc")
    index.on_pod(pod("p-9", "10.244.1.9", hostname="nine"),
                 pod("p-9", "10.244.1.9", hostname="nine", subdomain="other"))
    assert index.ptr(ipaddress.ip_address("10.244.1.9")) == ()
    index.on_pod(pod("p-0", "10.244.1.5", hostname="zero"), None)
    assert [b.hostname for b in index.view("default", "peers").backends] == [  # type: ignore[union-attr]
        "10-244-1-5"]


def test_changes_name_what_to_rebuild_and_when_the_api_changed() -> None:
    clock = FakeClock()
    index = RecordIndex(clock=clock)
    index.on_service(None, headless("peers"))
    index.on_service(None, service("web"))
    index.take_changes()
    index.on_endpointslice(None, endpoint_slice("peers", "peers-a", ["10.244.1.5"],
                                                trigger="2024-05-01T10:00:00.250000Z"))
    changes = index.take_changes()
    assert changes.services == {("default", "peers")}
    assert changes.addresses == set()  # no hostname: no PTR
    assert changes.triggers == [1714557600.25]
    index.on_service(service("web"), None)
    changes = index.take_changes()
    assert changes.addresses == {ipaddress.ip_address("10.96.0.20")}
    assert changes.triggers == [100.0]  # no annotation: when the event arrived


def test_no_op_updates_neither_count_nor_notify() -> None:
    index = RecordIndex()
    calls: list[int] = []
    index.subscribe(lambda: calls.append(index.version))
    index.on_service(None, headless("peers"))
    slc = endpoint_slice("peers", "peers-a", ["10.244.1.5"])
    index.on_endpointslice(None, slc)
    index.on_endpointslice(slc, endpoint_slice("peers", "peers-a", ["10.244.1.5"]))
    index.on_pod(None, pod("x", "10.244.7.7", subdomain="nothing-here", ready=False))
    assert calls == [1, 2]
