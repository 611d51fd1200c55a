"""Small figures the benchmarks share."""

from __future__ import annotations


def pct(values: list[float], p: float) -> float:
    """The p-th percentile by nearest rank over the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def throughput_samples(start: float, bound: list[float], interval: float = 1.0) -> list[float]:
    """scheduler_perf's throughput samples (behind its SchedulingThroughput):
    a tick every ``interval`` from ``start``; the first tick that sees a pod
    bound sets the baseline; each later tick that sees more adds one sample
    (new pods / time since the last sample); the pods bound after the last
    tick are in none."""
    times = sorted(bound)
    samples: list[float] = []
    last_count, i, tick = 0, 0, start
    last_tick: float | None = None
    while times and tick + interval <= times[-1]:
        tick += interval
        while i < len(times) and times[i] <= tick:
            i += 1
        if i == 0:
            continue
        if last_tick is None:
            last_count, last_tick = i, tick
        elif i > last_count:
            samples.append((i - last_count) / (tick - last_tick))
            last_count, last_tick = i, tick
    return samples
