"""``netplane mesh status``, ``logs`` and ``rotate``: the mesh as the
API has it (enrolled namespaces, routes and Gateways with the statuses the
controller wrote, node certificates' signing requests) and as each node's
proxy runs it (what it routes and serves, its certificate and expiry, its
tunnels), read from the agents' status sockets (on this machine: the lab);
the node proxies' access logs, merged in time order; and a certificate
renewal asked of node proxies now, to watch one happen under traffic."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli.objects import CliError
from netplane.cli.routes import node_state
from netplane.cluster.client import ApiError, Client
from netplane.lab.paths import LabPaths
from netplane.mesh.kinds import ENROLLED, ENROLLED_LABEL, GATEWAY, HTTPROUTE
from netplane.mesh.signer import SIGNER, state


def _conditions(obj: Obj) -> str:
    """"Accepted ResolvedRefs" when all hold; else the failing ones with
    their reasons."""
    conds = obj.get("conditions") or []
    bad = [f"{c['type']}={c['status']} ({c.get('reason', '')})" for c in conds
           if c.get("status") != "True"]
    return ", ".join(bad) if bad else " ".join(c["type"] for c in conds) or "no status yet"


def _parent(ref: Obj, ns: str) -> str:
    kind = ref.get("kind", "Gateway")
    where = f"{ref.get('namespace') or ns}/{ref.get('name')}"
    port = f":{ref['port']}" if ref.get("port") else ""
    section = f" ({ref['sectionName']})" if ref.get("sectionName") else ""
    return f"{kind} {where}{port}{section}"


async def _items(client: Client, res: resources.Resource) -> list[Obj]:
    try:
        return list((await client.list(res)).get("items", []))
    except ApiError as e:
        if e.code == 404:  # the kind is not installed
            return []
        raise


def format_routes(routes: list[Obj]) -> list[str]:
    out = ["HTTPRoutes:"] if routes else ["HTTPRoutes: none"]
    for r in sorted(routes, key=meta.namespaced_name):
        out.append(f"  {meta.namespaced_name(r)}")
        parents = (r.get("status") or {}).get("parents") or []
        written = {(p["parentRef"].get("kind", "Gateway"), p["parentRef"].get("name")): p
                   for p in parents}
        for ref in (r.get("spec") or {}).get("parentRefs") or ():
            got = written.get((ref.get("kind", "Gateway"), ref.get("name")))
            out.append(f"      {_parent(ref, meta.namespace(r))}: "
                       f"{_conditions(got) if got else 'no status yet'}")
    return out


def format_gateways(gateways: list[Obj]) -> list[str]:
    out = ["Gateways:"] if gateways else ["Gateways: none"]
    for g in sorted(gateways, key=meta.namespaced_name):
        status = g.get("status") or {}
        addresses = ", ".join(a["value"] for a in status.get("addresses") or ()) or "no address"
        out.append(f"  {meta.namespaced_name(g)} ({g['spec'].get('gatewayClassName')}) "
                   f"{addresses}: {_conditions(status)}")
        listeners = {ln["name"]: ln for ln in status.get("listeners") or ()}
        for ln in g["spec"].get("listeners") or ():
            got = listeners.get(ln["name"]) or {}
            host = ln.get("hostname") or "*"
            out.append(f"      {ln['name']}: {ln['protocol']} :{ln['port']} {host}, "
                       f"{got.get('attachedRoutes', 0)} routes, {_conditions(got)}")
    return out


def format_node(view: Obj) -> list[str]:
    cert = view.get("certificate")
    tunnels = view.get("tunnels") or {}
    lines = [f"{view['node']}: capture {'on' if view.get('capturing') else 'off'}, "
             f"{view.get('requests', 0)} requests served"]
    if cert:
        lines.append(f"  certificate {cert['identity']} until {cert['notAfter']} "
                     f"(renewed after {cert['renewAfter']})")
    else:
        lines.append("  certificate: none yet (no tunnels: other nodes' pods over plain TCP)")
    lines.append(f"  tunnels: {'listening on :15008' if tunnels.get('listening') else 'off'}, "
                 f"{tunnels.get('inbound', 0)} in, out to "
                 f"{', '.join(tunnels.get('outbound') or ()) or 'none'}")
    for target, names in sorted((view.get("routed") or {}).items()):
        lines.append(f"  routes {target}: {', '.join(names)}")
    for port, gw in sorted((view.get("gateways") or {}).items()):
        lines.append(f"  gateway {gw['gateway']} :{gw['port']} ({gw['scheme']}) on :{port}")
    return lines


async def status(client: Client, *, lab: LabPaths, node: str | None = None) -> list[str]:
    namespaces = (await client.list(resources.NAMESPACE)).get("items", [])
    enrolled = sorted(meta.name(n) for n in namespaces
                      if meta.labels(n).get(ENROLLED_LABEL) == ENROLLED)
    out = [f"Enrolled namespaces ({ENROLLED_LABEL}={ENROLLED}): "
           f"{', '.join(enrolled) or 'none'}"]
    out += format_routes(await _items(client, HTTPROUTE))
    out += format_gateways(await _items(client, GATEWAY))
    csrs = [c for c in await _items(client, resources.CERTIFICATESIGNINGREQUEST)
            if (c.get("spec") or {}).get("signerName") == SIGNER]
    counts: dict[str, int] = {}
    for c in csrs:
        counts[state(c)] = counts.get(state(c), 0) + 1
    out.append("Node certificate requests: "
               + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"))
    out += await _nodes(client, lab, node)
    return out


async def _node_names(client: Client, node: str | None) -> list[str]:
    """Every node's name, or ``node`` alone once it is known to exist."""
    names = sorted(meta.name(n) for n in (await client.list(resources.NODE)).get("items", []))
    if node:
        if node not in names:
            raise CliError(f'error: nodes "{node}" not found')
        names = [node]
    return names


