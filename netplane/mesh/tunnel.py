"""Tunnels between node proxies, the shape of Istio's HBONE: one mutual TLS
1.3 connection per pair of nodes, each proxied TCP connection an HTTP/2
CONNECT stream in it (h2, flow-controlled per stream, so one busy stream
holds up no other). Both ends present node certificates from the mesh CA
and check the other's identity; each stream names the source workload's
identity in a header, which the receiving node takes only from a node
allowed to speak for that workload (``authorize``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from netplane.mesh.config import MeshConfig
from netplane.mesh.identity import TRUST_DOMAIN, Authority, Identity, Issued, identity_of
from netplane.mesh.inbox import Inbox

log = logging.getLogger(__name__)

PORT = 15008  # HBONE's port
SOURCE_HEADER = "x-netplane-source"
# The client pod's address (RFC 7239, as HBONE carries it), so that the far
# node can connect from it and the pod sees who is calling.
FORWARDED_HEADER = "forwarded"
READ_SIZE = 65536
IP_TRANSPARENT = 19  # linux/in.h
HANDSHAKE_TIMEOUT = 10.0  # asyncio's default is 60 s: a peer stuck that long holds a link
# Past this much not yet written to the socket, a sender waits for it.
DRAIN_AT = 256 * 1024
WINDOW = 4 * 1024 * 1024  # per stream: a few round trips of a fast flow


class TunnelError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


NODE_NAMESPACE, NODE_PREFIX = "kube-system", "netplane-node."


def node_identity(node: str) -> Identity:
    """What a node proxy's certificate names."""
    return Identity(TRUST_DOMAIN, NODE_NAMESPACE, f"{NODE_PREFIX}{node}")


def node_of(identity: Identity) -> str | None:
    """The node a node proxy's identity names; None for a workload's."""
    if identity.namespace != NODE_NAMESPACE or not identity.service_account.startswith(
            NODE_PREFIX):
        return None
    return identity.service_account.removeprefix(NODE_PREFIX)


def voucher(mesh: Callable[[], MeshConfig | None]) -> Vouch:
    """A node may speak from the address of a pod of that workload that
    runs on it, as the current mesh configuration has it."""
    def vouches(node: Identity, source: Identity, ip: str) -> bool:
        name, config = node_of(node), mesh()
        return name is not None and config is not None and \
            config.identity_of.get(ip) == source and config.pod_nodes.get(ip) == name
    return vouches


def authorizer(mesh: Callable[[], MeshConfig | None], local_node: str) -> Authorize:
    """Streams into ``local_node`` as the current mesh configuration allows
    them (see MeshConfig.may_tunnel)."""
    def allowed(node: Identity, source: Identity, target: str) -> bool:
        name, config = node_of(node), mesh()
        return name is not None and config is not None and \
            config.may_tunnel(name, source, target, local_node)
    return allowed


