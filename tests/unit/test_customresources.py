"""CustomResourceDefinitions through the in-process API server: the
definition's validation and status, serving its objects in every served
version, the status subresource, defaulting, pruning and schema validation
with kube's messages, discovery, Tables, and the cascade when a definition
goes."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from aiohttp.test_utils import TestClient

from netplane.api.meta import Obj
from tests.unit.test_apiserver import JSON_PATCH, MERGE, TABLE, call, names, ok

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
GROUP = "example.netplane.io"
WIDGETS = f"/apis/{GROUP}/v1/namespaces/default/widgets"
WIDGETS_BETA = f"/apis/{GROUP}/v1beta1/namespaces/default/widgets"
API = Any  # TestClient[Any, Any]

WIDGET_SCHEMA: Obj = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "green", "blue"],
                          "default": "red"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3,
                         "x-kubernetes-list-type": "set"},
                "rules": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "object", "properties": {
                            "type": {"type": "string", "default": "PathPrefix",
                                     "enum": ["Exact", "PathPrefix", "RegularExpression"]},
                            "value": {"type": "string", "default": "/"}}},
                    }}},
                "listeners": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"],
                                        "properties": {"name": {"type": "string"},
                                                       "port": {"type": "integer"}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "properties": {
            "ready": {"type": "boolean"}, "phase": {"type": "string"}}},
    },
}


def crd(*, status: bool = True, plural: str = "widgets", group: str = GROUP,
        kind: str = "Widget") -> Obj:
    version: Obj = {
        "name": "v1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": copy.deepcopy(WIDGET_SCHEMA)},
        "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
            {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]}
    if status:
        version["subresources"] = {"status": {}}
    beta = {"name": "v1beta1", "served": True, "storage": False,
            "schema": {"openAPIV3Schema": copy.deepcopy(WIDGET_SCHEMA)}}
    beta["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["color"][
        "default"] = "blue"
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": plural, "kind": kind, "shortNames": ["wd"],
                               "categories": ["all"]},
                     "versions": [version, beta]}}


def widget(name: str, **spec: Any) -> Obj:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": 3, **spec}}


async def install(api: API, body: Obj | None = None) -> Obj:
    return await ok(api, "POST", CRDS, body or crd())


def messages(status: Obj) -> list[str]:
    return [f'{c["field"]}: {c["message"]}' for c in status["details"]["causes"]]


# -- the definition --

async def test_definition_defaults_and_status(api: API) -> None:
    out = await install(api)
    names_ = out["spec"]["names"]
    assert names_["singular"] == "widget" and names_["listKind"] == "WidgetList"
    assert out["spec"]["conversion"] == {"strategy": "None"}
    conds = {c["type"]: c["status"] for c in out["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert out["status"]["acceptedNames"]["kind"] == "Widget"
    assert out["status"]["storedVersions"] == ["v1"]
    assert out["metadata"]["generation"] == 1
    got = await ok(api, "GET", f"{CRDS}/widgets.{GROUP}")
    assert got["status"] == out["status"]


async def test_definition_validation(api: API) -> None:
    bad = crd()
    bad["metadata"]["name"] = "gadgets.example.netplane.io"
    bad["spec"]["scope"] = "Global"
    bad["spec"]["versions"][1]["storage"] = True
    del bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["size"]["type"]
    code, out = await call(api, "POST", CRDS, bad)
    assert code == 422, out
    assert out["reason"] == "Invalid"
    assert messages(out) == [
        'metadata.name: Invalid value: "gadgets.example.netplane.io": must be '
        'spec.names.plural+"."+spec.group',
        'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type: "
        "Required value: must not be empty for specified object fields",
        "spec.versions: Invalid value: [v1, v1beta1]: must have exactly one version marked "
        "as storage version",
    ]
    code, out = await call(api, "GET", f"{CRDS}/gadgets.example.netplane.io")
    assert code == 404


async def test_definition_group_and_scope_are_immutable(api: API) -> None:
    await install(api)
    code, out = await call(api, "PATCH", f"{CRDS}/widgets.{GROUP}",
                           {"spec": {"scope": "Cluster"}}, ctype=MERGE)
    assert code == 422 and messages(out) == ["spec.scope: Invalid value: field is immutable"]


async def test_a_name_another_definition_holds_is_not_accepted(api: API) -> None:
    await install(api)
    second = crd(plural="gizmos")
    second["spec"]["names"]["kind"] = "Widget"
    out = await install(api, second)
    conds = {c["type"]: (c["status"], c["reason"]) for c in out["status"]["conditions"]}
    assert conds["NamesAccepted"] == ("False", "NameConflict")
    assert conds["Established"] == ("False", "NotAccepted")
    code, _ = await call(api, "GET", f"/apis/{GROUP}/v1/namespaces/default/gizmos")
    assert code == 404
    # Once the holder goes, the names are the other's.
    await ok(api, "DELETE", f"{CRDS}/widgets.{GROUP}")
    out = await ok(api, "GET", f"{CRDS}/gizmos.{GROUP}")
    conds = {c["type"]: c["status"] for c in out["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert out["status"]["acceptedNames"]["kind"] == "Widget"
    await ok(api, "GET", f"/apis/{GROUP}/v1/namespaces/default/gizmos")


# -- serving --

async def test_not_served_before_the_definition(api: API) -> None:
    code, out = await call(api, "GET", WIDGETS)
    assert code == 404, out


async def test_objects_in_every_served_version(api: API) -> None:
    body = crd()
    body["spec"]["names"]["listKind"] = "WidgetCollection"
    body["spec"]["versions"][0]["selectableFields"] = [{"jsonPath": ".spec.color"}]
    await install(api, body)
    made = await ok(api, "POST", WIDGETS, widget("one"))
    md = made["metadata"]
    assert md["generation"] == 1 and md["uid"] and md["creationTimestamp"]
    assert made["apiVersion"] == f"{GROUP}/v1"
    assert made["spec"]["color"] == "red"  # v1's default
    beta = await ok(api, "GET", f"{WIDGETS_BETA}/one")
    assert beta["apiVersion"] == f"{GROUP}/v1beta1"
    assert beta["metadata"]["uid"] == md["uid"]
    assert beta["spec"]["color"] == "red"  # stored, so v1beta1's default does not apply
    b = widget("two")
    b["apiVersion"] = f"{GROUP}/v1beta1"
    made = await ok(api, "POST", WIDGETS_BETA, b)
    assert made["spec"]["color"] == "blue"
    listing = await ok(api, "GET", WIDGETS)
    assert listing["kind"] == "WidgetCollection"  # the definition's listKind
    assert names(listing) == ["one", "two"]
    assert {i["apiVersion"] for i in listing["items"]} == {f"{GROUP}/v1"}
    sel = await ok(api, "GET", WIDGETS, params={"fieldSelector": "metadata.name=two"})
    assert names(sel) == ["two"]
    sel = await ok(api, "GET", WIDGETS, params={"fieldSelector": "spec.color=blue"})
    assert names(sel) == ["two"]
    code, out = await call(api, "GET", WIDGETS, params={"fieldSelector": "status.phase=Up"})
    assert code == 400 and out["message"].startswith('field label not supported: "status.phase"')
    code, out = await call(api, "POST", WIDGETS, widget("one"))
    assert code == 409 and out["message"] == f'widgets.{GROUP} "one" already exists'


async def test_patches_and_generation(api: API) -> None:
    await install(api)
    await ok(api, "POST", WIDGETS, widget("w", tags=["a"]))
    out = await ok(api, "PATCH", f"{WIDGETS}/w", {"spec": {"size": 5}}, ctype=MERGE)
    assert out["spec"]["size"] == 5 and out["metadata"]["generation"] == 2
    out = await ok(api, "PATCH", f"{WIDGETS}/w",
                   [{"op": "add", "path": "/spec/tags/-", "value": "b"}], ctype=JSON_PATCH)
    assert out["spec"]["tags"] == ["a", "b"] and out["metadata"]["generation"] == 3
    out = await ok(api, "PATCH", f"{WIDGETS}/w", {"metadata": {"labels": {"x": "y"}}},
                   ctype=MERGE)
    assert out["metadata"]["generation"] == 3
    code, out = await call(api, "PATCH", f"{WIDGETS}/w", {"spec": {"size": 50}}, ctype=MERGE)
    assert code == 422
    assert out["message"] == (f'Widget.{GROUP} "w" is invalid: spec.size: Invalid value: 50: '
                              "spec.size in body should be less than or equal to 10")


async def test_status_subresource(api: API) -> None:
    await install(api)
    made = await ok(api, "POST", WIDGETS, {**widget("s"), "status": {"ready": True}})
    assert "status" not in made
    out = await ok(api, "PUT", f"{WIDGETS}/s/status",
                   {**made, "spec": {"size": 9}, "status": {"ready": True, "phase": "Up"}})
    assert out["status"] == {"ready": True, "phase": "Up"}
    assert out["spec"]["size"] == 3 and out["metadata"]["generation"] == 1
    out = await ok(api, "PATCH", f"{WIDGETS}/s", {"spec": {"size": 4},
                                                  "status": {"ready": False}}, ctype=MERGE)
    assert out["status"] == {"ready": True, "phase": "Up"} and out["spec"]["size"] == 4
    code, out = await call(api, "PATCH", f"{WIDGETS}/s/status",
                           {"status": {"ready": "yes"}}, ctype=MERGE)
    assert code == 422
    assert messages(out) == ['status.ready: Invalid value: "string": status.ready in body '
                             'must be of type boolean: "string"']


async def test_without_a_status_subresource_status_is_written_with_the_rest(api: API) -> None:
    await install(api, crd(status=False))
    made = await ok(api, "POST", WIDGETS, {**widget("s"), "status": {"ready": True}})
    assert made["status"] == {"ready": True}
    code, _ = await call(api, "GET", f"{WIDGETS}/s/status")
    assert code == 404
    out = await ok(api, "PATCH", f"{WIDGETS}/s", {"status": {"ready": False}}, ctype=MERGE)
    assert out["status"] == {"ready": False} and out["metadata"]["generation"] == 2


# -- the schema --

async def test_defaulting_and_pruning(api: API) -> None:
    await install(api)
    out = await ok(api, "POST", WIDGETS, widget(
        "d", rules=[{"path": {}}, {"path": {"type": "Exact", "value": "/x"}}],
        unknown=1, extra={"anything": {"goes": True}},
        template={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                  "data": {"a": "b"}},
        color=None, note=None))
    spec = out["spec"]
    assert spec["rules"] == [{"path": {"type": "PathPrefix", "value": "/"}},
                             {"path": {"type": "Exact", "value": "/x"}}]
    assert "unknown" not in spec
    assert spec["extra"] == {"anything": {"goes": True}}
    assert spec["template"]["metadata"] == {"name": "c"}
    assert spec["color"] == "red"  # null where null may not be: dropped, then defaulted
    assert spec["note"] is None  # nullable
    top = await ok(api, "POST", WIDGETS, {**widget("t"), "other": {"x": 1}})
    assert "other" not in top


async def test_validation_messages(api: API) -> None:
    await install(api)
    code, out = await call(api, "POST", WIDGETS, {
        "apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "bad"},
        "spec": {"size": "big", "color": "pink", "name": "Abc", "port": 1.5,
                 "tags": ["a", "a", "b", "c"],
                 "rules": [{"path": {"type": "Glob"}}],
                 "listeners": [{"name": "h", "port": 1}, {"name": "h", "port": 2}, {}],
                 "template": {"metadata": {}}}})
    assert code == 422, out
    assert out["reason"] == "Invalid" and out["details"]["kind"] == "Widget"
    assert out["details"]["group"] == GROUP
    assert messages(out) == [
        'spec.size: Invalid value: "string": spec.size in body must be of type integer: '
        '"string"',
        'spec.color: Unsupported value: "pink": supported values: "red", "green", "blue"',
        "spec.name: Invalid value: \"Abc\": spec.name in body should match '^[a-z]+$'",
        'spec.port: Invalid value: "number": spec.port in body must be of type '
        "integer,string: 1.5",
        "spec.tags: Too many: 4: must have at most 3 items",
        'spec.tags[1]: Duplicate value: "a"',
        'spec.rules[0].path.type: Unsupported value: "Glob": supported values: "Exact", '
        '"PathPrefix", "RegularExpression"',
        "spec.listeners[2].name: Required value",
        'spec.listeners[1]: Duplicate value: {"name":"h"}',
        "spec.template.apiVersion: Required value",
        "spec.template.kind: Required value",
    ]
    code, out = await call(api, "POST", WIDGETS, {
        "apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "Bad_Name"},
        "spec": {}})
    assert code == 422
    assert [c["field"] for c in out["details"]["causes"]] == ["metadata.name", "spec.size"]
    code, _ = await call(api, "GET", f"{WIDGETS}/bad")
    assert code == 404


# -- discovery and tables --

async def test_discovery(api: API) -> None:
    await install(api)
    groups = await ok(api, "GET", "/apis")
    found = [g for g in groups["groups"] if g["name"] == GROUP]
    assert [v["version"] for v in found[0]["versions"]] == ["v1", "v1beta1"]
    listed = await ok(api, "GET", f"/apis/{GROUP}/v1")
    entries = {r["name"]: r for r in listed["resources"]}
    assert set(entries) == {"widgets", "widgets/status"}
    assert entries["widgets"]["shortNames"] == ["wd"]
    assert entries["widgets"]["categories"] == ["all"]
    assert entries["widgets"]["kind"] == "Widget" and entries["widgets"]["namespaced"]
    beta = await ok(api, "GET", f"/apis/{GROUP}/v1beta1")
    assert [r["name"] for r in beta["resources"]] == ["widgets"]
    ext = await ok(api, "GET", "/apis/apiextensions.k8s.io/v1")
    crds = {r["name"]: r for r in ext["resources"]}["customresourcedefinitions"]
    assert crds["shortNames"] == ["crd", "crds"] and not crds["namespaced"]


async def test_printer_columns(api: API) -> None:
    await install(api)
    await ok(api, "POST", WIDGETS, widget("p", size=7))
    await ok(api, "PATCH", f"{WIDGETS}/p/status", {"status": {"ready": True}}, ctype=MERGE)
    table = await ok(api, "GET", WIDGETS, accept=TABLE)
    assert table["kind"] == "Table"
    cols = [(c["name"], c["type"], c.get("priority", 0)) for c in table["columnDefinitions"]]
    assert cols == [("Name", "string", 0), ("Size", "integer", 0), ("Color", "string", 1),
                    ("Ready", "boolean", 0), ("Age", "date", 0)]
    row = table["rows"][0]["cells"]
    assert row[:4] == ["p", 7, "red", True]
    plain = await ok(api, "GET", CRDS, accept=TABLE)
    assert [c["name"] for c in plain["columnDefinitions"]] == ["Name", "Created At"]


# -- watch and deletion --

async def test_watch(api: API) -> None:
    await install(api)
    resp = await api.get(WIDGETS, params={"watch": "1"})
    await ok(api, "POST", WIDGETS, widget("w1"))
    await ok(api, "DELETE", f"{WIDGETS}/w1")
    seen = []
    async with asyncio.timeout(30):
        while len(seen) < 2:
            line = await resp.content.readline()
            ev = json.loads(line)
            seen.append((ev["type"], ev["object"]["metadata"]["name"],
                         ev["object"]["apiVersion"]))
    resp.close()
    assert seen == [("ADDED", "w1", f"{GROUP}/v1"), ("DELETED", "w1", f"{GROUP}/v1")]


async def test_deleting_the_definition_deletes_its_objects(api: API) -> None:
    await install(api)
    await ok(api, "POST", WIDGETS, widget("a"))
    await ok(api, "POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    await ok(api, "POST", f"/apis/{GROUP}/v1/namespaces/other/widgets", widget("b"))
    kept = widget("held")
    kept["metadata"]["finalizers"] = ["example.netplane.io/hold"]
    await ok(api, "POST", WIDGETS, kept)
    out = await ok(api, "DELETE", f"{CRDS}/widgets.{GROUP}")
    assert out["metadata"]["deletionTimestamp"]
    conds = {c["type"]: c["status"] for c in out["status"]["conditions"]}
    assert conds["Terminating"] == "True"
    assert names(await ok(api, "GET", WIDGETS)) == ["held"]
    code, out = await call(api, "POST", WIDGETS, widget("late"))
    assert code == 405, out
    await ok(api, "PATCH", f"{WIDGETS}/held", {"metadata": {"finalizers": None}}, ctype=MERGE)
    code, _ = await call(api, "GET", f"{CRDS}/widgets.{GROUP}")
    assert code == 404
    code, _ = await call(api, "GET", WIDGETS)
    assert code == 404
    await install(api)
    assert names(await ok(api, "GET", f"/apis/{GROUP}/v1/widgets")) == []


async def test_cluster_scoped_kind(api: API) -> None:
    body = crd(plural="gadgets", kind="Gadget")
    body["spec"]["scope"] = "Cluster"
    body["spec"]["names"]["shortNames"] = ["gd"]
    await install(api, body)
    g = {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g"},
         "spec": {"size": 1}}
    out = await ok(api, "POST", f"/apis/{GROUP}/v1/gadgets", g)
    assert "namespace" not in out["metadata"]
    code, _ = await call(api, "GET", f"/apis/{GROUP}/v1/namespaces/default/gadgets")
    assert code == 404


async def test_namespace_deletion_removes_custom_objects(api: API,
                                                         ) -> None:
    await install(api)
    await ok(api, "POST", "/api/v1/namespaces", {"metadata": {"name": "gone"}})
    await ok(api, "POST", f"/apis/{GROUP}/v1/namespaces/gone/widgets", widget("x"))
    await ok(api, "DELETE", "/api/v1/namespaces/gone")
    assert names(await ok(api, "GET", f"/apis/{GROUP}/v1/widgets")) == []


_ = TestClient


# -- OpenAPI and field validation --

async def test_openapi_documents_carry_the_custom_kinds(api: API) -> None:
    before = await ok(api, "GET", "/openapi/v3")
    assert f"apis/{GROUP}/v1" not in before["paths"]
    await install(api)
    disco = await ok(api, "GET", "/openapi/v3")
    url = disco["paths"][f"apis/{GROUP}/v1"]["serverRelativeURL"]
    doc = await ok(api, "GET", url)
    widget_def = doc["components"]["schemas"]["io.netplane.example.v1.Widget"]
    assert widget_def["properties"]["spec"]["properties"]["color"]["enum"] == [
        "red", "green", "blue"]
    assert widget_def["properties"]["metadata"] == {
        "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    assert widget_def["x-kubernetes-group-version-kind"] == [
        {"group": GROUP, "kind": "Widget", "version": "v1"}]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    assert f"/apis/{GROUP}/v1/namespaces/{{namespace}}/widgets/{{name}}/status" in doc["paths"]
    v2 = await ok(api, "GET", "/openapi/v2")
    spec = v2["definitions"]["io.netplane.example.v1.Widget"]["properties"]["spec"]
    assert "nullable" not in spec["properties"]["note"]
    assert f"/apis/{GROUP}/v1beta1/namespaces/{{namespace}}/widgets" in v2["paths"]
    assert "/api/v1/namespaces/{namespace}/pods" in v2["paths"]
    resp = await api.get("/openapi/v2", headers={
        "Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert resp.status == 200 and len(await resp.read()) > 1000


async def test_strict_field_validation(api: API) -> None:
    await install(api)
    body = widget("f", colour="red")
    code, out = await call(api, "POST", WIDGETS, body, params={"fieldValidation": "Strict"})
    assert code == 400, out
    assert out["message"] == ('Widget in version "v1" cannot be handled as a Widget: strict '
                              'decoding error: unknown field "spec.colour"')
    resp = await api.post(WIDGETS, data=json.dumps(body),
                          headers={"Content-Type": "application/json"})
    assert resp.status == 201
    assert resp.headers["Warning"] == '299 - "unknown field \\"spec.colour\\""'
    code, out = await call(api, "PATCH", f"{WIDGETS}/f", {"spec": {"sizee": 1}}, ctype=MERGE,
                           params={"fieldValidation": "Strict"})
    assert code == 422 and 'unknown field "spec.sizee"' in out["message"]


APPLY = "application/apply-patch+yaml"


async def test_server_side_apply(api: API) -> None:
    await install(api)
    body = widget("a", listeners=[{"name": "http", "port": 80}])
    out = await ok(api, "PATCH", f"{WIDGETS}/a", body, ctype=APPLY,
                   params={"fieldManager": "alice"})
    assert out["spec"]["color"] == "red"
    managed = out["metadata"]["managedFields"]
    assert [(m["manager"], m["operation"], m["apiVersion"]) for m in managed] == [
        ("alice", "Apply", f"{GROUP}/v1")]
    # The list is a map by its keys, as the schema says.
    assert list(managed[0]["fieldsV1"]["f:spec"]["f:listeners"]) == ['k:{"name":"http"}']
    mine = widget("a", size=5)
    code, out = await call(api, "PATCH", f"{WIDGETS}/a", mine, ctype=APPLY,
                           params={"fieldManager": "bob"})
    assert code == 409, out
    assert out["details"]["causes"][0]["field"] == ".spec.size"
    out = await ok(api, "PATCH", f"{WIDGETS}/a", mine, ctype=APPLY,
                   params={"fieldManager": "bob", "force": "true"})
    assert out["spec"]["size"] == 5
    assert out["spec"]["listeners"] == [{"name": "http", "port": 80}]


async def test_one_of_any_of_and_not(api: API) -> None:
    body = crd()
    spec = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["match"] = {
        "type": "object",
        "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"},
                       "regex": {"type": "string"}},
        "oneOf": [{"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}],
        "not": {"properties": {"exact": {"enum": ["*"]}}, "required": ["exact"]}}
    spec["properties"]["port"] = {"x-kubernetes-int-or-string": True,
                                  "anyOf": [{"type": "integer"},
                                            {"type": "string", "pattern": "^[a-z]+$"}]}
    await install(api, body)
    await ok(api, "POST", WIDGETS, widget("good", match={"prefix": "/a"}, port="http"))
    code, out = await call(api, "POST", WIDGETS, widget("two", match={"exact": "/a",
                                                                      "prefix": "/b"}))
    assert code == 422 and messages(out) == [
        'spec.match: Invalid value: "": "spec.match" must validate one and only one schema '
        "(oneOf). Found 2 valid alternatives"]
    code, out = await call(api, "POST", WIDGETS, widget("none", match={}, port="HTTP"))
    assert code == 422 and messages(out) == [
        'spec.match: Invalid value: "": "spec.match" must validate one and only one schema '
        "(oneOf). Found none valid",
        "spec.match.exact: Required value",
        'spec.port: Invalid value: "": "spec.port" must validate at least one schema (anyOf)',
        # The nearest miss (the fewest errors, the first of equals) says why.
        'spec.port: Invalid value: "string": spec.port in body must be of type integer: '
        '"string"']
    code, out = await call(api, "POST", WIDGETS, widget("star", match={"exact": "*"}))
    assert code == 422 and messages(out) == [
        'spec.match: Invalid value: "": "spec.match" must not validate the schema (not)']


async def test_odd_shapes_are_refused_not_failed(api: API) -> None:
    await install(api)
    code, out = await call(api, "POST", WIDGETS, {**widget("m"), "metadata": "m"})
    assert code == 400 and "cannot be handled as a Widget" in out["message"], out
    code, out = await call(api, "POST", WIDGETS, {**widget("m"), "metadata": {
        "name": "m", "labels": "x"}})
    assert code == 400, out
    code, out = await call(api, "POST", WIDGETS, {**widget("m"), "spec": "big"})
    assert code == 422 and messages(out) == [
        'spec: Invalid value: "string": spec in body must be of type object: "string"']
    bad = crd(plural="odd")
    bad["spec"]["names"] = {"plural": "odd", "kind": "Odd"}
    odd_spec = bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    odd_spec["properties"]["name"]["pattern"] = "(["
    odd_spec["properties"]["color"]["default"] = "pink"
    code, out = await call(api, "POST", CRDS, bad)
    assert code == 422, out
    assert any("pattern: Invalid value" in m and "must be a valid regular expression" in m
               for m in messages(out))
    assert "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[color]." \
           'default: Unsupported value: "pink": supported values: "red", "green", "blue"' \
        in messages(out)


async def test_watch_as_tables(api: API) -> None:
    """``kubectl get widgets -w``: each event a one-row Table with the columns."""
    await install(api)
    resp = await api.get(WIDGETS, params={"watch": "1"}, headers={"Accept": TABLE})
    await ok(api, "POST", WIDGETS, widget("t1", size=2))
    async with asyncio.timeout(30):
        ev = json.loads(await resp.content.readline())
    resp.close()
    assert ev["type"] == "ADDED" and ev["object"]["kind"] == "Table"
    assert [c["name"] for c in ev["object"]["columnDefinitions"]] == [
        "Name", "Size", "Color", "Ready", "Age"]
    assert ev["object"]["rows"][0]["cells"][:3] == ["t1", 2, "red"]
