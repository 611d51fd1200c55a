"""DNS benchmark: netplane's DNS server against dnsmasq, same names, same run.

Both servers hold the same 1,000 service names and listen on loopback
(127.0.0.x, free ports; nothing else is touched). dnsperf drives each one
at full speed with four query streams, then at a fixed 20,000 queries/s
for the tail latency:

- ``cluster``: the service names, over and over;
- ``cluster first-seen``: the service names in mixes of upper and lower
  case (as resolvers using 0x20 send them), no query of a run repeating
  another after its id, so that nothing keyed by a query's bytes helps;
- ``nxdomain``: 1,000 unknown names under the cluster zone, over and over;
- ``nxdomain first-seen``: a new unknown name in every query.

Runs alternate between the two servers, which goes first alternating too
(``--runs`` of each row, medians shown), so that the machine's other work
falls on both alike. Beside queries/s, each server's CPU time (user and
system, from /proc) per query answered: where dnsperf, not the server, is
what runs out of CPU (a small machine), queries/s says as much about the
client as about the server, and the CPU time is the server's own cost.
Prints a table; not a test.

Ours answers these queries in its compiled fast path when it is built
(``netplane (uvloop, C)``); ``--python`` measures the Python path alone.

Needs the Debian packages dnsperf and dnsmasq-base. Usage:

    python bench/dns.py [--seconds 10] [--runs 3] [--names 1000] [--rate 20000] [--python]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETPLANE_IP, DNSMASQ_IP = "127.0.0.11", "127.0.0.12"
ZONE = "cluster.local"
FIRST_SEEN_PER_SECOND = 150_000  # more queries than either server answers in the time

SERVER_SCRIPT = """
import asyncio, json, sys
from netplane.dns.index import RecordIndex
from netplane.dns.server import run
index = RecordIndex()
for svc in json.load(open(sys.argv[1])):
    index.on_service(None, svc)
def ready(server):
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(json.dumps({"port": server.port, "loop": loop, "compiled": server.compiled}),
          flush=True)
run(index, address=sys.argv[2], port=int(sys.argv[3]), ready=ready,
    compiled=sys.argv[4] == "compiled")
"""


@dataclass
class Sample:
    """One dnsperf run against one server."""

    qps: float
    avg_ms: float
    p99_ms: float | None
    lost: int
    completed: int
    cpu_us: float = 0.0  # the server's CPU time per completed query


@dataclass
class Result:
    server: str
    names: str
    qps: float
    avg_ms: float
    p99_ms: float | None
    lost: int
    cpu_us: float


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
    """Both servers' names, and the query files of the repeated streams."""
    svcs = services(count)
    (workdir / "services.json").write_text(json.dumps(svcs))
    hosts = [f"{s['spec']['clusterIP']} {s['metadata']['name']}.bench.svc.{ZONE}"  # type: ignore[index]
             for s in svcs]
    (workdir / "hosts").write_text("\n".join(hosts) + "\n")
    streams = {"cluster": (f"svc-{i}.bench.svc.{ZONE}" for i in range(count)),
               "nxdomain": (f"missing-{i}.bench.svc.{ZONE}" for i in range(count))}
    return {stream: write_queries(workdir / f"{stream}.txt", names)
            for stream, names in streams.items()}


def first_seen_queries(workdir: Path, stream: str, *, run: int, count: int,
                       queries: int) -> Path:
    """A query file for one run of a first-seen stream: no query in it repeats."""
    rng = random.Random(run)
    if stream == "cluster first-seen":
        names = distinct_spellings(
            (f"svc-{rng.randrange(count)}.bench.svc.{ZONE}" for _ in range(queries)), rng)
    else:
        names = (f"new-{run}-{i}.bench.svc.{ZONE}" for i in range(queries))
    return write_queries(workdir / "first-seen.txt", names)


def write_queries(path: Path, names: Iterator[str]) -> Path:
    with path.open("w") as out:
        out.writelines(f"{name} A\n" for name in names)
    return path


def distinct_spellings(names: Iterator[str], rng: random.Random) -> Iterator[str]:
    """Each name in a mix of upper and lower case not given before."""
    seen: set[str] = set()
    for name in names:
        while True:
            spelled = "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c
                              for c in name)
            if spelled not in seen:
                break
        seen.add(spelled)
        yield spelled


