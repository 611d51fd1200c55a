"""Workload certificates: issued under the cluster root through the mesh
CA, verified back to the identity they name, and rotated on a fake clock
before they expire, the old one still valid meanwhile."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from netplane.mesh.identity import (
    Authority,
    Identity,
    IdentityError,
    Wallet,
    identity_of,
    self_signed_root,
    spiffe_id,
)

T0 = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
WEB = Identity("cluster.local", "shop", "web")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


Root = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@pytest.fixture(scope="module")
def root() -> Root:
    key = ec.generate_private_key(ec.SECP256R1())
    return self_signed_root(key, "cluster-ca", clock=lambda: T0), key


def authority(root: Root) -> Authority:
    cert, key = root
    return Authority.under(cert, key, clock=lambda: T0)


def test_spiffe_ids_round_trip() -> None:
    assert spiffe_id("shop", "web") == "spiffe://cluster.local/ns/shop/sa/web"
    assert Identity.parse(str(WEB)) == WEB
    for bad in ("https://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a",
                "spiffe://cluster.local/ns//sa/b", "spiffe://d/namespace/a/sa/b"):
        with pytest.raises(IdentityError):
            Identity.parse(bad)


def test_an_issued_certificate_proves_its_identity(root: Root) -> None:
    ca = authority(root)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(WEB, key.public_key(), clock=lambda: T0)
    assert identity_of(cert) == WEB
    assert ca.verify(cert, at=T0 + datetime.timedelta(hours=1)) == WEB
    assert cert.not_valid_after_utc - T0 == datetime.timedelta(hours=24)


def test_what_does_not_verify(root: Root) -> None:
    ca = authority(root)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(WEB, key.public_key(), clock=lambda: T0)
    with pytest.raises(IdentityError):
        ca.verify(cert, at=T0 + datetime.timedelta(hours=25))  # expired
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_root = self_signed_root(other_key, "other-ca", clock=lambda: T0)
    stranger = Authority.under(other_root, other_key, clock=lambda: T0)
    forged = stranger.issue(WEB, key.public_key(), clock=lambda: T0)
    with pytest.raises(IdentityError):
        ca.verify(forged, at=T0)  # names the same identity, under another root


def test_certificates_rotate_at_half_their_life_and_the_old_one_stays_valid(
        root: Root) -> None:
    clock = Clock()
    wallet = Wallet(authority(root), clock=clock)
    first = wallet.current(WEB)
    assert wallet.current(WEB) is first
    assert wallet.next_renewal() == T0 + datetime.timedelta(hours=12)
    clock.now = T0 + datetime.timedelta(hours=11, minutes=59)
    assert wallet.current(WEB) is first
    clock.now = T0 + datetime.timedelta(hours=12)
    second = wallet.current(WEB)
    assert second is not first and second.cert.serial_number != first.cert.serial_number
    # A connection made with the first certificate goes on: it is valid for 12 h more.
    assert wallet.authority.verify(first.cert, at=clock.now) == WEB
    assert wallet.authority.verify(second.cert, at=clock.now) == WEB
    assert wallet.next_renewal() == T0 + datetime.timedelta(hours=24)
