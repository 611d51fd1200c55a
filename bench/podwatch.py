"""What a watch of pods showed, and when, and the arithmetic on it, for
``bench/workloads.py`` (it runs as a script: this folder is on its path).
No I/O: unit-tested."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netplane.api import meta
from netplane.api.meta import Obj

PHASE_TIMEOUT = 300.0


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of them at or below."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class PodClock:
    """What a watch of pods showed, and when (monotonic seconds of arrival)."""

    ready_at: dict[str, float] = field(default_factory=dict)  # first Ready
    gone_at: dict[str, float] = field(default_factory=dict)
    pods: dict[str, Obj] = field(default_factory=dict)  # the live ones
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Called after every event: rollouts sample availability there.
    on_event: Callable[[PodClock], None] | None = None

    def observe(self, kind: str, pod: Obj, at: float) -> None:
        name = meta.name(pod)
        if kind == "DELETED":
            self.pods.pop(name, None)
            self.gone_at.setdefault(name, at)
        else:
            self.pods[name] = pod
            if meta.pod_ready(pod):
                self.ready_at.setdefault(name, at)
        if self.on_event is not None:
            self.on_event(self)
        self.changed.set()

    def available(self, names: set[str] | None = None) -> int:
        """Ready pods not being deleted (what a rollout must keep)."""
        return sum(1 for n, p in self.pods.items() if (names is None or n in names)
                   and meta.pod_ready(p) and not meta.is_deleting(p))

    def active(self, names: set[str]) -> int:
        """Pods not being deleted (what maxSurge bounds)."""
        return sum(1 for n in names if not meta.is_deleting(self.pods[n]))

    async def until(self, what: str, done: Callable[[], bool],
                    timeout: float = PHASE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 5.0))


def api_startup_seconds(pod: Obj) -> float | None:
    """creationTimestamp -> Ready's lastTransitionTime (1 s resolution)."""
    ready = meta.condition(pod, "Ready") or {}
    created = pod.get("metadata", {}).get("creationTimestamp")
    if ready.get("status") != "True" or not created or not ready.get("lastTransitionTime"):
        return None
    delta = meta.parse_time(ready["lastTransitionTime"]) - meta.parse_time(created)
    return delta.total_seconds()


def surge_and_unavailable(replicas: int, percent: int = 25) -> tuple[int, int]:
    """maxSurge rounds up, maxUnavailable down, as Kubernetes resolves them."""
    return math.ceil(replicas * percent / 100), math.floor(replicas * percent / 100)
