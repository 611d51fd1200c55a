"""Network-namespace plumbing: the one place that runs `ip` / `sysctl`, named
netns bookkeeping (``/run/netns``), sysctl writes, and ``setns``/``unshare``
through libc (Python 3.11 has no ``os.setns``).

Every other module of ``netplane.net`` runs its commands through :func:`run`
(or a :data:`Runner` with the same signature), so unit tests can pass a fake.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

NETNS_DIR = Path("/run/netns")


class NsType(enum.IntFlag):
    """Namespace kinds, as the kernel's ``CLONE_NEW*`` flags."""

    MOUNT = 0x00020000
    UTS = 0x04000000
    IPC = 0x08000000
    PID = 0x20000000
    NET = 0x40000000


class CommandError(RuntimeError):
    """A command exited non-zero; carries what a user needs to see why."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"command failed (exit {returncode}): {' '.join(argv)}: {self.stderr}")


class Runner(Protocol):
    """The seam: anything shaped like :func:`run`."""

    def __call__(self, args: Sequence[str], *, netns: str | None = None,
                 check: bool = True) -> str: ...


class Batch(Protocol):
    """The seam for :func:`batch`."""

    def __call__(self, lines: Sequence[str], *, netns: str | None = None) -> None: ...


def in_netns(args: Sequence[str], netns: str | None) -> list[str]:
    """The argv that runs ``args`` inside ``netns`` (unchanged when None).

    ``ip`` gets ``-n NAME``, which switches namespace in-process; anything else
    goes through ``ip netns exec``, which also remounts /sys for the netns.
    """
    if netns is None:
        return list(args)
    if args and args[0] == "ip":
        return ["ip", "-n", netns, *args[1:]]
    return ["ip", "netns", "exec", netns, *args]


def run(args: Sequence[str], *, netns: str | None = None, check: bool = True) -> str:
    """Runs a command (in ``netns`` if given) and returns its stdout."""
    argv = in_netns(args, netns)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr)
    return proc.stdout


def batch(lines: Sequence[str], *, netns: str | None = None) -> None:
    """``ip`` commands in one process (``ip -batch``): a pod's wiring is a
    dozen of them, and each process costs more than its netlink request.
    Stops at the first that fails."""
    argv = in_netns(["ip", "-batch", "-"], netns)
    proc = subprocess.run(argv, input="".join(f"{line}\n" for line in lines),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr)


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add(name: str, *, runner: Runner = run, loopback: bool = True) -> None:
    """Creates the named netns with ``lo`` up (unless the caller brings it
    up itself); a no-op when it exists."""
    if not exists(name):
        try:
            runner(["ip", "netns", "add", name])
        except CommandError:
            # Another process may have created it between the check and here.
            if not exists(name):
                raise
    if loopback:
        runner(["ip", "link", "set", "lo", "up"], netns=name)


def delete(name: str, *, runner: Runner = run) -> None:
    """Deletes the named netns (its veth peers go with it); a no-op if absent."""
    if exists(name):
        runner(["ip", "netns", "delete", name])


def pids(name: str, *, runner: Runner = run) -> list[int]:
    """Processes whose network namespace is ``name``."""
    if not exists(name):
        return []
    out = runner(["ip", "netns", "pids", name], check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def set_sysctl(key: str, value: str | int, *, netns: str | None = None,
               runner: Runner = run) -> None:
    """Sets a sysctl; /proc/sys/net shows the netns of the process writing it,
    so for another netns the write happens through ``ip netns exec``."""
    if netns is None:
        sysctl_path(key).write_text(f"{value}\n")
    else:
        runner(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns)


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, loaded once. ``ctypes.util.find_library`` runs
    ``ldconfig -p`` each time it is called (the launcher called it nine
    times per container), so it is asked only when glibc's name fails."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes import util

        return ctypes.CDLL(util.find_library("c"), use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(target: str | Path | int, nstype: NsType = NsType.NET) -> None:
    """Moves the calling thread into the namespace at a path or an open fd."""
    if isinstance(target, int):
        _check(libc().setns(target, int(nstype)), f"setns(fd {target})")
        return
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(libc().setns(fd, int(nstype)), f"setns({target})")
    finally:
        os.close(fd)


def unshare(flags: NsType) -> None:
    """Gives the calling process new namespaces of the given kinds."""
    _check(libc().unshare(int(flags)), f"unshare({flags!r})")


def netns_path(name: str) -> Path:
    return NETNS_DIR / name
