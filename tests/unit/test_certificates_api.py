"""CertificateSigningRequests through a real in-process API server: the
requester the server records, what nodes, administrators and kube's
certificate-controller account may do (RBAC, and ``approve`` / ``sign`` on
the signer), the three ways of writing one, the table, discovery and a
protobuf approval body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from netplane.api import certificates
from netplane.api.meta import Obj
from netplane.cluster.apiserver.registry import Registry
from netplane.cluster.server import build_app
from tests.unit.test_apiserver import TABLE, TOKEN, AiohttpClient
from tests.unit.test_certificates import b64, certificate_pem, request_pem
from tests.unit.test_protobuf import envelope, ld, msg, num

Api = TestClient[Any, Any]
GV = "/apis/certificates.k8s.io/v1"
CSRS = f"{GV}/certificatesigningrequests"
NODE = {"Impersonate-User": "system:node:n1", "Impersonate-Group": "system:nodes"}
CONTROLLER_SA = "/api/v1/namespaces/kube-system/serviceaccounts"


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, registry: Registry) -> Api:
    return await aiohttp_client(build_app(registry, frozenset({TOKEN})))


async def call(api: Api, method: str, path: str, body: Any = None, *, token: str = TOKEN,
               headers: dict[str, str] | None = None) -> tuple[int, Obj]:
    sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
            **(headers or {})}
    resp = await api.request(method, path, data=json.dumps(body) if body is not None else None,
                             headers=sent)
    text = await resp.text()
    return resp.status, json.loads(text) if text else {}


def request(name: str, signer: str = certificates.KUBELET_CLIENT, **spec: Any) -> Obj:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": b64(request_pem()), "signerName": signer,
                     "usages": ["digital signature", "client auth"], **spec}}


def decided(obj: Obj, ctype: str) -> Obj:
    out = json.loads(json.dumps(obj))
    out.setdefault("status", {}).setdefault("conditions", []).append(
        {"type": ctype, "status": "True", "reason": f"Test{ctype}"})
    return out


async def node_creates(api: Api, name: str, **spec: Any) -> Obj:
    code, out = await call(api, "POST", CSRS, request(name, **spec), headers=NODE)
    assert code == 201, out
    return out


async def test_the_server_records_who_asked_and_nothing_of_a_status(api: Api) -> None:
    body = request("n1-client", username="system:admin", groups=["system:masters"])
    body["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    code, out = await call(api, "POST", CSRS, body, headers=NODE)
    assert code == 201, out
    assert out["spec"]["username"] == "system:node:n1"
    assert out["spec"]["groups"] == ["system:nodes", "system:authenticated"]
    assert out["status"] == {}
    code, listed = await call(api, "GET", f"{CSRS}?fieldSelector=spec.signerName="
                              f"{certificates.KUBELET_CLIENT}", headers=NODE)
    assert code == 200 and [i["metadata"]["name"] for i in listed["items"]] == ["n1-client"]


async def test_a_node_may_ask_but_not_approve(api: Api) -> None:
    csr = await node_creates(api, "n1-ask")
    code, out = await call(api, "PUT", f"{CSRS}/n1-ask/approval", decided(csr, "Approved"),
                           headers=NODE)
    assert code == 403
    assert out["message"] == (
        'certificatesigningrequests.certificates.k8s.io "n1-ask" is forbidden: User '
        '"system:node:n1" cannot update resource "certificatesigningrequests/approval" in API '
        'group "certificates.k8s.io" at the cluster scope')


async def test_an_invalid_request_is_422_with_the_field(api: Api) -> None:
    code, out = await call(api, "POST", CSRS, request("bad", expirationSeconds=60,
                                                      signerName="nodomain"), headers=NODE)
    assert code == 422
    assert [c["field"] for c in out["details"]["causes"]] == ["spec.signerName",
                                                              "spec.expirationSeconds"]


async def test_approve_then_sign_then_the_table_says_so(api: Api) -> None:
    csr = await node_creates(api, "n1-flow", expirationSeconds=3600)
    code, approved = await call(api, "PUT", f"{CSRS}/n1-flow/approval", decided(csr, "Approved"))
    assert code == 200, approved
    cond = approved["status"]["conditions"][0]
    assert cond["type"] == "Approved" and cond["lastUpdateTime"] and cond["lastTransitionTime"]
    signed = {**approved, "status": {**approved["status"],
                                     "certificate": b64(certificate_pem())}}
    code, out = await call(api, "PUT", f"{CSRS}/n1-flow/status", signed)
    assert code == 200, out
    assert out["status"]["certificate"] == signed["status"]["certificate"]
    code, table = await call(api, "GET", f"{CSRS}/n1-flow", headers={"Accept": TABLE})
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
    assert table["rows"][0]["cells"][2:] == [certificates.KUBELET_CLIENT, "system:node:n1",
                                             "60m", "Approved,Issued"]


async def test_deny_after_approve_is_refused(api: Api) -> None:
    csr = await node_creates(api, "n1-twice")
    _, approved = await call(api, "PUT", f"{CSRS}/n1-twice/approval", decided(csr, "Approved"))
    code, out = await call(api, "PUT", f"{CSRS}/n1-twice/approval", decided(approved, "Denied"))
    assert code == 422
    assert out["message"] == (
        'CertificateSigningRequest.certificates.k8s.io "n1-twice" is invalid: '
        'status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions '
        "are mutually exclusive")


async def test_the_object_itself_keeps_spec_and_status(api: Api) -> None:
    csr = await node_creates(api, "n1-main")
    changed = decided(csr, "Approved")
    changed["spec"]["usages"] = ["server auth"]
    changed["metadata"]["labels"] = {"seen": "yes"}
    code, out = await call(api, "PUT", f"{CSRS}/n1-main", changed)
    assert code == 200, out
    assert out["metadata"]["labels"] == {"seen": "yes"}
    assert (out["spec"], out["status"]) == (csr["spec"], {})


async def controller_token(api: Api) -> str:
    """A token of kube-system/certificate-controller, which kube's role binds."""
    assert (await call(api, "POST", CONTROLLER_SA,
                       {"metadata": {"name": "certificate-controller"}}))[0] == 201
    code, out = await call(api, "POST", f"{CONTROLLER_SA}/certificate-controller/token",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {}})
    assert code == 201, out
    return str(out["status"]["token"])


