"""Route status as a controller writes it: its own parent entries replaced,
other controllers' kept, lastTransitionTime kept while a condition holds."""

from __future__ import annotations

from netplane.api.meta import Obj
from netplane.mesh.config import CONTROLLER
from netplane.mesh.status import merged_parents, status_patch

REF = {"group": "", "kind": "Service", "name": "web"}


def parent(status: str, reason: str, *, controller: str = CONTROLLER, when: str | None = None
           ) -> Obj:
    cond: Obj = {"type": "Accepted", "status": status, "reason": reason, "message": "",
                 "observedGeneration": 1}
    if when:
        cond["lastTransitionTime"] = when
    return {"parentRef": REF, "controllerName": controller, "conditions": [cond]}


def test_our_entries_are_replaced_and_others_kept() -> None:
    other = parent("True", "Accepted", controller="example.com/gw", when="2026-01-01T00:00:00Z")
    got = merged_parents([other, parent("False", "NoMatchingParent", when="T1")],
                         [parent("True", "Accepted")], CONTROLLER, now=lambda: "T2")
    assert got[0] is other
    assert got[1]["conditions"][0]["status"] == "True"
    assert got[1]["conditions"][0]["lastTransitionTime"] == "T2"  # it changed: now


def test_a_condition_that_holds_keeps_its_time_and_no_write_is_needed() -> None:
    route = {"status": {"parents": [parent("True", "Accepted", when="T1")]}}
    assert status_patch(route, [parent("True", "Accepted")], CONTROLLER,
                        now=lambda: "T2") is None
    patch = status_patch(route, [parent("False", "NoMatchingParent")], CONTROLLER,
                         now=lambda: "T3")
    assert patch is not None
    assert patch["status"]["parents"][0]["conditions"][0]["lastTransitionTime"] == "T3"
