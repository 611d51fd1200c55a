"""Mesh proxy benchmark: HTTP/1.1 over keep-alive connections, side by side
in one run, to

* ``direct``: a netplane/echo server (the C one pods run), the floor;
* ``mesh``: netplane's mesh proxy, configured as a node's is (``build``
  from a Service, two backend Services with an EndpointSlice each and an
  HTTPRoute splitting 80/20 between them), in a process of its own on
  uvloop as the agent runs it, in front of two echo servers;
* ``nginx``: nginx with the same two servers as an upstream (weights 4:1,
  keep-alive connections to them, no access log), one worker;
* ``nginx-auto``: the same with ``worker_processes auto``, not pinned.

Figures: at fixed offered rates of 1,000 and 5,000 requests/s over 10
connections (h2load's ``--rps``, each connection paced on its own, opened
1 ms apart so that their requests do not leave in bursts of 10; the first
second is not counted), latency p50/p90/p99 and the achieved rate. A
connection carries one request at a time, so a target that cannot keep up
shows it as an achieved rate below the offered one (its queue is not in
the latencies). Then the most a target answers over 1 and over 16
connections, with its CPU per answer (its own processes', schedstat; the
warm-up second's answers counted at the run's rate). Percentiles are by
nearest rank over h2load's per-request log; each cell is the median of
``--runs`` runs, the targets' order reversed every other run.

The load generator and the echo servers behind a proxy share one CPU; the
target under test (the proxy, or for ``direct`` an echo server of its own)
has the other to itself (``taskset``; ``--cpus CLIENT,TARGET``).
``nginx-auto`` runs a worker per CPU on both. As root the whole run is
inside a network namespace it creates and removes (no netfilter rules on
its loopback); ``--here`` keeps to this one's loopback.

``--baseline REV`` runs the mesh proxy of a git revision beside this
tree's, in the same rounds: a change's before and after, side by side.
``--profile`` instead samples the mesh proxy with py-spy under the
16-connection load and prints the functions with the most samples, own and
inclusive (``--native``: with uvloop's, httptools' and the system calls').

``--lab`` (root) measures in a real 2-node lab instead, each request from
a pod on node-2 to the server pod (netplane/echo) on node-1, h2load in the
client pod's network namespace:

* ``direct``: from a pod of a namespace that is not enrolled, to the
  server's Service address: the kernel's path;
* ``mesh``: from a pod of an enrolled namespace to the same Service, which
  has an HTTPRoute: node-2's proxy, the mutual-TLS tunnel, node-1's proxy;
* ``nginx``: from the pod that is not enrolled to nginx (one worker,
  keep-alive connections to the server pod) in node-2's network namespace.

The same rates, then the most over 16 connections; CPU per 1,000 answers/s
(CPU seconds per 1,000 answers) of both node agents for the mesh (the
proxy runs in them, beside their other work; under ``direct`` the same
agents' CPU, not carrying the load, is the background), of nginx's
processes for nginx; resident memory, idle and the peak under each load;
and the issue's targets beside the figures. The lab is removed at the end.
With ``--profile``, both agents are sampled with py-spy under the most
load instead: where each side's time goes.

    python bench/mesh.py [--runs 3] [--seconds 3] [--requests N]
                         [--targets direct,mesh,nginx,nginx-auto] [--cpus 0,1]
                         [--baseline REV] [--here] [--profile [--native]]
    python bench/mesh.py --lab [--runs 3] [--seconds 3] [--targets direct,mesh,nginx]
                               [--profile [--native]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import uvloop
from figures import pct

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cli.podexec import container_pid
from netplane.lab import processes
from netplane.lab.paths import LabPaths
from netplane.mesh.config import ServicePort, build
from netplane.mesh.proxy import Listener, Proxy, serve

LOOPBACK = "127.0.0.1"
NS = "bench"
BACKENDS = (("web-v1", 80), ("web-v2", 20))  # Service, weight
RATES = (1_000, 5_000)
RATE_CONNECTIONS = 10
MAX_CONNECTIONS = (1, 16)
TARGETS = ("direct", "mesh", "nginx", "nginx-auto")
READY_TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[1]
WARM_UP = 1  # seconds of each timed run not counted


# -- the mesh proxy, in a process of its own --------------------------------

def mesh_objects(ports: list[int]) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """The HTTPRoute, Services and EndpointSlices of the mesh under test:
    Service ``web`` split between the backends, each an echo server's port."""
    def service(name: str) -> Obj:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}

    def slice_of(name: str, port: int) -> Obj:
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-1", "namespace": NS,
                             "labels": {"kubernetes.io/service-name": name}},
                "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [LOOPBACK], "conditions": {"ready": True}}]}

    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "web-split", "namespace": NS,
                          "creationTimestamp": "2026-01-01T00:00:00Z"},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web",
                                      "port": 80}],
                      "rules": [{"backendRefs": [{"name": name, "port": 80, "weight": w}
                                                 for name, w in BACKENDS]}]}}
    services = [service("web")] + [service(name) for name, _ in BACKENDS]
    slices = [slice_of(name, port) for (name, _), port in zip(BACKENDS, ports, strict=True)]
    return [route], services, slices


async def _serve_mesh(ports: list[int]) -> None:
    routes, services, slices = mesh_objects(ports)
    config = build(routes, services, slices)
    proxy = Proxy()
    proxy.apply(config)
    server = await serve(proxy, LOOPBACK, 0)
    port = int(server.sockets[0].getsockname()[1])
    # A connection the node captured is routed by the Service it was sent
    # to; this one by the port it came in on, to the same compiled table.
    proxy.listeners[port] = Listener(config.producer[ServicePort(NS, "web", 80)], 80,
                                     service=f"web.{NS}.svc.cluster.local")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening on {port}", flush=True)
    await stop.wait()
    server.close()
    proxy.close()


