"""Why a name answers what it answers: for ``netplane dns NAME [TYPE]``.

A pure function over the same index and resolver the server uses, so the
explanation cannot drift from the wire: the rcode, every record with the
object it came from, and for a negative answer the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netplane.dns.index import RecordIndex
from netplane.dns.parse import split_name
from netplane.dns.records import Record, resolve
from netplane.dns.wire import Rcode, RType
from netplane.dns.zone import ZoneConfig


@dataclass(frozen=True)
class Explanation:
    """An answer and its provenance. ``rcode`` is None when the name would go
    upstream, so only the upstream can say."""

    qname: str
    qtype: str
    rcode: Rcode | None
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]
    reason: str

    @property
    def records(self) -> tuple[Record, ...]:
        return (*self.answer, *self.authority, *self.additional)

    def lines(self) -> list[str]:
        """Human-readable lines: status, reason, then records with their sources."""
        status = self.rcode.name if self.rcode is not None else "(decided upstream)"
        out = [f"{self.qname} {self.qtype}: {status}"]
        if self.reason:
            out.append(f"  why: {self.reason}")
        for section, records in (("answer", self.answer), ("authority", self.authority),
                                 ("additional", self.additional)):
            for record in records:
                origin = f"  ; from {record.source}" if record.source is not None else ""
                out.append(f"  {section}: {record}{origin}")
        return out


def qtype_number(qtype: str | int) -> int:
    """A query type given as a name (``A``, ``srv``, ``TYPE65``) or a number."""
    if isinstance(qtype, int):
        return qtype
    text = qtype.strip().upper()
    if text.startswith("TYPE") and text[4:].isdigit():
        return int(text[4:])
    try:
        return int(RType[text])
    except KeyError:
        raise ValueError(f"unknown query type {qtype!r}: use a name such as A, AAAA, SRV, "
                         "PTR, TXT, or TYPEnn") from None


def explain(index: RecordIndex, qname: str, qtype: str | int = "A", *,
            config: ZoneConfig | None = None, upstreams: Sequence[str] = ()) -> Explanation:
    """Explain the answer to ``qname``/``qtype`` from ``index``."""
    config = config or ZoneConfig()
    number = qtype_number(qtype)
    name = qname if qname.endswith(".") else qname + "."
    type_name = RType(number).name if number in RType._value2member_map_ else f"TYPE{number}"
    outcome = resolve(index, split_name(qname), number, config=config)
    if outcome.forward:
        where = (f"would be forwarded to {', '.join(upstreams)}" if upstreams
                 else "refused (no upstream configured)")
        return Explanation(name, type_name, None if upstreams else Rcode.REFUSED, (), (), (),
                           f"{outcome.reason}: {where}")
    return Explanation(name, type_name, outcome.rcode, tuple(outcome.answer),
                       tuple(outcome.authority), tuple(outcome.additional), outcome.reason)
