"""Host-gw routing between nodes: one route per remote node, its pod CIDR via
its underlay address.

Our routes carry routing protocol number 44 (``RTPROT_NETPLANE``), so a sync
lists and removes only routes it made and never touches the system's or
another tool's. 44 is assigned neither in the kernel's
``linux/rtnetlink.h`` (0 to 4, 8 to 18, 42, 99, 186 to 189, 192) nor in iproute2's
``rt_protos``; ``ip route`` shows it as ``proto 44``.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from netplane.net import netns as nsutil
from netplane.net.netns import Runner

RTPROT_NETPLANE = 44


@dataclass
class RouteSync:
    """What a sync changed, for logs."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)


def owned_routes(*, netns: str | None = None, runner: Runner = nsutil.run) -> dict[str, str]:
    """Pod CIDR → gateway for the routes we own in the main table."""
    out = runner(["ip", "-j", "route", "show", "proto", str(RTPROT_NETPLANE)], netns=netns)
    routes: dict[str, str] = {}
    for route in json.loads(out or "[]"):
        dst = str(route.get("dst", ""))
        if "/" not in dst:
            # A /32 prints without its length.
            dst = f"{dst}/32"
        routes[dst] = str(route.get("gateway", ""))
    return routes


def _normalise(routes: dict[str, str]) -> dict[str, str]:
    normal: dict[str, str] = {}
    for cidr, via in routes.items():
        net = ipaddress.IPv4Network(cidr, strict=True)
        normal[str(net)] = str(ipaddress.IPv4Address(via))
    return normal


def sync_routes(routes: dict[str, str], *, netns: str | None = None,
                runner: Runner = nsutil.run) -> RouteSync:
    """Makes our routes exactly ``routes`` (pod CIDR → node underlay IP)."""
    want = _normalise(routes)
    have = owned_routes(netns=netns, runner=runner)
    result = RouteSync()
    for cidr, via in sorted(want.items()):
        if have.get(cidr) == via:
            continue
        runner(["ip", "route", "replace", cidr, "via", via,
                "proto", str(RTPROT_NETPLANE)], netns=netns)
        (result.replaced if cidr in have else result.added).append(cidr)
    for cidr in sorted(set(have) - set(want)):
        runner(["ip", "route", "delete", cidr, "proto", str(RTPROT_NETPLANE)], netns=netns)
        result.removed.append(cidr)
    return result
