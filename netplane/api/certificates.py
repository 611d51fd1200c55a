"""CertificateSigningRequests (``certificates.k8s.io/v1``) as kube 1.32's
pkg/apis/certificates/validation judges them, and the PEM and X.509 reading
that takes. Who may change what is :mod:`netplane.api.signing`.
Pure: the request's bytes are read with ``cryptography``."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from netplane.api.meta import Obj
from netplane.api.validation import DNS1123_LABEL, DNS1123_SUBDOMAIN, Errors, FieldError

GROUP = "certificates.k8s.io"
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
# The v1beta1 default; v1 refuses it in new requests.
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"
APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"
# The approver's conditions, written through /approval only.
DECISIONS = (APPROVED, DENIED)
# Conditions that may only be True and, once there, stay.
LASTING = (APPROVED, DENIED, FAILED)
CONDITION_STATUSES = ("False", "True", "Unknown")
USAGES = ("any", "cert sign", "client auth", "code signing", "content commitment",
          "crl sign", "data encipherment", "decipher only", "digital signature",
          "email protection", "encipher only", "ipsec end system", "ipsec tunnel",
          "ipsec user", "key agreement", "key encipherment", "microsoft sgc", "netscape sgc",
          "ocsp signing", "s/mime", "server auth", "signing", "timestamping")
MIN_EXPIRATION_SECONDS = 600
_LABEL_MAX, _SUBDOMAIN_MAX = 63, 253
# <fqdn>/<namespace>.<name>: a subdomain, a slash, a label, a dot and a subdomain.
_SIGNER_MAX = _SUBDOMAIN_MAX + 1 + _LABEL_MAX + 1 + _SUBDOMAIN_MAX
_LABEL_RULE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
               "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',"
               "  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
_SUBDOMAIN_RULE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                   "characters, '-' or '.', and must start and end with an alphanumeric "
                   "character (e.g. 'example.com', regex used for validation is "
                   r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


# -- PEM and X.509 --

_PEM = re.compile(rb"-----BEGIN ([^\r\n]*?)-----\r?\n(.*?)-----END \1-----", re.S)


@dataclass(frozen=True)
class Block:
    """One PEM block: its type, whether it had headers, its DER bytes."""

    type: str
    headers: bool
    der: bytes


def pem_blocks(data: bytes) -> Iterator[Block]:
    """The PEM blocks of ``data`` in order, as Go's pem.Decode finds them:
    text around them is skipped, and so is a block whose body is not base64."""
    for m in _PEM.finditer(data):
        lines = m.group(2).split(b"\n")
        # "Key: value" lines after BEGIN are headers, up to a blank line.
        first = next((i for i, line in enumerate(lines) if b":" not in line), len(lines))
        if first and first < len(lines) and not lines[first].strip():
            first += 1
        try:
            der = base64.b64decode(b"".join(line.strip() for line in lines[first:]),
                                   validate=True)
        except (binascii.Error, ValueError):
            continue
        yield Block(m.group(1).decode(errors="replace"), first > 0, der)


def _signature_failure(csr: x509.CertificateSigningRequest) -> str:
    """Go's words for a request whose signature does not verify."""
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "x509: cannot verify signature: algorithm unimplemented"
    if isinstance(key, rsa.RSAPublicKey):
        return "crypto/rsa: verification error"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "x509: ECDSA verification failure"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "x509: Ed25519 verification failure"
    return "x509: cannot verify signature: algorithm unimplemented"


def parse_request(pem: bytes) -> x509.CertificateSigningRequest:
    """The signed PKCS#10 request in a "CERTIFICATE REQUEST" PEM block (kube's
    ParseCSR and CheckSignature); ValueError says what is wrong with it."""
    block = next(pem_blocks(pem), None)
    if block is None or block.type != "CERTIFICATE REQUEST":
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_der_x509_csr(block.der)
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("x509: malformed certificate request") from None
    if not valid:
        raise ValueError(_signature_failure(csr))
    return csr


