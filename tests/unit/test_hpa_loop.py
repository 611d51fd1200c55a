"""The horizontal pod autoscaler against a real in-process API server, with
fake pod metrics and a fake clock: a Deployment at high CPU goes from 1 to
3 replicas at once, stays at 3 while the 5-minute downscale stabilization
holds, and comes back to 1 after it, with kube's status, conditions and
events; a target that does not exist is FailedGetScale. No other
controllers run: the test makes the pods the ReplicaSet would."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from netplane.api import autoscaling, meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client
from netplane.cluster.controllers.hpa import HorizontalController
from netplane.cluster.controllers.shared import Informers
from tests.unit.test_client import one_controller

HANG = 60.0  # only a guard against a hung test
NS = "default"
KEY = f"{NS}/web"


def stamp(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeMetrics:
    """PodMetrics as metrics-server would list them: cpu usage per pod."""

    clock: Clock
    cpu: dict[str, str] = field(default_factory=dict)

    async def pod_metrics(self, namespace: str, selector: str) -> list[Obj]:
        return [{"metadata": {"name": name, "namespace": namespace},
                 "timestamp": stamp(self.clock.now - 5), "window": "30s",
                 "containers": [{"name": "c", "usage": {"cpu": cpu}}]}
                for name, cpu in self.cpu.items()]


class Driven:
    """The controller, synced by the test rather than by its period."""

    def __init__(self, ctl: HorizontalController) -> None:
        self.ctl, self.events = ctl, ctl.events

    async def run(self) -> None:
        await asyncio.Event().wait()


@dataclass
class Cluster:
    client: Client
    informers: Informers
    ctl: HorizontalController
    clock: Clock
    metrics: FakeMetrics

    async def until(self, cond: Callable[[], Any]) -> None:
        async with asyncio.timeout(HANG):
            while not cond():
                await asyncio.sleep(0.01)

    async def hpa(self) -> Obj:
        return await self.client.get(resources.HORIZONTALPODAUTOSCALER, "web", NS)

    async def replicas(self) -> int:
        dep = await self.client.get(resources.DEPLOYMENT, "web", NS)
        return int(dep["spec"]["replicas"])

    async def sync(self) -> Obj:
        hpa = await self.hpa()
        await self.until(lambda: (self.informers.hpas.get("web", NS) or {}).get(
            "metadata", {}).get("resourceVersion") == hpa["metadata"]["resourceVersion"])
        await self.ctl.reconcile(KEY)
        return await self.hpa()

    async def add_pod(self, name: str) -> None:
        pod = await self.client.create(resources.POD, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "c", "image": "netplane/echo",
                 "resources": {"requests": {"cpu": "100m"}}}]}}, NS)
        started = self.clock.now - 600
        pod["status"] = {"phase": "Running", "startTime": stamp(started), "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": stamp(started + 5)}]}
        await self.client.update_status(resources.POD, pod)
        await self.until(lambda: meta.condition_true(
            self.informers.pods.get(name, NS) or {}, "Ready"))


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    clock = Clock(1_900_000_000.0)
    metrics = FakeMetrics(clock)
    made: list[HorizontalController] = []

    def make(client: Client, informers: Informers) -> Driven:
        made.append(HorizontalController(client, informers, metrics=metrics, clock=clock,
                                         sync_period=3600))
        return Driven(made[0])

    async with one_controller(tmp_path, make) as (client, informers):
        yield Cluster(client, informers, made[0], clock, metrics)


def deployment() -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "c", "image": "netplane/echo"}]}}}}


def autoscaler(kind: str = "Deployment") -> Obj:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "web"},
                     "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [autoscaling.cpu_metric(50)]}}


def conditions(hpa: Obj) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in hpa["status"]["conditions"]}


async def events(c: Cluster) -> list[tuple[str, str]]:
    await c.ctl.events.flush()
    items = (await c.client.list(resources.EVENT, NS))["items"]
    return [(e["reason"], e["message"]) for e in items
            if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"]


async def test_scales_up_at_once_and_down_after_the_stabilization_window(c: Cluster) -> None:
    await c.client.create(resources.DEPLOYMENT, deployment(), NS)
    await c.add_pod("web-a")
    await c.client.create(resources.HORIZONTALPODAUTOSCALER, autoscaler(), NS)
    c.metrics.cpu = {"web-a": "150m"}  # 150% of its request against a 50% target

    hpa = await c.sync()
    assert await c.replicas() == 3
    status = hpa["status"]
    assert (status["currentReplicas"], status["desiredReplicas"]) == (1, 3)
    assert status["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": 150, "averageValue": "150m"}}}]
    assert status["lastScaleTime"] == stamp(c.clock.now)
    assert conditions(hpa) == {"AbleToScale": ("True", "SucceededRescale"),
                               "ScalingActive": ("True", "ValidMetricFound"),
                               "ScalingLimited": ("False", "DesiredWithinRange")}
    assert ("SuccessfulRescale", "New size: 3; reason: cpu resource utilization (percentage "
            "of request) above target") in await events(c)

    # The load goes; the ReplicaSet's two new pods are up.
    await c.add_pod("web-b")
    await c.add_pod("web-c")
    c.metrics.cpu = {"web-a": "10m", "web-b": "10m", "web-c": "10m"}
    c.clock.now += 60
    hpa = await c.sync()
    assert await c.replicas() == 3
    assert conditions(hpa)["AbleToScale"] == ("True", "ScaleDownStabilized")
    assert hpa["status"]["currentMetrics"][0]["resource"]["current"][
        "averageUtilization"] == 10

    c.clock.now += 250  # 310 s after the scale-up: past the 300 s window
    hpa = await c.sync()
    assert await c.replicas() == 1
    assert (hpa["status"]["currentReplicas"], hpa["status"]["desiredReplicas"]) == (3, 1)
    assert ("SuccessfulRescale", "New size: 1; reason: All metrics below target") \
        in await events(c)


async def test_a_missing_target_is_failed_get_scale(c: Cluster) -> None:
    await c.client.create(resources.HORIZONTALPODAUTOSCALER, autoscaler(), NS)
    hpa = await c.sync()
    able = next(x for x in hpa["status"]["conditions"] if x["type"] == "AbleToScale")
    assert (able["status"], able["reason"]) == ("False", "FailedGetScale")
    assert able["message"].startswith("the HPA controller was unable to get the target's "
                                      "current scale: ")
    assert "web" in able["message"]
    assert [r for r, _ in await events(c)] == ["FailedGetScale"]


@pytest.mark.parametrize(("kind", "why"), [
    ("DaemonSet", "the server could not find the requested resource"),
    ("Rollout", 'no matches for kind "Rollout" in group "apps"')])
async def test_an_unscalable_kind_is_failed_get_scale(c: Cluster, kind: str, why: str) -> None:
    await c.client.create(resources.HORIZONTALPODAUTOSCALER, autoscaler(kind), NS)
    hpa = await c.sync()
    able = next(x for x in hpa["status"]["conditions"] if x["type"] == "AbleToScale")
    assert able["message"] == f"the HPA controller was unable to get the target's current " \
                              f"scale: {why}"


async def test_a_behavior_limits_the_rate_of_scaling_up(c: Cluster) -> None:
    await c.client.create(resources.DEPLOYMENT, deployment(), NS)
    await c.add_pod("web-a")
    hpa = autoscaler()
    hpa["spec"]["behavior"] = {"scaleUp": {"policies": [
        {"type": "Pods", "value": 1, "periodSeconds": 60}]}}
    await c.client.create(resources.HORIZONTALPODAUTOSCALER, hpa, NS)
    c.metrics.cpu = {"web-a": "400m"}  # wants 8

    got = await c.sync()
    assert await c.replicas() == 2
    assert conditions(got)["ScalingLimited"] == ("True", "ScaleUpLimit")
    c.clock.now += 10  # the policy's minute is spent
    await c.sync()
    assert await c.replicas() == 2
    c.clock.now += 55
    await c.sync()
    assert await c.replicas() == 3
