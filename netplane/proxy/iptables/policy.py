"""NetworkPolicy in the filter table (iptables and IPVS modes).

The first packet of every connection that a node forwards or receives
(conntrack NEW, and UNTRACKED for the node-local DNS that bypasses
conntrack) enters ``NPOL-FILTER`` from the top of FORWARD and INPUT. It
dispatches on the pod's address: the source's egress chain, then the
destination's ingress chain (``NPOL-PODE-`` / ``NPOL-PODI-``, only for pods
that some policy isolates), through a chain per block of addresses
(``NPOL-DE-`` / ``NPOL-DI-``) on a node with many of them. A pod chain
lets a pod reach itself, runs each isolating policy's chain (``NPOL-I-`` /
``NPOL-E-``), whose rules only set the allow bit of the packet mark, and
rejects what no policy marked; it clears the bit again so the other
direction starts afresh. Addresses live in ipsets (``NPOL-S-``, hash:net),
one per distinct set of peers, so a pod that comes, goes or changes labels
updates set elements and leaves every chain as it was. Replies and the
rest of a connection never meet these rules. Pure rendering here;
``PolicyApplier`` puts it into the kernel.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from netplane.proxy.command import CommandResult, Runner, run_command, run_in
from netplane.proxy.iptables.chains import Jump, Table, quote
from netplane.proxy.policy import (
    PREFIX,
    Direction,
    Plan,
    PodChain,
    PolicyChain,
    PortRange,
    derived_name,
)

FILTER_CHAIN = "NPOL-FILTER"
# Every denial goes through this one rule: its counter is the node's dropped packets.
REJECT_CHAIN = "NPOL-REJECT"
ALLOW_MARK = 0x10000
_MARK = f"{ALLOW_MARK:#x}/{ALLOW_MARK:#x}"
REJECT = "REJECT --reject-with icmp-admin-prohibited"
Chain = TypeVar("Chain", PolicyChain, PodChain)

_FIRST_PACKETS = ("-m", "conntrack", "--ctstate", "NEW,UNTRACKED")
# They must stand first in their built-in chains: the Service proxy's
# forwarding chain accepts masquerade-marked new connections.
JUMPS: tuple[Jump, ...] = (
    Jump(Table.FILTER, "FORWARD", FILTER_CHAIN, "netplane network policy", _FIRST_PACKETS),
    Jump(Table.FILTER, "INPUT", FILTER_CHAIN, "netplane network policy", _FIRST_PACKETS),
)


# The comment match holds 255 characters; iptables-restore refuses longer
# ones ("Parameter too long"), and a pod under a hundred policies names them all.
MAX_COMMENT = 255


def _rule(chain: str, comment: str, args: str) -> str:
    if len(comment) > MAX_COMMENT:
        comment = comment[:MAX_COMMENT - 3] + "..."
    return f"-A {chain} -m comment --comment {quote(comment)} {args}"


def _ports(ports: tuple[PortRange, ...] | None) -> list[str]:
    if ports is None:
        return [""]
    out = []
    for r in ports:
        proto = r.protocol.lower()
        if (r.first, r.last) == (0, 65535):
            out.append(f"-p {proto} ")
        elif r.first == r.last:
            out.append(f"-p {proto} -m {proto} --dport {r.first} ")
        else:
            out.append(f"-p {proto} -m {proto} --dport {r.first}:{r.last} ")
    return out


def policy_chain_rules(chain: PolicyChain) -> list[str]:
    ingress = chain.direction is Direction.INGRESS
    peer_dir, target_dir = ("src", "dst") if ingress else ("dst", "src")
    lines = []
    for e in chain.entries:
        match = ""
        if e.peer_set is not None:
            match += f"-m set --match-set {e.peer_set} {peer_dir} "
        if e.target_set is not None:
            match += f"-m set --match-set {e.target_set} {target_dir} "
        for ports in _ports(e.ports):
            lines.append(_rule(chain.name, e.comment,
                               f"{match}{ports}-j MARK --set-xmark {_MARK}"))
    return lines


def pod_chain_rules(chain: PodChain) -> list[str]:
    self_match = "-s" if chain.direction is Direction.INGRESS else "-d"
    lines = [_rule(chain.name, f"{chain.pod} to itself", f"{self_match} {chain.ip}/32 -j RETURN")]
    lines += [_rule(chain.name, key, f"-j {target}") for key, target in chain.policies]
    lines.append(_rule(chain.name, chain.comment, f"-m mark ! --mark {_MARK} -j {REJECT_CHAIN}"))
    lines.append(_rule(chain.name, chain.pod, f"-j MARK --set-xmark 0x0/{ALLOW_MARK:#x}"))
    return lines


# Past this many pods in one direction, the dispatch is a tree: a first
# packet meets a rule per block of 16 addresses, then one per pod of its
# block, instead of one per isolated pod of the node (with default-deny in
# every namespace, 200 ingress rules on a node of 200 pods: about 30 now).
# The tree costs a rule per block more, so it pays once a direction has
# more pods than a block usually holds.
FLAT_DISPATCH = 8
BLOCK_PREFIX = 28
BLOCK_CHAIN_PREFIX = {Direction.EGRESS: "NPOL-DE-", Direction.INGRESS: "NPOL-DI-"}


def _block(ip: str) -> str:
    host = int(ipaddress.IPv4Address(ip))
    return f"{ipaddress.IPv4Address(host & ~((1 << (32 - BLOCK_PREFIX)) - 1))}/{BLOCK_PREFIX}"


def dispatch_chains(plan: Plan) -> dict[str, list[str]]:
    """``NPOL-FILTER`` and, for a node with many isolated pods, the block
    chains it dispatches to (``NPOL-DE-`` / ``NPOL-DI-``, by address block)."""
    top: list[str] = []
    out = {FILTER_CHAIN: top}
    for direction, match in ((Direction.EGRESS, "-s"), (Direction.INGRESS, "-d")):
        pods = plan.dispatch(direction)
        if len(pods) <= FLAT_DISPATCH:
            top += [_rule(FILTER_CHAIN, f"{c.pod} {direction.lower()}",
                          f"{match} {c.ip}/32 -j {c.name}") for c in pods]
            continue
        blocks: dict[str, list[PodChain]] = {}
        for c in pods:
            blocks.setdefault(_block(c.ip), []).append(c)
        for block, members in blocks.items():
            chain = derived_name(BLOCK_CHAIN_PREFIX[direction], f"{block}/{direction}")
            top.append(_rule(FILTER_CHAIN, f"{block} {direction.lower()}",
                             f"{match} {block} -j {chain}"))
            out[chain] = [_rule(chain, f"{c.pod} {direction.lower()}",
                                f"{match} {c.ip}/32 -j {c.name}") for c in members]
    return out


class Renderer:
    """``chains`` that keeps each chain's rules, keyed by the chain (a value:
    an equal chain renders to equal rules), and renders only the chains that
    are new or changed since the last call, as kube-proxy keeps each
    service's rules. The lists it returns are shared: read them only."""

    def __init__(self) -> None:
        self._memo: dict[PolicyChain | PodChain, list[str]] = {}

    def _rules(self, chain: Chain, render: Callable[[Chain], list[str]]) -> list[str]:
        hit = self._memo.get(chain)
        return render(chain) if hit is None else hit

    def chains(self, plan: Plan) -> dict[str, list[str]]:
        """Every chain of ours with its rules, the dispatch chain included."""
        out = {**dispatch_chains(plan),
               REJECT_CHAIN: [_rule(REJECT_CHAIN, "denied by network policy", f"-j {REJECT}")]}
        memo: dict[PolicyChain | PodChain, list[str]] = {}
        for c in plan.policy_chains.values():
            out[c.name] = memo[c] = self._rules(c, policy_chain_rules)
        for p in plan.pod_chains.values():
            out[p.name] = memo[p] = self._rules(p, pod_chain_rules)
        self._memo = memo
        return out


