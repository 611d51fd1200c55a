"""The narrow seam between the IPVS backend and the kernel's IPVS tables.

``IPVSHandle`` is all the backend asks of IPVS. ``PyrouteIPVS`` speaks it
over generic netlink with pyroute2 (imported lazily, so that the pure parts
of the proxy work where pyroute2 or IPVS is missing); ``MemoryIPVS`` keeps
the same state in memory and records every request, for tests and for
dry runs.
"""

from __future__ import annotations

import importlib
import socket
from typing import Any
from typing import Protocol as TypingProtocol

from netplane.proxy.ipvs.diff import Op, OpKind
from netplane.proxy.ipvs.plan import RealServer, VirtualServer, VirtualServerKey
from netplane.proxy.model import Protocol


class IPVSHandle(TypingProtocol):
    """Virtual servers and real servers of one network namespace."""

    def list_services(self) -> list[VirtualServer]: ...

    def add_service(self, server: VirtualServer) -> None: ...

    def update_service(self, server: VirtualServer) -> None: ...

    def del_service(self, key: VirtualServerKey) -> None: ...

    def list_dests(self, key: VirtualServerKey) -> list[RealServer]: ...

    def add_dest(self, key: VirtualServerKey, real_server: RealServer) -> None: ...

    def update_dest(self, key: VirtualServerKey, real_server: RealServer) -> None: ...

    def del_dest(self, key: VirtualServerKey, real_server: RealServer) -> None: ...


class IPVSError(RuntimeError):
    """A request the IPVS tables refused (missing or duplicate entry, no IPVS)."""


def apply_op(handle: IPVSHandle, op: Op) -> None:
    """Sends one diff operation through ``handle``."""
    if op.kind == OpKind.ADD_SERVICE and op.server is not None:
        handle.add_service(op.server)
    elif op.kind == OpKind.UPDATE_SERVICE and op.server is not None:
        handle.update_service(op.server)
    elif op.kind == OpKind.DEL_SERVICE:
        handle.del_service(op.key)
    elif op.real_server is None:
        raise ValueError(f"{op.kind} needs a real server")
    elif op.kind == OpKind.ADD_DEST:
        handle.add_dest(op.key, op.real_server)
    elif op.kind == OpKind.UPDATE_DEST:
        handle.update_dest(op.key, op.real_server)
    else:
        handle.del_dest(op.key, op.real_server)


class MemoryIPVS:
    """IPVS tables in memory; ``requests`` lists every change made, in order.

    It refuses what the kernel refuses (adding what exists, changing what
    does not), so a wrong diff fails here as it would on a node."""

    def __init__(self) -> None:
        self.services: dict[VirtualServerKey, VirtualServer] = {}
        self.dests: dict[VirtualServerKey, dict[tuple[str, int], RealServer]] = {}
        self.requests: list[Op] = []
        self.list_calls = 0

    def _need(self, key: VirtualServerKey) -> dict[tuple[str, int], RealServer]:
        if key not in self.services:
            raise IPVSError(f"no virtual server {key}")
        return self.dests[key]

    def list_services(self) -> list[VirtualServer]:
        self.list_calls += 1
        return sorted(self.services.values(), key=lambda s: s.key)

    def add_service(self, server: VirtualServer) -> None:
        if server.key in self.services:
            raise IPVSError(f"virtual server {server.key} exists")
        self.services[server.key] = server
        self.dests[server.key] = {}
        self.requests.append(Op(OpKind.ADD_SERVICE, server.key, server=server))

    def update_service(self, server: VirtualServer) -> None:
        self._need(server.key)
        self.services[server.key] = server
        self.requests.append(Op(OpKind.UPDATE_SERVICE, server.key, server=server))

    def del_service(self, key: VirtualServerKey) -> None:
        self._need(key)
        del self.services[key], self.dests[key]
        self.requests.append(Op(OpKind.DEL_SERVICE, key))

    def list_dests(self, key: VirtualServerKey) -> list[RealServer]:
        self.list_calls += 1
        return sorted(self._need(key).values())

    def add_dest(self, key: VirtualServerKey, real_server: RealServer) -> None:
        dests = self._need(key)
        if real_server.endpoint in dests:
            raise IPVSError(f"real server {real_server.endpoint} of {key} exists")
        dests[real_server.endpoint] = real_server
        self.requests.append(Op(OpKind.ADD_DEST, key, real_server=real_server))

    def update_dest(self, key: VirtualServerKey, real_server: RealServer) -> None:
        dests = self._need(key)
        old = dests.get(real_server.endpoint)
        if old is None:
            raise IPVSError(f"no real server {real_server.endpoint} of {key}")
        dests[real_server.endpoint] = RealServer(
            real_server.address, real_server.port, real_server.weight,
            old.active_connections, old.inactive_connections)
        self.requests.append(Op(OpKind.UPDATE_DEST, key, real_server=real_server))

    def del_dest(self, key: VirtualServerKey, real_server: RealServer) -> None:
        if self._need(key).pop(real_server.endpoint, None) is None:
            raise IPVSError(f"no real server {real_server.endpoint} of {key}")
        self.requests.append(Op(OpKind.DEL_DEST, key, real_server=real_server))

    def set_connections(self, key: VirtualServerKey, endpoint: tuple[str, int], *,
                        active: int, inactive: int = 0) -> None:
        """Stands in for traffic: gives a real server connection counters."""
        rs = self._need(key)[endpoint]
        self.dests[key][endpoint] = RealServer(rs.address, rs.port, rs.weight, active, inactive)


