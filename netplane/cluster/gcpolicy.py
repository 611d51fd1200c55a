"""Garbage collection for the processes that hold large caches: the API
server, the scheduler and the controllers.

CPython's cyclic collector walks every tracked object in a full collection.
With 5,000 nodes and 10,000 pods cached, each full collection took ~0.3 s
and young ones ran every 700 allocations: measured, a quarter of the
scheduler's and the server's time, in pauses that stalled binds. Objects
decoded from the API are trees (no cycles): reference counting frees them,
so the collector has little to find in them. Hence: collect young objects
less often, and keep what the process holds once its caches are filled out
of every later walk (``gc.freeze``)."""

from __future__ import annotations

import gc

# Young collections every 50,000 net allocations (CPython's default: 700),
# the middle one every 20 of those; a full one needs 10 middle ones and, as
# always, survivors worth a quarter of what full collections last kept.
THRESHOLDS = (50_000, 20, 10)


def configure() -> None:
    """At the start of a long-running process."""
    gc.set_threshold(*THRESHOLDS)


def settle() -> None:
    """Once the process's caches are filled: what it holds now is left out
    of later collections (freed by reference counting as ever)."""
    gc.collect()
    gc.freeze()
