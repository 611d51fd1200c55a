"""Exec helper that turns a process into a container of the ``process``
runtime, then becomes the container's command::

    python -m netplane.node.runtime.launcher --netns NAME --hostname H \\
        --bind SRC:DST [--bind ...] [--env K=V ...] [--cwd DIR] -- CMD ARGS...

Steps: join the pod's network namespace; take private mount and UTS
namespaces; bind the pod's files (resolv.conf, hosts) over the host paths;
set the hostname; exec the command with exactly the given environment.
Exit codes follow container conventions: 125 set-up failed, 126 command not
executable, 127 command not found.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import enum
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from netplane.net import netns as nsutil
from netplane.net.netns import NsType

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExitCode(enum.IntEnum):
    SETUP_FAILED = 125
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127


class MountFlag(enum.IntFlag):
    NOSUID = 2
    NODEV = 4
    BIND = 4096
    REC = 16384
    PRIVATE = 1 << 18


class LaunchError(Exception):
    """Set-up failed before the command could run."""


@dataclass(frozen=True)
class Bind:
    source: str
    target: str


@dataclass(frozen=True)
class LaunchSpec:
    command: list[str]
    netns: str | None = None
    hostname: str | None = None
    binds: list[Bind] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


def _bind(text: str) -> Bind:
    source, sep, target = text.partition(":")
    if not sep or not source or not target:
        raise argparse.ArgumentTypeError(f"--bind wants SRC:DST, got {text!r}")
    return Bind(source, target)


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--env wants KEY=VALUE, got {text!r}")
    return key, value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netplane-launcher",
                                usage="%(prog)s [options] -- CMD [ARGS...]")
    p.add_argument("--netns", help="name of the pod's network namespace (/run/netns/NAME)")
    p.add_argument("--hostname", help="hostname inside the container")
    p.add_argument("--bind", type=_bind, action="append", default=[], metavar="SRC:DST")
    p.add_argument("--env", type=_env_pair, action="append", default=[], metavar="K=V")
    p.add_argument("--cwd", help="working directory of the command")
    return p


def parse_args(argv: Sequence[str]) -> LaunchSpec:
    """Options before ``--``, the command after it; errors exit with 125."""
    argv = list(argv)
    parser = _parser()
    if "--" not in argv:
        _usage_error(parser, "missing '-- CMD': no command to run")
    split = argv.index("--")
    command = argv[split + 1:]
    if not command:
        _usage_error(parser, "empty command after '--'")
    try:
        opts = parser.parse_args(argv[:split])
    except SystemExit as exc:
        # argparse exits 2; a runtime's own failure is 125 by convention.
        raise SystemExit(ExitCode.SETUP_FAILED) from exc
    return LaunchSpec(command=command, netns=opts.netns, hostname=opts.hostname,
                      binds=list(opts.bind), env=dict(opts.env), cwd=opts.cwd)


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.print_usage(sys.stderr)
    print(f"netplane-launcher: {message}", file=sys.stderr)
    raise SystemExit(ExitCode.SETUP_FAILED)


def exec_env(spec: LaunchSpec) -> dict[str, str]:
    """The command's whole environment: defaults, then the given pairs."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/root"}
    if spec.hostname:
        env["HOSTNAME"] = spec.hostname
    env.update(spec.env)
    return env


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    enc = [s.encode() if s is not None else None for s in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], flags, enc[3]) != 0:
        err = ctypes.get_errno()
        raise LaunchError(f"mount {source or ''} on {target}: {os.strerror(err)}")


def under_run(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ("/run", "/var/run"))


def _bind_all(binds: list[Bind]) -> None:
    """Binds the pod's files and folders over their targets. A target under
    /run (the service account folder) gets the container a private /run, a
    tmpfs, so nothing is made on the node's own /run; the sources are opened
    first because they may live under the /run that the tmpfs hides."""
    fds: list[int] = []
    try:
        for bind in binds:
            try:
                fds.append(os.open(bind.source, os.O_PATH))
            except FileNotFoundError:
                raise LaunchError(f"bind source {bind.source} does not exist") from None
        if any(under_run(b.target) for b in binds):
            _mount("tmpfs", "/run", "tmpfs", MountFlag.NOSUID | MountFlag.NODEV, "mode=755")
        for bind, fd in zip(binds, fds, strict=True):
            if under_run(bind.target):
                _make_target(bind.target, directory=os.path.isdir(f"/proc/self/fd/{fd}"))
            _mount(f"/proc/self/fd/{fd}", bind.target, None, MountFlag.BIND)
    finally:
        for fd in fds:
            os.close(fd)


def _make_target(path: str, *, directory: bool) -> None:
    """A mount point inside the container's private /run."""
    if directory:
        os.makedirs(path, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a"):
        pass


def enter_namespaces(spec: LaunchSpec) -> None:
    """Joins the pod netns and isolates mounts and hostname from the node."""
    try:
        if spec.netns:
            nsutil.setns(nsutil.netns_path(spec.netns), NsType.NET)
        nsutil.unshare(NsType.MOUNT | NsType.UTS)
    except OSError as exc:
        raise LaunchError(f"entering namespaces of pod netns {spec.netns!r}: {exc}") from exc
    # Without this our bind mounts would propagate back to the node's mounts.
    _mount(None, "/", None, MountFlag.REC | MountFlag.PRIVATE)
    _bind_all(spec.binds)
    if spec.hostname:
        socket.sethostname(spec.hostname)
    if spec.cwd:
        os.chdir(spec.cwd)


def launch(spec: LaunchSpec) -> NoReturn:
    """Sets up the container and execs its command; never returns."""
    try:
        enter_namespaces(spec)
    except (LaunchError, OSError) as exc:
        _fail(ExitCode.SETUP_FAILED, f"container set-up failed: {exc}")
    try:
        os.execvpe(spec.command[0], spec.command, exec_env(spec))
    except FileNotFoundError:
        _fail(ExitCode.NOT_FOUND, f"{spec.command[0]}: command not found")
    except PermissionError:
        _fail(ExitCode.NOT_EXECUTABLE, f"{spec.command[0]}: permission denied")
    except OSError as exc:
        _fail(ExitCode.NOT_EXECUTABLE, f"{spec.command[0]}: cannot execute: {exc.strerror}")


def _fail(code: ExitCode, message: str) -> NoReturn:
    print(f"netplane-launcher: {message}", file=sys.stderr, flush=True)
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    launch(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
