"""The built-in ``netplane/echo`` image, served on loopback in-process."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator

import pytest

from netplane.node.runtime.echo import EchoHandler, EchoServer, identity, listen_port

WHO = {"POD_NAME": "web-0", "POD_IP": "10.244.1.2", "NODE_NAME": "node-1"}


@pytest.fixture
def server() -> Iterator[int]:
    handler = type("H", (EchoHandler,), {"who": identity(WHO)})
    srv = EchoServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_any_path_answers_who_served_it(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
    for path in ("/", "/some/where?x=1"):
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b"pod=web-0 ip=10.244.1.2 node=node-1 client=127.0.0.1\n"
    conn.close()


def test_keep_alive_post_then_head_then_json(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
    conn.request("POST", "/submit", body=b"x" * 1000)
    assert conn.getresponse().read().startswith(b"pod=web-0")
    conn.request("HEAD", "/")
    head = conn.getresponse()
    assert head.status == 200 and head.read() == b""
    conn.request("GET", "/", headers={"Accept": "application/json"})
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "application/json"
    assert json.loads(resp.read()) == {"pod": "web-0", "ip": "10.244.1.2", "node": "node-1",
                                       "client": "127.0.0.1"}
    conn.close()


def test_many_concurrent_connections(server: int) -> None:
    conns = [http.client.HTTPConnection("127.0.0.1", server, timeout=5) for _ in range(50)]
    for c in conns:
        c.connect()
    for c in conns:
        c.request("GET", "/")
    assert all(c.getresponse().status == 200 for c in conns)
    for c in conns:
        c.close()


@pytest.mark.parametrize(("env", "port"), [
    ({"PORT": "9000", "NETPLANE_CONTAINER_PORT": "80"}, 9000),
    ({"NETPLANE_CONTAINER_PORT": "80"}, 80),
    ({"PORT": "junk"}, 8080),
    ({}, 8080),
])
def test_listen_port(env: dict[str, str], port: int) -> None:
    assert listen_port(env) == port


def test_udp_datagrams_get_the_same_answer() -> None:
    import socket
    import threading

    from netplane.node.runtime.echo import serve_udp

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    threading.Thread(target=serve_udp, args=(server, {"pod": "web-0"}), daemon=True).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(2)
        client.sendto(b"hi", server.getsockname())
        assert client.recv(2048) == b"pod=web-0 client=127.0.0.1\n"


@pytest.mark.parametrize(("path", "seconds"), [
    ("/?delay=0.25", 0.25), ("/x?a=1&delay=2", 2.0), ("/?delay=999", 30.0),
    ("/?delay=-1", 0.0), ("/?delay=soon", 0.0), ("/", 0.0),
])
def test_delay_parameter(path: str, seconds: float) -> None:
    from netplane.node.runtime.echo import delay

    assert delay(path) == seconds


def test_drain_answers_requests_in_flight_closes_idle_ones_and_refuses_new() -> None:
    import socket

    release = threading.Event()

    class Holding(EchoHandler):
        who = identity(WHO)

        def _answer(self, *, send_body: bool) -> None:
            if self.path == "/hold":
                release.wait(5)
            super()._answer(send_body=send_body)

    srv = EchoServer(("127.0.0.1", 0), Holding)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    idle.request("GET", "/")
    assert idle.getresponse().read().startswith(b"pod=web-0")
    held = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    held.request("GET", "/hold")
    srv.shutdown()
    # Connected after the server stopped accepting: it waits in the queue.
    queued = socket.create_connection(("127.0.0.1", port), timeout=5)
    queued.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    done = threading.Thread(target=srv.drain, daemon=True)
    done.start()
    assert queued.recv(4096).startswith(b"HTTP/1.1 200 OK")
    # The idle kept-alive connection is closed rather than left hanging.
    assert idle.sock is not None and idle.sock.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert done.is_alive()  # still waiting for the request in flight
    release.set()
    resp = held.getresponse()
    assert resp.status == 200 and resp.getheader("Connection") == "close"
    assert resp.read().startswith(b"pod=web-0")
    done.join(5)
    assert not done.is_alive()
    for c in (idle, held, queued):
        c.close()
