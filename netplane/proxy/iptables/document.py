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
chains' rules, the deletion of the stale chains. ``Streamed`` writes the
same rules in another order, while they are still being rendered.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from netplane.proxy.iptables.chains import CHAIN_PREFIX, FIXED_CHAINS, Table


class Part(enum.Enum):
    """Where in its table an owner's text goes."""

    DECLS = "declarations"  # ``:CHAIN - [0:0]`` for each of its own chains
    SHARED = "shared"  # its lines in chains that many owners write to
    OWN = "own"  # the rules of its own chains


Slot = tuple[Table, Part]
P = TypeVar("P")
K = TypeVar("K")


@dataclass(frozen=True)
class Layout(Generic[P]):
    """How one kind of owner's pieces are read: a getter per slot it writes
    to (text of whole lines, each ending in a newline; "" for none) and per
    table it owns chains in. Getters, not methods, so that joining 10,000
    pieces is a loop in C (``operator.attrgetter``)."""

    texts: Mapping[Slot, Callable[[P], str]]
    chains: Mapping[Table, Callable[[P], Iterable[str]]]

    @classmethod
    def of_fields(cls, texts: Mapping[Slot, str], chains: Mapping[Table, str], *,
                  prefix: str = "") -> Layout[Any]:
        """A layout reading attributes (``prefix`` + name, dotted paths allowed)."""
        return cls({slot: operator.attrgetter(prefix + f) for slot, f in texts.items()},
                   {t: operator.attrgetter(prefix + f) for t, f in chains.items()})

    def text(self, piece: P | None, slot: Slot) -> str:
        get = self.texts.get(slot)
        return "" if piece is None or get is None else get(piece)


class Joined(Protocol):
    """What ``assemble`` reads from each kind of owner."""

    def joined(self, table: Table, part: Part) -> str: ...


class Pieces(Generic[K, P]):
    """Rendered pieces keyed by owner, read in owner order, with each
    slot's text joined over all owners at most once.

    ``layout`` says how a piece is read, ``order`` is the owners' sort key.
    A ``Pieces`` is never changed: ``with_changes`` returns the next one and
    keeps what it can of this one's joined text, so the last applied
    version stays intact for comparison while the next is built."""

    def __init__(self, pieces: Mapping[K, P] | None = None, *, layout: Layout[P],
                 order: Callable[[K], Any]) -> None:
        self._pieces: dict[K, P] = dict(pieces or {})
        self._layout = layout
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
        get = self._layout.texts.get(slot)
        if get is None:
            return ""
        text = self._joined.get(slot)
        if text is None:
            text = self._joined[slot] = "".join(
                map(get, map(self._pieces.__getitem__, self.ordered())))
        return text

    def chains(self, table: Table) -> set[str]:
        """Every chain the owners own in ``table``."""
        get = self._layout.chains.get(table)
        return set() if get is None else {c for p in self._pieces.values() for c in get(p)}

    def owned(self, key: K, table: Table) -> Iterable[str]:
        """The chains one owner owns in ``table`` (none when it is not here)."""
        piece, get = self._pieces.get(key), self._layout.chains.get(table)
        return () if piece is None or get is None else get(piece)

    def with_changes(self, changes: Mapping[K, P | None]) -> Pieces[K, P]:
        """The next version: each owner in ``changes`` replaced, or removed (None)."""
        out: Pieces[K, P] = Pieces(layout=self._layout, order=self._order_key)
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
        text = self._layout.text
        for slot, joined in self._joined.items():
            if all(text(self._pieces.get(k), slot) == text(pieces.get(k), slot)
                   for k in changes):
                out._joined[slot] = joined
        return out


class Listed(Generic[P]):
    """Pieces already in order, joined as given (for one-off documents)."""

    def __init__(self, pieces: Iterable[P], *, layout: Layout[P]) -> None:
        self._pieces = list(pieces)
        self._layout = layout

    def joined(self, table: Table, part: Part) -> str:
        get = self._layout.texts.get((table, part))
        return "" if get is None else "".join(map(get, self._pieces))


