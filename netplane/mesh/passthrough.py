"""L4: captured connections of enrolled pods to Service ports that are not
HTTP, carried whole. The node proxy picks an endpoint as it does for a
request (least of two in flight, ejected ones skipped); one on another
node is reached through the mutual-TLS tunnel to that node (with the
client's identity), so encryption does not depend on the protocol, and
one here over TCP. Authorization applies as far as L4 can tell (source
and port: a policy's methods and paths never match a byte stream)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from prometheus_client import Counter

from netplane.mesh.capture import STREAM_PORT, original_destination
from netplane.mesh.proxy import Proxy
from netplane.mesh.resilience import Try
from netplane.mesh.routes import BackendKey
from netplane.mesh.tunnel import READ_SIZE, TunnelError, splice

log = logging.getLogger(__name__)
LABELS = ("source_workload", "source_namespace", "destination_service")


class Passthrough:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        r = proxy.metrics.registry
        self.opened = Counter("netplane_mesh_tcp_connections_opened",
                              "TCP connections the node proxy carried (L4).", LABELS, registry=r)
        self.closed = Counter("netplane_mesh_tcp_connections_closed",
                              "Of those, the ones that have ended.", LABELS, registry=r)
        self.sent = Counter("netplane_mesh_tcp_sent_bytes",
                            "Bytes from clients to their endpoints (L4).", LABELS, registry=r)
        self.received = Counter("netplane_mesh_tcp_received_bytes",
                                "Bytes from endpoints to their clients (L4).", LABELS,
                                registry=r)
        self.refused = Counter("netplane_mesh_tcp_connections_refused",
                               "L4 connections closed unserved: no endpoint, no way there, "
                               "or denied.", (*LABELS, "reason"), registry=r)

    async def serve(self, host: str, port: int = STREAM_PORT) -> asyncio.Server:
        return await asyncio.start_server(self.handle, host, port)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mesh = self.proxy.mesh
        client = str(writer.get_extra_info("peername")[0])
        dst = original_destination(writer.get_extra_info("socket"))
        target = mesh.vips.get(dst) if mesh is not None and dst is not None else None
        if mesh is None or target is None:
            writer.close()
            return
        who = mesh.identity_of.get(client)
        labels = (str(who) if who else client, who.namespace if who else "",
                  f"{target.name}.{target.namespace}.svc.cluster.local")
        balancer = self.proxy.backends.get(BackendKey(target.namespace, target.name,
                                                      target.port))
        endpoint = balancer.choose() if balancer is not None else None
        if balancer is None or endpoint is None:
            self.refused.labels(*labels, "no_healthy_upstream").inc()
            writer.close()
            return
        if not mesh.authorize(who, endpoint.address, "", "").allowed:
            self.refused.labels(*labels, "rbac_access_denied").inc()
            writer.close()
            return
        self.opened.labels(*labels).inc()
        endpoint.in_flight += 1
        try:
            await self._carry(reader, writer, endpoint.address, client, labels)
            balancer.report(endpoint, Try(code=200))
        except (OSError, TunnelError, ssl.SSLError) as e:
            balancer.report(endpoint, Try(error="connect"))
            self.refused.labels(*labels, "upstream_connect_error").inc()
            log.debug("L4 %s -> %s: %s", client, endpoint.address, e)
            writer.close()
        finally:
            endpoint.in_flight -= 1
            self.closed.labels(*labels).inc()

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     address: str, client: str, labels: tuple[str, str, str]) -> None:
        via = self.proxy.via(address, client)
        tunnels = self.proxy.upstreams.tunnels
        if via is not None and tunnels is not None:
            stream = await tunnels.open(via.tunnel, via.node, address, via.source,
                                        via.source_ip)
            sent, received = await splice(stream, reader, writer)
        else:
            host, _, port = address.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            try:
                sent, received = await asyncio.gather(_pipe(reader, up_writer),
                                                      _pipe(up_reader, writer))
            finally:
                up_writer.close()
                writer.close()
        self.sent.labels(*labels).inc(sent)
        self.received.labels(*labels).inc(received)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """One direction, until its end (passed on as a half close); the bytes."""
    count = 0
    try:
        while data := await reader.read(READ_SIZE):
            count += len(data)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
    except OSError:
        writer.close()
    return count
