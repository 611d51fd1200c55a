"""The event recorder against a real server: what ``kubectl get events``
and ``kubectl describe`` will show, with repeats aggregated into a count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.cluster.client import Client, Connection
from netplane.cluster.events import Reason, Recorder, Source
from tests.unit.test_client import Server, pod


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Client]:
    srv = Server(tmp_path)
    await srv.start()
    try:
        async with Client(Connection(socket=str(srv.cfg.socket))) as c:
            yield c
    finally:
        await srv.stop()


async def events_of(cli: Client, obj: Obj) -> list[Obj]:
    found = await cli.list(resources.EVENT, "default", field_selector=(
        f"involvedObject.name={obj['metadata']['name']},involvedObject.kind=Pod,"
        f"involvedObject.uid={obj['metadata']['uid']}"))
    return list(found["items"])


async def test_an_event_names_its_object_reason_and_source(cli: Client) -> None:
    web = await cli.create(resources.POD, pod("web"))
    rec = Recorder(cli, Source("kubelet", host="node-1"))
    rec.normal(web, Reason.STARTED, "Started container c", field_path="spec.containers{c}")
    await rec.flush()
    [ev] = await events_of(cli, web)
    assert ev["reason"] == "Started" and ev["type"] == "Normal"
    assert ev["message"] == "Started container c"
    assert ev["source"] == {"component": "kubelet", "host": "node-1"}
    assert ev["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert ev["involvedObject"]["uid"] == web["metadata"]["uid"]
    assert ev["count"] == 1 and ev["firstTimestamp"] == ev["lastTimestamp"]


async def test_repeats_are_counted_on_one_event(cli: Client) -> None:
    web = await cli.create(resources.POD, pod("web"))
    rec = Recorder(cli, Source("kubelet", host="node-1"))
    for _ in range(3):
        rec.warning(web, Reason.BACK_OFF, "Back-off restarting failed container c")
    rec.warning(web, Reason.UNHEALTHY, "Readiness probe failed")
    await rec.flush()
    by_reason = {e["reason"]: e for e in await events_of(cli, web)}
    assert by_reason["BackOff"]["count"] == 3
    assert by_reason["BackOff"]["type"] == "Warning"
    assert by_reason["Unhealthy"]["count"] == 1


async def test_a_deleted_event_is_recorded_anew(cli: Client) -> None:
    web = await cli.create(resources.POD, pod("web"))
    rec = Recorder(cli, Source("default-scheduler"))
    rec.normal(web, Reason.SCHEDULED, "Successfully assigned default/web to node-1")
    await rec.flush()
    [ev] = await events_of(cli, web)
    await cli.delete(resources.EVENT, ev["metadata"]["name"], "default")
    rec.normal(web, Reason.SCHEDULED, "Successfully assigned default/web to node-1")
    await rec.flush()
    [again] = await events_of(cli, web)
    assert again["count"] == 1
    assert again["metadata"]["name"] != ev["metadata"]["name"]
