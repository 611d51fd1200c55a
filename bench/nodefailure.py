"""Node failure benchmark: how long a lab takes to notice a worker that
fails as a machine would (``netplane lab stop``: its processes frozen, its
link down) and to heal around it. Prints one table; not a test.

Each run stops the worker running the most pods of a 4-replica Deployment
behind a Service, then measures, from the ``lab stop`` command:

- endpoints withdrawn: the Service's Endpoints hold none of its pods;
- NotReady: its Ready condition is Unknown (the node lifecycle controller);
- tainted: it carries ``node.kubernetes.io/unreachable:NoExecute``;
- replacements Ready: four ready pods of the Deployment on the other nodes
  (after the taint eviction controller deleted the stopped node's pods).

Then ``lab start`` brings the worker back and the next run begins once its
old pods are gone. The lab is its own (three workers, ``--node-grace`` and
``--toleration-seconds`` as given: the node monitor grace period and the
default toleration, kube's 40 s and 300 s by default, shorter here), taken
down afterwards, on Ctrl-C too. Needs root.

    python bench/nodefailure.py [--runs 3] [--node-grace 10] [--toleration-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.api.resources import DEPLOYMENT, ENDPOINTS, NODE, POD, SERVICE
from netplane.cluster.client import Client, Connection, NotFound
from netplane.lab.paths import LabPaths

NETPLANE = str(Path(sys.executable).with_name("netplane"))
REPLICAS = 4
UNREACHABLE = "node.kubernetes.io/unreachable"
STEPS = ("endpoints withdrawn", "NotReady", "tainted", "replacements Ready")
POLL = 0.1


def deployment() -> Obj:
    container = {"name": "echo", "image": "netplane/echo",
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                    "periodSeconds": 1}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [container]}}}}


def service() -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def netplane(lab: LabPaths, *args: str) -> None:
    subprocess.run([NETPLANE, "--lab", lab.name, *args], check=True,
                   stdout=subprocess.DEVNULL, timeout=300)


async def web_pods(c: Client) -> list[Obj]:
    return list((await c.list(POD, "default", label_selector="app=web"))["items"])


async def ready_elsewhere(c: Client, node: str) -> int:
    return sum(1 for p in await web_pods(c) if meta.pod_ready(p) and not meta.is_deleting(p)
               and p["spec"].get("nodeName") != node)


async def endpoint_ips(c: Client) -> set[str]:
    got = await c.get(ENDPOINTS, "web", "default")
    return {a["ip"] for s in got.get("subsets") or [] for a in s.get("addresses") or []}


async def until(what: str, check: Callable[[], Awaitable[bool]],
                timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(POLL)


async def one_run(c: Client, lab: LabPaths) -> dict[str, float]:
    pods = await web_pods(c)
    on: dict[str, list[Obj]] = {}
    for p in pods:
        on.setdefault(str(p["spec"].get("nodeName")), []).append(p)
    node = max(sorted(on), key=lambda n: len(on[n]))
    ips = {str(p["status"].get("podIP")) for p in on[node]}
    print(f"  stopping {node} ({len(on[node])} of the {len(pods)} pods)", flush=True)
    seen: dict[str, float] = {}
    start = time.monotonic()
    netplane(lab, "lab", "stop", node)
    while len(seen) < len(STEPS):
        got = await c.get(NODE, node)
        checks = {
            "endpoints withdrawn": not (await endpoint_ips(c)) & ips,
            "NotReady": (meta.condition(got, "Ready") or {}).get("status") == "Unknown",
            "tainted": any(t.get("key") == UNREACHABLE and t.get("effect") == "NoExecute"
                           for t in got["spec"].get("taints") or []),
            "replacements Ready": await ready_elsewhere(c, node) == REPLICAS,
        }
        for step, done in checks.items():
            if done and step not in seen:
                seen[step] = time.monotonic() - start
                print(f"    {step}: {seen[step]:.1f} s", flush=True)
        if time.monotonic() - start > 900:
            raise SystemExit("the lab did not heal within 15 minutes")
        await asyncio.sleep(POLL)
    netplane(lab, "lab", "start", node)
    old = {meta.uid(p) for p in on[node]}

    async def old_pods_gone() -> bool:
        return not old & {meta.uid(p) for p in await web_pods(c)}
    await until("the stopped node's old pods gone", old_pods_gone)
    return seen


async def run(lab: LabPaths, runs: int) -> list[dict[str, float]]:
    async with Client(Connection(socket=str(lab.socket))) as c:
        await c.create(DEPLOYMENT, deployment(), "default")
        await c.create(SERVICE, service(), "default")

        async def all_ready() -> bool:
            return sum(meta.pod_ready(p) for p in await web_pods(c)) == REPLICAS
        out = []
        for i in range(runs):
            await until("every pod ready", all_ready)
            print(f"run {i + 1} of {runs}", flush=True)
            out.append(await one_run(c, lab))
        with contextlib.suppress(NotFound):
            await c.delete(DEPLOYMENT, "web", "default")
        return out


@contextlib.contextmanager
def lab_up(grace: float, toleration: int) -> Iterator[LabPaths]:
    lab = LabPaths(f"nfb{uuid.uuid4().hex[:8]}")
    try:
        print(f"bringing up lab {lab.name} (3 nodes)", flush=True)
        netplane(lab, "lab", "up", "--nodes", "3", "--node-grace", str(grace),
                 "--toleration-seconds", str(toleration))
        yield lab
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"taking down lab {lab.name}", flush=True)
        subprocess.run([NETPLANE, "lab", "down", "--name", lab.name], check=False,
                       stdout=subprocess.DEVNULL, timeout=300)


def show(results: list[dict[str, float]], grace: float, toleration: int) -> None:
    runs = [f"run {i + 1}" for i in range(len(results))]
    head = ("from lab stop to", *runs, "median")
    rows = [(step, *(f"{r[step]:.1f} s" for r in results),
             f"{statistics.median(r[step] for r in results):.1f} s") for step in STEPS]
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"\nnode monitor grace {grace:g} s, default toleration {toleration} s, "
          f"load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--node-grace", type=float, default=10.0)
    parser.add_argument("--toleration-seconds", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/nodefailure.py needs root (the lab makes network namespaces)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with lab_up(args.node_grace, args.toleration_seconds) as lab:
            results = asyncio.run(run(lab, args.runs))
    except KeyboardInterrupt:
        raise SystemExit("interrupted (the lab it brought up is taken down)") from None
    show(results, args.node_grace, args.toleration_seconds)


if __name__ == "__main__":
    main()
