"""Which connections the node hands to its proxy: TCP from enrolled pods to
Service addresses and ports, those that speak HTTP to the L7 proxy, the
others to the L4 one (carried whole), redirected in the
node's network namespace to the proxy's port before any Service DNAT (an
nftables nat chain one priority ahead of kube-proxy's, whatever mode the
proxy runs in: its iptables rules sit at dstnat, -100, too). The proxy
reads where each was going with SO_ORIGINAL_DST. Everything else keeps the
kernel path. Rendering is pure; the node applies the text with ``nft -f``
as one transaction that replaces the table whole."""

from __future__ import annotations

import socket
from collections.abc import Iterable

TABLE = "netplane-mesh"
PROXY_PORT = 15001  # where captured HTTP connections land (Istio's outbound port)
STREAM_PORT = 15002  # where the other captured TCP connections land (carried whole)
PRIORITY = -101  # dstnat - 1: before any Service DNAT
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
# The far end of a tunnel connects to its pod from the client pod's address
# (a transparent socket); the pod's replies are marked here and routed to the
# node itself by this table, so they reach that socket instead of leaving.
TRANSPARENT_MARK = 0x539
TRANSPARENT_TABLE = 133


def _set(name: str, kind: str, elements: list[str]) -> list[str]:
    lines = [f"  set {name} {{", f"    type {kind}"]
    if elements:
        lines.append(f"    elements = {{ {', '.join(elements)} }}")
    return [*lines, "  }"]


def render(sources: Iterable[str], targets: Iterable[tuple[str, int]],
           streams: Iterable[tuple[str, int]] = (), *, port: int = PROXY_PORT,
           stream_port: int = STREAM_PORT) -> str:
    """``nft -f`` text: ``sources`` are the enrolled pods' IPv4 addresses,
    ``targets`` the (address, port) pairs whose connections go to the HTTP
    proxy, ``streams`` those carried whole (L4)."""
    src = sorted(set(sources))
    dst = [f"{ip} . {p}" for ip, p in sorted(set(targets))]
    l4 = [f"{ip} . {p}" for ip, p in sorted(set(streams))]
    lines = [f"table ip {TABLE}", f"delete table ip {TABLE}", f"table ip {TABLE} {{",
             *_set("sources", "ipv4_addr", src),
             *_set("targets", "ipv4_addr . inet_service", dst),
             *_set("streams", "ipv4_addr . inet_service", l4),
             "  chain prerouting {",
             f"    type nat hook prerouting priority {PRIORITY}; policy accept;",
             f"    ip saddr @sources ip daddr . tcp dport @targets counter redirect to :{port}",
             f"    ip saddr @sources ip daddr . tcp dport @streams counter redirect to "
             f":{stream_port}",
             "  }",
             "  chain transparent {",
             "    type filter hook prerouting priority mangle; policy accept;",
             f"    socket transparent 1 counter meta mark set {TRANSPARENT_MARK:#x}",
             "  }", "}"]
    return "\n".join(lines) + "\n"


def transparent_routing(add: bool) -> list[list[str]]:
    """The ``ip`` commands that deliver marked replies to the node itself."""
    verb = "add" if add else "del"
    return [["ip", "rule", verb, "fwmark", f"{TRANSPARENT_MARK:#x}", "lookup",
             str(TRANSPARENT_TABLE)],
            ["ip", "route", verb, "local", "0.0.0.0/0", "dev", "lo", "table",
             str(TRANSPARENT_TABLE)]]


def clean_up_script() -> str:
    return f"table ip {TABLE}\ndelete table ip {TABLE}\n"


def original_destination(sock: socket.socket) -> tuple[str, int] | None:
    """Where a redirected connection was sent (SO_ORIGINAL_DST); None for
    one that was not redirected, or a socket that cannot tell."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    dst = (socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big"))
    return None if dst == sock.getsockname()[:2] else dst
