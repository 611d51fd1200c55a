"""The API server through a real in-process aiohttp server: discovery, REST
verbs, errors as Status objects, selectors, watch streams, allocators,
bootstrap objects, graceful deletion, subresources, dry runs, tokens, Tables."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import bootstrap
from netplane.cluster.apiserver.admission import Allocators
from netplane.cluster.apiserver.allocators import ClusterIPAllocator, PodCIDRAllocator
from netplane.cluster.apiserver.registry import Registry
from netplane.cluster.server import ServerConfig, build_app, open_registry
from netplane.cluster.store.sqlite import SQLiteStore

# Address plan: the defaults of ServerConfig.
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
API_IP, DNS_IP = "10.96.0.1", "10.96.0.10"
TOKEN = "test-token-0123456789"

PODS = "/api/v1/namespaces/default/pods"
SERVICES = "/api/v1/namespaces/default/services"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
NODES = "/api/v1/nodes"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]


def pod(name: str, *, labels: dict[str, str] | None = None, node: str = "") -> Obj:
    spec: Obj = {"containers": [{"name": "web", "image": "nginx",
                                 "ports": [{"name": "http", "containerPort": 80}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "web"}}, "spec": spec}


def service(name: str, *, cluster_ip: str = "") -> Obj:
    spec: Obj = {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def deployment(name: str, replicas: int = 2) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}


def node(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def make_registry(data_dir: Path, *, history: int | None = None) -> Registry:
    """What ``open_registry`` builds, with a history size to choose."""
    if history is None:
        return open_registry(ServerConfig(data_dir=data_dir, socket=data_dir / "api.sock"))
    store = SQLiteStore(data_dir / "store.db", history=history)
    registry = Registry(store, Allocators(
        ClusterIPAllocator(str(SERVICE_CIDR), reserved=(API_IP, DNS_IP)),
        PodCIDRAllocator("10.244.0.0/16")))
    bootstrap.ensure(registry, advertise_address="127.0.0.1", port=6443, api_ip=API_IP,
                     dns_ip=DNS_IP)
    return registry


async def call(api: TestClient[Any, Any], method: str, path: str, body: Any = None, *,
               ctype: str = "application/json", accept: str = "application/json",
               params: dict[str, str] | None = None) -> tuple[int, Obj]:
    data = json.dumps(body) if body is not None else None
    resp = await api.request(method, path, data=data, params=params,
                             headers={"Content-Type": ctype, "Accept": accept})
    text = await resp.text()
    return resp.status, (json.loads(text) if text else {})


async def ok(api: TestClient[Any, Any], method: str, path: str, body: Any = None,
             **kw: Any) -> Obj:
    code, out = await call(api, method, path, body, **kw)
    assert code in (200, 201), out
    return out


def names(listing: Obj) -> list[str]:
    return sorted(i["metadata"]["name"] for i in listing["items"])


def causes(status: Obj) -> list[str]:
    return [c["field"] for c in status["details"]["causes"]]


# -- discovery --

async def test_discovery(api: TestClient[Any, Any]) -> None:
    assert (await ok(api, "GET", "/api"))["versions"] == ["v1"]
    groups = {g["name"]: g["preferredVersion"]["groupVersion"]
              for g in (await ok(api, "GET", "/apis"))["groups"]}
    assert groups["apps"] == "apps/v1"
    core = {r["name"]: r for r in (await ok(api, "GET", "/api/v1"))["resources"]}
    assert {"pods", "services", "nodes", "namespaces", "endpoints", "pods/status",
            "pods/binding"} <= set(core)
    assert core["pods"]["namespaced"] and not core["nodes"]["namespaced"]
    assert "watch" in core["pods"]["verbs"] and "svc" in core["services"]["shortNames"]
    apps = {r["name"]: r for r in (await ok(api, "GET", "/apis/apps/v1"))["resources"]}
    assert apps["deployments"]["kind"] == "Deployment"
    code, st = await call(api, "GET", "/apis/nope/v1")
    assert (code, st["kind"], st["reason"]) == (404, "Status", "NotFound")
    code, st = await call(api, "GET", "/api/v1/widgets")
    assert code == 404 and "widgets" in st["message"]


# -- CRUD --

async def test_pod_create_get_list_update_delete(api: TestClient[Any, Any]) -> None:
    created = await ok(api, "POST", PODS, pod("web-1"))
    md = created["metadata"]
    assert md["namespace"] == "default" and md["uid"] and int(md["resourceVersion"]) > 0
    assert created["spec"]["restartPolicy"] == "Always"  # defaulted
    assert created["status"]["phase"] == "Pending"
    got = await ok(api, "GET", f"{PODS}/web-1")
    assert got == created
    listing = await ok(api, "GET", PODS)
    assert listing["kind"] == "PodList" and names(listing) == ["web-1"]
    assert int(listing["metadata"]["resourceVersion"]) >= int(md["resourceVersion"])
    got["metadata"]["labels"]["tier"] = "front"
    updated = await ok(api, "PUT", f"{PODS}/web-1", got)
    assert updated["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert int(updated["metadata"]["resourceVersion"]) > int(md["resourceVersion"])
    assert updated["metadata"]["uid"] == md["uid"]
    deleted = await ok(api, "DELETE", f"{PODS}/web-1")
    assert deleted["metadata"]["name"] == "web-1"
    code, st = await call(api, "GET", f"{PODS}/web-1")
    assert (code, st["reason"], st["details"]["name"]) == (404, "NotFound", "web-1")
    assert names(await ok(api, "GET", PODS)) == []


async def test_create_twice_is_already_exists(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", PODS, pod("web-1"))
    code, st = await call(api, "POST", PODS, pod("web-1"))
    assert (code, st["reason"]) == (409, "AlreadyExists")


async def test_generate_name(api: TestClient[Any, Any]) -> None:
    body = pod("")
    body["metadata"] = {"generateName": "web-", "labels": {"app": "web"}}
    a = await ok(api, "POST", PODS, body)
    b = await ok(api, "POST", PODS, body)
    assert a["metadata"]["name"].startswith("web-")
    assert a["metadata"]["name"] != b["metadata"]["name"]


async def test_patches(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", PODS, pod("web-1"))
    merged = await ok(api, "PATCH", f"{PODS}/web-1",
                      {"metadata": {"labels": {"tier": "front", "app": None}}}, ctype=MERGE)
    assert merged["metadata"]["labels"] == {"tier": "front"}
    # Strategic merge: containers merge by name instead of being replaced.
    strategic = await ok(api, "PATCH", f"{PODS}/web-1",
                         {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}},
                         ctype=STRATEGIC)
    [container] = strategic["spec"]["containers"]
    assert container["image"] == "nginx:2" and container["ports"][0]["containerPort"] == 80
    ops = [{"op": "add", "path": "/metadata/annotations", "value": {"note": "x"}},
           {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:3"},
           {"op": "remove", "path": "/metadata/labels/tier"}]
    patched = await ok(api, "PATCH", f"{PODS}/web-1", ops, ctype=JSON_PATCH)
    assert patched["metadata"]["annotations"] == {"note": "x"}
    assert patched["spec"]["containers"][0]["image"] == "nginx:3"
    assert patched["metadata"].get("labels", {}) == {}
    assert await ok(api, "GET", f"{PODS}/web-1") == patched
    code, st = await call(api, "PATCH", f"{PODS}/web-1",
                          [{"op": "test", "path": "/spec/nodeName", "value": "x"}],
                          ctype=JSON_PATCH)
    assert code == 422 and "test failed" in st["message"]
    assert (await call(api, "PATCH", f"{PODS}/web-1", {}, ctype="text/plain"))[0] == 415


async def test_patch_that_makes_an_object_invalid_stores_nothing(
        api: TestClient[Any, Any]) -> None:
    before = await ok(api, "POST", SERVICES, service("web"))
    code, st = await call(api, "PATCH", f"{SERVICES}/web",
                          {"spec": {"ports": [{"port": 70000}]}}, ctype=MERGE)
    assert code == 422 and "spec.ports[0].port" in causes(st)
    assert await ok(api, "GET", f"{SERVICES}/web") == before


async def test_service_crud(api: TestClient[Any, Any]) -> None:
    svc = await ok(api, "POST", SERVICES, service("web"))
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]]
    svc["spec"]["ports"][0]["port"] = 81
    updated = await ok(api, "PUT", f"{SERVICES}/web", svc)
    assert updated["spec"]["ports"][0]["port"] == 81
    assert updated["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    await ok(api, "DELETE", f"{SERVICES}/web")
    assert (await call(api, "GET", f"{SERVICES}/web"))[0] == 404


async def test_deployment_crud_and_generation(api: TestClient[Any, Any]) -> None:
    dep = await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    assert dep["apiVersion"] == "apps/v1" and dep["metadata"]["generation"] == 1
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    scaled = await ok(api, "PATCH", f"{DEPLOYMENTS}/web", {"spec": {"replicas": 5}},
                      ctype=MERGE)
    assert scaled["spec"]["replicas"] == 5 and scaled["metadata"]["generation"] == 2
    relabelled = await ok(api, "PATCH", f"{DEPLOYMENTS}/web",
                          {"metadata": {"labels": {"x": "y"}}}, ctype=MERGE)
    assert relabelled["metadata"]["generation"] == 2
    assert names(await ok(api, "GET", "/apis/apps/v1/deployments")) == ["web"]
    await ok(api, "DELETE", f"{DEPLOYMENTS}/web")
    assert (await call(api, "GET", f"{DEPLOYMENTS}/web"))[0] == 404


async def test_body_kind_and_namespace_must_match_the_path(api: TestClient[Any, Any]) -> None:
    code, st = await call(api, "POST", PODS, service("web"))
    assert (code, st["reason"]) == (400, "BadRequest")
    body = pod("p")
    body["metadata"]["namespace"] = "kube-system"
    assert (await call(api, "POST", PODS, body))[0] == 400
    resp = await api.post(PODS, data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400


# -- errors --

async def test_invalid_object_is_422_with_field_paths_and_not_stored(
        api: TestClient[Any, Any], registry: Registry) -> None:
    rev = registry.store.revision
    bad = service("web")
    bad["spec"]["ports"] = [{"name": "a", "port": 0, "targetPort": 80},
                            {"name": "b", "port": 80, "protocol": "HTTP"}]
    code, st = await call(api, "POST", SERVICES, bad)
    assert (code, st["kind"], st["reason"]) == (422, "Status", "Invalid")
    assert causes(st) == ["spec.ports[0].port", "spec.ports[1].protocol"]
    assert 'Service "web" is invalid' in st["message"]
    assert (await call(api, "GET", f"{SERVICES}/web"))[0] == 404
    code, st = await call(api, "POST", PODS, pod("Bad_Name"))
    assert code == 422 and causes(st) == ["metadata.name"]
    code, st = await call(api, "POST", DEPLOYMENTS, {
        **deployment("web"), "spec": {**deployment("web")["spec"],
                                      "selector": {"matchLabels": {"app": "other"}}}})
    assert code == 422 and causes(st) == ["spec.template.metadata.labels"]
    assert registry.store.revision == rev
    # No ClusterIP was consumed by the rejected service.
    assert names(await ok(api, "GET", SERVICES)) == ["kubernetes"]


async def test_invalid_update_is_422_and_object_unchanged(api: TestClient[Any, Any]) -> None:
    created = await ok(api, "POST", DEPLOYMENTS, deployment("web"))
    bad = json.loads(json.dumps(created))
    bad["spec"]["replicas"] = -1
    code, st = await call(api, "PUT", f"{DEPLOYMENTS}/web", bad)
    assert code == 422 and causes(st) == ["spec.replicas"]
    assert await ok(api, "GET", f"{DEPLOYMENTS}/web") == created


async def test_stale_resource_version_is_409(api: TestClient[Any, Any]) -> None:
    first = await ok(api, "POST", PODS, pod("web-1"))
    second = json.loads(json.dumps(first))
    second["metadata"]["labels"]["v"] = "2"
    await ok(api, "PUT", f"{PODS}/web-1", second)
    first["metadata"]["labels"]["v"] = "stale"
    code, st = await call(api, "PUT", f"{PODS}/web-1", first)
    assert (code, st["reason"]) == (409, "Conflict")
    assert "the object has been modified" in st["message"]
    stale_rv = first["metadata"]["resourceVersion"]
    code, st = await call(api, "PATCH", f"{PODS}/web-1",
                          {"metadata": {"resourceVersion": stale_rv, "labels": {"v": "x"}}},
                          ctype=MERGE)
    assert code == 409
    assert (await ok(api, "GET", f"{PODS}/web-1"))["metadata"]["labels"]["v"] == "2"


async def test_unknown_objects_and_missing_namespace_are_404(
        api: TestClient[Any, Any], registry: Registry) -> None:
    for method, path in (("GET", f"{PODS}/nope"), ("DELETE", f"{PODS}/nope"),
                         ("GET", f"{NODES}/nope"), ("GET", "/api/v1/namespaces/nope")):
        code, st = await call(api, method, path)
        assert (code, st["kind"], st["status"], st["code"]) == (404, "Status", "Failure", 404)
        assert st["message"].endswith('"nope" not found')
    code, st = await call(api, "PUT", f"{PODS}/nope", pod("nope"))
    assert code == 404
    rev = registry.store.revision
    code, st = await call(api, "POST", "/api/v1/namespaces/nowhere/pods", pod("p"))
    assert (code, st["message"]) == (404, 'namespaces "nowhere" not found')
    assert registry.store.revision == rev


async def test_a_group_resource_is_named_with_its_group(api: TestClient[Any, Any]) -> None:
    """NewNotFound, NewAlreadyExists, NewConflict: ``deployments.apps``."""
    code, st = await call(api, "GET", f"{DEPLOYMENTS}/nope")
    assert (code, st["message"]) == (404, 'deployments.apps "nope" not found')
    assert st["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    made = await ok(api, "POST", DEPLOYMENTS, deployment("twice"))
    code, st = await call(api, "POST", DEPLOYMENTS, deployment("twice"))
    assert (code, st["message"]) == (409, 'deployments.apps "twice" already exists')
    made["metadata"]["resourceVersion"] = "1"
    code, st = await call(api, "PUT", f"{DEPLOYMENTS}/twice", made)
    assert code == 409
    assert st["message"].startswith('Operation cannot be fulfilled on deployments.apps "twice"')


async def test_protected_namespace_cannot_be_deleted(api: TestClient[Any, Any]) -> None:
    code, st = await call(api, "DELETE", "/api/v1/namespaces/kube-system")
    assert (code, st["reason"]) == (403, "Forbidden")


async def test_namespace_delete_removes_its_objects(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
    await ok(api, "POST", "/api/v1/namespaces/team/pods", pod("p", node="node-1"))
    await ok(api, "POST", "/api/v1/namespaces/team/services", service("s"))
    await ok(api, "DELETE", "/api/v1/namespaces/team")
    assert names(await ok(api, "GET", "/api/v1/namespaces/team/pods")) == []
    assert names(await ok(api, "GET", "/api/v1/namespaces/team/services")) == []
    assert (await call(api, "GET", "/api/v1/namespaces/team"))[0] == 404


# -- selectors --

async def test_label_and_field_selectors(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", PODS, pod("a", labels={"app": "web", "tier": "front"}, node="node-1"))
    await ok(api, "POST", PODS, pod("b", labels={"app": "web"}, node="node-2"))
    await ok(api, "POST", PODS, pod("c", labels={"app": "db"}))

    async def listed(**params: str) -> list[str]:
        return names(await ok(api, "GET", "/api/v1/pods", params=params))

    assert await listed(labelSelector="app=web") == ["a", "b"]
    assert await listed(labelSelector="app=web,!tier") == ["b"]
    assert await listed(labelSelector="app in (db,cache)") == ["c"]
    assert await listed(fieldSelector="spec.nodeName=node-1") == ["a"]
    assert await listed(fieldSelector="spec.nodeName=") == ["c"]
    assert await listed(fieldSelector="spec.nodeName!=node-1", labelSelector="app=web") == ["b"]
    assert await listed(fieldSelector="metadata.name=c") == ["c"]
    code, st = await call(api, "GET", PODS, params={"labelSelector": "app in web"})
    assert (code, st["reason"]) == (400, "BadRequest")
    code, st = await call(api, "GET", PODS, params={"fieldSelector": "spec.host=x"})
    assert code == 400 and "field label not supported" in st["message"]


# -- watch --

class Watch:
    """A streaming watch response read one JSON line at a time."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> tuple[str, Obj]:
        async with asyncio.timeout(5):
            line = await self.resp.content.readline()
        assert line.endswith(b"\n"), line
        ev = json.loads(line)
        return ev["type"], ev["object"]

    async def take(self, n: int) -> list[tuple[str, str]]:
        return [(t, o["metadata"]["name"]) for t, o in [await self.next() for _ in range(n)]]


