"""``netplane routes [SERVICE] [-n NS] [--node NODE]``: what each node's
proxy programmed for every service port: its addresses, its endpoints with
the chance each is picked, affinity and traffic policies; per node the mode,
the last sync and its duration, and whether the kernel still holds what was
applied. Read from each agent's status socket (on this machine: the lab)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli.objects import CliError
from netplane.cluster.client import Client
from netplane.lab.paths import LabPaths


async def node_state(lab: LabPaths, node: str, view: str = "proxy") -> Any:
    """One of the agent's views (``/state/VIEW``); None: no agent here."""
    sock = lab.node_dir(node) / "agent.sock"
    if not sock.exists():
        return None
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s, \
            s.get(f"http://agent/state/{view}", timeout=aiohttp.ClientTimeout(total=30)) as r:
        return json.loads(await r.text())


def _addresses(p: Obj) -> list[str]:
    out = [f"ClusterIP {p['clusterIP']}:{p['port']}/{p['protocol']}"]
    if p.get("nodePort"):
        out.append(f"NodePort :{p['nodePort']} on every node address")
    out += [f"LoadBalancer {ip}:{p['port']}" for ip in p.get("loadBalancerIPs") or []]
    out += [f"externalIP {ip}:{p['port']}" for ip in p.get("externalIPs") or []]
    return out


def _endpoint_line(ep: Obj, external: bool) -> str:
    state = "ready" if ep["ready"] else ("terminating" if ep["terminating"] else "not ready")
    chance = f"p={ep['probability']:.3f}"
    if external:
        chance += f" ext p={ep['externalProbability']:.3f}"
    where = "local" if ep["local"] else "remote"
    return f"      -> {ep['address']:<21} {ep['nodeName'] or '?':<10} {where:<6} {state:<11} " \
           f"{chance}"


def format_port(p: Obj) -> list[str]:
    name = f"{p['service']}:{p['portName']}" if p["portName"] else p["service"]
    lines = [f"  {name}  ({p['type']})"]
    lines += [f"      {a}" for a in _addresses(p)]
    affinity = f"ClientIP {p['sessionAffinitySeconds']}s" if p.get("sessionAffinitySeconds") \
        else "none"
    lines.append(f"      affinity {affinity}; internalTrafficPolicy "
                 f"{p['internalTrafficPolicy']}; externalTrafficPolicy "
                 f"{p['externalTrafficPolicy']}"
                 + (f"; healthCheckNodePort {p['healthCheckNodePort']}"
                    if p.get("healthCheckNodePort") else ""))
    external = bool(p.get("nodePort") or p.get("loadBalancerIPs") or p.get("externalIPs"))
    eps = p.get("endpoints") or []
    if not eps:
        lines.append("      -> no endpoints: connections are rejected")
    lines += [_endpoint_line(ep, external) for ep in eps]
    if p.get("chains"):
        lines.append("      chains: " + ", ".join(f"{k} {v}" for k, v in p["chains"].items()))
    return lines


def format_node(state: Obj, ports: list[Obj]) -> list[str]:
    matches: Any = state.get("kernelMatches")
    kernel = {True: "yes", False: "NO", None: "not checked"}[matches]
    head = (f"{state['node']}: mode {state['mode']}, last sync {state.get('lastSyncTime')} "
            f"took {state['lastSyncDurationSeconds'] * 1000:.1f} ms "
            f"({state['fullSyncs']} full, {state['partialSyncs']} partial), "
            f"{state['ruleCount']} rules, kernel matches: {kernel}")
    lines = [head]
    lines += [f"  ! {m}" for m in state.get("mismatches") or []]
    for p in ports:
        lines += format_port(p)
    return lines


async def routes(client: Client, service: str | None, *, namespace: str | None,
                 node: str | None, lab: LabPaths) -> list[str]:
    nodes = [meta.name(n) for n in (await client.list(resources.NODE)).get("items", [])]
    if node:
        if node not in nodes:
            raise CliError(f'error: nodes "{node}" not found')
        nodes = [node]
    out: list[str] = []
    for name in sorted(nodes):
        state = await node_state(lab, name)
        if state is None:
            out.append(f"{name}: no agent status socket on this machine")
            continue
        ports = [p for p in state.get("ports") or []
                 if (service is None or p["service"].split("/", 1)[1] == service)
                 and (namespace is None or p["service"].split("/", 1)[0] == namespace)]
        out += format_node(state, ports)
    if service and not any(line.startswith("  ") and "(" in line for line in out):
        out.append(f"no service port named {service!r} is programmed"
                   + (f" in namespace {namespace}" if namespace else ""))
    return out
