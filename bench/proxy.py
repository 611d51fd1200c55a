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
straight to the pod IP, from a client pod, with ``ITERATIONS`` services'
rules loaded: with keep-alive, and with a new connection per request (each
one walks the NAT rules). Uses ``wrk`` when installed, else a small asyncio
load generator. Bounded in time; namespaces only. Needs root.

    python bench/proxy.py [--sizes 1000,5000] [--backends nft,legacy] [--no-data-plane]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netplane.api.meta import Obj
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
DATA_PLANE_SECONDS = 3
DATA_PLANE_REPEATS = 3


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
print(len(lat) / seconds, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000)
"""


def _ms(value: str) -> float:
    num, unit = float(re.findall(r"[\d.]+", value)[0]), re.findall(r"[a-z]+", value)[0]
    return num * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wrk(ns: str, ip: str, *, close: bool) -> tuple[float, float, float]:
    header = ["-H", "Connection: close"] if close else []
    out = subprocess.run(["ip", "netns", "exec", ns, "wrk", "-t2", "-c16",
                          f"-d{DATA_PLANE_SECONDS}s", "--latency", *header, f"http://{ip}/"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99


def _asyncio_load(ns: str, ip: str, *, close: bool) -> tuple[float, float, float]:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", LOAD, ip,
                          str(DATA_PLANE_SECONDS), "16", "1" if close else "0"],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def _attach(node: str, pod: str, ip: str, port: str) -> None:
    run = ["ip", "-n", node]
    subprocess.run([*run, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", pod], check=True)
    subprocess.run([*run, "link", "set", port, "master", "np0", "up"], check=True)
    subprocess.run(["ip", "-n", pod, "addr", "add", f"{ip}/24", "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", pod, "link", "set", "eth0", "up"], check=True)
    subprocess.run(["ip", "-n", pod, "route", "add", "default", "via", "10.244.1.1"], check=True)


def _loaded_proxier(mode: str, node: str) -> SyncLoop:
    proxier: SyncLoop
    if mode == "iptables":
        proxier = Proxier(node_name=NODE, applier=IptablesApplier(netns=node))
    else:
        proxier = MapProxier(mode=mode, node_name=NODE,
                             backend=NftablesAdapter(NftablesBackend(netns=node)))
    proxier.set_up()
    for i in range(DATA_PLANE_SERVICES):
        proxier.on_service(None, service(i))
        proxier.on_endpoints(None, endpoints(i))
    target = {"metadata": {"namespace": "zz", "name": "target"},
              "spec": {"clusterIP": "10.111.0.1", "ports": [{"port": 80}]}}
    proxier.on_service(None, target)
    proxier.on_endpoints(None, {"metadata": {"namespace": "zz", "name": "target"},
                                "subsets": [{"addresses": [{"ip": "10.244.1.2"}],
                                             "ports": [{"port": 8080}]}]})
    assert asyncio.run(proxier.sync(full=True))
    return proxier


def _fresh(node: str, cli: str) -> None:
    """Runs with a new connection per request leave tens of thousands of
    TIME_WAIT entries in conntrack and in the client: start each run clean,
    or the later runs measure a full table instead of the rules."""
    subprocess.run(["ip", "netns", "exec", node, "conntrack", "-F"], capture_output=True)
    subprocess.run(["ip", "netns", "exec", cli, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"],
                   check=True)
    time.sleep(1)


def _median_run(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return sorted(runs)[len(runs) // 2]


def _measure(mode: str, node: str, cli: str,
             load: Callable[..., tuple[float, float, float]]) -> None:
    # Two cores carry client, server and kernel: alternate the two paths and
    # keep the median run of each, so one noisy second does not decide.
    for close in (False, True):
        runs: dict[str, list[tuple[float, float, float]]] = {"direct": [], "via": []}
        for _ in range(DATA_PLANE_REPEATS):
            for key, dest in (("direct", "10.244.1.2:8080"), ("via", "10.111.0.1")):
                _fresh(node, cli)
                runs[key].append(load(cli, dest, close=close))
        direct, via = _median_run(runs["direct"]), _median_run(runs["via"])
        kind = "new per request" if close else "keep-alive"
        for name, (rps, p50, p99) in (("pod IP", direct), ("ClusterIP", via)):
            print(f"| {mode} | {name} | {kind} | {rps:,.0f} | {p50:.2f} ms | {p99:.2f} ms | "
                  f"{rps / direct[0]:.2f}x |")


def data_plane() -> None:
    tool = "wrk" if shutil.which("wrk") else "asyncio load generator"
    load = _wrk if shutil.which("wrk") else _asyncio_load
    with netns("node") as node, netns("srv") as srv, netns("cli") as cli:
        subprocess.run(["ip", "-n", node, "link", "add", "np0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", node, "addr", "add", "10.244.1.1/24", "dev", "np0"],
                       check=True)
        subprocess.run(["ip", "-n", node, "link", "set", "np0", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.bridge.bridge-nf-call-iptables=1"], check=True)
        _attach(node, srv, "10.244.1.2", "veth-srv")
        _attach(node, cli, "10.244.1.3", "veth-cli")
        server = subprocess.Popen(["ip", "netns", "exec", srv, sys.executable, "-c",
                                   HTTP_SERVER], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            print(f"\ndata plane ({tool}, 16 connections, median of {DATA_PLANE_REPEATS} "
                  f"alternating runs of {DATA_PLANE_SECONDS} s, "
                  f"{DATA_PLANE_SERVICES + 1} services' rules loaded; the measured service "
                  "sorts last):")
            print("| mode | path | connections | requests/s | p50 | p99 | vs direct |")
            print("|---|---|---|---|---|---|---|")
            for mode in ("iptables", "nftables"):
                proxier = _loaded_proxier(mode, node)
                try:
                    _measure(mode, node, cli, load)
                finally:
                    proxier.clean_up()
        finally:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--backends", default="nft,legacy")
    parser.add_argument("--no-data-plane", action="store_true")
    parser.add_argument("--no-control-plane", action="store_true")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    if not args.no_control_plane:
        control_plane(sizes, [Backend(b) for b in args.backends.split(",")])
    if not args.no_data_plane:
        data_plane()


if __name__ == "__main__":
    main()
