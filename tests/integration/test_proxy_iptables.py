"""iptables-mode proxy in a real kernel: curl a ClusterIP from a pod namespace.

Address plan (all inside throwaway namespaces):
    node netns   br0 10.244.1.1/24; default route via 169.254.0.2 on veth up0,
                 a gateway that never answers (so a packet nobody handles
                 vanishes and times out, it does not bounce);
                 node-local DNS 10.96.0.10 on lo
    pod-a netns  eth0 10.244.1.2/24   HTTP :8080, UDP echo :5353, answers "pod-a"
    pod-b netns  eth0 10.244.1.3/24   same, answers "pod-b"
    client netns eth0 10.244.1.4/24
    every pod:   default via 10.244.1.1
    default/web  ClusterIP 10.96.0.50: http 80/TCP -> 8080, echo 9000/UDP -> 5353
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from netplane.api.meta import Obj
from netplane.proxy.apply import Backend, IptablesApplier
from netplane.proxy.iptables import ProxyConfig, endpoint_chain, service_chain
from netplane.proxy.model import Protocol, ServicePortName
from netplane.proxy.proxier import Proxier

pytestmark = pytest.mark.root

VIP = "10.96.0.50"
DNS_IP = "10.96.0.10"
PODS = {"pod-a": "10.244.1.2", "pod-b": "10.244.1.3"}
CLIENT_IP = "10.244.1.4"
HTTP = ServicePortName("default", "web", "http", Protocol.TCP)

SERVER = r"""
import socket, sys, threading
name = sys.argv[1].encode()
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", int(sys.argv[2])))
tcp.listen(64)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((sys.argv[3], int(sys.argv[4])))
def echo():
    while True:
        _, peer = udp.recvfrom(2048)
        udp.sendto(name, peer)
threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
while True:
    conn, _ = tcp.accept()
    with conn:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
"""

# One line per attempt: the answer, or the errno name. A connected socket
# only accepts replies from the address it sent to, so an answer proves
# the reply was translated back to the ClusterIP.
PROBE = r"""
import errno, socket, sys
kind, ip, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.connect((ip, port))
        if kind == "tcp":
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            print(s.recv(4096).split(b"\r\n\r\n", 1)[1].decode())
        else:
            s.send(b"hi")
            print(s.recv(2048).decode())
    except TimeoutError:
        print("ERR:TIMEOUT")
    except OSError as e:
        print("ERR:" + errno.errorcode.get(e.errno or 0, str(e)))
    finally:
        s.close()
