"""NodePort and health-check port allocation: in range, no duplicates, fixed
ports honoured or refused with 422, kept across updates, freed on delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import status
from netplane.cluster.apiserver.registry import Registry
from netplane.cluster.server import ServerConfig, open_registry

SVC = resources.SERVICE


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return open_registry(ServerConfig(data_dir=tmp_path, socket=tmp_path / "api.sock"))


def svc(name: str, stype: str = "NodePort", **spec: object) -> Obj:
    ports = spec.pop("ports", [{"name": "http", "port": 80}, {"name": "dns", "port": 53,
                                                               "protocol": "UDP"}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": stype, "selector": {"app": name}, "ports": ports, **spec}}


def node_ports(obj: Obj) -> list[int]:
    return [p["nodePort"] for p in obj["spec"]["ports"]]


def test_node_ports_are_allocated_in_range_without_duplicates(registry: Registry) -> None:
    seen: set[int] = set()
    for i in range(100):
        ports = node_ports(registry.create(SVC, "default", svc(f"s{i}")))
        assert all(30000 <= p <= 32767 for p in ports)
        assert not seen & set(ports)
        seen |= set(ports)


def test_fixed_node_port_is_honoured_or_refused(registry: Registry) -> None:
    ports = [{"port": 80, "nodePort": 30080}]
    assert node_ports(registry.create(SVC, "default", svc("a", ports=ports))) == [30080]
    with pytest.raises(status.ApiError) as e:
        registry.create(SVC, "default", svc("b", ports=ports))
    assert e.value.code == 422
    assert "spec.ports[0].nodePort" in e.value.message and "already allocated" in e.value.message
    with pytest.raises(status.ApiError) as e:
        registry.create(SVC, "default", svc("c", ports=[{"port": 80, "nodePort": 80}]))
    assert e.value.code == 422 and "valid range" in e.value.message


def test_refused_service_gives_its_cluster_ip_back(registry: Registry) -> None:
    registry.create(SVC, "default", svc("a", ports=[{"port": 80, "nodePort": 30080}]))
    bad = svc("b", clusterIP="10.96.5.5", ports=[{"port": 80, "nodePort": 30080}])
    with pytest.raises(status.ApiError):
        registry.create(SVC, "default", bad)
    ok = svc("b", clusterIP="10.96.5.5", ports=[{"port": 80}])
    assert registry.create(SVC, "default", ok)["spec"]["clusterIP"] == "10.96.5.5"


def test_ports_are_kept_on_update_and_freed_on_delete(registry: Registry) -> None:
    created = registry.create(SVC, "default", svc("a"))
    before = node_ports(created)
    body = svc("a")  # as `apply` sends it again: without the node ports
    body["spec"]["ports"][0]["targetPort"] = 8080
    updated = registry.update(SVC, "default", "a", body)
    assert node_ports(updated) == before
    registry.delete(SVC, "default", "a")
    fixed = [{"name": "http", "port": 80, "nodePort": before[0]}]
    assert node_ports(registry.create(SVC, "default", svc("b", ports=fixed))) == [before[0]]


def test_type_change_to_cluster_ip_frees_the_ports(registry: Registry) -> None:
    created = registry.create(SVC, "default", svc("a", ports=[{"port": 80}]))
    port = node_ports(created)[0]
    registry.update(SVC, "default", "a", svc("a", "ClusterIP", ports=[{"port": 80}]))
    assert "nodePort" not in registry.get(SVC, "default", "a")["spec"]["ports"][0]
    reuse = svc("b", ports=[{"port": 80, "nodePort": port}])
    assert node_ports(registry.create(SVC, "default", reuse)) == [port]


def test_node_port_on_cluster_ip_service_is_forbidden(registry: Registry) -> None:
    with pytest.raises(status.ApiError) as e:
        registry.create(SVC, "default", svc("a", "ClusterIP",
                                            ports=[{"port": 80, "nodePort": 30001}]))
    assert e.value.code == 422 and "Forbidden" in e.value.message


def test_health_check_node_port_for_local_load_balancers(registry: Registry) -> None:
    lb = registry.create(SVC, "default", svc("lb", "LoadBalancer",
                                             externalTrafficPolicy="Local"))
    hc = lb["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc not in node_ports(lb)
    cluster = svc("lb", "LoadBalancer", externalTrafficPolicy="Cluster")
    updated = registry.update(SVC, "default", "lb", cluster)
    assert "healthCheckNodePort" not in updated["spec"]


def test_allocations_survive_a_restart(tmp_path: Path) -> None:
    first = open_registry(ServerConfig(data_dir=tmp_path, socket=tmp_path / "s"))
    port = node_ports(first.create(SVC, "default", svc("a", ports=[{"port": 80}])))[0]
    first.store.close()
    again = open_registry(ServerConfig(data_dir=tmp_path, socket=tmp_path / "s"))
    with pytest.raises(status.ApiError) as e:
        again.create(SVC, "default", svc("b", ports=[{"port": 80, "nodePort": port}]))
    assert e.value.code == 422


def test_invalid_policies_name_the_field(registry: Registry) -> None:
    cases = [({"externalTrafficPolicy": "Nearby"}, "spec.externalTrafficPolicy"),
             ({"sessionAffinity": "Cookie"}, "spec.sessionAffinity"),
             ({"loadBalancerSourceRanges": ["10.0.0.1"]}, "spec.loadBalancerSourceRanges[0]"),
             ({"externalIPs": ["nope"]}, "spec.externalIPs[0]"),
             ({"sessionAffinity": "ClientIP",
               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}},
              "spec.sessionAffinityConfig.clientIP.timeoutSeconds")]
    for extra, path in cases:
        with pytest.raises(status.ApiError) as e:
            registry.create(SVC, "default", svc("x", "LoadBalancer", **extra))
        assert e.value.code == 422 and path in e.value.message, (extra, e.value.message)


def test_external_name_to_cluster_ip_and_back(registry: Registry) -> None:
    ext = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "e"},
           "spec": {"type": "ExternalName", "externalName": "example.org"}}
    created = registry.create(SVC, "default", ext)
    assert "clusterIP" not in created["spec"]
    cip = registry.update(SVC, "default", "e", svc("e", "ClusterIP", ports=[{"port": 80}]))
    ip = cip["spec"]["clusterIP"]
    assert ip.startswith("10.") and cip["spec"]["clusterIPs"] == [ip]
    back = registry.update(SVC, "default", "e", ext)
    assert "clusterIP" not in back["spec"]
    again = svc("f", "ClusterIP", clusterIP=ip, ports=[{"port": 80}])
    assert registry.create(SVC, "default", again)["spec"]["clusterIP"] == ip
