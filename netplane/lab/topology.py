"""The lab's network: an underlay bridge in its own namespace, and one
namespace per node joined to it by a veth. Nothing here touches the root
network namespace."""

from __future__ import annotations

import subprocess

from netplane.lab.paths import CONTROL, LabPaths
from netplane.net import netns

BRIDGE = "np-br0"


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_exists(netns: str, name: str) -> bool:
    return subprocess.run(["ip", "-n", netns, "link", "show", name],
                          capture_output=True).returncode == 0


def underlay(lab: LabPaths) -> None:
    ns = lab.underlay_netns
    netns.add(ns)
    if not _link_exists(ns, BRIDGE):
        _ip("-n", ns, "link", "add", BRIDGE, "type", "bridge")
    _ip("-n", ns, "link", "set", BRIDGE, "up")


def port_name(node: str) -> str:
    return "ctl" if node == CONTROL else f"n{node.rsplit('-', 1)[1]}"


def node(lab: LabPaths, name: str) -> None:
    """A node's namespace with ``eth0`` on the underlay at its lab address."""
    ns, under = lab.node_netns(name), lab.underlay_netns
    netns.add(ns)
    port = port_name(name)
    if not _link_exists(ns, "eth0"):
        if _link_exists(under, port):
            _ip("-n", under, "link", "del", port)
        _ip("-n", under, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", ns)
    _ip("-n", under, "link", "set", port, "master", BRIDGE, "up")
    _ip("-n", ns, "addr", "replace", f"{lab.node_ip(name)}/24", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")


def set_underlay_link(lab: LabPaths, name: str, *, up: bool) -> None:
    """The node's port on the underlay bridge up or down: down, the node is
    cut off from every other node as if its cable were pulled."""
    _ip("-n", lab.underlay_netns, "link", "set", port_name(name), "up" if up else "down")


def remove(names: list[str]) -> None:
    for name in names:
        netns.delete(name)
