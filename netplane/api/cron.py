"""CronJob schedules as kube-apiserver and the CronJob controller read them
(robfig/cron's standard parser): five fields, or a descriptor (``@hourly``,
``@daily``, ``@every 90m``...), evaluated in a time zone.

The times come from croniter. What kube refuses and croniter would take (a
seconds or years field, 7 for Sunday) is refused here first, field by field,
with robfig's wording, so that a bad schedule fails with the message kubectl
users know (``end of range (61) above maximum (59): 61``). Two rules of
robfig's are kept where croniter differs: a wall-clock time that a daylight
saving change skips does not happen that day (croniter would run at the end
of the gap), and ``@every D`` runs every D from the last run."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

UTC = datetime.UTC

DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
               "@hourly": "0 * * * *"}
MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (lowest, highest, names) of the five fields, in order.
FIELDS: tuple[tuple[int, int, dict[str, int] | None], ...] = (
    (0, 59, None), (0, 23, None), (1, 31, None), (1, 12, MONTHS), (0, 6, DAYS))
# Go's time.ParseDuration units, in seconds.
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                  "m": 60.0, "h": 3600.0}
DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
# A schedule that finds no time within this many tries is broken ("0 0 31 2 *").
MAX_TRIES = 1000
# Longer than any daylight saving shift.
DST_MARGIN = datetime.timedelta(hours=3)


class ScheduleError(ValueError):
    """A schedule kube would refuse; the message is robfig/cron's."""


def _go_int(text: str) -> int:
    """strconv.Atoi, with robfig's wording for what it refuses."""
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ScheduleError(f'failed to parse int from {text}: strconv.Atoi: parsing '
                            f'"{text}": invalid syntax')
    number = int(text)
    if number < 0:
        raise ScheduleError(f"negative number ({number}) not allowed: {text}")
    return number


def _int_or_name(text: str, names: dict[str, int] | None) -> int:
    if names is not None and text.lower() in names:
        return names[text.lower()]
    return _go_int(text)


def _check_range(expr: str, low: int, high: int, names: dict[str, int] | None) -> None:
    """One comma-separated part of a field, as robfig's getRange judges it."""
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    star = low_high[0] in ("*", "?")
    if star:
        start, end = low, high
    else:
        start = _int_or_name(low_high[0], names)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], names)
        else:
            raise ScheduleError(f"too many hyphens: {expr}")
    step = 1
    if len(range_and_step) == 2:
        step = _go_int(range_and_step[1])
        if len(low_high) == 1 and not star:
            end = high  # "N/step" is "N-max/step"
    elif len(range_and_step) > 2:
        raise ScheduleError(f"too many slashes: {expr}")
    if start < low:
        raise ScheduleError(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise ScheduleError(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {expr}")


def go_duration(text: str) -> float:
    """Seconds of a Go duration such as ``1h30m`` (time.ParseDuration)."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    parts = DURATION.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ScheduleError(f'failed to parse duration {text}: time: invalid duration '
                            f'"{text}"')
    seconds = sum(float(n) * DURATION_UNITS[u] for n, u in parts)
    return -seconds if text.startswith("-") else seconds


@dataclass(frozen=True)
class Schedule:
    """When a CronJob runs: ``expr`` (five fields) or every ``every`` seconds."""

    expr: str = ""
    every: float = 0.0
    zone: datetime.tzinfo = UTC

    def next(self, after: float) -> float | None:
        """The first time strictly after ``after`` (epoch seconds), None if
        the schedule never comes (robfig's Next, to the second)."""
        if self.every:
            return float(int(after)) + self.every
        after = float(int(after))
        # Walk wall-clock times, as robfig does: a time that the zone skips
        # (spring forward) does not happen that day, where croniter would
        # run at the end of the gap; a time that comes twice (fall back)
        # happens twice. The walk starts early enough to see both.
        wall = datetime.datetime.fromtimestamp(after, self.zone).replace(tzinfo=None)
        margin = DST_MARGIN if self._shifts_near(after) else datetime.timedelta(minutes=1)
        it = croniter(self.expr, wall - margin)
        found: list[float] = []
        for _ in range(MAX_TRIES):
            try:
                t = it.get_next(datetime.datetime)
            except (ValueError, KeyError, OverflowError):  # croniter's "no such date"
                break
            found += [x for x in self._instants(t) if x > after]
            if found and t - wall > margin:
                break
        return min(found) if found else None

    def _shifts_near(self, at: float) -> bool:
        """Whether the zone's offset changes within DST_MARGIN of ``at``."""
        span = DST_MARGIN.total_seconds()
        before = datetime.datetime.fromtimestamp(at - span, self.zone).utcoffset()
        return before != datetime.datetime.fromtimestamp(at + span, self.zone).utcoffset()

    def _instants(self, wall: datetime.datetime) -> list[float]:
        """The moments a wall-clock time names in the zone: none, one or two."""
        out = []
        for fold in (0, 1):
            aware = wall.replace(tzinfo=self.zone, fold=fold)
            if aware.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == wall:
                out.append(aware.timestamp())
        return sorted(set(out))


def split_tz(schedule: str) -> tuple[str, str]:
    """(zone, rest) of a schedule with robfig's ``TZ=`` or ``CRON_TZ=`` prefix."""
    for prefix in ("CRON_TZ=", "TZ="):
        if schedule.startswith(prefix):
            zone, _, rest = schedule[len(prefix):].partition(" ")
            return zone, rest.strip()
    return "", schedule


def parse(schedule: str, zone: datetime.tzinfo = UTC) -> Schedule:
    """The schedule, or ScheduleError with robfig's message."""
    tz_name, spec = split_tz(schedule.strip())
    if tz_name:
        try:
            zone = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"provided bad location {tz_name}: unknown time zone "
                                f"{tz_name}") from None
    if not spec:
        raise ScheduleError("empty spec string")
    if spec.startswith("@"):
        if spec.startswith("@every "):
            seconds = go_duration(spec[len("@every "):].strip())
            return Schedule(every=max(float(int(seconds)), 1.0), zone=zone)
        if spec.lower() not in DESCRIPTORS:
            raise ScheduleError(f"unrecognized descriptor: {spec}")
        return Schedule(expr=DESCRIPTORS[spec.lower()], zone=zone)
    fields = spec.split()
    if len(fields) != len(FIELDS):
        raise ScheduleError(f"expected exactly {len(FIELDS)} fields, found {len(fields)}: "
                            f"[{' '.join(fields)}]")
    for text, (low, high, names) in zip(fields, FIELDS, strict=True):
        for part in text.split(","):
            _check_range(part, low, high, names)
    expr = " ".join(fields)
    if not croniter.is_valid(expr):
        raise ScheduleError(f"unsupported schedule: {expr}")
    return Schedule(expr=expr, zone=zone)


def zone(name: str | None) -> datetime.tzinfo:
    """A CronJob's ``timeZone`` (IANA name); none is UTC. Raises ValueError."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name}") from e
