"""Kubernetes 1.32's schemas and the unknown-field check of strict decoding:
which fields are unknown, at which path, in which words (kube-apiserver's)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from netplane.api import resources, schema
from netplane.api.schema import Dialect, StrictError, StrictErrorType

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
POD = "io.k8s.api.core.v1.Pod"
WATCH_EVENT = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"


def deployment(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
    body["spec"].update(spec)
    return body


def unknown(obj: Any, definition: str | dict[str, Any] = DEPLOYMENT) -> list[str]:
    return [str(e) for e in schema.strict_errors(obj, definition)]


def test_every_served_kind_has_a_definition() -> None:
    for res in resources.ALL:
        assert schema.definition_name(res.group, res.version, res.kind), res.kind


def test_a_valid_deployment_has_no_unknown_fields() -> None:
    assert unknown(deployment()) == []


def container(**extra: Any) -> dict[str, Any]:
    return {"name": "web", "image": "nginx", **extra}


MAP_OF_STRUCTS = {"type": "object", "properties": {"items": {
    "type": "object", "additionalProperties": {
        "type": "object", "properties": {"port": {"type": "integer"}}}}}}
PRESERVED = {"type": "object", "properties": {"spec": {
    "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}


@pytest.mark.parametrize(("obj", "definition", "expected"), [
    # top level, nested, several (in document order)
    ({**deployment(), "statuz": {}}, DEPLOYMENT, ['unknown field "statuz"']),
    (deployment(replica=2), DEPLOYMENT, ['unknown field "spec.replica"']),
    (deployment(a=1, b=2), DEPLOYMENT, ['unknown field "spec.a"', 'unknown field "spec.b"']),
    # arrays by items, with the index as kube-apiserver writes it
    (deployment(template={"spec": {"containers": [container(), container(
        imagePullPolicyy="Always")]}}), DEPLOYMENT,
     ['unknown field "spec.template.spec.containers[1].imagePullPolicyy"']),
    (deployment(template={"spec": {"containers": [container(ports=[{"containerPort": 80,
                                                                     "proto": "TCP"}])]}}),
     DEPLOYMENT, ['unknown field "spec.template.spec.containers[0].ports[0].proto"']),
    # maps by additionalProperties: any key, values judged
    (deployment(template={"spec": {"nodeSelector": {"any/key": "x"}, "containers": [
        container(resources={"limits": {"cpu": "1", "example.com/gpu": 1}})]}}),
     DEPLOYMENT, []),
    ({"items": {"a": {"port": 1}, "b": {"prot": 2}}}, MAP_OF_STRUCTS,
     ['unknown field "items.b.prot"']),
    # preserve-unknown-fields and opaque objects (RawExtension, FieldsV1)
    ({"spec": {"anything": {"goes": [1]}}}, PRESERVED, []),
    ({"type": "ADDED", "object": {"whatever": 1}}, WATCH_EVENT, []),
    # metadata follows ObjectMeta
    ({**deployment(), "metadata": {"name": "x", "labelz": {}}}, DEPLOYMENT,
     ['unknown field "metadata.labelz"']),
    ({**deployment(), "metadata": {"name": "x", "annotations": {"a/b": "c"}, "managedFields": [
        {"manager": "m", "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
        "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n", "uid": "u",
                             "blockOwnerDeletion": True, "colour": "red"}]}},
     DEPLOYMENT, ['unknown field "metadata.ownerReferences[0].colour"']),
    # nulls and scalars where objects are expected are not unknown fields
    (deployment(strategy=None, replicas=None), DEPLOYMENT, []),
    # names are case-sensitive, as in kube-apiserver
    (deployment(Replicas=1), DEPLOYMENT, ['unknown field "spec.Replicas"']),
    # a Pod: its status, and an unknown field inside an unknown one is not reported
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
      "spec": {"containers": [container()], "extra": {"more": 1}},
      "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1", "mask": 24}]}},
     POD, ['unknown field "spec.extra"', 'unknown field "status.podIPs[0].mask"']),
])
def test_unknown_fields(obj: Any, definition: str | dict[str, Any], expected: list[str]) -> None:
    assert unknown(obj, definition) == expected


def test_duplicate_fields_in_a_json_body() -> None:
    raw = ('{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},'
           ' "spec": {"replicas": 1, "a": 1, "replicas": 2, "a": 2}}')
    body = schema.loads_keeping_duplicates(raw)
    assert body["spec"]["replicas"] == 2  # the last value wins, as in Go
    assert unknown(body) == ['unknown field "spec.a"', 'duplicate field "spec.replicas"',
                             'duplicate field "spec.a"']


def test_duplicates_without_a_schema() -> None:
    body = schema.loads_keeping_duplicates('{"spec": {"x": [{"k": 1, "k": 2}]}, "spec": {}}')
    assert [str(e) for e in schema.duplicate_fields(body)] == [
        'duplicate field "spec.x[0].k"', 'duplicate field "spec"']


def test_errors_are_reported_once_and_at_most_a_hundred() -> None:
    many = deployment(**{f"f{i}": i for i in range(150)})
    errors = schema.strict_errors(many, DEPLOYMENT)
    assert len(errors) == schema.MAX_ERRORS
    assert errors[0] == StrictError(StrictErrorType.UNKNOWN, "spec.f0")


def test_message_text_quotes_like_go() -> None:
    assert str(StrictError(StrictErrorType.UNKNOWN, 'spec.a"b')) == r'unknown field "spec.a\"b"'
    assert str(StrictError(StrictErrorType.DUPLICATE, "x")) == 'duplicate field "x"'


def test_reachable_definitions_close_over_refs() -> None:
    names = schema.reachable([DEPLOYMENT])
    assert {"io.k8s.api.core.v1.PodSpec", "io.k8s.api.core.v1.Container",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString"} <= names
    assert "io.k8s.api.core.v1.Service" not in names


def refs(node: Any) -> list[str]:
    text = json.dumps(node)
    return [part.split('"')[0] for part in text.split('"$ref": "')[1:]]


def test_openapi_v3_form() -> None:
    spec = schema.to_openapi("io.k8s.api.apps.v1.DeploymentSpec", Dialect.V3)
    assert spec["type"] == "object"
    strategy = spec["properties"]["strategy"]
    # A $ref with a description is wrapped in allOf, as kube-apiserver writes v3.
    assert strategy["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1."
                                          "DeploymentStrategy"}]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    assert spec["properties"]["replicas"] == {
        "description": spec["properties"]["replicas"]["description"], "format": "int32",
        "type": "integer"}
    pod = schema.to_openapi("io.k8s.api.core.v1.PodSpec", Dialect.V3)
    containers = pod["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}


def test_openapi_v2_form() -> None:
    dep = schema.to_openapi(DEPLOYMENT, Dialect.V2)
    assert "enum" not in dep["properties"]["kind"]
    assert dep["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    assert dep["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    ios = schema.to_openapi("io.k8s.apimachinery.pkg.util.intstr.IntOrString", Dialect.V2)
    assert (ios["type"], ios["format"]) == ("string", "int-or-string")
    for name in schema.reachable([DEPLOYMENT]):
        text = json.dumps(schema.to_openapi(name, Dialect.V2))
        assert '"null"' not in text and "#/$defs/" not in text, name
