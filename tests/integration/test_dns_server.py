"""The DNS server over real sockets: dig against a server process inside a
throwaway network namespace, a fake upstream in a second namespace, and an
in-process server on loopback for the robustness cases (fuzzing, floods of
silent TCP connections, idle timeouts).

Address plan:

    netns npt-dns-*:  lo 127.0.0.1/8 + 10.96.0.10/32 (the cluster DNS IP)
                      server on 10.96.0.10:53 (udp, tcp); dig runs there too
                      veth up0 192.0.2.1/24 (only in the forwarding test)
    netns npt-up-*:   veth up1 192.0.2.53/24, fake upstream on 192.0.2.53:53
                      answering every name with A 198.51.100.7 (TTL 300)
    root netns:       in-process server on 127.0.0.1:<free port>
    objects:          web.default  ClusterIP 10.96.0.20, port http/80
                      db.data      ClusterIP 10.96.0.30
                      many.default headless, 120 ready endpoints 10.244.1.1-120
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from netplane.api.meta import Obj
from netplane.dns.index import RecordIndex
from netplane.dns.server import DNSServer

pytestmark = pytest.mark.root

DNS_IP = "10.96.0.10"
UPSTREAM_IP = "192.0.2.53"
REPO = Path(__file__).resolve().parents[2]

# The server process: builds an index from argv, serves, then reads commands
# from stdin (an informer event as JSON, or "stats") so a test can drive it live.
SERVER_SCRIPT = """
import asyncio, json, sys
from netplane.dns.index import RecordIndex
from netplane.dns.server import run

def handler(index, kind):
    return {"Service": index.on_service, "EndpointSlice": index.on_endpointslice,
            "Endpoints": index.on_endpoints, "Pod": index.on_pod}[kind]

def report(server):
    print(json.dumps({"port": server.port}), flush=True)
    asyncio.get_running_loop().create_task(commands(server))

def stats(server):
    m = server.metrics
    by_transport = {}
    for (transport, _, _), value in m.requests.values.items():
        by_transport[transport] = by_transport.get(transport, 0) + int(value)
    return {"requests": by_transport, "tcp_accepted": int(m.tcp_connections.get("accepted")),
            "cache_hits": int(m.cache.get("hit")), "forwards": int(m.forwards.total())}

async def commands(server):
    loop = asyncio.get_running_loop()
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if line == "stats":
            print(json.dumps(stats(server)), flush=True)
        else:
            event = json.loads(line)
            handler(server.index, event["kind"])(event.get("prev"), event.get("cur"))
            print(json.dumps({"version": server.index.version}), flush=True)

index = RecordIndex()
for obj in json.loads(sys.argv[1]):
    handler(index, obj["kind"])(None, obj)
run(index, address=sys.argv[2], port=53, ready=report, **json.loads(sys.argv[3]))
"""

# A resolver that knows every name (A 198.51.100.7), for the forwarding test.
UPSTREAM_SCRIPT = """
import socket, sys
from dnslib import A, QTYPE, RR, DNSRecord
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    data, addr = sock.recvfrom(4096)
    query = DNSRecord.parse(data)
    reply = query.reply()
    reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("198.51.100.7"), ttl=300))
    sock.sendto(reply.pack(), addr)
"""


def service(name: str, namespace: str, cluster_ip: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip,
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


MANY = [f"10.244.1.{i}" for i in range(1, 121)]
OBJECTS: list[Obj] = [
    service("web", "default", "10.96.0.20"), service("db", "data", "10.96.0.30"),
    {**service("many", "default", "None")},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
     "metadata": {"name": "many-a", "namespace": "default",
                  "labels": {"kubernetes.io/service-name": "many"}},
     "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in MANY]},
]


class ServerProcess:
    """The DNS server running in a namespace, driven through its stdin."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"server exited: {self.proc.wait(5)}"
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()


def start_server(ns: str, **options: Any) -> ServerProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER_SCRIPT,
         json.dumps(OBJECTS), DNS_IP, json.dumps(options)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    server = ServerProcess(proc)
    try:
        assert server.read() == {"port": 53}
    except BaseException:
        stop(proc)
        raise
    return server


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)


