"""Exec and attach sessions: a command run inside a container's namespaces
(or the container's own output and stdin, for attach), its streams carried
over the WebSocket channel protocol of :mod:`netplane.api.streams`.

Exec runs ``nsenter -t PID --net --mount --uts -- CMD`` with the container
process's environment, so the command sees what the container sees: the
pod's address, its resolv.conf and hosts, its hostname. With a tty the
command gets a pseudo-terminal (and a session it controls), resized on the
client's resize messages."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import WSMsgType, web

from netplane.api import streams
from netplane.api.streams import Channel, TerminalSize
from netplane.node import cgroups, podlogs
from netplane.node.runtime.process import init_pid

READ_SIZE = 64 * 1024
Output = tuple[int, bytes] | None


@dataclass(frozen=True)
class ExecOptions:
    command: list[str]
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False


# A shell that writes itself into the cgroups named before "--", then
# becomes the rest: nsenter joins namespaces only.
JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; ' \
    'shift; exec "$@"'


def exec_argv(pid: int, command: list[str]) -> list[str]:
    """Runs ``command`` in every namespace of the container whose process is
    ``pid`` (its PID namespace too: nsenter forks into it) and in its
    cgroups, so that its limits hold it and its usage counts."""
    main = init_pid(pid)
    argv = ["nsenter", "-t", str(main), "--net", "--mount", "--uts", "--ipc", "--pid",
            "--", *command]
    procs = cgroups.procs_files_of(main)
    if not procs:
        return argv
    return ["sh", "-c", JOIN_CGROUPS, "sh", *map(str, procs), "--", *argv]


def process_env(pid: int) -> dict[str, str]:
    """The environment a process was started with (/proc/PID/environ)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs if k}


class Session(Protocol):
    """What the channel pump drives: outputs, stdin, resize, the end."""

    output: asyncio.Queue[Output]
    streams: int  # how many outputs end with a None in ``output``

    async def write(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def resize(self, size: TerminalSize) -> None: ...
    async def wait(self) -> int: ...
    def stop(self) -> None: ...


def _signal_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class _Command:
    """What both kinds of session do with their process."""

    proc: asyncio.subprocess.Process | None

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        return 128 - code if code < 0 else code

    def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            _signal_group(self.proc.pid)


class PipeExec(_Command):
    """A command with its stdin, stdout and stderr on pipes."""

    def __init__(self, opts: ExecOptions) -> None:
        self.opts = opts
        self.output: asyncio.Queue[Output] = asyncio.Queue()
        self.streams = int(opts.stdout) + int(opts.stderr)
        self.proc: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []

    async def start(self, argv: list[str], env: dict[str, str]) -> None:
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=pipe if self.opts.stdin else null,
            stdout=pipe if self.opts.stdout else null,
            stderr=pipe if self.opts.stderr else null, env=env, cwd="/",
            start_new_session=True)
        for channel, reader in ((Channel.STDOUT, self.proc.stdout),
                                (Channel.STDERR, self.proc.stderr)):
            if reader is not None:
                self._pumps.append(asyncio.create_task(self._pump(channel, reader)))

    async def _pump(self, channel: int, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(READ_SIZE):
            await self.output.put((channel, data))
        await self.output.put(None)

    async def write(self, data: bytes) -> None:
        if self.proc is not None and self.proc.stdin is not None \
                and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    def resize(self, size: TerminalSize) -> None:
        pass


class PtyExec(_Command):
    """A command on a pseudo-terminal: one output, the terminal's."""

    def __init__(self, opts: ExecOptions) -> None:
        self.output: asyncio.Queue[Output] = asyncio.Queue()
        self.streams = 1
        self.master, self._slave = os.openpty()
        os.set_blocking(self.master, False)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, argv: list[str], env: dict[str, str]) -> None:
        env = {"TERM": "xterm", **env}
        # setsid -c: a new session whose controlling terminal is the pty.
        self.proc = await asyncio.create_subprocess_exec(
            "setsid", "-c", *argv, stdin=self._slave, stdout=self._slave,
            stderr=self._slave, env=env, cwd="/")
        os.close(self._slave)
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the terminal has gone
            data = b""
        if data:
            self.output.put_nowait((Channel.STDOUT, data))
            return
        asyncio.get_running_loop().remove_reader(self.master)
        self.output.put_nowait(None)

    async def write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.master, b"\x04")  # end of input, as a terminal says it

    def resize(self, size: TerminalSize) -> None:
        winsize = struct.pack("HHHH", size.height, size.width, 0, 0)
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, winsize)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(self.master)
        with contextlib.suppress(OSError):
            os.close(self.master)


