"""Exec helper that turns a process into a container of the ``process``
runtime, then becomes the container's command::

    python -m netplane.node.runtime.launcher --netns NAME --hostname H \\
        [--ipc FILE] [--pid own|FILE] [--root DIR] --bind SRC:DST[:ro] [--bind ...] \\
        [--env K=V ...] [--cwd DIR] -- CMD ARGS...

Steps: join the pod's network (and IPC) namespace; take private mount and
UTS namespaces; bind the pod's files (resolv.conf, hosts) and volumes over
the host paths; set the hostname; exec the command with exactly the given
environment and no signal ignored. With ``--pid own`` the command runs as
PID 1 of a PID namespace of its own, with ``--pid FILE`` in the pod's
(shareProcessNamespace), with its own /proc either way: util-linux's
``unshare --fork`` stays as its parent and exits with its status. When a
mount target does not exist on the node, the container gets a root of its
own instead (a tmpfs at ``--root`` holding the node's top-level folders,
bound), so that mount points are made there and never on the node; a
missing folder inside a node folder gets an overlay over it.
Exit codes follow container conventions: 125 set-up failed, 126 command not
executable, 127 command not found.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import enum
import os
import shutil
import signal
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
    RDONLY = 1
    NOSUID = 2
    NODEV = 4
    REMOUNT = 32
    BIND = 4096
    REC = 16384
    PRIVATE = 1 << 18


MNT_DETACH = 2
# pivot_root has no libc wrapper: its system call number per machine.
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}


class LaunchError(Exception):
    """Set-up failed before the command could run."""


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    readonly: bool = False


@dataclass(frozen=True)
class LaunchSpec:
    command: list[str]
    netns: str | None = None
    hostname: str | None = None
    ipc: str | None = None
    pid: str | None = None  # "own", or the pod's PID namespace file
    root: str | None = None
    binds: list[Bind] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


def _bind(text: str) -> Bind:
    source, sep, target = text.partition(":")
    readonly = target.endswith(":ro")
    target = target.removesuffix(":ro")
    if not sep or not source or not target:
        raise argparse.ArgumentTypeError(f"--bind wants SRC:DST[:ro], got {text!r}")
    return Bind(source, target, readonly)


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
    p.add_argument("--ipc", help="the pod's IPC namespace (a file bound to it)")
    p.add_argument("--pid", help="'own' for a PID namespace of its own, or the pod's (a file)")
    p.add_argument("--root", help="an empty folder to build the container's root in")
    p.add_argument("--bind", type=_bind, action="append", default=[], metavar="SRC:DST[:ro]")
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
                      ipc=opts.ipc, pid=opts.pid, root=opts.root, binds=list(opts.bind),
                      env=dict(opts.env), cwd=opts.cwd)


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
    libc = nsutil.libc()
    enc = [s.encode() if s is not None else None for s in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], flags, enc[3]) != 0:
        err = ctypes.get_errno()
        raise LaunchError(f"mount {source or ''} on {target}: {os.strerror(err)}")


def under_run(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ("/run", "/var/run"))


def _open_sources(binds: list[Bind]) -> list[int]:
    fds: list[int] = []
    for bind in binds:
        try:
            fds.append(os.open(bind.source, os.O_PATH))
        except FileNotFoundError:
            for fd in fds:
                os.close(fd)
            raise LaunchError(f"bind source {bind.source} does not exist") from None
    return fds


def _bind_one(fd: int, target: str, readonly: bool) -> None:
    _mount(f"/proc/self/fd/{fd}", target, None, MountFlag.BIND)
    if readonly:
        _mount(None, target, None, MountFlag.REMOUNT | MountFlag.BIND | MountFlag.RDONLY)


def _bind_all(binds: list[Bind]) -> None:
    """Binds the pod's files and folders over their targets. A target under
    /run (the service account folder) gets the container a private /run, a
    tmpfs, so nothing is made on the node's own /run; the sources are opened
    first because they may live under the /run that the tmpfs hides."""
    fds = _open_sources(binds)
    try:
        if any(under_run(b.target) for b in binds):
            _mount("tmpfs", "/run", "tmpfs", MountFlag.NOSUID | MountFlag.NODEV, "mode=755")
        for bind, fd in zip(binds, fds, strict=True):
            if under_run(bind.target):
                _make_target(bind.target, directory=os.path.isdir(f"/proc/self/fd/{fd}"))
            _bind_one(fd, bind.target, bind.readonly)
    finally:
        for fd in fds:
            os.close(fd)


def needs_root(binds: list[Bind]) -> bool:
    """A target that does not exist on the node (outside /run, which is the
    container's own already) calls for a root of the container's own."""
    return any(not os.path.lexists(b.target) and not under_run(b.target) for b in binds)


def _build_root(root: str, binds: list[Bind]) -> None:
    """A tmpfs root at ``root`` with the node's top-level entries bound in
    (symlinks copied), a private /run when something is mounted under it,
    mount points made inside (an overlay over a node folder that lacks
    one), then the binds; finally the container pivots into it."""
    fds = _open_sources(binds)
    try:
        _mount("tmpfs", root, "tmpfs", MountFlag.NOSUID | MountFlag.NODEV, "mode=755")
        private_run = any(under_run(b.target) for b in binds)
        for entry in sorted(os.listdir("/")):
            src, dst = f"/{entry}", f"{root}/{entry}"
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif os.path.isdir(src):
                os.mkdir(dst)
                if entry == "run" and private_run:
                    _mount("tmpfs", dst, "tmpfs", MountFlag.NOSUID | MountFlag.NODEV,
                           "mode=755")
                else:
                    _mount(src, dst, None, MountFlag.BIND | MountFlag.REC)
            else:
                open(dst, "a").close()
                _mount(src, dst, None, MountFlag.BIND)
        # Every mount point (and overlay) first, then the binds, parents before
        # children: an overlay never hides a bind, nor a bind another.
        order = sorted(range(len(binds)), key=lambda i: binds[i].target.count("/"))
        targets = {i: in_root(root, binds[i].target) for i in order}
        overlaid: list[str] = []
        own = {os.stat(root).st_dev, os.stat(f"{root}/run").st_dev if private_run else -1}
        for i in order:
            if not os.path.lexists(targets[i]):
                _make_mount_point(root, targets[i], overlaid, own,
                                  directory=os.path.isdir(f"/proc/self/fd/{fds[i]}"))
        for i in order:
            _bind_one(fds[i], targets[i], binds[i].readonly)
    finally:
        for fd in fds:
            os.close(fd)
    _pivot(root)


def in_root(root: str, path: str) -> str:
    """``path`` as seen from inside ``root``: symlinks on the way (such as
    /var/run -> /run) are followed within the root, never out of it."""
    parts = [p for p in path.split("/") if p and p != "."]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = os.path.dirname(current) if current != root else root
            continue
        candidate = f"{current}/{part}"
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise LaunchError(f"too many symlinks resolving {path}")
            link = os.readlink(candidate)
            parts = [p for p in link.split("/") if p and p != "."] + parts
            if link.startswith("/"):
                current = root
            continue
        current = candidate
    return current


def _make_mount_point(root: str, target: str, overlaid: list[str], own: set[int], *,
                      directory: bool) -> None:
    """Makes ``target`` inside the container's root. Under a node folder it
    takes an overlay over that folder (recorded in ``overlaid``), so the
    node's own stays untouched; ``own`` are the devices of the container's
    own tmpfs (its root and /run), where folders are simply made."""
    parent = os.path.dirname(target)
    existing = parent
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    on_node = os.stat(existing).st_dev not in own  # not one of the container's tmpfs
    if on_node and not any(existing == o or existing.startswith(o + "/") for o in overlaid):
        # Writes go to an upper layer on the container's tmpfs.
        n = len(overlaid)
        upper, work = f"{root}/.overlay/{n}/upper", f"{root}/.overlay/{n}/work"
        os.makedirs(upper)
        os.makedirs(work)
        _mount("overlay", existing, "overlay", 0,
               f"lowerdir={existing},upperdir={upper},workdir={work}")
        overlaid.append(existing)
    os.makedirs(parent, exist_ok=True)
    if directory:
        os.makedirs(target, exist_ok=True)
    else:
        open(target, "a").close()


def _pivot(root: str) -> None:
    libc = nsutil.libc()
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise LaunchError(f"pivot_root: unknown system call number on {os.uname().machine}")
    os.chdir(root)
    # pivot_root(".", "."): the old root ends up stacked under the new one;
    # detaching "." then drops it.
    if libc.syscall(number, b".", b".") != 0:
        raise LaunchError(f"pivot_root: {os.strerror(ctypes.get_errno())}")
    if libc.umount2(b".", MNT_DETACH) != 0:
        raise LaunchError(f"detaching the old root: {os.strerror(ctypes.get_errno())}")
    os.chdir("/")


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
        if spec.ipc:
            nsutil.setns(spec.ipc, NsType.IPC)
        nsutil.unshare(NsType.MOUNT | NsType.UTS)
    except OSError as exc:
        raise LaunchError(f"entering namespaces of pod netns {spec.netns!r}: {exc}") from exc
    # Without this our bind mounts would propagate back to the node's mounts.
    _mount(None, "/", None, MountFlag.REC | MountFlag.PRIVATE)
    if spec.root and needs_root(spec.binds):
        _build_root(spec.root, spec.binds)
    else:
        _bind_all(spec.binds)
    if spec.hostname:
        socket.sethostname(spec.hostname)
    if spec.cwd:
        os.chdir(spec.cwd)


def pid_wrapper(spec: LaunchSpec) -> list[str]:
    """What runs the command in its PID namespace: ``unshare --fork``, which
    forks it into the new (or the joined) namespace, mounts it a /proc of
    that namespace and waits for it."""
    if not spec.pid:
        return []
    if spec.pid == "own":
        return ["unshare", "--pid", "--fork", "--mount-proc", "--"]
    nsutil.setns(spec.pid, NsType.PID)  # takes effect for the children
    return ["unshare", "--fork", "--mount-proc", "--"]


def launch(spec: LaunchSpec) -> NoReturn:
    """Sets up the container and execs its command; never returns."""
    try:
        enter_namespaces(spec)
        command = pid_wrapper(spec) + spec.command
    except (LaunchError, OSError) as exc:
        _fail(ExitCode.SETUP_FAILED, f"container set-up failed: {exc}")
    if command[0] != spec.command[0] and not shutil.which(spec.command[0],
                                                         path=exec_env(spec)["PATH"]):
        _fail(ExitCode.NOT_FOUND, f"{spec.command[0]}: command not found")
    # An exec keeps ignored signals ignored: the interpreter's SIGPIPE and
    # SIGXFSZ, and whatever the agent's own parent ignored. The command starts
    # with every signal at its default, as in a container; the C library's
    # reserved ones (32, 33) refuse a change and stay as they are.
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(command[0], command, exec_env(spec))
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