def chains(plan: Plan) -> dict[str, list[str]]:
    """Every chain of ours with its rules, the dispatch chain included."""
    return Renderer().chains(plan)


def restore_document(new: Mapping[str, list[str]], old: Mapping[str, list[str]] | None = None,
                     *, stale: Iterable[str] = ()) -> str | None:
    """iptables-restore text for the chains that differ from ``old`` (all
    of them without it) and the deletion of ``stale`` ones; None when
    nothing changed. Chains are declared before any rule jumps to them."""
    changed = [c for c in new if old is None or (old.get(c) is not new[c] and old.get(c) != new[c])]
    gone = sorted(set(stale) | (set(old or ()) - set(new)))
    if not changed and not gone:
        return None
    # The dispatch chain last: it jumps to the pod chains, they to the policies.
    order = sorted(changed, key=lambda c: (c == FILTER_CHAIN, not c.startswith("NPOL-I-")
                                           and not c.startswith("NPOL-E-"), c))
    lines = ["*filter", *(f":{c} - [0:0]" for c in order + gone)]
    for c in order:
        lines += new[c]
    lines += [f"-X {c}" for c in gone]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _temp(name: str) -> str:
    return name + "-T"


# A small first hash: a node holds thousands of these sets, most of a few
# addresses, and the default (1024 buckets) makes each one cost 8 KiB and
# its creation four times as long; the kernel grows a hash that fills up.
# (``create -exist`` ignores the hash size of a set that exists.)
_CREATE = "hash:net family inet hashsize 64"


