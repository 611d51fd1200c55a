"""Bad input through a real in-process API server: what the Schemathesis run
(tests/integration/test_api_fuzz.py) found, one regression test each, and
the malformed bodies it cannot send: broken protobuf, bodies over
kube-apiserver's 3 MiB limit, wrong types and unknown fields. Every answer
is a ``Status`` with a 4xx code and a message that says what was wrong."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api import decoding, protobuf
from netplane.api.meta import Obj
from netplane.cluster.apiserver import fieldvalidation
from tests.unit.test_protobuf import CAPTURED, _mutations, envelope, ld, meta, msg

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SERVICES = "/api/v1/namespaces/default/services"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
MERGE = "application/merge-patch+json"
LIMIT = 3 * 1024 * 1024


async def send(api: TestClient[Any, Any], method: str, path: str, data: bytes | str, *,
               ctype: str = "application/json",
               params: dict[str, str] | None = None) -> tuple[int, Obj, Any]:
    resp = await api.request(method, path, data=data, params=params,
                             headers={"Content-Type": ctype})
    text = await resp.text()
    return resp.status, (json.loads(text) if text else {}), resp.headers


def status_of(code: int, body: Obj) -> Obj:
    assert body.get("kind") == "Status" and body.get("code") == code, body
    return body


def configmap(name: str, **extra: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra}


def deployment(name: str, replicas: Any = 1) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


# -- found by the fuzzer --

async def test_many_unknown_fields_give_a_bounded_set_of_warnings(
        api: TestClient[Any, Any]) -> None:
    """A body with hundreds of unknown fields once answered with more than
    100 Warning headers, which Python's http.client refuses to read."""
    body = configmap("many", **{f"unknown{i:03}": i for i in range(300)})
    code, out, headers = await send(api, "POST", CONFIGMAPS, json.dumps(body))
    assert code == 201, out
    warnings = headers.getall("Warning")
    assert 0 < len(warnings) <= fieldvalidation.MAX_WARNINGS
    assert warnings[0] == '299 - "unknown field \\"unknown000\\""'


def test_warnings_are_cut_as_kube_apiserver_cuts_them() -> None:
    short = [f"w{i}" for i in range(3)]
    assert fieldvalidation.recorded([*short, "w1", ""]) == short  # once each, no empty ones
    long = ["x" * 1000, "y" * 1000, "z" * 1000, "a" * 1000, "b" * 1000]
    kept = fieldvalidation.recorded(long)
    assert [len(t) for t in kept] == [256] * 5  # past 4096 in all: every one cut to 256
    assert len(fieldvalidation.recorded(["c" * 300 + str(i) for i in range(100)])) == 16


async def test_a_resource_version_that_is_not_a_number_is_400(
        api: TestClient[Any, Any]) -> None:
    """PUT with metadata.resourceVersion "o" was a 500 (int("o"))."""
    code, out, _ = await send(api, "POST", CONFIGMAPS, json.dumps(configmap("rv")))
    assert code == 201, out
    body = configmap("rv", data={"a": "b"})
    body["metadata"]["resourceVersion"] = "o"
    code, out, _ = await send(api, "PUT", f"{CONFIGMAPS}/rv", json.dumps(body))
    assert "metadata.resourceVersion must be a number" in status_of(400, out)["message"]


async def test_status_updates_are_validated_and_pruned(api: TestClient[Any, Any]) -> None:
    """PUT on /status stored whatever the status held, unknown fields included."""
    code, out, _ = await send(api, "POST", DEPLOYMENTS, json.dumps(deployment("st")))
    assert code == 201, out
    out["status"] = {"replicas": 1, "bogus": {"x": 1}}
    code, out, headers = await send(api, "PUT", f"{DEPLOYMENTS}/st/status", json.dumps(out))
    assert code == 200, out
    assert out["status"] == {"replicas": 1}
    assert 'unknown field \\"status.bogus\\"' in headers.get("Warning", "")


@pytest.mark.parametrize("body", ["null", "~"])
async def test_a_null_body_is_400(api: TestClient[Any, Any], body: str) -> None:
    """A body of JSON null (or YAML ~) reached the registry as None: a 500."""
    _, out, _ = await send(api, "POST", CONFIGMAPS, body, ctype="application/yaml")
    assert "cannot unmarshal null into Go value of type ConfigMap" in \
        status_of(400, out)["message"]


async def test_null_fields_are_left_out_as_go_decodes_them(api: TestClient[Any, Any]) -> None:
    """{"metadata": null} reached meta.meta() as None: a 500."""
    code, out, _ = await send(api, "POST", SERVICES, '{"metadata": null}')
    assert "metadata.name" in status_of(422, out)["message"]
    body = configmap("nulls", data=None)
    body["metadata"]["labels"] = None
    code, out, _ = await send(api, "POST", CONFIGMAPS, json.dumps(body))
    assert code == 201 and "data" not in out and "labels" not in out["metadata"], out
    code, out, _ = await send(api, "PUT", f"{CONFIGMAPS}/nulls",
                              json.dumps({**configmap("nulls"), "metadata": None}))
    assert code == 200 and out["metadata"]["name"] == "nulls", out


@pytest.mark.parametrize("grace", ['"x"', "1.5", "true"])
async def test_delete_options_with_a_grace_period_that_is_not_a_number_are_400(
        api: TestClient[Any, Any], grace: str) -> None:
    """DeleteOptions {"gracePeriodSeconds": "x"} was int("x"): a 500."""
    code, out, _ = await send(api, "POST", CONFIGMAPS, json.dumps(configmap("g")))
    assert code == 201, out
    code, out, _ = await send(api, "DELETE", f"{CONFIGMAPS}/g",
                              f'{{"gracePeriodSeconds": {grace}}}')
    assert "gracePeriodSeconds must be a whole number" in status_of(400, out)["message"]


