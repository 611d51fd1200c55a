"""CertificateSigningRequests: kube 1.32's validation of what a request
holds, and its strategy of who changes what (the object, /status,
/approval), on objects in their JSON form. Keys are made afresh for each
test (an EC P-256 key is quick to make)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netplane.api import certificates, resources, signing, validation
from netplane.api.meta import Obj
from netplane.api.signing import Write

NOW, LATER = "2026-01-02T03:04:05Z", "2026-01-02T04:00:00Z"
NODE_USER = {"username": "system:node:n1", "groups": ["system:nodes", "system:authenticated"]}


def request_pem(common_name: str = "system:node:n1",
                organizations: tuple[str, ...] = ("system:nodes",)) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
                        + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def certificate_pem(common_name: str = "system:node:n1") -> bytes:
    """A self-signed certificate: what a signer's /status write carries."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def csr(**spec: Any) -> Obj:
    body: Obj = {"request": b64(request_pem()), "signerName": certificates.KUBELET_CLIENT,
                 "usages": ["digital signature", "client auth"]}
    body.update(spec)
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "node-csr-Ab_9"}, "spec": body, "status": {}}


def condition(ctype: str, status: str = "True", **more: str) -> Obj:
    return {"type": ctype, "status": status, **more}


def with_status(obj: Obj, **status: Any) -> Obj:
    out = copy.deepcopy(obj)
    out["status"] = status
    return out


def errors(obj: Obj) -> list[str]:
    return [str(e) for e in validation.validate(obj, resources.CERTIFICATESIGNINGREQUEST)]


# -- what a request may hold --

def test_a_signed_request_with_usages_and_a_signer_is_valid() -> None:
    assert errors(csr(expirationSeconds=600)) == []


def test_a_name_is_any_path_segment() -> None:
    obj = csr()
    obj["metadata"]["name"] = "node-csr-UPPER_and_under"
    assert errors(obj) == []
    obj["metadata"]["name"] = "a/b"
    assert errors(obj) == ["metadata.name: Invalid value: \"a/b\": may not be '.' or '..' "
                           "and may not contain '/' or '%'"]


@pytest.mark.parametrize(("pem", "why"), [
    (b"", "PEM block type must be CERTIFICATE REQUEST"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "PEM block type must be CERTIFICATE REQUEST"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
     "x509: malformed certificate request"),
])
def test_the_request_must_be_a_certificate_request_pem_block(pem: bytes, why: str) -> None:
    raw = ", ".join(f"0x{b:x}" for b in pem)
    assert errors(csr(request=b64(pem))) == [f"spec.request: Invalid value: []byte{{{raw}}}: "
                                             f"{why}"]


def test_a_request_whose_signature_does_not_verify_is_refused() -> None:
    pem = request_pem()
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1  # the last byte of the signature
    forged = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    assert errors(csr(request=b64(forged)))[0].endswith(": x509: ECDSA verification failure")


def test_a_missing_request_reads_as_a_nil_byte_slice() -> None:
    obj = csr()
    del obj["spec"]["request"]
    assert errors(obj) == ["spec.request: Invalid value: []byte(nil): PEM block type must be "
                           "CERTIFICATE REQUEST"]


def test_usages_are_required_known_and_once_each() -> None:
    assert errors(csr(usages=[])) == ["spec.usages: Required value"]
    got = errors(csr(usages=["client auth", "flying", "client auth"]))
    assert got[0].startswith('spec.usages[1]: Unsupported value: "flying": supported values: '
                             '"any", "cert sign", "client auth",')
    assert got[1] == 'spec.usages[2]: Duplicate value: "client auth"'


