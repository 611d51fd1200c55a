"""Proxy benchmarks: control plane (sync times) per mode, and data plane.

Control plane, for 1,000 / 5,000 / 10,000 ClusterIP services with 2
endpoints each, in throwaway network namespaces:

* iptables (for each backend, nft and legacy): ``full_sync_s`` (every
  service new: render + one restore, through the Proxier), ``resync_s``
  (the periodic full sync: renders cached, everything rewritten),
  ``bare_restore_s`` (a bare
  ``iptables-restore`` of the very same text into a fresh namespace, same
  run), ``bare_reload_s`` (the same text restored by hand over the loaded
  table, as a resync must), ``one_change_s`` (median partial sync after one service's
  endpoints change), ``add_s`` / ``remove_s`` (one service added /
  deleted: its lines in the shared chains move too), ``render_s``.
* other modes plug in through ``MODE_HOOKS``: a module in this folder with
  a function ``f(n_services: int) -> dict[str, float]`` returning at least
  ``full_sync_s`` and ``one_change_s`` (seconds; any other keys are printed
  as extra columns). A hook whose module or function is missing is skipped.

Data plane: requests/s and p50/p99 latency of HTTP through a ClusterIP vs
straight to the pod IP, from a client pod, with ``DATA_PLANE_SERVICES``
services' rules loaded and the agent's node-local DNS notrack rules: with
keep-alive, and with a new connection per request (each one walks the NAT
rules); iptables mode for each backend, then nftables mode, then the
kernel's floor (one DNAT rule for the ClusterIP and no other rule, in
iptables and in nftables: what any rule-based proxy pays for NAT), each on
a fresh node. The
machine is shared, so the figures are built to be compared: the
load generator and the server are pinned to a CPU each (``taskset``), the
two paths alternate run by run (ABBA), and "vs direct" is the median, with
quartiles, of each ClusterIP run over the pod IP run beside it, in
requests/s and in requests per CPU second of the load generator and the
server (their time holds the kernel's work on their packets; it moves far
less than requests/s when other work shares the CPUs). The server
is the C netplane/echo pods run (``--server python`` for an asyncio one,
whose own cost hides more of the kernel's). Uses ``wrk`` when installed,
else a small asyncio load generator. Bounded in time; namespaces only.
Needs root.

    python bench/proxy.py [--sizes 1000,5000] [--backends nft,legacy] [--no-data-plane]
                          [--runs 9] [--seconds 2] [--server echo|python] [--cpus 0,1]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from netplane.api.meta import Obj
from netplane.proxy.command import Input
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.apply import Backend, IptablesApplier
from netplane.proxy.iptables.proxier import Proxier
from netplane.proxy.loop import SyncLoop
from netplane.proxy.mapproxier import MapProxier, NftablesAdapter
from netplane.proxy.nftables.backend import NftablesBackend

SIZES = (1_000, 5_000, 10_000)
CHANGES = 9
NODE = "node-1"
# mode -> (module in this folder, function): the hook for other modes.
MODE_HOOKS: dict[str, tuple[str, str]] = {
    "nftables": ("proxy_nft", "bench_nft"),
    "ipvs": ("proxy_ipvs", "bench_ipvs"),
}
DATA_PLANE_SERVICES = 1_000


@contextmanager
def netns(role: str) -> Iterator[str]:
    name = f"npb-{role}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True, check=False).stdout.split():
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)


def cluster_ip(i: int) -> str:
    return f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}"


def service(i: int) -> Obj:
    return {"metadata": {"namespace": "bench", "name": f"svc-{i}"},
            "spec": {"clusterIP": cluster_ip(i), "ports": [{"name": "http", "port": 80}]}}


def endpoints(i: int, first: str = "") -> Obj:
    ips = [first or f"10.244.1.{i % 250 + 2}", f"10.244.2.{i % 250 + 2}"]
    return {"metadata": {"namespace": "bench", "name": f"svc-{i}"},
            "subsets": [{"addresses": [{"ip": ip, "nodeName": NODE} for ip in ips],
                         "ports": [{"name": "http", "port": 8080}]}]}


class RecordingApplier(IptablesApplier):
    """Keeps the last document it restored, for the bare-restore comparison."""

    last = ""

    def restore(self, text: str) -> None:
        self.last = text
        super().restore(text)

    def open_restore(self) -> Input:
        return _Tee(super().open_restore(), self)


class _Tee:
    """A streamed restore whose whole text is kept as well."""

    def __init__(self, inner: Input, keeper: RecordingApplier) -> None:
        self._inner, self._keeper, self._parts = inner, keeper, list[str]()

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._inner.write(text)

    def close(self) -> None:
        self._inner.close()
        self._keeper.last = "".join(self._parts)

    def abort(self) -> None:
        self._inner.abort()


def _timed_sync(proxier: Proxier, *, full: bool = False) -> float:
    start = time.perf_counter()
    assert asyncio.run(proxier.sync(full=full)), "sync failed"
    return time.perf_counter() - start


def _bare_restore(text: str, backend: Backend) -> float:
    with netns("bare") as ns:
        start = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", ns, f"iptables-{backend}-restore", "-w",
                        "--noflush"], input=text, text=True, check=True)
        return time.perf_counter() - start


def bench_iptables(n_services: int, backend: Backend = Backend.NFT) -> dict[str, float]:
    """Seconds for each operation (see the module docstring) and the rule count."""
    with netns("ipt") as ns:
        applier = RecordingApplier(netns=ns, backend=backend)
        proxier = Proxier(node_name=NODE, applier=applier)
        proxier.set_up()
        _timed_sync(proxier, full=True)
        for i in range(n_services):
            proxier.on_service(None, service(i))
            proxier.on_endpoints(None, endpoints(i))
        start = time.perf_counter()
        proxier.render()
        render_s = time.perf_counter() - start
        full_s = _timed_sync(proxier, full=True)
        full_text = applier.last
        resync_s = _timed_sync(proxier, full=True)
        # The same text restored by hand over the loaded table: what any
        # resync has to pay, whoever writes it.
        start = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", ns, f"iptables-{backend}-restore", "-w",
                        "--noflush"], input=full_text, text=True, check=True)
        reload_s = time.perf_counter() - start
        k = n_services // 2
        changes = []
        for step in range(CHANGES):
            old = endpoints(k, f"10.244.3.{step + 1}" if step else "")
            proxier.on_endpoints(old, endpoints(k, f"10.244.3.{step + 2}"))
            changes.append(_timed_sync(proxier))
        proxier.on_service(None, service(n_services))
        proxier.on_endpoints(None, endpoints(n_services))
        add_s = _timed_sync(proxier)
        proxier.on_service(service(n_services), None)
        proxier.on_endpoints(endpoints(n_services), None)
        remove_s = _timed_sync(proxier)
        rules = proxier.rule_count
    return {"full_sync_s": full_s, "resync_s": resync_s,
            "bare_restore_s": _bare_restore(full_text, backend), "bare_reload_s": reload_s,
            "one_change_s": statistics.median(changes), "add_s": add_s, "remove_s": remove_s,
            "render_s": render_s, "rules": float(rules)}


def _hook(mode: str) -> Callable[[int], dict[str, float]] | None:
    module, func = MODE_HOOKS[mode]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        found = getattr(importlib.import_module(module), func, None)
    except ImportError:
        return None
    return found if callable(found) else None


def _fmt(v: float, key: str) -> str:
    if key == "rules":
        return f"{int(v)}"
    if v < 0.01:
        return f"{v * 1000:.1f} ms"
    return f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


def control_plane(sizes: tuple[int, ...], backends: list[Backend]) -> None:
    rows: list[tuple[str, int, dict[str, float]]] = []
    for backend in backends:
        for n in sizes:
            rows.append((f"iptables/{backend}", n, bench_iptables(n, backend)))
            print(f"  done iptables/{backend} {n}", file=sys.stderr, flush=True)
    for mode in MODE_HOOKS:
        hook = _hook(mode)
        if hook is None:
            continue
        for n in sizes:
            rows.append((mode, n, hook(n)))
            print(f"  done {mode} {n}", file=sys.stderr, flush=True)
    keys = list(dict.fromkeys(k for _, _, r in rows for k in r))
    print("| mode | services | " + " | ".join(keys)
          + " | full / bare | resync / bare reload |")
    print("|---" * (len(keys) + 4) + "|")
    for mode, n, r in rows:
        cells = [_fmt(r[k], k) if k in r else "" for k in keys]
        print(f"| {mode} | {n:,} | " + " | ".join(cells) +
              f" | {_ratio(r, 'full_sync_s', 'bare_restore_s')} "
              f"| {_ratio(r, 'resync_s', 'bare_reload_s')} |")


def _ratio(row: dict[str, float], key: str, base: str) -> str:
    bare = row.get(base)
    return f"{row[key] / bare:.2f}x" if bare and key in row else ""


# -- data plane ---------------------------------------------------------------

HTTP_SERVER = r"""
import asyncio
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            close = b"close" in head.lower()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                         + (b"Connection: close\r\n" if close else b"") + b"\r\nok")
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", 8080, backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