@dataclass
class Credentials:
    """A node's certificate chain, key and the cluster root, as files (the
    ssl module loads certificates from files only), in a private folder.
    ``renew`` puts new ones in place: server contexts made so far take them
    for their next handshakes, client contexts made from now on use them;
    connections already up keep what they were made with."""
    folder: Path
    issued: Issued
    chain: list[x509.Certificate]  # the intermediates: the mesh CA
    root: x509.Certificate
    _servers: list[ssl.SSLContext] = field(default_factory=list, repr=False)

    @classmethod
    def write(cls, issued: Issued, chain: list[x509.Certificate], root: x509.Certificate,
              folder: Path | None = None) -> Credentials:
        folder = folder or Path(tempfile.mkdtemp(prefix="np-mesh-"))
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        out = cls(folder, issued, chain, root)
        out._files()
        return out

    @classmethod
    def of(cls, issued: Issued, authority: Authority, folder: Path | None = None
           ) -> Credentials:
        """Credentials issued by ``authority`` (whose CA certificate is the chain)."""
        return cls.write(issued, [authority.cert], authority.root, folder)

    def _files(self) -> None:
        pem = serialization.Encoding.PEM
        (self.folder / "chain.pem.tmp").write_bytes(
            self.issued.cert.public_bytes(pem) + b"".join(c.public_bytes(pem) for c in self.chain))
        key = self.folder / "key.pem.tmp"
        key.touch(0o600)
        key.write_bytes(self.issued.key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        (self.folder / "root.pem.tmp").write_bytes(self.root.public_bytes(pem))
        for name in ("chain.pem", "key.pem", "root.pem"):
            (self.folder / f"{name}.tmp").replace(self.folder / name)

    def renew(self, issued: Issued, chain: list[x509.Certificate]) -> None:
        self.issued, self.chain = issued, chain
        self._files()
        for ctx in self._servers:
            ctx.load_cert_chain(self.folder / "chain.pem", self.folder / "key.pem")

    def context(self, *, server: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = False  # identities are SPIFFE URIs, checked after the handshake
        ctx.load_verify_locations(self.folder / "root.pem")
        ctx.load_cert_chain(self.folder / "chain.pem", self.folder / "key.pem")
        ctx.set_alpn_protocols(["h2"])
        if server:
            self._servers.append(ctx)
        return ctx


def peer_identity(writer: asyncio.StreamWriter) -> Identity:
    """The identity the other end's certificate proves (its chain was
    verified against the root in the handshake)."""
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    if not der:
        raise TunnelError(403, "the peer presented no certificate")
    return identity_of(x509.load_der_x509_certificate(der))


@dataclass
class Stream:
    """One CONNECT stream: bytes in, bytes out, end of input as b""."""
    link: _Link
    id: int
    chunks: Inbox[bytes] = field(default_factory=Inbox)  # what came, not read yet
    window: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop()
                                          .create_future())
    closed: bool = False  # this side's input has ended
    remote_ended: bool = False  # the other side's has
    # Where the stream's bytes go as they arrive, instead of ``chunks``.
    sink: _Bridge | None = None

    def put(self, chunk: bytes) -> None:
        self.chunks.put(chunk)

    async def read(self) -> bytes:
        chunk = await self.chunks.get()
        if chunk:
            self.link.consumed(self.id, len(chunk))
        else:
            self.chunks.items.appendleft(chunk)  # the end stays the end for later reads
        return chunk

    async def write(self, data: bytes) -> None:
        await self.link.send(self.id, data)

    def end(self) -> None:
        """No more bytes from this side."""
        if not self.closed:
            self.closed = True
            self.link.end(self.id)
            if self.remote_ended:
                self.link.forget(self)


class _LinkProtocol(asyncio.StreamReaderProtocol):
    """A tunnel connection's protocol: once a link has taken it, what
    arrives goes straight to the link's HTTP/2 state (no stream reader and
    no reading task between them); writes and their backpressure are the
    stream writer's."""

    def __init__(self) -> None:
        super().__init__(asyncio.StreamReader(limit=READ_SIZE * 4))
        self.link: _Link | None = None
        self.early = bytearray()  # before the link took the connection
        self.ended = False  # before it did, and how
        self.error: Exception | None = None

    def attach(self, link: _Link) -> None:
        self.link = link
        if self.early:
            link.receive(bytes(self.early))
            self.early.clear()
        if self.ended:
            link.lost(self.error)

    def data_received(self, data: bytes) -> None:
        if self.link is None:
            self.early += data
        else:
            self.link.receive(data)

    def eof_received(self) -> bool:
        self._end(None)
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)
        super().connection_lost(exc)

    def _end(self, exc: Exception | None) -> None:
        if self.link is not None:
            self.link.lost(exc)
        elif not self.ended:
            self.ended, self.error = True, exc