@pytest.mark.parametrize(("signer", "why"), [
    (None, "spec.signerName: Required value"),
    ("example.com", 'spec.signerName: Invalid value: "example.com": must be a fully qualified '
                    "domain and path of the form 'example.com/signer-name'"),
    ("a/b/c", 'spec.signerName: Invalid value: "a/b/c": must be a fully qualified domain and '
              "path of the form 'example.com/signer-name'"),
    ("example/x", 'spec.signerName: Invalid value: "example": should be a domain with at least '
                  "two segments separated by dots"),
    ("Example.com/x", 'spec.signerName: Invalid value: "Example.com": validating label '
                      '"Example": a lowercase RFC 1123 label must consist of lower case '
                      "alphanumeric characters or '-', and must start and end with an "
                      "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                      "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
    ("example.com/Bad", 'spec.signerName: Invalid value: "Bad": validating label "Bad": a '
                        "lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                        "characters, '-' or '.', and must start and end with an alphanumeric "
                        "character (e.g. 'example.com', regex used for validation is "
                        r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    (certificates.LEGACY_UNKNOWN, 'spec.signerName: Invalid value: '
                                  '"kubernetes.io/legacy-unknown": the legacy signerName is '
                                  "not allowed via this API version"),
])
def test_the_signer_is_a_qualified_name(signer: str | None, why: str) -> None:
    assert errors(csr(signerName=signer)) == [why]


def test_a_custom_signer_with_a_namespaced_path_is_valid() -> None:
    assert errors(csr(signerName="example.com/my-namespace.my-signer")) == []


def test_expiration_is_ten_minutes_at_least() -> None:
    assert errors(csr(expirationSeconds=599)) == [
        "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 "
        "seconds (10 minutes)"]


def test_conditions_approved_denied_and_failed_are_true_once_each() -> None:
    obj = with_status(csr(), conditions=[
        condition("Approved", "False"), condition("Denied"), condition("Denied"),
        condition("Ready", "Maybe"), condition("", "True")])
    assert errors(obj) == [
        'status.conditions[0].status: Unsupported value: "False": supported values: "True"',
        'status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions '
        "are mutually exclusive",
        'status.conditions[2].type: Invalid value: "Denied": Approved and Denied conditions '
        "are mutually exclusive",
        'status.conditions[2].type: Duplicate value: "Denied"',
        'status.conditions[3].status: Unsupported value: "Maybe": supported values: "False", '
        '"True", "Unknown"',
        "status.conditions[4].type: Required value"]


@pytest.mark.parametrize(("pem", "why"), [
    (b"not pem at all", "must contain at least one CERTIFICATE PEM block"),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
     'only CERTIFICATE PEM blocks are allowed, found "PRIVATE KEY"'),
    (b"-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END CERTIFICATE-----\n",
     "no PEM block headers are permitted"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "x509: malformed certificate"),
])
def test_the_certificate_is_certificate_pem_blocks(pem: bytes, why: str) -> None:
    obj = with_status(csr(), certificate=b64(pem))
    assert errors(obj) == [f'status.certificate: Invalid value: "<certificate data>": {why}']


def test_text_around_the_certificate_blocks_is_allowed() -> None:
    pem = b"issued by a test\n" + certificate_pem() + certificate_pem() + b"the end\n"
    assert errors(with_status(csr(), certificate=b64(pem))) == []


# -- who changes what --

def created(user: Obj | None = NODE_USER) -> Obj:
    obj = csr(username="someone-else", groups=["system:masters"], uid="1", extra={"k": ["v"]})
    obj["status"] = {"conditions": [condition("Approved")]}
    signing.prepare_for_create(obj, user)
    return obj


def test_create_records_the_requester_and_clears_the_status() -> None:
    obj = created()
    assert (obj["spec"]["username"], obj["spec"]["groups"]) == (
        "system:node:n1", ["system:nodes", "system:authenticated"])
    assert "uid" not in obj["spec"] and "extra" not in obj["spec"]
    assert obj["status"] == {}
    anonymous = created(None)
    assert not {"username", "groups", "uid", "extra"} & set(anonymous["spec"])


def write(old: Obj, new: Obj, how: Write, now: str = NOW) -> tuple[Obj, list[str]]:
    out = signing.prepare_for_update(old, new, how, now=now)
    return out, [str(e) for e in signing.update_errors(old, out, how)]


def test_the_object_itself_changes_neither_spec_nor_status() -> None:
    old = with_status(created(), conditions=[condition("Approved", lastUpdateTime=NOW)])
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"a": "b"}
    new["spec"]["usages"] = ["server auth"]
    new["spec"]["username"] = "admin"
    new["status"] = {}
    out, errs = write(old, new, Write.OBJECT)
    assert errs == []
    assert out["metadata"]["labels"] == {"a": "b"}
    assert (out["spec"], out["status"]) == (old["spec"], old["status"])


def test_approval_adds_a_decision_stamped_now_and_keeps_the_certificate() -> None:
    old = created()
    new = with_status(old, conditions=[condition("Approved", reason="KubectlApprove")],
                      certificate=b64(certificate_pem()))
    out, errs = write(old, new, Write.APPROVAL)
    assert errs == []
    assert out["status"] == {"conditions": [{
        "type": "Approved", "status": "True", "reason": "KubectlApprove",
        "lastUpdateTime": NOW, "lastTransitionTime": NOW}]}
    assert out["spec"] == old["spec"]


def test_approved_and_denied_are_mutually_exclusive_and_stay() -> None:
    approved, _ = write(created(), with_status(created(), conditions=[condition("Approved")]),
                        Write.APPROVAL)
    both = with_status(approved, conditions=[*approved["status"]["conditions"],
                                             condition("Denied")])
    assert write(approved, both, Write.APPROVAL)[1] == [
        'status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions '
        "are mutually exclusive"]
    assert write(approved, with_status(approved, conditions=[condition("Denied")]),
                 Write.APPROVAL)[1] == [
        'status.conditions: Forbidden: updates may not remove a condition of type "Approved"']


