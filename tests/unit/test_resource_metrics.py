"""/metrics/resource text as the kubelet writes it, from a snapshot made
by hand; the node's figures from /proc text when there are no cgroups."""

from __future__ import annotations

import os

from netplane.node.cgroups import Usage
from netplane.node.resourcemetrics import (
    ContainerSample,
    PodSample,
    Sample,
    Snapshot,
    proc_node_usage,
    render,
)

AT = 1_700_000_000.25
SNAPSHOT = Snapshot(
    node=Sample(Usage(cpu_seconds=12.5, memory_usage=4096, memory_working_set=2048), AT),
    pods=[PodSample("shop", "web-0", Sample(Usage(3.0, 3000, 1024), AT))],
    containers=[ContainerSample("shop", "web-0", "web", Sample(Usage(2.75, 2000, 1000), AT),
                                started_at=1_699_999_000.0)])


def test_render_writes_the_kubelets_families_with_labels_and_timestamps() -> None:
    text = render(SNAPSHOT).decode()
    assert text == """\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the \
container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="web",namespace="shop",pod="web-0"} 2.75 \
1700000000250
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in \
bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="web",namespace="shop",pod="web-0"} 1000.0 \
1700000000250
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in \
seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="web",namespace="shop",pod="web-0"} 1.699999e+09 \
1699999000000
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in \
core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 12.5 1700000000250
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 2048.0 1700000000250
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in \
core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="shop",pod="web-0"} 3.0 1700000000250
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="shop",pod="web-0"} 1024.0 1700000000250
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container \
metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0.0
"""


def test_node_usage_from_proc() -> None:
    hz = os.sysconf("SC_CLK_TCK")
    stat = f"cpu  {hz * 3} 0 {hz} {hz * 100} {hz * 7} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    meminfo = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n"
    usage = proc_node_usage(stat, meminfo)
    assert usage == Usage(cpu_seconds=4.0, memory_usage=600 * 1024,
                          memory_working_set=600 * 1024)
