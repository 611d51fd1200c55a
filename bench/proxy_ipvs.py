"""Benchmark of the IPVS proxy mode's control plane, against the in-memory
IPVS table and a command runner that accepts everything.

For N ClusterIP services with 1 endpoint each: ``plan_s`` (the desired
virtual and real servers from the service map), ``full_sync_s`` (plan,
diff against an empty table, every operation applied) and ``one_change_s``
(median sync after one service loses its endpoint and gets it back: a
single real-server operation each). No kernel, no root: this measures our
code, not netlink. ``bench_ipvs(n)`` returns the numbers for
``bench/proxy.py``; run the module to print a table.
"""

from __future__ import annotations

import statistics
import sys
import time

from netplane.proxy.command import CommandResult
from netplane.proxy.config import ProxyConfig
from netplane.proxy.ipvs.backend import IPVSBackend
from netplane.proxy.ipvs.kernel import MemoryIPVS
from netplane.proxy.ipvs.plan import plan
from netplane.proxy.model import EndpointInfo, Protocol, ServiceMap, ServicePortInfo

NODE = "node-1"
NODE_IPS = ("192.168.56.11",)
CHANGES = 9
SIZES = (1_000, 5_000, 10_000)


def _accept(argv: list[str], stdin: str | None) -> CommandResult:
    if argv[:2] == ["iptables", "--version"]:
        return CommandResult(0, "iptables v1.8.9 (nf_tables)\n", "")
    return CommandResult(0, "", "")


def service_map(n: int) -> ServiceMap:
    out: ServiceMap = {}
    for i in range(n):
        info = ServicePortInfo("bench", f"svc-{i}", "", f"10.96.{i // 250}.{i % 250 + 1}", 80,
                               Protocol.TCP)
        out[info.key] = (info, [EndpointInfo(f"10.244.{i // 250}.{i % 250 + 1}", 8080)])
    return out


def bench_ipvs(n_services: int) -> dict[str, float]:
    config = ProxyConfig()
    sm = service_map(n_services)
    start = time.perf_counter()
    plan(sm, config, node_name=NODE, node_ips=NODE_IPS)
    plan_s = time.perf_counter() - start
    backend = IPVSBackend(handle=MemoryIPVS(), runner=_accept)
    start = time.perf_counter()
    backend.sync(sm, config, NODE, NODE_IPS, full=True)
    full_sync_s = time.perf_counter() - start
    first = next(iter(sm))
    changes = []
    for k in range(CHANGES):
        changed = dict(sm)
        if k % 2 == 0:
            changed[first] = (sm[first][0], [])
        start = time.perf_counter()
        backend.sync(changed, config, NODE, NODE_IPS, full=False)
        changes.append(time.perf_counter() - start)
    return {"plan_s": plan_s, "full_sync_s": full_sync_s,
            "one_change_s": statistics.median(changes)}


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or list(SIZES)
    print(f"{'services':>9} {'plan_s':>8} {'full_sync_s':>12} {'one_change_s':>13}")
    for n in sizes:
        r = bench_ipvs(n)
        print(f"{n:>9} {r['plan_s']:>8.3f} {r['full_sync_s']:>12.3f} {r['one_change_s']:>13.4f}")


if __name__ == "__main__":
    main()
