"""Retries, timeouts, load balancing and outlier ejection on a fake clock:
each try's backend is a script of answers and durations."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import pytest

from netplane.mesh.resilience import (
    Balancer,
    RetryPolicy,
    Timeouts,
    Try,
    exchange,
)
from netplane.mesh.routes import RouteError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


class Backend:
    """Answers from a script of (code or error, seconds it takes); a try
    given less time than it takes ends with a timeout at its limit."""

    def __init__(self, clock: Clock, script: Iterator[tuple[int | str, float]]) -> None:
        self.clock, self.script, self.limits = clock, script, []  # type: list[float | None]

    async def __call__(self, limit: float | None) -> Try:
        self.limits.append(None if limit is None else round(limit, 6))
        answer, took = next(self.script)
        if limit is not None and took > limit:
            self.clock.now += limit
            return Try(error="timeout")
        self.clock.now += took
        return Try(error=answer) if isinstance(answer, str) else Try(code=answer)


async def run(script: list[tuple[int | str, float]], retry: dict[str, object] | None,
              timeouts: dict[str, str] | None = None) -> tuple[int, Backend, Clock]:
    clock = Clock()
    backend = Backend(clock, iter(script))
    outcome = await exchange(backend, RetryPolicy.of(retry), Timeouts.of(timeouts),
                             clock=clock, sleep=clock.sleep)
    return outcome.status(), backend, clock


async def test_retries_hide_failures_with_a_doubling_backoff() -> None:
    code, backend, clock = await run([(503, 0.01), (503, 0.01), (200, 0.01)],
                                     {"attempts": 3, "codes": [503], "backoff": "100ms"})
    assert code == 200 and len(backend.limits) == 3
    assert clock.slept == [0.1, 0.2]


async def test_the_last_answer_stands_when_the_retries_run_out() -> None:
    code, backend, _ = await run([(503, 0.0)] * 10, {"attempts": 9, "codes": [503]})
    assert code == 503 and len(backend.limits) == 10


async def test_only_the_named_codes_are_retried() -> None:
    code, backend, _ = await run([(500, 0.0), (200, 0.0)], {"attempts": 3, "codes": [503]})
    assert code == 500 and len(backend.limits) == 1


async def test_connection_errors_are_retried_once_a_policy_is_set() -> None:
    code, _, _ = await run([("connect", 0.0), (200, 0.0)], {"attempts": 1})
    assert code == 200
    code, _, _ = await run([("connect", 0.0)], None)
    assert code == 503  # no policy: the error is the answer


async def test_the_request_timeout_bounds_the_tries_and_their_pauses() -> None:
    # Each try takes 2 s against a 300 ms try timeout: tries at 0 s, 0.4 s
    # (after 100 ms) and 0.9 s (after 200 ms, with only 100 ms left of 1 s).
    code, backend, clock = await run([(200, 2.0)] * 6,
                                     {"attempts": 5, "codes": [503], "backoff": "100ms"},
                                     {"request": "1s", "backendRequest": "300ms"})
    assert code == 504
    assert backend.limits == [0.3, 0.3, 0.1]
    assert clock.now == pytest.approx(1.0)


async def test_a_slow_backend_is_cut_with_504_without_retries() -> None:
    code, backend, clock = await run([(200, 5.0)], None, {"request": "2s"})
    assert (code, backend.limits, clock.now) == (504, [2.0], 2.0)
    code, backend, _ = await run([(200, 5.0)], None, {"request": "0s"})  # 0s: no limit
    assert (code, backend.limits) == (200, [None])


async def test_no_retry_starts_that_could_not_finish_in_time() -> None:
    code, backend, clock = await run([(503, 0.5), (200, 0.0)],
                                     {"attempts": 2, "codes": [503], "backoff": "600ms"},
                                     {"request": "1s"})
    assert code == 504 and len(backend.limits) == 1 and clock.slept == []


async def test_nine_retries_hide_a_backend_that_fails_half_its_answers() -> None:
    # The e2e figure's arithmetic: all ten tries fail for 1 request in 1,024.
    rng = random.Random(11)
    failed = 0
    for _ in range(1000):
        code, _, _ = await run([(503 if rng.random() < 0.5 else 200, 0.0)
                                for _ in range(10)], {"attempts": 9, "codes": [503]})
        failed += code != 200
    assert failed <= 10


def test_timeouts_and_retries_are_checked() -> None:
    with pytest.raises(RouteError):
        Timeouts.of({"request": "1s", "backendRequest": "2s"})
    with pytest.raises(RouteError):
        Timeouts.of({"request": "1.5s"})
    with pytest.raises(RouteError):
        RetryPolicy.of({"codes": [200]})
    policy = RetryPolicy.of({"attempts": 20, "backoff": "10ms"})
    assert policy is not None
    assert [policy.wait(n) for n in (1, 2, 3, 4, 5, 6)] == pytest.approx(
        [0.01, 0.02, 0.04, 0.08, 0.1, 0.1])  # capped at ten times the backoff


def balancer(n: int, clock: Clock) -> Balancer:
    b = Balancer(clock=clock, rng=random.Random(3))
    b.update([f"10.0.0.{i}" for i in range(1, n + 1)])
    return b


def test_the_fewer_requests_in_flight_the_likelier_an_endpoint_is_chosen() -> None:
    b = balancer(3, Clock())
    b.endpoints["10.0.0.1"].in_flight = 10
    got = Counter(e.address for e in (b.choose() for _ in range(3000)) if e)
    assert got["10.0.0.1"] == 0  # it loses every pair it is drawn in
    assert got["10.0.0.2"] > 1000 and got["10.0.0.3"] > 1000


def test_an_endpoint_failing_five_times_in_a_row_is_ejected_for_a_while() -> None:
    clock = Clock()
    b = balancer(4, clock)
    bad = b.endpoints["10.0.0.1"]
    for _ in range(4):
        b.report(bad, Try(code=503))
    b.report(bad, Try(code=200))  # a success starts the count again
    for _ in range(4):
        b.report(bad, Try(code=503))
    assert bad in b.healthy()
    b.report(bad, Try(error="connect"))
    assert bad not in b.healthy()
    assert all(b.choose() is not bad for _ in range(200))
    clock.now = 30.0
    assert bad in b.healthy()  # back after the base ejection time
    for _ in range(5):
        b.report(bad, Try(code=500))
    clock.now = 89.0
    assert bad not in b.healthy()  # the second time, twice as long
    clock.now = 90.0
    assert bad in b.healthy()


def test_ejection_never_takes_out_more_than_its_share_or_the_last_endpoint() -> None:
    clock = Clock()
    b = balancer(4, clock)
    for e in list(b.endpoints.values()):
        for _ in range(5):
            b.report(e, Try(code=503))
    assert len(b.healthy()) == 2  # half of them at most
    one = balancer(1, clock)
    only = one.endpoints["10.0.0.1"]
    for _ in range(10):
        one.report(only, Try(code=503))
    assert one.choose() is only


def test_endpoints_that_stay_keep_their_record() -> None:
    b = balancer(2, Clock())
    b.endpoints["10.0.0.1"].failures = 3
    b.update(["10.0.0.1", "10.0.0.9"])
    assert b.endpoints["10.0.0.1"].failures == 3 and set(b.endpoints) == {"10.0.0.1",
                                                                          "10.0.0.9"}
    assert Balancer().choose() is None