@pytest.fixture
async def watch(api: TestClient[Any, Any]) -> AsyncIterator[Callable[..., Awaitable[Watch]]]:
    opened: list[aiohttp.ClientResponse] = []

    async def start(path: str, **params: str) -> Watch:
        resp = await api.get(path, params={"watch": "1", **params})
        assert resp.status == 200
        opened.append(resp)
        return Watch(resp)

    yield start
    for resp in opened:
        resp.close()


async def test_watch_streams_events_from_a_revision(
        api: TestClient[Any, Any], watch: Callable[..., Awaitable[Watch]]) -> None:
    await ok(api, "POST", PODS, pod("before"))
    rv = (await ok(api, "GET", PODS))["metadata"]["resourceVersion"]
    w = await watch(PODS, resourceVersion=rv)
    await ok(api, "POST", PODS, pod("a"))
    await ok(api, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"x": "1"}}}, ctype=MERGE)
    await ok(api, "POST", SERVICES, service("not-a-pod"))
    await ok(api, "DELETE", f"{PODS}/a")
    events = [await w.next() for _ in range(3)]
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert events[1][1]["metadata"]["labels"]["x"] == "1"
    revs = [int(o["metadata"]["resourceVersion"]) for _, o in events]
    assert revs == sorted(revs) and revs[0] > int(rv)


