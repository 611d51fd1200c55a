"""Gateway API durations (GEP-2257): one to four ``<1-5 digits><unit>``
parts, units ``h``, ``m``, ``s`` and ``ms``, as in ``1h30m`` or ``500ms``;
a strict subset of Go's time.ParseDuration. ``0s`` means no timeout."""

from __future__ import annotations

import re

_SYNTAX = re.compile(r"(?:[0-9]{1,5}(?:h|ms|m|s)){1,4}")
_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class DurationError(ValueError):
    pass


def parse(text: str) -> float:
    """Seconds; DurationError for anything the API's pattern refuses."""
    if not _SYNTAX.fullmatch(text):
        raise DurationError(f"invalid duration {text!r}: want 1 to 4 of "
                            f"<number><h|m|s|ms>, as in 1h30m or 500ms")
    return sum(int(n) * _SECONDS[unit] for n, unit in _PART.findall(text))
