"""Port-forward: TCP connections to 127.0.0.1:PORT inside a pod's network
namespace, carried either over the WebSocket channel protocol (per port a
data and an error channel, as the Python client speaks it) or over SPDY/3.1
streams tunnelled through the WebSocket (as kubectl speaks it: per forwarded
connection an ``error`` and a ``data`` stream sharing a ``requestID``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from netplane.api import streams
from netplane.net import netns
from netplane.net.netns import NsType
from netplane.node import spdy

log = logging.getLogger(__name__)
READ_SIZE = 64 * 1024
PAIR_WAIT = 10.0
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def socket_in_netns(pid: int) -> socket.socket:
    """A TCP socket in the network namespace of process ``pid``: made by a
    short-lived thread that enters the namespace (the socket stays in it)."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            netns.setns(f"/proc/{pid}/ns/net", NsType.NET)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as e:  # handed back to the caller
            made.append(e)
        # The thread ends here: nothing else ever runs in the pod's netns.

    thread = threading.Thread(target=make, name=f"netns-{pid}", daemon=True)
    thread.start()
    thread.join()
    got = made[0]
    if isinstance(got, BaseException):
        raise got
    return got


async def dial(pid: int, port: int) -> Conn:
    sock = await asyncio.to_thread(socket_in_netns, pid)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


Dial = Callable[[int], Awaitable[Conn]]


def dial_error(port: int, e: OSError, pod: str) -> str:
    return (f"error forwarding port {port} to pod {pod}: failed to connect to "
            f"localhost:{port} inside the pod: {e.strerror or e}")


# -- WebSocket channels --

async def _pod_to_ws(ws: web.WebSocketResponse, index: int, conn: Conn) -> None:
    reader = conn[0]
    while data := await reader.read(READ_SIZE):
        await ws.send_bytes(streams.encode(2 * index, data))


