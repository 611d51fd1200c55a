"""Node-to-node tunnels on loopback: mutual TLS 1.3 with certificates from
the mesh CA, HTTP/2 CONNECT streams to a TCP server behind the far node,
many streams on one connection, flow control over megabytes, and the
refusals (a stranger's certificate, a node speaking for a workload it
does not run, the wrong node at an address)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from netplane.mesh.config import build
from netplane.mesh.identity import Authority, Identity, Issued, self_signed_root
from netplane.mesh.proxy import Listener, Proxy, serve
from netplane.mesh.routes import Route, RouteTable
from netplane.mesh.tunnel import (
    Credentials,
    TunnelClient,
    TunnelError,
    TunnelServer,
    authorizer,
    node_identity,
    node_of,
    splice,
    voucher,
)
from tests.echoserver import LOOPBACK, WHO, start

WEB = Identity("cluster.local", "shop", "web")
ROGUE = Identity("cluster.local", "shop", "rogue")


def make_authority() -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    return Authority.under(self_signed_root(key, "cluster-ca"), key)


def credentials(authority: Authority, who: Identity, folder: Path) -> Credentials:
    key = ec.generate_private_key(ec.SECP256R1())
    folder.mkdir()
    return Credentials.of(Issued(authority.issue(who, key.public_key()), key), authority,
                             folder)


@dataclass
class Pair:
    client: TunnelClient
    server: TunnelServer
    address: str
    backend: str  # a TCP server behind the far node that echoes what it gets
    authority: Authority


LOOPS = pytest.mark.parametrize("factory", [asyncio.new_event_loop, uvloop.new_event_loop],
                                ids=["asyncio", "uvloop"])


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with paired(tmp_path) as made:
        yield made


@contextlib.asynccontextmanager
async def paired(tmp_path: Path) -> AsyncIterator[Pair]:
    authority = make_authority()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    backend = await asyncio.start_server(echo, LOOPBACK, 0)
    # node-1 runs web; nothing else may be spoken for by it.
    server = TunnelServer(credentials(authority, node_identity("node-2"), tmp_path / "n2"),
                          lambda node, source, target: (node, source) == (
                              node_identity("node-1"), WEB))
    listener = await server.serve(LOOPBACK, 0)
    client = TunnelClient(credentials(authority, node_identity("node-1"), tmp_path / "n1"))
    yield Pair(client, server, f"{LOOPBACK}:{listener.sockets[0].getsockname()[1]}",
               f"{LOOPBACK}:{backend.sockets[0].getsockname()[1]}", authority)
    client.close()
    listener.close()
    backend.close()


async def roundtrip(pair: Pair, payload: bytes, source: Identity = WEB) -> bytes:
    stream = await pair.client.open(pair.address, node_identity("node-2"), pair.backend, source)
    got = bytearray()

    async def send() -> None:
        await stream.write(payload)
        stream.end()

    sender = asyncio.create_task(send())
    while chunk := await stream.read():
        got += chunk
    await sender
    return bytes(got)


async def test_a_stream_carries_bytes_both_ways(pair: Pair) -> None:
    assert await roundtrip(pair, b"hello through the tunnel") == b"hello through the tunnel"


async def test_many_streams_share_one_connection(pair: Pair) -> None:
    payloads = [f"stream {i} ".encode() * 100 for i in range(20)]
    got = await asyncio.gather(*(roundtrip(pair, p) for p in payloads))
    assert got == payloads
    assert len(pair.client.links) == 1 and len(pair.server.links) == 1


async def test_flow_control_carries_megabytes(pair: Pair) -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB, more than the windows
    assert await roundtrip(pair, payload) == payload


async def test_streams_ended_both_ways_leave_neither_end(pair: Pair) -> None:
    await streams_are_forgotten(pair)


async def streams_are_forgotten(pair: Pair) -> None:
    for i in range(5):
        assert await roundtrip(pair, b"%d" % i) == b"%d" % i
    [link] = pair.server.links
    while link.streams:  # the server's side sees the last end a moment later
        await asyncio.sleep(0.01)
    assert not pair.client.links[pair.address].streams


async def test_a_backend_that_speaks_first_is_heard(pair: Pair) -> None:
    await speaks_first(pair)


async def speaks_first(pair: Pair) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello\n")
        writer.write(await reader.read(100))
        writer.close()

    greeter = await asyncio.start_server(greet, LOOPBACK, 0)
    target = f"{LOOPBACK}:{greeter.sockets[0].getsockname()[1]}"
    stream = await pair.client.open(pair.address, node_identity("node-2"), target, WEB)
    assert await stream.read() == b"220 hello\n"
    await stream.write(b"bye")
    got = b""
    while chunk := await stream.read():
        got += chunk
    assert got == b"bye"
    stream.end()
    greeter.close()


@LOOPS
def test_streams_carry_bytes_on_either_loop(tmp_path: Path,
                                            factory: Callable[[], asyncio.AbstractEventLoop]
                                            ) -> None:
    """The agent runs uvloop, whose transports start reading on their own
    and whose TLS layer is not asyncio's."""
    async def main() -> None:
        async with paired(tmp_path) as pair:
            payload = bytes(range(256)) * 8_000  # 2 MB: past the windows
            assert await roundtrip(pair, payload) == payload
            await speaks_first(pair)
            await streams_are_forgotten(pair)

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


