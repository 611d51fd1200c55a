"""Every Service type through the iptables-mode proxy, with real traffic.

Address plan (all inside throwaway namespaces):
    lan netns     bridge br0, the underlay 192.168.56.0/24
    node netns    eth0 192.168.56.11/24 on the underlay (node_ips);
                  np0 10.244.1.1/24 (fixed MAC) for pods; forwarding on,
                  bridge traffic through iptables
    pod-a         10.244.1.2 on node-1               TCP :8080, UDP :5353
    pod-b         10.244.1.3, listed as on node-2    (a "remote" endpoint)
    client pod    10.244.1.4
    ext / denied  192.168.56.100 / .200 on the underlay; routes to the
                  LoadBalancer IP 192.168.56.240 and the external IP
                  192.168.56.241 via the node
    servers answer "<pod> <peer address>", so a test sees who answered and
    which source address the pod saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from netplane.api.meta import Obj
from netplane.proxy.conntrack import Conntrack
from netplane.proxy.iptables.apply import IptablesApplier
from netplane.proxy.iptables.proxier import Proxier
from tests.integration.topology import (
    Reply,
    ServerStyle,
    Topology,
    bridge,
    plug,
    pod_bridge,
    routes_via,
    sh,
)

pytestmark = pytest.mark.root

NODE_IP, EXT_IP, DENIED_IP = "192.168.56.11", "192.168.56.100", "192.168.56.200"
LB_IP, EXTERNAL_IP = "192.168.56.240", "192.168.56.241"
PODS = {"pod-a": "10.244.1.2", "pod-b": "10.244.1.3"}
NODES = {"pod-a": "node-1", "pod-b": "node-2"}
CLIENT_IP = "10.244.1.4"

# HTTP answers "<pod> <peer>"; UDP answers the bare pod name.
STYLE = ServerStyle(tcp=Reply.NAME_AND_PEER)
# A UDP client that always sends from the same source port: the flow a
# stale conntrack entry keeps pinned to one endpoint.
UDP_FIXED_PORT = 41000


@dataclass
class Lab(Topology):
    lan: str = ""
    denied: str = ""


def _underlay(lab: Lab) -> None:
    bridge(lab.lan, "br0")
    for ns, ip, port in ((lab.node, NODE_IP, "v-node"), (lab.ext, EXT_IP, "v-ext"),
                         (lab.denied, DENIED_IP, "v-denied")):
        plug(lab.lan, "br0", ns, port=port, address=f"{ip}/24")
    for ns in (lab.ext, lab.denied):
        routes_via(ns, NODE_IP, f"{LB_IP}/32", f"{EXTERNAL_IP}/32")


@pytest.fixture
def lab(make_netns: Callable[[str], str]) -> Iterator[Lab]:
    with Lab.started(make_netns, style=STYLE) as t:
        t.lan, t.ext, t.denied = make_netns("lan"), make_netns("ext"), make_netns("denied")
        _underlay(t)
        pod_bridge(t.node, mac="02:42:0a:f4:01:01")
        t.plug(t.client, CLIENT_IP)
        t.add_pods(PODS)
        yield t


def service(name: str, ip: str, **spec: object) -> Obj:
    ports: list[Obj] = [{"name": "http", "port": 80, "protocol": "TCP"},
                        {"name": "echo", "port": 9000, "protocol": "UDP"}]
    node_ports = spec.pop("node_ports", None)
    if isinstance(node_ports, tuple):
        for p, np in zip(ports, node_ports, strict=True):
            p["nodePort"] = np
    status = spec.pop("status", {})
    return {"kind": "Service", "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip, "ports": ports, **spec}, "status": status}


def slice_for(name: str, *pods: str) -> Obj:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "default", "name": f"{name}-1",
                         "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "echo", "port": 5353, "protocol": "UDP"}],
            "endpoints": [{"addresses": [PODS[p]], "nodeName": NODES[p],
                           "conditions": {"ready": True}} for p in pods]}


async def proxier_with(lab: Lab, *objects: Obj, cleanup: bool = True,
                       sync_period: float = 30.0, check_interval: float = 5.0) -> Proxier:
    p = Proxier(node_name="node-1", applier=IptablesApplier(netns=lab.node),
                node_ips=(NODE_IP,), conntrack=Conntrack(netns=lab.node) if cleanup else None,
                sync_period=sync_period, check_interval=check_interval)
    p.set_up()
    for obj in objects:
        if obj.get("kind") == "Service":
            p.on_service(None, obj)
        else:
            p.on_endpoints(None, obj)
    assert await p.sync()
    return p


async def test_node_port_from_outside_and_from_the_node_itself(lab: Lab) -> None:
    await proxier_with(lab, service("web", "10.96.0.50", type="NodePort",
                                    node_ports=(30080, 30090)),
                       slice_for("web", "pod-a", "pod-b"))
    assert lab.who(f"http://{NODE_IP}:30080/", 20, src=lab.ext) == {"pod-a", "pod-b"}
    for url in (f"http://{NODE_IP}:30080/", "http://127.0.0.1:30080/"):
        answers = lab.answers(url, 12, src=lab.node)
        assert {a.split(" ")[0] for a in answers} == {"pod-a", "pod-b"}, answers


async def test_load_balancer_ip_honours_source_ranges(lab: Lab) -> None:
    await proxier_with(lab, service("web", "10.96.0.50", type="LoadBalancer",
                                    node_ports=(30080, 30090),
                                    loadBalancerSourceRanges=[f"{EXT_IP}/32"],
                                    status={"loadBalancer": {"ingress": [{"ip": LB_IP}]}}),
                       slice_for("web", "pod-a", "pod-b"))
    assert lab.who(f"http://{LB_IP}/", 20, src=lab.ext) == {"pod-a", "pod-b"}
    start = time.monotonic()
    denied = lab.curl(f"http://{LB_IP}/", src=lab.denied, timeout=1)
    assert denied.returncode == 28 and time.monotonic() - start >= 0.9  # dropped: timeout


async def test_external_ip_is_served(lab: Lab) -> None:
    await proxier_with(lab, service("web", "10.96.0.50", externalIPs=[EXTERNAL_IP]),
                       slice_for("web", "pod-a", "pod-b"))
    assert lab.who(f"http://{EXTERNAL_IP}/", 20, src=lab.denied) == {"pod-a", "pod-b"}


async def test_affinity_sticks_and_without_it_traffic_spreads(lab: Lab) -> None:
    await proxier_with(lab, service("sticky", "10.96.0.51", sessionAffinity="ClientIP",
                                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
                       slice_for("sticky", "pod-a", "pod-b"),
                       service("plain", "10.96.0.52"), slice_for("plain", "pod-a", "pod-b"))
    assert len(lab.who("http://10.96.0.51/", 20, src=lab.client)) == 1
    assert lab.who("http://10.96.0.52/", 20, src=lab.client) == {"pod-a", "pod-b"}


async def test_external_policy_local_keeps_the_client_address(lab: Lab) -> None:
    await proxier_with(lab, service("web", "10.96.0.50", type="LoadBalancer",
                                    node_ports=(30080, 30090), externalTrafficPolicy="Local",
                                    status={"loadBalancer": {"ingress": [{"ip": LB_IP}]}}),
                       slice_for("web", "pod-a", "pod-b"))
    for url in (f"http://{LB_IP}/", f"http://{NODE_IP}:30080/"):
        # Only the endpoint on this node, and it sees the real client.
        assert set(lab.answers(url, 12, src=lab.ext)) == {f"pod-a {EXT_IP}"}
    # Pods are not subject to the policy.
    assert lab.who(f"http://{LB_IP}/", 20, src=lab.client) == {"pod-a", "pod-b"}


async def test_external_policy_local_without_local_endpoint_drops(lab: Lab) -> None:
    await proxier_with(lab, service("web", "10.96.0.50", type="NodePort",
                                    node_ports=(30080, 30090), externalTrafficPolicy="Local"),
                       slice_for("web", "pod-b"))
    assert lab.curl(f"http://{NODE_IP}:30080/", src=lab.ext, timeout=1).returncode == 28


async def test_internal_policy_local(lab: Lab) -> None:
    await proxier_with(lab, service("web", "10.96.0.50", internalTrafficPolicy="Local"),
                       slice_for("web", "pod-a", "pod-b"))
    assert set(lab.answers("http://10.96.0.50/", 12, src=lab.client)) == \
        {f"pod-a {CLIENT_IP}"}  # the client pod's own address, not masqueraded


async def test_hairpin_through_a_node_port(lab: Lab) -> None:
    await proxier_with(lab, service("web", "10.96.0.50", type="NodePort",
                                    node_ports=(30080, 30090)), slice_for("web", "pod-a"))
    assert lab.who(f"http://{NODE_IP}:30080/", 5, src=lab.pods["pod-a"]) == {"pod-a"}


async def test_node_port_without_endpoints_is_refused_at_once(lab: Lab) -> None:
    await proxier_with(lab, service("web", "10.96.0.50", type="NodePort",
                                    node_ports=(30080, 30090)))
    # curl's 7 is a refused connection; a dropped one would time out (28).
    assert lab.curl(f"http://{NODE_IP}:30080/", src=lab.ext).returncode == 7
    assert lab.curl("http://10.96.0.50/", src=lab.client).returncode == 7


def udp_fixed(lab: Lab) -> str:
    [answer] = lab.probe("udp", "10.96.0.50", 9000, sport=UDP_FIXED_PORT, timeout=1)
    return answer


@pytest.mark.parametrize("cleanup", [False, True])
async def test_udp_flow_moves_off_a_removed_endpoint_only_with_cleanup(lab: Lab,
                                                                        cleanup: bool) -> None:
    proxier = await proxier_with(lab, service("web", "10.96.0.50"),
                                 slice_for("web", "pod-a", "pod-b"), cleanup=cleanup)
    first = udp_fixed(lab)
    assert first in PODS
    other = next(p for p in PODS if p != first)
    proxier.on_endpoints(slice_for("web", "pod-a", "pod-b"), slice_for("web", other))
    assert await proxier.sync()
    # The removed pod still runs; only conntrack decides where the flow goes.
    got = [udp_fixed(lab) for _ in range(3)]
    assert got == [other] * 3 if cleanup else got == [first] * 3


async def test_udp_service_getting_its_first_endpoint_starts_answering(lab: Lab) -> None:
    proxier = await proxier_with(lab, service("web", "10.96.0.50"))
    assert udp_fixed(lab).startswith("ERR")
    proxier.on_endpoints(None, slice_for("web", "pod-a"))
    assert await proxier.sync()
    assert udp_fixed(lab) == "pod-a"


async def test_flushed_nat_table_is_restored_by_the_running_proxy(lab: Lab) -> None:
    import asyncio
    proxier = await proxier_with(lab, service("web", "10.96.0.50"), slice_for("web", "pod-a"),
                                 sync_period=60.0, check_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(proxier.run(stop))
    try:
        sh("iptables", "-w", "-t", "nat", "-F", netns=lab.node)
        assert lab.curl("http://10.96.0.50/", src=lab.client, timeout=0.5).returncode != 0
        deadline = time.monotonic() + 60  # a hang guard, not a speed bound
        while lab.curl("http://10.96.0.50/", src=lab.client, timeout=0.5).returncode != 0:
            assert time.monotonic() < deadline, "rules were not restored"
            await asyncio.sleep(0.1)
        assert proxier.drift_repairs >= 1
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


def our_nat_rules(lab: Lab) -> set[str]:
    return {line for line in sh("iptables-save", "-t", "nat", netns=lab.node).splitlines()
            if line.startswith(("-A NP-", ":NP-"))}


async def test_partial_sync_changes_only_the_changed_service(lab: Lab) -> None:
    proxier = await proxier_with(lab, service("web", "10.96.0.50"),
                                 slice_for("web", "pod-a", "pod-b"),
                                 service("other", "10.96.0.51"),
                                 slice_for("other", "pod-a", "pod-b"))
    before = our_nat_rules(lab)
    proxier.on_endpoints(slice_for("web", "pod-a", "pod-b"), slice_for("web", "pod-b"))
    assert await proxier.sync()
    assert proxier.partial_syncs == 1
    after = our_nat_rules(lab)
    changed = {line.split('"')[1].split(":")[0] for line in before ^ after if '"' in line}
    assert changed == {"default/web"}
    assert lab.who("http://10.96.0.50/", 8, src=lab.client) == {"pod-b"}
    assert lab.who("http://10.96.0.51/", 16, src=lab.client) == {"pod-a", "pod-b"}
    assert proxier.describe(check_kernel=True)["kernelMatches"] is True
