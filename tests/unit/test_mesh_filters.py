"""HTTPRoute filters as tables: header modifiers, the specification's
ReplacePrefixMatch table, redirects after the conformance suite's
port-and-scheme cases, and the weighted choice of backends."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from netplane.api.meta import Obj
from netplane.mesh.filters import modify_headers, modify_path, pick, redirect
from netplane.mesh.routes import BackendRef, Match, RouteError


def prefix(value: str) -> Match:
    return Match.compile({"path": {"type": "PathPrefix", "value": value}})


def test_header_modifier_sets_adds_and_removes() -> None:
    headers = [("Host", "web"), ("my-header1", "foo"), ("My-Header2", "bar"),
               ("my-header3", "baz"), ("X-Add", "a")]
    out = modify_headers(headers, {
        "set": [{"name": "My-Header2", "value": "set"}, {"name": "my-header2", "value": "no"}],
        "add": [{"name": "x-add", "value": "b,c"}, {"name": "X-New", "value": "1"}],
        "remove": ["MY-HEADER1", "my-header3"]})
    assert out == [("Host", "web"), ("X-Add", "a,b,c"), ("My-Header2", "set"), ("X-New", "1")]


def test_set_replaces_every_value_of_a_name() -> None:
    out = modify_headers([("a", "1"), ("A", "2")], {"set": [{"name": "a", "value": "3"}]})
    assert out == [("a", "3")]


# The specification's table for ReplacePrefixMatch.
@pytest.mark.parametrize(("path", "match", "replacement", "result"), [
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo", "/foo", "/xyz", "/xyz"),
    ("/foo/", "/foo", "/xyz", "/xyz/"),
    ("/foo/bar", "/foo", "", "/bar"),
    ("/foo/", "/foo", "", "/"),
    ("/foo", "/foo", "", "/"),
    ("/foo/", "/foo", "/", "/"),
    ("/foo", "/foo", "/", "/"),
])
def test_replace_prefix_match(path: str, match: str, replacement: str, result: str) -> None:
    spec = {"type": "ReplacePrefixMatch", "replacePrefixMatch": replacement}
    assert modify_path(path, spec, prefix(match)) == result


def test_replace_full_path_and_what_cannot_be_replaced() -> None:
    assert modify_path("/a/b", {"type": "ReplaceFullPath", "replaceFullPath": "/c"},
                       prefix("/a")) == "/c"
    exact = Match.compile({"path": {"type": "Exact", "value": "/a"}})
    with pytest.raises(RouteError):
        modify_path("/a", {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}, exact)
    with pytest.raises(RouteError):
        modify_path("/a", {"type": "Shuffle"}, prefix("/a"))


# httproute-redirect-port-and-scheme, on an HTTP listener on port 8080 and
# an HTTPS one on 8443.
@pytest.mark.parametrize(("scheme", "listener", "spec", "location"), [
    ("http", 8080, {}, "http://example.org:8080/p"),
    ("http", 8080, {"port": 80}, "http://example.org/p"),
    ("http", 8080, {"port": 8080}, "http://example.org:8080/p"),
    ("http", 8080, {"scheme": "https"}, "https://example.org/p"),
    ("http", 8080, {"scheme": "https", "port": 443}, "https://example.org/p"),
    ("http", 8080, {"scheme": "https", "port": 8443}, "https://example.org:8443/p"),
    ("https", 8443, {}, "https://example.org:8443/p"),
    ("https", 8443, {"port": 443}, "https://example.org/p"),
    ("https", 8443, {"scheme": "http"}, "http://example.org/p"),
    ("http", 80, {"hostname": "example.net", "statusCode": 301}, "http://example.net/p"),
])
def test_redirect_location(scheme: str, listener: int, spec: Obj, location: str) -> None:
    got = redirect(spec, scheme=scheme, host="example.org", path="/p", query="",
                   listener_port=listener, match=prefix("/"))
    assert got.location == location
    assert got.code == spec.get("statusCode", 302)


def test_redirect_keeps_the_query_and_rewrites_the_path() -> None:
    got = redirect({"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
                    "statusCode": 308}, scheme="http", host="a", path="/old/x",
                   query="q=1", listener_port=80, match=prefix("/old"))
    assert (got.code, got.location) == (308, "http://a/new/x?q=1")
    with pytest.raises(RouteError):
        redirect({"statusCode": 304}, scheme="http", host="a", path="/", query="",
                 listener_port=80, match=prefix("/"))


def test_weights_split_traffic_in_proportion() -> None:
    v1, v2, off = (BackendRef("v1", "ns", 80, weight=80), BackendRef("v2", "ns", 80, weight=20),
                   BackendRef("off", "ns", 80, weight=0))
    rng = random.Random(7)
    got = Counter(b.name for b in (pick([v1, v2, off], rng) for _ in range(10_000)) if b)
    assert set(got) == {"v1", "v2"}
    assert 7_600 < got["v1"] < 8_400  # 80 % give or take far more than chance allows
    assert pick([off], rng) is None and pick([], rng) is None
