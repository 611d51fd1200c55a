"""iptables mode: the full restore document, assembled from kept pieces.

A full sync writes every chain of ours, yet between two full syncs almost
every owner of rules (a service port, or any other kind of owner added
later) renders the same text again. So each owner's rendered text is kept
(``Pieces``, keyed by owner, never changed in place) and the document is
the fixed rules around, per part of each table, the text of all owners
joined once; a part is joined again only after one of its owners' text
for it changed. Another kind of owner brings its own ``Pieces`` and is
simply one more entry in the ``owners`` that ``assemble`` takes.

Per table the document reads: declarations (fixed chains, each kind of
owner's own chains, the stale chains, which a declaration flushes), the
fixed rules, each kind's lines in shared chains, the fixed rules that must
come after those (nat NP-SERVICES' NodePort catch-all), each kind's own
chains' rules, the deletion of the stale chains.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from netplane.proxy.iptables.chains import CHAIN_PREFIX, FIXED_CHAINS, Table


class Part(enum.Enum):
    """Where in its table an owner's text goes."""

    DECLS = "declarations"  # ``:CHAIN - [0:0]`` for each of its own chains
    SHARED = "shared"  # its lines in chains that many owners write to
    OWN = "own"  # the rules of its own chains


Slot = tuple[Table, Part]


class Piece(Protocol):
    """What one owner contributes: text (whole lines, each ending in a
    newline; "" for nothing) per slot, and the chains it owns."""

    def text(self, table: Table, part: Part) -> str: ...

    def chains(self, table: Table) -> Iterable[str]: ...


class Joined(Protocol):
    """What ``assemble`` reads from each kind of owner."""

    def joined(self, table: Table, part: Part) -> str: ...


K = TypeVar("K")
P = TypeVar("P", bound=Piece)


class Pieces(Generic[K, P]):
    """Rendered pieces keyed by owner, read in owner order, with each
    slot's text joined over all owners at most once.

    ``slots`` are the only places these owners write to; ``order`` is the
    owners' sort key. A ``Pieces`` is never
    changed: ``with_changes`` returns the next one and keeps what it can
    of this one's joined text, so the last applied version stays intact
    for comparison while the next is built."""

    def __init__(self, pieces: Mapping[K, P] | None = None, *, slots: Iterable[Slot],
                 order: Callable[[K], Any]) -> None:
        self._pieces: dict[K, P] = dict(pieces or {})
        self._slots = frozenset(slots)
        self._order_key = order
        self._order: list[K] | None = None
        self._joined: dict[Slot, str] = {}

    def __len__(self) -> int:
        return len(self._pieces)

    def __contains__(self, key: object) -> bool:
        return key in self._pieces

    def __getitem__(self, key: K) -> P:
        return self._pieces[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._pieces)

    def get(self, key: K) -> P | None:
        return self._pieces.get(key)

    def values(self) -> Iterable[P]:
        return self._pieces.values()

    def ordered(self) -> list[K]:
        """The owners in order (sorted once per set of owners)."""
        if self._order is None:
            self._order = sorted(self._pieces, key=self._order_key)
        return self._order

    def joined(self, table: Table, part: Part) -> str:
        slot = (table, part)
        if slot not in self._slots:
            return ""
        text = self._joined.get(slot)
        if text is None:
            pieces = self._pieces
            text = self._joined[slot] = "".join(
                [pieces[k].text(table, part) for k in self.ordered()])
        return text

    def chains(self, table: Table) -> set[str]:
        """Every chain the owners own in ``table``."""
        return {c for p in self._pieces.values() for c in p.chains(table)}

    def with_changes(self, changes: Mapping[K, P | None]) -> Pieces[K, P]:
        """The next version: each owner in ``changes`` replaced, or removed (None)."""
        out: Pieces[K, P] = Pieces(slots=self._slots, order=self._order_key)
        pieces = out._pieces = dict(self._pieces)
        same_owners = True
        for key, piece in changes.items():
            if piece is None:
                same_owners &= pieces.pop(key, None) is None
            else:
                same_owners &= key in pieces
                pieces[key] = piece
        if same_owners:
            out._order = self._order
        elif self._order is not None and all(k in self._pieces for k in changes):
            # Owners only went: the order stays sorted without them.
            out._order = [k for k in self._order if k in pieces]
        # A slot's joined text holds while no changed owner's text for it differs.
        for slot, text in self._joined.items():
            if all(_text(self._pieces.get(k), slot) == _text(pieces.get(k), slot)
                   for k in changes):
                out._joined[slot] = text
        return out


def _text(piece: Piece | None, slot: Slot) -> str:
    return "" if piece is None else piece.text(*slot)


class Listed:
    """Pieces already in order, joined as given (for one-off documents)."""

    def __init__(self, pieces: Iterable[Piece]) -> None:
        self._pieces = list(pieces)

    def joined(self, table: Table, part: Part) -> str:
        return "".join([p.text(table, part) for p in self._pieces])


def declaration(chain: str) -> str:
    return f":{chain} - [0:0]\n"


def assemble(owners: Sequence[Joined], *, head: Mapping[Table, Sequence[str]],
             tail: Mapping[Table, Sequence[str]],
             stale: Mapping[Table, Iterable[str]] | None = None) -> str:
    """The whole ``iptables-restore --noflush`` document: every chain of ours
    from scratch. ``head`` and ``tail`` are the fixed rules before and after
    the owners' shared lines (without newlines); ``stale`` chains (ours
    only) are flushed and deleted."""
    out: list[str] = []
    for t in Table:
        doomed = sorted(c for c in (stale or {}).get(t, ()) if c.startswith(CHAIN_PREFIX))
        out.append(f"*{t}\n")
        out += [declaration(c) for c in FIXED_CHAINS[t]]
        out += [o.joined(t, Part.DECLS) for o in owners]
        out += [declaration(c) for c in doomed]
        out += [line + "\n" for line in head.get(t, ())]
        out += [o.joined(t, Part.SHARED) for o in owners]
        out += [line + "\n" for line in tail.get(t, ())]
        out += [o.joined(t, Part.OWN) for o in owners]
        out += [f"-X {c}\n" for c in doomed]
        out.append("COMMIT\n")
    return "".join(out)
