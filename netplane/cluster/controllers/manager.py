"""Runs every controller over one set of shared informers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from netplane.cluster.client import Client
from netplane.cluster.controllers.cronjob import CronJobController
from netplane.cluster.controllers.daemonset import DaemonSetController
from netplane.cluster.controllers.deployment import DeploymentController
from netplane.cluster.controllers.disruption import DisruptionController
from netplane.cluster.controllers.endpoints import EndpointsController
from netplane.cluster.controllers.endpointslice import EndpointSliceController
from netplane.cluster.controllers.gc import GarbageCollector
from netplane.cluster.controllers.hpa import SYNC_PERIOD, HorizontalController
from netplane.cluster.controllers.job import JobController
from netplane.cluster.controllers.loadbalancer import LoadBalancerController
from netplane.cluster.controllers.nodelifecycle import (
    GRACE_SECONDS,
    PERIOD_SECONDS,
    STARTUP_GRACE_SECONDS,
    NodeLifecycleController,
)
from netplane.cluster.controllers.persistentvolume import PersistentVolumeController
from netplane.cluster.controllers.replicaset import ReplicaSetController
from netplane.cluster.controllers.scalerules import DOWNSCALE_STABILIZATION
from netplane.cluster.controllers.serviceaccount import ServiceAccountController
from netplane.cluster.controllers.shared import Informers
from netplane.cluster.controllers.statefulset import StatefulSetController
from netplane.cluster.controllers.tainteviction import TaintEvictionController
from netplane.cluster.controllers.ttl import TTLAfterFinishedController


class Controller(Protocol):
    async def run(self) -> None: ...


async def run(client: Client, *, lb_pool: list[str] | None = None,
              node_grace: float = GRACE_SECONDS, node_period: float = PERIOD_SECONDS,
              node_startup_grace: float = STARTUP_GRACE_SECONDS,
              hpa_sync_period: float = SYNC_PERIOD,
              hpa_downscale_stabilization: float = DOWNSCALE_STABILIZATION,
              on_synced: Callable[[], None] | None = None) -> None:
    """The controllers, once their informers have synced (then ``on_synced``)."""
    informers = Informers.for_client(client)
    controllers: list[Controller] = [DeploymentController(client, informers),
                                     ReplicaSetController(client, informers),
                                     EndpointsController(client, informers),
                                     EndpointSliceController(client, informers),
                                     LoadBalancerController(client, informers, lb_pool or []),
                                     GarbageCollector(client, informers),
                                     ServiceAccountController(client, informers),
                                     PersistentVolumeController(client),
                                     JobController(client, informers),
                                     TTLAfterFinishedController(client, informers),
                                     CronJobController(client, informers),
                                     DaemonSetController(client, informers),
                                     StatefulSetController(client, informers),
                                     DisruptionController(client, informers),
                                     HorizontalController(
                                         client, informers, sync_period=hpa_sync_period,
                                         downscale_window=hpa_downscale_stabilization),
                                     NodeLifecycleController(client, informers.nodes,
                                                             informers.leases,
                                                             informers.pods, grace=node_grace,
                                                             period=node_period,
                                                             startup_grace=node_startup_grace),
                                     TaintEvictionController(client, informers.pods,
                                                             informers.nodes)]
    tasks = [asyncio.create_task(inf.run()) for inf in informers.all()]
    try:
        await asyncio.gather(*(inf.synced.wait() for inf in informers.all()))
        if on_synced is not None:
            on_synced()
        await asyncio.gather(*(c.run() for c in controllers))
    finally:
        for t in tasks:
            t.cancel()