def dns_namespace(make_netns: Callable[[str], str]) -> str:
    ns = make_netns("dns")
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{DNS_IP}/32", "dev", "lo"], check=True)
    return ns


@pytest.fixture
def dns_netns(make_netns: Callable[[str], str]) -> Iterator[tuple[str, ServerProcess]]:
    ns = dns_namespace(make_netns)
    server = start_server(ns)
    try:
        yield ns, server
    finally:
        stop(server.proc)


def dig(ns: str, *args: str) -> str:
    cmd = ["ip", "netns", "exec", ns, "dig", f"@{DNS_IP}", "+tries=1", "+time=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout


def flat(text: str) -> str:
    return " ".join(text.split())


def test_dig_gets_a_record_over_udp(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, _ = dns_netns
    out = dig(ns, "web.default.svc.cluster.local", "A")
    assert "status: NOERROR" in out
    assert "flags: qr aa rd;" in out
    assert "web.default.svc.cluster.local. 5 IN A 10.96.0.20" in flat(out)


def test_dig_gets_a_record_over_tcp(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, server = dns_netns
    assert dig(ns, "+tcp", "+short", "DB.Data.svc.cluster.local").split() == ["10.96.0.30"]
    assert server.send("stats")["requests"] == {"tcp": 1}


def test_srv_ptr_and_negative_answers(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, _ = dns_netns
    srv = dig(ns, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert "SRV 0 100 80 web.default.svc.cluster.local." in flat(srv)
    assert "ADDITIONAL SECTION: web.default.svc.cluster.local. 5 IN A 10.96.0.20" in flat(srv)
    assert dig(ns, "+short", "-x", "10.96.0.20").split() == ["web.default.svc.cluster.local."]
    nx = dig(ns, "missing.default.svc.cluster.local", "A")
    assert "status: NXDOMAIN" in nx
    assert "cluster.local. 5 IN SOA ns.dns.cluster.local." in flat(nx)
    nodata = dig(ns, "web.default.svc.cluster.local", "AAAA")
    assert "status: NOERROR" in nodata and "ANSWER: 0" in nodata and "AUTHORITY: 1" in nodata
    assert "status: REFUSED" in dig(ns, "example.com", "A")


def test_edns_size_truncation_and_tcp_fallback(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, _ = dns_netns
    name = "many.default.svc.cluster.local"
    udp = dig(ns, "+ignore", "+bufsize=1232", name)  # +ignore: show the truncated reply
    assert "flags: qr aa tc rd;" in udp and "ANSWER: 0" in udp
    assert "; EDNS: version: 0, flags:; udp: 1232" in udp
    plain = dig(ns, "+ignore", "+noedns", name)
    assert "flags: qr aa tc rd;" in plain and "OPT PSEUDOSECTION" not in plain
    # dig retries over TCP by itself when it sees TC, and gets every record.
    retried = dig(ns, "+short", name)
    assert sorted(retried.split()) == sorted(MANY)
    assert sorted(dig(ns, "+tcp", "+short", name).split()) == sorted(MANY)
    small = dig(ns, "+bufsize=4096", "web.default.svc.cluster.local")
    assert "flags: qr aa rd;" in small and "udp: 1232" in small


def test_several_queries_share_one_tcp_connection(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, server = dns_netns
    out = dig(ns, "+tcp", "+keepopen", "+short", "web.default.svc.cluster.local",
              "db.data.svc.cluster.local", "web.default.svc.cluster.local")
    assert out.split() == ["10.96.0.20", "10.96.0.30", "10.96.0.20"]
    stats = server.send("stats")
    assert stats["requests"] == {"tcp": 3}
    assert stats["tcp_accepted"] == 1


def test_informer_events_change_answers_live(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, server = dns_netns
    api = service("api", "default", "10.96.0.40")
    assert server.send(json.dumps({"kind": "Service", "cur": api}))["version"] > 0
    assert dig(ns, "+short", "api.default.svc.cluster.local").split() == ["10.96.0.40"]
    assert dig(ns, "+short", "-x", "10.96.0.40").split() == ["api.default.svc.cluster.local."]
    server.send(json.dumps({"kind": "Service", "prev": OBJECTS[0]}))
    assert "status: NXDOMAIN" in dig(ns, "web.default.svc.cluster.local")
    assert "status: NXDOMAIN" in dig(ns, "-x", "10.96.0.20")


def test_outside_names_go_to_the_upstream_in_another_namespace(
        make_netns: Callable[[str], str]) -> None:
    ns = dns_namespace(make_netns)
    up = make_netns("up")
    subprocess.run(["ip", "-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1",
                    "netns", up], check=True)
    for where, dev, ip in ((ns, "up0", "192.0.2.1"), (up, "up1", UPSTREAM_IP)):
        subprocess.run(["ip", "-n", where, "addr", "add", f"{ip}/24", "dev", dev], check=True)
        subprocess.run(["ip", "-n", where, "link", "set", dev, "up"], check=True)
    upstream = subprocess.Popen(["ip", "netns", "exec", up, sys.executable, "-c",
                                 UPSTREAM_SCRIPT, UPSTREAM_IP], stdout=subprocess.PIPE, text=True)
    try:
        assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
        server = start_server(ns, upstreams=[f"{UPSTREAM_IP}:53"])
        try:
            first = dig(ns, "www.example.org", "A")
            assert "www.example.org. 300 IN A 198.51.100.7" in flat(first)
            assert "flags: qr rd ra;" in first  # forwarded: not authoritative
            assert dig(ns, "+short", "www.example.org").split() == ["198.51.100.7"]
            assert dig(ns, "+short", "web.default.svc.cluster.local").split() == ["10.96.0.20"]
            stats = server.send("stats")
            assert (stats["forwards"], stats["cache_hits"]) == (1, 1)
        finally:
            stop(server.proc)
    finally:
        stop(upstream)


# In-process server on loopback: robustness of the transports.

@pytest.fixture
async def loopback_server() -> AsyncIterator[DNSServer]:
    index = RecordIndex()
    for obj in OBJECTS[:2]:
        index.on_service(None, obj)
    server = DNSServer(index, address="127.0.0.1", port=0, tcp_idle_timeout=0.5,
                       max_tcp_connections=50)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def udp_exchange(port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, data)
        return await asyncio.wait_for(loop.sock_recv(sock, 4096), 2)


async def tcp_query(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    data: bytes) -> DNSRecord:
    writer.write(len(data).to_bytes(2, "big") + data)
    await writer.drain()
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 2), "big")
    return DNSRecord.parse(await reader.readexactly(size))


def query(name: str, qtype: str = "A") -> bytes:
    return bytes(DNSRecord.question(name, qtype).pack())


async def answers_normally(server: DNSServer) -> None:
    good = DNSRecord.parse(await udp_exchange(server.port, query("web.default.svc.cluster.local")))
    assert [str(rr.rdata) for rr in good.rr] == ["10.96.0.20"]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        reply = await tcp_query(reader, writer, query("db.data.svc.cluster.local"))
        assert [str(rr.rdata) for rr in reply.rr] == ["10.96.0.30"]
    finally:
        writer.close()


def fuzz_packets(count: int, seed: int) -> Iterator[bytes]:
    """Random bytes, mutated and cut queries, compression loops, oversized names."""
    rng = random.Random(seed)
    good = query("web.default.svc.cluster.local")
    header = bytes.fromhex("abcd 0100 0001 0000 0000 0001")
    crafted = [
        header + b"\x00\x00\x01\x00\x01" + b"\xc0\x11" + bytes(10),  # OPT owner points at itself
        header + b"\x00\x00\x01\x00\x01" + b"\xc0\x0c\x00\x29",  # pointer loop, record cut
        header[:4] + b"\xff\xff\xff\xff\xff\xff\xff\xff" + good[12:],  # absurd counts
        header[:5] + b"\x01" + bytes(6) + b"\x3f" + b"a" * 63 * 5,  # name far too long
    ]
    for i in range(count):
        choice = i % 4
        if choice == 0:
            yield rng.randbytes(rng.randrange(1, 200))
        elif choice == 1:
            data = bytearray(good)
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data)
        elif choice == 2:
            yield good[:rng.randrange(len(good))]
        else:
            yield crafted[i % len(crafted)]


def judged(server: DNSServer) -> float:
    """Messages the server read and made a decision about (answered, dropped, failed)."""
    m = server.metrics
    return m.requests.total() + m.dropped.total() + m.errors.total()


async def until(cond: Callable[[], bool]) -> None:
    """Waits for a condition; the limit only stops a hung test."""
    async with asyncio.timeout(60):
        while not cond():
            await asyncio.sleep(0.01)


async def test_fuzzing_over_udp_and_tcp_leaves_the_server_answering(
        loopback_server: DNSServer) -> None:
    loop = asyncio.get_running_loop()
    port = loopback_server.port
    window = 100  # datagrams in flight: far below what the socket buffer holds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for i, packet in enumerate(fuzz_packets(4000, seed=1)):
            if i % window == 0:  # let the server catch up, however slow the machine
                await until(lambda i=i: judged(loopback_server) >= i - window)
            await loop.sock_sendto(sock, packet, ("127.0.0.1", port))
    await until(lambda: judged(loopback_server) >= 4000)  # every datagram read and judged
    for batch in range(20):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for packet in fuzz_packets(50, seed=100 + batch):
            writer.write(len(packet).to_bytes(2, "big") + packet)
        writer.write(b"\x05\x00\x01")  # a length prefix promising more than ever comes
        await writer.drain()
        writer.close()
    # Every connection accepted, read to the broken prefix and closed by the server.
    await until(lambda: loopback_server.metrics.tcp_connections.get("accepted") == 20
                and not loopback_server._connections)
    metrics = loopback_server.metrics
    assert metrics.errors.total() == 0
    assert metrics.requests.total() + metrics.dropped.total() > 4000  # TCP ones judged too
    await answers_normally(loopback_server)


async def test_a_flood_of_silent_tcp_connections_does_not_lock_clients_out() -> None:
    index = RecordIndex()
    for obj in OBJECTS[:2]:
        index.on_service(None, obj)
    # Idle connections never time out here: only eviction can make room.
    server = DNSServer(index, address="127.0.0.1", port=0, tcp_idle_timeout=3600,
                       max_tcp_connections=50)
    await server.start()
    silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(200)]
    try:
        # Every connection accepted, and each one pushed out has finished closing
        # (an evicted connection leaves the table once its cancellation runs).
        await until(lambda: server.metrics.tcp_connections.get("accepted") == 200
                    and len(server._connections) <= server.max_tcp_connections)
        await answers_normally(server)
        assert server.metrics.tcp_connections.get("evicted") >= 150
    finally:
        for _, writer in silent:
            writer.close()
        await server.stop()


async def test_malformed_tcp_message_keeps_the_connection(loopback_server: DNSServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", loopback_server.port)
    try:
        bad = await tcp_query(reader, writer, bytes.fromhex("0007 0100 0001 0000 0000 0000 ff"))
        assert RCODE[bad.header.rcode] == "FORMERR"
        good = await tcp_query(reader, writer, query("db.data.svc.cluster.local"))
        assert [str(rr.rdata) for rr in good.rr] == ["10.96.0.30"]
    finally:
        writer.close()


@pytest.mark.parametrize("prelude", [b"", b"\x00\x20\x12"], ids=["silent", "half-a-message"])
async def test_idle_tcp_connection_is_closed(loopback_server: DNSServer, prelude: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", loopback_server.port)
    try:
        writer.write(prelude)
        # The server closes first: EOF arrives within the idle timeout.
        assert await asyncio.wait_for(reader.read(), 3) == b""
    finally:
        writer.close()


async def test_stop_closes_open_tcp_connections(loopback_server: DNSServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", loopback_server.port)
    try:
        await tcp_query(reader, writer, query("web.default.svc.cluster.local"))
        await loopback_server.stop()
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        writer.close()


async def test_metrics_text_after_real_traffic(loopback_server: DNSServer) -> None:
    await answers_normally(loopback_server)
    text = loopback_server.render_metrics()
    assert 'netplane_dns_requests_total{transport="udp",qtype="A",rcode="NOERROR"} 1' in text
    assert 'netplane_dns_requests_total{transport="tcp",qtype="A",rcode="NOERROR"} 1' in text
    assert "netplane_dns_request_duration_seconds_count 2" in text
    assert QTYPE.A == 1
