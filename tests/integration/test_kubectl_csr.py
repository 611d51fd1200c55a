"""certificates.k8s.io/v1 CertificateSigningRequests through a real
``netplane server`` and the real kubectl: a node asks (``--as
system:node:NAME``, the user a node agent is), the server records who
asked, ``kubectl certificate approve`` approves through /approval, a
signer's /status write issues the certificate, ``deny`` of an approved one
fails as it does against kube, and the Python client lists, reads and
watches them. Loopback only."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.loopback import HAVE_KUBECTL, Cluster, api_server

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed (looked "
                                                         "on PATH and in /usr/bin/kubectl)")

NODE_USER = "system:node:node-1"
AS_NODE = (f"--as={NODE_USER}", "--as-group=system:nodes")
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
CSR = """\
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {{name: {name}}}
spec:
  request: {request}
  signerName: {signer}
  expirationSeconds: {seconds}
  usages: [digital signature, client auth]
  username: someone-else
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with api_server(tmp_path_factory.mktemp("csr")) as running:
        yield running


def new_request() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A node's key and its request for a client certificate, as the kubelet makes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, NODE_USER)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM)


def issue(request_pem: bytes) -> bytes:
    """What a signer writes: a certificate for the request's key and subject
    from its own (throwaway) CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test signer")])
    request = x509.load_pem_x509_csr(request_pem)
    start = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca)
            .public_key(request.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(hours=1))
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def ask(cluster: Cluster, *, signer: str = KUBELET_CLIENT,
        seconds: int = 3600) -> tuple[str, bytes]:
    """A node's request, made with kubectl as the node; its name and PEM."""
    name = f"node-csr-{uuid.uuid4().hex[:10]}"
    _, pem = new_request()
    cluster.kubectl(*AS_NODE, "create", "-f", "-", stdin=CSR.format(
        name=name, request=base64.b64encode(pem).decode(), signer=signer, seconds=seconds))
    return name, pem


def get(cluster: Cluster, name: str) -> Any:
    return json.loads(cluster.kubectl("get", "csr", name, "-o", "json").stdout)


def row(cluster: Cluster, name: str) -> list[str]:
    lines = cluster.kubectl("get", "csr", name).stdout.splitlines()
    assert lines[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION",
                                "CONDITION"]
    return lines[1].split()


def sign(cluster: Cluster, name: str, pem: bytes) -> bytes:
    cert = issue(pem)
    patch = json.dumps({"status": {"certificate": base64.b64encode(cert).decode()}})
    cluster.kubectl("patch", "csr", name, "--subresource=status", "--type=merge", "-p", patch)
    return cert


def test_a_node_asks_an_administrator_approves_and_a_signer_issues(cluster: Cluster) -> None:
    name, pem = ask(cluster)
    asked = get(cluster, name)
    assert asked["spec"]["username"] == NODE_USER
    assert asked["spec"]["groups"] == ["system:nodes", "system:authenticated"]
    assert row(cluster, name)[2:] == [KUBELET_CLIENT, NODE_USER, "60m", "Pending"]
    # The node reads its own request back, as the kubelet waits on it.
    assert cluster.kubectl(*AS_NODE, "get", "csr", name, "-o", "name").stdout.strip() == \
        f"certificatesigningrequest.certificates.k8s.io/{name}"

    out = cluster.kubectl("certificate", "approve", name).stdout
    assert out.strip() == f"certificatesigningrequest.certificates.k8s.io/{name} approved"
    approved = get(cluster, name)["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in approved] == [
        ("Approved", "True", "KubectlApprove")]
    assert approved[0]["lastUpdateTime"] and approved[0]["lastTransitionTime"]
    assert row(cluster, name)[-1] == "Approved"

    cert = sign(cluster, name, pem)
    assert base64.b64decode(get(cluster, name)["status"]["certificate"]) == cert
    assert row(cluster, name)[-1] == "Approved,Issued"

    denied = cluster.kubectl("certificate", "deny", name, check=False)
    assert denied.returncode != 0
    assert f'certificate signing request "{name}" is already Approved' in denied.stderr
    assert [c["type"] for c in get(cluster, name)["status"]["conditions"]] == ["Approved"]


