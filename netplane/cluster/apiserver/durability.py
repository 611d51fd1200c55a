"""Writes are acknowledged once they are on disk: the response to a create,
update, patch or delete waits for the store's group commit (one fsync for
all the writes made meanwhile), so a client never hears "done" for a write
that a crash or power cut could take back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from netplane.cluster.store.base import Store

STORE = web.AppKey("store", Store)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def acknowledge_when_durable(request: web.Request,
                                   handler: Handler) -> web.StreamResponse:
    if request.method not in WRITES:
        return await handler(request)
    try:
        return await handler(request)
    finally:
        await request.app[STORE].durable()
