"""Scheduler benchmark: hollow nodes (Node objects only, no agents) in a
real API server with the real scheduler, each a process of its own as
``netplane server`` runs them (kube-scheduler's scheduler_perf runs them
without a controller manager too). Prints one table; not a test.

Cases: ``basic`` (pods that request 100m and 128Mi, nothing else) and
``constrained`` (each pod spreads over ten zones, maxSkew 1, DoNotSchedule,
and prefers not to share a node with its group: topology spread plus
inter-pod anti-affinity). For each, two measurements:

- backlog: every pod created first, then the scheduler started; pods/s
  from its start to the last pod bound (what the scheduler alone does);
- live: the scheduler running (and warmed up: one pod bound) while pods
  are created as fast as 16 clients can (what a user sees);
  p50/p99 of create acknowledged -> bound seen on a watch.

Two rates for each: pods over the time from the start to the last bind
(the scheduler's own start and initial list included), and the rate as
scheduler_perf reports it (its SchedulingThroughput "Average": the mean of
one-second samples of the bound count, from the first sample that sees a
pod bound, which only sets the baseline, to the last whole second).

Anchor: kube-scheduler's scheduler_perf CI thresholds
(SchedulingBasic 5,000 nodes / 10,000 pods: 680 pods/s, that average).

Usage: python bench/scheduler.py [--sizes 500x1000,5000x10000]
       [--cases basic,constrained] [--profile OUT.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from figures import pct, throughput_samples

from netplane.api import meta, resources
from netplane.cluster.client import Client, Connection

REPO = Path(__file__).resolve().parents[1]
ANCHOR = {("basic", 5000, 10000): 680.0}
TARGET = 700.0
ZONES = 10
CLIENTS = 16


def profiled(profile: str | None, run: Any) -> None:
    """``run()``, under cProfile when ``profile`` names its output."""
    if not profile:
        run()
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        run()
    finally:
        prof.disable()
        prof.dump_stats(profile)


def serve(data: Path, profile: str | None) -> None:
    """The API server subprocess, as ``netplane server`` runs it, without
    its controllers and scheduler."""
    from netplane.cluster.server import ServerConfig
    from netplane.cluster.server import run as api

    profiled(profile, lambda: api(ServerConfig(
        data_dir=data, socket=data / "api.sock", bind_address="127.0.0.1", port=0,
        controllers=False, cluster_cidr="100.64.0.0/10")))  # a pod CIDR (/24) per node


def schedule(data: Path, profile: str | None) -> None:
    """The scheduler subprocess, as ``netplane server`` starts it."""
    from netplane.cluster.scheduler import process

    profiled(profile, lambda: process.run(data / "api.sock", None))


def _spawn(mode: str, data: Path, profile: str | None, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(Path(__file__).resolve()), mode, str(data)]
    if profile:
        cmd += ["--profile", profile]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """user + system time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def server(base: Path, profile: str | None) -> AsyncIterator[tuple[Path, Any, Any]]:
    """The API server; yields its data directory, a function that starts
    the scheduler (stopped at the end too), and one that tells the CPU
    seconds each has used (server, scheduler)."""
    data = base / "data"
    data.mkdir(parents=True)
    log = base / "server.log"
    procs = [_spawn("--serve", data, f"{profile}.server" if profile else None, log)]

    def start_scheduler() -> None:
        procs.append(_spawn("--schedule", data, f"{profile}.scheduler" if profile else None,
                            log))
    try:
        deadline = time.monotonic() + 60
        while not (data / "apiserver.port").exists():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {log}")
            await asyncio.sleep(0.05)
        yield data, start_scheduler, lambda: [cpu_seconds(p.pid) for p in procs]
    finally:
        for proc in reversed(procs):
            _stop(proc)


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
        async with server(Path(tmp), profile) as (data, start_scheduler, cpu), \
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
                start_scheduler()
                # Measured once it is up: one pod elsewhere bound first.
                await c.create(resources.POD, pod(0, "basic"), "kube-system")
                while not (await c.get(resources.POD, "p-00000", "kube-system")).get(
                        "spec", {}).get("nodeName"):
                    await asyncio.sleep(0.05)
                start, used = time.monotonic(), cpu()
                await parallel(pods, add_pod)
            else:
                await parallel(pods, add_pod)
                start, used = time.monotonic(), cpu()
                start_scheduler()
                used.append(0.0)
            await asyncio.wait_for(done.wait(), timeout=3600)
            elapsed = max(bound.values()) - start
            busy = [(b - a) / elapsed for a, b in zip(used, cpu(), strict=True)]
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            latency = [(bound[k] - created[k]) * 1000 for k in bound if k in created]
            samples = throughput_samples(start, list(bound.values()))
            print(f"{case} {nodes}x{pods} {'live' if live else 'backlog'}: pods bound per "
                  f"second: {' '.join(f'{x:.0f}' for x in samples)}", file=sys.stderr)
            return {"rate": pods / elapsed, "p50": statistics.median(latency),
                    "kube": statistics.mean(samples) if samples else float("nan"),
                    "p99": pct(latency, 99), "server": busy[0], "scheduler": busy[1]}


async def main(sizes: list[tuple[int, int]], cases: list[str], profile: str | None) -> None:
    # CPU: each process's share of one core over the run (which one is the bottleneck).
    rows = [("case", "nodes", "pods", "mode", "pods/s", "kube avg", "p50 ms", "p99 ms",
             "server CPU", "scheduler CPU", "anchor")]
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
                             "-" if math.isnan(got["kube"]) else f"{got['kube']:.0f}",
                             f"{got['p50']:.0f}" if live else "-",
                             f"{got['p99']:.0f}" if live else "-",
                             f"{got['server']:.2f}", f"{got['scheduler']:.2f}",
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
                    help="write cProfiles of each run's server and scheduler to "
                         "PREFIX.CASE-NODES-MODE.server and .scheduler")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--schedule", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve), args.profile)
    elif args.schedule:
        schedule(Path(args.schedule), args.profile)
    else:
        chosen = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
        asyncio.run(main([(n, p) for n, p in chosen], args.cases.split(","), args.profile))
