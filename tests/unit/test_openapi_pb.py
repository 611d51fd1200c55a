"""/openapi/v2 as gnostic protobuf (``openapi.v2.Document``): the wire facts
of the encoding, the round trip of the served document, and the HTTP side
(content negotiation, kube-apiserver's Content-Type, ETag, gzip)."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from netplane.cluster.apiserver import openapi, openapi_pb
from netplane.cluster.apiserver.openapi_pb import Unencodable, decode, encode

KUBECTL_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
KUBE_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
CORE = "io.k8s.api.core.v1."
GVK = "x-kubernetes-group-version-kind"

Doc = dict[str, Any]


def parsed(doc: Doc) -> Any:
    """The Document message of ``doc``, to read fields by number (``f9``...)."""
    msg = openapi_pb.classes()["Document"]()
    msg.ParseFromString(encode(doc))
    return msg


@pytest.fixture(scope="module")
def served() -> Doc:
    return json.loads(openapi.documents().v2.body)  # type: ignore[no-any-return]


# -- the table --

def test_the_table_reads_and_names_gnostics_messages() -> None:
    table = openapi_pb.messages()
    assert table["Schema"].fields[22] == openapi_pb.Field(22, "type", "TypeItem")
    assert table["Schema"].fields[31].named and table["Schema"].fields[31].type == "Any"
    # The shared run lands at gnostic's numbers in each message.
    assert table["QueryParameterSubSchema"].fields[6].json == "type"
    assert table["QueryParameterSubSchema"].fields[22].json == "multipleOf"
    assert table["PathParameterSubSchema"].fields[21].json == "multipleOf"
    assert table["PrimitivesItems"].fields[16].type == "Any"
    classes = openapi_pb.classes()
    assert {"NamedSchema", "NamedAny", "NamedPathItem", "NamedString"} <= classes.keys()
    assert classes["Document"].DESCRIPTOR.full_name == "openapi.v2.Document"


# -- wire facts, byte by byte --

def test_a_definition_is_a_named_schema_with_a_type_item() -> None:
    # Document 9 Definitions {1 NamedSchema {1 "A", 2 Schema {22 TypeItem {1 "string"}}}}
    got = encode({"definitions": {"A": {"type": "string"}}})
    assert got == b"\x4a\x12\x0a\x10\x0a\x01A\x12\x0b\xb2\x01\x08\x0a\x06string"


def test_swagger_and_info() -> None:
    got = encode({"swagger": "2.0", "info": {"title": "K", "version": "v1"}})
    assert got == b"\x0a\x032.0\x12\x07\x0a\x01K\x12\x02v1"


def test_empty_properties_are_still_sent() -> None:
    """kube-openapi tells a kind from a map by whether ``properties`` is set."""
    got = encode({"definitions": {"E": {"properties": {}}}})
    assert got.endswith(b"\x12\x03\xca\x01\x00")  # Schema 25 Properties, length 0


def test_additional_properties_false_is_sent() -> None:
    """A oneof keeps its zero value: ``additionalProperties: false`` is data."""
    msg = parsed({"definitions": {"M": {"type": "object", "additionalProperties": False}}})
    item = msg.f9.f1[0].f2.f21
    assert item.WhichOneof("oneof") == "f2" and item.f2 is False
    schema = parsed({"definitions": {"M": {"type": "object",
                                           "additionalProperties": {"type": "string"}}}})
    assert list(schema.f9.f1[0].f2.f21.f1.f22.f1) == ["string"]


def test_vendor_extensions_are_named_anys_holding_yaml() -> None:
    gvk = [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    msg = parsed({"definitions": {"D": {"type": "object", "properties": {}, GVK: gvk}}})
    schema = msg.f9.f1[0].f2
    assert [e.f1 for e in schema.f31] == [GVK]
    assert yaml.safe_load(schema.f31[0].f2.f2) == gvk


def test_items_and_refs() -> None:
    msg = parsed({"definitions": {"L": {"type": "array", "items": {"$ref": "#/definitions/A"}},
                                  "A": {"type": "string"}}})
    items = msg.f9.f1[0].f2.f23.f1
    assert len(items) == 1 and items[0].f1 == "#/definitions/A"


def test_parameters_go_to_their_oneof() -> None:
    ops = {"get": {"parameters": [
        {"name": "body", "in": "body", "required": True, "schema": {"$ref": "#/definitions/A"}},
        {"name": "watch", "in": "query", "type": "boolean", "uniqueItems": True},
        {"$ref": "#/parameters/pretty"}], "responses": {"200": {"description": "OK"}}},
        "parameters": [{"name": "name", "in": "path", "required": True, "type": "string"}]}
    item = parsed({"paths": {"/x/{name}": ops}}).f8.f2[0]
    assert item.f1 == "/x/{name}"
    body, query, ref = item.f2.f2.f8
    assert body.f1.f1.f2 == "body" and body.f1.f1.f4 is True
    assert query.f1.f2.WhichOneof("oneof") == "f3" and query.f1.f2.f3.f6 == "boolean"
    assert ref.WhichOneof("oneof") == "f2" and ref.f2.f1 == "#/parameters/pretty"
    assert item.f2.f9[0].f1.f2.WhichOneof("oneof") == "f4"  # in: path
    assert item.f2.f2.f9.f1[0].f1 == "200"


def test_security() -> None:
    msg = parsed({"security": [{"BearerToken": []}], "securityDefinitions": {"BearerToken": {
        "type": "apiKey", "name": "authorization", "in": "header"}}})
    assert msg.f12[0].f1[0].f1 == "BearerToken" and msg.f12[0].f1[0].HasField("f2")
    assert msg.f13.f1[0].f2.f2.f2 == "authorization"


@pytest.mark.parametrize(("doc", "where"), [
    ({"definitions": {"A": {"oneOf": []}}}, "/definitions/A/oneOf"),
    ({"definitions": {"A": {"maxLength": "5"}}}, "/definitions/A/maxLength"),
    ({"definitions": {"A": {"type": 5}}}, "/definitions/A/type"),
    ({"securityDefinitions": {"S": {"type": "saml"}}}, "/securityDefinitions/S"),
    ({"info": []}, "/info"),
    ({"paths": {"/p": {"parameters": ["pretty"]}}}, "/paths//p/parameters/0"),
    ({"definitions": {"A": {"additionalProperties": "yes"}}}, "/definitions/A"),
])
def test_what_gnostic_has_no_place_for_is_refused(doc: Doc, where: str) -> None:
    with pytest.raises(Unencodable, match=where):
        encode(doc)


@pytest.mark.parametrize("value", [
    "plain", "line\u2028separator", "emoji \U0001f600", "tab\tand \"quotes\"", ["a", 1, None],
    {"group": "", "kind": "Pod", "version": "v1"}, 1.5, True,
])
def test_yaml_text_reads_back(value: Any) -> None:
    text = openapi_pb.yaml_text(value)
    assert text.isascii() and yaml.safe_load(text) == value


# -- the served document --

def test_the_served_document_round_trips(served: Doc) -> None:
    assert decode(encode(served)) == served


def test_definitions_and_extensions_survive(served: Doc) -> None:
    back = decode(encode(served))["definitions"]
    containers = back[CORE + "PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    assert containers["items"] == {"$ref": f"#/definitions/{CORE}Container"}
    assert containers["type"] == "array"
    assert back[CORE + "Pod"][GVK] == [{"group": "", "kind": "Pod", "version": "v1"}]
    deployment = back["io.k8s.api.apps.v1.Deployment"]
    assert deployment[GVK] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert deployment["properties"]["spec"] == served["definitions"][
        "io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]


def test_operations_keep_their_kind_and_action(served: Doc) -> None:
    back = decode(encode(served))["paths"]
    post = back["/api/v1/namespaces/{namespace}/pods"]["post"]
    assert post["x-kubernetes-action"] == "post"
    assert post["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Pod",
                                                       "version": "v1"}
    assert post["consumes"] == ["*/*"]


def test_encoding_is_quick_enough(served: Doc) -> None:
    start = time.perf_counter()
    encode(served)
    assert time.perf_counter() - start < 5.0


def test_decode_refuses_garbage() -> None:
    with pytest.raises(ValueError, match=r"openapi\.v2\.Document"):
        decode(b"\xff\xff\xff")


# -- over HTTP --

async def test_kubectl_gets_protobuf(api: TestClient[Any, Any], served: Doc) -> None:
    resp = await api.get("/openapi/v2", headers={"Accept": KUBECTL_ACCEPT})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == KUBE_CONTENT_TYPE
    assert "Accept" in resp.headers["Vary"]
    assert decode(await resp.read()) == served
    plain = await api.get("/openapi/v2", headers={"Accept": "application/json"})
    assert plain.headers["ETag"] != resp.headers["ETag"]
    again = await api.get("/openapi/v2", headers={"Accept": KUBECTL_ACCEPT,
                                                  "If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_protobuf_is_gzipped_when_asked(api: TestClient[Any, Any]) -> None:
    resp = await api.get("/openapi/v2", auto_decompress=False, headers={
        "Accept": KUBE_CONTENT_TYPE, "Accept-Encoding": "gzip"})
    assert resp.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await resp.read()) == openapi.v2_protobuf().body


@pytest.mark.parametrize(("accept", "content_type"), [
    (f"{KUBECTL_ACCEPT}, application/json", KUBE_CONTENT_TYPE),
    (f"application/json, {KUBECTL_ACCEPT}", "application/json"),
    ("*/*", "application/json"),
    ("", "application/json"),
    (f"text/html, {KUBE_CONTENT_TYPE};q=0.9", KUBE_CONTENT_TYPE),
])
async def test_the_first_servable_clause_wins(api: TestClient[Any, Any], accept: str,
                                              content_type: str) -> None:
    resp = await api.get("/openapi/v2", headers={"Accept": accept})
    assert resp.status == 200 and resp.headers["Content-Type"] == content_type


async def test_other_types_are_not_acceptable(api: TestClient[Any, Any]) -> None:
    resp = await api.get("/openapi/v2", headers={"Accept": "application/yaml"})
    assert resp.status == 406 and KUBE_CONTENT_TYPE in await resp.text()
    v3 = await api.get("/openapi/v3/api/v1", headers={
        "Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"})
    assert v3.status == 406