def ipset_updates(new: Mapping[str, frozenset[str]],
                  old: Mapping[str, frozenset[str]] | None, *,
                  rebuild: Iterable[str] = ()) -> str:
    """``ipset restore`` text that makes every set hold ``new``: new sets
    are created, known ones get only their added and removed elements
    (``old`` is what they hold: what was applied last, or what the kernel
    was read to hold). Without ``old`` (the kernel's content unknown), and
    for the sets in ``rebuild``, a set is filled under a temporary name and
    swapped in, so no lookup sees it half full."""
    lines = []
    rebuild = set(rebuild)
    for name in sorted(new):
        if old is None or name in rebuild:
            lines.append(f"create {name} {_CREATE} -exist")
            lines.append(f"create {_temp(name)} {_CREATE} -exist")
            lines.append(f"flush {_temp(name)}")
            lines += [f"add {_temp(name)} {e}" for e in sorted(new[name])]
            lines.append(f"swap {_temp(name)} {name}")
            lines.append(f"destroy {_temp(name)}")
            continue
        if name not in old:
            lines.append(f"create {name} {_CREATE} -exist")
        before = old.get(name, frozenset())
        if before is new[name]:
            continue  # the same set as last time: nothing to compare
        lines += [f"del {name} {e} -exist" for e in sorted(before - new[name])]
        lines += [f"add {name} {e} -exist" for e in sorted(new[name] - before)]
    return "".join(line + "\n" for line in lines)


@dataclass
class KernelSets:
    """Our sets as ``ipset save`` shows them."""

    sets: dict[str, frozenset[str]]  # elements written as a plan writes them
    odd: set[str]  # not a plain hash:net of IPv4, or elements with options


def parse_ipset_save(text: str) -> KernelSets:
    """Reads our sets (prefix ``NPOL-``) out of ``ipset save`` output. It
    writes a host of a hash:net without its /32; a plan writes it with."""
    members: dict[str, set[str]] = {}
    odd: set[str] = set()
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or not words[1].startswith(PREFIX):
            continue
        name = words[1]
        if words[0] == "create":
            members.setdefault(name, set())
            if words[2:5] != ["hash:net", "family", "inet"]:
                odd.add(name)
        elif words[0] == "add":
            element = words[2] if "/" in words[2] else words[2] + "/32"
            members.setdefault(name, set()).add(element)
            if len(words) > 3:
                odd.add(name)
    return KernelSets({n: frozenset(e) for n, e in members.items()}, odd)


def ipset_destruction(names: Iterable[str]) -> str:
    return "".join(f"destroy {n}\n" for n in sorted(names))


@dataclass
class Applied:
    chains: dict[str, list[str]]
    sets: dict[str, frozenset[str]]


