"""Workload identity for mutual TLS between node proxies, as SPIFFE names
it: ``spiffe://cluster.local/ns/NS/sa/SA``, carried as the URI SAN of a
short-lived certificate. The mesh CA is an intermediate under the cluster
CA, so anything that trusts the cluster trusts the mesh; workload
certificates are issued by it and renewed once half their life has passed
(Istio's default grace ratio), the old one staying valid until it expires,
so a rotation cuts no connection that uses it."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "cluster.local"
WORKLOAD_TTL = datetime.timedelta(hours=24)  # Istio's default workload lifetime
CA_TTL = datetime.timedelta(days=365)
RENEW_AT = 0.5  # of a certificate's life
SKEW = datetime.timedelta(minutes=1)  # clocks of nodes disagree a little

Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class IdentityError(ValueError):
    pass


def spiffe_id(namespace: str, service_account: str, trust_domain: str = TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class Identity:
    trust_domain: str
    namespace: str
    service_account: str

    @classmethod
    def parse(cls, uri: str) -> Identity:
        scheme, _, rest = uri.partition("://")
        parts = rest.split("/")
        if scheme != "spiffe" or len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" \
                or not all(parts):
            raise IdentityError(f"not a workload identity: {uri!r} (want "
                                f"spiffe://DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT)")
        return cls(parts[0], parts[2], parts[4])

    def __str__(self) -> str:
        return spiffe_id(self.namespace, self.service_account, self.trust_domain)


def identity_of(cert: x509.Certificate) -> Identity:
    """The workload a certificate names: its one spiffe:// URI SAN."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("the certificate has no subject alternative name") from None
    uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith("spiffe://")]
    if len(uris) != 1:
        raise IdentityError(f"the certificate names {len(uris)} SPIFFE identities, not one")
    return Identity.parse(uris[0])


def _key_ids(builder: x509.CertificateBuilder, public: ec.EllipticCurvePublicKey,
             issuer: x509.Certificate | None) -> x509.CertificateBuilder:
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                                    critical=False)
    if issuer is not None:
        try:
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:  # a root without one (the cluster CA's)
            public_key = issuer.public_key()
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
        builder = builder.add_extension(aki, critical=False)
    return builder


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def self_signed_root(key: ec.EllipticCurvePrivateKey, name: str, *,
                     clock: Clock = utcnow, ttl: datetime.timedelta = CA_TTL
                     ) -> x509.Certificate:
    """A root CA (tests; a cluster's own root comes from its PKI)."""
    now = clock()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - SKEW).not_valid_after(now + ttl)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_ca_usage(), critical=True))
    return _key_ids(builder, key.public_key(), None).sign(key, hashes.SHA256())


@dataclass(frozen=True)
class Authority:
    """The mesh CA: its certificate (issued by the cluster CA) and key."""
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    root: x509.Certificate

    @classmethod
    def under(cls, root: x509.Certificate, root_key: ec.EllipticCurvePrivateKey, *,
              clock: Clock = utcnow, ttl: datetime.timedelta = CA_TTL) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = clock()
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                               "netplane-mesh-ca")]))
                   .issuer_name(root.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - SKEW)
                   .not_valid_after(min(now + ttl, root.not_valid_after_utc))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(_ca_usage(), critical=True))
        cert = _key_ids(builder, key.public_key(), root).sign(root_key, hashes.SHA256())
        return cls(cert, key, root)

    def issue(self, identity: Identity, public: ec.EllipticCurvePublicKey, *,
              clock: Clock = utcnow, ttl: datetime.timedelta = WORKLOAD_TTL
              ) -> x509.Certificate:
        """A workload certificate for ``identity``: no subject name, the
        SPIFFE URI as its SAN, for both ends of a TLS connection."""
        now = clock()
        builder = (x509.CertificateBuilder().subject_name(x509.Name([]))
                   .issuer_name(self.cert.subject).public_key(public)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - SKEW)
                   .not_valid_after(min(now + ttl, self.cert.not_valid_after_utc))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=False, crl_sign=False, encipher_only=False,
                       decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False)
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.UniformResourceIdentifier(str(identity))]), critical=True))
        return _key_ids(builder, public, self.cert).sign(self.key, hashes.SHA256())

    def verify(self, leaf: x509.Certificate, *, at: datetime.datetime | None = None
               ) -> Identity:
        """The identity a peer's certificate proves, checked against the
        cluster root through the mesh CA; IdentityError when it proves none."""
        builder = verification.PolicyBuilder().store(verification.Store([self.root]))
        if at is not None:
            builder = builder.time(at)
        try:
            builder.build_client_verifier().verify(leaf, [self.cert])
        except verification.VerificationError as e:
            raise IdentityError(f"the peer's certificate does not verify: {e}") from None
        return identity_of(leaf)


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def renew_after(self) -> datetime.datetime:
        start, end = self.cert.not_valid_before_utc + SKEW, self.cert.not_valid_after_utc
        return start + (end - start) * RENEW_AT


@dataclass
class Wallet:
    """A node proxy's certificates, one per workload identity it serves:
    each renewed (a new key too) once half its life has passed."""
    authority: Authority
    clock: Clock = utcnow
    ttl: datetime.timedelta = WORKLOAD_TTL
    issued: dict[Identity, Issued] = field(default_factory=dict)

    def current(self, identity: Identity) -> Issued:
        have = self.issued.get(identity)
        if have is None or self.clock() >= have.renew_after():
            key = ec.generate_private_key(ec.SECP256R1())
            have = Issued(self.authority.issue(identity, key.public_key(), clock=self.clock,
                                               ttl=self.ttl), key)
            self.issued[identity] = have
        return have

    def next_renewal(self) -> datetime.datetime | None:
        """When the soonest certificate is due (the rotation loop sleeps until then)."""
        return min((i.renew_after() for i in self.issued.values()), default=None)
