"""Network policy programming latency: from a NetworkPolicy change in the API
to the rules in every node's kernel, in a real 2-node lab, per proxy mode.
Prints a table.

A pod runs on each node. For each of N rounds the clock starts just before
a policy selecting both pods is created; every node's kernel is polled
(``iptables -S NPOL-FILTER`` or the nftables map ``pod-ingress``, inside
the node's network namespace) until that node's pod is isolated; likewise
after the delete, until it is open again. The issue's target: p99 under
1.5 s on every node.

    python bench/policy_latency.py [--rounds 30] [--modes iptables,nftables]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from figures import pct

from netplane.api import resources
from netplane.cluster.client import Client, Connection
from netplane.lab.paths import LabPaths

NETPLANE = str(Path(sys.executable).with_name("netplane"))
NAMESPACE = "lat"


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "lat"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "echo", "image": "netplane/echo"}]}}


def policy(name: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"podSelector": {"matchLabels": {"app": "lat"}}}}


def isolated_check(mode: str, netns: str, ip: str) -> Callable[[], bool]:
    if mode == "nftables":
        argv = ["ip", "netns", "exec", netns, "nft", "list", "map", "ip", "netplane-policy",
                "pod-ingress"]
    else:
        argv = ["ip", "netns", "exec", netns, "iptables", "-w", "-S", "NPOL-FILTER"]
    needle = f"{ip}/32" if mode != "nftables" else f"{ip} :"
    return lambda: needle in subprocess.run(argv, capture_output=True, text=True).stdout


def wait_all(checks: dict[str, Callable[[], bool]], want: bool, start: float,
             timeout: float = 10.0) -> dict[str, float]:
    done: dict[str, float] = {}
    while len(done) < len(checks) and time.perf_counter() - start < timeout:
        for node, check in checks.items():
            if node not in done and check() == want:
                done[node] = time.perf_counter() - start
    return done


async def measure(lab: LabPaths, mode: str, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"create": [], "delete": []}
    async with Client(Connection(socket=str(lab.socket))) as c:
        await c.create(resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": NAMESPACE}})
        for i, node in enumerate(("node-1", "node-2"), 1):
            await c.create(resources.POD, pod(f"p{i}", node), NAMESPACE)
        ips: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while len(ips) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the pods did not get addresses")
            items = (await c.list(resources.POD, NAMESPACE))["items"]
            ips = {p["spec"]["nodeName"]: p["status"]["podIP"] for p in items
                   if (p.get("status") or {}).get("podIP")}
            await asyncio.sleep(0.2)
        checks = {n: isolated_check(mode, lab.node_netns(n), ip) for n, ip in ips.items()}
        for i in range(rounds):
            for kind, want in (("create", True), ("delete", False)):
                start = time.perf_counter()
                if want:
                    await c.create(resources.NETWORKPOLICY, policy(f"deny{i}"), NAMESPACE)
                else:
                    await c.delete(resources.NETWORKPOLICY, f"deny{i}", NAMESPACE)
                got = await asyncio.to_thread(wait_all, checks, want, start)
                out[kind] += list(got.values()) + [float("inf")] * (len(checks) - len(got))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--modes", default="iptables,nftables")
    args = ap.parse_args()
    rows = []
    for mode in args.modes.split(","):
        lab = LabPaths(f"plat{uuid.uuid4().hex[:6]}")
        subprocess.run([NETPLANE, "lab", "up", "--name", lab.name, "--nodes", "2",
                        "--proxy-mode", mode], check=True, stdout=subprocess.DEVNULL)
        try:
            results = asyncio.run(measure(lab, mode, args.rounds))
        finally:
            subprocess.run([NETPLANE, "lab", "down", "--name", lab.name], check=False,
                           stdout=subprocess.DEVNULL)
        for kind, values in results.items():
            ms = [v * 1000 for v in values]
            rows.append((mode, kind, len(ms), statistics.median(ms), pct(ms, 99), max(ms)))
    print(f"Network policy programming latency, {args.rounds} rounds x 2 nodes "
          "(API request sent -> the node's kernel holds the change); target p99 < 1500 ms")
    print(f"{'mode':<9} {'change':<7} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for mode, kind, n, p50, p99, top in rows:
        print(f"{mode:<9} {kind:<7} {n:>8} {p50:>8.1f} {p99:>8.1f} {top:>8.1f}")


if __name__ == "__main__":
    main()