def serve_mesh(ports: list[int]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_mesh(ports))


# -- processes --------------------------------------------------------------

def echo_binary() -> str:
    """The C server pods run (set-up builds it beside the interpreter), or ""."""
    path = os.path.join(os.path.dirname(sys.executable), "netplane-echo")
    return path if os.access(path, os.X_OK) else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def pin(cpus: str) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (nginx's workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """Time on CPU of every thread of these processes (schedstat)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    note: str = ""

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    @property
    def prefix(self) -> list[str]:
        """What h2load's command line starts with (nothing: it runs here)."""
        return []


class Measured(Protocol):
    """What a load is sent to: a name for the tables, the URL, where h2load
    runs from, and the processes whose CPU and memory count."""
    name: str
    note: str

    @property
    def url(self) -> str: ...

    @property
    def prefix(self) -> list[str]: ...

    def pids(self) -> list[int]: ...


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return True
        time.sleep(0.02)
    return False


def start_echo(stack: contextlib.ExitStack, echo: str, name: str, cpus: str) -> Target:
    """An echo server on a free port (another may take it first: a few tries)."""
    for _ in range(5):
        port = free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(port),
               "NETPLANE_ECHO_ADDRESS": LOOPBACK, "POD_NAME": f"{name}-0",
               "POD_IP": LOOPBACK, "NODE_NAME": "bench"}
        proc = subprocess.Popen([*pin(cpus), echo], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        stack.callback(_stop, proc)
        assert proc.stdout is not None
        if proc.stdout.readline().startswith(f"netplane/echo listening on {LOOPBACK}:{port} "
                                             .encode()):
            return Target(name, port, proc)
    raise RuntimeError(f"{echo} did not start listening")


def start_mesh(stack: contextlib.ExitStack, ports: list[int], cpus: str, *,
               name: str = "mesh", source: str = "") -> Target:
    """The proxy of this tree, or of the netplane package in ``source``."""
    env = {**os.environ, "PYTHONPATH": source} if source else None
    proc = subprocess.Popen([*pin(cpus), sys.executable, __file__, "--serve-mesh",
                             ",".join(map(str, ports))], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, env=env)
    stack.callback(_stop, proc)
    assert proc.stdout is not None
    found = re.fullmatch(rb"listening on (\d+)\n", proc.stdout.readline())
    if found is None:
        raise RuntimeError("the mesh proxy did not start listening")
    return Target(name, int(found[1]), proc)


def checkout(stack: contextlib.ExitStack, rev: str) -> str:
    """A folder with the netplane package as it was at ``rev``."""
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="npb-mesh-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "netplane"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def nginx_conf(folder: str, listen: str, upstream: list[str], workers: str) -> str:
    """nginx in front of the ``upstream`` servers ("address:port weight=N")."""
    servers = "".join(f"    server {u};\n" for u in upstream)
    temp = "".join(f"  {kind}_temp_path {folder}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\nworker_processes {workers};\npid {folder}/nginx.pid;\n"
            f"error_log {folder}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n" + temp +
            # nginx closes a keep-alive connection after 1,000 requests by
            # default, either side; the mesh proxy never does.
            f"  upstream web {{\n{servers}    keepalive 64;\n"
            "    keepalive_requests 1000000000;\n  }\n"
            f"  server {{\n    listen {listen};\n"
            "    keepalive_requests 1000000000;\n"
            "    location / {\n      proxy_pass http://web;\n"
            "      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n"
            "    }\n  }\n}\n")


def start_nginx(stack: contextlib.ExitStack, name: str, backends: list[int], workers: str,
                cpus: str) -> Target:
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="npb-nginx-"))
    for _ in range(5):
        port = free_port()
        conf = os.path.join(folder, "nginx.conf")
        weights = [w for _, w in BACKENDS]
        upstream = [f"{LOOPBACK}:{p} weight={w // min(weights)}"
                    for p, w in zip(backends, weights, strict=True)]
        Path(conf).write_text(nginx_conf(folder, f"{LOOPBACK}:{port}", upstream, workers))
        proc = subprocess.Popen([*pin(cpus), "nginx", "-p", folder, "-c", conf,
                                 "-e", os.path.join(folder, "error.log")],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        stack.callback(_stop, proc)
        if _wait_listening(port, proc):
            n = len(process_tree(proc.pid)) - 1
            return Target(name, port, proc, f"{n} worker{'s' * (n != 1)}")
    raise RuntimeError(f"nginx did not start listening:\n"
                       f"{Path(folder, 'error.log').read_text(errors='replace')}")


# -- load -------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    rate: float  # answers/s achieved
    p50: float  # ms
    p90: float
    p99: float
    failed: int
    cpu_us: float  # the target's CPU per answer
    errors: int = 0  # answers counted that were not 2xx


def _figure(pattern: str, out: str) -> re.Match[str]:
    found = re.search(pattern, out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"h2load printed no {pattern!r}:\n{out[-2000:]}")
    return found


def read_log(text: str) -> list[tuple[int, int, int]]:
    """h2load's per-request log: (start in µs since the epoch, status, µs
    until the answer's end), in the order the answers came."""
    out = []
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) == 3 and all(x.lstrip("-").isdigit() for x in f):
            out.append((int(f[0]), int(f[1]), int(f[2])))
    return out


