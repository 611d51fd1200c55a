"""The mesh's part of ``netplane trace``: when the client pod is enrolled
and its node captures the destination, the kernel's Service rules never
see the connection. For HTTP, one real request is sent from the pod with a
traceparent of our own, and the node proxy's spans for that trace say what
it decided: the route and rule that matched, the backend and endpoint, each
try, and whether it crossed to another node in the mutual-TLS tunnel. For
other ports, the L4 proxy's choice is per connection, among the Service's
endpoints."""

from __future__ import annotations

import asyncio
import secrets
import subprocess

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.cli.routes import node_state
from netplane.cluster.client import Client, NotFound
from netplane.lab.paths import LabPaths
from netplane.mesh.kinds import HTTPROUTE
from netplane.mesh.tunnel import PORT as TUNNEL_PORT
from netplane.mesh.tunnel import node_identity


def captured(view: Obj | None, src: str, ip: str, port: int) -> str | None:
    """"http" or "streams" when the node hands this connection to its proxy."""
    if not view:
        return None
    got = view.get("captured") or {}
    if src not in (got.get("sources") or ()):
        return None
    for kind in ("http", "streams"):
        if f"{ip}:{port}" in (got.get(kind) or ()):
            return kind
    return None


def probe(pid: int, host: str, ip: str, port: int, path: str, headers: list[str]
          ) -> tuple[str, str]:
    """One request from the pod's network (curl from this machine, the name
    pinned to the address the pod resolved): its trace id and status."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    argv = ["nsenter", "-t", str(pid), "--net", "--", "curl", "-sS", "-o", "/dev/null",
            "-w", "%{http_code}", "--max-time", "10", "--resolve", f"{host}:{port}:{ip}",
            "-H", f"traceparent: 00-{trace_id}-{parent}-01"]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run([*argv, f"http://{host}:{port}{path}"], capture_output=True,
                         text=True, timeout=30)
    return trace_id, out.stdout.strip() if out.returncode == 0 else f"failed: {out.stderr}"


def _rule_text(route: Obj | None, index: int) -> list[str]:
    if route is None:
        return []
    rules = (route.get("spec") or {}).get("rules") or []
    if not 0 <= index < len(rules):
        return []
    rule = rules[index]
    matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
    said = []
    for m in matches:
        parts = []
        if m.get("path"):
            parts.append(f"path {m['path'].get('type', 'PathPrefix')} {m['path'].get('value')}")
        parts += [f"header {h['name']}={h['value']}" for h in m.get("headers") or ()]
        parts += [f"query {q['name']}={q['value']}" for q in m.get("queryParams") or ()]
        if m.get("method"):
            parts.append(f"method {m['method']}")
        said.append(" and ".join(parts))
    refs = rule.get("backendRefs") or []
    total = sum(int(r.get("weight", 1)) for r in refs) or 1
    weights = ", ".join(f"{r['name']}:{r.get('port', '')} weight {r.get('weight', 1)} "
                        f"({100 * int(r.get('weight', 1)) / total:.0f}%)" for r in refs)
    return [f"      rule {index} matches {' or '.join(said)}",
            f"      backendRefs: {weights or 'none'}"]


async def http_lines(client: Client, lab: LabPaths, *, node: str, pod: Obj, pid: int,
                     host: str, ip: str, port: int, path: str, headers: list[str],
                     pods: dict[str, Obj]) -> list[str]:
    trace_id, status = await asyncio.to_thread(probe, pid, host, ip, port, path, headers)
    out = [f"  sent GET {path} to {host}:{port}"
           + (f" with {'; '.join(headers)}" if headers else "") + f", traceparent trace id "
           f"{trace_id}: answered {status}"]
    spans = [s for s in await node_state(lab, node, "mesh-traces") or []
             if s.get("traceId") == trace_id]
    hop = next((s for s in spans if not s["name"].startswith("try ")), None)
    if hop is None:
        return [*out, "  the node's proxy recorded no span for it"]
    attrs = hop.get("attributes") or {}
    route, _, rule = str(attrs.get("route", "-")).partition("#")
    if route == "-":
        out.append("  no HTTPRoute applies: the proxy sends it to the Service itself")
    else:
        ns, _, name = route.partition("/")
        try:
            obj: Obj | None = await client.get(HTTPROUTE, name, ns)
        except NotFound:
            obj = None
        out.append(f"  HTTPRoute {route} matched, rule {rule}:")
        out += _rule_text(obj, int(rule) if rule.isdigit() else -1)
    out.append(f"  as {attrs.get('source')} -> {attrs.get('destination') or '?'}")
    if attrs.get("detail"):
        out.append(f"  the proxy answered itself: {attrs['detail']}")
    tries = [s for s in spans if s["name"].startswith("try ")]
    for t in tries:
        a = t.get("attributes") or {}
        result = a.get("status") or f"error {a.get('error')}"
        out.append(f"  {t['name']}: backend {a.get('backend')} endpoint {a.get('endpoint')} "
                   f"-> {result} in {t.get('durationMs')} ms")
        out += _hop_lines(str(a.get("endpoint", "")), node, pods, str(attrs.get("source")))
    out.append(f"  {attrs.get('retries', 0)} retries; answer {attrs.get('status')} "
               f"after {hop.get('durationMs')} ms")
    return out


def _hop_lines(endpoint: str, node: str, pods: dict[str, Obj], source: str) -> list[str]:
    pod = pods.get(endpoint.rpartition(":")[0])
    if pod is None:
        return []
    there = (pod.get("spec") or {}).get("nodeName") or "?"
    if there == node:
        return [f"      pod {meta.namespaced_name(pod)} on this node: over TCP from the proxy"]
    return [f"      pod {meta.namespaced_name(pod)} on {there}: through the tunnel to {there}'s "
            f"proxy (:{TUNNEL_PORT}, mutual TLS 1.3, this node as {node_identity(node)}), "
            f"the stream carrying {source}"]


async def stream_lines(lab: LabPaths, *, node: str, ip: str, port: int,
                       pods: dict[str, Obj], source: str) -> list[str]:
    state = await node_state(lab, node) or {}
    eps = [e["address"] for p in state.get("ports") or ()
           if p.get("clusterIP") == ip and p.get("port") == port
           for e in p.get("endpoints") or () if e.get("ready")]
    out = ["  not HTTP: carried whole (L4), an endpoint chosen per connection "
           "(the less busy of two) among:"]
    for e in eps:
        out.append(f"    {e}")
        out += _hop_lines(e, node, pods, source)
    return out if eps else [*out, "    none ready: the connection is closed"]
