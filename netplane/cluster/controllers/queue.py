"""A deduplicating work queue and the loop that drains it into a reconcile
function, as client-go's workqueue does: a key queued many times while it
waits is reconciled once; a failed key is retried with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class WorkQueue:
    """A key added while it is being reconciled waits until that reconcile
    is done (client-go's dirty and processing sets): it goes to the back of
    the queue then, behind keys that were added meanwhile, and no two
    reconciles of one key ever overlap."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()

    def add(self, key: str) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def get(self) -> str:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)


async def drain(name: str, queue: WorkQueue, reconcile: Callable[[str], Awaitable[None]]) -> None:
    failures: dict[str, int] = {}
    while True:
        key = await queue.get()
        try:
            await reconcile(key)
            failures.pop(key, None)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            n = failures[key] = failures.get(key, 0) + 1
            log.debug("%s: reconciling %s failed (%s); retry %d", name, key, e, n)
            queue.add_after(key, min(0.05 * 2 ** n, 10.0))
        finally:
            queue.done(key)