# Kernel constants from linux/ip_vs.h.
IP_VS_SVC_F_PERSISTENT = 0x0001
IP_VS_CONN_F_MASQ = 0x0000  # forward by NAT (DNAT to the real server)
FLAGS_MASK = 0xFFFFFFFF
_PROTO_NUMBERS = {Protocol.TCP: socket.IPPROTO_TCP, Protocol.UDP: socket.IPPROTO_UDP,
                  Protocol.SCTP: socket.IPPROTO_SCTP}
_PROTOCOLS = {v: k for k, v in _PROTO_NUMBERS.items()}


def _attrs(msg: Any, nla: str) -> dict[str, Any]:
    """The attributes of one nested IPVS message part, by full NLA name."""
    part = msg.get_attr(nla)
    return {name: value for name, value in part["attrs"]}


def server_from_attrs(attrs: dict[str, Any]) -> VirtualServer | None:
    """A virtual server from dumped ``IPVS_SVC_ATTR_*`` values; None if not ours to
    understand (firewall-mark services, unknown protocols)."""
    proto = _PROTOCOLS.get(int(attrs.get("IPVS_SVC_ATTR_PROTOCOL", 0)))
    addr = attrs.get("IPVS_SVC_ATTR_ADDR")
    if proto is None or not addr:
        return None
    flags = attrs.get("IPVS_SVC_ATTR_FLAGS") or {}
    persistent = int(flags.get("flags", 0)) & IP_VS_SVC_F_PERSISTENT
    key = VirtualServerKey(str(addr), int(attrs["IPVS_SVC_ATTR_PORT"]), proto)
    return VirtualServer(key, str(attrs.get("IPVS_SVC_ATTR_SCHED_NAME", "")),
                         int(attrs.get("IPVS_SVC_ATTR_TIMEOUT", 0)) if persistent else 0)


def real_server_from_attrs(attrs: dict[str, Any]) -> RealServer:
    return RealServer(str(attrs["IPVS_DEST_ATTR_ADDR"]), int(attrs["IPVS_DEST_ATTR_PORT"]),
                      int(attrs.get("IPVS_DEST_ATTR_WEIGHT", 0)),
                      int(attrs.get("IPVS_DEST_ATTR_ACTIVE_CONNS", 0)),
                      int(attrs.get("IPVS_DEST_ATTR_INACT_CONNS", 0)))


class PyrouteIPVS:
    """``IPVSHandle`` over generic netlink (pyroute2), in one network namespace."""

    def __init__(self, *, netns: str | None = None) -> None:
        self._mod = importlib.import_module("pyroute2.ipvs")
        self._sock: Any = self._mod.IPVS(netns=netns) if netns else self._mod.IPVS()

    def close(self) -> None:
        self._sock.close()

    def _key(self, key: VirtualServerKey) -> Any:
        return self._mod.IPVSService(addr=key.address, port=key.port,
                                     protocol=_PROTO_NUMBERS[key.protocol])

    def _service(self, server: VirtualServer) -> Any:
        flags = IP_VS_SVC_F_PERSISTENT if server.persistence else 0
        return self._mod.IPVSService(
            addr=server.key.address, port=server.key.port,
            protocol=_PROTO_NUMBERS[server.key.protocol], sched_name=server.scheduler,
            flags={"flags": flags, "mask": FLAGS_MASK}, timeout=server.persistence)

    def _dest(self, rs: RealServer) -> Any:
        return self._mod.IPVSDest(addr=rs.address, port=rs.port, weight=rs.weight,
                                  fwd_method=IP_VS_CONN_F_MASQ)

    def list_services(self) -> list[VirtualServer]:
        found = (server_from_attrs(_attrs(m, "IPVS_CMD_ATTR_SERVICE"))
                 for m in self._sock.service("dump"))
        return [s for s in found if s is not None]

    def add_service(self, server: VirtualServer) -> None:
        self._sock.service("add", service=self._service(server))

    def update_service(self, server: VirtualServer) -> None:
        self._sock.service("set", service=self._service(server))

    def del_service(self, key: VirtualServerKey) -> None:
        self._sock.service("del", service=self._key(key))

    def list_dests(self, key: VirtualServerKey) -> list[RealServer]:
        return [real_server_from_attrs(_attrs(m, "IPVS_CMD_ATTR_DEST"))
                for m in self._sock.dest("dump", service=self._key(key))]

    def add_dest(self, key: VirtualServerKey, real_server: RealServer) -> None:
        self._sock.dest("add", service=self._key(key), dest=self._dest(real_server))

    def update_dest(self, key: VirtualServerKey, real_server: RealServer) -> None:
        self._sock.dest("set", service=self._key(key), dest=self._dest(real_server))

    def del_dest(self, key: VirtualServerKey, real_server: RealServer) -> None:
        self._sock.dest("del", service=self._key(key), dest=self._dest(real_server))
