"""IPVS mode, pure part three: the netlink operations between two states.

Like kube-proxy's ``syncService`` / ``syncEndpoint``: a virtual server is
added when missing and updated when its scheduler or persistence differ;
its real servers are added, re-weighted or removed one by one, so that a
sync changes only what differs and live connections to unchanged real
servers are never disturbed.

Graceful termination: a removed TCP or SCTP real server that still has
connections is first set to weight 0 (no new connections) and deleted by a
later sync once its counters reach zero. UDP has no end of connection to
wait for, so it goes at once (stale conntrack entries are cleared instead).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from netplane.proxy.ipvs.plan import DesiredService, RealServer, VirtualServer, VirtualServerKey
from netplane.proxy.model import Protocol


class OpKind(enum.StrEnum):
    """One netlink request of the IPVS generic netlink family."""

    ADD_SERVICE = "add-service"
    UPDATE_SERVICE = "update-service"
    DEL_SERVICE = "del-service"
    ADD_DEST = "add-dest"
    UPDATE_DEST = "update-dest"
    DEL_DEST = "del-dest"


@dataclass(frozen=True)
class Op:
    """An operation on one virtual server, or on one of its real servers."""

    kind: OpKind
    key: VirtualServerKey
    server: VirtualServer | None = None
    real_server: RealServer | None = None

    def __str__(self) -> str:
        rs = self.real_server
        target = f" -> {rs.address}:{rs.port} w{rs.weight}" if rs is not None else ""
        return f"{self.kind} {self.key}{target}"


def service_ops(desired: DesiredService | None, current: VirtualServer | None,
                key: VirtualServerKey) -> list[Op]:
    """Operations that make one virtual server itself (not its real servers) right."""
    if desired is None:
        return [Op(OpKind.DEL_SERVICE, key)] if current is not None else []
    if current is None:
        return [Op(OpKind.ADD_SERVICE, key, server=desired.server)]
    if not desired.server.same_kernel_settings(current):
        return [Op(OpKind.UPDATE_SERVICE, key, server=desired.server)]
    return []


def _drain_or_delete(key: VirtualServerKey, rs: RealServer, *, graceful: bool) -> list[Op]:
    waits = graceful and key.protocol != Protocol.UDP and rs.connections > 0
    if not waits:
        return [Op(OpKind.DEL_DEST, key, real_server=rs)]
    if rs.weight != 0:
        drained = RealServer(rs.address, rs.port, 0)
        return [Op(OpKind.UPDATE_DEST, key, real_server=drained)]
    return []  # already draining; a later sync deletes it


def dest_ops(key: VirtualServerKey, desired: Iterable[RealServer],
             current: Iterable[RealServer], *, graceful: bool = True) -> list[Op]:
    """Operations that make the real servers of one virtual server ``desired``."""
    want = {rs.endpoint: rs for rs in desired}
    have = {rs.endpoint: rs for rs in current}
    ops: list[Op] = []
    for ep in sorted(want):
        rs = want[ep]
        if ep not in have:
            ops.append(Op(OpKind.ADD_DEST, key, real_server=rs))
        elif have[ep].weight != rs.weight:
            ops.append(Op(OpKind.UPDATE_DEST, key, real_server=rs))
    for ep in sorted(set(have) - set(want)):
        ops += _drain_or_delete(key, have[ep], graceful=graceful)
    return ops


def is_draining(key: VirtualServerKey, desired: Iterable[RealServer],
                current: Iterable[RealServer]) -> bool:
    """Whether real servers that should go are still kept for their connections."""
    want = {rs.endpoint for rs in desired}
    return any(rs.endpoint not in want for rs in current)