async def serve_channels(ws: web.WebSocketResponse, ports: list[int], dial_port: Dial,
                         pod: str) -> None:
    """One connection per port for the life of the WebSocket."""
    conns: dict[int, Conn] = {}
    tasks: list[asyncio.Task[None]] = []
    for i, port in enumerate(ports):
        for channel in (2 * i, 2 * i + 1):
            await ws.send_bytes(streams.encode(channel, streams.port_prefix(port)))
    for i, port in enumerate(ports):
        try:
            conns[i] = await dial_port(port)
        except OSError as e:
            await ws.send_bytes(streams.encode(2 * i + 1, dial_error(port, e, pod).encode()))
            continue
        tasks.append(asyncio.create_task(_pod_to_ws(ws, i, conns[i])))
    reader = asyncio.create_task(_ws_to_pods(ws, conns))
    try:
        if tasks:
            await asyncio.wait({reader, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (reader, *tasks):
            t.cancel()
        for _, writer in conns.values():
            writer.close()
        await ws.close()


async def _ws_to_pods(ws: web.WebSocketResponse, conns: dict[int, Conn]) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.BINARY or not msg.data:
            continue
        frame = streams.decode(msg.data)
        conn = conns.get(frame.channel // 2)
        if conn is not None and frame.channel % 2 == 0 and frame.data:
            conn[1].write(frame.data)
            with contextlib.suppress(ConnectionError):
                await conn[1].drain()


# -- SPDY --

@dataclass
class _Pair:
    port: int
    error_id: int | None = None
    data_id: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    inbound: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class SpdyForwarder:
    """The server side of kubectl's port-forward SPDY session."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], dial_port: Dial,
                 pod: str) -> None:
        self._send, self._dial, self._pod = send, dial_port, pod
        self._reader, self._writer = spdy.Reader(), spdy.Writer()
        self._lock = asyncio.Lock()
        self._pairs: dict[str, _Pair] = {}
        self._by_data: dict[int, _Pair] = {}
        self.closed = False

    async def write(self, frame: spdy.Frame) -> None:
        async with self._lock:  # header compression state is ordered
            await self._send(self._writer.encode(frame))

    async def feed(self, data: bytes) -> None:
        for frame in self._reader.feed(data):
            await self._handle(frame)

    async def _handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStream):
            await self._new_stream(frame)
        elif isinstance(frame, spdy.Data):
            pair = self._by_data.get(frame.stream_id)
            if pair is not None:
                if frame.data:
                    pair.inbound.put_nowait(frame.data)
                if frame.fin:
                    pair.inbound.put_nowait(None)
        elif isinstance(frame, spdy.RstStream):
            pair = self._by_data.pop(frame.stream_id, None)
            if pair is not None and pair.task is not None:
                pair.task.cancel()
        elif isinstance(frame, spdy.Ping) and frame.ping_id % 2 == 1:
            await self.write(frame)  # a client's ping: echoed
        elif isinstance(frame, spdy.GoAway):
            self.closed = True

    async def _new_stream(self, frame: spdy.SynStream) -> None:
        await self.write(spdy.SynReply(frame.stream_id))
        kind = frame.headers.get("streamtype", "")
        request = frame.headers.get("requestid", str(frame.stream_id))
        try:
            port = int(frame.headers.get("port", ""))
        except ValueError:
            await self.write(spdy.RstStream(frame.stream_id, spdy.RstStatus.PROTOCOL_ERROR))
            return
        pair = self._pairs.setdefault(request, _Pair(port))
        if kind == "error":
            pair.error_id = frame.stream_id
        elif kind == "data":
            pair.data_id = frame.stream_id
            self._by_data[frame.stream_id] = pair
            pair.task = asyncio.create_task(self._forward(request, pair))
        else:
            await self.write(spdy.RstStream(frame.stream_id, spdy.RstStatus.PROTOCOL_ERROR))
            return
        if pair.error_id is not None and pair.data_id is not None:
            pair.ready.set()

    async def _forward(self, request: str, pair: _Pair) -> None:
        assert pair.data_id is not None
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pair.ready.wait(), PAIR_WAIT)
            try:
                reader, writer = await self._dial(pair.port)
            except OSError as e:
                if pair.error_id is not None:
                    msg = dial_error(pair.port, e, self._pod).encode()
                    await self.write(spdy.Data(pair.error_id, msg))
                return
            inbound = asyncio.create_task(self._to_pod(pair, writer))
            try:
                while data := await reader.read(READ_SIZE):
                    await self.write(spdy.Data(pair.data_id, data))
            finally:
                inbound.cancel()
                writer.close()
        except ConnectionError as e:
            log.debug("port-forward %s to port %d ended: %s", request, pair.port, e)
        finally:
            await self._finish(request, pair)

    async def _finish(self, request: str, pair: _Pair) -> None:
        self._pairs.pop(request, None)
        if pair.data_id is not None:
            self._by_data.pop(pair.data_id, None)
        with contextlib.suppress(ConnectionError, RuntimeError):
            for sid in (pair.data_id, pair.error_id):
                if sid is not None:
                    await self.write(spdy.Data(sid, b"", fin=True))

    @staticmethod
    async def _to_pod(pair: _Pair, writer: asyncio.StreamWriter) -> None:
        while (data := await pair.inbound.get()) is not None:
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    def stop(self) -> None:
        for pair in list(self._pairs.values()):
            if pair.task is not None:
                pair.task.cancel()


async def serve_spdy_tunnel(ws: web.WebSocketResponse, dial_port: Dial, pod: str) -> None:
    """SPDY frames carried as a byte stream in binary WebSocket messages."""
    fwd = SpdyForwarder(ws.send_bytes, dial_port, pod)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await fwd.feed(msg.data)
            if fwd.closed:
                break
    except spdy.ProtocolError as e:
        log.info("port-forward to %s: %s", pod, e)
    finally:
        fwd.stop()
        await ws.close()


def pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}/ns/net")
