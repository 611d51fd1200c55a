"""events.k8s.io/v1 and v1 Events are one stored object under two spellings."""

from __future__ import annotations

from netplane.api import eventsv1

CORE = {"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Started", "message": "Started container c", "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"}, "count": 2,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
        "reportingComponent": "kubelet", "reportingInstance": "node-1"}


def test_core_events_read_with_the_new_names() -> None:
    new = eventsv1.from_core(CORE)
    assert new["apiVersion"] == "events.k8s.io/v1"
    assert new["regarding"] == CORE["involvedObject"]
    assert new["note"] == "Started container c"
    assert new["deprecatedSource"] == {"component": "kubelet", "host": "node-1"}
    assert new["deprecatedCount"] == 2
    assert new["deprecatedLastTimestamp"] == "2026-01-01T00:01:00Z"
    assert new["reportingController"] == "kubelet"
    assert new["eventTime"] == "2026-01-01T00:00:00.000000Z"
    assert "involvedObject" not in new and "message" not in new


def test_the_round_trip_keeps_every_field() -> None:
    back = eventsv1.to_core(eventsv1.from_core(CORE))
    assert {k: v for k, v in back.items() if k != "eventTime"} == CORE


def test_an_event_regarding_nothing_is_stored_with_an_empty_reference() -> None:
    new = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
           "metadata": {"name": "e", "namespace": "default"}, "reason": "Tested",
           "eventTime": "2026-12-03T10:00:00.000000Z", "type": "Normal"}
    core = eventsv1.to_core(new)
    assert core["involvedObject"] == {}
    assert "regarding" not in eventsv1.from_core(core)
