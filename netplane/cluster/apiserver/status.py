"""Errors as Kubernetes ``Status`` objects with the matching HTTP code."""

from __future__ import annotations

from typing import Any

from netplane.api.validation import FieldError


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, *,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


def success(code: int) -> dict[str, Any]:
    """What a subresource that makes no object of its own answers (pods'
    binding and eviction), with the code the response carries."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "code": code}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _about(resource: str, name: str, group: str) -> tuple[str, dict[str, Any]]:
    """How kube names a resource in a message (``deployments.apps``), and the details."""
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return (f"{resource}.{group}" if group else resource), details


def not_found(resource: str, name: str, *, group: str = "") -> ApiError:
    qualified, details = _about(resource, name, group)
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found', details=details)


def already_exists(resource: str, name: str, *, group: str = "") -> ApiError:
    qualified, details = _about(resource, name, group)
    return ApiError(409, "AlreadyExists", f'{qualified} "{name}" already exists',
                    details=details)


def forbidden(resource: str, name: str, why: str, *, group: str = "") -> ApiError:
    """An admission plugin's refusal (kube's admission.NewForbidden)."""
    qualified, details = _about(resource, name, group)
    return ApiError(403, "Forbidden", f'{qualified} "{name}" is forbidden: {why}',
                    details=details)


def conflict(resource: str, name: str, *, group: str = "") -> ApiError:
    qualified, details = _about(resource, name, group)
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified} "{name}": '
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again", details=details)


def invalid(kind: str, name: str, errors: list[FieldError], *, group: str = "") -> ApiError:
    """NewInvalid: the kind qualified by its group, several errors in brackets."""
    detail = ", ".join(str(e) for e in errors)
    if len(errors) > 1:
        detail = f"[{detail}]"
    causes = [{"reason": e.reason, "message": e.message, "field": e.path} for e in errors]
    qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {detail}',
                    details=details)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")
