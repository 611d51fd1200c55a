"""The data-plane half of ``policy.py``: pod-to-pod HTTP on a node whose
policy rules are in force, with 0 policies (A) and with ``POLICIES`` (B).

A node netns with its pod bridge and two pods of the synthetic cluster's
measured node (``podnet``), the enforcer fed the whole cluster's pods and
namespaces. The probed pods are the two last of the node, so that both
sort last in its dispatch (the worst case for iptables' chains); in B they
are isolated both ways and allow rules let the traffic through, as a
request made before the runs checks. Each cycle runs A and B back to back
for keep-alive, then for a new connection per request (AB, then BA in the
next cycle: other load on the machine drifts, the order alternates); the
client (wrk) and the server are pinned to CPUs 0 and 1. Reported: median
requests/s with the range, median p50 and p99, and B/A as the median of
the cycles' ratios with their range (a pair's two runs are seconds apart,
so the ratio holds where machine-wide load swings the absolute figures).
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field
from typing import Any

import podnet
import policyworld as pw
from policyrun import Recorder, fed_enforcer, set_policies, timed_sync

from netplane.proxy import policy
from netplane.proxy.policy import Direction

POLICIES = 1_000
KINDS = ("keep-alive", "new per request")


def probe_pods(world: pw.World) -> tuple[pw.PodSpec, pw.PodSpec]:
    """Client and server: the two last pods of the measured node."""
    local = sorted(world.local(), key=lambda p: tuple(map(int, p.ip.split("."))))
    return local[-2], local[-1]


def probe_policies(client: pw.PodSpec, server: pw.PodSpec) -> list[Any]:
    """The server takes the client on its port, the client may reach the
    server (and DNS): both isolated, both allowed."""
    return [
        pw.netpol(server.namespace, "probe-ingress", {
            "podSelector": {"matchLabels": dict(server.labels)},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                            "kubernetes.io/metadata.name": client.namespace}},
                                   "podSelector": {"matchLabels": dict(client.labels)}}],
                         "ports": [{"port": podnet.SERVER_PORT, "protocol": "TCP"}]}]}),
        pw.netpol(client.namespace, "probe-egress", {
            "podSelector": {"matchLabels": dict(client.labels)}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": dict(server.labels)}}],
                        "ports": [{"port": podnet.SERVER_PORT, "protocol": "TCP"}]},
                       {"ports": [{"port": 53, "protocol": "UDP"}]}]})]


@dataclass
class Runs:
    """The runs of one kind of connection, cycle by cycle."""

    a: list[podnet.Load] = field(default_factory=list)
    b: list[podnet.Load] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [b.rps / a.rps for a, b in zip(self.a, self.b, strict=True)]


def _check_in_force(e: Any, client: pw.PodSpec, server: pw.PodSpec, node: podnet.Node) -> None:
    assert e.model.isolated(server.ip, Direction.INGRESS)
    assert e.model.isolated(client.ip, Direction.EGRESS)
    assert policy.evaluate(e.model, client.ip, server.ip, "TCP", podnet.SERVER_PORT).allowed
    if not podnet.http_ok(node.pods["client"], server.ip):
        raise RuntimeError(f"{client.ip} cannot reach {server.ip} with the policies in force")


def measure_mode(mode: str, repeats: int, seconds: float) -> dict[str, Runs]:
    world = pw.World.build(0)
    client, server = probe_pods(world)
    many = [*pw.policies(POLICIES - 2), *probe_policies(client, server)]
    pin = podnet.cpus() >= 2
    runs = {kind: Runs() for kind in KINDS}
    loop = asyncio.new_event_loop()
    runner = Recorder()
    try:
        with podnet.node() as node:
            node.add_pod("client", client.ip)
            node.add_pod("server", server.ip)
            node.serve("server", cpu=1 if pin else None)
            e = fed_enforcer(mode, node.name, pw.World(world.pods, world.namespaces, []),
                             runner)
            try:
                timed_sync(loop, e, runner, full=True)
                set_policies(loop, e, runner, [], many)
                _check_in_force(e, client, server, node)
                current = many
                for r in range(repeats):
                    for kind, rs in runs.items():
                        # A and B of a pair back to back, the order alternating.
                        for variant in ("ab" if r % 2 == 0 else "ba"):
                            wanted = many if variant == "b" else []
                            if wanted is not current:
                                set_policies(loop, e, runner, current, wanted)
                                current = wanted
                            node.fresh("client")
                            got = podnet.http_load(node.pods["client"], server.ip,
                                                   seconds=seconds, close=kind != "keep-alive",
                                                   cpu=0 if pin else None)
                            (rs.b if variant == "b" else rs.a).append(got)
            finally:
                e.clean_up()
    finally:
        loop.close()
    return runs


def _range(values: list[float], fmt: str) -> str:
    return (f"{statistics.median(values):{fmt}} "
            f"({min(values):{fmt}}-{max(values):{fmt}})")


def print_mode(mode: str, runs: dict[str, Runs]) -> None:
    for kind, rs in runs.items():
        for label, loads in (("0", rs.a), (f"{POLICIES:,}", rs.b)):
            ratio = (f"{statistics.median(rs.ratios):.2f}x ({min(rs.ratios):.2f}-"
                     f"{max(rs.ratios):.2f})" if loads is rs.b else "")
            print(f"| {mode} | {kind} | {label} | {_range([x.rps for x in loads], ',.0f')} "
                  f"| {statistics.median(x.p50_ms for x in loads):.2f} ms "
                  f"| {statistics.median(x.p99_ms for x in loads):.2f} ms | {ratio} |")


def data_plane(modes: list[str], repeats: int, seconds: float) -> None:
    print(f"\ndata plane: {podnet.load_tool()}, {podnet.CONNECTIONS} connections, "
          f"{repeats} cycle(s) of A (0 policies) and B ({POLICIES:,}) alternating AB/BA, "
          f"{seconds:g} s a run; median (min-max) requests/s, median p50 and p99, B/A "
          "as the median (min-max) of the cycles' ratios; target B/A >= 0.95")
    print("| mode | connections | policies | requests/s | p50 | p99 | B/A |")
    print("|---" * 7 + "|")
    for mode in modes:
        print_mode(mode, measure_mode(mode, repeats, seconds))
