"""API server benchmark: a real ``netplane server`` on 127.0.0.1 (a free
port, a temporary data directory), driven over its TLS port with aiohttp and
the admin token. Prints one table, measurements beside their targets; not a
test.

- creates/s and p50/p99 latency of Services and ConfigMaps, 1,000 objects a
  run, from 1, 8 and 32 concurrent clients;
- GET latency; list of 1,000 and of 10,000 objects (median);
- watch delivery: write acknowledged -> event received, by each of 100
  watchers (an event that arrives before the acknowledgement counts as 0),
  and write sent -> event received;
- server RSS (VmRSS) with 1,000 pods and 1,000 services stored;
- durability: writes from 8 clients, ``kill -9`` right after the last
  acknowledged one, restart, and every acknowledged object must be there.

Usage: python bench/apiserver.py [--objects 1000] [--big-list 10000]
       python bench/apiserver.py --kubeconfig PATH   (the creates only, against
       a running server such as a lab's; its namespaces are left behind)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from netplane.cluster.client import load_connection

REPO = Path(__file__).resolve().parents[1]
NS = "/api/v1/namespaces"
TARGETS = {"creates": 1000.0, "p99": 50.0, "list": 30.0, "watch": 10.0, "rss": 150.0}


@dataclass
class Server:
    data: Path
    sock: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> None:
        cmd = [sys.executable, "-c", "import sys; from netplane.cli.main import main; "
               "sys.exit(main())", "server", "--data-dir", str(self.data),
               "--socket-path", str(self.sock), "--bind-address", "127.0.0.1",
               "--advertise-address", "127.0.0.1", "--port", "0"]
        with contextlib.suppress(FileNotFoundError):
            (self.data / "apiserver.port").unlink()
        log = (self.data.parent / f"{self.data.name}.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited; see {log.name}")
            try:
                self.port = int((self.data / "apiserver.port").read_text())
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except (OSError, ValueError):
                time.sleep(0.05)
        raise SystemExit("the server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextlib.contextmanager
def running(base: Path, name: str) -> Iterator[Server]:
    server = Server(base / name, base / f"{name}.sock")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Remote:
    """A server already running (a lab's), reached through a kubeconfig."""

    base: str
    token: str
    ca_file: str

    @classmethod
    def load(cls, kubeconfig: Path) -> Remote:
        conn = load_connection(kubeconfig)
        assert conn.url and conn.token and conn.ca_file, "the kubeconfig needs a token and a CA"
        return cls(conn.url, conn.token, conn.ca_file)


class Api:
    """An aiohttp session on the server's TLS port with the admin token."""

    def __init__(self, server: Server | Remote, connections: int = 200) -> None:
        if isinstance(server, Remote):
            tls = ssl.create_default_context(cafile=server.ca_file)
            token, self.base = server.token, server.base
        else:
            tls = ssl.create_default_context(cafile=str(server.data / "pki" / "ca.crt"))
            token = (server.data / "pki" / "admin.token").read_text().strip()
            self.base = f"https://127.0.0.1:{server.port}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=connections),
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120))

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body) as resp:
            data = await resp.read()
            return resp.status, json.loads(data) if data else None

    async def close(self) -> None:
        await self.session.close()


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"key": "value", "name": name}}


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx",
                                     "ports": [{"containerPort": 80}]}]}}


KINDS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "services": ("services", service), "configmaps": ("configmaps", configmap),
    "pods": ("pods", pod)}