def test_describe_shows_the_requester_and_the_requested_subject(cluster: Cluster) -> None:
    name, pem = ask(cluster, seconds=86400)
    cluster.kubectl("certificate", "approve", name)
    sign(cluster, name, pem)
    text = cluster.kubectl("describe", "csr", name).stdout
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
             for line in text.splitlines() if ":" in line}
    assert lines["Name"] == name
    assert lines["Requesting User"] == NODE_USER
    assert lines["Signer"] == KUBELET_CLIENT
    assert lines["Requested Duration"] == "24h"
    assert lines["Status"] == "Approved,Issued"
    assert lines["Common Name"] == NODE_USER
    assert lines["Organization"] == "system:nodes"


def test_a_node_may_not_approve_and_a_request_may_not_be_too_short(cluster: Cluster) -> None:
    name, _ = ask(cluster)
    refused = cluster.kubectl(*AS_NODE, "certificate", "approve", name, check=False)
    assert refused.returncode != 0
    assert (f'certificatesigningrequests.certificates.k8s.io "{name}" is forbidden: User '
            f'"{NODE_USER}" cannot update resource "certificatesigningrequests/approval" in API '
            'group "certificates.k8s.io" at the cluster scope') in refused.stderr
    _, pem = new_request()
    short = cluster.kubectl(*AS_NODE, "create", "-f", "-", check=False, stdin=CSR.format(
        name="too-short", request=base64.b64encode(pem).decode(), signer=KUBELET_CLIENT,
        seconds=60))
    assert short.returncode != 0
    assert ("spec.expirationSeconds: Invalid value: 60: may not specify a duration less than "
            "600 seconds (10 minutes)") in short.stderr


def test_deny_then_delete(cluster: Cluster) -> None:
    name, _ = ask(cluster, signer="example.com/custom")
    cluster.kubectl("certificate", "deny", name)
    assert row(cluster, name)[-1] == "Denied"
    again = cluster.kubectl("certificate", "approve", name, check=False)
    assert f'certificate signing request "{name}" is already Denied' in again.stderr
    cluster.kubectl("delete", "csr", name)
    gone = cluster.kubectl("get", "csr", name, check=False)
    assert gone.returncode != 0
    assert (f'certificatesigningrequests.certificates.k8s.io "{name}" not found'
            in gone.stderr)


def test_discovery_and_explain(cluster: Cluster) -> None:
    resources = cluster.kubectl("api-resources", "--api-group=certificates.k8s.io").stdout
    assert resources.splitlines()[1].split() == [
        "certificatesigningrequests", "csr", "certificates.k8s.io/v1", "false",
        "CertificateSigningRequest"]
    explained = cluster.kubectl("explain", "csr.spec.signerName").stdout
    assert "GROUP:      certificates.k8s.io" in explained
    assert "signerName indicates the requested signer" in explained


def test_the_python_client_lists_reads_and_watches(cluster: Cluster) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api: Any = kubernetes.client.CertificatesV1Api(kubernetes.config.new_client_from_config(
        str(cluster.kubeconfig)))
    name, _ = ask(cluster)
    listing = api.list_certificate_signing_request()
    assert name in [item.metadata.name for item in listing.items]
    read = api.read_certificate_signing_request(name)
    assert (read.spec.username, read.spec.signer_name) == (NODE_USER, KUBELET_CLIENT)
    assert read.spec.usages == ["digital signature", "client auth"]

    cluster.kubectl("certificate", "approve", name)
    events = kubernetes.watch.Watch().stream(
        api.list_certificate_signing_request, field_selector=f"metadata.name={name}",
        resource_version=listing.metadata.resource_version, timeout_seconds=30)
    seen = []
    for event in events:
        seen.append(event["type"])
        conditions = event["object"].status.conditions or []
        if [c.type for c in conditions] == ["Approved"]:
            break
    assert seen == ["MODIFIED"]  # the list was read after the request was made

    # The server refuses what kubectl refuses before asking: Denied beside Approved.
    approved = api.read_certificate_signing_request(name)
    approved.status.conditions.append(kubernetes.client.V1CertificateSigningRequestCondition(
        type="Denied", status="True", reason="Changed"))
    with pytest.raises(kubernetes.client.ApiException) as refused:
        api.replace_certificate_signing_request_approval(name, approved)
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["details"]["causes"][0] == {
        "reason": "FieldValueInvalid", "field": "status.conditions[1].type",
        "message": 'Invalid value: "Denied": Approved and Denied conditions are mutually '
                   "exclusive"}