def after_warm_up(entries: list[tuple[int, int, int]], seconds: float
                  ) -> tuple[list[tuple[int, int, int]], float]:
    """The requests sent after the first ``seconds``, and the answers/s
    over the time from then to the last answer."""
    cut = min(e[0] for e in entries) + seconds * 1e6
    kept = [e for e in entries if e[0] >= cut]
    if not kept:
        return [], 0.0
    end = max(e[0] + e[2] for e in kept)
    return kept, len(kept) / max((end - cut) / 1e6, 1e-6)


@dataclass(frozen=True)
class Run:
    connections: int
    rate: int | None = None  # offered, in all; None: as fast as answers come
    seconds: int = 3
    requests: int = 0  # instead of a duration, with no warm-up


def h2load_argv(run: Run) -> list[str]:
    argv = ["h2load", "--h1", "-t1", f"-c{run.connections}"]
    if run.rate:
        # Each connection paced on its own, the connections opened 1 ms
        # apart (h2load's finest) so that their requests do not all leave
        # at once; h2load paces only a run of a fixed number of requests.
        n = run.requests or run.rate * (run.seconds + WARM_UP)
        argv += [f"--rps={run.rate / run.connections:g}", "-r1", "--rate-period=1ms"]
    else:
        n = run.requests
    if n:
        argv.append(f"-n{max(n, run.connections)}")
    else:
        argv += [f"-D{run.seconds}", f"--warm-up-time={WARM_UP}"]
    return argv


def h2load(target: Measured, run: Run, cpus: str) -> Load:
    with tempfile.NamedTemporaryFile(prefix="npb-h2load-", suffix=".log") as log:
        pids = target.pids()
        before = cpu_seconds(pids)
        done = subprocess.run([*pin(cpus), *target.prefix, *h2load_argv(run),
                               f"--log-file={log.name}", target.url],
                              capture_output=True, text=True, check=False)
        used = cpu_seconds(pids) - before
        entries = read_log(Path(log.name).read_text())
    if not entries:
        raise RuntimeError(f"{target.name}: no answers\n{done.stdout[-2000:]}{done.stderr}")
    failed = int(_figure(r"^requests: .* (\d+) failed", done.stdout)[1])
    # A timed run (-D) logs only its main part, and says its rate.
    rate = float(_figure(r"^finished in \S+, ([\d.]+) req/s", done.stdout)[1])
    answered = len(entries) + (round(rate * WARM_UP) if not run.requests and not run.rate
                               else 0)
    if run.rate and not run.requests:
        entries, rate = after_warm_up(entries, WARM_UP)
    ok = [e[2] / 1000 for e in entries if 200 <= e[1] < 300]
    latencies = ok or [float("nan")]
    return Load(rate, pct(latencies, 50), pct(latencies, 90), pct(latencies, 99), failed,
                used / max(answered, 1) * 1e6, len(entries) - len(ok))


def median_load(loads: list[Load]) -> Load:
    def med(get: Callable[[Load], float]) -> float:
        return statistics.median(get(x) for x in loads)

    return Load(med(lambda x: x.rate), med(lambda x: x.p50), med(lambda x: x.p90),
                med(lambda x: x.p99), max(x.failed for x in loads), med(lambda x: x.cpu_us),
                max(x.errors for x in loads))


# -- tables -----------------------------------------------------------------

def ms(v: float) -> str:
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def label(t: Measured) -> str:
    return f"{t.name} ({t.note})" if t.note else t.name


Column = tuple[str, Callable[[Load], str]]


def _rate(x: Load) -> str:
    return (f"{x.rate:,.0f}" + (f" ({x.failed} failed)" if x.failed else "")
            + (f" ({x.errors} not 2xx)" if x.errors else ""))


FIXED_COLUMNS: tuple[Column, ...] = (
    ("achieved", _rate), ("p50 ms", lambda x: ms(x.p50)), ("p90 ms", lambda x: ms(x.p90)),
    ("p99 ms", lambda x: ms(x.p99)))
MAX_COLUMNS: tuple[Column, ...] = (
    ("req/s", _rate), ("p50 ms", lambda x: ms(x.p50)), ("p99 ms", lambda x: ms(x.p99)),
    ("CPU µs/req", lambda x: f"{x.cpu_us:.1f}"))


def table(targets: Sequence[Measured], got: dict[tuple[str, Run], Load], runs: list[Run],
          title: Callable[[Run], str], columns: tuple[Column, ...]) -> list[str]:
    """A row per target; for each run its columns, the first one titled."""
    head = "".join(f" {title(r) + ': ' if i == 0 else ''}{name} |"
                   for r in runs for i, (name, _) in enumerate(columns))
    lines = ["| target |" + head, "|---|" + "---|" * len(columns) * len(runs)]
    for t in targets:
        cells = [cell(got[(t.name, r)]) for r in runs for _, cell in columns]
        lines.append(f"| {label(t)} | " + " | ".join(cells) + " |")
    return lines


# -- the run ----------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    runs: int = 3
    seconds: int = 3
    requests: int = 0
    targets: tuple[str, ...] = TARGETS
    client_cpus: str = ""
    target_cpus: str = ""
    echo: str = ""
    baseline: str = ""  # a git revision whose mesh proxy runs beside this one


