"""The Prometheus text renderer, and what the DNS server exposes through it."""

from __future__ import annotations

from dnslib import DNSRecord

from netplane.dns.index import RecordIndex
from netplane.dns.metrics import Counter, Histogram, render
from netplane.dns.server import DNSServer, Transport


def test_counters_render_with_escaped_labels() -> None:
    counter = Counter("x_total", "Things.\nCounted.", ("kind",))
    counter.inc('a"b\\c')
    counter.inc("plain", amount=2.5)
    assert render([counter]) == (
        "# HELP x_total Things.\\nCounted.\n"
        "# TYPE x_total counter\n"
        'x_total{kind="a\\"b\\\\c"} 1\n'
        'x_total{kind="plain"} 2.5\n')
    assert render([Counter("y_total", "Nothing yet.")]).endswith("y_total 0\n")


def test_histograms_render_cumulative_buckets() -> None:
    histogram = Histogram("h_seconds", "Durations.", (0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert render([histogram]).splitlines()[2:] == [
        'h_seconds_bucket{le="0.1"} 2',
        'h_seconds_bucket{le="1"} 3',
        'h_seconds_bucket{le="+Inf"} 4',
        "h_seconds_sum 3.65",
        "h_seconds_count 4"]
    assert histogram.quantile(0.5) == 0.1 and histogram.quantile(0.99) == float("inf")


def web(ip: str, trigger: str | None = None) -> tuple[dict[str, object], dict[str, object]]:
    svc = {"kind": "Service", "metadata": {"name": "peers", "namespace": "default"},
           "spec": {"clusterIP": "None"}}
    annotations = {"endpoints.kubernetes.io/last-change-trigger-time": trigger} if trigger else {}
    slc = {"kind": "EndpointSlice", "addressType": "IPv4",
           "metadata": {"name": "peers-a", "namespace": "default", "annotations": annotations,
                        "labels": {"kubernetes.io/service-name": "peers"}},
           "endpoints": [{"addresses": [ip]}]}
    return svc, slc


def test_server_metrics_count_requests_and_programming_latency() -> None:
    index = RecordIndex()
    server = DNSServer(index, address="127.0.0.1")
    svc, slc = web("10.244.1.5", trigger="2000-01-01T00:00:00.5Z")
    index.on_service(None, svc)
    index.on_endpointslice(None, slc)
    server.table.sync()
    for name, qtype in (("peers.default.svc.cluster.local", "A"),
                        ("peers.default.svc.cluster.local", "HINFO"), ("example.com", "A")):
        server.handle(bytes(DNSRecord.question(name, qtype).pack()), Transport.UDP)
    text = server.render_metrics()
    assert 'netplane_dns_requests_total{transport="udp",qtype="A",rcode="NOERROR"} 1' in text
    assert 'netplane_dns_requests_total{transport="udp",qtype="other",rcode="NOERROR"} 1' in text
    assert 'netplane_dns_requests_total{transport="udp",qtype="A",rcode="REFUSED"} 1' in text
    assert "netplane_dns_request_duration_seconds_count 3" in text
    # One change stamped in 2000 (decades ago), one stamped on arrival (just now).
    assert server.metrics.programming.count == 2
    assert 'netplane_dns_programming_duration_seconds_bucket{le="0.1"} 1' in text
    assert 'netplane_dns_programming_duration_seconds_bucket{le="+Inf"} 2' in text
