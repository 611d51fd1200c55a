"""Horizontal pod autoscaler (kube's pkg/controller/podautoscaler): every
sync period, for each HorizontalPodAutoscaler, read its target's scale
subresource, propose replicas from each metric (the largest wins), hold the
proposal to the stabilization windows, policies and min/max, write the new
scale, and tell what happened in the HPA's status (AbleToScale,
ScalingActive, ScalingLimited) and events, with kube's reasons and words."""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from netplane.api import meta, resources, selectors
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client
from netplane.cluster.controllers.hpametrics import Computed, Failure, Inputs, compute
from netplane.cluster.controllers.podmetrics import MetricsSource, ResourceMetricsApi
from netplane.cluster.controllers.queue import WorkQueue, drain
from netplane.cluster.controllers.replicacalc import Settings
from netplane.cluster.controllers.scalerules import (
    DOWNSCALE_STABILIZATION,
    Condition,
    History,
    Recommendation,
    normalize,
    normalize_with_behavior,
    record_scale,
)
from netplane.cluster.controllers.shared import Informers, split_key
from netplane.cluster.events import Reason, Recorder, Source

log = logging.getLogger(__name__)
SYNC_PERIOD = 15.0  # --horizontal-pod-autoscaler-sync-period
SCALABLE = {(r.api_version, r.kind): r for r in (resources.DEPLOYMENT, resources.REPLICASET,
                                                 resources.STATEFULSET)}


class NoScale(Exception):
    pass


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str  # what SuccessfulRescale says
    statuses: list[Obj]  # the currentMetrics entries
    rescale: bool = True


