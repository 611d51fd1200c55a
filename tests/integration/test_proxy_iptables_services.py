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

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from netplane.api.meta import Obj
from netplane.proxy.apply import IptablesApplier
from netplane.proxy.conntrack import Conntrack
from netplane.proxy.proxier import Proxier

pytestmark = pytest.mark.root

NODE_IP, EXT_IP, DENIED_IP = "192.168.56.11", "192.168.56.100", "192.168.56.200"
LB_IP, EXTERNAL_IP = "192.168.56.240", "192.168.56.241"
PODS = {"pod-a": "10.244.1.2", "pod-b": "10.244.1.3"}
NODES = {"pod-a": "node-1", "pod-b": "node-2"}
CLIENT_IP = "10.244.1.4"

SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", 8080))
tcp.listen(64)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 5353))
def echo():
    while True:
        _, peer = udp.recvfrom(2048)
        udp.sendto(name.encode(), peer)
threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
while True:
    conn, peer = tcp.accept()
    with conn:
        conn.recv(4096)
        body = f"{name} {peer[0]}".encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
"""

# A UDP client that always sends from the same source port: the flow a
# stale conntrack entry keeps pinned to one endpoint.
UDP_FIXED_PORT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 41000))
s.settimeout(1)
s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
try:
    print(s.recv(2048).decode())
except TimeoutError:
    print("ERR:TIMEOUT")
"""


def sh(*argv: str, netns: str | None = None, check: bool = True) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, *argv], check=check, capture_output=True,
                          text=True).stdout


@dataclass
class Lab:
    lan: str
    node: str
    ext: str
    denied: str
    client: str = ""
    pods: dict[str, str] = field(default_factory=dict)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def curl(self, url: str, *, src: str, timeout: float = 2) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", src, "curl", "-s", "--max-time",
                               str(timeout), url], capture_output=True, text=True, check=False)

    def answers(self, url: str, n: int, *, src: str) -> list[str]:
        out = []
        for _ in range(n):
            r = self.curl(url, src=src)
            out.append(r.stdout if r.returncode == 0 else f"ERR:{r.returncode}")
        return out

    def who(self, url: str, n: int, *, src: str) -> set[str]:
        return {a.split(" ")[0] for a in self.answers(url, n, src=src)}


def _veth_to_bridge(bridge_ns: str, bridge: str, other: str, name: str, ip: str) -> None:
    sh("ip", "-n", bridge_ns, "link", "add", name, "type", "veth", "peer", "name", "eth0",
       "netns", other)
    sh("ip", "-n", bridge_ns, "link", "set", name, "master", bridge, "up")
    sh("ip", "-n", other, "addr", "add", ip, "dev", "eth0")
    sh("ip", "-n", other, "link", "set", "eth0", "up")


def _build(lab: Lab, make_netns: Callable[[str], str]) -> None:
    sh("ip", "-n", lab.lan, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", lab.lan, "link", "set", "br0", "up")
    for ns, ip, port in ((lab.node, NODE_IP, "v-node"), (lab.ext, EXT_IP, "v-ext"),
                         (lab.denied, DENIED_IP, "v-denied")):
        _veth_to_bridge(lab.lan, "br0", ns, port, f"{ip}/24")
    for ns in (lab.ext, lab.denied):
        for ip in (LB_IP, EXTERNAL_IP):
            sh("ip", "-n", ns, "route", "add", f"{ip}/32", "via", NODE_IP)
    sh("ip", "-n", lab.node, "link", "add", "np0", "address", "02:42:0a:f4:01:01",
       "type", "bridge")
    sh("ip", "-n", lab.node, "addr", "add", "10.244.1.1/24", "dev", "np0")
    sh("ip", "-n", lab.node, "link", "set", "np0", "up")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1",
       netns=lab.node)
    lab.client = make_netns("client")
    members = {"client": (lab.client, CLIENT_IP)}
    for pod, ip in PODS.items():
        lab.pods[pod] = make_netns(pod)
        members[pod] = (lab.pods[pod], ip)
    for i, (ns, ip) in enumerate(members.values()):
        _veth_to_bridge(lab.node, "np0", ns, f"veth{i}", f"{ip}/24")
        sh("ip", "-n", lab.node, "link", "set", f"veth{i}", "type", "bridge_slave",
           "hairpin", "on")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.244.1.1")


@pytest.fixture
def lab(make_netns: Callable[[str], str]) -> Iterator[Lab]:
    t = Lab(lan=make_netns("lan"), node=make_netns("node"), ext=make_netns("ext"),
            denied=make_netns("denied"))
    try:
        _build(t, make_netns)
        for pod, ns in t.pods.items():
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER,
                                     pod], stdout=subprocess.PIPE, text=True)
            t.servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield t
    finally:
        for proc in t.servers:
            proc.kill()
            proc.wait()


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
    start = time.monotonic()
    assert lab.curl(f"http://{NODE_IP}:30080/", src=lab.ext).returncode == 7
    assert lab.curl("http://10.96.0.50/", src=lab.client).returncode == 7
    assert time.monotonic() - start < 1.5


def udp_fixed(lab: Lab) -> str:
    return sh(sys.executable, "-c", UDP_FIXED_PORT, "10.96.0.50", "9000",
              netns=lab.client).strip()


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
        deadline = time.monotonic() + 5
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
