"""DNS benchmark: netplane's DNS server against dnsmasq, same names, same run.

Both servers hold the same 1,000 service names and listen on loopback
(127.0.0.x, free ports; nothing else is touched). dnsperf drives each one:
at full speed for cluster names and for unknown (NXDOMAIN) names, then at a
fixed 20,000 queries/s for the tail latency. Prints a table; not a test.

Needs the Debian packages dnsperf and dnsmasq-base. Usage:

    python bench/dns.py [--seconds 10] [--names 1000] [--rate 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETPLANE_IP, DNSMASQ_IP = "127.0.0.11", "127.0.0.12"
ZONE = "cluster.local"

SERVER_SCRIPT = """
import asyncio, json, sys
from netplane.dns.index import RecordIndex
from netplane.dns.server import run
index = RecordIndex()
for svc in json.load(open(sys.argv[1])):
    index.on_service(None, svc)
def ready(server):
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(json.dumps({"port": server.port, "loop": loop}), flush=True)
run(index, address=sys.argv[2], port=int(sys.argv[3]), ready=ready)
"""


@dataclass
class Result:
    server: str
    names: str
    qps: float
    avg_ms: float
    p99_ms: float | None
    lost: int


def free_port(address: str) -> int:
    """A port free for both UDP and TCP on the address."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def services(count: int) -> list[dict[str, object]]:
    return [{"kind": "Service", "metadata": {"name": f"svc-{i}", "namespace": "bench"},
             "spec": {"clusterIP": f"10.96.{i // 250 + 1}.{i % 250 + 1}",
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
            for i in range(count)]


def write_inputs(workdir: Path, count: int) -> dict[str, Path]:
    svcs = services(count)
    (workdir / "services.json").write_text(json.dumps(svcs))
    hosts = [f"{s['spec']['clusterIP']} {s['metadata']['name']}.bench.svc.{ZONE}"  # type: ignore[index]
             for s in svcs]
    (workdir / "hosts").write_text("\n".join(hosts) + "\n")
    files = {"cluster": workdir / "cluster.txt", "nxdomain": workdir / "nxdomain.txt"}
    files["cluster"].write_text("".join(f"svc-{i}.bench.svc.{ZONE} A\n" for i in range(count)))
    files["nxdomain"].write_text("".join(f"missing-{i}.bench.svc.{ZONE} A\n"
                                         for i in range(count)))
    return files


@contextlib.contextmanager
def netplane_server(workdir: Path) -> Iterator[tuple[int, str]]:
    port = free_port(NETPLANE_IP)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(workdir / "services.json"),
                             NETPLANE_IP, str(port)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield port, info["loop"]
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def dnsmasq_server(workdir: Path) -> Iterator[int]:
    port = free_port(DNSMASQ_IP)
    proc = subprocess.Popen(
        ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
         f"--addn-hosts={workdir / 'hosts'}", f"--port={port}", f"--listen-address={DNSMASQ_IP}",
         f"--local=/{ZONE}/", "--cache-size=10000", f"--pid-file={workdir / 'dnsmasq.pid'}",
         "--user=root", "--log-facility=/dev/null"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_answering(DNSMASQ_IP, port)
        yield port
    finally:
        proc.kill()
        proc.wait()


def wait_answering(address: str, port: int) -> None:
    query = bytes.fromhex("0001 0100 0001 0000 0000 0000") + b"\x00\x00\x06\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        for _ in range(50):
            sock.sendto(query, (address, port))
            with contextlib.suppress(OSError):
                sock.recv(512)
                return
    raise RuntimeError(f"nothing answers on {address}:{port}")


def dnsperf(address: str, port: int, datafile: Path, *, seconds: int,
            rate: int | None = None) -> tuple[float, float, float | None, int]:
    """qps, average latency (ms), p99 (ms, from per-query lines) and lost queries."""
    cmd = ["dnsperf", "-s", address, "-p", str(port), "-d", str(datafile), "-l", str(seconds),
           "-c", "4", "-q", "200", "-t", "2", "-v"]
    if rate is not None:
        cmd += ["-Q", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    qps = float(_field(out, r"Queries per second:\s+([\d.]+)"))
    avg = float(_field(out, r"Average Latency \(s\):\s+([\d.]+)")) * 1000
    lost = int(_field(out, r"Queries lost:\s+(\d+)"))
    latencies = sorted(float(m) for m in re.findall(r"^> \S+ .* ([\d.]+)$", out, re.MULTILINE))
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else None
    return qps, avg, p99, lost


def _field(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"dnsperf output lacks {pattern!r}:\n{text[-2000:]}")
    return match.group(1)


def run(seconds: int, count: int, rate: int) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="netplane-bench-dns-") as tmp:
        workdir = Path(tmp)
        files = write_inputs(workdir, count)
        with netplane_server(workdir) as (np_port, loop), dnsmasq_server(workdir) as dm_port:
            targets = [(f"netplane ({loop})", NETPLANE_IP, np_port),
                       ("dnsmasq", DNSMASQ_IP, dm_port)]
            for label, address, port in targets:
                for names in ("cluster", "nxdomain"):
                    wait_answering(address, port)
                    qps, avg, p99, lost = dnsperf(address, port, files[names], seconds=seconds)
                    results.append(Result(label, names, qps, avg, p99, lost))
                qps, avg, p99, lost = dnsperf(address, port, files["cluster"], seconds=seconds,
                                              rate=rate)
                results.append(Result(label, f"cluster @{rate} qps", qps, avg, p99, lost))
    return results


def print_table(results: list[Result]) -> None:
    print(f"{'server':<20} {'names':<22} {'queries/s':>10} {'avg ms':>8} {'p99 ms':>8} "
          f"{'lost':>6}")
    for r in results:
        p99 = f"{r.p99_ms:.3f}" if r.p99_ms is not None else "-"
        print(f"{r.server:<20} {r.names:<22} {r.qps:>10.0f} {r.avg_ms:>8.3f} {p99:>8} "
              f"{r.lost:>6}")
    by_key = {(r.server.split()[0], r.names): r for r in results}
    for names in ("cluster", "nxdomain"):
        ours, theirs = by_key.get(("netplane", names)), by_key.get(("dnsmasq", names))
        if ours and theirs and theirs.qps:
            print(f"netplane/dnsmasq queries/s, {names} names: {ours.qps / theirs.qps:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each dnsperf run")
    parser.add_argument("--names", type=int, default=1000, help="number of service names")
    parser.add_argument("--rate", type=int, default=20000, help="fixed rate for the p99 run")
    args = parser.parse_args()
    missing = [tool for tool in ("dnsperf", "dnsmasq") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (apt-get install dnsperf dnsmasq-base)")
    print_table(run(args.seconds, args.names, args.rate))


if __name__ == "__main__":
    main()
