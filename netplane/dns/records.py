"""Answers as records: a pure function from (index, name, type) to an outcome.

The name is parsed into a typed request first (``parse``), then looked up
level by level in the read-only index. Every record carries the object it
came from and every negative answer says why, so the same function serves
the wire (through ``encode``) and ``explain``. Inside our zones a name that
exists without records of the asked type is NODATA (NOERROR, SOA in
authority) and an unknown name NXDOMAIN with the SOA; names outside them are
marked for forwarding.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netplane.dns.index import Backend, RecordIndex, ServiceView
from netplane.dns.parse import InvalidName, Kind, Level, Request, parse_labels
from netplane.dns.sources import IPAddress, ServiceEntry, ServicePort, ServiceType, SourceRef
from netplane.dns.wire import Rcode, RType
from netplane.dns.zone import ReverseZone, ZoneConfig

SCHEMA_VERSION = "1.1.0"  # Kubernetes DNS-Based Service Discovery specification
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400
MAX_CNAME_DEPTH = 8
ADDRESS_TYPES = {4: RType.A, 6: RType.AAAA}


@dataclass(frozen=True)
class Record:
    """One resource record; ``str`` gives its zone-file line."""

    name: str
    rtype: RType
    ttl: int
    rdata: tuple[str | int, ...]
    source: SourceRef | None = field(default=None, compare=False)

    def __str__(self) -> str:
        if self.rtype is RType.TXT:
            data = " ".join(f'"{part}"' for part in self.rdata)
        else:
            data = " ".join(str(part) for part in self.rdata)
        return f"{self.name} {self.ttl} IN {self.rtype.name} {data}"


@dataclass
class Outcome:
    """The sections of an answer before they are packed, and why it is so."""

    rcode: Rcode = Rcode.NOERROR
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    reason: str = ""
    forward: bool = False  # outside our zones: not ours to answer
    authoritative: bool = True


def resolve(index: RecordIndex, labels: tuple[str, ...], qtype: int, *,
            config: ZoneConfig, depth: int = 0) -> Outcome:
    """The answer for lower-cased ``labels`` (leftmost first) and a query type."""
    reverse = config.reverse_zone(labels)
    if reverse is not None:
        outcome = _reverse(index, labels, qtype, zone=reverse, config=config)
        apex = reverse.origin
    elif config.in_zone(labels):
        outcome = _forward_zone(index, labels, qtype, config=config, depth=depth)
        apex = config.origin
    else:
        return Outcome(forward=True, authoritative=False, reason="outside the cluster zone")
    negative = outcome.rcode is Rcode.NXDOMAIN or not outcome.answer
    if not outcome.forward and negative and not outcome.authority:
        # NXDOMAIN and NODATA alike carry the SOA: its TTL bounds negative caching.
        outcome.authority.append(soa(apex, config))
    return outcome


def fqdn(labels: tuple[str, ...]) -> str:
    return ".".join(labels) + "."


def soa(origin: str, config: ZoneConfig) -> Record:
    return Record(origin, RType.SOA, config.ttl,
                  (config.ns_name, "hostmaster." + config.origin, config.serial & 0xFFFFFFFF,
                   SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, config.ttl))


def _nodata(reason: str) -> Outcome:
    return Outcome(reason=reason)


def _nxdomain(reason: str) -> Outcome:
    return Outcome(Rcode.NXDOMAIN, reason=reason)


def _forward_zone(index: RecordIndex, labels: tuple[str, ...], qtype: int, *,
                  config: ZoneConfig, depth: int) -> Outcome:
    special = _special_name(labels, qtype, config)
    if special is not None:
        return special
    try:
        request = parse_labels(labels, zone=config.labels)
    except InvalidName as err:
        return _nxdomain(f"not a Kubernetes name: {err}")
    lookup = _Lookup(index, request, qtype, config, fqdn(labels), depth)
    return lookup.run()


def _special_name(labels: tuple[str, ...], qtype: int, config: ZoneConfig) -> Outcome | None:
    """The zone's own names: dns-version, the name server, the apex."""
    inner = labels[:len(labels) - len(config.labels)]
    if inner == ("dns-version",):
        if qtype not in (RType.TXT, RType.ANY):
            return _nodata("dns-version has only a TXT record")
        return Outcome(answer=[Record(fqdn(labels), RType.TXT, config.ttl, (SCHEMA_VERSION,))])
    if inner == ("ns", "dns") and config.ns_address is not None:
        address = ipaddress.ip_address(config.ns_address)
        return Outcome(answer=_address_records(fqdn(labels), [(address, None)], qtype, config.ttl),
                       reason="the zone's name server")
    if not inner:
        return _apex(config.origin, qtype, config)
    return None


def _apex(origin: str, qtype: int, config: ZoneConfig) -> Outcome:
    outcome = Outcome(reason=f"the apex of {origin} has only SOA and NS records")
    if qtype in (RType.SOA, RType.ANY):
        outcome.answer.append(soa(origin, config))
    if qtype in (RType.NS, RType.ANY):
        outcome.answer.append(Record(origin, RType.NS, config.ttl, (config.ns_name,)))
        if config.ns_address is not None:
            address = ipaddress.ip_address(config.ns_address)
            outcome.additional += _address_records(config.ns_name, [(address, None)], RType.ANY,
                                                   config.ttl)
    return outcome


