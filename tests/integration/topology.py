"""Throwaway data-plane topologies for the integration tests, and the clients
that send traffic through them.

A node is a network namespace with a pod bridge; pods and client pods are
namespaces on veths plugged into it; an underlay joins the node to hosts
outside the cluster. Servers run inside pods (``ip netns exec``) and answer
with their pod's name, optionally followed by the address they saw the
client come from, so a test sees both where a packet landed and whether it
was masqueraded. Every namespace comes from the ``make_netns`` fixture and
every server is killed by PID when its topology's ``with`` block ends, even
when the block fails. The nftables proxy tests share one plan, a node on an
underlay with a "web" Service, kept here with the objects they load.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Self

from netplane.api.meta import Obj

POD_GATEWAY = "10.244.1.1"
POD_PREFIXLEN = 24
SERVER_TCP_PORT, SERVER_UDP_PORT = 8080, 5353

Transport = Literal["tcp", "udp"]


class Framing(Enum):
    """How a server's TCP answer is wrapped."""

    HTTP = "http"  # the client sends a request, the answer is an HTTP/1.0 body (curl works)
    RAW = "raw"  # the server speaks first and closes: the answer is the bare text


class Reply(Enum):
    """What a server says, as a format of its name and the client address it saw."""

    NAME = "{name}"
    NAME_AND_PEER = "{name} {peer}"


@dataclass(frozen=True)
class ServerStyle:
    framing: Framing = Framing.HTTP
    tcp: Reply = Reply.NAME
    udp: Reply = Reply.NAME


# argv: name framing tcp-reply udp-reply tcp-port udp-address udp-port.
# Prints "ready" once both sockets are bound, so a caller never races it.
SERVER = r"""
import socket, sys, threading
name, framing, tcp_reply, udp_reply = sys.argv[1:5]
tcp_port, udp_ip, udp_port = int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", tcp_port))
tcp.listen(64)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((udp_ip, udp_port))
def echo():
    while True:
        _, peer = udp.recvfrom(2048)
        udp.sendto(udp_reply.format(name=name, peer=peer[0]).encode(), peer)
threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
while True:
    conn, peer = tcp.accept()
    with conn:
        body = tcp_reply.format(name=name, peer=peer[0]).encode()
        if framing == "http":
            conn.recv(4096)
            body = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        conn.sendall(body)
"""

# argv: kind address port attempts source-address source-port timeout framing.
# One line per attempt: the answer, or ERR:<errno name>. A connected socket
# takes replies only from the address it sent to, so an answer also proves
# the reply was translated back; a fixed source port keeps one conntrack flow.
PROBE = r"""
import errno, socket, sys
kind, ip, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
src, sport, timeout, framing = sys.argv[5], int(sys.argv[6]), float(sys.argv[7]), sys.argv[8]
http = kind == "tcp" and framing == "http"
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    try:
        s.bind((src, sport))
        s.connect((ip, port))
        if kind == "udp":
            s.send(b"hi")
        elif http:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        got = s.recv(4096)
        print((got.split(b"\r\n\r\n", 1)[1] if http else got).decode())
    except TimeoutError:
        print("ERR:TIMEOUT")
    except OSError as e:
        print("ERR:" + errno.errorcode.get(e.errno or 0, str(e)))
    finally:
        s.close()
"""


