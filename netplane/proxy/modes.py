"""Choosing a proxy mode: ``iptables`` (default), ``nftables`` or ``ipvs``, and
the network policy enforcer that goes with it."""

from __future__ import annotations

import enum

from netplane.proxy.config import ProxyConfig
from netplane.proxy.conntrack import Conntrack
from netplane.proxy.iptables.apply import IptablesApplier, detect_backend, tool
from netplane.proxy.iptables.policy import PolicyApplier
from netplane.proxy.iptables.proxier import Proxier
from netplane.proxy.ipvs import backend as ipvs
from netplane.proxy.loop import SyncLoop
from netplane.proxy.mapproxier import IPVSAdapter, MapProxier, NftablesAdapter
from netplane.proxy.nftables.backend import NftablesBackend
from netplane.proxy.nftables.policy import NftPolicyApplier
from netplane.proxy.policyloop import PolicyEnforcer


class Mode(enum.StrEnum):
    IPTABLES = "iptables"
    NFTABLES = "nftables"
    IPVS = "ipvs"


class ModeUnavailable(RuntimeError):
    pass


def make(mode: Mode | str, *, node_name: str, node_ips: tuple[str, ...],
         config: ProxyConfig) -> SyncLoop:
    """The proxier for ``mode``, programming the current network namespace."""
    mode = Mode(mode)
    if mode is Mode.IPTABLES:
        return Proxier(node_name=node_name, applier=IptablesApplier(), config=config,
                       node_ips=node_ips, conntrack=Conntrack())
    if mode is Mode.NFTABLES:
        return MapProxier(mode=mode.value, backend=NftablesAdapter(NftablesBackend()),
                          node_name=node_name, config=config, node_ips=node_ips)
    ok, why = ipvs.available()
    if not ok:
        raise ModeUnavailable(f"proxy mode ipvs is not available on this node: {why}")
    return MapProxier(mode=mode.value, backend=IPVSAdapter(ipvs.IPVSBackend()),
                      node_name=node_name, config=config, node_ips=node_ips)


def make_policy(mode: Mode | str, *, node_name: str) -> PolicyEnforcer:
    """The policy enforcer for ``mode``: nftables mode has its own table,
    iptables and IPVS modes share the filter table path."""
    if Mode(mode) is Mode.NFTABLES:
        return PolicyEnforcer(node_name=node_name, backend=NftPolicyApplier())
    return PolicyEnforcer(node_name=node_name,
                          backend=PolicyApplier(tool=tool(detect_backend())))