class HorizontalController:
    def __init__(self, client: Client, informers: Informers, *,
                 metrics: MetricsSource | None = None,
                 clock: Callable[[], float] = time.time, sync_period: float = SYNC_PERIOD,
                 downscale_window: float = DOWNSCALE_STABILIZATION,
                 settings: Settings | None = None) -> None:
        self.client, self.inf, self.clock = client, informers, clock
        self.metrics = metrics if metrics is not None else ResourceMetricsApi(client)
        self.sync_period, self.downscale_window = sync_period, downscale_window
        self.settings = settings or Settings()
        self.events = Recorder(client, Source("horizontal-pod-autoscaler"))
        self.queue = WorkQueue()
        self.histories: dict[str, History] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        informers.hpas.add_handler(self._on_hpa)

    def _on_hpa(self, prev: Obj | None, cur: Obj | None) -> None:
        """New and changed specs sync now; the rest waits for the period
        (kube's rate-limited queue), so a status write does not resync."""
        if cur is None:
            key = meta.namespaced_name(prev) if prev is not None else ""
            self.histories.pop(key, None)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
        elif prev is None or prev.get("spec") != cur.get("spec"):
            self.queue.add(meta.namespaced_name(cur))

    def _again(self, key: str) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(
            self.sync_period, self.queue.add, key)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        hpa = self.inf.hpas.get(name, ns)
        if hpa is None or meta.is_deleting(hpa):
            self.histories.pop(key, None)
            return
        try:
            await self.sync(key, copy.deepcopy(hpa))
        finally:
            self._again(key)

    async def run(self) -> None:
        await drain("horizontal-pod-autoscaler", self.queue, self.reconcile)

    # -- one sync (kube's reconcileAutoscaler) --

    async def sync(self, key: str, hpa: Obj) -> None:
        before = copy.deepcopy(hpa.get("status") or {})
        hpa.setdefault("status", {})
        try:
            res, scale = await self._scale(hpa)
        except NoScale as e:
            self.events.warning(hpa, Reason.FAILED_GET_SCALE, str(e))
            self._condition(hpa, Condition("AbleToScale", False, "FailedGetScale",
                                           "the HPA controller was unable to get the target's "
                                           f"current scale: {e}"))
            await self._write_status(hpa, before)
            return
        self._condition(hpa, Condition("AbleToScale", True, "SucceededGetScale",
                                       "the HPA controller was able to get the target's "
                                       "current scale"))
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        now = self.clock()
        history = self.histories.setdefault(key, History([Recommendation(current, now)]))
        decision = await self._decide(hpa, scale, history, current, now)
        if decision is None:
            await self._write_status(hpa, before, current=current)
            return
        desired = decision.replicas
        if decision.rescale:
            if not await self._rescale(hpa, res, scale, decision, before, current):
                return
            record_scale(history, (hpa.get("spec") or {}).get("behavior"), current, desired,
                         now)
            hpa["status"]["lastScaleTime"] = _stamp(now)
        else:
            desired = current
        status = hpa["status"]
        status.update(currentReplicas=current, desiredReplicas=desired)
        status.pop("currentMetrics", None)
        if decision.statuses:
            status["currentMetrics"] = decision.statuses
        await self._write_status(hpa, before)

    async def _decide(self, hpa: Obj, scale: Obj, history: History, current: int,
                      now: float) -> Decision | None:
        """What to scale to and why (the middle of kube's reconcileAutoscaler);
        None when the metrics give nothing to act on."""
        spec = hpa.get("spec") or {}
        least, most = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas") or 0)
        if current == 0 and least != 0:
            self._condition(hpa, Condition("ScalingActive", False, "ScalingDisabled",
                                           "scaling is disabled since the replica count of "
                                           "the target is zero"))
            return Decision(0, "", [], rescale=False)
        if current > most:
            return Decision(most, "Current number of replicas above Spec.MaxReplicas", [])
        if current < least:
            return Decision(least, "Current number of replicas below Spec.MinReplicas", [])
        proposal = await self._from_metrics(hpa, scale, current)
        if proposal is None:
            return None
        desired, metric_name, statuses = proposal
        reason = f"{metric_name} above target" if desired > current else \
            "All metrics below target" if desired < current else ""
        desired = self._normalize(hpa, history, current, desired, least, most, now)
        return Decision(desired, reason, statuses, rescale=desired != current)

    async def _scale(self, hpa: Obj) -> tuple[resources.Resource, Obj]:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        version, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
        res = SCALABLE.get((version, kind))
        if res is None:
            try:
                resources.by_kind(version, kind)
            except resources.UnknownKind:
                group = version.rpartition("/")[0] if "/" in version else ""
                raise NoScale(f'no matches for kind "{kind}" in group "{group}"') from None
            # A kind without a scale subresource: what its /scale would answer.
            raise NoScale("the server could not find the requested resource")
        path = res.object_path(str(ref.get("name")), meta.namespace(hpa)) + "/scale"
        try:
            return res, await self.client.request("GET", path)
        except ApiError as e:
            raise NoScale(e.message) from None

    async def _from_metrics(self, hpa: Obj, scale: Obj,
                            current: int) -> tuple[int, str, list[Obj]] | None:
        """kube's computeReplicasForMetrics: the largest proposal, or None
        (the status says why) when the metrics give none to act on."""
        text = str((scale.get("status") or {}).get("selector") or "")
        if not text:
            self.events.warning(hpa, Reason.SELECTOR_REQUIRED, "selector is required")
            self._condition(hpa, Condition("ScalingActive", False, "InvalidSelector",
                                           "the HPA target's scale is missing a selector"))
            return None
        try:
            sel = selectors.parse(text)
        except selectors.SelectorError as e:
            self._condition(hpa, Condition("ScalingActive", False, "InvalidSelector",
                                           f"couldn't convert selector into a corresponding "
                                           f"internal selector object: {e}"))
            return None
        ns = meta.namespace(hpa)
        given = Inputs(ns, text, [p for p in self.inf.pods.in_namespace(ns)
                                  if sel.matches(meta.labels(p))], current, self.clock(),
                       self.settings)
        specs = (hpa.get("spec") or {}).get("metrics") or []
        statuses: list[Obj] = [{"type": ""} for _ in specs]
        best: Computed | None = None
        failures: list[Failure] = []
        for i, metric in enumerate(specs):
            try:
                got = await compute(metric, self.metrics, given)
            except Failure as f:
                self.events.warning(hpa, f.reason, f.detail)
                failures.append(f)
                continue
            statuses[i] = got.status
            if best is None or got.replicas > best.replicas:
                best = got
        if failures and (best is None or best.replicas < current):
            first = failures[0]
            self._condition(hpa, Condition("ScalingActive", False, first.reason,
                                           "the HPA was unable to compute the replica count: "
                                           f"{first.detail}"))
            hpa["status"]["currentMetrics"] = statuses
            self.events.warning(hpa, Reason.FAILED_COMPUTE_METRICS_REPLICAS, (
                f"invalid metrics ({len(failures)} invalid out of {len(specs)}), first error "
                f"is: {first}"))
            return None
        assert best is not None
        self._condition(hpa, Condition("ScalingActive", True, "ValidMetricFound",
                                       "the HPA was able to successfully calculate a replica "
                                       f"count from {best.name}"))
        return best.replicas, best.name, statuses

    def _normalize(self, hpa: Obj, history: History, current: int, desired: int, least: int,
                   most: int, now: float) -> int:
        behavior = (hpa.get("spec") or {}).get("behavior")
        if behavior is None:
            out = normalize(history, current, desired, least, most, now,
                            window=self.downscale_window)
        else:
            out = normalize_with_behavior(history, current, desired, least, most, behavior,
                                          now, window=self.downscale_window)
        for c in out.conditions:
            self._condition(hpa, c)
        return out.replicas

    async def _rescale(self, hpa: Obj, res: resources.Resource, scale: Obj,
                       decision: Decision, before: Obj, current: int) -> bool:
        desired, reason, statuses = decision.replicas, decision.reason, decision.statuses
        body = {**scale, "spec": {**(scale.get("spec") or {}), "replicas": desired}}
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        path = res.object_path(str(ref.get("name")), meta.namespace(hpa)) + "/scale"
        try:
            await self.client.request("PUT", path, body=body)
        except ApiError as e:
            self.events.warning(hpa, Reason.FAILED_RESCALE,
                                f"New size: {desired}; reason: {reason}; error: {e.message}")
            self._condition(hpa, Condition("AbleToScale", False, "FailedUpdateScale",
                                           "the HPA controller was unable to update the "
                                           f"target scale: {e.message}"))
            if statuses:
                hpa["status"]["currentMetrics"] = statuses
            await self._write_status(hpa, before, current=current)
            return False
        self._condition(hpa, Condition("AbleToScale", True, "SucceededRescale",
                                       "the HPA controller was able to update the target "
                                       f"scale to {desired}"))
        self.events.normal(hpa, Reason.SUCCESSFUL_RESCALE,
                           f"New size: {desired}; reason: {reason}")
        return True

    # -- status --

    def _condition(self, hpa: Obj, c: Condition) -> None:
        """kube's setCondition: the transition time moves only with the status."""
        conds: list[Obj] = hpa["status"].setdefault("conditions", [])
        value = "True" if c.status else "False"
        for existing in conds:
            if existing.get("type") == c.type:
                if existing.get("status") != value:
                    existing["lastTransitionTime"] = _stamp(self.clock())
                existing.update(status=value, reason=c.reason, message=c.message)
                return
        conds.append({"type": c.type, "status": value, "lastTransitionTime": _stamp(
            self.clock()), "reason": c.reason, "message": c.message})

    async def _write_status(self, hpa: Obj, before: Obj, *, current: int | None = None) -> None:
        status = hpa["status"]
        if current is not None:
            status["currentReplicas"] = current
        status.setdefault("desiredReplicas", 0)
        if status == before:
            return
        try:
            await self.client.update_status(resources.HORIZONTALPODAUTOSCALER, hpa)
        except ApiError as e:
            if e.code == 404:
                return
            self.events.warning(hpa, Reason.FAILED_UPDATE_STATUS, e.message)
            if e.code == 409:
                # Changed meanwhile: the next period's sync writes it again, as
                # kube's rate-limited requeue does, rather than a quick retry
                # that would judge the new scale on the old pods' metrics.
                log.debug("status of HPA %s not written: %s", meta.namespaced_name(hpa), e)
                return
            raise


def _stamp(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
