"""The access log's entries, made of the Record of a request: the line
and the JSON as users read them, the logger (written to only when it
takes INFO), and the ring ``netplane mesh logs`` reads by sequence
number, client namespace and Service."""

from __future__ import annotations

import logging
import re
import time

import pytest

from netplane.mesh.accesslog import AccessLog, Detail, Entry, service_key
from netplane.mesh.metrics import Record
from netplane.mesh.routes import BackendRef, Route, RouteKey, Rule
from netplane.mesh.tracing import Tracer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
WEB = "spiffe://cluster.local/ns/shop/sa/web"
RULE = Rule(route=RouteKey("2026-01-01", "shop", "web"), index=1, name=None, filters=(),
            backends=(), timeouts={}, retry=None)


def record(**kw: object) -> Record:
    """A request answered 12.5 ms after it came in, through rule 1 of shop/web."""
    now = time.monotonic()
    rec = Record(started=now - 0.0125, ended=now, source=WEB, source_namespace="shop",
                 client="10.244.1.2", service="web.shop.svc.cluster.local",
                 route="shop/web rule 1", rule=RULE, backend=BackendRef("v1", "shop", 80),
                 backends=["10.244.2.7:8080", "10.244.2.8:8080"], method="GET",
                 path="/cart", authority="web.shop:80", status=200, request_bytes=3,
                 response_bytes=120, trace=Tracer().begin(f"00-{TRACE}-00f067aa0ba902b7-01"))
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def test_a_line_tells_the_request_as_envoys_do() -> None:
    entry = AccessLog().record(record())
    start, rest = entry.line().split("] ", 1)
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", start)
    assert rest == (
        f'"GET /cart" 200 - 3 120 12.5 1 "web.shop:80" {WEB} shop/web#1 shop/v1:80 '
        f'10.244.2.8:8080 {TRACE}')
    assert str(entry) == entry.line()


def test_what_is_not_known_is_a_dash() -> None:
    rec = record(source="unknown", source_namespace="unknown", rule=None, route="",
                 backend=None, backends=[], authority="", status=404,
                 detail=Detail.ROUTE_NOT_FOUND, response_bytes=17, request_bytes=0)
    entry = AccessLog().record(rec)
    assert entry.line().split("] ", 1)[1] == (
        f'"GET /cart" 404 route_not_found 0 17 12.5 0 "-" 10.244.1.2 - - - {TRACE}')
    assert (entry.source, entry.source_namespace) == ("10.244.1.2", "")


def test_a_services_own_route_is_no_route() -> None:
    implicit = Route.to_service("shop", "api", 80).rules[0][0]
    entry = AccessLog().record(record(rule=implicit, route="shop/api service"))
    assert (entry.route, entry.rule) == ("", None) and " - shop/v1:80 " in entry.line()


def test_the_json_of_an_entry() -> None:
    entry = AccessLog().record(record(detail="", destination="spiffe://cluster.local/ns/shop/"
                                                             "sa/v1"))
    got = entry.to_dict()
    assert got.pop("start_time").endswith("Z")
    assert got == {
        "seq": 1, "source": WEB, "source_namespace": "shop", "method": "GET",
        "path": "/cart", "authority": "web.shop:80", "route": "shop/web", "rule": 1,
        "service": "web.shop.svc.cluster.local", "backend": "shop/v1:80",
        "endpoint": "10.244.2.8:8080", "destination": "spiffe://cluster.local/ns/shop/sa/v1",
        "code": 200, "detail": "", "duration_ms": 12.5, "bytes_in": 3, "bytes_out": 120,
        "retries": 1, "trace_id": TRACE}
    assert entry.span_attributes() == {
        "route": "shop/web#1", "backend": "shop/v1:80", "endpoint": "10.244.2.8:8080",
        "retries": 1, "status": 200, "source": WEB,
        "destination": "spiffe://cluster.local/ns/shop/sa/v1"}


def test_the_start_is_when_the_request_came_in() -> None:
    before = time.time()
    entry = AccessLog().record(record())
    assert before - 0.0125 - 1 < entry.start <= time.time() - 0.0125


def test_entries_go_to_the_access_logger(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog()
    with caplog.at_level(logging.INFO, logger="netplane.mesh.access"):
        entry = log.record(record())
    (got,) = [r for r in caplog.records if r.name == "netplane.mesh.access"]
    assert got.levelno == logging.INFO and got.getMessage() == entry.line()


def test_the_line_is_made_only_when_the_logger_takes_info(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    made: list[int] = []

    def line(entry: Entry) -> str:
        made.append(entry.seq)
        return "line"

    monkeypatch.setattr(Entry, "__str__", line)
    log = AccessLog()
    with caplog.at_level(logging.WARNING, logger="netplane.mesh.access"):
        log.record(record())
    assert made == [] and len(log.entries()) == 1  # kept all the same
    with caplog.at_level(logging.INFO, logger="netplane.mesh.access"):
        log.record(record())
    assert set(made) == {2}  # once per handler that writes it


def test_the_ring_keeps_the_last_entries_and_reads_from_a_sequence_number() -> None:
    log = AccessLog(capacity=3)
    assert log.last == 0 and log.entries() == []
    for n in range(5):
        log.record(record(path=f"/{n}"))
    assert log.last == 5
    assert [e.path for e in log.entries()] == ["/2", "/3", "/4"]
    assert [e.seq for e in log.entries(since=3)] == [4, 5]
    assert log.entries(since=5) == []
    assert [e.path for e in log.entries(limit=2)] == ["/3", "/4"]
    assert log.entries(limit=0) == []


def test_entries_by_the_clients_namespace_and_by_service() -> None:
    log = AccessLog()
    log.record(record())
    log.record(record(source="spiffe://cluster.local/ns/ops/sa/cron", source_namespace="ops",
                      service="api.ops.svc.cluster.local", backend=BackendRef("api", "ops", 80)))
    log.record(record(source="unknown", source_namespace="unknown", service="unknown",
                      backend=None))
    assert [e.seq for e in log.entries(namespace="shop")] == [1]
    assert [e.seq for e in log.entries(namespace="ops")] == [2]
    for name in ("web.shop.svc.cluster.local", "web.shop", "shop/web", "web",
                 "shop/v1", "shop/v1:80", "v1.shop.svc.cluster.local"):
        assert [e.seq for e in log.entries(service=name)] == [1], name
    assert [e.seq for e in log.entries(service="ops/api")] == [2]
    assert log.entries(service="other/web") == [] and log.entries(service="v2") == []
    assert [e.seq for e in log.entries(namespace="shop", service="api")] == []


@pytest.mark.parametrize(("text", "key"), [
    ("shop/web", ("shop", "web")), ("shop/web:80", ("shop", "web")),
    ("web.shop", ("shop", "web")), ("web.shop.svc.cluster.local", ("shop", "web")),
    ("web.shop:80", ("shop", "web")), ("web", (None, "web")),
])
def test_how_services_are_named(text: str, key: tuple[str | None, str]) -> None:
    assert service_key(text) == key
