"""Pre-built replies keyed by (lower-cased question name, type, class).

Every name the index defines gets its replies packed ahead of time for the
types clients ask most; the hot path looks the question up and patches the
id and spelling. When the index changes, only the Services and addresses it
reports as changed are rebuilt. Anything else inside our zones (other types,
unknown names, pod names) is built on first use and kept in a bounded cache
that is emptied on every change, since any change may alter such answers.

Names under ``svc.<zone>`` that name no Service (what search lists ask for
most) are NXDOMAIN whatever their type and depth; ``negative`` says so from
the index itself, so such answers need no cache and cannot be stale.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

from netplane.dns.answer import build, encode
from netplane.dns.index import RecordIndex, ServiceView
from netplane.dns.negative import NegativeForm, negative_form
from netplane.dns.parse import Kind, split_name
from netplane.dns.records import Outcome, resolve, soa
from netplane.dns.sources import IPAddress, ServiceType
from netplane.dns.wire import (
    CLASS_IN,
    MAX_LABEL_LENGTH,
    MAX_NAME_LENGTH,
    Prebuilt,
    Query,
    Rcode,
    RType,
    name_to_wire,
)
from netplane.dns.zone import ZoneConfig

DEFAULT_LAZY_ENTRIES = 20_000
ADDRESS_QTYPES = (RType.A, RType.AAAA)
Owner = tuple[str, str] | IPAddress  # a Service (namespace, name) or an address (its PTR)


class SharedTable(NamedTuple):
    """An answer table's lookups, as ``AnswerTable.shared`` gives them out."""

    prebuilt: Mapping[bytes, Prebuilt]
    lazy: Mapping[bytes, Prebuilt]
    services: Mapping[tuple[str, str], object]  # the index's Service views
    services_under: bytes  # svc.<zone> in wire form
    missing: NegativeForm | None  # the NXDOMAIN form under it, if exact there