async def test_watch_from_an_older_revision_replays(
        api: TestClient[Any, Any], watch: Callable[..., Awaitable[Watch]]) -> None:
    rv = (await ok(api, "GET", PODS))["metadata"]["resourceVersion"]
    await ok(api, "POST", PODS, pod("a"))
    await ok(api, "DELETE", f"{PODS}/a")
    w = await watch(PODS, resourceVersion=rv)
    assert await w.take(2) == [("ADDED", "a"), ("DELETED", "a")]


async def test_watch_without_revision_starts_with_the_current_objects(
        api: TestClient[Any, Any], watch: Callable[..., Awaitable[Watch]]) -> None:
    await ok(api, "POST", PODS, pod("a"))
    await ok(api, "POST", PODS, pod("b"))
    w = await watch(PODS)
    assert sorted(await w.take(2)) == [("ADDED", "a"), ("ADDED", "b")]
    await ok(api, "POST", PODS, pod("c"))
    assert await w.take(1) == [("ADDED", "c")]


async def test_label_selector_watch_turns_relabel_into_added_and_deleted(
        api: TestClient[Any, Any], watch: Callable[..., Awaitable[Watch]]) -> None:
    rv = (await ok(api, "GET", PODS))["metadata"]["resourceVersion"]
    w = await watch(PODS, resourceVersion=rv, labelSelector="app=web")
    await ok(api, "POST", PODS, pod("a", labels={"app": "web"}))
    await ok(api, "POST", PODS, pod("other", labels={"app": "db"}))
    await ok(api, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"app": "db"}}}, ctype=MERGE)
    await ok(api, "PATCH", f"{PODS}/other", {"metadata": {"labels": {"app": "web"}}},
             ctype=MERGE)
    events = [await w.next() for _ in range(3)]
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "a"), ("DELETED", "a"), ("ADDED", "other")]
    assert events[1][1]["metadata"]["labels"] == {"app": "db"}