def start_targets(stack: contextlib.ExitStack, opts: Options) -> list[Target]:
    """The backends (on the load generator's CPU) and each target asked for."""
    backends = [start_echo(stack, opts.echo, name, opts.client_cpus) for name, _ in BACKENDS]
    ports = [b.port for b in backends]
    targets = []
    for name in opts.targets:
        if name == "direct":
            targets.append(start_echo(stack, opts.echo, "direct", opts.target_cpus))
        elif name == "mesh":
            targets.append(start_mesh(stack, ports, opts.target_cpus))
            if opts.baseline:
                targets.append(start_mesh(stack, ports, opts.target_cpus,
                                          name=f"mesh@{opts.baseline}",
                                          source=checkout(stack, opts.baseline)))
        elif shutil.which("nginx") is None:
            print(f"{name}: skipped, nginx is not installed (scripts/setup.sh installs it)")
        elif name == "nginx":
            targets.append(start_nginx(stack, name, ports, "1", opts.target_cpus))
        else:
            targets.append(start_nginx(stack, name, ports, "auto", ""))
    return targets


def measure(targets: Sequence[Measured], runs: list[Run], opts: Options,
            probe: Callable[[Measured, Run, str], Load] = h2load
            ) -> dict[tuple[str, Run], Load]:
    samples: dict[tuple[str, Run], list[Load]] = {}
    for n in range(opts.runs):
        for run in runs:
            for t in targets if n % 2 == 0 else targets[::-1]:
                samples.setdefault((t.name, run), []).append(probe(t, run, opts.client_cpus))
    return {k: median_load(v) for k, v in samples.items()}


def bench(opts: Options) -> None:
    fixed = [Run(RATE_CONNECTIONS, r, opts.seconds, opts.requests) for r in RATES]
    most = [Run(c, None, opts.seconds, opts.requests) for c in MAX_CONNECTIONS]
    with contextlib.ExitStack() as stack:
        targets = start_targets(stack, opts)
        got = measure(targets, fixed + most, opts)
    length = f"{opts.requests} requests" if opts.requests else f"{opts.seconds} s (+1 s warm-up)"
    where = (f"load generator and backends on CPU {opts.client_cpus}, target on CPU "
             f"{opts.target_cpus}" if opts.client_cpus else "not pinned")
    print(f"\nfixed offered rates (h2load, {RATE_CONNECTIONS} connections, {length} a run, "
          f"median of {opts.runs} runs; {where}):")
    print("\n".join(table(targets, got, fixed, lambda r: f"{r.rate:,}/s", FIXED_COLUMNS)))
    print(f"\nmost answers/s (h2load, {length} a run, median of {opts.runs} runs; CPU: "
          "the target's own processes per answer):")
    print("\n".join(table(targets, got, most, lambda r: f"{r.connections} conn", MAX_COLUMNS)),
          flush=True)


# -- in a lab ---------------------------------------------------------------

LAB_TARGETS = ("direct", "mesh", "nginx")
LAB_NS, PLAIN_NS = "bench-mesh", "bench-plain"
SERVER_NODE, CLIENT_NODE = "node-1", "node-2"
LAB_MAX_CONNECTIONS = 16
NGINX_PORT = 18080
IDLE_SECONDS = 3
NETPLANE = str(Path(sys.executable).with_name("netplane"))
KUBECTL = shutil.which("kubectl") or "kubectl"
MESH_SERVICE = f"echo.{LAB_NS}.svc.cluster.local"
# The targets.
ADDED_P90_MS, VCPU_PER_1K, MAX_OF_NGINX = 1.0, 0.35, 0.5

