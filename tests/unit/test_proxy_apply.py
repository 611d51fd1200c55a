"""The applier against a fake iptables that keeps chains in memory.

The fake understands just enough of iptables-save / iptables-restore
--noflush / -C / -I / -D / -N to hold kernel state, so the assertions are
about the resulting chains, not about the commands sent.
"""

from __future__ import annotations

import shlex

import pytest

from netplane.proxy.command import ApplyError, CommandResult
from netplane.proxy.config import ProxyConfig
from netplane.proxy.iptables.apply import Backend, IptablesApplier
from netplane.proxy.iptables.render import PLUMBING, render
from netplane.proxy.iptables.trace import ParseError, parse


class FakeIptables:
    """Tables → chains → rule lines, plus the command log for the netns prefix check."""

    def __init__(self, version: str = "iptables v1.8.9 (nf_tables)") -> None:
        self.version = version
        self.tables: dict[str, dict[str, list[str]]] = {
            "nat": {"PREROUTING": [], "OUTPUT": [], "POSTROUTING": [], "KUBE-SVC-X": []},
            "filter": {"INPUT": [], "FORWARD": [], "OUTPUT": []},
            "raw": {"PREROUTING": [], "OUTPUT": []},
        }
        self.argv: list[list[str]] = []
        self.sysctls: list[str] = []

    def __call__(self, argv: list[str], stdin: str | None) -> CommandResult:
        self.argv.append(argv)
        args = argv[4:] if argv[:3] == ["ip", "netns", "exec"] else argv
        if args[-1] == "--version":
            return CommandResult(0, self.version, "")
        if args[0] == "sysctl":
            self.sysctls.append(args[-1])
            return CommandResult(0, "", "")
        if args[0].endswith("-save"):
            return CommandResult(0, self._save(), "")
        if args[0].endswith("-restore"):
            self._restore(stdin or "")
            return CommandResult(0, "", "")
        return self._rule_command(args[3], args[4:])

    def _save(self) -> str:
        out = []
        for t, chains in self.tables.items():
            out += [f"*{t}", *(f":{c} - [0:0]" for c in chains)]
            out += [rule for c in chains for rule in chains[c]]
            out.append("COMMIT")
        return "\n".join(out)

    def _restore(self, text: str) -> None:
        # The real tool refuses what the restore model refuses.
        rs = parse(self._save()).restore(text)
        for t, chains in rs.tables.items():
            self.tables[t] = {c: [r.text for r in rules] for c, rules in chains.items()}

    def _rule_command(self, table: str, rest: list[str]) -> CommandResult:
        op = rest[0]
        chains = self.tables[table]
        if op == "-N":
            if rest[1] in chains:
                return CommandResult(1, "", "iptables: Chain already exists.")
            chains[rest[1]] = []
            return CommandResult(0, "", "")
        if op == "-S":
            return CommandResult(0, "\n".join(chains.get(rest[1], [])), "")
        chain, rule = rest[1], f"-A {rest[1]} " + shlex.join(a for a in rest[2:] if a != "1")
        present = rule in chains[chain]
        if op == "-C":
            return CommandResult(0 if present else 1, "", "")
        if op == "-I":
            chains[chain].insert(0, rule)
        elif op == "-D" and present:
            chains[chain].remove(rule)
        return CommandResult(0, "", "")


SERVICES = [{"metadata": {"namespace": "default", "name": "web"},
             "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}}]


def eps(*ips: str) -> list[dict[str, object]]:
    return [{"metadata": {"namespace": "default", "name": "web"},
             "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 80}]}]}]


def ours(fake: FakeIptables, table: str) -> set[str]:
    return {c for c in fake.tables[table] if c.startswith("NP-")}


@pytest.mark.parametrize(("version", "backend"), [
    ("iptables v1.8.9 (nf_tables)", Backend.NFT), ("iptables v1.8.9 (legacy)", Backend.LEGACY)])
def test_backend_is_detected_from_version(version: str, backend: Backend) -> None:
    assert IptablesApplier(runner=FakeIptables(version)).backend == backend


def test_stale_chains_are_removed_and_foreign_chains_kept() -> None:
    fake = FakeIptables()
    applier = IptablesApplier(runner=fake, netns="npt-node")
    applier.apply(render(SERVICES, eps("10.244.1.2", "10.244.1.3"), ProxyConfig()))
    assert len([c for c in ours(fake, "nat") if c.startswith("NP-SEP-")]) == 2
    applier.apply(render(SERVICES, eps("10.244.1.2"), ProxyConfig()))
    assert len([c for c in ours(fake, "nat") if c.startswith("NP-SEP-")]) == 1
    assert "KUBE-SVC-X" in fake.tables["nat"]
    assert all(a[:4] == ["ip", "netns", "exec", "npt-node"] for a in fake.argv[1:])


def test_plumbing_is_idempotent_and_clean_up_removes_only_ours() -> None:
    fake = FakeIptables()
    applier = IptablesApplier(runner=fake, backend=Backend.NFT)
    applier.ensure_plumbing()
    applier.ensure_plumbing()
    assert len(fake.tables["nat"]["PREROUTING"]) == 1
    assert len(fake.tables["filter"]["FORWARD"]) == 4
    # In PLUMBING's order, whatever the order of insertion: NP-FORWARD, which
    # accepts established connections, before the checks of new ones.
    assert [r.rsplit(" ", 1)[1] for r in fake.tables["filter"]["FORWARD"]] == \
        ["NP-FORWARD", "NP-PROXY-FIREWALL", "NP-EXTERNAL-SERVICES", "NP-SERVICES"]
    assert fake.sysctls == ["net.ipv4.conf.all.route_localnet=1"] * 2
    applier.apply(render(SERVICES, eps("10.244.1.2"), ProxyConfig()))
    applier.clean_up()
    assert all(not ours(fake, t) for t in fake.tables)
    assert all(not fake.tables[j.table][j.base_chain] for j in PLUMBING)
    assert "KUBE-SVC-X" in fake.tables["nat"]


def test_failed_command_raises_with_its_stderr() -> None:
    def failing(argv: list[str], stdin: str | None) -> CommandResult:
        return CommandResult(1, "", "iptables-restore: line 7 failed")

    applier = IptablesApplier(runner=failing, backend=Backend.LEGACY)
    with pytest.raises(ApplyError, match="line 7 failed"):
        applier.restore("*nat\nCOMMIT\n")


def test_drift_check_notices_a_flushed_table() -> None:
    fake = FakeIptables()
    applier = IptablesApplier(runner=fake, backend=Backend.NFT)
    assert not applier.intact()
    applier.ensure_plumbing()
    assert applier.intact()
    fake.tables["nat"]["PREROUTING"].clear()  # iptables -t nat -F
    assert not applier.intact()
    applier.ensure_plumbing()
    assert applier.intact()


def test_partial_restore_deleting_a_missing_rule_fails() -> None:
    fake = FakeIptables()
    applier = IptablesApplier(runner=fake, backend=Backend.NFT)
    applier.ensure_plumbing()
    with pytest.raises(ParseError, match="no such rule"):
        applier.restore("*nat\n-D NP-SERVICES -j NP-SVC-GONE\nCOMMIT\n")