def certificate_error(pem: bytes) -> str:
    """Why ``pem`` is not one or more CERTIFICATE blocks ('' when it is, or is empty)."""
    if not pem:
        return ""
    blocks = 0
    for block in pem_blocks(pem):
        if block.type != "CERTIFICATE":
            return f"only CERTIFICATE PEM blocks are allowed, found {json.dumps(block.type)}"
        if block.headers:
            return "no PEM block headers are permitted"
        blocks += 1
        try:
            x509.load_der_x509_certificate(block.der)
        except ValueError:
            return "x509: malformed certificate"
    return "" if blocks else "must contain at least one CERTIFICATE PEM block"


def decoded(value: Any) -> bytes | None:
    """A ``[]byte`` field's bytes from its JSON (base64); None when absent or not base64."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _go_bytes(raw: bytes | None) -> str:
    """Bytes as Go's ``%#v`` writes them, as kube's field errors show a request."""
    if raw is None:
        return "[]byte(nil)"
    return "[]byte{" + ", ".join(f"0x{b:x}" for b in raw) + "}"


# -- validation --

@dataclass(frozen=True)
class Options:
    """What a write may do, and what it is forgiven because the stored
    object already had it (kube's certificateValidationOptions)."""

    set_decisions: bool = False  # add or change Approved/Denied (/approval)
    set_certificate: bool = False  # set status.certificate (/status)
    both_decisions: bool = False
    legacy_signer: bool = False
    duplicate_types: bool = False
    empty_type: bool = False
    arbitrary_certificate: bool = False
    unknown_usages: bool = False
    duplicate_usages: bool = False


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def conditions(csr: Obj) -> list[Obj]:
    found = _dict(csr.get("status")).get("conditions")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def certificate(csr: Obj) -> bytes:
    return decoded(_dict(csr.get("status")).get("certificate")) or b""


def _usages(spec: Obj, opts: Options, errs: Errors) -> None:
    usages = spec.get("usages")
    if not usages:
        errs.append(FieldError("spec.usages", "Required value", "FieldValueRequired"))
        return
    if not isinstance(usages, list):
        errs.append(FieldError("spec.usages", "must be a list of strings"))
        return
    supported = ", ".join(f'"{u}"' for u in USAGES)
    for i, usage in enumerate(usages):
        if not opts.unknown_usages and not (isinstance(usage, str) and usage in USAGES):
            errs.append(FieldError(f"spec.usages[{i}]", f"Unsupported value: "
                                   f"{json.dumps(usage)}: supported values: {supported}",
                                   "FieldValueNotSupported"))
    seen: list[Any] = []
    for i, usage in enumerate(usages):
        if not opts.duplicate_usages and usage in seen:
            errs.append(FieldError(f"spec.usages[{i}]", f"Duplicate value: {json.dumps(usage)}",
                                   "FieldValueDuplicate"))
        seen.append(usage)


def _label_problems(label: str, pattern: re.Pattern[str], limit: int, rule: str) -> list[str]:
    out = [f"must be no more than {limit} characters"] if len(label) > limit else []
    return out + ([] if pattern.match(label) else [rule])


def signer_name_errors(path: str, name: Any) -> Errors:
    """kube's ValidateSignerName: ``example.com/signer-name``."""
    if not name or not isinstance(name, str):
        return [FieldError(path, "Required value", "FieldValueRequired")]
    segments = name.split("/")
    if len(segments) != 2:
        return [FieldError(path, f"Invalid value: {json.dumps(name)}: must be a fully "
                           "qualified domain and path of the form 'example.com/signer-name'")]
    domain, rest = segments
    errs: Errors = []
    if len(domain) > _SUBDOMAIN_MAX:
        errs.append(FieldError(path, f"Too long: may not be more than {_SUBDOMAIN_MAX} bytes",
                               "FieldValueTooLong"))
    labels = domain.split(".")
    for segment, parts, pattern, limit, rule in (
            (domain, labels, DNS1123_LABEL, _LABEL_MAX, _LABEL_RULE),
            (rest, rest.split("."), DNS1123_SUBDOMAIN, _SUBDOMAIN_MAX, _SUBDOMAIN_RULE)):
        for part in parts:
            problems = _label_problems(part, pattern, limit, rule)
            errs += [FieldError(path, f"Invalid value: {json.dumps(segment)}: validating label "
                                f"{json.dumps(part)}: {p}") for p in problems]
            if problems:
                break  # the next labels would say the same
        if segment is domain and len(labels) < 2:
            errs.append(FieldError(path, f"Invalid value: {json.dumps(domain)}: should be a "
                                   "domain with at least two segments separated by dots"))
    if len(name) > _SIGNER_MAX:
        errs.append(FieldError(path, f"Too long: may not be more than {_SIGNER_MAX} bytes",
                               "FieldValueTooLong"))
    return errs


def _request(spec: Obj, errs: Errors) -> None:
    value = spec.get("request")
    raw = decoded(value)
    if value is not None and raw is None:
        errs.append(FieldError("spec.request", "Invalid value: must be base64-encoded bytes"))
        return
    try:
        parse_request(raw or b"")
    except ValueError as e:
        errs.append(FieldError("spec.request", f"Invalid value: {_go_bytes(raw)}: {e}"))


def _conditions(csr: Obj, opts: Options, errs: Errors) -> None:
    seen: set[str] = set()
    decided: set[str] = set()
    for i, c in enumerate(conditions(csr)):
        path = f"status.conditions[{i}]"
        ctype, cstatus = c.get("type"), c.get("status")
        if not opts.empty_type and not ctype:
            errs.append(FieldError(f"{path}.type", "Required value", "FieldValueRequired"))
        allowed = ("True",) if ctype in LASTING else CONDITION_STATUSES
        if not cstatus:
            errs.append(FieldError(f"{path}.status", "Required value", "FieldValueRequired"))
        elif cstatus not in allowed:
            errs.append(FieldError(f"{path}.status", f"Unsupported value: "
                                   f"{json.dumps(cstatus)}: supported values: "
                                   + ", ".join(f'"{s}"' for s in allowed),
                                   "FieldValueNotSupported"))
        if not opts.both_decisions and ctype in DECISIONS:
            decided.add(str(ctype))
            if len(decided) == 2:
                errs.append(FieldError(f"{path}.type", f'Invalid value: "{ctype}": Approved and '
                                       "Denied conditions are mutually exclusive"))
        if not opts.duplicate_types and isinstance(ctype, str):
            if ctype in seen:
                errs.append(FieldError(f"{path}.type", f"Duplicate value: {json.dumps(ctype)}",
                                       "FieldValueDuplicate"))
            seen.add(ctype)


def request_errors(csr: Obj, opts: Options = Options()) -> Errors:
    """kube's validateCertificateSigningRequest, less the metadata (which
    the API server checks for every kind); ``opts`` as for a create."""
    errs: Errors = []
    spec = _dict(csr.get("spec"))
    _request(spec, errs)
    _usages(spec, opts, errs)
    signer = spec.get("signerName")
    if not opts.legacy_signer and signer == LEGACY_UNKNOWN:
        errs.append(FieldError("spec.signerName", f'Invalid value: "{signer}": the legacy '
                               "signerName is not allowed via this API version"))
    else:
        errs += signer_name_errors("spec.signerName", signer)
    expiration = spec.get("expirationSeconds")
    if isinstance(expiration, int) and not isinstance(expiration, bool) \
            and expiration < MIN_EXPIRATION_SECONDS:
        errs.append(FieldError("spec.expirationSeconds", f"Invalid value: {expiration}: may "
                               "not specify a duration less than 600 seconds (10 minutes)"))
    _conditions(csr, opts, errs)
    if not opts.arbitrary_certificate:
        problem = certificate_error(certificate(csr))
        if problem:
            errs.append(FieldError("status.certificate",
                                   f'Invalid value: "<certificate data>": {problem}'))
    return errs


def validate(csr: Obj, errs: Errors) -> None:
    """A new request (kube's ValidateCertificateSigningRequestCreate)."""
    errs += request_errors(csr)
