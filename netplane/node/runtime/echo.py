"""The built-in image ``netplane/echo``: an HTTP server that answers every
request with who served it and who asked,
``pod=<POD_NAME> ip=<POD_IP> node=<NODE_NAME> client=<source address>``
(JSON when the client accepts ``application/json``), and the same text to
every UDP datagram on the same port. It shows which backend a service sent
a client to, and whether the client's address survived the trip (it does
not when the proxy masqueraded it). Run as
``python -m netplane.node.runtime.echo``; ``echo.c`` beside this module is
the same server in C, a tenth of the memory, which the runtime runs when
it is built (``command.entrypoint``). Both must behave alike, to the byte:
``tests/unit/test_runtime_echo.py`` checks them side by side.

Port: ``$PORT``, else ``$NETPLANE_CONTAINER_PORT`` (the container's first
``containerPort``), else 8080; on every address unless
``$NETPLANE_ECHO_ADDRESS`` names one (an IPv4 address). HTTP/1.1 with
keep-alive, a thread per connection; GET, HEAD (without the body) and POST
(its body read and dropped) answer alike. The path is the target up to
its first ``?`` or ``#``, past ``scheme://host`` when it has one. What a
request can ask for, to watch a rollout, a drain, limits or a mesh with:

- ``?delay=SECONDS`` on any path holds the answer back: a request in
  flight. ``/delay?ms=N`` holds it N milliseconds, after any ``?delay=``
  beside it; 30 s at most in all.
- ``/burn?ms=N`` spins N milliseconds of CPU time (up to 10 s) before the
  answer: load for CPU limits, ``kubectl top`` and autoscaling to see.
- ``/status/N``, N three digits from 200 to 599, answers status N with the
  reason http.server gives it (none for a code without one) and the usual
  body; 204 and 304 have no body nor Content-Type and Content-Length, 205
  says ``Content-Length: 0``, as HTTP wants. Any other path under
  ``/status/`` is answered at once, unheld, with a 400 as the server
  writes its errors (``Bad status code ('...')``).
- ``/headers`` answers httpbin's ``{"headers": {"Name": "value", ...}}``
  (``application/json``): the headers as received, names as the client
  wrote them, only the first of a name (in any case), a folded value with
  its line breaks, as ``http.client`` parses them.
- ``$ECHO_FAIL_RATE`` (a number from 0 to 1, as float() reads ASCII text;
  0 when absent, empty or bad, clamped to [0, 1]) fails that share of HTTP
  requests, each drawn at random as it arrives: ``503 Service
  Unavailable`` with the usual body and headers, so that a client (a
  mesh's retries) sees which pod failed. A failed request is held and
  burns as any other; a bad ``/status/`` path still gets its 400, UDP
  never fails.

``--dry-run PATH`` prints where it would listen, how long a request for
PATH would be held, how much CPU it would burn, its status and the share
of requests that fail, and exits.

On SIGTERM it shuts down as a well-behaved server does (Go's
``http.Server.Shutdown``): it serves what is already queued on the listening
socket, closes the listener, closes idle kept-alive connections, answers the
requests in flight with ``Connection: close`` and exits once they are done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_PORT = 8080
DEFAULT_ADDRESS = "0.0.0.0"
ADDRESS_ENV = "NETPLANE_ECHO_ADDRESS"
FAIL_RATE_ENV = "ECHO_FAIL_RATE"
MAX_DELAY = 30.0
MAX_BURN_MS = 10_000.0
BURN_PATH = "/burn"
DELAY_PATH = "/delay"
STATUS_PREFIX = "/status/"
HEADERS_PATH = "/headers"
STATUS_EXPLAIN = "Ask for /status/N with N a status code from 200 to 599"
# HTTP gives these no content (RFC 9110 15.3.5, 15.3.6, 15.4.5); a 205
# still says so with Content-Length: 0, the others with no length at all.
WITHOUT_CONTENT = frozenset({204, 205, 304})
RESET_CONTENT = 205
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def listen_port(env: Mapping[str, str]) -> int:
    for key in ("PORT", "NETPLANE_CONTAINER_PORT"):
        if env.get(key, "").isdigit():
            return int(env[key])
    return DEFAULT_PORT


def listen_address(env: Mapping[str, str]) -> str:
    address = env.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    socket.inet_pton(socket.AF_INET, address)  # an IPv4 address, no name
    return address


def identity(env: Mapping[str, str]) -> dict[str, str]:
    return {key: env.get(var, "") for key, var in
            (("pod", "POD_NAME"), ("ip", "POD_IP"), ("node", "NODE_NAME"))}


def render(who: Mapping[str, str], *, accept: str) -> tuple[bytes, str]:
    """Body and content type for one answer."""
    if "application/json" in accept:
        return json.dumps(dict(who)).encode() + b"\n", "application/json"
    text = " ".join(f"{k}={v}" for k, v in who.items())
    return text.encode() + b"\n", "text/plain; charset=utf-8"


def render_headers(fields: Iterable[tuple[str, str]]) -> bytes:
    """httpbin's ``/headers``: each header as received, the first of a name."""
    first: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in fields:
        if name.lower() not in seen:
            seen.add(name.lower())
            first[name] = value
    return json.dumps({"headers": first}).encode() + b"\n"


