"""Reads iptables-restore text back into tables, chains and rules.

``parse`` loads a document into an empty rule set; ``Ruleset.restore`` plays
one onto an existing set with ``--noflush`` semantics (``:CHAIN`` creates
or flushes, ``-A`` appends, ``-I CHAIN N`` inserts, ``-D`` deletes by rule
text, ``-X`` deletes a chain), so a partial sync can be checked against the
full one. Both refuse what ``iptables-restore`` would refuse for us: a rule
in an undeclared chain, a jump to a missing chain, deleting a rule that is
not there, an option this model does not understand. Only the matches and
targets our renderers write are modelled.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from netplane.proxy.iptables.chains import Jump

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}
TERMINAL_TARGETS = {"ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE"}
NONTERMINAL_TARGETS = {"MARK", "NOTRACK", "RETURN"}
_IGNORED_WITH_VALUE = {"-m", "--comment", "--mode", "--reject-with", "--seconds"}
# iptables-save spells -m recent in full: "--mask 255.255.255.255 --rsource".
_IGNORED_WITH_VALUE |= {"--mask"}
_IGNORED_FLAGS = {"--reap", "--rsource", "--rdest"}
_TARGET_OPTIONS = {"--to-destination", "--or-mark", "--xor-mark", "--set-xmark", "--set-mark",
                   "--and-mark", "--reject-with", "--to-source"}
_FLAGS = {"--random-fully", "--random"}
_MATCH_KEYS = {"-s": "src", "--source": "src", "-d": "dst", "--destination": "dst",
               "-p": "proto", "--protocol": "proto", "--dport": "dport", "--sport": "sport",
               "--probability": "probability", "--mark": "mark", "--ctstate": "ctstate",
               "--dst-type": "dsttype", "--src-type": "srctype"}


class ParseError(ValueError):
    """The document would not load; the message names the line."""


@dataclass(frozen=True)
class Condition:
    key: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class Rule:
    """One rule: its matches, target and target options (``--set`` of
    ``-m recent`` counts as an option: it is a side effect, not a match)."""

    chain: str
    text: str
    conditions: tuple[Condition, ...]
    target: str
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str:
        return dict(self.options).get(name, "")

    @property
    def spec(self) -> str:
        """The rule without its ``-A CHAIN`` head, as ``-D`` names it."""
        return self.text.split(" ", 2)[2] if self.text.count(" ") >= 2 else ""


Chains = dict[str, list[Rule]]


@dataclass
class Ruleset:
    """Tables → chains → rules, as the kernel would hold them after a restore."""

    tables: dict[str, Chains] = field(default_factory=dict)

    def chain(self, table: str, chain: str) -> list[Rule]:
        return self.tables.get(table, {}).get(chain, [])

    def copy(self) -> Ruleset:
        return Ruleset({t: {c: list(rs) for c, rs in chains.items()}
                        for t, chains in self.tables.items()})

    def dump(self) -> str:
        """Canonical text: tables and chains sorted, rule order kept within a chain."""
        lines: list[str] = []
        for table in sorted(self.tables):
            chains = {c: rs for c, rs in self.tables[table].items()
                      if c not in BUILTIN_CHAINS.get(table, ()) or rs}
            if not chains:
                continue
            lines.append(f"*{table}")
            lines += [f":{c}" for c in sorted(chains)]
            lines += [r.text for c in sorted(chains) for r in chains[c]]
            lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def with_jumps(self, jumps: Iterable[Jump]) -> Ruleset:
        """A copy with the fixed jumps put first in their built-in chains, in order."""
        out = self.copy()
        for j in reversed(list(jumps)):
            args = " ".join(shlex.quote(a) for a in j.rule_args())
            rule = parse_rule(j.base_chain, f"-A {j.base_chain} {args}", 0)
            out.tables.setdefault(j.table, {}).setdefault(j.base_chain, []).insert(0, rule)
        return out

    def restore(self, text: str) -> Ruleset:
        """A copy with ``text`` applied as ``iptables-restore --noflush`` would."""
        out = self.copy()
        _Restore(out).run(text)
        return out


class _Parser:
    """Turns the tokens after ``-A CHAIN`` into conditions, target and options."""

    def __init__(self, lineno: int) -> None:
        self.lineno = lineno
        self.conds: list[Condition] = []
        self.opts: list[tuple[str, str]] = []
        self.target = ""
        self.recent_name = ""

    def finish(self) -> None:
        """Names the ``-m recent`` list in the conditions and options that use it."""
        self.conds = [replace(c, value=self.recent_name) if c.key == "recent" else c
                      for c in self.conds]
        self.opts = [(k, self.recent_name) if k == "--set" else (k, v) for k, v in self.opts]

    def token(self, tok: str, it: Iterator[str], negate: bool) -> None:
        nxt = it.__next__
        if tok in ("-j", "-g"):
            self.target = nxt()
        elif tok in _MATCH_KEYS:
            self.conds.append(Condition(_MATCH_KEYS[tok], nxt(), negate))
        elif tok == "--name":
            self.recent_name = nxt()
        elif tok == "--match-set":
            set_name = nxt()
            self.conds.append(Condition("set", f"{set_name} {nxt()}", negate))
        elif tok == "--rcheck":
            # The list's --name may come before or after (iptables-save puts
            # it after): filled in by ``finish``.
            self.conds.append(Condition("recent", "", negate))
        elif tok == "--set":
            self.opts.append(("--set", ""))
        elif tok in _TARGET_OPTIONS and self.target:
            self.opts.append((tok, nxt()))
        elif tok in _FLAGS:
            self.opts.append((tok, ""))
        elif tok in _IGNORED_WITH_VALUE:
            nxt()
        elif tok not in _IGNORED_FLAGS:
            raise ParseError(f"line {self.lineno}: option {tok!r} is not understood")


def parse_rule(chain: str, line: str, lineno: int, *, skip: int = 2) -> Rule:
    """One rule line; ``skip`` head tokens (``-A CHAIN``) are not options."""
    try:
        tokens = shlex.split(line)[skip:]
        p = _Parser(lineno)
        it = iter(tokens)
        negate = False
        for tok in it:
            if tok == "!":
                negate = True
                continue
            p.token(tok, it, negate)
            negate = False
        p.finish()
    except (StopIteration, ValueError) as e:
        raise ParseError(f"line {lineno}: cannot parse {line!r}: {e}") from None
    head = line.split(" ", skip)
    text = f"-A {chain} {head[-1]}" if len(head) > skip else f"-A {chain}"
    return Rule(chain, text, tuple(p.conds), p.target, tuple(p.opts))


class _Restore:
    """Plays one document onto a rule set, table by table, each at COMMIT."""

    def __init__(self, rs: Ruleset) -> None:
        self.rs = rs
        self.table = ""
        self.chains: Chains = {}
        self.deleted: list[str] = []

    def run(self, text: str) -> None:
        open_table = False
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                self._begin(line[1:])
                open_table = True
            elif not open_table:
                raise ParseError(f"line {lineno}: {line!r} outside a table")
            elif line == "COMMIT":
                self._commit(lineno)
                open_table = False
            else:
                self._line(line, lineno)
        if open_table:
            raise ParseError(f"table {self.table} has no COMMIT")

    def _begin(self, table: str) -> None:
        self.table = table
        have = self.rs.tables.get(table, {})
        self.chains = {c: [] for c in BUILTIN_CHAINS.get(table, ())}
        self.chains.update({c: list(rs) for c, rs in have.items()})
        self.deleted = []

    def _commit(self, lineno: int) -> None:
        for c in self.deleted:
            self.chains.pop(c, None)
        for rules in self.chains.values():
            for r in rules:
                if r.target and r.target not in TERMINAL_TARGETS | NONTERMINAL_TARGETS \
                        and r.target not in self.chains:
                    raise ParseError(f"table {self.table} (COMMIT at line {lineno}): "
                                     f"{r.chain} jumps to missing chain {r.target}")
        self.rs.tables[self.table] = self.chains

    def _chain(self, chain: str, lineno: int) -> list[Rule]:
        if chain not in self.chains or chain in self.deleted:
            raise ParseError(f"line {lineno}: rule in undeclared chain {chain}")
        return self.chains[chain]

    def _line(self, line: str, lineno: int) -> None:
        op, _, rest = line.partition(" ")
        chain = rest.split(" ", 1)[0]
        if line.startswith(":"):
            self.chains[line[1:].split()[0]] = []
        elif op == "-A":
            self._chain(chain, lineno).append(parse_rule(chain, line, lineno))
        elif op == "-I":
            pos = rest.split(" ", 2)
            rules = self._chain(chain, lineno)
            at = int(pos[1]) - 1 if len(pos) > 1 and pos[1].isdigit() else 0
            skip = 3 if len(pos) > 1 and pos[1].isdigit() else 2
            rules.insert(at, parse_rule(chain, line, lineno, skip=skip))
        elif op == "-D":
            self._delete(chain, line, lineno)
        elif op == "-X":
            self._chain(chain, lineno)
            self.deleted.append(chain)
        else:
            raise ParseError(f"line {lineno}: unexpected {line!r}")

    def _delete(self, chain: str, line: str, lineno: int) -> None:
        rules = self._chain(chain, lineno)
        spec = parse_rule(chain, line, lineno).spec
        for i, r in enumerate(rules):
            if r.spec == spec:
                del rules[i]
                return
        raise ParseError(f"line {lineno}: no such rule in {chain} to delete")


def parse(text: str) -> Ruleset:
    """Parses iptables-restore input; raises ParseError where the kernel would refuse."""
    out = Ruleset().restore(text)
    # Built-in chains with nothing in them are not part of what was loaded.
    for table, chains in out.tables.items():
        for c in BUILTIN_CHAINS.get(table, ()):
            if not chains.get(c):
                chains.pop(c, None)
    return out
