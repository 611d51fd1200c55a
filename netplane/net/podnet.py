"""The node's pod network (the CNI ``bridge`` plugin's model): bridge ``np0``
holding the gateway address of the node's pod CIDR, and per pod a veth pair
whose host side is a bridge port and whose peer is the pod's ``eth0``.

Operates on the current network namespace (the agent runs inside its node's
netns) or, when ``netns`` is given, on that named one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path

from netplane.net import netns as nsutil
from netplane.net.netns import Batch, Runner

POD_IFNAME = "eth0"
BRIDGE_SYSCTLS = Path("/proc/sys/net/bridge")


class NetworkSetupError(RuntimeError):
    """The node cannot host pods as it is; the message says what to fix."""


def bridge_mac(pod_cidr: str) -> str:
    """A locally administered unicast MAC, stable for a node's pod CIDR."""
    digest = hashlib.sha256(pod_cidr.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def host_veth_name(pod_netns: str) -> str:
    """Stable host-side name for a pod's veth; 12 chars, under IFNAMSIZ (15)."""
    return "veth" + hashlib.sha256(pod_netns.encode()).hexdigest()[:8]


class NodeNetwork:
    """Bridge + veth wiring for one node's pod CIDR."""

    def __init__(self, *, pod_cidr: str, bridge: str = "np0",
                 cluster_cidr: str = "10.244.0.0/16", netns: str | None = None,
                 runner: Runner = nsutil.run, batch: Batch = nsutil.batch) -> None:
        self.pod_cidr = ipaddress.IPv4Network(pod_cidr, strict=True)
        self.cluster_cidr = ipaddress.IPv4Network(cluster_cidr, strict=True)
        if not self.pod_cidr.subnet_of(self.cluster_cidr):
            raise ValueError(f"pod CIDR {pod_cidr} is not inside the cluster CIDR {cluster_cidr}")
        self.bridge = bridge
        self.netns = netns
        self._run = runner
        self._batch_in = batch

    @property
    def gateway(self) -> str:
        """First host of the pod CIDR: the bridge's address, pods' default route."""
        return str(self.pod_cidr.network_address + 1)

    def set_up(self) -> None:
        """Creates the bridge with the gateway address and turns on forwarding;
        safe to repeat (agent restarts)."""
        if not self._link_exists(self.bridge):
            self._ip("link", "add", self.bridge, "type", "bridge")
        # A bridge without its own MAC takes its lowest port's, and changes it
        # when that pod goes: every other pod's ARP entry for the gateway then
        # points nowhere until it expires. A fixed MAC keeps the gateway put.
        self._ip("link", "set", self.bridge, "address", bridge_mac(str(self.pod_cidr)))
        self._ip("addr", "replace", f"{self.gateway}/{self.pod_cidr.prefixlen}",
                 "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        self._sysctl("net.ipv4.ip_forward", 1)
        # Bridged pod-to-pod frames must see iptables, or a same-node backend
        # behind a service DNAT would answer the client directly and be dropped.
        if not BRIDGE_SYSCTLS.is_dir():
            raise NetworkSetupError(
                "bridge netfilter is not available (no /proc/sys/net/bridge): "
                "load it with `modprobe br_netfilter` and start the agent again")
        self._sysctl("net.bridge.bridge-nf-call-iptables", 1)

    def attach_pod(self, *, netns: str, ip: str, prefixlen: int, gateway: str) -> str:
        """Wires pod netns ``netns`` to the bridge with ``ip/prefixlen``;
        returns the host-side veth name. Safe to repeat."""
        host_if = host_veth_name(netns)
        # The peer is created directly inside the pod netns as eth0, so no
        # temporary name can clash in the node's netns. Hairpin lets a pod
        # reach itself through a service VIP (DNAT back out of the port it
        # came in on).
        ports = [f"link set dev {host_if} master {self.bridge}",
                 f"link set dev {host_if} up",
                 f"link set dev {host_if} type bridge_slave hairpin on"]
        try:
            self._batch([f"link add {host_if} type veth peer name {POD_IFNAME} netns {netns}",
                         *ports])
        except nsutil.CommandError:
            # Wired before (the agent started again): step by step, as far as missing.
            if not self._link_exists(host_if):
                raise
            self._batch(ports)
        self._batch(["link set lo up",
                     f"addr replace {ip}/{prefixlen} dev {POD_IFNAME}",
                     f"link set {POD_IFNAME} up",
                     f"route replace default via {gateway} dev {POD_IFNAME}"], netns=netns)
        return host_if

    def detach_pod(self, *, netns: str) -> None:
        """Deletes the pod's veth pair; a no-op when it is already gone."""
        host_if = host_veth_name(netns)
        if self._link_exists(host_if):
            self._ip("link", "delete", host_if)

    def pod_ports(self) -> list[str]:
        """Names of the interfaces enslaved to the bridge."""
        out = self._run(["ip", "-j", "link", "show", "master", self.bridge], netns=self.netns)
        return [str(link["ifname"]) for link in json.loads(out or "[]")]

    def _link_exists(self, name: str) -> bool:
        out = self._run(["ip", "-o", "link", "show", "dev", name], netns=self.netns, check=False)
        return bool(out.strip())

    def _batch(self, lines: list[str], netns: str | None = None) -> None:
        self._batch_in(lines, netns=netns or self.netns)

    def _ip(self, *args: str) -> None:
        self._run(["ip", *args], netns=self.netns)

    def _sysctl(self, key: str, value: int) -> None:
        nsutil.set_sysctl(key, value, netns=self.netns, runner=self._run)
