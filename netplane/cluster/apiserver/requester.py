"""Who the request being served comes from, for the few kinds whose
strategy or admission asks, as kube-apiserver's request context carries the
user to them: a CertificateSigningRequest records its requester, and
approving or signing one needs a permission on its signer.

The authorization middleware sets it around each request; writes made
without one (the server's own, at start) are the server's and may do all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from netplane.api.meta import Obj
from netplane.api.signing import Authorizer


@dataclass(frozen=True)
class Requester:
    user: Obj  # userInfo: username, uid, groups, extra
    may: Authorizer


_CURRENT: ContextVar[Requester | None] = ContextVar("requester", default=None)


def current() -> Requester | None:
    return _CURRENT.get()


@contextlib.contextmanager
def acting(who: Requester) -> Iterator[None]:
    """``who`` is the requester within the block."""
    token = _CURRENT.set(who)
    try:
        yield
    finally:
        _CURRENT.reset(token)