"""


def sh(*argv: str, netns: str | None = None) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, *argv], check=True, capture_output=True, text=True).stdout


@dataclass
class Topology:
    node: str
    client: str
    pods: dict[str, str] = field(default_factory=dict)  # pod name -> netns
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def probe(self, kind: str, ip: str, port: int, n: int, *, src: str | None = None) -> list[str]:
        out = sh(sys.executable, "-c", PROBE, kind, ip, str(port), str(n),
                 netns=src or self.client)
        return out.splitlines()

    def curl(self, url: str, *, src: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", src or self.client, "curl", "-s",
                               "--max-time", "3", url], capture_output=True, text=True,
                              check=False)

    def nat_rules(self, backend: Backend = Backend.NFT) -> str:
        return sh(f"iptables-{backend}-save", "-t", "nat", netns=self.node)


def _attach(node: str, pod_ns: str, ip: str, port_name: str) -> None:
    sh("ip", "-n", node, "link", "add", port_name, "type", "veth", "peer", "name", "eth0",
       "netns", pod_ns)
    sh("ip", "-n", node, "link", "set", port_name, "master", "br0", "up")
    # Hairpin lets a pod reach itself through its service (net's job on real nodes).
    sh("ip", "-n", node, "link", "set", port_name, "type", "bridge_slave", "hairpin", "on")
    sh("ip", "-n", pod_ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    sh("ip", "-n", pod_ns, "link", "set", "eth0", "up")
    sh("ip", "-n", pod_ns, "route", "add", "default", "via", "10.244.1.1")


def _node(node: str) -> None:
    sh("ip", "-n", node, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", node, "addr", "add", "10.244.1.1/24", "dev", "br0")
    sh("ip", "-n", node, "link", "set", "br0", "up")
    sh("ip", "-n", node, "addr", "add", f"{DNS_IP}/32", "dev", "lo")
    # A silent black hole behind a real route: the far end of a veth never
    # claims the static gateway MAC, so unhandled packets are lost quietly.
    sh("ip", "-n", node, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    sh("ip", "-n", node, "link", "set", "up0", "up")
    sh("ip", "-n", node, "link", "set", "up1", "up")
    sh("ip", "-n", node, "addr", "add", "169.254.0.1/30", "dev", "up0")
    sh("ip", "-n", node, "neigh", "add", "169.254.0.2", "lladdr", "02:00:00:00:00:02",
       "dev", "up0", "nud", "permanent")
    sh("ip", "-n", node, "route", "add", "default", "via", "169.254.0.2")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1",
       netns=node)


def _serve(netns: str, name: str, udp_ip: str = "0.0.0.0", udp_port: int = 5353,
           tcp_port: int = 8080) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER, name,
                             str(tcp_port), udp_ip, str(udp_port)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topology]:
    t = Topology(node=make_netns("node"), client=make_netns("client"))
    try:
        _node(t.node)
        _attach(t.node, t.client, CLIENT_IP, "veth-client")
        for i, (pod, ip) in enumerate(PODS.items()):
            t.pods[pod] = make_netns(pod)
            _attach(t.node, t.pods[pod], ip, f"veth-{i}")
            t.servers.append(_serve(t.pods[pod], pod))
        yield t
    finally:
        for proc in t.servers:
            proc.kill()
            proc.wait()


def web_service() -> Obj:
    return {"metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": VIP, "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "echo", "port": 9000, "protocol": "UDP"}]}}


def web_endpoints(*pods: str) -> Obj:
    return {"metadata": {"namespace": "default", "name": "web"},
            "subsets": [{"addresses": [{"ip": PODS[p], "nodeName": "node-1"} for p in pods],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                   {"name": "echo", "port": 5353, "protocol": "UDP"}]}]
            if pods else []}


def proxier_for(t: Topology, backend: Backend | None = None,
                config: ProxyConfig | None = None) -> Proxier:
    p = Proxier(node_name="node-1", applier=IptablesApplier(netns=t.node, backend=backend),
                config=config)
    p.set_up()
    p.on_service(None, web_service())
    return p


@pytest.mark.parametrize("backend", [Backend.NFT, Backend.LEGACY])
async def test_cluster_ip_balances_tcp_and_udp(topo: Topology, backend: Backend) -> None:
    proxier = proxier_for(topo, backend)
    proxier.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    assert await proxier.sync()
    assert f":{service_chain(HTTP)} " in topo.nat_rules(backend)
    answers = [topo.curl(f"http://{VIP}/") for _ in range(30)]
    assert all(a.returncode == 0 for a in answers), [a.stderr for a in answers]
    assert {a.stdout for a in answers} == {"pod-a", "pod-b"}
    assert set(topo.probe("udp", VIP, 9000, 30)) == {"pod-a", "pod-b"}
    proxier.clean_up()


async def test_removed_endpoint_loses_its_chain_and_traffic(topo: Topology) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    await proxier.sync()
    gone = endpoint_chain(HTTP, f"{PODS['pod-a']}:8080")
    assert f":{gone} " in topo.nat_rules()
    proxier.on_endpoints(web_endpoints("pod-a", "pod-b"), web_endpoints("pod-b"))
    assert await proxier.sync()
    assert gone not in topo.nat_rules()
    assert set(topo.probe("tcp", VIP, 80, 15)) == {"pod-b"}
    assert set(topo.probe("udp", VIP, 9000, 15)) == {"pod-b"}


async def test_service_without_endpoints_refuses_at_once(topo: Topology) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a"))
    await proxier.sync()
    proxier.on_endpoints(web_endpoints("pod-a"), web_endpoints())
    assert await proxier.sync()
    start = time.monotonic()
    result = topo.curl(f"http://{VIP}/")
    assert result.returncode == 7 and time.monotonic() - start < 1.5  # 7: could not connect
    assert topo.probe("tcp", VIP, 80, 1) == ["ERR:ECONNREFUSED"]
    assert topo.probe("udp", VIP, 9000, 1) == ["ERR:ECONNREFUSED"]


async def test_hairpin_pod_reaches_itself_through_its_service(topo: Topology) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    await proxier.sync()
    answers = topo.probe("tcp", VIP, 80, 30, src=topo.pods["pod-a"])
    assert set(answers) == {"pod-a", "pod-b"}


async def test_node_local_dns_is_not_tracked(topo: Topology) -> None:
    topo.servers.append(_serve(topo.node, "dns", udp_ip=DNS_IP, udp_port=53, tcp_port=8053))
    proxier = proxier_for(topo, config=ProxyConfig(notrack_dns_ips=(DNS_IP,)))
    await proxier.sync()
    assert topo.probe("udp", DNS_IP, 53, 3) == ["dns"] * 3
    tracked = subprocess.run(["ip", "netns", "exec", topo.node, "conntrack", "-L", "-p", "udp",
                              "--orig-dst", DNS_IP], capture_output=True, text=True, check=False)
    assert DNS_IP not in tracked.stdout


async def test_clean_up_leaves_no_chain_or_jump_of_ours(topo: Topology) -> None:
    proxier = proxier_for(topo)
    proxier.on_endpoints(None, web_endpoints("pod-a", "pod-b"))
    await proxier.sync()
    assert "NP-" in sh("iptables-save", netns=topo.node)
    proxier.clean_up()
    assert "NP-" not in sh("iptables-save", netns=topo.node)
    assert "NP-" not in sh("iptables-legacy-save", netns=topo.node)