async def test_field_selector_watch_sees_binding(
        api: TestClient[Any, Any], watch: Callable[..., Awaitable[Watch]]) -> None:
    rv = (await ok(api, "GET", PODS))["metadata"]["resourceVersion"]
    w = await watch("/api/v1/pods", resourceVersion=rv, fieldSelector="spec.nodeName=node-1")
    await ok(api, "POST", PODS, pod("a"))
    await ok(api, "POST", f"{PODS}/a/binding",
             {"target": {"kind": "Node", "name": "node-1"}})
    assert await w.take(1) == [("ADDED", "a")]


async def test_bad_numbers_in_the_query_are_400(api: TestClient[Any, Any]) -> None:
    for params in ({"watch": "1", "resourceVersion": "abc"}, {"watch": "1",
                                                              "timeoutSeconds": "soon"}):
        code, st = await call(api, "GET", PODS, params=params)
        assert (code, st["reason"]) == (400, "BadRequest")
    code, st = await call(api, "DELETE", f"{SERVICES}/kubernetes",
                          params={"gracePeriodSeconds": "-"})
    assert code == 400 and "gracePeriodSeconds" in st["message"]
    code, st = await call(api, "PATCH", f"{SERVICES}/kubernetes",
                          {"metadata": {"resourceVersion": "x"}}, ctype=MERGE)
    assert code == 400 and "resourceVersion" in st["message"]


