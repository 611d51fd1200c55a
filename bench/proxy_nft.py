"""Benchmark of the nftables proxy mode: full sync and one-service change.

For N ClusterIP services with 2 endpoints each, in a throwaway network
namespace: the time of a full sync (render + one transaction) into an
empty table, of a full resync over the same table, and of a partial sync
after one service's endpoints change (a change tracker names the service,
as the proxier's would). Beside them, the kernel's floor: the very text
of that full sync loaded by hand, through the same library, into a fresh
namespace (``bare_restore_s``) and over the loaded table
(``bare_reload_s``). ``bench_nft(n)`` returns the numbers; run the module
to print a table for 1,000 / 5,000 / 10,000 services. Needs root.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid

from netplane.proxy.config import ProxyConfig
from netplane.proxy.model import EndpointInfo, Protocol, ServiceMap, ServicePortInfo
from netplane.proxy.nftables.backend import NftablesBackend, SyncKind
from netplane.proxy.nftables.kernel import Loader, make_loader
from netplane.proxy.nftables.layout import TABLE_REF
from netplane.proxy.nftables.render import full_text, render

SIZES = (1_000, 5_000, 10_000)
NODE = "node-1"
CHANGES = 9


def _service(i: int, first_endpoint: str = "") -> tuple[ServicePortInfo, list[EndpointInfo]]:
    info = ServicePortInfo("bench", f"svc-{i}", "http",
                           f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}", 80, Protocol.TCP)
    eps = [EndpointInfo(f"10.244.{1 + j}.{i % 250 + 2}", 8080, node_name=NODE) for j in (0, 1)]
    if first_endpoint:
        eps[0] = EndpointInfo(first_endpoint, 8080, node_name=NODE)
    return info, eps


def service_map(n: int) -> ServiceMap:
    entries = (_service(i) for i in range(n))
    return dict(sorted((info.key, (info, eps)) for info, eps in entries))


class RecordingLoader:
    """Keeps the last text it loaded, for the bare-load comparison."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self.last = ""

    def load(self, text: str) -> None:
        self.last = text
        self.loader.load(text)

    def close(self) -> None:
        self.loader.close()


def _netns() -> str:
    name = f"npb-nft-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def _timed_load(loader: Loader, text: str) -> float:
    start = time.perf_counter()
    loader.load(text)
    return time.perf_counter() - start


def _bare_load(text: str) -> float:
    """The same text into a fresh namespace's new table, by hand."""
    netns = _netns()
    loader = make_loader(netns=netns)
    try:
        loader.load(f"add table {TABLE_REF}\n")
        return _timed_load(loader, text)
    finally:
        loader.close()
        subprocess.run(["ip", "netns", "del", netns], check=False)


def bench_nft(n_services: int) -> dict[str, float]:
    """Seconds for: full_sync_s (empty table), resync_s (full over an equal
    table), bare_restore_s / bare_reload_s (the full sync's text loaded by
    hand into a fresh table / over the loaded one), one_change_s (median
    partial sync), render_s (a cold render and its text, pure)."""
    netns = _netns()
    backend: NftablesBackend | None = None
    try:
        loader = RecordingLoader(make_loader(netns=netns))
        backend = NftablesBackend(netns=netns, loader=loader)
        backend.ensure_plumbing()
        config = ProxyConfig()
        sm = service_map(n_services)
        start = time.perf_counter()
        full_text(render(sm, config, node_name=NODE))
        render_s = time.perf_counter() - start
        full = backend.sync(sm, config, node_name=NODE, full=True)
        full_load = loader.last
        resync = backend.sync(sm, config, node_name=NODE, full=True)
        reload_s = _timed_load(loader.loader, full_load)
        changes: list[float] = []
        spn = next(iter(sm))
        for k in range(CHANGES):
            sm = dict(sm)
            sm[spn] = _service(0, f"10.244.9.{10 + k}")
            result = backend.sync(sm, config, node_name=NODE, changed=[spn])
            assert result.kind == SyncKind.PARTIAL, result
            changes.append(result.seconds)
        assert backend.kernel_matches()
        backend.clean_up()
        return {"full_sync_s": full.seconds, "resync_s": resync.seconds,
                "bare_restore_s": _bare_load(full_load), "bare_reload_s": reload_s,
                "one_change_s": statistics.median(changes), "render_s": render_s}
    finally:
        if backend is not None:
            backend.close()
        subprocess.run(["ip", "netns", "del", netns], check=False)


def main(sizes: tuple[int, ...] = SIZES) -> None:
    print(f"{'services':>9} {'full sync':>10} {'bare load':>10} {'resync':>9} "
          f"{'bare reload':>12} {'render':>9} {'one change':>11}")
    for n in sizes:
        r = bench_nft(n)
        print(f"{n:>9,} {r['full_sync_s']:>9.3f}s {r['bare_restore_s']:>9.3f}s "
              f"{r['resync_s']:>8.3f}s {r['bare_reload_s']:>11.3f}s "
              f"{r['render_s']:>8.3f}s {r['one_change_s'] * 1000:>9.2f}ms")


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
