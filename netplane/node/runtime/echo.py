"""The built-in image ``netplane/echo``: an HTTP server that answers every
request with who served it and who asked,
``pod=<POD_NAME> ip=<POD_IP> node=<NODE_NAME> client=<source address>``
(JSON when the client accepts ``application/json``), and the same text to
every UDP datagram on the same port. It shows which backend a service sent
a client to, and whether the client's address survived the trip (it does
not when the proxy masqueraded it). Run as
``python -m netplane.node.runtime.echo``.

Port: ``$PORT``, else ``$NETPLANE_CONTAINER_PORT`` (the container's first
``containerPort``), else 8080. HTTP/1.1 with keep-alive, a thread per
connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

DEFAULT_PORT = 8080


def listen_port(env: Mapping[str, str]) -> int:
    for key in ("PORT", "NETPLANE_CONTAINER_PORT"):
        if env.get(key, "").isdigit():
            return int(env[key])
    return DEFAULT_PORT


def identity(env: Mapping[str, str]) -> dict[str, str]:
    return {key: env.get(var, "") for key, var in
            (("pod", "POD_NAME"), ("ip", "POD_IP"), ("node", "NODE_NAME"))}


def render(who: Mapping[str, str], *, accept: str) -> tuple[bytes, str]:
    """Body and content type for one answer."""
    if "application/json" in accept:
        return json.dumps(dict(who)).encode() + b"\n", "application/json"
    text = " ".join(f"{k}={v}" for k, v in who.items())
    return text.encode() + b"\n", "text/plain; charset=utf-8"


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "netplane-echo/1"
    who: Mapping[str, str] = {}

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
        who = {**self.who, "client": self.client_address[0]}
        body, ctype = render(who, accept=self.headers.get("Accept", ""))
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Quiet: a benchmark's thousands of requests would fill the pod log.
        pass


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def serve_udp(sock: socket.socket, who: Mapping[str, str]) -> None:
    while True:
        _, peer = sock.recvfrom(2048)
        body, _ = render({**who, "client": peer[0]}, accept="")
        sock.sendto(body, peer)


def serve(env: Mapping[str, str]) -> None:
    who = identity(env)
    handler = type("Handler", (EchoHandler,), {"who": who})
    port = listen_port(env)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    threading.Thread(target=serve_udp, args=(udp, who), daemon=True).start()
    with EchoServer(("0.0.0.0", port), handler) as server:
        print(f"netplane/echo listening on 0.0.0.0:{port} (tcp, udp)", flush=True)
        server.serve_forever()


def _stop(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        serve(os.environ)


if __name__ == "__main__":
    main()
