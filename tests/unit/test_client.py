"""The API client and the informer against a real server: over its Unix
socket, and over TLS with a bearer token on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster import client as api_client
from netplane.cluster import events as cluster_events
from netplane.cluster.apiserver import pki
from netplane.cluster.client import Client, Connection, Informer
from netplane.cluster.controllers.manager import Controller
from netplane.cluster.controllers.shared import Informers
from netplane.cluster.server import ServerConfig, open_registry, serve
from netplane.cluster.store.base import Event
from netplane.cluster.store.sqlite import SQLiteStore

POD = resources.POD


def pod(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


class Server:
    """``netplane server`` without controllers, started and stopped at will."""

    def __init__(self, tmp_path: Path) -> None:
        self.cfg = ServerConfig(data_dir=tmp_path / "data", socket=tmp_path / "api.sock",
                                bind_address="127.0.0.1", port=0, controllers=False)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(serve(self.cfg, self._stop))
        async with asyncio.timeout(10):
            while True:
                if self._task.done():
                    self._task.result()  # raises what went wrong
                if self.cfg.socket.exists():
                    with contextlib.suppress(OSError):
                        _, w = await asyncio.open_unix_connection(str(self.cfg.socket))
                        w.close()
                        return
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            async with asyncio.timeout(10):
                await self._task
            self._task = None


@contextlib.asynccontextmanager
async def one_controller(tmp_path: Path, make: Callable[[Client, Informers], Controller],
                         ) -> AsyncIterator[tuple[Client, Informers]]:
    """A server without its own controllers, every shared informer synced,
    and the one controller ``make`` builds running over them."""
    server = Server(tmp_path)
    await server.start()
    try:
        async with Client(Connection(socket=str(server.cfg.socket))) as client:
            informers = Informers.for_client(client)
            controller = make(client, informers)
            tasks = [asyncio.create_task(inf.run()) for inf in informers.all()]
            try:
                async with asyncio.timeout(60):  # only a guard against a hung test
                    for inf in informers.all():
                        await inf.synced.wait()
                tasks.append(asyncio.create_task(controller.run()))
                yield client, informers
            finally:
                # Everything that uses the client stops before it closes: a
                # request after close would open a session nobody closes.
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                recorder = getattr(controller, "events", None)
                if isinstance(recorder, cluster_events.Recorder):
                    await recorder.flush()
    finally:
        await server.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = Server(tmp_path)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def cli(server: Server) -> AsyncIterator[Client]:
    async with Client(Connection(socket=str(server.cfg.socket))) as c:
        yield c


async def test_crud_over_the_unix_socket(cli: Client) -> None:
    created = await cli.create(POD, pod("a"))
    assert created["metadata"]["uid"] and created["status"]["phase"] == "Pending"
    assert await cli.get(POD, "a", "default") == created
    await cli.create(POD, pod("b", app="db"))
    listing = await cli.list(POD, "default", label_selector="app=web")
    assert [i["metadata"]["name"] for i in listing["items"]] == ["a"]
    created["metadata"]["labels"]["tier"] = "front"
    updated = await cli.update(POD, created)
    assert updated["metadata"]["labels"] == {"app": "web", "tier": "front"}
    patched = await cli.patch(POD, "a", {"metadata": {"annotations": {"n": "1"}}}, "default")
    assert patched["metadata"]["annotations"] == {"n": "1"}
    patched["status"] = {"phase": "Running"}
    assert (await cli.update_status(POD, patched))["status"]["phase"] == "Running"
    assert (await cli.bind(patched, "node-1"))["status"] == "Success"
    assert (await cli.get(POD, "a", "default"))["spec"]["nodeName"] == "node-1"
    on_node = await cli.list(POD, field_selector="spec.nodeName=node-1")
    assert [i["metadata"]["name"] for i in on_node["items"]] == ["a"]
    marked = await cli.delete(POD, "a", "default")
    assert marked["metadata"]["deletionTimestamp"]  # bound: graceful
    await cli.delete(POD, "a", "default", grace_period=0)
    with pytest.raises(api_client.NotFound):
        await cli.get(POD, "a", "default")


async def test_errors_are_typed(cli: Client) -> None:
    with pytest.raises(api_client.NotFound) as nf:
        await cli.get(POD, "nope", "default")
    assert nf.value.code == 404 and nf.value.message == 'pods "nope" not found'
    first = await cli.create(POD, pod("a"))
    with pytest.raises(api_client.AlreadyExists):
        await cli.create(POD, pod("a"))
    await cli.patch(POD, "a", {"metadata": {"labels": {"v": "2"}}}, "default")
    with pytest.raises(api_client.Conflict) as conflict:
        await cli.update(POD, first)
    assert not isinstance(conflict.value, api_client.AlreadyExists)
    with pytest.raises(api_client.ApiError) as invalid:
        await cli.create(POD, pod("Bad_Name"))
    assert invalid.value.code == 422
    assert [c["field"] for c in invalid.value.causes] == ["metadata.name"]
    elsewhere = pod("x")
    elsewhere["metadata"]["namespace"] = "no-such-namespace"
    with pytest.raises(api_client.NotFound) as missing:
        await cli.create(POD, elsewhere)
    assert missing.value.message == 'namespaces "no-such-namespace" not found'


async def test_dry_run_create(cli: Client) -> None:
    out = await cli.create(POD, pod("a"), dry_run=True)
    assert out["metadata"]["name"] == "a"
    with pytest.raises(api_client.NotFound):
        await cli.get(POD, "a", "default")


async def test_watch_through_the_client(cli: Client) -> None:
    rv = (await cli.list(POD, "default"))["metadata"]["resourceVersion"]
    await cli.create(POD, pod("a"))
    await cli.delete(POD, "a", "default")
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(5):
        async for kind, obj in cli.watch(POD, "default", resource_version=rv):
            seen.append((kind, obj["metadata"]["name"]))
            if len(seen) == 2:
                break
    assert seen == [("ADDED", "a"), ("DELETED", "a")]


async def test_tls_with_bearer_token(server: Server) -> None:
    creds = pki.ensure(server.cfg.data_dir, addresses=["127.0.0.1"])
    url = f"https://127.0.0.1:{server.cfg.port}"
    async with Client(Connection(url=url, token=creds.admin_token,
                                 ca_file=str(creds.ca_cert))) as c:
        svc = await c.get(resources.SERVICE, "kubernetes", "default")
        assert svc["spec"]["clusterIP"] == "10.96.0.1"
    async with Client(Connection(url=url, token="wrong", ca_file=str(creds.ca_cert))) as c:
        with pytest.raises(api_client.ApiError) as info:
            await c.get(resources.SERVICE, "kubernetes", "default")
        assert info.value.code == 401


def test_load_connection_from_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
        "clusters:\n- name: lab\n  cluster: {server: 'https://127.0.0.1:6443',"
        " certificate-authority: /ca.crt}\n"
        "users:\n- name: admin\n  user: {token: abc}\n"
        "contexts:\n- name: other\n  context: {cluster: x, user: y}\n"
        "- name: lab\n  context: {cluster: lab, user: admin}\n")
    conn = api_client.load_connection(path)
    assert conn == Connection(url="https://127.0.0.1:6443", token="abc", ca_file="/ca.crt")
    assert api_client.load_connection(socket="/s.sock") == Connection(socket="/s.sock")


# -- informer --

Change = tuple[str | None, str | None]


class Recorder:
    """An informer handler that records (previous, current) names and labels."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Obj | None, Obj | None]] = asyncio.Queue()

    def __call__(self, prev: Obj | None, cur: Obj | None) -> None:
        self.queue.put_nowait((prev, cur))

    async def next(self) -> tuple[Obj | None, Obj | None]:
        async with asyncio.timeout(10):
            return await self.queue.get()

    async def take(self, n: int) -> list[Change]:
        out: list[Change] = []
        for _ in range(n):
            prev, cur = await self.next()
            out.append((prev["metadata"]["name"] if prev else None,
                        cur["metadata"]["name"] if cur else None))
        return sorted(out, key=str)

    def empty(self) -> bool:
        return self.queue.empty()


