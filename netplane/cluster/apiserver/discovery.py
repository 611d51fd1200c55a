"""Discovery: /version, /api, /apis and each group-version's resource list,
with the verbs, short names, categories and subresources kubectl reads to
map what a user types (``kubectl get all``, ``po``, ``deploy/web``) to paths."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from netplane import __version__
from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.apiserver import paths, status

# Subresource -> (kind, group, version, verbs) as kube-apiserver lists them;
# an empty kind means the parent's own kind.
_SUBRESOURCE_SHAPES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "status": ("", "", "", ("get", "patch", "update")),
    "approval": ("", "", "", ("get", "patch", "update")),
    "binding": ("Binding", "", "", ("create",)),
    "scale": ("Scale", "autoscaling", "v1", ("get", "patch", "update")),
    "log": ("Pod", "", "", ("get",)),
    "exec": ("PodExecOptions", "", "", ("create", "get")),
    "attach": ("PodAttachOptions", "", "", ("create", "get")),
    "portforward": ("PodPortForwardOptions", "", "", ("create", "get")),
    "eviction": ("Eviction", "policy", "v1", ("create",)),
    "token": ("TokenRequest", "authentication.k8s.io", "v1", ("create",)),
    "proxy": ("NodeProxyOptions", "", "", ("create", "delete", "get", "patch", "update")),
}


def _json(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/json")


async def version(request: web.Request) -> web.Response:
    return _json({"major": "1", "minor": "32", "gitVersion": f"v1.32.0+netplane-{__version__}",
                  "platform": "linux/amd64", "goVersion": "", "compiler": "netplane"})


async def api_versions(request: web.Request) -> web.Response:
    return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})


def _group_versions(request: web.Request) -> dict[str, list[resources.Resource]]:
    """The compiled-in kinds, then those that CustomResourceDefinitions serve."""
    out = resources.group_versions()
    for res in request.app[paths.CUSTOM_KINDS].served():
        out.setdefault(res.api_version, []).append(res)
    return out


async def api_groups(request: web.Request) -> web.Response:
    groups: dict[str, Obj] = {}
    for gv in _group_versions(request):
        if "/" not in gv:
            continue
        group, ver = gv.split("/")
        entry = {"groupVersion": gv, "version": ver}
        # A group's versions in the order served, the first one preferred.
        groups.setdefault(group, {"name": group, "versions": [], "preferredVersion": entry})
        groups[group]["versions"].append(entry)
    return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": list(groups.values())})


def resource_entries(res: resources.Resource,
                     subs: frozenset[str] | None = None) -> list[Obj]:
    """The APIResource entries of one kind: itself, then its subresources."""
    entry: Obj = {"name": res.plural, "singularName": res.singular,
                  "namespaced": res.namespaced, "kind": res.kind, "verbs": list(res.verbs)}
    if res.short_names:
        entry["shortNames"] = list(res.short_names)
    if res.categories:
        entry["categories"] = list(res.categories)
    out = [entry]
    for sub in sorted((subs if subs is not None else paths.subresources(res.kind)) - {""}):
        kind, group, ver, verbs = _SUBRESOURCE_SHAPES[sub]
        item: Obj = {"name": f"{res.plural}/{sub}", "singularName": "",
                     "namespaced": res.namespaced, "kind": kind or res.kind,
                     "verbs": list(verbs)}
        if group:
            item["group"], item["version"] = group, ver
        out.append(item)
    return out


async def resource_list(request: web.Request) -> web.Response:
    gv = request.match_info.get("group", "")
    gv = f"{gv}/{request.match_info['version']}" if gv else request.match_info["version"]
    found = _group_versions(request).get(gv)
    if found is None:
        raise status.not_found("groupversion", gv)
    custom = request.app[paths.CUSTOM_KINDS]
    out = [e for r in found
           for e in resource_entries(r, custom.subresources(r) if r.custom else None)]
    return _json({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                  "resources": out})
