"""Review kinds that are answered, never stored: SelfSubjectAccessReview
(``kubectl auth can-i``), SelfSubjectRulesReview (``can-i --list``),
SelfSubjectReview (``kubectl auth whoami``), SubjectAccessReview, and
the TokenRequest subresource of ServiceAccounts (``kubectl create token``)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from netplane.api import resources
from netplane.api.meta import Obj
from netplane.api.validation import FieldError
from netplane.cluster.apiserver import access, authn, paths, rbac, status
from netplane.cluster.apiserver.authn import User
from netplane.cluster.apiserver.registry import Registry


def _attributes(user: User, spec: Obj) -> rbac.Attributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if isinstance(ra, dict):
        return rbac.Attributes(user, str(ra.get("verb", "")), str(ra.get("namespace", "")),
                               str(ra.get("group", "")), str(ra.get("resource", "")),
                               str(ra.get("subresource", "")), str(ra.get("name", "")))
    if isinstance(nra, dict):
        return rbac.Attributes(user, str(nra.get("verb", "")), path=str(nra.get("path", "")))
    raise status.invalid("SelfSubjectAccessReview", "", [FieldError(
        "spec.resourceAttributes", "Required value: exactly one of nonResourceAttributes or "
        "resourceAttributes must be specified", "FieldValueRequired")])


def _answer(body: Obj, kind: str, group_version: str, st: Obj) -> Obj:
    return {"kind": kind, "apiVersion": group_version,
            "metadata": {"creationTimestamp": None}, "spec": body.get("spec") or {},
            "status": st}


def access_review(authorizer: rbac.RBAC, user: User, body: Obj) -> Obj:
    attrs = _attributes(user, body.get("spec") or {})
    allowed = authorizer.allowed(attrs)
    st: Obj = {"allowed": allowed}
    if allowed and authn.MASTERS not in user.groups:
        st["reason"] = "RBAC: allowed by a binding of this user"
    return _answer(body, body.get("kind") or "SelfSubjectAccessReview",
                   "authorization.k8s.io/v1", st)


def rules_review(authorizer: rbac.RBAC, user: User, body: Obj) -> Obj:
    namespace = str((body.get("spec") or {}).get("namespace", ""))
    if authn.MASTERS in user.groups:
        rules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
        non_resource = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
    else:
        found = list(authorizer.rules_for(user, namespace))
        rules = [{k: r[k] for k in ("verbs", "apiGroups", "resources", "resourceNames")
                  if r.get(k)} for r in found if r.get("resources")]
        non_resource = [{"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}
                        for r in found if r.get("nonResourceURLs")]
    return _answer(body, "SelfSubjectRulesReview", "authorization.k8s.io/v1",
                   {"resourceRules": rules, "nonResourceRules": non_resource,
                    "incomplete": False})


def _subject_user(spec: Obj) -> User:
    return User(str(spec.get("user", "")), tuple(spec.get("groups") or ()),
                str(spec.get("uid", "")), dict(spec.get("extra") or {}))


def handle(request: web.Request, target: paths.Target, body: Any) -> web.Response:
    """POST of a review kind (``body`` already decoded from JSON, YAML or protobuf)."""
    if not isinstance(body, dict):
        raise status.bad_request("the body must be an object")
    user = access.user_of(request)
    authorizer = request.app[access.AUTHORIZER]
    kind = target.resource.kind
    if kind == "SelfSubjectAccessReview":
        out = access_review(authorizer, user, body)
    elif kind == "SubjectAccessReview":
        out = access_review(authorizer, _subject_user(body.get("spec") or {}), body)
    elif kind == "SelfSubjectRulesReview":
        out = rules_review(authorizer, user, body)
    elif kind == "SelfSubjectReview":
        out = {"kind": kind, "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "status": {"userInfo": user.info()}}
    elif kind == "TokenReview":
        token = str((body.get("spec") or {}).get("token", ""))
        found = request.app[access.AUTHENTICATOR].authenticate(token)
        st: Obj = {"authenticated": found is not None}
        if found is not None:
            st["user"] = found.info()
        out = {"kind": kind, "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": body.get("spec") or {},
               "status": st}
    else:
        raise status.not_found(target.resource.plural, "")
    return web.Response(text=json.dumps(out), status=201, content_type="application/json")


def token(request: web.Request, registry: Registry, target: paths.Target,
          body: Any) -> web.Response:
    if target.resource is not resources.SERVICEACCOUNT:
        raise status.not_found(target.resource.plural, str(target.name))
    out = authn.token_request(request.app[access.AUTHENTICATOR], registry,
                              target.namespace or "default", str(target.name), body)
    return web.Response(text=json.dumps(out), status=201, content_type="application/json")
