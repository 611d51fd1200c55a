"""metrics.k8s.io/v1beta1 as metrics-server serves it, from scrapes of
/metrics/resource text recorded by hand into the API server's store:
rates between two scrapes, quantities as metrics-server writes them,
selectors, not-found messages, discovery and the verbs it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import metricsapi
from netplane.cluster.apiserver.metricsstore import (
    MetricsStore,
    cpu_quantity,
    go_duration,
    memory_quantity,
    parse,
)
from netplane.cluster.apiserver.registry import Registry
from tests.unit.test_apiserver import call, ok

T0 = 1_700_000_000.0
BASE = "/apis/metrics.k8s.io/v1beta1"


def scrape(at: float, *, node_cpu: float, web_cpu: float, started: float = T0 - 100,
           sidecar: bool = True) -> str:
    ms = int(at * 1000)
    lines = [
        f"node_cpu_usage_seconds_total {node_cpu} {ms}",
        f"node_memory_working_set_bytes {512 * 2**20} {ms}",
        f'container_cpu_usage_seconds_total{{container="web",namespace="shop",pod="web-0"}} '
        f"{web_cpu} {ms}",
        f'container_memory_working_set_bytes{{container="web",namespace="shop",pod="web-0"}} '
        f"{3412 * 1024} {ms}",
        f'container_start_time_seconds{{container="web",namespace="shop",pod="web-0"}} '
        f"{started} {int(started * 1000)}",
        f'container_cpu_usage_seconds_total{{container="app",namespace="shop",pod="idle-0"}} '
        f"1.0 {ms}",
        f'container_memory_working_set_bytes{{container="app",namespace="shop",pod="idle-0"}} '
        f"1000 {ms}",
    ]
    if sidecar:
        lines += [
            f'container_cpu_usage_seconds_total{{container="log",namespace="shop",pod="web-0"}}'
            f" 0.5 {ms}",
            f'container_memory_working_set_bytes{{container="log",namespace="shop",pod="web-0"}}'
            f" {2**20} {ms}"]
    return "\n".join(lines) + "\n"


def node(name: str, labels: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}


def pod(name: str, containers: list[str], labels: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"nodeName": "node-1",
                     "containers": [{"name": c, "image": "netplane/echo"} for c in containers]}}


@pytest.mark.parametrize(("cores", "text"), [
    (0.0, "0"), (0.012, "12m"), (0.137146875, "137146875n"), (2.0, "2"), (0.0000015, "1500n"),
    (0.000002, "2u"), (-0.1, "0"),
])
def test_cpu_quantity(cores: float, text: str) -> None:
    assert cpu_quantity(cores) == text


@pytest.mark.parametrize(("count", "text"), [
    (3412 * 1024, "3412Ki"), (64 * 2**20, "64Mi"), (1000, "1000"), (0, "0"), (2**30, "1Gi"),
])
def test_memory_quantity(count: int, text: str) -> None:
    assert memory_quantity(count) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (10.0, "10s"), (10.012, "10.012s"), (60.5, "1m0.5s"), (15.1, "15.1s"),
])
def test_window_as_go_prints_a_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_rates_need_two_scrapes_and_no_restart_between() -> None:
    store = MetricsStore()
    web = pod("web-0", ["web", "log"], {})
    store.record("node-1", parse(scrape(T0, node_cpu=100, web_cpu=2.0)))
    assert store.pod_metrics(web) is None and store.node_metrics(node("node-1")) is None
    store.record("node-1", parse(scrape(T0 + 10, node_cpu=105, web_cpu=4.5)))
    got = store.pod_metrics(web)
    assert got is not None
    assert got["containers"] == [{"name": "web", "usage": {"cpu": "250m", "memory": "3412Ki"}},
                                 {"name": "log", "usage": {"cpu": "0", "memory": "1Mi"}}]
    assert (got["window"], got["timestamp"]) == ("10s", "2023-11-14T22:13:30Z")
    store.record("node-1", parse(scrape(T0 + 20, node_cpu=106, web_cpu=0.1, started=T0 + 15)))
    assert store.pod_metrics(web) is None  # restarted: no rate until the next scrape
    # A container missing from the scrapes: its pod has no metrics.
    store.record("node-1", parse(scrape(T0 + 30, node_cpu=107, web_cpu=0.2, started=T0 + 15,
                                        sidecar=False)))
    assert store.pod_metrics(web) is None


def test_a_running_sidecar_counts_in_its_pods_metrics() -> None:
    store = MetricsStore()
    web = pod("web-0", ["web"], {})
    web["spec"]["initContainers"] = [{"name": "log", "image": "busybox",
                                      "restartPolicy": "Always"},
                                     {"name": "setup", "image": "busybox"}]
    for at, cpu in ((T0, 2.0), (T0 + 10, 3.0)):
        store.record("node-1", parse(scrape(at, node_cpu=100, web_cpu=cpu)))
    got = store.pod_metrics(web)
    assert got is not None and [c["name"] for c in got["containers"]] == ["log", "web"]


@pytest.fixture
def store(api: TestClient[Any, Any], registry: Registry) -> MetricsStore:
    registry.create(resources.NAMESPACE, None, {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "shop"}})
    registry.create(resources.NODE, None, node("node-1", {"zone": "a"}))
    registry.create(resources.NODE, None, node("node-2"))
    registry.create(resources.POD, "shop", pod("web-0", ["web", "log"], {"app": "web"}))
    registry.create(resources.POD, "shop", pod("idle-0", ["app"], {"app": "idle"}))
    found: MetricsStore = api.server.app[metricsapi.METRICS]
    found.record("node-1", parse(scrape(T0, node_cpu=100, web_cpu=2.0)))
    found.record("node-1", parse(scrape(T0 + 10, node_cpu=105, web_cpu=4.5)))
    return found


async def test_node_metrics_get_and_list(api: TestClient[Any, Any], store: MetricsStore) -> None:
    one = await ok(api, "GET", f"{BASE}/nodes/node-1")
    assert one["kind"] == "NodeMetrics" and one["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert one["metadata"]["name"] == "node-1" and one["metadata"]["labels"] == {"zone": "a"}
    assert (one["usage"], one["window"]) == ({"cpu": "500m", "memory": "512Mi"}, "10s")
    listing = await ok(api, "GET", f"{BASE}/nodes")
    assert listing["kind"] == "NodeMetricsList"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["node-1"]  # node-2: no scrape
    selected = await ok(api, "GET", f"{BASE}/nodes", params={"labelSelector": "zone=b"})
    assert selected["items"] == []
    code, missing = await call(api, "GET", f"{BASE}/nodes/node-2")
    assert code == 404 and missing["message"] == 'nodes.metrics.k8s.io "node-2" not found'


async def test_pod_metrics_get_list_and_selectors(api: TestClient[Any, Any],
                                                  store: MetricsStore) -> None:
    one = await ok(api, "GET", f"{BASE}/namespaces/shop/pods/web-0")
    assert one["kind"] == "PodMetrics" and one["metadata"]["namespace"] == "shop"
    assert [c["name"] for c in one["containers"]] == ["web", "log"]
    listing = await ok(api, "GET", f"{BASE}/namespaces/shop/pods")
    assert listing["kind"] == "PodMetricsList"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["idle-0", "web-0"]
    every = await ok(api, "GET", f"{BASE}/pods")
    assert len(every["items"]) == 2
    web = await ok(api, "GET", f"{BASE}/namespaces/shop/pods", params={"labelSelector": "app=web"})
    assert [i["metadata"]["name"] for i in web["items"]] == ["web-0"]
    assert (await ok(api, "GET", f"{BASE}/namespaces/default/pods"))["items"] == []
    code, missing = await call(api, "GET", f"{BASE}/namespaces/shop/pods/nope")
    assert code == 404 and missing["message"] == 'pods.metrics.k8s.io "nope" not found'


async def test_metrics_are_read_only_and_discovered(api: TestClient[Any, Any],
                                                    store: MetricsStore) -> None:
    code, _ = await call(api, "DELETE", f"{BASE}/nodes/node-1")
    assert code == 405
    code, _ = await call(api, "GET", f"{BASE}/nodes", params={"watch": "1"})
    assert code == 405
    groups = {g["name"]: g for g in (await ok(api, "GET", "/apis"))["groups"]}
    assert groups["metrics.k8s.io"]["preferredVersion"]["groupVersion"] == \
        "metrics.k8s.io/v1beta1"
    found = {r["name"]: r for r in (await ok(api, "GET", BASE))["resources"]}
    assert found["nodes"] == {"name": "nodes", "singularName": "", "namespaced": False,
                              "kind": "NodeMetrics", "verbs": ["get", "list"]}
    assert found["pods"]["namespaced"] and found["pods"]["kind"] == "PodMetrics"


async def test_kubectl_get_reads_metrics_as_tables(api: TestClient[Any, Any],
                                                  store: MetricsStore) -> None:
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    pods = await ok(api, "GET", f"{BASE}/namespaces/shop/pods", accept=table)
    assert [c["name"] for c in pods["columnDefinitions"]] == ["Name", "CPU", "Memory", "Window"]
    assert [r["cells"] for r in pods["rows"]] == [["idle-0", "0", "1000", "10s"],
                                                  ["web-0", "250m", "4436Ki", "10s"]]
    node = await ok(api, "GET", f"{BASE}/nodes/node-1", accept=table)
    assert node["rows"][0]["cells"] == ["node-1", "500m", "512Mi", "10s"]


def test_kubelet_endpoint_is_the_internal_ip_and_reported_port() -> None:
    assert metricsapi.kubelet_endpoint(node("node-1")) == "192.168.56.11:10250"
    moved = node("node-1")
    moved["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = 12345
    assert metricsapi.kubelet_endpoint(moved) == "192.168.56.11:12345"
    assert metricsapi.kubelet_endpoint({"metadata": {"name": "x"}}) is None
