"""Runtime benchmark: the process runtime and the docker runtime side by
side, each in a 1-worker lab of its own (``lab up --runtime``), the same
``netplane/echo`` pods driven through the real API. Prints one table; not a
test.

- pod startup: N pods created at once, create request sent -> Ready seen on
  a watch, p50/p99;
- memory per pod: the PSS of every process in the node's namespace (agent,
  engine and shims included), with the N pods running less before them,
  over N (what a pod costs the node, runtime machinery and all);
- requests/s: wrk (one thread, 8 connections, from the node's namespace) to
  one echo pod's IP, and to the same echo server started on the node itself
  (no pod, no runtime), in the same run.

Needs root. The machine's load average is printed beside the figures.

    python bench/runtimes.py [--pods 30] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from podmemory import smaps_rollup
from podwatch import percentile

from netplane.api import meta
from netplane.api.resources import POD
from netplane.cluster.client import Client, Connection
from netplane.lab.paths import LabPaths
from netplane.node.runtime.command import echo_binary

NETPLANE = str(Path(sys.executable).with_name("netplane"))
NODE = "node-1"
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextlib.contextmanager
def lab(runtime: str) -> Iterator[LabPaths]:
    paths = LabPaths(f"rt{runtime[:3]}{uuid.uuid4().hex[:6]}")
    try:
        subprocess.run([NETPLANE, "lab", "up", "--name", paths.name, "--nodes", "1",
                        "--runtime", runtime], check=True, capture_output=True, timeout=300)
        yield paths
    finally:
        subprocess.run([NETPLANE, "lab", "down", "--name", paths.name], capture_output=True,
                       timeout=300, check=False)


def node_pss_kb(paths: LabPaths) -> int:
    """The PSS of every process in the node's network namespace."""
    pids = subprocess.run(["ip", "netns", "pids", paths.node_netns(NODE)], capture_output=True,
                          text=True, check=False).stdout.split()
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())[1]
    return total


def echo_pod(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": "runtimes"}},
            "spec": {"nodeName": NODE, "containers": [{
                "name": "echo", "image": "netplane/echo",
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                   "periodSeconds": 1}}]}}


async def startup(paths: LabPaths, pods: int) -> tuple[list[float], list[str]]:
    """Seconds from create to Ready seen, per pod; and the pods' IPs."""
    async with Client(Connection(socket=str(paths.socket))) as c:
        sent: dict[str, float] = {}
        ready: dict[str, float] = {}
        ips: dict[str, str] = {}
        listing = await c.list(POD, "default")
        done = asyncio.Event()

        async def watch() -> None:
            async for _, pod in c.watch(POD, "default", timeout_seconds=600,
                                        resource_version=listing["metadata"][
                                            "resourceVersion"]):
                name = meta.name(pod)
                if meta.pod_ready(pod) and name not in ready:
                    ready[name] = time.monotonic()
                    ips[name] = str(pod["status"].get("podIP", ""))
                    if len(ready) == pods:
                        done.set()
        watcher = asyncio.create_task(watch())

        async def create(i: int) -> None:
            name = f"echo-{i:03}"
            sent[name] = time.monotonic()
            await c.create(POD, echo_pod(name), "default")
        await asyncio.gather(*(create(i) for i in range(pods)))
        await asyncio.wait_for(done.wait(), timeout=600)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        return [ready[n] - sent[n] for n in sent], [ips[n] for n in sorted(ips)]


def requests_per_second(netns: str, url: str, seconds: int) -> float:
    out = subprocess.run(["ip", "netns", "exec", netns, "wrk", "-t1", "-c8",
                          f"-d{seconds}s", url], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m is not None, out
    return float(m.group(1))


@contextlib.contextmanager
def node_echo(netns: str, port: int) -> Iterator[str]:
    """The echo server run on the node itself (no pod): its URL."""
    binary = echo_binary(python=sys.executable)
    argv = [str(binary)] if binary else [sys.executable, "-m", "netplane.node.runtime.echo"]
    proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv],
                            env={"PORT": str(port), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["ip", "netns", "exec", netns, "curl", "-sf", "-m", "1", url],
                             capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the node's echo server did not answer")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure(runtime: str, pods: int, seconds: int) -> dict[str, str]:
    with lab(runtime) as paths:
        netns = paths.node_netns(NODE)
        time.sleep(2)  # the agent settles after Ready (a measurement's baseline, not a wait)
        before = node_pss_kb(paths)
        took, ips = asyncio.run(startup(paths, pods))
        after = node_pss_kb(paths)
        pod_rps = requests_per_second(netns, f"http://{ips[0]}:8080/", seconds)
        with node_echo(netns, 18080) as url:
            node_rps = requests_per_second(netns, url, seconds)
    return {
        "pod startup p50 / p99 (s)": f"{percentile(took, 50):.2f} / {percentile(took, 99):.2f}",
        "memory per pod, node PSS (MiB)": f"{(after - before) / pods / 1024:.1f}",
        "echo req/s: pod": f"{pod_rps:.0f}",
        "echo req/s: on the node itself": f"{node_rps:.0f}",
        "load average": load_average(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=5, help="each wrk run")
    args = ap.parse_args()
    results = {rt: measure(rt, args.pods, args.seconds) for rt in ("process", "docker")}
    rows = [("measurement", "process runtime", "docker runtime")]
    rows += [(k, results["process"][k], results["docker"][k]) for k in results["process"]]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{args.pods} pods on one node")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
