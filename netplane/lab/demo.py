"""The demo behind ``make demo``: a 2-worker lab, three echo pods behind the
``web`` Service, and curl from a pod on the second worker by the Service's
short and full DNS names, printing which pod answered each time."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from netplane.api import meta, resources
from netplane.cluster.client import Client, Connection
from netplane.lab import lab as labmod
from netplane.lab.cli import usage
from netplane.lab.paths import LabPaths, lab_from_env


def say(line: str) -> None:
    print(line, flush=True)


async def wait_rollout(lab: LabPaths, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with Client(Connection(socket=str(lab.socket))) as c:
        while time.monotonic() < deadline:
            deploy = await c.get(resources.DEPLOYMENT, "web", "default")
            client = await c.get(resources.POD, "client", "default")
            eps = await c.get(resources.ENDPOINTS, "web", "default")
            ready = sum(len(s.get("addresses") or []) for s in eps.get("subsets") or [])
            want = deploy["spec"]["replicas"]
            if ready >= want and meta.pod_ready(client):
                say(f"[demo] web: {ready}/{want} endpoints ready; client pod running")
                return
            await asyncio.sleep(0.2)
    raise labmod.LabError("the web deployment did not become ready in time")


def curl(netplane: str, lab: LabPaths, url: str) -> str:
    out = subprocess.run([netplane, "--lab", lab.name, "exec", "client", "--", "curl", "-s",
                          "--max-time", "3", url], capture_output=True, text=True)
    return out.stdout.strip() or f"(failed: {out.stderr.strip() or out.returncode})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", default="examples")
    ap.add_argument("--times", type=int, default=10)
    args = ap.parse_args()
    lab = lab_from_env()
    netplane = str(Path(sys.executable).with_name("netplane"))
    workers = labmod.up(lab, nodes=2, proxy_mode="iptables", say=lambda s: say(f"[lab] {s}"))
    examples = Path(args.examples)
    say(f"[demo] netplane apply -f {examples / 'web.yaml'} -f {examples / 'client.yaml'}")
    subprocess.run([netplane, "--lab", lab.name, "apply", "-f", str(examples / "web.yaml"),
                    "-f", str(examples / "client.yaml")], check=True)
    asyncio.run(wait_rollout(lab))
    subprocess.run([netplane, "--lab", lab.name, "get", "pods", "-o", "wide"], check=True)
    for url in ("http://web", "http://web.default.svc.cluster.local"):
        say(f"\n[demo] from pod client on node-2: curl -s {url}  (x{args.times})")
        answers: Counter[str] = Counter()
        for i in range(args.times):
            answer = curl(netplane, lab, url)
            answers[answer.split()[0] if answer.startswith("pod=") else "failed"] += 1
            say(f"  {i + 1:2d}  {answer}")
        say("  answered by: " + ", ".join(f"{k} x{v}" for k, v in sorted(answers.items())))
    say("\n[demo] explore:")
    say("  netplane get pods -o wide")
    say("  netplane exec client -- curl -s http://web")
    say("  netplane exec client -- dig web.default.svc.cluster.local")
    say("  netplane lab exec node-2 -- iptables-save -t nat")
    say(usage(lab, workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
