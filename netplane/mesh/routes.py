"""HTTPRoute matching (``gateway.networking.k8s.io/v1``), compiled once per
configuration change into a table that answers "which rule takes this
request" without walking route objects per request.

Precedence, as the specification orders it: first the route whose matching
hostname has the most non-wildcard characters, then the most characters
(Gateway parents only; a mesh parent, a Service, has no hostnames); then an
Exact path, a RegularExpression path (implementation-specific: here after
Exact and before any prefix, longer patterns first), the longest PathPrefix;
then a method match, the most header matches, the most query-parameter
matches; then the oldest route, then ``namespace/name``; then the rule and
the match in list order. Regular expressions are Python's ``re``, matched
against the whole value (as Envoy matches its safe regexes).

A path prefix matches whole path elements: ``/abc`` matches ``/abc``,
``/abc/`` and ``/abc/def``, not ``/abcd``; a trailing ``/`` in the prefix
is ignored. Header names match case-insensitively; a repeated request
header is its values joined by ``,`` (RFC 9110 5.3); a repeated query
parameter is its first value, as the specification recommends. Of several
header (or query) matches with one name, only the first counts."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from netplane.api import meta
from netplane.api.meta import Obj


class PathType(enum.Enum):
    EXACT = "Exact"
    PREFIX = "PathPrefix"
    REGEX = "RegularExpression"


# Precedence among path types; a lower rank is tried first.
_PATH_RANK = {PathType.EXACT: 0, PathType.REGEX: 1, PathType.PREFIX: 2}
_VALUE_TYPES = ("Exact", "RegularExpression")


class RouteError(ValueError):
    """A rule the proxy cannot take: the route's Accepted condition turns
    False with ``reason`` (the specification's ``UnsupportedValue``...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Request:
    """What matching reads of a request: header names lower-case."""
    method: str
    path: str
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, method: str, target: str, headers: Iterable[tuple[str, str]] = ()
           ) -> Request:
        """From a request line's method and target and its header lines."""
        joined: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        path, _, query = target.partition("?")
        first: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            first.setdefault(name, value)
        return cls(method=method.upper(), path=path.partition("#")[0] or "/",
                   host=host_of(joined.get("host", "")), headers=joined, query=first)