def _number(text: str, cap: float) -> float:
    """``text`` as a number in [0, cap]; 0 when it is none."""
    try:
        number = float(text)
    except ValueError:
        return 0.0
    return 0.0 if math.isnan(number) else min(max(number, 0.0), cap)


def _query_number(target: str, name: str, cap: float) -> float:
    """The first non-empty ``name`` field of the query as a number in
    [0, cap]; 0 when absent or bad."""
    values = parse_qs(urlsplit(target).query).get(name) or ["0"]
    return _number(values[0], cap)


def fail_rate(env: Mapping[str, str]) -> float:
    """The share of HTTP requests to fail, from ``$ECHO_FAIL_RATE``."""
    text = env.get(FAIL_RATE_ENV, "")
    # ASCII only: float() also reads other scripts' digits and spaces.
    return _number(text, 1.0) if text.isascii() else 0.0


@dataclass(frozen=True)
class Asked:
    """What a request target asks for, read once as the request arrives."""

    delay: float = 0.0  # seconds to hold the answer
    burn_ms: float = 0.0  # CPU to spin before it
    status: int = 200
    headers: bool = False  # /headers: they are the answer
    error: str = ""  # a 400's message: the target asks for nothing that exists


def ask(target: str) -> Asked:
    """What a request for ``target`` asks for, as the module docstring says."""
    path = request_path(target)
    status = 200
    if path.startswith(STATUS_PREFIX):
        code = path[len(STATUS_PREFIX):]
        if not (re.fullmatch("[0-9]{3}", code) and 200 <= int(code) <= 599):
            return Asked(status=400, error=f"Bad status code ({code!r})")
        status = int(code)
    return Asked(delay=delay(target), burn_ms=burn_ms(target), status=status,
                 headers=path == HEADERS_PATH)


def delay(target: str) -> float:
    """Seconds asked for with ``?delay=`` and ``/delay?ms=``, capped; 0 when
    absent or bad."""
    seconds = _query_number(target, "delay", MAX_DELAY)
    if request_path(target) == DELAY_PATH:
        ms = _query_number(target, "ms", MAX_DELAY * 1000)
        seconds = min(seconds + ms / 1000, MAX_DELAY)
    return seconds


def request_path(target: str) -> str:
    """The path of a request target, as the module docstring defines it."""
    path = re.split(r"[?#]", target, maxsplit=1)[0]
    scheme, sep, rest = path.partition("://")
    if sep and "/" not in scheme:
        path = rest[rest.find("/"):] if "/" in rest else ""
    return path


def burn_ms(target: str) -> float:
    """CPU milliseconds a ``/burn?ms=N`` asks for, capped; 0 for other paths."""
    if request_path(target) != BURN_PATH:
        return 0.0
    return _query_number(target, "ms", MAX_BURN_MS)


