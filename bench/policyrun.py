"""Feeding a node's ``PolicyEnforcer`` as watch events would, and timing
its syncs: the time spent inside the kernel tools (ipset, iptables-restore,
nft, conntrack, ip) apart from the rest, and what each sync wrote. Shared
by ``policy.py`` and ``policy_data.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import policyworld as pw

from netplane.proxy.command import CommandResult, run_command
from netplane.proxy.iptables import policy as ipt_policy
from netplane.proxy.iptables.apply import Backend, tool
from netplane.proxy.nftables import policy as nft_policy
from netplane.proxy.policyloop import PolicyEnforcer

NODE = pw.MEASURED_NODE


@dataclass
class Command:
    tool: str
    seconds: float
    stdin: str


@dataclass
class Recorder:
    """A command runner that times every command the enforcer runs: their
    sum is the kernel's share of a sync (process start included)."""

    commands: list[Command] = field(default_factory=list)

    def __call__(self, argv: list[str], stdin: str | None) -> CommandResult:
        start = time.perf_counter()
        result = run_command(argv, stdin)
        name = argv[4] if argv[:3] == ["ip", "netns", "exec"] else argv[0]
        self.commands.append(Command(name, time.perf_counter() - start, stdin or ""))
        return result

    def take(self) -> list[Command]:
        out, self.commands = self.commands, []
        return out


def backend(mode: str, ns: str, runner: Recorder) -> Any:
    if mode == "nftables":
        return nft_policy.NftPolicyApplier(netns=ns, runner=runner)
    return ipt_policy.PolicyApplier(tool=tool(Backend(mode.split("-", 1)[1])), netns=ns,
                                    runner=runner)


def fed_enforcer(mode: str, ns: str, world: pw.World, runner: Recorder) -> PolicyEnforcer:
    e = PolicyEnforcer(node_name=NODE, backend=backend(mode, ns, runner), netns=ns,
                       runner=runner)
    e.set_up()
    for name, lbls in world.namespaces.items():
        e.on_namespace(None, pw.namespace_object(name, lbls))
    for p in world.pods:
        e.on_pod(None, pw.pod_object(p))
    for pol in world.policies:
        e.on_policy(None, pol)
    return e


@dataclass(frozen=True)
class Sync:
    seconds: float
    kernel: float
    applied: str

    @property
    def python(self) -> float:
        return self.seconds - self.kernel


def timed_sync(loop: asyncio.AbstractEventLoop, e: PolicyEnforcer, runner: Recorder, *,
               full: bool = False) -> Sync:
    runner.take()

    async def run() -> float:
        start = time.perf_counter()
        assert await e.sync(full=full), "policy sync failed"
        return time.perf_counter() - start

    seconds = loop.run_until_complete(run())
    commands = runner.take()
    return Sync(seconds, sum(c.seconds for c in commands), applied(commands))


def _count_elements(line: str) -> int:
    inside = line.partition("{")[2].rpartition("}")[0]
    return inside.count(",") + 1 if inside.strip() else 0


def applied(commands: Iterable[Command]) -> str:
    """What a sync put into the kernel, in words: chains rewritten (with
    their rules), set elements added or removed."""
    chains = rules = elements = 0
    for c in commands:
        lines = c.stdin.splitlines()
        if c.tool == "ipset":
            elements += sum(1 for x in lines if x.startswith(("add ", "del ")))
        elif c.tool.endswith("-restore"):
            chains += sum(1 for x in lines if x.startswith(":"))
            rules += sum(1 for x in lines if x.startswith("-A "))
        elif c.tool == "nft":
            chains += sum(1 for x in lines if x.startswith(("flush chain", "add chain")))
            rules += sum(1 for x in lines if x.startswith("add rule"))
            elements += sum(_count_elements(x) for x in lines
                            if x.startswith(("add element", "delete element")))
    words = [f"{_n(chains, 'chain')} ({_n(rules, 'rule')})"] if chains or rules else []
    words += [_n(elements, "element")] if elements else []
    return ", ".join(words) or "nothing"


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def set_policies(loop: asyncio.AbstractEventLoop, e: PolicyEnforcer, runner: Recorder,
                 current: list[Any], wanted: list[Any]) -> Sync:
    """Replaces the policies ``current`` by ``wanted`` in one partial sync."""
    for pol in current:
        e.on_policy(pol, None)
    for pol in wanted:
        e.on_policy(None, pol)
    return timed_sync(loop, e, runner)
