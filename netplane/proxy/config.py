"""Node-wide proxy settings, shared by every mode."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProxyConfig:
    """Node-wide settings that shape the rules."""

    cluster_cidr: str = "10.244.0.0/16"
    masquerade_bit: int = 14
    notrack_dns_ips: tuple[str, ...] = ()
    # MASQUERADE --random-fully avoids SNAT port races; needs kernel >= 3.13 support.
    masquerade_random_fully: bool = False
    # Addresses NodePorts answer on. Empty: every local address (addrtype LOCAL).
    node_ips: tuple[str, ...] = ()
    # NodePorts on 127.0.0.1 too (needs route_localnet, which set-up turns on).
    localhost_nodeports: bool = True

    @property
    def masquerade_mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"
