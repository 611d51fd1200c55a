"""The event recorder: one way for every component to tell users what it did
to an object, as ``v1`` Events that ``kubectl describe`` and ``kubectl get
events`` show. Repeats of the same event (same object, reason, message and
source) update one Event's ``count`` and ``lastTimestamp`` instead of making
new ones, as client-go's recorder aggregates them. Recording never blocks or
fails the caller: events are best effort, as in Kubernetes."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import UNREACHABLE, ApiError, Client, NotFound

log = logging.getLogger(__name__)
CACHE_SIZE = 4096


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(enum.StrEnum):
    """The fixed vocabulary (the kubelet's and controllers' reasons)."""

    SCHEDULED = "Scheduled"
    FAILED_SCHEDULING = "FailedScheduling"
    PREEMPTED = "Preempted"
    PULLING = "Pulling"
    PULLED = "Pulled"
    ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
    FAILED = "Failed"
    CREATED = "Created"
    STARTED = "Started"
    KILLING = "Killing"
    UNHEALTHY = "Unhealthy"
    BACK_OFF = "BackOff"
    FAILED_MOUNT = "FailedMount"
    FAILED_PRE_STOP_HOOK = "FailedPreStopHook"
    FAILED_POST_START_HOOK = "FailedPostStartHook"
    SUCCESSFUL_CREATE = "SuccessfulCreate"
    FAILED_CREATE = "FailedCreate"
    SUCCESSFUL_DELETE = "SuccessfulDelete"
    SCALING_REPLICA_SET = "ScalingReplicaSet"
    WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
    EXTERNAL_PROVISIONING = "ExternalProvisioning"
    FAILED_BINDING = "FailedBinding"
    PROVISIONING_SUCCEEDED = "ProvisioningSucceeded"
    # The Job controller's.
    COMPLETED = "Completed"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    POD_FAILURE_POLICY = "PodFailurePolicy"
    TOO_MANY_SUCCEEDED_PODS = "TooManySucceededPods"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    # The CronJob controller's.
    SAW_COMPLETED_JOB = "SawCompletedJob"
    UNEXPECTED_JOB = "UnexpectedJob"
    MISSING_JOB = "MissingJob"
    MISS_SCHEDULE = "MissSchedule"
    TOO_MANY_MISSED_TIMES = "TooManyMissedTimes"
    JOB_ALREADY_ACTIVE = "JobAlreadyActive"
    UNKNOWN_TIME_ZONE = "UnknownTimeZone"
    INVALID_SCHEDULE = "InvalidSchedule"
    FAILED_DELETE = "FailedDelete"
    FAILED_DAEMON_POD = "FailedDaemonPod"
    SUCCEEDED_DAEMON_POD = "SucceededDaemonPod"
    RECREATING_FAILED_POD = "RecreatingFailedPod"
    RECREATING_TERMINATED_POD = "RecreatingTerminatedPod"
    # The disruption controller's.
    NO_PODS = "NoPods"
    CALCULATE_EXPECTED_POD_COUNT_FAILED = "CalculateExpectedPodCountFailed"
    UNMANAGED_PODS = "UnmanagedPods"
    # The taint eviction controller's.
    TAINT_MANAGER_EVICTION = "TaintManagerEviction"
    # The horizontal pod autoscaler's.
    SUCCESSFUL_RESCALE = "SuccessfulRescale"
    FAILED_RESCALE = "FailedRescale"
    FAILED_GET_SCALE = "FailedGetScale"
    FAILED_GET_RESOURCE_METRIC = "FailedGetResourceMetric"
    FAILED_GET_CONTAINER_RESOURCE_METRIC = "FailedGetContainerResourceMetric"
    FAILED_GET_PODS_METRIC = "FailedGetPodsMetric"
    FAILED_GET_OBJECT_METRIC = "FailedGetObjectMetric"
    FAILED_GET_EXTERNAL_METRIC = "FailedGetExternalMetric"
    FAILED_COMPUTE_METRICS_REPLICAS = "FailedComputeMetricsReplicas"
    SELECTOR_REQUIRED = "SelectorRequired"
    FAILED_UPDATE_STATUS = "FailedUpdateStatus"


@dataclass(frozen=True)
class Source:
    component: str
    host: str = ""


def involved(obj: Obj, field_path: str = "") -> Obj:
    md = obj.get("metadata", {})
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""),
           "name": md.get("name", ""), "uid": md.get("uid", ""),
           "resourceVersion": md.get("resourceVersion", "")}
    if md.get("namespace"):
        ref["namespace"] = md["namespace"]
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def new_event(obj: Obj, type_: EventType, reason: Reason, message: str, source: Source, *,
              field_path: str = "") -> Obj:
    ref = involved(obj, field_path)
    stamp = meta.now()
    body: Obj = {
        "apiVersion": "v1", "kind": "Event",
        # client-go's name: the object's name and the time in hex nanoseconds.
        "metadata": {"name": f"{ref['name']}.{time.time_ns():x}",
                     "namespace": ref.get("namespace") or "default"},
        "involvedObject": ref, "reason": str(reason), "message": message,
        "type": str(type_), "count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp,
        "source": {"component": source.component},
        "reportingComponent": source.component, "reportingInstance": source.host,
    }
    if source.host:
        body["source"]["host"] = source.host
    return body


def _key(ev: Obj) -> tuple[str, ...]:
    ref = ev["involvedObject"]
    return (ev["source"].get("component", ""), ev["source"].get("host", ""),
            ref.get("kind", ""), ref.get("namespace", ""), ref.get("name", ""),
            ref.get("uid", ""), ref.get("fieldPath", ""), ev["type"], ev["reason"],
            ev["message"])


class Recorder:
    """Events go into a queue that one writer task drains, in order (as
    client-go's broadcaster), so counts never go backwards and a burst of
    events costs the caller an append each, not a task each."""

    def __init__(self, client: Client, source: Source) -> None:
        self.client, self.source = client, source
        # Aggregation key -> (namespace, name, count) of the Event written for it.
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._queue: deque[Obj] = deque()
        self._writer: asyncio.Task[None] | None = None

    def normal(self, obj: Obj, reason: Reason, message: str, *, field_path: str = "") -> None:
        self.record(obj, EventType.NORMAL, reason, message, field_path=field_path)

    def warning(self, obj: Obj, reason: Reason, message: str, *, field_path: str = "") -> None:
        self.record(obj, EventType.WARNING, reason, message, field_path=field_path)

    def record(self, obj: Obj, type_: EventType, reason: Reason, message: str, *,
               field_path: str = "") -> None:
        self._queue.append(new_event(obj, type_, reason, message, self.source,
                                     field_path=field_path))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self) -> None:
        """Waits for the events recorded so far to be written (tests, shutdown)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        while self._queue:
            await self._write(self._queue.popleft())

    async def _write(self, ev: Obj) -> None:
        key = _key(ev)
        try:
            seen = self._seen.get(key)
            if seen is not None and await self._bump(ev, *seen):
                return
            created = await self.client.create(resources.EVENT, ev)
            self._remember(key, meta.namespace(created), meta.name(created), 1)
        except ApiError as e:
            log.debug("event %s %s not recorded: %s", ev["reason"], ev["message"], e)
        except UNREACHABLE as e:
            # Caught, not raised: the one writer task must live on for the queue.
            log.debug("event not recorded, API unreachable: %s", e)

    async def _bump(self, ev: Obj, namespace: str, name: str, count: int) -> bool:
        patch = {"count": count + 1, "lastTimestamp": ev["lastTimestamp"],
                 "involvedObject": {"resourceVersion":
                                    ev["involvedObject"].get("resourceVersion", "")}}
        try:
            await self.client.patch(resources.EVENT, name, patch, namespace)
        except NotFound:
            return False  # deleted or expired meanwhile: start a new one
        self._remember(_key(ev), namespace, name, count + 1)
        return True

    def _remember(self, key: tuple[str, ...], namespace: str, name: str, count: int) -> None:
        self._seen[key] = (namespace, name, count)
        self._seen.move_to_end(key)
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
