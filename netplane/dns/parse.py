"""Query names to typed requests: the first step of answering, before any lookup.

A name inside the cluster zone has the Kubernetes shape, read right to left::

    [_port._protocol.] | [endpoint.] service . namespace . (svc|pod) . zone

Parsing only says what the name asks for; whether it exists is the index's
business. Names are compared lower-cased (DNS is case-insensitive).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Kind(enum.Enum):
    """The label right under the zone that says which objects a name refers to."""

    SERVICE = "svc"
    POD = "pod"


class Level(enum.Enum):
    """How deep below the zone a name goes; each level is a distinct question."""

    APEX = enum.auto()  # the zone itself
    KIND = enum.auto()  # svc.<zone> / pod.<zone>: empty non-terminal
    NAMESPACE = enum.auto()  # <ns>.svc.<zone>: empty non-terminal
    NAME = enum.auto()  # <svc>.<ns>.svc.<zone> or <a-b-c-d>.<ns>.pod.<zone>
    ENDPOINT = enum.auto()  # <hostname>.<svc>.<ns>.svc.<zone>
    PORT = enum.auto()  # _<port>._<proto>.<svc>.<ns>.svc.<zone>


class NotInZone(ValueError):
    """The name is not at or below the cluster zone."""


class InvalidName(ValueError):
    """The name is inside the zone but has no Kubernetes meaning (answer NXDOMAIN)."""


@dataclass(frozen=True)
class Request:
    """What a name inside the zone asks for. Empty strings mean "not given".

    For pod names ``name`` is the dashed address label (``10-244-1-5``).
    """

    level: Level
    kind: Kind | None = None
    namespace: str = ""
    name: str = ""
    endpoint: str = ""
    port: str = ""
    protocol: str = ""


def split_name(qname: str) -> tuple[str, ...]:
    """Lower-cased labels of a dotted name; the root (trailing dot) is dropped."""
    text = qname.rstrip(".").lower()
    return tuple(text.split(".")) if text else ()


def parse(qname: str, *, zone: str) -> Request:
    """Parse a dotted query name; see :func:`parse_labels`."""
    return parse_labels(split_name(qname), zone=split_name(zone))


def parse_labels(labels: Sequence[str], *, zone: Sequence[str]) -> Request:
    """Parse lower-cased labels (leftmost first) against the zone's labels.

    Raises NotInZone for names outside the zone, InvalidName for names inside
    it that cannot refer to anything.
    """
    if not _in_zone(labels, zone):
        raise NotInZone(".".join(labels))
    inner = list(labels[: len(labels) - len(zone)])
    if not inner:
        return Request(Level.APEX)
    kind = _kind(inner.pop())
    if not inner:
        return Request(Level.KIND, kind)
    namespace = inner.pop()
    if not inner:
        return Request(Level.NAMESPACE, kind, namespace)
    name = inner.pop()
    return _below_name(inner, kind=kind, namespace=namespace, name=name)


def _in_zone(labels: Sequence[str], zone: Sequence[str]) -> bool:
    if len(labels) < len(zone):
        return False
    return tuple(labels[len(labels) - len(zone):]) == tuple(zone)


def _kind(label: str) -> Kind:
    try:
        return Kind(label)
    except ValueError:
        raise InvalidName(f"{label!r} is neither 'svc' nor 'pod'") from None


def _below_name(rest: list[str], *, kind: Kind, namespace: str, name: str) -> Request:
    # One label left: an endpoint hostname; two: port and protocol (SRV style).
    # As in Kubernetes DNS, the two shapes are told apart only by their length.
    if not rest:
        return Request(Level.NAME, kind, namespace, name)
    if kind is Kind.POD:
        raise InvalidName("pod names have no labels below the address")
    if len(rest) == 1:
        return Request(Level.ENDPOINT, kind, namespace, name, endpoint=rest[0])
    if len(rest) == 2:
        port, protocol = (label.removeprefix("_") for label in rest)
        return Request(Level.PORT, kind, namespace, name, port=port, protocol=protocol)
    raise InvalidName("too many labels below the service name")
