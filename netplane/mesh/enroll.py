"""A node proxy's side of its certificate: a new key and a
CertificateSigningRequest for its node identity (signer
``netplane.io/mesh-node``), then the signed chain once the mesh controller
has approved and issued it; again at half the certificate's life, so the
tunnels never run on an expired one."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.cluster.client import ApiError, Client
from netplane.mesh.identity import Issued, utcnow
from netplane.mesh.signer import CERT_TTL, SIGNER, state
from netplane.mesh.tunnel import Credentials, node_identity

log = logging.getLogger(__name__)
USAGES = ["digital signature", "client auth", "server auth"]
RETRY = 2.0


class Denied(Exception):
    pass


def request(node: str, key: ec.EllipticCurvePrivateKey, ttl: datetime.timedelta = CERT_TTL
            ) -> Obj:
    """The CertificateSigningRequest object for ``node``'s proxy."""
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(str(node_identity(node)))]), critical=True)
           .sign(key, hashes.SHA256()))
    pem = csr.public_bytes(serialization.Encoding.PEM)
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": f"netplane-node-{node}-"},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": SIGNER,
                     "usages": USAGES, "expirationSeconds": int(ttl.total_seconds())}}


def chain_of(csr: Obj) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(base64.b64decode(csr["status"]["certificate"]))


async def obtain(client: Client, node: str, *, ttl: datetime.timedelta = CERT_TTL
                 ) -> tuple[Issued, list[x509.Certificate]]:
    """A certificate for ``node``'s proxy and its chain above it; waits
    for the signer. Denied when the signer refuses."""
    key = ec.generate_private_key(ec.SECP256R1())
    created = await client.create(resources.CERTIFICATESIGNINGREQUEST, request(node, key, ttl))
    name = meta.name(created)
    current = created
    while True:
        got = state(current)
        if got == "Issued":
            chain = chain_of(current)
            return Issued(chain[0], key), chain[1:]
        if got in ("Denied", "Failed"):
            last = ((current.get("status") or {}).get("conditions") or [{}])[-1]
            raise Denied(f"{name}: {got}: {last.get('message', '')}")
        try:
            async for _, obj in client.watch(resources.CERTIFICATESIGNINGREQUEST,
                                             resource_version=meta.meta(current)
                                             ["resourceVersion"],
                                             field_selector=f"metadata.name={name}"):
                current = obj
                if state(obj) != "Pending" and state(obj) != "Approved":
                    break
        except (ApiError, OSError) as e:
            log.info("waiting for %s: %s", name, e)
            await asyncio.sleep(RETRY)
            current = await client.get(resources.CERTIFICATESIGNINGREQUEST, name)


async def keep(client: Client, node: str, folder: Path, root: x509.Certificate,
               ready: asyncio.Future[Credentials], *, ttl: datetime.timedelta = CERT_TTL,
               renew: Callable[[Issued], datetime.datetime] = Issued.renew_after,
               wake: asyncio.Event | None = None) -> None:
    """The node's credentials, first set in ``ready``, then renewed when
    ``renew`` says (at half life), or at once when ``wake`` is set, for as
    long as this runs."""
    creds: Credentials | None = None
    while True:
        try:
            issued, chain = await obtain(client, node, ttl=ttl)
        except (ApiError, OSError, Denied) as e:
            log.warning("mesh certificate for %s not obtained: %s", node, e)
            await asyncio.sleep(RETRY)
            continue
        if creds is None:
            creds = Credentials.write(issued, chain, root, folder)
            ready.set_result(creds)
        else:
            creds.renew(issued, chain)
        log.info("mesh certificate for %s valid until %s", node,
                 issued.cert.not_valid_after_utc.isoformat())
        wait = max((renew(issued) - utcnow()).total_seconds(), 0.0)
        if wake is None:
            await asyncio.sleep(wait)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), wait)
        wake.clear()