async def test_the_certificate_controller_approves_and_signs_kube_signers_only(api: Api) -> None:
    token = await controller_token(api)
    kubelet = await node_creates(api, "n1-kubelet")
    code, approved = await call(api, "PUT", f"{CSRS}/n1-kubelet/approval",
                                decided(kubelet, "Approved"), token=token)
    assert code == 200, approved
    signed = {**approved, "status": {**approved["status"], "certificate": b64(certificate_pem())}}
    assert (await call(api, "PUT", f"{CSRS}/n1-kubelet/status", signed, token=token))[0] == 200
    custom = await node_creates(api, "n1-custom", signerName="example.com/custom")
    code, out = await call(api, "PUT", f"{CSRS}/n1-custom/approval", decided(custom, "Approved"),
                           token=token)
    assert code == 403
    assert out["message"] == (
        'certificatesigningrequests.certificates.k8s.io "n1-custom" is forbidden: user not '
        'permitted to approve requests with signerName "example.com/custom"')
    _, approved = await call(api, "PUT", f"{CSRS}/n1-custom/approval", decided(custom, "Approved"))
    signed = {**approved, "status": {**approved["status"], "certificate": b64(certificate_pem())}}
    code, out = await call(api, "PUT", f"{CSRS}/n1-custom/status", signed, token=token)
    assert code == 403
    assert out["message"].endswith('user not permitted to sign requests with signerName '
                                   '"example.com/custom"')


async def test_no_client_certificate_in_system_masters(api: Api) -> None:
    body = request("masters", certificates.KUBE_APISERVER_CLIENT,
                   request=b64(request_pem("me", ("system:masters",))))
    code, out = await call(api, "POST", CSRS, body)
    assert code == 403
    assert out["message"] == (
        'certificatesigningrequests.certificates.k8s.io "masters" is forbidden: use of '
        "kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed")


async def test_discovery_lists_the_kind_and_its_subresources(api: Api) -> None:
    code, out = await call(api, "GET", GV)
    assert code == 200
    by_name = {r["name"]: r for r in out["resources"]}
    assert by_name["certificatesigningrequests"]["shortNames"] == ["csr"]
    assert by_name["certificatesigningrequests"]["namespaced"] is False
    for sub in ("approval", "status"):
        assert by_name[f"certificatesigningrequests/{sub}"]["verbs"] == ["get", "patch", "update"]


def protobuf_approval(name: str, request_b: bytes) -> bytes:
    """An approval as client-go's typed client sends it, numbered by
    k8s.io/api/certificates/v1 generated.proto: spec {1 request, 7 signerName,
    5 usages}, status {1 conditions {1 type, 6 status, 2 reason, 4 lastUpdateTime}}."""
    spec = msg(2, ld(1, request_b), ld(7, certificates.KUBELET_CLIENT), ld(5, "client auth"),
               ld(5, "digital signature"), ld(2, "system:node:n1"))
    stamp = msg(4, num(1, 1767322800))  # meta.Time {1 seconds}: 2026-01-02T03:00:00Z
    status = msg(3, msg(1, ld(1, "Approved"), ld(6, "True"), ld(2, "KubectlApprove"), stamp))
    return envelope("certificates.k8s.io/v1", "CertificateSigningRequest",
                    msg(1, ld(1, name)) + spec + status)


async def test_a_protobuf_approval_body_is_read(api: Api) -> None:
    csr = await node_creates(api, "n1-proto")
    pem = certificates.decoded(csr["spec"]["request"])
    assert pem is not None
    resp = await api.put(f"{CSRS}/n1-proto/approval", data=protobuf_approval("n1-proto", pem),
                         headers={"Authorization": f"Bearer {TOKEN}",
                                  "Content-Type": "application/vnd.kubernetes.protobuf"})
    out = await resp.json()
    assert resp.status == 200, out
    cond = out["status"]["conditions"][0]
    assert (cond["type"], cond["reason"], cond["lastUpdateTime"]) == (
        "Approved", "KubectlApprove", "2026-01-02T03:00:00Z")
    assert out["spec"] == csr["spec"]
