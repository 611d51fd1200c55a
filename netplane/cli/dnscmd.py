"""``netplane dns NAME [TYPE] [--from POD]``: the answer cluster DNS gives,
which object produced each record, or why the name does not exist.

The explanation comes from the same index and resolver the node servers
use, built here from the objects listed from the API. With ``--from POD`` the
short name is expanded with that pod's search path, as its resolver does,
and the query is also sent for real from inside the pod."""

from __future__ import annotations

import asyncio

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli.objects import CliError
from netplane.cluster.client import Client, NotFound
from netplane.dns.explain import Explanation, explain
from netplane.dns.index import RecordIndex
from netplane.dns.wire import Rcode

ZONE = "cluster.local"
NDOTS = 5


async def build_index(client: Client) -> RecordIndex:
    index = RecordIndex()
    lists = await asyncio.gather(*(client.list(r) for r in (
        resources.SERVICE, resources.ENDPOINTSLICE, resources.ENDPOINTS, resources.POD)))
    feeds = (index.on_service, index.on_endpointslice, index.on_endpoints, index.on_pod)
    for feed, body in zip(feeds, lists, strict=True):
        for obj in body.get("items", []):
            feed(None, obj)
    return index


def candidates(name: str, namespace: str) -> list[str]:
    """The names a pod's resolver tries, in order (search list, ndots:5)."""
    if name.endswith("."):
        return [name]
    search = [f"{namespace}.svc.{ZONE}", f"svc.{ZONE}", ZONE]
    expanded = [f"{name}.{s}." for s in search]
    return [*expanded, f"{name}."] if name.count(".") < NDOTS else [f"{name}.", *expanded]


def first_answer(index: RecordIndex, names: list[str], qtype: str) -> list[Explanation]:
    tried = []
    for n in names:
        ex = explain(index, n, qtype)
        tried.append(ex)
        if ex.rcode == Rcode.NOERROR and ex.answer:
            return [ex]
    return tried


async def dns(client: Client, name: str, qtype: str, *, namespace: str,
              from_pod: str | None) -> list[str]:
    index = await build_index(client)
    pod: Obj | None = None
    if from_pod:
        try:
            pod = await client.get(resources.POD, from_pod, namespace)
        except NotFound:
            raise CliError(f'error: pods "{from_pod}" not found in namespace '
                           f"{namespace}") from None
    if pod is None and name.rstrip(".").lower().endswith(f".{ZONE}"):
        names = [name.rstrip(".") + "."]  # already in the zone: asked as written
    else:
        names = candidates(name, meta.namespace(pod) if pod else namespace)
    try:
        tried = first_answer(index, names, qtype)
    except ValueError as e:
        raise CliError(f"error: {e}") from None
    out = []
    if len(tried) > 1:
        out.append(f"; {name} is not fully qualified: tried the search path in order")
    for ex in tried:
        out.extend(ex.lines())
    return out
