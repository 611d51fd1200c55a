"""Validation: every bad object is rejected with the field path a user must fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from netplane.api import resources, validation
from netplane.api.meta import Obj
from netplane.api.resources import Resource


def pod() -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx",
                                     "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}


def service() -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                "protocol": "TCP"}]}}


def deployment() -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}


def endpoints() -> Obj:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.244.1.5"}],
                         "ports": [{"port": 8080, "protocol": "TCP"}]}]}


def node() -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}]}}


MAKERS: dict[str, tuple[Callable[[], Obj], Resource]] = {
    "pod": (pod, resources.POD),
    "service": (service, resources.SERVICE),
    "deployment": (deployment, resources.DEPLOYMENT),
    "endpoints": (endpoints, resources.ENDPOINTS),
    "node": (node, resources.NODE),
}


def paths(errs: list[validation.FieldError]) -> list[str]:
    return [e.path for e in errs]


def set_path(obj: Obj, path: str, value: Any) -> Obj:
    """Set a dotted path with ``[i]`` indexes, e.g. ``spec.ports[0].port``."""
    out = copy.deepcopy(obj)
    cur: Any = out
    parts = path.replace("[", ".").replace("]", "").split(".")
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    last = parts[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return out


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_valid_objects_have_no_errors(kind: str) -> None:
    make, res = MAKERS[kind]
    assert validation.validate(make(), res) == []


# (object, field to set, bad value, field path expected in the errors)
BAD: list[tuple[str, str, Any, str]] = [
    ("pod", "metadata.name", "Web-1", "metadata.name"),
    ("pod", "metadata.name", "web_1", "metadata.name"),
    ("pod", "metadata.name", "a" * 254, "metadata.name"),
    ("pod", "metadata.name", "", "metadata.name"),
    ("pod", "metadata.name", "-web", "metadata.name"),
    ("service", "metadata.name", "a" * 64, "metadata.name"),
    ("service", "metadata.name", "web.svc", "metadata.name"),
    ("pod", "metadata.namespace", "Default", "metadata.namespace"),
    ("pod", "metadata.labels", {"bad key!": "x"}, "metadata.labels"),
    ("pod", "metadata.labels", {"-app": "x"}, "metadata.labels"),
    ("pod", "metadata.labels", {"a" * 64: "x"}, "metadata.labels"),
    ("pod", "metadata.labels", {"Bad_Prefix/app": "x"}, "metadata.labels"),
    ("pod", "metadata.labels", {"app": "has space"}, "metadata.labels"),
    ("pod", "metadata.labels", {"app": "v" * 64}, "metadata.labels"),
    ("pod", "metadata.labels", {"app": 5}, "metadata.labels"),
    ("pod", "metadata.labels", ["app"], "metadata.labels"),
    ("pod", "spec.containers", [], "spec.containers"),
    ("pod", "spec.containers[0].name", "Web", "spec.containers[0].name"),
    ("pod", "spec.containers[0].image", "", "spec.containers[0].image"),
    ("pod", "spec.containers[0].ports[0].containerPort", 0,
     "spec.containers[0].ports[0].containerPort"),
    ("pod", "spec.containers[0].ports[0].containerPort", 70000,
     "spec.containers[0].ports[0].containerPort"),
    ("pod", "spec.containers[0].ports[0].containerPort", "abc",
     "spec.containers[0].ports[0].containerPort"),
    ("pod", "spec.containers[0].ports[0].protocol", "HTTP",
     "spec.containers[0].ports[0].protocol"),
    ("pod", "spec.containers[0].ports", [80], "spec.containers[0].ports[0]"),
    ("pod", "spec.containers[0].command", "sleep 1", "spec.containers[0].command"),
    ("service", "spec.ports[0].port", 0, "spec.ports[0].port"),
    ("service", "spec.ports[0].port", 70000, "spec.ports[0].port"),
    ("service", "spec.ports[0].port", "abc", "spec.ports[0].port"),
    ("service", "spec.ports[0].port", True, "spec.ports[0].port"),
    ("service", "spec.ports[0].protocol", "ICMP", "spec.ports[0].protocol"),
    ("service", "spec.ports[0].targetPort", 0, "spec.ports[0].targetPort"),
    ("service", "spec.ports[0].targetPort", "Not_A_Name", "spec.ports[0].targetPort"),
    ("service", "spec.ports[0].nodePort", 99999, "spec.ports[0].nodePort"),
    ("service", "spec.ports", [], "spec.ports"),
    ("service", "spec.type", "Internal", "spec.type"),
    ("service", "spec.clusterIP", "10.96.0.300", "spec.clusterIP"),
    ("service", "spec.clusterIP", "not-an-ip", "spec.clusterIP"),
    ("service", "spec.clusterIP", 5, "spec.clusterIP"),
    ("service", "spec.selector", {"app": "bad value!"}, "spec.selector"),
    ("endpoints", "subsets[0].addresses[0].ip", "10.244.1", "subsets[0].addresses[0].ip"),
    ("endpoints", "subsets[0].ports[0].port", 0, "subsets[0].ports[0].port"),
    ("endpoints", "subsets[0]", "x", "subsets[0]"),
    ("node", "status.addresses[0].address", "nowhere", "status.addresses[0].address"),
    ("deployment", "spec.replicas", -1, "spec.replicas"),
    ("deployment", "spec.replicas", "2", "spec.replicas"),
    ("deployment", "spec.selector", None, "spec.selector"),
    ("deployment", "spec.selector", {"matchLabels": {"app": "db"}},
     "spec.template.metadata.labels"),
    ("deployment", "spec.template.metadata.labels", {"app": "bad value!"},
     "spec.template.metadata.labels"),
    ("deployment", "spec.selector",
     {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["web"]}]},
     "spec.selector.matchExpressions"),
    ("deployment", "spec.selector",
     {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
     "spec.selector.matchExpressions"),
    ("deployment", "spec.selector",
     {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]},
     "spec.selector.matchExpressions"),
    ("deployment", "spec.selector", {"matchExpressions": ["app"]},
     "spec.selector.matchExpressions"),
    ("deployment", "spec.selector", {"matchLabels": {"app": "bad value!"}},
     "spec.selector.matchLabels"),
    ("deployment", "spec.template.spec.containers[0].image", None,
     "spec.template.spec.containers[0].image"),
]


@pytest.mark.parametrize(("kind", "field", "value", "path"), BAD,
                         ids=[f"{k}:{f}={v!r}"[:60] for k, f, v, _ in BAD])
def test_bad_field_is_reported_at_its_path(kind: str, field: str, value: Any, path: str) -> None:
    make, res = MAKERS[kind]
    errs = validation.validate(set_path(make(), field, value), res)
    assert path in paths(errs), errs


def test_error_message_names_the_bad_value() -> None:
    errs = validation.validate(set_path(service(), "spec.ports[0].port", 70000),
                               resources.SERVICE)
    assert [str(e) for e in errs] == [
        "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"]


def test_every_error_is_reported_not_only_the_first() -> None:
    svc = set_path(service(), "metadata.name", "Bad_Name")
    svc["spec"]["ports"] = [{"name": "a", "port": 0}, {"port": 70000, "protocol": "XTP"}]
    got = paths(validation.validate(svc, resources.SERVICE))
    assert got == ["metadata.name", "spec.ports[0].port", "spec.ports[1].port",
                   "spec.ports[1].protocol", "spec.ports[1].name"]


def test_duplicate_names_are_reported() -> None:
    p = pod()
    p["spec"]["containers"].append({"name": "web", "image": "busybox"})
    errs = validation.validate(p, resources.POD)
    assert [(e.path, e.reason) for e in errs] == [
        ("spec.containers[1].name", "FieldValueDuplicate")]
    svc = service()
    svc["spec"]["ports"].append({"name": "http", "port": 81})
    errs = validation.validate(svc, resources.SERVICE)
    assert [(e.path, e.reason) for e in errs] == [("spec.ports[1].name", "FieldValueDuplicate")]


def test_headless_and_external_name_services_need_no_ports() -> None:
    headless = service()
    headless["spec"] = {"clusterIP": "None", "selector": {"app": "web"}}
    assert validation.validate(headless, resources.SERVICE) == []
    external = service()
    external["spec"] = {"type": "ExternalName", "externalName": "db.example.org"}
    assert validation.validate(external, resources.SERVICE) == []
    external["spec"]["externalName"] = "Not A Host"
    assert paths(validation.validate(external, resources.SERVICE)) == ["spec.externalName"]


def test_valid_label_forms_are_accepted() -> None:
    p = pod()
    p["metadata"]["labels"] = {"app.kubernetes.io/name": "web", "tier": "", "a_b.c-d": "X_y.z"}
    assert validation.validate(p, resources.POD) == []


def test_target_port_may_be_a_name_or_a_numeric_string() -> None:
    svc = set_path(service(), "spec.ports[0].targetPort", "http-alt")
    assert validation.validate(svc, resources.SERVICE) == []
    svc = set_path(service(), "spec.ports[0].targetPort", "8080")
    assert validation.validate(svc, resources.SERVICE) == []


def test_check_raises_invalid_with_every_error() -> None:
    bad = set_path(pod(), "metadata.name", "Web_1")
    with pytest.raises(validation.Invalid) as info:
        validation.check(bad, resources.POD)
    assert info.value.kind == "Pod" and info.value.name == "Web_1"
    assert paths(info.value.errors) == ["metadata.name"]
    assert 'Pod "Web_1" is invalid: metadata.name: Invalid value: "Web_1"' in str(info.value)


def test_missing_metadata_and_spec() -> None:
    errs = validation.validate({"kind": "Pod"}, resources.POD)
    assert paths(errs) == ["metadata", "spec"]
