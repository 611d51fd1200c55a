"""``netplane ps``, ``stats`` and ``top`` for real: an in-process API
server on a Unix socket, a Node whose agent API (the real one, over TLS
with the API server's kubelet-client certificate) serves pods of the
process runtime in cgroups of their own; the CLI's functions read them
through the API server (pod statuses, ``nodes/NAME/proxy``) and print
docker's tables.

Address plan: each pod netns has only ``lo``; the agent API listens on
127.0.0.1 (a free port) of the test's own namespace, which the Node
reports as its InternalIP and kubelet port."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli import dockerviews, pscmd, statscmd, topcmd
from netplane.cluster.apiserver import nodeproxy, pki
from netplane.cluster.client import Client, Connection
from netplane.cluster.server import ServerConfig, build_app, open_registry
from netplane.node import kubeletapi, podstatus
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.cgroups import Hierarchy
from netplane.node.runtime.process import ContainerStatus, ProcessRuntime
from tests.integration.scratchcgroups import scratch_cgroups

pytestmark = pytest.mark.root

NS, NODE = "inspect", "node-1"
SPIN = {"name": "spin", "image": "busybox", "command": ["sh", "-c", "while :; do :; done"],
        "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}}
WEB = {"name": "web", "image": "netplane/echo:1.0", "ports": [{"containerPort": 8080}]}
DONE = {"name": "done", "image": "busybox", "command": ["sh", "-c", "exit 3"]}


@dataclass
class Pods:
    client: list[Obj]

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return next((p for p in self.client if meta.name(p) == name), None)

    def items(self) -> list[Obj]:
        return self.client


@dataclass
class Cluster:
    client: Client
    runtime: ProcessRuntime
    pods: dict[str, Obj]

    async def report(self) -> None:
        """What the agent's status loop posts: each container's status."""
        for pod in self.pods.values():
            views = [podstatus.ContainerView(c, self.runtime.container_state(meta.uid(pod),
                                                                             c["name"]),
                                             ready=True, restarts=0)
                     for c in pod["spec"]["containers"]]
            fresh = await self.client.get(resources.POD, meta.name(pod), NS)
            fresh["status"] = {"phase": "Running",
                               "containerStatuses": [podstatus.container_status(v)
                                                     for v in views]}
            await self.client.update_status(resources.POD, fresh)


@pytest.fixture
def cgroups() -> Iterator[Hierarchy]:
    with scratch_cgroups() as found:
        yield found


@pytest.fixture
async def cluster(cgroups: Hierarchy, make_netns: Callable[[str], str],
                  tmp_path: Path) -> AsyncIterator[Cluster]:
    cfg = ServerConfig(data_dir=tmp_path / "data", socket=tmp_path / "api.sock")
    registry = open_registry(cfg)
    app = build_app(registry, frozenset({"inspect-token"}))
    creds = pki.ensure(tmp_path / "cluster", addresses=[])
    app[nodeproxy.KUBELET_TLS] = nodeproxy.client_tls(creds.kubelet_client_cert,
                                                      creds.kubelet_client_key)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.UnixSite(runner, str(cfg.socket)).start()
    client = Client(Connection(socket=str(cfg.socket)))
    rt = ProcessRuntime(state_dir=tmp_path / "state", cgroups=cgroups)
    placed: list[Obj] = []
    agent = kubeletapi.KubeletApi(pods=Pods(placed), runtime=rt, node_name=NODE)
    cert, key = kubeletapi.serving_certificate(tmp_path / "agent-pki", "127.0.0.1")
    await agent.start(address="127.0.0.1", port=0, tls=kubeletapi.server_tls(
        cert=cert, key=key, ca_file=str(creds.ca_cert)))
    try:
        node = await client.create(resources.NODE, {"apiVersion": "v1", "kind": "Node",
                                                    "metadata": {"name": NODE}})
        node["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                          "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.port}},
                          "nodeInfo": {"containerRuntimeVersion": "process://0.1.0"}}
        await client.update_status(resources.NODE, node)
        await client.create(resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": NS}})
        pods = {}
        for name, container in (("spin", SPIN), ("web", WEB), ("done", DONE)):
            pod = await client.create(resources.POD, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": NODE, "containers": [container]}}, NS)
            uid = meta.uid(pod)
            netns = make_netns(name)
            resolv, hosts = rt.write_pod_files(uid, nameservers=["10.96.0.10"], searches=[],
                                               options=[], hostname=name, pod_ip="127.0.0.1")
            rt.start_container(pod_uid=uid, pod_name=name, namespace=NS, container=container,
                               netns=netns, hostname=name, resolv_conf=resolv, hosts=hosts,
                               env={}, pod_cgroup=PodCgroup.of(pod))
            placed.append(pod)
            pods[name] = pod
        yield Cluster(client, rt, pods)
    finally:
        await agent.stop()
        for uid in rt.known_pods():
            await asyncio.to_thread(rt.stop_pod, uid, 0)
        await client.close()
        await runner.cleanup()
        registry.store.close()


async def _wait_exited(cluster: Cluster, name: str) -> None:
    uid = meta.uid(cluster.pods[name])
    deadline = time.monotonic() + 30
    while cluster.runtime.container_state(uid, name).status is not ContainerStatus.EXITED:
        assert time.monotonic() < deadline, f"{name} did not exit"
        await asyncio.sleep(0.05)


def _lines(table: str) -> list[list[str]]:
    """Rows split on docker's column gaps (three spaces or more)."""
    return [re.split(r"\s{3,}", line) for line in table.splitlines()]


