"""The DNS server over real sockets: dig against a server process inside a
throwaway network namespace, and an in-process server on loopback for the
robustness cases (malformed packets, idle TCP, truncation).

Address plan:

    netns npt-dns-*:  lo 127.0.0.1/8 + 10.96.0.10/32 (the cluster DNS IP)
                      server on 10.96.0.10:53 (udp, tcp); dig runs there too
    root netns:       in-process server on 127.0.0.1:<free port>
    services:         web.default  10.96.0.20
                      db.data      10.96.0.30
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from netplane.api.meta import Obj
from netplane.dns.index import RecordIndex
from netplane.dns.server import DNSServer

DNS_IP = "10.96.0.10"
REPO = Path(__file__).resolve().parents[2]

# The server process: builds an index from argv, serves, then reads commands
# from stdin (a watch event as JSON, or "stats") so a test can drive it live.
SERVER_SCRIPT = """
import asyncio, json, sys
from netplane.dns.index import RecordIndex, apply_service_event
from netplane.dns.server import serve_forever

def report(server):
    print(json.dumps({"port": server.port}), flush=True)
    asyncio.get_running_loop().create_task(commands(server))

async def commands(server):
    loop = asyncio.get_running_loop()
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if line == "stats":
            print(json.dumps({"queries": server.queries, "responses": server.responses,
                              "tcp_connections": server.tcp_connections}), flush=True)
        else:
            event = json.loads(line)
            apply_service_event(server.index, event["type"], event["object"])
            print(json.dumps({"version": server.index.version}), flush=True)

index = RecordIndex()
for svc in json.loads(sys.argv[1]):
    index.set_service(svc)
asyncio.run(serve_forever(index, address=sys.argv[2], port=53, ready=report))
"""


def service(name: str, namespace: str, cluster_ip: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80, "protocol": "TCP"}]}}


SERVICES = [service("web", "default", "10.96.0.20"), service("db", "data", "10.96.0.30")]


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


@pytest.fixture
def dns_netns(make_netns: Callable[[str], str]) -> Iterator[tuple[str, ServerProcess]]:
    ns = make_netns("dns")
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{DNS_IP}/32", "dev", "lo"], check=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER_SCRIPT,
         json.dumps(SERVICES), DNS_IP],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    server = ServerProcess(proc)
    try:
        assert server.read() == {"port": 53}
        yield ns, server
    finally:
        proc.kill()
        proc.wait(timeout=10)


def dig(ns: str, *args: str) -> str:
    cmd = ["ip", "netns", "exec", ns, "dig", f"@{DNS_IP}", "+tries=1", "+time=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout


def test_dig_gets_a_record_over_udp(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, _ = dns_netns
    out = dig(ns, "web.default.svc.cluster.local", "A")
    assert "status: NOERROR" in out
    assert "flags: qr aa rd;" in out
    assert "web.default.svc.cluster.local. 5 IN A 10.96.0.20" in " ".join(out.split())


def test_dig_gets_a_record_over_tcp(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, server = dns_netns
    assert dig(ns, "+tcp", "+short", "DB.Data.svc.cluster.local").split() == ["10.96.0.30"]
    assert server.send("stats")["queries"] == {"tcp": 1}


def test_unknown_name_is_nxdomain_and_aaaa_is_nodata(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, _ = dns_netns
    nx = dig(ns, "missing.default.svc.cluster.local", "A")
    assert "status: NXDOMAIN" in nx
    assert "cluster.local. 5 IN SOA ns.dns.cluster.local." in " ".join(nx.split())
    nodata = dig(ns, "web.default.svc.cluster.local", "AAAA")
    assert "status: NOERROR" in nodata and "ANSWER: 0" in nodata
    assert "status: REFUSED" in dig(ns, "example.com", "A")


def test_several_queries_share_one_tcp_connection(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, server = dns_netns
    out = dig(ns, "+tcp", "+keepopen", "+short", "web.default.svc.cluster.local",
              "db.data.svc.cluster.local", "web.default.svc.cluster.local")
    assert out.split() == ["10.96.0.20", "10.96.0.30", "10.96.0.20"]
    stats = server.send("stats")
    assert stats["queries"] == {"tcp": 3}
    assert stats["tcp_connections"] == 1


def test_watch_events_change_answers_live(dns_netns: tuple[str, ServerProcess]) -> None:
    ns, server = dns_netns
    added = {"type": "ADDED", "object": service("api", "default", "10.96.0.40")}
    assert server.send(json.dumps(added)) == {"version": 3}
    assert dig(ns, "+short", "api.default.svc.cluster.local").split() == ["10.96.0.40"]
    deleted = {"type": "DELETED", "object": SERVICES[0]}
    assert server.send(json.dumps(deleted)) == {"version": 4}
    assert "status: NXDOMAIN" in dig(ns, "web.default.svc.cluster.local")


# In-process server on loopback: robustness of the transports.

@pytest.fixture
async def loopback_server() -> Any:
    index = RecordIndex()
    for svc in SERVICES:
        index.set_service(svc)
    server = DNSServer(index, address="127.0.0.1", port=0, tcp_idle_timeout=0.5)
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


async def test_malformed_udp_gets_formerr_and_serving_goes_on(loopback_server: DNSServer) -> None:
    port = loopback_server.port
    garbage = bytes.fromhex("beef 0100 0001 0000 0000 0000 ffff ff")
    reply = DNSRecord.parse(await udp_exchange(port, garbage))
    assert (reply.header.id, RCODE[reply.header.rcode]) == (0xBEEF, "FORMERR")
    good = DNSRecord.parse(await udp_exchange(port, query("web.default.svc.cluster.local")))
    assert [str(rr.rdata) for rr in good.rr] == ["10.96.0.20"]
    assert loopback_server.responses == {"FORMERR": 1, "NOERROR": 1}


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


async def test_large_udp_answer_is_truncated_and_whole_over_tcp(
        loopback_server: DNSServer) -> None:
    many = [f"10.96.1.{i}" for i in range(1, 60)]
    svc = service("big", "default", many[0])
    svc["spec"]["clusterIPs"] = many
    loopback_server.index.set_service(svc)
    udp = DNSRecord.parse(await udp_exchange(loopback_server.port,
                                             query("big.default.svc.cluster.local")))
    assert udp.header.tc == 1 and not udp.rr
    reader, writer = await asyncio.open_connection("127.0.0.1", loopback_server.port)
    try:
        tcp = await tcp_query(reader, writer, query("big.default.svc.cluster.local"))
    finally:
        writer.close()
    assert sorted(str(rr.rdata) for rr in tcp.rr if rr.rtype == QTYPE.A) == sorted(many)
    assert loopback_server.truncated == 1
