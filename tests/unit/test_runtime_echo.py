"""The built-in ``netplane/echo`` image, run as a container runs it: a
process of its own, here listening on loopback."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netplane.node.runtime.command import ECHO_MODULE

REPO = Path(__file__).resolve().parents[2]
WHO = {"POD_NAME": "web-0", "POD_IP": "10.244.1.2", "NODE_NAME": "node-1"}
ANSWER = b"pod=web-0 ip=10.244.1.2 node=node-1 client=127.0.0.1\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LOOPBACK = "127.0.0.1"


@pytest.fixture
def argv() -> list[str]:
    """How the runtime starts the server."""
    return [sys.executable, "-m", ECHO_MODULE]


@dataclass
class Echo:
    proc: subprocess.Popen[bytes]
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection((LOOPBACK, self.port), timeout=5)

    def http(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(LOOPBACK, self.port, timeout=5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def start(argv: list[str]) -> Echo:
    """The server on a free loopback port: another with the same port can
    come in between, so it tries a few."""
    for _ in range(5):
        port = free_port()
        env = {**WHO, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(port),
               "NETPLANE_ECHO_ADDRESS": LOOPBACK}
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line == f"netplane/echo listening on {LOOPBACK}:{port} (tcp, udp)\n".encode():
            return Echo(proc, port)
        Echo(proc, port).close()
    raise AssertionError(f"{argv} did not start listening")


@pytest.fixture
def echo(argv: list[str]) -> Iterator[Echo]:
    server = start(argv)
    yield server
    server.close()


def recv_all(sock: socket.socket) -> bytes:
    """Everything until the server closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_any_path_answers_who_served_it(echo: Echo) -> None:
    conn = echo.http()
    for path in ("/", "/some/where?x=1"):
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
        assert resp.read() == ANSWER
    conn.close()


def test_keep_alive_post_then_head_then_json(echo: Echo) -> None:
    conn = echo.http()
    conn.request("POST", "/submit", body=b"x" * 100_000)
    assert conn.getresponse().read() == ANSWER
    conn.request("HEAD", "/")
    head = conn.getresponse()
    assert head.status == 200 and head.read() == b""
    assert head.getheader("Content-Length") == str(len(ANSWER))
    conn.request("GET", "/", headers={"Accept": "text/html, application/json"})
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "application/json"
    assert json.loads(resp.read()) == {"pod": "web-0", "ip": "10.244.1.2", "node": "node-1",
                                       "client": LOOPBACK}
    conn.close()


def test_many_concurrent_connections(echo: Echo) -> None:
    conns = [echo.http() for _ in range(200)]
    for c in conns:
        c.connect()
    for c in conns:
        c.request("GET", "/")
    assert all(c.getresponse().read() == ANSWER for c in conns)
    for c in conns:
        c.close()


def test_other_methods_are_not_implemented(echo: Echo) -> None:
    conn = echo.http()
    conn.request("PUT", "/")
    resp = conn.getresponse()
    assert resp.status == 501 and resp.getheader("Connection") == "close"
    assert b"<p>Message: Unsupported method ('PUT').</p>" in resp.read()
    conn.close()


def test_udp_datagrams_get_the_same_answer(echo: Echo) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(b"hi", (LOOPBACK, echo.port))
        assert client.recv(2048) == ANSWER


def test_a_delayed_answer_holds_back_its_connection_only(echo: Echo) -> None:
    slow = echo.connect()
    slow.sendall(b"GET /?delay=30 HTTP/1.1\r\n\r\n")
    fast = echo.http()
    fast.request("GET", "/?delay=soon")
    assert fast.getresponse().read() == ANSWER
    slow.setblocking(False)
    with pytest.raises(BlockingIOError):
        slow.recv(1)  # still held back
    for s in (slow, fast):
        s.close()


