"""``netplane ps``: the cluster's containers as ``docker ps`` lists a
host's, read from the pods' statuses (so any runtime the agents run):
running and restarting ones, or all of them with ``-a``, newest first."""

from __future__ import annotations

import time
from dataclasses import dataclass

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cli import dockerviews as dv
from netplane.cluster.client import Client

HEADER = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES", "POD",
          "NAMESPACE", "NODE", "RUNTIME"]


@dataclass(frozen=True)
class Row:
    cells: list[str]
    running: bool
    created: float


def _argv(spec: Obj | None) -> list[str]:
    spec = spec or {}
    return [str(a) for a in [*(spec.get("command") or []), *(spec.get("args") or [])]]


def _runtime(container_id: str, node: Obj | None) -> str:
    if "://" in container_id:
        return container_id.partition("://")[0]
    version = (((node or {}).get("status") or {}).get("nodeInfo") or {}).get(
        "containerRuntimeVersion", "")
    return str(version).partition("://")[0] or "-"


def container_row(pod: Obj, status: Obj, spec: Obj | None, node: Obj | None,
                  now: float) -> Row:
    """One container of ``pod`` as docker ps shows it."""
    state, last = status.get("state") or {}, status.get("lastState") or {}
    running, terminated = state.get("running"), state.get("terminated")
    ended = terminated or (last.get("terminated") if state.get("waiting") else None)
    started = meta.timestamp((running or terminated or ended or {}).get("startedAt"))
    created = started or meta.timestamp(pod["metadata"].get("creationTimestamp")) or now
    if running is not None:
        shown = dv.up(now - (started or now))
    elif terminated is not None:
        finished = meta.timestamp(terminated.get("finishedAt")) or now
        shown = dv.exited(int(terminated.get("exitCode", 0)), now - finished)
    elif ended is not None:
        finished = meta.timestamp(ended.get("finishedAt")) or now
        shown = dv.restarting(int(ended.get("exitCode", 0)), now - finished)
    else:
        shown = "Created"
    cid = status.get("containerID") or (ended or {}).get("containerID") or ""
    cells = [dv.short_id(cid) or "-", status.get("image") or (spec or {}).get("image", ""),
             dv.command(_argv(spec)), dv.created_ago(now - created), shown,
             status.get("name", ""), meta.name(pod), meta.namespace(pod),
             (pod.get("spec") or {}).get("nodeName") or "-", _runtime(cid, node)]
    return Row(cells, running is not None or (ended is not None and terminated is None),
               created)


def rows(pods: list[Obj], nodes: dict[str, Obj], now: float, *, show_all: bool) -> list[Row]:
    out = []
    for pod in pods:
        spec = pod.get("spec") or {}
        specs = {c["name"]: c for c in [*(spec.get("initContainers") or []),
                                         *(spec.get("containers") or [])]}
        st = pod.get("status") or {}
        node = nodes.get(spec.get("nodeName") or "")
        for status in [*(st.get("initContainerStatuses") or []),
                       *(st.get("containerStatuses") or [])]:
            row = container_row(pod, status, specs.get(status.get("name", "")), node, now)
            if show_all or row.running:
                out.append(row)
    return sorted(out, key=lambda r: -r.created)


async def ps(client: Client, *, namespace: str | None, all_namespaces: bool,
             node: str | None, show_all: bool) -> str:
    ns = None if all_namespaces else (namespace or "default")
    selector = f"spec.nodeName={node}" if node else ""
    pods = (await client.list(resources.POD, ns, field_selector=selector)).get("items") or []
    nodes = {meta.name(n): n for n in
             (await client.list(resources.NODE)).get("items") or []}
    found = rows(pods, nodes, time.time(), show_all=show_all)
    return dv.table(HEADER, [r.cells for r in found])