def declaration(chain: str) -> str:
    return f":{chain} - [0:0]\n"


def _ours(chains: Iterable[str]) -> list[str]:
    return sorted(c for c in chains if c.startswith(CHAIN_PREFIX))


def _table(t: Table, owners: Sequence[Joined], *, head: Sequence[str], tail: Sequence[str],
           doomed: Sequence[str]) -> list[str]:
    """One table of the document, from ``*table`` to ``COMMIT``."""
    out = [f"*{t}\n", *(declaration(c) for c in FIXED_CHAINS[t])]
    out += [o.joined(t, Part.DECLS) for o in owners]
    out += [declaration(c) for c in doomed]
    out += [line + "\n" for line in head]
    out += [o.joined(t, Part.SHARED) for o in owners]
    out += [line + "\n" for line in tail]
    out += [o.joined(t, Part.OWN) for o in owners]
    out += [f"-X {c}\n" for c in doomed]
    out.append("COMMIT\n")
    return out


def assemble(owners: Sequence[Joined], *, head: Mapping[Table, Sequence[str]],
             tail: Mapping[Table, Sequence[str]],
             stale: Mapping[Table, Iterable[str]] | None = None) -> str:
    """The whole ``iptables-restore --noflush`` document: every chain of ours
    from scratch. ``head`` and ``tail`` are the fixed rules before and after
    the owners' shared lines (without newlines); ``stale`` chains (ours
    only) are flushed and deleted."""
    out: list[str] = []
    for t in Table:
        out += _table(t, owners, head=head.get(t, ()), tail=tail.get(t, ()),
                      doomed=_ours((stale or {}).get(t, ())))
    return "".join(out)


class Streamed:
    """The document ``assemble`` makes, written while the owners of one
    table are still being rendered.

    ``iptables-restore`` parses line by line, and at 10,000 Services its
    parsing costs more than our rendering: fed as each owner is rendered,
    it parses on another CPU instead of after us. The restore takes a
    chain's declaration anywhere in its table, so each owner's chains are
    declared just before their rules; its lines in the shared chains (which
    the fixed chains' declarations at the top emptied) follow once every
    owner is known. The streamed table comes first, the others after it,
    whole (each table commits on its own in any case).

    ``flush`` names the chains that might be left over (the caller cannot
    know which before rendering): they are emptied at the top, and those
    that no owner declared are deleted at the end.
    """

    def __init__(self, write: Callable[[str], None], table: Table, *,
                 head: Mapping[Table, Sequence[str]], tail: Mapping[Table, Sequence[str]],
                 flush: Iterable[str] = ()) -> None:
        self._write, self.table = write, table
        self._head, self._tail = head, tail
        self._flush = _ours(flush)
        write("".join([f"*{table}\n", *(declaration(c) for c in FIXED_CHAINS[table]),
                       *(declaration(c) for c in self._flush),
                       *(line + "\n" for line in head.get(table, ()))]))

    def owner(self, text: str) -> None:
        """One owner's declarations and own chains' rules in the streamed table."""
        if text:
            self._write(text)

    def finish(self, owners: Sequence[Joined], *, rest: str, declared: Callable[[], set[str]],
               stale: Mapping[Table, Iterable[str]] | None = None) -> None:
        """Everything after the streamed owners: ``rest`` is the text (as
        ``owner`` takes it) of the owners that were not streamed,
        ``declared()`` every chain the owners hold in the streamed table, and
        ``stale`` the leftover chains of the other tables."""
        t, head, tail = self.table, self._head, self._tail
        doomed = sorted(set(self._flush) - declared()) if self._flush else []
        out = [rest, *(o.joined(t, Part.SHARED) for o in owners),
               *(line + "\n" for line in tail.get(t, ())), *(f"-X {c}\n" for c in doomed),
               "COMMIT\n"]
        for other in Table:
            if other is not t:
                out += _table(other, owners, head=head.get(other, ()), tail=tail.get(other, ()),
                              doomed=_ours((stale or {}).get(other, ())))
        self._write("".join(out))
