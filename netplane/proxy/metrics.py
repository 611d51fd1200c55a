"""The proxy's metrics and their Prometheus text rendering (pure, no dependency).

``Histogram`` keeps cumulative bucket counts the way Prometheus expects;
``render`` writes any object with the ``MetricsSource`` attributes (the
Proxier) in the text exposition format, so the agent can serve ``/metrics``
with a plain HTTP handler. Names follow kube-proxy's where one exists.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Protocol

# kube-proxy's sync duration buckets: exponential from 1 ms.
SYNC_BUCKETS: tuple[float, ...] = tuple(0.001 * 2 ** i for i in range(15))
# Network programming latency: from 1 ms to about half an hour.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


@dataclass
class Histogram:
    """Observations sorted into fixed upper bounds (``le``)."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(``le`` label, count of observations at or below it), ending with +Inf."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            out.append((_num(bound), running))
        out.append(("+Inf", self.count))
        return out


class MetricsSource(Protocol):
    """What ``render`` reads (the Proxier has these attributes)."""

    node_name: str
    mode: str
    sync_duration: Histogram
    programming_latency: Histogram
    rule_count: int
    full_syncs: int
    partial_syncs: int
    failed_syncs: int
    last_sync_wall_time: float | None


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf"
    return repr(float(v)) if v != int(v) else str(int(v))


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _histogram(name: str, help_text: str, h: Histogram) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    out += [f'{name}_bucket{{le="{le}"}} {n}' for le, n in h.cumulative()]
    out += [f"{name}_sum {_num(h.total)}", f"{name}_count {h.count}"]
    return out


def _single(name: str, kind: str, help_text: str, value: float,
            labels: dict[str, str] | None = None) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
            f"{name}{_labels(labels or {})} {_num(value)}"]


def render(src: MetricsSource) -> str:
    """The proxy's metrics in the Prometheus text format (version 0.0.4)."""
    lines = [
        *_histogram("netplane_proxy_sync_proxy_rules_duration_seconds",
                    "Time to render and apply the service rules.", src.sync_duration),
        *_histogram("netplane_proxy_network_programming_duration_seconds",
                    "Time from an endpoints change in the API to its rules in the kernel.",
                    src.programming_latency),
        *_single("netplane_proxy_rules", "gauge",
                 "Rules (iptables, nftables) the proxy keeps in the kernel.", src.rule_count,
                 {"mode": src.mode}),
        "# HELP netplane_proxy_sync_proxy_rules_total Syncs by kind.",
        "# TYPE netplane_proxy_sync_proxy_rules_total counter",
        f'netplane_proxy_sync_proxy_rules_total{{kind="full"}} {src.full_syncs}',
        f'netplane_proxy_sync_proxy_rules_total{{kind="partial"}} {src.partial_syncs}',
        *_single("netplane_proxy_sync_proxy_rules_failures_total", "counter",
                 "Syncs that failed to apply.", src.failed_syncs),
        *_single("netplane_proxy_sync_proxy_rules_last_timestamp_seconds", "gauge",
                 "When the last successful sync ended (Unix time).",
                 src.last_sync_wall_time or 0.0),
    ]
    return "\n".join(lines) + "\n"


class PolicySource(Protocol):
    """What ``render_policy`` reads (the PolicyEnforcer has these)."""

    policy_sync_duration: Histogram
    rule_count: int
    failed_syncs: int
    cut_connections: int

    def isolated_pods(self) -> int: ...
    def dropped_packets(self) -> int: ...


def render_policy(src: PolicySource) -> str:
    """Network policy's metrics, in the same format."""
    lines = [
        *_histogram("netplane_policy_sync_duration_seconds",
                    "Time to compute, render and apply the network policy rules.",
                    src.policy_sync_duration),
        *_single("netplane_policy_rules", "gauge",
                 "Network policy rules the node keeps in the kernel.", src.rule_count),
        *_single("netplane_policy_isolated_pods", "gauge",
                 "Pods on this node that some policy isolates.", src.isolated_pods()),
        *_single("netplane_policy_dropped_packets_total", "counter",
                 "Packets that network policy rejected on this node.", src.dropped_packets()),
        *_single("netplane_policy_cut_connections_total", "counter",
                 "Open connections cut because a policy came to deny them.",
                 src.cut_connections),
        *_single("netplane_policy_sync_failures_total", "counter",
                 "Policy syncs that failed to apply.", src.failed_syncs),
    ]
    return "\n".join(lines) + "\n"
