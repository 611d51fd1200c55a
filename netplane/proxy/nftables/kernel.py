"""nftables mode: talking to the kernel, fast.

Two ways to load ``nft -f`` text: in process through libnftables (the
library the ``nft`` tool is built on, loaded with ctypes), or by running
``nft -f -``. The library is preferred: a small change costs well under a
millisecond, while each ``nft`` process pays for spawning and for fetching
and freeing a cache of every set element of the table (15-20 ms at 10,000
services). Reading rules back with ``nft list`` has the same cost, so the
cheap drift check dumps our table's rules, chains and sets over netlink
directly and only counts them. Sockets are opened inside a named network
namespace from a short-lived thread that enters it, so the caller's own
namespace never changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
COMMAND_TIMEOUT = 60.0


class NftError(RuntimeError):
    """The kernel (or nft) refused a transaction; the message says why."""


def in_netns(netns: str | None, factory: Callable[[], T]) -> T:
    """Runs ``factory`` inside ``netns`` (None: here) and returns its result.

    Sockets keep the namespace they were created in, so a socket made here
    keeps talking to ``netns`` afterwards."""
    if netns is None:
        return factory()
    result: list[T] = []
    errors: list[BaseException] = []

    def enter_and_run() -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"cannot enter network namespace {netns}")
            finally:
                os.close(fd)
            result.append(factory())
        except BaseException as e:  # handed to the caller's thread
            errors.append(e)

    # A thread of its own: setns changes only the calling thread, which ends here.
    thread = threading.Thread(target=enter_and_run, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


class Loader(Protocol):
    """Loads ``nft -f`` text in one transaction."""

    def load(self, text: str) -> None: ...

    def close(self) -> None: ...


class LibNftables:
    """libnftables through ctypes, one context kept open for the proxy's life."""

    def __init__(self, *, netns: str | None = None) -> None:
        path = ctypes.util.find_library("nftables") or "libnftables.so.1"
        lib = ctypes.CDLL(path)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        # The context opens its netlink socket when created: do that in netns.
        self._ctx: int | None = in_netns(netns, lambda: int(lib.nft_ctx_new(0) or 0))
        if not self._ctx:
            raise NftError("libnftables could not create a context")
        lib.nft_ctx_buffer_error(self._ctx)
        lib.nft_ctx_buffer_output(self._ctx)
        self._lock = threading.Lock()

    def load(self, text: str) -> None:
        with self._lock:
            if self._ctx is None:
                raise NftError("libnftables context is closed")
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
            if rc != 0:
                err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
                raise NftError(f"nft transaction failed: {err.strip()}")

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None


class NftCommand:
    """``nft -f -`` in a new process per transaction (no library needed)."""

    def __init__(self, *, netns: str | None = None) -> None:
        self._prefix = ["ip", "netns", "exec", netns] if netns else []

    def load(self, text: str) -> None:
        proc = subprocess.run([*self._prefix, "nft", "-f", "-"], input=text, text=True,
                              capture_output=True, check=False, timeout=COMMAND_TIMEOUT)
        if proc.returncode != 0:
            raise NftError(f"nft -f failed ({proc.returncode}): {proc.stderr.strip()}")

    def close(self) -> None:
        pass


def make_loader(*, netns: str | None = None) -> Loader:
    """The library when it is there, else the ``nft`` command."""
    try:
        return LibNftables(netns=netns)
    except OSError:
        return NftCommand(netns=netns)


# nfnetlink constants (linux/netfilter/nfnetlink.h, nf_tables.h).
_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_NFTABLES = 10
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NFPROTO_IPV4 = 2
_GETCHAIN, _GETRULE, _GETSET = 4, 7, 10
_ATTR_TABLE = 1  # NFTA_{CHAIN,RULE,SET}_TABLE
_CHAIN_NAME, _RULE_CHAIN, _SET_NAME = 3, 2, 2


def _attrs(payload: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, pos)
        if length < 4:
            break
        out[kind & 0x3FFF] = payload[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return out


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode()


@dataclass(frozen=True)
class TableSummary:
    """What our table holds, by name and count only (cheap to read)."""

    exists: bool
    chains: frozenset[str]
    sets: frozenset[str]
    rules: dict[str, int]


class TableReader(Protocol):
    """Reads what our table holds, cheaply."""

    def summary(self) -> TableSummary: ...

    def close(self) -> None: ...


class NetlinkReader:
    """Dumps chains, rules and sets of one table over nfnetlink."""

    def __init__(self, *, table: str, netns: str | None = None) -> None:
        self._table = table
        self._sock = in_netns(netns, self._open)
        self._seq = 0
        self._lock = threading.Lock()

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        sock.bind((0, 0))
        return sock

    def _dump(self, msg: int) -> list[dict[int, bytes]]:
        name = self._table.encode() + b"\0"
        attr = struct.pack("=HH", 4 + len(name), _ATTR_TABLE) + name
        attr += b"\0" * (-len(attr) % 4)
        self._seq += 1
        body = struct.pack("=BBH", _NFPROTO_IPV4, 0, 0) + attr
        header = struct.pack("=IHHII", 16 + len(body), (_NFNL_SUBSYS_NFTABLES << 8) | msg,
                             _NLM_F_REQUEST | _NLM_F_DUMP, self._seq, 0)
        self._sock.send(header + body)
        return self._receive()

    def _receive(self) -> list[dict[int, bytes]]:
        out: list[dict[int, bytes]] = []
        while True:
            data = self._sock.recv(1 << 20)
            pos = 0
            while pos + 16 <= len(data):
                length, kind, _, _, _ = struct.unpack_from("=IHHII", data, pos)
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR:
                    # ENOENT: no such table, which simply means it is empty.
                    return out
                out.append(_attrs(data[pos + 20:pos + length]))
                pos += (length + 3) & ~3

    def summary(self) -> TableSummary:
        with self._lock:
            chains = [a for a in self._dump(_GETCHAIN) if _name(a.get(_ATTR_TABLE, b""))
                      == self._table]
            rules: dict[str, int] = {}
            for a in self._dump(_GETRULE):
                if _name(a.get(_ATTR_TABLE, b"")) == self._table:
                    chain = _name(a.get(_RULE_CHAIN, b""))
                    rules[chain] = rules.get(chain, 0) + 1
            sets = [_name(a.get(_SET_NAME, b"")) for a in self._dump(_GETSET)
                    if _name(a.get(_ATTR_TABLE, b"")) == self._table]
        return TableSummary(
            exists=bool(chains),
            chains=frozenset(_name(a.get(_CHAIN_NAME, b"")) for a in chains),
            # Anonymous sets belong to rules and go with them.
            sets=frozenset(s for s in sets if not s.startswith("__")),
            rules=rules,
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
