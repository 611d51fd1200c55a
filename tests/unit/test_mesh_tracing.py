"""W3C Trace Context: traceparent values as the specification's examples
and its test suite's cases have them, valid and not; how the proxy's hop
continues or starts a trace, what it sends upstream, and the spans it
keeps."""

from __future__ import annotations

import random

import pytest

from netplane.mesh.tracing import SAMPLED, Hop, Span, Spans, TraceParent, Tracer, parse, rfc3339

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
T = "12345678901234567890123456789012"  # the test suite's ids
P = "1234567890123456"


@pytest.mark.parametrize(("value", "sampled"), [
    (f"00-{TRACE}-{PARENT}-01", True),  # the specification's examples
    (f"00-{TRACE}-{PARENT}-00", False),
])
def test_the_specifications_examples_parse_and_format_back(value: str, sampled: bool) -> None:
    got = parse(value)
    assert got == TraceParent(TRACE, PARENT, SAMPLED if sampled else 0)
    assert got.sampled is sampled and str(got) == value


@pytest.mark.parametrize("value", [
    f" 00-{T}-{P}-01", f"\t00-{T}-{P}-01", f"00-{T}-{P}-01 ", f"\t 00-{T}-{P}-01 \t",
])
def test_spaces_and_tabs_around_the_value_are_ignored(value: str) -> None:
    assert parse(value) == TraceParent(T, P)


@pytest.mark.parametrize("value", [
    f"cc-{T}-{P}-01",
    f"cc-{T}-{P}-01-what-the-future-will-be-like",
])
def test_a_later_version_is_read_as_version_00(value: str) -> None:
    got = parse(value)
    assert got == TraceParent(T, P) and str(got) == f"00-{T}-{P}-01"


def test_flags_other_than_sampled_are_not_passed_on() -> None:
    got = parse(f"00-{T}-{P}-09")
    assert got is not None and got.sampled and str(got).endswith("-01")
    got = parse(f"00-{T}-{P}-fe")
    assert got is not None and not got.sampled and str(got).endswith("-00")


@pytest.mark.parametrize("value", [
    "",
    f"00-{T}-{P}",
    # wrong lengths
    f"0-{T}-{P}-01", f"000-{T}-{P}-01", f"0000-{T}-{P}-01",
    f"00-{T[:-1]}-{P}-01", f"00-{T}3-{P}-01",
    f"00-{T}-{P[:-1]}-01", f"00-{T}-{P}7-01",
    f"00-{T}-{P}-1", f"00-{T}-{P}-001",
    # version 00 has nothing after its flags
    f"00-{T}-{P}-01.", f"00-{T}-{P}-01-what-the-future-will-be-like",
    f"cc-{T}-{P}-01.what-the-future-will-be-like",
    # version ff is forbidden
    f"ff-{T}-{P}-01",
    # upper-case hex is not hex here
    f"00-{TRACE.upper()}-{PARENT}-01", f"00-{TRACE}-{PARENT.upper()}-01",
    f"0A-{T}-{P}-01", f"00-{TRACE}-{PARENT}-0A",
    # all-zero ids
    f"00-{'0' * 32}-{P}-01", f"00-{T}-{'0' * 16}-01",
    # other characters
    f".0-{T}-{P}-01", f"0.-{T}-{P}-01",
    f"00-.{T[1:]}-{P}-01", f"00-{T[:-1]}.-{P}-01",
    f"00-{T}-.{P[1:]}-01", f"00-{T}-{P[:-1]}.-01",
    f"00-{T}-{P}-.0", f"00-{T}-{P}-0.",
    f"00_{T}_{P}_01",
    # two headers joined, as a repeated header reaches the proxy
    f"00-{T}-{P}-01,00-{TRACE}-{PARENT}-01",
])
def test_invalid_values_are_refused(value: str) -> None:
    assert parse(value) is None


def test_rfc3339_in_utc_to_the_millisecond() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1767225600.0456) == "2026-01-01T00:00:00.045Z"


def tracer() -> Tracer:
    return Tracer(rng=random.Random(7))


def test_a_valid_traceparent_is_continued_with_a_span_of_the_proxys_own() -> None:
    hop = tracer().begin(f"00-{TRACE}-{PARENT}-00", started=10.0)
    assert (hop.trace_id, hop.parent_id, hop.flags, hop.continued) == (TRACE, PARENT, 0, True)
    assert len(hop.span_id) == 16 and hop.span_id != PARENT
    assert hop.traceparent() == f"00-{TRACE}-{hop.span_id}-00"  # the sampled flag as it came
    assert parse(hop.traceparent()) is not None


