"""Node proxies' certificates through CertificateSigningRequests: the
request a node makes, what the mesh signer approves and denies, what it
issues, and when the cleaner removes a request; the mesh CA kept under the
cluster CA's folder."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netplane.mesh import enroll, signer
from netplane.mesh.identity import Authority, identity_of, self_signed_root
from netplane.mesh.tunnel import node_identity

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)


def authority() -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    return Authority.under(self_signed_root(key, "cluster-ca", clock=lambda: NOW), key,
                           clock=lambda: NOW)


def submitted(obj: dict, groups: tuple[str, ...] = ("system:nodes", "system:authenticated"),
              **meta: str) -> dict:
    """As the API server stores a request: the requester filled in."""
    return {**obj, "metadata": {"name": "netplane-node-node-1-abc", **meta},
            "spec": {**obj["spec"], "username": "system:node-agent", "groups": list(groups)}}


def node_request(node: str = "node-1") -> dict:
    return enroll.request(node, ec.generate_private_key(ec.SECP256R1()))


def test_a_node_asks_for_its_node_identity_and_nothing_else() -> None:
    obj = node_request()
    assert obj["spec"]["signerName"] == "netplane.io/mesh-node"
    assert obj["metadata"]["generateName"] == "netplane-node-node-1-"
    csr = x509.load_pem_x509_csr(base64.b64decode(obj["spec"]["request"]))
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == \
        ["spiffe://cluster.local/ns/kube-system/sa/netplane-node.node-1"]
    assert set(obj["spec"]["usages"]) == {"digital signature", "client auth", "server auth"}


def test_the_signer_approves_nodes_asking_for_nodes_that_exist() -> None:
    assert signer.decide(submitted(node_request()), {"node-1"}).approve
    unknown = signer.decide(submitted(node_request("node-9")), {"node-1"})
    assert (unknown.approve, unknown.reason) == (False, "NotANodeIdentity")
    user = signer.decide(submitted(node_request(), groups=("system:authenticated",)),
                         {"node-1"})
    assert (user.approve, user.reason) == (False, "NotANode")


def test_a_request_for_a_workload_identity_or_extra_names_is_denied() -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    def asking(*names: x509.GeneralName) -> dict:
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName(list(names)), critical=True)
               .sign(key, hashes.SHA256()))
        pem = csr.public_bytes(serialization.Encoding.PEM)
        return submitted({"spec": {"request": base64.b64encode(pem).decode(),
                                   "signerName": signer.SIGNER}})
    workload = asking(x509.UniformResourceIdentifier("spiffe://cluster.local/ns/shop/sa/web"))
    assert signer.decide(workload, {"node-1"}).reason == "NotANodeIdentity"
    extra = asking(x509.UniformResourceIdentifier(str(node_identity("node-1"))),
                   x509.DNSName("evil.example"))
    assert signer.decide(extra, {"node-1"}).reason == "BadRequest"


def test_an_approved_request_is_issued_a_chain_for_its_key_and_identity() -> None:
    ca = authority()
    key = ec.generate_private_key(ec.SECP256R1())
    obj = submitted(enroll.request("node-1", key, datetime.timedelta(hours=2)))
    chain = x509.load_pem_x509_certificates(base64.b64decode(signer.sign(obj, ca, clock=NOW)))
    leaf, intermediate = chain
    assert intermediate == ca.cert
    assert leaf.public_key() == key.public_key()
    assert identity_of(leaf) == node_identity("node-1")
    assert leaf.not_valid_after_utc - NOW == datetime.timedelta(hours=2)
    assert ca.verify(leaf, at=NOW) == node_identity("node-1")


def test_states_and_the_cleaners_ages() -> None:
    pending = submitted(node_request(), creationTimestamp="2026-12-07T10:30:00Z")
    assert signer.state(pending) == "Pending"
    approved = {**pending, "status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    assert signer.state(approved) == "Approved"
    issued = {**approved, "status": {**approved["status"], "certificate": "eA=="}}
    assert signer.state(issued) == "Issued"
    denied = {**pending, "status": {"conditions": [{"type": "Denied", "status": "True"}]}}
    assert signer.state(denied) == "Denied"
    # Ninety minutes old: issued and denied ones go, pending ones stay a day.
    assert signer.expired(issued, NOW) and signer.expired(denied, NOW)
    assert not signer.expired(pending, NOW)


def test_the_mesh_ca_is_made_once_under_the_cluster_ca_and_renewed_at_half_life(
        tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    root = self_signed_root(key, "cluster-ca")
    (tmp_path / "ca.crt").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    first = signer.load_authority(tmp_path)
    assert first.cert.issuer == root.subject
    assert (tmp_path / "mesh-ca.key").stat().st_mode & 0o777 == 0o600
    assert signer.load_authority(tmp_path).cert == first.cert
    later = first.cert.not_valid_after_utc - datetime.timedelta(hours=1)
    assert signer.load_authority(tmp_path, clock=later).cert != first.cert
