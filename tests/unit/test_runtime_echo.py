"""The built-in ``netplane/echo`` image. Both of its servers, the Python
module and the C one (``echo.c``, built here from the source as
``scripts/build-c.sh`` builds it), take every check, each run as a
container runs it: a process of its own, here listening on loopback. The
last table sends both the same raw bytes and wants the same bytes back,
but for the Date, so that the two cannot drift apart."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from netplane.node.runtime.command import ECHO_MODULE
from tests.echoserver import LOOPBACK, Echo, start

ANSWER = b"pod=web-0 ip=10.244.1.2 node=node-1 client=127.0.0.1\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.fixture(params=["python", "c"])
def argv(request: pytest.FixtureRequest) -> list[str]:
    """How the runtime starts one or the other server."""
    if request.param == "python":
        return [sys.executable, "-m", ECHO_MODULE]
    return [str(request.getfixturevalue("c_echo"))]


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


def test_json_escapes_as_json_dumps_does(argv: list[str]) -> None:
    # Non-ASCII, a character beyond the BMP, controls, quotes, and bytes that
    # are no UTF-8 (os.environ holds them as surrogates).
    who = {"POD_NAME": 'wéb-\U0001f600-"\\', "POD_IP": "\t\x7f\x01",
           "NODE_NAME": "\udcff\udce2\udc82-\u20ac-\udcf5\udc80\udc80"}
    server = start(argv, who)
    try:
        conn = server.http()
        conn.request("GET", "/", headers={"Accept": "application/json"})
        expected = {"pod": who["POD_NAME"], "ip": who["POD_IP"], "node": who["NODE_NAME"],
                    "client": LOOPBACK}
        assert conn.getresponse().read() == json.dumps(expected).encode() + b"\n"
        conn.close()
    finally:
        server.close()


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


def test_delay_path_answers_after_the_milliseconds(echo: Echo) -> None:
    conn = echo.http()
    for method, body in (("GET", ANSWER), ("HEAD", b"")):
        began = time.monotonic()
        conn.request(method, "/delay?ms=50")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, body)
        assert time.monotonic() - began >= 0.05
    conn.close()


@pytest.mark.parametrize("held", ["/?delay=30", "/delay?ms=30000"])
def test_a_delayed_answer_holds_back_its_connection_only(echo: Echo, held: str) -> None:
    slow = echo.connect()
    slow.sendall(f"GET {held} HTTP/1.1\r\n\r\n".encode())
    fast = echo.http()
    fast.request("GET", "/?delay=soon")
    assert fast.getresponse().read() == ANSWER
    slow.setblocking(False)
    with pytest.raises(BlockingIOError):
        slow.recv(1)  # still held back
    for s in (slow, fast):
        s.close()


class DryRun(NamedTuple):
    """What the server would do, as ``--dry-run`` prints it."""

    address: str
    port: int
    delay: float  # seconds
    burn: float  # CPU milliseconds
    status: int
    fail: float  # the share of requests that fail


def dry_run(argv: list[str], env: dict[str, str], path: str = "/") -> tuple[str, int, float]:
    """(address, port, delay) as the server would take them."""
    return dry_run_all(argv, env, path)[:3]


def dry_run_all(argv: list[str], env: dict[str, str], path: str = "/") -> DryRun:
    out = subprocess.run([*argv, "--dry-run", path], env=env, capture_output=True, text=True,
                         check=True).stdout
    m = re.fullmatch(r"listen (\S+):(\d+) delay (\S+) burn (\S+) status (\d+) fail (\S+)\n",
                     out)
    assert m, out
    return DryRun(m[1], int(m[2]), float(m[3]), float(m[4]), int(m[5]), float(m[6]))


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


@pytest.mark.parametrize(("path", "seconds"), [
    ("/delay?ms=50", 0.05), ("/delay?ms=99999", 30.0), ("/delay?ms=-5", 0.0),
    ("/delay?ms=soon", 0.0), ("/delay", 0.0), ("/delay?ms=500&delay=1", 1.5),
    ("/delay?delay=2", 2.0), ("/delay?ms=20000&delay=20", 30.0), ("/delay/?ms=5", 0.0),
    ("/delayed?ms=5", 0.0), ("/x/delay?ms=5", 0.0), ("/?ms=5", 0.0), ("/burn?ms=5", 0.0),
    ("/delay#?ms=5", 0.0), ("http://host/delay?ms=250", 0.25), ("/delay?m%73=8", 0.008),
])
def test_delay_path(argv: list[str], path: str, seconds: float) -> None:
    assert dry_run_all(argv, {}, path).delay == seconds


@pytest.mark.parametrize(("path", "ms"), [
    ("/burn?ms=250", 250.0), ("/burn?ms=99999", 10_000.0), ("/burn?ms=-5", 0.0),
    ("/burn?ms=lots", 0.0), ("/burn", 0.0), ("/burn/?ms=5", 0.0), ("/burnt?ms=5", 0.0),
    ("/x/burn?ms=5", 0.0), ("/?ms=5", 0.0), ("/burn?delay=1&ms=7.5", 7.5),
    ("/burn#?ms=5", 0.0), ("/burn?ms=5#x", 5.0), ("http://host/burn?ms=6", 6.0),
    ("http://host?ms=6", 0.0), ("/burn?m%73=8", 8.0),
])
def test_burn_parameter(argv: list[str], path: str, ms: float) -> None:
    assert dry_run_all(argv, {}, path).burn == ms


@pytest.mark.parametrize(("path", "status"), [
    ("/status/418", 418), ("/status/200", 200), ("/status/599", 599), ("/status/204", 204),
    ("/status/418?x=1", 418), ("/status/418#x", 418), ("http://host/status/503", 503),
    ("/status/199", 400), ("/status/600", 400), ("/status/0418", 400), ("/status/41", 400),
    ("/status/abc", 400), ("/status/", 400), ("/status/418/", 400), ("/status/+18", 400),
    ("/status/4%318", 400), ("/status/4_8", 400), ("/status/\u0664\u0661\u0668", 400),
    ("/status", 200), ("/statuses/418", 200), ("/x/status/418", 200), ("/", 200),
])
def test_status_path(argv: list[str], path: str, status: int) -> None:
    assert dry_run_all(argv, {}, path).status == status


def test_a_bad_status_path_is_neither_held_nor_burnt(argv: list[str]) -> None:
    assert dry_run_all(argv, {}, "/status/x?delay=5").delay == 0.0
    assert dry_run_all(argv, {}, "/status/418?delay=5").delay == 5.0


@pytest.mark.parametrize(("value", "rate"), [
    (None, 0.0), ("", 0.0), ("0", 0.0), ("0.25", 0.25), ("1", 1.0), (" .5\n", 0.5),
    ("2", 1.0), ("-0.5", 0.0), ("inf", 1.0), ("-inf", 0.0), ("nan", 0.0), ("lots", 0.0),
    ("0x1", 0.0), ("1e-1", 0.1), ("0.0_5", 0.05), ("50%", 0.0), ("0." + "0" * 200 + "1", 1e-201),
    ("0.5" + "0" * 200, 0.5), ("\u0661", 0.0), ("\xa00.5", 0.0), ("\x1c0.5", 0.0),
])
def test_fail_rate_parameter(argv: list[str], value: str | None, rate: float) -> None:
    env = {} if value is None else {"ECHO_FAIL_RATE": value}
    assert dry_run_all(argv, env).fail == rate


def test_status_path_answers_that_status(echo: Echo) -> None:
    conn = echo.http()
    conn.request("GET", "/status/418")
    resp = conn.getresponse()
    assert (resp.status, resp.reason) == (418, "I'm a Teapot")
    assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert resp.read() == ANSWER
    conn.request("HEAD", "/status/503")
    head = conn.getresponse()
    assert (head.status, head.reason, head.read()) == (503, "Service Unavailable", b"")
    assert head.getheader("Content-Length") == str(len(ANSWER))
    conn.request("GET", "/status/299")  # no phrase: send_response() writes none
    resp = conn.getresponse()
    assert (resp.status, resp.reason, resp.read()) == (299, "", ANSWER)
    conn.close()


@pytest.mark.parametrize("status", [204, 205, 304])
def test_status_without_content_has_no_body(echo: Echo, status: int) -> None:
    with echo.connect() as sock:
        sock.sendall(f"GET /status/{status} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        first, _, rest = recv_all(sock).partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 %d " % status)
    assert b"Content-Type" not in first
    assert (b"Content-Length: 0" in first) == (status == 205)
    if status != 205:
        assert b"Content-Length" not in first
    # Nothing between the answer and the next one, which the same connection got.
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\n" + ANSWER)


def test_a_bad_status_path_is_a_400(echo: Echo) -> None:
    conn = echo.http()
    conn.request("GET", "/status/teapot")
    resp = conn.getresponse()
    assert (resp.status, resp.reason) == (400, "Bad status code ('teapot')")
    assert resp.getheader("Connection") == "close"
    page = resp.read()
    assert b"<p>Message: Bad status code ('teapot').</p>" in page
    assert b"from 200 to 599" in page
    conn.close()


def test_headers_path_answers_the_headers_as_received(echo: Echo) -> None:
    conn = echo.http()
    for method in ("GET", "HEAD"):
        conn.putrequest(method, "/headers", skip_accept_encoding=True)
        for name, value in (("X-Request-Id", "7"), ("x-request-id", "8"),
                            ("X-Folded", "a\r\n b"), ("Accept", "text/plain")):
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "application/json"  # whatever it accepts
        if method == "GET":
            body = resp.read()
            assert json.loads(body) == {"headers": {
                "Host": f"{LOOPBACK}:{echo.port}", "X-Request-Id": "7", "X-Folded": "a\r\n b",
                "Accept": "text/plain"}}
        else:
            assert resp.read() == b"" and resp.getheader("Content-Length") == str(len(body))
    conn.close()


def test_fail_rate_one_fails_every_request_but_not_udp(argv: list[str]) -> None:
    server = start(argv, extra={"ECHO_FAIL_RATE": "1"})
    try:
        conn = server.http()
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert (resp.status, resp.reason) == (503, "Service Unavailable")
        assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
        assert resp.read() == ANSWER  # which pod failed
        conn.request("HEAD", "/")  # the same connection: a failure keeps it
        head = conn.getresponse()
        assert head.status == 503 and head.read() == b""
        assert head.getheader("Content-Length") == str(len(ANSWER))
        conn.request("GET", "/", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 503 and json.loads(resp.read())["pod"] == "web-0"
        conn.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(b"hi", (LOOPBACK, server.port))
            assert client.recv(2048) == ANSWER
    finally:
        server.close()


def test_a_failed_request_is_still_held(argv: list[str]) -> None:
    server = start(argv, extra={"ECHO_FAIL_RATE": "1"})
    try:
        conn = server.http()
        began = time.monotonic()
        conn.request("GET", "/?delay=0.2")
        resp = conn.getresponse()
        assert resp.status == 503 and resp.read() == ANSWER
        assert time.monotonic() - began >= 0.2
        conn.close()
    finally:
        server.close()


def test_fail_rate_half_fails_about_half(argv: list[str]) -> None:
    # 300 draws at 0.5: outside 20%-80% has a chance below 1e-20.
    server = start(argv, extra={"ECHO_FAIL_RATE": "0.5"})
    try:
        conn = server.http()
        statuses = []
        for _ in range(300):
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.read() == ANSWER
            statuses.append(resp.status)
        conn.close()
    finally:
        server.close()
    assert set(statuses) <= {200, 503}
    assert 60 <= statuses.count(503) <= 240


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_burn_spins_cpu_then_answers(echo: Echo) -> None:
    before = cpu_seconds(echo.proc.pid)
    conn = echo.http()
    conn.request("GET", "/burn?ms=400")
    assert conn.getresponse().read() == ANSWER
    conn.close()
    assert cpu_seconds(echo.proc.pid) - before >= 0.3


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


# -- the two servers side by side --

HEADERS_99 = b"".join(b"X-%d: y\r\n" % i for i in range(99))
RAW = {
    "get": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "http/1.0 closes": b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
    "http/1.0 keep-alive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                           b"GET / HTTP/1.0\r\n\r\n",
    "http/0.9": b"GET /\r\n\r\n",
    "http/0.9 keep-alive": b"GET /\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "connection close": b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "connection close, a space after": b"GET / HTTP/1.1\r\nConnection: close \r\n\r\n"
                                       b"GET / HTTP/1.1\r\n\r\n",
    "pipelined": b"GET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\n"
                 b"GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n",
    "bare newlines": b"GET / HTTP/1.1\nAccept: application/json\n\n",
    "first accept counts": b"GET / HTTP/1.1\r\nAccept: text/plain\r\naccept: application/json\r\n"
                           b"\r\n",
    "folded accept": b"GET / HTTP/1.1\r\nAccept: text/plain,\r\n application/json\r\n\r\n",
    "not a header line ends them": b"GET / HTTP/1.1\r\nno header\r\nAccept: application/json\r\n"
                                   b"\r\n",
    "no header name": b"GET / HTTP/1.1\r\n: x\r\nAccept: application/json\r\n\r\n",
    "99 headers": b"GET / HTTP/1.1\r\n" + HEADERS_99 + b"\r\n",
    "100 headers": b"GET / HTTP/1.1\r\n" + HEADERS_99 + b"X: y\r\n\r\n",
    "100 headers, HEAD": b"HEAD / HTTP/1.1\r\n" + HEADERS_99 + b"X: y\r\n\r\n",
    "header line too long": b"GET / HTTP/1.1\r\nX: " + b"a" * 65534,
    "request line too long": b"GET /" + b"a" * 65532,
    "post then get": b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
    "post length with spaces": b"POST / HTTP/1.1\r\nContent-Length:  1_0 \r\n\r\n0123456789",
    "post length folded": b"POST / HTTP/1.1\r\nContent-Length: 2\r\n \r\n\r\nhi",
    "post length bad": b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    "post length negative": b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\nabc",
    "post body cut short": b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
    "expect 100-continue": b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n"
                           b"\r\nhi",
    "expect on http/1.0": b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
                          b"\r\nhi",
    "expect on http/01.1": b"GET / HTTP/01.1\r\nExpect: 100-continue\r\n\r\n",
    "delay path": b"GET /delay?ms=50 HTTP/1.1\r\n\r\nHEAD /delay?ms=50 HTTP/1.1\r\n\r\n",
    "status": b"GET /status/418 HTTP/1.1\r\n\r\nHEAD /status/418 HTTP/1.1\r\n\r\n"
              b"GET /status/418 HTTP/1.1\r\nAccept: application/json\r\n\r\n",
    "status without a phrase": b"GET /status/299 HTTP/1.1\r\n\r\n",
    "status 204": b"GET /status/204 HTTP/1.1\r\n\r\nHEAD /status/204 HTTP/1.1\r\n\r\n"
                  b"GET / HTTP/1.1\r\n\r\n",
    "status 205": b"GET /status/205 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "status 304": b"GET /status/304 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "status 204, http/0.9": b"GET /status/204\r\n\r\n",
    "status 418, http/1.0": b"GET /status/418 HTTP/1.0\r\n\r\n",
    "status held": b"GET /status/503?delay=0.05 HTTP/1.1\r\n\r\n",
    "bad status": b"GET /status/abc?delay=5 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "bad status, empty": b"GET /status/ HTTP/1.1\r\n\r\n",
    "bad status, out of range": b"GET /status/600 HTTP/1.1\r\n\r\n",
    "bad status, HEAD": b"HEAD /status/1 HTTP/1.1\r\n\r\n",
    "bad status, http/0.9": b"GET /status/x\r\n\r\n",
    "bad status, quoted and latin-1": b"GET /status/<\xe9'&\"\\> HTTP/1.1\r\n\r\n",
    "bad status, post": b"POST /status/x HTTP/1.1\r\nExpect: 100-continue\r\n"
                        b"Content-Length: 2\r\n\r\nhi",
    "headers": b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Trace: a\r\nx-trace: b\r\n"
               b"ACCEPT: text/plain\r\n\r\n",
    "headers, HEAD": b"HEAD /headers HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "headers, none": b"GET /headers HTTP/1.1\r\n\r\n",
    "headers, json asked": b"GET /headers?x=1 HTTP/1.1\r\nAccept: application/json\r\n\r\n",
    "headers, not the path": b"GET /headers/ HTTP/1.1\r\nX: 1\r\n\r\n"
                             b"GET /x/headers HTTP/1.1\r\nX: 1\r\n\r\n",
    "headers, folded": b"GET /headers HTTP/1.1\r\nX: a\r\n b\r\n\tc \r\nY: 1\r\n\r\n",
    "headers, a later one folded": b"GET /headers HTTP/1.1\r\nX: 1\r\nx: 2\r\n 3\r\nY: 4\r\n\r\n",
    "headers, escapes": b"GET /headers HTTP/1.1\r\nQ\"\\: \xe9\x01\x7f\"\\\x00\xff\r\n"
                        b"Tab:\t\t v \r\nEmpty:\r\nSpace: \r\n\r\n",
    "headers, skipped lines": b"GET /headers HTTP/1.1\r\nFrom x\r\n: y\r\n on\r\nX: 1\r\n"
                              b"From z\r\nY: 2\r\n\r\n",
    "headers, first is folded": b"GET /headers HTTP/1.1\r\n x: 1\r\nX: 2\r\n\r\n",
    "headers, a line that is none": b"GET /headers HTTP/1.1\r\nX: 1\r\nno header\r\nY: 2\r\n"
                                    b"\r\n",
    "headers, bare cr and lf": b"GET /headers HTTP/1.1\r\nX: a\rY: b\nZ: c\r\n\r\n",
    "headers, long": b"GET /headers HTTP/1.1\r\nX: " + b"v" * 70_000 + b"\r\n\r\n",
    "headers, long enough": b"GET /headers HTTP/1.1\r\nX: " + b"v" * 60_000 + b"\r\nY: "
                            + b"w" * 60_000 + b"\r\n\r\n",
    "headers, 99": b"GET /headers HTTP/1.1\r\n" + HEADERS_99 + b"\r\n",
    "headers, http/0.9": b"GET /headers\r\nX: 1\r\n\r\n",
    "headers, post": b"POST /headers HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
    "headers, cut short": b"GET /headers HTTP/1.1\r\nX: 1",
    "put": b"PUT / HTTP/1.1\r\n\r\n",
    "lower-case get": b"get / HTTP/1.1\r\n\r\n",
    "latin-1 method": b"G\xe9T / HTTP/1.1\r\n\r\n",
    "quote in method": b"G'T / HTTP/1.1\r\n\r\n",
    "bad version": b"GET / HTTP/1\r\n\r\n",
    "last word no version": b"GET / HTTP/1.1 extra\r\n\r\n",
    "four words": b"GET / x HTTP/1.1\r\n\r\n",
    "latin-1 space splits": b"GET /\xa0x HTTP/1.1\r\n\r\n",
    "http/2": b"GET / HTTP/2.0\r\n\r\n",
    "http/0.9 put": b"PUT /\r\n\r\n",
    "one word": b"GET\r\n\r\n",
    "blank request line": b"\r\nGET / HTTP/1.1\r\n\r\n",
    "cut short": b"GET / HTTP/1.1\r\nAccept: application/json",
    "no end of line": b"GET / HTTP/1.1",
    "nothing": b"",
}


def start_both(c_echo: Path, fail_rate: str) -> tuple[Echo, Echo]:
    extra = {"ECHO_FAIL_RATE": fail_rate}
    return (start([sys.executable, "-m", ECHO_MODULE], extra=extra),
            start([str(c_echo)], extra=extra))


@pytest.fixture(scope="module")
def both(c_echo: Path) -> Iterator[tuple[Echo, Echo]]:
    servers = start_both(c_echo, "0")
    yield servers
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def both_failing(c_echo: Path) -> Iterator[tuple[Echo, Echo]]:
    servers = start_both(c_echo, "1")
    yield servers
    for server in servers:
        server.close()


def exchange(server: Echo, raw: bytes) -> bytes:
    """All the server answers to ``raw`` sent at once, then end of file."""
    with server.connect() as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = recv_all(sock)
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", answer)


@pytest.mark.parametrize("case", RAW)
def test_both_servers_answer_raw_requests_alike(both: tuple[Echo, Echo], case: str) -> None:
    python, c = (exchange(server, RAW[case]) for server in both)
    assert c == python


def test_both_servers_give_every_status_alike(both: tuple[Echo, Echo]) -> None:
    # One connection each, every code in turn: the phrases and the framing.
    raw = b"".join(b"GET /status/%d HTTP/1.1\r\n\r\n" % code for code in range(200, 600))
    python, c = (exchange(server, raw) for server in both)
    assert c == python
    assert python.count(b"HTTP/1.1 ") == 400 and b"HTTP/1.1 418 I'm a Teapot\r\n" in python


@pytest.mark.parametrize("case", RAW)
def test_both_servers_fail_alike(both_failing: tuple[Echo, Echo], case: str) -> None:
    python, c = (exchange(server, RAW[case]) for server in both_failing)
    assert c == python