async def test_a_node_cannot_speak_for_a_workload_it_does_not_run(pair: Pair) -> None:
    with pytest.raises(TunnelError) as refused:
        await roundtrip(pair, b"x", source=ROGUE)
    assert refused.value.status == 403
    assert await roundtrip(pair, b"still fine") == b"still fine"  # the connection lives on


async def test_the_node_at_an_address_must_prove_to_be_the_one_asked_for(pair: Pair) -> None:
    with pytest.raises(TunnelError) as wrong:
        await pair.client.open(pair.address, node_identity("node-3"), pair.backend, WEB)
    assert wrong.value.status == 403


async def test_a_certificate_from_another_root_gets_no_tunnel(pair: Pair, tmp_path: Path
                                                              ) -> None:
    seen: list[tuple[str, str]] = []
    pair.server.events = lambda direction, outcome: seen.append((direction, outcome))
    stranger = TunnelClient(credentials(make_authority(), node_identity("node-1"),
                                        tmp_path / "stranger"))
    with pytest.raises((ssl.SSLError, ConnectionError, TunnelError)):
        await stranger.open(pair.address, node_identity("node-2"), pair.backend, WEB)
    stranger.close()
    while not seen:  # the server's side of the failed handshake
        await asyncio.sleep(0.01)
    assert seen == [("in", "handshake_failed")]


async def test_splice_joins_a_stream_to_a_tcp_connection(pair: Pair) -> None:
    # What the sending node proxy does with a captured connection.
    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = await pair.client.open(pair.address, node_identity("node-2"), pair.backend,
                                        WEB)
        await splice(stream, reader, writer)

    front = await asyncio.start_server(accepted, LOOPBACK, 0)
    reader, writer = await asyncio.open_connection(LOOPBACK, front.sockets[0].getsockname()[1])
    writer.write(b"ping " * 1000)
    writer.write_eof()
    assert await reader.read() == b"ping " * 1000
    writer.close()
    front.close()


