"""Workload benchmark: what users feel of a 2-node lab running ``netplane/echo``
pods, driven through the real API (the project's client on the lab's socket).
Prints one table, measurements beside their targets; not a test.

- pod startup: 100 pods created at once, create request sent -> the Ready
  event's arrival on a watch (sub-second), p50/p99; also from the API's own
  timestamps (creationTimestamp -> Ready lastTransitionTime, 1 s resolution);
- the floor under that: the same number of pods wired and their echo
  servers started with no control plane, the cheapest way the same tools
  allow (bench/podfloor.py), so the figure above reads against it;
- Deployment scale 0 -> 100: scale request -> all 100 pods Ready;
- rolling update of a 30-replica Deployment (maxSurge 25%, maxUnavailable
  25%, an HTTP readiness probe): a ``kubectl set env``-style strategic merge
  patch of the template -> every new pod Ready and every old one gone, with
  the fewest available and the most pods seen on the way;
- memory per idle echo pod: RSS and PSS (/proc/PID/smaps_rollup) summed over
  every process of the pod's containers, ``unshare`` included, averaged over
  the 100 pods of the first step (the image's entrypoint: the C server when
  it is built); then the same for 20 pods running the Python module, side
  by side.

Brings up a lab of its own (a unique name; always taken down, on Ctrl-C
too), or uses a running one with ``--lab NAME`` (its objects go in a
namespace of their own, deleted afterwards). Needs root. The machine's load
average is printed beside the figures: other work on it shows in them.

    python bench/workloads.py [--lab NAME] [--pods 100] [--python-pods 20]
                              [--replicas 100] [--rollout 30]
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import podfloor
from podmemory import PodMemory, command_name, pod_memory
from podwatch import PodClock, api_startup_seconds, percentile, surge_and_unavailable

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.api.resources import DEPLOYMENT, NAMESPACE, POD, REPLICASET
from netplane.cluster.client import Client, Connection, NotFound
from netplane.lab.paths import LabPaths, check_name
from netplane.node.runtime.command import ECHO_MODULE, echo_binary

NETPLANE = str(Path(sys.executable).with_name("netplane"))
STRATEGIC = "application/strategic-merge-patch+json"
TARGETS = {"startup_p99": 1.0, "slo_p99": 5.0, "rss_mb": 5.0}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def echo_container(env: list[Obj] | None = None, *, probe: bool = False) -> Obj:
    c: Obj = {"name": "echo", "image": "netplane/echo",
              "ports": [{"name": "http", "containerPort": 8080}]}
    if env:
        c["env"] = env
    if probe:
        c["readinessProbe"] = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    return c


def pod_object(name: str, labels: dict[str, str], command: list[str] | None = None) -> Obj:
    container = echo_container()
    if command:
        container["command"] = command
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container]}}


def deployment_object(name: str, replicas: int, *, probe: bool) -> Obj:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                         "maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [echo_container(probe=probe)],
                                           "terminationGracePeriodSeconds": 30}}}}


class Table:
    """Rows of measurement, result, target, met, and the 1-minute load
    average when the row was measured (other work on the machine shows)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, value: str, target: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("yes" if ok else "NO")
        self.rows.append((what, value, target, verdict, load_average().split()[0]))
        print(f"  {what}: {value}", flush=True)

    def show(self) -> None:
        head = ("measurement", "result", "target", "met", "load")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        print()
        print(line.format(*head))
        print(line.format(*("-" * w for w in widths)))
        for row in self.rows:
            print(line.format(*row).rstrip())


