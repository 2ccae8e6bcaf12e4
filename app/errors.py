"""Errors that are part of the API: a stable code, a sentence that says what to fix, a status.

The data layer raises these without knowing about HTTP frameworks; ``app.api.errors`` turns
them into ``{"code": ..., "detail": ...}`` responses.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refused request. ``file`` names the uploaded file at fault, where there is one."""

    status = 400

    def __init__(self, code: str, detail: str, *, file: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.file = file


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


class BadGateway(ServiceError):
    """A server this service called on its caller's behalf (a PACS) failed."""

    status = 502


# Codes of the service's own (the engine's input codes in models.errors are reused as they are).
NOT_FOUND = "not_found"
DATASET_EXISTS = "dataset_exists"
ANNOTATION_SET_EXISTS = "annotation_set_exists"
CASE_EXISTS = "case_exists"
MASK_EXISTS = "mask_exists"
EMPTY_UPLOAD = "empty_upload"
UNSAFE_PATH = "unsafe_path"
BAD_ZIP = "bad_zip"
TOO_MANY_FILES = "too_many_files"
UPLOAD_TOO_LARGE = "upload_too_large"
REQUEST_TOO_LARGE = "request_too_large"
INVALID_PARAMETERS = "invalid_parameters"
WRONG_DATASET = "wrong_dataset"
AUDIT_FINISHED = "audit_finished"
AUDIT_NOT_FINISHED = "audit_not_finished"
BROKER_UNAVAILABLE = "broker_unavailable"
INVALID_REQUEST = "invalid_request"
BAD_MULTIPART = "bad_multipart"
MISSING_KEY = "missing_key"
INVALID_KEY = "invalid_key"
FORBIDDEN = "forbidden"
INTERNAL = "internal_error"
NOT_READY = "not_ready"
SERVER_NOT_ALLOWED = "server_not_allowed"
