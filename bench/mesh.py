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

    python bench/mesh.py [--runs 3] [--seconds 3] [--requests N]
                         [--targets direct,mesh,nginx,nginx-auto] [--cpus 0,1]
                         [--baseline REV] [--here] [--profile [--native]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvloop
from figures import pct

from netplane.api.meta import Obj
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


def nginx_conf(folder: str, port: int, backends: list[int], workers: str) -> str:
    weights = [w for _, w in BACKENDS]
    unit = min(weights)
    servers = "".join(f"    server {LOOPBACK}:{p} weight={w // unit};\n"
                      for p, w in zip(backends, weights, strict=True))
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
            f"  server {{\n    listen {LOOPBACK}:{port};\n"
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
        Path(conf).write_text(nginx_conf(folder, port, backends, workers))
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


def h2load(target: Target, run: Run, cpus: str) -> Load:
    with tempfile.NamedTemporaryFile(prefix="npb-h2load-", suffix=".log") as log:
        pids = target.pids()
        before = cpu_seconds(pids)
        done = subprocess.run([*pin(cpus), *h2load_argv(run), f"--log-file={log.name}",
                               f"http://{LOOPBACK}:{target.port}/"],
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
    latencies = [e[2] / 1000 for e in entries if 200 <= e[1] < 300] or [float("nan")]
    return Load(rate, pct(latencies, 50), pct(latencies, 90), pct(latencies, 99), failed,
                used / max(answered, 1) * 1e6)


def median_load(loads: list[Load]) -> Load:
    def med(get: Callable[[Load], float]) -> float:
        return statistics.median(get(x) for x in loads)

    return Load(med(lambda x: x.rate), med(lambda x: x.p50), med(lambda x: x.p90),
                med(lambda x: x.p99), max(x.failed for x in loads), med(lambda x: x.cpu_us))


# -- tables -----------------------------------------------------------------

def ms(v: float) -> str:
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def label(t: Target) -> str:
    return f"{t.name} ({t.note})" if t.note else t.name


Column = tuple[str, Callable[[Load], str]]


def _rate(x: Load) -> str:
    return f"{x.rate:,.0f}" + (f" ({x.failed} failed)" if x.failed else "")


FIXED_COLUMNS: tuple[Column, ...] = (
    ("achieved", _rate), ("p50 ms", lambda x: ms(x.p50)), ("p90 ms", lambda x: ms(x.p90)),
    ("p99 ms", lambda x: ms(x.p99)))
MAX_COLUMNS: tuple[Column, ...] = (
    ("req/s", _rate), ("p50 ms", lambda x: ms(x.p50)), ("p99 ms", lambda x: ms(x.p99)),
    ("CPU µs/req", lambda x: f"{x.cpu_us:.1f}"))


def table(targets: list[Target], got: dict[tuple[str, Run], Load], runs: list[Run],
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


def measure(targets: list[Target], runs: list[Run], opts: Options
            ) -> dict[tuple[str, Run], Load]:
    samples: dict[tuple[str, Run], list[Load]] = {}
    for n in range(opts.runs):
        for run in runs:
            for t in targets if n % 2 == 0 else targets[::-1]:
                samples.setdefault((t.name, run), []).append(h2load(t, run, opts.client_cpus))
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
        if not frames:
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for f in set(frames):
            inclusive[f] += int(count)
    return total, own.most_common(n), inclusive.most_common(n)


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
    for title, rows in (("own", own), ("inclusive", inclusive)):
        print(f"\n| {title} % | function |\n|---|---|")
        # The event loop's and the script's frames are in every sample.
        for frame, count in [r for r in rows if r[1] < 0.99 * total][:20]:
            print(f"| {100 * count / total:.1f} | {_short(frame)} |")


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
    targets = tuple(t for t in args.targets.split(",") if t)
    if bad := [t for t in targets if t not in TARGETS]:
        sys.exit(f"--targets: unknown {bad}; known: {','.join(TARGETS)}")
    return Options(args.runs, args.seconds, args.requests, targets, client, target,
                   args.echo, args.baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=Options.runs)
    parser.add_argument("--seconds", type=int, default=Options.seconds,
                        help="length of one run, after a second of warm-up")
    parser.add_argument("--requests", type=int, default=0,
                        help="this many requests a run instead of a duration (a quick check)")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--cpus", default="",
                        help="CLIENT,TARGET CPUs for taskset (default: the first two this "
                             "process may use); 'none' not to pin")
    parser.add_argument("--echo", default=echo_binary(), help="the netplane/echo binary")
    parser.add_argument("--here", action="store_true",
                        help="in this network namespace, not a fresh one (root) ")
    parser.add_argument("--baseline", default="", metavar="REV",
                        help="also the mesh proxy of this git revision (before a change)")
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
