"""How a CertificateSigningRequest moves from requested to approved (or
denied) to signed, as kube 1.32's registry strategy and its certificate
admission plugins have it.

A request is written three ways, each changing its own part: the object
itself (metadata only: the spec is fixed when it is made, the status is the
subresources'), ``/approval`` (the conditions: the approver's word) and
``/status`` (the certificate and the conditions other than Approved and
Denied: the signer's). Pure: the API server says who is asking and what
they may do; :mod:`netplane.api.certificates` judges the content.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable

from cryptography.x509.oid import NameOID

from netplane.api import certificates
from netplane.api.certificates import (
    APPROVED,
    DECISIONS,
    DENIED,
    FAILED,
    GROUP,
    KUBE_APISERVER_CLIENT,
    LASTING,
    LEGACY_UNKNOWN,
    USAGES,
    Options,
)
from netplane.api.meta import Obj
from netplane.api.validation import Errors, FieldError

# Whether a user may (verb, API group, resource, name), cluster-wide.
Authorizer = Callable[[str, str, str, str], bool]
REQUESTER_FIELDS = ("username", "uid", "groups", "extra")


class Write(enum.Enum):
    """Where an update comes in, which decides what it may change."""

    OBJECT = ""
    STATUS = "status"
    APPROVAL = "approval"


def prepare_for_create(csr: Obj, user: Obj | None) -> None:
    """The requester as the server knows them, whatever the body said, and no
    status: nobody makes a request that is already approved (kube's
    PrepareForCreate). ``user`` is a userInfo (username, uid, groups, extra)."""
    spec = csr.get("spec")
    if isinstance(spec, dict):
        for key in REQUESTER_FIELDS:
            spec.pop(key, None)
        spec.update({k: copy.deepcopy(v) for k, v in (user or {}).items()
                     if k in REQUESTER_FIELDS and v})
    csr["status"] = {}


def _indices(status: Obj, ctype: str) -> list[int]:
    found = status.get("conditions")
    if not isinstance(found, list):
        return []
    return [i for i, c in enumerate(found) if isinstance(c, dict) and c.get("type") == ctype]


def _keep_decisions(status: Obj, old: Obj) -> None:
    """/status leaves the approver's conditions as they were; adding or
    removing one is left for validation to refuse."""
    for ctype in DECISIONS:
        was, now = _indices(old, ctype), _indices(status, ctype)
        if len(was) == len(now):
            for i, j in zip(was, now, strict=True):
                status["conditions"][j] = copy.deepcopy(old["conditions"][i])


def _stamp(status: Obj, old: Obj, now: str) -> None:
    """A condition without times gets them: updated now, and transitioned
    when the same type last took this status, else now."""
    found = status.get("conditions")
    before = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    for c in found if isinstance(found, list) else []:
        if not isinstance(c, dict):
            continue
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = next(
                (o["lastTransitionTime"] for o in before if o.get("type") == c.get("type")
                 and o.get("status") == c.get("status") and o.get("lastTransitionTime")), now)


def prepare_for_update(old: Obj, new: Obj, write: Write, *, now: str) -> Obj:
    """What an update writes: ``new`` less what this way of writing may not
    change, which stays as in ``old`` (kube's three PrepareForUpdate)."""
    out = copy.deepcopy(new)
    out.pop("spec", None)
    if "spec" in old:
        out["spec"] = copy.deepcopy(old["spec"])
    was = copy.deepcopy(old.get("status") or {})
    sent = out.get("status")
    sent = sent if isinstance(sent, dict) else {}
    if write is Write.OBJECT:
        out["status"] = was
    elif write is Write.STATUS:
        _keep_decisions(sent, was)
        _stamp(sent, was, now)
        out["status"] = sent
    else:
        _stamp(sent, was, now)
        was.pop("conditions", None)
        if "conditions" in sent:
            was["conditions"] = sent["conditions"]
        out["status"] = was
    return out


# -- updates: what each way of writing may do --

def _options(new: Obj, old: Obj, write: Write) -> Options:
    """kube's getValidationOptions: what the stored object already had is
    forgiven, and each subresource may set its own part."""
    before = certificates.conditions(old)
    types = [c.get("type") for c in before]
    usages = (old.get("spec") or {}).get("usages")
    usages = usages if isinstance(usages, list) else []
    cert = certificates.certificate(old)
    return Options(
        set_decisions=write is Write.APPROVAL,
        set_certificate=write is Write.STATUS,
        both_decisions=APPROVED in types and DENIED in types,
        legacy_signer=(old.get("spec") or {}).get("signerName") == LEGACY_UNKNOWN,
        duplicate_types=len(types) != len({str(t) for t in types}),
        empty_type=any(not t for t in types),
        arbitrary_certificate=certificates.certificate(new) == cert
        or bool(certificates.certificate_error(cert)),
        unknown_usages=any(u not in USAGES for u in usages),
        duplicate_usages=len(usages) != len({str(u) for u in usages}),
    )


def _of_type(csr: Obj, ctype: str) -> list[Obj]:
    return [c for c in certificates.conditions(csr) if c.get("type") == ctype]


def update_errors(old: Obj, new: Obj, write: Write) -> Errors:
    """kube's ValidateCertificateSigningRequest{,Status,Approval}Update,
    less the metadata: ``new`` is already prepared (:func:`prepare_for_update`)."""
    opts = _options(new, old, write)
    errs = certificates.request_errors(new, opts)
    for ctype in LASTING:
        if len(_of_type(new, ctype)) < len(_of_type(old, ctype)):
            errs.append(FieldError("status.conditions", "Forbidden: updates may not remove a "
                                   f'condition of type "{ctype}"', "FieldValueForbidden"))
    if not opts.set_decisions:
        for ctype in DECISIONS:
            was, now = _of_type(old, ctype), _of_type(new, ctype)
            what = "add" if len(now) > len(was) else "modify" if len(now) == len(was) \
                and now != was else ""
            if what:
                errs.append(FieldError("status.conditions", f"Forbidden: updates may not {what} "
                                       f'a condition of type "{ctype}"', "FieldValueForbidden"))
    if certificates.certificate(new) != certificates.certificate(old):
        if not opts.set_certificate:
            errs.append(FieldError("status.certificate", "Forbidden: updates may not set "
                                   "certificate content", "FieldValueForbidden"))
        elif certificates.certificate(old):
            errs.append(FieldError("status.certificate", "Forbidden: updates may not modify "
                                   "existing certificate content", "FieldValueForbidden"))
    return errs


# -- admission: who may approve, sign and ask --

def signer_name(csr: Obj) -> str:
    return str((csr.get("spec") or {}).get("signerName") or "")


def signer_verb(old: Obj, new: Obj, write: Write) -> str:
    """The verb on the ``signers`` resource an update needs ('' for none):
    every approval update needs ``approve`` (kube's CertificateApproval), a
    status update that changes the certificate or conditions ``sign``
    (CertificateSigning)."""
    if write is Write.APPROVAL:
        return "approve"
    if write is Write.STATUS and (
            certificates.certificate(new) != certificates.certificate(old)
            or certificates.conditions(new) != certificates.conditions(old)):
        return "sign"
    return ""


def authorized_for_signer(may: Authorizer, verb: str, signer: str) -> bool:
    """``verb`` on the signer by name, or on all of its domain's signers
    (``example.com/*``), as kube's IsAuthorizedForSignerName asks."""
    return may(verb, GROUP, "signers", signer) or \
        may(verb, GROUP, "signers", signer.split("/")[0] + "/*")


def restricted_subject(csr: Obj) -> str:
    """Why a new request may not be made ('' when it may): a client
    certificate for the API server in the ``system:masters`` group would make
    its holder an administrator (kube's CertificateSubjectRestriction)."""
    if signer_name(csr) != KUBE_APISERVER_CLIENT:
        return ""
    try:
        parsed = certificates.parse_request(
            certificates.decoded((csr.get("spec") or {}).get("request")) or b"")
        groups = [a.value for a in parsed.subject.get_attributes_for_oid(
            NameOID.ORGANIZATION_NAME)]
    except ValueError as e:
        return f"failed to parse CSR: {e}"
    if "system:masters" in groups:
        return (f"use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not "
                "allowed")
    return ""


def condition_summary(csr: Obj) -> str:
    """kubectl's CONDITION: Denied, else Approved, else Pending; then
    Failed and Issued."""
    types = [c.get("type") for c in certificates.conditions(csr)]
    out = DENIED if DENIED in types else APPROVED if APPROVED in types else "Pending"
    if FAILED in types:
        out += ",Failed"
    if certificates.certificate(csr):
        out += ",Issued"
    return out
