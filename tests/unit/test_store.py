"""The SQLite store: one global revision, compare-and-swap, durable reopen,
and watches that replay history and then follow live writes with no gap."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from netplane.cluster.store import sqlite
from netplane.cluster.store.base import (
    AlreadyExists,
    Compacted,
    Conflict,
    Event,
    EventType,
    NotFound,
)
from netplane.cluster.store.sqlite import SQLiteStore

PODS = "/registry/core/pods/"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "store.db")
    yield s
    s.close()


def pod_key(name: str, ns: str = "default") -> str:
    return f"{PODS}{ns}/{name}"


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    """The next ``n`` events, failing instead of hanging if they never come."""
    out: list[Event] = []
    async with asyncio.timeout(5):
        while len(out) < n:
            out.append(await anext(events))
    return out


async def nothing_more(store: SQLiteStore, events: AsyncIterator[Event],
                       prefix: str = PODS) -> None:
    """No event is pending: the next one is a marker written now.

    (Timing out an ``anext`` would close the generator, so a marker is used.)"""
    marker = store.create(f"{prefix}zz-marker", {})
    [ev] = await take(events, 1)
    assert (ev.kv.key, ev.kv.mod_revision) == (marker.key, marker.mod_revision)


def summary(events: list[Event]) -> list[tuple[EventType, str, int]]:
    return [(e.type, e.kv.key, e.kv.mod_revision) for e in events]


def test_revision_increases_across_keys(store: SQLiteStore) -> None:
    assert store.revision == 0
    a = store.create(pod_key("a"), {"n": 1})
    b = store.create("/registry/core/services/default/b", {"n": 2})
    a2 = store.update(pod_key("a"), {"n": 3}, expected_revision=a.mod_revision)
    assert (a.mod_revision, b.mod_revision, a2.mod_revision) == (1, 2, 3)
    assert a2.create_revision == 1
    assert store.revision == 3


def test_get_and_list_return_mod_revisions(store: SQLiteStore) -> None:
    store.create(pod_key("a"), {"n": 1})
    store.create(pod_key("b"), {"n": 2})
    store.update(pod_key("a"), {"n": 10}, expected_revision=None)
    got = store.get(pod_key("a"))
    assert got is not None and got.value == {"n": 10} and got.mod_revision == 3
    assert store.get(pod_key("missing")) is None
    items, rev = store.list(PODS)
    assert rev == 3
    assert [(kv.key, kv.value, kv.mod_revision) for kv in items] == [
        (pod_key("a"), {"n": 10}, 3), (pod_key("b"), {"n": 2}, 2)]


def test_create_twice_is_already_exists(store: SQLiteStore) -> None:
    store.create(pod_key("a"), {})
    with pytest.raises(AlreadyExists):
        store.create(pod_key("a"), {})
    assert store.revision == 1


def test_stale_expected_revision_is_conflict_and_changes_nothing(store: SQLiteStore) -> None:
    first = store.create(pod_key("a"), {"v": 1})
    store.update(pod_key("a"), {"v": 2}, expected_revision=first.mod_revision)
    with pytest.raises(Conflict):
        store.update(pod_key("a"), {"v": 3}, expected_revision=first.mod_revision)
    with pytest.raises(Conflict):
        store.delete(pod_key("a"), expected_revision=first.mod_revision)
    kv = store.get(pod_key("a"))
    assert kv is not None and kv.value == {"v": 2}
    assert store.revision == 2


def test_update_or_delete_of_missing_key_is_not_found(store: SQLiteStore) -> None:
    with pytest.raises(NotFound):
        store.update(pod_key("x"), {}, expected_revision=None)
    with pytest.raises(NotFound):
        store.delete(pod_key("x"))
    assert store.revision == 0


def test_delete_removes_and_bumps_revision(store: SQLiteStore) -> None:
    store.create(pod_key("a"), {"v": 1})
    gone = store.delete(pod_key("a"))
    assert gone.value == {"v": 1} and gone.mod_revision == 2
    assert store.get(pod_key("a")) is None
    assert store.list(PODS) == ([], 2)
    again = store.create(pod_key("a"), {"v": 2})
    assert again.create_revision == 3


def test_list_is_by_prefix(store: SQLiteStore) -> None:
    store.create(pod_key("a", "ns1"), {})
    store.create(pod_key("b", "ns2"), {})
    store.create("/registry/core/services/ns1/a", {})
    assert [kv.key for kv in store.list(f"{PODS}ns1/")[0]] == [pod_key("a", "ns1")]
    assert len(store.list(PODS)[0]) == 2


async def test_watch_replays_history_then_follows_live(store: SQLiteStore) -> None:
    store.create(pod_key("a"), {"v": 1})
    store.update(pod_key("a"), {"v": 2}, expected_revision=None)
    store.create(pod_key("b"), {"v": 1})
    events = store.watch(PODS, 1)
    replayed = await take(events, 2)
    assert summary(replayed) == [(EventType.MODIFIED, pod_key("a"), 2),
                                 (EventType.ADDED, pod_key("b"), 3)]
    assert replayed[0].prev == {"v": 1} and replayed[0].kv.value == {"v": 2}
    store.delete(pod_key("a"))
    live = await take(events, 1)
    assert summary(live) == [(EventType.DELETED, pod_key("a"), 4)]
    assert live[0].prev == {"v": 2}
    await nothing_more(store, events)
    await events.aclose()  # type: ignore[attr-defined]


async def test_no_event_lost_between_list_and_watch(store: SQLiteStore) -> None:
    store.create(pod_key("a"), {})
    _, rev = store.list(PODS)
    events = store.watch(PODS, rev)
    # Writes after the list but before the watch's first iteration...
    store.create(pod_key("b"), {})
    store.update(pod_key("a"), {"x": 1}, expected_revision=None)
    first = await take(events, 2)
    # ...and writes while the watch is already following.
    store.delete(pod_key("b"))
    store.create(pod_key("c"), {})
    rest = await take(events, 2)
    assert [e.kv.mod_revision for e in first + rest] == [2, 3, 4, 5]
    assert [e.type for e in first + rest] == [EventType.ADDED, EventType.MODIFIED,
                                              EventType.DELETED, EventType.ADDED]
    await nothing_more(store, events)
    await events.aclose()  # type: ignore[attr-defined]


async def test_writes_interleaved_with_first_iteration(store: SQLiteStore) -> None:
    """A writer task racing the watch's start: every revision arrives once."""
    _, rev = store.list(PODS)

    async def writer() -> None:
        for i in range(50):
            store.create(pod_key(f"p{i}"), {})
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)
    events = store.watch(PODS, rev)
    got = await take(events, 50)
    await task
    assert [e.kv.mod_revision for e in got] == list(range(rev + 1, rev + 51))
    await nothing_more(store, events)
    await events.aclose()  # type: ignore[attr-defined]