async def test_ps_lists_running_containers_and_with_all_the_exited_one(
        cluster: Cluster) -> None:
    await _wait_exited(cluster, "done")
    await cluster.report()
    header, *rows = _lines(await pscmd.ps(cluster.client, namespace=NS, all_namespaces=False,
                                          node=None, show_all=False))
    assert header == pscmd.HEADER
    by_pod = {r[6]: r for r in rows}
    assert set(by_pod) == {"spin", "web"}
    spin_pid = cluster.runtime.container_state(meta.uid(cluster.pods["spin"]), "spin").pid
    assert by_pod["spin"][0] == str(spin_pid)
    assert by_pod["spin"][2] == '"sh -c while :; do :…"'
    assert by_pod["spin"][4].startswith("Up ")
    assert by_pod["web"][7:] == [NS, NODE, "process"]
    _, *every = _lines(await pscmd.ps(cluster.client, namespace=NS, all_namespaces=False,
                                      node=NODE, show_all=True))
    done = next(r for r in every if r[6] == "done")
    assert done[4].startswith("Exited (3) ") and done[4].endswith(" ago")
    assert (await pscmd.ps(cluster.client, namespace=NS, all_namespaces=False,
                           node="node-9", show_all=True)) == "   ".join(pscmd.HEADER)


async def test_stats_shows_the_limited_spinner_busy_within_its_limit(cluster: Cluster) -> None:
    await cluster.report()
    raw = await cluster.client.request("GET", f"/api/v1/nodes/{NODE}/proxy/healthz")
    assert raw == {"message": "ok"}  # a plain-text answer passed on as it is
    table = await statscmd.stats(cluster.client, node=None, stream=False)
    print(table)
    header, *rows = _lines(table)
    assert header == statscmd.HEADER
    by_name = {r[1]: r for r in rows}
    spin, web = by_name[f"k8s_spin_spin_{NS}"], by_name[f"k8s_web_web_{NS}"]
    spin_pid = cluster.runtime.container_state(meta.uid(cluster.pods["spin"]), "spin").pid
    assert spin[0] == str(spin_pid)
    # Read from the cgroup's counters: under a 200m quota, no more than a
    # fifth of a CPU (and part of one 100 ms period) over the second.
    cpu = float(spin[2].rstrip("%"))
    assert 0 < cpu <= 30, spin
    assert spin[3].endswith(" / 64MiB")
    machine = dockerviews.bytes_size(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    assert web[3].endswith(f" / {machine}")
    assert int(spin[5]) >= 1 and int(web[5]) >= 1
    assert f"k8s_done_done_{NS}" not in by_name  # no longer running


async def test_top_lists_the_processes_of_the_pods_container(cluster: Cluster) -> None:
    header, *rows = _lines(await topcmd.top(cluster.client, "spin", namespace=NS,
                                            container=None))
    assert header == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    spin_pid = cluster.runtime.container_state(meta.uid(cluster.pods["spin"]), "spin").pid
    mine = next(r for r in rows if r[1] == str(spin_pid))
    assert mine[0] == "root" and mine[5] == "?" and mine[7] == "sh -c while :; do :; done"
    _, *web = _lines(await topcmd.top(cluster.client, "web", namespace=NS, container="web"))
    assert web and all(r[0] == "root" for r in web)
    with pytest.raises(Exception, match="container nope is not valid"):
        await topcmd.top(cluster.client, "web", namespace=NS, container="nope")