@pytest.mark.parametrize("header", [None, "", f"00-{TRACE.upper()}-{PARENT}-01"])
def test_without_a_valid_traceparent_a_sampled_trace_starts(header: str | None) -> None:
    hop = tracer().begin(header, started=10.0)
    got = parse(hop.traceparent())
    assert got is not None and got.sampled and got.trace_id != TRACE
    assert (hop.parent_id, hop.continued) == ("", False)


def test_upstream_gets_the_hops_traceparent_and_tracestate_only_with_a_trace_that_came_in(
        ) -> None:
    headers = [("Host", "web"), ("TraceParent", f"00-{TRACE}-{PARENT}-01"),
               ("tracestate", "congo=t61rcWkgMzE"), ("x-other", "1")]
    continued = tracer().begin(f"00-{TRACE}-{PARENT}-01", started=0.0)
    assert continued.outgoing(headers) == [
        ("Host", "web"), ("tracestate", "congo=t61rcWkgMzE"), ("x-other", "1"),
        ("traceparent", continued.traceparent())]
    started = tracer().begin(None, started=0.0)
    assert started.outgoing(headers) == [("Host", "web"), ("x-other", "1"),
                                         ("traceparent", started.traceparent())]


def test_the_hop_and_each_try_are_recorded_as_spans_of_the_trace() -> None:
    t = tracer()
    hop = t.begin(f"00-{TRACE}-{PARENT}-01", started=100.0)
    hop.tried(100.001, 100.003, {"endpoint": "10.244.1.5:8080", "error": "connect"})
    hop.tried(100.004, 100.010, {"endpoint": "10.244.2.7:8080", "status": 200})
    other = t.begin(None, started=100.0)
    t.finish(other, name="shop/other rule 0", start=5000.0, duration=0.001, attributes={})
    span = t.finish(hop, name="shop/web rule 0", start=1000.0, duration=0.012,
                    attributes={"route": "shop/web#0", "status": 200})
    first, second, third = t.trace(TRACE)
    assert first is span and (span.parent_id, span.span_id) == (PARENT, hop.span_id)
    assert [s.parent_id for s in (second, third)] == [hop.span_id] * 2
    assert [s.name for s in (second, third)] == ["try 1", "try 2"]
    assert second.start == pytest.approx(1000.001) and second.duration == pytest.approx(0.002)
    assert third.attributes == {"try": 2, "endpoint": "10.244.2.7:8080", "status": 200}
    assert len({s.span_id for s in (first, second, third)}) == 3
    assert t.trace(TRACE.upper()) == [first, second, third]  # as a user may paste it
    assert t.trace("f" * 32) == []
    assert span.to_dict() == {
        "traceId": TRACE, "spanId": hop.span_id, "parentSpanId": PARENT,
        "name": "shop/web rule 0", "startTime": "1970-01-01T00:16:40.000Z",
        "durationMs": 12.0, "attributes": {"route": "shop/web#0", "status": 200}}


def test_the_ring_keeps_the_last_spans() -> None:
    spans = Spans(capacity=3)
    for n in range(5):
        spans.add(Span(f"{n:032x}", f"{n + 1:016x}", "", f"s{n}", float(n), 0.0))
    assert len(spans) == 3 and [s.name for s in spans.recent(10)] == ["s2", "s3", "s4"]
    assert spans.trace(f"{0:032x}") == [] and spans.trace(f"{4:032x}")[0].name == "s4"
    assert [s.name for s in spans.recent(1)] == ["s4"] and spans.recent(0) == []


def test_ids_are_never_all_zero() -> None:
    class Zeros(random.Random):
        def __init__(self) -> None:
            super().__init__(1)
            self.zeros = 2

        def getrandbits(self, k: int) -> int:
            if self.zeros:
                self.zeros -= 1
                return 0
            return super().getrandbits(k)

    hop: Hop = Tracer(rng=Zeros()).begin(None, started=0.0)
    assert hop.trace_id.strip("0") and hop.span_id.strip("0")
    assert len(hop.trace_id) == 32 and len(hop.span_id) == 16
