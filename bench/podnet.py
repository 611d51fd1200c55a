"""A node with pods for data-plane benchmarks, and the HTTP load that runs
between them. Namespaces only: a node netns with the pod bridge ``np0``
(the pods' gateway, forwarding on, bridged traffic through netfilter, as
the pod network sets a node up), pods as netns on veths plugged into it,
the ``netplane/echo`` server (the C one when the set-up built it) in a
pod. Every namespace made here is removed and every process started here
is killed by PID when the ``with`` block ends, however it ends; nothing
touches the root namespace and no packet leaves the machine.

Load: ``wrk`` when installed (scripts/setup.sh installs it), else a small
asyncio generator; keep-alive, or a new connection per request.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from netplane.net import netns as nsutil
from netplane.node.runtime.command import ECHO_MODULE, echo_binary

GATEWAY = "10.244.1.1"
PREFIXLEN = 24
SERVER_PORT = 8080
CONNECTIONS = 16


@dataclass(frozen=True)
class Load:
    """One load run: requests/s and latency percentiles in milliseconds."""

    rps: float
    p50_ms: float
    p99_ms: float


@dataclass
class Node:
    """A node netns, its pods by name -> netns, the processes started in them."""

    name: str
    prefix: str
    pods: dict[str, str] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_pod(self, pod: str, ip: str) -> str:
        ns = f"{self.prefix}-{len(self.pods)}"
        self.made.append(ns)  # before it exists: one that half-failed is removed too
        nsutil.add(ns)
        port = f"veth{len(self.pods)}"
        nsutil.batch([f"link add {port} type veth peer name eth0 netns {ns}",
                      f"link set {port} master np0", f"link set {port} up"], netns=self.name)
        nsutil.batch([f"addr add {ip}/{PREFIXLEN} dev eth0", "link set eth0 up",
                      f"route add default via {GATEWAY}"], netns=ns)
        self.pods[pod] = ns
        return ns

    def serve(self, pod: str, *, cpu: int | None = None) -> None:
        """The echo server in ``pod`` on SERVER_PORT; returns once it listens."""
        binary = echo_binary(python=sys.executable)
        argv = [str(binary)] if binary else [sys.executable, "-m", ECHO_MODULE]
        pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.pods[pod], *pin, *argv], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PORT": str(SERVER_PORT), "POD_NAME": pod})
        self.procs.append(proc)  # before the wait: a server that fails is killed too
        assert proc.stdout is not None
        if b"listening" not in proc.stdout.readline():
            raise RuntimeError(f"the echo server in {pod} did not start")

    def fresh(self, client: str) -> None:
        """Runs with a new connection per request leave tens of thousands of
        TIME_WAIT entries in conntrack and in the client: each run starts
        clean, or later runs measure a full table instead of the rules."""
        subprocess.run(["ip", "netns", "exec", self.name, "conntrack", "-F"],
                       capture_output=True, check=False)
        nsutil.set_sysctl("net.ipv4.tcp_tw_reuse", 1, netns=self.pods[client])
        time.sleep(0.5)


@contextlib.contextmanager
def node() -> Iterator[Node]:
    """A node netns with the pod bridge; pods are added with ``add_pod``."""
    prefix = f"npbpol{uuid.uuid4().hex[:6]}"
    n = Node(f"{prefix}-node", prefix)
    n.made.append(n.name)
    try:
        nsutil.add(n.name)
        nsutil.batch(["link add np0 type bridge", f"addr add {GATEWAY}/{PREFIXLEN} dev np0",
                      "link set np0 up"], netns=n.name)
        nsutil.set_sysctl("net.ipv4.ip_forward", 1, netns=n.name)
        nsutil.set_sysctl("net.bridge.bridge-nf-call-iptables", 1, netns=n.name)
        yield n
    finally:
        for proc in n.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for ns in reversed(n.made):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


@contextlib.contextmanager
def netns(role: str) -> Iterator[str]:
    """One bare throwaway netns (loopback up), removed when the block ends."""
    name = f"npbpol{uuid.uuid4().hex[:6]}-{role}"
    try:
        nsutil.add(name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


# -- load -------------------------------------------------------------------------

LOAD = r"""
import asyncio, sys, time
host, port, seconds, conns = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
close = sys.argv[5] == "1"
req = b"GET / HTTP/1.1\r\nHost: x\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n"
lat = []
async def worker(end):
    conn = None
    while time.perf_counter() < end:
        t = time.perf_counter()
        if conn is None:
            conn = await asyncio.open_connection(host, port)
        r, w = conn
        w.write(req)
        head = await r.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await r.readexactly(length)
        lat.append(time.perf_counter() - t)
        if close:
            w.close()
            conn = None
async def main():
    end = time.perf_counter() + seconds
    await asyncio.gather(*(worker(end) for _ in range(conns)))
asyncio.run(main())
lat.sort()
print(len(lat) / seconds, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000)
"""


def load_tool() -> str:
    return "wrk" if shutil.which("wrk") else "an asyncio load generator"


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if m is None:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def parse_wrk(out: str) -> Load:
    """Requests/s and the 50 % and 99 % latencies of ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50, p99 = re.search(r"\s50%\s+(\S+)", out), re.search(r"\s99%\s+(\S+)", out)
    if rps is None or p50 is None or p99 is None:
        raise ValueError(f"wrk output lacks its figures:\n{out[-1000:]}")
    return Load(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)))


def http_load(client_ns: str, ip: str, *, seconds: float, close: bool,
              cpu: int | None = None) -> Load:
    """HTTP GETs from ``client_ns`` to ``ip``:SERVER_PORT for ``seconds``,
    CONNECTIONS at a time; ``close``: a new connection per request."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    run = ["ip", "netns", "exec", client_ns, *pin]
    if shutil.which("wrk"):
        header = ["-H", "Connection: close"] if close else []
        out = subprocess.run([*run, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s",
                              "--latency", *header, f"http://{ip}:{SERVER_PORT}/"],
                             capture_output=True, text=True, check=True).stdout
        return parse_wrk(out)
    out = subprocess.run([*run, sys.executable, "-c", LOAD, ip, str(SERVER_PORT), str(seconds),
                          str(CONNECTIONS), "1" if close else "0"],
                         capture_output=True, text=True, check=True).stdout.split()
    return Load(float(out[0]), float(out[1]), float(out[2]))


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def http_ok(client_ns: str, ip: str) -> bool:
    """One GET from ``client_ns`` answered 200 (curl, or Python without it)."""
    url = f"http://{ip}:{SERVER_PORT}/"
    argv = (["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", url]
            if shutil.which("curl") else
            [sys.executable, "-c", "import sys, urllib.request as u; "
             "print(u.urlopen(sys.argv[1], timeout=3).status)", url])
    out = subprocess.run(["ip", "netns", "exec", client_ns, *argv], capture_output=True,
                         text=True, check=False).stdout.strip()
    return out == "200"
