"""``netplane exec POD -- CMD``: runs a command inside a pod's container
through the API server's ``exec`` subresource over WebSocket
(``v5.channel.k8s.io``), like ``kubectl exec``: from any machine with a
kubeconfig, or over the lab's Unix socket. ``-i`` sends this terminal's
stdin, ``-t`` gives the command a terminal (this one goes raw meanwhile);
the command's exit code is returned.

:func:`container_pid` finds a container's process through its agent's
state on this machine (the lab), for commands that must enter the pod's
namespaces themselves (``netplane trace``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import sys
import termios
import threading
import tty as ttymode
from collections.abc import Iterator
from urllib.parse import urlencode

import aiohttp

from netplane.api import meta, streams
from netplane.api.meta import Obj
from netplane.api.streams import Channel
from netplane.cli.objects import CliError
from netplane.cluster.client import Client, Connection
from netplane.lab.paths import LabPaths
from netplane.node.runtime.process import ContainerStatus, ProcessRuntime


def container_pid(pod: Obj, container: str | None, lab: LabPaths) -> int:
    """The pid of a running container of ``pod``, from its agent's state."""
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    name = container or names[0]
    if name not in names:
        raise CliError(f"error: container {name} is not valid for pod {meta.name(pod)} "
                       f"(containers: {', '.join(names)})")
    node = pod["spec"].get("nodeName")
    if not node:
        raise CliError(f"error: pod {meta.name(pod)} is not scheduled to a node yet")
    runtime = ProcessRuntime(state_dir=lab.node_dir(node) / "runtime")
    state = runtime.container_state(meta.uid(pod), name)
    if state.status is not ContainerStatus.RUNNING or state.pid is None:
        raise CliError(f"error: container {name} of pod {meta.name(pod)} is not running "
                       f"(state: {state.status.value})")
    return state.pid


def session_for(conn: Connection) -> aiohttp.ClientSession:
    """A session for streaming calls (no overall timeout)."""
    connector: aiohttp.BaseConnector
    if conn.socket:
        connector = aiohttp.UnixConnector(path=conn.socket)
    else:
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=conn.ca_file))
    headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
    return aiohttp.ClientSession(connector=connector, headers=headers,
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))


async def refusal(session: aiohttp.ClientSession, url: str) -> CliError:
    """Why the server would not stream: its Status, asked for plainly."""
    async with session.get(url) as resp:
        text = await resp.text()
    try:
        message = str(json.loads(text).get("message", text))
    except ValueError:
        message = text.strip() or f"HTTP {resp.status}"
    return CliError(f"Error from server: {message}")


def exec_query(command: list[str], *, container: str | None, stdin: bool, tty: bool) -> str:
    params = [("command", c) for c in command]
    params += [("stdout", "true"), ("stderr", "false" if tty else "true")]
    params += [("stdin", "true")] if stdin else []
    params += [("tty", "true")] if tty else []
    params += [("container", container)] if container else []
    return urlencode(params)


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]) -> None:
    """In a thread: this process's stdin, chunk by chunk, then b"" at its end."""
    while True:
        try:
            data = os.read(sys.stdin.fileno(), 32 * 1024)
        except OSError:
            data = b""
        loop.call_soon_threadsafe(queue.put_nowait, data)
        if not data:
            return


async def _send_stdin(ws: aiohttp.ClientWebSocketResponse) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(loop, queue), daemon=True).start()
    while data := await queue.get():
        await ws.send_bytes(streams.encode(Channel.STDIN, data))
    if ws.protocol == streams.V5:
        await ws.send_bytes(streams.close_frame(Channel.STDIN))


def _terminal_size() -> streams.TerminalSize:
    size = shutil.get_terminal_size()
    return streams.TerminalSize(size.columns, size.lines)


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> int:
    code = 0
    out, err = sys.stdout.buffer, sys.stderr.buffer
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.BINARY or not msg.data:
            continue
        frame = streams.decode(msg.data)
        if frame.channel == Channel.STDOUT:
            out.write(frame.data)
            out.flush()
        elif frame.channel == Channel.STDERR:
            err.write(frame.data)
            err.flush()
        elif frame.channel == Channel.ERROR and frame.data:
            status = json.loads(frame.data)
            code = streams.exit_code(status)
            if code and status.get("reason") != streams.NON_ZERO_EXIT:
                err.write(f"error: {status.get('message', 'exec failed')}\n".encode())
                err.flush()
    return code


async def _session(ws: aiohttp.ClientWebSocketResponse, *, stdin: bool, tty: bool) -> int:
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(_send_stdin(ws))] if stdin else []
    if tty:
        async def resize() -> None:
            await ws.send_bytes(streams.resize_frame(_terminal_size()))

        await resize()
        loop.add_signal_handler(signal.SIGWINCH, lambda: tasks.append(
            asyncio.create_task(resize())))
    try:
        return await _receive(ws)
    finally:
        if tty:
            loop.remove_signal_handler(signal.SIGWINCH)
        for t in tasks:
            t.cancel()


@contextlib.contextmanager
def _raw_terminal(wanted: bool) -> Iterator[None]:
    fd = sys.stdin.fileno()
    if not wanted or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    ttymode.setraw(fd, termios.TCSADRAIN)  # keeps input typed ahead
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def exec_in_pod(client: Client, pod_name: str, command: list[str], *, namespace: str,
                      container: str | None, stdin: bool = False, tty: bool = False) -> int:
    """Runs ``command`` in the pod; returns its exit code."""
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CliError("error: give a command: netplane exec POD -- CMD")
    path = f"/api/v1/namespaces/{namespace}/pods/{pod_name}/exec"
    url = client.conn.base() + path + "?" + exec_query(command, container=container,
                                                        stdin=stdin, tty=tty)
    async with session_for(client.conn) as session:
        try:
            ws = await session.ws_connect(url, protocols=streams.EXEC_PROTOCOLS,
                                          max_msg_size=0)
        except aiohttp.WSServerHandshakeError:
            raise await refusal(session, url) from None
        except (aiohttp.ClientError, OSError) as e:
            raise CliError(f"error: cannot reach the API server: {e}") from None
        async with ws:
            with _raw_terminal(tty):
                return await _session(ws, stdin=stdin, tty=tty)
