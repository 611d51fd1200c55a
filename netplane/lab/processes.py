"""The lab's daemons: started inside a node's network namespace (and only
that: they share the machine's file system), each in its own session, with
a pid file and a log in the lab's state directory; stopped by that pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from netplane.net import netns as nsutil
from netplane.node.runtime.process import proc_stat


def _start_time(pid: int) -> str | None:
    """The start time of a live process; None when gone or a zombie."""
    stat = proc_stat(pid)
    return None if stat is None or stat[0] in ("Z", "X") else str(stat[1])


def alive(pidfile: Path) -> int | None:
    """The pid recorded in ``pidfile`` if that very process still runs."""
    try:
        pid_text, start = pidfile.read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    return pid if _start_time(pid) == start else None


def start(*, netns: str, argv: list[str], log: Path, pidfile: Path,
          env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            env={**os.environ, **(env or {})}, pass_fds=pass_fds)
    # nsenter execs the daemon, so this pid is the daemon's.
    for _ in range(100):
        start_time = _start_time(proc.pid)
        if start_time is not None:
            break
        time.sleep(0.01)
    pidfile.write_text(f"{proc.pid} {start_time}\n")
    return proc.pid


def stop(pidfile: Path, *, timeout: float = 5.0) -> None:
    pid = alive(pidfile)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)  # a frozen one (lab stop) must run to see it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(pidfile) is not None:
            _reap(pid)
            time.sleep(0.05)
        if alive(pidfile) is not None:
            _signal(pid, signal.SIGKILL)
        _reap(pid)
    pidfile.unlink(missing_ok=True)


def kill_netns_processes(netns: str) -> None:
    """Everything still running in a namespace the lab made (pods' containers)."""
    for pid in nsutil.pids(netns):
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