@pytest.fixture
async def informer(cli: Client) -> AsyncIterator[Callable[..., Awaitable[tuple[Informer,
                                                                                Recorder]]]]:
    tasks: list[asyncio.Task[None]] = []

    async def start(**kw: str) -> tuple[Informer, Recorder]:
        inf, rec = Informer(cli, POD, **kw), Recorder()
        inf.add_handler(rec)
        tasks.append(asyncio.create_task(inf.run()))
        async with asyncio.timeout(10):
            await inf.synced.wait()
        return inf, rec

    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_informer_lists_then_watches(
        cli: Client, informer: Callable[..., Awaitable[tuple[Informer, Recorder]]]) -> None:
    await cli.create(POD, pod("before"))
    inf, rec = await informer(namespace="default")
    assert await rec.take(1) == [(None, "before")]
    created = await cli.create(POD, pod("a"))
    prev, cur = await rec.next()
    assert prev is None and cur == created
    updated = await cli.patch(POD, "a", {"metadata": {"labels": {"v": "2"}}}, "default")
    prev, cur = await rec.next()
    assert prev == created and cur == updated
    await cli.delete(POD, "a", "default")
    prev, cur = await rec.next()
    assert prev is not None and prev["metadata"]["labels"]["v"] == "2" and cur is None
    assert sorted(o["metadata"]["name"] for o in inf.items()) == ["before"]
    assert inf.get("before", "default") is not None and inf.get("a", "default") is None


