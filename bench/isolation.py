"""The isolation experiment of Docker tutorials, as a table: how much CPU a
stressor gets under ``limits.cpu: 500m`` (from its cgroup's counters), what
a 64Mi pod that allocates 200 MiB ends as, and the request latency of an
echo server in a neighbouring pod (wrk, one connection, inside the
neighbour's netns) alone, beside the limited stressor, beside an unlimited
one, and with ``requests.cpu: 500m`` of its own beside the limited one.

Runtimes side by side: the process runtime, and the docker runtime (a
Docker Engine of the run's own in a throwaway namespace; the stressor is
the toolbox image's stress-ng).

Usage (root): python bench/isolation.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from netplane.api.meta import Obj
from netplane.node.cgrouplimits import PodCgroup
from netplane.node.cgroups import Hierarchy
from netplane.node.runtime.dockerd import Engine, remove_cgroups
from netplane.node.runtime.dockerruntime import DockerRuntime
from netplane.node.runtime.process import ContainerStatus, ProcessRuntime

ECHO = {"name": "web", "image": "netplane/echo:1.0", "ports": [{"containerPort": 8080}]}
STRESSOR = {"name": "stress", "image": "netplane/toolbox",
            "command": ["stress-ng", "--cpu", "2", "--timeout", "600"]}
HOG = ["sh", "-c", "head -c 200m /dev/zero | tail"]
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


class Node:
    """Pods of one runtime, each in a netns of its own, under a cgroup root
    of the run's own; everything removed at the end."""

    def __init__(self, runtime: ProcessRuntime, cgroups: Hierarchy) -> None:
        self.runtime = runtime
        self.cgroups = cgroups
        self.netns: dict[str, str] = {}

    def run(self, name: str, *containers: Obj) -> PodCgroup:
        uid = str(uuid.uuid4())
        pod = {"metadata": {"uid": uid, "name": name}, "spec": {"containers": list(containers)}}
        cgroup = PodCgroup.of(pod)
        netns = f"npb-iso-{uid[:8]}"
        self.runtime.create_sandbox(pod, netns)
        self.netns[uid] = netns
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        resolv, hosts = self.runtime.write_pod_files(
            uid, nameservers=["10.96.0.10"], searches=[], options=[], hostname=name,
            pod_ip="127.0.0.1")
        for c in containers:
            self.runtime.start_container(
                pod_uid=uid, pod_name=name, namespace="default", container=c, netns=netns,
                hostname=name, resolv_conf=resolv, hosts=hosts, env={}, pod_cgroup=cgroup)
        return cgroup

    def stop(self, cgroup: PodCgroup) -> None:
        self.runtime.stop_pod(cgroup.uid, grace=0)
        subprocess.run(["ip", "netns", "del", self.netns.pop(cgroup.uid)], check=False)

    def close(self) -> None:
        for uid in list(self.runtime.known_pods()):
            self.runtime.stop_pod(uid, grace=0)
        for netns in self.netns.values():
            subprocess.run(["ip", "netns", "del", netns], check=False)

    def latency(self, cgroup: PodCgroup, seconds: int) -> tuple[float, float]:
        """p50 and p99 in ms of one connection's requests to the echo server."""
        netns = self.netns[cgroup.uid]
        deadline = time.monotonic() + 30
        while subprocess.run(["ip", "netns", "exec", netns, "curl", "-sf", "-m", "2",
                              "http://127.0.0.1:8080/"], capture_output=True,
                             check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the echo server did not answer")
            time.sleep(0.05)
        out = subprocess.run(["ip", "netns", "exec", netns, "wrk", "-t1", "-c1",
                              f"-d{seconds}s", "--latency", "http://127.0.0.1:8080/"],
                             capture_output=True, text=True, check=True).stdout
        found = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s))\s*$", out, re.M))
        return _ms(found["50"]), _ms(found["99"])

    def cpu_share(self, cgroup: PodCgroup, container: str, seconds: int) -> float:
        # The runtime names the folder (the container's name, or docker's id).
        rel = self.runtime.cgroup_path(cgroup.uid, container) or f"{cgroup.path}/{container}"
        first, began = self._usage(rel), time.monotonic()
        time.sleep(seconds)  # a measurement window, not a wait for a condition
        return (self._usage(rel) - first) / (time.monotonic() - began)

    def _usage(self, rel: str) -> float:
        deadline = time.monotonic() + 10
        while (u := self.cgroups.usage(rel)) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"no cgroup {rel}")
            time.sleep(0.05)
        return u.cpu_seconds

    def ended(self, cgroup: PodCgroup, container: str) -> str:
        deadline = time.monotonic() + 60
        while (s := self.runtime.container_state(cgroup.uid, container)).status \
                is not ContainerStatus.EXITED:
            if time.monotonic() > deadline:
                return "still running"
            time.sleep(0.05)
        return f"exit {s.exit_code} {s.reason or 'Error'}"


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m is not None
    return float(m.group(1)) * _UNIT[m.group(2)]