def _address_records(name: str, found: Sequence[tuple[IPAddress, SourceRef | None]], qtype: int,
                     ttl: int) -> list[Record]:
    """A/AAAA records of the addresses that match the query type."""
    records: list[Record] = []
    for address, source in found:
        rtype = ADDRESS_TYPES[address.version]
        if qtype in (rtype, RType.ANY):
            records.append(Record(name, rtype, ttl, (str(address),), source))
    return records


def _of(backends: list[Backend]) -> list[tuple[IPAddress, SourceRef | None]]:
    return [(b.address, b.source) for b in backends]


class _Lookup:
    """One request inside the cluster zone, answered level by level."""

    def __init__(self, index: RecordIndex, request: Request, qtype: int, config: ZoneConfig,
                 qname: str, depth: int) -> None:
        self.index, self.request, self.qtype = index, request, qtype
        self.config, self.qname, self.depth = config, qname, depth

    def run(self) -> Outcome:
        request = self.request
        if request.level is Level.KIND:
            return _nodata(f"{self.qname} is an empty non-terminal")
        if request.level is Level.NAMESPACE:
            if self.index.has_namespace(request.namespace):
                return _nodata(f"namespace {request.namespace!r} has services but no records "
                               "of its own")
            return _nxdomain(f"no service in namespace {request.namespace!r}")
        if request.kind is Kind.POD:
            return self._pod()
        view = self.index.view(request.namespace, request.name)
        if view is None:
            empty = "" if self.index.has_namespace(request.namespace) else \
                " (the namespace has no services)"
            return _nxdomain(f"no service {request.name!r} in namespace "
                             f"{request.namespace!r}{empty}")
        handlers: dict[Level, Callable[[ServiceView], Outcome]] = {
            Level.NAME: self._service, Level.ENDPOINT: self._endpoint, Level.PORT: self._srv}
        return handlers[request.level](view)

    def _pod(self) -> Outcome:
        address = _undash(self.request.name)
        if address is None:
            return _nxdomain(f"{self.request.name!r} is not a dashed IP address")
        records = _address_records(self.qname, [(address, None)], self.qtype, self.config.ttl)
        return Outcome(answer=records, reason=f"pod name for {address}; no other record types")

    def _service(self, view: ServiceView) -> Outcome:
        entry = view.entry
        if entry.type is ServiceType.EXTERNAL_NAME:
            return self._cname(entry)
        if entry.type is ServiceType.CLUSTER_IP:
            found = [(ip, entry.source) for ip in entry.cluster_ips]
            records = _address_records(self.qname, found, self.qtype, self.config.ttl)
            return Outcome(answer=records, reason=_families(entry.cluster_ips, "cluster IPs"))
        backends = [b for b in view.backends if b.in_service]
        if not backends:
            return _nxdomain(_no_backends(view))
        records = _address_records(self.qname, _of(backends), self.qtype, self.config.ttl)
        return Outcome(answer=records,
                       reason=_families([b.address for b in backends], "ready endpoints"))

    def _cname(self, entry: ServiceEntry) -> Outcome:
        target = entry.external_name
        record = Record(self.qname, RType.CNAME, self.config.ttl, (target,), entry.source)
        outcome = Outcome(answer=[record], reason=f"ExternalName service: alias of {target}")
        target_labels = tuple(target.rstrip(".").split("."))
        if (self.qtype == RType.CNAME or not self.config.in_zone(target_labels)
                or self.depth >= MAX_CNAME_DEPTH):
            return outcome
        # Inside the cluster zone the target is ours to resolve: chase it.
        chased = resolve(self.index, target_labels, self.qtype, config=self.config,
                         depth=self.depth + 1)
        outcome.rcode = chased.rcode
        outcome.answer += chased.answer
        outcome.authority += chased.authority
        outcome.additional += chased.additional
        outcome.reason = f"{outcome.reason}; {chased.reason}" if chased.reason else outcome.reason
        return outcome

    def _endpoint(self, view: ServiceView) -> Outcome:
        label = self.request.endpoint
        if label.startswith("_"):
            return self._protocol_node(view, label[1:])
        if view.entry.type is not ServiceType.HEADLESS:
            return _nxdomain("endpoint names exist only for headless services")
        backends = [b for b in view.backends if b.hostname == label]
        if not backends:
            return _nxdomain(f"no ready endpoint with hostname {label!r} in "
                             f"{view.entry.namespace}/{view.entry.name}")
        records = _address_records(self.qname, _of(backends), self.qtype, self.config.ttl)
        return Outcome(answer=records, reason=_families([b.address for b in backends],
                                                        "endpoint addresses"))

    def _protocol_node(self, view: ServiceView, protocol: str) -> Outcome:
        """``_tcp.<svc>...``: exists (empty) when some SRV name lies under it."""
        if any(p.protocol.lower() == protocol for p, _ in _srv_ports(view)):
            return _nodata(f"{self.qname} is an empty non-terminal above SRV names")
        return _nxdomain(f"no named {protocol} port on {view.entry.namespace}/{view.entry.name}")

    def _srv(self, view: ServiceView) -> Outcome:
        port, protocol = self.request.port, self.request.protocol
        matches = [(p, b) for p, b in _srv_ports(view)
                   if p.name.lower() == port and p.protocol.lower() == protocol]
        if not matches:
            return _nxdomain(_no_port(view, port, protocol))
        if self.qtype not in (RType.SRV, RType.ANY):
            return _nodata("SRV names have only SRV records")
        outcome = Outcome()
        weight = max(1, 100 // len(matches))
        for service_port, backend in matches:
            target, source, addresses = self._srv_target(view, backend)
            outcome.answer.append(Record(self.qname, RType.SRV, self.config.ttl,
                                         (0, weight, service_port.port, target), source))
            outcome.additional += _address_records(target, [(a, source) for a in addresses],
                                                   RType.ANY, self.config.ttl)
        return outcome

    def _srv_target(self, view: ServiceView,
                    backend: Backend | None) -> tuple[str, SourceRef, list[IPAddress]]:
        entry = view.entry
        service_name = fqdn((entry.name, entry.namespace, "svc", *self.config.labels))
        if backend is None:
            return service_name, entry.source, list(entry.cluster_ips)
        return f"{backend.hostname}.{service_name}", backend.source, [backend.address]


def _srv_ports(view: ServiceView) -> list[tuple[ServicePort, Backend | None]]:
    """Named ports with the backend they lead to (None: the Service's own name)."""
    entry = view.entry
    if entry.type is ServiceType.CLUSTER_IP:
        return [(p, None) for p in entry.ports if p.name]
    if entry.type is ServiceType.HEADLESS:
        return [(p, b) for b in view.backends if b.in_service for p in b.ports if p.name]
    return []


def _reverse(index: RecordIndex, labels: tuple[str, ...], qtype: int, *, zone: ReverseZone,
             config: ZoneConfig) -> Outcome:
    if labels == zone.labels:
        return _apex(zone.origin, qtype, config)
    bits = 8 if zone.network.version == 4 else 4
    parts = _reverse_parts(labels[:len(labels) - 2], zone.network.version)
    if parts is None:
        return _nxdomain("not a well-formed reverse name")
    network = _reverse_network(parts, bits, zone.network.version)
    if network is None:
        return _nxdomain("not a well-formed reverse name")
    if not any(network.overlaps(n) for n in config.networks if n.version == network.version):
        return Outcome(forward=True, authoritative=False,
                       reason="outside the service and pod CIDRs")
    if network.num_addresses > 1:
        return _nodata(f"{fqdn(labels)} is an empty non-terminal")
    address = network.network_address
    targets = index.ptr(address)
    if not targets:
        return _nxdomain(f"no service or named endpoint has the address {address}")
    if qtype not in (RType.PTR, RType.ANY):
        return _nodata("reverse names have only PTR records")
    name = fqdn(labels)
    return Outcome(answer=[Record(name, RType.PTR, config.ttl, (fqdn((*t.labels, *config.labels)),),
                                  t.source) for t in targets])


def _reverse_parts(parts: tuple[str, ...], version: int) -> list[int] | None:
    """The address's octets (v4) or nibbles (v6), most significant first."""
    limit, base, top = (4, 10, 255) if version == 4 else (32, 16, 15)
    if len(parts) > limit:
        return None
    values: list[int] = []
    for part in reversed(parts):
        if not (part.isascii() and part.isalnum()):
            return None
        try:
            value = int(part, base)
        except ValueError:
            return None
        canonical = str(value) if base == 10 else format(value, "x")
        if value > top or part != canonical:
            return None
        values.append(value)
    return values


def _reverse_network(values: list[int], bits: int,
                     version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    total = 32 if version == 4 else 128
    number = 0
    for value in values:
        number = (number << bits) | value
    prefix = len(values) * bits
    number <<= total - prefix
    try:
        return ipaddress.ip_network((number, prefix))
    except ValueError:
        return None


def _undash(label: str) -> IPAddress | None:
    text = label.replace("-", ".") if label.count("-") == 3 else label.replace("-", ":")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _families(addresses: tuple[IPAddress, ...] | list[IPAddress], what: str) -> str:
    versions = sorted({a.version for a in addresses})
    kinds = " and ".join(ADDRESS_TYPES[v].name for v in versions)
    return f"{what} give only {kinds} records" if kinds else f"no {what}"


def _no_backends(view: ServiceView) -> str:
    if view.endpoint_count:
        return (f"headless service has no ready endpoints ({view.endpoint_count} not ready, "
                "publishNotReadyAddresses is false)")
    return "headless service has no ready endpoints"


def _no_port(view: ServiceView, port: str, protocol: str) -> str:
    entry = view.entry
    where = f"{entry.namespace}/{entry.name}"
    if entry.type is ServiceType.EXTERNAL_NAME:
        return f"{where} is an ExternalName service: it has no ports"
    return f"no named port {port!r} with protocol {protocol!r} on {where}"

