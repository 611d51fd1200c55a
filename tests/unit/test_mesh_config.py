"""From HTTPRoutes, Services, EndpointSlices and ReferenceGrants to what a
node proxy routes with (GAMMA: routes whose parent is a Service), and the
status each route gets."""

from __future__ import annotations

from typing import Any

import pytest

from netplane.api.meta import Obj
from netplane.mesh import capture
from netplane.mesh.config import CONTROLLER, ServicePort, build, speaks_http
from netplane.mesh.identity import Identity
from netplane.mesh.routes import BackendKey, Request


def service(name: str, ns: str = "shop", ports: tuple[int, ...] = (80,)) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": f"p{p}", "port": p, "targetPort": 8080}
                               for p in ports]}}


def slice_of(svc: str, ips: list[str], ns: str = "shop", ready: bool = True,
             port_name: str = "p80") -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": port_name, "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


def route(name: str, parent: Obj, backends: list[Obj], ns: str = "shop", **rule: Any) -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "generation": 2,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [parent], "rules": [{"backendRefs": backends, **rule}]}}


def svc_ref(name: str, port: int | None = 80, **more: Any) -> Obj:
    ref: dict[str, Any] = {"group": "", "kind": "Service", "name": name, **more}
    if port is not None:
        ref["port"] = port
    return ref


def conditions(status: list[Obj]) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for s in status for c in s["conditions"]]


def test_a_producer_route_splits_traffic_to_its_service() -> None:
    config = build(
        [route("split", svc_ref("web"), [svc_ref("web-v1", weight=90), svc_ref("web-v2",
                                                                                  weight=10)])],
        [service("web"), service("web-v1"), service("web-v2")],
        [slice_of("web-v1", ["10.244.1.5", "10.244.2.7"]), slice_of("web-v2", ["10.244.1.9"]),
         slice_of("web-v2", ["10.244.2.8"], ready=False)])
    table = config.table_for("anywhere", ServicePort("shop", "web", 80))
    assert table is not None
    decision = table.decide(Request.of("GET", "/", [("Host", "web.shop")]))
    assert decision is not None
    assert [(b.name, b.weight) for b in decision.rule.backends] == [("web-v1", 90),
                                                                    ("web-v2", 10)]
    assert config.backends[BackendKey("shop", "web-v1", 80)] == ["10.244.1.5:8080",
                                                                "10.244.2.7:8080"]
    assert config.backends[BackendKey("shop", "web-v2", 80)] == ["10.244.1.9:8080"]  # ready
    status = config.statuses["shop/split"]
    assert status[0]["controllerName"] == CONTROLLER
    assert conditions(status) == [("Accepted", "True", "Accepted"),
                                  ("ResolvedRefs", "True", "ResolvedRefs")]
    assert all(c["observedGeneration"] == 2 for c in status[0]["conditions"])
    assert config.table_for("x", ServicePort("shop", "web-v1", 80)) is None  # plain L4


def test_a_consumer_route_applies_to_its_own_namespace_first() -> None:
    producer = route("prod", svc_ref("web", namespace="shop"), [svc_ref("web")])
    consumer = route("cons", svc_ref("web", namespace="shop"),
                     [svc_ref("web", namespace="shop")], ns="front")
    config = build([producer, consumer], [service("web")], [slice_of("web", ["10.0.0.1"])])
    target = ServicePort("shop", "web", 80)
    front, other = config.table_for("front", target), config.table_for("back", target)
    assert front is not None and other is not None
    mine, theirs = front.decide(Request.of("GET", "/")), other.decide(Request.of("GET", "/"))
    assert mine is not None and str(mine.rule.route) == "front/cons"
    assert theirs is not None and str(theirs.rule.route) == "shop/prod"


def test_backends_across_namespaces_need_a_reference_grant() -> None:
    objs = ([route("r", svc_ref("web"), [svc_ref("api", namespace="back")])],
            [service("web"), service("api", ns="back")], [slice_of("api", ["10.0.0.2"],
                                                                   ns="back")])
    refused = build(*objs)
    assert conditions(refused.statuses["shop/r"])[1] == ("ResolvedRefs", "False",
                                                         "RefNotPermitted")
    table = refused.table_for("shop", ServicePort("shop", "web", 80))
    decision = table.decide(Request.of("GET", "/")) if table else None
    assert decision is not None  # the rule still matches; its refused backend gets 500
    assert "no ReferenceGrant" in str(decision.rule.backends[0].problem)
    grant = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
             "metadata": {"name": "from-shop", "namespace": "back"},
             "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                "namespace": "shop"}],
                      "to": [{"group": "", "kind": "Service"}]}}
    allowed = build(*objs, grants=[grant])
    assert conditions(allowed.statuses["shop/r"])[1] == ("ResolvedRefs", "True",
                                                         "ResolvedRefs")
    assert allowed.backends[BackendKey("back", "api", 80)] == ["10.0.0.2:8080"]
    table = allowed.table_for("shop", ServicePort("shop", "web", 80))
    decision = table.decide(Request.of("GET", "/")) if table else None
    assert decision is not None and decision.rule.backends[0].problem is None


