"""Puts rendered iptables rules into the kernel.

One ``iptables-restore --noflush`` per sync replaces all our chains at once
and deletes our stale ones; the fixed jumps from built-in chains (the
``PLUMBING`` table) are ensured and removed with single ``iptables`` calls.
Commands run in the current network namespace, or in a named one
(``ip netns exec``) so that tests never touch the machine's own. Set-up
also turns on ``route_localnet`` so that NodePorts answer on 127.0.0.1.
``intact`` is the cheap drift check: it lists only the built-in chains
that hold our jumps, never our big chains.
"""

from __future__ import annotations

import enum
import shutil

from netplane.proxy.command import CommandResult, Input, Runner, open_input, run_command, run_in
from netplane.proxy.iptables.chains import CHAIN_PREFIX, FIXED_CHAINS, PLUMBING, Jump, Table
from netplane.proxy.iptables.render import declared_chains, with_stale_chains


class Backend(enum.StrEnum):
    """Which kernel interface the iptables tools drive."""

    NFT = "nft"
    LEGACY = "legacy"


def detect_backend(*, runner: Runner = run_command) -> Backend:
    """``iptables --version`` prints ``(nf_tables)`` or ``(legacy)``."""
    out = runner(["iptables", "--version"], None).stdout
    return Backend.NFT if "nf_tables" in out else Backend.LEGACY


def tool(backend: Backend, suffix: str = "") -> str:
    """The command for ``backend``: Debian ships iptables-nft-restore etc.;
    elsewhere only the plain name may exist."""
    name = f"iptables-{backend}{suffix}"
    return name if shutil.which(name) else f"iptables{suffix}"


class IptablesApplier:
    """Applies rendered documents and the fixed plumbing with one backend."""

    def __init__(self, *, netns: str | None = None, backend: Backend | None = None,
                 runner: Runner = run_command, route_localnet: bool = True) -> None:
        self._netns = netns
        self._runner = runner
        self._route_localnet = route_localnet
        self.backend = backend if backend is not None else detect_backend(runner=runner)

    def _tool(self, suffix: str) -> str:
        return tool(self.backend, suffix)

    def _run(self, argv: list[str], stdin: str | None = None, *,
             check: bool = True) -> CommandResult:
        return run_in(self._runner, self._netns, argv, stdin, check=check)

    def current_chains(self) -> dict[Table, set[str]]:
        """Our chains (``NP-`` prefix) now in the kernel, per table."""
        return declared_chains(self._run([self._tool("-save")]).stdout)

    def apply(self, text: str) -> None:
        """Replaces all our chains with ``text`` and deletes our chains it lacks."""
        wanted = declared_chains(text)
        have = self.current_chains()
        stale = {t: have[t] - wanted[t] for t in Table}
        self.restore(with_stale_chains(text, stale))

    def restore(self, text: str) -> None:
        """Plays ``text`` onto the current rules (``--noflush``), all or nothing."""
        self._run([self._tool("-restore"), "-w", "--noflush"], text)

    def open_restore(self) -> Input:
        """A restore whose text is written in pieces; each table is played
        at its COMMIT, and ``abort`` before the end plays nothing more."""
        return open_input(self._runner, self._netns, [self._tool("-restore"), "-w", "--noflush"])

    def save(self) -> str:
        """Every table's rules as ``iptables-save`` prints them."""
        return self._run([self._tool("-save")]).stdout

    def _present_jumps(self) -> set[Jump] | None:
        """Which PLUMBING jumps are in place, from small listings of the
        built-in chains; None when a listing failed (the table is gone)."""
        present: set[Jump] = set()
        for table, base in dict.fromkeys((j.table, j.base_chain) for j in PLUMBING):
            listed = self._iptables(table, "-S", base, check=False)
            if listed.returncode != 0:
                return None
            lines = listed.stdout.splitlines()
            present.update(j for j in PLUMBING if (j.table, j.base_chain) == (table, base)
                           and any(line.endswith(f"-j {j.chain}") and j.comment in line
                                   for line in lines))
        return present

    def intact(self) -> bool:
        """Whether every jump into our chains is still in its built-in chain.

        A flush of a table (``iptables -t nat -F``) or of a built-in chain
        removes them; this notices it without listing our big chains."""
        present = self._present_jumps()
        return present is not None and len(present) == len(PLUMBING)

    def _iptables(self, table: Table, *args: str, check: bool = True) -> CommandResult:
        return self._run([self._tool(""), "-w", "-t", table, *args], check=check)

    def _has_jump(self, jump: Jump) -> bool:
        args = jump.rule_args()
        return self._iptables(jump.table, "-C", jump.base_chain, *args,
                              check=False).returncode == 0

    def ensure_plumbing(self) -> None:
        """Creates our fixed chains and the jumps into them, if missing."""
        for table, chains in FIXED_CHAINS.items():
            for chain in chains:
                # Fails harmlessly when the chain exists; cheaper than listing.
                self._iptables(table, "-N", chain, check=False)
        present = self._present_jumps() or set()
        # Inserting at the top in reverse leaves them in PLUMBING's order.
        for jump in reversed(PLUMBING):
            if jump not in present:
                self._iptables(jump.table, "-I", jump.base_chain, "1", *jump.rule_args())
        if self._route_localnet:
            # NodePorts on 127.0.0.1: DNAT of loopback traffic to a pod needs it.
            self._run(["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"])

    def clean_up(self) -> None:
        """Removes our jumps, then flushes and deletes every chain of ours."""
        for jump in PLUMBING:
            while self._has_jump(jump):
                self._iptables(jump.table, "-D", jump.base_chain, *jump.rule_args())
        have = self.current_chains()
        lines: list[str] = []
        for table in Table:
            ours = sorted(c for c in have[table] if c.startswith(CHAIN_PREFIX))
            if ours:
                lines += [f"*{table}", *(f":{c} - [0:0]" for c in ours),
                          *(f"-X {c}" for c in ours), "COMMIT"]
        if lines:
            self.restore("\n".join(lines) + "\n")