def dry_run(argv: list[str], env: dict[str, str], path: str = "/") -> tuple[str, int, float]:
    """(address, port, delay) as the server would take them."""
    out = subprocess.run([*argv, "--dry-run", path], env=env, capture_output=True, text=True,
                         check=True).stdout
    m = re.fullmatch(r"listen (\S+):(\d+) delay (\S+)\n", out)
    assert m, out
    return m[1], int(m[2]), float(m[3])


@pytest.mark.parametrize(("env", "port"), [
    ({"PORT": "9000", "NETPLANE_CONTAINER_PORT": "80"}, 9000),
    ({"NETPLANE_CONTAINER_PORT": "80"}, 80),
    ({"PORT": "junk", "NETPLANE_CONTAINER_PORT": "0081"}, 81),
    ({"PORT": "junk"}, 8080),
    ({"PORT": ""}, 8080),
    ({}, 8080),
])
def test_listen_port(argv: list[str], env: dict[str, str], port: int) -> None:
    assert dry_run(argv, env) == ("0.0.0.0", port, 0.0)


def test_listen_address_is_an_ipv4_address(argv: list[str]) -> None:
    assert dry_run(argv, {"NETPLANE_ECHO_ADDRESS": "127.0.0.2"})[0] == "127.0.0.2"
    refused = subprocess.run([*argv, "--dry-run", "/"], env={"NETPLANE_ECHO_ADDRESS": "localhost"},
                             capture_output=True, check=False)
    assert refused.returncode != 0


@pytest.mark.parametrize(("path", "seconds"), [
    ("/?delay=0.25", 0.25), ("/x?a=1&delay=2", 2.0), ("/?delay=999", 30.0),
    ("/?delay=-1", 0.0), ("/?delay=soon", 0.0), ("/", 0.0),
    ("/?delay=1_5", 15.0), ("/?delay=.5", 0.5), ("/?delay=5.", 5.0), ("/?delay=+1e0", 1.0),
    ("/?delay=inf", 30.0), ("/?delay=-Infinity", 0.0), ("/?delay=nan", 0.0),
    ("/?delay=0x1", 0.0), ("/?delay=1e", 0.0), ("/?delay=1__0", 0.0), ("/?delay=_1", 0.0),
    ("/?del%61y=3", 3.0), ("/?delay=&delay=4", 4.0), ("/?delay=4&delay=5", 4.0),
    ("/?delay", 0.0), ("/?delay=%201.5+", 1.5), ("/?delay=1%2B1", 0.0),
    ("/?delay=%C2%A02", 2.0), ("/?delay=%C2", 0.0), ("/?delay=1#x", 1.0), ("/#?delay=1", 0.0),
    ("http://host/p?delay=6", 6.0),
])
def test_delay_parameter(argv: list[str], path: str, seconds: float) -> None:
    assert dry_run(argv, {}, path)[2] == seconds


def test_sigterm_drains_like_go_http_server_shutdown(echo: Echo) -> None:
    idle = echo.http()
    idle.request("GET", "/")
    assert idle.getresponse().read() == ANSWER
    # A request in flight: its headers are in (the 100 Continue says so),
    # its body is not.
    held = echo.connect()
    held.sendall(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert held.recv(len(CONTINUE)) == CONTINUE
    # Connected while the server cannot accept: it waits in the queue.
    echo.proc.send_signal(signal.SIGSTOP)
    queued = echo.connect()
    queued.sendall(b"GET / HTTP/1.1\r\n\r\n")
    echo.proc.send_signal(signal.SIGTERM)
    echo.proc.send_signal(signal.SIGCONT)
    assert queued.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    # The idle kept-alive connection is closed rather than left hanging,
    # after the listener.
    assert idle.sock is not None and idle.sock.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        echo.connect()
    assert echo.proc.poll() is None  # still waiting for the request in flight
    held.sendall(b"body")
    head, _, body = recv_all(held).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close" in head
    assert body == ANSWER
    assert echo.proc.wait(timeout=10) == 0
    assert echo.proc.stdout is not None
    assert echo.proc.stdout.read() == b"netplane/echo: stopped after finishing the requests " \
                                      b"in flight\n"
    for s in (idle, held, queued):
        s.close()
