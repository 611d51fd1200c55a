"""The scheduler runs as a process of its own beside ``netplane server``, as
kube-scheduler does: pods are bound through it, it is started again when it
dies, and it does not outlive a server killed outright."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server, wait_for

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed")
MODULE = "netplane.cluster.scheduler.process"


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z" and MODULE.encode() in argv:
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # The node below posts no heartbeats: it must stay Ready for the test.
    with api_server(tmp_path, "--node-monitor-grace-period", "1h") as c:
        yield c


def add_node(cluster: Cluster, name: str) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Node\nmetadata:\n"
                                              f"  name: {name}\n")
    room = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"capacity": room, "allocatable": room,
                                           "conditions": [{"type": "Ready", "status": "True",
                                                           "reason": "KubeletReady"}]}}))


def bound_to(cluster: Cluster, pod: str) -> str:
    out = cluster.kubectl("get", "pod", pod, "-o", "jsonpath={.spec.nodeName}", check=False)
    return out.stdout.strip()


def test_pods_are_bound_by_a_scheduler_process_that_comes_back(cluster: Cluster) -> None:
    assert cluster.proc is not None
    first = wait_for("the scheduler process", lambda: children(cluster.proc.pid))
    assert len(first) == 1
    add_node(cluster, "n1")
    cluster.kubectl("run", "before", "--image=netplane/echo", "--restart=Never")
    assert wait_for("the pod bound", lambda: bound_to(cluster, "before")) == "n1"
    events = cluster.kubectl("get", "events", "--field-selector=reason=Scheduled",
                             "-o", "jsonpath={.items[*].source.component}").stdout
    assert "default-scheduler" in events

    os.kill(first[0], signal.SIGKILL)
    again = wait_for("a new scheduler process",
                     lambda: [p for p in children(cluster.proc.pid) if p != first[0]])
    assert len(again) == 1
    cluster.kubectl("run", "after", "--image=netplane/echo", "--restart=Never")
    assert wait_for("the pod bound", lambda: bound_to(cluster, "after")) == "n1"


def test_a_server_killed_outright_takes_its_scheduler_along(cluster: Cluster) -> None:
    assert cluster.proc is not None
    scheduler = wait_for("the scheduler process", lambda: children(cluster.proc.pid))[0]
    cluster.proc.kill()
    cluster.proc.wait()
    wait_for("the scheduler gone", lambda: not alive(scheduler))
