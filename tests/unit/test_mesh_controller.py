"""What the mesh controller makes for a Gateway (its Service and
EndpointSlice) and how it writes Gateway statuses, from literal objects."""

from __future__ import annotations

from netplane.mesh import controller, status

GW = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
      "metadata": {"name": "edge", "namespace": "shop", "uid": "u1", "generation": 1},
      "spec": {"gatewayClassName": "netplane",
               "listeners": [{"name": "a", "protocol": "HTTP", "port": 80},
                             {"name": "b", "protocol": "HTTPS", "port": 443},
                             {"name": "c", "protocol": "HTTPS", "port": 443,
                              "hostname": "x.example"},
                             {"name": "d", "protocol": "UDP", "port": 53}]}}


def test_one_service_port_per_listener_port_each_on_a_free_node_port() -> None:
    svc = controller.desired_service(GW, None, taken={15100})
    assert svc["metadata"]["name"] == "edge-netplane"
    assert svc["metadata"]["labels"] == {"gateway.networking.k8s.io/gateway-name": "edge",
                                         "app.kubernetes.io/managed-by":
                                         "gateway-controller.netplane.io"}
    assert controller.made_here(svc)
    # Another controller's Service for its Gateway of the same name is not ours.
    assert not controller.made_here({"metadata": {"labels": {
        "gateway.networking.k8s.io/gateway-name": "edge"}}})
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "Gateway"
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == \
        [(80, 15101), (443, 15102)]


def test_ports_keep_their_node_ports_and_requested_addresses_are_asked_for() -> None:
    current = {"spec": {"ports": [{"port": 443, "targetPort": 15107}]}}
    gw = {**GW, "spec": {**GW["spec"], "addresses": [{"type": "IPAddress",
                                                      "value": "192.168.56.210"}]}}
    svc = controller.desired_service(gw, current, taken=set())
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == \
        [(80, 15100), (443, 15107)]
    assert svc["spec"]["loadBalancerIP"] == "192.168.56.210"


def test_the_slice_lists_every_node_with_an_address_and_its_readiness() -> None:
    svc = controller.desired_service(GW, None, taken=set())
    svc["metadata"]["uid"] = "s1"
    nodes = [{"metadata": {"name": n}, "status": {
        "addresses": [{"type": "InternalIP", "address": ip}] if ip else [],
        "conditions": [{"type": "Ready", "status": ready}]}}
        for n, ip, ready in [("n2", "192.168.56.12", "False"), ("n1", "192.168.56.11", "True"),
                             ("n3", None, "True")]]
    body = controller.desired_slice(svc, nodes)
    assert body["metadata"]["labels"]["kubernetes.io/service-name"] == "edge-netplane"
    assert body["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "gateway-controller.netplane.io"
    assert [(e["addresses"][0], e["conditions"]["ready"]) for e in body["endpoints"]] == \
        [("192.168.56.11", True), ("192.168.56.12", False)]
    assert [(p["name"], p["port"]) for p in body["ports"]] == [("port-80", 15100),
                                                                ("port-443", 15101)]


def test_a_gateway_status_is_written_once_and_keeps_its_transition_times() -> None:
    cond = {"type": "Programmed", "status": "True", "reason": "Programmed", "message": "",
            "observedGeneration": 1}
    desired = {"addresses": [{"type": "IPAddress", "value": "192.168.56.200"}],
               "conditions": [cond],
               "listeners": [{"name": "a", "attachedRoutes": 1, "conditions": [cond]}]}
    first = status.gateway_patch(GW, desired, now=lambda: "T1")
    assert first is not None
    assert first["status"]["conditions"][0]["lastTransitionTime"] == "T1"
    written = {**GW, "status": first["status"]}
    assert status.gateway_patch(written, desired, now=lambda: "T2") is None
    flipped = {**desired, "listeners": [{"name": "a", "attachedRoutes": 2,
                                         "conditions": [cond]}]}
    again = status.gateway_patch(written, flipped, now=lambda: "T3")
    assert again is not None
    assert again["status"]["listeners"][0]["conditions"][0]["lastTransitionTime"] == "T1"