class AnswerTable:
    """Replies for the names of one index; call ``sync`` after the index changes
    (``lookup`` does so itself when it notices)."""

    def __init__(self, index: RecordIndex, *, config: ZoneConfig, recursion: bool = False,
                 lazy_entries: int = DEFAULT_LAZY_ENTRIES,
                 on_programmed: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.index, self.config, self.recursion = index, config, recursion
        self.lazy_entries = lazy_entries
        self._on_programmed = on_programmed
        self._clock = clock
        # Changed in place, never replaced: the compiled fast path holds them (``shared``).
        self._prebuilt: dict[bytes, Prebuilt] = {}
        self._lazy: OrderedDict[bytes, Prebuilt] = OrderedDict()
        self._owned: dict[Owner, list[bytes]] = {}
        self._services_under = name_to_wire((Kind.SERVICE.value, *config.labels))
        self._missing = _missing_service_form(config, recursion=recursion)
        self.version = -1
        self.sync()

    def __len__(self) -> int:
        return len(self._prebuilt)

    def keys(self) -> Iterator[bytes]:
        """Keys of the pre-built replies."""
        return iter(list(self._prebuilt))

    def shared(self) -> SharedTable:
        """What ``get`` and ``negative`` read, the live objects themselves,
        for a reader outside Python that must see every ``sync``."""
        return SharedTable(self._prebuilt, self._lazy, self.index.views(),
                           self._services_under, self._missing)

    def get(self, key: bytes) -> Prebuilt | None:
        """The reply already built for a question key, if any (nothing is built)."""
        if self.version != self.index.version:
            self.sync()
        return self._prebuilt.get(key) or self._lazy.get(key)

    def negative(self, key: bytes) -> NegativeForm | None:
        """The NXDOMAIN form when the key's name lies under ``svc.<zone>`` at or
        below a Service name that the index does not have, else None.

        Such a name is NXDOMAIN for any type: it parses as a Service name, an
        endpoint or a port below one, or nothing, and all of those need the
        Service. The key's name is checked label by label here, since the
        caller has not parsed it.
        """
        under, form = self._services_under, self._missing
        if form is None or key[-2:] != b"\x00\x01" or key[-4 - len(under):-4] != under:
            return None
        end = len(key) - 4 - len(under)
        pos, last, before = 0, -1, -1
        while pos < end:
            length = key[pos]
            if not 0 < length <= MAX_LABEL_LENGTH:
                return None
            before, last = last, pos
            pos += length + 1
        if pos != end or before < 0 or len(key) - 4 > MAX_NAME_LENGTH:
            return None
        namespace = key[last + 1:end].decode("latin-1")
        name = key[before + 1:last].decode("latin-1")
        return form if self.index.view(namespace, name) is None else None

    def lookup(self, query: Query) -> Prebuilt | None:
        """The reply for the query's question, or None when it is outside our zones."""
        found = self.get(query.key)
        if found is not None:
            return found
        built = build(self.index, query, config=self.config, recursion=self.recursion)
        if built is not None:
            if len(self._lazy) >= self.lazy_entries:
                self._lazy.popitem(last=False)  # oldest first
            self._lazy[query.key] = built
        return built

    def sync(self) -> None:
        """Rebuild what changed in the index since the last sync."""
        if self.version == self.index.version:
            return
        first = self.version < 0
        changes = self.index.take_changes()
        self._lazy.clear()
        services = ({(e.namespace, e.name) for e in self.index.services()} if first
                    else changes.services)
        addresses = set(self.index.addresses()) if first else changes.addresses
        for key in services:
            self._rebuild(key, self._service_names(key))
        for address in addresses:
            self._rebuild(address, self._ptr_names(address))
        self.version = self.index.version
        if self._on_programmed is not None and not first:
            now = self._clock()
            for trigger in changes.triggers:
                self._on_programmed(max(0.0, now - trigger))

    def _rebuild(self, owner: Owner, names: list[tuple[tuple[str, ...], RType]]) -> None:
        for key in self._owned.pop(owner, []):
            self._prebuilt.pop(key, None)
        keys: list[bytes] = []
        for labels, qtype in names:
            outcome = resolve(self.index, labels, qtype, config=self.config)
            if outcome.forward:
                continue
            key = name_to_wire(labels) + int(qtype).to_bytes(2, "big") + CLASS_IN.to_bytes(2, "big")
            self._prebuilt[key] = Prebuilt(self._encode(key, qtype, outcome))
            keys.append(key)
        if keys:
            self._owned[owner] = keys

    def _encode(self, key: bytes, qtype: RType, outcome: Outcome) -> bytes:
        return encode(key[:-4], int(qtype), CLASS_IN, outcome, recursion=self.recursion)

    def _service_names(self, key: tuple[str, str]) -> list[tuple[tuple[str, ...], RType]]:
        view = self.index.view(*key)
        if view is None or not _stable(view, self.config):
            return []
        return [(labels, qtype) for labels, qtypes in service_names(view, self.config)
                for qtype in qtypes]

    def _ptr_names(self, address: IPAddress) -> list[tuple[tuple[str, ...], RType]]:
        if not self.index.ptr(address):
            return []
        return [(split_name(address.reverse_pointer), RType.PTR)]


def service_names(view: ServiceView,
                  config: ZoneConfig) -> list[tuple[tuple[str, ...], tuple[RType, ...]]]:
    """The names a Service defines, each with the query types worth pre-building."""
    entry = view.entry
    base = (entry.name, entry.namespace, "svc", *config.labels)
    if entry.type is ServiceType.EXTERNAL_NAME:
        return [(base, (*ADDRESS_QTYPES, RType.CNAME))]
    names: list[tuple[tuple[str, ...], tuple[RType, ...]]] = [(base, ADDRESS_QTYPES)]
    ports = {(p.name.lower(), p.protocol.lower()) for p in entry.ports if p.name}
    if entry.type is ServiceType.HEADLESS:
        names += [((b.hostname, *base), ADDRESS_QTYPES) for b in view.backends]
        ports = {(p.name.lower(), p.protocol.lower())
                 for b in view.backends if b.in_service for p in b.ports if p.name}
    names += [((f"_{name}", f"_{protocol}", *base), (RType.SRV,)) for name, protocol in ports]
    return names


def _missing_service_form(config: ZoneConfig, *, recursion: bool) -> NegativeForm | None:
    """The NXDOMAIN form for names under ``svc.<zone>``, unless a reverse zone
    holds them (then they are not the cluster zone's to judge) or the form is
    not exact there."""
    labels = (Kind.SERVICE.value, *config.labels)
    if config.reverse_zone(labels) is not None:
        return None
    form = negative_form(soa(config.origin, config), rcode=Rcode.NXDOMAIN, recursion=recursion)
    return form if form is not None and form.covers(labels) else None


def _stable(view: ServiceView, config: ZoneConfig) -> bool:
    """Whether the Service's answers depend on it alone (an ExternalName
    pointing into the zone depends on its target: leave it to the lazy cache)."""
    entry = view.entry
    if entry.type is ServiceType.EXTERNAL_NAME:
        return not config.in_zone(split_name(entry.external_name))
    return True

