"""Rankings kept from one pod to the next. kube's filtering walks the nodes
from where the last pod stopped until enough fit, then scores those; at
5,000 nodes that is 500 nodes per pod. For a pod shape whose filters and
scores read only the pod and the node, each node's verdict and weighted
score can instead be kept in a tree over the nodes, judged again only on
the nodes that changed since the last pod of the shape: the window kube
would look at, and the best node in it, are then found in log n steps.

``ChangeFeed`` is how a ranking learns what changed: the scheduler's cache
names every node whose NodeInfo changed, and bumps an epoch when nodes
come or go (a ranking's positions are then stale and it is built again)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar


class Judged(Protocol):
    name: str
    version: tuple[object, int, int]


N = TypeVar("N", bound=Judged)


class ChangeFeed:
    """The names of the nodes that changed, in order; old names are
    dropped in bulk, and a reader that fell that far behind starts over."""

    LIMIT = 1 << 16

    def __init__(self) -> None:
        self.names: list[str] = []
        self.base = 0  # the position of names[0]
        self.epoch = 0

    @property
    def now(self) -> int:
        return self.base + len(self.names)

    def touch(self, name: str) -> None:
        if len(self.names) >= self.LIMIT:
            self.base += len(self.names)
            self.names = []
        self.names.append(name)

    def since(self, pos: int) -> list[str] | None:
        """What changed after ``pos``; None when that was dropped."""
        return None if pos < self.base else self.names[pos - self.base:]


# A node's verdict for the ranking: None when it does not fit, else its
# weighted score and the raw scores of the plugins that normalise over
# the feasible nodes (the ranking holds only while each is one value).
Verdict = tuple[int, tuple[int, ...]] | None


class Ranking(Generic[N]):
    """A segment tree over the nodes, in the snapshot's order (which is by
    name): per subtree, how many fit and the best key, the key ordering by
    score and then by the lower index, as the framework breaks ties."""

    def __init__(self, infos: Sequence[N], epoch: int, normalizing: int) -> None:
        self.infos = list(infos)
        self.index = {info.name: i for i, info in enumerate(self.infos)}
        self.epoch = epoch
        self.pos = -1  # nothing judged yet
        n = len(self.infos)
        self.size = 1 << max(n - 1, 0).bit_length()
        self.count = [0] * (2 * self.size)
        self.best = [-1] * (2 * self.size)
        self.versions: list[object] = [None] * n
        self.raws: list[tuple[int, ...] | None] = [None] * n
        self.values: list[Counter[int]] = [Counter() for _ in range(normalizing)]

    def _set_leaf(self, i: int, verdict: Verdict) -> None:
        old = self.raws[i]
        if old is not None:
            for counter, v in zip(self.values, old, strict=True):
                counter[v] -= 1
                if not counter[v]:
                    del counter[v]
        p = i + self.size
        if verdict is None:
            self.raws[i] = None
            self.count[p], self.best[p] = 0, -1
        else:
            score, raws = verdict
            self.raws[i] = raws
            for counter, v in zip(self.values, raws, strict=True):
                counter[v] += 1
            self.count[p] = 1
            self.best[p] = score * self.size + (self.size - 1 - i)
        self.versions[i] = self.infos[i].version

    def _pull(self, p: int) -> None:
        """Subtree ``p`` from its two children."""
        left, right = self.best[2 * p], self.best[2 * p + 1]
        self.count[p] = self.count[2 * p] + self.count[2 * p + 1]
        self.best[p] = left if left > right else right

    def _fix_up(self, p: int) -> None:
        p >>= 1
        while p:
            self._pull(p)
            p >>= 1

    def sync(self, feed: ChangeFeed, judge: Callable[[N], Verdict]) -> None:
        """Judges the nodes that changed since the last sync (all of them
        the first time, or when the feed dropped what it missed)."""
        changed = feed.since(self.pos) if self.pos >= 0 else None
        if changed is None:
            for i, info in enumerate(self.infos):
                self._set_leaf(i, judge(info))
            for p in range(self.size - 1, 0, -1):
                self._pull(p)
        else:
            for name in changed:
                j = self.index.get(name)
                if j is not None and self.infos[j].version != self.versions[j]:
                    self._set_leaf(j, judge(self.infos[j]))
                    self._fix_up(j + self.size)
        self.pos = feed.now

    @property
    def feasible(self) -> int:
        return self.count[1]

    def uniform(self) -> bool:
        """Whether each normalising plugin scores every feasible node alike
        (it then adds nothing to the ranking)."""
        return all(len(c) <= 1 for c in self.values)

    def _count(self, lo: int, hi: int) -> int:
        out, lo, hi = 0, lo + self.size, hi + self.size
        while lo < hi:
            if lo & 1:
                out += self.count[lo]
                lo += 1
            if hi & 1:
                hi -= 1
                out += self.count[hi]
            lo >>= 1
            hi >>= 1
        return out

    def _max(self, lo: int, hi: int) -> int:
        out, lo, hi = -1, lo + self.size, hi + self.size
        while lo < hi:
            if lo & 1:
                out = max(out, self.best[lo])
                lo += 1
            if hi & 1:
                hi -= 1
                out = max(out, self.best[hi])
            lo >>= 1
            hi >>= 1
        return out

    def _kth(self, rank: int) -> int:
        """The index of the rank-th (from 1) node that fits."""
        p = 1
        while p < self.size:
            p *= 2
            if self.count[p] < rank:
                rank -= self.count[p]
                p += 1
        return p - self.size

    def pick(self, start: int, to_find: int) -> tuple[int, int]:
        """The best node of the window that filtering from ``start`` until
        ``to_find`` nodes fit would look at, and how many nodes that window
        holds. At least one node must fit."""
        n = len(self.infos)
        total = self.count[1]
        if total < to_find:
            key, processed = self.best[1], n
        else:
            rank = self._count(0, start) + to_find
            if rank <= total:
                end = self._kth(rank)
                key, processed = self._max(start, end + 1), end - start + 1
            else:
                end = self._kth(rank - total)
                key = max(self._max(start, n), self._max(0, end + 1))
                processed = n - start + end + 1
        return self.size - 1 - key % self.size, processed
