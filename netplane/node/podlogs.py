"""A container's log as the agent serves it: the runtime's log file, cut by
``tailLines`` / ``sinceSeconds`` / ``limitBytes``, optionally with
timestamps, and followed as the container writes more.

The process runtime writes the container's output to the file as it comes,
without per-line times: a line's timestamp is when the agent read it (for
what was already there, the file's modification time), and ``sinceSeconds``
keeps what was already there only if the file changed in that window."""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

FOLLOW_POLL = 0.1
CHUNK = 64 * 1024


class BadLogOptions(ValueError):
    pass


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


def _flag(query: Mapping[str, str], key: str) -> bool:
    return query.get(key, "").lower() in ("1", "true", "yes")


def _number(query: Mapping[str, str], key: str) -> int | None:
    if key not in query:
        return None
    value = query[key]
    if not value.lstrip("-").isdigit():
        raise BadLogOptions(f"{key} must be a whole number, not {value!r}")
    return int(value)


def _since_time(query: Mapping[str, str]) -> int | None:
    """``sinceTime`` (RFC 3339) as seconds before now, at least 1."""
    if "sinceTime" not in query:
        return None
    try:
        when = datetime.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
    except ValueError:
        raise BadLogOptions(f"sinceTime must be an RFC 3339 time, not "
                            f"{query['sinceTime']!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(1, int(_now() - when.timestamp()))


def parse_options(query: Mapping[str, str]) -> LogOptions:
    since = _number(query, "sinceSeconds")
    opts = LogOptions(follow=_flag(query, "follow"), previous=_flag(query, "previous"),
                      tail_lines=_number(query, "tailLines"),
                      since_seconds=since if since is not None else _since_time(query),
                      timestamps=_flag(query, "timestamps"),
                      limit_bytes=_number(query, "limitBytes"))
    for key, value in (("tailLines", opts.tail_lines), ("sinceSeconds", opts.since_seconds),
                       ("limitBytes", opts.limit_bytes)):
        if value is not None and value < (1 if key != "tailLines" else 0):
            least = 1 if key != "tailLines" else 0
            raise BadLogOptions(f"{key} must be at least {least}, not {value}")
    return opts


def tail(data: bytes, lines: int) -> bytes:
    """The last ``lines`` lines of ``data`` (a last line without newline counts)."""
    if lines == 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def stamp(data: bytes, when: datetime.datetime, *, at_line_start: bool) -> tuple[bytes, bool]:
    """Prefixes each line's start in ``data`` with an RFC 3339 time, as
    ``--timestamps`` shows; returns the text and whether it ended a line."""
    mark = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode() + b" "
    out = bytearray()
    start = at_line_start
    for part in data.splitlines(keepends=True):
        if start:
            out += mark
        out += part
        start = part.endswith(b"\n")
    return bytes(out), start


def _mtime(path: Path) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)


def existing(path: Path, opts: LogOptions, *, now: float) -> tuple[bytes, int]:
    """What the file holds now, cut as asked; and the offset following stops at."""
    with open(path, "rb") as f:
        data = f.read()
    size = len(data)
    if opts.since_seconds is not None and path.stat().st_mtime < now - opts.since_seconds:
        data = b""
    if opts.tail_lines is not None:
        data = tail(data, opts.tail_lines)
    if opts.timestamps and data:
        data = stamp(data, _mtime(path), at_line_start=True)[0]
    return data, size


class Limit:
    """``limitBytes``: passes bytes until the budget is spent."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[:self.left]
        self.left -= len(data)
        return data

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0


async def stream(path: Path, opts: LogOptions, *,
                 running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The log's chunks: what is there, then (``follow``) what is written
    next, until the container stops running and the file has no more."""
    limit = Limit(opts.limit_bytes)
    data, offset = existing(path, opts, now=_now())
    if data:
        yield limit.take(data)
    if not opts.follow:
        return
    at_line_start = not data or data.endswith(b"\n")
    with open(path, "rb") as f:
        f.seek(offset)
        while not limit.spent:
            chunk = f.read(CHUNK)
            if chunk:
                if opts.timestamps:
                    chunk, at_line_start = stamp(chunk, datetime.datetime.now(datetime.UTC),
                                                 at_line_start=at_line_start)
                yield limit.take(chunk)
                continue
            if not running():
                # One last read: the container may have written just before exiting.
                rest = f.read()
                if rest:
                    yield limit.take(rest)
                return
            await asyncio.sleep(FOLLOW_POLL)


def _now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
