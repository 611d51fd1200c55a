"""The floor under pod start-up on this machine: what the kernel and the
exec of the processes cost with no control plane at all. ``count`` pods
are wired as the agent wires them (a named netns each, a veth pair on a
bridge, an address, a default route), driven the cheapest way the same
tools allow (``ip -batch``), then the echo server is started in each the
way the runtime starts it (``unshare --pid --fork --mount-proc``), until
every one says it is listening. Everything lives in namespaces of its own,
removed afterwards."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from netplane.net import netns as nsutil

NETWORK = ipaddress.IPv4Network("10.250.0.0/16")
TIMEOUT = 120.0


@dataclass(frozen=True)
class Floor:
    wired: float    # seconds until every pod netns is wired
    started: float  # seconds until every echo server listens (wiring included)


def measure(count: int, echo: list[str]) -> Floor:
    prefix = f"npfl{uuid.uuid4().hex[:6]}"
    node, pods = f"{prefix}-node", [f"{prefix}-p{i}" for i in range(count)]
    gateway = NETWORK.network_address + 1
    procs: list[subprocess.Popen[bytes]] = []
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="podfloor") as tmp:
        try:
            subprocess.run(["ip", "netns", "add", node], check=True)
            made.append(node)
            nsutil.batch(["link add br0 type bridge", f"addr add {gateway}/16 dev br0",
                          "link set br0 up"], netns=node)
            started = time.monotonic()
            nsutil.batch([f"netns add {p}" for p in pods])
            made += pods
            nsutil.batch([line for i, p in enumerate(pods) for line in (
                f"link add v{i} type veth peer name eth0 netns {p}",
                f"link set v{i} master br0", f"link set v{i} up")], netns=node)
            for i, p in enumerate(pods):
                nsutil.batch(["link set lo up", f"addr add {gateway + 1 + i}/16 dev eth0",
                              "link set eth0 up", f"route add default via {gateway}"], netns=p)
            wired = time.monotonic() - started
            logs = [Path(tmp) / f"{i}.log" for i in range(count)]
            for p, log in zip(pods, logs, strict=True):
                with open(log, "wb") as out:
                    procs.append(subprocess.Popen(
                        ["nsenter", f"--net=/run/netns/{p}", "unshare", "--pid", "--fork",
                         "--mount-proc", "--", *echo], stdout=out, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, start_new_session=True))
            waiting = dict(zip(logs, procs, strict=True))
            deadline = time.monotonic() + TIMEOUT
            while waiting:
                waiting = {log: proc for log, proc in waiting.items()
                           if b"listening" not in log.read_bytes()}
                if any(proc.poll() is not None for proc in waiting.values()):
                    raise RuntimeError("an echo server of the floor run exited")
                if waiting and time.monotonic() > deadline:
                    raise TimeoutError(f"{len(waiting)} echo servers did not start listening")
                time.sleep(0.005)
            return Floor(wired, time.monotonic() - started)
        finally:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for name in made:
                subprocess.run(["ip", "netns", "delete", name], check=False,
                               capture_output=True)
