"""``netplane stats``: each running container's CPU and memory as ``docker
stats`` shows a host's, read from the agents' ``/metrics/cadvisor``
through the API server's ``nodes/NAME/proxy``. CPU % is docker's: the
container's CPU time over the time all CPUs had between two reads, times
their number, so that 100% is one CPU kept busy (the reads are a second
apart). MEM USAGE is docker's too, usage less the inactive page cache (the
working set); LIMIT is the memory limit, or the node's memory without one;
PIDS counts tasks, as pids.current does."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from netplane.api import meta, resources
from netplane.cli import dockerviews as dv
from netplane.cli.objects import CliError
from netplane.cli.podexec import session_for
from netplane.cluster.client import Client

HEADER = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]
INTERVAL = 1.0
Key = tuple[str, str, str]  # namespace, pod, container


@dataclass(frozen=True)
class Reading:
    container_id: str
    cpu_seconds: float
    at: float
    working_set: float = 0.0
    limit: float = 0.0
    pids: int = 0


@dataclass(frozen=True)
class NodeReading:
    containers: dict[Key, Reading]
    machine_memory: float
    cpus: int


def parse(text: str) -> NodeReading:
    """The containers (not the pods' own cgroups) of one cadvisor scrape."""
    values: dict[Key, dict[str, float]] = {}
    ids: dict[Key, str] = {}
    stamps: dict[Key, float] = {}
    machine, cpus = 0.0, 1
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "machine_memory_bytes":
                machine = s.value
            elif s.name == "machine_cpu_cores":
                cpus = int(s.value)
            elif s.labels.get("container"):
                key = (s.labels.get("namespace", ""), s.labels.get("pod", ""),
                       s.labels["container"])
                values.setdefault(key, {})[s.name] = s.value
                ids[key] = s.labels.get("name", "")
                if s.name == "container_cpu_usage_seconds_total" and s.timestamp is not None:
                    stamps[key] = float(s.timestamp)
    out = {}
    for key, v in values.items():
        if "container_cpu_usage_seconds_total" not in v or key not in stamps:
            continue
        out[key] = Reading(ids[key], v["container_cpu_usage_seconds_total"], stamps[key],
                           v.get("container_memory_working_set_bytes", 0.0),
                           v.get("container_spec_memory_limit_bytes", 0.0),
                           int(v.get("container_threads", 0)))
    return NodeReading(out, machine, cpus)


def rows(before: NodeReading, after: NodeReading) -> list[list[str]]:
    """One row per container read both times, as docker stats words them."""
    out = []
    for key in sorted(after.containers):
        now, then = after.containers[key], before.containers.get(key)
        if then is None or then.container_id != now.container_id or now.at <= then.at:
            continue
        cpu = dv.cpu_percent(now.cpu_seconds - then.cpu_seconds,
                             (now.at - then.at) * after.cpus, after.cpus)
        limit = now.limit or after.machine_memory
        ns, pod, container = key
        out.append([dv.short_id(now.container_id) or "-", f"k8s_{container}_{pod}_{ns}",
                    f"{cpu:.2f}%", f"{dv.bytes_size(now.working_set)} / "
                    f"{dv.bytes_size(limit)}",
                    f"{dv.memory_percent(now.working_set, limit):.2f}%", str(now.pids)])
    return out


async def _read(session: aiohttp.ClientSession, base: str, node: str) -> NodeReading | None:
    url = f"{base}/api/v1/nodes/{node}/proxy/metrics/cadvisor"
    try:
        async with session.get(url) as resp:
            text = await resp.text()
            if resp.status != 200:
                print(f"warning: node {node}: {resp.status} {text.strip()[:200]}",
                      file=sys.stderr)
                return None
            return parse(text)
    except (aiohttp.ClientError, OSError) as e:
        raise CliError(f"error: cannot reach the API server: {e}") from None


async def _read_all(session: aiohttp.ClientSession, base: str,
                    nodes: list[str]) -> dict[str, NodeReading]:
    got = await asyncio.gather(*(_read(session, base, n) for n in nodes))
    return {n: r for n, r in zip(nodes, got, strict=True) if r is not None}


def _table(before: dict[str, NodeReading], after: dict[str, NodeReading]) -> str:
    found = [r for n in sorted(after) if n in before for r in rows(before[n], after[n])]
    return dv.table(HEADER, found)


async def stats(client: Client, *, node: str | None, stream: bool) -> str:
    """The table (``stream``: printed afresh each second until interrupted)."""
    if node:
        nodes = [meta.name(await client.get(resources.NODE, node))]
    else:
        nodes = sorted(meta.name(n) for n in
                       (await client.list(resources.NODE)).get("items") or [])
    base = client.conn.base()
    async with session_for(client.conn) as session:
        before = await _read_all(session, base, nodes)
        while True:
            await asyncio.sleep(INTERVAL)
            after = await _read_all(session, base, nodes)
            text = _table(before, after)
            if not stream:
                return text
            # As docker stats does: clear the screen, then the table.
            sys.stdout.write("\033[2J\033[H" + text + "\n")
            sys.stdout.flush()
            before = after