@dataclass
class Bench:
    client: Client
    lab: LabPaths
    ns: str
    table: Table
    clock: PodClock = field(default_factory=PodClock)
    spec_high: int = 0  # the most replicas a rollout's ReplicaSets asked for at once

    async def follow(self, resource_version: str) -> None:
        """Feeds the clock from one watch of the namespace's pods, resumed
        where it stopped if the server ends it."""
        while True:
            async for kind, pod in self.client.watch(POD, self.ns, timeout_seconds=3600,
                                                     resource_version=resource_version):
                self.clock.observe(kind, pod, time.monotonic())
                resource_version = str(meta.resource_version(pod))

    async def delete_pods(self, names: list[str]) -> None:
        async def one(name: str) -> None:
            with contextlib.suppress(NotFound):
                await self.client.delete(POD, name, self.ns)
        await asyncio.gather(*(one(n) for n in names))
        await self.clock.until("the pods to go", lambda: not set(names) & set(self.clock.pods))

    async def create_pods(self, names: list[str], command: list[str] | None = None
                          ) -> dict[str, float]:
        """All at once; returns when each create request was sent."""
        sent: dict[str, float] = {}

        async def create(name: str) -> None:
            sent[name] = time.monotonic()
            await self.client.create(POD, pod_object(name, {"bench": "pods"}, command), self.ns)

        await asyncio.gather(*(create(n) for n in names))
        await self.clock.until(f"{len(names)} pods Ready",
                               lambda: all(n in self.clock.ready_at for n in names))
        return sent

    async def startup(self, count: int) -> list[str]:
        names = [f"start-{i:03}" for i in range(count)]
        sent = await self.create_pods(names)
        latencies = [self.clock.ready_at[n] - sent[n] for n in names]
        p99 = percentile(latencies, 99)
        self.table.add(f"pod startup, {count} at once: create -> Ready (watch)",
                       f"p50 {percentile(latencies, 50):.2f} s p99 {p99:.2f} s",
                       f"p99 <= {TARGETS['startup_p99']:.0f} s (SLO {TARGETS['slo_p99']:.0f} s)",
                       p99 <= TARGETS["startup_p99"])
        last = max(self.clock.ready_at[n] for n in names) - min(sent.values())
        self.table.add(f"pod startup, {count} at once: first create -> last Ready",
                       f"{last:.2f} s")
        stamps = [s for n in names if (s := api_startup_seconds(self.clock.pods[n])) is not None]
        self.table.add("pod startup from API timestamps (1 s resolution)",
                       f"p50 {percentile(stamps, 50):.0f} s p99 {percentile(stamps, 99):.0f} s",
                       f"p99 <= {TARGETS['slo_p99']:.0f} s",
                       percentile(stamps, 99) <= TARGETS["slo_p99"])
        return names

    async def python_echo(self, count: int) -> None:
        """The Python module's memory beside it, through a container command."""
        names = [f"py-{i:03}" for i in range(count)]
        await self.create_pods(names, [sys.executable, "-m", ECHO_MODULE])
        await self.memory(names, target=False)
        await self.delete_pods(names)

    async def memory(self, names: list[str], *, target: bool = True) -> None:
        """RSS/PSS per pod once every echo server says it is listening."""
        dirs = [self.pod_dir(self.clock.pods[n]) for n in names]
        deadline = time.monotonic() + 60
        while not all(listening(d) for d in dirs):
            if time.monotonic() > deadline:
                raise TimeoutError("echo servers did not start listening")
            await asyncio.sleep(0.2)
        pods = [p for d in dirs if (p := pod_memory(d)).processes]
        rss = statistics.mean(p.rss_kb for p in pods) / 1024
        pss = statistics.mean(p.pss_kb for p in pods) / 1024
        wrapper = statistics.mean(p.rss_of("unshare") for p in pods) / 1024
        what = f"idle echo pod ({describe(pods[0])}), mean of {len(pods)}"
        self.table.add(f"{what}: RSS", f"{rss:.2f} MB (unshare {wrapper:.2f} + echo "
                       f"{rss - wrapper:.2f})", f"<= {TARGETS['rss_mb']:.0f} MB" if target else "",
                       rss <= TARGETS["rss_mb"] if target else None)
        self.table.add(f"{what}: PSS", f"{pss:.2f} MB")

    def floor(self, count: int) -> None:
        """The same number of pods with no control plane (bench/podfloor.py)."""
        binary = echo_binary(python=sys.executable)
        echo = [str(binary)] if binary else [sys.executable, "-m", ECHO_MODULE]
        floor = podfloor.measure(count, echo)
        self.table.add(f"floor, no control plane: {count} pod netns wired (ip -batch)",
                       f"{floor.wired:.2f} s")
        self.table.add(f"floor, no control plane: ... and {count} echo servers listening",
                       f"{floor.started:.2f} s")

    def pod_dir(self, pod: Obj) -> Path:
        node = pod["spec"]["nodeName"]
        return self.lab.node_dir(node) / "runtime" / "pods" / meta.uid(pod)

    async def scale(self, replicas: int) -> None:
        name = "scale"
        await self.client.create(DEPLOYMENT, deployment_object(name, 0, probe=False), self.ns)
        started = time.monotonic()
        await self.client.patch(DEPLOYMENT, name, {"spec": {"replicas": replicas}}, self.ns,
                                subresource="scale")
        mine = self.pods_of(name)
        await self.clock.until(f"{replicas} replicas Ready",
                               lambda: sum(1 for n in mine() if n in self.clock.ready_at)
                               >= replicas)
        ready = sorted(self.clock.ready_at[n] - started for n in mine()
                       if n in self.clock.ready_at)[:replicas]
        self.table.add(f"Deployment scale 0 -> {replicas}: all Ready",
                       f"{ready[-1]:.2f} s (per pod p50 {percentile(ready, 50):.2f} s)")
        await self.remove(name)

    async def remove(self, deployment: str) -> None:
        """Scaled to 0 first, so that no ReplicaSet outlives its Deployment
        long enough to make pods the next step would count."""
        await self.client.patch(DEPLOYMENT, deployment, {"spec": {"replicas": 0}}, self.ns,
                                subresource="scale")
        await self.clock.until(f"the pods of {deployment} to go",
                               lambda: not self.pods_of(deployment)())
        await self.client.delete(DEPLOYMENT, deployment, self.ns)

    def pods_of(self, app: str) -> Callable[[], list[str]]:
        return lambda: [n for n, p in self.clock.pods.items() if meta.labels(p).get("app") == app]

    async def rollout(self, replicas: int) -> None:
        name = "roll"
        await self.client.create(DEPLOYMENT, deployment_object(name, replicas, probe=True),
                                 self.ns)
        mine = self.pods_of(name)
        await self.clock.until(f"{replicas} replicas available",
                               lambda: self.clock.available(set(mine())) >= replicas)
        old = set(mine())
        low, high = replicas, len(old)

        def sample(clock: PodClock) -> None:
            nonlocal low, high
            ours = set(self.pods_of(name)())
            low, high = min(low, clock.available(ours)), max(high, clock.active(ours))

        self.clock.on_event = sample
        specs = asyncio.create_task(self.most_replicas(name))
        started = time.monotonic()
        patch = {"spec": {"template": {"spec": {"containers": [
            {"name": "echo", "env": [{"name": "ROLLOUT", "value": uuid.uuid4().hex[:8]}]}]}}}}
        await self.client.patch(DEPLOYMENT, name, patch, self.ns, content_type=STRATEGIC)
        await self.clock.until("the rollout", lambda: not old & set(self.clock.pods) and sum(
            1 for n in mine() if n not in old and n in self.clock.ready_at) >= replicas)
        took = time.monotonic() - started
        self.clock.on_event = None
        specs.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await specs
        surge, unavailable = surge_and_unavailable(replicas)
        self.table.add(f"rolling update, {replicas} replicas, 25%/25%: new Ready, old gone",
                       f"{took:.2f} s")
        self.table.add("rolling update: fewest available / most pods not terminating",
                       f"{low} / {high}", f">= {replicas - unavailable} / <= {replicas + surge}",
                       low >= replicas - unavailable and high <= replicas + surge)
        self.table.add("rolling update: most replicas in the ReplicaSets' specs",
                       f"{self.spec_high}", f"<= {replicas + surge}",
                       self.spec_high <= replicas + surge)
        await self.remove(name)

    async def most_replicas(self, app: str) -> None:
        """The largest sum of the app's ReplicaSets' spec.replicas, as watched."""
        listed = await self.client.list(REPLICASET, self.ns, label_selector=f"app={app}")
        specs = {meta.name(rs): int(rs["spec"].get("replicas", 0)) for rs in listed["items"]}
        self.spec_high = sum(specs.values())
        async for kind, rs in self.client.watch(
                REPLICASET, self.ns, label_selector=f"app={app}",
                resource_version=listed["metadata"]["resourceVersion"]):
            specs[meta.name(rs)] = 0 if kind == "DELETED" else int(rs["spec"].get("replicas", 0))
            self.spec_high = max(self.spec_high, sum(specs.values()))