def test_a_transition_time_stays_while_the_status_does() -> None:
    old = with_status(created(), conditions=[condition(
        "Approved", lastUpdateTime=NOW, lastTransitionTime=NOW)])
    again = with_status(old, conditions=[condition("Approved", reason="again")])
    out, errs = write(old, again, Write.APPROVAL, now=LATER)
    assert errs == []
    assert out["status"]["conditions"][0]["lastTransitionTime"] == NOW
    assert out["status"]["conditions"][0]["lastUpdateTime"] == LATER


def approved() -> Obj:
    return with_status(created(), conditions=[condition(
        "Approved", lastUpdateTime=NOW, lastTransitionTime=NOW)])


def test_status_sets_the_certificate_once_and_leaves_the_decisions() -> None:
    old = approved()
    new = with_status(old, conditions=[condition("Approved", reason="rewritten")],
                      certificate=b64(certificate_pem()))
    signed, errs = write(old, new, Write.STATUS)
    assert errs == []
    assert signed["status"]["conditions"] == old["status"]["conditions"]
    assert signed["status"]["certificate"] == new["status"]["certificate"]
    other = with_status(signed, conditions=signed["status"]["conditions"],
                        certificate=b64(certificate_pem()))
    assert write(signed, other, Write.STATUS)[1] == [
        "status.certificate: Forbidden: updates may not modify existing certificate content"]


def test_status_may_add_failed_but_not_a_decision() -> None:
    old = created()
    failed, errs = write(old, with_status(old, conditions=[condition("Failed")]), Write.STATUS)
    assert errs == [] and failed["status"]["conditions"][0]["lastTransitionTime"] == NOW
    assert write(old, with_status(old, conditions=[condition("Approved")]), Write.STATUS)[1] == [
        'status.conditions: Forbidden: updates may not add a condition of type "Approved"']
    assert write(failed, with_status(failed, conditions=[]), Write.STATUS)[1] == [
        'status.conditions: Forbidden: updates may not remove a condition of type "Failed"']


def test_approval_cannot_set_a_certificate_and_the_object_cannot_approve() -> None:
    old = created()
    out, errs = write(old, with_status(old, certificate=b64(certificate_pem())), Write.APPROVAL)
    assert errs == [] and "certificate" not in out["status"]
    out, errs = write(old, with_status(old, conditions=[condition("Approved")]), Write.OBJECT)
    assert errs == [] and out["status"] == {}


# -- admission: signers, subjects --

def test_the_verb_on_signers_each_write_needs() -> None:
    old = approved()
    assert signing.signer_verb(old, old, Write.APPROVAL) == "approve"
    assert signing.signer_verb(old, old, Write.STATUS) == ""
    signed = with_status(old, **old["status"], certificate=b64(certificate_pem()))
    assert signing.signer_verb(old, signed, Write.STATUS) == "sign"
    assert signing.signer_verb(old, signed, Write.OBJECT) == ""


def test_a_signer_by_name_or_by_its_domain() -> None:
    granted = {("approve", "certificates.k8s.io", "signers", "example.com/a"),
               ("sign", "certificates.k8s.io", "signers", "example.com/*")}

    def may(verb: str, group: str, resource: str, name: str) -> bool:
        return (verb, group, resource, name) in granted
    assert signing.authorized_for_signer(may, "approve", "example.com/a")
    assert not signing.authorized_for_signer(may, "approve", "example.com/b")
    assert signing.authorized_for_signer(may, "sign", "example.com/b")
    assert not signing.authorized_for_signer(may, "sign", "other.com/b")


def test_no_api_server_client_certificate_for_system_masters() -> None:
    masters = csr(signerName=certificates.KUBE_APISERVER_CLIENT,
                  request=b64(request_pem("me", ("system:masters",))))
    assert signing.restricted_subject(masters) == (
        "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not "
        "allowed")
    assert signing.restricted_subject(csr(signerName=certificates.KUBE_APISERVER_CLIENT)) == ""
    kubelet = csr(request=b64(request_pem("me", ("system:masters",))))
    assert signing.restricted_subject(kubelet) == ""


@pytest.mark.parametrize(("conditions", "cert", "summary"), [
    ([], False, "Pending"), ([condition("Approved")], False, "Approved"),
    ([condition("Approved")], True, "Approved,Issued"),
    ([condition("Denied")], False, "Denied"),
    ([condition("Approved"), condition("Failed")], False, "Approved,Failed"),
    ([condition("Approved"), condition("Denied")], False, "Denied"),
])
def test_the_condition_column(conditions: list[Obj], cert: bool, summary: str) -> None:
    status: Obj = {"conditions": conditions}
    if cert:
        status["certificate"] = b64(certificate_pem())
    assert signing.condition_summary(with_status(csr(), **status)) == summary
