"""Who may call the API: authentication (the Unix socket, bearer tokens)
then authorization (RBAC) of every request, as middlewares."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from netplane.api.signing import Authorizer
from netplane.cluster.apiserver import paths, rbac, requester, status
from netplane.cluster.apiserver.authn import (
    ANONYMOUS,
    AUTHENTICATED,
    LOCAL_ADMIN,
    SA_PREFIX,
    Authenticator,
    User,
    service_account_user,
)

AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
AUTHORIZER = web.AppKey("authorizer", rbac.RBAC)
USER = web.RequestKey("user", User)
# Health and version answer anyone, as kube-apiserver's public-info-viewer role allows.
PUBLIC = frozenset({"/healthz", "/livez", "/readyz", "/version"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def user_of(request: web.Request) -> User:
    user: User = request.get(USER, ANONYMOUS)
    return user


def _bearer(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The Unix socket is root-only by its mode; TCP needs a bearer token."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and sock.family == socket.AF_UNIX:
        request[USER] = LOCAL_ADMIN
        return await handler(request)
    token = _bearer(request)
    user = request.app[AUTHENTICATOR].authenticate(token) if token else None
    if user is None:
        if token or request.path not in PUBLIC:
            raise status.unauthorized()
        user = ANONYMOUS
    request[USER] = impersonated(request, user)
    return await handler(request)


def impersonated(request: web.Request, user: User) -> User:
    """``Impersonate-User`` and friends (``kubectl --as``, ``--as-group``):
    the request acts as another user if RBAC lets this one impersonate it."""
    name = request.headers.get("Impersonate-User")
    groups = tuple(request.headers.getall("Impersonate-Group", ()))
    if not name:
        if groups:
            raise status.bad_request("requested impersonation of groups without a user")
        return user
    authorizer = request.app[AUTHORIZER]
    checks: list[rbac.Attributes] = []
    if name.startswith(SA_PREFIX) and name.count(":") == 3:
        ns, sa = name[len(SA_PREFIX):].split(":", 1)
        checks.append(rbac.Attributes(user, "impersonate", ns, "", "serviceaccounts", name=sa))
        target = service_account_user(ns, sa)
        target = User(target.name, (*target.groups, *groups))
    else:
        checks.append(rbac.Attributes(user, "impersonate", resource="users", name=name))
        target = User(name, (*groups, AUTHENTICATED))
    checks += [rbac.Attributes(user, "impersonate", resource="groups", name=g) for g in groups]
    for attrs in checks:
        if not authorizer.allowed(attrs):
            raise status.ApiError(403, "Forbidden", f'{attrs.resource} "{attrs.name}" is '
                                  f'forbidden: User "{user.name}" cannot impersonate resource '
                                  f'"{attrs.resource}" in API group "" '
                                  + (f'in the namespace "{attrs.namespace}"'
                                     if attrs.namespace else "at the cluster scope"))
    return target


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    user = user_of(request)
    if request.path not in PUBLIC:
        attrs = rbac.request_attributes(user, request.method, request.path, request.query,
                                        request.app.get(paths.CUSTOM_KINDS))
        if not request.app[AUTHORIZER].allowed(attrs):
            raise rbac.forbidden(attrs)
    with requester.acting(requester.Requester(user.info(), _may(request, user))):
        return await handler(request)


def _may(request: web.Request, user: User) -> Authorizer:
    """Whether ``user`` may do something cluster-wide, for admission's own
    checks (on a CertificateSigningRequest's signer)."""
    authorizer = request.app[AUTHORIZER]

    def may(verb: str, group: str, resource: str, name: str) -> bool:
        return authorizer.allowed(rbac.Attributes(user, verb, "", group, resource, name=name))
    return may