async def _nodes(client: Client, lab: LabPaths, node: str | None) -> list[str]:
    names = await _node_names(client, node)
    out = []
    for name in names:
        view = await node_state(lab, name, "mesh")
        out += [f"{name}: no agent status socket on this machine"] if view is None \
            else format_node(view)
    return out


async def logs(client: Client, *, lab: LabPaths, node: str | None = None,
               namespace: str | None = None, service: str | None = None,
               as_json: bool = False) -> list[Any]:
    """Every node's access log entries (or one node's), oldest first;
    ``namespace``: the clients', ``service``: the one addressed or chosen."""
    names = await _node_names(client, node)
    entries: list[Obj] = []
    for name in names:
        got = await node_state(lab, name, "mesh-logs") or []
        entries += [{**e, "node": name} for e in got]

    def wanted(e: Obj) -> bool:
        if namespace and e.get("source_namespace") != namespace:
            return False
        if service:
            names = {str(e.get("service") or ""), str(e.get("backend") or "")}
            return any(service == n or n.startswith(f"{service}:") or
                       n.split(":")[0].endswith(f"/{service}") or n.startswith(f"{service}.")
                       for n in names)
        return True
    chosen = sorted((e for e in entries if wanted(e)), key=lambda e: e.get("start_time", ""))
    if as_json:
        return chosen
    return [f"{e['node']} {e['line']}" for e in chosen]


ROTATE_WAIT = 60.0


async def _action(lab: LabPaths, node: str, name: str) -> Any:
    sock = lab.node_dir(node) / "agent.sock"
    if not sock.exists():
        return None
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s, \
            s.post(f"http://agent/actions/{name}",
                   timeout=aiohttp.ClientTimeout(total=30)) as r:
        return json.loads(await r.text())


async def rotate(client: Client, *, lab: LabPaths, node: str | None = None) -> list[str]:
    """Each node proxy (or one) renews its certificate now, through a new
    signing request; waits until each has the new one."""
    names = await _node_names(client, node)
    out = []
    for name in names:
        asked = await _action(lab, name, "mesh-rotate")
        if asked is None:
            out.append(f"{name}: no agent status socket on this machine")
            continue
        if not asked.get("renewing"):
            out.append(f"{name}: no certificate yet; it is still being issued")
            continue
        deadline = time.monotonic() + ROTATE_WAIT
        while True:
            view = await node_state(lab, name, "mesh") or {}
            cert = view.get("certificate") or {}
            if cert.get("serial") and cert["serial"] != asked["serial"]:
                out.append(f"{name}: renewed: serial {asked['serial']} -> {cert['serial']}, "
                           f"valid until {cert['notAfter']}")
                break
            if time.monotonic() > deadline:
                out.append(f"{name}: not renewed within {ROTATE_WAIT:.0f}s (is the mesh "
                           f"controller signing? kubectl get csr)")
                break
            await asyncio.sleep(0.2)
    return out
