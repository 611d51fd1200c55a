"""The compiled UDP fast path (``_fastpath.c``), when it is built.

``scripts/setup.sh`` compiles it beside this module; without it the server
runs the Python path alone. That path stays the reference: the compiled one
answers only what ``DNSServer._simple`` would answer over UDP, with the very
same bytes, from the answer table's own dicts, and gives every other
datagram back to be handled in Python. Per reader wake-up it costs one
``recvmmsg`` and one ``sendmmsg`` per 64 datagrams, and no Python objects
per answered query but its lookup key.
"""

from __future__ import annotations

from typing import Any

from netplane.dns.metrics import DNSMetrics
from netplane.dns.table import AnswerTable
from netplane.dns.wire import Prebuilt, Rcode, RType

try:
    from netplane.dns._fastpath import Responder

    AVAILABLE = True
except ImportError:  # not built: the Python path serves alone
    AVAILABLE = False

TRANSPORT = "udp"  # the only transport the fast path serves
_QTYPES = tuple(int(t) for t in RType)
_QTYPE_LABELS = (*(t.name for t in RType), "other")  # by the responder's slot
_RCODE_NAMES = {r.value: r.name for r in Rcode}
_RCODE_LABELS = tuple(_RCODE_NAMES.get(code, "other") for code in range(16))


class FastPath:
    """The compiled responder over one answer table, counting into ``metrics``."""

    def __init__(self, table: AnswerTable, metrics: DNSMetrics, *, max_udp_size: int) -> None:
        self.table, self.metrics, self.max_udp_size = table, metrics, max_udp_size
        shared = table.shared()
        self._responder = Responder(
            prebuilt=shared.prebuilt, lazy=shared.lazy, services=shared.services,
            prebuilt_type=Prebuilt, under=shared.services_under,
            negative=None if shared.missing is None else shared.missing.layout(),
            max_udp_size=max_udp_size, qtypes=_QTYPES, buckets=metrics.latency.buckets)

    def serve(self, fd: int, limit: int) -> list[tuple[bytes, Any]]:
        """Answer up to ``limit`` datagrams waiting on the socket; those left
        to Python come back with their senders' addresses."""
        self._sync()
        return self._responder.serve(fd, limit)

    def reply(self, data: bytes) -> bytes | None:
        """What ``serve`` would send for one datagram (None: left to Python);
        not counted."""
        self._sync()
        return self._responder.reply(data)

    def count(self) -> None:
        """Add what was answered since the last call to the request counts
        and the latency histogram."""
        requests, buckets, seconds = self._responder.take()
        if not requests:
            return
        values = self.metrics.requests.values
        for slot, rcode, number in requests:
            labels = (TRANSPORT, _QTYPE_LABELS[slot], _RCODE_LABELS[rcode])
            values[labels] = values.get(labels, 0.0) + number
        latency = self.metrics.latency
        for bucket, number in enumerate(buckets):
            latency.counts[bucket] += number
        latency.sum += seconds
        latency.count += sum(buckets)

    def _sync(self) -> None:
        # As AnswerTable.get does: no reply outlives a change of the index.
        if self.table.version != self.table.index.version:
            self.table.sync()
