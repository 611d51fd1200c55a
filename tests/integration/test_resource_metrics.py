"""The agent's /metrics/resource for real: two pods of the process runtime
in cgroups of their own, one answering a loop of ``/burn`` requests, one
idle, read through the agent's HTTPS API with the API server's client
certificate and parsed as Prometheus text.

Address plan: each pod netns has only ``lo``; the busy pod's echo listens
on 127.0.0.1:8080 there and a shell in the same pod curls it; the agent
API listens on 127.0.0.1 (a free port) of the test's own namespace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from netplane.api.meta import Obj
from netplane.cluster.apiserver import nodeproxy, pki
from netplane.node import kubeletapi
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.cgroups import Hierarchy
from netplane.node.runtime.process import ProcessRuntime
from tests.integration.scratchcgroups import scratch_cgroups

pytestmark = pytest.mark.root

NS, NODE = "shop", "node-1"
BURN = "while :; do curl -s -o /dev/null 'http://127.0.0.1:8080/burn?ms=200'; done"
BUSY = {"name": "busy", "uid": "5a0c0000-0000-4000-8000-0000000000b1",
        "containers": [{"name": "web", "image": "netplane/echo:1.0",
                        "ports": [{"containerPort": 8080}]},
                       {"name": "load", "image": "busybox", "command": ["sh", "-c", BURN]}]}
IDLE = {"name": "idle", "uid": "5a0c0000-0000-4000-8000-0000000000b2",
        "containers": [{"name": "sleeper", "image": "busybox", "command": ["sleep", "600"]}]}


@dataclass
class Pods:
    pods: list[Obj]

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return next((p for p in self.pods if p["metadata"]["name"] == name), None)

    def items(self) -> list[Obj]:
        return self.pods


def pod_object(desc: dict[str, object]) -> Obj:
    return {"metadata": {"name": desc["name"], "namespace": NS, "uid": desc["uid"]},
            "spec": {"nodeName": NODE, "containers": desc["containers"]}}


@pytest.fixture
def cgroups() -> Iterator[Hierarchy]:
    with scratch_cgroups() as found:
        yield found


@pytest.fixture
async def agent(cgroups: Hierarchy, make_netns: Callable[[str], str],
                tmp_path: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    rt = ProcessRuntime(state_dir=tmp_path / "state", cgroups=cgroups)
    pods = [pod_object(BUSY), pod_object(IDLE)]
    for pod in pods:
        uid, name = pod["metadata"]["uid"], pod["metadata"]["name"]
        netns = make_netns(name)
        resolv, hosts = rt.write_pod_files(uid, nameservers=["10.96.0.10"], searches=[],
                                           options=[], hostname=name, pod_ip="127.0.0.1")
        for c in pod["spec"]["containers"]:
            rt.start_container(pod_uid=uid, pod_name=name, namespace=NS, container=c,
                               netns=netns, hostname=name, resolv_conf=resolv, hosts=hosts,
                               env={"POD_NAME": name}, pod_cgroup=PodCgroup.of(pod))
    creds = pki.ensure(tmp_path / "cluster", addresses=[])
    api = kubeletapi.KubeletApi(pods=Pods(pods), runtime=rt, node_name=NODE)
    cert, key = kubeletapi.serving_certificate(tmp_path / "agent-pki", "127.0.0.1")
    await api.start(address="127.0.0.1", port=0, tls=kubeletapi.server_tls(
        cert=cert, key=key, ca_file=str(creds.ca_cert)))
    tls = nodeproxy.client_tls(creds.kubelet_client_cert, creds.kubelet_client_key)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as s:
            yield f"https://127.0.0.1:{api.port}/metrics/resource", s
    finally:
        await api.stop()
        for pod in pods:
            await asyncio.to_thread(rt.stop_pod, pod["metadata"]["uid"], 0)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float | None]]


async def scrape(url: str, session: aiohttp.ClientSession) -> tuple[str, Samples]:
    async with session.get(url) as resp:
        assert resp.status == 200
        ctype, text = resp.headers["Content-Type"], await resp.text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            ts = float(s.timestamp) if s.timestamp is not None else None
            out[(s.name, tuple(sorted(s.labels.items())))] = (s.value, ts)
    return ctype, out


def cpu(samples: Samples, pod: str, container: str) -> float:
    labels = (("container", container), ("namespace", NS), ("pod", pod))
    return samples[("container_cpu_usage_seconds_total", labels)][0]


async def test_resource_metrics_show_the_busy_pod_busier(
        agent: tuple[str, aiohttp.ClientSession]) -> None:
    url, session = agent
    ctype, first = await scrape(url, session)
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    names = {name for name, _ in first}
    assert {"node_cpu_usage_seconds_total", "node_memory_working_set_bytes",
            "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
            "container_start_time_seconds", "pod_cpu_usage_seconds_total",
            "pod_memory_working_set_bytes", "resource_scrape_error"} <= names
    assert first[("resource_scrape_error", ())][0] == 0
    memory = first[("container_memory_working_set_bytes",
                    (("container", "web"), ("namespace", NS), ("pod", "busy")))]
    assert memory[0] > 0 and memory[1] is not None and abs(memory[1] - time.time()) < 600
    assert ("pod_cpu_usage_seconds_total", (("namespace", NS), ("pod", "idle"))) in first
    # Until the echo server has burned a second of CPU for the loop.
    deadline = time.monotonic() + 60
    while True:
        _, now = await scrape(url, session)
        if cpu(now, "busy", "web") - cpu(first, "busy", "web") >= 1.0:
            break
        assert time.monotonic() < deadline, "the busy pod never got busy"
        await asyncio.sleep(0.2)
    assert cpu(now, "idle", "sleeper") - cpu(first, "idle", "sleeper") < 0.2
    node = now[("node_cpu_usage_seconds_total", ())][0]
    pods = sum(v for (name, _), (v, _) in now.items() if name == "pod_cpu_usage_seconds_total")
    assert node >= pods * 0.99
