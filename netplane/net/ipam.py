"""Host-local IP address management for one node's pod CIDR (the CNI
``host-local`` plugin's model).

State is a directory with one file per allocated address, named by the
address and holding the owner id, plus ``last_reserved_ip`` for round-robin.
A new instance over the same directory recovers every allocation, so an agent
restart keeps pods' addresses. Creating an address file is atomic and
exclusive (written to a temp file, then hard-linked into place), and a lock
file serialises allocators that share the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LAST_RESERVED = "last_reserved_ip"
LOCK = "lock"


@dataclass(frozen=True)
class IPAllocation:
    ip: str
    prefixlen: int
    gateway: str

    @property
    def cidr(self) -> str:
        """The interface address, as ``ip addr`` takes it."""
        return f"{self.ip}/{self.prefixlen}"


class IPAMError(RuntimeError):
    pass


class PoolExhausted(IPAMError):
    pass


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _create_exclusive(path: Path, text: str) -> bool:
    """Creates ``path`` with ``text`` unless it exists; never leaves it partial."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


class HostLocalIPAM:
    """Allocates pod addresses from ``cidr``, skipping the network, gateway and
    broadcast addresses; one address per owner (a pod uid)."""

    def __init__(self, cidr: str, state_dir: Path, *, gateway: str | None = None) -> None:
        self._net = ipaddress.IPv4Network(cidr, strict=True)
        if self._net.num_addresses < 4:
            raise IPAMError(f"pod CIDR {cidr} is too small: it needs room for a gateway and pods")
        first = self._net.network_address + 1
        self._gateway = ipaddress.IPv4Address(gateway) if gateway else first
        if self._gateway not in self._net:
            raise IPAMError(f"gateway {self._gateway} is outside the pod CIDR {cidr}")
        self._dir = state_dir
        self._dir.mkdir(parents=True, exist_ok=True)

    @property
    def gateway(self) -> str:
        return str(self._gateway)

    @property
    def prefixlen(self) -> int:
        return self._net.prefixlen

    def allocate(self, owner: str) -> IPAllocation:
        """The owner's address: its existing one, else the next free one after
        the last reserved address (wrapping), so freed addresses are reused late."""
        _check_owner(owner)
        with self._locked():
            current = self._find(owner)
            if current is not None:
                return self._allocation(current)
            for candidate in self._candidates():
                if _create_exclusive(self._dir / str(candidate), owner):
                    _write_atomic(self._dir / LAST_RESERVED, f"{candidate}\n")
                    return self._allocation(candidate)
        raise PoolExhausted(
            f"no free address in pod CIDR {self._net}: all {self._capacity()} are allocated; "
            "delete pods on this node or give it a larger pod CIDR")

    def release(self, owner: str) -> list[str]:
        """Frees every address held by ``owner``; returns them (empty if none)."""
        with self._locked():
            freed = [ip for ip, who in self._read_all().items() if who == owner]
            for ip in freed:
                (self._dir / ip).unlink(missing_ok=True)
        return freed

    def allocations(self) -> dict[str, str]:
        """Owner → address for every allocation on disk."""
        with self._locked():
            return {owner: ip for ip, owner in self._read_all().items()}

    def _allocation(self, ip: ipaddress.IPv4Address) -> IPAllocation:
        return IPAllocation(str(ip), self._net.prefixlen, str(self._gateway))

    def _usable(self) -> list[ipaddress.IPv4Address]:
        return [ip for ip in self._net.hosts() if ip != self._gateway]

    def _capacity(self) -> int:
        return len(self._usable())

    def _candidates(self) -> Iterator[ipaddress.IPv4Address]:
        usable = self._usable()
        last = self._last_reserved()
        start = usable.index(last) + 1 if last in usable else 0
        for i in range(len(usable)):
            yield usable[(start + i) % len(usable)]

    def _last_reserved(self) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address((self._dir / LAST_RESERVED).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _find(self, owner: str) -> ipaddress.IPv4Address | None:
        for ip, who in self._read_all().items():
            if who == owner:
                return ipaddress.IPv4Address(ip)
        return None

    def _read_all(self) -> dict[str, str]:
        """Address → owner, for files that name an address of this CIDR (a
        changed CIDR leaves old files that are simply not ours any more)."""
        found: dict[str, str] = {}
        for path in self._dir.iterdir():
            try:
                ip = ipaddress.IPv4Address(path.name)
            except ValueError:
                continue
            if ip in self._net:
                found[str(ip)] = path.read_text().strip()
        return found

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._dir / LOCK, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _check_owner(owner: str) -> None:
    if not owner or owner != owner.strip() or "\n" in owner:
        raise IPAMError(f"invalid IPAM owner id {owner!r}: "
                        "it must be one non-empty line without surrounding spaces")
