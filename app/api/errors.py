"""Every error leaves as JSON ``{"code": ..., "detail": ...}``: refusals, validation errors,
unknown routes and unexpected failures alike (those are logged, never shown).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.errors import ServiceError
from app.schemas import ErrorOut
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


async def on_service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.code, exc.detail, exc.file)


async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = getattr(exc, "code", None) or CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
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


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500, ErrorCode.INTERNAL, "the server failed to handle this request; the error was logged"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
