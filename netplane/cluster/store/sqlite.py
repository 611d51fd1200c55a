"""The embedded store: SQLite in WAL mode with durable commits.

Every write is one transaction that bumps the global revision and appends an
event row; watches replay event rows after their start revision and then
follow live events. Writes and the hand-over from replay to live happen on
the event loop's thread without an ``await`` between them, so no event falls
between a list and the watch started from its revision.

Durability is a group commit: a COMMIT writes the WAL (``synchronous=NORMAL``:
no fsync, a kill -9 loses nothing written), and one fsync of the WAL, in a
worker thread, covers every commit made while the previous one ran (when
fsyncs are quick, under a millisecond, each commit is fsynced at once). A writer
is acknowledged only after :meth:`SQLiteStore.durable` returns, so nothing
acknowledged is lost to a power cut either, and watches get an event only
once it is on disk, just after its writer's acknowledgement. Without a
running event loop (tools, start-up) each commit is fsynced at once, as
``synchronous=FULL``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from netplane.cluster.store.base import (
    AlreadyExists,
    Compacted,
    Conflict,
    Event,
    EventType,
    KeyValue,
    NotFound,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    rev INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    prev TEXT,
    create_rev INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# How many past events a watch can start from; older starts get Compacted.
HISTORY = 20000
# An fsync that took less than this (seconds) last time is done on the loop,
# once at the end of the loop's turn for every commit made in it: cheaper
# than a hop to a worker thread; slower disks get the worker's group commit.
INLINE_FSYNC = 0.001


class _Watcher:
    def __init__(self, prefix: str, seen: int) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.seen = seen  # the last revision it was given (replay included)


class SQLiteStore:
    def __init__(self, path: Path | str, *, history: int = HISTORY) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # fsync: ours, batched (_flush)
        self._db.executescript(SCHEMA)
        self._wal = f"{path}-wal"
        self._history = history
        self._watchers: set[_Watcher] = set()
        self._pending: Event | None = None
        self._outbox: builtins.list[Event] = []  # committed, handed out once on disk
        row = self._db.execute("SELECT value FROM meta WHERE name='revision'").fetchone()
        self._rev = int(row[0]) if row else 0
        self._fsync()  # what a killed process left in the WAL
        self._synced = self._rev  # every revision up to this one is on disk
        self._flushing = False  # an fsync is running in a worker thread
        self._fsync_seconds = 0.0  # how long the last one took
        self._inline = False  # an fsync in the loop is due at the end of this turn
        self._closed = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        row = self._db.execute("SELECT value FROM meta WHERE name='compacted'").fetchone()
        self._compacted = int(row[0]) if row else 0

    @property
    def revision(self) -> int:
        return self._rev

    def get(self, key: str) -> KeyValue | None:
        row = self._db.execute(
            "SELECT key, value, create_rev, mod_rev FROM kv WHERE key=?", (key,)).fetchone()
        return _kv(row) if row else None

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        rows = self._db.execute(
            "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? AND key < ? "
            "ORDER BY key", (prefix, prefix + "\uffff")).fetchall()
        return [_kv(r) for r in rows], self._rev

    def create(self, key: str, value: dict[str, Any]) -> KeyValue:
        with self._txn():
            if self._exists(key):
                raise AlreadyExists(key)
            rev = self._bump()
            text = json.dumps(value)
            self._db.execute("INSERT INTO kv VALUES (?,?,?,?)", (key, text, rev, rev))
            kv = KeyValue(key, value, rev, rev)
            self._record(Event(EventType.ADDED, kv, None), text, None)
        self._notify()
        return kv

    def update(self, key: str, value: dict[str, Any], *,
               expected_revision: int | None) -> KeyValue:
        with self._txn():
            cur, prev = self._current(key, expected_revision)
            rev = self._bump()
            text = json.dumps(value)
            self._db.execute("UPDATE kv SET value=?, mod_rev=? WHERE key=?", (text, rev, key))
            kv = KeyValue(key, value, cur.create_revision, rev)
            self._record(Event(EventType.MODIFIED, kv, cur.value), text, prev)
        self._notify()
        return kv

    def delete(self, key: str, *, expected_revision: int | None = None) -> KeyValue:
        with self._txn():
            cur, prev = self._current(key, expected_revision)
            rev = self._bump()
            self._db.execute("DELETE FROM kv WHERE key=?", (key,))
            kv = KeyValue(key, cur.value, cur.create_revision, rev)
            self._record(Event(EventType.DELETED, kv, cur.value), prev, prev)
        self._notify()
        return kv

    async def durable(self) -> None:
        """Returns once every write made so far is on disk."""
        target = self._rev
        if self._synced >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        self._flush_soon()
        await waiter

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events on keys under ``prefix`` with revision > ``from_revision``."""
        if from_revision < self._compacted:
            raise Compacted(f"revision {from_revision} is older than the oldest kept "
                            f"({self._compacted})")
        # The replay reads every committed event, those still in the outbox too.
        watcher = _Watcher(prefix, max(from_revision, self._rev))
        for past in self._history_since(prefix, from_revision):
            watcher.queue.put_nowait(past)
        self._watchers.add(watcher)
        try:
            while True:
                ev = await watcher.queue.get()
                if ev is None:
                    return
                yield ev
        finally:
            self._watchers.discard(watcher)

    def close(self) -> None:
        self._closed = True
        self._fsync()
        self._synced_up_to(self._rev)
        for w in self._watchers:
            w.queue.put_nowait(None)
        self._db.close()

    # -- internals --

    def _txn(self) -> _Transaction:
        return _Transaction(self)

    def _rolled_back(self) -> None:
        self._pending = None
        row = self._db.execute("SELECT value FROM meta WHERE name='revision'").fetchone()
        self._rev = int(row[0]) if row else 0

    def _current(self, key: str, expected_revision: int | None) -> tuple[KeyValue, str]:
        """The stored value (and its JSON), if it is still the revision the caller read."""
        row = self._db.execute(
            "SELECT key, value, create_rev, mod_rev FROM kv WHERE key=?", (key,)).fetchone()
        if row is None:
            raise NotFound(key)
        if expected_revision is not None and expected_revision != row[3]:
            raise Conflict(key)
        return _kv(row), row[1]

    def _exists(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM kv WHERE key=?", (key,)).fetchone() is not None

    def _bump(self) -> int:
        self._rev += 1
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (self._rev,))
        return self._rev

    def _record(self, ev: Event, text: str, prev: str | None) -> None:
        """The event row; ``text`` and ``prev`` are the values as JSON, already encoded."""
        self._db.execute("INSERT INTO events VALUES (?,?,?,?,?,?)",
                         (ev.kv.mod_revision, ev.type.value, ev.kv.key, text, prev,
                          ev.kv.create_revision))
        # Compact at least every ``history`` writes, so a small history is honoured.
        if ev.kv.mod_revision % max(1, min(1000, self._history)) == 0:
            self._compact()
        self._pending = ev

    def _committed(self) -> None:
        """After each COMMIT: fsync now without an event loop or when fsyncs
        are quick; else soon, in the worker thread, with the commits to come."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._fsync()
            self._synced_up_to(self._rev)
            return
        if not self._flushing and self._fsync_seconds < INLINE_FSYNC:
            # At the end of this turn of the loop, so that the commits of
            # every request handled in it share the fsync.
            if not self._inline:
                self._inline = True
                asyncio.get_running_loop().call_soon(self._flush_inline)
            return
        self._flush_soon()

    def _flush_inline(self) -> None:
        self._inline = False
        if self._closed or self._synced >= self._rev:
            return
        try:
            self._fsync()
        except OSError as e:
            self._flushed(self._rev, e)
            return
        self._synced_up_to(self._rev)

    def _flush_soon(self) -> None:
        """One fsync at a time, in a worker thread, each for every commit made
        before it started; its end is handed straight to the loop."""
        if self._flushing or self._inline or self._closed or self._synced >= self._rev:
            return
        self._flushing = True
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._flush, loop, self._rev)

    def _flush(self, loop: asyncio.AbstractEventLoop, target: int) -> None:
        """In the worker thread."""
        try:
            self._fsync()
            outcome: OSError | None = None
        except OSError as e:
            outcome = e
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            loop.call_soon_threadsafe(self._flushed, target, outcome)

    def _flushed(self, target: int, error: OSError | None) -> None:
        self._flushing = False
        if error is not None:
            for _, waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            self._waiters = []
            return
        self._synced_up_to(target)
        self._flush_soon()  # the commits made meanwhile

    def _fsync(self) -> None:
        started = time.perf_counter()
        self._fsync_wal()
        self._fsync_seconds = time.perf_counter() - started

    def _fsync_wal(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self._wal, os.O_RDONLY)
            try:
                os.fdatasync(fd)  # the WAL's data, as SQLite's own sync does
            finally:
                os.close(fd)

    def _synced_up_to(self, revision: int) -> None:
        """Writers first (their acknowledgements go out first), then watches."""
        self._synced = max(self._synced, revision)
        waiting = []
        for target, waiter in self._waiters:
            if target <= self._synced:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._waiters = waiting
        self._deliver()

    def _notify(self) -> None:
        """Queues the committed event for live watches (only after COMMIT); they
        get it once it is on disk, after the writers waiting for that fsync."""
        ev, self._pending = self._pending, None
        if ev is not None:
            self._outbox.append(ev)
            self._deliver()

    def _deliver(self) -> None:
        """Events on disk go to live watches, each once, in revision order."""
        if not self._outbox or self._outbox[0].kv.mod_revision > self._synced:
            return
        ready = [ev for ev in self._outbox if ev.kv.mod_revision <= self._synced]
        self._outbox = self._outbox[len(ready):]
        for ev in ready:
            for w in self._watchers:
                if ev.kv.mod_revision > w.seen and ev.kv.key.startswith(w.prefix):
                    w.queue.put_nowait(ev)
                    w.seen = ev.kv.mod_revision

    def _compact(self) -> None:
        floor = self._rev - self._history
        if floor > self._compacted:
            self._db.execute("DELETE FROM events WHERE rev <= ?", (floor,))
            self._compacted = floor
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('compacted', ?)", (floor,))

    def _history_since(self, prefix: str, rev: int) -> builtins.list[Event]:
        rows = self._db.execute(
            "SELECT rev, type, key, value, prev, create_rev FROM events "
            "WHERE rev > ? AND key >= ? AND key < ? ORDER BY rev",
            (rev, prefix, prefix + "\uffff")).fetchall()
        return [Event(EventType(t), KeyValue(k, json.loads(v), c, r),
                      json.loads(p) if p is not None else None)
                for r, t, k, v, p, c in rows]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; the revision is restored on rollback."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._store._db.execute("COMMIT")
            self._store._committed()
        else:
            self._store._db.execute("ROLLBACK")
            self._store._rolled_back()


def _kv(row: tuple[str, str, int, int]) -> KeyValue:
    return KeyValue(row[0], json.loads(row[1]), row[2], row[3])
