"""Registers this node with the API and keeps its Ready condition fresh."""

from __future__ import annotations

import asyncio
import logging
import platform

from netplane import __version__
from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client
from netplane.node.capacity import MAX_PODS, Machine

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0


def node_object(name: str, ip: str) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              "kubernetes.io/os": "linux",
                                              "node-role.kubernetes.io/worker": ""}},
        "spec": {},
    }


def node_status(name: str, ip: str, *, ready: bool = True,
                machine: Machine | None = None) -> Obj:
    """The status the agent reports; without ``machine``, pods only."""
    capacity = machine.capacity() if machine else {"pods": str(MAX_PODS)}
    allocatable = machine.allocatable() if machine else {"pods": str(MAX_PODS)}
    node: Obj = {"status": {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname",
                                                                "address": name}],
        "nodeInfo": {"kubeletVersion": f"v1.32.0+netplane-{__version__}",
                     "kernelVersion": platform.release(), "osImage": "netplane lab node",
                     "containerRuntimeVersion": "process://netplane",
                     "operatingSystem": "linux", "architecture": platform.machine()},
        "capacity": capacity, "allocatable": allocatable,
    }}
    if ready:
        meta.set_condition(node, "Ready", True, "NodeReady",
                           "netplane agent is posting ready status")
    else:
        meta.set_condition(node, "Ready", False, "AgentStarting",
                           "netplane agent is setting up the node's network and services")
    for c in node["status"]["conditions"]:
        c["lastHeartbeatTime"] = meta.now()
    return node


async def register(client: Client, name: str, ip: str, *,
                   machine: Machine | None = None) -> Obj:
    """Creates the Node (or finds it) and returns it with its pod CIDR."""
    while True:
        try:
            try:
                node = await client.create(resources.NODE, node_object(name, ip))
            except AlreadyExists:
                node = await client.get(resources.NODE, name)
            # Not Ready until the pod network, proxy and DNS are in place.
            starting = node_status(name, ip, ready=False, machine=machine)
            node = await client.patch(resources.NODE, name, starting, subresource="status")
            if node.get("spec", {}).get("podCIDR"):
                return node
            log.warning("node %s has no podCIDR yet", name)
        except (ApiError, OSError) as e:
            log.info("waiting for the API server: %s", e)
        await asyncio.sleep(1.0)


async def heartbeat(client: Client, name: str, ip: str, *,
                    machine: Machine | None = None) -> None:
    """Ready at once (the agent calls this when set up), then every few seconds."""
    while True:
        try:
            await client.patch(resources.NODE, name, node_status(name, ip, machine=machine),
                               subresource="status")
        except (ApiError, OSError) as e:
            log.warning("heartbeat failed: %s", e)
        await asyncio.sleep(HEARTBEAT_SECONDS)
