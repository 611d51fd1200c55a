"""The kubectl-like verbs: apply, get, delete."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from netplane.api import codec, meta, resources, validation
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.cli.printing import as_list, dump, format_table
from netplane.cluster.client import AlreadyExists, ApiError, Client, Conflict

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class CliError(Exception):
    """An error for the user: printed as one line, exit code 1."""


def read_manifests(sources: list[str]) -> list[tuple[str, Obj]]:
    """(source, object) for every document in files, directories or stdin."""
    out: list[tuple[str, Obj]] = []
    for src in sources:
        if src == "-":
            files = [("<stdin>", sys.stdin.read())]
        else:
            path = Path(src)
            if path.is_dir():
                files = [(str(p), p.read_text()) for p in sorted(path.iterdir())
                         if p.suffix in (".yaml", ".yml", ".json")]
            elif path.exists():
                files = [(str(path), path.read_text())]
            else:
                raise CliError(f'error: the path "{src}" does not exist')
        for name, text in files:
            try:
                out.extend((name, d) for d in codec.load_documents(text, name))
            except codec.ManifestError as e:
                raise CliError(f"error: {e}") from None
    return out


def _check_locally(source: str, obj: Obj) -> Resource:
    try:
        res = resources.by_kind(str(obj.get("apiVersion")), str(obj.get("kind")))
    except resources.UnknownKind as e:
        raise CliError(f"error: {source}: {e}") from None
    errs = validation.validate(obj, res)
    if errs:
        raise CliError(f'error: {source}: {res.kind} "{meta.name(obj)}" is invalid: '
                       + "; ".join(str(e) for e in errs))
    return res


def _label(res: Resource, obj: Obj) -> str:
    group = f".{res.group}" if res.group else ""
    return f"{res.singular}{group}/{meta.name(obj)}"


def _deleted(res: Resource, name: str) -> str:
    """kubectl's words for a deletion: ``deployment.apps "web" deleted``."""
    group = f".{res.group}" if res.group else ""
    return f'{res.singular}{group} "{name}" deleted'


async def apply(client: Client, sources: list[str], namespace: str | None) -> list[str]:
    docs = read_manifests(sources)
    if not docs:
        raise CliError("error: no objects passed to apply")
    plan = [(src, _check_locally(src, obj), obj) for src, obj in docs]
    prepared = []
    for src, res, obj in plan:
        obj = copy.deepcopy(obj)
        if res.namespaced:
            meta.meta(obj)["namespace"] = namespace or meta.namespace(obj) or "default"
        annotations = meta.meta(obj).setdefault("annotations", {})
        annotations[LAST_APPLIED] = json.dumps(obj, sort_keys=True)
        prepared.append((src, res, obj))
    # The server checks everything first (dry run), so a bad document
    # anywhere in the input leaves the cluster untouched.
    new_namespaces = {meta.name(o) for _, r, o in prepared if r is resources.NAMESPACE}
    for src, res, obj in prepared:
        if meta.namespace(obj) in new_namespaces:
            continue  # its namespace is made by this same apply
        try:
            await _apply_one(client, res, obj, dry_run=True)
        except ApiError as e:
            raise CliError(f"error: {src}: {e.message}") from None
    return [f"{_label(res, obj)} {await _apply_one(client, res, obj)}"
            for _, res, obj in prepared]


async def _apply_one(client: Client, res: Resource, obj: Obj, *, dry_run: bool = False) -> str:
    ns = meta.namespace(obj) or None
    for _ in range(5):
        try:
            await client.create(res, obj, ns, dry_run=dry_run)
            return "created"
        except AlreadyExists:
            pass
        current = await client.get(res, meta.name(obj), ns)
        if current["metadata"].get("annotations", {}).get(LAST_APPLIED) == \
                obj["metadata"]["annotations"][LAST_APPLIED]:
            return "unchanged"
        merged = copy.deepcopy(obj)
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if "status" in current:
            merged["status"] = current["status"]
        try:
            await client.update(res, merged, dry_run=dry_run)
            return "configured"
        except Conflict:
            continue
    raise CliError(f"error: {_label(res, obj)} kept changing while it was applied; try again")


