"""The mesh CA's side of node certificates, through the Kubernetes
CertificateSigningRequest API (as kubelets get theirs): a node proxy asks
with signer ``netplane.io/mesh-node`` for its SPIFFE identity; the mesh
controller approves a request from a node for a node identity of a node
that exists, denies any other, and signs what it approved with the mesh CA
(an intermediate under the cluster CA, kept beside it). Pure but for the
CA's files."""

from __future__ import annotations

import base64
import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netplane.api import meta
from netplane.api.meta import Obj
from netplane.mesh.identity import Authority, Identity, IdentityError, utcnow
from netplane.mesh.tunnel import node_of

SIGNER = "netplane.io/mesh-node"
NODES_GROUP = "system:nodes"
CERT_TTL = datetime.timedelta(hours=24)
MIN_TTL = datetime.timedelta(minutes=10)  # the API's least expirationSeconds
# As kube's csrcleaner: issued and denied requests go after an hour.
KEEP_DONE = datetime.timedelta(hours=1)
KEEP_PENDING = datetime.timedelta(hours=24)
MESH_CA_CERT, MESH_CA_KEY = "mesh-ca.crt", "mesh-ca.key"
PEM = serialization.Encoding.PEM


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_authority(pki: Path, *, clock: datetime.datetime | None = None) -> Authority:
    """The mesh CA from ``pki`` (the cluster CA's folder), made under the
    cluster CA when missing or past half its life."""
    root = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    now = clock or utcnow()
    cert_path, key_path = pki / MESH_CA_CERT, pki / MESH_CA_KEY
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if isinstance(key, ec.EllipticCurvePrivateKey) and now < start + (end - start) / 2 \
                and cert.issuer == root.subject:
            return Authority(cert, key, root)
    root_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    made = Authority.under(root, root_key, clock=lambda: now)
    _write_private(key_path, _pem_key(made.key))
    _write_private(cert_path, made.cert.public_bytes(PEM))
    return made


@dataclass(frozen=True)
class Verdict:
    approve: bool
    reason: str
    message: str


def _requested(csr: Obj) -> tuple[x509.CertificateSigningRequest, Identity]:
    pem = base64.b64decode((csr.get("spec") or {}).get("request") or "")
    request = x509.load_pem_x509_csr(pem)
    if not request.is_signature_valid:
        raise IdentityError("the request's signature does not verify")
    try:
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("the request names no SPIFFE identity") from None
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or sans.get_values_for_type(x509.DNSName) \
            or sans.get_values_for_type(x509.IPAddress):
        raise IdentityError("the request must name exactly one SPIFFE identity and nothing else")
    return request, Identity.parse(uris[0])


def decide(csr: Obj, nodes: set[str]) -> Verdict:
    """Whether the mesh signer approves a request (csrapproving's job for
    this signer): from a node, for a node proxy identity of a node that
    exists. netplane's agents share one credential, so the requester's
    name cannot tie the request to one node."""
    spec = csr.get("spec") or {}
    if NODES_GROUP not in (spec.get("groups") or ()):
        return Verdict(False, "NotANode", f"{spec.get('username')} is not in {NODES_GROUP}")
    try:
        _, identity = _requested(csr)
    except (ValueError, IdentityError) as e:
        return Verdict(False, "BadRequest", str(e))
    node = node_of(identity)
    if node is None or node not in nodes:
        return Verdict(False, "NotANodeIdentity", f"{identity} is no node proxy of this cluster")
    return Verdict(True, "AutoApproved", f"{identity}: approved by the mesh controller")


def sign(csr: Obj, authority: Authority, *, clock: datetime.datetime | None = None) -> str:
    """``status.certificate``: the leaf for the requested identity and key,
    then the mesh CA, as PEM (base64, as the API carries bytes)."""
    request, identity = _requested(csr)
    public = request.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise IdentityError("the request's key is not an EC key")
    seconds = (csr.get("spec") or {}).get("expirationSeconds")
    ttl = max(min(datetime.timedelta(seconds=int(seconds)), CERT_TTL), MIN_TTL) \
        if seconds else CERT_TTL
    now = clock or utcnow()
    leaf = authority.issue(identity, public, clock=lambda: now, ttl=ttl)
    chain = leaf.public_bytes(PEM) + authority.cert.public_bytes(PEM)
    return base64.b64encode(chain).decode()


def state(csr: Obj) -> str:
    """Pending, Approved, Denied or Failed, and Issued once it has a certificate."""
    conditions = {c.get("type") for c in (csr.get("status") or {}).get("conditions") or ()
                  if c.get("status", "True") == "True"}
    for kind in ("Denied", "Failed"):
        if kind in conditions:
            return kind
    if "Approved" in conditions:
        return "Issued" if (csr.get("status") or {}).get("certificate") else "Approved"
    return "Pending"


def expired(csr: Obj, now: datetime.datetime) -> bool:
    """Whether the cleaner removes the request (kube's csrcleaner's ages)."""
    created = meta.timestamp(meta.meta(csr).get("creationTimestamp"))
    if created is None:
        return False
    age = now - datetime.datetime.fromtimestamp(created, datetime.UTC)
    return age > (KEEP_PENDING if state(csr) in ("Pending", "Approved") else KEEP_DONE)