def host_of(header: str) -> str:
    """The Host header without its port, lower-case (matching ignores the port)."""
    host = header.strip().lower()
    if host.startswith("["):  # an IPv6 literal
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _regex(text: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as e:
        raise RouteError("UnsupportedValue", f"{what}: invalid regular expression "
                                             f"{text!r}: {e}") from None


@dataclass(frozen=True)
class ValueMatch:
    """One header or query-parameter match: the name (lower-case for
    headers), and either an exact value or a pattern."""
    name: str
    value: str
    pattern: re.Pattern[str] | None = None

    def test(self, got: str | None) -> bool:
        if got is None:
            return False
        return bool(self.pattern.fullmatch(got)) if self.pattern else got == self.value


@dataclass(frozen=True)
class Match:
    path_type: PathType
    path: str  # a prefix without its trailing "/"
    method: str | None = None
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()
    pattern: re.Pattern[str] | None = None

    @classmethod
    def compile(cls, spec: Obj) -> Match:
        path = spec.get("path") or {}
        kind, value = path.get("type", "PathPrefix"), path.get("value", "/")
        try:
            path_type = PathType(kind)
        except ValueError:
            raise RouteError("UnsupportedValue", f"path match type {kind!r} is not "
                                                 f"supported") from None
        pattern = None
        if path_type is PathType.REGEX:
            pattern = _regex(value, "path")
        elif path_type is PathType.PREFIX and value != "/":
            value = value.rstrip("/") or "/"
        return cls(path_type=path_type, path=value, method=spec.get("method"),
                   headers=_value_matches(spec.get("headers") or [], "header", fold=True),
                   query=_value_matches(spec.get("queryParams") or [], "query parameter",
                                        fold=False),
                   pattern=pattern)

    def test(self, req: Request) -> bool:
        if not self._path_matches(req.path):
            return False
        if self.method is not None and req.method != self.method:
            return False
        return all(h.test(req.headers.get(h.name)) for h in self.headers) and \
            all(q.test(req.query.get(q.name)) for q in self.query)

    def _path_matches(self, path: str) -> bool:
        if self.path_type is PathType.EXACT:
            return path == self.path
        if self.path_type is PathType.REGEX:
            assert self.pattern is not None
            return bool(self.pattern.fullmatch(path))
        prefix = self.path
        return prefix == "/" or path == prefix or path.startswith(prefix + "/")

    def rank(self) -> tuple[int, int, int, int, int]:
        """The sort key of the match criteria: a smaller key goes first."""
        return (_PATH_RANK[self.path_type], -len(self.path), 0 if self.method else 1,
                -len(self.headers), -len(self.query))

    def describe(self) -> str:
        """For traces: what this match asked of the request."""
        words = [f"path {self.path_type.value} {self.path}"]
        if self.method:
            words.append(f"method {self.method}")
        words += [f"header {h.name}{' ~ ' if h.pattern else '='}{h.value}" for h in self.headers]
        words += [f"query {q.name}{' ~ ' if q.pattern else '='}{q.value}" for q in self.query]
        return ", ".join(words)


def _value_matches(specs: list[Obj], what: str, *, fold: bool) -> tuple[ValueMatch, ...]:
    out: list[ValueMatch] = []
    seen: set[str] = set()
    for spec in specs:
        name = str(spec.get("name", ""))
        key = name.lower() if fold else name
        if key in seen:  # only the first of a name counts
            continue
        seen.add(key)
        kind, value = spec.get("type", "Exact"), str(spec.get("value", ""))
        if kind not in _VALUE_TYPES:
            raise RouteError("UnsupportedValue", f"{what} match type {kind!r} is not "
                                                 f"supported")
        pattern = _regex(value, f"{what} {name}") if kind == "RegularExpression" else None
        out.append(ValueMatch(key, value, pattern))
    return tuple(out)


@dataclass(frozen=True)
class BackendKey:
    """A Service port that backends a rule: where the proxy finds endpoints."""
    namespace: str
    name: str
    port: int | None


@dataclass(frozen=True)
class BackendRef:
    name: str
    namespace: str
    port: int | None
    weight: int = 1
    group: str = ""
    kind: str = "Service"
    filters: tuple[Obj, ...] = ()
    problem: str | None = None  # why it cannot take traffic (its share gets 500)

    @classmethod
    def of(cls, spec: Obj, route_namespace: str) -> BackendRef:
        return cls(name=str(spec.get("name", "")),
                   namespace=str(spec.get("namespace") or route_namespace),
                   port=spec.get("port"), weight=int(spec.get("weight", 1)),
                   group=str(spec.get("group", "")), kind=str(spec.get("kind", "Service")),
                   filters=tuple(spec.get("filters") or ()))

    @property
    def key(self) -> BackendKey:
        return BackendKey(self.namespace, self.name, self.port)


@dataclass(frozen=True)
class Rule:
    route: RouteKey
    index: int
    name: str | None
    filters: tuple[Obj, ...]
    backends: tuple[BackendRef, ...]
    timeouts: Obj
    retry: Obj | None
    implicit: bool = False  # a Service's own rule, where no HTTPRoute applies


@dataclass(frozen=True, order=True)
class RouteKey:
    """Orders routes as ties between them are broken: oldest first, then by
    ``namespace/name``."""
    created: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Route:
    key: RouteKey
    hostnames: tuple[str, ...]  # empty: any host
    rules: tuple[tuple[Rule, tuple[Match, ...]], ...]

    @classmethod
    def compile(cls, obj: Obj, hostnames: Iterable[str] | None = None) -> Route:
        """``hostnames``: the route's hostnames as they attach to the parent
        (see ``attached_hostnames``), by default those it names."""
        ns = meta.namespace(obj) or "default"
        key = RouteKey(obj["metadata"].get("creationTimestamp", ""), ns, meta.name(obj))
        spec = obj.get("spec") or {}
        names = tuple(spec.get("hostnames") or ()) if hostnames is None else tuple(hostnames)
        rules = []
        for i, r in enumerate(spec.get("rules") or [{}]):
            matches = r.get("matches") or [{}]  # none: a PathPrefix match on "/"
            rule = Rule(route=key, index=i, name=r.get("name"),
                        filters=tuple(r.get("filters") or ()),
                        backends=tuple(BackendRef.of(b, ns) for b in r.get("backendRefs") or ()),
                        timeouts=r.get("timeouts") or {}, retry=r.get("retry"))
            rules.append((rule, tuple(Match.compile(m) for m in matches)))
        return cls(key=key, hostnames=tuple(h.lower() for h in names), rules=tuple(rules))


    @classmethod
    def to_service(cls, namespace: str, name: str, port: int) -> Route:
        """The route a Service port is without any: every request to its
        own endpoints."""
        key = RouteKey("", namespace, name)
        rule = Rule(route=key, index=0, name="service", filters=(),
                    backends=(BackendRef(name, namespace, port),),
                    timeouts={}, retry=None, implicit=True)
        return cls(key=key, hostnames=(), rules=((rule, (Match(PathType.PREFIX, "/"),)),))


def hostname_matches(pattern: str, host: str) -> bool:
    """``*.example.com`` matches ``a.example.com`` and ``a.b.example.com``,
    not ``example.com``."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def attached_hostnames(listener: str | None, route: Iterable[str]) -> list[str] | None:
    """The route's hostnames as they attach to a listener with hostname
    ``listener`` (None: any): ``[]`` means any host; None means the route
    cannot attach (none of its hostnames intersects the listener's)."""
    names = [h.lower() for h in route]
    if not listener:
        return names
    listener = listener.lower()
    if not names:
        return [listener]
    kept = [h for h in names if hostname_matches(listener, h) or hostname_matches(h, listener)
            or h == listener]
    # A route wildcard wider than the listener narrows to the listener's name.
    kept = [listener if h.startswith("*.") and hostname_matches(h, listener) else h
            for h in kept]
    return list(dict.fromkeys(kept)) or None


def _host_score(route: Route, host: str) -> tuple[tuple[int, int] | None, str | None]:
    """(non-wildcard characters, characters) of the route's best hostname
    for ``host``, and that hostname; (0, 0) for a route of any host; None
    when none matches."""
    if not route.hostnames:
        return (0, 0), None
    scored = [((0 if h.startswith("*.") else len(h), len(h)), h)
              for h in route.hostnames if hostname_matches(h, host)]
    if not scored:
        return None, None
    score, best = max(scored)
    return score, best


@dataclass(frozen=True)
class Decision:
    rule: Rule
    match: Match
    hostname: str | None  # the route hostname that matched, if it has any

    def describe(self) -> str:
        rule = self.rule.name or f"rule {self.rule.index}"
        host = f"hostname {self.hostname}, " if self.hostname else ""
        return f"{self.rule.route} {rule}: {host}{self.match.describe()}"


@dataclass
class RouteTable:
    """The routes attached to one parent (a Gateway listener or a Service),
    in precedence order. ``use_hostnames``: False for a mesh parent, where
    the specification ignores hostnames."""
    routes: list[Route]
    use_hostnames: bool = True
    _by_host: dict[str, list[tuple[Rule, Match, str | None]]] = field(
        default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        entries = [(m.rank(), route.key, rule.index, j, rule, m, route)
                   for route in self.routes for rule, matches in route.rules
                   for j, m in enumerate(matches)]
        entries.sort(key=lambda e: e[:4])
        self._entries = [(e[4], e[5], e[6]) for e in entries]

    def decide(self, req: Request) -> Decision | None:
        """The rule that takes ``req``, or None (the proxy answers 404)."""
        for rule, match, hostname in self._ordered(req.host):
            if match.test(req):
                return Decision(rule, match, hostname)
        return None

    def _ordered(self, host: str) -> list[tuple[Rule, Match, str | None]]:
        key = host if self.use_hostnames else ""
        got = self._by_host.get(key)
        if got is not None:
            return got
        scored: list[tuple[tuple[int, int], int, Rule, Match, str | None]] = []
        for order, (rule, match, route) in enumerate(self._entries):
            if not self.use_hostnames:
                scored.append(((0, 0), order, rule, match, None))
                continue
            score, best = _host_score(route, host)
            if score is not None:
                scored.append(((-score[0], -score[1]), order, rule, match, best))
        scored.sort(key=lambda s: (s[0], s[1]))
        got = [(s[2], s[3], s[4]) for s in scored]
        if len(self._by_host) > 1024:  # hosts are few; a flood of odd ones is not kept
            self._by_host.clear()
        self._by_host[key] = got
        return got


def compile_routes(objs: Iterable[Obj], **kw: Any) -> tuple[RouteTable, dict[str, RouteError]]:
    """A table of the routes that compile, and the error of each that does
    not (by ``namespace/name``), for its status."""
    routes: list[Route] = []
    errors: dict[str, RouteError] = {}
    for obj in objs:
        try:
            routes.append(Route.compile(obj))
        except RouteError as e:
            errors[meta.namespaced_name(obj)] = e
    return RouteTable(routes, **kw), errors