@contextlib.contextmanager
def node(runtime: str) -> Iterator[Node]:
    docker = runtime == "docker"
    # The engine takes one cgroup parent for every controller.
    name = f"netplane-bench/{uuid.uuid4().hex[:8]}"
    cgroups = Hierarchy.detect(name, absolute=docker)
    if cgroups is None:
        raise SystemExit("no usable cgroup hierarchy")
    with tempfile.TemporaryDirectory(prefix="np-bench-iso-") as tmp, \
            contextlib.ExitStack() as stack:
        if docker:
            # The engine lives in a namespace of the run's own, never the root one.
            engine_ns = f"npb-dockerd-{uuid.uuid4().hex[:8]}"
            subprocess.run(["ip", "netns", "add", engine_ns], check=True)
            stack.callback(subprocess.run, ["ip", "netns", "del", engine_ns], check=False)
            engine = Engine(state=Path(tmp) / "engine", netns=engine_ns)
            stack.callback(engine.stop)
            engine.start()
            engine.ensure_images(bin_dir=Path(sys.executable).parent)
            rt: ProcessRuntime = DockerRuntime(state_dir=Path(tmp) / "state",
                                               engine_url=engine.url, cgroups=cgroups)
        else:
            rt = ProcessRuntime(state_dir=Path(tmp) / "state", cgroups=cgroups)
        n = Node(rt, cgroups)
        try:
            yield n
        finally:
            n.close()
            cgroups.remove("")
            remove_cgroups("/" + name)  # the engine's other hierarchies
            for root in cgroups.roots.values():
                with contextlib.suppress(OSError):
                    root.parent.rmdir()  # netplane-bench, unless another run is there


def measure(runtime: str, seconds: int) -> list[tuple[str, str]]:
    rows = []
    with node(runtime) as n:
        neighbour = n.run("neighbour", ECHO)
        p50, p99 = n.latency(neighbour, seconds)
        rows.append(("neighbour alone: p50 / p99 ms", f"{p50:.3f} / {p99:.2f}"))

        limited = n.run("noisy", {**STRESSOR, "resources": {"limits": {"cpu": "500m"}}})
        share = n.cpu_share(limited, "stress", seconds)
        rows.append(("stress-ng --cpu 2, limits.cpu 500m: CPU used", f"{share:.3f}"))
        p50, p99 = n.latency(neighbour, seconds)
        rows.append(("neighbour beside it: p50 / p99 ms", f"{p50:.3f} / {p99:.2f}"))

        requested = n.run("requested", {**ECHO, "resources": {"requests": {"cpu": "500m"}}})
        p50, p99 = n.latency(requested, seconds)
        rows.append(("neighbour with requests.cpu 500m beside it: p50 / p99 ms",
                     f"{p50:.3f} / {p99:.2f}"))
        n.stop(requested)
        n.stop(limited)

        unlimited = n.run("noisy", STRESSOR)
        share = n.cpu_share(unlimited, "stress", seconds)
        rows.append(("stress-ng --cpu 2, no limit: CPU used", f"{share:.3f}"))
        p50, p99 = n.latency(neighbour, seconds)
        rows.append(("neighbour beside it: p50 / p99 ms", f"{p50:.3f} / {p99:.2f}"))
        n.stop(unlimited)

        hog = n.run("hog", {"name": "hog", "image": "busybox", "command": HOG,
                            "resources": {"limits": {"memory": "64Mi"}}})
        rows.append(("200 MiB in limits.memory 64Mi: ends as", n.ended(hog, "hog")))
        p50, p99 = n.latency(neighbour, seconds)
        rows.append(("neighbour after it: p50 / p99 ms", f"{p50:.3f} / {p99:.2f}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5, help="each measurement's window")
    args = ap.parse_args()
    for tool in ("stress-ng", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/setup.sh installs it)")
    process, docker = measure("process", args.seconds), measure("docker", args.seconds)
    rows = [("measurement", "process runtime", "docker runtime")]
    rows += [(what, got, other) for (what, got), (_, other) in zip(process, docker,
                                                                   strict=True)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
