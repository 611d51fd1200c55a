"""Puts rendered iptables rules into the kernel.

One ``iptables-restore --noflush`` per sync replaces all our chains at once
and deletes our stale ones; the fixed jumps from built-in chains (the
``PLUMBING`` table) are ensured and removed with single ``iptables`` calls.
Commands run in the current network namespace, or in a named one
(``ip netns exec``) so that tests never touch the machine's own.
"""

from __future__ import annotations

import enum
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from netplane.proxy.iptables import (
    CHAIN_PREFIX,
    FIXED_CHAINS,
    PLUMBING,
    Jump,
    Table,
    declared_chains,
    with_stale_chains,
)

COMMAND_TIMEOUT = 60.0


class Backend(enum.StrEnum):
    """Which kernel interface the iptables tools drive."""

    NFT = "nft"
    LEGACY = "legacy"


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


# Seam for tests: runs argv with optional stdin and returns its result.
Runner = Callable[[list[str], str | None], CommandResult]


class ApplyError(RuntimeError):
    """An iptables command failed; the message carries its stderr."""


def run_command(argv: list[str], stdin: str | None) -> CommandResult:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False,
                          timeout=COMMAND_TIMEOUT)
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


def detect_backend(*, runner: Runner = run_command) -> Backend:
    """``iptables --version`` prints ``(nf_tables)`` or ``(legacy)``."""
    out = runner(["iptables", "--version"], None).stdout
    return Backend.NFT if "nf_tables" in out else Backend.LEGACY


class IptablesApplier:
    """Applies rendered documents and the fixed plumbing with one backend."""

    def __init__(self, *, netns: str | None = None, backend: Backend | None = None,
                 runner: Runner = run_command) -> None:
        self._netns = netns
        self._runner = runner
        self.backend = backend if backend is not None else detect_backend(runner=runner)

    def _tool(self, suffix: str) -> str:
        # Debian ships iptables-nft-restore etc.; elsewhere only the plain name may exist.
        name = f"iptables-{self.backend}{suffix}"
        return name if shutil.which(name) else f"iptables{suffix}"

    def _run(self, argv: list[str], stdin: str | None = None, *,
             check: bool = True) -> CommandResult:
        prefix = ["ip", "netns", "exec", self._netns] if self._netns else []
        result = self._runner([*prefix, *argv], stdin)
        if check and result.returncode != 0:
            raise ApplyError(f"{' '.join(argv)} failed ({result.returncode}): "
                             f"{result.stderr.strip()}")
        return result

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
        self._run([self._tool("-restore"), "-w", "--noflush"], text)

    def _iptables(self, table: Table, *args: str, check: bool = True) -> CommandResult:
        return self._run([self._tool(""), "-w", "-t", table, *args], check=check)

    def _has_jump(self, jump: Jump) -> bool:
        args = jump.rule_args()
        return self._iptables(jump.table, "-C", jump.base_chain, *args,
                              check=False).returncode == 0

    def ensure_plumbing(self) -> None:
        """Creates our fixed chains and the jumps into them, if missing."""
        have = self.current_chains()
        for table, chains in FIXED_CHAINS.items():
            for chain in chains:
                if chain not in have[table]:
                    self._iptables(table, "-N", chain)
        for jump in PLUMBING:
            if not self._has_jump(jump):
                self._iptables(jump.table, "-I", jump.base_chain, "1", *jump.rule_args())

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