LOAD = r"""
import asyncio, sys, time
target, seconds, conns = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
close = sys.argv[4] == "1"
host, _, port = target.partition(":")
req = b"GET / HTTP/1.1\r\nHost: x\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n"
lat = []
async def worker(end):
    conn = None
    while time.perf_counter() < end:
        t = time.perf_counter()
        if conn is None:
            conn = await asyncio.open_connection(host, int(port or 80))
        r, w = conn
        w.write(req)
        await r.readuntil(b"\r\n\r\n")
        await r.readexactly(2)
        lat.append(time.perf_counter() - t)
        if close:
            w.close()
            conn = None
async def main():
    end = time.perf_counter() + seconds
    await asyncio.gather(*(worker(end) for _ in range(conns)))
asyncio.run(main())
lat.sort()
print(len(lat), lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000)
"""

# A connect loop: the C server prints nothing when it listens.
WAIT_LISTENING = r"""
import socket, sys, time
end = time.monotonic() + 10
while True:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > end:
            raise
        time.sleep(0.05)
"""

POD_IP, CLIENT_IP, TARGET_VIP = "10.244.1.2", "10.244.1.3", "10.111.0.1"
DNS_IP = "10.96.0.10"
# The agent's settings: node-local DNS kept out of conntrack by raw rules
# that every packet meets.
DATA_PLANE_CONFIG = ProxyConfig(notrack_dns_ips=(DNS_IP,))
CONNECTIONS = 16


