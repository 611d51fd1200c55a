"""What the agent remembers of each container beyond the runtime's state:
its restarts and crash-loop back-off, its probes, the state of its
previous instance (``lastState``), and why it is waiting."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from netplane.api.meta import Obj
from netplane.node.probes import ContainerProbes
from netplane.node.runtime.process import ContainerState, ContainerStatus

# The kubelet's crash-loop back-off: 10 s, doubling, at most 5 min; forgotten
# once a container has run 10 min.
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


@dataclass
class Backoff:
    """When a crashed container may start again. The first restart is at
    once; each next waits twice as long, as the kubelet's does."""

    delay: float = 0.0  # what the next exit will wait
    current: float = 0.0  # what this exit waits
    not_before: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.not_before

    def after_exit(self, now: float, ran_for: float | None) -> None:
        """Books the next start after an exit (``ran_for`` seconds of running)."""
        if ran_for is not None and ran_for >= BACKOFF_RESET:
            self.delay = 0.0
        self.current = self.delay
        self.not_before = now + self.delay
        self.delay = min(max(self.delay * 2, BACKOFF_START), BACKOFF_MAX)


def should_restart(policy: str, exit_code: int | None) -> bool:
    """restartPolicy Always restarts any exit; OnFailure a non-zero one."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


@dataclass
class ContainerRecord:
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    probes: ContainerProbes = field(default_factory=ContainerProbes)
    last_state: Obj = field(default_factory=dict)
    # Why the container is not running now (CrashLoopBackOff, ErrImagePull, ...).
    waiting: tuple[str, str] = ("", "")
    # The exit already booked (the instance's pid and start): each counts once.
    seen_exit: tuple[int | None, float | None] | None = None
    # Set when the agent itself stopped the instance (a failed probe or hook).
    kill_reason: str = ""
    # Failed pulls of the container's image wait as crashes do (the
    # kubelet's image back-off: 10 s, doubling, at most 5 min).
    pull_backoff: Backoff = field(default_factory=lambda: Backoff(delay=BACKOFF_START))

    def exited(self, state: ContainerState) -> bool:
        """Books an exit the first time it is seen; True then."""
        key = (state.pid, state.started_at)
        if state.status is not ContainerStatus.EXITED or self.seen_exit == key:
            return False
        self.seen_exit = key
        now = time.time()
        ran = now - state.started_at if state.started_at else None
        self.backoff.after_exit(time.monotonic(), ran)
        return True

    def started(self) -> None:
        """A new instance runs: its probes start afresh."""
        self.probes = ContainerProbes()
        self.waiting = ("", "")
        self.kill_reason = ""