async def test_async_handlers_are_awaited(
        cli: Client, informer: Callable[..., Awaitable[tuple[Informer, Recorder]]]) -> None:
    inf, _ = await informer(namespace="default")
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def handler(prev: Obj | None, cur: Obj | None) -> None:
        await asyncio.sleep(0)
        await seen.put(cur["metadata"]["name"] if cur else "-")

    inf.add_handler(handler)
    await cli.create(POD, pod("a"))
    async with asyncio.timeout(5):
        assert await seen.get() == "a"


async def test_informer_with_a_label_selector(
        cli: Client, informer: Callable[..., Awaitable[tuple[Informer, Recorder]]]) -> None:
    inf, rec = await informer(label_selector="app=web")
    await cli.create(POD, pod("db", app="db"))
    await cli.create(POD, pod("web", app="web"))
    assert await rec.take(1) == [(None, "web")]
    await cli.patch(POD, "web", {"metadata": {"labels": {"app": "other"}}}, "default")
    assert await rec.take(1) == [("web", None)]
    assert inf.items() == []


async def test_informer_recovers_after_server_restart(
        server: Server, cli: Client,
        informer: Callable[..., Awaitable[tuple[Informer, Recorder]]]) -> None:
    await cli.create(POD, pod("stays"))
    await cli.create(POD, pod("goes"))
    inf, rec = await informer(namespace="default")
    assert await rec.take(2) == [(None, "goes"), (None, "stays")]
    await server.stop()
    # While the server is down the objects change behind the informer's back.
    registry = open_registry(server.cfg)
    try:
        registry.delete(POD, "default", "goes")
        registry.create(POD, "default", pod("new"))
    finally:
        registry.store.close()
    await server.start()
    # A relist reports exactly the differences, then the watch follows again.
    assert await rec.take(2) == [("goes", None), (None, "new")]
    await cli.create(POD, pod("after"))
    assert await rec.take(1) == [(None, "after")]
    assert sorted(o["metadata"]["name"] for o in inf.items()) == ["after", "new", "stays"]
    assert rec.empty()


async def test_indexes_follow_adds_changes_deletes_and_relists(
        server: Server, cli: Client,
        informer: Callable[..., Awaitable[tuple[Informer, Recorder]]]) -> None:
    await cli.create(POD, pod("a", app="web"))
    inf, rec = await informer()
    inf.add_index("app", lambda o: [o["metadata"].get("labels", {}).get("app", "")])
    await cli.create(POD, pod("b", app="db"))
    await cli.patch(POD, "a", {"metadata": {"labels": {"app": "db"}}}, "default")
    await rec.take(3)  # the listed a, the added b, the changed a

    def names(objs: list[Obj]) -> list[str]:
        return sorted(o["metadata"]["name"] for o in objs)

    assert names(inf.by_index("app", "db")) == ["a", "b"] and inf.by_index("app", "web") == []
    assert names(inf.in_namespace("default")) == ["a", "b"] and inf.in_namespace("other") == []
    await cli.delete(POD, "b", "default")
    await rec.take(1)
    assert names(inf.by_index("app", "db")) == ["a"]
    await server.stop()
    registry = open_registry(server.cfg)
    try:
        registry.create(POD, "default", pod("c", app="web"))
    finally:
        registry.store.close()
    await server.start()
    await rec.take(1)  # the relist after the restart
    assert names(inf.by_index("app", "web")) == ["c"]
    assert names(inf.in_namespace("default")) == ["a", "c"]


async def test_abandoned_watch_does_not_hold_the_server(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch whose client went away lets go of its store watcher at once,
    without waiting for an event, so nothing is left for stopping to wait on."""
    open_watches = 0
    original = SQLiteStore.watch

    async def counted(self: SQLiteStore, prefix: str, from_revision: int) \
            -> AsyncIterator[Event]:
        nonlocal open_watches
        open_watches += 1
        try:
            async for ev in original(self, prefix, from_revision):
                yield ev
        finally:
            open_watches -= 1

    monkeypatch.setattr(SQLiteStore, "watch", counted)
    async with Client(Connection(socket=str(server.cfg.socket))) as c:

        async def follow() -> None:
            async for _ in c.watch(POD, label_selector="app=never"):
                pass

        task = asyncio.create_task(follow())
        async with asyncio.timeout(30):  # a hang guard, not a speed bound
            while open_watches != 1:  # connected: the server holds a store watcher
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            while open_watches:  # no event will ever come: only the hang-up ends it
                await asyncio.sleep(0.01)
    await server.stop()


def test_tcp_connections_are_kept_alive_so_that_a_cut_off_one_fails() -> None:
    import socket

    sock = api_client.keepalive_socket((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("", 0)))
    with sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
