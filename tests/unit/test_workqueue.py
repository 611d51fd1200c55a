"""The controllers' work queue keeps client-go's order: a key added while it
is being reconciled goes behind the keys added meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from netplane.cluster.controllers import replicaset
from netplane.cluster.controllers.queue import WorkQueue, drain


async def test_a_key_added_twice_while_waiting_is_taken_once() -> None:
    q = WorkQueue()
    for key in ("a", "b", "a"):
        q.add(key)
    assert [await q.get(), await q.get()] == ["a", "b"]
    assert q._queue.empty()


async def test_a_key_added_while_reconciled_waits_behind_later_keys() -> None:
    """The ReplicaSet controller's case: the new ReplicaSet's own pod events
    must not put it ahead of the old ReplicaSet's scale-down."""
    q = WorkQueue()
    q.add("new")
    assert await q.get() == "new"
    q.add("new")   # its pods' events, while it creates them
    q.add("old")   # the old ReplicaSet scaled down meanwhile
    assert await q.get() == "old"
    q.done("new")
    assert await q.get() == "new"


async def test_reconciles_of_one_key_never_overlap() -> None:
    q = WorkQueue()
    running, most, seen = 0, 0, 0

    async def reconcile(key: str) -> None:
        nonlocal running, most, seen
        running += 1
        most = max(most, running)
        seen += 1
        if seen < 3:
            q.add(key)
        await asyncio.sleep(0)
        running -= 1

    q.add("k")
    workers = [asyncio.create_task(drain("test", q, reconcile)) for _ in range(2)]
    while seen < 3 or running:
        await asyncio.sleep(0)
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    assert (seen, most) == (3, 1)


async def test_replica_sets_create_pods_in_doubling_batches_and_stop_at_a_failure() -> None:
    batches: list[int] = []
    in_flight = 0

    async def create() -> None:
        nonlocal in_flight
        if in_flight == 0:
            batches.append(0)
        in_flight += 1
        batches[-1] = max(batches[-1], in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        if len(batches) == 4 and fail:
            raise RuntimeError("quota")

    fail = False
    await replicaset.slow_start(10, create)
    assert batches == [1, 2, 4, 3]
    batches.clear()
    fail = True
    with pytest.raises(RuntimeError):
        await replicaset.slow_start(100, create)
    assert batches == [1, 2, 4, 8]  # no batch after the one that failed
