"""The throughput samples of ``bench/scheduler.py``, taken as
scheduler_perf's collector takes them."""

from __future__ import annotations

from bench.figures import throughput_samples


def test_the_first_tick_that_sees_a_bound_pod_is_only_the_baseline() -> None:
    # 2,000 pods bound from 2.5 s to 4.5 s: ticks at 3 s (500, the baseline)
    # and 4 s (1,500): one sample; the pods after the last tick count in none.
    bound = [2.5 + i * 0.001 for i in range(2000)]
    assert throughput_samples(0.0, bound) == [1000.0]


def test_a_tick_that_sees_no_new_pod_stretches_the_next_sample() -> None:
    assert throughput_samples(0.0, [0.5, 1.5, 1.6, 3.7, 4.2]) == [2.0, 0.5]


def test_too_short_a_run_has_no_sample() -> None:
    assert throughput_samples(0.0, [0.2, 0.4, 1.3]) == []
    assert throughput_samples(0.0, []) == []
