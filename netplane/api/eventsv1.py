"""``events.k8s.io/v1`` Events: the same objects as ``v1`` Events, stored
once, with the newer field names (kube-apiserver converts between them the
same way): involvedObject is ``regarding``, message ``note``, source
``deprecatedSource``, count and the two timestamps ``deprecated*``,
reportingComponent ``reportingController``."""

from __future__ import annotations

import copy

from netplane.api.meta import Obj

API_VERSION = "events.k8s.io/v1"
# (core v1 field, events.k8s.io/v1 field)
RENAMED = (("involvedObject", "regarding"), ("message", "note"),
           ("source", "deprecatedSource"), ("count", "deprecatedCount"),
           ("firstTimestamp", "deprecatedFirstTimestamp"),
           ("lastTimestamp", "deprecatedLastTimestamp"),
           ("reportingComponent", "reportingController"))
SAME = ("metadata", "reason", "type", "action", "related", "reportingInstance", "eventTime",
        "series")


def from_core(event: Obj) -> Obj:
    """A stored (core) Event as events.k8s.io/v1 shows it."""
    out: Obj = {"apiVersion": API_VERSION, "kind": "Event"}
    for key in SAME:
        if key in event:
            out[key] = copy.deepcopy(event[key])
    for core, new in RENAMED:
        if event.get(core) not in (None, "", {}):
            out[new] = copy.deepcopy(event[core])
    # events.k8s.io requires eventTime; old-style events only carry timestamps.
    if not out.get("eventTime"):
        out["eventTime"] = _micro(event.get("firstTimestamp") or
                                  event.get("metadata", {}).get("creationTimestamp"))
    return out


def to_core(event: Obj) -> Obj:
    """An events.k8s.io/v1 Event in the stored (core v1) shape."""
    out: Obj = {"apiVersion": "v1", "kind": "Event"}
    for key in SAME:
        if key in event:
            out[key] = copy.deepcopy(event[key])
    for core, new in RENAMED:
        if event.get(new) not in (None, "", {}):
            out[core] = copy.deepcopy(event[new])
    # regarding is optional there; a core Event always has an involvedObject
    # (kube's internal Event holds an empty reference).
    out.setdefault("involvedObject", {})
    return out


def _micro(stamp: object) -> str | None:
    """RFC 3339 with microseconds, as MicroTime is written."""
    if not isinstance(stamp, str) or not stamp:
        return None
    return stamp[:-1] + ".000000Z" if stamp.endswith("Z") and "." not in stamp else stamp
