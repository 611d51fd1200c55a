"""The scheduling queue, as kube-scheduler's (without priorities yet): new
pods are active; a pod that fit nowhere waits as unschedulable until a
cluster event that could cure what rejected it moves it back, through
back-off (1 s, doubling per attempt, at most 10 s) so that a busy cluster
does not spin on it; pods left unschedulable for 5 minutes are flushed back
as a safety net. Time comes from an injected clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE = 300.0
Clock = Callable[[], float]


class SchedulingQueue:
    def __init__(self, *, clock: Clock = time.monotonic, initial: float = INITIAL_BACKOFF,
                 maximum: float = MAX_BACKOFF,
                 max_unschedulable: float = MAX_UNSCHEDULABLE) -> None:
        self.clock, self.initial, self.maximum = clock, initial, maximum
        self.max_unschedulable = max_unschedulable
        self.active: dict[str, None] = {}  # ordered: first in, first tried
        self.backoff: dict[str, float] = {}  # key -> when its back-off ends
        self.unschedulable: dict[str, tuple[float, frozenset[str]]] = {}  # since, rejectors
        self.attempts: dict[str, int] = {}
        self.failed_at: dict[str, float] = {}
        # What the moves asked for while pods were out being tried could
        # cure (None: anything): a pod that then fails for one of those
        # goes to back-off, not to wait for an event that already passed.
        self.moved_while_out: set[str] | None = set()

    def __contains__(self, key: str) -> bool:
        return key in self.active or key in self.backoff or key in self.unschedulable

    def add(self, key: str) -> None:
        if key not in self:
            self.active[key] = None

    def remove(self, key: str) -> None:
        for queue in (self.active, self.backoff, self.unschedulable, self.attempts,
                      self.failed_at):
            queue.pop(key, None)

    def backoff_ends(self, key: str) -> float:
        attempts = self.attempts.get(key, 0)
        if not attempts:
            return 0.0
        wait = min(self.initial * (1 << min(attempts - 1, 30)), self.maximum)
        return self.failed_at.get(key, 0.0) + wait

    def failed(self, key: str, rejectors: Iterable[str] = ()) -> None:
        """The pod fit nowhere; ``rejectors`` are the plugins that said no."""
        now = self.clock()
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.failed_at[key] = now
        rejected = frozenset(rejectors)
        missed = self.moved_while_out
        if missed is None or (missed and (not rejected or rejected & missed)):
            self.backoff[key] = self.backoff_ends(key)
        else:
            self.unschedulable[key] = (now, rejected)

    def errored(self, key: str) -> None:
        """Binding failed: tried again after back-off, whatever happens."""
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.failed_at[key] = self.clock()
        self.backoff[key] = self.backoff_ends(key)

    def _move(self, key: str) -> None:
        self.unschedulable.pop(key, None)
        ends = self.backoff_ends(key)
        if ends > self.clock():
            self.backoff[key] = ends
        else:
            self.backoff.pop(key, None)
            self.active[key] = None

    def move(self, cures: Iterable[str] | None = None) -> None:
        """A cluster event: pods rejected by a plugin in ``cures`` (any, when
        None, or when nothing is known of what rejected them) go back."""
        cured = None if cures is None else set(cures)
        if cured is None or self.moved_while_out is None:
            self.moved_while_out = None
        else:
            self.moved_while_out |= cured
        for key, (_, rejectors) in list(self.unschedulable.items()):
            if cured is None or not rejectors or rejectors & cured:
                self._move(key)

    def update(self, key: str) -> None:
        """The pod itself changed: it may fit now."""
        if key in self.unschedulable:
            self._move(key)

    def pop_ready(self) -> list[str]:
        """The pods to try now: the active ones, those whose back-off is
        over, and those unschedulable for too long."""
        now = self.clock()
        for key, ends in list(self.backoff.items()):
            if ends <= now:
                del self.backoff[key]
                self.active[key] = None
        for key, (since, _) in list(self.unschedulable.items()):
            if now - since >= self.max_unschedulable:
                self._move(key)
        ready, self.active = list(self.active), {}
        self.moved_while_out = set()
        return ready

    def next_deadline(self) -> float | None:
        """When ``pop_ready`` will next have something without an event."""
        times = [*self.backoff.values(),
                 *(since + self.max_unschedulable for since, _ in self.unschedulable.values())]
        if self.active:
            times.append(self.clock())
        return min(times, default=None)

    def succeeded(self, key: str) -> None:
        self.remove(key)