@contextlib.contextmanager
def netplane_server(workdir: Path, *, compiled: bool) -> Iterator[tuple[int, int, str]]:
    """Our server's port, process id and label: the event loop, and C when
    the compiled fast path serves."""
    port = free_port(NETPLANE_IP)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(workdir / "services.json"),
                             NETPLANE_IP, str(port), "compiled" if compiled else "python"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield port, proc.pid, info["loop"] + (", C" if info["compiled"] else "")
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def dnsmasq_server(workdir: Path) -> Iterator[tuple[int, int]]:
    port = free_port(DNSMASQ_IP)
    proc = subprocess.Popen(
        ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
         f"--addn-hosts={workdir / 'hosts'}", f"--port={port}", f"--listen-address={DNSMASQ_IP}",
         f"--local=/{ZONE}/", "--cache-size=10000", f"--pid-file={workdir / 'dnsmasq.pid'}",
         "--user=root", "--log-facility=/dev/null"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_answering(DNSMASQ_IP, port)
        yield port, proc.pid
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


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dnsperf(address: str, port: int, datafile: Path, *, seconds: int, once: bool,
            rate: int | None = None) -> Sample:
    """qps, average latency (ms), p99 (ms, from per-query lines, only at a
    fixed rate: printing them costs dnsperf time at full speed), lost and
    completed queries."""
    cmd = ["dnsperf", "-s", address, "-p", str(port), "-d", str(datafile), "-l", str(seconds),
           "-c", "4", "-q", "200", "-t", "2"]
    if once:
        cmd += ["-n", "1"]
    if rate is not None:
        cmd += ["-Q", str(rate), "-v"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    qps = float(_field(out, r"Queries per second:\s+([\d.]+)"))
    avg = float(_field(out, r"Average Latency \(s\):\s+([\d.]+)")) * 1000
    lost = int(_field(out, r"Queries lost:\s+(\d+)"))
    completed = int(_field(out, r"Queries completed:\s+(\d+)"))
    latencies = sorted(float(m) for m in re.findall(r"^> \S+ .* ([\d.]+)$", out, re.MULTILINE))
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else None
    return Sample(qps, avg, p99, lost, completed)


def _field(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"dnsperf output lacks {pattern!r}:\n{text[-2000:]}")
    return match.group(1)


def run(seconds: int, runs: int, count: int, rate: int, *, compiled: bool) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="netplane-bench-dns-") as tmp:
        workdir = Path(tmp)
        files = write_inputs(workdir, count)
        with (netplane_server(workdir, compiled=compiled) as (np_port, np_pid, loop),
              dnsmasq_server(workdir) as (dm_port, dm_pid)):
            targets = [(f"netplane ({loop})", NETPLANE_IP, np_port, np_pid),
                       ("dnsmasq", DNSMASQ_IP, dm_port, dm_pid)]
            rows: list[tuple[str, int | None]] = [
                ("cluster", None), ("cluster first-seen", None), ("nxdomain", None),
                ("nxdomain first-seen", None), (f"cluster @{rate} qps", rate)]
            for names, fixed in rows:
                samples: dict[str, list[Sample]] = {}
                for number in range(runs):
                    once = "first-seen" in names
                    path = (first_seen_queries(workdir, names, run=number, count=count,
                                               queries=seconds * FIRST_SEEN_PER_SECOND)
                            if once else files[names.split()[0]])
                    for label, address, port, pid in (targets if number % 2 == 0
                                                      else targets[::-1]):
                        wait_answering(address, port)
                        before = cpu_seconds(pid)
                        sample = dnsperf(address, port, path, seconds=seconds, rate=fixed,
                                         once=once)
                        used = cpu_seconds(pid) - before
                        sample.cpu_us = used * 1e6 / sample.completed if sample.completed else 0
                        samples.setdefault(label, []).append(sample)
                results += [median_result(label, names, runs) for label, runs in samples.items()]
    return results


def median_result(server: str, names: str, runs: list[Sample]) -> Result:
    p99s = [r.p99_ms for r in runs if r.p99_ms is not None]
    return Result(server, names, statistics.median(r.qps for r in runs),
                  statistics.median(r.avg_ms for r in runs),
                  statistics.median(p99s) if p99s else None, max(r.lost for r in runs),
                  statistics.median(r.cpu_us for r in runs))


def print_table(results: list[Result], runs: int) -> None:
    """Ours beside dnsmasq's, row by row (medians of ``runs``), with the ratios."""
    print(f"medians of {runs} alternating runs; lost: the most in one run; "
          "cpu: the server's CPU time per query")
    print(f"{'names':<24} {'server':<20} {'queries/s':>10} {'avg ms':>8} {'p99 ms':>8} "
          f"{'lost':>6} {'cpu us/q':>9} {'ours/dnsmasq':>13}")
    by_names: dict[str, list[Result]] = {}
    for r in results:
        by_names.setdefault(r.names, []).append(r)
    for names, pair in by_names.items():
        ours = next(r for r in pair if r.server.startswith("netplane"))
        theirs = next(r for r in pair if r.server == "dnsmasq")
        for r in (ours, theirs):
            p99 = f"{r.p99_ms:.3f}" if r.p99_ms is not None else "-"
            if r is theirs:
                ratio = ""
            elif ours.p99_ms is not None and theirs.p99_ms:
                ratio = f"p99 {ours.p99_ms / theirs.p99_ms:.2f}x"
            else:
                ratio = f"{ours.qps / theirs.qps:.2f}x" if theirs.qps else "-"
            print(f"{names if r is ours else '':<24} {r.server:<20} {r.qps:>10.0f} "
                  f"{r.avg_ms:>8.3f} {p99:>8} {r.lost:>6} {r.cpu_us:>9.2f} {ratio:>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each dnsperf run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each row per server")
    parser.add_argument("--names", type=int, default=1000, help="number of service names")
    parser.add_argument("--rate", type=int, default=20000, help="fixed rate for the p99 run")
    parser.add_argument("--python", action="store_true",
                        help="serve without the compiled fast path")
    args = parser.parse_args()
    missing = [tool for tool in ("dnsperf", "dnsmasq") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (apt-get install dnsperf dnsmasq-base)")
    print_table(run(args.seconds, args.runs, args.names, args.rate, compiled=not args.python),
                args.runs)


if __name__ == "__main__":
    main()