def test_what_a_route_status_says_is_wrong() -> None:
    config = build([
        route("no-svc", svc_ref("web"), [svc_ref("gone")]),
        route("no-port", svc_ref("web", port=81), [svc_ref("web")]),
        route("no-parent", svc_ref("nope"), [svc_ref("web")]),
        route("kind", svc_ref("web"), [{"group": "example.io", "kind": "Bucket", "name": "b"}]),
        route("backend-port", svc_ref("web"), [svc_ref("web", port=9999)]),
        route("bad-match", svc_ref("web"), [svc_ref("web")],
              matches=[{"path": {"type": "Glob", "value": "/*"}}]),
    ], [service("web")], [])
    got = {name: conditions(status) for name, status in config.statuses.items()}
    assert got["shop/no-svc"][1] == ("ResolvedRefs", "False", "BackendNotFound")
    assert got["shop/no-port"][0] == ("Accepted", "False", "NoMatchingParent")
    assert got["shop/no-parent"][0] == ("Accepted", "False", "NoMatchingParent")
    assert got["shop/kind"][1] == ("ResolvedRefs", "False", "InvalidKind")
    assert got["shop/backend-port"][1] == ("ResolvedRefs", "False", "BackendNotFound")
    assert got["shop/bad-match"][0] == ("Accepted", "False", "UnsupportedValue")
    # Only the routes that were accepted route: the bad match takes nothing.
    table = config.table_for("shop", ServicePort("shop", "web", 80))
    assert table is not None
    assert {str(r.key) for r in table.routes} == {"shop/no-svc", "shop/kind",
                                                  "shop/backend-port"}


def test_routes_to_gateways_are_not_mesh_routes() -> None:
    gw = route("north", {"name": "gw", "kind": "Gateway",
                         "group": "gateway.networking.k8s.io"}, [svc_ref("web")])
    config = build([gw], [service("web")], [])
    assert config.statuses == {} and config.producer == {}


def test_a_parent_without_a_port_takes_every_port() -> None:
    config = build([route("all", svc_ref("web", port=None), [svc_ref("web", port=80)])],
                   [service("web", ports=(80, 443))], [])
    assert set(config.producer) == {ServicePort("shop", "web", 80),
                                    ServicePort("shop", "web", 443)}


def test_a_captured_connection_is_routed_by_where_it_was_sent_and_who_sent_it() -> None:
    svc = {**service("web"), "spec": {**service("web")["spec"], "clusterIP": "10.96.0.50"}}
    other = {**service("api"), "spec": {**service("api")["spec"], "clusterIP": "10.96.0.60"}}
    client = {"metadata": {"name": "c", "namespace": "front"},
              "status": {"podIPs": [{"ip": "10.244.1.2"}]}}
    config = build([route("r", svc_ref("web", namespace="shop"), [svc_ref("api", namespace="shop")],
                          ns="front")], [svc, other],
                   [slice_of("api", ["10.244.2.9"])], pods=[client])
    got = config.routing("10.244.1.2", ("10.96.0.50", 80))
    assert got is not None and got[0] == ServicePort("shop", "web", 80)
    decision = got[1].decide(Request.of("GET", "/"))
    assert decision is not None and str(decision.rule.route) == "front/r"  # its consumer route
    got = config.routing("10.244.1.2", ("10.96.0.60", 80))  # no route: the Service itself
    assert got is not None
    decision = got[1].decide(Request.of("GET", "/x"))
    assert decision is not None and decision.rule.backends[0].key == BackendKey("shop", "api",
                                                                                 80)
    assert config.backends[BackendKey("shop", "api", 80)] == ["10.244.2.9:8080"]
    assert config.routing("10.244.1.2", ("10.96.0.70", 80)) is None  # no Service there


def test_a_node_may_tunnel_only_for_workloads_it_runs_to_pods_of_the_receiving_node() -> None:
    def pod(name: str, ip: str, node: str, sa: str) -> Obj:
        return {"metadata": {"name": name, "namespace": "shop"},
                "spec": {"nodeName": node, "serviceAccountName": sa},
                "status": {"podIPs": [{"ip": ip}]}}
    config = build([], [], [], pods=[pod("web-0", "10.244.1.5", "node-1", "web"),
                                     pod("api-0", "10.244.2.7", "node-2", "api")])
    web = Identity("cluster.local", "shop", "web")
    assert config.may_tunnel("node-1", web, "10.244.2.7:8080", "node-2")
    assert not config.may_tunnel("node-3", web, "10.244.2.7:8080", "node-2")  # runs no web pod
    assert not config.may_tunnel("node-1", Identity("cluster.local", "shop", "api"),
                                 "10.244.2.7:8080", "node-2")  # not node-1's to claim
    assert not config.may_tunnel("node-1", web, "10.244.1.5:8080", "node-2")  # not a pod here
    assert not config.may_tunnel("node-1", web, "192.168.56.1:22", "node-2")  # no open relay


@pytest.mark.parametrize(("port", "http"), [
    ({"name": "http", "port": 80}, True),
    ({"name": "http-admin", "port": 8080}, True),
    ({"name": "tcp", "port": 80}, False),
    ({"port": 80}, False),
    ({"name": "tcp", "appProtocol": "http", "port": 80}, True),
    ({"name": "http", "appProtocol": "kubernetes.io/h2c", "port": 80}, True),
    ({"name": "http", "appProtocol": "postgresql", "port": 5432}, False),
])
def test_a_ports_protocol_comes_from_its_app_protocol_else_its_name(port: dict, http: bool
                                                                    ) -> None:
    assert speaks_http(port) is http


def test_render_sends_http_ports_to_the_l7_proxy_and_others_to_the_l4_one() -> None:
    text = capture.render(["10.244.1.2"], [("10.96.0.50", 80)], [("10.96.0.53", 9000)])
    assert "elements = { 10.96.0.50 . 80 }" in text
    assert "elements = { 10.96.0.53 . 9000 }" in text
    assert "@targets counter redirect to :15001" in text
    assert "@streams counter redirect to :15002" in text
