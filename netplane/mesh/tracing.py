"""W3C Trace Context as the node proxy takes part in it: each request's
hop is a span. A request that comes with a valid ``traceparent`` continues
its trace (the caller's span is the hop's parent; ``tracestate`` goes on
untouched); one without, or with an invalid one, starts a trace, sampled,
and loses its ``tracestate`` (the specification's processing model). The
request goes upstream with a ``traceparent`` naming the hop's span; each
try sent to an endpoint is a child span of the hop.

Spans are kept in a ring of the last few thousand, looked up by trace id
(``netplane trace`` shows what the proxy decided for a request). They are
recorded whatever the sampled flag says: the ring is the node's own
memory, not a collector, and the flag is passed on as it came."""

from __future__ import annotations

import random
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

VERSION = "00"
SAMPLED = 0x01  # the only flag of version 00; others are sent as 0
HEADER = "traceparent"
STATE_HEADER = "tracestate"
SPANS = 4096  # the ring: a hop and a try each, some 2,000 requests
# version, trace-id, parent-id, flags in lower-case hex ("HEXDIGLC"), and
# what a later version may add after them
_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.S)
_OWS = " \t"

Attribute = str | int
Headers = list[tuple[str, str]]


class TraceParent(NamedTuple):
    trace_id: str  # 32 lower-case hex digits, not all zero
    parent_id: str  # 16 lower-case hex digits, not all zero: the caller's span
    flags: int = SAMPLED

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def __str__(self) -> str:
        return f"{VERSION}-{self.trace_id}-{self.parent_id}-{self.flags:02x}"


def rfc3339(seconds: float) -> str:
    """A wall-clock time as RFC 3339 in UTC, to the millisecond."""
    ms = int(seconds * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse(value: str) -> TraceParent | None:
    """A ``traceparent`` header's value, or None when it is not valid.
    Surrounding spaces and tabs are ignored. A later version (not ``ff``,
    which is forbidden) is read as version 00 is, as the specification
    asks, when what follows its flags starts with ``-``; version 00 has
    nothing after them. Flags other than sampled are dropped."""
    m = _FORMAT.fullmatch(value.strip(_OWS))
    if m is None:
        return None
    version, trace_id, parent_id, flags, more = m.groups()
    if version == "ff" or (version == VERSION and more is not None):
        return None
    if not trace_id.strip("0") or not parent_id.strip("0"):
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16) & SAMPLED)


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for the span that started the trace
    name: str
    start: float  # seconds since the epoch
    duration: float  # seconds
    attributes: dict[str, Attribute] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"traceId": self.trace_id, "spanId": self.span_id,
                "parentSpanId": self.parent_id, "name": self.name,
                "startTime": rfc3339(self.start), "durationMs": round(self.duration * 1000, 3),
                "attributes": dict(self.attributes)}


@dataclass(slots=True)
class Hop:
    """One request's part of its trace, while the proxy handles it."""
    trace_id: str
    span_id: str
    parent_id: str  # the caller's span; "" when the trace starts here
    flags: int
    started: float  # monotonic clock, at the request's arrival
    # Each try sent upstream: (began, ended) on the monotonic clock, attributes.
    tries: list[tuple[float, float, dict[str, Attribute]]] = field(default_factory=list)

    @property
    def continued(self) -> bool:
        return bool(self.parent_id)

    def traceparent(self) -> str:
        return f"{VERSION}-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def outgoing(self, headers: Iterable[tuple[str, str]]) -> Headers:
        """``headers`` as they go upstream: this hop's ``traceparent`` in
        place of the caller's, and ``tracestate`` only with a trace that
        came in (one without a valid parent is discarded)."""
        drop = (HEADER,) if self.continued else (HEADER, STATE_HEADER)
        out = [(k, v) for k, v in headers if k.lower() not in drop]
        out.append((HEADER, self.traceparent()))
        return out

    def tried(self, began: float, ended: float, attributes: dict[str, Attribute]) -> None:
        self.tries.append((began, ended, attributes))


class Spans:
    """The last ``capacity`` spans. Appends are cheap and lookups, rare,
    read the whole ring; reads copy it in one step, so they are safe from
    another thread."""

    def __init__(self, capacity: int = SPANS) -> None:
        self._ring: deque[Span] = deque(maxlen=capacity)

    def add(self, span: Span) -> None:
        self._ring.append(span)

    def trace(self, trace_id: str) -> list[Span]:
        """The spans of one trace that this proxy recorded, oldest first."""
        want = trace_id.strip().lower()
        return sorted((s for s in list(self._ring) if s.trace_id == want),
                      key=lambda s: s.start)

    def recent(self, limit: int) -> list[Span]:
        """The last ``limit`` spans, oldest first."""
        return list(self._ring)[-limit:] if limit > 0 else []

    def __len__(self) -> int:
        return len(self._ring)


class Tracer:
    """Starts or continues each request's trace and records its spans.
    ``rng`` draws ids (its own, so that tracing takes nothing from the
    seeded choices of the balancers)."""

    def __init__(self, *, capacity: int = SPANS, rng: random.Random | None = None) -> None:
        self.spans = Spans(capacity)
        self.rng = rng or random.Random()

    def _trace_id(self) -> str:
        return "%032x" % (self.rng.getrandbits(128) or 1)  # all zero is not an id

    def _span_id(self) -> str:
        return "%016x" % (self.rng.getrandbits(64) or 1)

    def begin(self, traceparent: str | None, started: float | None = None) -> Hop:
        """The hop of a request whose ``traceparent`` header (repeated
        ones joined by commas, which makes them invalid) is given."""
        parent = parse(traceparent) if traceparent else None
        when = time.monotonic() if started is None else started
        if parent is None:
            return Hop(self._trace_id(), self._span_id(), "", SAMPLED, when)
        return Hop(parent.trace_id, self._span_id(), parent.parent_id, parent.flags, when)

    def finish(self, hop: Hop, *, name: str, start: float, duration: float,
               attributes: dict[str, Attribute]) -> Span:
        """Records the hop's span (``start`` on the wall clock) and a child
        span for each of its tries."""
        span = Span(hop.trace_id, hop.span_id, hop.parent_id, name, start, duration, attributes)
        self.spans.add(span)
        for n, (began, ended, attrs) in enumerate(hop.tries, 1):
            self.spans.add(Span(hop.trace_id, self._span_id(), hop.span_id, f"try {n}",
                                start + (began - hop.started), ended - began,
                                {"try": n, **attrs}))
        return span

    def trace(self, trace_id: str) -> list[Span]:
        return self.spans.trace(trace_id)
