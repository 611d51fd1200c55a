"""A tiny Prometheus text-format renderer (exposition format 0.0.4) and the
DNS server's metrics. Counters and histograms only; label values are escaped
and label sets are bounded by the callers (query types outside a known set
are counted as "other", so a flood of odd types cannot grow memory)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                   0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROGRAMMING_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                       30.0, 60.0)


class Counter:
    """A counter family: one value per tuple of label values."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0.0)

    def total(self) -> float:
        return sum(self.values.values())

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} counter"
        if not self.labels and not self.values:
            yield f"{self.name} 0"
        for values, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labels, values)} {_number(value)}"


class Histogram:
    """A histogram without labels: cumulative buckets, sum and count."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def quantile(self, q: float) -> float:
        """An upper bound of the q-quantile: the bound of the bucket it falls in."""
        rank, seen = q * self.count, 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            seen += count
            if seen >= rank and seen:
                return bound
        return 0.0

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} histogram"
        cumulative = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            cumulative += count
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}'
        yield f"{self.name}_sum {_number(self.sum)}"
        yield f"{self.name}_count {self.count}"


Metric = Counter | Histogram


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text of the metrics, ending with a newline."""
    return "".join(line + "\n" for metric in metrics for line in metric.render())


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape_value(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class DNSMetrics:
    """Everything the DNS server counts, in one place for ``render``."""

    def __init__(self, prefix: str = "netplane_dns") -> None:
        p = prefix
        self.requests = Counter(f"{p}_requests_total", "DNS requests answered, by query type "
                                "and response code.", ("transport", "qtype", "rcode"))
        self.latency = Histogram(f"{p}_request_duration_seconds",
                                 "Time from a request's arrival to its reply being ready.",
                                 LATENCY_BUCKETS)
        self.dropped = Counter(f"{p}_dropped_total", "Messages dropped without a reply.",
                               ("reason",))
        self.truncated = Counter(f"{p}_truncated_total", "UDP replies sent truncated (TC).")
        self.tcp_connections = Counter(f"{p}_tcp_connections_total",
                                       "TCP connections, by what became of them.", ("result",))
        self.cache = Counter(f"{p}_forward_cache_total",
                             "Lookups of the forwarding cache, by result.", ("result",))
        self.forwards = Counter(f"{p}_forward_requests_total",
                                "Queries sent upstream, by result.", ("result",))
        self.programming = Histogram(
            f"{p}_programming_duration_seconds",
            "Time from an object's change in the API to the changed answer being served.",
            PROGRAMMING_BUCKETS)
        self.errors = Counter(f"{p}_internal_errors_total",
                              "Queries that hit an unexpected error (answered nothing).")

    def all(self) -> list[Metric]:
        return [self.requests, self.latency, self.dropped, self.truncated, self.tcp_connections,
                self.cache, self.forwards, self.programming, self.errors]

    def render(self) -> str:
        return render(self.all())