@dataclass(frozen=True)
class LoadRun:
    rps: float
    p50_ms: float
    p99_ms: float
    # CPU time of the load generator and the server per request. It holds
    # the kernel's work on their packets, the node's rules included (with
    # veths, softirqs run in the sending task), and moves far less than
    # requests/s when other work takes the CPUs.
    cpu_us: float = float("nan")


def _task_cpu_ns(pid: int) -> int:
    """Time on CPU of every thread of a running process (schedstat, in ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def _children_cpu_s() -> float:
    # Their sum is the scheduler's exact runtime; only the split is sampled.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def _cpu_of(server_pid: int) -> Iterator[list[float]]:
    """Seconds of CPU the load generator run inside the block (a child that
    has exited) and the server used; filled in when the block ends."""
    out: list[float] = []
    c0, s0 = _children_cpu_s(), _task_cpu_ns(server_pid)
    yield out
    out.append(_children_cpu_s() - c0 + (_task_cpu_ns(server_pid) - s0) / 1e9)


@dataclass(frozen=True)
class Pinning:
    """CPUs for the load generator and for the server (``taskset``), or none."""

    client: str = ""
    server: str = ""

    def prefix(self, cpus: str) -> list[str]:
        return ["taskset", "-c", cpus] if cpus else []

    @property
    def threads(self) -> int:
        # One wrk thread per CPU it may run on.
        return len(self.client.split(",")) if self.client else 2


def default_pinning() -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    return Pinning(str(cpus[0]), str(cpus[1])) if len(cpus) >= 2 else Pinning()


@dataclass(frozen=True)
class DataPlaneOptions:
    runs: int = 9
    seconds: int = 2
    server: str = "echo"  # "echo" (the C netplane/echo server) or "python"
    pinning: Pinning = field(default_factory=Pinning)


_WRK_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_figure(pattern: str, out: str) -> str:
    # Per line: the thread statistics end in percentages too ("50.00%").
    found = re.search(pattern, out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{out}")
    return found[1]


def _ms(value: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    return float(found[1]) * _WRK_MS[found[2]] if found else float("nan")


def _wrk(ns: str, ip: str, *, close: bool, opts: DataPlaneOptions, server_pid: int) -> LoadRun:
    header = ["-H", "Connection: close"] if close else []
    pin = opts.pinning
    with _cpu_of(server_pid) as cpu:
        out = subprocess.run(["ip", "netns", "exec", ns, *pin.prefix(pin.client), "wrk",
                              f"-t{pin.threads}", f"-c{CONNECTIONS}", f"-d{opts.seconds}s",
                              "--latency", *header, f"http://{ip}/"],
                             capture_output=True, text=True, check=True).stdout
    requests = int(_wrk_figure(r"(\d+) requests in", out))
    return LoadRun(float(_wrk_figure(r"Requests/sec:\s+([\d.]+)", out)),
                   _ms(_wrk_figure(r"^\s+50%\s+(\S+)", out)),
                   _ms(_wrk_figure(r"^\s+99%\s+(\S+)", out)),
                   cpu[0] / max(requests, 1) * 1e6)


def _asyncio_load(ns: str, ip: str, *, close: bool, opts: DataPlaneOptions,
                  server_pid: int) -> LoadRun:
    pin = opts.pinning
    with _cpu_of(server_pid) as cpu:
        out = subprocess.run(["ip", "netns", "exec", ns, *pin.prefix(pin.client),
                              sys.executable, "-c", LOAD, ip, str(opts.seconds),
                              str(CONNECTIONS), "1" if close else "0"],
                             capture_output=True, text=True, check=True).stdout.split()
    requests = int(out[0])
    return LoadRun(requests / opts.seconds, float(out[1]), float(out[2]),
                   cpu[0] / max(requests, 1) * 1e6)


def _attach(node: str, pod: str, ip: str, port: str) -> None:
    run = ["ip", "-n", node]
    subprocess.run([*run, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", pod], check=True)
    subprocess.run([*run, "link", "set", port, "master", "np0", "up"], check=True)
    subprocess.run(["ip", "-n", pod, "addr", "add", f"{ip}/24", "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", pod, "link", "set", "eth0", "up"], check=True)
    subprocess.run(["ip", "-n", pod, "route", "add", "default", "via", "10.244.1.1"], check=True)


class _BareDnat:
    """The kernel's floor for a ClusterIP: one DNAT rule and nothing else
    (in iptables' PREROUTING, or in an nftables nat chain of its own), so
    every packet still pays conntrack and NAT but no rule of ours."""

    def __init__(self, node: str, *, nft: bool) -> None:
        self._node, self._nft = node, nft
        if nft:
            self._run(["nft", "-f", "-"], (
                "table ip netplane-floor {\n chain prerouting {\n"
                "  type nat hook prerouting priority dstnat; policy accept;\n"
                f"  ip daddr {TARGET_VIP} tcp dport 80 dnat to {POD_IP}:8080\n }}\n}}\n"))
        else:
            self._run(["iptables-legacy", "-t", "nat", "-A", *self._rule()])

    @staticmethod
    def _rule() -> list[str]:
        return ["PREROUTING", "-d", f"{TARGET_VIP}/32", "-p", "tcp", "-m", "tcp",
                "--dport", "80", "-j", "DNAT", "--to-destination", f"{POD_IP}:8080"]

    def _run(self, argv: list[str], stdin: str | None = None) -> None:
        subprocess.run(["ip", "netns", "exec", self._node, *argv], input=stdin, text=True,
                       check=True)

    def clean_up(self) -> None:
        if self._nft:
            self._run(["nft", "delete", "table", "ip", "netplane-floor"])
        else:
            self._run(["iptables-legacy", "-t", "nat", "-D", *self._rule()])


def _loaded_proxier(mode: str, node: str, backend: Backend | None) -> SyncLoop | _BareDnat:
    proxier: SyncLoop
    if mode in ("floor", "nft floor"):
        return _BareDnat(node, nft=mode == "nft floor")
    if mode == "iptables":
        proxier = Proxier(node_name=NODE, config=DATA_PLANE_CONFIG,
                          applier=IptablesApplier(netns=node, backend=backend))
    else:
        proxier = MapProxier(mode=mode, node_name=NODE, config=DATA_PLANE_CONFIG,
                             backend=NftablesAdapter(NftablesBackend(netns=node)))
    proxier.set_up()
    for i in range(DATA_PLANE_SERVICES):
        proxier.on_service(None, service(i))
        proxier.on_endpoints(None, endpoints(i))
    target = {"metadata": {"namespace": "zz", "name": "target"},
              "spec": {"clusterIP": TARGET_VIP, "ports": [{"port": 80}]}}
    proxier.on_service(None, target)
    proxier.on_endpoints(None, {"metadata": {"namespace": "zz", "name": "target"},
                                "subsets": [{"addresses": [{"ip": POD_IP}],
                                             "ports": [{"port": 8080}]}]})
    assert asyncio.run(proxier.sync(full=True))
    return proxier


def _fresh(node: str, cli: str) -> None:
    """Runs with a new connection per request leave tens of thousands of
    entries in conntrack: start each run with an empty table, or later runs
    measure a full table instead of the rules."""
    subprocess.run(["ip", "netns", "exec", node, "conntrack", "-F"], capture_output=True)
    time.sleep(0.2)


def _spread(values: list[float]) -> tuple[float, float, float]:
    """(median, first quartile, third quartile)."""
    if len(values) < 4:
        return statistics.median(values), min(values), max(values)
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q1, q3


@dataclass(frozen=True)
class Comparison:
    """Paired runs of the two paths: each ClusterIP run next to a pod IP run."""

    direct: list[LoadRun]
    via: list[LoadRun]

    @property
    def ratios(self) -> list[float]:
        return [v.rps / d.rps for d, v in zip(self.direct, self.via, strict=True)]

    @property
    def cpu_ratios(self) -> list[float]:
        """Requests per CPU second through the ClusterIP over straight to the pod."""
        return [d.cpu_us / v.cpu_us for d, v in zip(self.direct, self.via, strict=True)]


def compare(node: str, cli: str, *, close: bool, opts: DataPlaneOptions,
            load: Callable[..., LoadRun], server_pid: int) -> Comparison:
    """Two cores carry client, server and kernel, and other work shares them:
    the paths alternate (ABBA), and each ClusterIP run is compared with the
    pod IP run beside it, so load that drifts over a run hits both alike."""
    paths = (("direct", f"{POD_IP}:8080"), ("via", TARGET_VIP))
    got: dict[str, list[LoadRun]] = {"direct": [], "via": []}
    for i in range(opts.runs):
        for key, dest in paths if i % 2 == 0 else paths[::-1]:
            _fresh(node, cli)
            got[key].append(load(cli, dest, close=close, opts=opts, server_pid=server_pid))
    return Comparison(got["direct"], got["via"])


def _ratio_cell(values: list[float]) -> str:
    ratio, q1, q3 = _spread(values)
    return f"{ratio:.2f}x ({q1:.2f}-{q3:.2f})"


def _row(label: str, kind: str, c: Comparison) -> list[str]:
    lines = []
    for name, runs in (("pod IP", c.direct), ("ClusterIP", c.via)):
        rps, lo, hi = _spread([r.rps for r in runs])
        cpu, clo, chi = _spread([r.cpu_us for r in runs])
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        vs = ("1.00x | 1.00x" if runs is c.direct
              else f"{_ratio_cell(c.ratios)} | {_ratio_cell(c.cpu_ratios)}")
        lines.append(f"| {label} | {name} | {kind} | {rps:,.0f} ({lo:,.0f}-{hi:,.0f}) | "
                     f"{p50:.2f} ms | {p99:.2f} ms | {cpu:.1f} us ({clo:.1f}-{chi:.1f}) | "
                     f"{vs} |")
    return lines


@contextmanager
def _node_with_pods(opts: DataPlaneOptions) -> Iterator[tuple[str, str, int]]:
    """A fresh node (its bridge, a server pod, a client pod) for one mode:
    tables another mode left hooked would tax every packet of this one."""
    with netns("node") as node, netns("srv") as srv, netns("cli") as cli:
        subprocess.run(["ip", "-n", node, "link", "add", "np0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", node, "addr", "add", "10.244.1.1/24", "dev", "np0"],
                       check=True)
        subprocess.run(["ip", "-n", node, "link", "set", "np0", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.bridge.bridge-nf-call-iptables=1"], check=True)
        _attach(node, srv, POD_IP, "veth-srv")
        _attach(node, cli, CLIENT_IP, "veth-cli")
        subprocess.run(["ip", "netns", "exec", cli, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1",
                        "net.ipv4.ip_local_port_range=1024 65000"], check=True)
        server = _start_server(srv, node, opts)
        try:
            yield node, cli, server.pid
        finally:
            server.kill()
            server.wait()


def echo_binary() -> str:
    """The C server pods run (set-up builds it beside the interpreter), or ""."""
    path = os.path.join(os.path.dirname(sys.executable), "netplane-echo")
    return path if os.access(path, os.X_OK) else ""


def _start_server(srv: str, node: str, opts: DataPlaneOptions) -> subprocess.Popen[str]:
    pin = opts.pinning.prefix(opts.pinning.server)
    argv = [echo_binary()] if opts.server == "echo" else [sys.executable, "-c", HTTP_SERVER]
    server = subprocess.Popen(["ip", "netns", "exec", srv, *pin, *argv],
                              stdout=subprocess.DEVNULL, text=True)
    try:
        subprocess.run(["ip", "netns", "exec", node, sys.executable, "-c", WAIT_LISTENING,
                        POD_IP, "8080"], check=True)
    except BaseException:
        server.kill()
        server.wait()
        raise
    return server


def data_plane(backends: list[Backend], opts: DataPlaneOptions) -> None:
    tool = "wrk" if shutil.which("wrk") else "asyncio load generator"
    load = _wrk if shutil.which("wrk") else _asyncio_load
    pin = opts.pinning
    pinned = (f"client on CPU {pin.client}, server on CPU {pin.server}" if pin.client
              else "not pinned")
    print(f"\ndata plane ({tool}, {CONNECTIONS} connections, {opts.server} server, {pinned}; "
          f"{opts.runs} runs of {opts.seconds} s per path, ClusterIP and pod IP alternating; "
          f"{DATA_PLANE_SERVICES + 1} services' rules loaded, the measured one sorting last; "
          "requests/s and CPU (load generator + server) per request as median (quartiles); "
          "vs direct as the median (quartiles) of each ClusterIP run over the pod IP run "
          "beside it, in requests/s and in requests per CPU second):")
    print("| mode | path | connections | requests/s | p50 | p99 | CPU/request "
          "| vs direct | vs direct (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    modes: list[tuple[str, str, Backend | None]] = [
        (f"iptables/{b}", "iptables", b) for b in backends]
    modes.append(("nftables", "nftables", None))
    modes += [("floor: 1 iptables DNAT rule", "floor", None),
              ("floor: 1 nft DNAT rule", "nft floor", None)]
    for label, mode, backend in modes:
        with _node_with_pods(opts) as (node, cli, server_pid):
            proxier = _loaded_proxier(mode, node, backend)
            try:
                for close in (False, True):
                    c = compare(node, cli, close=close, opts=opts, load=load,
                                server_pid=server_pid)
                    kind = "new per request" if close else "keep-alive"
                    print("\n".join(_row(label, kind, c)), flush=True)
            finally:
                proxier.clean_up()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--backends", default="nft,legacy",
                        help="iptables backends, for the control plane and the data plane")
    parser.add_argument("--no-data-plane", action="store_true")
    parser.add_argument("--no-control-plane", action="store_true")
    parser.add_argument("--runs", type=int, default=DataPlaneOptions.runs,
                        help="data plane: runs per path and connection kind")
    parser.add_argument("--seconds", type=int, default=DataPlaneOptions.seconds,
                        help="data plane: length of one run")
    parser.add_argument("--server", choices=("echo", "python"),
                        default="echo" if echo_binary() else "python",
                        help="data plane: the C netplane/echo server pods run, or asyncio")
    parser.add_argument("--cpus", default="",
                        help="data plane: CLIENT,SERVER CPUs for taskset (default: the first "
                             "two this process may use); 'none' not to pin")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    backends = [Backend(b) for b in args.backends.split(",")]
    if not args.no_control_plane:
        control_plane(sizes, backends)
    if not args.no_data_plane:
        pinning = (Pinning() if args.cpus == "none" else
                   Pinning(*args.cpus.split(",", 1)) if args.cpus else default_pinning())
        data_plane(backends, DataPlaneOptions(args.runs, args.seconds, args.server, pinning))


if __name__ == "__main__":
    main()