async def namespace(api: Api, name: str) -> None:
    code, out = await api.call("POST", NS, {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": name}})
    assert code in (201, 409), out


@dataclass
class Run:
    seconds: float
    latencies: list[float] = field(default_factory=list)  # ms
    acknowledged: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def create_many(api: Api, ns: str, kind: str, count: int, clients: int, *,
                      on_ack: Callable[[str], Awaitable[None]] | None = None) -> Run:
    plural, make = KINDS[kind]
    names = iter(range(count))
    run = Run(0.0)

    async def client() -> None:
        for i in names:
            name = f"{kind[:3]}-{i:05}"
            started = time.perf_counter()
            code, out = await api.call("POST", f"{NS}/{ns}/{plural}", make(name))
            run.latencies.append((time.perf_counter() - started) * 1000)
            if code != 201:
                raise SystemExit(f"create {plural}/{name}: {code} {out}")
            run.acknowledged.append(name)
            if on_ack is not None:
                await on_ack(name)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    run.seconds = time.perf_counter() - started
    return run


async def get_latency(api: Api, ns: str, count: int = 1000) -> Run:
    run = Run(0.0)
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        code, _ = await api.call("GET", f"{NS}/{ns}/configmaps/con-{i % 1000:05}")
        assert code == 200
        run.latencies.append((time.perf_counter() - t) * 1000)
    run.seconds = time.perf_counter() - started
    return run


async def list_median(api: Api, ns: str, expect: int, times: int = 9) -> float:
    samples = []
    for _ in range(times):
        t = time.perf_counter()
        code, out = await api.call("GET", f"{NS}/{ns}/configmaps")
        samples.append((time.perf_counter() - t) * 1000)
        assert code == 200 and len(out["items"]) == expect, (code, len(out["items"]))
    return statistics.median(samples)


async def watch_delivery(api: Api, ns: str, watchers: int,
                         writes: int) -> tuple[list[float], list[float]]:
    """Each watcher notes when it saw each object; the writer notes when it
    sent each write and when it was acknowledged. A first write, seen by
    all, tells that every watch is running. Delays from the acknowledgement
    (0 when the event came first) and from the sending."""
    seen: list[dict[str, float]] = [{} for _ in range(watchers)]
    acked: dict[str, float] = {}
    sent: dict[str, float] = {}
    _, out = await api.call("GET", f"{NS}/{ns}/configmaps")
    rv = out["metadata"]["resourceVersion"]
    started = [asyncio.Event() for _ in range(watchers)]

    async def watch(i: int) -> None:
        url = f"{api.base}{NS}/{ns}/configmaps?watch=1&resourceVersion={rv}"
        async with api.session.get(url) as resp:
            async for line in lines(resp.content):
                name = json.loads(line)["object"]["metadata"]["name"]
                if name == "ready":
                    started[i].set()
                    continue
                seen[i][name] = time.perf_counter()
                if len(seen[i]) == writes:
                    return

    tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
    await asyncio.sleep(1)
    code, out = await api.call("POST", f"{NS}/{ns}/configmaps", configmap("ready"))
    assert code == 201, out
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 60)
    for i in range(writes):
        name = f"w-{i:04}"
        sent[name] = time.perf_counter()
        code, out = await api.call("POST", f"{NS}/{ns}/configmaps", configmap(name))
        assert code == 201, out
        acked[name] = time.perf_counter()
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return ([max(0.0, (s[name] - acked[name]) * 1000) for s in seen for name in acked],
            [(s[name] - sent[name]) * 1000 for s in seen for name in sent])


async def lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    while True:
        line = await stream.readline()
        if not line:
            return
        if line.strip():
            yield line


@dataclass
class Table:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, what: str, value: str, target: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("yes" if ok else "NO")
        self.rows.append((what, value, target, verdict))
        print(f"  {what}: {value}", flush=True)

    def show(self) -> None:
        head = ("measurement", "result", "target", "met")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(4)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        print()
        print(line.format(*head))
        print(line.format(*("-" * w for w in widths)))
        for row in self.rows:
            print(line.format(*row))


async def creates(api: Api, table: Table, objects: int, prefix: str = "") -> None:
    for kind in ("services", "configmaps"):
        for clients in (1, 8, 32):
            ns = f"{prefix}{kind[:3]}-c{clients}"
            await namespace(api, ns)
            run = await create_many(api, ns, kind, objects, clients)
            target = clients == 8
            table.add(f"{kind} creates, {clients} clients",
                      f"{run.rate:.0f}/s p50 {run.pct(50):.1f} ms p99 {run.pct(99):.1f} ms",
                      ">= 1000/s, p99 <= 50 ms" if target else "",
                      (run.rate >= TARGETS["creates"] and run.pct(99) <= TARGETS["p99"])
                      if target else None)


async def throughput(base: Path, table: Table, objects: int, big: int) -> None:
    with running(base, "main") as server:
        api = Api(server)
        try:
            await creates(api, table, objects)
            get = await get_latency(api, "con-c8")
            table.add("GET one ConfigMap", f"p50 {get.pct(50):.2f} ms p99 {get.pct(99):.2f} ms")
            ms = await list_median(api, "con-c8", objects)
            table.add(f"list {objects} ConfigMaps (median)", f"{ms:.1f} ms", "<= 30 ms",
                      ms <= TARGETS["list"])
            await namespace(api, "big")
            await create_many(api, "big", "configmaps", big, 32)
            ms = await list_median(api, "big", big, times=5)
            table.add(f"list {big} ConfigMaps (median)", f"{ms:.1f} ms")
            await namespace(api, "watch")
            delays, from_send = await watch_delivery(api, "watch", watchers=100, writes=100)
            p99 = percentile(delays, 99)
            table.add("watch delivery, 100 watchers: ack -> event",
                      f"p50 {percentile(delays, 50):.2f} ms p99 {p99:.2f} ms", "p99 <= 10 ms",
                      p99 <= TARGETS["watch"])
            table.add("watch delivery, 100 watchers: write sent -> event",
                      f"p50 {percentile(from_send, 50):.2f} ms "
                      f"p99 {percentile(from_send, 99):.2f} ms")
        finally:
            await api.close()


async def memory(base: Path, table: Table) -> None:
    with running(base, "rss") as server:
        api = Api(server)
        try:
            await namespace(api, "rss")
            idle = server.rss_mb()
            await create_many(api, "rss", "pods", 1000, 8)
            await create_many(api, "rss", "services", 1000, 8)
            await asyncio.sleep(3)  # the controllers catch up (endpoints, events)
            rss = server.rss_mb()
            table.add("server RSS, 1000 pods + 1000 services", f"{rss:.0f} MB "
                      f"(idle {idle:.0f} MB)", "<= 150 MB", rss <= TARGETS["rss"])
        finally:
            await api.close()


async def durability(base: Path, table: Table, count: int) -> None:
    server = Server(base / "durable", base / "durable.sock")
    server.start()
    api = Api(server)
    killed = False

    async def maybe_kill(name: str) -> None:
        nonlocal killed
        if not killed and len(run_acks) >= count:
            killed = True
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGKILL)  # right after this acknowledgement

    run_acks: list[str] = []

    async def track(name: str) -> None:
        run_acks.append(name)
        await maybe_kill(name)

    try:
        await namespace(api, "durable")
        with contextlib.suppress(aiohttp.ClientError, SystemExit, AssertionError):
            await create_many(api, "durable", "configmaps", count * 2, 8, on_ack=track)
    finally:
        await api.close()
    assert server.proc is not None
    server.proc.wait()
    server.proc = None
    server.start()
    api = Api(server)
    try:
        _, out = await api.call("GET", f"{NS}/durable/configmaps")
        stored = {item["metadata"]["name"] for item in out["items"]}
    finally:
        await api.close()
        server.stop()
    lost = [n for n in run_acks if n not in stored]
    table.add("durability: kill -9 after the last ack",
              f"{len(run_acks)} acknowledged, {len(run_acks) - len(lost)} found after restart",
              "none lost", not lost)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--big-list", type=int, default=10000)
    parser.add_argument("--durable", type=int, default=500)
    parser.add_argument("--kubeconfig", type=Path,
                        help="only the creates, against a running server (a lab's)")
    args = parser.parse_args()
    table = Table()
    if args.kubeconfig:
        api = Api(Remote.load(args.kubeconfig))
        try:
            await creates(api, table, args.objects, prefix=f"bench-{os.getpid()}-")
        finally:
            await api.close()
        table.show()
        return
    with tempfile.TemporaryDirectory(prefix="netplane-bench-") as tmp:
        base = Path(tmp)
        await throughput(base, table, args.objects, args.big_list)
        await memory(base, table)
        await durability(base, table, args.durable)
    table.show()


if __name__ == "__main__":
    asyncio.run(main())
