"""The OpenAPI documents (every served kind and operation, references that
resolve, kube-apiserver's caching headers) and server-side field validation
(Strict, Warn, Ignore) through a real in-process server."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api import resources
from netplane.cluster.apiserver import openapi, paths
from netplane.cluster.apiserver.registry import Registry
from netplane.cluster.server import build_app

TOKEN = "test-token-openapi"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]
Doc = dict[str, Any]


def deployment(name: str, **spec: Any) -> Doc:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                     **spec}}


@pytest.fixture(scope="module")
def docs() -> openapi.Documents:
    return openapi.documents()


def v3(docs: openapi.Documents, res: resources.Resource) -> Doc:
    return json.loads(docs.v3[openapi.discovery_key(res.api_version)].body)  # type: ignore[no-any-return]


def collection(res: resources.Resource) -> str:
    base = res.group_version_path
    return f"{base}/namespaces/{{namespace}}/{res.plural}" if res.namespaced \
        else f"{base}/{res.plural}"


# Discovery verb -> (path suffix, method, x-kubernetes-action).
VERB_OPS = {"list": ("", "get", "list"), "create": ("", "post", "post"),
            "deletecollection": ("", "delete", "deletecollection"),
            "get": ("/{name}", "get", "get"), "update": ("/{name}", "put", "put"),
            "patch": ("/{name}", "patch", "patch"), "delete": ("/{name}", "delete", "delete")}


def test_every_served_kind_has_its_operations(docs: openapi.Documents) -> None:
    for res in resources.ALL:
        doc = v3(docs, res)["paths"]
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        expected = {(collection(res) + VERB_OPS[v][0], VERB_OPS[v][1], VERB_OPS[v][2])
                    for v in res.verbs if v in VERB_OPS}
        found = {(path, method, op["x-kubernetes-action"])
                 for path in {collection(res), collection(res) + "/{name}"} if path in doc
                 for method, op in doc[path].items() if method != "parameters"}
        assert found == expected, res.kind
        for path, method, _ in expected:
            op = doc[path][method]
            assert op["x-kubernetes-group-version-kind"] == gvk
            params = {p["name"] for p in op.get("parameters", [])}
            if method in ("post", "put", "patch"):
                assert {"fieldValidation", "fieldManager", "dryRun"} <= params, res.kind
            if method == "patch":
                assert set(op["requestBody"]["content"]) == set(openapi.PATCH_TYPES)
            if (path, method) == (collection(res), "get"):
                assert "watch" in params
        if res.namespaced and "list" in res.verbs:
            assert f"{res.group_version_path}/{res.plural}" in doc


def test_operation_ids_as_kube_apiserver_names_them(docs: openapi.Documents) -> None:
    core = v3(docs, resources.POD)["paths"]
    pods = "/api/v1/namespaces/{namespace}/pods"
    assert core[pods]["get"]["operationId"] == "listCoreV1NamespacedPod"
    assert core[pods]["delete"]["operationId"] == "deleteCoreV1CollectionNamespacedPod"
    assert core[pods + "/{name}"]["patch"]["operationId"] == "patchCoreV1NamespacedPod"
    assert core["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert core["/api/v1/nodes/{name}"]["put"]["operationId"] == "replaceCoreV1Node"
    assert core[pods + "/{name}"]["get"]["tags"] == ["core_v1"]
    apps = v3(docs, resources.DEPLOYMENT)["paths"]
    scale = apps["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["put"]["operationId"] == "replaceAppsV1NamespacedDeploymentScale"
    assert scale["put"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "version": "v1", "kind": "Scale"}


def test_subresources_follow_paths(docs: openapi.Documents) -> None:
    for res in resources.ALL:
        served = v3(docs, res)["paths"]
        for sub in paths.subresources(res.kind) - {""}:
            if sub in openapi.SUBRESOURCES:
                assert f"{collection(res)}/{{name}}/{sub}" in served, (res.kind, sub)


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


def test_v3_refs_resolve_and_meta_types_are_there(docs: openapi.Documents) -> None:
    for key, served in docs.v3.items():
        doc = json.loads(served.body)
        assert doc["openapi"].startswith("3.0")
        schemas = doc["components"]["schemas"]
        for ref in all_refs(doc):
            assert ref.startswith("#/components/schemas/"), (key, ref)
            assert ref.removeprefix("#/components/schemas/") in schemas, (key, ref)
        meta = "io.k8s.apimachinery.pkg.apis.meta.v1."
        assert meta + "Status" in schemas
        if any("patch" in item for item in doc["paths"].values()):
            assert {meta + "DeleteOptions", meta + "WatchEvent", meta + "Patch"} \
                <= set(schemas), key
    apps = v3(docs, resources.DEPLOYMENT)["components"]["schemas"]
    assert {"io.k8s.api.apps.v1.DeploymentList", "io.k8s.api.autoscaling.v1.Scale"} <= set(apps)
    pod_spec = v3(docs, resources.POD)["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]
    assert pod_spec["properties"]["containers"]["x-kubernetes-patch-merge-key"] == "name"


def test_v2_refs_resolve(docs: openapi.Documents) -> None:
    doc = json.loads(docs.v2.body)
    assert doc["swagger"] == "2.0"
    for ref in all_refs(doc):
        assert ref.removeprefix("#/definitions/") in doc["definitions"], ref
    create = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"]
    assert create["parameters"][0]["schema"] == {
        "$ref": "#/definitions/io.k8s.api.apps.v1.Deployment"}
    assert "fieldValidation" in {p["name"] for p in create["parameters"]}
    for res in resources.ALL:
        assert collection(res) in doc["paths"]


def test_discovery_points_at_hashed_documents(docs: openapi.Documents) -> None:
    disco = json.loads(docs.discovery.body)["paths"]
    assert set(disco) == {openapi.discovery_key(gv) for gv in resources.group_versions()}
    for key, entry in disco.items():
        assert entry["serverRelativeURL"] == f"/openapi/v3/{key}?hash={docs.v3[key].etag}"


def test_build_is_quick_enough() -> None:
    start = time.perf_counter()
    openapi.build()
    assert time.perf_counter() - start < 5.0


# -- over HTTP --

async def test_hashed_documents_are_immutable(api: TestClient[Any, Any]) -> None:
    resp = await api.get("/openapi/v3")
    url = (await resp.json())["paths"]["apis/apps/v1"]["serverRelativeURL"]
    resp = await api.get(url, headers={"Accept": "application/json"})
    assert resp.status == 200 and resp.headers["Cache-Control"] == "public, immutable"
    etag = resp.headers["ETag"]
    assert (await resp.json())["paths"]
    again = await api.get(url, headers={"If-None-Match": etag})
    assert again.status == 304
    old = await api.get("/openapi/v3/apis/apps/v1?hash=0123", allow_redirects=False)
    assert old.status == 301 and old.headers["Location"] == url
    plain = await api.get("/openapi/v3/apis/apps/v1")
    assert plain.status == 200 and "Cache-Control" not in plain.headers
    missing = await api.get("/openapi/v3/apis/nope/v1")
    assert missing.status == 404


async def test_v2_json_and_protobuf(api: TestClient[Any, Any]) -> None:
    resp = await api.get("/openapi/v2", headers={"Accept": "application/json"})
    assert resp.status == 200 and (await resp.json())["swagger"] == "2.0"
    assert resp.headers["ETag"].startswith('"')
    proto = await api.get("/openapi/v2", headers={"Accept": PROTOBUF_V2})
    assert proto.status == 200
    assert proto.headers["Content-Type"].startswith(
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
    either = await api.get("/openapi/v2", headers={"Accept": f"{PROTOBUF_V2}, application/json"})
    assert either.status == 200
    v3proto = await api.get("/openapi/v3/api/v1", headers={
        "Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"})
    assert v3proto.status == 406


async def test_openapi_needs_a_token(aiohttp_client: AiohttpClient, registry: Registry) -> None:
    anon = await aiohttp_client(build_app(registry, frozenset({TOKEN})))
    assert (await anon.get("/openapi/v3")).status == 401


async def send(api: TestClient[Any, Any], method: str, path: str, body: Any, *,
               validation: str | None = None, ctype: str = "application/json"
               ) -> tuple[int, Doc, list[str]]:
    params = {"fieldValidation": validation} if validation else {}
    data = body if isinstance(body, str) else json.dumps(body)
    resp = await api.request(method, path, data=data, params=params,
                             headers={"Content-Type": ctype})
    return resp.status, await resp.json(), resp.headers.getall("Warning", [])


async def test_strict_create_is_refused(api: TestClient[Any, Any]) -> None:
    code, st, _ = await send(api, "POST", DEPLOYMENTS, deployment("a", replica=2, b=1),
                             validation="Strict")
    assert (code, st["reason"]) == (400, "BadRequest")
    assert st["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: '
                             'strict decoding error: unknown field "spec.replica", '
                             'unknown field "spec.b"')
    assert (await api.get(f"{DEPLOYMENTS}/a")).status == 404


async def test_strict_duplicate_field(api: TestClient[Any, Any]) -> None:
    raw = json.dumps(deployment("dup")).replace('"replicas": 1', '"replicas": 1, "replicas": 2')
    code, st, _ = await send(api, "POST", DEPLOYMENTS, raw, validation="Strict")
    assert code == 400 and st["message"].endswith(
        'strict decoding error: duplicate field "spec.replicas"')


async def test_warn_and_default_accept_with_warnings(api: TestClient[Any, Any]) -> None:
    code, _, warnings = await send(api, "POST", DEPLOYMENTS, deployment("w", replica=2),
                                   validation="Warn")
    assert code == 201 and warnings == ['299 - "unknown field \\"spec.replica\\""']
    code, _, warnings = await send(api, "POST", DEPLOYMENTS, deployment("d", replica=2))
    assert code == 201 and warnings == ['299 - "unknown field \\"spec.replica\\""']
    code, _, warnings = await send(api, "POST", DEPLOYMENTS, deployment("i", replica=2),
                                   validation="Ignore")
    assert code == 201 and warnings == []
    code, _, warnings = await send(api, "POST", DEPLOYMENTS, deployment("ok"),
                                   validation="Strict")
    assert code == 201 and warnings == []


async def test_unsupported_directive(api: TestClient[Any, Any]) -> None:
    code, st, _ = await send(api, "POST", DEPLOYMENTS, deployment("x"), validation="Loud")
    assert (code, st["reason"]) == (422, "Invalid")
    assert st["message"] == ('CreateOptions.meta.k8s.io "" is invalid: fieldValidation: '
                             'Unsupported value: "Loud": supported values: "", "Ignore", '
                             '"Strict", "Warn"')


async def test_strict_update_and_patch(api: TestClient[Any, Any]) -> None:
    code, created, _ = await send(api, "POST", DEPLOYMENTS, deployment("u"))
    assert code == 201
    created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    code, st, _ = await send(api, "PUT", f"{DEPLOYMENTS}/u", created, validation="Strict")
    assert code == 400 and st["message"].endswith(
        'unknown field "spec.template.spec.containers[0].imagePullPolicyy"')
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "imagePolicy": "x"}]}}}}
    code, st, _ = await send(api, "PATCH", f"{DEPLOYMENTS}/u", patch, validation="Strict",
                             ctype=STRATEGIC)
    assert (code, st["reason"]) == (422, "Invalid")
    assert st["message"] == (' "" is invalid: patch: Invalid value: "map[spec:map[template:map['
                             'spec:map[containers:[map[imagePolicy:x name:c]]]]]]": strict '
                             'decoding error: unknown field '
                             '"spec.template.spec.containers[0].imagePolicy"')
    code, st, _ = await send(api, "PATCH", f"{DEPLOYMENTS}/u", '{"spec": {"paused": true, '
                             '"paused": false}}', validation="Strict", ctype=MERGE)
    assert code == 422 and st["message"].endswith('duplicate field "spec.paused"')
    ops = '[{"op": "add", "path": "/spec/paused", "value": true, "valu": 1, "op": "add"}]'
    code, st, _ = await send(api, "PATCH", f"{DEPLOYMENTS}/u", ops, validation="Strict",
                             ctype=JSON_PATCH)
    assert code == 422 and st["message"].endswith(
        'strict decoding error: json patch unknown field "[0].valu", '
        'json patch duplicate field "[0].op"')
    code, out, warnings = await send(api, "PATCH", f"{DEPLOYMENTS}/u", {"spec": {"replicas": 3}},
                                     validation="Strict", ctype=MERGE)
    assert (code, out["spec"]["replicas"], warnings) == (200, 3, [])


async def test_patch_is_not_blamed_for_fields_already_stored(api: TestClient[Any, Any]) -> None:
    code, _, _ = await send(api, "POST", DEPLOYMENTS, deployment("old", extra=1),
                            validation="Ignore")
    assert code == 201
    code, _, warnings = await send(api, "PATCH", f"{DEPLOYMENTS}/old", {"spec": {"replicas": 2}},
                                   validation="Strict", ctype=STRATEGIC)
    assert (code, warnings) == (200, [])
    code, _, warnings = await send(api, "PATCH", f"{DEPLOYMENTS}/old", {"spec": {"more": 2}},
                                   ctype=MERGE)
    assert (code, warnings) == (200, ['299 - "unknown field \\"spec.more\\""'])


async def test_scale_body_is_a_scale(api: TestClient[Any, Any]) -> None:
    code, _, _ = await send(api, "POST", DEPLOYMENTS, deployment("s"))
    assert code == 201
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
             "metadata": {"name": "s", "namespace": "default"}, "spec": {"replica": 2}}
    code, st, _ = await send(api, "PUT", f"{DEPLOYMENTS}/s/scale", scale, validation="Strict")
    assert code == 400 and st["message"] == (
        'Scale in version "v1" cannot be handled as a Scale: strict decoding error: '
        'unknown field "spec.replica"')
