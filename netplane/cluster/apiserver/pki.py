"""First-start credentials: a self-signed CA, the server's certificate signed
by it, the client certificate the server presents to agents (as
kube-apiserver's kubelet client), an admin token and a join token for
agents. Kept in the data dir with mode 0600 and reused on every later start."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

KUBELET_CLIENT_NAME = "kube-apiserver-kubelet-client"
SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local", "localhost")


@dataclass(frozen=True)
class Credentials:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    admin_token: str
    join_token: str
    kubelet_client_cert: Path
    kubelet_client_key: Path


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool,
          sans: list[x509.GeneralName]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        # What a CA must state for strict verifiers (RFC 5280): what its key
        # signs, and its key's id for the certificates it issues.
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure(data_dir: Path, *, addresses: list[str]) -> Credentials:
    """Load the credentials in ``data_dir``, making whatever is missing.

    The server certificate is remade when an address it must cover is new."""
    pki = data_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_crt, ca_key = pki / "ca.crt", pki / "ca.key"
    if not ca_crt.exists() or not ca_key.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        _write(ca_key, _pem_key(key))
        _write(ca_crt, _cert("netplane-ca", key, "netplane-ca", key, ca=True, sans=[])
               .public_bytes(serialization.Encoding.PEM))
    ca_private = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    assert isinstance(ca_private, ec.EllipticCurvePrivateKey)
    srv_crt, srv_key = pki / "server.crt", pki / "server.key"
    wanted = sorted(set(addresses) | {"127.0.0.1"})
    stamp = pki / "server.addresses"
    if not srv_crt.exists() or not stamp.exists() or stamp.read_text().split() != wanted:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVICE_NAMES]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in wanted]
        _write(srv_key, _pem_key(key))
        _write(srv_crt, _cert("netplane-apiserver", key, "netplane-ca", ca_private, ca=False,
                              sans=sans).public_bytes(serialization.Encoding.PEM))
        _write(stamp, " ".join(wanted).encode())
    client_crt, client_key = _kubelet_client(pki, ca_private)
    return Credentials(ca_crt, srv_crt, srv_key, _token(pki / "admin.token"),
                       _token(pki / "join.token"), client_crt, client_key)


def _kubelet_client(pki: Path, ca_key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """The certificate agents accept: signed by the CA, named for the API server."""
    crt, key_path = pki / "apiserver-kubelet-client.crt", pki / "apiserver-kubelet-client.key"
    if not crt.exists() or not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        _write(key_path, _pem_key(key))
        _write(crt, _cert(KUBELET_CLIENT_NAME, key, "netplane-ca", ca_key, ca=False, sans=[])
               .public_bytes(serialization.Encoding.PEM))
    return crt, key_path


def _token(path: Path) -> str:
    if not path.exists():
        _write(path, secrets.token_hex(24).encode())
    return path.read_text().strip()
