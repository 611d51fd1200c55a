"""netplane/echo servers on loopback ports, as processes of their own, for
the tests of the echo image and of what talks to it (the mesh proxy)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
from dataclasses import dataclass

WHO = {"POD_NAME": "web-0", "POD_IP": "10.244.1.2", "NODE_NAME": "node-1"}
LOOPBACK = "127.0.0.1"


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


def start(argv: list[str], who: dict[str, str] = WHO, *,
          extra: dict[str, str] | None = None) -> Echo:
    """The server on a free loopback port, with ``extra`` in its
    environment: another with the same port can come in between, so it
    tries a few."""
    for _ in range(5):
        port = free_port()
        env = {**who, **(extra or {}), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "PORT": str(port), "NETPLANE_ECHO_ADDRESS": LOOPBACK}
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line == f"netplane/echo listening on {LOOPBACK}:{port} (tcp, udp)\n".encode():
            return Echo(proc, port)
        Echo(proc, port).close()
    raise AssertionError(f"{argv} did not start listening")