def burn(ms: float) -> None:
    """Spins until this thread has used ``ms`` milliseconds of CPU: under a
    CPU limit the answer takes longer, the work stays the same."""
    until = time.thread_time() + ms / 1000.0
    while time.thread_time() < until:
        pass


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "netplane-echo/1"
    # The headers and the body are two writes: with Nagle's algorithm the
    # second waits for the client's delayed ACK, 40 ms on each kept-alive
    # request after the first few.
    disable_nagle_algorithm = True
    who: Mapping[str, str] = {}
    fail_rate = 0.0
    server: EchoServer

    def version_string(self) -> str:
        return self.server_version  # the image's, not the interpreter's ("Python/3.11")

    def setup(self) -> None:
        super().setup()
        self.requests = 0
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.forget(self.connection)
        super().finish()

    def handle_one_request(self) -> None:
        # A connection waiting for its next request is idle: a drain may close
        # it. One that has not sent its first yet counts as carrying a request.
        if self.requests and not self.server.idle(self.connection):
            self.close_connection = True
            return
        self.requests += 1
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.server.busy(self.connection)
        return super().parse_request()

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_POST(self) -> None:
        # Drain the body so the next request on a kept-alive connection parses.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        asked = ask(self.path)
        if asked.error:
            self.send_error(asked.status, asked.error, STATUS_EXPLAIN)
            return
        failed = random.random() < self.fail_rate  # 0 never, 1 always: random() < 1
        if asked.headers and not failed:
            body, ctype = render_headers(self.headers.items()), "application/json"
        else:
            who = {**self.who, "client": self.client_address[0]}
            body, ctype = render(who, accept=self.headers.get("Accept", ""))
        if asked.delay:
            time.sleep(asked.delay)
        if asked.burn_ms:
            burn(asked.burn_ms)
        status = 503 if failed else asked.status
        self.send_response(status)
        if status == RESET_CONTENT:
            self.send_header("Content-Length", "0")
        elif status not in WITHOUT_CONTENT:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        if self.server.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if send_body and status not in WITHOUT_CONTENT:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Quiet: a benchmark's thousands of requests would fill the pod log.
        pass


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.draining = False
        self._changed = threading.Condition()
        self._busy: dict[socket.socket, bool] = {}  # open connections: in a request?

    def track(self, conn: socket.socket) -> None:
        with self._changed:
            self._busy[conn] = True

    def forget(self, conn: socket.socket) -> None:
        with self._changed:
            self._busy.pop(conn, None)
            self._changed.notify_all()

    def idle(self, conn: socket.socket) -> bool:
        """Marks the connection idle; False when draining (close it instead)."""
        with self._changed:
            self._busy[conn] = False
            return not self.draining

    def busy(self, conn: socket.socket) -> None:
        with self._changed:
            self._busy[conn] = True

    def drain(self, timeout: float | None = None) -> bool:
        """Stops serving: call after ``shutdown()``. Serves the connections
        already queued on the listener, closes it, shuts the reading side of
        idle connections (their handler sees end of file and closes) and
        waits until the requests in flight are answered. True when all are."""
        with self._changed:
            self.draining = True
        self.socket.setblocking(False)
        while True:
            try:
                conn, peer = self.socket.accept()
            except OSError:  # BlockingIOError: nothing left in the queue
                break
            conn.setblocking(True)
            self.process_request(conn, peer)
        self.server_close()
        with self._changed:
            for conn, in_request in self._busy.items():
                if not in_request:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RD)
            return self._changed.wait_for(lambda: not self._busy, timeout)


def serve_udp(sock: socket.socket, who: Mapping[str, str]) -> None:
    while True:
        _, peer = sock.recvfrom(2048)
        body, _ = render({**who, "client": peer[0]}, accept="")
        sock.sendto(body, peer)


def serve(env: Mapping[str, str], stop: threading.Event) -> None:
    who = identity(env)
    handler = type("Handler", (EchoHandler,), {"who": who, "fail_rate": fail_rate(env)})
    address, port = listen_address(env), listen_port(env)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((address, port))
    server = EchoServer((address, port), handler)
    # The threads (and the connections' threads they start) block the stop
    # signals: the kernel gives a signal to any thread that takes it, and
    # one taken by another thread leaves the main one asleep in wait().
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=serve_udp, args=(udp, who), daemon=True).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    print(f"netplane/echo listening on {address}:{port} (tcp, udp)", flush=True)
    stop.wait()
    server.shutdown()
    server.drain()
    print("netplane/echo: stopped after finishing the requests in flight", flush=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--dry-run":
        address, port = listen_address(os.environ), listen_port(os.environ)
        asked = ask(sys.argv[2])
        print(f"listen {address}:{port} delay {asked.delay:g} burn {asked.burn_ms:g}"
              f" status {asked.status} fail {fail_rate(os.environ):g}")
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    serve(os.environ, stop)


if __name__ == "__main__":
    main()