def listening(pod_dir: Path) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return "listening" in (pod_dir / "echo.log").read_text()
    return False


def describe(pod: PodMemory) -> str:
    """The container's command, from its PID 1 (below the ``unshare``)."""
    for proc in pod.processes:
        if proc.comm != "unshare":
            with contextlib.suppress(FileNotFoundError):
                return command_name(Path(f"/proc/{proc.pid}/cmdline").read_bytes())
    return "?"




async def run(lab: LabPaths, args: argparse.Namespace, table: Table) -> None:
    ns = f"wlb-{uuid.uuid4().hex[:6]}"
    async with Client(Connection(socket=str(lab.socket))) as client:
        await client.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": ns}})
        bench = Bench(client, lab, ns, table)
        listed = await client.list(POD, ns)
        watch = asyncio.create_task(bench.follow(listed["metadata"]["resourceVersion"]))
        steps: list[Callable[[], Awaitable[Any]]] = []
        try:
            if args.pods:
                names = await bench.startup(args.pods)
                await bench.memory(names)
                await bench.delete_pods(names)
                bench.floor(args.pods)
            if args.python_pods:
                await bench.python_echo(args.python_pods)
            if args.replicas:
                steps.append(lambda: bench.scale(args.replicas))
            if args.rollout:
                steps.append(lambda: bench.rollout(args.rollout))
            for step in steps:
                await step()
        finally:
            watch.cancel()
            with contextlib.suppress(Exception):
                await client.delete(NAMESPACE, ns)