# The server on node-1 in an enrolled namespace behind a Service with a
# route; a load pod on node-2 in that namespace (its connections to the
# Service are the node's proxy's) and one in a namespace that is not
# enrolled (the kernel's path to the same Service, and nginx's client).
LAB_MANIFEST = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {LAB_NS}, labels: {{netplane.io/mesh: enabled}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {PLAIN_NS}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: echo, namespace: {LAB_NS}, labels: {{app: echo}}}}
spec:
  nodeName: {SERVER_NODE}
  containers:
  - {{name: echo, image: netplane/echo, ports: [{{containerPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {LAB_NS}}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: echo, namespace: {LAB_NS}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo, port: 80}}]
  rules:
  - backendRefs: [{{name: echo, port: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: load, namespace: {LAB_NS}}}
spec:
  nodeName: {CLIENT_NODE}
  containers:
  - {{name: shell, image: netplane/toolbox, command: [sleep, infinity]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: load, namespace: {PLAIN_NS}}}
spec:
  nodeName: {CLIENT_NODE}
  containers:
  - {{name: shell, image: netplane/toolbox, command: [sleep, infinity]}}
"""


def until(what: str, check: Callable[[], object], timeout: float = 120.0) -> object:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return got


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_times() -> list[int]:
    """The machine's CPU time so far, in ticks: user, nice, system, idle,
    iowait, irq, softirq, steal."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def machine_note(before: list[int], after: list[int], load: tuple[float, float]) -> str:
    """How busy the machine was over the runs, for figures on a shared one."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = max(sum(d), 1)
    return (f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} before, "
            f"{load[1]:.2f} after; over the runs {100 * (total - d[3] - d[4]) / total:.0f} % "
            f"busy, {100 * d[7] / total:.1f} % stolen by the hypervisor")


class PeakRss(threading.Thread):
    """The most resident memory of some processes together, sampled."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak, self.done = pids, rss_kib(pids), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, rss_kib(self.pids))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, rss_kib(self.pids))


@dataclass
class Lab:
    paths: LabPaths

    def netplane(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([NETPLANE, "--lab", self.paths.name, *args], capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"netplane {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        return dict(json.loads(self.netplane("get", kind, name, "-n", namespace, "-o", "json")))

    def apply(self, manifest: str) -> None:
        # kubectl, as a user applies Gateway API kinds.
        subprocess.run([KUBECTL, "apply", "-f", "-"], input=manifest, text=True, check=True,
                       capture_output=True, timeout=60,
                       env={**os.environ, "KUBECONFIG": str(self.paths.kubeconfig)})

    def agent(self, node: str) -> int:
        pid = processes.alive(self.paths.node_dir(node) / "agent.pid")
        if pid is None:
            raise RuntimeError(f"{node}'s agent is not running")
        return pid

    def proxied(self) -> float:
        """The requests to the echo Service node-2's proxy has answered."""
        text = self.netplane("lab", "exec", "control", "--", "curl", "-sS", "--max-time", "5",
                             f"http://{LabPaths.node_ip(CLIENT_NODE)}:10249/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("netplane_mesh_requests_total{")
                   and f'destination_service="{MESH_SERVICE}"' in line)

    def tunnels(self) -> float:
        text = self.netplane("lab", "exec", "control", "--", "curl", "-sS", "--max-time", "5",
                             f"http://{LabPaths.node_ip(CLIENT_NODE)}:10249/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("netplane_mesh_tunnel_connections_total{")
                   and 'direction="out"' in line and 'outcome="connected"' in line)


@dataclass
class LabTarget:
    name: str
    url: str
    client: int  # a process of the client pod: h2load runs in its network namespace
    charged: Callable[[], list[int]]  # whose CPU and memory the figures are
    note: str = ""

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.client), "--net"]

    def pids(self) -> list[int]:
        return self.charged()


def http_code(client: int, url: str) -> str:
    done = subprocess.run(["nsenter", "-t", str(client), "--net", "curl", "-s", "--max-time",
                           "3", "-o", "/dev/null", "-w", "%{http_code}", url],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


def lab_nginx(stack: contextlib.ExitStack, lab: Lab, server: str, client: int,
              cpus: str) -> subprocess.Popen[bytes]:
    """nginx in node-2's network namespace, on its underlay address, in
    front of the server pod; once it answers the client pod."""
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="npb-nginx-"))
    listen = f"{LabPaths.node_ip(CLIENT_NODE)}:{NGINX_PORT}"
    conf = os.path.join(folder, "nginx.conf")
    Path(conf).write_text(nginx_conf(folder, listen, [f"{server}:8080"], "1"))
    proc = subprocess.Popen([*pin(cpus), NETPLANE, "--lab", lab.paths.name, "lab", "exec",
                             CLIENT_NODE, "--", "nginx", "-p", folder, "-c", conf,
                             "-e", os.path.join(folder, "error.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    stack.callback(_stop, proc)
    until("nginx answering", lambda: proc.poll() is not None
          or http_code(client, f"http://{listen}/") == "200", READY_TIMEOUT)
    if proc.poll() is not None:
        raise RuntimeError(f"nginx stopped:\n"
                           f"{Path(folder, 'error.log').read_text(errors='replace')}")
    return proc


@dataclass
class LabFigures:
    got: dict[tuple[str, Run], Load]
    rss: dict[tuple[str, Run], int]  # KiB, the most over the runs
    idle_rss: dict[str, int]  # KiB, before any load
    idle_cpu: float  # the agents', vCPU, before any load
    proxied: dict[str, float]  # requests node-2's proxy counted during each target's runs
    tunnels: float
    client_share: dict[Run, float]  # of the mesh's CPU, node-2's agent's (the median)
    machine: str = ""


def lab_measure(lab: Lab, targets: list[LabTarget], runs: list[Run], opts: Options
                ) -> LabFigures:
    idle_rss = {t.name: rss_kib(t.pids()) for t in targets}
    agents = [lab.agent(n) for n in (SERVER_NODE, CLIENT_NODE)]
    before = cpu_seconds(agents)
    time.sleep(IDLE_SECONDS)
    idle_cpu = (cpu_seconds(agents) - before) / IDLE_SECONDS
    rss: dict[tuple[str, Run], int] = {}
    proxied = {t.name: 0.0 for t in targets}
    shares: dict[Run, list[float]] = {}
    client = lab.agent(CLIENT_NODE)

    def probe(t: Measured, run: Run, cpus: str) -> Load:
        counted = lab.proxied()
        peak = PeakRss(t.pids())
        peak.start()
        cpu = cpu_seconds(t.pids()), cpu_seconds([client])
        try:
            load = h2load(t, run, cpus)
        finally:
            most = peak.stop()
        if t.name == "mesh":
            used = cpu_seconds(t.pids()) - cpu[0]
            shares.setdefault(run, []).append((cpu_seconds([client]) - cpu[1]) / max(used, 1e-9))
        rss[(t.name, run)] = max(rss.get((t.name, run), 0), most)
        proxied[t.name] += lab.proxied() - counted
        return load

    times, load = cpu_times(), os.getloadavg()[0]
    got = measure(targets, runs, opts, probe)
    return LabFigures(got, rss, idle_rss, idle_cpu, proxied, lab.tunnels(),
                      {r: statistics.median(v) for r, v in shares.items()},
                      machine_note(times, cpu_times(), (load, os.getloadavg()[0])))


def vcpu(x: Load) -> str:
    """CPU per 1,000 answers/s: CPU seconds per 1,000 answers."""
    return f"{x.cpu_us / 1000:.3f}"


LAB_FIXED_COLUMNS: tuple[Column, ...] = (*FIXED_COLUMNS, ("vCPU per 1k/s", vcpu))
LAB_MAX_COLUMNS: tuple[Column, ...] = (
    ("req/s", _rate), ("p50 ms", lambda x: ms(x.p50)), ("p90 ms", lambda x: ms(x.p90)),
    ("p99 ms", lambda x: ms(x.p99)), ("vCPU per 1k/s", vcpu))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def lab_report(figures: LabFigures, targets: list[LabTarget], fixed: list[Run], most: Run,
               opts: Options) -> list[str]:
    got = figures.got
    names = [t.name for t in targets]
    length = f"{opts.requests} requests" if opts.requests else f"{opts.seconds} s (+1 s warm-up)"
    out = [f"fixed offered rates (h2load in a pod on {CLIENT_NODE}, {RATE_CONNECTIONS} "
           f"connections, {length} a run, median of {opts.runs} runs; the server pod on "
           f"{SERVER_NODE}; CPU: direct's is both agents' while they do not carry the load, "
           "mesh's both agents', nginx's its processes'):"]
    out += table(targets, got, fixed, lambda r: f"{r.rate:,}/s", LAB_FIXED_COLUMNS)
    out += ["", f"most answers/s ({most.connections} connections, {length} a run, median of "
            f"{opts.runs} runs):"]
    out += table(targets, got, [most], lambda r: f"{r.connections} conn", LAB_MAX_COLUMNS)
    out += ["", "memory (resident, MB; the agents' both; peak sampled every 0.1 s, the most "
            "over the runs):", "| target | idle | peak at 1,000/s | peak at 5,000/s | "
            f"peak at {most.connections} conn | added at {most.connections} conn | added per "
            "1k/s |", "|---|---|---|---|---|---|---|"]
    for t in (t for t in targets if t.name != "direct"):  # no proxy of its own
        idle = figures.idle_rss[t.name]
        peaks = [figures.rss[(t.name, r)] for r in [*fixed, most]]
        added = (peaks[-1] - idle) / 1024
        per_1k = added / max(got[(t.name, most)].rate / 1000, 1e-9)
        out.append(f"| {label(t)} | {idle / 1024:.1f} | "
                   + " | ".join(f"{p / 1024:.1f}" for p in peaks)
                   + f" | {added:+.1f} | {per_1k:+.2f} |")
    out += ["", f"agents' CPU with no load: {figures.idle_cpu:.3f} vCPU (both); requests "
            f"{CLIENT_NODE}'s proxy counted to {MESH_SERVICE}: "
            + ", ".join(f"{n} {figures.proxied[n]:,.0f}" for n in names)
            + f"; its tunnel connections made: {figures.tunnels:.0f}"]
    out += [figures.machine] if figures.machine else []
    one = next((r for r in fixed if r.rate == 1_000), None)
    rows = []
    if one and {"direct", "mesh"} <= set(names):
        added = got[("mesh", one)].p90 - got[("direct", one)].p90
        rows.append(f"| p90 added by the mesh at 1,000/s (mesh - direct) | {added:+.3f} ms "
                    f"| <= {ADDED_P90_MS:g} ms | {verdict(added <= ADDED_P90_MS)} |")
    if "mesh" in names:
        for r in [*fixed, most]:
            when = f"{r.rate:,}/s" if r.rate else f"{r.connections} conn"
            mesh = got[("mesh", r)].cpu_us / 1000
            net = mesh - got[("direct", r)].cpu_us / 1000 if "direct" in names else mesh
            rows.append(f"| mesh CPU per 1,000 req/s at {when} (both agents; less their "
                        f"CPU under direct) | {mesh:.3f} ({net:.3f}) vCPU | <= {VCPU_PER_1K:g}"
                        f" | {verdict(mesh <= VCPU_PER_1K)} ({verdict(net <= VCPU_PER_1K)}) |")
            if r in figures.client_share:
                share = figures.client_share[r]
                rows.append(f"| of it {CLIENT_NODE}'s agent (client side) / {SERVER_NODE}'s "
                            f"(server side) | {mesh * share:.3f} / {mesh * (1 - share):.3f} "
                            "vCPU | | |")
    if {"mesh", "nginx"} <= set(names):
        ratio = got[("mesh", most)].rate / max(got[("nginx", most)].rate, 1e-9)
        rows.append(f"| most req/s, mesh / nginx ({most.connections} conn) | {ratio:.2f}x | "
                    f">= {MAX_OF_NGINX:g}x | {verdict(ratio >= MAX_OF_NGINX)} |")
    if rows:
        out += ["", "the issue's targets:", "| figure | this run | target | |",
                "|---|---|---|---|", *rows]
    out += ["", "The mesh proxy runs in the node agents, which also do other work (pods, "
            "Services, DNS, status): their CPU and memory are counted whole.",
            "Istio's anchors: an Envoy sidecar 0.35 vCPU and 40 MB per 1,000 req/s; "
            "+2.65 ms p90 for a client and server sidecar pair."]
    return out


def lab_profile(lab: Lab, target: LabTarget, opts: Options, rate: int, *,
                native: bool) -> None:
    """Both agents sampled with py-spy while the mesh carries the most it
    can: where each side's time goes."""
    spy = py_spy()
    if not spy:
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    seconds = opts.seconds if not opts.requests else 3
    with contextlib.ExitStack() as stack:
        outs, procs = {}, {}
        for node in (CLIENT_NODE, SERVER_NODE):
            out = outs[node] = stack.enter_context(
                tempfile.NamedTemporaryFile(prefix="npb-spy-", suffix=".txt"))
            procs[node] = subprocess.Popen(
                [spy, "record", "--pid", str(lab.agent(node)), "--format", "raw",
                 "--native" if native else "--function", f"--rate={rate}",
                 f"--duration={seconds}", "-o", out.name],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        load = h2load(target, Run(LAB_MAX_CONNECTIONS, None, seconds), opts.client_cpus)
        raws = {}
        for node, proc in procs.items():
            _, err = proc.communicate()
            raws[node] = Path(outs[node].name).read_text()
            if not raws[node]:
                sys.exit(f"py-spy recorded nothing on {node}: {err.decode(errors='replace')}")
    print(f"\nmesh in the lab under py-spy ({rate} samples/s, which slow it), "
          f"{LAB_MAX_CONNECTIONS} connections: {load.rate:,.0f} answers/s, "
          f"p50 {ms(load.p50)} ms, p99 {ms(load.p99)} ms")
    for node, raw in raws.items():
        total, own, inclusive = top_functions(raw, 40)
        side = "client side" if node == CLIENT_NODE else "server side"
        print(f"\n{node}'s agent ({side}): {total} samples")
        print_top(total, own, inclusive, 30)


def lab_bench(opts: Options, profile_rate: int = 0, native: bool = False) -> None:
    if os.geteuid() != 0:
        sys.exit("--lab needs root: the lab creates network namespaces")
    lab = Lab(LabPaths(f"mesh{uuid.uuid4().hex[:6]}"))
    fixed = [Run(RATE_CONNECTIONS, r, opts.seconds, opts.requests) for r in RATES]
    most = Run(LAB_MAX_CONNECTIONS, None, opts.seconds, opts.requests)
    with contextlib.ExitStack() as stack:
        print(f"lab {lab.paths.name}: up", file=sys.stderr, flush=True)
        stack.callback(subprocess.run, [NETPLANE, "lab", "down", "--name", lab.paths.name],
                       check=False, capture_output=True, timeout=180)
        subprocess.run([NETPLANE, "lab", "up", "--name", lab.paths.name, "--nodes", "2"],
                       check=True, capture_output=True, timeout=300)
        lab.apply(LAB_MANIFEST)
        pods = [(LAB_NS, "echo"), (LAB_NS, "load"), (PLAIN_NS, "load")]
        until("the pods ready", lambda: all(meta.pod_ready(lab.get("pod", ns, name))
                                            for ns, name in pods), 180)
        server = lab.get("pod", LAB_NS, "echo")["status"]["podIP"]
        vip = lab.get("service", LAB_NS, "echo")["spec"]["clusterIP"]
        enrolled, plain = (container_pid(lab.get("pod", ns, "load"), None, lab.paths)
                           for ns in (LAB_NS, PLAIN_NS))
        url = f"http://{vip}/"
        agents = [lab.agent(n) for n in (SERVER_NODE, CLIENT_NODE)]

        seen: list[str] = []

        def proxied_once() -> bool:
            seen[:] = [http_code(enrolled, url), f"{lab.proxied():.0f}"]
            return seen == ["200", seen[1]] and seen[1] != "0"
        # The node's proxy has the route and captures the pod's connections.
        # A first tunnel handshake that stalls holds every request to the
        # other node for the handshake timeout (60 s), hence the margin.
        try:
            until("the mesh in force", proxied_once, 180)
        except RuntimeError as e:
            tunnel_log = [line for node in (SERVER_NODE, CLIENT_NODE)
                          for line in (lab.paths.state_dir / "logs" / f"{node}.log")
                          .read_text(errors="replace").splitlines() if "tunnel" in line]
            raise RuntimeError(
                f"{e}: the load pod's last answer {seen[0]!r}, {seen[1]} requests proxied\n"
                + lab.netplane("mesh", "status") + lab.netplane(
                    "lab", "exec", CLIENT_NODE, "--", "nft", "list", "table", "ip",
                    "netplane-mesh") + "\n".join(tunnel_log[-20:])) from None
        if profile_rate:
            lab_profile(lab, LabTarget("mesh", url, enrolled, lambda: agents), opts,
                        profile_rate, native=native)
            return
        targets: list[LabTarget] = []
        for name in opts.targets:
            if name == "direct":
                targets.append(LabTarget("direct", url, plain, lambda: agents))
            elif name == "mesh":
                targets.append(LabTarget("mesh", url, enrolled, lambda: agents,
                                         "both agents"))
            elif shutil.which("nginx") is None:
                print("nginx: skipped, nginx is not installed (scripts/setup.sh installs it)")
            else:
                nginx = lab_nginx(stack, lab, server, plain, opts.target_cpus).pid
                listen = f"http://{LabPaths.node_ip(CLIENT_NODE)}:{NGINX_PORT}/"
                targets.append(LabTarget("nginx", listen, plain,
                                         partial(process_tree, nginx), "1 worker"))
        print(f"lab {lab.paths.name}: measuring", file=sys.stderr, flush=True)
        figures = lab_measure(lab, targets, [*fixed, most], opts)
    print()
    print("\n".join(lab_report(figures, targets, fixed, most, opts)), flush=True)


# -- profile ----------------------------------------------------------------

def py_spy() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return path if os.access(path, os.X_OK) else shutil.which("py-spy") or ""


def top_functions(raw: str, n: int = 20) -> tuple[int, list[tuple[str, int]],
                                                  list[tuple[str, int]]]:
    """From py-spy's raw output (``frame;frame;... count`` per stack, the
    innermost last): the samples, and the functions with the most of them,
    own (innermost) and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        # A pool thread waiting for work is idle, whatever py-spy judged.
        if not frames or frames[-1].startswith("_worker (concurrent/futures/thread.py"):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for f in set(frames):
            inclusive[f] += int(count)
    return total, own.most_common(n), inclusive.most_common(n)


def print_top(total: int, own: list[tuple[str, int]], inclusive: list[tuple[str, int]],
              rows: int) -> None:
    """The functions with the most samples, own and inclusive, as tables."""
    for title, counted in (("own", own), ("inclusive", inclusive)):
        print(f"\n| {title} % | function |\n|---|---|")
        # The event loop's and the script's frames are in every sample.
        for frame, count in [r for r in counted if r[1] < 0.99 * total][:rows]:
            print(f"| {100 * count / total:.1f} | {_short(frame)} |")


def _short(frame: str) -> str:
    return re.sub(r"\(\S*/(site-packages|lib/python3\.\d+|netplane)/", r"(\1/", frame)


def sample(opts: Options, rate: int, seconds: int, *, native: bool) -> tuple[Load, str]:
    """The mesh proxy's load figures and py-spy's raw stacks, sampled
    while it answers as fast as it can over 16 connections."""
    spy = py_spy()
    if not spy:
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    with contextlib.ExitStack() as stack:
        backends = [start_echo(stack, opts.echo, name, opts.client_cpus)
                    for name, _ in BACKENDS]
        mesh = start_mesh(stack, [b.port for b in backends], opts.target_cpus)
        out = stack.enter_context(tempfile.NamedTemporaryFile(prefix="npb-spy-", suffix=".txt"))
        # Sampling starts with the load's warm-up second, and ends before it.
        spy_proc = subprocess.Popen(
            [*pin(opts.client_cpus), spy, "record", "--pid", str(mesh.proc.pid),
             "--format", "raw", "--native" if native else "--function", f"--rate={rate}",
             f"--duration={seconds}", "-o", out.name],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        load = h2load(mesh, Run(MAX_CONNECTIONS[-1], None, seconds), opts.client_cpus)
        _, err = spy_proc.communicate()
        raw = Path(out.name).read_text()
    if not raw:
        sys.exit(f"py-spy recorded nothing: {err.decode(errors='replace')}")
    return load, raw


def profile(opts: Options, rate: int, *, native: bool = False) -> None:
    seconds = opts.seconds if not opts.requests else 3
    load, raw = sample(opts, rate, seconds, native=native)
    total, own, inclusive = top_functions(raw, 30)
    print(f"\nmesh proxy under py-spy ({rate} samples/s, which slow it), "
          f"{MAX_CONNECTIONS[-1]} connections: {load.rate:,.0f} answers/s, "
          f"p50 {ms(load.p50)} ms, p99 {ms(load.p99)} ms; {total} samples not idle")
    print_top(total, own, inclusive, 20)


# -- entry ------------------------------------------------------------------

@contextlib.contextmanager
def netns() -> Iterator[str]:
    name = f"npb-mesh-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False)


def options(args: argparse.Namespace) -> Options:
    cpus = sorted(os.sched_getaffinity(0))
    client, target = ((str(cpus[0]), str(cpus[1])) if len(cpus) >= 2 else ("", ""))
    if args.cpus == "none":
        client = target = ""
    elif args.cpus:
        client, target = args.cpus.split(",", 1)
    known = LAB_TARGETS if args.lab else TARGETS
    targets = tuple(t for t in args.targets.split(",") if t) or known
    if bad := [t for t in targets if t not in known]:
        sys.exit(f"--targets: unknown {bad}; known: {','.join(known)}")
    if args.lab and not args.cpus:
        client = target = ""  # the lab's processes are not pinned: h2load is not either
    return Options(args.runs, args.seconds, args.requests, targets, client, target,
                   args.echo, args.baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=Options.runs)
    parser.add_argument("--seconds", type=int, default=Options.seconds,
                        help="length of one run, after a second of warm-up")
    parser.add_argument("--requests", type=int, default=0,
                        help="this many requests a run instead of a duration (a quick check)")
    parser.add_argument("--targets", default="",
                        help=f"default: {','.join(TARGETS)}; with --lab: {','.join(LAB_TARGETS)}")
    parser.add_argument("--cpus", default="",
                        help="CLIENT,TARGET CPUs for taskset (default: the first two this "
                             "process may use); 'none' not to pin")
    parser.add_argument("--echo", default=echo_binary(), help="the netplane/echo binary")
    parser.add_argument("--here", action="store_true",
                        help="in this network namespace, not a fresh one (root) ")
    parser.add_argument("--baseline", default="", metavar="REV",
                        help="also the mesh proxy of this git revision (before a change)")
    parser.add_argument("--lab", action="store_true",
                        help="in a 2-node lab instead: a pod on node-2 to one on node-1 "
                             "(root)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the mesh proxy with py-spy under load instead")
    parser.add_argument("--native", action="store_true",
                        help="with --profile: C frames too (uvloop, httptools, system calls)")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples/s")
    parser.add_argument("--serve-mesh", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_mesh:
        serve_mesh([int(p) for p in args.serve_mesh.split(",")])
        return
    if shutil.which("h2load") is None:
        sys.exit("h2load is not installed (nghttp2-client; scripts/setup.sh installs it)")
    if args.lab:
        lab_bench(options(args), args.profile_rate if args.profile else 0, args.native)
        return
    if not args.echo:
        sys.exit("no netplane/echo binary: run scripts/setup.sh, or name one with --echo")
    if not args.here and os.geteuid() == 0:
        with netns() as ns:
            done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__,
                                   *sys.argv[1:], "--here"], check=False)
        sys.exit(done.returncode)
    opts = options(args)
    if args.profile:
        profile(opts, args.profile_rate, native=args.native)
    else:
        bench(opts)


if __name__ == "__main__":
    main()
