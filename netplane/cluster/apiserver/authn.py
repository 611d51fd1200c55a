"""Authentication: who a request comes from. The Unix socket is the local
administrator; over TLS a bearer token says who: the admin token, the join
token agents use, or a service account token (a JWT the server signed for
one ServiceAccount, and optionally one pod, checked against the live
objects so that deleting them revokes it)."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netplane.api import meta, resources
from netplane.api.meta import Obj
from netplane.api.validation import FieldError
from netplane.cluster.apiserver import status
from netplane.cluster.apiserver.registry import Registry

ISSUER = "https://kubernetes.default.svc.cluster.local"
MASTERS = "system:masters"
NODES = "system:nodes"
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"
DEFAULT_EXPIRY = 3600
MIN_EXPIRY = 600
MAX_EXPIRY = 2 ** 32


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    def info(self) -> Obj:
        """As ``userInfo`` in reviews (``kubectl auth whoami``)."""
        out: Obj = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


LOCAL_ADMIN = User("system:admin", (MASTERS, AUTHENTICATED))
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


def service_account_user(namespace: str, name: str, uid: str = "", *,
                         extra: dict[str, list[str]] | None = None) -> User:
    return User(f"{SA_PREFIX}{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
                uid, extra or {})


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The service-account signing key, made at first start (mode 0600)."""
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path.touch(mode=0o600)
        path.write_bytes(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


class Authenticator:
    def __init__(self, registry: Registry, *, static: dict[str, User],
                 signing_key: ec.EllipticCurvePrivateKey) -> None:
        self.registry, self.static, self.key = registry, static, signing_key
        self.public = signing_key.public_key()

    def authenticate(self, token: str) -> User | None:
        user = self.static.get(token)
        if user is not None:
            return user
        if token.count(".") == 2:
            return self._service_account(token)
        return None

    # -- service account tokens --

    def issue(self, sa: Obj, *, audiences: list[str], expiration: int,
              bound: Obj | None = None) -> tuple[str, str]:
        """A token for ``sa`` (and the pod ``bound``); returns (token, expiry)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER, "aud": audiences or [ISSUER], "iat": now, "nbf": now,
            "exp": now + expiration,
            "sub": f"{SA_PREFIX}{meta.namespace(sa)}:{meta.name(sa)}",
            "kubernetes.io": {"namespace": meta.namespace(sa),
                              "serviceaccount": {"name": meta.name(sa), "uid": meta.uid(sa)}},
        }
        if bound is not None:
            claims["kubernetes.io"]["pod"] = {"name": meta.name(bound), "uid": meta.uid(bound)}
        token = jwt.encode(claims, self.key, algorithm="ES256")
        expiry = datetime.datetime.fromtimestamp(now + expiration, datetime.UTC)
        return token, expiry.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _service_account(self, token: str) -> User | None:
        try:
            claims = jwt.decode(token, self.public, algorithms=["ES256"], issuer=ISSUER,
                                options={"verify_aud": False})
        except jwt.PyJWTError:
            return None
        private = claims.get("kubernetes.io") or {}
        ns = str(private.get("namespace", ""))
        sa_claim = private.get("serviceaccount") or {}
        try:
            sa = self.registry.get(resources.SERVICEACCOUNT, ns, str(sa_claim.get("name", "")))
        except status.ApiError:
            return None  # the ServiceAccount is gone: its tokens go with it
        if meta.uid(sa) != sa_claim.get("uid"):
            return None
        extra: dict[str, list[str]] = {}
        pod_claim = private.get("pod")
        if pod_claim:
            try:
                pod = self.registry.get(resources.POD, ns, str(pod_claim.get("name", "")))
            except status.ApiError:
                return None
            if meta.uid(pod) != pod_claim.get("uid"):
                return None
            extra = {"authentication.kubernetes.io/pod-name": [meta.name(pod)],
                     "authentication.kubernetes.io/pod-uid": [meta.uid(pod)]}
        return service_account_user(ns, meta.name(sa), meta.uid(sa), extra=extra)


def token_request(auth: Authenticator, registry: Registry, namespace: str, name: str,
                  body: Any) -> Obj:
    """POST serviceaccounts/NAME/token (``kubectl create token``)."""
    if not isinstance(body, dict):
        raise status.bad_request("the body must be an authentication.k8s.io/v1 TokenRequest")
    sa = registry.get(resources.SERVICEACCOUNT, namespace, name)
    spec = body.get("spec") or {}
    expiration = spec.get("expirationSeconds") or DEFAULT_EXPIRY
    if isinstance(expiration, bool) or not isinstance(expiration, int) \
            or not MIN_EXPIRY <= expiration <= MAX_EXPIRY:
        raise status.invalid("TokenRequest", name, [FieldError(
            "spec.expirationSeconds", f"Invalid value: {expiration!r}: may not specify a "
            "duration less than 10 minutes")])
    bound = None
    ref = spec.get("boundObjectRef")
    if ref:
        if ref.get("kind") != "Pod":
            raise status.bad_request(f"cannot bind a token to a {ref.get('kind')}: only Pod "
                                     "is supported")
        bound = registry.get(resources.POD, namespace, str(ref.get("name", "")))
        if ref.get("uid") and ref["uid"] != meta.uid(bound):
            raise status.conflict("pods", meta.name(bound))
    token, expiry = auth.issue(sa, audiences=list(spec.get("audiences") or []),
                               expiration=expiration, bound=bound)
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace,
                         "creationTimestamp": meta.now()},
            "spec": {**spec, "audiences": list(spec.get("audiences") or [ISSUER]),
                     "expirationSeconds": expiration},
            "status": {"token": token, "expirationTimestamp": expiry}}