@contextlib.contextmanager
def lab_for(name: str | None) -> Iterator[LabPaths]:
    """The lab given, or a fresh 2-node one taken down whatever happens."""
    if name:
        yield LabPaths(check_name(name))
        return
    lab = LabPaths(f"wlb{uuid.uuid4().hex[:8]}")
    try:
        print(f"bringing up lab {lab.name} (2 nodes)", flush=True)
        subprocess.run([NETPLANE, "lab", "up", "--nodes", "2", "--name", lab.name],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)
        yield lab
    finally:
        # A second Ctrl-C must not cut the teardown short (the child
        # inherits the ignored signal too).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"taking down lab {lab.name}", flush=True)
        subprocess.run([NETPLANE, "lab", "down", "--name", lab.name], check=False,
                       stdout=subprocess.DEVNULL, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", help="use this running lab instead of a fresh one")
    parser.add_argument("--pods", type=int, default=100, help="pods created at once (0: skip)")
    parser.add_argument("--python-pods", type=int, default=20,
                        help="pods running the Python echo module, for its memory (0: skip)")
    parser.add_argument("--replicas", type=int, default=100, help="scale 0 -> N (0: skip)")
    parser.add_argument("--rollout", type=int, default=30, help="rolling update of N (0: skip)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/workloads.py needs root (the lab makes network namespaces)")
    # SIGTERM ends the run as Ctrl-C does: through the teardown.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    table = Table()
    before = load_average()
    try:
        with lab_for(args.lab) as lab:
            asyncio.run(run(lab, args, table))
    except KeyboardInterrupt:
        if table.rows:
            table.show()
        raise SystemExit("interrupted (the lab it brought up is taken down)") from None
    table.add("load average (1/5/15 min) before / after", f"{before} / {load_average()}",
              f"{os.cpu_count()} CPUs")
    table.show()


if __name__ == "__main__":
    main()