# -- unknown fields and wrong types --

async def test_unknown_fields_are_dropped_or_refused(api: TestClient[Any, Any]) -> None:
    body = json.dumps(configmap("u", data={"a": "b"}, colour="blue"))
    code, out, _ = await send(api, "POST", CONFIGMAPS, body,
                              params={"fieldValidation": "Strict"})
    assert status_of(400, out)["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "colour"')
    code, out, headers = await send(api, "POST", CONFIGMAPS, body)
    assert code == 201 and "colour" not in out, out
    assert headers["Warning"] == '299 - "unknown field \\"colour\\""'
    code, stored, _ = await send(api, "GET", f"{CONFIGMAPS}/u", b"")
    assert "colour" not in stored and stored["data"] == {"a": "b"}


@pytest.mark.parametrize(("body", "message"), [
    (deployment("t", replicas="three"),
     "json: cannot unmarshal string into Go struct field Deployment.spec.replicas of type int32"),
    (deployment("t", replicas=2**40), "Deployment.spec.replicas of type int32: value out of "
                                      "range"),
    (deployment("t", replicas=1.5), "cannot unmarshal number into Go struct field "
                                    "Deployment.spec.replicas of type int32"),
    ({**deployment("t"), "metadata": "t"},
     "cannot unmarshal string into Go struct field Deployment.metadata of type object"),
    ([deployment("t")], "json: cannot unmarshal array into Go value of type Deployment"),
    ({**deployment("t"), "spec": {**deployment("t")["spec"], "paused": "yes"}},
     "Deployment.spec.paused of type bool"),
])
async def test_wrong_types_are_400_whatever_field_validation_says(
        api: TestClient[Any, Any], body: Any, message: str) -> None:
    for directive in ("Strict", "Warn", "Ignore"):
        _, out, _ = await send(api, "POST", DEPLOYMENTS, json.dumps(body),
                                  params={"fieldValidation": directive})
        assert message in status_of(400, out)["message"], out
        assert out["message"].startswith(
            'Deployment in version "v1" cannot be handled as a Deployment: json: ')


async def test_a_patch_that_leaves_a_wrong_type_is_422(api: TestClient[Any, Any]) -> None:
    code, out, _ = await send(api, "POST", DEPLOYMENTS, json.dumps(deployment("p")))
    assert code == 201, out
    code, out, _ = await send(api, "PATCH", f"{DEPLOYMENTS}/p",
                              json.dumps({"spec": {"replicas": {"n": 2}}}), ctype=MERGE)
    assert status_of(422, out)["details"]["causes"][0]["field"] == "patch"
    assert "Deployment.spec.replicas of type int32" in out["message"]


def test_int_or_string_quantities_and_nulls_are_accepted() -> None:
    name = "io.k8s.api.core.v1.Service"
    ports = [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}]
    assert decoding.type_errors({"spec": {"ports": ports, "selector": None}}, name,
                                "Service") == []
    pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1,
                                                                       "memory": "1Gi"}}}]}}
    assert decoding.type_errors(pod, "io.k8s.api.core.v1.Pod", "Pod") == []
    assert decoding.type_errors({"spec": {"ports": [{"port": float("nan")}]}}, name,
                                "Service")[0].path == "spec.ports[0].port"


# -- bodies too large, malformed protobuf --

async def test_a_body_over_3_mib_is_413_with_kube_apiservers_status(
        api: TestClient[Any, Any]) -> None:
    body = json.dumps(configmap("big", data={"a": "x" * LIMIT}))
    code, out, _ = await send(api, "POST", CONFIGMAPS, body)
    assert code == 413
    assert out == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Request entity too large: limit is 3145728",
                   "reason": "RequestEntityTooLarge", "code": 413}


async def test_a_body_of_exactly_3_mib_is_read(api: TestClient[Any, Any]) -> None:
    head = json.dumps(configmap("edge", data={"a": ""}))
    body = head.replace('"a": ""', '"a": "' + "x" * (LIMIT - len(head)) + '"')
    assert len(body) == LIMIT
    code, out, _ = await send(api, "POST", CONFIGMAPS, body)
    assert code != 413, out


@pytest.mark.parametrize(("body", "message"), [
    (b"\x00\x01\x02", "magic bytes"),
    (b"k8s\x00\x0a\x05\x0a\x02v1", "malformed"),
    (b"k8s\x00\x08\xff\xff", "malformed"),
    (envelope("v1", "ConfigMap", msg(1, ld(1, b"\xff\xfe"))), "UTF-8"),
    (envelope("apps/v1", "Deployment", meta("d")), "does not match the resource"),
])
async def test_malformed_protobuf_bodies_are_400(api: TestClient[Any, Any], body: bytes,
                                                 message: str) -> None:
    _, out, _ = await send(api, "POST", CONFIGMAPS, body, ctype=protobuf.CONTENT_TYPE)
    assert message in status_of(400, out)["message"], out


async def test_mutated_protobuf_bodies_never_break_the_server(
        api: TestClient[Any, Any]) -> None:
    rng = random.Random(20261201)
    seeds = [bytes.fromhex(b) for b, _ in CAPTURED.values()]
    codes: dict[int, int] = {}
    for _ in range(300):
        code, out, _ = await send(api, "POST", SERVICES, _mutations(rng, seeds),
                                  ctype=protobuf.CONTENT_TYPE)
        codes[code] = codes.get(code, 0) + 1
        if code >= 400:
            status_of(code, out)
    assert all(c < 500 for c in codes), codes