class _Link:
    """An HTTP/2 connection over TLS, either end."""

    def __init__(self, protocol: _LinkProtocol, writer: asyncio.StreamWriter, *,
                 client: bool, on_stream: Callable[[Stream, dict[str, str]],
                                                   Coroutine[Any, Any, None]] | None = None
                 ) -> None:
        self.protocol, self.writer = protocol, writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=client, header_encoding="utf-8"))
        self.streams: dict[int, Stream] = {}
        self.on_stream = on_stream
        self.dead = False
        self.tasks: set[asyncio.Task[None]] = set()
        self._flush_due = False
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> asyncio.Future[None]:
        """Speaks first, then takes what arrives; done when the connection ends."""
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        self.h2.increment_flow_control_window(WINDOW * 4)
        self.flush()
        self.protocol.attach(self)
        return self.ended

    def flush(self) -> None:
        """Sends what h2 has framed, once per turn of the event loop: the
        frames of every stream and event of this turn go in one write (one
        TLS record, one system call) instead of one each."""
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def receive(self, data: bytes) -> None:
        if self.dead:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.flush()  # h2's GOAWAY
            self.lost(e)
            return
        for event in events:
            self._event(event)
        self.flush()

    def lost(self, exc: Exception | None) -> None:
        """The connection has ended (or is ended here): so has every stream."""
        if self.dead:
            return
        self.dead = True
        if exc is not None:
            log.info("tunnel connection ended: %s", exc)
        for stream in self.streams.values():
            if stream.sink is not None:
                stream.sink.reset()
            stream.put(b"")
            stream.window.set()
            if not stream.answered.done():
                stream.answered.set_exception(TunnelError(502, "the tunnel closed"))
        self.writer.close()
        if not self.ended.done():
            self.ended.set_result(None)

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            opened = self.streams[event.stream_id] = Stream(self, event.stream_id)
            opened.answered.set_result(0)  # only the opening end waits for an answer
            headers = {str(k): str(v) for k, v in event.headers or ()}
            if self.on_stream is not None:
                task = asyncio.get_running_loop().create_task(self.on_stream(opened, headers))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        elif isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.answered.done():
                status = dict((str(k), str(v)) for k, v in event.headers or ()).get(":status")
                stream.answered.set_result(int(status or 0))
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.sink is not None:
                stream.sink.deliver(event.data or b"", event.flow_controlled_length or 0)
            elif stream is not None and event.data:
                stream.put(event.data)
            elif event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length,
                                                  event.stream_id)
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.remote_ended = True
                if isinstance(event, h2.events.StreamReset) or stream.closed:
                    self.forget(stream)
                if stream.sink is not None:
                    if isinstance(event, h2.events.StreamReset):
                        stream.sink.reset()
                    else:
                        stream.sink.remote_ended()
                stream.put(b"")
                if not stream.answered.done():
                    stream.answered.set_exception(TunnelError(502, "the stream was reset"))
        elif isinstance(event, h2.events.WindowUpdated):
            for s in self.streams.values() if not event.stream_id else \
                    [self.streams[event.stream_id]] if event.stream_id in self.streams else []:
                s.window.set()
                if s.sink is not None:
                    s.sink.window_opened()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.writer.close()

    def forget(self, stream: Stream) -> None:
        """A stream ended both ways (or reset) is no longer the link's."""
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]

    def send_now(self, stream_id: int, data: bytes) -> int:
        """Frames as much of ``data`` as the stream's window takes; how much."""
        if self.dead:
            return 0
        sent = 0
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            while sent < len(data):
                size = min(self.h2.local_flow_control_window(stream_id),
                           self.h2.max_outbound_frame_size, len(data) - sent)
                if size <= 0:
                    break
                self.h2.send_data(stream_id, data[sent:sent + size])
                sent += size
        if sent:
            self.flush()
        return sent

    def reset(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream_id)
            self.flush()

    def consumed(self, stream_id: int, size: int) -> None:
        """Room again for what the reader took: flow control is backpressure."""
        with contextlib.suppress(h2.exceptions.StreamClosedError, KeyError):
            self.h2.acknowledge_received_data(size, stream_id)
            self.flush()

    async def send(self, stream_id: int, data: bytes) -> None:
        if not self.dead and len(data) <= min(self.h2.local_flow_control_window(stream_id),
                                              self.h2.max_outbound_frame_size):
            # One frame, and room for it: no waiting (a request's usual case).
            self.h2.send_data(stream_id, data)
            self.flush()
            if self.writer.transport.get_write_buffer_size() > DRAIN_AT:
                await self.writer.drain()
            return
        view = memoryview(data)
        while view:
            if self.dead:
                raise TunnelError(502, "the tunnel closed")
            window = min(self.h2.local_flow_control_window(stream_id),
                         self.h2.max_outbound_frame_size)
            if window <= 0:
                stream = self.streams[stream_id]
                stream.window.clear()
                await stream.window.wait()
                continue
            self.h2.send_data(stream_id, bytes(view[:window]))
            view = view[window:]
            self.flush()
            await self.writer.drain()

    def end(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.h2.end_stream(stream_id)
            self.flush()

    def respond(self, stream: Stream, status: int, *, end: bool = False) -> None:
        self.h2.send_headers(stream.id, [(":status", str(status))], end_stream=end)
        self.flush()

    def open(self, target: str, source: Identity, source_ip: str | None = None) -> Stream:
        stream_id = self.h2.get_next_available_stream_id()
        stream = self.streams[stream_id] = Stream(self, stream_id)
        headers = [(":method", "CONNECT"), (":authority", target), (SOURCE_HEADER, str(source))]
        if source_ip:
            headers.append((FORWARDED_HEADER, f"for={source_ip}"))
        self.h2.send_headers(stream_id, headers)
        self.flush()
        return stream


class _Bridge(asyncio.Protocol):
    """A TCP connection joined to a stream callback to callback: what comes
    on either is written to the other in the same turn of the event loop,
    with no queue or task between them. Backpressure both ways: the
    stream's window holds the TCP side's reading, the TCP side's full
    buffer holds the stream's window."""

    def __init__(self, stream: Stream) -> None:
        self.stream, self.link = stream, stream.link
        self.transport: asyncio.Transport | None = None
        self.pending = b""  # from the TCP side, waiting for the stream's window
        self.eof = False  # the TCP side's input has ended
        self.paused = False  # the TCP side's write buffer is full
        self.unacked = 0  # stream bytes written while it was
        self.lost = False
        self.started = False  # the stream is answered: bytes may go on it
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.pause_reading()  # until the stream is answered (start)
        self.stream.sink = self
        while self.stream.chunks.items:  # what came before
            chunk = self.stream.chunks.items.popleft()
            if chunk:
                self.deliver(chunk, len(chunk))

    def start(self) -> None:
        assert self.transport is not None
        self.started = True
        if self.stream.remote_ended:
            self.remote_ended()
        if self.pending:
            self.window_opened()
        elif self.eof:
            self.stream.end()
            self._close_if_done()
        elif not self.lost:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        # (uvloop starts reading after connection_made, whatever it paused)
        if self.pending or not self.started:
            self.pending += data
        else:
            sent = self.link.send_now(self.stream.id, data)
            self.pending = data[sent:]
        if self.pending:
            self.transport.pause_reading()

    def window_opened(self) -> None:
        if self.pending and self.started and self.transport is not None:
            sent = self.link.send_now(self.stream.id, self.pending)
            self.pending = self.pending[sent:]
            if not self.pending:
                if self.eof:
                    self.stream.end()
                    self._close_if_done()
                elif not self.lost:
                    self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        if not self.pending and self.started:
            self.stream.end()
        self._close_if_done()
        return True  # the other direction goes on

    def deliver(self, data: bytes, size: int) -> None:
        if self.lost or self.transport is None:
            self.link.consumed(self.stream.id, size)
            return
        self.transport.write(data)
        if self.paused:
            self.unacked += size
        else:
            self.link.consumed(self.stream.id, size)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.unacked:
            self.link.consumed(self.stream.id, self.unacked)
            self.unacked = 0

    def remote_ended(self) -> None:
        """The stream's input has ended: so does the TCP side's output."""
        if self.transport is None or self.lost:
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.eof and self.stream.remote_ended and not self.pending and \
                self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.stream.closed:
            if exc is not None or not self.eof:
                self.stream.closed = True
                self.link.reset(self.stream.id)
                self.link.forget(self.stream)
            else:
                self.stream.end()
        if self.unacked:
            self.link.consumed(self.stream.id, self.unacked)
            self.unacked = 0
        if not self.done.done():
            self.done.set_result(None)


async def splice(stream: Stream, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> tuple[int, int]:
    """Bytes both ways between a stream and a TCP connection until both
    directions have ended; how many went into the stream and came out."""
    counts = [0, 0]

    async def inbound() -> None:
        while chunk := await stream.read():
            counts[1] += len(chunk)
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    async def outbound() -> None:
        with contextlib.suppress(OSError, TunnelError):
            while data := await reader.read(READ_SIZE):
                counts[0] += len(data)
                await stream.write(data)
        stream.end()

    try:
        await asyncio.gather(inbound(), outbound())
    finally:
        writer.close()
    return counts[0], counts[1]


Authorize = Callable[[Identity, Identity, str], bool]  # (node, source, target) -> allowed
# (direction "in" or "out", outcome "connected", "handshake_failed" or "refused")
Events = Callable[[str, str], None]
# (target "ip:port", the address to connect from or None) -> a connected socket
Dial = Callable[[str, str | None], Awaitable[socket.socket]]
# (node, source workload, address) -> whether that node may speak from that address
Vouch = Callable[[Identity, Identity, str], bool]


async def _dial_tcp(target: str, source_ip: str | None = None) -> socket.socket:
    """A connection to ``target``; from ``source_ip`` when given, a
    transparent socket (IP_TRANSPARENT: an address not the node's own, the
    replies brought back to it by the node's mark and route, see
    capture.py), else from the node's own address."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # whatever the loop does
        if source_ip is not None:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            sock.bind((source_ip, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Listening:
    """The tunnel server's listening socket and its accept loop."""
    sock: socket.socket
    task: asyncio.Task[None]

    @property
    def sockets(self) -> list[socket.socket]:
        return [self.sock]

    def close(self) -> None:
        """No new connections; those already up go on."""
        self.task.cancel()
        self.sock.close()


class TunnelServer:
    """The receiving end: CONNECT streams to the node's pods."""

    def __init__(self, credentials: Credentials, authorize: Authorize, *,
                 dial: Dial = _dial_tcp, events: Events | None = None,
                 vouch: Vouch | None = None) -> None:
        self.credentials, self.authorize, self.dial = credentials, authorize, dial
        # Whether a peer's claim of the client's address holds; None: never
        # connect from a claimed address.
        self.vouch = vouch
        self.events = events or (lambda direction, outcome: None)
        self.links: list[_Link] = []
        self._tls: ssl.SSLContext | None = None

    async def serve(self, host: str, port: int = PORT) -> Listening:
        # Each accepted socket is handed to TLS whole (connect_accepted_socket),
        # so that a failed handshake is seen and counted, and no byte of the
        # client's hello can be read before TLS takes the connection.
        self._tls = self.credentials.context(server=True)
        sock = socket.create_server((host, port))
        sock.setblocking(False)
        return Listening(sock, asyncio.get_running_loop().create_task(self._accept(sock)))

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        handshakes: set[asyncio.Task[None]] = set()
        try:
            while True:
                conn, _ = await loop.sock_accept(sock)
                with contextlib.suppress(OSError):  # small frames go at once
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                task = loop.create_task(self._handshake(conn))
                handshakes.add(task)
                task.add_done_callback(handshakes.discard)
        finally:
            for task in handshakes:
                task.cancel()

    async def _handshake(self, conn: socket.socket) -> None:
        assert self._tls is not None
        loop = asyncio.get_running_loop()
        # The protocol made here, not the one returned: uvloop returns its TLS layer.
        protocol = _LinkProtocol()
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self._tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, OSError, TimeoutError) as e:
            self.events("in", "handshake_failed")
            log.info("tunnel handshake from %s failed: %s", conn.getpeername(), e)
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        await self._accepted(protocol, writer)

    async def _accepted(self, protocol: _LinkProtocol, writer: asyncio.StreamWriter) -> None:
        try:
            peer = peer_identity(writer)
        except (TunnelError, ValueError) as e:
            self.events("in", "refused")
            log.warning("tunnel refused: %s", e)
            writer.close()
            return
        self.events("in", "connected")

        async def on_stream(stream: Stream, headers: dict[str, str]) -> None:
            await self._stream(link, peer, stream, headers)

        link = _Link(protocol, writer, client=False, on_stream=on_stream)
        self.links.append(link)
        try:
            await link.start()
        finally:
            self.links.remove(link)

    async def _stream(self, link: _Link, peer: Identity, stream: Stream,
                      headers: dict[str, str]) -> None:
        target = headers.get(":authority", "")
        if headers.get(":method") != "CONNECT" or not target:
            link.respond(stream, 405, end=True)
            return
        try:
            source = Identity.parse(headers.get(SOURCE_HEADER, ""))
        except ValueError:
            link.respond(stream, 400, end=True)
            return
        if not self.authorize(peer, source, target):
            link.respond(stream, 403, end=True)
            return
        claimed = headers.get(FORWARDED_HEADER, "").removeprefix("for=").strip() or None
        source_ip = claimed if claimed and self.vouch is not None and \
            self.vouch(peer, source, claimed) else None
        try:
            try:
                sock = await self.dial(target, source_ip)
            except OSError:
                if source_ip is None:
                    raise
                # The client's address cannot be used here: the node's own.
                sock = await self.dial(target, None)
            bridge = _Bridge(stream)
            try:
                await asyncio.get_running_loop().create_connection(lambda: bridge, sock=sock)
            except BaseException:
                sock.close()
                raise
        except OSError:
            link.respond(stream, 503, end=True)
            return
        link.respond(stream, 200)
        bridge.start()
        await bridge.done


class TunnelClient:
    """The sending end: one connection per destination node, opened on
    first use, streams opened in it."""

    def __init__(self, credentials: Credentials, *, events: Events | None = None) -> None:
        self.credentials = credentials
        self.events = events or (lambda direction, outcome: None)
        self.links: dict[str, _Link] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    async def _link(self, address: str, expect: Identity) -> _Link:
        link = self.links.get(address)
        if link is not None and not link.dead:
            return link
        async with self._opening.setdefault(address, asyncio.Lock()):
            link = self.links.get(address)
            if link is not None and not link.dead:
                return link
            host, _, port = address.rpartition(":")
            loop = asyncio.get_running_loop()
            protocol = _LinkProtocol()
            try:
                transport, _ = await loop.create_connection(
                    lambda: protocol, host, int(port),
                    ssl=self.credentials.context(server=False),
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
            except (ssl.SSLError, TimeoutError):
                self.events("out", "handshake_failed")
                raise
            writer = asyncio.StreamWriter(transport, protocol, None, loop)
            got = peer_identity(writer)
            if got != expect:
                self.events("out", "refused")
                writer.close()
                raise TunnelError(403, f"{address} is {got}, not {expect}")
            self.events("out", "connected")
            link = self.links[address] = _Link(protocol, writer, client=True)
            link.start()
            return link

    async def open(self, address: str, node: Identity, target: str, source: Identity,
                   source_ip: str | None = None) -> Stream:
        """A stream to ``target`` ("ip:port") through the node at
        ``address``, which must prove to be ``node``, for ``source`` (whose
        pod's address is ``source_ip``); TunnelError when the far end
        refuses it."""
        link = await self._link(address, node)
        stream = link.open(target, source, source_ip)
        status = await stream.answered
        if status != 200:
            raise TunnelError(status, f"{node} answered {status} for {target}")
        return stream

    def close(self) -> None:
        for link in self.links.values():
            link.writer.close()
        self.links.clear()
