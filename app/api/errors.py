"""Every error leaves as JSON ``{"code": ..., "detail": ...}``: refusals, validation errors,
unknown routes and unexpected failures alike (those are logged, never shown).

Two faults of the service's own are answered as what they are, not as a 500: the database
unreachable (a restart, a failover: 503 ``database_unavailable`` with ``Retry-After``; the
engine's ``pool_pre_ping`` reconnects on the next request) and a full disk outside the store's
own writes (507 ``storage_full``, as ``app.storage`` answers inside them).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from app.errors import ServiceError
from app.schemas import ErrorOut
from app.storage import is_no_space, storage_full
from imaging.errors import ErrorCode

log = logging.getLogger("segaudit.api")

CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.MISSING_KEY,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.REQUEST_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def error_response(status: int, code: str, detail: str, file: str | None = None) -> JSONResponse:
    body = ErrorOut(code=code, detail=detail, file=file).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status)


def without_server_paths(text: str, storage: Path) -> str:
    """``text`` with every path under the storage folder cut to its file name: the last line
    of defence (the upload code names files as the client sent them).
    """
    return re.sub(re.escape(str(storage)) + r"[^\s'\"]*", lambda m: Path(m[0]).name, text)


async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    storage = request.app.state.settings.storage
    detail = without_server_paths(exc.detail, storage)
    file = without_server_paths(exc.file, storage) if exc.file else None
    return error_response(exc.status, exc.code, detail, file)


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def allowed_methods(request: Request, fallback: str = "") -> list[str]:
    """Every method the OpenAPI document declares at the request's path (HEAD with GET).
    Starlette's 405 names the first matching route's only, where a path has several (a
    dataset's GET and DELETE come from two routers). ``fallback``: Starlette's Allow, for the
    paths the document leaves out.
    """
    path = request.scope["path"]
    methods: set[str] = set()
    for template, item in request.app.openapi()["paths"].items():
        pattern = "".join(
            "[^/]+" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^/}]+\})", template)
        )
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in item if m in HTTP_METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods) or [m.strip() for m in fallback.split(",") if m.strip()]


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = getattr(exc, "code", None) or CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
    detail = str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = "the body could not be read as JSON text in UTF-8"  # FastAPI's only 400
    if exc.status_code == 405:
        allowed = allowed_methods(request, headers.get("Allow", ""))
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
    response = error_response(exc.status_code, code, detail)
    response.headers.update(headers)
    return response


async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    parts = []
    for problem in problems:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        parts.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
    first = tuple(problems[0].get("loc", ())) if problems else ()
    code = ErrorCode.INVALID_PARAMETERS if first[:2] == ("body", "parameters") else None
    return error_response(422, code or ErrorCode.INVALID_REQUEST, "; ".join(parts))


DATABASE_RETRY_AFTER_S = 5


async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
    reason = getattr(exc, "orig", None) or exc  # the driver's words, without the SQL
    log.warning("database unreachable in %s %s: %s", request.method, request.url.path, reason)
    response = error_response(
        503,
        ErrorCode.DATABASE_UNAVAILABLE,
        "the database is unreachable for now (restarting, or its connection was lost); "
        "nothing is half-written, and the request may be sent again in a few seconds",
    )
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


async def on_os_error(request: Request, exc: Exception) -> JSONResponse:
    if not is_no_space(exc):
        return await on_unexpected(request, exc)
    log.warning("no space left in %s %s: %s", request.method, request.url.path, exc)
    full = storage_full("this request's files")
    return error_response(full.status, full.code, full.detail)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500, ErrorCode.INTERNAL, "the server failed to handle this request; the error was logged"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    for unreachable in (OperationalError, InterfaceError):
        app.add_exception_handler(unreachable, on_database_error)
    app.add_exception_handler(OSError, on_os_error)
    app.add_exception_handler(Exception, on_unexpected)
