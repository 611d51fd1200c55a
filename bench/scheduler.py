"""Scheduler benchmark: hollow nodes (Node objects only, no agents) in a
real API server with the real scheduler in its process, as
kube-scheduler's scheduler_perf runs them (no controller manager). Prints
one table; not a test.

Cases: ``basic`` (pods that request 100m and 128Mi, nothing else) and
``constrained`` (each pod spreads over ten zones, maxSkew 1, DoNotSchedule,
and prefers not to share a node with its group: topology spread plus
inter-pod anti-affinity). For each, two measurements:

- backlog: every pod created first, then the scheduler started; pods/s
  from its start to the last pod bound (what the scheduler alone does);
- live: the scheduler running while pods are created as fast as 16
  clients can (what a user sees; the API server shares the process);
  p50/p99 of create acknowledged -> bound seen on a watch.

Anchor: kube-scheduler's scheduler_perf CI thresholds
(SchedulingBasic 5,000 nodes / 10,000 pods: 680 pods/s).

Usage: python bench/scheduler.py [--sizes 500x1000,5000x10000]
       [--cases basic,constrained] [--profile OUT.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from figures import pct

from netplane.api import meta, resources
from netplane.cluster.client import Client, Connection

REPO = Path(__file__).resolve().parents[1]
ANCHOR = {("basic", 5000, 10000): 680.0}
TARGET = 700.0
ZONES = 10
CLIENTS = 16


def serve(data: Path, profile: str | None) -> None:
    """The server subprocess: API server, then the scheduler once ``go`` exists."""
    from netplane.cluster.scheduler.loop import Scheduler
    from netplane.cluster.server import ServerConfig
    from netplane.cluster.server import serve as api

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        cfg = ServerConfig(data_dir=data, socket=data / "api.sock", bind_address="127.0.0.1",
                           port=0, controllers=False,
                           # room for a pod CIDR (/24) per hollow node
                           cluster_cidr="100.64.0.0/10")
        server = asyncio.create_task(api(cfg, stop))
        while not (data / "go").exists() and not stop.is_set():
            await asyncio.sleep(0.02)
        prof = cProfile.Profile() if profile else None
        async with Client(Connection(socket=str(cfg.socket)), user_agent="kube-scheduler") as c:
            if prof is not None:
                prof.enable()
            sched = asyncio.create_task(Scheduler(c).run())
            await stop.wait()
            sched.cancel()
            await asyncio.gather(sched, return_exceptions=True)
            if prof is not None:
                prof.disable()
                prof.dump_stats(profile)
        await server

    asyncio.run(main())


@contextlib.asynccontextmanager
async def server(base: Path, profile: str | None) -> AsyncIterator[Path]:
    data = base / "data"
    data.mkdir(parents=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(data)]
    if profile:
        cmd += ["--profile", profile]
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not (data / "apiserver.port").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {base / 'server.log'}")
            await asyncio.sleep(0.05)
        yield data
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def hollow_node(i: int) -> dict[str, Any]:
    name = f"hollow-{i:05}"
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
        "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": f"zone-{i % ZONES}"}}}


def hollow_status(node: dict[str, Any]) -> dict[str, Any]:
    alloc = {"cpu": "4", "memory": "32Gi", "pods": "110"}
    node["status"] = {"capacity": alloc, "allocatable": alloc, "conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": meta.now(), "lastTransitionTime": meta.now()}]}
    return node


def pod(i: int, case: str) -> dict[str, Any]:
    group = f"g{i // 10}"
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "netplane/echo",
                                            "resources": {"requests": {"cpu": "100m",
                                                                       "memory": "128Mi"}}}]}
    if case == "constrained":
        spec["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"group": group}}}]
        spec["affinity"] = {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {"matchLabels": {"group": group}}}}]}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{i:05}", "labels": {"group": group}}, "spec": spec}


async def parallel(n: int, fn: Any) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await fn(queue.get_nowait())
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))


async def run_case(case: str, nodes: int, pods: int, *, live: bool,
                   profile: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="np-bench-sched-") as tmp:
        async with server(Path(tmp), profile) as data, \
                Client(Connection(socket=str(data / "api.sock"))) as c:
            async def add_node(i: int) -> None:
                node = await c.create(resources.NODE, hollow_node(i))
                await c.update_status(resources.NODE, hollow_status(node))
            await parallel(nodes, add_node)
            created: dict[str, float] = {}
            bound: dict[str, float] = {}
            done = asyncio.Event()

            async def watch() -> None:
                async for _, obj in c.watch(resources.POD, "default", timeout_seconds=3600):
                    name = meta.name(obj)
                    if obj.get("spec", {}).get("nodeName") and name not in bound:
                        bound[name] = time.monotonic()
                        if len(bound) == pods:
                            done.set()
            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.5)  # the watch is open before anything is bound

            async def add_pod(i: int) -> None:
                await c.create(resources.POD, pod(i, case), "default")
                created[f"p-{i:05}"] = time.monotonic()
            if live:
                (data / "go").touch()
                start = time.monotonic()
                await parallel(pods, add_pod)
            else:
                await parallel(pods, add_pod)
                start = time.monotonic()
                (data / "go").touch()
            await asyncio.wait_for(done.wait(), timeout=3600)
            elapsed = max(bound.values()) - start
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            latency = [(bound[k] - created[k]) * 1000 for k in bound if k in created]
            return {"rate": pods / elapsed, "p50": statistics.median(latency),
                    "p99": pct(latency, 99)}


async def main(sizes: list[tuple[int, int]], cases: list[str], profile: str | None) -> None:
    rows = [("case", "nodes", "pods", "mode", "pods/s", "p50 ms", "p99 ms", "anchor")]
    for case in cases:
        for nodes, pods in sizes:
            for live in (False, True):
                mode = "live" if live else "backlog"
                got = await run_case(case, nodes, pods, live=live,
                                     profile=f"{profile}.{case}-{nodes}-{mode}" if profile
                                     else None)
                anchor = ANCHOR.get((case, nodes, pods))
                rows.append((case, str(nodes), str(pods), mode,
                             f"{got['rate']:.0f}",
                             f"{got['p50']:.0f}" if live else "-",
                             f"{got['p99']:.0f}" if live else "-",
                             f"{anchor:.0f} (kube CI); target {TARGET:.0f}" if anchor else ""))
                print("  ".join(rows[-1]), file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="500x1000,5000x10000",
                    help="NODESxPODS, comma-separated")
    ap.add_argument("--cases", default="basic,constrained")
    ap.add_argument("--profile", metavar="PREFIX",
                    help="write a cProfile of each run's server to PREFIX.CASE-NODES-MODE")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve), args.profile)
    else:
        chosen = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
        asyncio.run(main([(n, p) for n, p in chosen], args.cases.split(","), args.profile))