async def test_the_proxy_reaches_endpoints_on_other_nodes_through_the_tunnel(
        pair: Pair, tmp_path: Path, c_echo: Path) -> None:
    echo = start([str(c_echo)], {**WHO, "POD_NAME": "api-0"})
    try:
        host, port = pair.address.rsplit(":", 1)
        svc = {"metadata": {"name": "api", "namespace": "shop"},
               "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 80}]}}
        sl = {"metadata": {"name": "api-1", "namespace": "shop",
                           "labels": {"kubernetes.io/service-name": "api"}},
              "ports": [{"name": "http", "port": echo.port}],
              "endpoints": [{"addresses": [LOOPBACK], "nodeName": "node-2",
                             "conditions": {"ready": True}}]}
        client_pod = {"metadata": {"name": "web-0", "namespace": "shop"},
                      "spec": {"serviceAccountName": "web"},
                      "status": {"podIPs": [{"ip": LOOPBACK}]}}
        node = {"metadata": {"name": "node-2"},
                "status": {"addresses": [{"type": "InternalIP", "address": host}]}}
        proxy = Proxy(node="node-1", tunnels=pair.client, tunnel_port=int(port))
        proxy.apply(build([], [svc], [sl], pods=[client_pod], nodes=[node]))
        server = await serve(proxy, LOOPBACK, 0)
        front = int(server.sockets[0].getsockname()[1])
        proxy.listeners[front] = Listener(RouteTable([Route.to_service("shop", "api", 80)],
                                                     use_hostnames=False), front)
        reader, writer = await asyncio.open_connection(LOOPBACK, front)
        for _ in range(3):
            writer.write(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert (await reader.readexactly(length)).startswith(b"pod=api-0")
        writer.close()
        assert len(pair.server.links) == 1  # the requests went through node-2's tunnel
        assert len(proxy.upstreams.idle(f"{LOOPBACK}:{echo.port} {WEB} {LOOPBACK}")) == 1
        server.close()
        proxy.close()
    finally:
        echo.close()


def test_node_identities_name_their_node_and_the_authorizer_reads_the_mesh() -> None:
    assert node_of(node_identity("node-1")) == "node-1"
    assert node_of(WEB) is None
    pods = [{"metadata": {"name": "web-0", "namespace": "shop"},
             "spec": {"nodeName": "node-1", "serviceAccountName": "web"},
             "status": {"podIPs": [{"ip": "10.244.1.5"}]}},
            {"metadata": {"name": "api-0", "namespace": "shop"},
             "spec": {"nodeName": "node-2"}, "status": {"podIPs": [{"ip": "10.244.2.7"}]}}]
    allowed = authorizer(lambda: build([], [], [], pods=pods), "node-2")
    assert allowed(node_identity("node-1"), WEB, "10.244.2.7:8080")
    assert not allowed(node_identity("node-2"), WEB, "10.244.2.7:8080")
    assert not allowed(WEB, WEB, "10.244.2.7:8080")  # a workload's certificate is no node's
    assert not authorizer(lambda: None, "node-2")(node_identity("node-1"), WEB, "10.244.2.7:80")


async def test_renewed_credentials_serve_new_links_and_keep_the_old_ones(pair: Pair) -> None:
    first = await pair.client.open(pair.address, node_identity("node-2"), pair.backend, WEB)
    await first.write(b"before")
    assert await first.read() == b"before"
    old = pair.server.credentials.issued.cert
    key = ec.generate_private_key(ec.SECP256R1())
    authority = pair.authority
    issued = Issued(authority.issue(node_identity("node-2"), key.public_key()), key)
    pair.server.credentials.renew(issued, [authority.cert])
    # The link made before goes on with the old certificate...
    await first.write(b"still")
    assert await first.read() == b"still"
    # ...and a new one is made with the new.
    fresh = TunnelClient(pair.client.credentials)
    stream = await fresh.open(pair.address, node_identity("node-2"), pair.backend, WEB)
    await stream.write(b"after")
    assert await stream.read() == b"after"
    link = fresh.links[pair.address]
    der = link.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert x509.load_der_x509_certificate(der) == issued.cert != old
    fresh.close()


def test_a_node_may_speak_from_the_address_of_a_pod_of_that_workload_it_runs() -> None:
    pods = [{"metadata": {"name": "web-0", "namespace": "shop"},
             "spec": {"serviceAccountName": "web", "nodeName": "node-1"},
             "status": {"podIPs": [{"ip": "10.244.1.5"}]}}]
    vouches = voucher(lambda: build([], [], [], pods=pods))
    assert vouches(node_identity("node-1"), WEB, "10.244.1.5")
    assert not vouches(node_identity("node-2"), WEB, "10.244.1.5")  # not where it runs
    assert not vouches(node_identity("node-1"), ROGUE, "10.244.1.5")  # not that workload
    assert not vouches(node_identity("node-1"), WEB, "10.244.1.6")  # no such pod


@LOOPS
def test_a_handshake_that_arrives_while_the_loop_is_busy_completes(
        tmp_path: Path, factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """The client's hello may come before the server's loop gets to the new
    connection: nothing may read it before TLS does."""
    authority = make_authority()
    server_creds = credentials(authority, node_identity("node-2"), tmp_path / "n2")
    client_creds = credentials(authority, node_identity("node-1"), tmp_path / "n1")
    done: list[str] = []

    def client(port: int) -> None:
        with socket.create_connection((LOOPBACK, port), timeout=5) as raw, \
                client_creds.context(server=False).wrap_socket(raw) as tls:
            done.append(str(tls.version()))

    async def main() -> None:
        server = TunnelServer(server_creds, lambda node, source, target: True)
        listener = await server.serve(LOOPBACK, 0)
        thread = threading.Thread(target=client, args=(listener.sockets[0].getsockname()[1],))
        thread.start()
        time.sleep(0.3)  # the loop busy while the client connects and says hello
        while thread.is_alive():
            await asyncio.sleep(0.02)
        listener.close()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    assert done == ["TLSv1.3"]