def sh(*argv: str, netns: str | None = None, check: bool = True) -> str:
    """Runs a command, in ``netns`` when given, and returns its output."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, *argv], check=check, capture_output=True,
                          text=True).stdout


def curl(netns: str, url: str, *, timeout: float = 3) -> subprocess.CompletedProcess[str]:
    """One HTTP request from ``netns``; the exit code tells refused (7) from timed out (28)."""
    return subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "--max-time",
                           str(timeout), url], capture_output=True, text=True,
                          timeout=timeout + 10, check=False)


def names(answers: Iterable[str]) -> set[str]:
    """Who answered: the first word of every answer."""
    return {a.split()[0] for a in answers}


# -- building blocks ---------------------------------------------------------------------


def veth(netns: str, port: str, peer_netns: str, *, peer_port: str = "eth0",
         addresses: Iterable[str] = (), peer_addresses: Iterable[str] = ()) -> None:
    """A veth pair from ``netns`` into ``peer_netns``, both ends up, with addresses (CIDR)."""
    sh("ip", "-n", netns, "link", "add", port, "type", "veth", "peer", "name", peer_port,
       "netns", peer_netns)
    for ns, dev, cidrs in ((netns, port, addresses), (peer_netns, peer_port, peer_addresses)):
        for cidr in cidrs:
            sh("ip", "-n", ns, "addr", "add", cidr, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")


def bridge(netns: str, name: str, *, address: str | None = None, mac: str | None = None) -> None:
    """A bridge, up, with an address (CIDR) when given. A fixed MAC keeps the
    bridge from taking a new one from each port plugged in."""
    sh("ip", "-n", netns, "link", "add", name, *(("address", mac) if mac else ()),
       "type", "bridge")
    if address:
        sh("ip", "-n", netns, "addr", "add", address, "dev", name)
    sh("ip", "-n", netns, "link", "set", name, "up")


def plug(netns: str, bridge_name: str, peer_netns: str, *, port: str, address: str,
         gateway: str | None = None, hairpin: bool = False) -> None:
    """Puts ``peer_netns`` on a bridge of ``netns`` through eth0 with ``address`` (CIDR)."""
    veth(netns, port, peer_netns, peer_addresses=(address,))
    sh("ip", "-n", netns, "link", "set", port, "master", bridge_name)
    if hairpin:
        # Lets a pod reach itself through its service (the pod network's job on real nodes).
        sh("ip", "-n", netns, "link", "set", port, "type", "bridge_slave", "hairpin", "on")
    if gateway:
        sh("ip", "-n", peer_netns, "route", "add", "default", "via", gateway)


def routes_via(netns: str, gateway: str, *destinations: str) -> None:
    for dst in destinations:
        sh("ip", "-n", netns, "route", "add", dst, "via", gateway)


def pod_bridge(node: str, *, name: str = "np0", mac: str | None = None) -> None:
    """The node's pod bridge with the pods' gateway; forwarding on and bridged
    traffic through netfilter, as the pod network sets them on a real node."""
    bridge(node, name, address=f"{POD_GATEWAY}/{POD_PREFIXLEN}", mac=mac)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1",
       netns=node)


def silent_uplink(node: str, *, address: str | None = None) -> None:
    """A default route via 169.254.0.2 on veth up0: the far end never claims
    the static gateway MAC, so a packet nobody handles vanishes and times out
    instead of bouncing. ``address`` (CIDR) is added to up0 as well."""
    veth(node, "up0", node, peer_port="up1",
         addresses=("169.254.0.1/30", *((address,) if address else ())))
    sh("ip", "-n", node, "neigh", "add", "169.254.0.2", "lladdr", "02:00:00:00:00:02",
       "dev", "up0", "nud", "permanent")
    sh("ip", "-n", node, "route", "add", "default", "via", "169.254.0.2")


# -- a node with pods ----------------------------------------------------------------------


@dataclass
class Topology:
    """A node netns, a client pod and server pods on its pod bridge, and the
    servers started in them (killed when ``started``'s block ends)."""

    make_netns: Callable[[str], str] = field(repr=False)
    node: str
    client: str
    bridge: str = "np0"
    style: ServerStyle = field(default_factory=ServerStyle)
    probe_timeout: float = 2.0
    ext: str = ""  # a host on the underlay, outside the cluster, in plans that have one
    pods: dict[str, str] = field(default_factory=dict)  # pod name -> netns
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    _ports: int = field(default=0, repr=False)

    @classmethod
    @contextmanager
    def started(cls, make_netns: Callable[[str], str], *, bridge: str = "np0",
                style: ServerStyle | None = None, probe_timeout: float = 2.0) -> Iterator[Self]:
        """Makes the node and client namespaces; every server started through the
        topology is killed by PID when the block ends, however it ends."""
        topo = cls(make_netns, make_netns("node"), make_netns("client"), bridge=bridge,
                   style=style or ServerStyle(), probe_timeout=probe_timeout)
        try:
            yield topo
        finally:
            for proc in topo.servers:
                proc.kill()
                proc.wait()

    def plug(self, netns: str, ip: str) -> None:
        """A pod on the node's bridge, hairpin on, default route via the bridge."""
        self._ports += 1
        plug(self.node, self.bridge, netns, port=f"veth{self._ports}",
             address=f"{ip}/{POD_PREFIXLEN}", gateway=POD_GATEWAY, hairpin=True)

    def add_pods(self, pods: Mapping[str, str]) -> None:
        """Pods by name -> IP, each in its own namespace with a server named after it."""
        for pod, ip in pods.items():
            self.pods[pod] = self.make_netns(pod)
            self.plug(self.pods[pod], ip)
            self.serve(self.pods[pod], pod)

    def serve(self, netns: str, name: str, *, tcp_port: int = SERVER_TCP_PORT,
              udp_address: str = "0.0.0.0", udp_port: int = SERVER_UDP_PORT
              ) -> subprocess.Popen[str]:
        """Starts a server answering as ``name`` and waits until it listens."""
        proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER,
                                 name, self.style.framing.value, self.style.tcp.value,
                                 self.style.udp.value, str(tcp_port), udp_address,
                                 str(udp_port)], stdout=subprocess.PIPE, text=True)
        self.servers.append(proc)  # before the check: a server that failed is killed too
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def probe(self, kind: Transport, ip: str, port: int, n: int = 1, *,
              src: str | None = None, src_ip: str = "0.0.0.0", sport: int = 0,
              timeout: float | None = None) -> list[str]:
        """``n`` connections (TCP) or datagrams (UDP) from ``src`` (the client by
        default); one answer or ERR:<errno name> per attempt."""
        out = sh(sys.executable, "-c", PROBE, kind, ip, str(port), str(n), src_ip, str(sport),
                 str(self.probe_timeout if timeout is None else timeout),
                 self.style.framing.value, netns=src or self.client)
        return out.splitlines()

    def curl(self, url: str, *, src: str | None = None,
             timeout: float = 3) -> subprocess.CompletedProcess[str]:
        return curl(src or self.client, url, timeout=timeout)

    def answers(self, url: str, n: int, *, src: str | None = None) -> list[str]:
        """``n`` HTTP answers, ERR:<curl exit code> for each that failed."""
        out = []
        for _ in range(n):
            r = self.curl(url, src=src)
            out.append(r.stdout if r.returncode == 0 else f"ERR:{r.returncode}")
        return out

    def who(self, url: str, n: int, *, src: str | None = None) -> set[str]:
        return names(self.answers(url, n, src=src))


