"""The mesh's capture in a real kernel: an enrolled pod's connection to a
Service address is redirected in the node's namespace to the node's L7
proxy, which reads where it was going (SO_ORIGINAL_DST), routes it by the
HTTPRoute whose parent is that Service, and sends it to a pod. A
connection to a port that does not speak HTTP goes to the L4 proxy on
:15002, which carries it whole to an endpoint.

Address plan (all inside throwaway namespaces):
    node netns    np0 10.244.1.1/24 (pod bridge); the proxy on :15001
    v1, v2        10.244.1.11, 10.244.1.12: servers on :8080 answering
                  their name
    client        10.244.1.2, enrolled (its connections are captured)
    services      shop/web 10.96.0.50:80 (the route's parent; no pods of
                  its own), shop/web-v1 and shop/web-v2 (-> 8080 of v1, v2),
                  shop/raw 10.96.0.53:9000, port "tcp" (-> 8080 of v1)
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netplane.api.meta import Obj
from netplane.mesh import capture
from tests.integration.topology import Topology, single_node

pytestmark = pytest.mark.root

PODS = {"v1": "10.244.1.11", "v2": "10.244.1.12"}
CLIENT_IP = "10.244.1.2"
VIP = "10.96.0.50"
RAW_VIP = "10.96.0.53"

# argv: a JSON file of objects. Serves the mesh proxy on 0.0.0.0:15001 and
# the L4 one on :15002;
# prints "ready" once listening.
PROXY = r"""
import asyncio, json, sys
from netplane.mesh import config, passthrough, proxy
objs = json.load(open(sys.argv[1]))
async def main():
    p = proxy.Proxy()
    p.apply(config.build(objs["routes"], objs["services"], objs["slices"],
                         pods=objs["pods"]))
    server = await proxy.serve(p, "0.0.0.0", 15001)
    streams = await passthrough.Passthrough(p).serve("0.0.0.0", 15002)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def service(name: str, ip: str, port: int = 80, port_name: str = "http") -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"clusterIP": ip, "ports": [{"name": port_name, "port": port,
                                                 "targetPort": 8080}]}}


def endpoints(svc: str, ip: str, port_name: str = "http") -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-1", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": port_name, "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]}


OBJECTS = {
    "services": [service("web", VIP), service("web-v1", "10.96.0.51"),
                 service("web-v2", "10.96.0.52"), service("raw", RAW_VIP, 9000, "tcp")],
    "slices": [endpoints("web-v1", PODS["v1"]), endpoints("web-v2", PODS["v2"]),
               endpoints("raw", PODS["v1"], "tcp")],
    "pods": [{"metadata": {"name": "client", "namespace": "front"},
              "status": {"podIPs": [{"ip": CLIENT_IP}]}}],
    "routes": [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "canary", "namespace": "shop"},
                "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web",
                                         "port": 80}],
                         "rules": [{"matches": [{"headers": [{"name": "x-canary",
                                                              "value": "1"}]}],
                                    "backendRefs": [{"name": "web-v2", "port": 80}]},
                                   {"backendRefs": [{"name": "web-v1", "port": 80}]}]}}],
}


def nft(netns: str, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, text=True,
                   check=True, capture_output=True)


@pytest.fixture
def meshed(make_netns: Callable[[str], str], tmp_path: Path) -> Iterator[Topology]:
    with single_node(make_netns, pods=PODS, client_ip=CLIENT_IP) as topo:
        nft(topo.node, capture.render([CLIENT_IP], [(VIP, 80)], [(RAW_VIP, 9000)]))
        objs = tmp_path / "objects.json"
        objs.write_text(json.dumps(OBJECTS))
        proc = subprocess.Popen(["ip", "netns", "exec", topo.node, sys.executable, "-c", PROXY,
                                 str(objs)], stdout=subprocess.PIPE, text=True)
        topo.servers.append(proc)  # killed by PID with the topology's servers
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield topo


def body(topo: Topology, url: str, *headers: str) -> str:
    args = [a for h in headers for a in ("-H", h)]
    out = subprocess.run(["ip", "netns", "exec", topo.client, "curl", "-sS", "--max-time", "5",
                          *args, url], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else f"ERR:{out.returncode}:{out.stderr}"


def test_a_captured_connection_is_routed_by_its_services_http_route(meshed: Topology) -> None:
    assert {body(meshed, f"http://{VIP}/") for _ in range(5)} == {"v1"}
    assert {body(meshed, f"http://{VIP}/", "x-canary: 1") for _ in range(5)} == {"v2"}
    table = subprocess.run(["ip", "netns", "exec", meshed.node, "nft", "list", "table", "ip",
                            capture.TABLE], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in table.splitlines() if "redirect to :15001" in ln)
    assert "counter packets 0" not in line


def test_a_port_that_is_not_http_is_carried_whole_by_the_l4_proxy(meshed: Topology) -> None:
    # The bytes happen to be HTTP; the L4 proxy neither knows nor cares.
    assert {body(meshed, f"http://{RAW_VIP}:9000/") for _ in range(3)} == {"v1"}
    table = subprocess.run(["ip", "netns", "exec", meshed.node, "nft", "list", "table", "ip",
                            capture.TABLE], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in table.splitlines() if "redirect to :15002" in ln)
    assert "@streams" in line and "counter packets 0" not in line


def test_other_destinations_keep_the_kernel_path(meshed: Topology) -> None:
    # A pod address is no captured target: the client reaches v1 itself.
    assert body(meshed, f"http://{PODS['v1']}:8080/") == "v1"


def test_the_table_goes_as_a_whole(meshed: Topology) -> None:
    nft(meshed.node, capture.clean_up_script())
    listed = subprocess.run(["ip", "netns", "exec", meshed.node, "nft", "list", "tables"],
                            capture_output=True, text=True, check=True).stdout
    assert capture.TABLE not in listed
    nft(meshed.node, capture.render([], []))  # empty sets render too
