"""The API server's field manager: ``metadata.managedFields`` kept on every
create, update and patch, and server-side apply (PATCH with
``application/apply-patch+yaml``), as kube-apiserver does them.

The field logic is the pure ``api.managedfields``; this module names the
manager of a request (``?fieldManager=``, else the user agent up to its first
``/``, as kube's ``managerOrUserAgent``), checks the options and the applied
body, and turns conflicts into kube-apiserver's 409 Status.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from netplane.api import fieldpath, managedfields, meta, typed
from netplane.api.meta import Obj
from netplane.api.resources import Resource
from netplane.api.validation import FieldError
from netplane.cluster.apiserver import status

APPLY_PATCH = "application/apply-patch+yaml"
# kube-apiserver's FieldManagerMaxLength, in bytes.
MAX_MANAGER_LENGTH = 128
OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}
_TRUE, _FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")


# -- request options --

def is_apply(request: web.Request) -> bool:
    return request.method == "PATCH" and request.content_type == APPLY_PATCH


def manager(request: web.Request) -> str:
    """The manager of a write: ``fieldManager``, else from the user agent."""
    name = request.query.get("fieldManager", "")
    errors = _manager_errors(name)
    if "force" in request.query and not is_apply(request):
        errors.append(FieldError("force", "Forbidden: may not be specified for non-apply patch",
                                 "FieldValueForbidden"))
    if is_apply(request) and not name:
        errors.append(FieldError("fieldManager", "Required value: is required for apply patch",
                                 "FieldValueRequired"))
    if errors:
        kind = OPTIONS_KIND.get(request.method, "PatchOptions")
        raise status.invalid(f"{kind}.meta.k8s.io", "", errors)
    return name or from_user_agent(request.headers.get("User-Agent", ""))


def force(request: web.Request) -> bool:
    """The ``force`` of an apply (``kubectl apply --force-conflicts``)."""
    value = request.query.get("force", "false")
    if value not in _TRUE + _FALSE:
        raise status.bad_request(f'force: invalid value "{value}": must be true or false')
    return value in _TRUE


def from_user_agent(user_agent: str) -> str:
    """What precedes the first ``/``, printable characters only, cut to
    128 bytes: ``kubectl/v1.32.0 (linux/amd64)`` is ``kubectl``."""
    out = ""
    for char in user_agent.split("/")[0]:
        if not char.isprintable():
            continue
        if len((out + char).encode()) > MAX_MANAGER_LENGTH:
            break
        out += char
    return out


def _manager_errors(name: str) -> list[FieldError]:
    errors = []
    if len(name.encode()) > MAX_MANAGER_LENGTH:
        errors.append(FieldError("fieldManager", f"Too long: may not be more than "
                                 f"{MAX_MANAGER_LENGTH} bytes", "FieldValueTooLong"))
    for i, char in enumerate(name):
        if not char.isprintable():
            errors.append(FieldError("fieldManager", f'Invalid value: "{name}": invalid '
                                     f"character U+{ord(char):04X} (at position {i})"))
    return errors


# -- writes --

def scope(res: Resource, subresource: str = "", node: typed.Node | None = None,
          ) -> managedfields.Scope:
    """What field sets are worked out over; ``node``: a custom kind's schema."""
    return managedfields.Scope(node or typed.kind_node(res.group, res.version, res.kind),
                               res.api_version, subresource)


def _entries(obj: Obj | None) -> list[managedfields.Entry] | None:
    """An object's entries; None when it has none or they do not decode."""
    raw = (obj or {}).get("metadata", {}).get("managedFields")
    try:
        return managedfields.decode(raw) if raw else None
    except ValueError:
        return None


def _is_reset(obj: Obj) -> bool:
    """``managedFields: []`` (or one empty entry) in a body clears them."""
    raw = obj.get("metadata", {}).get("managedFields", None)
    return bool(raw == [] or raw == [{}])


def _store(obj: Obj, entries: list[managedfields.Entry]) -> None:
    md = meta.meta(obj)
    if entries:
        md["managedFields"] = managedfields.encode(entries)
    else:
        md.pop("managedFields", None)


def track(res: Resource, old: Obj | None, new: Obj, *, manager: str,
          subresource: str = "", node: typed.Node | None = None) -> None:
    """Set ``new``'s managedFields for a create (``old`` None), update or
    patch by ``manager``. The body's own managedFields count when it has
    valid ones (not through a subresource); else the stored ones do. With no
    manager (internal writes) the stored ones are kept as they are."""
    if _is_reset(new) and not subresource:
        base: list[managedfields.Entry] = []
    else:
        base = (None if subresource else _entries(new)) or _entries(old) or []
    if not manager:
        _store(new, base)
        return
    entries = managedfields.update(base, old, new, scope(res, subresource, node),
                                   manager=manager, now=meta.now())
    _store(new, entries)


def apply(res: Resource, live: Obj | None, config: Any, *, manager: str, force: bool,
          subresource: str = "", node: typed.Node | None = None) -> Obj:
    """Server-side apply of ``config`` onto ``live`` (None: to create); the
    result carries its managedFields. Conflicts are a 409."""
    _check_config(res, config, node)
    try:
        new, entries = managedfields.apply(_entries(live) or [], live, config,
                                           scope(res, subresource, node), manager=manager,
                                           force=force, now=meta.now())
    except managedfields.Conflicts as e:
        raise status.ApiError(409, "Conflict", e.message(),
                              details={"causes": e.causes()}) from None
    _store(new, entries)
    return new


def gvk_string(api_version: str, kind: str) -> str:
    """A group, version and kind as Go prints them: ``apps/v1, Kind=Deployment``,
    ``/v1, Kind=Pod``."""
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _check_config(res: Resource, config: Any, node: typed.Node | None) -> None:
    if not isinstance(config, dict):
        raise status.bad_request("error decoding YAML: the applied configuration must be "
                                 "an object")
    version, kind = str(config.get("apiVersion") or ""), str(config.get("kind") or "")
    gvk = gvk_string(version, kind)
    if (version, kind) != (res.api_version, res.kind):
        raise status.bad_request(f"invalid object type: {gvk}")
    md = config.get("metadata") or {}
    if md.get("managedFields") is not None:
        raise status.bad_request("metadata.managedFields must be nil")
    unknown = typed.undeclared(config, scope(res, node=node).node)
    if unknown:
        # kube-apiserver answers this with a 500 and no reason.
        found = "\n".join(f"{fieldpath.path_string(p)}: field not declared in schema"
                          for p in unknown)
        raise status.ApiError(500, "", f"failed to create typed patch object "
                              f"({md.get('namespace', '')}/{md.get('name', '')}; {gvk}): "
                              f"{found}")
