"""What a pod's ``resources`` become in its cgroups, as the kubelet converts
them (pkg/kubelet/cm: ``MilliCPUToShares``, ``MilliCPUToQuota``, the QoS
class of ``GetPodQOS`` and the pod totals of ``ResourceConfigForPod``).
Pure: the files are written by :mod:`netplane.node.cgroups`."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass

from netplane.api.meta import Obj
from netplane.api.quantity import quantity

MIN_SHARES, MAX_SHARES, SHARES_PER_CPU = 2, 262144, 1024
QUOTA_PERIOD_US = 100_000  # the kubelet's default CFS period, 100 ms
MIN_QUOTA_US = 1000
MAX_WEIGHT = 10_000


class QOSClass(enum.Enum):
    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"

    @property
    def folder(self) -> str:
        """The pod's parent under kubepods: Guaranteed pods sit right in it."""
        return {"Guaranteed": "", "Burstable": "burstable", "BestEffort": "besteffort"}[
            self.value]


@dataclass(frozen=True)
class Limits:
    """One cgroup's settings. ``quota_us`` None: no CPU limit; ``memory``
    None: no memory limit; ``pids`` None: no limit on processes."""

    shares: int = MIN_SHARES
    quota_us: int | None = None
    period_us: int = QUOTA_PERIOD_US
    memory: int | None = None
    pids: int | None = None

    @property
    def weight(self) -> int:
        """cgroup v2's cpu.weight for the v1 shares (``CpuSharesToCpuWeight``)."""
        return 1 + ((self.shares - MIN_SHARES) * (MAX_WEIGHT - 1)) // (MAX_SHARES - MIN_SHARES)


def milli_cpu(text: object) -> int:
    """A CPU quantity in millicores, rounded up as ``MilliValue`` does."""
    return math.ceil(round(quantity(str(text)) * 1000, 6))


def byte_count(text: object) -> int:
    """A memory quantity in bytes, rounded up as ``Value`` does."""
    return math.ceil(round(quantity(str(text)), 3))


def milli_cpu_to_shares(milli: int) -> int:
    if milli == 0:
        return MIN_SHARES
    return min(max(milli * SHARES_PER_CPU // 1000, MIN_SHARES), MAX_SHARES)


def milli_cpu_to_quota(milli: int, period_us: int = QUOTA_PERIOD_US) -> int | None:
    if milli == 0:
        return None
    return max(milli * period_us // 1000, MIN_QUOTA_US)


def _resource(container: Obj, kind: str, name: str) -> object | None:
    return ((container.get("resources") or {}).get(kind) or {}).get(name)


def container_limits(container: Obj) -> Limits:
    """The container's own cgroup: shares from its CPU request (its limit
    when it has no request), quota from its CPU limit, memory.max from its
    memory limit."""
    request, limit = _resource(container, "requests", "cpu"), _resource(container, "limits", "cpu")
    if request is None and limit is not None:
        request = limit
    memory = _resource(container, "limits", "memory")
    return Limits(shares=milli_cpu_to_shares(milli_cpu(request or 0)),
                  quota_us=milli_cpu_to_quota(milli_cpu(limit or 0)),
                  memory=byte_count(memory) if memory is not None else None)


def _containers(pod: Obj) -> Iterator[Obj]:
    spec = pod.get("spec") or {}
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def qos_class(pod: Obj) -> QOSClass:
    """BestEffort: no CPU or memory request or limit anywhere; Guaranteed:
    every container limits both and requests what it limits; else Burstable."""
    guaranteed, any_set = True, False
    for c in _containers(pod):
        for name in ("cpu", "memory"):
            request, limit = _resource(c, "requests", name), _resource(c, "limits", name)
            any_set = any_set or request is not None or limit is not None
            if limit is None or (request is not None and quantity(str(request)) !=
                                 quantity(str(limit))):
                guaranteed = False
    if not any_set:
        return QOSClass.BEST_EFFORT
    return QOSClass.GUARANTEED if guaranteed else QOSClass.BURSTABLE


def pod_limits(pod: Obj) -> Limits:
    """The pod's cgroup: the sum of its app containers' requests and limits;
    a CPU or memory limit only when every container declares one."""
    if qos_class(pod) is QOSClass.BEST_EFFORT:
        return Limits()
    apps = (pod.get("spec") or {}).get("containers") or []
    cpu_request = cpu_limit = memory = 0
    cpu_limited = memory_limited = bool(apps)
    for c in apps:
        request, limit = _resource(c, "requests", "cpu"), _resource(c, "limits", "cpu")
        cpu_request += milli_cpu(request if request is not None else limit or 0)
        cpu_limited = cpu_limited and limit is not None
        cpu_limit += milli_cpu(limit or 0)
        mem = _resource(c, "limits", "memory")
        memory_limited = memory_limited and mem is not None
        memory += byte_count(mem or 0)
    return Limits(shares=milli_cpu_to_shares(cpu_request),
                  quota_us=milli_cpu_to_quota(cpu_limit) if cpu_limited else None,
                  memory=memory if memory_limited else None)


@dataclass(frozen=True)
class PodCgroup:
    """Where a pod's cgroup goes and what it holds: what the runtime needs
    of the pod at each container start."""

    uid: str
    qos: QOSClass
    limits: Limits

    @classmethod
    def of(cls, pod: Obj) -> PodCgroup:
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        return cls(uid=uid, qos=qos_class(pod), limits=pod_limits(pod))

    @property
    def path(self) -> str:
        """Relative to the node's cgroup root: ``kubepods/<qos>/pod<uid>``."""
        return "/".join(p for p in ("kubepods", self.qos.folder, f"pod{self.uid}") if p)
