"""A node whose agent stops answering (its process frozen with SIGSTOP, as
a hung machine): the node lifecycle controller marks it Unknown after the
grace period, ``get nodes`` says NotReady, new pods go to the other node,
and the node is Ready again once the agent runs on.

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from netplane.api import meta, resources
from netplane.lab import processes
from tests.e2e.conftest import Lab, wait_for

pytestmark = pytest.mark.e2e

# node-monitor-grace-period (40 s) and a monitor period (5 s), with room.
NOT_READY_WITHIN = 90.0

PODS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: elsewhere}
spec:
  replicas: 2
  selector: {matchLabels: {app: elsewhere}}
  template:
    metadata: {labels: {app: elsewhere}}
    spec:
      containers: [{name: echo, image: netplane/echo}]
"""


def ready_status(lab: Lab, node: str) -> str:
    got = lab.api(lambda c: c.get(resources.NODE, node))
    return str((meta.condition(got, "Ready") or {}).get("status"))


@pytest.fixture
def frozen(lab: Lab) -> Iterator[int]:
    """node-2's agent, stopped; it always runs on again afterwards."""
    pid = processes.alive(lab.paths.node_dir("node-2") / "agent.pid")
    assert pid, "node-2's agent is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_silent_node_turns_not_ready_and_back(lab: Lab, frozen: int) -> None:
    assert ready_status(lab, "node-1") == "True"
    wait_for("node-2 Unknown", lambda: ready_status(lab, "node-2") == "Unknown",
             timeout=NOT_READY_WITHIN)
    rows = {r.split()[0]: r.split()[1] for r in
            lab.netplane("get", "nodes").stdout.splitlines()[1:]}
    assert rows == {"node-1": "Ready", "node-2": "NotReady"}
    assert ready_status(lab, "node-1") == "True"  # its agent kept renewing

    lab.netplane("apply", "-f", "-", stdin=PODS)

    def placed() -> list[str]:
        listed = lab.api(lambda c: c.list(resources.POD, "default",
                                          label_selector="app=elsewhere"))
        return [str(p["spec"].get("nodeName") or "") for p in listed["items"]]

    wait_for("both pods placed", lambda: len([n for n in placed() if n]) == 2)
    assert set(placed()) == {"node-1"}

    os.kill(frozen, signal.SIGCONT)
    wait_for("node-2 Ready again", lambda: ready_status(lab, "node-2") == "True",
             timeout=60)
