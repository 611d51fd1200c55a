"""UDP conntrack clean-up after service changes (shared by every proxy mode).

A UDP "connection" lives in conntrack as long as packets keep coming, so a
client that keeps sending from one source port stays DNATed to an
endpoint that is gone, or, if it started while the service had no
endpoint, stays untranslated forever (kubernetes issues #19029, #126130).
After rules change, kube-proxy deletes exactly those entries; so do we:

* a UDP service port that had no endpoints and now has some: entries to
  each of its addresses (cluster IP, external IPs, LoadBalancer IPs) on its
  port, and to its NodePort;
* an endpoint that no longer serves a UDP service port: entries to each of
  those addresses (and the NodePort) that were DNATed to it.

``stale_entries`` is pure; ``Conntrack`` runs ``conntrack -D`` (in a named
network namespace when given).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from netplane.proxy.command import Runner, run_command
from netplane.proxy.model import EndpointInfo, Protocol, ServicePortInfo, ServicePortName

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortView:
    """What the rules of one service port send where: its info and the
    endpoints any of its chains can pick."""

    info: ServicePortInfo
    endpoints: frozenset[str]  # "ip:port"

    @classmethod
    def of(cls, info: ServicePortInfo, *groups: Iterable[EndpointInfo]) -> PortView:
        return cls(info, frozenset(ep.address for g in groups for ep in g))


@dataclass(frozen=True, order=True)
class Entry:
    """One ``conntrack -D -p udp`` filter; unset fields match anything."""

    orig_dst: str = ""
    orig_port_dst: int = 0
    dst_nat: str = ""

    def argv(self) -> list[str]:
        out = ["conntrack", "-D", "-p", "udp"]
        if self.orig_dst:
            out += ["--orig-dst", self.orig_dst]
        if self.orig_port_dst:
            out += ["--orig-port-dst", str(self.orig_port_dst)]
        if self.dst_nat:
            out += ["--dst-nat", self.dst_nat]
        return out


def _vips(info: ServicePortInfo) -> list[str]:
    return [info.cluster_ip, *info.external_ips, *info.load_balancer_ips]


def _port_entries(old: PortView | None, new: PortView | None) -> set[Entry]:
    view = new or old
    assert view is not None
    info = view.info
    if info.protocol != Protocol.UDP:
        return set()
    was = old.endpoints if old else frozenset()
    now = new.endpoints if new else frozenset()
    out: set[Entry] = set()
    if now and not was and new is not None:
        out.update(Entry(orig_dst=ip, orig_port_dst=info.port) for ip in _vips(info))
        if info.node_port:
            out.add(Entry(orig_port_dst=info.node_port))
    if old is None:
        return out
    gone_ips = {a.rpartition(":")[0] for a in was - now}
    for ep_ip in gone_ips:
        out.update(Entry(orig_dst=ip, dst_nat=ep_ip) for ip in _vips(old.info))
        if old.info.node_port:
            out.add(Entry(orig_port_dst=old.info.node_port, dst_nat=ep_ip))
    return out


def stale_entries(old: Mapping[ServicePortName, PortView],
                  new: Mapping[ServicePortName, PortView],
                  changed: Iterable[ServicePortName]) -> list[Entry]:
    """The conntrack entries to delete once ``new`` is in the kernel."""
    out: set[Entry] = set()
    for spn in set(changed):
        o, n = old.get(spn), new.get(spn)
        if o is not None or n is not None:
            out |= _port_entries(o, n)
    return sorted(out)


class Conntrack:
    """Deletes conntrack entries with the ``conntrack`` tool."""

    def __init__(self, *, netns: str | None = None, runner: Runner = run_command) -> None:
        self._netns = netns
        self._runner = runner

    def delete(self, entries: Iterable[Entry]) -> int:
        """Runs one deletion per entry; returns how many commands failed."""
        prefix = ["ip", "netns", "exec", self._netns] if self._netns else []
        failed = 0
        for e in entries:
            result = self._runner([*prefix, *e.argv()], None)
            # Exit 1 with "0 flow entries" just means nothing matched.
            if result.returncode not in (0, 1):
                failed += 1
                log.warning("conntrack clean-up failed: %s", result.stderr.strip())
        return failed
