"""Label and field selectors: the string form of ``-l`` / ``?labelSelector=``,
LabelSelector objects, and the fields that ``?fieldSelector=`` supports."""

from __future__ import annotations

import pytest

from netplane.api import selectors
from netplane.api.meta import Obj

WEB = {"app": "web", "tier": "front", "env": "prod"}
DB = {"app": "db", "tier": "back"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(("text", "web", "db", "bare"), [
    ("", True, True, True),
    ("app=web", True, False, False),
    ("app==web", True, False, False),
    ("app!=web", False, True, True),
    ("app in (web, db)", True, True, False),
    ("app notin (web)", False, True, True),
    ("env", True, False, False),
    ("!env", False, True, True),
    ("app=web,tier=front", True, False, False),
    ("app in (web,db),!env", False, True, False),
    ("tier in (front,back), app != db", True, False, False),
    ("app.kubernetes.io/name", False, False, False),
    ("env=", False, False, False),
])
def test_string_selectors_match(text: str, web: bool, db: bool, bare: bool) -> None:
    sel = selectors.parse(text)
    assert (sel.matches(WEB), sel.matches(DB), sel.matches(BARE)) == (web, db, bare)


def test_empty_label_value_matches_an_empty_label() -> None:
    assert selectors.parse("env=").matches({"env": ""})


@pytest.mark.parametrize("text", [
    "a=b=c", "app in web", "app in ()", "=web", "app=(web)", "app=has space", "-app=web",
    "app in (web", "app ~ web",
])
def test_bad_string_selectors_are_errors(text: str) -> None:
    with pytest.raises(selectors.SelectorError) as info:
        selectors.parse(text)
    assert text.strip() in str(info.value) or "empty" in str(info.value)


def test_to_string_round_trips() -> None:
    text = "app=web,env!=dev,tier in (back,front),ready,!legacy"
    sel = selectors.parse(text)
    assert selectors.to_string(sel) == text
    assert selectors.parse(selectors.to_string(sel)) == sel


def test_from_map_is_equality_on_every_key() -> None:
    sel = selectors.from_map({"app": "web", "tier": "front"})
    assert sel.matches(WEB) and not sel.matches({"app": "web"})
    assert selectors.from_map(None).empty and selectors.from_map(None).matches(DB)


def test_label_selector_object() -> None:
    sel = selectors.from_label_selector({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]},
                             {"key": "legacy", "operator": "DoesNotExist"},
                             {"key": "tier", "operator": "Exists"},
                             {"key": "zone", "operator": "NotIn", "values": ["b"]}]})
    assert sel.matches(WEB)
    assert not sel.matches({**WEB, "legacy": "1"})
    assert not sel.matches({**WEB, "env": "dev"})
    assert not sel.matches({**WEB, "zone": "b"})
    assert selectors.from_label_selector(None) == selectors.EVERYTHING
    assert selectors.from_label_selector({}).matches(BARE)


@pytest.mark.parametrize("expr", [
    {"key": "app", "operator": "Equals", "values": ["web"]},
    {"key": "app", "operator": "In", "values": []},
    {"key": "app", "operator": "NotIn"},
    {"key": "app", "operator": "Exists", "values": ["web"]},
    {"key": "", "operator": "Exists"},
    {"key": "app", "operator": "In", "values": "web"},
    "app=web",
])
def test_bad_match_expressions_are_errors(expr: object) -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.from_label_selector({"matchExpressions": [expr]})


def pod(name: str, node: str | None, phase: str = "Running") -> Obj:
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec,
            "status": {"phase": phase}}


def test_field_selectors() -> None:
    on1, on2, unbound = pod("a", "node-1"), pod("b", "node-2"), pod("c", None, "Pending")
    by_node = selectors.parse_fields("spec.nodeName=node-1")
    assert [by_node.matches(p) for p in (on1, on2, unbound)] == [True, False, False]
    unscheduled = selectors.parse_fields("spec.nodeName=")
    assert [unscheduled.matches(p) for p in (on1, on2, unbound)] == [False, False, True]
    both = selectors.parse_fields("spec.nodeName!=node-2,status.phase==Running")
    assert [both.matches(p) for p in (on1, on2, unbound)] == [True, False, False]
    by_name = selectors.parse_fields("metadata.name=c,metadata.namespace=default")
    assert [by_name.matches(p) for p in (on1, on2, unbound)] == [False, False, True]
    assert selectors.parse_fields("").matches(on1)


@pytest.mark.parametrize("text", ["spec.hostNetwork=true", "nodeName", "spec.nodeName~x"])
def test_bad_field_selectors_are_errors(text: str) -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.parse_fields(text)


def test_unsupported_field_error_lists_the_supported_ones() -> None:
    with pytest.raises(selectors.SelectorError, match=r"spec\.nodeName"):
        selectors.parse_fields("spec.schedulerName=default")