@contextmanager
def single_node(make_netns: Callable[[str], str], *, pods: Mapping[str, str],
                client_ip: str, bridge: str = "np0", mac: str | None = None,
                node_local_ip: str | None = None, uplink_address: str | None = None,
                style: ServerStyle | None = None, probe_timeout: float = 2.0
                ) -> Iterator[Topology]:
    """A node with a silent uplink, a client pod and server pods; optionally an
    address on its loopback (node-local DNS) and one on up0 (a node IP)."""
    with Topology.started(make_netns, bridge=bridge, style=style,
                          probe_timeout=probe_timeout) as topo:
        pod_bridge(topo.node, name=bridge, mac=mac)
        silent_uplink(topo.node, address=uplink_address)
        if node_local_ip:
            sh("ip", "-n", topo.node, "addr", "add", f"{node_local_ip}/32", "dev", "lo")
        topo.plug(topo.client, client_ip)
        topo.add_pods(pods)
        yield topo


# -- a node on an underlay, and the Service it serves --------------------------------------

NODE_IP = "192.168.56.11"  # the node's eth0 on the underlay
EXT_CLIENT, EXT_OTHER = "192.168.56.100", "192.168.56.101"  # hosts outside the cluster
VIP, LB_IP, EXT_IP = "10.96.0.50", "192.168.56.200", "192.168.56.201"
PodPlan = Mapping[str, tuple[str, str]]  # pod name -> (IP, name of the node it is said to be on)
# Raw answers "<pod> <peer>" over TCP and UDP: where a packet landed, and whether masqueraded.
PEER_STYLE = ServerStyle(Framing.RAW, tcp=Reply.NAME_AND_PEER, udp=Reply.NAME_AND_PEER)


@contextmanager
def underlay_node(make_netns: Callable[[str], str], *, pods: PodPlan,
                  client_ip: str) -> Iterator[Topology]:
    """``single_node`` with eth0 holding NODE_IP on an underlay, where ``ext``
    holds EXT_CLIENT and EXT_OTHER and routes the service CIDR, LB_IP and
    EXT_IP via the node. Servers answer in PEER_STYLE; a short probe timeout
    keeps drops cheap."""
    with single_node(make_netns, pods={p: ip for p, (ip, _) in pods.items()},
                     client_ip=client_ip, mac="02:00:0a:f4:01:01", style=PEER_STYLE,
                     probe_timeout=1.5) as t:
        t.ext = make_netns("ext")
        veth(t.node, "eth0", t.ext, addresses=[f"{NODE_IP}/24"],
             peer_addresses=[f"{EXT_CLIENT}/24", f"{EXT_OTHER}/24"])
        # The lab's L2 announcer (MetalLB-style) is out of scope: plain routes.
        routes_via(t.ext, NODE_IP, "10.96.0.0/12", f"{LB_IP}/32", f"{EXT_IP}/32")
        yield t


def web_service(name: str = "web", vip: str = VIP, **spec: object) -> Obj:
    """A Service with http 80/TCP (NodePort 30080) and echo 9000/UDP (NodePort
    30090); ``spec`` adds fields, and a LoadBalancer gets LB_IP as its ingress."""
    svc: Obj = {"metadata": {"namespace": "default", "name": name},
                "spec": {"clusterIP": vip, "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                    {"name": "echo", "port": 9000, "protocol": "UDP", "nodePort": 30090}],
                    **spec}}
    if spec.get("type") == "LoadBalancer":
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}
    return svc


def web_endpoints(plan: PodPlan, *pods: str, name: str = "web") -> Obj:
    """Endpoints of Service ``name``: ``pods`` of ``plan`` serving http on
    SERVER_TCP_PORT and echo on SERVER_UDP_PORT; no subsets without pods."""
    return {"metadata": {"namespace": "default", "name": name},
            "subsets": [{"addresses": [{"ip": plan[p][0], "nodeName": plan[p][1]} for p in pods],
                         "ports": [{"name": "http", "port": SERVER_TCP_PORT, "protocol": "TCP"},
                                   {"name": "echo", "port": SERVER_UDP_PORT,
                                    "protocol": "UDP"}]}]
            if pods else []}
