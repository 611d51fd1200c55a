"""What a traced packet is and how it can end, in every proxy mode."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.StrEnum):
    ACCEPT = "ACCEPT"
    DROP = "DROP"
    REJECT = "REJECT"


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection."""

    src: str
    protocol: str
    dst: str
    dport: int
    sport: int = 40000


@dataclass(frozen=True)
class Flow:
    """One way a packet can end, with what happened to it on the way.

    ``to_node``: it was delivered to the node itself (filter INPUT), not
    forwarded."""

    verdict: Verdict
    dnat: str | None = None
    masquerade: bool = False
    notrack: bool = False
    to_node: bool = False


@dataclass(frozen=True)
class Step:
    """One way a packet can end, with the rules that took it there and the
    chance, from the random-statistic rules on the way, that it goes so."""

    flow: Flow
    path: tuple[str, ...]
    chance: float


@dataclass(frozen=True)
class Crossing:
    """A later packet of a connection conntrack knows, in one chain a hook
    runs (iptables: a table's built-in chain, ``filter/FORWARD``; nftables:
    a base chain), with every rule it was matched against on the way,
    jumped-to chains' included. What each packet pays, not only the first."""

    hook: str
    chain: str
    verdict: Verdict
    evaluated: tuple[str, ...]
