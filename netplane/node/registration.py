"""Registers this node with the API, keeps its Ready condition fresh and
renews its Lease in ``kube-node-lease``, as the kubelet does."""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass

from netplane import __version__
from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import AlreadyExists, ApiError, Client, Conflict, NotFound
from netplane.node.capacity import MAX_PODS, PRESSURE_WORDS, Machine
from netplane.node.kubeletapi import KUBELET_PORT

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0
# The kubelet's nodeLeaseDurationSeconds; it renews every quarter of it.
LEASE_DURATION_SECONDS = 40
RENEW_FRACTION = 0.25
PROCESS_RUNTIME_VERSION = "process://0.1.0"
MAX_IMAGES = 50  # the kubelet's nodeStatusMaxImages


@dataclass(frozen=True)
class RuntimeInfo:
    """What the node says of its container runtime: its version string and,
    where it has images, how to list them (largest first)."""

    version: str = PROCESS_RUNTIME_VERSION
    images: Callable[[], list[Obj]] | None = None


def node_object(name: str, ip: str) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              "kubernetes.io/os": "linux",
                                              "node-role.kubernetes.io/worker": ""}},
        "spec": {},
    }


def node_status(name: str, ip: str, *, ready: bool = True,
                machine: Machine | None = None,
                pressure: dict[str, bool] | None = None,
                previous: Obj | None = None,
                runtime: RuntimeInfo | None = None) -> Obj:
    """The status the agent reports; without ``machine``, pods only; with
    ``pressure``, the kubelet's memory, disk and PID pressure conditions.
    A condition that reads as it did in ``previous`` (the node as last
    reported) keeps its lastTransitionTime, as the kubelet's do."""
    capacity = machine.capacity() if machine else {"pods": str(MAX_PODS)}
    allocatable = machine.allocatable() if machine else {"pods": str(MAX_PODS)}
    node: Obj = {"status": {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname",
                                                                "address": name}],
        "nodeInfo": {"kubeletVersion": f"v1.32.0+netplane-{__version__}",
                     "kernelVersion": platform.release(), "osImage": "netplane lab node",
                     "containerRuntimeVersion": (runtime or RuntimeInfo()).version,
                     "operatingSystem": "linux", "architecture": platform.machine()},
        "capacity": capacity, "allocatable": allocatable,
        # Where the agent's API listens: what the API server scrapes for metrics.
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
    }}
    if runtime is not None and runtime.images is not None:
        node["status"]["images"] = runtime.images()[:MAX_IMAGES]
    reported = {"Ready", *(pressure or {})}
    node["status"]["conditions"] = [
        dict(c) for c in ((previous or {}).get("status") or {}).get("conditions") or []
        if c.get("type") in reported]
    if ready:
        meta.set_condition(node, "Ready", True, "NodeReady",
                           "netplane agent is posting ready status")
    else:
        meta.set_condition(node, "Ready", False, "AgentStarting",
                           "netplane agent is setting up the node's network and services")
    for cond, under in (pressure or {}).items():
        reason, message = PRESSURE_WORDS[cond][under]
        meta.set_condition(node, cond, under, reason, message)
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
                    machine: Machine | None = None,
                    pressure: Callable[[], dict[str, bool]] | None = None,
                    runtime: RuntimeInfo | None = None) -> None:
    """Ready at once (the agent calls this when set up), then every few
    seconds, with the pressure conditions read from the machine each time."""
    last: Obj | None = None
    while True:
        try:
            last = await client.patch(resources.NODE, name, node_status(
                name, ip, machine=machine, pressure=pressure() if pressure else None,
                previous=last, runtime=runtime), subresource="status")
        except (ApiError, OSError, ValueError) as e:
            log.warning("heartbeat failed: %s", e)
        await asyncio.sleep(HEARTBEAT_SECONDS)


def lease_object(node: Obj, *, duration: int = LEASE_DURATION_SECONDS) -> Obj:
    """The node's Lease, owned by its Node so that it goes with it."""
    name = meta.name(node)
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": resources.NODE_LEASE_NAMESPACE,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                          "uid": meta.uid(node)}]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": duration,
                 "renewTime": meta.micro_time()},
    }


async def renew_lease_once(client: Client, node: Obj, lease: Obj | None, *,
                           duration: int = LEASE_DURATION_SECONDS) -> Obj:
    """The Lease renewed now: created when missing, read again after a conflict."""
    name = meta.name(node)
    if lease is None:
        try:
            lease = await client.get(resources.LEASE, name, resources.NODE_LEASE_NAMESPACE)
        except NotFound:
            return await client.create(resources.LEASE, lease_object(node, duration=duration))
    renewed = {**lease, "spec": {**(lease.get("spec") or {}), "holderIdentity": name,
                                 "leaseDurationSeconds": duration,
                                 "renewTime": meta.micro_time()}}
    return await client.update(resources.LEASE, renewed)


async def renew_lease(client: Client, node: Obj, *,
                      duration: int = LEASE_DURATION_SECONDS) -> None:
    """Renews the node's Lease every quarter of its duration, for ever."""
    lease: Obj | None = None
    while True:
        try:
            lease = await renew_lease_once(client, node, lease, duration=duration)
        except Conflict:
            lease = None  # someone else wrote it: read it again next time
        except (ApiError, OSError) as e:
            log.warning("lease renewal failed: %s", e)
            lease = None
        await asyncio.sleep(duration * RENEW_FRACTION)
