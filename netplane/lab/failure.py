"""``netplane lab stop|start NODE``: a worker fails as a machine would and
comes back. Stopping freezes (SIGSTOP) or kills every process of the node,
its agent first, then its pods' containers, and sets its underlay port
down; nothing tells the control plane, which finds out as kube's does, from
the silence. Starting sets the port up, resumes what was frozen and starts
the agent again if it was killed; the agent then reconciles what it finds
(pods deleted meanwhile are stopped, its own kept)."""

from __future__ import annotations

import asyncio
import enum
import os
import signal
import time

from netplane.lab import lab as labmod
from netplane.lab import options as labopts
from netplane.lab import processes, topology
from netplane.lab.paths import CONTROL, LabPaths
from netplane.net import netns
from netplane.node.pods import pod_netns_name

MARK = "stopped"  # in the node's directory while it is stopped: how


class StopMode(enum.StrEnum):
    FREEZE = "frozen"
    KILL = "killed"


def _check(lab: LabPaths, node: str) -> None:
    if node == CONTROL or not netns.exists(lab.node_netns(node)) or \
            not lab.node_dir(node).is_dir():
        raise labmod.LabError(f"no worker node {node!r} in lab {lab.name!r}")


def pod_namespaces(lab: LabPaths, node: str) -> list[str]:
    """The network namespaces of the pods the node's runtime knows of."""
    pods = lab.node_dir(node) / "runtime" / "pods"
    uids = sorted(p.name for p in pods.iterdir() if p.is_dir()) if pods.is_dir() else []
    return [ns for uid in uids if netns.exists(ns := pod_netns_name(lab.prefix, uid))]


def node_processes(lab: LabPaths, node: str) -> list[int]:
    """The node's processes, its own (the agent) before its pods'."""
    pids = netns.pids(lab.node_netns(node))
    for ns in pod_namespaces(lab, node):
        pids += netns.pids(ns)
    return pids


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop(lab: LabPaths, node: str, *, mode: StopMode, say: labmod.Say) -> None:
    _check(lab, node)
    pids = node_processes(lab, node)
    _signal_all(pids, signal.SIGKILL if mode is StopMode.KILL else signal.SIGSTOP)
    topology.set_underlay_link(lab, node, up=False)
    (lab.node_dir(node) / MARK).write_text(f"{mode}\n")
    say(f"{node} stopped: {len(pids)} processes {mode}, its underlay link down")


def stopped(lab: LabPaths, node: str) -> StopMode | None:
    try:
        return StopMode((lab.node_dir(node) / MARK).read_text().strip())
    except (OSError, ValueError):
        return None


def start(lab: LabPaths, node: str, *, say: labmod.Say) -> None:
    _check(lab, node)
    started = time.time()
    topology.set_underlay_link(lab, node, up=True)
    # Whatever is frozen goes on; a killed agent is started again.
    pids = node_processes(lab, node)
    _signal_all(pids, signal.SIGCONT)
    if not processes.alive(lab.node_dir(node) / "agent.pid"):
        saved = labopts.load(lab)
        labmod.start_agent(lab, node, proxy_mode=saved.proxy_mode, runtime=saved.runtime,
                           say=say)
    (lab.node_dir(node) / MARK).unlink(missing_ok=True)
    say(f"{node} started: its underlay link up, {len(pids)} processes resumed")
    asyncio.run(labmod.wait_nodes_ready(lab, [node], say, since=started))
