"""The store's contract: objects by key, one global revision, watch from a
revision with no gap between list and watch, compare-and-swap updates."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: dict[str, Any]
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Event:
    type: EventType
    kv: KeyValue
    prev: dict[str, Any] | None  # the value before a MODIFIED or DELETED
    # What every watch of this event can share (the object as served), made
    # by the first that needs it.
    shared: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The object changed since the revision the caller read."""


class Compacted(StoreError):
    """A watch asked for history the store no longer keeps (HTTP 410 Gone)."""


class Store(Protocol):
    @property
    def revision(self) -> int: ...

    # get and list decode their values anew for each call: the caller owns them.
    def get(self, key: str) -> KeyValue | None: ...

    def list(self, prefix: str) -> tuple[list[KeyValue], int]: ...

    def create(self, key: str, value: dict[str, Any]) -> KeyValue: ...

    def update(self, key: str, value: dict[str, Any], *, expected_revision: int | None) \
        -> KeyValue: ...

    def delete(self, key: str, *, expected_revision: int | None = None) -> KeyValue: ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]: ...

    async def durable(self) -> None:
        """Returns once every write made so far would survive a crash."""

    def close(self) -> None: ...