async def test_watch_timeout_ends_the_stream(
        api: TestClient[Any, Any], watch: Callable[..., Awaitable[Watch]]) -> None:
    w = await watch(PODS, timeoutSeconds="1")
    async with asyncio.timeout(5):
        assert await w.resp.content.read() == b""


async def test_watch_from_a_compacted_revision_is_410(
        aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    reg = make_registry(tmp_path, history=5)
    try:
        api = await aiohttp_client(build_app(reg, frozenset({TOKEN})),
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        for i in range(20):
            await ok(api, "POST", PODS, pod(f"p{i}"))
        w = await api.get(PODS, params={"watch": "1", "resourceVersion": "1"})
        ev = json.loads(await w.content.readline())
        assert ev["type"] == "ERROR"
        assert (ev["object"]["code"], ev["object"]["reason"]) == (410, "Expired")
    finally:
        reg.store.close()


# -- allocators --

async def test_cluster_ips_are_unique_in_range_and_not_reserved(
        api: TestClient[Any, Any]) -> None:
    ips = []
    for i in range(200):
        ips.append((await ok(api, "POST", SERVICES, service(f"s{i}")))["spec"]["clusterIP"])
    assert len(set(ips)) == 200
    assert all(ipaddress.ip_address(ip) in SERVICE_CIDR for ip in ips)
    assert API_IP not in ips and DNS_IP not in ips


async def test_requested_cluster_ip(api: TestClient[Any, Any]) -> None:
    svc = await ok(api, "POST", SERVICES, service("a", cluster_ip="10.96.5.5"))
    assert svc["spec"]["clusterIP"] == "10.96.5.5"
    code, st = await call(api, "POST", SERVICES, service("b", cluster_ip="10.96.5.5"))
    assert code == 422 and causes(st) == ["spec.clusterIP"]
    assert "already allocated" in st["message"]
    assert (await call(api, "POST", SERVICES, service("c", cluster_ip="10.100.0.0")))[0] == 201
    code, st = await call(api, "POST", SERVICES, service("d", cluster_ip="192.168.1.1"))
    assert code == 422 and "not in the valid range" in st["message"]
    code, st = await call(api, "POST", SERVICES, service("e", cluster_ip=API_IP))
    assert code == 422
    assert (await call(api, "GET", f"{SERVICES}/b"))[0] == 404
    # Released on delete: another service can take it.
    await ok(api, "DELETE", f"{SERVICES}/a")
    again = await ok(api, "POST", SERVICES, service("b", cluster_ip="10.96.5.5"))
    assert again["spec"]["clusterIP"] == "10.96.5.5"


async def test_cluster_ip_is_immutable(api: TestClient[Any, Any]) -> None:
    svc = await ok(api, "POST", SERVICES, service("a"))
    ip = svc["spec"]["clusterIP"]
    changed = json.loads(json.dumps(svc))
    changed["spec"]["clusterIP"] = "10.96.9.9"
    code, st = await call(api, "PUT", f"{SERVICES}/a", changed)
    assert code == 422 and causes(st) == ["spec.clusterIP"]
    assert "immutable" in st["message"]
    code, _ = await call(api, "PATCH", f"{SERVICES}/a", {"spec": {"clusterIP": "10.96.9.9"}},
                         ctype=MERGE)
    assert code == 422
    # Leaving it out keeps it (as kubectl replace does).
    unset = json.loads(json.dumps(svc))
    del unset["spec"]["clusterIP"], unset["spec"]["clusterIPs"]
    kept = await ok(api, "PUT", f"{SERVICES}/a", unset)
    assert kept["spec"]["clusterIP"] == ip
    # 10.96.9.9 was never taken.
    await ok(api, "POST", SERVICES, service("b", cluster_ip="10.96.9.9"))


async def test_headless_service_gets_no_cluster_ip(api: TestClient[Any, Any]) -> None:
    svc = await ok(api, "POST", SERVICES, service("h", cluster_ip="None"))
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["clusterIPs"] == ["None"]


async def test_nodes_get_distinct_pod_cidrs(api: TestClient[Any, Any]) -> None:
    cidrs = []
    for i in range(1, 6):
        n = await ok(api, "POST", NODES, node(f"node-{i}"))
        assert n["spec"]["podCIDRs"] == [n["spec"]["podCIDR"]]
        cidrs.append(n["spec"]["podCIDR"])
    assert len(set(cidrs)) == 5
    for cidr in cidrs:
        net = ipaddress.IPv4Network(cidr)
        assert net.prefixlen == 24 and net.subnet_of(ipaddress.IPv4Network("10.244.0.0/16"))
        assert str(net).startswith("10.244.") and net != ipaddress.IPv4Network("10.244.0.0/24")
    code, st = await call(api, "PATCH", f"{NODES}/node-1", {"spec": {"podCIDR": "10.244.99.0/24"}},
                          ctype=MERGE)
    assert code == 422 and causes(st) == ["spec.podCIDR"]
    await ok(api, "DELETE", f"{NODES}/node-1")
    reused = await ok(api, "POST", NODES, node("node-9"))
    assert reused["spec"]["podCIDR"] == cidrs[0]


async def test_requested_pod_cidr_must_be_free(api: TestClient[Any, Any]) -> None:
    first = await ok(api, "POST", NODES, node("node-1"))
    taken = node("node-2")
    taken["spec"] = {"podCIDR": first["spec"]["podCIDR"]}
    code, st = await call(api, "POST", NODES, taken)
    assert code == 422 and causes(st) == ["spec.podCIDR"]
    assert "already allocated" in st["message"]
    mine = node("node-3")
    mine["spec"] = {"podCIDR": "10.244.200.0/24"}
    assert (await ok(api, "POST", NODES, mine))["spec"]["podCIDRs"] == ["10.244.200.0/24"]
    mine["metadata"]["name"] = "node-4"
    assert (await call(api, "POST", NODES, mine))[0] == 422
    code, st = await call(api, "POST", NODES, {**node("node-5"), "spec": {"podCIDR": "nope"}})
    assert code == 422 and causes(st) == ["spec.podCIDR"]


# -- bootstrap and restart --

async def test_bootstrap_objects(api: TestClient[Any, Any]) -> None:
    assert {"default", "kube-system", "kube-public"} <= set(
        names(await ok(api, "GET", "/api/v1/namespaces")))
    k8s = await ok(api, "GET", f"{SERVICES}/kubernetes")
    assert k8s["spec"]["clusterIP"] == API_IP and k8s["spec"]["ports"][0]["port"] == 443
    dns = await ok(api, "GET", "/api/v1/namespaces/kube-system/services/kube-dns")
    assert dns["spec"]["clusterIP"] == DNS_IP
    assert sorted((p["protocol"], p["port"]) for p in dns["spec"]["ports"]) == [
        ("TCP", 53), ("UDP", 53)]
    ep = await ok(api, "GET", "/api/v1/namespaces/default/endpoints/kubernetes")
    assert ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]


def test_reopening_the_data_dir_keeps_objects_and_allocations(tmp_path: Path) -> None:
    first = make_registry(tmp_path)
    a = first.create(resources.SERVICE, "default", service("a"))
    n = first.create(resources.NODE, None, node("node-1"))
    rev = first.store.revision
    first.store.close()
    again = make_registry(tmp_path)
    try:
        assert again.store.revision == rev  # bootstrap found everything in place
        assert again.get(resources.SERVICE, "default", "a") == a
        ips = {again.create(resources.SERVICE, "default", service(f"s{i}"))["spec"]["clusterIP"]
               for i in range(30)}
        assert a["spec"]["clusterIP"] not in ips
        assert again.create(resources.NODE, None, node("node-2"))["spec"]["podCIDR"] != \
            n["spec"]["podCIDR"]
    finally:
        again.store.close()


# -- pods: binding, graceful deletion, status --

async def test_binding_sets_node_name_once(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", PODS, pod("a"))
    code, st = await call(api, "POST", f"{PODS}/a/binding",
                          {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"},
                           "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}})
    assert (code, st["kind"], st["status"], st["code"]) == (201, "Status", "Success", 201)
    bound = await ok(api, "GET", f"{PODS}/a")
    assert bound["spec"]["nodeName"] == "node-1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True"
               for c in bound["status"]["conditions"])
    code, st = await call(api, "POST", f"{PODS}/a/binding", {"target": {"name": "node-2"}})
    assert code == 409 and "already assigned" in st["message"]
    code, st = await call(api, "POST", f"{PODS}/a/binding", {"target": {}})
    assert code == 422
    assert (await ok(api, "GET", f"{PODS}/a"))["spec"]["nodeName"] == "node-1"
    code, _ = await call(api, "POST", f"{PODS}/nope/binding", {"target": {"name": "node-1"}})
    assert code == 404


async def test_pod_spec_is_immutable_except_image(api: TestClient[Any, Any]) -> None:
    created = await ok(api, "POST", PODS, pod("a"))
    moved = json.loads(json.dumps(created))
    moved["spec"]["nodeName"] = "node-2"
    code, st = await call(api, "PUT", f"{PODS}/a", moved)
    assert code == 422 and causes(st) == ["spec"]
    code, _ = await call(api, "PATCH", f"{PODS}/a",
                         {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}},
                         ctype=STRATEGIC)
    assert code == 200


async def test_bound_pod_is_deleted_gracefully(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", PODS, pod("a", node="node-1"))
    marked = await ok(api, "DELETE", f"{PODS}/a")
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    still = await ok(api, "GET", f"{PODS}/a")
    assert still["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    table = await ok(api, "GET", f"{PODS}/a", accept=TABLE)
    assert table["rows"][0]["cells"][2] == "Terminating"
    await ok(api, "DELETE", f"{PODS}/a", params={"gracePeriodSeconds": "0"})
    assert (await call(api, "GET", f"{PODS}/a"))[0] == 404


async def test_grace_period_in_delete_options_body(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", PODS, pod("a", node="node-1"))
    marked = await ok(api, "DELETE", f"{PODS}/a",
                      {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 5})
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 5
    await ok(api, "DELETE", f"{PODS}/a", {"gracePeriodSeconds": 0})
    assert (await call(api, "GET", f"{PODS}/a"))[0] == 404


async def test_finished_or_unbound_pods_go_at_once(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", PODS, pod("unbound"))
    await ok(api, "DELETE", f"{PODS}/unbound")
    assert (await call(api, "GET", f"{PODS}/unbound"))[0] == 404
    done = await ok(api, "POST", PODS, pod("done", node="node-1"))
    done["status"] = {"phase": "Succeeded"}
    await ok(api, "PUT", f"{PODS}/done/status", done)
    await ok(api, "DELETE", f"{PODS}/done")
    assert (await call(api, "GET", f"{PODS}/done"))[0] == 404


async def test_status_subresource_changes_only_status(api: TestClient[Any, Any]) -> None:
    created = await ok(api, "POST", PODS, pod("a", node="node-1"))
    body = json.loads(json.dumps(created))
    body["status"] = {"phase": "Running", "podIP": "10.244.1.5"}
    body["metadata"]["labels"] = {"app": "changed"}
    out = await ok(api, "PUT", f"{PODS}/a/status", body)
    assert out["status"] == {"phase": "Running", "podIP": "10.244.1.5"}
    assert out["metadata"]["labels"] == {"app": "web"}
    patched = await ok(api, "PATCH", f"{PODS}/a/status", {"status": {"phase": "Failed"}},
                       ctype=MERGE)
    assert patched["status"] == {"phase": "Failed", "podIP": "10.244.1.5"}
    # A write of the main resource leaves status alone.
    main = json.loads(json.dumps(patched))
    main["status"] = {"phase": "Pending"}
    main["metadata"]["labels"]["x"] = "y"
    after = await ok(api, "PUT", f"{PODS}/a", main)
    assert after["status"] == patched["status"] and after["metadata"]["labels"]["x"] == "y"
    stale = json.loads(json.dumps(created))
    stale["status"] = {"phase": "Unknown"}
    assert (await call(api, "PUT", f"{PODS}/a/status", stale))[0] == 409


async def test_dry_run_stores_nothing(api: TestClient[Any, Any], registry: Registry) -> None:
    rev = registry.store.revision
    dry = {"dryRun": "All"}
    out = await ok(api, "POST", SERVICES, service("a", cluster_ip="10.96.7.7"), params=dry)
    assert out["spec"]["clusterIP"] == "10.96.7.7"
    assert (await call(api, "GET", f"{SERVICES}/a"))[0] == 404
    assert (await call(api, "POST", SERVICES, service("Bad_Name"), params=dry))[0] == 422
    assert registry.store.revision == rev
    # The dry run reserved nothing.
    real = await ok(api, "POST", SERVICES, service("a", cluster_ip="10.96.7.7"))
    rev = registry.store.revision
    changed = json.loads(json.dumps(real))
    changed["spec"]["ports"][0]["port"] = 99
    assert (await ok(api, "PUT", f"{SERVICES}/a", changed, params=dry))["spec"]["ports"][0][
        "port"] == 99
    await ok(api, "PATCH", f"{SERVICES}/a", {"metadata": {"labels": {"x": "y"}}}, ctype=MERGE,
             params=dry)
    await ok(api, "DELETE", f"{SERVICES}/a", params=dry)
    assert await ok(api, "GET", f"{SERVICES}/a") == real
    assert registry.store.revision == rev


# -- authentication --

async def test_tcp_needs_a_bearer_token(aiohttp_client: AiohttpClient,
                                        registry: Registry) -> None:
    app: web.Application = build_app(registry, frozenset({TOKEN}))
    anon = await aiohttp_client(app)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        resp = await anon.get(PODS, headers=headers)
        st = await resp.json()
        assert (resp.status, st["kind"], st["reason"]) == (401, "Status", "Unauthorized")
    resp = await anon.post(PODS, data=json.dumps(pod("a")))
    assert resp.status == 401
    resp = await anon.get(PODS, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200 and (await resp.json())["items"] == []
    assert (await anon.get("/healthz")).status == 200
    assert (await (await anon.get("/version")).json())["major"] == "1"


# -- server-side printing --

async def test_table_output(api: TestClient[Any, Any]) -> None:
    await ok(api, "POST", SERVICES, service("web", cluster_ip="10.96.3.3"))
    table = await ok(api, "GET", "/api/v1/services", accept=TABLE)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    cols = [c["name"] for c in table["columnDefinitions"]]
    assert cols[:5] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)"]
    rows = {r["cells"][0]: r["cells"] for r in table["rows"]}
    assert rows["web"][1:5] == ["ClusterIP", "10.96.3.3", "<none>", "80/TCP"]
    assert rows["kube-dns"][2] == DNS_IP and rows["kubernetes"][2] == API_IP
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    await ok(api, "POST", PODS, pod("p"))
    one = await ok(api, "GET", f"{PODS}/p", accept=TABLE)
    assert one["rows"][0]["cells"][:3] == ["p", "0/1", "Pending"]
    plain = await ok(api, "GET", f"{PODS}/p")
    assert plain["kind"] == "Pod"
