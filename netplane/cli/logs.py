"""``netplane logs POD``: a container's log through the API server's
``pods/log`` subresource, written to stdout as it arrives (``-f`` follows
what the container writes next), like ``kubectl logs``."""

from __future__ import annotations

import sys
from urllib.parse import urlencode

import aiohttp

from netplane.cli.objects import CliError
from netplane.cli.podexec import session_for
from netplane.cluster.client import Client


def log_query(*, container: str | None, follow: bool, previous: bool, tail: int | None,
              since: int | None, timestamps: bool) -> str:
    params: list[tuple[str, str]] = [("container", container)] if container else []
    for key, on in (("follow", follow), ("previous", previous), ("timestamps", timestamps)):
        if on:
            params.append((key, "true"))
    if tail is not None and tail >= 0:
        params.append(("tailLines", str(tail)))
    if since is not None:
        params.append(("sinceSeconds", str(since)))
    return urlencode(params)


async def logs(client: Client, pod_name: str, *, namespace: str, container: str | None,
               follow: bool, previous: bool, tail: int | None, since: int | None,
               timestamps: bool) -> None:
    """``tail``: the last N lines (None or negative: all); ``since``: seconds."""
    query = log_query(container=container, follow=follow, previous=previous, tail=tail,
                      since=since, timestamps=timestamps)
    url = (client.conn.base() + f"/api/v1/namespaces/{namespace}/pods/{pod_name}/log"
           + (f"?{query}" if query else ""))
    out = sys.stdout.buffer
    async with session_for(client.conn) as session:
        try:
            async with session.get(url) as resp:
                if resp.status >= 400:
                    body = await resp.json(content_type=None)
                    raise CliError(f"Error from server: {body.get('message', resp.status)}")
                async for chunk in resp.content.iter_any():
                    out.write(chunk)
                    out.flush()
        except (aiohttp.ClientError, OSError) as e:
            raise CliError(f"error: cannot reach the API server: {e}") from None
