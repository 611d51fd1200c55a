"""The L7 proxy on loopback, in front of real netplane/echo servers (the C
one, each a process of its own): routes, weights, header matches, filters,
retries that hide a flaky backend, timeouts, and the answers the
specification asks for when nothing can serve a request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from netplane.api.meta import Obj
from netplane.mesh import tracing
from netplane.mesh.config import build
from netplane.mesh.proxy import Listener, Proxy, Upstreams, serve
from netplane.mesh.resilience import Balancer
from netplane.mesh.routes import BackendKey, Route, RouteTable, compile_routes
from tests.echoserver import LOOPBACK, WHO, Echo, start

NS = "shop"


@pytest.fixture(scope="module")
def backends(c_echo: Path) -> Iterator[dict[str, Echo]]:
    servers = {
        "v1": start([str(c_echo)], {**WHO, "POD_NAME": "v1-0"}),
        "v2": start([str(c_echo)], {**WHO, "POD_NAME": "v2-0"}),
        "flaky": start([str(c_echo)], {**WHO, "POD_NAME": "flaky-0"},
                       extra={"ECHO_FAIL_RATE": "0.5"}),
    }
    yield servers
    for s in servers.values():
        s.close()


def route(*rules: Obj) -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": NS, "creationTimestamp": "2026-01-01"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": list(rules)}}


def to(*refs: tuple[str, int], **more: Any) -> Obj:
    return {"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in refs], **more}


class Front:
    """A proxy with one listener, and a client session to it."""

    def __init__(self, proxy: Proxy, port: int, session: aiohttp.ClientSession) -> None:
        self.proxy, self.port, self.session = proxy, port, session

    def configure(self, *rules: Obj, use_hostnames: bool = False) -> None:
        table, errors = compile_routes([route(*rules)], use_hostnames=use_hostnames)
        assert errors == {}
        self.proxy.listeners[self.port] = Listener(table, self.port)

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(f"http://{LOOPBACK}:{self.port}{path}",
                                    allow_redirects=False, **kw) as resp:
            return resp.status, await resp.text(), resp


@pytest.fixture
async def front(backends: dict[str, Echo]) -> AsyncIterator[Front]:
    balancers = {}
    for name, echo in backends.items():
        b = Balancer(rng=random.Random(1))
        b.update([f"{LOOPBACK}:{echo.port}"])
        balancers[BackendKey(NS, name, 80)] = b
    dead = Balancer(rng=random.Random(1))
    dead.update([])
    balancers[BackendKey(NS, "empty", 80)] = dead
    proxy = Proxy(listeners={}, backends=balancers, rng=random.Random(5))
    server = await serve(proxy, LOOPBACK, 0)
    port = int(server.sockets[0].getsockname()[1])
    async with aiohttp.ClientSession() as session:
        yield Front(proxy, port, session)
    server.close()
    await server.wait_closed()
    proxy.close()


def pod_of(text: str) -> str:
    return text.split()[0].removeprefix("pod=")


async def test_a_weighted_split_sends_each_backend_its_share(front: Front) -> None:
    front.configure(to(("v1", 80), ("v2", 20)))
    got = Counter([pod_of((await front.get("/"))[1]) for _ in range(500)])
    assert set(got) == {"v1-0", "v2-0"}
    assert 350 <= got["v1-0"] <= 450  # 80 % of 500, with the proxy's seeded choice


async def test_a_header_match_sends_only_the_canary_to_v2(front: Front) -> None:
    front.configure(to(("v2", 1), matches=[{"headers": [{"name": "x-canary", "value": "1"}]}]),
                    to(("v1", 1)))
    for _ in range(20):
        assert pod_of((await front.get("/", headers={"X-Canary": "1"}))[1]) == "v2-0"
        assert pod_of((await front.get("/"))[1]) == "v1-0"


async def test_retries_hide_a_backend_that_fails_half_its_answers(front: Front) -> None:
    front.configure(to(("flaky", 1)))
    bare = Counter([(await front.get("/"))[0] for _ in range(200)])
    assert 40 <= bare[503] <= 160  # about half fail without retries
    front.configure(to(("flaky", 1), retry={"attempts": 9, "codes": [503], "backoff": "1ms"}))
    kept = Counter([(await front.get("/"))[0] for _ in range(200)])
    assert kept[200] >= 190  # all ten tries fail for 1 request in 1,024


async def test_a_request_timeout_cuts_a_slow_backend_with_504(front: Front) -> None:
    front.configure(to(("v1", 1), timeouts={"request": "200ms"}))
    status, text, _ = await front.get("/delay?ms=5000")
    assert status == 504 and "timeout" in text
    assert (await front.get("/"))[0] == 200


async def test_filters_modify_headers_and_redirect(front: Front) -> None:
    front.configure(
        to(("v1", 1), matches=[{"path": {"type": "PathPrefix", "value": "/old"}}],
           filters=[{"type": "RequestRedirect", "requestRedirect": {
               "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
               "statusCode": 301}}]),
        to(("v1", 1), matches=[{"path": {"type": "PathPrefix", "value": "/api"}}],
           filters=[{"type": "URLRewrite", "urlRewrite": {
               "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]),
        to(("v1", 1), filters=[
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "add": [{"name": "X-Added", "value": "yes"}], "remove": ["x-secret"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": [{"name": "X-Served-By", "value": "mesh"}]}}]))
    status, _, resp = await front.get("/old/page?x=1", headers={"Host": "shop.example"})
    assert (status, resp.headers["Location"]) == (301, f"http://shop.example:{front.port}"
                                                       f"/new/page?x=1")
    status, text, resp = await front.get("/headers", headers={"X-Secret": "s"})
    seen = {k.lower(): v for k, v in json.loads(text)["headers"].items()}
    assert status == 200 and seen["x-added"] == "yes" and "x-secret" not in seen
    assert resp.headers["X-Served-By"] == "mesh"
    status, text, _ = await front.get("/api/headers")  # rewritten to /headers
    assert status == 200 and text.startswith('{"headers"')


async def test_what_answers_when_nothing_can_serve(front: Front) -> None:
    front.configure(to(("v1", 1), matches=[{"path": {"type": "Exact", "value": "/only"}}]),
                    to(("nowhere", 1), matches=[{"path": {"type": "Exact", "value": "/gone"}}]),
                    to(("empty", 1), matches=[{"path": {"type": "Exact", "value": "/empty"}}]),
                    to(("v1", 0), matches=[{"path": {"type": "Exact", "value": "/zero"}}]))
    assert (await front.get("/only"))[0] == 200
    assert (await front.get("/other"))[0] == 404  # no rule matches
    assert (await front.get("/gone"))[0] == 500  # a backend that is no Service
    assert (await front.get("/empty"))[0] == 503  # a Service with no ready endpoint
    assert (await front.get("/zero"))[0] == 500  # every weight is 0
    # and the access log says why the proxy answered itself
    assert [(e.path, e.code, e.detail) for e in front.proxy.access.entries()] == [
        ("/only", 200, ""), ("/other", 404, "route_not_found"),
        ("/gone", 500, "backend_not_found"), ("/empty", 503, "no_healthy_upstream"),
        ("/zero", 500, "no_backend")]


async def test_a_refused_endpoint_is_retried_on_another(front: Front, backends: dict[str, Echo]
                                                         ) -> None:
    balancer = front.proxy.backends[BackendKey(NS, "v1", 80)]
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind((LOOPBACK, 0))
        closed = f"{LOOPBACK}:{unused.getsockname()[1]}"
    balancer.update([closed, f"{LOOPBACK}:{backends['v1'].port}"])
    front.configure(to(("v1", 1), retry={"attempts": 3, "backoff": "1ms"}))
    assert Counter([(await front.get("/"))[0] for _ in range(20)]) == {200: 20}


async def test_head_and_post_go_through(front: Front) -> None:
    front.configure(to(("v1", 1)))
    async with front.session.head(f"http://{LOOPBACK}:{front.port}/") as resp:
        assert resp.status == 200 and int(resp.headers["Content-Length"]) > 0
    async with front.session.post(f"http://{LOOPBACK}:{front.port}/", data=b"x" * 100_000
                                  ) as resp:
        assert resp.status == 200 and pod_of(await resp.text()) == "v1-0"


def test_the_proxy_runs_on_uvloop_as_the_agent_runs_it(backends: dict[str, Echo]) -> None:
    async def main() -> str:
        balancer = Balancer()
        balancer.update([f"{LOOPBACK}:{backends['v1'].port}"])
        proxy = Proxy(listeners={}, backends={BackendKey(NS, "v1", 80): balancer})
        server = await serve(proxy, LOOPBACK, 0)
        port = int(server.sockets[0].getsockname()[1])
        table, _ = compile_routes([route(to(("v1", 1)))], use_hostnames=False)
        proxy.listeners[port] = Listener(table, port)
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        server.close()
        proxy.close()
        return answer.decode()

    answer = uvloop.run(main())
    assert answer.startswith("HTTP/1.1 200 OK\r\n") and "pod=v1-0" in answer


async def test_connections_are_kept_alive_on_both_sides(front: Front,
                                                        backends: dict[str, Echo]) -> None:
    front.configure(to(("v1", 1)))
    reader, writer = await asyncio.open_connection(LOOPBACK, front.port)
    for _ in range(3):  # three requests, one client connection
        writer.write(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" not in head
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert (await reader.readexactly(length)).startswith(b"pod=v1-0")
    writer.close()
    # and one connection to the backend, reused for all of them
    assert len(front.proxy.upstreams.idle(f"{LOOPBACK}:{backends['v1'].port}")) == 1


async def test_metrics_and_the_access_log_tell_each_request(front: Front,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    front.configure(to(("flaky", 1), retry={"attempts": 9, "codes": [503], "backoff": "1ms"}),
                    to(("v1", 1), matches=[{"path": {"type": "Exact", "value": "/slow"}}],
                       timeouts={"request": "100ms"}))
    front.proxy.listeners[front.port].service = "web.shop.svc.cluster.local"
    with caplog.at_level("INFO", logger="netplane.mesh.access"):
        for _ in range(50):
            await front.get("/")
        assert (await front.get("/slow?delay=5"))[0] == 504
    text = front.proxy.metrics.render().decode()
    ok = [line for line in text.splitlines()
          if line.startswith("netplane_mesh_requests_total{") and 'response_code="200"' in line]
    assert len(ok) == 1 and 'destination_service="web.shop.svc.cluster.local"' in ok[0]
    assert 'route="shop/web rule 0"' in ok[0] and float(ok[0].split()[-1]) >= 45
    retries = [line for line in text.splitlines()
               if line.startswith("netplane_mesh_retries_total{")]
    assert retries and float(retries[0].split()[-1]) > 0  # half the first tries fail
    assert any(line.startswith("netplane_mesh_timeouts_total{") and line.endswith(" 1.0")
               for line in text.splitlines())
    assert "netplane_mesh_request_duration_seconds_bucket{" in text
    lines = [r.getMessage() for r in caplog.records if r.name == "netplane.mesh.access"]
    assert len(lines) == 51 and [str(e) for e in front.proxy.access.entries()] == lines
    assert '"GET /slow" 504 upstream_response_timeout ' in lines[-1]
    assert " shop/web#1 shop/v1:80 " in lines[-1]


async def test_an_authorization_policy_denies_one_identity_and_allows_another(
        backends: dict[str, Echo]) -> None:
    svc = {"metadata": {"name": "api", "namespace": NS},
           "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 80}]}}
    sl = {"metadata": {"name": "api-1", "namespace": NS,
                       "labels": {"kubernetes.io/service-name": "api"}},
          "ports": [{"name": "http", "port": backends["v1"].port}],
          "endpoints": [{"addresses": [LOOPBACK], "conditions": {"ready": True}}]}

    def pod(sa: str) -> Obj:  # the client and the backend both on loopback here
        return {"metadata": {"name": "p", "namespace": NS, "labels": {"app": "api"}},
                "spec": {"serviceAccountName": sa}, "status": {"podIPs": [{"ip": LOOPBACK}]}}

    only_admin = {"metadata": {"name": "admins", "namespace": NS},
                  "spec": {"selector": {"matchLabels": {"app": "api"}}, "action": "ALLOW",
                           "rules": [{"from": [{"source": {
                               "principals": [f"cluster.local/ns/{NS}/sa/admin"]}}]}]}}
    proxy = Proxy()
    server = await serve(proxy, LOOPBACK, 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        async with aiohttp.ClientSession() as session:
            for sa, code in (("web", 403), ("admin", 200)):
                proxy.apply(build([], [svc], [sl], pods=[pod(sa)], policies=[only_admin]))
                proxy.listeners[port] = Listener(RouteTable(
                    [Route.to_service(NS, "api", 80)], use_hostnames=False), port)
                async with session.get(f"http://{LOOPBACK}:{port}/") as resp:
                    text = await resp.text()
                    assert resp.status == code, text
                    if code == 403:
                        assert text.startswith("RBAC: access denied")
    finally:
        server.close()
        proxy.close()
    # The log names the client by its workload identity, and why it was refused.
    denied, allowed = proxy.access.entries(namespace=NS)
    assert (denied.source, denied.code, denied.detail) == (
        f"spiffe://cluster.local/ns/{NS}/sa/web", 403, "rbac_access_denied")
    assert (allowed.source, allowed.code, allowed.route) == (
        f"spiffe://cluster.local/ns/{NS}/sa/admin", 200, "")  # the Service's own route
    assert allowed.destination == f"spiffe://cluster.local/ns/{NS}/sa/admin"
    assert proxy.access.entries(namespace="elsewhere") == []


async def test_expect_100_continue_is_answered_by_the_proxy(front: Front) -> None:
    front.configure(to(("v1", 1)))
    reader, writer = await asyncio.open_connection(LOOPBACK, front.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    writer.close()


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # the W3C specification's example
CALLER = "00f067aa0ba902b7"


def received(text: str) -> dict[str, str]:
    """The headers the echo backend got, names lower-case."""
    return {k.lower(): v for k, v in json.loads(text)["headers"].items()}


async def test_a_request_through_a_route_is_logged_with_its_route_backend_and_tries(
        front: Front, backends: dict[str, Echo]) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind((LOOPBACK, 0))
        closed = f"{LOOPBACK}:{unused.getsockname()[1]}"
    good = f"{LOOPBACK}:{backends['v1'].port}"
    front.proxy.backends[BackendKey(NS, "v1", 80)].update([closed, good])
    front.configure(to(("v2", 1), matches=[{"path": {"type": "Exact", "value": "/v2"}}]),
                    to(("v1", 1), retry={"attempts": 9, "backoff": "1ms"}))
    front.proxy.listeners[front.port].service = "web.shop.svc.cluster.local"
    for _ in range(50):  # the balancer tries the closed port first about every other time
        assert (await front.get("/"))[0] == 200
        entry = front.proxy.access.entries()[-1]
        if entry.retries:
            break
    assert entry.retries > 0
    assert (entry.method, entry.path, entry.code, entry.detail) == ("GET", "/", 200, "")
    assert (entry.route, entry.rule, entry.backend, entry.endpoint) == (
        "shop/web", 1, "shop/v1:80", good)
    assert entry.source == LOOPBACK  # no workload identity known here: the client's IP
    assert entry.authority == f"{LOOPBACK}:{front.port}"
    assert f" shop/web#1 shop/v1:80 {good} {entry.trace_id}" in str(entry)
    assert entry.to_dict()["route"] == "shop/web" and entry.to_dict()["retries"] == entry.retries
    # Each try is a child span of the proxy's hop; the last got the answer.
    hop, *tries = front.proxy.tracer.trace(entry.trace_id)
    assert hop.parent_id == "" and hop.name == "shop/web rule 1"
    assert hop.attributes["route"] == "shop/web#1" and hop.attributes["status"] == 200
    assert hop.attributes["retries"] == entry.retries
    assert len(tries) == entry.retries + 1 and {t.parent_id for t in tries} == {hop.span_id}
    assert [t.attributes["endpoint"] for t in tries] == [closed] * entry.retries + [good]
    assert [t.attributes.get("error") for t in tries[:-1]] == ["connect"] * entry.retries
    assert tries[-1].attributes["status"] == 200
    assert all(hop.start <= t.start for t in tries)
    # Read back by Service: as the client sent it, or as the route chose it.
    assert entry in front.proxy.access.entries(service="web.shop")
    assert entry in front.proxy.access.entries(service="shop/v1")
    assert front.proxy.access.entries(service="shop/v2") == []


async def test_the_backend_gets_the_callers_trace_with_the_proxy_as_parent(front: Front
                                                                        ) -> None:
    front.configure(to(("v1", 1)))
    status, text, _ = await front.get("/headers", headers={
        "traceparent": f"00-{TRACE}-{CALLER}-01", "tracestate": "congo=t61rcWkgMzE"})
    seen = received(text)
    assert status == 200 and seen["tracestate"] == "congo=t61rcWkgMzE"  # untouched
    version, trace_id, parent_id, flags = seen["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01") and parent_id != CALLER
    hop, one_try = front.proxy.tracer.trace(TRACE)
    assert (hop.parent_id, hop.span_id) == (CALLER, parent_id)  # the proxy's own span
    assert one_try.parent_id == hop.span_id and one_try.trace_id == TRACE
    assert front.proxy.access.entries()[-1].trace_id == TRACE


async def test_a_request_without_a_valid_traceparent_starts_a_trace(front: Front) -> None:
    front.configure(to(("v1", 1)))
    _, text, _ = await front.get("/headers")
    started = tracing.parse(received(text)["traceparent"])
    assert started is not None and started.sampled
    entry = front.proxy.access.entries()[-1]
    assert entry.trace_id == started.trace_id
    hop = front.proxy.tracer.trace(started.trace_id)[0]
    assert (hop.parent_id, hop.span_id) == ("", started.parent_id)
    # An invalid one (upper-case hex) is replaced, and its tracestate dropped.
    _, text, _ = await front.get("/headers", headers={
        "traceparent": f"00-{TRACE.upper()}-{CALLER}-01", "tracestate": "congo=t61rcWkgMzE"})
    seen = received(text)
    restarted = tracing.parse(seen["traceparent"])
    assert restarted is not None and restarted.trace_id not in (TRACE, started.trace_id)
    assert "tracestate" not in seen


async def test_a_backend_at_its_limit_of_requests_in_flight_is_refused_at_once(
        front: Front) -> None:
    """Circuit breaking: with v1 limited to one request in flight, a second
    request while the first waits is answered 503 by the proxy itself."""
    front.configure(to(("v1", 1)))
    balancer = front.proxy.backends[BackendKey(NS, "v1", 80)]
    balancer.max_requests = 1
    try:
        slow = asyncio.create_task(front.get("/delay?ms=2000"))
        while sum(e.in_flight for e in balancer.endpoints.values()) < 1:
            await asyncio.sleep(0.01)
        status, text, _ = await front.get("/")
        assert status == 503 and "limit" in text
        assert (await slow)[0] == 200
        assert (await front.get("/"))[0] == 200  # the circuit closes again
        entry = front.proxy.access.entries()[-3]
        assert entry.code == 503 and entry.detail == "upstream_overflow"
        assert 'netplane_mesh_overflows_total{backend="shop/v1:80"} 1.0' in \
            front.proxy.metrics.render().decode()
    finally:
        balancer.max_requests = None


def test_a_services_annotation_sets_its_backends_limit() -> None:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "v1", "namespace": NS,
                        "annotations": {"netplane.io/max-requests": "50"}},
           "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 80}]}}
    mesh = build([], [svc], [])
    assert mesh.max_requests == {BackendKey(NS, "v1", 80): 50}
    proxy = Proxy()
    proxy.apply(mesh)
    assert proxy.backends[BackendKey(NS, "v1", 80)].max_requests == 50


async def test_an_endpoint_that_refuses_connections_is_ejected_and_counted(
        front: Front, backends: dict[str, Echo]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind((LOOPBACK, 0))
        dead = f"{LOOPBACK}:{s.getsockname()[1]}"
    pair = Balancer(rng=random.Random(3))
    pair.update([dead, f"{LOOPBACK}:{backends['v1'].port}"])
    front.proxy.backends[BackendKey(NS, "pair", 80)] = pair
    front.configure(to(("pair", 1), retry={"attempts": 3, "backoff": "1ms"}))
    codes = Counter([(await front.get("/"))[0] for _ in range(40)])
    assert codes == {200: 40}  # the retries hide the dead one while it is tried
    assert pair.endpoints[dead].ejections == 1
    assert 'netplane_mesh_ejections_total{backend="shop/pair:80"} 1.0' in \
        front.proxy.metrics.render().decode()


BACKEND_ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/close": b"HTTP/1.1 200 OK\r\n\r\nuntil the close",  # then it closes
    b"/cut": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # then it closes
    b"/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
}


@pytest.mark.parametrize("factory", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_a_backends_answer_ends_by_its_length_by_the_close_or_too_soon(factory: Any) -> None:
    """How an answer from a pod of this node ends decides whether its
    connection is kept: its length keeps it, a close ends it, a close
    before the length is an error."""
    accepted: list[int] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                method, path, _ = head.split(b" ", 2)
                answer = BACKEND_ANSWERS[path]
                # A HEAD's answer has the length of the GET's, and no body.
                writer.write(answer.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
                             if method == b"HEAD" else answer)
                if path in (b"/close", b"/cut"):
                    break
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(backend, LOOPBACK, 0)
        address = f"{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
        upstreams = Upstreams()

        async def get(path: str, *, head_only: bool = False) -> tuple[int, bytes]:
            method = "HEAD" if head_only else "GET"
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            answer = await upstreams.send(address, head, b"", head_only=head_only)
            return answer.status, answer.body

        try:
            assert await get("/length") == (200, b"ok")
            assert await get("/length") == (200, b"ok")
            assert len(accepted) == 1 and len(upstreams.idle(address)) == 1  # kept alive
            assert await get("/empty") == (204, b"")
            assert await get("/close") == (200, b"until the close")
            assert not upstreams.idle(address)
            with pytest.raises(ConnectionResetError):
                await get("/cut")
            assert await get("/length", head_only=True) == (200, b"")
            assert len(accepted) == 3
        finally:
            upstreams.close()
            server.close()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
