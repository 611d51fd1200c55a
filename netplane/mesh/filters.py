"""HTTPRoute filters as pure functions of a request's parts: header
modifiers (set, add, remove; for requests and responses), path modifiers
(ReplaceFullPath, ReplacePrefixMatch) for URL rewrites and redirects, the
redirect's Location and code, and the weighted choice of a backend."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from netplane.api.meta import Obj
from netplane.mesh.routes import BackendRef, Match, PathType, RouteError

Headers = list[tuple[str, str]]
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_WELL_KNOWN = {"http": 80, "https": 443}


def modify_headers(headers: Headers, spec: Obj) -> Headers:
    """A RequestHeaderModifier or ResponseHeaderModifier: ``set`` replaces
    every value of a name, ``add`` appends to the name's values (one line,
    comma-joined, as the specification's example), ``remove`` drops it.
    Names compare case-insensitively; the first entry of a name counts."""
    out = list(headers)
    for name in dict.fromkeys(n.lower() for n in spec.get("remove") or ()):
        out = [(k, v) for k, v in out if k.lower() != name]
    for entry in _first_of_each(spec.get("set") or ()):
        key = entry["name"].lower()
        out = [(k, v) for k, v in out if k.lower() != key]
        out.append((entry["name"], entry["value"]))
    for entry in _first_of_each(spec.get("add") or ()):
        key = entry["name"].lower()
        have = [i for i, (k, _) in enumerate(out) if k.lower() == key]
        if have:
            i = have[-1]
            out[i] = (out[i][0], f"{out[i][1]},{entry['value']}")
        else:
            out.append((entry["name"], entry["value"]))
    return out


def _first_of_each(entries: Sequence[Obj]) -> list[Obj]:
    seen: set[str] = set()
    kept = []
    for e in entries:
        if e["name"].lower() not in seen:
            seen.add(e["name"].lower())
            kept.append(e)
    return kept


def modify_path(path: str, spec: Obj, match: Match) -> str:
    """The path after a ``path`` modifier, for the match that took the
    request (ReplacePrefixMatch needs a PathPrefix match)."""
    kind = spec.get("type")
    if kind == "ReplaceFullPath":
        return str(spec.get("replaceFullPath") or "/")
    if kind != "ReplacePrefixMatch":
        raise RouteError("UnsupportedValue", f"path modifier {kind!r} is not supported")
    if match.path_type is not PathType.PREFIX:
        raise RouteError("UnsupportedValue",
                         "ReplacePrefixMatch needs a PathPrefix match in its rule")
    prefix = "" if match.path == "/" else match.path
    rest = path[len(prefix):]  # "" or "/..." : prefixes match whole elements
    replacement = str(spec.get("replacePrefixMatch") or "").rstrip("/")
    if not rest:
        return replacement or "/"
    return replacement + rest if replacement or rest != "/" else "/"


@dataclass(frozen=True)
class Redirect:
    code: int
    location: str


def redirect(spec: Obj, *, scheme: str, host: str, path: str, query: str,
             listener_port: int, match: Match) -> Redirect:
    """A RequestRedirect: the Location from the request's scheme, host and
    path with the filter's replacements; the port is the filter's, else the
    well-known port of a redirected scheme, else the listener's, and left
    out of the Location when it is the scheme's default."""
    code = int(spec.get("statusCode", 302))
    if code not in REDIRECT_CODES:
        raise RouteError("UnsupportedValue", f"redirect status code {code} is not supported")
    new_scheme = spec.get("scheme") or scheme
    if spec.get("port"):
        port = int(spec["port"])
    elif spec.get("scheme"):
        port = _WELL_KNOWN.get(new_scheme, listener_port)
    else:
        port = listener_port
    new_host = spec.get("hostname") or host
    new_path = modify_path(path, spec["path"], match) if spec.get("path") else path
    authority = new_host if _WELL_KNOWN.get(new_scheme) == port else f"{new_host}:{port}"
    return Redirect(code, f"{new_scheme}://{authority}{new_path}{'?' + query if query else ''}")


def pick(backends: Sequence[BackendRef], rng: random.Random | None = None) -> BackendRef | None:
    """A backend by weight (weight 0 takes nothing); None when every weight
    is 0 or there are none (the proxy answers 500, as the specification
    says for a rule with no valid backend)."""
    total = sum(max(b.weight, 0) for b in backends)
    if total <= 0:
        return None
    point = (rng or random).randrange(total)
    for b in backends:
        point -= max(b.weight, 0)
        if point < 0:
            return b
    raise AssertionError("unreachable: the weights sum to total")
