"""The zones the server is authoritative for: the cluster zone and the reverse
zones of the service and pod CIDRs, with the settings answers share."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netplane.dns.parse import split_name

DEFAULT_TTL = 5  # as CoreDNS: short, so that changes show quickly
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_POD_CIDR = "10.244.0.0/16"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ReverseZone:
    """A reverse zone: the label-aligned zone covering one configured CIDR.

    A /12 cannot be delegated on a label boundary, so 10.96.0.0/12 gets the
    zone 10.in-addr.arpa; inside it only names that overlap the CIDR itself
    are ours, the rest goes where any other name outside our zones goes.
    """

    labels: tuple[str, ...]
    network: IPNetwork

    @property
    def origin(self) -> str:
        return ".".join(self.labels) + "."


@dataclass(frozen=True)
class ZoneConfig:
    """The zones served and how answers from them look.

    ``ns_address`` is the DNS service IP; when given, ``ns.dns.<zone>`` (the
    apex's NS target) resolves to it and NS answers carry it as glue.
    """

    zone: str = "cluster.local"
    ttl: int = DEFAULT_TTL
    ns_address: str | None = None
    service_cidrs: tuple[str, ...] = (DEFAULT_SERVICE_CIDR,)
    pod_cidrs: tuple[str, ...] = (DEFAULT_POD_CIDR,)
    serial: int = 1  # nothing transfers these zones: the serial is nominal
    labels: tuple[str, ...] = field(init=False)
    networks: tuple[IPNetwork, ...] = field(init=False)
    reverse_zones: tuple[ReverseZone, ...] = field(init=False)

    def __post_init__(self) -> None:
        networks = tuple(ipaddress.ip_network(c, strict=False)
                         for c in (*self.service_cidrs, *self.pod_cidrs))
        object.__setattr__(self, "labels", split_name(self.zone))
        object.__setattr__(self, "networks", networks)
        object.__setattr__(self, "reverse_zones", _reverse_zones(networks))

    @property
    def origin(self) -> str:
        return ".".join(self.labels) + "."

    @property
    def ns_name(self) -> str:
        return "ns.dns." + self.origin

    def in_zone(self, labels: tuple[str, ...]) -> bool:
        return labels[len(labels) - len(self.labels):] == self.labels

    def reverse_zone(self, labels: tuple[str, ...]) -> ReverseZone | None:
        """The reverse zone a name is at or under, if any (the deepest one)."""
        found = [z for z in self.reverse_zones if labels[len(labels) - len(z.labels):] == z.labels]
        return max(found, key=lambda z: len(z.labels), default=None)


def _reverse_zones(networks: tuple[IPNetwork, ...]) -> tuple[ReverseZone, ...]:
    zones: dict[tuple[str, ...], ReverseZone] = {}
    for network in networks:
        bits = 8 if network.version == 4 else 4
        aligned = network.supernet(new_prefix=network.prefixlen // bits * bits)
        labels = reverse_labels(aligned)
        zones.setdefault(labels, ReverseZone(labels, aligned))
    # A zone inside another one is already served by it.
    return tuple(z for z in zones.values()
                 if not any(o is not z and z.labels[len(z.labels) - len(o.labels):] == o.labels
                            for o in zones.values()))


def reverse_labels(network: IPNetwork) -> tuple[str, ...]:
    """Labels of the reverse name of a label-aligned network (or a /32, /128)."""
    full = split_name(network.network_address.reverse_pointer)
    per_label = 8 if network.version == 4 else 4
    keep = network.prefixlen // per_label
    suffix = 2  # in-addr.arpa / ip6.arpa
    return full[len(full) - suffix - keep:]
