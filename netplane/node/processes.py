"""The processes of a container, read from its cgroup and /proc, in the
shape of Docker's ``GET /containers/{id}/top``: ``Titles`` and one row of
``Processes`` per process, the columns of ``ps -ef`` (UID PID PPID C STIME
TTY TIME CMD). PIDs are the node's, as ``docker top`` shows them."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from netplane.api.meta import Obj

TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    uid: int
    tty_nr: int
    cpu_ticks: int  # user + system
    start_ticks: int  # after boot
    cmd: str


def cgroup_pids(procs_file: Path) -> list[int]:
    try:
        return sorted(int(line) for line in procs_file.read_text().split())
    except (FileNotFoundError, OSError):
        return []


def parse_stat(text: str) -> tuple[str, list[str]]:
    """(comm, the fields after it) of /proc/PID/stat; comm may hold spaces."""
    left, right = text.index("("), text.rindex(")")
    return text[left + 1:right], text[right + 2:].split()


def read(pid: int, proc: Path = PROC) -> ProcInfo | None:
    base = proc / str(pid)
    try:
        comm, fields = parse_stat((base / "stat").read_text())
        status = (base / "status").read_text()
        argv = (base / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, OSError, ValueError):
        return None
    uid = next((int(line.split()[1]) for line in status.splitlines()
                if line.startswith("Uid:")), 0)
    cmd = " ".join(a.decode(errors="replace") for a in argv if a) or f"[{comm}]"
    # fields[0] is the state (field 3 of stat): ppid is 4, tty_nr 7,
    # utime 14, stime 15, starttime 22.
    return ProcInfo(pid=pid, ppid=int(fields[1]), uid=uid, tty_nr=int(fields[4]),
                    cpu_ticks=int(fields[11]) + int(fields[12]),
                    start_ticks=int(fields[19]), cmd=cmd)


def tty_name(tty_nr: int) -> str:
    """ps's TTY: ``pts/N``, ``ttyN`` or ``?`` for none."""
    if tty_nr == 0:
        return "?"
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}"
    return "?"


def cpu_time(seconds: int) -> str:
    """ps's TIME: ``[DD-]HH:MM:SS``."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def start_time(started: float, now: float) -> str:
    """ps's STIME: the time of day within a day, else the date."""
    if now - started < 86400:
        return time.strftime("%H:%M", time.localtime(started))
    if now - started < 365 * 86400:
        return time.strftime("%b%d", time.localtime(started))
    return time.strftime("%Y", time.localtime(started))


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _boot_time(proc: Path) -> float:
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def row(info: ProcInfo, *, boot: float, now: float, hz: int) -> list[str]:
    started = boot + info.start_ticks / hz
    cpu = info.cpu_ticks / hz
    # ps's C: CPU time over the process's life, in whole percent.
    elapsed = max(now - started, 1e-9)
    return [user_name(info.uid), str(info.pid), str(info.ppid), str(int(cpu * 100 / elapsed)),
            start_time(started, now), tty_name(info.tty_nr), cpu_time(int(cpu)), info.cmd]


def top(pids: Iterable[int], proc: Path = PROC) -> Obj:
    """Docker's top answer for these processes (those gone are left out)."""
    hz, now, boot = os.sysconf("SC_CLK_TCK"), time.time(), _boot_time(proc)
    rows = [row(info, boot=boot, now=now, hz=hz)
            for pid in pids if (info := read(pid, proc)) is not None]
    return {"Titles": list(TITLES), "Processes": rows}
