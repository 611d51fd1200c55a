"""What keeps a request alive when backends misbehave: an HTTPRoute rule's
timeouts and retries, per-request load balancing (the power of two choices
over the endpoints with the fewest requests in flight, as Envoy's
LEAST_REQUEST), and outlier ejection of endpoints that keep failing (as
Envoy's consecutive-5xx detection). Pure but for the injected clock and
sleep, so the state machines run on a fake clock in tests."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from netplane.api.meta import Obj
from netplane.mesh import durations
from netplane.mesh.routes import RouteError

# The specification names 500, 502, 503 and 504 as the codes every
# implementation retries when asked; others in 400-599 are allowed.
RETRIABLE = range(400, 600)
BACKOFF_CAP = 10  # times the configured backoff, as Envoy caps its own
DEFAULT_BACKOFF = 0.025  # Envoy's base interval when a route names none
DEFAULT_ATTEMPTS = 1


@dataclass(frozen=True)
class Timeouts:
    request: float | None = None  # the whole exchange, retries included
    backend_request: float | None = None  # each try

    @classmethod
    def of(cls, spec: Obj | None) -> Timeouts:
        spec = spec or {}
        request = _duration(spec.get("request"), "timeouts.request")
        backend = _duration(spec.get("backendRequest"), "timeouts.backendRequest")
        if request is not None and backend is not None and backend > request:
            raise RouteError("UnsupportedValue", "timeouts.backendRequest must not be "
                                                 "longer than timeouts.request")
        return cls(request, backend)


def _duration(text: str | None, what: str) -> float | None:
    """Seconds; None for no limit (unset, or "0s" as the specification says)."""
    if text is None:
        return None
    try:
        seconds = durations.parse(text)
    except durations.DurationError as e:
        raise RouteError("UnsupportedValue", f"{what}: {e}") from None
    return seconds or None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # retries after the first try
    codes: frozenset[int]
    backoff: float  # the least wait before a retry

    @classmethod
    def of(cls, spec: Obj | None) -> RetryPolicy | None:
        if spec is None:
            return None
        codes = frozenset(int(c) for c in spec.get("codes") or ())
        if bad := sorted(c for c in codes if c not in RETRIABLE):
            raise RouteError("UnsupportedValue", f"retry.codes: {bad} are not 400-599")
        backoff = _duration(spec.get("backoff"), "retry.backoff")
        return cls(attempts=int(spec.get("attempts", DEFAULT_ATTEMPTS)), codes=codes,
                   backoff=DEFAULT_BACKOFF if backoff is None else backoff)

    def wait(self, retry: int) -> float:
        """Before retry number ``retry`` (1, 2, ...): the backoff doubling, capped."""
        return float(min(self.backoff * 2 ** (retry - 1), self.backoff * BACKOFF_CAP))


@dataclass(frozen=True)
class Try:
    """One try's end: a status code, or the error that stood for one."""
    code: int | None = None
    error: str | None = None  # "connect", "reset", "timeout"


@dataclass
class Outcome:
    tries: list[Try] = field(default_factory=list)
    timed_out: bool = False  # the request timeout ran out first

    def status(self) -> int:
        """What the proxy answers: the last try's code; 504 for a timeout
        (the request's or the last try's own); 503 when the backend could
        not be reached."""
        last = self.tries[-1] if self.tries else None
        if self.timed_out or last is None or last.error == "timeout":
            return 504
        return last.code if last.code is not None else 503


Attempt = Callable[[float | None], Awaitable[Try]]


async def exchange(attempt: Attempt, retry: RetryPolicy | None, timeouts: Timeouts, *,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Outcome:
    """Tries ``attempt`` until it answers with a code not to retry, the
    retries run out, or the request timeout passes. Each try is given the
    seconds it may take (the backend request timeout, or what is left of
    the request's, None for no limit) and must end by then, with a
    ``timeout`` error if need be. Connection errors and timed-out tries are
    retried whenever a retry policy is set, as the specification asks."""
    outcome = Outcome()
    deadline = None if timeouts.request is None else clock() + timeouts.request

    def left() -> float | None:
        return None if deadline is None else deadline - clock()

    tries = 1 + (retry.attempts if retry else 0)
    for n in range(tries):
        if n:
            assert retry is not None
            pause, remaining = retry.wait(n), left()
            if remaining is not None and pause >= remaining:
                outcome.timed_out = True
                return outcome
            await sleep(pause)
        limits = [x for x in (timeouts.backend_request, left()) if x is not None]
        got = await attempt(min(limits) if limits else None)
        outcome.tries.append(got)
        if retry is None or not _retriable(got, retry):
            return outcome
        remaining = left()
        if remaining is not None and remaining <= 0:
            outcome.timed_out = True
            return outcome
    return outcome


def _retriable(got: Try, retry: RetryPolicy) -> bool:
    return got.error is not None or (got.code is not None and got.code in retry.codes)


@dataclass
class Endpoint:
    address: str
    in_flight: int = 0
    failures: int = 0  # consecutive 5xx answers or connection errors
    ejections: int = 0
    ejected_until: float = 0.0


@dataclass
class Balancer:
    """Per-request choice among a backend's ready endpoints, skipping the
    ejected ones. An endpoint is ejected after ``consecutive`` failures for
    ``base_ejection`` seconds times how often it has been ejected; at most
    ``max_ejected`` of them at once (a share, at least one left in), so a
    wholly failing backend still gets tried."""
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    consecutive: int = 5
    base_ejection: float = 30.0
    max_ejected: float = 0.5
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    # Circuit breaking (Envoy's max_requests): at most this many requests in
    # flight to the backend at once; more are answered 503 at once. None: no limit.
    max_requests: int | None = None

    def full(self) -> bool:
        """Whether the backend's circuit is open: a request now would overflow it."""
        return self.max_requests is not None and \
            sum(e.in_flight for e in self.endpoints.values()) >= self.max_requests

    def update(self, addresses: Sequence[str]) -> None:
        """The ready endpoints now; what is known of those that stay is kept."""
        self.endpoints = {a: self.endpoints.get(a) or Endpoint(a) for a in addresses}

    def healthy(self) -> list[Endpoint]:
        now = self.clock()
        return [e for e in self.endpoints.values() if e.ejected_until <= now]

    def choose(self) -> Endpoint | None:
        """Two at random, the one with fewer requests in flight; None when
        there are no endpoints (the proxy answers 503)."""
        pool = self.healthy() or list(self.endpoints.values())
        if not pool:
            return None
        if len(pool) == 1:
            return pool[0]
        a, b = self.rng.sample(pool, 2)
        return a if a.in_flight <= b.in_flight else b

    def report(self, endpoint: Endpoint, got: Try) -> None:
        """After a try: 5xx answers and connection errors count towards ejection."""
        failed = got.error is not None or (got.code is not None and got.code >= 500)
        if not failed:
            endpoint.failures = 0
            return
        endpoint.failures += 1
        if endpoint.failures < self.consecutive or endpoint.address not in self.endpoints:
            return
        now = self.clock()
        ejected = sum(1 for e in self.endpoints.values() if e.ejected_until > now)
        if ejected + 1 > max(1, int(len(self.endpoints) * self.max_ejected)) \
                or ejected + 1 >= len(self.endpoints):
            return
        endpoint.ejections += 1
        endpoint.ejected_until = now + self.base_ejection * endpoint.ejections
        endpoint.failures = 0