class Attach:
    """A running container's output as it is written (from its log file),
    and its stdin when the runtime keeps one: ``stdin``, a descriptor the
    session owns (a FIFO's write end, the engine's attach stream)."""

    def __init__(self, *, log: Path, stdin: int | None,
                 running: Callable[[], bool], exit_code: Callable[[], int]) -> None:
        self.output: asyncio.Queue[Output] = asyncio.Queue()
        self.streams = 1
        self._running, self._exit_code = running, exit_code
        self._stdin = stdin
        if stdin is not None:
            os.set_blocking(stdin, False)
        self._task = asyncio.create_task(self._follow(log, podlogs.size(log)))

    async def _follow(self, log: Path, offset: int) -> None:
        with open(log, "rb") as f:
            f.seek(offset)
            while True:
                data = f.read(READ_SIZE)
                if data:
                    await self.output.put((Channel.STDOUT, data))
                elif not self._running():
                    break
                else:
                    await asyncio.sleep(podlogs.FOLLOW_POLL)
        await self.output.put(None)

    async def write(self, data: bytes) -> None:
        while self._stdin is not None and data:
            try:
                data = data[os.write(self._stdin, data):]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return

    def close_stdin(self) -> None:
        if self._stdin is not None:
            os.close(self._stdin)
            self._stdin = None

    def resize(self, size: TerminalSize) -> None:
        pass

    async def wait(self) -> int:
        await self._task
        return self._exit_code()

    def stop(self) -> None:
        self._task.cancel()
        self.close_stdin()


async def _read_client(ws: web.WebSocketResponse, session: Session) -> None:
    async for msg in ws:
        # Some clients (the Python one) send text messages: the same frames.
        if msg.type is WSMsgType.TEXT:
            data = msg.data.encode()
        elif msg.type is WSMsgType.BINARY:
            data = msg.data
        else:
            continue
        if not data:
            continue
        frame = streams.decode(data)
        if frame.channel == Channel.STDIN:
            await session.write(frame.data)
        elif frame.channel == Channel.RESIZE:
            with contextlib.suppress(ValueError):
                session.resize(streams.parse_resize(frame.data))
        elif frame.channel == Channel.CLOSE and frame.data[:1] == bytes((Channel.STDIN,)):
            session.close_stdin()


async def _send_output(ws: web.WebSocketResponse, session: Session) -> None:
    left = session.streams
    while left:
        item = await session.output.get()
        if item is None:
            left -= 1
            continue
        await ws.send_bytes(streams.encode(*item))


async def pump(ws: web.WebSocketResponse, session: Session, *, first_channel: int,
               command: list[str]) -> None:
    """Carries a session over an open WebSocket until the command ends (then
    sends its Status and closes) or the client goes (then stops it)."""
    reader = asyncio.create_task(_read_client(ws, session))
    sender = asyncio.create_task(_send_output(ws, session))
    ended = False
    try:
        await ws.send_bytes(streams.encode(first_channel))
        await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done():
            code = await session.wait()
            ended = True
            status = streams.exit_status(code, command)
            await ws.send_bytes(streams.encode(Channel.ERROR, json.dumps(status).encode()))
    except ConnectionError:
        pass
    finally:
        # The client went away (or the request was cancelled) first: stop it.
        if not ended:
            session.stop()
        for task in (reader, sender):
            task.cancel()
        await ws.close()
