"""Errors that are part of the API: a stable code, a sentence that says what to fix, a status.

The codes are ``imaging.errors.ErrorCode``'s. The data layer raises these without knowing about
HTTP frameworks; ``app.api.errors`` turns them into ``{"code": ..., "detail": ...}`` responses.
"""

from __future__ import annotations

from imaging.errors import ErrorCode, SegauditError


class ServiceError(SegauditError):
    """A refused request. ``file`` names the uploaded file at fault, where there is one."""

    status = 400

    def __init__(self, code: ErrorCode, detail: str, *, file: str | None = None) -> None:
        super().__init__(code, detail, file=file)

    @classmethod
    def invalid_input(cls, exc: SegauditError, *, file: str | None = None) -> ServiceError:
        """The service's answer to bad input found by ``imaging``'s checks: a 422."""
        return Invalid(exc.code, exc.detail, file=file or exc.file)


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Invalid(ServiceError):
    status = 422


class TooLarge(ServiceError):
    status = 413


class Unavailable(ServiceError):
    status = 503


class InsufficientStorage(ServiceError):
    """The storage folder has no space left (HTTP 507); nothing of the request was kept."""

    status = 507


class BadGateway(ServiceError):
    """A server this service called on its caller's behalf (a PACS) failed."""

    status = 502
