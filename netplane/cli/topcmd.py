"""``netplane top POD``: the processes of a pod's containers as ``docker
top`` shows a container's (``ps -ef`` columns, the node's PIDs), asked of
the pod's agent (``/top/NS/POD/CONTAINER``) through the API server's
``nodes/NAME/proxy``. With more than one container and no ``-c``, a
CONTAINER column says whose each process is."""

from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cli import dockerviews as dv
from netplane.cli.objects import CliError
from netplane.cli.podexec import session_for
from netplane.cluster.client import Client, NotFound


async def _top(session: aiohttp.ClientSession, url: str) -> Obj:
    try:
        async with session.get(url) as resp:
            text = await resp.text()
            if resp.status != 200:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise CliError(f"Error from server: {str(message).strip()}")
            out: Obj = json.loads(text)
            return out
    except (aiohttp.ClientError, OSError) as e:
        raise CliError(f"error: cannot reach the API server: {e}") from None


async def top(client: Client, pod_name: str, *, namespace: str,
              container: str | None) -> str:
    try:
        pod = await client.get(resources.POD, pod_name, namespace)
    except NotFound:
        raise CliError(f'Error from server (NotFound): pods "{pod_name}" not found') from None
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise CliError(f"error: pod {pod_name} does not have a host assigned")
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if container is not None and container not in names:
        raise CliError(f"error: container {container} is not valid for pod {pod_name}")
    chosen = [container] if container else names
    base = client.conn.base()
    titles: list[str] = []
    rows: list[list[str]] = []
    async with session_for(client.conn) as session:
        for name in chosen:
            path = "/".join(quote(p, safe="") for p in (namespace, pod_name, name))
            got = await _top(session, f"{base}/api/v1/nodes/{quote(node)}/proxy/top/{path}")
            titles = list(got.get("Titles") or [])
            for proc in got.get("Processes") or []:
                rows.append(list(proc) if len(chosen) == 1 else [name, *proc])
    header = titles if len(chosen) == 1 else ["CONTAINER", *titles]
    return dv.table(header, rows)
