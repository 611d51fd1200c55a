"""Allocators the API server owns: Service ClusterIPs and Node pod CIDRs.

State is derived from the stored objects at start, so nothing but the
objects themselves has to be persisted."""

from __future__ import annotations

import ipaddress
import random


class AllocationError(Exception):
    pass


class ClusterIPAllocator:
    def __init__(self, cidr: str, *, reserved: tuple[str, ...] = ()) -> None:
        self.network = ipaddress.ip_network(cidr)
        self._used: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self._reserved = {ipaddress.ip_address(r) for r in reserved}
        # The first addresses are kept for well-known services (kubernetes, DNS).
        self._first_dynamic = int(self.network.network_address) + 16

    def contains(self, ip: str) -> bool:
        return ipaddress.ip_address(ip) in self.network

    def allocate_specific(self, ip: str) -> None:
        addr = ipaddress.ip_address(ip)
        if addr not in self.network or addr in (self.network.network_address,
                                                self.network.broadcast_address):
            raise AllocationError(f"the provided IP ({ip}) is not in the valid range. The "
                                  f"range of valid IPs is {self.network}")
        if addr in self._used:
            raise AllocationError(f"the provided IP ({ip}) is already allocated")
        self._used.add(addr)

    def allocate(self) -> str:
        first = self._first_dynamic
        last = int(self.network.broadcast_address) - 1
        size = last - first + 1
        if len(self._used) >= size:
            raise AllocationError(f"no ClusterIP left in {self.network}")
        start = random.randrange(size)
        for i in range(size):
            addr = ipaddress.ip_address(first + (start + i) % size)
            if addr not in self._used and addr not in self._reserved:
                self._used.add(addr)
                return str(addr)
        raise AllocationError(f"no ClusterIP left in {self.network}")

    def release(self, ip: str) -> None:
        self._used.discard(ipaddress.ip_address(ip))


class PodCIDRAllocator:
    """One subnet of ``node_prefix`` bits per node, in order, skipping the
    first (the cluster CIDR's network /24 is left unused, as it reads like a
    gateway range)."""

    def __init__(self, cluster_cidr: str, *, node_prefix: int = 24) -> None:
        self.network = ipaddress.ip_network(cluster_cidr)
        # As strings once: formatting addresses per allocation made creating
        # thousands of nodes quadratic.
        self._subnets = [str(s) for s in self.network.subnets(new_prefix=node_prefix)]
        self._position = {s: i for i, s in enumerate(self._subnets)}
        self._used: set[str] = set()
        self._free_from = 1  # no subnet before this one is free

    def allocate_specific(self, cidr: str) -> None:
        net = str(ipaddress.ip_network(cidr))
        # Two nodes with one pod range would hand out the same pod IPs.
        if net in self._used:
            raise AllocationError(f"the pod CIDR {net} is already allocated to another node")
        self._used.add(net)

    def allocate(self) -> str:
        for i in range(self._free_from, len(self._subnets)):
            subnet = self._subnets[i]
            if subnet not in self._used:
                self._used.add(subnet)
                self._free_from = i + 1
                return subnet
        raise AllocationError(f"no pod CIDR left in {self.network}")

    def release(self, cidr: str) -> None:
        self._used.discard(cidr)
        i = self._position.get(cidr, 0)
        if i >= 1:
            self._free_from = min(self._free_from, i)


class PortAllocator:
    """NodePorts (and health-check node ports) from one range, no duplicates."""

    def __init__(self, first: int = 30000, last: int = 32767) -> None:
        self.first, self.last = first, last
        self._used: set[int] = set()

    def allocate_specific(self, port: int) -> None:
        if not self.first <= port <= self.last:
            raise AllocationError(f"provided port is not in the valid range. The range of "
                                  f"valid ports is {self.first}-{self.last}")
        if port in self._used:
            raise AllocationError("provided port is already allocated")
        self._used.add(port)

    def allocate(self) -> int:
        size = self.last - self.first + 1
        if len(self._used) >= size:
            raise AllocationError(f"no node port left in {self.first}-{self.last}")
        start = random.randrange(size)
        for i in range(size):
            port = self.first + (start + i) % size
            if port not in self._used:
                self._used.add(port)
                return port
        raise AllocationError(f"no node port left in {self.first}-{self.last}")

    def release(self, port: int) -> None:
        self._used.discard(port)