class PolicyApplier:
    """Puts a policy plan into the filter table and ipsets of one netns."""

    def __init__(self, *, tool: str = "iptables", netns: str | None = None,
                 runner: Runner = run_command) -> None:
        self._tool = tool
        self._netns = netns
        self._runner = runner
        self.applied: Applied | None = None
        self._renderer = Renderer()

    def _run(self, argv: list[str], stdin: str | None = None, *,
             check: bool = True) -> CommandResult:
        return run_in(self._runner, self._netns, argv, stdin, check=check)

    def _iptables(self, *args: str, check: bool = True) -> CommandResult:
        return self._run([self._tool, "-w", "-t", "filter", *args], check=check)

    def kernel_chains(self) -> set[str]:
        out = self._iptables("-S", check=False).stdout
        return {line.split()[1] for line in out.splitlines()
                if line.startswith("-N ") and line.split()[1].startswith(PREFIX)}

    def kernel_sets(self) -> set[str]:
        out = self._run(["ipset", "list", "-n"], check=False).stdout
        return {n for n in out.split() if n.startswith(PREFIX)}

    def _jumps_first(self) -> bool:
        for jump in JUMPS:
            listed = self._iptables("-S", jump.base_chain, check=False).stdout.splitlines()
            rules = [line for line in listed if line.startswith("-A ")]
            if not rules or not rules[0].endswith(f"-j {jump.chain}"):
                return False
        return True

    def ensure_jumps(self) -> None:
        """Our jumps at the top of FORWARD and INPUT, each exactly once."""
        if self._jumps_first():
            return
        self._iptables("-N", FILTER_CHAIN, check=False)
        for jump in JUMPS:
            while self._iptables("-C", jump.base_chain, *jump.rule_args(),
                                 check=False).returncode == 0:
                self._iptables("-D", jump.base_chain, *jump.rule_args())
            self._iptables("-I", jump.base_chain, "1", *jump.rule_args())

    def render(self, plan: Plan) -> dict[str, list[str]]:
        return self._renderer.chains(plan)

    @staticmethod
    def rule_count(rendered: dict[str, list[str]]) -> int:
        return sum(map(len, rendered.values()))

    def dropped_packets(self) -> int:
        out = self._iptables("-L", REJECT_CHAIN, "-v", "-x", "-n", check=False).stdout
        rows = [line.split() for line in out.splitlines()[2:]]
        return sum(int(r[0]) for r in rows if r and r[0].isdigit())

    def intact(self) -> bool:
        """The cheap drift check: our jumps still first, and our dispatch
        chain as we wrote it (a flush of the table empties it). Listing
        only that chain keeps the check small at thousands of rules."""
        if not self._jumps_first():
            return False
        if self.applied is None:
            return True
        listed = self._iptables("-S", FILTER_CHAIN, check=False)
        rules = [line for line in listed.stdout.splitlines() if line.startswith("-A ")]
        return listed.returncode == 0 and len(rules) == len(self.applied.chains[FILTER_CHAIN])

    def apply(self, plan: Plan, rendered: dict[str, list[str]], *, full: bool) -> None:
        """Full: the kernel's content is not trusted (start, drift, period).
        Its sets are read back instead, and only what differs is written:
        refilling every set would cost seconds at 100,000 elements."""
        old = None if full or self.applied is None else self.applied
        if old is None:
            kernel = parse_ipset_save(self._run(["ipset", "save"]).stdout)
            sets_text = ipset_updates(plan.sets, kernel.sets, rebuild=kernel.odd)
            have_sets = set(kernel.sets)
        else:
            sets_text, have_sets = ipset_updates(plan.sets, old.sets), set(old.sets)
        if sets_text:
            self._run(["ipset", "restore"], sets_text)
        stale_chains = self.kernel_chains() - set(rendered) if old is None else set()
        doc = restore_document(rendered, None if old is None else old.chains, stale=stale_chains)
        if doc is not None:
            self._run([f"{self._tool}-restore", "-w", "--noflush"], doc)
        gone_sets = have_sets - set(plan.sets)
        if gone_sets:
            self._run(["ipset", "restore"], ipset_destruction(gone_sets))
        self.applied = Applied(dict(rendered), dict(plan.sets))

    def clean_up(self) -> None:
        for jump in JUMPS:
            while self._iptables("-C", jump.base_chain, *jump.rule_args(),
                                 check=False).returncode == 0:
                self._iptables("-D", jump.base_chain, *jump.rule_args())
        have = sorted(self.kernel_chains())
        if have:
            doc = ["*filter", *(f":{c} - [0:0]" for c in have), *(f"-X {c}" for c in have),
                   "COMMIT"]
            self._run([f"{self._tool}-restore", "-w", "--noflush"], "\n".join(doc) + "\n")
        sets = self.kernel_sets()
        if sets:
            self._run(["ipset", "restore"], ipset_destruction(sets))
        self.applied = None
