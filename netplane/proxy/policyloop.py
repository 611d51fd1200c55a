"""Network policy on one node: watch events in, kernel rules out.

Handlers keep the newest policies, pods (as ``PodInfo``) and namespace
labels and note whether anything the rules depend on changed. The loop is
the proxy's (``SyncLoop``: bounded frequency, periodic full sync, drift
check); a sync computes the node's ``NodePolicy``, its plan and the mode's
rendering, and applies only what differs from what it applied last.

Connections already open when a policy starts denying them are cut, as
Calico does: after a sync that changed the rules, every conntrack entry of
the node is judged by the new model, and the denied ones are deleted. The
next packet of such a connection is a new one to conntrack, meets the
policy chains and is rejected; allowed connections keep their entries.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from netplane.api.meta import Obj, labels, name, namespace
from netplane.proxy import policy
from netplane.proxy.command import Runner, run_command, run_in
from netplane.proxy.loop import SyncLoop
from netplane.proxy.metrics import SYNC_BUCKETS, Histogram

log = logging.getLogger(__name__)


class Backend(Protocol):
    applied: Any

    def render(self, plan: policy.Plan) -> Any: ...
    def rule_count(self, rendered: Any) -> int: ...
    def apply(self, plan: policy.Plan, rendered: Any, *, full: bool) -> None: ...
    def ensure_jumps(self) -> None: ...
    def dropped_packets(self) -> int: ...
    def intact(self) -> bool: ...
    def clean_up(self) -> None: ...


@dataclass
class PolicyInputs:
    """The newest objects policy depends on, and whether they changed."""

    policies: dict[str, Obj]
    pods: dict[str, policy.PodInfo]
    namespaces: dict[str, dict[str, str]]
    pending: bool = False

    @classmethod
    def empty(cls) -> PolicyInputs:
        return cls({}, {}, {})

    def policy(self, prev: Obj | None, cur: Obj | None) -> bool:
        obj = cur if cur is not None else prev
        if obj is None:
            return False
        key = f"{namespace(obj)}/{name(obj)}"
        if cur is None:
            changed = self.policies.pop(key, None) is not None
        else:
            old = self.policies.get(key)
            changed = old is None or old.get("spec") != cur.get("spec")
            self.policies[key] = cur
        self.pending |= changed
        return changed

    def pod(self, prev: Obj | None, cur: Obj | None) -> bool:
        obj = cur if cur is not None else prev
        if obj is None:
            return False
        key = f"{namespace(obj)}/{name(obj)}"
        info = policy.pod_info(cur) if cur is not None else None
        old = self.pods.get(key)
        if info is None:
            changed = self.pods.pop(key, None) is not None
        else:
            changed = old != info
            self.pods[key] = info
        self.pending |= changed
        return changed

    def namespace(self, prev: Obj | None, cur: Obj | None) -> bool:
        obj = cur if cur is not None else prev
        if obj is None:
            return False
        if cur is None:
            changed = self.namespaces.pop(name(obj), None) is not None
        else:
            new = dict(labels(cur))
            changed = self.namespaces.get(name(obj)) != new
            self.namespaces[name(obj)] = new
        self.pending |= changed
        return changed


# -- conntrack ----------------------------------------------------------------

_FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")


@dataclass(frozen=True)
class Connection:
    """One conntrack entry: the original tuple, and where it really goes
    (the reply's source, after DNAT)."""

    protocol: str
    src: str
    dst: str
    sport: int
    dport: int
    real_dst: str
    real_dport: int


# TCP entries of connections that are over or closing: nothing to cut.
_CLOSED = {"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "FIN_WAIT"}


def parse_conntrack(text: str) -> list[Connection]:
    """``conntrack -L`` lines for open TCP, UDP and SCTP flows; the rest is
    skipped."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] not in ("tcp", "udp", "sctp"):
            continue
        if words[0] == "tcp" and len(words) > 3 and words[3] in _CLOSED:
            continue
        fields = _FIELD.findall(line)
        if len(fields) < 8:
            continue
        orig, reply = dict(fields[:4]), dict(fields[4:8])
        try:
            out.append(Connection(words[0].upper(), orig["src"], orig["dst"],
                                  int(orig["sport"]), int(orig["dport"]),
                                  reply["src"], int(reply["sport"])))
        except (KeyError, ValueError):
            continue
    return out


def denied_connections(model: policy.NodePolicy, conns: list[Connection],
                       local_ips: frozenset[str]) -> list[Connection]:
    """The entries that the model would not let start now."""
    out = []
    for c in conns:
        if c.src in local_ips:
            continue  # the node's own traffic is always allowed
        if c.src not in model.pods and c.real_dst not in model.pods:
            continue  # no end of it is isolated on this node
        if not policy.evaluate(model, c.src, c.real_dst, c.protocol, c.real_dport).allowed:
            out.append(c)
    return out


class PolicyEnforcer(SyncLoop):
    """Keeps one node's policy rules in step with the cluster."""

    mode = "policy"

    def __init__(self, *, node_name: str, backend: Backend, netns: str | None = None,
                 runner: Runner = run_command, min_sync_interval: float = 0.1,
                 sync_period: float = 30.0, check_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(node_name=node_name, min_sync_interval=min_sync_interval,
                         sync_period=sync_period, check_interval=check_interval, clock=clock)
        self.backend = backend
        self.inputs = PolicyInputs.empty()
        self._netns = netns
        self._runner = runner
        self.model = policy.NodePolicy()
        self.plan = policy.Plan()
        # Each sync works out again only the policies whose inputs changed.
        self._models = policy.ModelCache(local=lambda p: p.node == node_name)
        self._planner = policy.Planner()
        self._rendered: Any = None
        self.policy_sync_duration = Histogram(SYNC_BUCKETS)
        self.cut_connections = 0
        # A full load rewrites the reject rule and zeroes its kernel counter:
        # what it had counted is carried here, so the metric only grows. The
        # metric is read on the loop while a sync applies in its thread.
        self._dropped_before = 0
        self._dropped_shown = 0
        self._rewriting = False
        self._counting = threading.Lock()

    def _work_pending(self) -> bool:
        return self.inputs.pending

    @property
    def dirty(self) -> bool:
        return self.inputs.pending or self._needs_full

    def on_policy(self, prev: Obj | None, cur: Obj | None) -> None:
        if self.inputs.policy(prev, cur):
            self._wake.set()

    def on_pod(self, prev: Obj | None, cur: Obj | None) -> None:
        if self.inputs.pod(prev, cur):
            self._wake.set()

    def on_namespace(self, prev: Obj | None, cur: Obj | None) -> None:
        if self.inputs.namespace(prev, cur):
            self._wake.set()

    # -- SyncLoop's hooks --------------------------------------------------

    def set_up(self) -> None:
        self.backend.ensure_jumps()

    def clean_up(self) -> None:
        self.backend.clean_up()

    def _intact(self) -> bool:
        return self.backend.intact()

    def compute(self) -> tuple[policy.NodePolicy, policy.Plan]:
        model = self._models.compute(self.inputs.policies.values(), self.inputs.pods.values(),
                                     self.inputs.namespaces)
        return model, self._planner.plan(model)

    async def sync(self, *, full: bool = False) -> bool:
        start = self._clock()
        self.inputs.pending = False
        try:
            model, plan = self.compute()
            rendered = self.backend.render(plan)
            changed = rendered != self._rendered or plan.sets != self.plan.sets
            if full or changed:
                await asyncio.to_thread(self._apply, plan, rendered, full or self._needs_full)
            if changed and self._rendered is not None:
                await asyncio.to_thread(self._cut, model)
        except Exception:
            log.exception("network policy sync failed on node %s", self.node_name)
            self.failed_syncs += 1
            self.last_sync_ok = False
            self._needs_full = True
            self._record_sync(start)
            return False
        self.model, self.plan, self._rendered = model, plan, rendered
        self._needs_full = False
        if full:
            self.full_syncs += 1
            self.last_full_sync_time = self._clock()
        else:
            self.partial_syncs += 1
        self.rule_count = self.backend.rule_count(rendered)
        self.last_sync_ok = True
        self._record_sync(start)
        self.policy_sync_duration.observe(self.last_sync_duration)
        self._record_programmed({})
        return True

    def _apply(self, plan: policy.Plan, rendered: Any, full: bool) -> None:
        if not full:
            self.backend.apply(plan, rendered, full=False)
            return
        self.backend.ensure_jumps()
        with self._counting:
            self._dropped_before += self._kernel_dropped()
            self._rewriting = True
        try:
            self.backend.apply(plan, rendered, full=True)
        finally:
            with self._counting:
                self._rewriting = False

    def _local_ips(self) -> frozenset[str]:
        out = run_in(self._runner, self._netns, ["ip", "-o", "-4", "addr", "show"],
                     check=False).stdout
        ips = set()
        for m in re.finditer(r"inet (\S+)", out):
            ips.add(str(ipaddress.ip_interface(m.group(1)).ip))
        return frozenset(ips)

    def _cut(self, model: policy.NodePolicy) -> None:
        listed = run_in(self._runner, self._netns, ["conntrack", "-L", "-f", "ipv4"],
                        check=False)
        denied = denied_connections(model, parse_conntrack(listed.stdout), self._local_ips())
        self.cut_connections += len(denied)
        # One deletion per client, server and port: all its source ports go at once.
        for proto, src, dst, dport in sorted({(c.protocol.lower(), c.src, c.dst, c.dport)
                                              for c in denied}):
            run_in(self._runner, self._netns,
                   ["conntrack", "-D", "-p", proto, "-s", src, "-d", dst, "--dport", str(dport)],
                   check=False)

    def isolated_pods(self) -> int:
        return len(self.model.pods)

    def dropped_packets(self) -> int:
        """Packets rejected since this enforcer started, across full loads."""
        with self._counting:
            if not self._rewriting:
                self._dropped_shown = max(self._dropped_shown,
                                          self._dropped_before + self._kernel_dropped())
            return self._dropped_shown

    def _kernel_dropped(self) -> int:
        try:
            return self.backend.dropped_packets()
        except Exception:  # a metric must not fail the scrape
            log.exception("reading the policy drop counter failed")
            return 0

    def describe(self, *, check_kernel: bool = False) -> Obj:
        out = self._describe_sync()
        out["pods"] = [
            {"pod": iso.pod.key, "ip": ip, "ingress": list(iso.ingress),
             "egress": list(iso.egress)} for ip, iso in sorted(self.model.pods.items())]
        out["cutConnections"] = self.cut_connections
        if check_kernel:
            out["intact"] = self.backend.intact()
        return out
