"""``netplane policy [-n NS] [POD]``: which policies isolate each pod, and
what each lets in and out, resolved to pods, networks and ports.

The answer comes from the model every node renders its rules from, built
here from the policies, pods and namespaces listed from the API."""

from __future__ import annotations

import asyncio

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli.objects import CliError
from netplane.cluster.client import Client
from netplane.proxy import policy
from netplane.proxy.policy import Clause, Direction, NodePolicy, PodInfo


async def load(client: Client, pods: list[Obj] | None = None
               ) -> tuple[NodePolicy, list[PodInfo]]:
    """The cluster's policy model; ``pods`` when the caller has listed them."""
    pols, nss = await asyncio.gather(*(client.list(r) for r in (
        resources.NETWORKPOLICY, resources.NAMESPACE)))
    if pods is None:
        pods = (await client.list(resources.POD)).get("items") or []
    infos = [i for i in map(policy.pod_info, pods) if i is not None]
    namespaces = {meta.name(n): meta.labels(n) for n in nss.get("items") or []}
    return policy.compute(pols.get("items") or [], infos, namespaces), infos


def _peers(c: Clause, by_host: dict[str, str]) -> str:
    if c.peers is None:
        return "anywhere"
    names = sorted(by_host.get(n, n) for n in c.peers)
    return ", ".join(names) if names else "nothing (no pod matches)"


def _ports(c: Clause) -> str:
    return "any port" if c.ports is None else ", ".join(map(str, c.ports))


def describe_pod(model: NodePolicy, pod: PodInfo, by_host: dict[str, str]) -> list[str]:
    out = [f"{pod.key} ({pod.ip} on {pod.node or 'no node'})"]
    for direction, word in ((Direction.INGRESS, "from"), (Direction.EGRESS, "to")):
        keys = model.isolated(pod.ip, direction)
        if not keys:
            out.append(f"  {direction.lower()}: not isolated, everything allowed")
            continue
        out.append(f"  {direction.lower()}: isolated by {', '.join(keys)}")
        allowed = False
        for key in keys:
            rules = model.rules.get((key, direction))
            for c in rules.clauses if rules else ():
                if c.targets is not None and pod.ip not in c.targets:
                    continue  # a named port this pod does not have
                allowed = True
                out.append(f"    {key} rule {c.rule}: {word} {_peers(c, by_host)} "
                           f"on {_ports(c)}")
        if not allowed:
            out.append("    nothing is allowed")
    return out


async def show(client: Client, pod_name: str | None, *, namespace: str | None,
               all_namespaces: bool = False) -> list[str]:
    model, pods = await load(client)
    by_host = {f"{p.ip}/32": p.key for p in pods}
    ns = None if all_namespaces else (namespace or "default")
    chosen = [p for p in pods if (ns is None or p.namespace == ns)
              and (pod_name is None or p.name == pod_name)]
    if pod_name is not None and not chosen:
        raise CliError(f'Error from server (NotFound): pods "{pod_name}" not found '
                       "(or it has no address yet)")
    if pod_name is None:
        rows = [("POD", "IP", "NODE", "INGRESS", "EGRESS")]
        for p in chosen:
            rows.append((p.key, p.ip, p.node or "-",
                         ",".join(model.isolated(p.ip, Direction.INGRESS)) or "-",
                         ",".join(model.isolated(p.ip, Direction.EGRESS)) or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                for r in rows]
    out: list[str] = []
    for p in chosen:
        out += describe_pod(model, p, by_host)
    return out
