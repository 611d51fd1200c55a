"""HTTPRoute matching and precedence as tables, after the Gateway API
conformance suite's HTTPRoute cases (matching, matching across routes,
exact paths, headers, query parameters, methods, hostnames)."""

from __future__ import annotations

from typing import Any

import pytest

from netplane.api.meta import Obj
from netplane.mesh import durations
from netplane.mesh.routes import (
    Request,
    RouteError,
    RouteTable,
    attached_hostnames,
    compile_routes,
    host_of,
)


def route(name: str, rules: list[Obj], *, hostnames: list[str] | None = None,
          created: str = "2026-01-01T00:00:00Z", namespace: str = "infra") -> Obj:
    spec: dict[str, Any] = {"parentRefs": [{"name": "gw"}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
            "spec": spec}


def to(backend: str, *matches: Obj) -> Obj:
    rule: dict[str, Any] = {"backendRefs": [{"name": backend, "port": 8080}]}
    if matches:
        rule["matches"] = list(matches)
    return rule


def prefix(value: str, **more: Any) -> Obj:
    return {"path": {"type": "PathPrefix", "value": value}, **more}


def header(name: str, value: str, kind: str = "Exact") -> Obj:
    return {"name": name, "value": value, "type": kind}


def backend_of(table: RouteTable, path: str, host: str = "", method: str = "GET",
               headers: dict[str, str] | None = None) -> str | None:
    hdrs = [("Host", host)] if host else []
    hdrs += list((headers or {}).items())
    decision = table.decide(Request.of(method, path, hdrs))
    return None if decision is None else decision.rule.backends[0].name


def table_of(*objs: Obj, use_hostnames: bool = True) -> RouteTable:
    table, errors = compile_routes(objs, use_hostnames=use_hostnames)
    assert errors == {}
    return table


# httproute-matching: one route, two rules.
MATCHING = table_of(route("matching", [
    to("v1", prefix("/"), {"headers": [header("version", "one")]}),
    to("v2", prefix("/v2"), {"headers": [header("version", "two")]})]))


@pytest.mark.parametrize(("path", "headers", "backend"), [
    ("/", {}, "v1"),
    ("/example", {}, "v1"),
    ("/", {"Version": "one"}, "v1"),
    ("/v2", {}, "v2"),
    ("/v2/example", {}, "v2"),
    ("/", {"Version": "two"}, "v2"),  # a header match outranks the bare prefix
    ("/v2/", {}, "v2"),
    ("/v2example", {}, "v1"),  # prefixes match whole path elements
    ("/foo/v2/example", {}, "v1"),
])
def test_matching(path: str, headers: dict[str, str], backend: str) -> None:
    assert backend_of(MATCHING, path, headers=headers) == backend


# httproute-matching-across-routes: the second route only for example.com.
ACROSS = table_of(
    route("part1", [to("v1", prefix("/"), {"headers": [header("version", "one")]})],
          hostnames=["example.com", "example.net"]),
    route("part2", [to("v2", prefix("/v2"), {"headers": [header("version", "two")]})],
          hostnames=["example.com"]))


@pytest.mark.parametrize(("host", "path", "headers", "backend"), [
    ("example.com", "/", {}, "v1"),
    ("example.com", "/example", {}, "v1"),
    ("example.net", "/example", {}, "v1"),
    ("example.com", "/example", {"Version": "one"}, "v1"),
    ("example.com", "/v2", {}, "v2"),
    ("example.net", "/v2", {}, "v1"),  # part2 is not for example.net
    ("example.com", "/v2/example", {}, "v2"),
    ("example.com", "/", {"Version": "two"}, "v2"),
    ("example.com:8080", "/v2", {}, "v2"),  # the Host header's port is ignored
    ("other.org", "/", {}, None),  # no route for that host: 404
])
def test_matching_across_routes(host: str, path: str, headers: dict[str, str],
                                backend: str | None) -> None:
    assert backend_of(ACROSS, path, host=host, headers=headers) == backend


def test_exact_paths_match_only_themselves() -> None:
    table = table_of(route("exact", [
        to("v1", {"path": {"type": "Exact", "value": "/one"}}),
        to("v2", {"path": {"type": "Exact", "value": "/two"}})]))
    assert [backend_of(table, p) for p in ("/one", "/two", "/one/", "/One", "/onetwo", "/")] \
        == ["v1", "v2", None, None, None, None]


def test_exact_beats_regex_beats_the_longest_prefix() -> None:
    table = table_of(route("paths", [
        to("prefix", prefix("/api")),
        to("longer", prefix("/api/v1")),
        to("regex", {"path": {"type": "RegularExpression", "value": r"/api/v[0-9]+/items"}}),
        to("exact", {"path": {"type": "Exact", "value": "/api/v1/items"}})]))
    assert backend_of(table, "/api/v1/items") == "exact"
    assert backend_of(table, "/api/v2/items") == "regex"
    assert backend_of(table, "/api/v1/items/3") == "longer"  # regexes match the whole path
    assert backend_of(table, "/api/v1") == "longer"
    assert backend_of(table, "/api") == "prefix"


def test_header_matching_is_case_insensitive_in_names_and_exact_in_values() -> None:
    table = table_of(route("headers", [
        to("v1", {"headers": [header("version", "one")]}),
        to("v2", {"headers": [header("version", "two")]}),
        to("v1", {"headers": [header("version", "two"), header("color", "orange")]}),
        to("v1", {"headers": [header("color", "blue")]}),
        to("v2", {"headers": [header("color", "green")]}),
        to("v1", {"headers": [header("color", "red"), header("color", "yellow")]}),
        to("regex", {"headers": [header("x-canary", "tru.", "RegularExpression")]})]))
    cases = [({"Version": "one"}, "v1"), ({"Version": "two"}, "v2"),
             ({"Version": "two", "Color": "orange"}, "v1"),  # two matches beat one
             ({"Color": "blue"}, "v1"), ({"Color": "green"}, "v2"),
             ({"Color": "red"}, "v1"),
             ({"Color": "yellow"}, None),  # only the first match of a name counts
             ({"Version": "One"}, None), ({"x-canary": "true"}, "regex"),
             ({"x-canary": "not true"}, None), ({}, None)]
    for headers, backend in cases:
        assert backend_of(table, "/", headers=headers) == backend, headers


def test_a_repeated_request_header_is_its_values_joined() -> None:
    table = table_of(route("joined", [to("v1", {"headers": [header("x-a", "1,2")]})]))
    req = Request.of("GET", "/", [("X-A", "1"), ("x-a", "2")])
    assert table.decide(req) is not None


def test_query_parameters_and_methods() -> None:
    table = table_of(route("query", [
        to("v1", {"queryParams": [header("animal", "whale")]}),
        to("v2", {"queryParams": [header("animal", "dolphin")]}),
        to("v2", {"queryParams": [header("animal", "dolphin"), header("color", "blue")]}),
        to("post", {"method": "POST"}),
        to("any")]))
    assert backend_of(table, "/?animal=whale") == "v1"
    assert backend_of(table, "/?animal=dolphin") == "v2"
    assert backend_of(table, "/?animal=dolphin&color=blue") == "v2"
    assert backend_of(table, "/?animal=whale&animal=dolphin") == "v1"  # the first value
    assert backend_of(table, "/?ANIMAL=whale") == "any"  # names are case-sensitive
    assert backend_of(table, "/", method="POST") == "post"
    assert backend_of(table, "/?animal=whale", method="POST") == "post"  # method first


def test_ties_go_to_the_oldest_route_then_by_name_then_to_the_first_rule() -> None:
    old = route("zeta", [to("old", prefix("/"))], created="2026-01-01T00:00:00Z")
    new = route("alpha", [to("new", prefix("/"))], created="2026-02-01T00:00:00Z")
    assert backend_of(table_of(new, old), "/x") == "old"
    same = [route("b", [to("b", prefix("/"))]), route("a", [to("a", prefix("/"))])]
    assert backend_of(table_of(*same), "/x") == "a"
    first = route("r", [to("first", prefix("/x")), to("second", prefix("/x"))])
    assert backend_of(table_of(first), "/x") == "first"


def test_the_most_specific_hostname_wins_before_any_path() -> None:
    table = table_of(
        route("wild", [to("wild", prefix("/long/path"))], hostnames=["*.example.com"]),
        route("exact", [to("exact", prefix("/"))], hostnames=["foo.example.com"]),
        route("any", [to("any", prefix("/long/path/here"))]))
    assert backend_of(table, "/long/path/here", host="foo.example.com") == "exact"
    assert backend_of(table, "/long/path/here", host="bar.example.com") == "wild"
    assert backend_of(table, "/long/path/here", host="example.com") == "any"
    assert backend_of(table, "/long/path/here", host="a.b.example.com") == "wild"


def test_a_mesh_parent_ignores_hostnames() -> None:
    table = table_of(route("svc", [to("v1")], hostnames=["example.com"]), use_hostnames=False)
    assert backend_of(table, "/", host="web.default.svc.cluster.local") == "v1"


def test_a_rule_without_matches_takes_every_path() -> None:
    assert backend_of(table_of(route("all", [to("v1")])), "/any/thing") == "v1"


@pytest.mark.parametrize(("listener", "names", "attached"), [
    (None, ["a.example.com"], ["a.example.com"]),
    ("test.example.com", [], ["test.example.com"]),
    ("test.example.com", ["test.example.com"], ["test.example.com"]),
    ("test.example.com", ["*.example.com"], ["test.example.com"]),
    ("test.example.com", ["other.example.com"], None),
    ("*.example.com", ["*.example.com", "test.example.com", "foo.test.example.com",
                       "example.com", "test.example.net"],
     ["*.example.com", "test.example.com", "foo.test.example.com"]),
])
def test_route_hostnames_as_they_attach_to_a_listener(
        listener: str | None, names: list[str], attached: list[str] | None) -> None:
    assert attached_hostnames(listener, names) == attached


@pytest.mark.parametrize(("bad", "reason"), [
    ({"path": {"type": "Glob", "value": "/*"}}, "UnsupportedValue"),
    ({"path": {"type": "RegularExpression", "value": "/(unclosed"}}, "UnsupportedValue"),
    ({"headers": [header("x", "a", "Fuzzy")]}, "UnsupportedValue"),
])
def test_a_route_that_cannot_compile_is_reported_with_its_reason(bad: Obj, reason: str) -> None:
    table, errors = compile_routes([route("bad", [to("v1", bad)]), route("ok", [to("v2")])])
    assert isinstance(errors["infra/bad"], RouteError)
    assert errors["infra/bad"].reason == reason
    assert backend_of(table, "/") == "v2"  # the others still route


def test_the_decision_says_what_matched() -> None:
    decision = ACROSS.decide(Request.of("GET", "/v2/x", [("Host", "example.com")]))
    assert decision is not None
    assert decision.describe() == "infra/part2 rule 0: hostname example.com, " \
                                  "path PathPrefix /v2"


@pytest.mark.parametrize(("header", "host"), [
    ("Example.COM:8080", "example.com"), ("example.com", "example.com"),
    ("[::1]:80", "[::1]"), ("", "")])
def test_host_of(header: str, host: str) -> None:
    assert host_of(header) == host


@pytest.mark.parametrize(("text", "seconds"), [
    ("0s", 0.0), ("500ms", 0.5), ("1h30m", 5400.0), ("1h1m1s1ms", 3661.001), ("99999s", 99999.0)])
def test_durations(text: str, seconds: float) -> None:
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1.5s", "1d", "100000s", "1h1m1s1ms1h", "-1s", "1 s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(durations.DurationError):
        durations.parse(text)