async def test_watch_is_filtered_by_prefix(store: SQLiteStore) -> None:
    events = store.watch(f"{PODS}ns1/", 0)
    store.create(pod_key("a", "ns2"), {})
    store.create("/registry/core/services/ns1/a", {})
    store.create(pod_key("b", "ns1"), {})
    got = await take(events, 1)
    assert summary(got) == [(EventType.ADDED, pod_key("b", "ns1"), 3)]
    await nothing_more(store, events, f"{PODS}ns1/")
    await events.aclose()  # type: ignore[attr-defined]


def test_reopening_keeps_objects_and_revision(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    s = SQLiteStore(path)
    s.create(pod_key("a"), {"v": 1})
    s.create(pod_key("b"), {"v": 2})
    s.delete(pod_key("b"))
    s.close()
    again = SQLiteStore(path)
    try:
        assert again.revision == 3
        kv = again.get(pod_key("a"))
        assert kv is not None and kv.value == {"v": 1} and kv.mod_revision == 1
        assert again.create(pod_key("c"), {}).mod_revision == 4
    finally:
        again.close()


async def test_watch_after_reopen_replays_older_history(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    s = SQLiteStore(path)
    s.create(pod_key("a"), {})
    s.create(pod_key("b"), {})
    s.close()
    again = SQLiteStore(path)
    try:
        events = again.watch(PODS, 1)
        assert summary(await take(events, 1)) == [(EventType.ADDED, pod_key("b"), 2)]
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        again.close()


async def test_too_old_revision_is_compacted(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "store.db", history=5)
    try:
        s.create(pod_key("a"), {"v": 0})
        for i in range(1, 30):
            s.update(pod_key("a"), {"v": i}, expected_revision=None)
        with pytest.raises(Compacted):
            await anext(s.watch(PODS, 1))
        # A recent enough revision still replays.
        recent = s.watch(PODS, s.revision - 3)
        assert [e.kv.value["v"] for e in await take(recent, 3)] == [27, 28, 29]
        await recent.aclose()  # type: ignore[attr-defined]
    finally:
        s.close()


async def test_close_ends_open_watches(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "store.db")
    events = s.watch(PODS, 0)

    async def first() -> Event:
        return await anext(events)

    waiter = asyncio.create_task(first())
    await asyncio.sleep(0.01)
    s.close()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(2):
            await waiter


# -- group commit --

def counting_fsyncs(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts fsyncs, as on a disk slow enough for the group commit."""
    monkeypatch.setattr(sqlite, "INLINE_FSYNC", 0.0)
    calls: list[int] = []
    real = store._fsync

    def fsync() -> None:
        calls.append(store.revision)
        real()

    monkeypatch.setattr(store, "_fsync", fsync)
    return calls


async def test_writes_made_together_share_one_fsync(store: SQLiteStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_fsyncs(store, monkeypatch)
    for i in range(20):
        store.create(pod_key(f"p{i}"), {"i": i})
    assert store.get(pod_key("p19")) is not None  # committed (readable) at once
    await asyncio.gather(*(store.durable() for _ in range(5)))
    # The first write's fsync may have started at once; the others share the next.
    assert len(calls) <= 2 and calls[-1] == 20, calls
    before = list(calls)
    await store.durable()  # nothing new: no fsync
    assert calls == before


async def test_durable_returns_only_after_the_fsync_that_covers_the_write(
        store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_fsync() -> None:
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)

    monkeypatch.setattr(sqlite, "INLINE_FSYNC", 0.0)
    monkeypatch.setattr(store, "_fsync", slow_fsync)
    store.create(pod_key("a"), {})
    acknowledged = asyncio.create_task(store.durable())
    await asyncio.wait_for(started.wait(), 5)
    store.create(pod_key("b"), {})  # during the fsync: waits for the next one
    later = asyncio.create_task(store.durable())
    await asyncio.sleep(0.05)
    assert not acknowledged.done() and not later.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(acknowledged, later), 5)


async def test_watches_get_an_event_once_it_is_on_disk_and_once_only(
        store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_fsyncs(store, monkeypatch)
    store.create(pod_key("a"), {})  # committed, not yet on disk
    events = store.watch(PODS, 0)
    first = await take(events, 1)  # replayed from history
    store.create(pod_key("b"), {})
    later = await take(events, 1)  # live, once an fsync covering it is done
    assert calls and calls[-1] == 2, calls
    assert summary(first + later) == [(EventType.ADDED, pod_key("a"), 1),
                                      (EventType.ADDED, pod_key("b"), 2)]
    await nothing_more(store, events)
    await events.aclose()  # type: ignore[attr-defined]


async def test_quick_fsyncs_cover_every_commit_of_one_turn_of_the_loop(
        store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_fsyncs(store, monkeypatch)
    monkeypatch.setattr(sqlite, "INLINE_FSYNC", 1.0)  # a quick disk
    loop = threading.get_ident()
    monkeypatch.setattr(store, "_fsync_wal", lambda: calls.append(threading.get_ident() - loop))
    for name in ("a", "b", "c"):  # as the requests handled in one turn do
        store.create(pod_key(name), {})
    assert calls == []
    await asyncio.gather(*(store.durable() for _ in range(3)))
    assert calls == [3, 0]  # one fsync, in the loop's thread
    store.create(pod_key("d"), {})
    await store.durable()
    assert calls == [3, 0, 4, 0]


def test_without_an_event_loop_each_commit_is_fsynced(store: SQLiteStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_fsyncs(store, monkeypatch)
    store.create(pod_key("a"), {})
    store.update(pod_key("a"), {"v": 1}, expected_revision=None)
    store.delete(pod_key("a"))
    assert calls == [1, 2, 3]


WRITER = """
import asyncio, sys
from netplane.cluster.store.sqlite import SQLiteStore

async def main() -> None:
    store = SQLiteStore(sys.argv[1])
    for i in range(100000):
        store.create(f"/registry/core/pods/default/p{i:06}", {"i": i})
        if i % 3 == 0:
            continue  # not waited for: written, never acknowledged
        await store.durable()
        print(i, flush=True)

asyncio.run(main())
"""


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged = [int(child.stdout.readline()) for _ in range(200)]
    child.send_signal(signal.SIGKILL)
    child.wait()
    again = SQLiteStore(path)
    try:
        missing = [i for i in acknowledged if again.get(pod_key(f"p{i:06}")) is None]
        assert not missing
        assert again.revision >= acknowledged[-1] + 1
    finally:
        again.close()
