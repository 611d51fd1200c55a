"""Docker's wording for ``netplane ps``, ``stats`` and ``top``, pure: the
durations of ``docker ps`` ("About a minute", "Up 3 hours", "Exited (137)
2 minutes ago", as the go-units package Docker uses words them), binary
sizes of ``docker stats`` ("1.5MiB"), its CPU percentage, short container
ids and the tab-aligned tables of the docker CLI."""

from __future__ import annotations

from collections.abc import Sequence

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_COMMAND_WIDTH = 20  # docker ps cuts the command to this many characters


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: how long ago, in rounded words."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600 / 24 / 365)} years"


def bytes_size(size: float) -> str:
    """go-units' BytesSize: binary units, four significant digits."""
    unit = 0
    while size >= 1024 and unit < len(_BINARY) - 1:
        size /= 1024
        unit += 1
    return f"{size:.4g}{_BINARY[unit]}"


def up(started_ago: float) -> str:
    return f"Up {human_duration(started_ago)}"


def exited(code: int, finished_ago: float) -> str:
    return f"Exited ({code}) {human_duration(finished_ago)} ago"


def restarting(code: int, finished_ago: float) -> str:
    """A container waiting to be started again after it ended (back-off)."""
    return f"Restarting ({code}) {human_duration(finished_ago)} ago"


def created_ago(seconds: float) -> str:
    return f"{human_duration(seconds)} ago"


def short_id(container_id: str) -> str:
    """The first 12 characters of the id, without its ``runtime://``."""
    return container_id.partition("://")[2][:12] if "://" in container_id else \
        container_id[:12]


def command(argv: Sequence[str]) -> str:
    """docker ps's COMMAND: cut to 20 characters ("…" marks the cut), quoted."""
    text = " ".join(argv)
    if len(text) > _COMMAND_WIDTH:
        text = text[:_COMMAND_WIDTH - 1] + "…"
    return '"' + text.replace('"', '\\"') + '"'


def cpu_percent(cpu_delta: float, system_delta: float, online_cpus: int) -> float:
    """docker stats' CPU %: the container's share of the time all CPUs had,
    times their number (so 100% is one CPU kept busy)."""
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    return cpu_delta / system_delta * online_cpus * 100.0


def memory_percent(usage: float, limit: float) -> float:
    return usage / limit * 100.0 if limit > 0 else 0.0


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded as the docker CLI's tabwriter pads them (three spaces
    after the widest cell)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["".join(str(cell).ljust(w + 3) if i < len(widths) - 1 else str(cell)
                     for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)