async def get(client: Client, kind: str, names: list[str], *, namespace: str | None,
              all_namespaces: bool, selector: str, output: str) -> str:
    res = _resource(kind)
    ns = None if all_namespaces or not res.namespaced else (namespace or "default")
    if output in ("yaml", "json"):
        if names:
            items = [await client.get(res, n, ns) for n in names]
            return dump(items[0] if len(items) == 1 else as_list(items), output)
        body = await client.list(res, ns, label_selector=selector)
        return dump(as_list(body.get("items", [])), output)
    tables = [await client.table(res, ns, name=n) for n in names] if names else \
        [await client.table(res, ns, label_selector=selector)]
    merged = dict(tables[0])
    merged["rows"] = [r for t in tables for r in t.get("rows", [])]
    if not merged["rows"]:
        where = "" if all_namespaces or not res.namespaced else f" in {ns} namespace"
        return f"No resources found{where}."
    return format_table(merged, wide=output == "wide",
                        with_namespace=all_namespaces and res.namespaced)


# kubectl's --cascade values and the propagation policy each sends.
CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan",
           "true": "Background", "false": "Orphan"}


async def delete(client: Client, kind: str, names: list[str], *, namespace: str | None,
                 grace_period: int | None, cascade: str = "background",
                 everything: bool = False, selector: str = "") -> list[str]:
    """Objects by name, or (``everything`` / ``selector``) all that are listed,
    as kubectl's ``delete KIND --all`` and ``-l``."""
    kind, names = kind_and_names(kind, names)
    res = _resource(kind)
    ns = (namespace or "default") if res.namespaced else None
    if names and (everything or selector):
        raise CliError("error: name cannot be provided when a selector or --all is specified")
    if everything or selector:
        listed = await client.list(res, ns, label_selector=selector)
        names = [meta.name(o) for o in listed.get("items") or []]
        if not names:
            return ["No resources found"]
    if not names:
        raise CliError(f"error: resource name may not be empty (netplane delete {kind} NAME)")
    out = []
    for name in names:
        await client.delete(res, name, ns, grace_period=grace_period,
                            propagation_policy=CASCADE[cascade])
        out.append(_deleted(res, name))
    return out


async def delete_files(client: Client, sources: list[str], namespace: str | None, *,
                       cascade: str = "background") -> list[str]:
    out = []
    for src, obj in read_manifests(sources):
        res = _check_locally(src, obj)
        ns = (namespace or meta.namespace(obj) or "default") if res.namespaced else None
        await client.delete(res, meta.name(obj), ns, propagation_policy=CASCADE[cascade])
        out.append(_deleted(res, meta.name(obj)))
    return out


def kind_and_names(kind: str, names: list[str]) -> tuple[str, list[str]]:
    """``deploy/web`` or ``deploy web``, as kubectl takes both."""
    if "/" in kind:
        kind, _, name = kind.partition("/")
        return kind, [name, *names]
    return kind, names


async def scale(client: Client, kind: str, names: list[str], *, replicas: int,
                namespace: str | None) -> list[str]:
    kind, names = kind_and_names(kind, names)
    res = _resource(kind)
    if not names:
        raise CliError(f"error: give a name: netplane scale {kind}/NAME --replicas N")
    if replicas < 0:
        raise CliError("error: --replicas must be 0 or more")
    ns = (namespace or "default") if res.namespaced else None
    out = []
    for name in names:
        await client.patch(res, name, {"spec": {"replicas": replicas}}, ns,
                           subresource="scale")
        out.append(f"{_label(res, {'metadata': {'name': name}})} scaled")
    return out


async def describe(client: Client, kind: str, names: list[str], *,
                   namespace: str | None) -> list[str]:
    from netplane.cli import describe as printer

    kind, names = kind_and_names(kind, names)
    res = _resource(kind)
    ns = (namespace or "default") if res.namespaced else None
    if not names:
        names = [meta.name(o) for o in (await client.list(res, ns)).get("items", [])]
    return [await printer.describe(client, res, name, ns) for name in names]


def _resource(kind: str) -> Resource:
    try:
        return resources.by_name(kind)
    except resources.UnknownKind as e:
        raise CliError(f"error: {e}") from None
