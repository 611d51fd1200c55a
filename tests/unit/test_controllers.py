"""Pure pieces of the controllers: endpoints from pods, templates, status."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.cluster.controllers.deployment import HASH_LABEL, template_hash
from netplane.cluster.controllers.endpoints import build_subsets, resolve_port
from netplane.cluster.controllers.replicaset import pod_from_template


def pod(name: str, ip: str, *, ready: bool = True, port_name: str = "http",
        port: int = 8080, deleting: bool = False) -> Obj:
    md: Obj = {"name": name, "namespace": "default", "uid": f"uid-{name}",
               "labels": {"app": "web"}}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": md,
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "c", "ports": [{"name": port_name, "containerPort": port,
                                         "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


SVC: Obj = {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                "protocol": "TCP"}]}}


def test_named_target_port_resolves_per_pod() -> None:
    assert resolve_port(pod("a", "10.244.1.2", port=9000), "http", "TCP") == 9000
    assert resolve_port(pod("a", "10.244.1.2"), 8080, "TCP") == 8080
    assert resolve_port(pod("a", "10.244.1.2"), "grpc", "TCP") is None
    assert resolve_port(pod("a", "10.244.1.2"), "http", "UDP") is None


def test_ready_and_not_ready_addresses() -> None:
    subsets = build_subsets(SVC, [pod("b", "10.244.1.3"), pod("a", "10.244.1.2"),
                                  pod("c", "10.244.1.4", ready=False),
                                  pod("d", "10.244.1.5", deleting=True)])
    assert len(subsets) == 1
    s = subsets[0]
    assert [a["ip"] for a in s["addresses"]] == ["10.244.1.2", "10.244.1.3"]
    assert [a["ip"] for a in s["notReadyAddresses"]] == ["10.244.1.4", "10.244.1.5"]
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert s["addresses"][0]["targetRef"]["name"] == "a"
    assert s["addresses"][0]["nodeName"] == "node-1"


def test_pods_with_different_ports_get_separate_subsets() -> None:
    subsets = build_subsets(SVC, [pod("a", "10.244.1.2", port=8080),
                                  pod("b", "10.244.1.3", port=9090)])
    assert sorted(s["ports"][0]["port"] for s in subsets) == [8080, 9090]


def test_pods_without_ip_or_port_are_left_out() -> None:
    no_ip = pod("a", "")
    wrong_port = pod("b", "10.244.1.3", port_name="metrics")
    assert build_subsets(SVC, [no_ip, wrong_port]) == []


def test_publish_not_ready_addresses() -> None:
    svc = {**SVC, "spec": {**SVC["spec"], "publishNotReadyAddresses": True}}
    subsets = build_subsets(svc, [pod("a", "10.244.1.2", ready=False)])
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.1.2"]


DEPLOY: Obj = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "uid": "d-1"},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c",
                                                              "image": "netplane/echo"}]}}}}


def test_template_hash_is_stable_and_changes_with_the_template() -> None:
    h = template_hash(DEPLOY["spec"]["template"])
    assert h == template_hash(DEPLOY["spec"]["template"])
    other = {**DEPLOY["spec"]["template"], "spec": {"containers": [{"name": "c",
                                                                    "image": "other"}]}}
    assert template_hash(other) != h
    assert template_hash(DEPLOY["spec"]["template"], 1) != h  # after a collision


def test_pods_carry_owner_and_hash() -> None:
    h = template_hash(DEPLOY["spec"]["template"])
    template = {"metadata": {"labels": {"app": "web", HASH_LABEL: h}},
                "spec": DEPLOY["spec"]["template"]["spec"]}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": f"web-{h}", "namespace": "default", "uid": "rs-1"},
          "spec": {"replicas": 3, "template": template}}
    p = pod_from_template(rs)
    assert p["metadata"]["generateName"] == f"web-{h}-"
    assert p["metadata"]["labels"] == {"app": "web", HASH_LABEL: h}
    assert p["metadata"]["ownerReferences"][0] == {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"web-{h}", "uid": "rs-1",
        "controller": True, "blockOwnerDeletion": True}


def test_endpoint_slices_carry_conditions_node_and_ports() -> None:
    from netplane.cluster.controllers.endpointslice import desired_slices

    pods = [pod("a", "10.244.1.2"), pod("b", "10.244.1.3", ready=False),
            pod("c", "10.244.1.4", deleting=True), pod("d", "")]
    slices = desired_slices(SVC, pods)
    assert len(slices) == 1
    (name, body), = slices.items()
    assert name.startswith("web-")
    assert body["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    conds = {e["addresses"][0]: e["conditions"] for e in body["endpoints"]}
    assert conds == {
        "10.244.1.2": {"ready": True, "serving": True, "terminating": False},
        "10.244.1.3": {"ready": False, "serving": False, "terminating": False},
        # Still answering while it terminates: usable when nothing else is.
        "10.244.1.4": {"ready": False, "serving": True, "terminating": True},
    }
    assert all(e["nodeName"] == "node-1" for e in body["endpoints"])


def test_service_without_pods_gets_an_empty_slice() -> None:
    from netplane.cluster.controllers.endpointslice import desired_slices

    (body,) = desired_slices(SVC, []).values()
    assert body["endpoints"] == [] and body["ports"] == []


def test_load_balancer_pool_parsing() -> None:
    from netplane.cluster.controllers.loadbalancer import parse_pool

    assert parse_pool("192.168.56.200-192.168.56.202") == [
        "192.168.56.200", "192.168.56.201", "192.168.56.202"]
    assert parse_pool("10.0.0.0/30, 10.1.0.1-10.1.0.1") == ["10.0.0.1", "10.0.0.2", "10.1.0.1"]
